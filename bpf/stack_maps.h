/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* The aggregation every stack probe shares (bpf/stack.bpf.c: oncpu, offcpu;
 * bpf/ioflame.bpf.c: io_bytes, io_wait): a stack map, buckets of (process, user stack,
 * kernel stack) → value, the process filter and the drop counters, with the helpers that
 * fill them. user space (src/collect/stack/) drains them the same way for every probe.
 * Include after vmlinux.h, bpf_helpers.h, bpf_core_read.h and stack.h. */
#ifndef GALA_STACK_MAPS_H
#define GALA_STACK_MAPS_H

#define EFAULT 14

/* Set before load. */
const volatile bool filter_tgid = false;

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, STACK_MAX_DEPTH * sizeof(__u64));
	/* ~1 KiB per stack, preallocated: 8 MiB. Drained every interval. */
	__uint(max_entries, 8192);
} stacks SEC(".maps");

/* The first (or only) weight of each bucket: samples (oncpu), ns blocked (offcpu), bytes
 * (ioflame). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct stack_key);
	__type(value, __u64);
	__uint(max_entries, 16384);
} counts SEC(".maps");

/* The processes to observe when filter_tgid is set; user space keeps it current. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, 16384);
} tgids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, STACK_DROPS);
} drops SEC(".maps");

static __always_inline void drop(__u32 why)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &why);

	if (n)
		(*n)++;
}

static __always_inline bool wanted(__u32 tgid)
{
	/* tgid 0 is the idle task: time a CPU had nothing to run is not a stack to show. */
	if (tgid == 0)
		return false;
	return !filter_tgid || bpf_map_lookup_elem(&tgids, &tgid);
}

/* Stacks and process name of the current task. Without `kernel` the kernel stack id is
 * -EFAULT, as for a sample in user mode: at a system call tracepoint the kernel stack is
 * the tracing path itself, the same for every call. */
static __always_inline void take_stacks(void *ctx, struct stack_key *key, __u32 tgid,
					bool kernel)
{
	struct task_struct *task = (void *)bpf_get_current_task();

	key->tgid = tgid;
	key->user_stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
	if (key->user_stack_id < 0 && key->user_stack_id != -EFAULT)
		drop(DROP_USER_STACK);
	if (kernel) {
		key->kern_stack_id = bpf_get_stackid(ctx, &stacks, 0);
		if (key->kern_stack_id < 0 && key->kern_stack_id != -EFAULT)
			drop(DROP_KERN_STACK);
	} else {
		key->kern_stack_id = -EFAULT;
	}
	BPF_CORE_READ_STR_INTO(&key->comm, task, group_leader, comm);
}

/* Adds `value` to the bucket `key` of `map` (a hash of struct stack_key → __u64). */
static __always_inline void add_to(void *map, struct stack_key *key, __u64 value)
{
	__u64 *n = bpf_map_lookup_elem(map, key);

	if (n) {
		__sync_fetch_and_add(n, value);
		return;
	}
	if (bpf_map_update_elem(map, key, &value, BPF_NOEXIST) == 0)
		return;
	/* Another CPU inserted the same key in between, or the map is full. */
	n = bpf_map_lookup_elem(map, key);
	if (n)
		__sync_fetch_and_add(n, value);
	else
		drop(DROP_COUNTS_FULL);
}

/* Sampling by weight, for the probes whose events are too many for a stack walk each
 * (ioflame, memflame): a thread's weight accumulates, and once it runs past a period drawn
 * uniformly from [mean/2, 3*mean/2) (random, so that a regular pattern of calls cannot
 * alias with it) the whole tally goes to the stack of the event that ended the period,
 * as perf's -c counts a period for the sample that ends it. Kept per thread in task
 * storage. */
struct tally {
	__u64 weight; /* since the thread's last stack */
	__s64 left;   /* of the current period */
};

/* Adds `w` to the tally; true when the period is over (the caller takes the stack and
 * then calls tally_take). A new tally (zeroes) ends at its first event. */
static __always_inline bool tally_add(struct tally *t, __u64 w)
{
	t->weight += w;
	t->left -= w;
	return t->weight && t->left <= 0;
}

/* The tally's weight, and a new period of mean `mean` (0: every event). */
static __always_inline __u64 tally_take(struct tally *t, __u64 mean)
{
	__u64 w = t->weight;

	t->weight = 0;
	t->left = mean < 2 ? mean : mean / 2 + bpf_get_prandom_u32() % mean;
	return w;
}

#endif

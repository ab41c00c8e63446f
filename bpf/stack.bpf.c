// SPDX-License-Identifier: MIT OR Apache-2.0
/* On-CPU and off-CPU stacks, aggregated in the kernel by (process, user stack, kernel
 * stack): user space reads a few thousand buckets per interval instead of an event per
 * sample or per context switch.
 *
 * oncpu:  a perf_event program on the software cpu-clock event of every CPU (this kind of
 *         machine has no hardware PMU); one count per sample.
 * offcpu: sched/sched_switch alone (no kprobes here): the stack is taken when a task
 *         blocks (switch-out in state S or D, in its own context) and the blocked time is
 *         added when it is switched in again. Preemption is not blocking: a preempted task
 *         waits for a CPU, not for an event, and is left to run-queue latency probes. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "stack.h"

#define EFAULT 14
#define TASK_INTERRUPTIBLE 0x1
#define TASK_UNINTERRUPTIBLE 0x2

/* Set before load. */
const volatile bool filter_tgid = false;
const volatile __u64 min_block_ns = 10000;

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, STACK_MAX_DEPTH * sizeof(__u64));
	/* ~1 KiB per stack, preallocated: 8 MiB. Drained every interval. */
	__uint(max_entries, 8192);
} stacks SEC(".maps");

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

struct start {
	__u64 ts;
	struct stack_key key;
};

/* offcpu: blocked threads by tid. LRU, so that threads which never run again (they
 * exited while blocked) make room instead of filling the map. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u32);
	__type(value, struct start);
	__uint(max_entries, 16384);
} starts SEC(".maps");

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

/* Stacks and process name of the current task. */
static __always_inline void take_stacks(void *ctx, struct stack_key *key, __u32 tgid)
{
	struct task_struct *task = (void *)bpf_get_current_task();

	key->tgid = tgid;
	key->user_stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
	if (key->user_stack_id < 0 && key->user_stack_id != -EFAULT)
		drop(DROP_USER_STACK);
	key->kern_stack_id = bpf_get_stackid(ctx, &stacks, 0);
	if (key->kern_stack_id < 0 && key->kern_stack_id != -EFAULT)
		drop(DROP_KERN_STACK);
	BPF_CORE_READ_STR_INTO(&key->comm, task, group_leader, comm);
}

static __always_inline void add(struct stack_key *key, __u64 value)
{
	__u64 *n = bpf_map_lookup_elem(&counts, key);

	if (n) {
		__sync_fetch_and_add(n, value);
		return;
	}
	if (bpf_map_update_elem(&counts, key, &value, BPF_NOEXIST) == 0)
		return;
	/* Another CPU inserted the same key in between, or the map is full. */
	n = bpf_map_lookup_elem(&counts, key);
	if (n)
		__sync_fetch_and_add(n, value);
	else
		drop(DROP_COUNTS_FULL);
}

SEC("perf_event")
int oncpu(struct bpf_perf_event_data *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct stack_key key = {};

	if (!wanted(tgid))
		return 0;
	take_stacks(ctx, &key, tgid);
	add(&key, 1);
	return 0;
}

SEC("tp/sched/sched_switch")
int offcpu(struct trace_event_raw_sched_switch *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 prev = ctx->prev_pid, next = ctx->next_pid;
	/* At sched_switch the current task is still prev. */
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct start *s, blocked = {};
	struct stack_key key;
	__u64 delta;

	if (prev != 0 && (ctx->prev_state & (TASK_INTERRUPTIBLE | TASK_UNINTERRUPTIBLE)) &&
	    wanted(tgid)) {
		blocked.ts = now;
		take_stacks(ctx, &blocked.key, tgid);
		if (bpf_map_update_elem(&starts, &prev, &blocked, BPF_ANY))
			drop(DROP_STARTS_FULL);
	}
	if (next == 0)
		return 0;
	s = bpf_map_lookup_elem(&starts, &next);
	if (!s)
		return 0;
	delta = now - s->ts;
	key = s->key;
	bpf_map_delete_elem(&starts, &next);
	if (delta < min_block_ns)
		return 0;
	add(&key, delta);
	return 0;
}

/* GPL-compatible: bpf_probe_read_kernel and the stack helpers require it. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";

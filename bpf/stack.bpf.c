// SPDX-License-Identifier: MIT OR Apache-2.0
/* On-CPU and off-CPU stacks, aggregated in the kernel by (process, user stack, kernel
 * stack): user space reads a few thousand buckets per interval instead of an event per
 * sample or per context switch.
 *
 * oncpu:  a perf_event program on the software cpu-clock event of every CPU (this kind of
 *         machine has no hardware PMU); one count per sample. For the processes user space
 *         lists in `unwind_tgids` (their frame-pointer walk was incomplete), and those that
 *         exec a binary it lists in `unwind_exes` or are forked by a listed process, the
 *         sample is not counted here but sent whole, with a copy of the user stack, to be
 *         unwound in user space; when the ring buffer is full it falls back to the count.
 * offcpu: sched/sched_switch alone (no kprobes here): the stack is taken when a task
 *         blocks (switch-out in state S or D, in its own context) and the blocked time is
 *         added when it is switched in again. Preemption is not blocking: a preempted task
 *         waits for a CPU, not for an event, and is left to run-queue latency probes. */
/* The maps and helpers every stack probe shares are in stack_maps.h. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "stack.h"
#include "stack_maps.h"

#define TASK_INTERRUPTIBLE 0x1
#define TASK_UNINTERRUPTIBLE 0x2

/* Set before load. */
const volatile __u64 min_block_ns = 10000;

/* oncpu: the processes whose user stacks are copied (see struct stack_copy). Bounded:
 * user space lists at most this many, the ones with the most incomplete samples, and
 * exec_copies and fork_copies add to it while there is room. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, 1024);
} unwind_tgids SEC(".maps");

/* oncpu: the executables (device and inode) of processes found to need copies. A process
 * that starts one of them is copied from its exec on, and a child forked by a copied
 * process from its fork: listed by process alone, a short-lived process (a compiler, a
 * script) was dead before user space could name it, and its stacks were never whole.
 * User space fills it; at most this many binaries. */
struct exe_key {
	__u64 ino;
	/* The kernel's dev_t of the file's superblock (MAJOR << 20 | MINOR). */
	__u32 dev;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct exe_key);
	__type(value, __u8);
	__uint(max_entries, 256);
} unwind_exes SEC(".maps");

/* oncpu: the executable of each process started since the probe loaded, for user space
 * to name the binary of a process found incomplete after it is gone (a compiler's cc1
 * lives for a fraction of an interval). LRU: the oldest go first. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u32);
	__type(value, struct exe_key);
	__uint(max_entries, 4096);
} tgid_exes SEC(".maps");

/* The copies, to user space. Its size (set before load: 2 MiB per CPU, 8 to 64 MiB)
 * bounds what one interval can carry (a copy is the live part of the stack, usually a
 * few KiB); past it samples are counted with their frame-pointer stack instead
 * (DROP_COPY_FULL). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} copies SEC(".maps");

/* A stack_copy is too big for the BPF stack: one scratch copy per CPU. The slack lets
 * the verifier accept page reads at offsets it can only bound loosely (clang folds the
 * offsets into bit operations); no more than STACK_COPY_BYTES is ever sent. */
struct scratch {
	struct stack_copy c;
	__u8 slack[4096];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct scratch);
	__uint(max_entries, 1);
} scratch SEC(".maps");

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

#define PAGE 4096
#define HEADER (sizeof(struct stack_copy) - STACK_COPY_BYTES)

/* Sends the sample with its user registers and stack to user space; false when it could
 * not (a kernel thread, or no room), and the caller counts it as usual. `first`: the
 * process's first copy, which wakes user space at once (it reads the process's memory
 * map before a short-lived one is gone); the others wait for its next read. */
static __always_inline bool copy_stack(void *ctx, __u32 tgid, bool first)
{
	/* The BTF-typed task: bpf_task_pt_regs takes only a trusted pointer. */
	struct task_struct *task = bpf_get_current_task_btf();
	struct scratch *buf;
	struct stack_copy *c;
	struct pt_regs *regs;
	__u32 zero = 0, len, chunk;
	__u64 sp;

	if (!BPF_CORE_READ(task, mm))
		return false;
	buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!buf)
		return false;
	c = &buf->c;
	/* The registers user space was interrupted with (at the top of the kernel stack),
	 * whether the sample hit user or kernel mode. */
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	c->ip = BPF_CORE_READ(regs, ip);
	c->sp = sp = BPF_CORE_READ(regs, sp);
	c->bp = BPF_CORE_READ(regs, bp);
	/* Page by page from sp: the stack mapping ends on a page boundary, so the first read
	 * that fails is past its end and nothing of the stack is lost (one read of
	 * STACK_COPY_BYTES would fail whole near the top of a shallow stack). */
	chunk = PAGE - (sp & (PAGE - 1));
	if (bpf_probe_read_user(c->stack, chunk, (void *)sp)) {
		drop(DROP_COPY_FAULT);
		return false;
	}
	len = chunk;
#pragma unroll
	for (int i = 0; i < STACK_COPY_BYTES / PAGE - 1; i++) {
		if (len > STACK_COPY_BYTES - PAGE)
			break;
		if (bpf_probe_read_user(c->stack + len, PAGE, (void *)(sp + len)))
			break;
		len += PAGE;
	}
	c->len = len;
	c->tgid = tgid;
	c->first = first;
	c->kern_stack_id = bpf_get_stackid(ctx, &stacks, 0);
	if (c->kern_stack_id < 0 && c->kern_stack_id != -EFAULT)
		drop(DROP_KERN_STACK);
	BPF_CORE_READ_STR_INTO(&c->comm, task, group_leader, comm);
	if (len > STACK_COPY_BYTES)
		return false;
	if (bpf_ringbuf_output(&copies, c, HEADER + len,
			       first ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP)) {
		drop(DROP_COPY_FULL);
		return false;
	}
	return true;
}

SEC("perf_event")
int oncpu(struct bpf_perf_event_data *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct stack_key key = {};
	__u8 *listed;

	if (!wanted(tgid))
		return 0;
	/* 1: listed, not copied yet; 2: copied before. */
	listed = bpf_map_lookup_elem(&unwind_tgids, &tgid);
	if (listed && copy_stack(ctx, tgid, *listed == 1)) {
		*listed = 2;
		return 0;
	}
	take_stacks(ctx, &key, tgid, true);
	add_to(&counts, &key, 1);
	return 0;
}

/* A process that starts a binary of `unwind_exes` is copied; one that starts another
 * binary is not (a copied shell's child running a program built with frame pointers). */
SEC("raw_tp/sched_process_exec")
int exec_copies(struct bpf_raw_tracepoint_args *ctx)
{
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct exe_key key = {};
	__u8 one = 1;

	key.ino = BPF_CORE_READ(bprm, file, f_inode, i_ino);
	key.dev = BPF_CORE_READ(bprm, file, f_inode, i_sb, s_dev);
	bpf_map_update_elem(&tgid_exes, &tgid, &key, BPF_ANY);
	if (bpf_map_lookup_elem(&unwind_exes, &key))
		bpf_map_update_elem(&unwind_tgids, &tgid, &one, BPF_ANY);
	else
		bpf_map_delete_elem(&unwind_tgids, &tgid);
	return 0;
}

/* A new process (not a thread) forked by a copied one is copied too, until it execs. */
SEC("raw_tp/sched_process_fork")
int fork_copies(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 pid = BPF_CORE_READ(child, pid), tgid = BPF_CORE_READ(child, tgid);
	__u8 one = 1;

	if (pid == tgid && bpf_map_lookup_elem(&unwind_tgids, &ptgid))
		bpf_map_update_elem(&unwind_tgids, &tgid, &one, BPF_ANY);
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
		take_stacks(ctx, &blocked.key, tgid, true);
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
	add_to(&counts, &key, delta);
	return 0;
}

/* GPL-compatible: bpf_probe_read_kernel and the stack helpers require it. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";

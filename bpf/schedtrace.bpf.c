// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* schedtrace probe (opt-in): per process run-queue delay, on/off-CPU time by state, context switches
 * and migrations; per CPU run-queue delay.
 *
 * sched_switch runs hundreds of thousands of times a second on a busy host, so it touches
 * only the task leaving the CPU, which is `current`, and mostly only its task-local
 * storage: no hash lookup, no atomics, no clock read (see flush()). Everything about the
 * task's last stretch off the CPU is settled then, when it leaves again, from what the
 * scheduler itself keeps in the task (no clock read, no hash lookup for the task):
 *  - on-CPU time: the growth of se.sum_exec_runtime;
 *  - run-queue delay of that switch-in: the growth of the kernel's own per-task
 *    sched_info.run_delay (enqueue at wakeup or preemption -> switch-in), which saves a
 *    hook and a hash update on every wakeup;
 *  - off-CPU time: switch-in - last switch-out, less that run-queue delay, booked as
 *    sleeping or blocked by the state it left in.
 * No ring buffer, atomic adds instead of locks, nothing for the idle task.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "schedtrace.h"

#define TASK_RUNNING 0
#define TASK_UNINTERRUPTIBLE 0x2
#define TASK_DEAD 0x80

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Bumped by the collector after each read (see sys_max). */
volatile __u64 epoch;
/* Processes not tracked because the map was full. */
volatile __u64 dropped;

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sched_task);
} tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct sched_proc);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sched_cpu);
} cpus SEC(".maps");

static const struct sched_proc zero_proc;

static __always_inline struct sched_proc *proc_of(__u32 tgid)
{
	struct sched_proc *p = bpf_map_lookup_elem(&procs, &tgid);

	if (p)
		return p;
	bpf_map_update_elem(&procs, &tgid, &zero_proc, BPF_NOEXIST);
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		__sync_fetch_and_add(&dropped, 1);
	return p;
}

/* Adds a thread's pending counts to its process and clears them. */
static __always_inline void flush(struct sched_task *t, __u32 tgid, __u64 e)
{
	struct sched_proc *q = &t->pending, *p = proc_of(tgid);

	if (p) {
		__sync_fetch_and_add(&p->oncpu_ns, q->oncpu_ns);
		__sync_fetch_and_add(&p->sleep_ns, q->sleep_ns);
		__sync_fetch_and_add(&p->block_ns, q->block_ns);
		__sync_fetch_and_add(&p->vol_switches, q->vol_switches);
		__sync_fetch_and_add(&p->invol_switches, q->invol_switches);
		if (q->runq_cnt) {
			__sync_fetch_and_add(&p->runq_ns, q->runq_ns);
			__sync_fetch_and_add(&p->runq_cnt, q->runq_cnt);
			sys_max(&p->runq_max_ns, &p->runq_max_epoch, e, q->runq_max_ns);
			for (int i = 0; i < SYS_HIST_SLOTS; i++)
				if (q->runq_hist[i])
					__sync_fetch_and_add(&p->runq_hist[i], q->runq_hist[i]);
		}
	}
	__builtin_memset(q, 0, sizeof(*q));
	t->switches = 0;
	t->epoch = e;
}

/* A thread's counts reach its process after this many switches, or at its first switch
 * in a new interval, or when it exits: the per-switch work stays thread-local (no hash
 * lookup, no atomics) and a process is at most this many switches behind. */
#define FLUSH_EVERY 64

SEC("raw_tp/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	__u64 in_ts, run_delay, exec_ns, arrivals, oncpu = 0, runq = 0, off = 0, e;
	bool waited = false;
	struct sched_task *t;
	struct sched_cpu *c;
	__u32 zero = 0;

	if (!cur->pid)
		return 0; /* idle */
	/* The scheduler has already charged this run to sum_exec_runtime (pick_next_task
	 * comes before the tracepoint). */
	in_ts = cur->sched_info.last_arrival;
	run_delay = cur->sched_info.run_delay;
	exec_ns = cur->se.sum_exec_runtime;
	arrivals = cur->sched_info.pcount;
	e = epoch;

	t = bpf_task_storage_get(&tasks, cur, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t)
		return 0;
	if (t->seen) {
		oncpu = exec_ns - t->exec_ns;
		runq = run_delay - t->run_delay;
		/* A switch-in after a wait on a run queue, even one the clock saw as 0 ns. */
		waited = arrivals != t->arrivals;
		if (t->out_ts && in_ts > t->out_ts + runq)
			off = in_ts - t->out_ts - runq;
	}

	struct sched_proc *q = &t->pending;

	q->oncpu_ns += oncpu;
	if (!preempt && prev_state != TASK_RUNNING)
		q->vol_switches++;
	else
		q->invol_switches++;
	if (off) {
		if (t->out_state & TASK_UNINTERRUPTIBLE)
			q->block_ns += off;
		else if (t->out_state != TASK_RUNNING)
			q->sleep_ns += off;
	}
	if (waited) {
		q->runq_ns += runq;
		q->runq_cnt++;
		if (runq > q->runq_max_ns)
			q->runq_max_ns = runq;
		sys_hist_add(q->runq_hist, runq, false);
		/* The delay ended on this CPU when the task arrived here: book it to this CPU,
		 * whose slot only this CPU writes, so no atomics. */
		c = bpf_map_lookup_elem(&cpus, &zero);
		if (c) {
			c->runq_ns += runq;
			c->runq_cnt++;
			sys_hist_add(c->runq_hist, runq, false);
			sys_max(&c->runq_max_ns, &c->runq_max_epoch, e, runq);
		}
	}
	/* Leaving now, in sched_info's clock: arrival plus what this run used. */
	t->out_ts = t->seen ? in_ts + oncpu : 0;
	t->exec_ns = exec_ns;
	t->run_delay = run_delay;
	t->arrivals = arrivals;
	t->out_state = prev_state;
	t->seen = 1;
	if (++t->switches >= FLUSH_EVERY || t->epoch != e || (prev_state & TASK_DEAD))
		flush(t, cur->tgid, e);
	return 0;
}

SEC("raw_tp/sched_migrate_task")
int BPF_PROG(on_migrate, struct task_struct *task, int dest_cpu)
{
	struct sched_proc *p = proc_of(BPF_CORE_READ(task, tgid));

	if (p)
		__sync_fetch_and_add(&p->migrations, 1);
	return 0;
}

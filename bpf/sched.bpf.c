// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The default sched probe: nothing runs per context switch.
 *
 * The scheduler already keeps, per thread, its time on CPU, its run-queue delay and the
 * number of its switch-ins, its voluntary and involuntary switches and its migrations.
 * Once per interval the collector reads them all through a task iterator (one read()
 * for every thread on the host, where /proc would take two files per thread), and a
 * hook on thread exit — once per thread's life, not per switch — adds the final
 * counters of each thread that ended to its process's `dead` entry, so that the
 * process's total (live threads + dead ones) only grows and its last interval is whole.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "sched.h"

#define PF_EXITING 0x00000004

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Processes whose exited threads were not kept because the map was full. */
volatile __u64 dropped;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);	/* an entry per process with ended threads */
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct sched_counts);
} dead SEC(".maps");

static __always_inline void read_counts(struct task_struct *t, struct sched_counts *c)
{
	c->oncpu_ns = BPF_CORE_READ(t, se.sum_exec_runtime);
	c->runq_ns = BPF_CORE_READ(t, sched_info.run_delay);
	c->runq_cnt = BPF_CORE_READ(t, sched_info.pcount);
	c->vol_switches = BPF_CORE_READ(t, nvcsw);
	c->invol_switches = BPF_CORE_READ(t, nivcsw);
	c->migrations = BPF_CORE_READ(t, se.nr_migrations);
}

SEC("iter/task")
int dump_threads(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;
	if (!t)
		return 0;
	/* An exiting thread is counted by on_exit (or about to be): not twice. */
	if (t->flags & PF_EXITING)
		return 0;
	struct sched_thread r = { .tgid = t->tgid };
	if (!r.tgid)
		return 0;
	read_counts(t, &r.c);
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

SEC("raw_tp/sched_process_exit")
int on_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	__u32 tgid = BPF_CORE_READ(t, tgid);
	if (!tgid)
		return 0;
	struct sched_counts c;
	read_counts(t, &c);
	struct sched_counts *d = bpf_map_lookup_elem(&dead, &tgid);
	if (!d) {
		static const struct sched_counts zero;
		if (bpf_map_update_elem(&dead, &tgid, &zero, BPF_NOEXIST) != 0 &&
		    bpf_map_lookup_elem(&dead, &tgid) == NULL) {
			__sync_fetch_and_add(&dropped, 1);
			return 0;
		}
		d = bpf_map_lookup_elem(&dead, &tgid);
		if (!d)
			return 0;
	}
	/* Threads of one process may end at once on several CPUs. */
	__sync_fetch_and_add(&d->oncpu_ns, c.oncpu_ns);
	__sync_fetch_and_add(&d->runq_ns, c.runq_ns);
	__sync_fetch_and_add(&d->runq_cnt, c.runq_cnt);
	__sync_fetch_and_add(&d->vol_switches, c.vol_switches);
	__sync_fetch_and_add(&d->invol_switches, c.invol_switches);
	__sync_fetch_and_add(&d->migrations, c.migrations);
	return 0;
}

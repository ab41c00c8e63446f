/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Map values of the schedtrace probe, shared with src/collect/bpf/sys/schedtrace.rs, which reads
 * them as arrays of __u64 in this field order. Counters are cumulative; the collector
 * takes deltas. */
#ifndef GALA_SCHEDTRACE_H
#define GALA_SCHEDTRACE_H

#include "sys_common.h"

/* Per process (tgid), in the `procs` hash. */
struct sched_proc {
	__u64 oncpu_ns;
	__u64 runq_ns;		/* wakeup or preemption -> switch-in */
	__u64 runq_cnt;
	__u64 runq_max_ns;	/* this interval's, see sys_max() */
	__u64 runq_max_epoch;
	__u64 sleep_ns;		/* switched out sleeping (S) -> woken */
	__u64 block_ns;		/* switched out uninterruptible (D) -> woken */
	__u64 vol_switches;
	__u64 invol_switches;
	__u64 migrations;
	__u64 runq_hist[SYS_HIST_SLOTS];
};

/* Per CPU, in the `cpus` per-CPU array (one slot). */
struct sched_cpu {
	__u64 runq_ns;
	__u64 runq_cnt;
	__u64 runq_max_ns;
	__u64 runq_max_epoch;
	__u64 runq_hist[SYS_HIST_SLOTS];
};

/* Per thread, in task-local storage: what it looked like when it last left a CPU, and
 * what it has gathered since its last flush into its process's `sched_proc`. */
struct sched_task {
	__u64 out_ts;		/* left the CPU at (rq clock, as sched_info keeps it) */
	__u64 run_delay;	/* the kernel's sched_info.run_delay then */
	__u64 exec_ns;		/* the kernel's se.sum_exec_runtime then */
	__u64 arrivals;		/* the kernel's sched_info.pcount then */
	__u32 out_state;	/* prev_state then */
	__u32 seen;		/* the fields above are set */
	__u64 epoch;		/* epoch of the last flush */
	__u64 switches;		/* since the last flush */
	struct sched_proc pending;
};

#endif

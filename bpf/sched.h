/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Records of the default sched probe, shared with src/collect/bpf/sys/sched.rs, which
 * reads them as arrays of __u64 in this field order. Every counter is one the scheduler
 * keeps per thread anyway, cumulative since the thread began. */
#ifndef GALA_SCHED_H
#define GALA_SCHED_H

struct sched_counts {
	__u64 oncpu_ns;		/* se.sum_exec_runtime */
	__u64 runq_ns;		/* sched_info.run_delay: enqueued -> switched in */
	__u64 runq_cnt;		/* sched_info.pcount: times switched in */
	__u64 vol_switches;	/* nvcsw */
	__u64 invol_switches;	/* nivcsw */
	__u64 migrations;	/* se.nr_migrations */
};

/* One live thread, as the task iterator writes it. */
struct sched_thread {
	__u64 tgid;
	struct sched_counts c;
};

#endif

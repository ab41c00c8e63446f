/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Map values and events of the mem probe, shared with src/collect/bpf/sys/mem.rs. */
#ifndef GALA_MEM_H
#define GALA_MEM_H

/* Per process (tgid), cumulative, read as __u64 words in this order. */
struct mem_proc {
	__u64 direct_reclaim_ns;	/* in vmscan direct reclaim (global memory pressure) */
	__u64 direct_reclaims;
	__u64 direct_reclaimed;		/* pages */
	__u64 memcg_reclaim_ns;		/* reclaiming because its cgroup hit memory.high/max */
	__u64 memcg_reclaims;
	__u64 memcg_reclaimed;
	__u64 major_faults;
};

/* An OOM victim (oom:mark_victim), through the ring buffer. */
struct mem_oom_event {
	__u64 cgroup_id;	/* the victim's cgroup v2 id (its directory's inode) */
	__u64 memcg_id;		/* the id of its memory cgroup (differs on a v1 memory hierarchy) */
	__u32 tgid;
	__u32 pid;
	__u32 uid;
	__u32 trigger_tgid;	/* whose allocation ran into the limit */
	char comm[16];
	char trigger_comm[16];
};

#endif

/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Map keys and values of the syscall probe, shared with src/collect/bpf/sys/syscall.rs. */
#ifndef GALA_SYSCALL_H
#define GALA_SYSCALL_H

/* Syscall numbers the family table covers (x86-64 and arm64 stay below this). */
#define SYSCALL_MAX_NR 512

enum syscall_family {
	SC_NONE = 0,
	SC_IO = 1,
	SC_NET = 2,
	SC_SCHED = 3,
	SC_FORK = 4,
	SC_FAMILIES = 5,
};

struct syscall_key {
	__u32 tgid;
	__u32 code;		/* errno (errors map) or family (lat map) */
};

/* Per (tgid, family), cumulative, read as __u64 words. */
struct syscall_lat {
	__u64 count;
	__u64 sum_ns;
	__u64 max_ns;		/* this interval's, see sys_max() */
	__u64 max_epoch;
};

#endif

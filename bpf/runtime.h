/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Structs shared by bpf/runtime.bpf.c and src/collect/runtime/bpf.rs (skeleton types). */
#ifndef GALA_RUNTIME_H
#define GALA_RUNTIME_H

/* Per process (tgid), cumulative since the probe attached to its binary. */
struct rt_stats {
	__u64 gc_count;      /* Go: completed GC cycles; Python: collections (any generation) */
	__u64 gc_ns;         /* Python: time from gc__start to gc__done */
	__u64 stw_count;     /* Go: stop-the-world pauses */
	__u64 stw_ns;        /* Go: their total length */
	__u64 stw_max_ns;    /* Go: the longest in the epoch below */
	__u64 stw_since_ns;  /* Go: when the current pause began, 0 when none is on */
	__u64 created;       /* Go: goroutines created (newproc1) */
	__u64 exited;        /* Go: goroutines that exited (goexit0) */
	__u64 gen[3];        /* Python: collections per generation */
	__u64 collected;     /* Python: objects collected (gc__done's argument) */
	__u32 max_epoch;     /* stw_max_ns belongs to this collection interval */
	__u32 pad;
};

/* A Python collection in progress on one thread. */
struct rt_py_gc {
	__u64 ts;
	__s64 gen;
};

enum gala_rt_counter {
	RT_CNT_MAP_FULL = 0,
	RT_CNT_NO_START = 1, /* a gc__done without its gc__start (probe attached mid-collection) */
	RT_CNT_MAX = 2,
};

#endif

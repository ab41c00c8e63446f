/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* What the sched, io, mem and syscall probes share: log2 histograms and per-interval
 * maxima, both kept in map values made of __u64 only so that Rust reads them as a slice.
 */
#ifndef GALA_SYS_COMMON_H
#define GALA_SYS_COMMON_H

/* Histogram slot of a duration: slot 0 is < 1 us, slot i (i >= 1) is [2^(i-1), 2^i) us,
 * the last slot everything longer. 24 slots reach 2^22 us, about 4 s. */
#define SYS_HIST_SLOTS 24

#ifdef __BPF__
static __always_inline __u32 sys_log2(__u64 v)
{
	__u32 r = 0, shift;

	shift = (v > 0xFFFFFFFFULL) << 5; v >>= shift; r |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline __u32 sys_hist_slot(__u64 ns)
{
	__u64 us = ns / 1000;
	__u32 slot;

	if (!us)
		return 0;
	slot = sys_log2(us) + 1;
	return slot < SYS_HIST_SLOTS ? slot : SYS_HIST_SLOTS - 1;
}

/* Counts one duration into a histogram. The barrier keeps clang from folding the bound
 * check into the computation, where the verifier could no longer see it. */
static __always_inline void sys_hist_add(__u64 *hist, __u64 ns, bool atomic)
{
	__u32 slot = sys_hist_slot(ns);

	barrier_var(slot);
	if (slot >= SYS_HIST_SLOTS)
		return;
	if (atomic)
		__sync_fetch_and_add(&hist[slot], 1);
	else
		hist[slot]++;
}

/* The collector bumps `epoch` after reading the maps each interval: a maximum stamped with
 * an older epoch belongs to an interval already reported, so the first value of a new
 * interval replaces it instead of being compared with it. Racy between CPUs by design: a
 * lost maximum costs less than a lock on the hot path. */
static __always_inline void sys_max(__u64 *max, __u64 *max_epoch, __u64 epoch, __u64 v)
{
	if (*max_epoch != epoch) {
		*max_epoch = epoch;
		*max = v;
	} else if (v > *max) {
		*max = v;
	}
}
#endif

#endif

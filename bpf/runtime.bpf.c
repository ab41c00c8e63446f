// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* runtime probe: Go runtime functions (uprobes, entry only: a uretprobe breaks Go's stack
 * copying) and CPython's gc USDT probes, aggregated per process in the kernel. User space
 * attaches the programs to each distinct Go binary and CPython file it finds. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>
#include "runtime.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct rt_stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct rt_py_gc);
} py_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RT_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Set by user space at each read, so stw_max_ns is a per-interval maximum. */
__u32 epoch = 0;

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		*c += 1;
}

static __always_inline struct rt_stats *stats_of_current(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct rt_stats *s = bpf_map_lookup_elem(&stats, &tgid);
	if (s)
		return s;
	struct rt_stats init = {};
	if (bpf_map_update_elem(&stats, &tgid, &init, BPF_NOEXIST) && bpf_map_update_elem(&stats, &tgid, &init, BPF_ANY)) {
		count(RT_CNT_MAP_FULL);
		return 0;
	}
	return bpf_map_lookup_elem(&stats, &tgid);
}

SEC("uprobe")
int go_gc_done(struct pt_regs *ctx)
{
	struct rt_stats *s = stats_of_current();
	if (s)
		__sync_fetch_and_add(&s->gc_count, 1);
	return 0;
}

SEC("uprobe")
int go_stw_stop(struct pt_regs *ctx)
{
	struct rt_stats *s = stats_of_current();
	if (s)
		s->stw_since_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("uprobe")
int go_stw_start(struct pt_regs *ctx)
{
	struct rt_stats *s = stats_of_current();
	if (!s || !s->stw_since_ns)
		return 0;
	__u64 d = bpf_ktime_get_ns() - s->stw_since_ns;
	s->stw_since_ns = 0;
	__sync_fetch_and_add(&s->stw_count, 1);
	__sync_fetch_and_add(&s->stw_ns, d);
	if (s->max_epoch != epoch) {
		s->max_epoch = epoch;
		s->stw_max_ns = d;
	} else if (d > s->stw_max_ns) {
		s->stw_max_ns = d;
	}
	return 0;
}

SEC("uprobe")
int go_newproc(struct pt_regs *ctx)
{
	struct rt_stats *s = stats_of_current();
	if (s)
		__sync_fetch_and_add(&s->created, 1);
	return 0;
}

SEC("uprobe")
int go_goexit(struct pt_regs *ctx)
{
	struct rt_stats *s = stats_of_current();
	if (s)
		__sync_fetch_and_add(&s->exited, 1);
	return 0;
}

SEC("usdt")
int BPF_USDT(py_gc_start, int generation)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct rt_py_gc g = { .ts = bpf_ktime_get_ns(), .gen = generation };
	if (bpf_map_update_elem(&py_inflight, &id, &g, BPF_ANY))
		count(RT_CNT_MAP_FULL);
	return 0;
}

SEC("usdt")
int BPF_USDT(py_gc_done, long collected)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct rt_py_gc *g = bpf_map_lookup_elem(&py_inflight, &id);
	if (!g) {
		count(RT_CNT_NO_START);
		return 0;
	}
	__u64 d = bpf_ktime_get_ns() - g->ts;
	__s64 gen = g->gen;
	bpf_map_delete_elem(&py_inflight, &id);
	struct rt_stats *s = stats_of_current();
	if (!s)
		return 0;
	__sync_fetch_and_add(&s->gc_count, 1);
	__sync_fetch_and_add(&s->gc_ns, d);
	if (collected > 0)
		__sync_fetch_and_add(&s->collected, collected);
	if (gen >= 0 && gen < 3)
		__sync_fetch_and_add(&s->gen[gen], 1);
	return 0;
}

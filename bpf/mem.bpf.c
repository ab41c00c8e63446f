// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* mem probe: OOM kills as events (ring buffer: they are rare and each one matters),
 * direct and cgroup reclaim time and major page faults per process, aggregated in the
 * kernel. Reclaim runs in the context of the process that allocates, so `current` is the
 * one that pays; the start time waits in its task-local storage.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "mem.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Processes not tracked because the map was full, and OOM events lost. */
volatile __u64 dropped;
volatile __u64 events_lost;

struct reclaim_start {
	__u64 direct;
	__u64 memcg;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct reclaim_start);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct mem_proc);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

static const struct mem_proc zero_proc;

static __always_inline struct mem_proc *proc_of(__u32 tgid)
{
	struct mem_proc *p = bpf_map_lookup_elem(&procs, &tgid);

	if (p)
		return p;
	bpf_map_update_elem(&procs, &tgid, &zero_proc, BPF_NOEXIST);
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		__sync_fetch_and_add(&dropped, 1);
	return p;
}

static __always_inline struct reclaim_start *start_of(void)
{
	return bpf_task_storage_get(&starts, bpf_get_current_task_btf(), 0,
				    BPF_LOCAL_STORAGE_GET_F_CREATE);
}

SEC("raw_tp/mm_vmscan_direct_reclaim_begin")
int BPF_PROG(on_direct_begin)
{
	struct reclaim_start *s = start_of();

	if (s)
		s->direct = bpf_ktime_get_ns();
	return 0;
}

SEC("raw_tp/mm_vmscan_direct_reclaim_end")
int BPF_PROG(on_direct_end, unsigned long nr_reclaimed)
{
	struct reclaim_start *s = start_of();
	struct mem_proc *p;

	if (!s || !s->direct)
		return 0;
	p = proc_of(bpf_get_current_pid_tgid() >> 32);
	if (p) {
		__sync_fetch_and_add(&p->direct_reclaim_ns, bpf_ktime_get_ns() - s->direct);
		__sync_fetch_and_add(&p->direct_reclaims, 1);
		__sync_fetch_and_add(&p->direct_reclaimed, nr_reclaimed);
	}
	s->direct = 0;
	return 0;
}

SEC("raw_tp/mm_vmscan_memcg_reclaim_begin")
int BPF_PROG(on_memcg_begin)
{
	struct reclaim_start *s = start_of();

	if (s)
		s->memcg = bpf_ktime_get_ns();
	return 0;
}

SEC("raw_tp/mm_vmscan_memcg_reclaim_end")
int BPF_PROG(on_memcg_end, unsigned long nr_reclaimed)
{
	struct reclaim_start *s = start_of();
	struct mem_proc *p;

	if (!s || !s->memcg)
		return 0;
	p = proc_of(bpf_get_current_pid_tgid() >> 32);
	if (p) {
		__sync_fetch_and_add(&p->memcg_reclaim_ns, bpf_ktime_get_ns() - s->memcg);
		__sync_fetch_and_add(&p->memcg_reclaims, 1);
		__sync_fetch_and_add(&p->memcg_reclaimed, nr_reclaimed);
	}
	s->memcg = 0;
	return 0;
}

/* A software perf event (major-faults) with a period of 1, on every CPU. */
SEC("perf_event")
int on_major_fault(struct bpf_perf_event_data *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct mem_proc *p;

	if (!tgid)
		return 0;
	p = proc_of(tgid);
	if (p)
		__sync_fetch_and_add(&p->major_faults, 1);
	return 0;
}

SEC("raw_tp/mark_victim")
int BPF_PROG(on_oom_victim, struct task_struct *task, uid_t uid)
{
	struct mem_oom_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	__u64 id = bpf_get_current_pid_tgid();
	struct cgroup_subsys_state *css;

	if (!ev) {
		__sync_fetch_and_add(&events_lost, 1);
		return 0;
	}
	ev->tgid = BPF_CORE_READ(task, tgid);
	ev->pid = BPF_CORE_READ(task, pid);
	ev->uid = uid;
	ev->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	css = BPF_CORE_READ(task, cgroups, subsys[memory_cgrp_id]);
	ev->memcg_id = css ? BPF_CORE_READ(css, cgroup, kn, id) : 0;
	ev->trigger_tgid = id >> 32;
	BPF_CORE_READ_STR_INTO(&ev->comm, task, comm);
	bpf_get_current_comm(ev->trigger_comm, sizeof(ev->trigger_comm));
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

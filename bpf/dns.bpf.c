// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* dns probe: getaddrinfo() calls per process and name, timed from the uprobe on entry
 * to the uretprobe on return, aggregated in the kernel. Attached by user space to every
 * libc it finds (the host's and those of running containers). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "dns.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, struct dns_inflight);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct dns_key);
	__type(value, struct dns_val);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DNS_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Set by user space at each read, so max_ns is a per-interval maximum. */
__u32 epoch = 0;

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		*c += 1;
}

SEC("uprobe")
int BPF_UPROBE(gai_enter, const char *node)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct dns_inflight f = { .ts = bpf_ktime_get_ns(), .node = (__u64)node };
	if (bpf_map_update_elem(&inflight, &id, &f, BPF_ANY))
		count(DNS_CNT_MAP_FULL);
	return 0;
}

SEC("uretprobe")
int BPF_URETPROBE(gai_exit, int ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct dns_inflight *f = bpf_map_lookup_elem(&inflight, &id);
	if (!f) {
		count(DNS_CNT_NO_ENTRY);
		return 0;
	}
	__u64 delay = bpf_ktime_get_ns() - f->ts;
	struct dns_key key = {};
	key.tgid = id >> 32;
	if (f->node)
		bpf_probe_read_user_str(key.name, sizeof(key.name), (const char *)f->node);
	bpf_map_delete_elem(&inflight, &id);

	struct dns_val *v = bpf_map_lookup_elem(&stats, &key);
	if (!v) {
		struct dns_val init = {};
		bpf_get_current_comm(&init.comm, sizeof(init.comm));
		if (bpf_map_update_elem(&stats, &key, &init, BPF_NOEXIST) && bpf_map_update_elem(&stats, &key, &init, BPF_ANY)) {
			count(DNS_CNT_MAP_FULL);
			return 0;
		}
		v = bpf_map_lookup_elem(&stats, &key);
		if (!v)
			return 0;
	}
	__sync_fetch_and_add(&v->count, 1);
	if (ret != 0)
		__sync_fetch_and_add(&v->errors, 1);
	__sync_fetch_and_add(&v->delay_sum_ns, delay);
	if (v->max_epoch != epoch) {
		v->max_epoch = epoch;
		v->max_ns = delay;
	} else if (delay > v->max_ns) {
		v->max_ns = delay;
	}
	return 0;
}

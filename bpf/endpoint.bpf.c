// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* endpoint probe: listening ports and active opens per process, on tracepoints only
 * (UDP sockets are the udp probe's, bpf/udp.bpf.c: its hooks run on every send). Aggregated in the kernel; nothing goes through a ring buffer.
 *
 * Attribution: listen() and connect() set the socket state in process context, so the
 * owner is the current task there. SYN retransmits run from the retransmit timer
 * (softirq), so they are attributed through the `connecting` map filled at connect(). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "endpoint.h"
#include "kread.h"

#define AF_INET 2
#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define DROP_TCP_LISTEN_OVERFLOW 40

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct ep_port_val);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct ep_conn_val);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ep_connecting);
} connecting SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EP_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static const __u32 conn_bounds[GALA_CONN_BUCKETS - 1] = { GALA_CONN_BOUNDS };
/* Set by user space at each read, so lat_max_us is a per-interval maximum. */
__u32 epoch = 0;

static __always_inline void map_full(void)
{
	__u32 idx = EP_CNT_MAP_FULL;
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		*c += 1;
}

static __always_inline struct ep_port_val *port_entry(__u16 family, __u16 port)
{
	__u32 key = ((__u32)family << 16) | port;
	struct ep_port_val *v = bpf_map_lookup_elem(&ports, &key);
	if (v)
		return v;
	struct ep_port_val init = {};
	if (bpf_map_update_elem(&ports, &key, &init, BPF_NOEXIST) && bpf_map_update_elem(&ports, &key, &init, BPF_ANY)) {
		map_full();
		return NULL;
	}
	return bpf_map_lookup_elem(&ports, &key);
}

static __always_inline struct ep_conn_val *conn_entry(__u32 tgid)
{
	struct ep_conn_val *v = bpf_map_lookup_elem(&conns, &tgid);
	if (v)
		return v;
	struct ep_conn_val init = {};
	bpf_get_current_comm(&init.comm, sizeof(init.comm));
	if (bpf_map_update_elem(&conns, &tgid, &init, BPF_NOEXIST) && bpf_map_update_elem(&conns, &tgid, &init, BPF_ANY)) {
		map_full();
		return NULL;
	}
	return bpf_map_lookup_elem(&conns, &tgid);
}

/* A raw tracepoint, as the tcp probe's: the kernel skips a classic tracepoint's program
 * whenever another BPF program runs on the CPU (a softirq's state change arriving during
 * one), and builds a trace record first. */
SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(ep_set_state, struct sock *sk, int old, int new)
{
	if (KREAD(struct sock, sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	__u64 key = (__u64)sk;
	__u16 family = KREAD(struct sock, sk, __sk_common.skc_family);
	__u16 sport = bpf_ntohs(KREAD(struct inet_sock, sk, inet_sport));

	if (new == TCP_LISTEN) {
		struct ep_port_val *p = port_entry(family, sport);
		if (p) {
			p->tgid = bpf_get_current_pid_tgid() >> 32;
			p->backlog = KREAD(struct sock, sk, sk_max_ack_backlog);
			bpf_get_current_comm(&p->comm, sizeof(p->comm));
		}
		return 0;
	}
	if (old == TCP_SYN_RECV && new == TCP_ESTABLISHED) {
		struct ep_port_val *p = port_entry(family, sport);
		if (p)
			__sync_fetch_and_add(&p->passive_opens, 1);
		return 0;
	}
	if (new == TCP_SYN_SENT) {
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		struct ep_connecting c = { .ts = bpf_ktime_get_ns(), .tgid = tgid };
		if (bpf_map_update_elem(&connecting, &key, &c, BPF_ANY))
			map_full();
		struct ep_conn_val *v = conn_entry(tgid);
		if (v)
			__sync_fetch_and_add(&v->active_opens, 1);
		return 0;
	}
	if (old != TCP_SYN_SENT)
		return 0;
	struct ep_connecting *c = bpf_map_lookup_elem(&connecting, &key);
	if (!c)
		return 0;
	struct ep_conn_val *v = bpf_map_lookup_elem(&conns, &c->tgid);
	if (v && new == TCP_ESTABLISHED) {
		__u32 us = (bpf_ktime_get_ns() - c->ts) / 1000;
		__sync_fetch_and_add(&v->lat_sum_us, us);
		__sync_fetch_and_add(&v->lat_cnt, 1);
		if (v->max_epoch != epoch) {
			v->max_epoch = epoch;
			v->lat_max_us = us;
		} else if (us > v->lat_max_us) {
			v->lat_max_us = us;
		}
		__u32 b = GALA_CONN_BUCKETS - 1;
#pragma unroll
		for (__u32 i = 0; i < GALA_CONN_BUCKETS - 1; i++) {
			if (us <= conn_bounds[i]) {
				b = i;
				break;
			}
		}
		if (b < GALA_CONN_BUCKETS)
			__sync_fetch_and_add(&v->lat_hist[b], 1);
	} else if (v && new == TCP_CLOSE) {
		__sync_fetch_and_add(&v->failed, 1);
	}
	bpf_map_delete_elem(&connecting, &key);
	return 0;
}

SEC("tp/tcp/tcp_retransmit_skb")
int ep_retransmit(struct trace_event_raw_tcp_retransmit_skb *ctx)
{
	if (ctx->state != TCP_SYN_SENT)
		return 0;
	__u64 key = (__u64)ctx->skaddr;
	struct ep_connecting *c = bpf_map_lookup_elem(&connecting, &key);
	if (!c)
		return 0;
	struct ep_conn_val *v = bpf_map_lookup_elem(&conns, &c->tgid);
	if (v)
		__sync_fetch_and_add(&v->syn_retrans, 1);
	return 0;
}

SEC("tp/tcp/tcp_retransmit_synack")
int ep_retransmit_synack(struct trace_event_raw_tcp_retransmit_synack *ctx)
{
	struct ep_port_val *p = port_entry(ctx->family, ctx->sport);
	if (p)
		__sync_fetch_and_add(&p->synack_retrans, 1);
	return 0;
}

SEC("tp/skb/kfree_skb")
int ep_kfree_skb(struct trace_event_raw_kfree_skb *ctx)
{
	struct sock *sk = (struct sock *)ctx->rx_sk;
	if (!sk || ctx->reason != DROP_TCP_LISTEN_OVERFLOW)
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);
	struct ep_port_val *p = port_entry(family, port);
	if (p)
		__sync_fetch_and_add(&p->listen_drops, 1);
	return 0;
}

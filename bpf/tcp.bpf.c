// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* tcp probe: per-socket TCP numbers aggregated in the kernel, keyed by the sock
 * pointer, on tracepoints only (no kprobes on the target kernels).
 *
 * Softirq-context events (tcp_probe, retransmits, resets, server-side state changes)
 * run with whatever task was interrupted, so the owner (tgid, comm) is taken only in
 * process context: connect (SYN_SENT) and sock_send_length / sock_recv_length. The
 * socket's entry carries it, so every later softirq event is attributed through it.
 *
 * A closing socket's final numbers go to the ring buffer and the entry leaves the map,
 * so short-lived connections neither fill the map nor vanish between two reads. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "tcp.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define MSG_PEEK 2

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u64);
	__type(value, struct tcp_sock_val);
} socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TCP_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static const __u32 srtt_bounds[GALA_SRTT_BUCKETS - 1] = { GALA_SRTT_BOUNDS };

static __u64 next_seq;
/* Set before load when tcp:tcp_destroy_sock is missing: finish sockets at CLOSE then
 * (bytes read after the socket reached CLOSE, e.g. in TIME_WAIT, are then missed). */
const volatile bool final_at_close = false;

/* Set by user space at each read, so srtt_max_us is a per-interval maximum. */
__u32 epoch = 0;

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		*c += 1;
}

static __always_inline void fill_addrs(struct tcp_sock_val *v, struct sock *sk)
{
	v->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	v->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	v->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (v->family == AF_INET) {
		/* BPF_CORE_READ_INTO reads sizeof(*dst): go through 4-byte values */
		__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memset(v->laddr, 0, sizeof(v->laddr));
		__builtin_memset(v->raddr, 0, sizeof(v->raddr));
		__builtin_memcpy(v->laddr, &l, 4);
		__builtin_memcpy(v->raddr, &r, 4);
	} else {
		BPF_CORE_READ_INTO(&v->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&v->raddr, sk, __sk_common.skc_v6_daddr);
	}
}

static __always_inline void own(struct tcp_sock_val *v)
{
	v->tgid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(&v->comm, sizeof(v->comm));
}

/* The socket's entry, created on first sight. `owner` is true in process context. */
static __always_inline struct tcp_sock_val *sock_entry(struct sock *sk, bool owner, __u8 role)
{
	__u64 key = (__u64)sk;
	struct tcp_sock_val *v = bpf_map_lookup_elem(&socks, &key);
	if (v) {
		if (owner && v->tgid == 0)
			own(v);
		return v;
	}
	struct tcp_sock_val init = {};
	init.seq = __sync_fetch_and_add(&next_seq, 1) + 1;
	init.role = role;
	fill_addrs(&init, sk);
	if (owner)
		own(&init);
	if (bpf_map_update_elem(&socks, &key, &init, BPF_NOEXIST) && bpf_map_update_elem(&socks, &key, &init, BPF_ANY)) {
		count(TCP_CNT_MAP_FULL);
		return NULL;
	}
	count(TCP_CNT_SOCKS_CREATED);
	return bpf_map_lookup_elem(&socks, &key);
}

static __always_inline void emit(__u32 kind, struct sock *sk, struct tcp_sock_val *v)
{
	struct tcp_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(TCP_CNT_RB_DROPS);
		return;
	}
	e->kind = kind;
	e->pad = 0;
	e->sk = (__u64)sk;
	__builtin_memcpy(&e->val, v, sizeof(*v));
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void finish(struct sock *sk, struct tcp_sock_val *v)
{
	__u64 key = (__u64)sk;
	count(TCP_CNT_SOCKS_FINAL);
	emit(v->failed ? TCP_EV_FAILED_CONNECT : TCP_EV_CLOSE, sk, v);
	bpf_map_delete_elem(&socks, &key);
}

static __always_inline int on_length(struct trace_event_raw_sock_msg_length *ctx, bool rx)
{
	if (ctx->protocol != IPPROTO_TCP || ctx->ret <= 0)
		return 0;
	if (rx && (ctx->flags & MSG_PEEK))
		return 0;
	struct tcp_sock_val *v = sock_entry((struct sock *)ctx->sk, true, ROLE_UNKNOWN);
	if (!v)
		return 0;
	if (rx)
		__sync_fetch_and_add(&v->rx_bytes, ctx->ret);
	else
		__sync_fetch_and_add(&v->tx_bytes, ctx->ret);
	return 0;
}

SEC("tp/sock/sock_send_length")
int tcp_send_length(struct trace_event_raw_sock_msg_length *ctx)
{
	return on_length(ctx, false);
}

SEC("tp/sock/sock_recv_length")
int tcp_recv_length(struct trace_event_raw_sock_msg_length *ctx)
{
	return on_length(ctx, true);
}

SEC("tp/sock/inet_sock_set_state")
int tcp_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	struct sock *sk = (struct sock *)ctx->skaddr;
	int old = ctx->oldstate, new = ctx->newstate;
	struct tcp_sock_val *v;

	if (new == TCP_SYN_SENT) {
		/* connect(): process context, the owner is the current task */
		v = sock_entry(sk, true, ROLE_CLIENT);
		if (v) {
			v->role = ROLE_CLIENT;
			v->state_changes++;
		}
		return 0;
	}
	if (old == TCP_SYN_RECV && new == TCP_ESTABLISHED) {
		/* a passive open, in softirq: the owner comes with the first recv/send */
		v = sock_entry(sk, false, ROLE_SERVER);
		if (v)
			v->state_changes++;
		return 0;
	}
	__u64 key = (__u64)sk;
	v = bpf_map_lookup_elem(&socks, &key);
	if (!v)
		return 0;
	v->state_changes++;
	if (old == TCP_SYN_SENT && new == TCP_ESTABLISHED)
		fill_addrs(v, sk); /* the local port is chosen after SYN_SENT */
	if (new == TCP_CLOSE) {
		if (old == TCP_SYN_SENT)
			v->failed = 1;
		if (final_at_close)
			finish(sk, v);
	}
	return 0;
}

/* The socket is being freed: this is its last word (the application may read after
 * the state machine reached CLOSE, so CLOSE itself is too early). */
SEC("tp/tcp/tcp_destroy_sock")
int tcp_destroy(struct trace_event_raw_tcp_event_sk *ctx)
{
	__u64 key = (__u64)ctx->skaddr;
	struct tcp_sock_val *v = bpf_map_lookup_elem(&socks, &key);
	if (v)
		finish((struct sock *)ctx->skaddr, v);
	return 0;
}

SEC("tp/tcp/tcp_probe")
int tcp_probe(struct trace_event_raw_tcp_probe *ctx)
{
	__u64 key = (__u64)ctx->skaddr;
	struct tcp_sock_val *v = bpf_map_lookup_elem(&socks, &key);
	if (!v)
		return 0;
	__u32 srtt = ctx->srtt;
	__sync_fetch_and_add(&v->srtt_sum_us, srtt);
	__sync_fetch_and_add(&v->srtt_cnt, 1);
	if (v->max_epoch != epoch) {
		v->max_epoch = epoch;
		v->srtt_max_us = srtt;
	} else if (srtt > v->srtt_max_us) {
		v->srtt_max_us = srtt;
	}
	__u32 b = GALA_SRTT_BUCKETS - 1;
#pragma unroll
	for (__u32 i = 0; i < GALA_SRTT_BUCKETS - 1; i++) {
		if (srtt <= srtt_bounds[i]) {
			b = i;
			break;
		}
	}
	if (b < GALA_SRTT_BUCKETS)
		__sync_fetch_and_add(&v->srtt_hist[b], 1);
	v->snd_cwnd = ctx->snd_cwnd;
	if (ctx->snd_wnd == 0)
		__sync_fetch_and_add(&v->zero_snd_wnd, 1);
	if (ctx->rcv_wnd == 0)
		__sync_fetch_and_add(&v->zero_rcv_wnd, 1);
	struct tcp_sock *tp = (struct tcp_sock *)ctx->skaddr;
	v->segs_in = BPF_CORE_READ(tp, segs_in);
	v->segs_out = BPF_CORE_READ(tp, segs_out);
	return 0;
}

SEC("tp/tcp/tcp_retransmit_skb")
int tcp_retransmit(struct trace_event_raw_tcp_retransmit_skb *ctx)
{
	__u64 key = (__u64)ctx->skaddr;
	struct tcp_sock_val *v = bpf_map_lookup_elem(&socks, &key);
	if (v)
		__sync_fetch_and_add(&v->retrans, 1);
	return 0;
}

SEC("tp/tcp/tcp_send_reset")
int tcp_send_reset(struct trace_event_raw_tcp_send_reset *ctx)
{
	__u64 key = (__u64)ctx->skaddr;
	if (!key)
		return 0; /* a reset for no socket (closed port): nobody to attribute it to */
	struct tcp_sock_val *v = bpf_map_lookup_elem(&socks, &key);
	if (!v)
		return 0;
	__sync_fetch_and_add(&v->send_rsts, 1);
	emit(TCP_EV_SEND_RESET, (struct sock *)ctx->skaddr, v);
	return 0;
}

SEC("tp/tcp/tcp_receive_reset")
int tcp_receive_reset(struct trace_event_raw_tcp_event_sk *ctx)
{
	__u64 key = (__u64)ctx->skaddr;
	struct tcp_sock_val *v = bpf_map_lookup_elem(&socks, &key);
	if (!v)
		return 0;
	__sync_fetch_and_add(&v->recv_rsts, 1);
	emit(TCP_EV_RECV_RESET, (struct sock *)ctx->skaddr, v);
	return 0;
}

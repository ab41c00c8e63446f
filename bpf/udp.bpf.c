// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* udp probe (opt-in): bytes in and out and receive drops per UDP socket.
 *
 * Without kprobes there is no hook on UDP's own send and receive: the nearest are the
 * sock_send_length / sock_recv_length tracepoints, which run at every send and receive on
 * the host, TCP included. The programs return at once for anything but UDP, yet merely
 * running them costs a loaded TCP server about 2 % (see docs/bpf.md), hence opt-in.
 * Raw tracepoints: a classic one would first build the trace record for every TCP send
 * and receive too, only for us to look at one field of it. Aggregated in the kernel. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "udp.h"
#include "kread.h"

#define AF_INET 2
#define IPPROTO_UDP 17
#define MSG_PEEK 2

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct udp_sock_val);
} udp SEC(".maps");

static __u64 next_seq;
/* Sockets not counted because the map was full (an LRU: only when updates race). */
volatile __u64 map_full;

static __always_inline int on_udp_length(struct sock *sk, int ret, int flags, bool rx)
{
	if (ret <= 0 || KREAD(struct sock, sk, sk_protocol) != IPPROTO_UDP)
		return 0;
	if (rx && (flags & MSG_PEEK))
		return 0;
	__u64 key = (__u64)sk;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct udp_sock_val *u = bpf_map_lookup_elem(&udp, &key);
	if (!u || u->tgid != tgid) {
		/* new socket, or a freed one's address reused by another process */
		struct udp_sock_val init = {};
		init.seq = __sync_fetch_and_add(&next_seq, 1) + 1;
		init.tgid = tgid;
		init.family = BPF_CORE_READ(sk, __sk_common.skc_family);
		init.lport = BPF_CORE_READ(sk, __sk_common.skc_num);
		if (init.family == AF_INET) {
			/* BPF_CORE_READ_INTO reads sizeof(*dst): go through a 4-byte value */
			__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
			__builtin_memcpy(init.laddr, &l, 4);
		} else
			BPF_CORE_READ_INTO(&init.laddr, sk, __sk_common.skc_v6_rcv_saddr);
		bpf_get_current_comm(&init.comm, sizeof(init.comm));
		if (bpf_map_update_elem(&udp, &key, &init, BPF_ANY)) {
			__sync_fetch_and_add(&map_full, 1);
			return 0;
		}
		u = bpf_map_lookup_elem(&udp, &key);
		if (!u)
			return 0;
	}
	if (rx)
		__sync_fetch_and_add(&u->rx_bytes, ret);
	else
		__sync_fetch_and_add(&u->tx_bytes, ret);
	return 0;
}

SEC("raw_tp/sock_send_length")
int BPF_PROG(udp_send_length, struct sock *sk, int ret, int flags)
{
	return on_udp_length(sk, ret, flags, false);
}

SEC("raw_tp/sock_recv_length")
int BPF_PROG(udp_recv_length, struct sock *sk, int ret, int flags)
{
	return on_udp_length(sk, ret, flags, true);
}

/* Datagrams dropped on a socket this probe knows (receive buffer full, ...). */
SEC("tp/skb/kfree_skb")
int udp_kfree_skb(struct trace_event_raw_kfree_skb *ctx)
{
	struct sock *sk = (struct sock *)ctx->rx_sk;
	if (!sk)
		return 0;
	__u64 key = (__u64)sk;
	struct udp_sock_val *u = bpf_map_lookup_elem(&udp, &key);
	if (u)
		__sync_fetch_and_add(&u->drops, 1);
	return 0;
}

/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Structs shared by bpf/endpoint.bpf.c and src/collect/bpf/net/endpoint.rs (which uses
 * the skeleton's generated types). Counters are cumulative: user space takes deltas. */
#ifndef GALA_ENDPOINT_H
#define GALA_ENDPOINT_H

#define GALA_CONN_BUCKETS 10
/* Upper bounds (µs) of the connect latency histogram; the last bucket is everything above. */
#define GALA_CONN_BOUNDS 100, 250, 500, 1000, 5000, 10000, 100000, 1000000, 3000000

/* A listening port: (family << 16) | port. */
struct ep_port_val {
	__u64 passive_opens;  /* SYN_RECV -> ESTABLISHED children */
	__u64 synack_retrans; /* tcp:tcp_retransmit_synack */
	__u64 listen_drops;   /* skb dropped for TCP_LISTEN_OVERFLOW on this listener */
	__u32 tgid;           /* who called listen(), when seen live */
	__u32 backlog;        /* sk_max_ack_backlog at listen() */
	char comm[16];
};

/* Active opens of one process. */
struct ep_conn_val {
	__u64 active_opens;
	__u64 failed;
	__u64 syn_retrans;
	__u64 lat_sum_us;
	__u64 lat_cnt;
	__u64 lat_hist[GALA_CONN_BUCKETS];
	__u32 lat_max_us;
	__u32 max_epoch;
	char comm[16];
};

/* A socket in SYN_SENT. */
struct ep_connecting {
	__u64 ts;
	__u32 tgid;
	__u32 pad;
};

/* A UDP socket. */

enum gala_ep_counter {
	EP_CNT_MAP_FULL = 0,
	EP_CNT_MAX = 1,
};

#endif

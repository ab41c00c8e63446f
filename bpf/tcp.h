/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Structs shared by bpf/tcp.bpf.c and src/collect/bpf/tcp.rs (mirrored there with
 * #[repr(C)]; keep both in step). Every counter is cumulative over the socket's life:
 * user space takes deltas, so nothing is reset under the programs' feet. */
#ifndef GALA_TCP_H
#define GALA_TCP_H

#define GALA_SRTT_BUCKETS 10
/* Upper bounds (µs) of the srtt histogram buckets; the last bucket is everything above. */
#define GALA_SRTT_BOUNDS 50, 100, 200, 500, 1000, 5000, 10000, 50000, 200000

enum gala_role { ROLE_UNKNOWN = 0, ROLE_CLIENT = 1, ROLE_SERVER = 2 };

enum gala_tcp_event {
	TCP_EV_CLOSE = 1,          /* the socket is destroyed: its last numbers; it leaves the map */
	TCP_EV_FAILED_CONNECT = 2, /* SYN_SENT -> CLOSE; also final */
	TCP_EV_SEND_RESET = 3,
	TCP_EV_RECV_RESET = 4,
};

struct tcp_sock_val {
	__u64 seq; /* tells a reused sock pointer apart */
	__u64 rx_bytes;
	__u64 tx_bytes;
	__u64 segs_in;  /* tcp_sock counters, last seen */
	__u64 segs_out;
	__u64 srtt_sum_us;
	__u64 srtt_cnt;
	__u64 srtt_hist[GALA_SRTT_BUCKETS];
	__u64 zero_snd_wnd;
	__u64 zero_rcv_wnd;
	__u64 retrans;
	__u64 send_rsts;
	__u64 recv_rsts;
	__u64 state_changes;
	__u32 srtt_max_us;
	__u32 snd_cwnd;
	__u32 tgid; /* 0 until a process-context event names the owner */
	__u32 max_epoch; /* srtt_max_us belongs to this collection interval */
	__u16 lport;
	__u16 rport;
	__u8 laddr[16];
	__u8 raddr[16];
	__u8 family;
	__u8 role;
	__u8 failed; /* ended SYN_SENT -> CLOSE */
	__u8 pad;
	char comm[16];
};

struct tcp_event {
	__u32 kind;
	__u32 pad;
	__u64 sk;
	struct tcp_sock_val val;
};

/* Index of the per-CPU counters map. */
enum gala_tcp_counter {
	TCP_CNT_SOCKS_CREATED = 0,
	TCP_CNT_SOCKS_FINAL = 1, /* close events handed to the ring buffer or lost */
	TCP_CNT_RB_DROPS = 2,    /* ring buffer full: event lost */
	TCP_CNT_MAP_FULL = 3,    /* insert failed */
	TCP_CNT_MAX = 4,
};

#endif

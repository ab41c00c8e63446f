/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Structs shared by bpf/tcp.bpf.c and src/collect/bpf/net/tcp/ (which uses the
 * skeleton's generated types). Counters are cumulative over the socket's life: user
 * space takes deltas, so nothing is reset under the programs' feet. */
#ifndef GALA_TCP_H
#define GALA_TCP_H

enum gala_role { ROLE_UNKNOWN = 0, ROLE_CLIENT = 1, ROLE_SERVER = 2 };

enum gala_tcp_event {
	TCP_EV_CLOSE = 1,          /* the socket is destroyed: its final numbers */
	TCP_EV_FAILED_CONNECT = 2, /* SYN_SENT -> CLOSE; also final */
	TCP_EV_SEND_RESET = 3,
	TCP_EV_RECV_RESET = 4,
};

/* What the kernel keeps per socket, keyed by the sock pointer: who owns it, and the
 * rare events tcp_info does not count. Byte and segment counters are not here: user
 * space reads them from tcp_info (sock_diag) and the close event reads them from the
 * tcp_sock, so nothing runs per packet or per send/recv. */
struct tcp_sock_val {
	__u64 inode; /* the socket's inode (what sock_diag reports), 0 while it has no file */
	__u64 send_rsts;
	__u64 recv_rsts;
	__u64 state_changes;
	__u32 tgid; /* 0 until connect() or accept() names the owner */
	__u8 role;
	__u8 failed; /* ended SYN_SENT -> CLOSE */
	/* Addresses as of the last state change: by tcp_destroy_sock the local port is
	 * already released (inet_num is 0). */
	__u8 family;
	__u8 pad;
	__u16 lport;
	__u16 rport;
	__u8 laddr[16];
	__u8 raddr[16];
	char comm[16];
};

/* The tcp_sock's own counters and addresses, read when the socket is destroyed (or at
 * a reset, for the addresses). */
struct tcp_final {
	__u64 cookie; /* sk_cookie: 0 unless sock_diag (or someone) asked for it */
	__u64 bytes_sent;
	__u64 bytes_retrans;
	__u64 bytes_received;
	__u32 segs_in;
	__u32 segs_out;
	__u32 srtt_us; /* smoothed RTT, µs (tcp_sock.srtt_us >> 3) */
	__u32 snd_cwnd;
	__u32 total_retrans;
	__u32 snd_wnd;
	__u32 rcv_wnd;
	__u8 fin_rcvd; /* SOCK_DONE: the peer's FIN is counted in bytes_received */
	__u8 family;
	__u16 lport;
	__u16 rport;
	__u16 pad;
	__u8 laddr[16];
	__u8 raddr[16];
};

struct tcp_event {
	__u32 kind;
	__u32 has_entry; /* val is the socket's map entry (else zero: not seen since start) */
	struct tcp_sock_val val;
	struct tcp_final fin;
};

/* Index of the per-CPU counters map. */
enum gala_tcp_counter {
	TCP_CNT_SOCKS_CREATED = 0,
	TCP_CNT_SOCKS_FINAL = 1, /* close events handed to the ring buffer or lost */
	TCP_CNT_RB_DROPS = 2,    /* ring buffer full: event lost */
	TCP_CNT_MAP_FULL = 3,    /* insert failed: the socket is not attributed */
	TCP_CNT_MAX = 4,
};

#endif

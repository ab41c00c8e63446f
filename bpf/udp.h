/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The udp probe's per-socket value, shared by bpf/udp.bpf.c and src/collect/bpf/net/udp.rs
 * (which uses the skeleton's generated type). Counters are cumulative. */
#ifndef GALA_UDP_H
#define GALA_UDP_H

/* One UDP socket, by its address; `seq` tells a reused address from the socket before. */
struct udp_sock_val {
	__u64 seq;
	__u64 rx_bytes;
	__u64 tx_bytes;
	__u64 drops;
	__u32 tgid;
	__u16 lport;
	__u8 family;
	__u8 pad;
	__u8 laddr[16];
	char comm[16];
};

#endif

/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* Structs shared between bpf/l7.bpf.c and src/collect/l7/ (read with plain byte offsets
 * there, so keep the layout fixed: no implicit padding). */
#ifndef GALA_L7_H
#define GALA_L7_H

/* Payload prefix room per event; the `cap` tunable copies up to L7_MAX_CAP - 1. */
#define L7_MAX_CAP 256

/* Event types. */
#define L7_EV_DATA 1
#define L7_EV_CLOSE 2

/* Directions, as seen by the process doing the syscall. */
#define L7_DIR_EGRESS 0
#define L7_DIR_INGRESS 1

/* Roles, when the kernel saw the connection being made. */
#define L7_ROLE_UNKNOWN 0
#define L7_ROLE_CLIENT 1
#define L7_ROLE_SERVER 2

/* Counters in the `stats` per-CPU array. */
#define L7_STAT_DROPS 0     /* ring buffer full: event lost */
#define L7_STAT_EVENTS 1    /* events submitted */
#define L7_STAT_SOCKS 2     /* fds classified as TCP sockets */
#define L7_STAT_NR 4

/* What the kernel knows of one fd of one process (the `conns` map value). */
struct l7_conn {
	__u64 sk;         /* struct sock address: tells fd reuse apart */
	__u8 tcp;         /* 1 = TCP socket, 0 = anything else (negative cache) */
	__u8 role;        /* L7_ROLE_* */
	__u8 family;      /* AF_INET / AF_INET6 */
	__u8 mute;        /* set by user space: no protocol it knows, send only the close */
	__u16 lport;      /* host order */
	__u16 rport;      /* host order */
	__u8 laddr[16];   /* IPv4 in the first 4 bytes */
	__u8 raddr[16];
};

/* One record in the ring buffer: header then `cap` payload bytes. */
struct l7_event {
	__u64 ts_ns;      /* CLOCK_MONOTONIC: entry of a send, return of a receive */
	__u64 sk;
	__u32 tgid;
	__u32 tid;
	__s32 fd;
	__u32 len;        /* bytes the syscall moved (the whole message, not just the prefix) */
	__u16 cap;        /* payload bytes that follow */
	__u8 type;        /* L7_EV_* */
	__u8 dir;         /* L7_DIR_* */
	__u8 role;
	__u8 family;
	__u8 ssl;         /* plaintext from SSL_read/SSL_write */
	__u8 pad;
	__u16 lport;
	__u16 rport;
	__u8 laddr[16];
	__u8 raddr[16];
	char comm[16];    /* the process's name: short-lived clients are gone before /proc is read */
	__u8 data[L7_MAX_CAP];
};

#define L7_HDR_SIZE 92

#endif

/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* Structs shared between bpf/l7.bpf.c and src/collect/l7/ (read with plain byte offsets
 * there, so keep the layout fixed: no implicit padding). */
#ifndef GALA_L7_H
#define GALA_L7_H

/* Payload prefix room per event. The `cap` tunable copies up to 255 bytes; connections
 * user space marks `wide` (HTTP/2: header blocks are longer) get L7_WIDE_CAP. The room is
 * twice the widest copy so that the verifier sees a gathered copy (several iovecs, each at
 * an offset below L7_WIDE_CAP, of fewer than L7_WIDE_CAP bytes) stay inside it. */
#define L7_WIDE_CAP 1023
#define L7_MAX_CAP 2048
/* iovecs gathered into one event's payload (writev/sendmsg). */
#define L7_MAX_IOV 32

/* Event types. */
#define L7_EV_DATA 1   /* a payload of a connection user space pairs */
#define L7_EV_CLOSE 2
#define L7_EV_KCONN 3  /* the kernel took a connection for in-kernel pairing (no payload) */
#define L7_EV_FLOW 4   /* a proxy forwarded a request: data is a struct l7_flow */

/* Directions, as seen by the process doing the syscall. */
#define L7_DIR_EGRESS 0
#define L7_DIR_INGRESS 1

/* Roles, when the kernel saw the connection being made. */
#define L7_ROLE_UNKNOWN 0
#define L7_ROLE_CLIENT 1
#define L7_ROLE_SERVER 2

/* Protocols the kernel pairs itself (the others are paired in user space). */
#define L7_PROTO_NONE 0
#define L7_PROTO_HTTP 1
#define L7_PROTO_REDIS 2

/* How a connection's payloads are handled (struct l7_conn.mode). */
#define L7_MODE_NEW 0    /* not classified yet: payloads go to user space, the kernel tries Redis/HTTP */
#define L7_MODE_KERNEL 1 /* Redis or HTTP, paired in the kernel: no payload events */
#define L7_MODE_USER 2   /* user space pairs it from payload events */

/* req_ts of a request pending untimed (no real time is this small). */
#define L7_UNTIMED 1

/* Payloads of a new connection the kernel tries to classify before leaving it to user space. */
#define L7_KERNEL_TRIES 4

/* Counters in the `stats` per-CPU array. */
#define L7_STAT_DROPS 0     /* ring buffer full: event lost */
#define L7_STAT_EVENTS 1    /* events submitted */
#define L7_STAT_SOCKS 2     /* TCP sockets of processes seen doing I/O */
#define L7_STAT_TO_USER 3   /* kernel-paired connections handed to user space (pipelining) */
#define L7_STAT_AGG_FULL 4  /* aggregate map full: a request not counted */
#define L7_STAT_UNPARSED 5  /* TCP I/O by a syscall whose buffer is not read (sendfile, splice, io_uring, *mmsg) */
#define L7_STAT_IO 6        /* runs of the socket I/O programs (any socket): what timing's share is sized by */
#define L7_STAT_NR 8

/* Latency histogram of the in-kernel aggregates: bucket 0 below 1024 ns, then 8 linear
 * sub-buckets per power of two from 2^10 ns (bucket 1 + (msb - 10) * 8 + next 3 bits). */
#define L7_HIST 256

/* Method or command name kept per request (upper-case letters, NUL-padded). */
#define L7_METHOD_LEN 24

/* What the kernel knows of one TCP socket (the `conns` map value, keyed by the struct
 * sock address). Made at the handshake (role known) or at the first payload of a
 * connection that predates the probe (role from the traffic); deleted when the socket
 * reaches TCP_CLOSE. */
struct l7_conn {
	__u64 sk;         /* struct sock address (the key) */
	__u64 req_ts;     /* in-kernel pairing: start of the request waiting for its response, 0 none,
			   * L7_UNTIMED one that is counted but not timed */
	__u8 seen;        /* 1 once a process's I/O filled in addresses, tgid and fd */
	__u8 role;        /* L7_ROLE_* */
	__u8 family;      /* AF_INET / AF_INET6 */
	__u8 mute;        /* set by user space: no protocol it knows, send only the close */
	__u8 mode;        /* L7_MODE_* */
	__u8 proto;       /* L7_PROTO_* when mode is L7_MODE_KERNEL */
	__u8 tries;       /* payloads the kernel tried to classify */
	__u8 wide;        /* set by user space: copy up to L7_WIDE_CAP bytes of each payload */
	__u16 lport;      /* host order */
	__u16 rport;      /* host order */
	__u8 laddr[16];   /* IPv4 in the first 4 bytes */
	__u8 raddr[16];
	char method[L7_METHOD_LEN]; /* of the pending request */
	__u32 tgid;       /* the process whose I/O was seen first: events and the close name it */
	__s32 fd;         /* its fd then (from the syscall's registers) */
	__u32 skip;       /* requests still to pair untimed before the next timed one (time_every) */
	__u64 rx_ts;      /* when the last receive returned: older send times are stale */
};

/* Key of an in-kernel SLI aggregate: one per (process, role, server, protocol, method). */
struct l7_agg_key {
	__u32 tgid;
	__u8 role;        /* L7_ROLE_CLIENT or L7_ROLE_SERVER */
	__u8 proto;       /* L7_PROTO_* */
	__u8 family;
	__u8 pad;
	__u16 port;       /* the server's, host order */
	__u16 pad2;
	__u8 addr[16];    /* the server's */
	char method[L7_METHOD_LEN];
};

/* Cumulative per-CPU counts of one aggregate: user space sums the CPUs and diffs. */
struct l7_agg {
	__u64 req;
	__u64 resp;
	__u64 err;
	__u64 status[5];  /* HTTP responses by class 1xx..5xx */
	__u64 lat_sum;    /* ns, of the requests timed (the histogram's count) */
	__u64 lat_max;    /* ns, since the entry was made */
	__u32 hist[L7_HIST];
};

/* Payload of an L7_EV_FLOW event: a proxy thread read a request on a connection it
 * accepted and sent one of the same protocol on a connection it made. */
struct l7_flow {
	__u8 client[16];
	__u8 virt[16];
	__u8 backend[16];
	__u64 in_sk;
	__u16 vport;
	__u16 bport;
	__u8 in_family;
	__u8 out_family;
	__u8 proto;
	__u8 pad;
};

/* One record in the ring buffer: header then `cap` payload bytes. */
struct l7_event {
	__u64 ts_ns;      /* CLOCK_MONOTONIC: when the bytes moved (see bpf/l7.bpf.c) */
	__u64 sk;
	__u32 tgid;
	__u32 tid;
	__s32 fd;
	__u32 len;        /* bytes the send or receive moved (not just the prefix) */
	__u16 cap;        /* payload bytes that follow */
	__u8 type;        /* L7_EV_* */
	__u8 dir;         /* L7_DIR_* */
	__u8 role;
	__u8 family;
	__u8 ssl;         /* plaintext from SSL_read/SSL_write */
	__u8 proto;       /* L7_EV_KCONN: L7_PROTO_* */
	__u16 lport;
	__u16 rport;
	__u8 laddr[16];
	__u8 raddr[16];
	char comm[16];    /* the process's name: short-lived clients are gone before /proc is read */
	__u8 data[L7_MAX_CAP];
};

#define L7_HDR_SIZE 92

#endif

// SPDX-License-Identifier: GPL-2.0 OR MIT
/* l7: application SLIs from TCP socket I/O.
 *
 * Redis and HTTP/1.x connections are paired in the kernel: the first payloads of a
 * connection are classified here, then each request's start time and method are kept in
 * the connection's map entry, and its response updates a per-CPU aggregate per (process,
 * role, server, protocol, method) — counts, errors, HTTP status classes, latency sum, max
 * and histogram — which user space reads and diffs each interval. Nothing per request
 * crosses to user space. Other connections (PostgreSQL, MySQL, TLS plaintext from the
 * OpenSSL uprobes, pipelined Redis, unknown protocols until user space mutes them) send
 * a bounded payload prefix per send or receive to the ring buffer, and user space pairs
 * them.
 *
 * No syscall tracepoint: any attached one puts every syscall of every task on the slow
 * path (≈ +50 ns a syscall here), and a classic tracepoint builds a perf record before
 * its program runs. Instead raw tracepoints in the socket layer, which fire only for
 * socket I/O, in the process's context, once the data moved (sock_send_length in
 * sock_sendmsg_nosec, sock_recv_length in sock_recvmsg_nosec): the socket is an
 * argument, and the user buffer and fd are the syscall's, read back from the task's
 * saved registers (bpf_task_pt_regs). Connections are keyed by the struct sock address;
 * the handshake (inet_sock_set_state) tells the role, TCP_CLOSE ends the entry.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "l7.h"
#include "kread.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define MSG_PEEK 2
#define MSG_ERRQUEUE 0x2000
/* A proxy forwards within this long of reading the request. */
#define LB_WINDOW_NS 5000000000ULL

/* The syscalls whose buffer argument the I/O hooks read. */
#if defined(__TARGET_ARCH_x86)
#define SYSCALL_NR(regs) ((regs)->orig_ax)
#define NR_READ 0
#define NR_WRITE 1
#define NR_READV 19
#define NR_WRITEV 20
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47
#elif defined(__TARGET_ARCH_arm64)
#define SYSCALL_NR(regs) ((regs)->syscallno)
#define NR_READ 63
#define NR_WRITE 64
#define NR_READV 65
#define NR_WRITEV 66
#define NR_SENDTO 206
#define NR_RECVFROM 207
#define NR_SENDMSG 211
#define NR_RECVMSG 212
#else
#error "l7: syscall numbers for this architecture"
#endif

_Static_assert(__builtin_offsetof(struct l7_event, data) == L7_HDR_SIZE, "header layout");
_Static_assert(sizeof(struct l7_conn) == 104, "conn layout");
_Static_assert(sizeof(struct l7_agg_key) == 52, "agg key layout");
_Static_assert(sizeof(struct l7_flow) == 64, "flow layout");

/* Payload bytes copied per send or receive (< L7_MAX_CAP), set before load. */
const volatile __u32 cap = 128;
/* Our own process, never reported. */
const volatile __u32 self_tgid = 0;

/* Timing (src/collect/l7/timing.rs). Every request is counted, always: the socket I/O
 * programs stay attached. Above `--l7-max-rate` socket I/O a second, user space sets
 * this to N > 1 and only one request in N of each kernel-paired connection is timed;
 * the others skip the clock reads (a third of a run's cost on the development VM). 0 or
 * 1: every request is timed. */
volatile __u32 time_every;

/* Submitted without a wakeup (BPF_RB_NO_WAKEUP): user space drains it on a 10 ms timer and
 * never sleeps on it, and a wakeup is an irq_work — a self-interrupt, on a virtual machine
 * a VM exit of several microseconds — per event. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

/* TCP connections by struct sock address. A plain hash (not LRU: its eviction lock
 * serialised every CPU's I/O): entries are made at the handshake or at first sight,
 * updated in place, deleted when the socket reaches TCP_CLOSE (which every TCP socket
 * does, also when its process exits without close()). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct l7_conn);
} conns SEC(".maps");

/* In-kernel SLI aggregates, cumulative; user space diffs them. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct l7_agg_key);
	__type(value, struct l7_agg);
} aggs SEC(".maps");

/* A zeroed aggregate to create entries from (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l7_agg);
} agg_zero SEC(".maps");

/* The last request a thread read on a connection it accepted, for proxy flows. */
struct inbound {
	__u64 ts_ns;
	__u64 sk;
	__u8 client[16];
	__u8 local[16];
	__u16 lport;
	__u8 family;
	__u8 proto;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct inbound);
} inbounds SEC(".maps");

/* An SSL_read/SSL_write in flight; the socket I/O inside it tells the connection. */
struct ssl_call {
	__u64 ts_ns;
	__u64 ssl;
	__u64 buf;
	__u64 sk; /* 0 until known */
	__u8 dir;
	__u8 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct ssl_call);
} ssl_active SEC(".maps");

/* SSL* → struct sock address, learnt from the socket I/O inside SSL calls: an SSL_read
 * served from OpenSSL's own buffer does none. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} ssl_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, L7_STAT_NR);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Staging area: the event is built here and sent with only the bytes it uses; its
 * payload room doubles as the parsers' buffer. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l7_event);
} scratch SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &which);
	if (v)
		*v += 1;
}

/* First process I/O on `sk` (`c`: its entry if the handshake made one, else NULL):
 * fills in the entry and returns it, or NULL when this is not a process's TCP socket.
 * A socket without a file is a kernel socket doing I/O in some process's context
 * (not that process's I/O); one already in TCP_CLOSE is over (its end was reported). */
static __always_inline struct l7_conn *learn_sk(struct sock *sk, struct l7_conn *c, __u32 tgid,
						__s32 fd)
{
	__u64 key = (__u64)sk;
	if (!c) {
		__u16 family = KREAD(struct sock, sk, __sk_common.skc_family);
		if (family != AF_INET && family != AF_INET6)
			return NULL;
		if (KREAD(struct sock, sk, sk_protocol) != IPPROTO_TCP ||
		    KREAD(struct sock, sk, __sk_common.skc_state) == TCP_CLOSE)
			return NULL;
	}
	struct socket *so = KREAD(struct sock, sk, sk_socket);
	if (!so || !KREAD(struct socket, so, file)) {
		if (c)
			bpf_map_delete_elem(&conns, &key);
		return NULL;
	}
	struct l7_conn fresh = {};
	if (c)
		fresh.role = c->role;
	__u16 family = KREAD(struct sock, sk, __sk_common.skc_family);
	fresh.sk = key;
	fresh.seen = 1;
	fresh.tgid = tgid;
	fresh.fd = fd;
	/* This first I/O may be a send: what xmit time the socket has is older. */
	fresh.rx_ts = bpf_ktime_get_ns();
	fresh.family = family;
	fresh.lport = KREAD(struct sock, sk, __sk_common.skc_num);
	fresh.rport = bpf_ntohs(KREAD(struct sock, sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		bpf_core_read(fresh.laddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(fresh.raddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(fresh.laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(fresh.raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	count(L7_STAT_SOCKS);
	bpf_map_update_elem(&conns, &key, &fresh, BPF_ANY);
	return bpf_map_lookup_elem(&conns, &key);
}

/* The connection's identity, as every record about it carries it. */
static __always_inline void copy_conn_identity(struct l7_event *e, const struct l7_conn *c)
{
	e->sk = c->sk;
	e->role = c->role;
	e->family = c->family;
	e->proto = c->proto;
	e->lport = c->lport;
	e->rport = c->rport;
	__builtin_memcpy(e->laddr, c->laddr, 16);
	__builtin_memcpy(e->raddr, c->raddr, 16);
}

/* `ts_ns`: when the bytes moved (see io_time()). */
/* Copies up to `want` bytes of what a send or receive moved (`len`) into the event: from
 * one user buffer, or gathered from an iovec array (writev/sendmsg, in order, so that a
 * message written as header + body pieces — gRPC writes each HPACK field's name and
 * value as iovecs of their own — is seen whole). The bytes copied. */
static __always_inline __u32 copy_payload(struct l7_event *e, __u32 want, const void *ubuf,
					  const struct iovec *iov, __u32 nr_iov, __s64 len)
{
	if (len < want)
		want = len > 0 ? (__u32)len : 0;
	__u32 n = 0;
	if (ubuf && want) {
		n = want;
		/* Keep the bound visible to the verifier: clang would otherwise reuse the
		 * unbounded `len` register. */
		asm volatile("%0 &= 0x3ff" : "+r"(n));
		if (bpf_probe_read_user(e->data, n, ubuf) != 0)
			n = 0;
	} else if (iov && want) {
		for (__u32 i = 0; i < L7_MAX_IOV && i < nr_iov && n < want; i++) {
			struct iovec v = {};
			if (bpf_probe_read_user(&v, sizeof(v), &iov[i]))
				break;
			__u32 k = want - n;
			if (v.iov_len < k)
				k = v.iov_len;
			__u32 at = n;
			asm volatile("%0 &= 0x3ff" : "+r"(at));
			asm volatile("%0 &= 0x3ff" : "+r"(k));
			if (k && bpf_probe_read_user(e->data + at, k, v.iov_base) != 0)
				break;
			n = at + k;
		}
	}
	return n;
}

static __always_inline void emit_iov(struct l7_event *e, struct l7_conn *c, __u64 ts_ns, __u32 tgid,
				     __u32 tid, __s32 fd, __u8 type, __u8 dir, __u8 ssl,
				     const void *ubuf, const struct iovec *iov, __u32 nr_iov, __s64 len)
{
	e->ts_ns = ts_ns;
	copy_conn_identity(e, c);
	e->tgid = tgid;
	e->tid = tid;
	e->fd = fd;
	e->len = len > 0 ? (__u32)len : 0;
	e->type = type;
	e->dir = dir;
	e->ssl = ssl;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	__u32 n = copy_payload(e, c->wide ? L7_WIDE_CAP : cap, ubuf, iov, nr_iov, len);
	/* The HTTP/2 client preface (h2c, or the plaintext after ALPN h2): the header
	 * blocks that follow, in this payload or the next, are longer than `cap`. Copy more
	 * of this connection's payloads from now on, this one too (the next may come before
	 * user space could mark the connection). */
	if (!c->wide && n >= 8 && e->data[0] == 'P' && e->data[1] == 'R' && e->data[2] == 'I' &&
	    e->data[3] == ' ' && e->data[4] == '*' && e->data[5] == ' ' && e->data[6] == 'H' &&
	    e->data[7] == 'T') {
		c->wide = 1;
		if (len > n)
			n = copy_payload(e, L7_WIDE_CAP, ubuf, iov, nr_iov, len);
	}
	asm volatile("%0 &= 0x7ff" : "+r"(n));
	e->cap = n;
	__u64 size = L7_HDR_SIZE + n;
	if (bpf_ringbuf_output(&events, e, size, BPF_RB_NO_WAKEUP) != 0)
		count(L7_STAT_DROPS);
	else
		count(L7_STAT_EVENTS);
}

static __always_inline void emit(struct l7_event *e, struct l7_conn *c, __u64 ts_ns, __u32 tgid,
				 __u32 tid, __s32 fd, __u8 type, __u8 dir, __u8 ssl,
				 const void *ubuf, __s64 len)
{
	emit_iov(e, c, ts_ns, tgid, tid, fd, type, dir, ssl, ubuf, NULL, 0, len);
}

static __always_inline struct l7_event *scratch_event(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch, &zero);
}

/* ---- In-kernel parsers: a few bytes of the payload, at fixed offsets. ---- */

/* Bytes of a payload read into the scratch buffer for the parsers. */
#define PEEK 48
/* Room for one RESP element header and a command name. */
#define ELEM 40

/* Where the parsers work in the scratch event's payload room. */
#define P_ELEM 64   /* one RESP element header, read from user memory */
#define P_NAME 128  /* the command name found */

/* The parsers below are global functions: the verifier checks each once, not once per
 * call site and path (inlined, they took exit_read past a million instructions). */

/* `<type><digits>\r\n` at e->data[at]: (index after the line) << 32 | number, or -1. */
__noinline __s64 resp_num(struct l7_event *e, __u32 at)
{
	if (!e)
		return -1;
	__u32 v = 0;
	at &= 127;
	for (int i = 1; i < 11; i++) {
		__u8 ch = e->data[at + i];
		if (ch >= '0' && ch <= '9') {
			v = v * 10 + (ch - '0');
			continue;
		}
		if (ch == '\r' && i > 1 && e->data[at + i + 1] == '\n')
			return ((__s64)(i + 2) << 32) | v;
		return -1;
	}
	return -1;
}

/* A Redis command name at e->data[at], `len` bytes, as a method in e->data[P_NAME]:
 * upper-case letters, else left empty (user space names it OTHER). */
__noinline int copy_name(struct l7_event *e, __u32 at, __u32 len)
{
	if (!e || len == 0 || len > L7_METHOD_LEN)
		return 0;
	at &= 127;
	for (int j = 0; j < L7_METHOD_LEN; j++) {
		if (j >= len)
			break;
		__u8 ch = e->data[at + j];
		if (ch >= 'a' && ch <= 'z')
			ch -= 'a' - 'A';
		if (ch < 'A' || ch > 'Z') {
			__builtin_memset(e->data + P_NAME, 0, L7_METHOD_LEN);
			return 0;
		}
		e->data[P_NAME + j] = ch;
	}
	return 1;
}

/* A Redis request (an array of bulk strings) whose first PEEK bytes are in e->data, of
 * the `len` bytes at `base`: 0 when it is not one, 1 when the payload holds exactly one
 * command (or one that the end of this syscall cuts), 2 when more bytes follow the first
 * command (pipelining), 3 when it has too many arguments to walk here. The command name goes
 * to e->data[P_NAME]. Each argument header is read from user memory at its offset, so
 * values of any size are stepped over without being read. */
__noinline int redis_request(struct l7_event *e, __u64 base, __u32 len, __u32 peeked)
{
	if (!e)
		return 0;
	__builtin_memset(e->data + P_NAME, 0, L7_METHOD_LEN);
	if (e->data[0] != '*')
		return 0;
	__s64 r = resp_num(e, 0);
	if (r < 0)
		return 0;
	__u32 argc = (__u32)r;
	__u64 off = (__u64)r >> 32;
	if (argc == 0)
		return 0;
	if (argc > 16)
		return 3;
	for (int i = 0; i < 16; i++) {
		if (i >= argc)
			break;
		if (off >= len)
			return 1;
		/* The header from the bytes already peeked when its line ends there (the
		 * zeros after them stop the number), else from user memory. */
		__u32 at = off;
		__s64 h = -1;
		if (off < peeked) {
			if (e->data[off & 63] != '$')
				return i ? 2 : 0;
			h = resp_num(e, off);
		}
		if (h < 0) {
			__u32 m = len - off;
			if (m > ELEM)
				m = ELEM;
			__builtin_memset(e->data + P_ELEM, 0, ELEM + 16);
			asm volatile("%0 &= 0x3f" : "+r"(m));
			if (bpf_probe_read_user(e->data + P_ELEM, m, (void *)(base + off)) != 0)
				return 1;
			if (e->data[P_ELEM] != '$')
				return i ? 2 : 0;
			h = resp_num(e, P_ELEM);
			if (h < 0)
				return m < 13 ? 1 : (i ? 2 : 0);
			at = P_ELEM;
		}
		__u32 n = (__u32)h;
		__u32 he = (__u64)h >> 32;
		if (i == 0)
			copy_name(e, at + he, n);
		off += he + (__u64)n + 2;
	}
	return off >= len ? 1 : 2;
}

/* A Redis reply starts with a RESP2/RESP3 type byte; `>` (a push) answers nothing. */
static __always_inline bool redis_reply(__u8 t)
{
	switch (t) {
	case '+': case '-': case ':': case '$': case '*': case '_': case ',':
	case '#': case '!': case '=': case '(': case '%': case '~': case '|':
		return true;
	}
	return false;
}

/* Letters packed little-endian, as http_request() builds them. */
#define M3(a, b, c) ((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16)
#define M4(a, b, c, d) (M3(a, b, c) | (__u64)(d) << 24)
#define M5(a, b, c, d, e) (M4(a, b, c, d) | (__u64)(e) << 32)
#define M6(a, b, c, d, e, f) (M5(a, b, c, d, e) | (__u64)(f) << 40)
#define M7(a, b, c, d, e, f, g) (M6(a, b, c, d, e, f) | (__u64)(g) << 48)

/* An HTTP/1.x request line: `METHOD SP target` with one of the nine methods (so that
 * SMTP's `EHLO host` is not taken for one, nor the HTTP/2 preface `PRI * HTTP/2.0`:
 * HTTP/2 is paired per stream in user space); 1 with the method, else 0. */
static __always_inline int http_request(const __u8 *b, __u32 len, char *method)
{
	int sp = -1;
	__u64 v = 0;
#pragma unroll
	for (int j = 0; j < 8; j++) {
		__u8 ch = b[j];
		if (ch == ' ') {
			sp = j;
			break;
		}
		if (ch < 'A' || ch > 'Z')
			return 0;
		method[j] = ch;
		v |= (__u64)ch << (8 * j);
	}
	if (sp < 3 || len < (__u32)sp + 2)
		return 0;
	switch (v) {
	case M3('G', 'E', 'T'): case M3('P', 'U', 'T'): case M4('P', 'O', 'S', 'T'):
	case M4('H', 'E', 'A', 'D'): case M5('P', 'A', 'T', 'C', 'H'): case M5('T', 'R', 'A', 'C', 'E'):
	case M6('D', 'E', 'L', 'E', 'T', 'E'): case M7('O', 'P', 'T', 'I', 'O', 'N', 'S'):
	case M7('C', 'O', 'N', 'N', 'E', 'C', 'T'):
		break;
	default:
		return 0;
	}
	__u8 t = b[(sp + 1) & 15];
	if (t != '/' && t != '*' && !(t >= 'a' && t <= 'z') && !(t >= '0' && t <= '9'))
		return 0;
	return 1;
}

/* `HTTP/1.x NNN`: the status, or 0. */
static __always_inline __u32 http_status(const __u8 *b, __u32 len)
{
	if (len < 12 || b[0] != 'H' || b[1] != 'T' || b[2] != 'T' || b[3] != 'P' || b[4] != '/' ||
	    b[5] != '1' || b[6] != '.' || b[8] != ' ')
		return 0;
	__u32 s = 0;
#pragma unroll
	for (int i = 9; i < 12; i++) {
		if (b[i] < '0' || b[i] > '9')
			return 0;
		s = s * 10 + (b[i] - '0');
	}
	return s;
}

/* The search for the empty line ending an HTTP header block, one bpf_loop step at a
 * time (a plain loop's paths multiply in the verifier: each step moves 1 or 4 bytes). */
struct crlf2 {
	__u32 n;     /* bytes of e->data to search */
	__u32 at;    /* the window's start: where `\r\n\r\n` is when found */
	bool found;
};

/* `\r\n\r\n` at the window: when the window's last byte is neither CR nor LF, no match
 * can include it, so the window moves past it (header text is mostly letters: about
 * n / 4 steps). Each step moves at least one byte: at most n steps. */
static long crlf2_step(__u64 k, struct crlf2 *f)
{
	struct l7_event *e = scratch_event();
	__u32 i = f->at;
	if (!e || i + 4 > f->n)
		return 1;
	__u8 last = e->data[(i + 3) & 0x3ff];
	if (last != '\n' && last != '\r') {
		f->at = i + 4;
		return 0;
	}
	if (last == '\n' && e->data[i & 0x3ff] == '\r' && e->data[(i + 1) & 0x3ff] == '\n' &&
	    e->data[(i + 2) & 0x3ff] == '\r') {
		f->found = true;
		return 1;
	}
	f->at = i + 1;
	return 0;
}

/* Whether another HTTP request follows the first one's header block in a payload of
 * `len` bytes at `base` whose first `peeked` bytes are in e->data (pipelining: several
 * requests in one write, or read at once by a server). The header block ends at the
 * first empty line, found within the first L7_WIDE_CAP bytes; what follows must start
 * like a request line. A body is not stepped over (a request after a body is not seen
 * here), nor is a request whose line starts within 16 bytes of the bytes read. */
__noinline int http_pipelined(struct l7_event *e, __u64 base, __u32 len, __u32 peeked)
{
	/* `GET / HTTP/1.1\r\n\r\n` is 18 bytes: one request and nothing after it. */
	if (!e || len <= 18 + 16)
		return 0;
	__u32 n = len < L7_WIDE_CAP ? len : L7_WIDE_CAP;
	if (n > peeked) {
		asm volatile("%0 &= 0x3ff" : "+r"(n));
		if (bpf_probe_read_user(e->data, n, (void *)base) != 0)
			return 0;
	}
	struct crlf2 f = {.n = n};
	bpf_loop(L7_WIDE_CAP, crlf2_step, &f, 0);
	__u32 i = f.at;
	bool found = f.found;
	__u32 next = i + 4;
	if (!found || next + 16 > n)
		return 0;
	char method[L7_METHOD_LEN] = {};
	return http_request(e->data + (next & 0x3ff), n - next, method);
}

/* ---- In-kernel aggregates. ---- */

static __always_inline __u32 msb64(__u64 v)
{
	__u32 r = 0;
	if (v >> 32) {
		v >>= 32;
		r += 32;
	}
	if (v >> 16) {
		v >>= 16;
		r += 16;
	}
	if (v >> 8) {
		v >>= 8;
		r += 8;
	}
	if (v >> 4) {
		v >>= 4;
		r += 4;
	}
	if (v >> 2) {
		v >>= 2;
		r += 2;
	}
	if (v >> 1)
		r += 1;
	return r;
}

static __always_inline __u32 hist_index(__u64 ns)
{
	if (ns < 1024)
		return 0;
	__u32 msb = msb64(ns);
	__u32 i = 1 + (msb - 10) * 8 + ((ns >> (msb - 3)) & 7);
	return i < L7_HIST ? i : L7_HIST - 1;
}

static __always_inline struct l7_agg *agg_of(struct l7_conn *c, __u32 tgid, const char *method)
{
	struct l7_agg_key k = {};
	k.tgid = tgid;
	k.role = c->role;
	k.proto = c->proto;
	k.family = c->family;
	if (c->role == L7_ROLE_SERVER) {
		k.port = c->lport;
		__builtin_memcpy(k.addr, c->laddr, 16);
	} else {
		k.port = c->rport;
		__builtin_memcpy(k.addr, c->raddr, 16);
	}
	__builtin_memcpy(k.method, method, L7_METHOD_LEN);
	struct l7_agg *a = bpf_map_lookup_elem(&aggs, &k);
	if (a)
		return a;
	__u32 zero = 0;
	struct l7_agg *z = bpf_map_lookup_elem(&agg_zero, &zero);
	if (!z)
		return NULL;
	if (bpf_map_update_elem(&aggs, &k, z, BPF_NOEXIST) != 0) {
		a = bpf_map_lookup_elem(&aggs, &k); /* another CPU made it */
		if (!a)
			count(L7_STAT_AGG_FULL);
		return a;
	}
	return bpf_map_lookup_elem(&aggs, &k);
}

/* Proxy flows: a thread that read a request on a connection it accepted and then sends
 * one of the same protocol on a connection it made is forwarding it. `ts`: the request's
 * time; 0 when it is not timed, and then the socket's tcp_mstamp stands in (µs of the
 * same clock, refreshed by the request's own segments on a server): the window is 5 s,
 * and a clock read is what an untimed request saves. */
static __always_inline void lb(struct task_struct *task, struct sock *sk, struct l7_event *e,
			       struct l7_conn *c, __u32 tgid, __u32 tid, __s32 fd, __u64 ts)
{
	if (!ts)
		ts = KREAD(struct tcp_sock, sk, tcp_mstamp) * 1000;
	if (c->role == L7_ROLE_SERVER) {
		struct inbound *in =
			bpf_task_storage_get(&inbounds, task, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!in)
			return;
		in->ts_ns = ts;
		in->sk = c->sk;
		__builtin_memcpy(in->client, c->raddr, 16);
		__builtin_memcpy(in->local, c->laddr, 16);
		in->lport = c->lport;
		in->family = c->family;
		in->proto = c->proto;
		return;
	}
	struct inbound *in = bpf_task_storage_get(&inbounds, task, NULL, 0);
	if (!in || !in->ts_ns || in->proto != c->proto || (__s64)(ts - in->ts_ns) > (__s64)LB_WINDOW_NS)
		return;
	in->ts_ns = 0;
	struct l7_flow *f = (void *)e->data;
	__builtin_memcpy(f->client, in->client, 16);
	__builtin_memcpy(f->virt, in->local, 16);
	__builtin_memcpy(f->backend, c->raddr, 16);
	f->in_sk = in->sk;
	f->vport = in->lport;
	f->bport = c->rport;
	f->in_family = in->family;
	f->out_family = c->family;
	f->proto = c->proto;
	f->pad = 0;
	e->ts_ns = ts;
	copy_conn_identity(e, c);
	e->tgid = tgid;
	e->tid = tid;
	e->fd = fd;
	e->len = 0;
	e->cap = sizeof(struct l7_flow);
	e->type = L7_EV_FLOW;
	e->dir = L7_DIR_EGRESS;
	e->ssl = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (bpf_ringbuf_output(&events, e, L7_HDR_SIZE + sizeof(struct l7_flow), BPF_RB_NO_WAKEUP) != 0)
		count(L7_STAT_DROPS);
	else
		count(L7_STAT_EVENTS);
}

/* The connection is paired in user space from this payload on (this one included).
 * `pipelined`: several messages in one payload, each to be counted there, so copy up to
 * L7_WIDE_CAP bytes of each payload instead of `cap` (as for HTTP/2), this one too: 16
 * pipelined Redis commands are ≈ 600-750 bytes. */
static __always_inline void to_user(struct l7_conn *c, bool pipelined)
{
	c->mode = L7_MODE_USER;
	if (pipelined)
		c->wide = 1;
	count(L7_STAT_TO_USER);
}

/* A request pending in the kernel that will get no response here (the connection
 * closes, or goes to user space): counted as a request alone. */
static __always_inline void count_unanswered(struct l7_conn *c, __u32 tgid)
{
	if (!c->req_ts)
		return;
	c->req_ts = 0;
	struct l7_agg *a = agg_of(c, tgid, c->method);
	if (a)
		a->req += 1;
}

/* Pairs one payload (its first bytes in e->data) of a connection in L7_MODE_KERNEL.
 * False when the connection goes to user space from this payload on: a request sent
 * while one is pending, or several in one payload (pipelining). */
static __always_inline bool kpair(struct task_struct *task, struct sock *sk, struct l7_event *e,
				  struct l7_conn *c, __u32 tgid, __u32 tid, __s32 fd, __u8 dir,
				  const void *base, __u32 len, __u64 ts)
{
	__u8 *b = e->data;
	bool request = (c->role == L7_ROLE_CLIENT) == (dir == L7_DIR_EGRESS);
	if (request) {
		char method[L7_METHOD_LEN] = {};
		int r;
		if (c->proto == L7_PROTO_REDIS) {
			r = redis_request(e, (__u64)base, len, len < PEEK ? len : PEEK);
			__builtin_memcpy(method, e->data + P_NAME, L7_METHOD_LEN);
		} else {
			r = http_request(b, len, method);
			/* on_io read up to L7_WIDE_CAP bytes of an HTTP request. */
			if (r == 1 && http_pipelined(e, (__u64)base, len, len < L7_WIDE_CAP ? len : L7_WIDE_CAP))
				r = 2;
		}
		if (r == 0)
			return true; /* a continuation: a body, the rest of a long value */
		if (r >= 2 || c->req_ts) {
			/* Pipelined: several requests in this payload, or one sent while one is
			 * pending. A command with more than 16 arguments alone is not. */
			bool pipelined = r == 2 || c->req_ts;
			count_unanswered(c, tgid);
			to_user(c, pipelined);
			return false;
		}
		/* Counted with its response (or by count_unanswered): one aggregate update
		 * per request instead of two. Timed, or counted only (see time_every; the
		 * caller read no clock then). */
		if (c->skip) {
			c->skip -= 1;
			c->req_ts = L7_UNTIMED;
		} else {
			__u32 every = time_every;
			c->skip = every > 1 ? every - 1 : 0;
			c->req_ts = ts;
		}
		__builtin_memcpy(c->method, method, L7_METHOD_LEN);
		lb(task, sk, e, c, tgid, tid, fd, ts);
		return true;
	}
	if (!c->req_ts)
		return true; /* the rest of a long response, or a push nobody asked for */
	__u64 err = 0;
	__u32 class = 0;
	if (c->proto == L7_PROTO_REDIS) {
		if (!redis_reply(b[0]))
			return true;
		err = b[0] == '-' || b[0] == '!';
	} else {
		__u32 status = http_status(b, len);
		if (status < 200)
			return true; /* not a response, or 1xx before the real one */
		class = status / 100;
		err = status >= 400;
	}
	bool timed = c->req_ts != L7_UNTIMED;
	__u64 lat = ts > c->req_ts ? ts - c->req_ts : 0;
	c->req_ts = 0;
	struct l7_agg *a = agg_of(c, tgid, c->method);
	if (!a)
		return true;
	/* Plain adds: the values are this CPU's own (only a program interrupting this one
	 * on the same CPU could race, and lose one count). */
	a->req += 1;
	a->resp += 1;
	if (err)
		a->err += 1;
	if (class >= 1 && class <= 5)
		a->status[(class - 1) & 7] += 1;
	if (!timed)
		return true;
	a->lat_sum += lat;
	if (lat > a->lat_max)
		a->lat_max = lat;
	a->hist[hist_index(lat) & (L7_HIST - 1)] += 1;
	return true;
}

/* A new connection's payload: a single Redis command or an HTTP request line sent by
 * the side that may send requests makes it an in-kernel one (user space hears of it
 * once, by an L7_EV_KCONN event). */
static __always_inline void classify(struct l7_event *e, struct l7_conn *c, __u32 tgid, __u32 tid,
				     __s32 fd, __u8 dir, const void *base, __u32 len, __u64 ts)
{
	__u8 role = dir == L7_DIR_EGRESS ? L7_ROLE_CLIENT : L7_ROLE_SERVER;
	__u8 proto = L7_PROTO_NONE;
	if (c->role == L7_ROLE_UNKNOWN || c->role == role) {
		char method[L7_METHOD_LEN] = {};
		__u8 *b = e->data;
		int r = 0;
		if (b[0] == '*') {
			r = redis_request(e, (__u64)base, len, len < PEEK ? len : PEEK);
			if (r == 1)
				proto = L7_PROTO_REDIS;
		} else if (http_request(b, len, method) == 1) {
			proto = L7_PROTO_HTTP;
			if (http_pipelined(e, (__u64)base, len, len < PEEK ? len : PEEK))
				r = 2;
		}
		/* Pipelined from the first payload (redis-benchmark -P, an HTTP client
		 * pipelining from the start): paired in user space from here. */
		if (r == 2) {
			to_user(c, true);
			return;
		}
	}
	if (proto == L7_PROTO_NONE) {
		c->tries += 1;
		if (c->tries >= L7_KERNEL_TRIES)
			c->mode = L7_MODE_USER;
		return;
	}
	c->role = role;
	c->proto = proto;
	c->req_ts = 0;
	c->mode = L7_MODE_KERNEL;
	/* emit() leaves e->data alone when there is no payload: the parsers read it next. */
	emit(e, c, ts, tgid, tid, fd, L7_EV_KCONN, dir, 0, NULL, 0);
}

/* ---- Socket I/O. ---- */

/* When a send or receive happened, for latency. A receive: now, as the call returns
 * the bytes. A send: the hook runs once the send is done, which on loopback includes
 * delivering the data to the peer and waking it (≈ 20 % of a loopback Redis round trip
 * at 1 client: the SLI came out that much below redis-benchmark's latency). The request
 * left when the sender started sending: the socket's tcp_mstamp (µs, the same
 * CLOCK_MONOTONIC as bpf_ktime_get_ns) is refreshed when tcp_write_xmit starts pushing
 * this send's segments, after the data was copied in. It is also refreshed by received
 * segments, and a send that autocorking leaves queued does not refresh it: a value older
 * than the last receive on this connection (which a request-response exchange always
 * has before the next send) is stale, and then the end of the send is used. */
static __always_inline __u64 io_time(struct sock *sk, struct l7_conn *c, __u8 dir)
{
	if (dir == L7_DIR_INGRESS) {
		c->rx_ts = bpf_ktime_get_ns();
		return c->rx_ts;
	}
	/* A past time, so no clock read is needed when it is fresh (a clock read costs
	 * ≈ 50-100 ns of a run on this VM). */
	__u64 sent = KREAD(struct tcp_sock, sk, tcp_mstamp) * 1000 + 500;
	return sent > c->rx_ts ? sent : bpf_ktime_get_ns();
}

/* One send or receive of `ret` bytes on `sk` by the current task, after the data moved
 * (a receive's bytes are in the user buffer, a send's still are). The hot path of a
 * kernel-paired connection: one lookup by sk, the saved registers, one small user read,
 * the parser, one aggregate update. */
static __always_inline int on_io(struct sock *sk, int ret, int flags, __u8 dir)
{
	count(L7_STAT_IO);
	if (ret <= 0 || (dir == L7_DIR_INGRESS && (flags & (MSG_PEEK | MSG_ERRQUEUE))))
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (tgid == self_tgid)
		return 0;
	__u64 key = (__u64)sk;
	struct l7_conn *c = bpf_map_lookup_elem(&conns, &key);
	if (c && c->seen && c->mode == L7_MODE_KERNEL &&
	    (c->role == L7_ROLE_CLIENT) != (dir == L7_DIR_EGRESS) && !c->req_ts)
		return 0; /* the rest of a long response of a kernel-paired connection */
	/* Which syscall: the buffer (or iovec, or msghdr) and the fd are its arguments.
	 * `how`: 0 plain buffer, 1 iovec array, 2 msghdr. */
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return 0;
	__u64 nr = SYSCALL_NR(regs);
	__u8 how;
	switch (nr) {
	case NR_READ: case NR_WRITE: case NR_RECVFROM: case NR_SENDTO:
		how = 0;
		break;
	case NR_READV: case NR_WRITEV:
		how = 1;
		break;
	case NR_RECVMSG: case NR_SENDMSG:
		how = 2;
		break;
	default:
		/* sendfile, splice, io_uring (its workers have no syscall), sendmmsg/recvmmsg:
		 * no single user buffer to read. Counted only for sockets we track. */
		if (c)
			count(L7_STAT_UNPARSED);
		return 0;
	}
	if (!c || !c->seen) {
		c = learn_sk(sk, c, tgid, (__s32)regs->__PT_PARM1_SYSCALL_REG);
		if (!c)
			return 0;
	}
	if (c->mode != L7_MODE_KERNEL) {
		/* Inside an SSL call the bytes are ciphertext: note the socket for the SSL probe. */
		struct ssl_call *s = bpf_map_lookup_elem(&ssl_active, &id);
		if (s) {
			s->sk = key;
			bpf_map_update_elem(&ssl_socks, &s->ssl, &key, BPF_ANY);
			return 0;
		}
		if (c->mute)
			return 0;
	}
	bool reply = (c->role == L7_ROLE_CLIENT) != (dir == L7_DIR_EGRESS);
	__u64 base = regs->__PT_PARM2_SYSCALL_REG;
	__s64 len = ret;
	struct iovec *iovp = NULL;
	__u32 nr_iov = 0;
	if (how != 0) {
		iovp = (void *)base;
		nr_iov = regs->__PT_PARM3_SYSCALL_REG;
		if (how == 2) {
			struct user_msghdr msg = {};
			if (bpf_probe_read_user(&msg, sizeof(msg), (void *)base))
				return 0;
			iovp = msg.msg_iov;
			nr_iov = msg.msg_iovlen;
		}
		struct iovec iov = {};
		if (bpf_probe_read_user(&iov, sizeof(iov), iovp))
			return 0;
		base = (__u64)iov.iov_base;
		if ((__s64)iov.iov_len < len)
			len = iov.iov_len;
	}
	if (len <= 0)
		return 0;
	/* A kernel-paired request that will not be timed, or the response of one, needs
	 * no time; a client's response does when its next request is timed (that send's
	 * time is judged against this receive's, see io_time()). */
	bool untimed = c->mode == L7_MODE_KERNEL &&
		       (reply ? c->req_ts == L7_UNTIMED && (dir == L7_DIR_EGRESS || c->skip)
			      : c->skip != 0);
	__u64 ts = untimed ? 0 : io_time(sk, c, dir);
	struct l7_event *e = scratch_event();
	if (!e)
		return 0;
	__s32 fd = c->fd;
	if (c->mode != L7_MODE_USER) {
		/* A response's type byte or status line is in its first 12 bytes (the checks
		 * look no further than the length read). A request's parsers need zeros after
		 * the bytes read to stop at (resp_num looks 12 ahead). */
		bool response = c->mode == L7_MODE_KERNEL && reply;
		if (!response)
			__builtin_memset(e->data, 0, PEEK + 16);
		__u32 want = response ? 16 : PEEK;
		/* A kernel-paired HTTP request: all of its header block (for http_pipelined) in
		 * one read. */
		if (c->mode == L7_MODE_KERNEL && !reply && c->proto == L7_PROTO_HTTP)
			want = L7_WIDE_CAP;
		__u32 n = len < want ? (__u32)len : want;
		asm volatile("%0 &= 0x3ff" : "+r"(n));
		if (bpf_probe_read_user(e->data, n, (void *)base) != 0)
			return 0;
		if (c->mode == L7_MODE_NEW)
			classify(e, c, tgid, (__u32)id, fd, dir, (void *)base, (__u32)len, ts);
		if (c->mode == L7_MODE_KERNEL &&
		    kpair(task, sk, e, c, tgid, (__u32)id, fd, dir, (void *)base, (__u32)len, ts))
			return 0;
	}
	/* Handed to user space, which times everything. */
	if (!ts)
		ts = bpf_ktime_get_ns();
	/* `len` of the event: what the call moved; the copy gathers its iovecs. */
	if (iovp)
		emit_iov(e, c, ts, tgid, (__u32)id, fd, L7_EV_DATA, dir, 0, NULL, iovp, nr_iov, ret);
	else
		emit(e, c, ts, tgid, (__u32)id, fd, L7_EV_DATA, dir, 0, (void *)base, len);
	return 0;
}

/* Raw tracepoints: the arguments are the tracepoint's (struct sock *sk, int ret, int
 * flags), no perf record is built, and a program is skipped only when it re-enters
 * itself (a classic tracepoint's is skipped whenever any BPF program runs on the CPU). */
SEC("raw_tp/sock_send_length")
int BPF_PROG(sock_send, struct sock *sk, int ret, int flags)
{
	return on_io(sk, ret, flags, L7_DIR_EGRESS);
}

SEC("raw_tp/sock_recv_length")
int BPF_PROG(sock_recv, struct sock *sk, int ret, int flags)
{
	return on_io(sk, ret, flags, L7_DIR_INGRESS);
}

/* The end of a connection, from the entry (the state change may run in softirq, for
 * another task): reserved in the ring buffer, not built in the per-CPU scratch event
 * that a program it interrupted may be using. */
static __always_inline void emit_close(struct l7_conn *c)
{
	struct l7_event *e = bpf_ringbuf_reserve(&events, L7_HDR_SIZE, 0);
	if (!e) {
		count(L7_STAT_DROPS);
		return;
	}
	__builtin_memset(e, 0, L7_HDR_SIZE);
	e->ts_ns = bpf_ktime_get_ns();
	copy_conn_identity(e, c);
	e->tgid = c->tgid;
	e->fd = c->fd;
	e->type = L7_EV_CLOSE;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	count(L7_STAT_EVENTS);
}

/* The end of a connection: tell user space, count a request left pending. */
static __always_inline void forget(struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct l7_conn *c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return;
	if (c->seen) {
		if (c->mode == L7_MODE_KERNEL)
			count_unanswered(c, c->tgid);
		emit_close(c);
	}
	bpf_map_delete_elem(&conns, &key);
}

/* The handshake tells the role: SYN_SENT → ESTABLISHED is the connecting side (in the
 * process's context or in softirq), SYN_RECV → ESTABLISHED the accepting side (softirq,
 * before accept() hands it to a process). Addresses, tgid and fd come with the first
 * I/O. TCP_CLOSE ends the connection, whoever closes it (close(), exit, a reset). */
SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(l7_set_state, struct sock *sk, int old, int new)
{
	__u64 key = (__u64)sk;
	if (new == TCP_ESTABLISHED) {
		if (old != TCP_SYN_SENT && old != TCP_SYN_RECV)
			return 0;
		if (KREAD(struct sock, sk, sk_protocol) != IPPROTO_TCP)
			return 0;
		struct l7_conn c = {};
		c.sk = key;
		c.role = old == TCP_SYN_SENT ? L7_ROLE_CLIENT : L7_ROLE_SERVER;
		/* Over any entry left there: a new handshake is a new connection, even if a
		 * freed sock's entry survived (its TCP_CLOSE missed) at this address. */
		bpf_map_update_elem(&conns, &key, &c, BPF_ANY);
		return 0;
	}
	if (new == TCP_CLOSE)
		forget(sk);
	return 0;
}

/* The sock is being destroyed: its entry is normally gone at TCP_CLOSE, but a program
 * is skipped when it would re-enter itself on a CPU (a softirq's state change during a
 * process's), and an entry left behind would be inherited by whatever sock gets this
 * address next. */
SEC("raw_tp/tcp_destroy_sock")
int BPF_PROG(l7_destroy, struct sock *sk)
{
	forget(sk);
	return 0;
}

/* OpenSSL: int SSL_read(SSL *ssl, void *buf, int num), SSL_write(SSL *, const void *, int). */
static __always_inline int ssl_enter(void *ssl, void *buf, __u8 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	if ((id >> 32) == self_tgid)
		return 0;
	struct ssl_call s = {
		.ts_ns = bpf_ktime_get_ns(), .ssl = (__u64)ssl, .buf = (__u64)buf, .dir = dir};
	__u64 *sk = bpf_map_lookup_elem(&ssl_socks, &s.ssl);
	if (sk)
		s.sk = *sk;
	bpf_map_update_elem(&ssl_active, &id, &s, BPF_ANY);
	return 0;
}

static __always_inline int ssl_leave(int ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call *s = bpf_map_lookup_elem(&ssl_active, &id);
	if (!s)
		return 0;
	struct ssl_call call = *s;
	bpf_map_delete_elem(&ssl_active, &id);
	if (ret <= 0 || !call.sk)
		return 0;
	struct l7_conn *c = bpf_map_lookup_elem(&conns, &call.sk);
	if (!c || !c->seen)
		return 0;
	__u64 ts = call.dir == L7_DIR_EGRESS ? call.ts_ns : bpf_ktime_get_ns();
	struct l7_event *e = scratch_event();
	if (!e)
		return 0;
	emit(e, c, ts, id >> 32, (__u32)id, c->fd, L7_EV_DATA, call.dir, 1, (void *)call.buf, ret);
	return 0;
}

SEC("uprobe")
int BPF_UPROBE(ssl_read_enter, void *ssl, void *buf, int num)
{
	return ssl_enter(ssl, buf, L7_DIR_INGRESS);
}

SEC("uretprobe")
int BPF_URETPROBE(ssl_read_exit, int ret)
{
	return ssl_leave(ret);
}

SEC("uprobe")
int BPF_UPROBE(ssl_write_enter, void *ssl, void *buf, int num)
{
	return ssl_enter(ssl, buf, L7_DIR_EGRESS);
}

SEC("uretprobe")
int BPF_URETPROBE(ssl_write_exit, int ret)
{
	return ssl_leave(ret);
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* tcp probe: who owns each TCP socket, its rare events, and its final numbers, on
 * tracepoints only (no kprobes on the target kernels). Nothing here runs per packet or
 * per send/recv: byte, segment, RTT and window numbers are the kernel's own tcp_sock
 * counters, which user space reads per interval through sock_diag (tcp_info) and which
 * the close event below reads once when the socket is destroyed.
 *
 * Ownership is taken only in process context, once per connection: connect() (the
 * socket enters SYN_SENT in the connecting task) and accept() (the return of libc's
 * accept4/accept: fd -> file -> socket through the task's fd table). The entry also
 * records the socket's inode, which is how user space joins it with the sock_diag dump.
 *
 * Softirq-context events (passive opens, resets, state changes) run with whatever task
 * was interrupted, so they only count on the socket's entry. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "tcp.h"
#include "fd_sock.h"
#include "kread.h"

#define AF_INET 2
#define IPPROTO_TCP 6

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* A plain hash, not LRU: an LRU map evicts silently (even before it is full, from
 * per-CPU free lists), and an evicted socket's close would be lost unsaid. Entries
 * leave at tcp_destroy_sock, so the map holds live sockets only; an insert into a full
 * map is counted (TCP_CNT_MAP_FULL). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct tcp_sock_val);
} socks SEC(".maps");

#define EVENTS_BYTES (4 << 20)
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_BYTES);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TCP_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Set before load when tcp:tcp_destroy_sock is missing: finish sockets at CLOSE then
 * (bytes read after the socket reached CLOSE are then missed). */
const volatile bool final_at_close = false;

/* Never written: it makes the skeleton generate the ring-buffer record's Rust type. */
struct tcp_event unused_event_type = {};

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		*c += 1;
}

/* The inode of the socket's file, 0 when it has none (not accepted yet, or orphaned
 * by close()). */
static __always_inline __u64 sock_inode(struct sock *sk)
{
	struct socket *so = KREAD(struct sock, sk, sk_socket);
	if (!so)
		return 0;
	struct file *file = KREAD(struct socket, so, file);
	if (!file)
		return 0;
	struct inode *inode = KREAD(struct file, file, f_inode);
	return inode ? KREAD(struct inode, inode, i_ino) : 0;
}

/* Family, ports and addresses of `sk` into any struct with those fields. The local
 * port is inet_sport, not skc_num: closing releases the port (skc_num = 0) before the
 * CLOSE tracepoint and tcp_destroy_sock run, but leaves inet_sport. */
#define FILL_ADDRS(f, sk)                                                             \
	do {                                                                          \
		(f)->family = KREAD(struct sock, sk, __sk_common.skc_family);         \
		(f)->lport = bpf_ntohs(KREAD(struct inet_sock, sk, inet_sport));      \
		(f)->rport = bpf_ntohs(KREAD(struct sock, sk, __sk_common.skc_dport)); \
		if ((f)->family == AF_INET) {                                         \
			/* BPF_CORE_READ_INTO reads sizeof(*dst): go through 4 bytes */ \
			__u32 l_ = KREAD(struct sock, sk, __sk_common.skc_rcv_saddr); \
			__u32 r_ = KREAD(struct sock, sk, __sk_common.skc_daddr);     \
			__builtin_memset((f)->laddr, 0, 16);                          \
			__builtin_memset((f)->raddr, 0, 16);                          \
			__builtin_memcpy((f)->laddr, &l_, 4);                         \
			__builtin_memcpy((f)->raddr, &r_, 4);                         \
		} else {                                                              \
			BPF_CORE_READ_INTO(&(f)->laddr, sk, __sk_common.skc_v6_rcv_saddr); \
			BPF_CORE_READ_INTO(&(f)->raddr, sk, __sk_common.skc_v6_daddr);     \
		}                                                                     \
	} while (0)

static __always_inline void own(struct tcp_sock_val *v, struct sock *sk, __u8 role)
{
	v->tgid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(&v->comm, sizeof(v->comm));
	v->role = role;
	v->inode = sock_inode(sk);
	FILL_ADDRS(v, sk);
}

/* The socket's entry, created on first sight; `owner` is true in process context. */
static __always_inline struct tcp_sock_val *sock_entry(struct sock *sk, bool owner, __u8 role)
{
	__u64 key = (__u64)sk;
	struct tcp_sock_val *v = bpf_map_lookup_elem(&socks, &key);
	if (v) {
		if (owner)
			own(v, sk, role);
		return v;
	}
	struct tcp_sock_val init = {};
	init.role = role;
	FILL_ADDRS(&init, sk);
	if (owner)
		own(&init, sk, role);
	else
		init.inode = sock_inode(sk);
	if (bpf_map_update_elem(&socks, &key, &init, BPF_NOEXIST)) {
		v = bpf_map_lookup_elem(&socks, &key); /* another CPU won the race */
		if (!v)
			count(TCP_CNT_MAP_FULL);
		return v;
	}
	count(TCP_CNT_SOCKS_CREATED);
	return bpf_map_lookup_elem(&socks, &key);
}

/* The same numbers tcp_info gives, straight from the tcp_sock. */
static __always_inline void fill_counters(struct tcp_final *f, struct sock *sk)
{
	f->cookie = KREAD(struct sock, sk, __sk_common.skc_cookie.counter);
	f->bytes_sent = KREAD(struct tcp_sock, sk, bytes_sent);
	f->bytes_retrans = KREAD(struct tcp_sock, sk, bytes_retrans);
	f->bytes_received = KREAD(struct tcp_sock, sk, bytes_received);
	f->segs_in = KREAD(struct tcp_sock, sk, segs_in);
	f->segs_out = KREAD(struct tcp_sock, sk, segs_out);
	f->srtt_us = KREAD(struct tcp_sock, sk, srtt_us) >> 3;
	f->snd_cwnd = KREAD(struct tcp_sock, sk, snd_cwnd);
	f->total_retrans = KREAD(struct tcp_sock, sk, total_retrans);
	f->snd_wnd = KREAD(struct tcp_sock, sk, snd_wnd);
	f->rcv_wnd = KREAD(struct tcp_sock, sk, rcv_wnd);
	unsigned long flags = KREAD(struct sock, sk, __sk_common.skc_flags);
	f->fin_rcvd = (flags >> bpf_core_enum_value(enum sock_flags, SOCK_DONE)) & 1;
}

static __always_inline void emit(__u32 kind, struct sock *sk, struct tcp_sock_val *v, bool final)
{
	struct tcp_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(TCP_CNT_RB_DROPS);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = kind;
	FILL_ADDRS(&e->fin, sk);
	if (v) {
		e->has_entry = 1;
		__builtin_memcpy(&e->val, v, sizeof(*v));
	}
	if (final)
		fill_counters(&e->fin, sk);
	/* The reader is woken only once the ring is half full: it drains every 50 ms anyway,
	 * and a wakeup is an irq_work — a self-interrupt, on a virtual machine a VM exit —
	 * which was most of the ~9 us this program took per closed connection. */
	__u64 wake = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > EVENTS_BYTES / 2
			     ? BPF_RB_FORCE_WAKEUP
			     : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(e, wake);
}

/* The socket's last word. Sockets with no entry (older than the collector, never
 * touched since) still report when sock_diag has seen them (their cookie is set), so
 * user space can close them out; the others were never counted and stay silent. */
static __always_inline void finish(struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct tcp_sock_val *v = bpf_map_lookup_elem(&socks, &key);
	if (!v && !KREAD(struct sock, sk, __sk_common.skc_cookie.counter))
		return;
	count(TCP_CNT_SOCKS_FINAL);
	emit(v && v->failed ? TCP_EV_FAILED_CONNECT : TCP_EV_CLOSE, sk, v, true);
	if (v)
		bpf_map_delete_elem(&socks, &key);
}

/* Raw tracepoints here and at destroy: a classic tracepoint's program is skipped when
 * any BPF program is already running on the CPU (the global bpf_prog_active), which a
 * softirq arriving during another probe's program hits often under load — that is how
 * closes went missing in a burst. A raw tracepoint is skipped only when the same
 * program is re-entered. The kernel counts either kind of miss (recursion_misses). */
SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(tcp_set_state, struct sock *sk, int old, int new)
{
	if (KREAD(struct sock, sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	struct tcp_sock_val *v;

	if (new == TCP_SYN_SENT) {
		/* connect(): process context, the owner is the current task */
		v = sock_entry(sk, true, ROLE_CLIENT);
		if (v)
			v->state_changes++;
		return 0;
	}
	if (old == TCP_SYN_RECV && new == TCP_ESTABLISHED) {
		/* a passive open, in softirq: the owner comes at accept() */
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
	/* The local port is chosen after SYN_SENT: the entry's addresses are final at
	 * ESTABLISHED (or at CLOSE for a failed connect). */
	if (new == TCP_ESTABLISHED || new == TCP_CLOSE)
		FILL_ADDRS(v, sk);
	if (new == TCP_CLOSE) {
		if (old == TCP_SYN_SENT)
			v->failed = 1;
		if (final_at_close)
			finish(sk);
	}
	return 0;
}

/* accept() returned a connected socket: the fd's file holds it. Once per connection. */
static __always_inline int on_accept(long fd)
{
	struct sock *sk = tcp_sock_of_fd(fd);
	if (sk)
		sock_entry(sk, true, ROLE_SERVER);
	return 0;
}

/* At the return of libc's accept4() and accept(), not at the syscalls' exits: enabling any
 * syscall tracepoint puts every syscall of every task on the slow path (≈ 50 ns each on
 * this kernel, measured with `perf bench syscall basic`), a cost paid per request by every
 * server on the host. A uretprobe costs only the accepting process, once per connection.
 * Programs that make the syscall themselves (static binaries, Go) are not seen here: user
 * space finds the owners of their live sockets in /proc/PID/fd. */
SEC("uretprobe")
int BPF_URETPROBE(tcp_accept_ret, long ret)
{
	return on_accept(ret);
}

/* The socket is being freed: its final numbers (the application may read after the
 * state machine reached CLOSE, so CLOSE itself is too early). */
SEC("raw_tp/tcp_destroy_sock")
int BPF_PROG(tcp_destroy, struct sock *sk)
{
	finish(sk);
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
	emit(TCP_EV_SEND_RESET, (struct sock *)ctx->skaddr, v, false);
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
	emit(TCP_EV_RECV_RESET, (struct sock *)ctx->skaddr, v, false);
	return 0;
}

// SPDX-License-Identifier: GPL-2.0 OR MIT
/* l7: application payload prefixes of TCP sockets, for SLIs computed in user space.
 *
 * Syscall tracepoints (read/write, readv/writev, recvfrom/sendto, recvmsg/sendmsg) save
 * the user buffer at entry and, at exit, copy a bounded prefix of what actually moved
 * into the ring buffer, only for fds that are TCP sockets. Whether an fd is a TCP socket
 * is decided once per (tgid, fd) by walking the task's fd table with CO-RE, and cached
 * in an LRU map (negative answers too, so reads of files cost one lookup); close()
 * forgets it, accept4/connect mark the role. Protocol inference and request/response
 * pairing happen in user space. OpenSSL's SSL_read/SSL_write uprobes give plaintext for
 * TLS connections; the encrypted syscalls made inside them are not reported.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "l7.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115

_Static_assert(__builtin_offsetof(struct l7_event, data) == L7_HDR_SIZE, "header layout");

/* Payload bytes copied per syscall (< L7_MAX_CAP), set before load. */
const volatile __u32 cap = 128;
/* Our own process, never reported. */
const volatile __u32 self_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* tgid << 32 | fd */
	__type(value, struct l7_conn);
} conns SEC(".maps");

/* A syscall in flight: its fd and buffer, from entry to exit. Kept in task-local
 * storage: a hash map keyed by pid would take a bucket lock twice per syscall. */
struct inflight {
	__u64 ts_ns; /* at entry: when the process started sending */
	__u64 buf;
	__s32 fd;
	__u8 how; /* 0 plain buffer, 1 iovec array, 2 msghdr */
	__u8 dir;
	__u8 valid;
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct inflight);
} active SEC(".maps");

/* An SSL_read/SSL_write in flight; the syscall inside it tells the fd. */
struct ssl_call {
	__u64 ts_ns;
	__u64 ssl;
	__u64 buf;
	__s32 fd;
	__u8 dir;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct ssl_call);
} ssl_active SEC(".maps");

/* SSL* → fd, learnt from the syscalls inside SSL calls: SSL_read served from OpenSSL's
 * own buffer makes no syscall. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __s32);
} ssl_fds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, L7_STAT_NR);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Staging area: the event is built here and sent with only the bytes it uses. */
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

static __always_inline __u64 conn_key(__u32 tgid, __s32 fd)
{
	return ((__u64)tgid << 32) | (__u32)fd;
}

/* Fills `c` from the socket behind `fd` of the current task; false if `fd` is not a
 * TCP socket. */
static __always_inline bool read_sock(__s32 fd, struct l7_conn *c)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || (__u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return false;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f)
		return false;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return false;
	struct socket *so = BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(so, sk);
	if (!sk)
		return false;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return false;
	if (BPF_CORE_READ(sk, sk_type) != SOCK_STREAM || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return false;
	c->sk = (__u64)sk;
	c->tcp = 1;
	c->family = family;
	c->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	c->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		bpf_core_read(c->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(c->raddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(c->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(c->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	return true;
}

/* The cached view of (tgid, fd), classifying it on first sight. NULL when not TCP. */
static __always_inline struct l7_conn *lookup_conn(__u32 tgid, __s32 fd)
{
	__u64 key = conn_key(tgid, fd);
	struct l7_conn *c = bpf_map_lookup_elem(&conns, &key);
	if (c)
		return c->tcp ? c : NULL;
	struct l7_conn fresh = {};
	/* Only TCP sockets are cached: caching every file a process reads would churn the
	 * LRU map (its global lock, taken on eviction with IRQs off, then serialises every
	 * CPU's syscalls); the walk that says "not a socket" is a few loads. */
	if (!read_sock(fd, &fresh))
		return NULL;
	count(L7_STAT_SOCKS);
	bpf_map_update_elem(&conns, &key, &fresh, BPF_ANY);
	return bpf_map_lookup_elem(&conns, &key);
}

/* A connection made by accept4/connect: classify afresh and remember the role. */
static __always_inline void learn_conn(__s32 fd, __u8 role)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (tgid == self_tgid)
		return;
	struct l7_conn c = {};
	if (!read_sock(fd, &c))
		return;
	c.role = role;
	count(L7_STAT_SOCKS);
	__u64 key = conn_key(tgid, fd);
	bpf_map_update_elem(&conns, &key, &c, BPF_ANY);
}

/* `ts_ns`: when the bytes moved as the application sees it — the call's entry for what
 * it sends (a request leaves when the client starts writing it), its return for what it
 * receives (a response has arrived when the read returns). */
static __always_inline void emit(struct l7_conn *c, __u64 ts_ns, __u32 tgid, __u32 tid, __s32 fd,
				 __u8 type, __u8 dir, __u8 ssl, const void *ubuf, __s64 len)
{
	__u32 zero = 0;
	struct l7_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return;
	e->ts_ns = ts_ns;
	e->sk = c->sk;
	e->tgid = tgid;
	e->tid = tid;
	e->fd = fd;
	e->len = len > 0 ? (__u32)len : 0;
	e->type = type;
	e->dir = dir;
	e->role = c->role;
	e->family = c->family;
	e->ssl = ssl;
	e->pad = 0;
	e->lport = c->lport;
	e->rport = c->rport;
	__builtin_memcpy(e->laddr, c->laddr, 16);
	__builtin_memcpy(e->raddr, c->raddr, 16);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	__u32 n = 0;
	if (ubuf && len > 0) {
		n = len < cap ? (__u32)len : cap;
		/* Keep the bound visible to the verifier: clang would otherwise reuse the
		 * unbounded `len` register. */
		asm volatile("%0 &= 0xff" : "+r"(n));
		if (bpf_probe_read_user(e->data, n, ubuf) != 0)
			n = 0;
	}
	e->cap = n;
	__u64 size = L7_HDR_SIZE + n;
	if (bpf_ringbuf_output(&events, e, size, 0) != 0)
		count(L7_STAT_DROPS);
	else
		count(L7_STAT_EVENTS);
}

/* Syscall entry: remember the buffer if the fd is a TCP socket. Inside an SSL call,
 * the bytes are ciphertext: note the fd for the SSL probe instead. */
static __always_inline int enter(__s32 fd, __u64 buf, __u8 how, __u8 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (tgid == self_tgid)
		return 0;
	struct l7_conn *c = lookup_conn(tgid, fd);
	if (!c)
		return 0;
	struct ssl_call *s = bpf_map_lookup_elem(&ssl_active, &id);
	if (s) {
		s->fd = fd;
		bpf_map_update_elem(&ssl_fds, &s->ssl, &fd, BPF_ANY);
		return 0;
	}
	/* After the SSL check: a muted TLS socket still carries plaintext SSL events. */
	if (c->mute)
		return 0;
	struct inflight *in = bpf_task_storage_get(&active, bpf_get_current_task_btf(), NULL,
						   BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!in)
		return 0;
	in->ts_ns = bpf_ktime_get_ns();
	in->buf = buf;
	in->fd = fd;
	in->how = how;
	in->dir = dir;
	in->valid = 1;
	return 0;
}

static __always_inline int leave(__s64 ret)
{
	struct inflight *in = bpf_task_storage_get(&active, bpf_get_current_task_btf(), NULL, 0);
	if (!in || !in->valid)
		return 0;
	struct inflight call = *in;
	in->valid = 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (ret <= 0)
		return 0;
	__u32 tgid = id >> 32;
	__u64 key = conn_key(tgid, call.fd);
	struct l7_conn *c = bpf_map_lookup_elem(&conns, &key);
	if (!c || !c->tcp)
		return 0;
	__u64 base = call.buf;
	__s64 len = ret;
	if (call.how != 0) {
		struct iovec *iovp = (void *)call.buf;
		if (call.how == 2) {
			struct user_msghdr msg = {};
			if (bpf_probe_read_user(&msg, sizeof(msg), (void *)call.buf))
				return 0;
			iovp = msg.msg_iov;
		}
		struct iovec iov = {};
		if (bpf_probe_read_user(&iov, sizeof(iov), iovp))
			return 0;
		base = (__u64)iov.iov_base;
		if ((__s64)iov.iov_len < len)
			len = iov.iov_len;
	}
	/* `len` of the event is what the syscall moved; the copy is from the first iovec. */
	__u64 ts = call.dir == L7_DIR_EGRESS ? call.ts_ns : bpf_ktime_get_ns();
	emit(c, ts, tgid, (__u32)id, call.fd, L7_EV_DATA, call.dir, 0, (void *)base,
	     len < ret ? len : ret);
	return 0;
}

#define IO_SYSCALL(name, how, dir)                                                         \
	SEC("tp/syscalls/sys_enter_" #name)                                                \
	int enter_##name(struct trace_event_raw_sys_enter *ctx)                            \
	{                                                                                  \
		return enter((__s32)ctx->args[0], ctx->args[1], how, dir);                 \
	}                                                                                  \
	SEC("tp/syscalls/sys_exit_" #name)                                                 \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)                              \
	{                                                                                  \
		return leave(ctx->ret);                                                    \
	}

IO_SYSCALL(read, 0, L7_DIR_INGRESS)
IO_SYSCALL(write, 0, L7_DIR_EGRESS)
IO_SYSCALL(recvfrom, 0, L7_DIR_INGRESS)
IO_SYSCALL(sendto, 0, L7_DIR_EGRESS)
IO_SYSCALL(readv, 1, L7_DIR_INGRESS)
IO_SYSCALL(writev, 1, L7_DIR_EGRESS)
IO_SYSCALL(recvmsg, 2, L7_DIR_INGRESS)
IO_SYSCALL(sendmsg, 2, L7_DIR_EGRESS)

SEC("tp/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__s32 fd = (__s32)ctx->args[0];
	__u64 key = conn_key(tgid, fd);
	struct l7_conn *c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return 0;
	if (c->tcp)
		emit(c, bpf_ktime_get_ns(), tgid, (__u32)id, fd, L7_EV_CLOSE, 0, 0, NULL, 0);
	bpf_map_delete_elem(&conns, &key);
	return 0;
}

SEC("tp/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret >= 0)
		learn_conn((__s32)ctx->ret, L7_ROLE_SERVER);
	return 0;
}

SEC("tp/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret >= 0)
		learn_conn((__s32)ctx->ret, L7_ROLE_SERVER);
	return 0;
}

/* connect's fd is only known at entry; keep it until exit. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __s32);
} connecting SEC(".maps");

SEC("tp/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__s32 fd = (__s32)ctx->args[0];
	bpf_map_update_elem(&connecting, &id, &fd, BPF_ANY);
	return 0;
}

SEC("tp/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__s32 *fd = bpf_map_lookup_elem(&connecting, &id);
	if (!fd)
		return 0;
	__s32 f = *fd;
	bpf_map_delete_elem(&connecting, &id);
	if (ctx->ret == 0 || ctx->ret == -EINPROGRESS)
		learn_conn(f, L7_ROLE_CLIENT);
	return 0;
}

/* OpenSSL: int SSL_read(SSL *ssl, void *buf, int num), SSL_write(SSL *, const void *, int). */
static __always_inline int ssl_enter(void *ssl, void *buf, __u8 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	if ((id >> 32) == self_tgid)
		return 0;
	struct ssl_call s = {
		.ts_ns = bpf_ktime_get_ns(), .ssl = (__u64)ssl, .buf = (__u64)buf, .fd = -1, .dir = dir};
	__s32 *fd = bpf_map_lookup_elem(&ssl_fds, &s.ssl);
	if (fd)
		s.fd = *fd;
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
	if (ret <= 0 || call.fd < 0)
		return 0;
	__u32 tgid = id >> 32;
	__u64 key = conn_key(tgid, call.fd);
	struct l7_conn *c = bpf_map_lookup_elem(&conns, &key);
	if (!c || !c->tcp)
		return 0;
	__u64 ts = call.dir == L7_DIR_EGRESS ? call.ts_ns : bpf_ktime_get_ns();
	emit(c, ts, tgid, (__u32)id, call.fd, L7_EV_DATA, call.dir, 1, (void *)call.buf, ret);
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

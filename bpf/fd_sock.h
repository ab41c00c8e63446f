/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The TCP socket behind a file descriptor of the current task, through its fd table with
 * CO-RE: the tcp probe finds the owner of a socket accept() returned this way (the l7
 * probe used it too until it moved to socket-layer hooks, which hand it the socket).
 * Include after vmlinux.h and bpf_core_read.h. */
#ifndef GALA_FD_SOCK_H
#define GALA_FD_SOCK_H

#define FD_SOCK_AF_INET 2
#define FD_SOCK_AF_INET6 10
#define FD_SOCK_STREAM 1
#define FD_SOCK_IPPROTO_TCP 6
#define FD_SOCK_S_IFMT 00170000
#define FD_SOCK_S_IFSOCK 0140000

/* The sock of `fd` if it is an IPv4 or IPv6 TCP socket, else NULL. */
static __always_inline struct sock *tcp_sock_of_fd(long fd)
{
	if (fd < 0)
		return NULL;
	struct task_struct *task = (void *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || (__u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & FD_SOCK_S_IFMT) != FD_SOCK_S_IFSOCK)
		return NULL;
	struct socket *so = BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(so, sk);
	if (!sk)
		return NULL;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != FD_SOCK_AF_INET && family != FD_SOCK_AF_INET6)
		return NULL;
	if (BPF_CORE_READ(sk, sk_type) != FD_SOCK_STREAM ||
	    BPF_CORE_READ(sk, sk_protocol) != FD_SOCK_IPPROTO_TCP)
		return NULL;
	return sk;
}

#endif

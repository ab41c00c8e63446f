// SPDX-License-Identifier: MIT OR Apache-2.0
/* I/O flame graphs: the user stacks of the processes' reads, writes and syncs of regular
 * files, weighted by bytes (`counts`) and by time spent in the call (`waits`, ns), in
 * the same buckets of (process, user stack) as the other stack probes (stack_maps.h).
 *
 * Hooks: the syscalls/sys_enter_* and sys_exit_* tracepoints of write, pwrite64, writev,
 * read, pread64, fsync and fdatasync (no kprobes here, and the VFS has no tracepoints with
 * the caller's stack and the byte count). Enabling any syscall tracepoint puts every
 * system call of every process on the kernel's slow path (TIF_SYSCALL_TRACEPOINT); the
 * programs themselves run only on these seven calls. Per-call tracepoints rather than
 * raw_syscalls: the same slow path, but no program run for the other calls.
 *
 * At entry the file descriptor is checked to be a regular file (pipes, sockets, ttys and
 * /dev files are not file I/O) and the time kept in the thread's task storage. At exit
 * the bytes (the return value; 0 for a sync or a failed call) and the time are added to
 * the thread's own tallies, and the user stack (the same as at entry) is taken only once
 * a tally has run past its sampling period (struct tally, stack_maps.h): the whole tally
 * then goes to that stack. Walking the stack and updating the buckets is most of the
 * cost (~4 µs against ~0.1 µs for the rest on a loaded machine); one stack per period of
 * a few hundred KiB or a millisecond is what keeps a page-cache read loop within budget. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "stack.h"
#include "stack_maps.h"

#define S_IFMT 00170000
#define S_IFREG 0100000

/* Time in the call, by bucket (ns), beside `counts` (bytes). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct stack_key);
	__type(value, __u64);
	__uint(max_entries, 16384);
} waits SEC(".maps");

/* Set before load: the mean sampling periods, bytes and ns (0: a stack for every call). */
const volatile __u64 period_bytes = 0;
const volatile __u64 period_ns = 0;

struct io_thread {
	/* Entry time of the call in flight; 0 when none (or not a regular file). */
	__u64 entered;
	struct tally bytes;
	struct tally ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct io_thread);
} threads SEC(".maps");


/* Whether `fd` of the current task is a regular file. */
static __always_inline bool regular_file(long fd)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct fdtable *fdt;
	struct file **fds;
	struct file *f = NULL;
	umode_t mode;

	if (fd < 0)
		return false;
	fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || (__u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return false;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return false;
	mode = BPF_CORE_READ(f, f_inode, i_mode);
	return (mode & S_IFMT) == S_IFREG;
}

static __always_inline int enter(long fd)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct io_thread *t;

	if (!wanted(tgid) || !regular_file(fd))
		return 0;
	t = bpf_task_storage_get(&threads, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (t)
		t->entered = bpf_ktime_get_ns();
	return 0;
}

static __always_inline int leave(void *ctx, long ret)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct stack_key key = {};
	struct io_thread *t;
	bool by_bytes, by_time;
	__u64 ns;

	t = bpf_task_storage_get(&threads, bpf_get_current_task_btf(), 0, 0);
	if (!t || !t->entered)
		return 0;
	ns = bpf_ktime_get_ns() - t->entered;
	t->entered = 0;
	by_time = tally_add(&t->ns, ns);
	by_bytes = tally_add(&t->bytes, ret > 0 ? ret : 0);
	if (!by_bytes && !by_time)
		return 0;
	take_stacks(ctx, &key, tgid, false);
	if (by_bytes)
		add_to(&counts, &key, tally_take(&t->bytes, period_bytes));
	if (by_time)
		add_to(&waits, &key, tally_take(&t->ns, period_ns));
	return 0;
}

/* The file descriptor is the first argument of every one of these calls. */
#define IO_SYSCALL(name)                                                  \
	SEC("tp/syscalls/sys_enter_" #name)                               \
	int enter_##name(struct trace_event_raw_sys_enter *ctx)           \
	{                                                                 \
		return enter((long)ctx->args[0]);                         \
	}                                                                 \
	SEC("tp/syscalls/sys_exit_" #name)                                \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)             \
	{                                                                 \
		return leave(ctx, ctx->ret);                              \
	}

IO_SYSCALL(write)
IO_SYSCALL(pwrite64)
IO_SYSCALL(writev)
IO_SYSCALL(read)
IO_SYSCALL(pread64)
IO_SYSCALL(fsync)
IO_SYSCALL(fdatasync)

/* GPL-compatible: bpf_probe_read_kernel and the stack helpers require it. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* syscall probe (opt-in: it runs on every system call of every process): per process,
 * failed calls by errno, and count, mean and maximum latency of the I/O, network,
 * scheduling and fork families, aggregated in the kernel.
 *
 * The family of each syscall number is a read-only table the collector fills before
 * load, so sys_enter costs a table read and returns for syscalls outside the families.
 * The start time waits in the caller's task-local storage, not in a hash.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sys_common.h"
#include "syscall.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u8 families[SYSCALL_MAX_NR];

volatile __u64 epoch;
volatile __u64 dropped;

struct start {
	__u64 ts;
	__u32 family;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct start);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, struct syscall_key);
	__type(value, __u64);
} errors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, struct syscall_key);
	__type(value, struct syscall_lat);
} lats SEC(".maps");

static const struct syscall_lat zero_lat;
static const __u64 zero_count;

SEC("raw_tp/sys_enter")
int BPF_PROG(on_enter, struct pt_regs *regs, long id)
{
	struct start *s;
	__u32 family;

	if (id < 0 || id >= SYSCALL_MAX_NR)
		return 0;
	family = families[id];
	if (family == SC_NONE)
		return 0;
	s = bpf_task_storage_get(&starts, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (s) {
		s->ts = bpf_ktime_get_ns();
		s->family = family;
	}
	return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(on_exit, struct pt_regs *regs, long ret)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct syscall_key key = { .tgid = tgid };
	struct start *s;

	if (ret < 0 && ret >= -4095) {
		__u64 *n;

		key.code = -ret;
		n = bpf_map_lookup_elem(&errors, &key);
		if (!n) {
			bpf_map_update_elem(&errors, &key, &zero_count, BPF_NOEXIST);
			n = bpf_map_lookup_elem(&errors, &key);
		}
		if (n)
			__sync_fetch_and_add(n, 1);
		else
			__sync_fetch_and_add(&dropped, 1);
	}

	s = bpf_task_storage_get(&starts, bpf_get_current_task_btf(), 0, 0);
	if (!s || !s->ts)
		return 0;
	__u64 lat = bpf_ktime_get_ns() - s->ts;
	struct syscall_lat *l;

	key.code = s->family;
	s->ts = 0;
	l = bpf_map_lookup_elem(&lats, &key);
	if (!l) {
		bpf_map_update_elem(&lats, &key, &zero_lat, BPF_NOEXIST);
		l = bpf_map_lookup_elem(&lats, &key);
		if (!l) {
			__sync_fetch_and_add(&dropped, 1);
			return 0;
		}
	}
	__sync_fetch_and_add(&l->count, 1);
	__sync_fetch_and_add(&l->sum_ns, lat);
	sys_max(&l->max_ns, &l->max_epoch, epoch, lat);
	return 0;
}

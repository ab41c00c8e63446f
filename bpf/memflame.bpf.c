// SPDX-License-Identifier: MIT OR Apache-2.0
/* Memory flame graphs: the user stacks at which processes fault pages in
 * (exceptions/page_fault_user), counted in faults, in the same buckets of (process, user
 * stack) as the other stack probes (stack_maps.h). A first touch of newly allocated
 * memory is a fault, so the graph shows where memory is taken into use; copy-on-write
 * after fork, file pages read in by mmap and pages swapped back are faults too. The
 * tracepoint fires before the fault is handled: a fault is counted whatever it maps
 * (one page, or a 2 MiB huge page).
 *
 * Sampled by count (struct tally, stack_maps.h): a thread's stack is taken once per
 * `period` faults on average and gets all of them, since a stack walk costs more than
 * the fault itself. No kernel stack: it is the fault path, the same for every fault. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "stack.h"
#include "stack_maps.h"

/* Set before load: the mean sampling period in faults (0 or 1: every fault). */
const volatile __u64 period = 0;

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct tally);
} threads SEC(".maps");

SEC("tp/exceptions/page_fault_user")
int page_fault(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct stack_key key = {};
	struct tally *t;

	if (!wanted(tgid))
		return 0;
	t = bpf_task_storage_get(&threads, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t || !tally_add(t, 1))
		return 0;
	take_stacks(ctx, &key, tgid, false);
	add_to(&counts, &key, tally_take(t, period));
	return 0;
}

/* GPL-compatible: the stack helpers require it. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";

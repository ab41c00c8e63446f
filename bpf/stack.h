/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* What the stack probes (oncpu, offcpu) share with user space: src/collect/stack/. */
#ifndef GALA_STACK_H
#define GALA_STACK_H

#define STACK_COMM_LEN 16
/* PERF_MAX_STACK_DEPTH: the kernel's own limit for one stack trace. */
#define STACK_MAX_DEPTH 127

/* One aggregation bucket: a process and its user and kernel stacks. A negative stack id
 * is the kernel's -errno: -EFAULT when there is no such stack (a kernel thread has no user
 * stack, a sample in user mode no kernel stack), -EEXIST on a stack-map hash collision. */
struct stack_key {
	__u32 tgid;
	__s32 user_stack_id;
	__s32 kern_stack_id;
	/* The process's name (its thread-group leader's comm), not the thread's. */
	char comm[STACK_COMM_LEN];
};

/* Per-CPU counters of what could not be recorded, indexed by this enum. */
enum stack_drop {
	DROP_COUNTS_FULL = 0, /* the counts map was full: the sample is lost */
	DROP_USER_STACK = 1,  /* the user stack could not be stored (map full or collision) */
	DROP_KERN_STACK = 2,  /* the same for the kernel stack */
	DROP_STARTS_FULL = 3, /* offcpu: no room to remember a switch-out */
	STACK_DROPS = 4,
};

#endif

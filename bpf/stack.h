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
	DROP_COPY_FULL = 4,   /* oncpu: no room in the ring buffer for a stack copy (the
			       * sample falls back to the frame-pointer stack) */
	DROP_COPY_FAULT = 5,  /* oncpu: the page at the user sp could not be read (same
			       * fallback) */
	STACK_DROPS = 6,
};

/* oncpu, processes whose frame-pointer walk is incomplete (user space names them in the
 * `unwind_tgids` map): instead of a bucket, the sample goes to user space with the user
 * registers and a copy of the top of the user stack, to be unwound there with the
 * binaries' .eh_frame. The copy is at most STACK_COPY_BYTES from sp up. */
#define STACK_COPY_BYTES 16384

struct stack_copy {
	__u32 tgid;
	/* The kernel stack: an id in `stacks`. No frame-pointer walk of the user stack is
	 * taken here: on code without frame pointers the kernel's walk follows whatever bp
	 * holds, up to 127 frames of user memory (a third of the program's time per copied
	 * sample, docs/flame.md "Measured"); user space walks the frame pointers of the
	 * copy instead. */
	__s32 kern_stack_id;
	/* Bytes of stack[] that hold the copy. */
	__u32 len;
	/* 1: the process's first copy since it was listed (a new process, or an exec):
	 * what user space knows of its memory map is not this program's. */
	__u32 first;
	__u64 ip;
	__u64 sp;
	__u64 bp;
	char comm[STACK_COMM_LEN];
	__u8 stack[STACK_COPY_BYTES];
};

#endif

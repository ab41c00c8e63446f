// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* io probe: block request latency (issue -> complete), queue time (insert -> issue),
 * bytes, counts, size mix and errors, per block device and per issuing process.
 *
 * Completion runs in interrupt context, where `current` is whoever was interrupted, so a
 * request is tracked by its address from its creation to its completion. Its owner is
 * the task that submitted its first bio, seen at block_io_start; a request a kernel
 * thread submitted (the flusher writing back dirty pages, a journal commit, swap-out) is
 * the kernel's, counted per device under IO_KEY_KTHREAD, so that a device's total is
 * always the sum of its processes' and its kernel threads'.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "io.h"
#include "kread.h"

#define PF_KTHREAD 0x00200000
#define REQ_OP_MASK 0xff
#define REQ_OP_READ 0
#define REQ_OP_WRITE 1

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile __u64 epoch;
/* Requests or keys not tracked because a map was full. */
volatile __u64 dropped;

struct io_req {
	__u64 insert_ts;
	__u64 issue_ts;
	__u32 tgid;
	__u32 dev;
	__u32 bytes;
	__u32 op;
	__u32 error;
	__u32 started;	/* block_io_start named this request's owner */
	__u64 born;	/* the request's allocation time (rq->start_time_ns), 0 if unknown */
};

/* Keyed by request address. blk-mq preallocates its requests, so the addresses form a
 * small fixed set and an entry is reused, never deleted, by the next request at the same
 * address: no delete on the completion path, and no stale entries piling up. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct io_req);
} reqs SEC(".maps");

/* Per CPU, so the ~12 counters a completion adds, twice (device and process), are plain
 * adds instead of locked ones; the collector sums the CPUs. Not preallocated: a value is
 * 300 bytes per CPU, and most of the 16384 keys are never used. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct io_key);
	__type(value, struct io_stats);
} stats SEC(".maps");

/* Where a completion's counters go when `stats` cannot take its key. A new key of a
 * per-CPU hash without preallocation needs memory, which the BPF allocator takes from a
 * per-CPU cache that holds one per-CPU value and is refilled by an irq_work: a completion
 * runs in the device's interrupt, so the second new key on a CPU within one interrupt (two
 * processes' first requests completed together) found it empty and the request was lost
 * (a writer charged 63 of its 64 MiB). This map is preallocated: an update never
 * allocates, so it fails only when all its entries are taken. Shared by the CPUs, so its
 * adds are atomic; it is only the fallback. The collector adds it to `stats`. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2048);
	__type(key, struct io_key);
	__type(value, struct io_stats);
} spill SEC(".maps");

static const struct io_stats zero_stats;

static __always_inline __u32 user_tgid(void)
{
	struct task_struct *cur = bpf_get_current_task_btf();

	return cur->flags & PF_KTHREAD ? 0 : cur->tgid;
}

/* The owner of the request at this address, at its insert or issue. `born`
 * (rq->start_time_ns) tells a request from the last one at the same address; it is read
 * here, not at block_io_start, because blk_account_io_start stamps it just after that
 * tracepoint when the queue keeps I/O statistics.
 *
 * Named at block_io_start: final, even when a kernel thread submitted it, since whoever
 * inserts or issues it later (kblockd, or another process whose plug flush ran the queue)
 * did not ask for it.
 *
 * Not named there (a kernel without block_io_start, before 6.5; a request already under
 * way when the probe attached): the first user process that inserts or issues it. A
 * request the device sent back busy is requeued, and kblockd's worker inserts and issues
 * it again: still the same request (same allocation time), so a kernel thread does not
 * take it from the process that issued it first. */
static __always_inline void set_owner(struct io_req *r, struct request *rq)
{
	__u64 born = KREAD(struct request, rq, start_time_ns);
	__u32 tgid;

	if (r->started && (!r->born || r->born == born)) {
		r->born = born;
		return;
	}
	r->started = 0;
	tgid = user_tgid();
	if (tgid || !born || r->born != born)
		r->tgid = tgid;
	r->born = born;
}

/* block_io_start fires once per request, from blk_account_io_start when blk_mq_submit_bio
 * turns a bio into a new request (merged bios join an existing one and do not fire it), in
 * the context of the task that submitted the bio. Insert and issue often run elsewhere:
 * from a plug flushed when the submitter sleeps, which hands dispatch to kblockd, or from
 * a kworker running the hardware queue; there `current` is a kernel thread and a third of a
 * direct reader's bytes went to nobody. A map update here is the whole cost: no record. */
SEC("raw_tp/block_io_start")
int BPF_PROG(on_start, struct request *rq)
{
	__u32 op = KREAD(struct request, rq, cmd_flags) & REQ_OP_MASK;
	__u64 key = (__u64)rq;

	if (op != REQ_OP_READ && op != REQ_OP_WRITE)
		return 0;
	struct io_req *r = bpf_map_lookup_elem(&reqs, &key);

	if (r) {
		r->insert_ts = 0;
		r->issue_ts = 0;
		r->tgid = user_tgid();
		r->started = 1;
		r->born = 0;
		return 0;
	}
	struct io_req n = { .tgid = user_tgid(), .started = 1 };

	if (bpf_map_update_elem(&reqs, &key, &n, BPF_NOEXIST))
		__sync_fetch_and_add(&dropped, 1);
	return 0;
}

SEC("raw_tp/block_rq_insert")
int BPF_PROG(on_insert, struct request *rq)
{
	__u32 op = KREAD(struct request, rq, cmd_flags) & REQ_OP_MASK;
	__u64 key = (__u64)rq;

	if (op != REQ_OP_READ && op != REQ_OP_WRITE)
		return 0;
	struct io_req *r = bpf_map_lookup_elem(&reqs, &key);

	/* Rewriting in place is much cheaper than replacing an element. */
	if (r) {
		r->insert_ts = bpf_ktime_get_ns();
		r->issue_ts = 0;
		set_owner(r, rq);
		return 0;
	}
	struct io_req n = { .insert_ts = bpf_ktime_get_ns(), .tgid = user_tgid(),
			    .born = KREAD(struct request, rq, start_time_ns) };

	if (bpf_map_update_elem(&reqs, &key, &n, BPF_NOEXIST))
		__sync_fetch_and_add(&dropped, 1);
	return 0;
}

SEC("raw_tp/block_rq_issue")
int BPF_PROG(on_issue, struct request *rq)
{
	__u32 op = KREAD(struct request, rq, cmd_flags) & REQ_OP_MASK;
	__u64 key = (__u64)rq, now;
	struct io_req *r;

	if (op != REQ_OP_READ && op != REQ_OP_WRITE)
		return 0;
	now = bpf_ktime_get_ns();
	r = bpf_map_lookup_elem(&reqs, &key);
	if (r && r->insert_ts && !r->issue_ts) {
		/* Inserted into the I/O scheduler first: queue time runs until now. */
		r->issue_ts = now;
		if (!r->tgid && !r->started)
			r->tgid = user_tgid();
	} else if (r) {
		r->insert_ts = 0;
		r->issue_ts = now;
		set_owner(r, rq);
	} else {
		struct io_req n = { .issue_ts = now, .tgid = user_tgid(),
				    .born = KREAD(struct request, rq, start_time_ns) };

		if (bpf_map_update_elem(&reqs, &key, &n, BPF_NOEXIST)) {
			__sync_fetch_and_add(&dropped, 1);
			return 0;
		}
		r = bpf_map_lookup_elem(&reqs, &key);
		if (!r)
			return 0;
	}
	r->op = op;
	r->bytes = KREAD(struct request, rq, __data_len);
	struct block_device *part = KREAD(struct request, rq, part);
	r->dev = part ? KREAD(struct block_device, part, bd_dev) : 0;
	r->error = 0;
	return 0;
}

SEC("raw_tp/block_rq_error")
int BPF_PROG(on_error, struct request *rq, int error, unsigned int nr_bytes)
{
	__u64 key = (__u64)rq;
	struct io_req *r = bpf_map_lookup_elem(&reqs, &key);

	if (r)
		r->error = 1;
	return 0;
}

/* The map value of `key`, created if missing: `stats` (per CPU) when it can take the key,
 * else `spill` (`*shared` says which). NULL only when both are full. */
static __always_inline struct io_stats *stats_of(struct io_key *key, bool *shared)
{
	struct io_stats *s = bpf_map_lookup_elem(&stats, key);

	*shared = false;
	if (s)
		return s;
	bpf_map_update_elem(&stats, key, &zero_stats, BPF_NOEXIST);
	s = bpf_map_lookup_elem(&stats, key);
	if (s)
		return s;
	*shared = true;
	s = bpf_map_lookup_elem(&spill, key);
	if (s)
		return s;
	bpf_map_update_elem(&spill, key, &zero_stats, BPF_NOEXIST);
	return bpf_map_lookup_elem(&spill, key);
}

/* Adds one completed request; `shared`: the value is spill's, which other CPUs update at
 * the same time (its interval maximum may then miss a concurrent larger one). */
#define ADD(field, v) do { if (shared) __sync_fetch_and_add(&s->field, v); else s->field += v; } while (0)

static __always_inline void account(__u32 kind, __u32 id, struct io_req *r, __u64 lat,
				    __u64 queue, __u64 e)
{
	struct io_key key = { .kind = kind, .id = id };
	bool shared;
	struct io_stats *s = stats_of(&key, &shared);

	if (!s) {
		__sync_fetch_and_add(&dropped, 1);
		return;
	}
	if (r->op == REQ_OP_READ) {
		ADD(rd_cnt, 1);
		ADD(rd_bytes, r->bytes);
		ADD(rd_lat_ns, lat);
	} else {
		ADD(wr_cnt, 1);
		ADD(wr_bytes, r->bytes);
		ADD(wr_lat_ns, lat);
	}
	if (queue) {
		ADD(queue_ns, queue);
		ADD(queue_cnt, 1);
	}
	if (r->bytes < 4096)
		ADD(small, 1);
	else
		ADD(large, 1);
	if (r->error)
		ADD(errors, 1);
	/* Two calls, each with a constant: with the flag as a variable the compiler bounds-
	 * checked one copy of the slot and indexed with another, which the verifier refused. */
	if (shared)
		sys_hist_add(s->lat_hist, lat, true);
	else
		sys_hist_add(s->lat_hist, lat, false);
	sys_max(&s->lat_max_ns, &s->lat_max_epoch, e, lat);
}

SEC("raw_tp/block_rq_complete")
int BPF_PROG(on_complete, struct request *rq, int error, unsigned int nr_bytes)
{
	__u64 key = (__u64)rq, now, lat, queue = 0, e = epoch;
	struct io_req *r = bpf_map_lookup_elem(&reqs, &key);

	if (!r || !r->issue_ts)
		return 0;
	if (!r->dev) {
		r->issue_ts = 0;
		return 0;
	}
	now = bpf_ktime_get_ns();
	lat = now - r->issue_ts;
	if (r->insert_ts && r->issue_ts > r->insert_ts)
		queue = r->issue_ts - r->insert_ts;
	account(IO_KEY_DEV, r->dev, r, lat, queue, e);
	if (r->tgid)
		account(IO_KEY_PROC, r->tgid, r, lat, queue, e);
	else
		account(IO_KEY_KTHREAD, r->dev, r, lat, queue, e);
	/* Done: the entry waits for the next request at this address. */
	r->issue_ts = 0;
	r->insert_ts = 0;
	return 0;
}

/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Map values of the io probe, shared with src/collect/bpf/sys/io.rs, which reads them as
 * arrays of __u64 in this field order. Counters are cumulative; the collector takes
 * deltas. */
#ifndef GALA_IO_H
#define GALA_IO_H

#include "sys_common.h"

enum io_key_kind {
	IO_KEY_DEV = 0,		/* id: the block device (partition or whole disk), kernel dev_t */
	IO_KEY_PROC = 1,	/* id: tgid of the process that submitted the requests */
	IO_KEY_KTHREAD = 2,	/* id: the block device, for its requests no user process
				 * submitted (writeback, journal, swap): a device's requests
				 * are its processes' plus these */
};

struct io_key {
	__u32 kind;
	__u32 id;
};

struct io_stats {
	__u64 rd_cnt;
	__u64 rd_bytes;
	__u64 rd_lat_ns;	/* issue -> complete, summed */
	__u64 wr_cnt;
	__u64 wr_bytes;
	__u64 wr_lat_ns;
	__u64 lat_max_ns;	/* this interval's, see sys_max() */
	__u64 lat_max_epoch;
	__u64 queue_ns;		/* insert -> issue, where the request was queued */
	__u64 queue_cnt;
	__u64 small;		/* requests < 4 KiB */
	__u64 large;		/* requests >= 4 KiB */
	__u64 errors;
	__u64 lat_hist[SYS_HIST_SLOTS];
};

#endif

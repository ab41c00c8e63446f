/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Structs shared by bpf/dns.bpf.c and src/collect/bpf/net/dns.rs (skeleton types). */
#ifndef GALA_DNS_H
#define GALA_DNS_H

#define GALA_DNS_NAME_LEN 124

struct dns_key {
	__u32 tgid;
	char name[GALA_DNS_NAME_LEN]; /* the node asked for, NUL-padded; longer names are cut */
};

struct dns_val {
	__u64 count;
	__u64 errors;   /* getaddrinfo returned non-zero (EAI_*) */
	__u64 delay_sum_ns;
	__u64 max_ns;
	__u32 max_epoch; /* max_ns belongs to this collection interval */
	__u32 pad;
	char comm[16];
};

struct dns_inflight {
	__u64 ts;
	__u64 node; /* user pointer to the name */
};

enum gala_dns_counter {
	DNS_CNT_MAP_FULL = 0,
	DNS_CNT_NO_ENTRY = 1, /* a return without its entry (inflight map full or probe attached mid-call) */
	DNS_CNT_MAX = 2,
};

#endif

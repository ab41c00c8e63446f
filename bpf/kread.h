/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Reading kernel structures from raw-tracepoint arguments (plain u64s, not typed
 * pointers the verifier lets a program dereference).
 *
 * BPF_CORE_READ makes one bpf_probe_read_kernel call per field (~20-30 ns each). On
 * kernels with the bpf_rdonly_cast kfunc (6.2+), bpf_core_cast turns the pointer into a
 * read-only typed one, and each field becomes a plain load the kernel guards with an
 * exception-table entry (a bad address reads as 0, as a failed probe read does). Older
 * kernels take the helper; the verifier drops the branch not taken.
 *
 * KREAD(type, ptr, field.path) reads one field (a path within the struct, not through
 * pointers); CO-RE relocates both ways. */
#ifndef GALA_KREAD_H
#define GALA_KREAD_H

#include <bpf/bpf_core_read.h>

#define KREAD(type, ptr, acc)                                                              \
	(bpf_ksym_exists(bpf_rdonly_cast) ? bpf_core_cast((ptr), type)->acc                \
					  : BPF_CORE_READ((type *)(ptr), acc))

#endif

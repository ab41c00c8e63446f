//! gala-flame: flame graphs from stack records, `perf script` text or folded stacks.

//! The one integration-test binary: a module per tool, plus the shared stream I/O.
//!
//! Tests that need root and BPF call `common::require_bpf()`: they skip when not root
//! unless GALA_REQUIRE_BPF=1 (as in CI), where they fail instead.

#[path = "gala/bpf_net.rs"]
mod bpf_net;
#[path = "gala/bpf_sys.rs"]
mod bpf_sys;
#[path = "gala/collect.rs"]
mod collect;
#[path = "gala/common.rs"]
mod common;
#[path = "gala/detect.rs"]
mod detect;
#[path = "gala/docs.rs"]
mod docs;
#[path = "gala/flame.rs"]
mod flame;
#[path = "gala/l7.rs"]
mod l7;
#[path = "gala/package.rs"]
mod package;
#[path = "gala/prometheus.rs"]
mod prometheus;
#[path = "gala/rca.rs"]
mod rca;
#[path = "gala/rca_faults.rs"]
mod rca_faults;
#[path = "gala/redis_faults.rs"]
mod redis_faults;
#[path = "gala/remote.rs"]
mod remote;
#[path = "gala/runtime.rs"]
mod runtime;
#[path = "gala/stream_io.rs"]
mod stream_io;
#[path = "gala/topo.rs"]
mod topo;
#[path = "gala/triage.rs"]
mod triage;

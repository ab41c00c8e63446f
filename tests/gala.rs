//! The one integration-test binary: a module per tool, plus the shared stream I/O.
//!
//! Tests that need root and BPF call `common::require_bpf()`: they skip when not root
//! unless GALA_REQUIRE_BPF=1 (as in CI), where they fail instead.

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
#[path = "gala/rca.rs"]
mod rca;
#[path = "gala/stream_io.rs"]
mod stream_io;
#[path = "gala/topo.rs"]
mod topo;

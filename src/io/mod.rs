//! Stream I/O shared by every tool: inputs, the record reader with its bad-input report,
//! the record writer, signals, and the exit-status convention.

pub(crate) mod bad_input;
pub(crate) mod csv_series;
pub(crate) mod input;
pub mod output;
pub(crate) mod progress;
pub mod prometheus;
pub(crate) mod records;
pub(crate) mod rotate;
pub(crate) mod same_file;
pub(crate) mod signals;

pub use bad_input::{BadInput, StrictStop};
pub use output::RecordWriter;
pub use records::{Item, ReadError, RecordReader};

/// Exit statuses, the same for every tool (see each man page's EXIT STATUS).
pub(crate) mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A meaningful "found nothing", for the tools that have one.
    pub const NOTHING: u8 = 1;
    /// An error, or bad input that was skipped.
    pub const ERROR: u8 = 2;
}

/// True when the error, or anything it wraps, is a closed pipe: `gala-collect | head`
/// ends quietly with status 0.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<ReadError>().is_some_and(
                |r| matches!(r, ReadError::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe),
            )
    })
}

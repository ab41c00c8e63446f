//! Where a graph goes: standard output or a file, gzip-compressed when its name ends in
//! `.gz` (an .svgz is just that). A graph is written once, at the end, so there is no
//! interval flushing here, unlike the record writer; the file itself is the shared `-o`
//! file (refused when it is an input, put in place only once complete).

use std::io::{self, Write};
use std::path::Path;

use crate::io::output::{Destination, Mode};

pub struct Output(Destination);

impl Output {
    /// Opens `path` (standard output when `None` or `-`).
    pub fn create(path: Option<&Path>) -> io::Result<Output> {
        Destination::create(path, &["gz", "svgz"], Mode::Replace).map(Output)
    }

    pub fn writer(&mut self) -> &mut dyn Write {
        self.0.writer()
    }

    /// Flushes, completes the gzip trailer, and puts the file in place.
    pub fn finish(self) -> io::Result<()> {
        self.0.finish()
    }
}

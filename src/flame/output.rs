//! Where a graph goes: standard output or a file, gzip-compressed when its name ends in
//! `.gz` (an .svgz is just that). A graph is written once, at the end, so there is no
//! interval flushing here, unlike the record writer.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

pub enum Output {
    Plain(BufWriter<Box<dyn Write>>),
    Gzip(Box<GzEncoder<BufWriter<File>>>),
}

impl Output {
    /// Opens `path` (standard output when `None` or `-`).
    pub fn create(path: Option<&Path>) -> io::Result<Output> {
        let Some(path) = path.filter(|p| p.as_os_str() != "-") else {
            return Ok(Output::Plain(BufWriter::with_capacity(
                256 << 10,
                Box::new(io::stdout()),
            )));
        };
        let file = File::create(path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display()))
        })?;
        Ok(
            if path.extension().is_some_and(|e| e == "gz" || e == "svgz") {
                let w = BufWriter::with_capacity(256 << 10, file);
                Output::Gzip(Box::new(GzEncoder::new(w, Compression::default())))
            } else {
                Output::Plain(BufWriter::with_capacity(256 << 10, Box::new(file)))
            },
        )
    }

    pub fn writer(&mut self) -> &mut dyn Write {
        match self {
            Output::Plain(w) => w,
            Output::Gzip(w) => w,
        }
    }

    /// Flushes, and completes the gzip trailer.
    pub fn finish(self) -> io::Result<()> {
        match self {
            Output::Plain(mut w) => w.flush(),
            Output::Gzip(w) => w.finish()?.flush(),
        }
    }
}

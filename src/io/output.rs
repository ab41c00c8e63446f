//! Where records go: standard output or `-o FILE` (gzip when the name ends in `.gz`),
//! buffered, flushed at the end of every interval and at exit, or after every line with
//! `--line-buffered`. Each record is serialised into a reused buffer and written with one
//! `write_all`, so a line is never half-written by our own doing and a broken pipe shows
//! up as a plain `io::Error` (serde_json would hide it behind its own error type).

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::record::Record;

enum Sink {
    Plain(BufWriter<Box<dyn Write + Send>>),
    // Boxed: the encoder's state is large, and a Sink is mostly Plain.
    Gzip(Box<GzEncoder<BufWriter<File>>>),
}

impl Sink {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Plain(w) => w,
            Sink::Gzip(w) => w,
        }
    }
}

pub struct RecordWriter {
    sink: Sink,
    buf: Vec<u8>,
    line_buffered: bool,
    records: u64,
}

impl RecordWriter {
    /// Opens `output` (standard output when `None` or `-`). Output to a terminal is
    /// line-buffered, as a person watching expects.
    pub fn create(output: Option<&Path>, line_buffered: bool) -> io::Result<RecordWriter> {
        let (sink, to_terminal) = match output {
            None => Self::stdout_sink(),
            Some(p) if p.as_os_str() == "-" => Self::stdout_sink(),
            Some(p) => {
                let file = File::create(p).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot create {}: {}", p.display(), e))
                })?;
                let gz = p.extension().is_some_and(|e| e == "gz");
                let sink = if gz {
                    let w = BufWriter::with_capacity(256 << 10, file);
                    Sink::Gzip(Box::new(GzEncoder::new(w, Compression::default())))
                } else {
                    Sink::Plain(BufWriter::with_capacity(256 << 10, Box::new(file)))
                };
                (sink, false)
            }
        };
        Ok(RecordWriter {
            sink,
            buf: Vec::with_capacity(1024),
            line_buffered: line_buffered || to_terminal,
            records: 0,
        })
    }

    /// A writer into any `Write` (tests, benchmarks, in-memory use).
    pub fn from_writer(w: Box<dyn Write + Send>, line_buffered: bool) -> RecordWriter {
        RecordWriter {
            sink: Sink::Plain(BufWriter::with_capacity(256 << 10, w)),
            buf: Vec::with_capacity(1024),
            line_buffered,
            records: 0,
        }
    }

    fn stdout_sink() -> (Sink, bool) {
        let tty = io::stdout().is_terminal();
        (
            Sink::Plain(BufWriter::with_capacity(256 << 10, Box::new(io::stdout()))),
            tty,
        )
    }

    /// Writes one record as a line.
    pub fn write(&mut self, rec: &Record) -> io::Result<()> {
        self.buf.clear();
        rec.write_json(&mut self.buf);
        self.buf.push(b'\n');
        self.emit()
    }

    /// Writes a line received from upstream, unchanged (pass-through).
    pub fn write_raw(&mut self, line: &str) -> io::Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
        self.emit()
    }

    /// Writes text as it is (DOT, Mermaid, reports): the caller ends its own lines.
    pub fn write_text(&mut self, text: &str) -> io::Result<()> {
        self.sink.writer().write_all(text.as_bytes())?;
        if self.line_buffered {
            self.sink.writer().flush()?;
        }
        Ok(())
    }

    fn emit(&mut self) -> io::Result<()> {
        let w = self.sink.writer();
        w.write_all(&self.buf)?;
        self.records += 1;
        if self.line_buffered {
            w.flush()?;
        }
        Ok(())
    }

    /// Marks the end of a collection interval: everything so far reaches the reader.
    pub fn end_interval(&mut self) -> io::Result<()> {
        self.sink.writer().flush()
    }

    /// Lines written so far.
    pub fn records_written(&self) -> u64 {
        self.records
    }

    /// Flushes and closes (completes the gzip trailer).
    pub fn finish(self) -> io::Result<()> {
        match self.sink {
            Sink::Plain(mut w) => w.flush(),
            Sink::Gzip(w) => w.finish()?.flush(),
        }
    }
}

//! Where records go: standard output or `-o FILE` (gzip when the name ends in `.gz`),
//! buffered, flushed at the end of every interval and at exit, or after every line with
//! `--line-buffered`. Each record is serialised into a reused buffer and written with one
//! `write_all`, so a line is never half-written by our own doing and a broken pipe shows
//! up as a plain `io::Error` (serde_json would hide it behind its own error type).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

use flate2::write::GzEncoder;
use flate2::Compression;

use super::rotate::{self, Rotation};
use super::same_file;
use crate::cli::OutputArgs;
use crate::record::Record;

/// A `-o` file. A regular file is written through a temporary file beside it (same
/// directory, so the rename is atomic) that replaces it on [`OutputFile::commit`]: a run
/// that fails, or is killed, leaves the old file whole instead of half a new one, and the
/// temporary file is removed when the run ends with an error. What is not a regular file
/// (a FIFO, `/dev/stdout`, a terminal, `/dev/null`) is written directly: there is nothing
/// to replace there, and renaming onto it would be wrong.
///
/// A recording ([`Mode::Record`], gala-collect's `-o`) is written in place when its file
/// is new: what a killed run recorded (SIGKILL, the OOM killer, a lost machine) is then
/// there to replay up to its last whole interval, instead of in a hidden temporary file.
/// An existing file is still replaced only at the end.
pub struct OutputFile {
    file: File,
    /// (temporary file, the file it becomes) while not yet committed.
    pending: Option<(PathBuf, PathBuf)>,
}

/// How a `-o` file comes to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A result: put in place whole when the run ends well, never half-written.
    Replace,
    /// A recording: a new file grows in place as the run goes (see [`OutputFile`]).
    Record,
}

impl OutputFile {
    /// Opens `path` for writing. Refuses a path that is an input of this run
    /// ([`same_file`]) or a directory, before anything is written.
    pub fn create(path: &Path, mode: Mode) -> io::Result<OutputFile> {
        let fail = |e: io::Error| {
            let reason = super::input::describe(&e);
            io::Error::new(
                e.kind(),
                format!("cannot create {}: {reason}", path.display()),
            )
        };
        // Following symlinks: what matters is the file that would be replaced.
        let meta = fs::metadata(path).ok();
        if let Some(meta) = &meta {
            if meta.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("cannot create {}: it is a directory", path.display()),
                ));
            }
            same_file::note_output(path, meta)?;
        }
        let special = meta.as_ref().is_some_and(|m| {
            let t = m.file_type();
            t.is_fifo() || t.is_char_device() || t.is_block_device() || t.is_socket()
        }) || path.starts_with("/dev")
            || path.starts_with("/proc");
        if mode == Mode::Record && meta.is_none() && fs::symlink_metadata(path).is_err() {
            // create_new: another run that made the file meanwhile is not truncated.
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(fail)?;
            return Ok(OutputFile {
                file,
                pending: None,
            });
        }
        if special {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map_err(fail)?;
            return Ok(OutputFile {
                file,
                pending: None,
            });
        }
        // A symlink stays a symlink: the file it points to is the one replaced.
        let target = match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() && meta.is_some() => {
                fs::canonicalize(path).map_err(fail)?
            }
            _ => path.to_path_buf(),
        };
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .ok_or_else(|| {
                fail(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a file name",
                ))
            })?
            .to_string_lossy()
            .into_owned();
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let (file, temp) = loop {
            let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
            let temp = dir.join(format!(".{name}.{}-{serial}.tmp", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&temp) {
                Ok(f) => break (f, temp),
                // Left by a killed run with a recycled pid: take the next name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && serial < 1000 => continue,
                Err(e) => return Err(fail(e)),
            }
        };
        // Replacing a file keeps its permissions (a new one gets the umask's, as usual).
        if let Some(meta) = &meta {
            let _ = file.set_permissions(fs::Permissions::from_mode(meta.permissions().mode()));
        }
        Ok(OutputFile {
            file,
            pending: Some((temp, target)),
        })
    }

    /// Puts the finished file in place: everything written must have been flushed to it.
    pub fn commit(mut self) -> io::Result<()> {
        if let Some((temp, target)) = self.pending.take() {
            if let Err(e) = fs::rename(&temp, &target) {
                let _ = fs::remove_file(&temp);
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "cannot replace {}: {}",
                        target.display(),
                        super::input::describe(&e)
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for OutputFile {
    /// Not committed: the run ended with an error, and the old file (if any) stays.
    fn drop(&mut self) {
        if let Some((temp, _)) = self.pending.take() {
            let _ = fs::remove_file(temp);
        }
    }
}

/// Where a tool's output goes: standard output, or a `-o` file, gzip-compressed when its
/// name ends in one of the extensions the tool gives. Shared by the record writer and
/// gala-flame's graphs.
pub enum Destination {
    Stdout(BufWriter<io::Stdout>),
    File(BufWriter<OutputFile>),
    // Boxed: the encoder's state is large.
    Gzip(Box<GzEncoder<BufWriter<OutputFile>>>),
    /// Any writer (tests, benchmarks, in-memory use).
    Other(BufWriter<Box<dyn Write + Send>>),
}

impl Destination {
    /// Standard output when `path` is `None` or `-`, else the file.
    pub fn create(
        path: Option<&Path>,
        gzip_extensions: &[&str],
        mode: Mode,
    ) -> io::Result<Destination> {
        let Some(path) = path.filter(|p| p.as_os_str() != "-") else {
            same_file::note_stdout()?;
            return Ok(Destination::Stdout(BufWriter::with_capacity(
                256 << 10,
                io::stdout(),
            )));
        };
        let file = BufWriter::with_capacity(256 << 10, OutputFile::create(path, mode)?);
        let gz = path
            .extension()
            .is_some_and(|e| gzip_extensions.iter().any(|g| e == *g));
        Ok(if gz {
            Destination::Gzip(Box::new(GzEncoder::new(file, Compression::default())))
        } else {
            Destination::File(file)
        })
    }

    pub fn writer(&mut self) -> &mut dyn Write {
        match self {
            Destination::Stdout(w) => w,
            Destination::File(w) => w,
            Destination::Gzip(w) => w,
            Destination::Other(w) => w,
        }
    }

    /// Flushes, completes the gzip trailer, and puts a file in place.
    pub fn finish(self) -> io::Result<()> {
        let file = match self {
            Destination::Stdout(mut w) => return w.flush(),
            Destination::Other(mut w) => return w.flush(),
            Destination::File(w) => w,
            Destination::Gzip(w) => w.finish()?,
        };
        file.into_inner().map_err(|e| e.into_error())?.commit()
    }
}

pub struct RecordWriter {
    sink: Destination,
    buf: Vec<u8>,
    line_buffered: bool,
    records: u64,
    /// `--keep`: pruned once this run's file is in place.
    rotation: Option<Rotation>,
}

impl RecordWriter {
    /// Opens the output a tool's `-o`/`--keep`/`--line-buffered` ask for: a time pattern
    /// in `-o` is expanded now (the run's start), and `--keep` prunes at [`Self::finish`].
    /// Returns the writer and the file's name (`None` for standard output).
    pub fn open(args: &OutputArgs, mode: Mode) -> io::Result<(RecordWriter, Option<PathBuf>)> {
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        let path = match args.output.as_deref() {
            Some(p) if p.as_os_str() != "-" && rotate::is_pattern(p) => {
                Some(rotate::expand(p, SystemTime::now()).map_err(invalid)?)
            }
            Some(p) if p.as_os_str() != "-" => Some(p.to_path_buf()),
            _ => None,
        };
        let rotation = match (args.keep, args.output.as_deref()) {
            (Some(keep), Some(pattern)) => Some(Rotation::new(pattern, keep).map_err(invalid)?),
            _ => None,
        };
        let mut writer = RecordWriter::create(path.as_deref(), args.line_buffered, mode)?;
        writer.rotation = rotation;
        Ok((writer, path))
    }

    /// Opens `output` (standard output when `None` or `-`). Output to a terminal is
    /// line-buffered, as a person watching expects.
    pub fn create(
        output: Option<&Path>,
        line_buffered: bool,
        mode: Mode,
    ) -> io::Result<RecordWriter> {
        let sink = Destination::create(output, &["gz"], mode)?;
        let to_terminal = matches!(sink, Destination::Stdout(_)) && io::stdout().is_terminal();
        Ok(RecordWriter {
            sink,
            buf: Vec::with_capacity(1024),
            line_buffered: line_buffered || to_terminal,
            records: 0,
            rotation: None,
        })
    }

    /// A writer into any `Write` (tests, benchmarks, in-memory use).
    pub fn from_writer(w: Box<dyn Write + Send>, line_buffered: bool) -> RecordWriter {
        RecordWriter {
            sink: Destination::Other(BufWriter::with_capacity(256 << 10, w)),
            buf: Vec::with_capacity(1024),
            line_buffered,
            records: 0,
            rotation: None,
        }
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

    /// Flushes and closes (completes the gzip trailer, puts a `-o` file in place). A
    /// writer dropped without `finish` leaves an existing `-o` file as it was.
    pub fn finish(self) -> io::Result<()> {
        self.sink.finish()?;
        if let Some(rotation) = &self.rotation {
            rotation.prune()?;
        }
        Ok(())
    }
}

//! Positional inputs: files, `-` for standard input (also when none are given), gzip
//! recognised by its magic bytes rather than by name, read line by line with a bound on
//! line length so that a corrupt file cannot exhaust memory.
//!
//! A bad input file is one problem, reported once, as `cat` and `jq` do: a file that is
//! missing, a directory or unreadable, or one that is binary rather than text, is named
//! with the reason, skipped, and the other inputs are still read (the run then ends with
//! status 2). An input that is also the output ends the run (see `same_file`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags};

use super::bad_input::{BadInput, StrictStop};
use super::{same_file, signals};

/// Longest line accepted; a longer one is reported and skipped, not buffered.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// How much of the first line decides whether an input is text.
const SNIFF_BYTES: usize = 4096;

/// One opened input and the name it is reported under.
pub struct Source {
    pub name: String,
    pub reader: Box<dyn BufRead + Send>,
}

/// Opens one input: `-` is standard input; gzip is detected from the first two bytes. The
/// error names the file: `PATH: reason`. An input whose first line is not text (a NUL
/// byte, or bytes that are not UTF-8) is refused as binary, so that it is reported once
/// instead of once per "line".
pub fn open(path: &Path) -> io::Result<Source> {
    let name = if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    let named = |e: io::Error| {
        if same_file::is_input_is_output(&e) {
            return e;
        }
        io::Error::new(e.kind(), format!("{name}: {}", describe(&e)))
    };
    let reader: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        if let Some(meta) = same_file::input_metadata(path) {
            same_file::note_input(&name, &meta).map_err(named)?;
        }
        if io::stdin().is_terminal() {
            // A person who typed the tool's name alone would otherwise face a silent
            // terminal, not knowing it waits for them.
            let tool = std::env::args_os()
                .next()
                .and_then(|a| {
                    Path::new(&a)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                })
                .unwrap_or_else(|| "gala".into());
            eprintln!(
                "{tool}: reading records from the terminal (Ctrl-D ends them); name a file, \
                 or pipe a recording in: gala-collect … | {tool}"
            );
            Box::new(TerminalStdin)
        } else {
            Box::new(io::stdin())
        }
    } else {
        let meta = std::fs::metadata(path).map_err(named)?;
        if meta.is_dir() {
            return Err(named(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            )));
        }
        same_file::note_input(&name, &meta).map_err(named)?;
        Box::new(File::open(path).map_err(named)?)
    };
    let reader = wrap(reader).map_err(named)?;
    Ok(Source { name, reader })
}

/// Opens one input, or reports it as skipped (`tool: PATH: reason`) and returns `None`: for
/// readers that open their inputs one by one themselves. An input that is also the
/// output is an error.
pub fn open_or_skip(path: &Path, bad: &mut BadInput) -> anyhow::Result<Option<Source>> {
    match open(path) {
        Ok(source) => Ok(Some(source)),
        Err(e) if same_file::is_input_is_output(&e) => Err(e.into()),
        Err(e) => {
            let (name, reason) = problem(path, &e);
            bad.report_file(&name, &reason)?;
            Ok(None)
        }
    }
}

/// The file and the reason in an error of [`open`], which says `PATH: reason`.
fn problem(path: &Path, e: &io::Error) -> (String, String) {
    let name = if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    let text = e.to_string();
    let reason = text
        .strip_prefix(&name)
        .and_then(|r| r.strip_prefix(": "))
        .unwrap_or(&text)
        .to_string();
    (name, reason)
}

/// The reason in an `io::Error`, without the `(os error 2)` that std appends.
pub fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn wrap(inner: Box<dyn Read + Send>) -> io::Result<Box<dyn BufRead + Send>> {
    let mut buffered = BufReader::with_capacity(256 << 10, inner);
    let head = fill(&mut buffered)?;
    let mut reader: Box<dyn BufRead + Send> =
        if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
            Box::new(BufReader::with_capacity(
                256 << 10,
                MultiGzDecoder::new(buffered),
            ))
        } else {
            Box::new(buffered)
        };
    if is_binary(fill(&mut reader)?) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "binary data, not text: skipped",
        ));
    }
    Ok(reader)
}

fn fill(r: &mut dyn BufRead) -> io::Result<&[u8]> {
    loop {
        match r.fill_buf() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Re-borrowed: the loop cannot hand out the first borrow (NLL limitation).
            Ok(_) => return r.fill_buf(),
            Err(e) => return Err(e),
        }
    }
}

/// True when the first line of `head` is not text: a NUL byte, or bytes that are not
/// UTF-8 (a character cut by the end of the sample does not count). Only the first line
/// decides, so that a text file with one corrupt line is still read, and that line is
/// reported with its number.
fn is_binary(head: &[u8]) -> bool {
    let end = memchr::memchr(b'\n', head)
        .unwrap_or(head.len())
        .min(SNIFF_BYTES);
    let first = &head[..end];
    first.contains(&0) || std::str::from_utf8(first).is_err_and(|e| e.error_len().is_some())
}

/// Standard input when it is a terminal. The signal handlers restart an interrupted
/// `read` (SA_RESTART), so a plain read would sit through Ctrl-C until the next line is
/// typed; `poll` is never restarted, so waiting in it lets the first SIGINT or SIGTERM end
/// the input at once. Pipes and files keep plain reads: a filter still reads what its
/// upstream flushes after the same Ctrl-C.
struct TerminalStdin;

impl Read for TerminalStdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if signals::received().is_some() {
                return Ok(0);
            }
            let stdin = io::stdin();
            let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
            // The timeout only covers a signal landing between the check above and the
            // poll; any other signal interrupts the poll itself.
            if !matches!(poll(&mut fds, 250u16), Ok(n) if n > 0) {
                continue;
            }
            // Straight from the fd, past Stdin's own buffer, which is never filled here.
            match nix::unistd::read(stdin.as_fd(), buf) {
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The inputs to read in order: the given paths, or standard input when there are none.
pub fn input_paths(inputs: &[PathBuf]) -> Vec<PathBuf> {
    if inputs.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        inputs.to_vec()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    NotUtf8,
    TooLong,
    /// Not a line: the whole input could not be read (or no further), and is skipped;
    /// [`Lines::problem`] says which and why.
    Unreadable,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            LineError::NotUtf8 => f.write_str("line is not valid UTF-8"),
            LineError::TooLong => write!(f, "line is longer than {} MiB", MAX_LINE_BYTES >> 20),
            LineError::Unreadable => f.write_str("the input cannot be read"),
        }
    }
}

/// Reads the lines of several inputs in turn, reusing one buffer.
pub struct Lines {
    pending: std::collections::VecDeque<Pending>,
    current: Option<Source>,
    number: u64,
    buf: Vec<u8>,
    /// The current line once checked as UTF-8: the buffer itself, moved (not copied) in
    /// and out, so that the check runs once a line however often the text is asked for.
    text: String,
    /// The input that could not be read, and why, after [`LineError::Unreadable`].
    problem: (String, String),
}

/// An input not yet being read: a path to open when its turn comes (so a missing file is
/// reported where it stands in the list), or a source opened by the caller.
enum Pending {
    Path(PathBuf),
    Open(Source),
}

impl Lines {
    pub fn new(inputs: &[PathBuf]) -> Lines {
        // Noted now, so that an output created before the first read can be refused.
        let _ = same_file::note_declared_inputs(&input_paths(inputs));
        Lines::with(input_paths(inputs).into_iter().map(Pending::Path).collect())
    }

    /// Lines of sources the caller opened (a Prometheus query, an in-memory buffer).
    pub fn from_sources(sources: Vec<Source>) -> Lines {
        Lines::with(sources.into_iter().map(Pending::Open).collect())
    }

    fn with(pending: std::collections::VecDeque<Pending>) -> Lines {
        Lines {
            pending,
            current: None,
            number: 0,
            buf: Vec::with_capacity(4096),
            text: String::new(),
            problem: (String::new(), String::new()),
        }
    }

    /// Moves to the next line: `None` at the end of the last input, else the line's number
    /// and whether it is usable text (then [`Lines::text`] has it). An input that cannot be
    /// opened or read is [`LineError::Unreadable`], and reading goes on with the next; only
    /// an input that is also the output is an error.
    pub fn advance(&mut self) -> io::Result<Option<(u64, Result<(), LineError>)>> {
        loop {
            if self.current.is_none() {
                self.number = 0;
                self.current = match self.pending.pop_front() {
                    None => return Ok(None),
                    Some(Pending::Path(path)) => match open(&path) {
                        Ok(source) => Some(source),
                        Err(e) if same_file::is_input_is_output(&e) => return Err(e),
                        Err(e) => {
                            self.problem = problem(&path, &e);
                            return Ok(Some((0, Err(LineError::Unreadable))));
                        }
                    },
                    Some(Pending::Open(source)) => Some(source),
                };
            }
            let src = self.current.as_mut().expect("opened above");
            if self.buf.capacity() == 0 {
                self.buf = std::mem::take(&mut self.text).into_bytes();
            }
            self.text.clear();
            self.buf.clear();
            let (n, too_long) = match read_bounded_line(&mut src.reader, &mut self.buf) {
                Ok(r) => r,
                // A read error (a corrupt gzip stream, an I/O error) ends this input only.
                Err(e) => {
                    let name = std::mem::take(&mut src.name);
                    self.current = None;
                    self.problem = (
                        name,
                        format!("{} (after line {})", describe(&e), self.number),
                    );
                    return Ok(Some((self.number, Err(LineError::Unreadable))));
                }
            };
            if n == 0 {
                self.current = None;
                continue;
            }
            self.number += 1;
            while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                self.buf.pop();
            }
            let status = if too_long {
                self.buf.clear();
                Err(LineError::TooLong)
            } else {
                match String::from_utf8(std::mem::take(&mut self.buf)) {
                    Ok(text) => {
                        self.text = text;
                        Ok(())
                    }
                    Err(e) => {
                        self.buf = e.into_bytes();
                        Err(LineError::NotUtf8)
                    }
                }
            };
            return Ok(Some((self.number, status)));
        }
    }

    /// The current line's text, without its line ending; empty when it was not text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The name of the input the current line came from.
    pub fn source(&self) -> &str {
        self.current.as_ref().map_or("<none>", |s| s.name.as_str())
    }

    /// Reports a line that `advance` found unusable: with its file and line, or, for an
    /// unreadable input, with the file alone.
    pub fn report(
        &self,
        bad: &mut BadInput,
        number: u64,
        err: LineError,
    ) -> Result<(), StrictStop> {
        match err {
            LineError::Unreadable => bad.report_file(&self.problem.0, &self.problem.1),
            e => bad.report(self.source(), number, &e.to_string()),
        }
    }
}

/// Reads up to and including the next newline into `buf`, keeping at most
/// [`MAX_LINE_BYTES`]; returns the bytes consumed and whether the line was cut.
fn read_bounded_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<(usize, bool)> {
    let mut consumed = 0;
    let mut too_long = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok((consumed, too_long));
        }
        let (take, done) = match memchr_newline(chunk) {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if buf.len() + take > MAX_LINE_BYTES {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        reader.consume(take);
        consumed += take;
        if done {
            return Ok((consumed, too_long));
        }
    }
}

fn memchr_newline(s: &[u8]) -> Option<usize> {
    // Word-at-a-time search: a byte loop here was the largest cost of a pass-through stage.
    memchr::memchr(b'\n', s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn bounded_line_skips_the_rest_of_a_huge_line() {
        let mut data = vec![b'x'; MAX_LINE_BYTES + 10];
        data.extend_from_slice(b"\nnext\n");
        let mut r = Cursor::new(data);
        let mut buf = Vec::new();
        let (n, cut) = read_bounded_line(&mut r, &mut buf).unwrap();
        assert!(cut);
        assert_eq!(n, MAX_LINE_BYTES + 11);
        assert!(buf.is_empty());
        buf.clear();
        let (_, cut) = read_bounded_line(&mut r, &mut buf).unwrap();
        assert!(!cut);
        assert_eq!(buf, b"next\n");
    }

    #[test]
    fn last_line_without_newline() {
        let mut r = Cursor::new(b"a\nb".to_vec());
        let mut buf = Vec::new();
        read_bounded_line(&mut r, &mut buf).unwrap();
        buf.clear();
        let (n, _) = read_bounded_line(&mut r, &mut buf).unwrap();
        assert_eq!((n, buf.as_slice()), (1, &b"b"[..]));
    }
}

//! Positional inputs: files, `-` for standard input (also when none are given), gzip
//! recognised by its magic bytes rather than by name, read line by line with a bound on
//! line length so that a corrupt file cannot exhaust memory.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

/// Longest line accepted; a longer one is reported and skipped, not buffered.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// One opened input and the name it is reported under.
pub struct Source {
    pub name: String,
    pub reader: Box<dyn BufRead + Send>,
}

/// Opens one input: `-` is standard input; gzip is detected from the first two bytes.
pub fn open(path: &Path) -> io::Result<Source> {
    if path.as_os_str() == "-" {
        return Ok(Source {
            name: "<stdin>".into(),
            reader: wrap(Box::new(io::stdin()))?,
        });
    }
    let file = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {}", path.display(), e)))?;
    Ok(Source {
        name: path.display().to_string(),
        reader: wrap(Box::new(file))?,
    })
}

fn wrap(inner: Box<dyn Read + Send>) -> io::Result<Box<dyn BufRead + Send>> {
    let mut buffered = BufReader::with_capacity(256 << 10, inner);
    let head = buffered.fill_buf()?;
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        Ok(Box::new(BufReader::with_capacity(
            256 << 10,
            MultiGzDecoder::new(buffered),
        )))
    } else {
        Ok(Box::new(buffered))
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
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            LineError::NotUtf8 => f.write_str("line is not valid UTF-8"),
            LineError::TooLong => write!(f, "line is longer than {} MiB", MAX_LINE_BYTES >> 20),
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
}

/// An input not yet being read: a path to open when its turn comes (so a missing file is
/// reported where it stands in the list), or a source opened by the caller.
enum Pending {
    Path(PathBuf),
    Open(Source),
}

impl Lines {
    pub fn new(inputs: &[PathBuf]) -> Lines {
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
        }
    }

    /// Moves to the next line: `None` at the end of the last input, else the line's number
    /// and whether it is usable text (then [`Lines::text`] has it). An input that cannot be
    /// opened or read is an error.
    pub fn advance(&mut self) -> io::Result<Option<(u64, Result<(), LineError>)>> {
        loop {
            if self.current.is_none() {
                self.current = match self.pending.pop_front() {
                    None => return Ok(None),
                    Some(Pending::Path(path)) => Some(open(&path)?),
                    Some(Pending::Open(source)) => Some(source),
                };
                self.number = 0;
            }
            let src = self.current.as_mut().expect("opened above");
            if self.buf.capacity() == 0 {
                self.buf = std::mem::take(&mut self.text).into_bytes();
            }
            self.text.clear();
            self.buf.clear();
            let (n, too_long) = read_bounded_line(&mut src.reader, &mut self.buf)?;
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

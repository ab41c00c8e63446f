//! Reading the record stream: lines from the inputs, parsed into [`Record`]s, with the raw
//! text kept so that a stage can pass records it does not consume through unchanged.

use std::io;
use std::path::PathBuf;

use super::bad_input::{BadInput, StrictStop};
use super::input::Lines;
use crate::record::Record;

/// A record and the exact line it came from.
pub struct Item<'a> {
    pub raw: &'a str,
    pub record: Record,
}

/// Why reading stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Strict(#[from] StrictStop),
}

pub struct RecordReader {
    lines: Lines,
    bad: BadInput,
    /// Number of the line `next_line` last returned, for `reject`.
    line: u64,
}

impl RecordReader {
    pub fn new(tool: &'static str, inputs: &[PathBuf], strict: bool) -> RecordReader {
        RecordReader {
            lines: Lines::new(inputs),
            bad: BadInput::new(tool, strict),
            line: 0,
        }
    }

    /// A reader over sources the caller opened (see [`Lines::from_sources`]).
    pub fn from_sources(
        tool: &'static str,
        sources: Vec<super::input::Source>,
        strict: bool,
    ) -> RecordReader {
        RecordReader {
            lines: Lines::from_sources(sources),
            bad: BadInput::new(tool, strict),
            line: 0,
        }
    }

    /// The next good record; bad lines are reported and skipped on the way, blank lines
    /// ignored.
    pub fn next_record(&mut self) -> Result<Option<Item<'_>>, ReadError> {
        let record = loop {
            let Some((number, status)) = self.lines.advance()? else {
                return Ok(None);
            };
            let message = match status {
                Err(e) => {
                    self.lines.report(&mut self.bad, number, e)?;
                    continue;
                }
                Ok(()) => {
                    let text = self.lines.text();
                    if text.trim().is_empty() {
                        continue;
                    }
                    match Record::from_line(text) {
                        Ok(record) => break record,
                        Err(message) => message,
                    }
                }
            };
            self.bad.report(self.lines.source(), number, &message)?;
        };
        Ok(Some(Item {
            raw: self.lines.text(),
            record,
        }))
    }

    /// The next non-blank line, unparsed: for a stage that passes most lines through and
    /// parses only the few fields it needs (a full parse costs several times more than
    /// the rest of such a stage). Lines that are not text are reported and skipped on the
    /// way; the caller reports a line it finds bad with [`RecordReader::reject`].
    pub fn next_line(&mut self) -> Result<Option<&str>, ReadError> {
        loop {
            let Some((number, status)) = self.lines.advance()? else {
                return Ok(None);
            };
            match status {
                Err(e) => self.lines.report(&mut self.bad, number, e)?,
                Ok(()) if self.lines.text().trim().is_empty() => {}
                Ok(()) => {
                    self.line = number;
                    return Ok(Some(self.lines.text()));
                }
            }
        }
    }

    /// Reports the line `next_line` last returned as bad: described, counted, skipped
    /// (or, under `--strict`, the end of the run).
    pub fn reject(&mut self, message: &str) -> Result<(), StrictStop> {
        self.bad.report(self.lines.source(), self.line, message)
    }

    /// Bad lines seen so far; call `summarise` on it at the end.
    pub fn bad_input(&self) -> &BadInput {
        &self.bad
    }
}

//! Bad input is reported, counted and skipped: `tool: FILE:LINE: what is wrong` on stderr,
//! a one-line summary at the end, and exit status 2. `--strict` stops at the first.

use std::io::Write;

/// How many bad lines are described one by one before the rest are only counted, so a
/// wrong file format does not bury the terminal.
const MAX_REPORTED: u64 = 50;

/// Stops the run at the first bad line (`--strict`).
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message} (stopped by --strict)")]
pub struct StrictStop {
    pub location: String,
    pub message: String,
}

#[derive(Debug)]
pub struct BadInput {
    tool: &'static str,
    strict: bool,
    count: u64,
    /// Inputs skipped whole (missing, a directory, binary) or cut short by a read error (a
    /// gzip stream without its end), counted apart from lines.
    files: u64,
    first: Option<String>,
}

impl BadInput {
    pub fn new(tool: &'static str, strict: bool) -> BadInput {
        BadInput {
            tool,
            strict,
            count: 0,
            files: 0,
            first: None,
        }
    }

    /// Records one bad line. Errors only under `--strict`.
    pub fn report(&mut self, source: &str, line: u64, message: &str) -> Result<(), StrictStop> {
        let location = format!("{source}:{line}");
        if self.strict {
            return Err(StrictStop {
                location,
                message: message.to_string(),
            });
        }
        self.count += 1;
        let mut err = std::io::stderr().lock();
        // stderr going away must not end the run: the records still matter.
        if self.count <= MAX_REPORTED {
            let _ = writeln!(err, "{}: {location}: {message}", self.tool);
        } else if self.count == MAX_REPORTED + 1 {
            let _ = writeln!(
                err,
                "{}: further bad lines are counted, not shown",
                self.tool
            );
        }
        if self.first.is_none() {
            self.first = Some(location);
        }
        Ok(())
    }

    /// Reports an input skipped whole or cut short: `tool: PATH: reason`. Errors only under `--strict`.
    pub fn report_file(&mut self, source: &str, reason: &str) -> Result<(), StrictStop> {
        if self.strict {
            return Err(StrictStop {
                location: source.to_string(),
                message: reason.to_string(),
            });
        }
        self.files += 1;
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}: {source}: {reason}",
            self.tool
        );
        Ok(())
    }

    /// Everything skipped: bad lines and inputs skipped whole.
    pub fn count(&self) -> u64 {
        self.count + self.files
    }

    /// Inputs skipped whole or cut short.
    pub fn files(&self) -> u64 {
        self.files
    }

    /// Prints the summary line, if anything was skipped; true when something was.
    pub fn summarise(&self) -> bool {
        if self.count == 0 && self.files == 0 {
            return false;
        }
        if self.files > 0 {
            let _ = writeln!(
                std::io::stderr().lock(),
                // Not "skipped": a recording cut short was read up to the cut.
                "{}: {} input{} unreadable or cut short (see above)",
                self.tool,
                self.files,
                if self.files == 1 { "" } else { "s" },
            );
        }
        if self.count == 0 {
            return true;
        }
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}: skipped {} bad line{} (first at {})",
            self.tool,
            self.count,
            if self.count == 1 { "" } else { "s" },
            self.first.as_deref().unwrap_or("?"),
        );
        true
    }
}

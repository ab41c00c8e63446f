//! An output must never be one of the inputs: `gala-topo rec.ndjson -o rec.ndjson` would
//! otherwise end with the recording gone. Files are compared by device and inode, so a
//! second name (a hard link, `./rec.ndjson`, a symlink) is caught as well as the same
//! spelling.
//!
//! The tools open their inputs and their output in different orders (gala-topo declares its
//! inputs first, gala-detect creates its output first, gala-flame reads everything before
//! it writes), so both sides are noted here, process-wide, and each side checks the other:
//! whichever comes second refuses. Nothing has been written to the output by then: `-o`
//! files are written through a temporary file renamed at the end (see `output.rs`).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

/// (device, inode) and the name the user gave.
type Seen = Vec<(u64, u64, String)>;

static INPUTS: Mutex<Seen> = Mutex::new(Vec::new());
static OUTPUTS: Mutex<Seen> = Mutex::new(Vec::new());

/// The refusal: the file named is both read and written.
#[derive(Debug, thiserror::Error)]
#[error("{input} is also the output ({output}): writing it would destroy the input; write to another file")]
pub struct InputIsOutput {
    pub input: String,
    /// How the output was given: `-o FILE`, or standard output.
    pub output: String,
}

/// How standard output is named in the refusal.
const STDOUT: &str = "standard output, redirected to it";

fn key(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// Notes an input about to be read (`name` as the user gave it); an error when it is an
/// output of this run.
pub fn note_input(name: &str, meta: &std::fs::Metadata) -> io::Result<()> {
    // Only regular files can be destroyed by writing: `/dev/null` may well be both.
    if !meta.is_file() {
        return Ok(());
    }
    let k = key(meta);
    let outputs = OUTPUTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, output)) = outputs.iter().find(|(d, i, _)| (*d, *i) == k) {
        return Err(io::Error::other(InputIsOutput {
            input: name.to_string(),
            output: output.clone(),
        }));
    }
    drop(outputs);
    INPUTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((k.0, k.1, name.to_string()));
    Ok(())
}

/// Notes the inputs a reader will read, as far as they exist now (standard input when it
/// is a file: `gala-topo < rec.ndjson -o rec.ndjson`). A file that cannot be looked at is
/// left to the reader, which reports it when its turn comes.
pub fn note_declared_inputs(paths: &[std::path::PathBuf]) -> io::Result<()> {
    for p in paths {
        if let Some(meta) = input_metadata(p) {
            note_input(&p.display().to_string(), &meta)?;
        }
    }
    Ok(())
}

/// The metadata of an input path, `-` being standard input; `None` when there is nothing
/// to compare (a missing file, a pipe or terminal on standard input).
pub fn input_metadata(path: &Path) -> Option<std::fs::Metadata> {
    if path.as_os_str() == "-" {
        // /proc/self/fd/0 follows standard input to what it is open on.
        return std::fs::metadata("/proc/self/fd/0")
            .ok()
            .filter(|m| m.is_file());
    }
    std::fs::metadata(path).ok()
}

/// Notes the output about to be written; an error when it is an input of this run.
pub fn note_output(path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    note_output_as(format!("-o {}", path.display()), meta)
}

/// Notes standard output as an output when it is a regular file; an error when that file
/// is an input of this run. A pipe, terminal or device is nothing to destroy.
pub fn note_stdout() -> io::Result<()> {
    // /proc/self/fd/1 follows standard output to what it is open on.
    match std::fs::metadata("/proc/self/fd/1") {
        Ok(meta) => note_output_as(STDOUT.to_string(), &meta),
        Err(_) => Ok(()),
    }
}

fn note_output_as(name: String, meta: &std::fs::Metadata) -> io::Result<()> {
    if !meta.is_file() {
        return Ok(());
    }
    let k = key(meta);
    let inputs = INPUTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, input)) = inputs.iter().find(|(d, i, _)| (*d, *i) == k) {
        return Err(io::Error::other(InputIsOutput {
            input: input.clone(),
            output: name,
        }));
    }
    drop(inputs);
    OUTPUTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((k.0, k.1, name));
    Ok(())
}

/// True when the error is the refusal above (which must end the run, not be skipped as an
/// unreadable input would be).
pub fn is_input_is_output(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|e| e.downcast_ref::<InputIsOutput>().is_some())
}

//! Man pages and shell completions, generated from the clap definitions and committed
//! under man/ and completions/. `GALA_BLESS=1 cargo test docs_are_current` rewrites them;
//! without it the same test fails when they are stale.
//!
//! Each tool has a page, and so has each of its subcommands (`gala-detect-eval.1`), since
//! the SUBCOMMANDS section names them. A page carries, after clap_mangen's NAME, SYNOPSIS,
//! DESCRIPTION, OPTIONS and SUBCOMMANDS: EXAMPLES, read from the `Examples:` block of the
//! command's `after_help` (so `--help` and the page show the same ones, written once),
//! EXIT STATUS from [`gala::cli::EXIT_STATUS_HELP`], and SEE ALSO.
//!
//! It lives with the docs test, not in the library: only that test writes and checks
//! the files, so clap_mangen and clap_complete are development dependencies and the
//! tools do not carry them.

use std::path::Path;

use clap::Command;
use clap_complete::Shell;
use clap_mangen::roff::{bold, roman, Roff};

/// Every tool's command, as its binary parses it.
pub fn commands() -> Vec<Command> {
    vec![
        gala::collect::cli::command(),
        gala::topo::cli::command(),
        gala::detect::cli::command(),
        gala::rca::cli::command(),
        gala::flame::cli::command(),
    ]
}

/// The generated files: (path relative to the repository root, contents).
pub fn render() -> Vec<(String, Vec<u8>)> {
    let tools = commands();
    let names: Vec<String> = tools.iter().map(|c| c.get_name().to_string()).collect();
    let mut files = Vec::new();
    for cmd in tools {
        let name = cmd.get_name().to_string();
        for (page, text) in man_pages(&cmd, &names) {
            files.push((format!("man/{page}.1"), text.into_bytes()));
        }
        for (shell, ext) in [
            (Shell::Bash, "bash"),
            (Shell::Zsh, "zsh"),
            (Shell::Fish, "fish"),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), name.clone(), &mut out);
            if shell == Shell::Bash {
                out = fix_bash_state_labels(&String::from_utf8_lossy(&out), &name).into_bytes();
            }
            files.push((format!("completions/{name}.{ext}"), out));
        }
    }
    files
}

/// Generated files under `root` that `render` no longer produces (a removed subcommand's
/// page), relative to `root`.
pub fn orphans(root: &Path) -> Vec<String> {
    let wanted: Vec<String> = render().into_iter().map(|(rel, _)| rel).collect();
    let mut found = Vec::new();
    for (dir, exts) in [
        ("man", &["1"][..]),
        ("completions", &["bash", "zsh", "fish"][..]),
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let generated =
                file.starts_with("gala-") && exts.iter().any(|e| file.ends_with(&format!(".{e}")));
            let rel = format!("{dir}/{file}");
            if generated && !wanted.contains(&rel) {
                found.push(rel);
            }
        }
    }
    found.sort();
    found
}

/// Writes the generated files under `root`, and removes the ones no longer generated.
pub fn write_all(root: &Path) -> std::io::Result<()> {
    for rel in orphans(root) {
        std::fs::remove_file(root.join(rel))?;
    }
    for (rel, contents) in render() {
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, contents)?;
    }
    Ok(())
}

/// clap_complete (4.6.11 and 4.6.12) spells the bash completer's state one way where it
/// sets it and another where it dispatches on it, for a binary whose name has a hyphen:
/// the loop sets `cmd="gala__collect__subcmd__doctor"` but the case arm reads
/// `gala__subcmd__collect__subcmd__doctor)`, so no subcommand ever completes its options
/// (clap-rs/clap#6421, #6386). Spell the arms the way the loop does. When upstream fixes
/// it, the wrong spelling no longer occurs and this changes nothing.
fn fix_bash_state_labels(script: &str, bin: &str) -> String {
    const SEP: &str = "__subcmd__";
    if !bin.contains('-') {
        return script.to_string();
    }
    let wrong = format!("{}{SEP}", bin.replace('-', SEP));
    let right = format!("{}{SEP}", bin.replace('-', "__"));
    script.replace(&wrong, &right)
}

/// The man pages of one tool: its own and one per visible subcommand (recursively), as
/// (page name, roff text).
fn man_pages(tool: &Command, tools: &[String]) -> Vec<(String, String)> {
    // `help` is clap's, documented by every page's --help; a page for it would say nothing.
    let mut root = tool.clone().disable_help_subcommand(true);
    root.build();
    // The page footer's source, on subcommand pages too (which have no version of their own).
    let source = format!(
        "{} {}",
        root.get_name(),
        root.get_version().unwrap_or_default()
    );
    let mut pages = Vec::new();
    add_pages(&root, None, tools, &source, &mut pages);
    pages
}

fn add_pages(
    cmd: &Command,
    parent: Option<&Command>,
    tools: &[String],
    source: &str,
    pages: &mut Vec<(String, String)>,
) {
    let subs: Vec<&Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    pages.push((page_name(cmd), man_page(cmd, parent, &subs, tools, source)));
    for sub in subs {
        add_pages(sub, Some(cmd), tools, source, pages);
    }
}

/// `gala-detect` for a tool, `gala-detect-eval` for its subcommand (clap_mangen's naming).
fn page_name(cmd: &Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string()
}

fn man_page(
    cmd: &Command,
    parent: Option<&Command>,
    subs: &[&Command],
    tools: &[String],
    source: &str,
) -> String {
    let mut mangen = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .source(source)
        .render(&mut mangen)
        .expect("rendering into a Vec cannot fail");
    let mangen = String::from_utf8(mangen).expect("clap_mangen writes UTF-8");
    // after_help's examples become EXAMPLES, after_long_help's exit statuses EXIT STATUS:
    // clap_mangen's EXTRA section would repeat both, unformatted.
    let mut sections = split_sections(&mangen);
    sections.retain(|(heading, _)| heading != "EXTRA");

    let own = vec![
        section("EXAMPLES", &examples_roff(&examples(cmd, parent))),
        section("EXIT STATUS", &exit_status_roff()),
        section(
            "SEE ALSO",
            &see_also_roff(&see_also(cmd, parent, subs, tools)),
        ),
    ];
    let at = sections
        .iter()
        .position(|(h, _)| h == "VERSION" || h == "AUTHORS")
        .unwrap_or(sections.len());
    sections.splice(at..at, own);

    let page: String = sections.into_iter().map(|(_, text)| text).collect();
    ascii_roff(&page)
}

/// Splits a page into its prologue (heading "") and `.SH` sections, each with its text.
fn split_sections(page: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![(String::new(), String::new())];
    for line in page.split_inclusive('\n') {
        if let Some(h) = line.strip_prefix(".SH ") {
            out.push((h.trim().trim_matches('"').to_string(), String::new()));
        }
        out.last_mut().expect("never empty").1.push_str(line);
    }
    out
}

fn section(heading: &str, body: &str) -> (String, String) {
    let mut head = Roff::new();
    head.control("SH", [heading]);
    (heading.to_string(), format!("{}{body}", roff_body(&head)))
}

/// Roff text without the apostrophe preamble `Roff::render` starts with: the page has it
/// once already, from clap_mangen.
fn roff_body(r: &Roff) -> String {
    let preamble = Roff::new().render();
    let text = r.render();
    text.strip_prefix(&preamble).unwrap_or(&text).to_string()
}

/// groff reads its input as Latin-1 unless told otherwise (`man` runs preconv, `groff`
/// alone does not, and warns), so write every non-ASCII character as a `\[uXXXX]` escape.
fn ascii_roff(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", c as u32));
        }
    }
    out
}

/// One example: the command line, and the comment after its `#`, if any.
#[derive(Debug, PartialEq)]
struct Example {
    line: String,
    comment: Option<String>,
}

/// The examples of a command: the indented lines after `Examples:` in its after_help, and
/// for a subcommand also its parent's examples that run it.
fn examples(cmd: &Command, parent: Option<&Command>) -> Vec<Example> {
    let mut out = examples_in(cmd);
    if let Some(parent) = parent {
        let bin = cmd
            .get_bin_name()
            .unwrap_or_else(|| cmd.get_name())
            .to_string();
        for e in examples_in(parent) {
            let runs_it = e.line.split('|').any(|stage| {
                let stage = stage.trim().trim_start_matches("sudo ");
                stage == bin || stage.starts_with(&format!("{bin} "))
            });
            if runs_it && !out.contains(&e) {
                out.push(e);
            }
        }
    }
    out
}

fn examples_in(cmd: &Command) -> Vec<Example> {
    let Some(help) = cmd.get_after_help() else {
        return Vec::new();
    };
    let help = help.to_string();
    let mut lines = help.lines().skip_while(|l| l.trim() != "Examples:").skip(1);
    let mut out = Vec::new();
    for line in lines.by_ref() {
        if !line.starts_with(' ') || line.trim().is_empty() {
            break;
        }
        // A comment is a `#` after two spaces, so that a `#` inside a command stays.
        let (line, comment) = match line.find("  #") {
            Some(i) => (
                &line[..i],
                Some(line[i..].trim().trim_start_matches('#').trim()),
            ),
            None => (line, None),
        };
        out.push(Example {
            line: line.trim().to_string(),
            comment: comment.map(str::to_string),
        });
    }
    out
}

/// Command lines and page names are read literally: left-aligned, never hyphenated.
fn literal(r: &mut Roff, body: impl FnOnce(&mut Roff)) {
    r.control("nh", []).control("ad", ["l"]);
    body(r);
    r.control("ad", ["b"]).control("hy", []);
}

fn examples_roff(examples: &[Example]) -> String {
    let mut r = Roff::new();
    literal(&mut r, |r| examples_into(r, examples));
    roff_body(&r)
}

fn examples_into(r: &mut Roff, examples: &[Example]) {
    for e in examples {
        r.control("TP", []);
        r.text([bold(e.line.as_str())]);
        if let Some(c) = &e.comment {
            r.text([roman(c.as_str())]);
        }
    }
}

/// The exit statuses, from the `  CODE  meaning` lines of [`gala::cli::EXIT_STATUS_HELP`].
fn exit_statuses() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in gala::cli::EXIT_STATUS_HELP.lines().skip(1) {
        let line = line.trim();
        match line.split_once(char::is_whitespace) {
            Some((code, text)) if code.chars().all(|c| c.is_ascii_digit()) => {
                out.push((code.to_string(), text.trim().to_string()))
            }
            // A continuation of the previous status's text.
            _ => {
                if let Some(last) = out.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line);
                }
            }
        }
    }
    out
}

fn exit_status_roff() -> String {
    let mut r = Roff::new();
    for (code, text) in exit_statuses() {
        r.control("TP", []);
        r.text([bold(code)]);
        r.text([roman(text)]);
    }
    roff_body(&r)
}

/// The pages a page points to: for a tool, its subcommands' pages and the other tools;
/// for a subcommand, its tool's page, its own subcommands' and its siblings'.
fn see_also(
    cmd: &Command,
    parent: Option<&Command>,
    subs: &[&Command],
    tools: &[String],
) -> Vec<String> {
    let me = page_name(cmd);
    let mut out: Vec<String> = Vec::new();
    if let Some(parent) = parent {
        out.push(page_name(parent));
    }
    out.extend(subs.iter().map(|s| page_name(s)));
    match parent {
        Some(parent) => out.extend(
            parent
                .get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(page_name),
        ),
        None => out.extend(tools.iter().cloned()),
    }
    let mut seen = Vec::new();
    out.retain(|p| {
        *p != me && !seen.contains(p) && {
            seen.push(p.clone());
            true
        }
    });
    out
}

fn see_also_roff(pages: &[String]) -> String {
    let mut r = Roff::new();
    let mut line = Vec::new();
    for (i, p) in pages.iter().enumerate() {
        line.push(bold(p.as_str()));
        line.push(roman(if i + 1 < pages.len() { "(1), " } else { "(1)" }));
    }
    r.text(line);
    roff_body(&r)
}

mod tests {
    use super::*;

    #[test]
    fn bash_state_labels_are_spelled_like_the_loop_sets_them() {
        let generated = "cmd=\"gala__collect__subcmd__doctor\"\n        gala__subcmd__collect__subcmd__doctor)\n";
        let fixed = fix_bash_state_labels(generated, "gala-collect");
        assert_eq!(
            fixed,
            "cmd=\"gala__collect__subcmd__doctor\"\n        gala__collect__subcmd__doctor)\n"
        );
        assert_eq!(fix_bash_state_labels(generated, "galactic"), generated);
    }

    #[test]
    fn examples_split_off_their_comment() {
        let cmd = Command::new("t").after_help(
            "Examples:\n  t a | jq '.x # y'\n  t b   # why b\n\nNot an example:\n  t c",
        );
        let got = examples_in(&cmd);
        assert_eq!(
            got,
            [
                Example {
                    line: "t a | jq '.x # y'".into(),
                    comment: None
                },
                Example {
                    line: "t b".into(),
                    comment: Some("why b".into())
                },
            ]
        );
    }

    #[test]
    fn every_exit_status_is_read() {
        let codes: Vec<String> = exit_statuses().into_iter().map(|(c, _)| c).collect();
        assert_eq!(codes, ["0", "1", "2", "130", "143"]);
    }

    #[test]
    fn non_ascii_becomes_a_groff_escape() {
        assert_eq!(ascii_roff("≈ 1 µs"), "\\[u2248] 1 \\[u00B5]s");
    }
}

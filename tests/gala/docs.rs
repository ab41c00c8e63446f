//! Man pages and completions are generated from the clap definitions and committed; this
//! fails when they are stale. `GALA_BLESS=1 cargo test docs_are_current` rewrites them.

use crate::common::root;

#[test]
fn docs_are_current() {
    let root = root();
    if std::env::var("GALA_BLESS").as_deref() == Ok("1") {
        gala::cli::docs::write_all(&root).unwrap();
        return;
    }
    let mut stale = Vec::new();
    for (rel, want) in gala::cli::docs::render() {
        match std::fs::read(root.join(&rel)) {
            Ok(have) if have == want => {}
            _ => stale.push(rel),
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated docs: {stale:?}; run `GALA_BLESS=1 cargo test docs_are_current` and commit"
    );
}

#[test]
fn every_command_is_consistent() {
    for cmd in gala::cli::docs::commands() {
        cmd.debug_assert();
    }
}

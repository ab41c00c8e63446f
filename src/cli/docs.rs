//! Man pages and shell completions, generated from the clap definitions and committed
//! under man/ and completions/. `GALA_BLESS=1 cargo test docs_are_current` rewrites them;
//! without it the same test fails when they are stale.

use std::path::Path;

use clap::Command;
use clap_complete::Shell;

/// Every tool's command, as its binary parses it.
pub fn commands() -> Vec<Command> {
    vec![
        crate::collect::cli::command(),
        crate::topo::cli::command(),
        crate::detect::cli::command(),
        crate::rca::cli::command(),
        crate::flame::cli::command(),
    ]
}

/// The generated files: (path relative to the repository root, contents).
pub fn render() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for cmd in commands() {
        let name = cmd.get_name().to_string();
        let mut man = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut man)
            .expect("rendering into a Vec cannot fail");
        files.push((format!("man/{name}.1"), man));
        for (shell, ext) in [
            (Shell::Bash, "bash"),
            (Shell::Zsh, "zsh"),
            (Shell::Fish, "fish"),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), name.clone(), &mut out);
            files.push((format!("completions/{name}.{ext}"), out));
        }
    }
    files
}

/// Writes the generated files under `root`.
pub fn write_all(root: &Path) -> std::io::Result<()> {
    for (rel, contents) in render() {
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, contents)?;
    }
    Ok(())
}

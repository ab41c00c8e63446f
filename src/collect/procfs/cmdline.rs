//! /proc/PID/cmdline, redacted: a command line is often where secrets are passed
//! (`--password x`, `token=…`, `postgres://user:pw@host`), and the collector's output
//! travels further than the machine. Redaction errs on the side of hiding too much.

/// What stands in for a hidden value.
pub const MASK: &str = "***";

/// Words that make an option or `key=` name sensitive (matched case-insensitively as
/// substrings, so `--db-password`, `API_KEY=` and `--auth-token` are all caught).
const SENSITIVE: &[&str] = &[
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "cookie",
    "session",
    "signature",
    "private",
];

fn is_sensitive(name: &str) -> bool {
    let name = name.trim_start_matches('-').to_ascii_lowercase();
    !name.is_empty() && SENSITIVE.iter().any(|w| name.contains(w))
}

/// Turns the NUL-separated /proc/PID/cmdline into one line with secrets masked. Arguments
/// are joined by spaces; at most `max` bytes are kept (cut on a character boundary).
pub fn redact(raw: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(raw);
    let args: Vec<&str> = text.trim_end_matches('\0').split('\0').collect();
    let mut out = String::with_capacity(text.len().min(max));
    let mut hide_next = false;
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if hide_next && !arg.starts_with('-') {
            out.push_str(MASK);
            hide_next = false;
            continue;
        }
        hide_next = false;
        if let Some((name, _value)) = arg.split_once('=') {
            if is_sensitive(name) {
                out.push_str(name);
                out.push('=');
                out.push_str(MASK);
                continue;
            }
        } else if arg.starts_with('-') && is_sensitive(arg) {
            hide_next = true;
        }
        push_masking_url_password(&mut out, arg);
    }
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// Copies `arg`, masking the password of any `scheme://user:password@host` in it.
fn push_masking_url_password(out: &mut String, arg: &str) {
    let mut rest = arg;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(['/', ' ', '?', '#']).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _pw)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(args: &[&str]) -> String {
        redact(args.join("\0").as_bytes(), 4096)
    }

    #[test]
    fn masks_values_after_sensitive_options() {
        assert_eq!(
            r(&["mysqld", "--password", "hunter2", "--port", "3306"]),
            "mysqld --password *** --port 3306"
        );
        assert_eq!(r(&["app", "--api-key=abc", "-v"]), "app --api-key=*** -v");
        assert_eq!(
            r(&["env", "TOKEN=xyz", "DB_PASSWORD=p"]),
            "env TOKEN=*** DB_PASSWORD=***"
        );
        assert_eq!(r(&["x", "--secret"]), "x --secret");
        assert_eq!(r(&["x", "--token", "--verbose"]), "x --token --verbose");
    }

    #[test]
    fn masks_url_passwords() {
        assert_eq!(
            r(&["psql", "postgres://bob:pw@db:5432/app"]),
            "psql postgres://bob:***@db:5432/app"
        );
        assert_eq!(
            r(&["curl", "https://example.org/a@b"]),
            "curl https://example.org/a@b"
        );
    }

    #[test]
    fn keeps_ordinary_arguments_and_cuts_long_lines() {
        assert_eq!(r(&["sleep", "1000"]), "sleep 1000");
        assert_eq!(redact("ééé".as_bytes(), 3), "é");
        assert_eq!(redact(b"", 10), "");
        assert_eq!(redact(b"a\0b\0", 10), "a b");
    }
}

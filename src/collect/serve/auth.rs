//! HTTP basic auth against the bcrypt hashes of `basic_auth_users`.
//!
//! bcrypt is slow on purpose (tens of milliseconds at cost 10), and Prometheus sends the
//! same credentials with every scrape. As exporter-toolkit does, a successful check is
//! remembered, so each scraper pays it once; what is remembered is a SHA-256 digest of
//! user, hash and password, never the password. Failures are never remembered: each
//! wrong guess costs the guesser a full bcrypt, on its own connection thread.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use base64::Engine;

/// Credentials remembered at most; past it the memory starts afresh (a fleet has a few
/// scrapers, not thousands).
const REMEMBERED: usize = 64;

/// Checks `Authorization` headers.
pub struct BasicAuth {
    users: HashMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
    /// A valid hash checked when the user is unknown, so that an unknown user takes as long
    /// as a wrong password and the timing tells nobody which users exist.
    decoy: String,
}

impl BasicAuth {
    /// `users`: name → bcrypt hash, already checked to parse.
    pub fn new(users: HashMap<String, String>) -> BasicAuth {
        // The cost of the decoy follows the users' so that both take as long.
        let decoy = users.values().next().cloned().unwrap_or_else(|| {
            "$2b$04$EGdrhbKUv8Oc9vGiXX0HQOxSg445d458Muh7DAHskb6QbtCvdxcie".into()
        });
        BasicAuth {
            users,
            verified: Mutex::new(HashSet::new()),
            decoy,
        }
    }

    /// Whether the value of an `Authorization` header (None: no header) lets the request in.
    pub fn allows(&self, header: Option<&str>) -> bool {
        let Some((user, password)) = header.and_then(decode) else {
            return false;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(h) => (h.as_str(), true),
            None => (self.decoy.as_str(), false),
        };
        let digest = {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            for part in [user.as_bytes(), hash.as_bytes(), &password] {
                // Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
                ctx.update(&(part.len() as u64).to_le_bytes());
                ctx.update(part);
            }
            let mut d = [0u8; 32];
            d.copy_from_slice(ctx.finish().as_ref());
            d
        };
        let lock = || self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if known && lock().contains(&digest) {
            return true;
        }
        let ok = bcrypt::verify(&password, hash).unwrap_or(false) && known;
        if ok {
            let mut verified = lock();
            if verified.len() >= REMEMBERED {
                verified.clear();
            }
            verified.insert(digest);
        }
        ok
    }
}

/// `Basic dXNlcjpwYXNz` → ("user", b"pass"). The scheme is case-insensitive (RFC 7617).
fn decode(header: &str) -> Option<(String, Vec<u8>)> {
    let (scheme, token) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let colon = raw.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(raw[..colon].to_vec()).ok()?;
    Some((user, raw[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::super::web_config::tests::{HASH, PASSWORD};
    use super::*;

    fn header(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    fn auth() -> BasicAuth {
        BasicAuth::new([("prometheus".to_string(), HASH.to_string())].into())
    }

    #[test]
    fn the_right_password_lets_in_and_nothing_else_does() {
        let a = auth();
        assert!(a.allows(Some(&header("prometheus", PASSWORD))));
        // Again, from memory this time.
        assert!(a.allows(Some(&header("prometheus", PASSWORD))));
        assert!(!a.allows(None));
        assert!(!a.allows(Some(&header("prometheus", "wrong"))));
        assert!(!a.allows(Some(&header("prometheus", ""))));
        // The right password under another name: the decoy hash is the user's own here.
        assert!(!a.allows(Some(&header("someone", PASSWORD))));
        assert!(!a.allows(Some("Bearer abc")));
        assert!(!a.allows(Some("Basic not-base64!")));
        assert!(!a.allows(Some("Basic bm9jb2xvbg==")));
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_passwords_may_hold_colons() {
        let hash = bcrypt::hash("a:b", 4).unwrap();
        let a = BasicAuth::new([("u".to_string(), hash)].into());
        assert!(a.allows(Some(&header("u", "a:b").replacen("Basic", "basic", 1))));
        assert!(!a.allows(Some(&header("u", "a"))));
    }
}

//! Entity ids in gala-ops' form: `<machine_id>_<kind>_<key1>_…_<keyN>`.
//!
//! gala-ops operators recognise these at a glance, and gala-spider/gala-inference consumers
//! key on them, so the form and escaping follow gala-ops: every character outside
//! `[A-Za-z0-9_-:.@()+,=;$!*'%]` becomes `:`, and the id is cut to 254 characters.

/// Longest id gala-ops accepts.
pub const MAX_ID_LEN: usize = 254;

/// True for the characters gala-ops keeps as they are in an id.
pub const fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '_' | '-'
                | ':'
                | '.'
                | '@'
                | '('
                | ')'
                | '+'
                | ','
                | '='
                | ';'
                | '$'
                | '!'
                | '*'
                | '\''
                | '%'
        )
}

/// [`is_id_char`] as a table over bytes (non-ASCII bytes are never id characters).
const ID_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 128 {
        t[b] = is_id_char(b as u8 as char);
        b += 1;
    }
    t
};

/// Builds an entity id from the machine id, the kind and the key values in key order.
///
/// Empty parts stay as empty segments (`m_tcp_link__1`), as gala-ops does, so that ids of
/// different key sets never collide by shifting. An empty result (impossible with a
/// non-empty kind) would be invalid, so callers always pass a kind.
pub fn entity_id<'a, I>(machine_id: &str, kind: &str, keys: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    let mut id = String::with_capacity(64);
    push_escaped(&mut id, machine_id);
    id.push('_');
    push_escaped(&mut id, kind);
    for key in keys {
        id.push('_');
        push_escaped(&mut id, key);
    }
    truncate_id(id)
}

fn push_escaped(out: &mut String, part: &str) {
    out.extend(part.chars().map(|c| if is_id_char(c) { c } else { ':' }));
}

fn truncate_id(mut id: String) -> String {
    if id.len() > MAX_ID_LEN {
        // Every kept character is ASCII, so any byte index is a char boundary.
        id.truncate(MAX_ID_LEN);
    }
    id
}

/// Checks that an id read from input has gala-ops' form (length and alphabet).
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!(
            "id must be 1 to {MAX_ID_LEN} characters, got {}",
            id.len()
        ));
    }
    // Every record carries an id, so the common case (all ASCII id characters) is one
    // table lookup per byte; the slower scan below only finds the character to report.
    if id.bytes().all(|b| ID_BYTES[b as usize]) {
        return Ok(());
    }
    if let Some(c) = id.chars().find(|&c| !is_id_char(c)) {
        return Err(format!("id contains {c:?}, which gala-ops ids never do"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_parts_with_underscores() {
        let id = entity_id(
            "a1b2",
            "tcp_link",
            ["1234", "client", "10.0.0.1", "10.0.0.2", "6379"],
        );
        assert_eq!(id, "a1b2_tcp_link_1234_client_10.0.0.1_10.0.0.2_6379");
    }

    #[test]
    fn escapes_outside_alphabet() {
        let id = entity_id("m", "proc", ["my proc/x\u{e9}#"]);
        assert_eq!(id, "m_proc_my:proc:x::");
        // IPv6 keeps its colons, which are in the alphabet.
        assert_eq!(entity_id("m", "nic", ["::1"]), "m_nic_::1");
    }

    #[test]
    fn keeps_every_allowed_punctuation() {
        let allowed = "_-:.@()+,=;$!*'%";
        assert_eq!(entity_id("m", "x", [allowed]), format!("m_x_{allowed}"));
    }

    #[test]
    fn cuts_to_254() {
        let long = "k".repeat(400);
        let id = entity_id("m", "proc", [long.as_str()]);
        assert_eq!(id.len(), MAX_ID_LEN);
        assert!(validate_id(&id).is_ok());
    }

    #[test]
    fn validates() {
        assert!(validate_id("").is_err());
        assert!(validate_id("a b").is_err());
        assert!(validate_id("m_proc_1").is_ok());
    }
}

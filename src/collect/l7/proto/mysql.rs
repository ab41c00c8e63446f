//! MySQL/MariaDB client/server protocol. Packets are a 3-byte little-endian length, a
//! sequence number, then the payload. A command starts a sequence (number 0) with a
//! command byte (`COM_QUERY` = 3…); the answer is the server's next payload, an error
//! when its first packet is an ERR packet (0xff).

use super::{sql_verb, Reply, Sent};

fn header(b: &[u8]) -> Option<(usize, u8)> {
    let h = b.get(..4)?;
    Some((
        usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16,
        h[3],
    ))
}

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_PING: u8 = 0x0e;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_CLOSE: u8 = 0x19;
const COM_STMT_RESET: u8 = 0x1a;
const COM_RESET_CONNECTION: u8 = 0x1f;

/// A client payload: a command packet (sequence 0) whose length matches what was sent.
pub fn parse_client(bytes: &[u8], total: u64) -> Option<Sent> {
    let (len, seq) = header(bytes)?;
    if len == 0 || (len + 4) as u64 != total {
        return None;
    }
    if seq != 0 {
        // Login and auth-switch answers continue the server's sequence.
        return (seq < 8 && len >= 4).then_some(Sent::Control);
    }
    let cmd = *bytes.get(4)?;
    let body = bytes.get(5..).unwrap_or_default();
    let method = match cmd {
        COM_QUERY => sql_verb(body),
        COM_STMT_PREPARE => "PREPARE".into(),
        COM_STMT_EXECUTE => "EXECUTE".into(),
        COM_INIT_DB => "USE".into(),
        COM_PING => "PING".into(),
        COM_STMT_RESET => "RESET".into(),
        COM_RESET_CONNECTION => "RESET".into(),
        // No response follows these.
        COM_QUIT | COM_STMT_CLOSE => return Some(Sent::Control),
        _ => return None,
    };
    Some(Sent::one(method))
}

/// The server's greeting (protocol version 10, a NUL-terminated version string).
pub fn is_greeting(bytes: &[u8], total: u64) -> bool {
    let Some((len, seq)) = header(bytes) else {
        return false;
    };
    seq == 0
        && (len + 4) as u64 == total
        && bytes.get(4) == Some(&10)
        && bytes
            .get(5..)
            .is_some_and(|v| v.iter().take(64).any(|&b| b == 0))
}

pub fn parse_server(bytes: &[u8], total: u64) -> Option<Reply> {
    let (len, _seq) = header(bytes)?;
    if len == 0 || (len + 4) as u64 > total {
        return None;
    }
    let first = *bytes.get(4)?;
    Some(Reply::one(first == 0xff, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured with `strace -x` from the mariadb 10.11 client against Debian's
    // mariadbd 10.11: greeting, login, `select 1`, a failing select, quit.
    const GREETING: &[u8] = b"\x64\x00\x00\x00\x0a\x35\x2e\x35\x2e\x35\x2d\x31\x30\x2e\x31\x31\x2e\x31\x39\x2d\x4d\x61\x72\x69\x61\x44\x42\x2d\x30\x2b\x64\x65\x62\x31\x32\x75\x31\x00\x03\x00\x00\x00\x2e\x42\x43\x66\x5a\x6f\x40\x30\x00\xfe\xf7\x08\x02\x00\xff\x81\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00\x70\x63\x22\x7a\x65\x6b\x6a\x53\x40\x25\x36\x21\x00\x6d\x79\x73\x71\x6c\x5f\x6e\x61\x74\x69\x76\x65\x5f\x70\x61\x73\x73\x77\x6f\x72\x64\x00";
    const LOGIN: &[u8] = b"\xbc\x00\x00\x01\x84\xa2\xbf\x00\x00\x00\x10\x00\x21\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00\x72\x6f\x6f\x74\x00\x00\x6d\x79\x73\x71\x6c\x5f\x6e\x61\x74\x69\x76\x65\x5f\x70\x61\x73\x73\x77\x6f\x72\x64\x00\x7f\x03\x5f\x6f\x73\x05\x4c\x69\x6e\x75\x78\x0c\x5f\x63\x6c\x69\x65\x6e\x74\x5f\x6e\x61\x6d\x65\x0a\x6c\x69\x62\x6d\x61\x72\x69\x61\x64\x62\x04\x5f\x70\x69\x64\x05\x31\x30\x35\x35\x30\x0f\x5f\x63\x6c\x69\x65\x6e\x74\x5f\x76\x65\x72\x73\x69\x6f\x6e\x06\x33\x2e\x33\x2e\x32\x30\x09\x5f\x70\x6c\x61\x74\x66\x6f\x72\x6d\x06\x78\x38\x36\x5f\x36\x34\x0c\x70\x72\x6f\x67\x72\x61\x6d\x5f\x6e\x61\x6d\x65\x05\x6d\x79\x73\x71\x6c\x0c\x5f\x73\x65\x72\x76\x65\x72\x5f\x68\x6f\x73\x74\x09\x31\x32\x37\x2e\x30\x2e\x30\x2e\x31";
    const LOGIN_OK: &[u8] = b"\x07\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00";
    const QUERY: &[u8] = b"\x09\x00\x00\x00\x03\x73\x65\x6c\x65\x63\x74\x20\x31";
    const RESULTSET: &[u8] = b"\x02\x00\x00\x01\x01\x01\x18\x00\x00\x02\x03\x64\x65\x66\x00\x00\x00\x01\x31\x00\x00\x0c\x3f\x00\x01\x00\x00\x00\x03\x81\x00\x00\x00\x00\x05\x00\x00\x03\xfe\x00\x00\x02\x00\x02\x00\x00\x04\x01\x31\x05\x00\x00\x05\xfe\x00\x00\x02\x00";
    const BAD_QUERY: &[u8] = b"\x1b\x00\x00\x00\x03\x73\x65\x6c\x65\x63\x74\x20\x2a\x20\x66\x72\x6f\x6d\x20\x6d\x79\x73\x71\x6c\x2e\x6e\x6f\x73\x75\x63\x68";
    const ERR: &[u8] = b"\x2b\x00\x00\x01\xff\x7a\x04\x23\x34\x32\x53\x30\x32\x54\x61\x62\x6c\x65\x20\x27\x6d\x79\x73\x71\x6c\x2e\x6e\x6f\x73\x75\x63\x68\x27\x20\x64\x6f\x65\x73\x6e\x27\x74\x20\x65\x78\x69\x73\x74";
    const QUIT: &[u8] = b"\x01\x00\x00\x00\x01";

    fn n(b: &[u8]) -> u64 {
        b.len() as u64
    }

    #[test]
    fn client() {
        for (q, verb) in [(QUERY, "SELECT"), (BAD_QUERY, "SELECT")] {
            assert_eq!(parse_client(q, n(q)), Some(Sent::one(verb.into())));
        }
        assert_eq!(parse_client(LOGIN, n(LOGIN)), Some(Sent::Control));
        assert_eq!(parse_client(QUIT, n(QUIT)), Some(Sent::Control));
        // Length disagreeing with the syscall: not MySQL.
        assert_eq!(parse_client(QUERY, 100), None);
        assert_eq!(parse_client(b"GET / HTTP/1.1\r\n", 16), None);
    }

    #[test]
    fn server() {
        assert!(is_greeting(GREETING, n(GREETING)));
        assert!(!is_greeting(LOGIN_OK, n(LOGIN_OK)));
        assert_eq!(parse_server(LOGIN_OK, n(LOGIN_OK)).unwrap().errors(), 0);
        assert_eq!(parse_server(RESULTSET, n(RESULTSET)).unwrap().errors(), 0);
        assert_eq!(parse_server(ERR, n(ERR)).unwrap().errors(), 1);
    }

    #[test]
    fn never_panics_on_prefixes() {
        for msg in [GREETING, LOGIN, LOGIN_OK, QUERY, RESULTSET, ERR, QUIT] {
            for i in 0..msg.len() {
                let _ = parse_client(&msg[..i], n(msg));
                let _ = parse_server(&msg[i..], i as u64);
                let _ = is_greeting(&msg[..i], 0);
            }
        }
    }
}

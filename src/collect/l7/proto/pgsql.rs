//! PostgreSQL wire protocol v3. Messages are a type byte and a big-endian length that
//! counts itself; the startup packet has no type byte. A request is a client payload
//! with a simple query (`Q`) or an extended-query batch (`P`/`B`/`E`…`S`), or a function
//! call (`F`); the response is the server's next payload, an error when it carries an
//! ErrorResponse (`E`).

use super::{sql_verb, Reply, Sent};

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// Startup, SSLRequest, GSSENCRequest and CancelRequest codes.
const STARTUP_CODES: &[u32] = &[196_608, 80_877_103, 80_877_104, 80_877_102];

const FRONTEND: &[u8] = b"QPBEDSFHCXpfcd";
const BACKEND: &[u8] = b"RSKZTDCEN123ntsIGHWdcAVv";

/// Walks the messages in the prefix; the types seen, or None when the framing is off.
fn walk(bytes: &[u8], total: u64, allowed: &[u8]) -> Option<Vec<(u8, usize)>> {
    let mut at = 0usize;
    let mut seen = Vec::new();
    while at < bytes.len() {
        let t = bytes[at];
        if !allowed.contains(&t) {
            return None;
        }
        let Some(len) = be32(&bytes[at + 1..]) else {
            // The length is cut by the prefix: the type alone has to do.
            seen.push((t, at));
            break;
        };
        if !(4..1 << 30).contains(&len) || (at + 1 + len as usize) as u64 > total {
            return None;
        }
        seen.push((t, at));
        at += 1 + len as usize;
        if seen.len() > 64 {
            break;
        }
    }
    // A complete capture has to end exactly at a message boundary.
    if bytes.len() as u64 == total && at as u64 != total {
        return None;
    }
    (!seen.is_empty()).then_some(seen)
}

pub fn parse_frontend(bytes: &[u8], total: u64) -> Option<Sent> {
    if let (Some(len), Some(code)) = (be32(bytes), bytes.get(4..).and_then(be32)) {
        if u64::from(len) == total && STARTUP_CODES.contains(&code) {
            return Some(Sent::Control);
        }
    }
    let msgs = walk(bytes, total, FRONTEND)?;
    let text_of = |at: usize| bytes.get(at + 5..).unwrap_or_default();
    let mut method = None;
    for &(t, at) in &msgs {
        let m = match t {
            b'Q' => sql_verb(text_of(at)),
            b'P' => {
                // Parse: statement name (NUL-terminated), then the query.
                let body = text_of(at);
                match body.iter().position(|&b| b == 0) {
                    Some(nul) => sql_verb(&body[nul + 1..]),
                    None => "OTHER".into(),
                }
            }
            b'B' | b'E' => "EXECUTE".into(),
            b'F' => "FUNCTION".into(),
            _ => continue,
        };
        method = Some(m);
        break;
    }
    Some(match method {
        Some(method) => Sent::one(method),
        None => Sent::Control,
    })
}

pub fn parse_backend(bytes: &[u8], total: u64) -> Option<Reply> {
    if total == 1 && matches!(bytes.first(), Some(b'S' | b'N')) {
        return None; // the answer to an SSLRequest
    }
    let msgs = walk(bytes, total, BACKEND)?;
    let error = msgs.iter().any(|&(t, _)| t == b'E');
    Some(Reply::one(error, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured with `strace -x` from psql 15 and pgbench 15 against Debian's PostgreSQL 15
    // (scripts: see docs/l7.md, "Test data").
    const STARTUP: &[u8] = b"\x00\x00\x00\x3f\x00\x03\x00\x00\x75\x73\x65\x72\x00\x70\x6f\x73\x74\x67\x72\x65\x73\x00\x64\x61\x74\x61\x62\x61\x73\x65\x00\x70\x6f\x73\x74\x67\x72\x65\x73\x00\x61\x70\x70\x6c\x69\x63\x61\x74\x69\x6f\x6e\x5f\x6e\x61\x6d\x65\x00\x70\x73\x71\x6c\x00\x00";
    const Q_SELECT: &[u8] = b"\x51\x00\x00\x00\x38\x73\x65\x6c\x65\x63\x74\x20\x61\x62\x61\x6c\x61\x6e\x63\x65\x20\x66\x72\x6f\x6d\x20\x70\x67\x62\x65\x6e\x63\x68\x5f\x61\x63\x63\x6f\x75\x6e\x74\x73\x20\x77\x68\x65\x72\x65\x20\x61\x69\x64\x20\x3d\x20\x31\x00";
    const ROWS: &[u8] = b"\x54\x00\x00\x00\x21\x00\x01\x61\x62\x61\x6c\x61\x6e\x63\x65\x00\x00\x00\x40\x06\x00\x03\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00\x44\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x01\x30\x43\x00\x00\x00\x0d\x53\x45\x4c\x45\x43\x54\x20\x31\x00\x5a\x00\x00\x00\x05\x49";
    const ERROR: &[u8] = b"\x45\x00\x00\x00\x6e\x53\x45\x52\x52\x4f\x52\x00\x56\x45\x52\x52\x4f\x52\x00\x43\x34\x32\x50\x30\x31\x00\x4d\x72\x65\x6c\x61\x74\x69\x6f\x6e\x20\x22\x6e\x6f\x73\x75\x63\x68\x74\x61\x62\x6c\x65\x22\x20\x64\x6f\x65\x73\x20\x6e\x6f\x74\x20\x65\x78\x69\x73\x74\x00\x50\x31\x35\x00\x46\x70\x61\x72\x73\x65\x5f\x72\x65\x6c\x61\x74\x69\x6f\x6e\x2e\x63\x00\x4c\x31\x33\x39\x32\x00\x52\x70\x61\x72\x73\x65\x72\x4f\x70\x65\x6e\x54\x61\x62\x6c\x65\x00\x00\x5a\x00\x00\x00\x05\x49";
    // pgbench -M extended -S: Parse, Bind, Describe, Execute, Sync in one send.
    const PARSE_BIND: &[u8] = b"\x50\x00\x00\x00\x3d\x00\x53\x45\x4c\x45\x43\x54\x20\x61\x62\x61\x6c\x61\x6e\x63\x65\x20\x46\x52\x4f\x4d\x20\x70\x67\x62\x65\x6e\x63\x68\x5f\x61\x63\x63\x6f\x75\x6e\x74\x73\x20\x57\x48\x45\x52\x45\x20\x61\x69\x64\x20\x3d\x20\x24\x31\x3b\x00\x00\x00\x42\x00\x00\x00\x16\x00\x00\x00\x00\x00\x01\x00\x00\x00\x04\x37\x36\x30\x31\x00\x01\x00\x00\x44\x00\x00\x00\x06\x50\x00\x45\x00\x00\x00\x09\x00\x00\x00\x00\x00\x53\x00\x00\x00\x04";
    const EXT_ROWS: &[u8] = b"\x31\x00\x00\x00\x04\x32\x00\x00\x00\x04\x54\x00\x00\x00\x21\x00\x01\x61\x62\x61\x6c\x61\x6e\x63\x65\x00\x00\x00\x40\x06\x00\x03\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00\x44\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x01\x30\x43\x00\x00\x00\x0d\x53\x45\x4c\x45\x43\x54\x20\x31\x00\x5a\x00\x00\x00\x05\x49";

    fn total(b: &[u8]) -> u64 {
        b.len() as u64
    }

    #[test]
    fn frontend() {
        assert_eq!(parse_frontend(STARTUP, total(STARTUP)), Some(Sent::Control));
        assert_eq!(
            parse_frontend(Q_SELECT, total(Q_SELECT)),
            Some(Sent::one("SELECT".into()))
        );
        assert_eq!(
            parse_frontend(PARSE_BIND, total(PARSE_BIND)),
            Some(Sent::one("SELECT".into()))
        );
        // Only the first 16 bytes captured of a long query: framing still checks out.
        assert!(matches!(
            parse_frontend(&Q_SELECT[..16], total(Q_SELECT)),
            Some(Sent::Requests { .. })
        ));
        assert_eq!(parse_frontend(b"X\x00\x00\x00\x04", 5), Some(Sent::Control));
        // A message longer than what was sent: not PostgreSQL.
        assert_eq!(parse_frontend(Q_SELECT, total(Q_SELECT) - 1), None);
        assert_eq!(parse_frontend(b"GET / HTTP/1.1\r\n", 16), None);
        assert_eq!(parse_frontend(b"", 0), None);
    }

    #[test]
    fn backend() {
        let r = parse_backend(ROWS, total(ROWS)).unwrap();
        assert_eq!((r.count(), r.errors()), (1, 0));
        let r = parse_backend(EXT_ROWS, total(EXT_ROWS)).unwrap();
        assert_eq!((r.count(), r.errors()), (1, 0));
        let e = parse_backend(ERROR, total(ERROR)).unwrap();
        assert_eq!((e.count(), e.errors()), (1, 1));
        assert_eq!(parse_backend(b"N", 1), None);
        assert_eq!(parse_backend(b"+OK\r\n", 5), None);
    }

    #[test]
    fn never_panics_on_prefixes() {
        for msg in [STARTUP, Q_SELECT, PARSE_BIND, ROWS, ERROR, EXT_ROWS] {
            for i in 0..msg.len() {
                let _ = parse_frontend(&msg[..i], total(msg));
                let _ = parse_backend(&msg[..i], total(msg));
                let _ = parse_frontend(&msg[i..], total(msg));
                let _ = parse_backend(&msg[i..], i as u64);
            }
        }
    }
}

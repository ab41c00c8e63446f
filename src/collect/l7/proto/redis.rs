//! Redis RESP2/RESP3: a request is an array of bulk strings (`*3\r\n$3\r\nSET\r\n…`), a
//! reply one typed value. Pipelined commands and replies are counted as far as the
//! captured prefix reaches; an error reply starts with `-` (or `!`, RESP3's blob error).

use super::{Reply, Sent};

/// Reads `<digits>\r\n` (optionally negative) at the start of `b`; returns the number and
/// the rest. None when the line does not end within `b`.
fn number(b: &[u8]) -> Option<(i64, &[u8])> {
    let (neg, b) = match b.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, b),
    };
    let digits = b.iter().take(20).take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || b.get(digits..digits + 2) != Some(b"\r\n") {
        return None;
    }
    let n = b[..digits].iter().try_fold(0i64, |n, &d| {
        n.checked_mul(10)?.checked_add(i64::from(d - b'0'))
    })?;
    Some((if neg { -n } else { n }, &b[digits + 2..]))
}

/// How reading one request array went.
enum Cmd<'a> {
    /// Complete: what follows it, and the command name.
    Whole(&'a [u8], &'a [u8]),
    /// Cut by the end of the prefix after its header: it counts, name if seen.
    Cut(Option<&'a [u8]>),
    /// Not RESP.
    No,
}

fn read_command(b: &[u8]) -> Cmd<'_> {
    let Some(rest) = b.strip_prefix(b"*") else {
        return Cmd::No;
    };
    let Some((n, mut rest)) = number(rest) else {
        return if rest.len() < 22 && rest.iter().all(u8::is_ascii_digit) && !rest.is_empty() {
            Cmd::Cut(None)
        } else {
            Cmd::No
        };
    };
    if !(1..=1_000_000).contains(&n) {
        return Cmd::No;
    }
    let mut name: Option<&[u8]> = None;
    for i in 0..n {
        if rest.is_empty() {
            return Cmd::Cut(name);
        }
        let Some(r) = rest.strip_prefix(b"$") else {
            return Cmd::No;
        };
        let Some((len, r)) = number(r) else {
            return if r.len() < 22 {
                Cmd::Cut(name)
            } else {
                Cmd::No
            };
        };
        if !(0..=512 << 20).contains(&len) {
            return Cmd::No;
        }
        let len = len as usize;
        if i == 0 && r.len() >= len {
            name = Some(&r[..len]);
        }
        if r.len() < len + 2 {
            return Cmd::Cut(name);
        }
        if &r[len..len + 2] != b"\r\n" {
            return Cmd::No;
        }
        rest = &r[len + 2..];
    }
    Cmd::Whole(rest, name.unwrap_or_default())
}

pub fn parse_request(bytes: &[u8]) -> Option<Sent> {
    let mut rest = bytes;
    let mut count = 0u32;
    let mut method = None;
    while !rest.is_empty() {
        let (name, next) = match read_command(rest) {
            Cmd::Whole(next, name) => (Some(name), Some(next)),
            Cmd::Cut(name) => (name, None),
            Cmd::No if count == 0 => return None,
            Cmd::No => break,
        };
        count += 1;
        if method.is_none() {
            method = name.map(command_name);
        }
        match next {
            Some(next) => rest = next,
            None => break,
        }
    }
    if count == 0 {
        return None;
    }
    Some(Sent::Requests {
        method: method.unwrap_or_else(|| "OTHER".into()),
        count,
    })
}

/// The command as a key: letters only, upper case, bounded (no user data).
fn command_name(name: &[u8]) -> String {
    if !name.is_empty() && name.len() <= 24 && name.iter().all(|b| b.is_ascii_alphabetic()) {
        name.iter()
            .map(|b| b.to_ascii_uppercase() as char)
            .collect()
    } else {
        "OTHER".into()
    }
}

/// Skips one reply value; `Ok(None)` when it runs past the prefix (it still counts).
fn skip_value(b: &[u8], depth: u32) -> Result<Option<&[u8]>, ()> {
    let (&t, rest) = b.split_first().ok_or(())?;
    let line_end = |r: &[u8]| r.windows(2).position(|w| w == b"\r\n");
    match t {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => match line_end(rest) {
            Some(e) => Ok(Some(&rest[e + 2..])),
            None => Ok(None),
        },
        b'$' | b'!' | b'=' => {
            let Some((n, r)) = number(rest) else {
                return if rest.len() < 22 { Ok(None) } else { Err(()) };
            };
            if n < 0 {
                return Ok(Some(r));
            }
            let n = n as usize;
            if r.len() < n + 2 {
                Ok(None)
            } else {
                Ok(Some(&r[n + 2..]))
            }
        }
        b'*' | b'%' | b'~' | b'>' | b'|' => {
            let Some((n, mut r)) = number(rest) else {
                return if rest.len() < 22 { Ok(None) } else { Err(()) };
            };
            if depth > 8 {
                return Ok(None);
            }
            let items = if matches!(t, b'%' | b'|') { n * 2 } else { n };
            for _ in 0..items.max(0) {
                match skip_value(r, depth + 1)? {
                    Some(next) => r = next,
                    None => return Ok(None),
                }
            }
            Ok(Some(r))
        }
        _ => Err(()),
    }
}

pub fn parse_reply(bytes: &[u8]) -> Option<Reply> {
    let mut rest = bytes;
    let mut reply = Reply {
        count: 0,
        errors: 0,
        status: None,
    };
    while let Some(&t) = rest.first() {
        let r = skip_value(rest, 0);
        if r.is_err() && reply.count == 0 {
            return None;
        }
        reply.count += 1;
        reply.errors += u32::from(t == b'-' || t == b'!');
        match r {
            Ok(Some(next)) => rest = next,
            _ => break,
        }
    }
    (reply.count > 0).then_some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured with `strace -x` from redis-benchmark 7.0 (-t set,get) and redis-cli 7.0
    // against Debian's redis-server 7.0.
    const BENCH_CONFIG: &[u8] = b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nsave\r\n*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$10\r\nappendonly\r\n";
    const CONFIG_REPLY: &[u8] =
        b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n";
    const BENCH_SET: &[u8] = b"*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n";
    const BENCH_GET: &[u8] = b"*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n";
    const CLI_BAD: &[u8] = b"*2\r\n$4\r\nincr\r\n$1\r\ns\r\n";
    const ERR_WRONGTYPE: &[u8] = b"-ERR value is not an integer or out of range\r\n";

    fn req(b: &[u8]) -> Option<(String, u32)> {
        match parse_request(b)? {
            Sent::Requests { method, count } => Some((method, count)),
            Sent::Control => None,
        }
    }

    #[test]
    fn requests() {
        assert_eq!(req(BENCH_SET), Some(("SET".into(), 1)));
        assert_eq!(req(BENCH_GET), Some(("GET".into(), 1)));
        assert_eq!(req(CLI_BAD), Some(("INCR".into(), 1)));
        assert_eq!(req(BENCH_CONFIG), Some(("CONFIG".into(), 2)));
        let pipelined = [BENCH_SET, BENCH_GET, BENCH_GET].concat();
        assert_eq!(req(&pipelined), Some(("SET".into(), 3)));
        // Cut inside the third command: it has started, so it counts.
        assert_eq!(
            req(&pipelined[..pipelined.len() - 10]),
            Some(("SET".into(), 3))
        );
        assert_eq!(req(&BENCH_SET[..20]), Some(("SET".into(), 1)));
        assert_eq!(req(b"*1\r\n$8\r\nsec ret!\r\n"), Some(("OTHER".into(), 1)));
        assert_eq!(req(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(req(b"*x\r\n"), None);
        assert_eq!(req(b""), None);
    }

    #[test]
    fn replies() {
        let ok = parse_reply(b"+OK\r\n").unwrap();
        assert_eq!((ok.count, ok.errors), (1, 0));
        let c = parse_reply(CONFIG_REPLY).unwrap();
        assert_eq!((c.count, c.errors), (2, 0));
        let e = parse_reply(ERR_WRONGTYPE).unwrap();
        assert_eq!((e.count, e.errors), (1, 1));
        let three = parse_reply(b"+OK\r\n$3\r\nxxx\r\n$-1\r\n").unwrap();
        assert_eq!((three.count, three.errors), (3, 0));
        let arr = parse_reply(b"*2\r\n$1\r\na\r\n:5\r\n-ERR x\r\n").unwrap();
        assert_eq!((arr.count, arr.errors), (2, 1));
        // A long bulk reply cut by the prefix is one reply.
        assert_eq!(parse_reply(b"$100000\r\nxxxxxxxx").unwrap().count, 1);
        assert_eq!(parse_reply(b"hello"), None);
        assert_eq!(parse_reply(b""), None);
    }

    #[test]
    fn never_panics_on_prefixes() {
        let all = [
            BENCH_SET,
            CLI_BAD,
            ERR_WRONGTYPE,
            b"*2\r\n*1\r\n$1\r\na\r\n",
        ]
        .concat();
        for i in 0..all.len() {
            let _ = parse_request(&all[..i]);
            let _ = parse_reply(&all[..i]);
            let _ = parse_request(&all[i..]);
            let _ = parse_reply(&all[i..]);
        }
    }
}

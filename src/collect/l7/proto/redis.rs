//! Redis RESP2/RESP3: a request is an array of bulk strings (`*3\r\n$3\r\nSET\r\n…`), a
//! reply one typed value. Pipelined commands and replies are counted as far as the
//! captured prefix reaches, and a payload whose tail beyond it could hold more is
//! flagged (`beyond`); an error reply starts with `-` (or `!`, RESP3's blob error).

use super::{extent, Outcome, Reply, Sent};

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
    /// Cut by the end of the prefix after its header: it counts, name if seen; and its
    /// length when its headers tell it (cut in its last argument's value).
    Cut(Option<&'a [u8]>, Option<usize>),
    /// Not RESP.
    No,
}

fn read_command(b: &[u8]) -> Cmd<'_> {
    let Some(rest) = b.strip_prefix(b"*") else {
        return Cmd::No;
    };
    let Some((n, mut rest)) = number(rest) else {
        return if rest.len() < 22 && rest.iter().all(u8::is_ascii_digit) && !rest.is_empty() {
            Cmd::Cut(None, None)
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
            return Cmd::Cut(name, None);
        }
        let Some(r) = rest.strip_prefix(b"$") else {
            return Cmd::No;
        };
        let Some((len, r)) = number(r) else {
            return if r.len() < 22 {
                Cmd::Cut(name, None)
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
            // In the last argument the command's end is known: after this value.
            let end = (i == n - 1).then(|| b.len() - r.len() + len + 2);
            return Cmd::Cut(name, end);
        }
        if &r[len..len + 2] != b"\r\n" {
            return Cmd::No;
        }
        rest = &r[len + 2..];
    }
    Cmd::Whole(rest, name.unwrap_or_default())
}

/// Every command that starts in the captured bytes (pipelining puts many in one
/// write), by name.
pub fn parse_request(bytes: &[u8], total: u64) -> Option<Sent> {
    let mut rest = bytes;
    let mut methods = Vec::new();
    let mut end = Some(0u64);
    let mut last = 0;
    while !rest.is_empty() {
        last = bytes.len() - rest.len();
        let at = last as u64;
        let (name, next) = match read_command(rest) {
            Cmd::Whole(next, name) => (Some(name), Some(next)),
            Cmd::Cut(name, len) => {
                end = len.map(|l| at + l as u64);
                (name, None)
            }
            Cmd::No if methods.is_empty() => return None,
            Cmd::No => {
                // Not a command: no more to read here, and none to complete later.
                end = Some(at);
                break;
            }
        };
        methods.push(name.map_or_else(|| "OTHER".into(), command_name));
        match next {
            Some(next) => {
                rest = next;
                end = Some((bytes.len() - rest.len()) as u64);
            }
            None => break,
        }
    }
    if methods.is_empty() {
        return None;
    }
    let (beyond, tail) = extent(bytes.len(), total, end, last);
    Some(Sent::Requests {
        methods,
        beyond,
        tail,
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

/// How skipping one reply value went.
enum Value<'a> {
    /// Complete: what follows it.
    Whole(&'a [u8]),
    /// It runs past the prefix (it still counts); its length when a bulk header tells.
    Cut(Option<usize>),
}

/// Skips one reply value.
fn skip_value(b: &[u8], depth: u32) -> Result<Value<'_>, ()> {
    let (&t, rest) = b.split_first().ok_or(())?;
    let line_end = |r: &[u8]| r.windows(2).position(|w| w == b"\r\n");
    match t {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => match line_end(rest) {
            Some(e) => Ok(Value::Whole(&rest[e + 2..])),
            None => Ok(Value::Cut(None)),
        },
        b'$' | b'!' | b'=' => {
            let Some((n, r)) = number(rest) else {
                return if rest.len() < 22 {
                    Ok(Value::Cut(None))
                } else {
                    Err(())
                };
            };
            if n < 0 {
                return Ok(Value::Whole(r));
            }
            let n = n as usize;
            if r.len() < n + 2 {
                Ok(Value::Cut(Some(b.len() - r.len() + n + 2)))
            } else {
                Ok(Value::Whole(&r[n + 2..]))
            }
        }
        b'*' | b'%' | b'~' | b'>' | b'|' => {
            let Some((n, mut r)) = number(rest) else {
                return if rest.len() < 22 {
                    Ok(Value::Cut(None))
                } else {
                    Err(())
                };
            };
            if depth > 8 {
                return Ok(Value::Cut(None));
            }
            let items = if matches!(t, b'%' | b'|') { n * 2 } else { n };
            for _ in 0..items.max(0) {
                match skip_value(r, depth + 1)? {
                    Value::Whole(next) => r = next,
                    Value::Cut(_) => return Ok(Value::Cut(None)),
                }
            }
            Ok(Value::Whole(r))
        }
        _ => Err(()),
    }
}

/// Every reply that starts in the captured bytes, in order.
pub fn parse_reply(bytes: &[u8], total: u64) -> Option<Reply> {
    let mut rest = bytes;
    let mut each = Vec::new();
    let mut end = Some(0u64);
    let mut last = 0;
    while let Some(&t) = rest.first() {
        last = bytes.len() - rest.len();
        let at = last as u64;
        let r = skip_value(rest, 0);
        if r.is_err() && each.is_empty() {
            return None;
        }
        each.push(Outcome {
            error: t == b'-' || t == b'!',
            status: None,
        });
        match r {
            Ok(Value::Whole(next)) => {
                rest = next;
                end = Some((bytes.len() - rest.len()) as u64);
            }
            Ok(Value::Cut(len)) => {
                end = len.map(|l| at + l as u64);
                break;
            }
            Err(()) => {
                // Not RESP: it was not a reply after all, and none to complete later.
                each.pop();
                end = Some(at);
                break;
            }
        }
    }
    let (beyond, tail) = extent(bytes.len(), total, end, last);
    (!each.is_empty()).then_some(Reply { each, beyond, tail })
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

    /// The first command's name, the number of commands, and whether more could follow
    /// beyond the capture, for a payload captured whole.
    fn req(b: &[u8]) -> Option<(String, usize)> {
        req_of(b, b.len() as u64).map(|(m, n, _)| (m, n))
    }

    fn req_of(b: &[u8], total: u64) -> Option<(String, usize, bool)> {
        match parse_request(b, total)? {
            Sent::Requests {
                methods, beyond, ..
            } => Some((methods[0].clone(), methods.len(), beyond)),
            Sent::Control => None,
        }
    }

    fn reply(b: &[u8]) -> Option<Reply> {
        parse_reply(b, b.len() as u64)
    }

    #[test]
    fn requests() {
        assert_eq!(req(BENCH_SET), Some(("SET".into(), 1)));
        assert_eq!(req(BENCH_GET), Some(("GET".into(), 1)));
        assert_eq!(req(CLI_BAD), Some(("INCR".into(), 1)));
        assert_eq!(req(BENCH_CONFIG), Some(("CONFIG".into(), 2)));
        let pipelined = [BENCH_SET, BENCH_GET, BENCH_GET].concat();
        assert_eq!(req(&pipelined), Some(("SET".into(), 3)));
        let Some(Sent::Requests { methods, .. }) = parse_request(&pipelined, 200) else {
            panic!("not requests");
        };
        assert_eq!(methods, ["SET", "GET", "GET"], "each command by its name");
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
    fn what_lies_beyond_the_capture_is_told() {
        let sixteen = BENCH_GET.repeat(16);
        let total = sixteen.len() as u64;
        // All captured: nothing beyond.
        assert_eq!(req_of(&sixteen, total), Some(("GET".into(), 16, false)));
        // Cut after 3 whole commands and a header: the tail may hold more commands.
        let cut = &sixteen[..3 * BENCH_GET.len() + 10];
        assert_eq!(req_of(cut, total), Some(("GET".into(), 4, true)));
        // A long value cut in the last argument: its length says it fills the payload.
        let big = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000\r\n";
        let len = (big.len() + 1000 + 2) as u64;
        assert_eq!(
            req_of(&[&big[..], b"xxxx"].concat(), len),
            Some(("SET".into(), 1, false))
        );
        // The same, with another command after the value: it may be one more.
        assert_eq!(
            req_of(&[&big[..], b"xxxx"].concat(), len + 20),
            Some(("SET".into(), 1, true))
        );
        let replies = b"+OK\r\n".repeat(10);
        let r = parse_reply(&replies[..23], 50).unwrap();
        assert_eq!((r.count(), r.beyond), (5, true));
        let r = parse_reply(&replies, 50).unwrap();
        assert_eq!((r.count(), r.beyond), (10, false));
        let r = parse_reply(b"$100000\r\nxxxxxxxx", 100_011).unwrap();
        assert_eq!((r.count(), r.beyond), (1, false));
    }

    #[test]
    fn replies() {
        let ok = reply(b"+OK\r\n").unwrap();
        assert_eq!((ok.count(), ok.errors()), (1, 0));
        let c = reply(CONFIG_REPLY).unwrap();
        assert_eq!((c.count(), c.errors()), (2, 0));
        let e = reply(ERR_WRONGTYPE).unwrap();
        assert_eq!((e.count(), e.errors()), (1, 1));
        let three = reply(b"+OK\r\n$3\r\nxxx\r\n$-1\r\n").unwrap();
        assert_eq!((three.count(), three.errors()), (3, 0));
        let arr = reply(b"*2\r\n$1\r\na\r\n:5\r\n-ERR x\r\n").unwrap();
        assert_eq!((arr.count(), arr.errors()), (2, 1));
        assert!(arr.each[1].error, "the error is the second reply");
        // A long bulk reply cut by the prefix is one reply.
        assert_eq!(reply(b"$100000\r\nxxxxxxxx").unwrap().count(), 1);
        assert_eq!(reply(b"hello"), None);
        assert_eq!(reply(b""), None);
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
            let _ = parse_request(&all[..i], all.len() as u64);
            let _ = parse_reply(&all[..i], all.len() as u64);
            let _ = parse_request(&all[i..], 0);
            let _ = parse_reply(&all[i..], 0);
        }
    }
}

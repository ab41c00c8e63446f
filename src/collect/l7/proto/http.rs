//! HTTP/1.x: a request starts with `METHOD SP target SP HTTP/1.`, a response with
//! `HTTP/1.x SP NNN`. Bodies and continuation reads start with neither and are ignored,
//! which is what keeps keep-alive connections paired. Within one payload, messages are
//! stepped over by their header block and body length (Content-Length, chunked), so that
//! every request or response pipelined into it counts.

use super::{extent, Outcome, Reply, Sent, Tail};

pub const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// The method of the request line at the start of `bytes`, when it looks like one as far
/// as the prefix shows: a known method, a target without control bytes, then the version
/// (when the line fits in the prefix).
fn request_line(bytes: &[u8]) -> Option<&str> {
    let sp = bytes.iter().take(8).position(|&b| b == b' ')?;
    let method = std::str::from_utf8(&bytes[..sp]).ok()?;
    if !METHODS.contains(&method) {
        return None;
    }
    let line = &bytes[sp + 1..];
    let end = line.iter().position(|&b| b == b'\r' || b == b'\n');
    let line = &line[..end.unwrap_or(line.len())];
    if line.is_empty() || line.iter().any(|&b| b < 0x20) {
        return None;
    }
    if end.is_some() {
        let version = line.rsplit(|&b| b == b' ').next()?;
        if !version.starts_with(b"HTTP/1.") {
            return None;
        }
    }
    Some(method)
}

/// How a message's body is delimited, from its header block.
enum Body {
    Length(u64),
    Chunked,
    /// Until the connection closes (a response without a length).
    ToClose,
}

fn body_of(headers: &[u8], request: bool) -> Body {
    let mut body = if request {
        Body::Length(0)
    } else {
        Body::ToClose
    };
    for line in headers.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"transfer-encoding")
            && value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"))
        {
            return Body::Chunked;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if let Some(n) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                body = Body::Length(n);
            }
        }
    }
    body
}

/// The length of a chunked body at the start of `b`, when all of it is there.
fn chunked_len(b: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line = b.get(at..)?;
        let eol = line.windows(2).position(|w| w == b"\r\n")?;
        let hex = line[..eol].split(|&c| c == b';').next()?.trim_ascii();
        let size = usize::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
        at += eol + 2;
        if size == 0 {
            // Trailers, then the empty line.
            let rest = b.get(at..)?;
            if rest.starts_with(b"\r\n") {
                return Some(at + 2);
            }
            return Some(at + rest.windows(4).position(|w| w == b"\r\n\r\n")? + 4);
        }
        at = at.checked_add(size)?.checked_add(2)?;
    }
}

/// Where the message at the start of `b` ends, from its start: Ok when known (it may be
/// beyond `b`), Err(()) when it is not (its header block or a chunked body is cut).
fn message_len(b: &[u8], request: bool, status: u16) -> Result<u64, ()> {
    let head = b.windows(4).position(|w| w == b"\r\n\r\n").ok_or(())? + 4;
    // 1xx, 204 and 304 responses have no body, whatever their headers say.
    let no_body = !request && (status < 200 || status == 204 || status == 304);
    match body_of(&b[..head], request) {
        _ if no_body => Ok(head as u64),
        Body::Length(n) => Ok(head as u64 + n),
        Body::Chunked => chunked_len(&b[head..]).map(|n| (head + n) as u64).ok_or(()),
        Body::ToClose => Ok(u64::MAX),
    }
}

/// Walks the messages of a payload (`total` bytes, `bytes` captured): `start` reads one
/// message's first line (None: not a message), and each is stepped over by its header
/// block and body length (pipelining: several in one payload). The messages, and whether
/// more could start beyond the capture, and how the last one ends.
fn walk<T>(
    bytes: &[u8],
    total: u64,
    request: bool,
    start: impl Fn(&[u8]) -> Option<(T, u16)>,
) -> (Vec<T>, bool, Tail) {
    let mut found = Vec::new();
    let mut at = 0usize;
    // Where the last message ends (from the payload's start), when known.
    let mut end = Some(0u64);
    let mut last = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let Some((m, status)) = start(rest) else {
            if bytes.len() as u64 == total && may_start(rest) {
                return (found, false, Tail::Partial(at));
            }
            // Not a message (a body the headers did not announce): nothing to complete.
            end = Some(at as u64);
            break;
        };
        last = at;
        found.push(m);
        match message_len(rest, request, status) {
            Ok(n) => {
                let next = (at as u64).saturating_add(n);
                end = Some(next);
                if next >= bytes.len() as u64 {
                    break;
                }
                at = next as usize;
            }
            Err(()) => {
                end = None;
                break;
            }
        }
    }
    let (beyond, tail) = extent(bytes.len(), total, end, last);
    (found, beyond, tail)
}

/// Every request that starts in the captured bytes, by method.
pub fn parse_request(bytes: &[u8], total: u64) -> Option<Sent> {
    let (methods, beyond, tail) = walk(bytes, total, true, |b| {
        request_line(b).map(|m| (m.to_string(), 0))
    });
    (!methods.is_empty()).then_some(Sent::Requests {
        methods,
        beyond,
        tail,
    })
}

/// Whether the few bytes `b` (the end of a payload) could be the start of a request or
/// status line, cut by the write or read.
pub fn may_start(b: &[u8]) -> bool {
    let prefix = |m: &[u8]| {
        let k = b.len().min(m.len());
        b[..k] == m[..k]
    };
    b.len() < 16 && (prefix(b"HTTP/1.") || METHODS.iter().any(|m| prefix(m.as_bytes())))
}

/// Whether `b` starts with a request or status line: what starts a payload wins over a
/// length that said the payload continues a body (a HEAD response announces a length
/// and sends no body).
pub fn starts_message(b: &[u8]) -> bool {
    request_line(b).is_some() || status_line(b).is_some()
}

/// `HTTP/1.x NNN` at the start of `b`: the status.
fn status_line(b: &[u8]) -> Option<u16> {
    let rest = b.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0')))
}

/// Every response that starts in the captured bytes; 1xx (100 Continue, 101 Switching
/// Protocols) come before the real answer and are not responses.
pub fn parse_response(bytes: &[u8], total: u64) -> Option<Reply> {
    let (all, beyond, tail) = walk(bytes, total, false, |b| status_line(b).map(|s| (s, s)));
    let each: Vec<Outcome> = all
        .into_iter()
        .filter(|&s| s >= 200)
        .map(|s| Outcome {
            error: s >= 400,
            status: Some(s),
        })
        .collect();
    (!each.is_empty()).then_some(Reply { each, beyond, tail })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured with `strace -x` from curl 7.88 against Debian's nginx 1.22 (nginx's
    // response header is the first iovec of its writev).
    const CURL_GET: &[u8] =
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:58080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
    const NGINX_200: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 14:12:51 GMT\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n";
    const NGINX_404: &[u8] = b"HTTP/1.1 404 Not Found\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 14:12:51 GMT\r\nContent-Type: text/html\r\nContent-Length: 153\r\nConnection: keep-alive\r\n\r\n";
    const NGINX_404_BODY: &[u8] =
        b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n";

    fn one(m: &str) -> Option<Sent> {
        Some(Sent::one(m.into()))
    }

    fn req(b: &[u8]) -> Option<Sent> {
        parse_request(b, b.len() as u64)
    }

    fn resp(b: &[u8]) -> Option<Reply> {
        parse_response(b, b.len() as u64)
    }

    #[test]
    fn requests() {
        assert_eq!(req(CURL_GET), one("GET"));
        // A prefix cut inside the target is still a request.
        assert!(parse_request(b"POST /a/very/long/pa", 100).is_some());
        assert_eq!(req(b"GET / SMTP/1.0\r\n"), None);
        assert_eq!(req(b"GETX / HTTP/1.1\r\n"), None);
        assert_eq!(req(b"get / HTTP/1.1\r\n"), None);
        assert_eq!(req(b""), None);
    }

    #[test]
    fn responses() {
        let r = resp(NGINX_200).unwrap();
        assert_eq!((r.count(), r.errors(), r.each[0].status), (1, 0, Some(200)));
        let r = resp(NGINX_404).unwrap();
        assert_eq!((r.errors(), r.each[0].status), (1, Some(404)));
        assert_eq!(resp(b"HTTP/1.1 100 Continue\r\n\r\n"), None);
        assert_eq!(resp(NGINX_404_BODY), None);
        assert_eq!(resp(b"HTTP/1.1 2"), None);
    }

    #[test]
    fn pipelined_requests_count_one_by_one_over_their_bodies() {
        let post = b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\nGET / HTTP";
        let all = [CURL_GET, &post[..], b"DELETE /x HTTP/1.1\r\n\r\n"].concat();
        let Some(Sent::Requests {
            methods, beyond, ..
        }) = req(&all)
        else {
            panic!("no requests");
        };
        assert_eq!(
            methods,
            ["GET", "POST", "DELETE"],
            "the body is not a request"
        );
        assert!(!beyond);
        // Captured up to the middle of the second: the third may be beyond.
        let cut = &all[..CURL_GET.len() + 20];
        assert!(matches!(
            parse_request(cut, all.len() as u64),
            Some(Sent::Requests { ref methods, beyond: true, .. }) if methods.len() == 2
        ));
        let twenty = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".repeat(20);
        assert!(
            matches!(req(&twenty), Some(Sent::Requests { ref methods, .. }) if methods.len() == 20)
        );
    }

    #[test]
    fn pipelined_responses_count_one_by_one_with_their_statuses() {
        let chunked =
            b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let all = [
            &b"HTTP/1.1 100 Continue\r\n\r\n"[..],
            NGINX_200,
            b"ok\n",
            NGINX_404,
            NGINX_404_BODY,
            // The 153 bytes the 404's header announced end here.
            &b"<p>the 53 bytes that end the 153 announced.</p>xxxx\r\n"[..],
            chunked,
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ]
        .concat();
        let r = resp(&all).unwrap();
        let statuses: Vec<_> = r.each.iter().map(|o| o.status.unwrap()).collect();
        assert_eq!(statuses, [200, 404, 500, 204, 200]);
        assert_eq!((r.errors(), r.beyond), (2, false));
        // Cut in the last header block: it counts, and more could follow it.
        let cut = &all[..all.len() - 10];
        let r = parse_response(cut, all.len() as u64).unwrap();
        assert_eq!((r.count(), r.beyond), (5, true));
        // A response without a length runs to the close: nothing beyond it.
        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\nxxxx", 100_000).unwrap();
        assert_eq!((r.count(), r.beyond), (1, false));
    }
}

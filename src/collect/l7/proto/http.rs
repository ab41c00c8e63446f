//! HTTP/1.x: a request starts with `METHOD SP target SP HTTP/1.`, a response with
//! `HTTP/1.x SP NNN`. Bodies and continuation reads start with neither and are ignored,
//! which is what keeps keep-alive connections paired without parsing lengths.

use super::{Reply, Sent};

pub const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

pub fn parse_request(bytes: &[u8]) -> Option<Sent> {
    let sp = bytes.iter().take(8).position(|&b| b == b' ')?;
    let method = std::str::from_utf8(&bytes[..sp]).ok()?;
    if !METHODS.contains(&method) {
        return None;
    }
    // The request line must look like one as far as the prefix shows: a target without
    // control bytes, then the version (when the line fits in the prefix).
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
    Some(Sent::Requests {
        method: method.to_string(),
        count: 1,
    })
}

pub fn parse_response(bytes: &[u8]) -> Option<Reply> {
    let rest = bytes.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    if status < 200 {
        // 1xx (100 Continue, 101 Switching Protocols) comes before the real answer.
        return None;
    }
    Some(Reply {
        count: 1,
        errors: u32::from(status >= 400),
        status: Some(status),
    })
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

    #[test]
    fn requests() {
        assert_eq!(
            parse_request(CURL_GET),
            Some(Sent::Requests {
                method: "GET".into(),
                count: 1
            })
        );
        // A prefix cut inside the target is still a request.
        assert!(parse_request(b"POST /a/very/long/pa").is_some());
        assert_eq!(parse_request(b"GET / SMTP/1.0\r\n"), None);
        assert_eq!(parse_request(b"GETX / HTTP/1.1\r\n"), None);
        assert_eq!(parse_request(b"get / HTTP/1.1\r\n"), None);
        assert_eq!(parse_request(b""), None);
    }

    #[test]
    fn responses() {
        let r = parse_response(NGINX_200).unwrap();
        assert_eq!((r.count, r.errors, r.status), (1, 0, Some(200)));
        let r = parse_response(NGINX_404).unwrap();
        assert_eq!((r.errors, r.status), (1, Some(404)));
        assert_eq!(parse_response(b"HTTP/1.1 100 Continue\r\n\r\n"), None);
        assert_eq!(parse_response(NGINX_404_BODY), None);
        assert_eq!(parse_response(b"HTTP/1.1 2"), None);
    }
}

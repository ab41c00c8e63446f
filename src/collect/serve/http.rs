//! One scrape connection, on its own thread: the TLS handshake when `--web-config` asks
//! for TLS, the request head under one deadline, basic auth, then the answer.
//!
//! Everything that can be slow or fail here (a handshake, a client trickling bytes, a
//! wrong password's bcrypt) happens on this connection's thread and under its deadline,
//! so it delays neither collection nor other scrapers. A failed handshake or a refused
//! request ends this connection only, and is counted in the status record.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;

/// How long a client has to finish the TLS handshake and send its whole request.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// How long one write of the answer may block on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of a request head read: a GET with a few headers is well under 1 KiB, and
/// a line without end must not grow a buffer without end.
const MAX_HEAD: u64 = 16 * 1024;

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// A connection read under one deadline for the whole request, so that a client trickling
/// a byte at a time cannot hold its thread past it.
struct Deadline {
    conn: TcpStream,
    until: Instant,
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.conn.set_read_timeout(Some(left))?;
        self.conn.read(buf)
    }
}

impl Write for Deadline {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.conn.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.conn.flush()
    }
}

/// Serves one connection to its end.
pub(super) fn handle(conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut sock = Deadline {
        conn,
        until: Instant::now() + REQUEST_DEADLINE,
    };
    let Some(tls) = &shared.tls else {
        return answer(&mut sock, shared);
    };
    // Plain HTTP sent to the TLS port gets a plain answer saying so, as Go's servers give,
    // rather than a handshake alert a curl user cannot read.
    let mut first = [0u8; 1];
    sock.conn.set_read_timeout(Some(REQUEST_DEADLINE))?;
    if sock.conn.peek(&mut first)? == 1 && first[0] != TLS_HANDSHAKE {
        shared.tls_failures.fetch_add(1, Ordering::Relaxed);
        // Read first: closing on an unread request would reset the connection, answer
        // and all.
        read_head(&mut sock)?;
        return respond(
            &mut sock,
            &Answer::text(
                "400 Bad Request",
                "client sent an HTTP request to an HTTPS server\n",
            ),
            true,
        );
    }
    let conn = rustls::ServerConnection::new(Arc::clone(tls)).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            shared.tls_failures.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
    }
    answer(&mut stream, shared)?;
    stream.conn.send_close_notify();
    stream.flush()
}

/// The parts of a request that choose the answer.
struct Head {
    method: String,
    path: String,
    authorization: Option<String>,
}

/// Reads the request line and headers (a GET has no body).
fn read_head(stream: &mut impl Read) -> std::io::Result<Head> {
    let mut reader = BufReader::new(Read::take(stream, MAX_HEAD));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("");
    let path = path.split('?').next().unwrap_or("").to_string();
    let mut authorization = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            // The head ended early or was too long: answered as a request without headers.
            break;
        }
        let header = line.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    Ok(Head {
        method,
        path,
        authorization,
    })
}

/// A response: status line, extra headers, content type and body.
struct Answer<'a> {
    status: &'static str,
    headers: &'static str,
    content_type: &'static str,
    body: &'a str,
}

impl<'a> Answer<'a> {
    fn text(status: &'static str, body: &'a str) -> Answer<'a> {
        Answer {
            status,
            headers: "",
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

/// Reads the request and answers it.
fn answer(stream: &mut (impl Read + Write), shared: &Shared) -> std::io::Result<()> {
    let head = read_head(stream)?;
    if let Some(auth) = &shared.auth {
        if !auth.allows(head.authorization.as_deref()) {
            shared.unauthorized.fetch_add(1, Ordering::Relaxed);
            let answer = Answer {
                headers: "WWW-Authenticate: Basic realm=\"gala-collect\", charset=\"UTF-8\"\r\n",
                ..Answer::text("401 Unauthorized", "unauthorized\n")
            };
            return respond(stream, &answer, head.method != "HEAD");
        }
    }
    let with_body = head.method != "HEAD";
    match (head.method.as_str(), head.path.as_str()) {
        ("GET" | "HEAD", "/metrics") => {
            shared.scrapes.fetch_add(1, Ordering::Relaxed);
            let snap = shared.snapshot();
            let answer = Answer {
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                ..Answer::text("200 OK", shared.rendered(&snap))
            };
            respond(stream, &answer, with_body)
        }
        ("GET", "/") => respond(
            stream,
            &Answer::text("200 OK", "gala-collect: metrics at /metrics\n"),
            true,
        ),
        _ => respond(
            stream,
            &Answer::text("404 Not Found", "not found: metrics are at /metrics\n"),
            with_body,
        ),
    }
}

fn respond(stream: &mut impl Write, a: &Answer, with_body: bool) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {}\r\n{}Content-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        a.status,
        a.headers,
        a.content_type,
        a.body.len()
    )?;
    if with_body {
        stream.write_all(a.body.as_bytes())?;
    }
    stream.flush()
}

//! Application protocols, recognised from the first bytes of what one syscall moved.
//!
//! Every parser is a pure function over a payload prefix (`bytes`, at most the probe's
//! capture size) and the number of bytes the syscall really moved (`total`), so that
//! length fields can be checked against it: a length that agrees is what tells a
//! PostgreSQL or MySQL message from random bytes. Payloads are read here and dropped;
//! nothing of them leaves this module except a method or command name.

pub mod http;
pub mod http2;
pub mod mysql;
pub mod pgsql;
pub mod redis;

/// The protocols the l7 probe knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Http,
    Redis,
    Pgsql,
    Mysql,
    /// HTTP/2, clear (h2c) or over TLS: paired per stream (see [`http2`]).
    Http2,
    /// gRPC: HTTP/2 streams whose content type is `application/grpc`.
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Redis => "redis",
            Protocol::Pgsql => "pgsql",
            Protocol::Mysql => "mysql",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
        }
    }

    /// Whether responses carry an HTTP status (counted by class).
    pub fn has_status(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Http2 | Protocol::Grpc)
    }

    /// Whether one connection may carry several requests before the first response.
    /// For the others a response is the first payload after a request, whatever the
    /// number of messages in it (PostgreSQL answers one query with many).
    pub fn pipelined(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Redis)
    }
}

/// What a payload sent by a client says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The requests that start in the payload, in order, by method or command
    /// (pipelined protocols can have several).
    Requests {
        methods: Vec<String>,
        /// The payload goes on beyond the captured bytes where more requests could
        /// start: they are not counted (see [`Tracker`](super::tracker)'s
        /// `beyond_capture`).
        beyond: bool,
        /// How the last request ends, for the next payload.
        tail: Tail,
    },
    /// A protocol message that is not a request to be timed (a handshake, a login).
    Control,
}

impl Sent {
    /// One request, all the payload holds.
    pub fn one(method: String) -> Sent {
        Sent::Requests {
            methods: vec![method],
            beyond: false,
            tail: Tail::Done,
        }
    }
}

/// What one response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub error: bool,
    /// Its HTTP status.
    pub status: Option<u16>,
}

/// What a payload sent by a server says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The responses that start in the payload, in order (pipelined protocols can have
    /// several).
    pub each: Vec<Outcome>,
    /// The payload goes on beyond the captured bytes where more responses could start.
    pub beyond: bool,
    /// How the last response ends, for the next payload.
    pub tail: Tail,
}

impl Reply {
    /// One response, all the payload holds.
    pub fn one(error: bool, status: Option<u16>) -> Reply {
        Reply {
            each: vec![Outcome { error, status }],
            beyond: false,
            tail: Tail::Done,
        }
    }

    pub fn count(&self) -> usize {
        self.each.len()
    }

    #[cfg(test)]
    pub fn errors(&self) -> usize {
        self.each.iter().filter(|o| o.error).count()
    }
}

/// Where the last message of a Redis or HTTP/1 payload ends, so that the next payload in
/// the same direction is read from the next message's start: a client or server that
/// reads with a small buffer gets messages cut anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Within the payload (or unknown, beyond its capture).
    Done,
    /// This many bytes after the payload's end (a value or body whose length the
    /// captured headers tell): the next payload continues it.
    Skip(u64),
    /// Unknown: the payload, captured whole, ends inside the header of the message that
    /// starts at this offset. It is counted; the next payload completes it.
    Open(usize),
    /// The payload, captured whole, ends with a few bytes from this offset that may
    /// start a message (too few to tell): not counted; the next payload tells.
    Partial(usize),
}

/// Whether a payload of `total` bytes, `captured` of them parsed, may hold more messages
/// beyond the capture, and how its last message ends: `end` where that message ends
/// (from the payload's start), when known; `last` where it starts.
pub fn extent(captured: usize, total: u64, end: Option<u64>, last: usize) -> (bool, Tail) {
    let cut = (captured as u64) < total;
    match end {
        Some(e) if e > total => (false, Tail::Skip(e - total)),
        Some(e) => (cut && e < total, Tail::Done),
        None if cut => (true, Tail::Done),
        None => (false, Tail::Open(last)),
    }
}

/// Guesses the protocol from a payload going from client to server.
pub fn infer_request(bytes: &[u8], total: u64) -> Option<(Protocol, Sent)> {
    if http2::is_preface(bytes) {
        return Some((Protocol::Http2, Sent::Control));
    }
    if let Some(s) = http::parse_request(bytes, total) {
        return Some((Protocol::Http, s));
    }
    if let Some(s) = redis::parse_request(bytes, total) {
        return Some((Protocol::Redis, s));
    }
    if let Some(s) = pgsql::parse_frontend(bytes, total) {
        return Some((Protocol::Pgsql, s));
    }
    if let Some(s) = mysql::parse_client(bytes, total) {
        return Some((Protocol::Mysql, s));
    }
    None
}

/// Guesses the protocol from a payload going from server to client, for connections
/// where the server speaks first (MySQL's greeting) or the requests were missed.
pub fn infer_server_first(bytes: &[u8], total: u64) -> Option<Protocol> {
    if http2::is_server_preface(bytes, total) {
        return Some(Protocol::Http2);
    }
    mysql::is_greeting(bytes, total).then_some(Protocol::Mysql)
}

/// Parses a client payload of a connection already known to speak `proto`.
pub fn parse_request(proto: Protocol, bytes: &[u8], total: u64) -> Option<Sent> {
    match proto {
        Protocol::Http => http::parse_request(bytes, total),
        Protocol::Redis => redis::parse_request(bytes, total),
        Protocol::Pgsql => pgsql::parse_frontend(bytes, total),
        Protocol::Mysql => mysql::parse_client(bytes, total),
        // Stateful: paired per stream by the tracker, never through here.
        Protocol::Http2 | Protocol::Grpc => None,
    }
}

/// Parses a server payload of a connection known to speak `proto`; None when it does
/// not start a response (a continuation of a long one).
pub fn parse_reply(proto: Protocol, bytes: &[u8], total: u64) -> Option<Reply> {
    match proto {
        Protocol::Http => http::parse_response(bytes, total),
        Protocol::Redis => redis::parse_reply(bytes, total),
        Protocol::Pgsql => pgsql::parse_backend(bytes, total),
        Protocol::Mysql => mysql::parse_server(bytes, total),
        Protocol::Http2 | Protocol::Grpc => None,
    }
}

/// The first word of an SQL statement, upper-cased (`SELECT`, `UPDATE`…), or `OTHER`:
/// bounded to keywords so that literals never become entity keys.
pub fn sql_verb(text: &[u8]) -> String {
    let text = skip_sql_space(text);
    let word: Vec<u8> = text
        .iter()
        .take_while(|b| b.is_ascii_alphabetic())
        .take(17)
        .map(|b| b.to_ascii_uppercase())
        .collect();
    const VERBS: &[&str] = &[
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "BEGIN",
        "COMMIT",
        "END",
        "ROLLBACK",
        "SET",
        "SHOW",
        "CREATE",
        "DROP",
        "ALTER",
        "TRUNCATE",
        "COPY",
        "VACUUM",
        "ANALYZE",
        "WITH",
        "START",
        "EXPLAIN",
        "GRANT",
        "REVOKE",
        "LOCK",
        "CALL",
        "DO",
        "REPLACE",
        "USE",
        "PREPARE",
        "EXECUTE",
        "DEALLOCATE",
        "DECLARE",
        "FETCH",
        "CLOSE",
        "LISTEN",
        "NOTIFY",
        "SAVEPOINT",
        "RELEASE",
        "DESCRIBE",
        "DESC",
    ];
    match std::str::from_utf8(&word) {
        Ok(w) if VERBS.contains(&w) => w.to_string(),
        _ => "OTHER".to_string(),
    }
}

/// Skips white space and SQL comments before the first keyword.
fn skip_sql_space(mut t: &[u8]) -> &[u8] {
    loop {
        while let [b, rest @ ..] = t {
            if b.is_ascii_whitespace() || *b == b'(' {
                t = rest;
            } else {
                break;
            }
        }
        if let Some(rest) = t.strip_prefix(b"--") {
            let nl = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            t = &rest[nl..];
        } else if let Some(rest) = t.strip_prefix(b"/*") {
            match rest.windows(2).position(|w| w == b"*/") {
                Some(end) => t = &rest[end + 2..],
                None => return &[],
            }
        } else {
            return t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_verbs_are_keywords_only() {
        assert_eq!(sql_verb(b"  select 1"), "SELECT");
        assert_eq!(sql_verb(b"/* hi */ -- x\nUPDATE t SET"), "UPDATE");
        assert_eq!(sql_verb(b"(SELECT 1)"), "SELECT");
        assert_eq!(sql_verb(b"secretpassword"), "OTHER");
        assert_eq!(sql_verb(b""), "OTHER");
        assert_eq!(sql_verb(b"/* unterminated"), "OTHER");
    }
}

//! HTTP/2 (and gRPC over it): frames and HPACK header blocks, from captured payloads.
//!
//! Unlike the other parsers this one keeps state per direction of a connection: a frame
//! may span payloads (a large DATA frame is read in pieces, a server may read a frame
//! header apart from its body), and a header block can only be decoded with the HPACK
//! dynamic table that the blocks before it built. Each payload comes as its captured
//! prefix and the number of bytes the call really moved, so the frame lengths tell where
//! the next frame starts even when its bytes were not captured.
//!
//! What cannot be seen is said, not guessed: a header block cut by the capture limit is
//! decoded as far as it goes, and then the dynamic table is unknown (the block's later
//! insertions are missing). The decoder then starts again from an empty table, which is
//! exact for every entry inserted after that point (HPACK indexes the newest entry
//! first, and the peer never refers to an entry it has evicted); a reference to an older,
//! unknown entry fails to decode and starts it again. Connections older than the
//! collector are in that state from the start.

use std::borrow::Cow;

use loona_hpack::Decoder;

/// The client connection preface (RFC 9113 §3.4), with prior knowledge (h2c) and over
/// TLS after ALPN `h2` alike.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const HEADER: usize = 9;
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY_FRAME: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame a peer may allow (2^24 - 1); the default limit is 16 KiB.
const MAX_FRAME: u32 = (1 << 24) - 1;
/// Header block bytes kept for decoding; a longer block is decoded as far as this goes.
const MAX_BLOCK: usize = 16 * 1024;
/// The largest dynamic table accepted from a peer: a bigger one (a peer may announce up
/// to 4 GiB) is not followed, and its connection's headers decode as a lost table's.
const MAX_TABLE: usize = 64 * 1024;
/// Header values kept (`:path` of a gRPC method, content-type): longer ones are cut.
const MAX_VALUE: usize = 128;

/// Whether a client payload starts with the connection preface (as far as it was
/// captured: at least its first line).
pub fn is_preface(bytes: &[u8]) -> bool {
    bytes.len() >= 16 && PREFACE.starts_with(&bytes[..bytes.len().min(PREFACE.len())])
}

/// A server's first payload: a SETTINGS frame on stream 0 (not an acknowledgement),
/// whose length is whole settings and fits in what was sent.
pub fn is_server_preface(bytes: &[u8], total: u64) -> bool {
    match Frame::parse(bytes) {
        Some(f) => {
            f.kind == SETTINGS
                && f.flags == 0
                && f.stream == 0
                && f.len % 6 == 0
                && f.len <= 6 * 16
                && HEADER as u64 + u64::from(f.len) <= total
        }
        None => false,
    }
}

/// A payload of a connection whose start was missed: whole frames of known types, each
/// on the kind of stream its type allows, that end exactly where the payload does (or,
/// the last one, beyond it, continued in the next payload). Every frame header is
/// checked, so it must lie within the capture; a payload that is not HTTP/2 fails this
/// almost surely.
pub fn looks_like_frames(bytes: &[u8], total: u64) -> bool {
    frames_check(bytes, total, true)
}

/// `strict`: every frame header must be within the capture (to classify a connection);
/// otherwise frames past the capture are taken on trust (to find frame boundaries again
/// on a connection known to be HTTP/2).
fn frames_check(bytes: &[u8], total: u64, strict: bool) -> bool {
    let mut at = 0u64;
    let mut frames = 0;
    while at < total {
        if !strict && frames > 0 && at >= bytes.len() as u64 {
            return true;
        }
        let Some(f) = bytes.get(at as usize..).and_then(Frame::parse) else {
            return false;
        };
        let valid = match f.kind {
            DATA | HEADERS | CONTINUATION => f.stream != 0,
            PRIORITY_FRAME => f.stream != 0 && f.len == 5,
            RST_STREAM => f.stream != 0 && f.len == 4,
            SETTINGS => f.stream == 0 && f.len % 6 == 0 && (f.flags & 1 == 0 || f.len == 0),
            PUSH_PROMISE => f.stream != 0,
            PING => f.stream == 0 && f.len == 8,
            GOAWAY => f.stream == 0 && f.len >= 8,
            WINDOW_UPDATE => f.len == 4,
            _ => false,
        };
        if !valid || f.len > 1 << 20 {
            return false;
        }
        frames += 1;
        at += HEADER as u64 + u64::from(f.len);
    }
    frames > 0
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    len: u32,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl Frame {
    fn parse(b: &[u8]) -> Option<Frame> {
        let h: &[u8; HEADER] = b.get(..HEADER)?.try_into().ok()?;
        Some(Frame {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        })
        .filter(|f| f.len <= MAX_FRAME && h[5] & 0x80 == 0)
    }
}

/// What one direction's frames said, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H2Event {
    /// A header block (HEADERS and its CONTINUATIONs): a request's or a response's
    /// headers, or trailers.
    Headers(Headers),
    /// The sender ended its half of the stream with a DATA frame.
    End { stream: u32 },
    /// RST_STREAM with its error code (0 is NO_ERROR).
    Reset { stream: u32, code: u32 },
}

/// The fields of a header block that the SLIs use; None when not in the block or not
/// decodable (see [`Headers::complete`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pub stream: u32,
    pub end_stream: bool,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<u16>,
    pub content_type: Option<String>,
    pub grpc_status: Option<u32>,
    /// Every field of the block was decoded: the absence of a field means it was not
    /// sent. False when the capture cut the block or a field referred to a dynamic table
    /// entry the decoder does not know.
    pub complete: bool,
}

impl Headers {
    /// gRPC, by its content type (`application/grpc`, `application/grpc+proto`…).
    pub fn is_grpc(&self) -> Option<bool> {
        self.content_type
            .as_deref()
            .map(|c| c.starts_with("application/grpc"))
    }
}

/// The frame in progress at the end of the last payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cont {
    /// A frame whose bytes are not looked at.
    Skip,
    /// A HEADERS or CONTINUATION frame: its bytes go on the header block.
    Block,
    /// A DATA frame that ends the stream when its last byte comes.
    DataEnd(u32),
}

/// A header block being collected.
struct Block {
    stream: u32,
    end_stream: bool,
    bytes: Vec<u8>,
    /// Bytes of the current frame before its fragment still to come (pad length,
    /// priority).
    lead: u64,
    /// Fragment bytes of the current frame still to come (padding excluded).
    want: u64,
    /// Padding bytes after them in the current frame.
    pad: u64,
    /// Every byte of the block so far was captured.
    whole: bool,
    /// The current frame carries END_HEADERS: the block ends with it.
    last: bool,
}

/// One direction of an HTTP/2 connection: frame boundaries and the HPACK decoder of
/// what that side sends.
pub struct Direction {
    /// Bytes at the start of the next payload that belong to a frame begun earlier.
    skip: u64,
    cont: Cont,
    /// A frame header cut by the end of a payload (fewer than 9 bytes).
    head: Vec<u8>,
    block: Option<Block>,
    /// A frame header fell beyond the captured bytes: where frames start is unknown
    /// until a payload starts with one.
    lost_sync: bool,
    /// Whether the client preface is still to be stepped over (the client's sends).
    preface: bool,
    decoder: Decoder<'static>,
    /// Counters for the status record.
    pub resyncs: u64,
    pub hpack_resets: u64,
}

impl Direction {
    /// `preface`: this is the client's sending direction of a connection seen from its
    /// start. `from_start`: the dynamic table is known empty (the connection's first
    /// bytes are seen); otherwise the decoder starts as a lost one does.
    pub fn new(preface: bool, from_start: bool) -> Direction {
        let mut d = Direction {
            skip: 0,
            cont: Cont::Skip,
            head: Vec::new(),
            block: None,
            lost_sync: false,
            preface,
            decoder: new_decoder(),
            resyncs: 0,
            hpack_resets: 0,
        };
        if !from_start {
            d.hpack_resets += 1;
        }
        d
    }

    /// Whether the decoder's table is trusted since the start.
    pub fn table_known(&self) -> bool {
        self.hpack_resets == 0
    }

    /// Reads one payload of this direction: `bytes` captured of `total` moved.
    pub fn feed(&mut self, bytes: &[u8], total: u64, out: &mut Vec<H2Event>) {
        let joined;
        let (mut bytes, mut total) = (bytes, total);
        if !self.head.is_empty() {
            joined = [&self.head[..], bytes].concat();
            total += self.head.len() as u64;
            bytes = &joined;
            self.head.clear();
        }
        let mut at = 0u64;
        if self.preface {
            self.preface = false;
            if is_preface(bytes) {
                at = PREFACE.len() as u64;
            }
        }
        // The rest of a frame begun in an earlier payload.
        if self.skip > 0 {
            let n = self.skip.min(total);
            self.continued(bytes, at, at + n, out);
            self.skip -= n;
            at += n;
            if self.skip > 0 {
                return;
            }
        }
        if self.lost_sync {
            // Writes mostly start at a frame: take this one if it looks like frames.
            let rest = &bytes[at.min(bytes.len() as u64) as usize..];
            if !frames_check(rest, total - at, false) {
                return;
            }
            self.lost_sync = false;
            self.resyncs += 1;
            self.drop_block();
        }
        while at < total {
            if at + HEADER as u64 > total {
                // A frame header split across payloads.
                match bytes.get(at as usize..) {
                    Some(rest) if rest.len() as u64 == total - at => self.head = rest.to_vec(),
                    _ => self.lose_sync(),
                }
                return;
            }
            let Some(f) = bytes.get(at as usize..).and_then(Frame::parse) else {
                self.lose_sync();
                return;
            };
            let body = at + HEADER as u64;
            let end = body + u64::from(f.len);
            self.frame(f, bytes, body, end.min(total), out);
            if end > total {
                self.skip = end - total;
                return;
            }
            at = end;
        }
    }

    fn lose_sync(&mut self) {
        self.lost_sync = true;
        self.skip = 0;
        self.cont = Cont::Skip;
        self.drop_block();
    }

    /// A header block that will never be finished: its insertions are lost.
    fn drop_block(&mut self) {
        if self.block.take().is_some() {
            self.reset_decoder();
        }
    }

    fn reset_decoder(&mut self) {
        self.decoder = new_decoder();
        self.hpack_resets += 1;
    }

    /// A frame starting at `body - 9`, whose bytes up to `end` are in this payload.
    fn frame(&mut self, f: Frame, bytes: &[u8], body: u64, end: u64, out: &mut Vec<H2Event>) {
        let full_end = body + u64::from(f.len);
        self.cont = Cont::Skip;
        match f.kind {
            HEADERS => {
                // A new block while one is unfinished: the peer broke the protocol, or
                // frames were missed.
                self.drop_block();
                // The pad length and priority fields come before the fragment, which
                // the padding follows. A pad length not in this payload is unknown: the
                // block is then taken as cut (padding may end up in it).
                let mut lead = 0u64;
                let mut pad = 0u64;
                let mut whole = true;
                if f.flags & PADDED != 0 {
                    match bytes.get(body as usize).filter(|_| body < end) {
                        Some(&p) => pad = u64::from(p),
                        None => whole = false,
                    }
                    lead += 1;
                }
                if f.flags & PRIORITY != 0 {
                    lead += 5;
                }
                self.block = Some(Block {
                    stream: f.stream,
                    end_stream: f.flags & END_STREAM != 0,
                    bytes: Vec::new(),
                    lead,
                    want: u64::from(f.len).saturating_sub(lead + pad),
                    pad,
                    whole,
                    last: f.flags & END_HEADERS != 0,
                });
                self.cont = Cont::Block;
                self.take_fragment(bytes, body, end);
                if full_end == end && f.flags & END_HEADERS != 0 {
                    self.finish_block(out);
                } else if full_end == end {
                    self.cont = Cont::Skip;
                }
            }
            CONTINUATION => {
                let Some(b) = self.block.as_mut().filter(|b| b.stream == f.stream) else {
                    return;
                };
                b.lead = 0;
                b.want = u64::from(f.len);
                b.pad = 0;
                b.last = f.flags & END_HEADERS != 0;
                self.cont = Cont::Block;
                self.take_fragment(bytes, body, end);
                if full_end == end && f.flags & END_HEADERS != 0 {
                    self.finish_block(out);
                } else if full_end == end {
                    self.cont = Cont::Skip;
                }
            }
            DATA if f.flags & END_STREAM != 0 => {
                if full_end == end {
                    out.push(H2Event::End { stream: f.stream });
                } else {
                    self.cont = Cont::DataEnd(f.stream);
                }
            }
            RST_STREAM => {
                let code = bytes
                    .get(body as usize..body as usize + 4)
                    .filter(|_| end >= body + 4)
                    .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")));
                out.push(H2Event::Reset {
                    stream: f.stream,
                    // A cut reset is still a reset: count it as an error.
                    code: code.unwrap_or(u32::MAX),
                });
            }
            _ => {}
        }
    }

    /// Bytes `from..to` of this payload continue the frame of the last one.
    fn continued(&mut self, bytes: &[u8], from: u64, to: u64, out: &mut Vec<H2Event>) {
        let done = to - from == self.skip;
        match self.cont {
            Cont::Skip => {}
            Cont::DataEnd(stream) => {
                if done {
                    out.push(H2Event::End { stream });
                }
            }
            Cont::Block => {
                self.take_fragment(bytes, from, to);
                // END_HEADERS is in the frame header, already read: a block whose last
                // frame ended here is finished when `want` and `pad` are used up.
                if done {
                    let last = self.block.as_ref().is_some_and(|b| b.last);
                    if last {
                        self.finish_block(out);
                    }
                }
            }
        }
        if done {
            self.cont = Cont::Skip;
        }
    }

    /// Appends what was captured of payload bytes `from..to` to the block's fragment.
    fn take_fragment(&mut self, bytes: &[u8], from: u64, to: u64) {
        let Some(b) = self.block.as_mut() else {
            return;
        };
        let lead = b.lead.min(to - from);
        b.lead -= lead;
        let from = from + lead;
        let n = (to - from).min(b.want);
        b.want -= n;
        b.pad = b.pad.saturating_sub((to - from) - n);
        let captured = bytes.get(from as usize..(from + n) as usize);
        match captured {
            Some(c) if b.bytes.len() + c.len() <= MAX_BLOCK => b.bytes.extend_from_slice(c),
            _ => {
                // Cut by the capture (or too long to keep): decode what came before.
                if let Some(c) = bytes.get(from as usize..) {
                    let room = MAX_BLOCK.saturating_sub(b.bytes.len());
                    b.bytes
                        .extend_from_slice(&c[..c.len().min(n as usize).min(room)]);
                }
                b.whole = false;
            }
        }
    }

    /// Decodes the finished block: its fields for the SLIs. A cut block, or one the
    /// decoder fails on, leaves the dynamic table unknown: the decoder starts again.
    fn finish_block(&mut self, out: &mut Vec<H2Event>) {
        let Some(b) = self.block.take() else {
            return;
        };
        self.cont = Cont::Skip;
        let mut h = Headers {
            stream: b.stream,
            end_stream: b.end_stream,
            ..Headers::default()
        };
        let decoded = self.decoder.decode_with_cb(&b.bytes, |name, value| {
            field(&mut h, &name, value);
        });
        h.complete = b.whole && decoded.is_ok() && self.table_known();
        if !b.whole || decoded.is_err() {
            self.reset_decoder();
        }
        out.push(H2Event::Headers(h));
    }
}

fn new_decoder() -> Decoder<'static> {
    let mut d = Decoder::new();
    d.set_max_allowed_table_size(MAX_TABLE);
    d
}

/// Keeps the fields the SLIs need; nothing else of a header block is kept.
fn field(h: &mut Headers, name: &[u8], value: Cow<[u8]>) {
    let text = || {
        let v = &value[..value.len().min(MAX_VALUE)];
        String::from_utf8_lossy(v).into_owned()
    };
    match name {
        b":method" => h.method = Some(text()),
        b":path" => h.path = Some(text()),
        b":status" => {
            h.status = std::str::from_utf8(&value)
                .ok()
                .and_then(|s| s.parse().ok())
        }
        b"content-type" => h.content_type = Some(text()),
        b"grpc-status" => {
            h.grpc_status = std::str::from_utf8(&value)
                .ok()
                .and_then(|s| s.parse().ok())
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured with `strace -f -x -s 600` (all iovecs of a sendmsg joined, as the probe
    // gathers them): grpcio 1.51 (Debian 12's python3-grpcio, C-core chttp2) calling
    // /demo.Echo/Say twice and /demo.Echo/Fail once (NOT_FOUND) on a generic handler;
    // curl 7.88 `--http2-prior-knowledge` against nghttpd 1.52.
    /// sendmsg, 337 bytes
    const GRPC_C_FIRST: &[u8] = b"PRI * HTTP/2.0\x0d\x0a\x0d\x0aSM\x0d\x0a\x0d\x0a\x00\x00$\x04\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x04\x00?\xff\xff\x00\x05\x00?\xff\xff\x00\x06\x00\x00 \x00\xfe\x03\x00\x00\x00\x01\x00\x00\x00\x04\x01\x00\x00\x00\x00\x00\x00\xcb\x01\x04\x00\x00\x00\x01@\x05:path\x0e/demo.Echo/Say@\x0a:authority\x0f127.0.0.1:50151\x83\x86@\x0ccontent-type\x10application/grpc@\x02te\x08trailers@\x14grpc-accept-encoding\x17identity, deflate, gzip@\x0auser-agent0grpc-python/1.51.1 grpc-c/29.0.0 (linux; chttp2)\x00\x00\x04\x08\x00\x00\x00\x00\x01\x00\x00\x00\x05\x00\x00\x0c\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x07hello 0\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00?\x00\x05";
    /// recvmsg, 39 bytes
    const GRPC_C_SETTINGS_IN: &[u8] = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x0c\x00\x00\x08\x06\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    /// sendmsg, 17 bytes
    const GRPC_C_PING_ACK: &[u8] =
        b"\x00\x00\x08\x06\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    /// recvmsg, 132 bytes
    const GRPC_C_RESP1: &[u8] = b"\x00\x00N\x01\x04\x00\x00\x00\x01\x88@\x0ccontent-type\x10application/grpc@\x14grpc-accept-encoding\x17identity, deflate, gzip\x00\x00\x0c\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x07hello 0\x00\x00\x0f\x01\x05\x00\x00\x00\x01@\x0bgrpc-status\x010";
    /// sendmsg, 17 bytes
    const GRPC_C_PING: &[u8] =
        b"\x00\x00\x08\x06\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    /// sendmsg, 64 bytes
    const GRPC_C_REQ2: &[u8] = b"\x00\x00\x08\x01\x04\x00\x00\x00\x03\xc3\xc2\x83\x86\xc1\xc0\xbf\xbe\x00\x00\x04\x08\x00\x00\x00\x00\x03\x00\x00\x00\x05\x00\x00\x0c\x00\x01\x00\x00\x00\x03\x00\x00\x00\x00\x07hello 1\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x0c";
    /// recvmsg, 73 bytes
    const GRPC_C_RESP2: &[u8] = b"\x00\x00\x08\x06\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x01\x04\x00\x00\x00\x03\x88\xc0\xbf\x00\x00\x0c\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x07hello 1\x00\x00\x01\x01\x05\x00\x00\x00\x03\xbe\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x0c";
    /// sendmsg, 80 bytes
    const GRPC_C_REQ3: &[u8] = b"\x00\x00\x1e\x01\x04\x00\x00\x00\x05@\x05:path\x0f/demo.Echo/Fail\xc3\x83\x86\xc2\xc1\xc0\xbf\x00\x00\x04\x08\x00\x00\x00\x00\x05\x00\x00\x00\x05\x00\x00\x06\x00\x01\x00\x00\x00\x05\x00\x00\x00\x00\x01x\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x0c";
    /// recvmsg, 67 bytes
    const GRPC_C_RESP3: &[u8] = b"\x00\x00-\x01\x05\x00\x00\x00\x05\x88\xc0@\x0bgrpc-status\x015\x00\x0cgrpc-message\x0dno such thing\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x06";
    /// sendto, 64 bytes
    const CURL_PREFACE: &[u8] = b"PRI * HTTP/2.0\x0d\x0a\x0d\x0aSM\x0d\x0a\x0d\x0a\x00\x00\x12\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00d\x00\x04\x02\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x04\x08\x00\x00\x00\x00\x00\x01\xff\x00\x01";
    /// sendto, 40 bytes
    const CURL_GET: &[u8] = b"\x00\x00\x1f\x01\x05\x00\x00\x00\x01\x82\x84\x86A\x8b\x08\x9d\x5c\x0b\x81p\xdcm\xe0<\x1fz\x88%\xb6P\xc3\xab\xbc\xf2\xe1S\x03*/*";
    /// recvfrom, 136 bytes
    const NGHTTPD_200: &[u8] = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00d\x00\x00\x00\x04\x01\x00\x00\x00\x00\x00\x00[\x01\x04\x00\x00\x00\x01\x88v\x90\xaai\xd2\x9a\xe4R\xa9\xa7Jk\x13\x01]\xb1.\x0fX\x89\xa4~V\x1c\xc5\x81\x97\x00\x0fa\x96\xd0z\xbe\x94\x03\xaa_)\x14\x10\x04\xe2\x80r\xe0\x1d\xb8\xdb\xaab\xd1\xbf\x0f\x0d\x013l\x96\xd0z\xbe\x94\x03\xaa_)\x14\x10\x04\xe2\x80r\xe0\x1d\xb8\xdb\x8ab\xd1\xbf_\x87I|\xa5\x89\xd3M\x1f\x00\x00\x03\x00\x01\x00\x00\x00\x01hi\x0a";
    /// sendto, 9 bytes
    const CURL_ACK: &[u8] = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00";
    fn feed(d: &mut Direction, payloads: &[&[u8]]) -> Vec<H2Event> {
        let mut out = Vec::new();
        for p in payloads {
            d.feed(p, p.len() as u64, &mut out);
        }
        out
    }

    fn headers(events: &[H2Event]) -> Vec<&Headers> {
        events
            .iter()
            .filter_map(|e| match e {
                H2Event::Headers(h) => Some(h),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn prefaces_and_frames_are_recognised() {
        assert!(is_preface(GRPC_C_FIRST));
        assert!(is_preface(&CURL_PREFACE[..20]));
        assert!(!is_preface(b"PRI * HTTP/1.1\r\n\r\n"));
        assert!(!is_preface(b"PRI"));
        assert!(is_server_preface(NGHTTPD_200, NGHTTPD_200.len() as u64));
        assert!(!is_server_preface(GRPC_C_PING_ACK, 17), "a PING");
        for p in [
            GRPC_C_REQ2,
            GRPC_C_RESP2,
            GRPC_C_REQ3,
            NGHTTPD_200,
            CURL_GET,
        ] {
            assert!(looks_like_frames(p, p.len() as u64), "{p:x?}");
        }
        // The last frame may run on into the next payload.
        assert!(looks_like_frames(CURL_GET, 30));
        // A frame header past the capture is not taken on trust to classify.
        assert!(!looks_like_frames(&CURL_GET[..20], 400));
        assert!(frames_check(&CURL_GET[..20], 400, false));
        assert!(!looks_like_frames(b"GET / HTTP/1.1\r\n", 16));
        assert!(!looks_like_frames(b"*1\r\n$4\r\nPING\r\n", 14));
        assert!(!looks_like_frames(&[0; 32], 32));
        assert!(!looks_like_frames(b"", 0));
    }

    #[test]
    fn grpc_client_requests_and_server_replies() {
        let mut sent = Direction::new(true, true);
        let reqs = feed(
            &mut sent,
            &[
                GRPC_C_FIRST,
                GRPC_C_PING_ACK,
                GRPC_C_PING,
                GRPC_C_REQ2,
                GRPC_C_REQ3,
            ],
        );
        let h = headers(&reqs);
        assert_eq!(h.len(), 3, "{reqs:?}");
        let paths: Vec<_> = h.iter().map(|h| h.path.as_deref().unwrap()).collect();
        assert_eq!(
            paths,
            ["/demo.Echo/Say", "/demo.Echo/Say", "/demo.Echo/Fail"]
        );
        assert!(h.iter().all(|h| h.complete && h.is_grpc() == Some(true)));
        assert!(h.iter().all(|h| h.method.as_deref() == Some("POST")));
        assert_eq!(h.iter().map(|h| h.stream).collect::<Vec<_>>(), [1, 3, 5]);

        let mut got = Direction::new(false, true);
        let resp = feed(
            &mut got,
            &[GRPC_C_SETTINGS_IN, GRPC_C_RESP1, GRPC_C_RESP2, GRPC_C_RESP3],
        );
        let h = headers(&resp);
        // Response headers then trailers for the two calls that worked; the failed
        // one is trailers-only (status and grpc-status in one block).
        let seen: Vec<_> = h
            .iter()
            .map(|h| (h.stream, h.status, h.grpc_status, h.end_stream))
            .collect();
        assert_eq!(
            seen,
            [
                (1, Some(200), None, false),
                (1, None, Some(0), true),
                (3, Some(200), None, false),
                (3, None, Some(0), true),
                (5, Some(200), Some(5), true),
            ]
        );
        assert!(got.table_known() && sent.table_known());
    }

    #[test]
    fn curl_and_nghttpd() {
        let mut c = Direction::new(true, true);
        let h = feed(&mut c, &[CURL_PREFACE, CURL_GET, CURL_ACK]);
        let h = headers(&h);
        assert_eq!(h.len(), 1);
        assert_eq!(
            (
                h[0].method.as_deref(),
                h[0].path.as_deref(),
                h[0].end_stream
            ),
            (Some("GET"), Some("/"), true)
        );
        let mut s = Direction::new(false, true);
        let ev = feed(&mut s, &[NGHTTPD_200]);
        assert_eq!(headers(&ev)[0].status, Some(200));
        assert_eq!(ev.last(), Some(&H2Event::End { stream: 1 }));
    }

    #[test]
    fn frames_split_anywhere_across_payloads_give_the_same_events() {
        let all: Vec<u8> = [GRPC_C_SETTINGS_IN, GRPC_C_RESP1, GRPC_C_RESP2, GRPC_C_RESP3].concat();
        let whole = feed(&mut Direction::new(false, true), &[&all]);
        for cut in 1..all.len() {
            let (a, b) = all.split_at(cut);
            let split = feed(&mut Direction::new(false, true), &[a, b]);
            assert_eq!(split, whole, "cut at {cut}");
        }
    }

    #[test]
    fn padding_and_priority_are_stepped_over_wherever_the_payload_splits() {
        // HEADERS with PADDED | PRIORITY | END_HEADERS | END_STREAM: pad length 3,
        // 5 priority bytes, the fragment (:method GET, :path /), 3 bytes of padding;
        // then a CONTINUATION-less second request on stream 3.
        let flags = PADDED | PRIORITY | END_HEADERS | END_STREAM;
        let mut frames = vec![0, 0, 11, HEADERS, flags, 0, 0, 0, 1];
        frames.extend([3, 0, 0, 0, 0, 16, 0x82, 0x84, 0, 0, 0]);
        frames.extend([0, 0, 2, HEADERS, END_HEADERS, 0, 0, 0, 3, 0x82, 0x85]);
        let whole = feed(&mut Direction::new(false, true), &[&frames]);
        let h = headers(&whole);
        assert_eq!(h.len(), 2);
        assert_eq!(
            (h[0].method.as_deref(), h[0].path.as_deref(), h[0].complete),
            (Some("GET"), Some("/"), true)
        );
        assert_eq!(h[1].path.as_deref(), Some("/index.html"));
        for cut in 1..frames.len() {
            let (a, b) = frames.split_at(cut);
            let split = feed(&mut Direction::new(false, true), &[a, b]);
            // Only a pad length read apart from its frame header is unknown.
            if cut != HEADER {
                assert_eq!(split, whole, "cut at {cut}");
            }
        }
    }

    #[test]
    fn continuation_frames_complete_a_block() {
        // :method GET in HEADERS, :path / in a CONTINUATION with END_HEADERS.
        let mut frames = vec![0, 0, 1, HEADERS, END_STREAM, 0, 0, 0, 1, 0x82];
        frames.extend([0, 0, 1, CONTINUATION, END_HEADERS, 0, 0, 0, 1, 0x84]);
        let h = feed(&mut Direction::new(false, true), &[&frames]);
        let h = headers(&h);
        assert_eq!(h.len(), 1);
        assert_eq!(
            (
                h[0].method.as_deref(),
                h[0].path.as_deref(),
                h[0].end_stream
            ),
            (Some("GET"), Some("/"), true)
        );
    }

    #[test]
    fn a_cut_header_block_loses_the_table_honestly() {
        // Only the first 150 bytes of the first write captured: the block is cut after
        // :path and :authority, so its later insertions are unknown.
        let mut d = Direction::new(true, true);
        let mut out = Vec::new();
        d.feed(&GRPC_C_FIRST[..150], GRPC_C_FIRST.len() as u64, &mut out);
        let h = headers(&out);
        assert_eq!(h[0].path.as_deref(), Some("/demo.Echo/Say"));
        assert!(!h[0].complete && !d.table_known());
        // The next request refers to those entries: not guessed.
        let out = feed(&mut d, &[GRPC_C_REQ2, GRPC_C_REQ3]);
        let h = headers(&out);
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].path.as_deref(), h[0].complete), (None, false));
        // A literal path is still read after the loss.
        assert_eq!(h[1].path.as_deref(), Some("/demo.Echo/Fail"));
    }

    #[test]
    fn a_frame_header_beyond_the_capture_resyncs_on_a_later_payload() {
        let mut d = Direction::new(false, true);
        let mut out = Vec::new();
        // 20 bytes captured of the 132: the frame after the first is not seen.
        d.feed(&GRPC_C_RESP1[..20], GRPC_C_RESP1.len() as u64, &mut out);
        // The first frame (response headers) is there, cut.
        assert_eq!(headers(&out)[0].status, Some(200));
        // The next payload starts with a frame: frames are found again there.
        let out = feed(&mut d, &[GRPC_C_RESP2]);
        assert_eq!(headers(&out)[0].stream, 3);
        assert_eq!(d.resyncs, 1);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut d = Direction::new(true, false);
        let mut out = Vec::new();
        let mut buf = [0u8; 300];
        for i in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let seed = [GRPC_C_FIRST, GRPC_C_RESP3, NGHTTPD_200][i % 3];
            let n = (x as usize % seed.len().min(buf.len())).max(1);
            buf[..n].copy_from_slice(&seed[..n]);
            buf[(x >> 20) as usize % n] = (x >> 40) as u8;
            d.feed(&buf[..n], n as u64 + (x >> 50) % 64, &mut out);
            out.clear();
        }
    }
}

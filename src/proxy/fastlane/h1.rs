//! HTTP/1.1 message heads for the fast lane: the upstream request we write and
//! the upstream response we parse and re-serialise for the client. Pure code.

use std::ops::Range;

/// Most response headers a registry answer may carry.
const MAX_HEADERS: usize = 64;
/// Largest response head accepted from a registry.
pub const MAX_HEAD: usize = 64 * 1024;

/// Client request headers that never travel upstream: our own credentials,
/// hop-by-hop headers, and framing (fast-lane requests carry no body).
const DROP_REQUEST: &[&str] = &[
    "host",
    "authorization",
    "proxy-authorization",
    "cookie",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "transfer-encoding",
    "content-length",
    "expect",
];

/// Registry response headers that never reach the client: hop-by-hop headers
/// and the registry's own challenge (clients authenticate to us, not there).
const DROP_RESPONSE: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "www-authenticate"];

/// Writes the upstream request head: request line, `Host`, the connector's
/// `Authorization`, then the client's headers minus its credentials, hop-by-hop and framing headers.
pub fn request_head<'a>(
    method: &str,
    uri: &str,
    host: &str,
    authorization: Option<&str>,
    client_headers: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(uri.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(a) = authorization {
        put_header(&mut out, b"Authorization", a.as_bytes());
    }
    for (name, value) in client_headers {
        if !DROP_REQUEST.iter().any(|d| name.eq_ignore_ascii_case(d)) {
            put_header(&mut out, name.as_bytes(), value);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`: ends with the zero-size chunk.
    Chunked,
    /// Neither length nor chunking: the body ends when the registry closes.
    UntilClose,
}

/// A parsed registry response head. Header names and values are ranges into
/// the buffer it was parsed from, so parsing allocates one small `Vec`.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Reason phrase range.
    pub reason: Range<usize>,
    /// `(name, value)` ranges in wire order.
    pub headers: Vec<(Range<usize>, Range<usize>)>,
    /// Length of the head including the blank line.
    pub len: usize,
    /// Body framing (already accounting for a HEAD request).
    pub framing: Framing,
    /// Whether the registry lets the connection be reused.
    pub keep_alive: bool,
}

/// What [`parse_response`] made of the bytes so far.
#[derive(Debug)]
pub enum Parsed {
    /// A complete head.
    Head(ResponseHead),
    /// More bytes are needed.
    Partial,
}

/// Why a response head is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP/1.x.
    #[error("malformed response head: {0}")]
    Malformed(String),
    /// Longer than [`MAX_HEAD`].
    #[error("response head larger than {MAX_HEAD} bytes")]
    TooLarge,
    /// `Content-Length` that is not one number.
    #[error("invalid Content-Length")]
    BadLength,
}

/// Parses a response head from the start of `buf`. `head_request` marks a
/// response to HEAD, whose `Content-Length` describes a body that is not sent.
pub fn parse_response(buf: &[u8], head_request: bool) -> Result<Parsed, HeadError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut storage);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    let status = resp.code.unwrap_or(0);
    let http10 = resp.version == Some(0);
    let base = buf.as_ptr() as usize;
    let range = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let reason = resp.reason.map(|r| range(r.as_bytes())).unwrap_or(0..0);
    let mut headers = Vec::with_capacity(resp.headers.len());
    let mut length: Result<Option<u64>, HeadError> = Ok(None);
    let mut chunked = false;
    let mut saw_te = false;
    let mut keep_alive = !http10;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok());
            length = match (length, n) {
                (Ok(None), Some(n)) => Ok(Some(n)),
                (Ok(Some(l)), Some(n)) if l == n => Ok(Some(n)),
                _ => Err(HeadError::BadLength),
            };
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only a final `chunked` coding frames the body (RFC 9112 6.3).
            let v = String::from_utf8_lossy(h.value);
            chunked = v.rsplit(',').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
            saw_te = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            // Byte tokens, compared without case: no lowercased copy per response.
            let tokens = || h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii);
            if tokens().any(|t| t.eq_ignore_ascii_case(b"close")) {
                keep_alive = false;
            } else if tokens().any(|t| t.eq_ignore_ascii_case(b"keep-alive")) {
                keep_alive = true;
            }
        }
        headers.push((range(h.name.as_bytes()), range(h.value)));
    }
    // Transfer-Encoding overrides Content-Length, even an invalid one.
    let length = if saw_te { None } else { length? };
    let bodiless = head_request || status == 204 || status == 304 || (100..200).contains(&status);
    let framing = match (bodiless, chunked, length) {
        (true, _, _) => Framing::Empty,
        (false, true, _) => Framing::Chunked,
        (false, false, Some(n)) => Framing::Length(n),
        (false, false, None) => Framing::UntilClose,
    };
    Ok(Parsed::Head(ResponseHead { status, reason, headers, len, framing, keep_alive }))
}

impl ResponseHead {
    /// The value of the first header called `name`.
    pub fn header<'b>(&self, buf: &'b [u8], name: &str) -> Option<&'b str> {
        self.headers
            .iter()
            .find(|(n, _)| buf[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(&buf[v.clone()]).ok())
    }

    /// Serialises the head for the client: hop-by-hop headers and the challenge
    /// dropped, each remaining header passed to `map` as (name, value) bytes
    /// (it returns a replacement value, or `None` to keep it; httparse checked
    /// the names are tokens, so nothing is validated as UTF-8 per header), and
    /// `connection` (if any) sent as the `Connection` header. `Content-Length`
    /// goes when the body is not length-framed; `Transfer-Encoding` too when
    /// `dechunk` (the body is sent de-chunked to an HTTP/1.0 client, delimited
    /// by closing).
    pub fn client_head(
        &self,
        buf: &[u8],
        connection: Option<&str>,
        dechunk: bool,
        mut map: impl FnMut(&[u8], &[u8]) -> Option<String>,
    ) -> Vec<u8> {
        let drop_length = matches!(self.framing, Framing::Chunked | Framing::UntilClose);
        let mut out = Vec::with_capacity(self.len + 32);
        out.extend_from_slice(b"HTTP/1.1 ");
        // httparse only accepts three-digit status codes; no `format!` per response.
        let code = self.status;
        out.extend_from_slice(&[
            b'0' + (code / 100 % 10) as u8,
            b'0' + (code / 10 % 10) as u8,
            b'0' + (code % 10) as u8,
        ]);
        out.push(b' ');
        let reason = &buf[self.reason.clone()];
        if reason.is_empty() {
            let canonical = http::StatusCode::from_u16(self.status).ok().and_then(|s| s.canonical_reason());
            out.extend_from_slice(canonical.unwrap_or("Unknown").as_bytes());
        } else {
            out.extend_from_slice(reason);
        }
        out.extend_from_slice(b"\r\n");
        for (n, v) in &self.headers {
            let name = &buf[n.clone()];
            if DROP_RESPONSE.iter().any(|d| name.eq_ignore_ascii_case(d.as_bytes()))
                || (drop_length && name.eq_ignore_ascii_case(b"content-length"))
                || (dechunk && name.eq_ignore_ascii_case(b"transfer-encoding"))
            {
                continue;
            }
            let value = &buf[v.clone()];
            match map(name, value) {
                Some(replaced) => put_header(&mut out, name, replaced.as_bytes()),
                None => put_header(&mut out, name, value),
            }
        }
        if let Some(c) = connection {
            put_header(&mut out, b"Connection", c.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// Finds the data and the end of a chunked body while it is relayed, without
/// buffering it: fed the bytes as they arrive, it reports the data spans and
/// where the body (last chunk and trailers included) ends.
#[derive(Debug, Default)]
pub struct ChunkScanner {
    state: ChunkState,
    size: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In the hex size.
    #[default]
    Size,
    /// In a chunk extension, up to the line end.
    Extension,
    /// Saw CR after the size line.
    SizeLf,
    /// In chunk data, `size` bytes left.
    Data,
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// Saw CR of the final empty line.
    FinalLf,
    /// The body is complete.
    Done,
}

impl ChunkScanner {
    /// Scans `input`, calling `data` with every span of chunk data. Returns
    /// `Some(n)` when the body ends after the first `n` bytes of `input`.
    pub fn feed(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> Result<Option<usize>, HeadError> {
        use ChunkState::*;
        let bad = || HeadError::Malformed("invalid chunked body".into());
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                        if self.size >> 56 != 0 {
                            return Err(bad());
                        }
                        self.size = self.size * 16 + digit;
                    }
                    b';' | b' ' | b'\t' => self.state = Extension,
                    b'\r' => self.state = SizeLf,
                    b'\n' => self.after_size(),
                    _ => return Err(bad()),
                },
                Extension => match b {
                    b'\r' => self.state = SizeLf,
                    b'\n' => self.after_size(),
                    _ => {}
                },
                SizeLf if b == b'\n' => self.after_size(),
                Data => {
                    let n = (input.len() - i).min(self.size as usize);
                    data(&input[i..i + n]);
                    self.size -= n as u64;
                    i += n;
                    if self.size == 0 {
                        self.state = DataCr;
                    }
                    continue;
                }
                DataCr if b == b'\r' => self.state = DataLf,
                DataCr | DataLf if b == b'\n' => self.state = Size,
                TrailerStart => match b {
                    b'\r' => self.state = FinalLf,
                    b'\n' => self.state = Done,
                    _ => self.state = Trailer,
                },
                Trailer if b == b'\n' => self.state = TrailerStart,
                Trailer => {}
                FinalLf if b == b'\n' => self.state = Done,
                Done => return Ok(Some(i)),
                SizeLf | DataCr | DataLf | FinalLf => return Err(bad()),
            }
            i += 1;
            if self.state == Done {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    fn after_size(&mut self) {
        self.state = if self.size == 0 { ChunkState::TrailerStart } else { ChunkState::Data };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn head(raw: &[u8], head_request: bool) -> ResponseHead {
        match parse_response(raw, head_request).unwrap() {
            Parsed::Head(h) => h,
            Parsed::Partial => panic!("partial"),
        }
    }

    #[test]
    fn request_head_injects_credentials_and_drops_the_clients() {
        let client: Vec<(&str, &[u8])> = vec![
            ("Host", b"proxy:5000"),
            ("Authorization", b"Basic Y2xpZW50"),
            ("Accept", b"application/vnd.oci.image.manifest.v1+json"),
            ("Connection", b"keep-alive"),
            ("Range", b"bytes=0-9"),
            ("cookie", b"a=b"),
        ];
        let out = request_head(
            "GET",
            "/v2/library/alpine/manifests/3",
            "registry:443",
            Some("Bearer t0k"),
            client.into_iter(),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /v2/library/alpine/manifests/3 HTTP/1.1\r\nHost: registry:443\r\nAuthorization: Bearer t0k\r\n\
             Accept: application/vnd.oci.image.manifest.v1+json\r\nRange: bytes=0-9\r\n\r\n"
        );
    }

    #[test]
    fn parses_length_and_keep_alive() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\nDocker-Content-Digest: sha256:ab\r\n\r\nbody";
        let h = head(raw, false);
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(42));
        assert!(h.keep_alive);
        assert_eq!(h.len, raw.len() - 4);
        assert_eq!(h.header(raw, "docker-content-digest"), Some("sha256:ab"));
    }

    #[test]
    fn head_requests_and_bodiless_statuses_have_no_body() {
        assert_eq!(head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true).framing, Framing::Empty);
        assert_eq!(
            head(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false).framing,
            Framing::Empty
        );
        assert_eq!(head(b"HTTP/1.1 204 No Content\r\n\r\n", false).framing, Framing::Empty);
    }

    #[test]
    fn chunked_and_unframed_bodies() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(head(chunked, false).framing, Framing::Chunked);
        let length_first = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(head(length_first, false).framing, Framing::Chunked);
        let gzip_only = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(head(gzip_only, false).framing, Framing::UntilClose);
        assert_eq!(head(b"HTTP/1.1 200 OK\r\n\r\n", false).framing, Framing::UntilClose);
    }

    #[test]
    fn client_head_drops_the_length_of_unframed_bodies_and_dechunks_for_http10() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nX: y\r\n\r\n";
        let h = head(raw, false);
        let kept = h.client_head(raw, None, false, |_, _| None);
        assert_eq!(kept, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n");
        let dechunked = h.client_head(raw, Some("close"), true, |_, _| None);
        assert_eq!(dechunked, b"HTTP/1.1 200 OK\r\nX: y\r\nConnection: close\r\n\r\n");
    }

    /// Feeds `body` split at every position pair, collecting data and the end.
    fn scan_all_splits(body: &[u8]) -> Vec<(Vec<u8>, Option<usize>)> {
        let mut out = Vec::new();
        for cut in 0..=body.len() {
            let mut s = ChunkScanner::default();
            let mut data = Vec::new();
            let mut end = None;
            let first = s.feed(&body[..cut], |d| data.extend_from_slice(d)).unwrap();
            if let Some(n) = first {
                end = Some(n);
            } else if let Some(n) = s.feed(&body[cut..], |d| data.extend_from_slice(d)).unwrap() {
                end = Some(cut + n);
            }
            out.push((data, end));
        }
        out
    }

    #[test]
    fn chunk_scanner_finds_data_and_end_however_the_bytes_arrive() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        let end = body.len() - 4;
        for (data, got_end) in scan_all_splits(body) {
            assert_eq!(data, b"hello world");
            assert_eq!(got_end, Some(end));
        }
        let plain = b"A\r\n0123456789\r\n0\r\n\r\n";
        for (data, got_end) in scan_all_splits(plain) {
            assert_eq!(data, b"0123456789");
            assert_eq!(got_end, Some(plain.len()));
        }
    }

    #[test]
    fn chunk_scanner_rejects_garbage() {
        assert!(ChunkScanner::default().feed(b"zz\r\n", |_| {}).is_err());
        assert!(ChunkScanner::default().feed(b"3\r\nabcX", |_| {}).is_err());
        assert!(ChunkScanner::default().feed(b"fffffffffffffffff\r\n", |_| {}).is_err());
        let mut s = ChunkScanner::default();
        assert_eq!(s.feed(b"3\r\nab", |_| {}).unwrap(), None, "incomplete is not an error");
    }

    #[test]
    fn connection_close_and_http10_end_reuse() {
        assert!(
            !head(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false).keep_alive
        );
        assert!(!head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false).keep_alive);
        assert!(
            head(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", false).keep_alive
        );
        // A token list, any case, any spacing; `close` wins over `keep-alive`.
        let listed = b"HTTP/1.1 200 OK\r\nConnection: Upgrade ,  CLOSE\r\nContent-Length: 0\r\n\r\n";
        assert!(!head(listed, false).keep_alive);
        let both = b"HTTP/1.0 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n";
        assert!(!head(both, false).keep_alive);
        let closed_not = b"HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n";
        assert!(head(closed_not, false).keep_alive, "only the whole token `close` ends reuse");
    }

    #[test]
    fn rejects_bad_heads() {
        assert!(matches!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Le", false), Ok(Parsed::Partial)));
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).unwrap_err(),
            HeadError::BadLength
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false)
                .unwrap_err(),
            HeadError::BadLength
        );
        assert!(matches!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", false), Err(HeadError::Malformed(_))));
        let huge = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &vec![b'a'; MAX_HEAD]].concat();
        assert_eq!(parse_response(&huge, false).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn client_head_drops_hop_by_hop_and_challenge_and_maps_values() {
        let raw = b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /x\r\nConnection: keep-alive\r\n\
                    WWW-Authenticate: Bearer realm=\"r\"\r\nContent-Length: 0\r\n\r\n";
        let h = head(raw, false);
        let out = h.client_head(raw, Some("close"), false, |n, _| {
            n.eq_ignore_ascii_case(b"location").then(|| "/y".to_string())
        });
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: /y\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn client_head_fills_a_missing_reason() {
        let raw = b"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n";
        let out = head(raw, false).client_head(raw, None, false, |_, _| None);
        assert!(out.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
    }

    #[test]
    fn client_head_writes_every_status_code_digit_for_digit() {
        for code in [100u16, 200, 206, 307, 429, 503, 999] {
            let raw = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
            let out = head(raw.as_bytes(), false).client_head(raw.as_bytes(), None, false, |_, _| None);
            assert!(out.starts_with(format!("HTTP/1.1 {code} X\r\n").as_bytes()), "{code}");
        }
    }
}

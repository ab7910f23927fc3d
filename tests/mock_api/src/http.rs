//! A small, strict HTTP/1.x server side: request heads, `Content-Length` and chunked request
//! bodies, keep-alive, response heads. Malformed input is an [`HttpError::Bad`] (the caller
//! answers it and closes); nothing here panics on client input.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Longest accepted request line or header line.
const MAX_LINE: usize = 16 * 1024;
/// Largest accepted request head (request line + headers).
const MAX_HEAD: usize = 64 * 1024;
/// Most header lines accepted.
const MAX_HEADERS: usize = 200;
/// Largest accepted request body (the CLI replays whole conversations: a few MB at most).
const MAX_BODY: u64 = 256 * 1024 * 1024;

/// Why a request could not be read.
#[derive(Debug)]
pub(crate) enum HttpError {
    /// The peer closed the connection (cleanly between requests, or mid-request).
    Closed,
    /// A socket error (the connection is unusable; nothing to answer).
    Io,
    /// Malformed or oversized input: answer with this status and message, then close.
    Bad(u16, String),
}

fn bad(status: u16, msg: impl Into<String>) -> HttpError {
    HttpError::Bad(status, msg.into())
}

/// A parsed request line and headers.
#[derive(Debug)]
pub(crate) struct Head {
    /// Request method, as sent (`GET`, `POST`, ...).
    pub method: String,
    /// Request target, as sent (`/v1/messages?beta=true`).
    pub target: String,
    /// Minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Header lines in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header joined with `,` (lowercased).
    fn header_list(&self, name: &str) -> String {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn connection_has(&self, token: &str) -> bool {
        self.header_list("connection")
            .split(',')
            .any(|t| t.trim() == token)
    }

    /// Whether the connection stays open after the response.
    pub fn keep_alive(&self) -> bool {
        if self.minor == 0 {
            self.connection_has("keep-alive")
        } else {
            !self.connection_has("close")
        }
    }

    /// Whether the client waits for `100 Continue` before sending the body.
    pub fn expects_continue(&self) -> bool {
        self.minor >= 1
            && self
                .header("expect")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    }

    /// The path part of the target (no query or fragment; absolute-form targets reduced).
    pub fn path(&self) -> &str {
        let mut t = self.target.as_str();
        for scheme in ["http://", "https://"] {
            if let Some(rest) = t.strip_prefix(scheme) {
                t = rest.find('/').map(|i| &rest[i..]).unwrap_or("/");
            }
        }
        let end = t.find(['?', '#']).unwrap_or(t.len());
        &t[..end]
    }
}

/// Which bytes a line may hold; checked as bytes arrive, so junk is refused at once instead
/// of waiting for a line end that may never come.
#[derive(Clone, Copy, Debug, PartialEq)]
enum LineKind {
    /// The request line: printable ASCII only.
    Request,
    /// Header, trailer and chunk-size lines: no control characters but tab.
    Field,
}

fn allowed(kind: LineKind, b: u8) -> bool {
    match kind {
        LineKind::Request => (0x20..0x7f).contains(&b) || b == b'\r',
        LineKind::Field => b >= 0x20 && b != 0x7f || b == b'\t' || b == b'\r',
    }
}

/// One line without its `\n` / `\r\n`; `None` on EOF before any byte.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    limit: usize,
    kind: LineKind,
) -> Result<Option<Vec<u8>>, HttpError> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await.map_err(|_| HttpError::Io)?;
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(None)
            } else {
                Err(HttpError::Closed)
            };
        }
        let end = buf.iter().position(|&b| b == b'\n');
        if buf[..end.unwrap_or(buf.len())]
            .iter()
            .any(|&b| !allowed(kind, b))
        {
            return Err(bad(400, "invalid character in request head"));
        }
        if let Some(pos) = end {
            line.extend_from_slice(&buf[..pos]);
            r.consume(pos + 1);
            break;
        }
        let n = buf.len();
        line.extend_from_slice(buf);
        r.consume(n);
        if line.len() > limit {
            return Err(bad(431, "request line or header line too long"));
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.contains(&b'\r') {
        return Err(bad(400, "bare CR in request head"));
    }
    if line.len() > limit {
        return Err(bad(431, "request line or header line too long"));
    }
    Ok(Some(line))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Read a request head. `Ok(None)`: the peer closed the connection between requests.
pub(crate) async fn read_head<R: AsyncBufRead + Unpin>(
    r: &mut R,
) -> Result<Option<Head>, HttpError> {
    // RFC 9112 §2.2: ignore a few empty lines before the request line.
    let mut line = None;
    for _ in 0..4 {
        match read_line(r, MAX_LINE, LineKind::Request).await? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => {
                line = Some(l);
                break;
            }
        }
    }
    let line = line.ok_or_else(|| bad(400, "empty request line"))?;
    let line = String::from_utf8(line).map_err(|_| bad(400, "request line is not ASCII"))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts.as_slice() else {
        return Err(bad(400, "malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(bad(400, "malformed request method"));
    }
    if target.is_empty() || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(bad(400, "malformed request target"));
    }
    let minor = match *version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        v if v.starts_with("HTTP/") => {
            return Err(bad(505, format!("unsupported HTTP version {v}")));
        }
        _ => return Err(bad(400, "malformed HTTP version")),
    };
    let mut headers = Vec::new();
    let mut total = line.len();
    loop {
        let l = read_line(r, MAX_LINE, LineKind::Field)
            .await?
            .ok_or(HttpError::Closed)?;
        if l.is_empty() {
            break;
        }
        total += l.len() + 2;
        if total > MAX_HEAD || headers.len() >= MAX_HEADERS {
            return Err(bad(431, "request header section too large"));
        }
        if l[0] == b' ' || l[0] == b'\t' {
            return Err(bad(400, "obsolete header line folding"));
        }
        let colon = l
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| bad(400, "header line without ':'"))?;
        let (name, value) = (&l[..colon], &l[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(bad(400, "malformed header name"));
        }
        let value = String::from_utf8_lossy(value)
            .trim_matches([' ', '\t'])
            .to_string();
        headers.push((String::from_utf8_lossy(name).into_owned(), value));
    }
    Ok(Some(Head {
        method: method.to_string(),
        target: target.to_string(),
        minor,
        headers,
    }))
}

/// Append exactly `n` more bytes to `body`.
async fn read_exact_into<R: AsyncBufRead + Unpin>(
    r: &mut R,
    n: u64,
    body: &mut Vec<u8>,
) -> Result<(), HttpError> {
    if body.len() as u64 + n > MAX_BODY {
        return Err(bad(
            413,
            format!("request body larger than {MAX_BODY} bytes"),
        ));
    }
    let got = r
        .take(n)
        .read_to_end(body)
        .await
        .map_err(|_| HttpError::Io)?;
    if (got as u64) < n {
        Err(HttpError::Closed)
    } else {
        Ok(())
    }
}

/// Read the request body framed by `Transfer-Encoding: chunked` or `Content-Length`.
pub(crate) async fn read_body<R: AsyncBufRead + Unpin>(
    r: &mut R,
    head: &Head,
) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    let te = head.header_list("transfer-encoding");
    if !te.trim().is_empty() {
        let codings: Vec<&str> = te
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        if codings.last() != Some(&"chunked")
            || codings.iter().any(|c| *c != "chunked" && *c != "identity")
        {
            return Err(bad(400, format!("unsupported Transfer-Encoding: {te}")));
        }
        loop {
            let line = read_line(r, MAX_LINE, LineKind::Field)
                .await?
                .ok_or(HttpError::Closed)?;
            let line = String::from_utf8_lossy(&line).into_owned();
            let size_str = line.split(';').next().unwrap_or("").trim();
            let size =
                u64::from_str_radix(size_str, 16).map_err(|_| bad(400, "malformed chunk size"))?;
            if size == 0 {
                // trailer section, up to the empty line
                let mut trailers = 0;
                loop {
                    let t = read_line(r, MAX_LINE, LineKind::Field)
                        .await?
                        .ok_or(HttpError::Closed)?;
                    if t.is_empty() {
                        break;
                    }
                    trailers += 1;
                    if trailers > MAX_HEADERS {
                        return Err(bad(431, "too many trailer lines"));
                    }
                }
                return Ok(body);
            }
            read_exact_into(r, size, &mut body).await?;
            let end = read_line(r, MAX_LINE, LineKind::Field)
                .await?
                .ok_or(HttpError::Closed)?;
            if !end.is_empty() {
                return Err(bad(400, "chunk data not followed by CRLF"));
            }
        }
    }
    let lengths: Vec<&str> = head
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect();
    let Some(first) = lengths.first() else {
        return Ok(body);
    };
    if lengths.iter().any(|l| l != first) {
        return Err(bad(400, "conflicting Content-Length headers"));
    }
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(400, "malformed Content-Length"));
    }
    let n: u64 = first
        .parse()
        .map_err(|_| bad(413, "Content-Length too large"))?;
    read_exact_into(r, n, &mut body).await?;
    Ok(body)
}

/// Standard reason phrase of a status code (empty when unknown, like Python's server).
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// `(days since the epoch, year, month, day, seconds into the day)` of `t` (UTC).
fn civil(t: SystemTime) -> (i64, i64, i64, i64, u64) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (days, year, month, day, rem)
}

/// An RFC 3339 UTC time (`2025-01-01T00:00:00Z`), as in `anthropic-ratelimit-*-reset`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let (_, year, month, day, rem) = civil(t);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`) for `now`.
pub(crate) fn http_date(now: SystemTime) -> String {
    let (days, year, month, day, rem) = civil(now);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WD[days.rem_euclid(7) as usize],
        day,
        MON[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A response head: status line, `Server`, `Date`, the given headers, `Connection: close`
/// when `close`, and the blank line.
pub(crate) fn response_head(status: u16, headers: &[(&str, String)], close: bool) -> Vec<u8> {
    let mut s = format!(
        "HTTP/1.1 {status} {}\r\nServer: mock-anthropic/1.0\r\nDate: {}\r\n",
        reason(status),
        http_date(SystemTime::now())
    );
    for (k, v) in headers {
        s.push_str(k);
        s.push_str(": ");
        s.push_str(v);
        s.push_str("\r\n");
    }
    if close {
        s.push_str("Connection: close\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn parse(raw: &[u8]) -> Result<Option<(Head, Vec<u8>)>, HttpError> {
        let mut r = tokio::io::BufReader::new(raw);
        match read_head(&mut r).await? {
            None => Ok(None),
            Some(h) => {
                let b = read_body(&mut r, &h).await?;
                Ok(Some((h, b)))
            }
        }
    }

    #[test]
    fn parses_requests() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (h, b) = parse(b"POST /v1/messages?beta=true HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
                .await
                .expect("ok")
                .expect("some");
            assert_eq!((h.method.as_str(), h.path(), b.as_slice()), ("POST", "/v1/messages", &b"abc"[..]));
            assert!(h.keep_alive());
            let (_, b) = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n")
                .await
                .expect("ok")
                .expect("some");
            assert_eq!(b, b"abcde");
            assert!(parse(b"").await.expect("ok").is_none());
            for junk in [
                &b"GARBAGE\r\n\r\n"[..],
                b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
                b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"GET / HTTP/1.1\r\n bad fold\r\n\r\n",
                b"G T / HTTP/1.1\r\n\r\n",
                b"\x00\xff no line end",
                b"GET / HTTP/1.1\r\nX: a\x01b",
            ] {
                assert!(matches!(parse(junk).await, Err(HttpError::Bad(..))), "{junk:?}");
            }
        });
    }

    #[test]
    fn formats_dates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(784_111_777)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(784_111_777)),
            "1994-11-06T08:49:37Z"
        );
    }
}

//! The status page behind a token. A browser cannot put a bearer token on a plain
//! navigation, so (unless `--http-no-auth`) an unauthenticated `GET /` answers 401 with a form that
//! posts the token to `/login`. The right token gets a cookie (`HttpOnly`, `SameSite=Strict`)
//! holding a key made at start, never the token itself; the cookie opens only the page's
//! own reads (`/`, `/status.json`, `/transcripts/*`), never `/mcp` or `/metrics`, so a
//! cross-site request can use it for nothing that acts. The key changes at every restart.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The cookie's name.
pub const COOKIE: &str = "claude_pool_page";

/// A fresh key for the page's cookie: 244 random bits.
pub fn page_key() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Whether `path` is one of the page's reads, which the cookie opens.
pub fn page_path(path: &str) -> bool {
    path == "/" || path == "/status.json" || path.starts_with("/transcripts/")
}

/// The page's cookie value in `headers`, if any.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// The 401 a browser gets: a form asking for the token.
pub fn form(status: StatusCode, note: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>claude-pool: sign in</title>\
<style>body{{font:16px system-ui,sans-serif;margin:3em auto;max-width:28em}}input,button{{font:inherit;padding:.4em}}\
:focus{{outline:3px solid #1a5fb4}}</style></head><body><main><h1>claude-pool</h1>\
<p role=\"status\">{note}</p>\
<form method=\"post\" action=\"/login\"><label for=\"token\">Token (the first line of the server's <code>http-token</code> file, or the one it was given)</label><br>\
<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus> \
<button type=\"submit\">Open the status page</button></form></main></body></html>"
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::WWW_AUTHENTICATE, "Bearer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
            ),
        ],
        body,
    )
        .into_response()
}

/// The token of a `application/x-www-form-urlencoded` body, decoded.
pub fn token_of(body: &Bytes) -> Option<Vec<u8>> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .and_then(|(_, v)| percent_decode(v))
}

fn percent_decode(v: &str) -> Option<Vec<u8>> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

/// The answer to the right token: the cookie, and back to the page.
pub fn signed_in(key: &str) -> Response {
    let cookie = format!("{COOKIE}={key}; HttpOnly; SameSite=Strict; Path=/");
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_a_form_body_with_its_escapes() {
        let body = Bytes::from_static(b"x=1&token=a%2Bb+c%25&y=2");
        assert_eq!(token_of(&body).as_deref(), Some(&b"a+b c%"[..]));
        assert_eq!(token_of(&Bytes::from_static(b"token=%zz")), None);
        assert_eq!(token_of(&Bytes::from_static(b"other=1")), None);
    }

    #[test]
    fn the_cookie_is_found_among_others_and_only_page_reads_take_it() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; claude_pool_page=k3y; b=2"),
        );
        assert_eq!(cookie(&h), Some("k3y"));
        assert!(page_path("/") && page_path("/status.json") && page_path("/transcripts/t-1"));
        assert!(!page_path("/mcp") && !page_path("/metrics") && !page_path("/login"));
    }
}

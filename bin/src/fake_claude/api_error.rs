//! What the real CLI 2.1.329 reports when the API answers a `/v1/messages` request with an
//! HTTP error status, as measured against the mock (`MOCK_STATUS:<code>`, whose error body is
//! `{"type": "error", "error": {"type": <type>, "message": "mock <code> <type>"}}`) with
//! `CLAUDE_CODE_MAX_RETRIES=0`.

use crate::sys;

/// One API error as the CLI reports it.
#[derive(Debug)]
pub struct ApiError {
    /// The text of the synthetic assistant message and of the result.
    pub text: String,
    /// The assistant event's `error` field.
    pub category: &'static str,
    /// `api_error_status` (none for a 2xx status: the CLI sees a malformed response there).
    pub status: Option<i64>,
    /// `api_error_type` (absent when `status` is none).
    pub etype: Option<&'static str>,
    /// The result's `terminal_reason`.
    pub terminal: &'static str,
}

/// The mock's Anthropic error `type` for an HTTP status.
pub fn err_type(status: i64) -> &'static str {
    match status {
        400 | 415 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// `MOCK_STATUS:<n>` as the mock applies it: no error below 1, else the status clamped to
/// 200..=999 (a 1xx would read as an interim response).
pub fn mock_status(n: f64) -> Option<i64> {
    (n >= 1.0).then(|| (n.min(1e6) as i64).clamp(200, 999))
}

/// The texts, per status, that the real CLI prints.
pub fn describe(code: i64, model: &str) -> ApiError {
    let etype = err_type(code);
    let detail = format!("{code} mock {code} {etype}");
    let (text, category, terminal) = match code {
        200..=299 => {
            // The error body is not a Message: the CLI retries without streaming, then gives up.
            let body = format!(
                r#"{{"type": "error", "error": {{"type": "{etype}", "message": "mock {code} {etype}"}}}}"#
            );
            let text = format!(
                "API Error: API returned an empty or malformed response (HTTP {code}) \u{2014} check \
                 for a proxy or gateway intercepting the request. Response: content-type json, \
                 body is JSON but not a Message, {} bytes, request-id req_fake_{}, server other. \
                 This was the non-streaming retry of streaming request req_fake_{}, which failed \
                 with: no_events, StreamNoEventsError; 0 stream events received.",
                body.len(),
                sys::rand_hex(64),
                sys::rand_hex(64)
            );
            return ApiError {
                text,
                category: "unknown",
                status: None,
                etype: None,
                terminal: "api_error",
            };
        }
        401 | 403 => (
            format!("Failed to authenticate. API Error: {detail}"),
            "authentication_failed",
            "api_error",
        ),
        404 => (
            format!(
                "There's an issue with the selected model ({model}). It may not exist or you may \
                 not have access to it.{}",
                if model_flag_hint() {
                    " Run --model to pick a different model."
                } else {
                    ""
                }
            ),
            "model_not_found",
            "api_error",
        ),
        413 => (
            "Request too large (max 32MB). Accumulated images and attachments in the \
             conversation pushed the request over the limit. Remove older images or compact the \
             conversation."
                .to_string(),
            "invalid_request",
            "image_error",
        ),
        429 => (
            format!("API Error: Request rejected (429) \u{b7} mock {code} {etype}"),
            "rate_limit",
            "api_error",
        ),
        500.. => (
            format!(
                "API Error: {detail}. This is a server-side issue, usually temporary \u{2014} try \
                 again in a moment.{}",
                persist_hint()
            ),
            "server_error",
            "api_error",
        ),
        _ => (format!("API Error: {detail}"), "unknown", "api_error"),
    };
    ApiError {
        text,
        category,
        status: Some(code),
        etype: Some(etype),
        terminal,
    }
}

/// Whether the 404 text ends with "Run --model to pick a different model.": only for the
/// CLI's own entrypoints (`CLAUDE_CODE_ENTRYPOINT` unset, `cli`, `sdk-cli`,
/// `claude-code-github-action`), not for SDKs or desktop apps.
fn model_flag_hint() -> bool {
    let ep = std::env::var("CLAUDE_CODE_ENTRYPOINT").unwrap_or_default();
    matches!(
        ep.as_str(),
        "" | "cli" | "sdk-cli" | "claude-code-github-action"
    )
}

/// The last sentence of a 5xx text: the status page for the first-party API
/// (`ANTHROPIC_BASE_URL` unset or empty, or its host `api.anthropic.com`), else the gateway's
/// host (`host[:port]` of the URL, the default port omitted; the raw value if it is no URL).
pub fn persist_hint() -> String {
    let assume_first_party =
        std::env::var_os("_CLAUDE_CODE_ASSUME_FIRST_PARTY_BASE_URL").is_some_and(|v| !v.is_empty());
    let base = std::env::var("ANTHROPIC_BASE_URL").unwrap_or_default();
    let host = url_host(&base);
    if assume_first_party || base.is_empty() || host.as_deref() == Some("api.anthropic.com") {
        return " If it persists, check https://status.claude.com.".into();
    }
    let shown = host.filter(|h| !h.is_empty()).unwrap_or(base);
    format!(" If it persists, check your inference gateway ({shown}).")
}

/// The `host` of a URL as JavaScript's `URL.parse(s)?.host` gives it (`None`: not a URL).
/// Covers what base URLs look like: scheme, userinfo, host, port (default ports of special
/// schemes dropped, leading zeros removed), IPv6 literals; no IDNA or IPv4 shorthand.
pub fn url_host(s: &str) -> Option<String> {
    let s: String = s
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let (scheme, rest) = s.split_once(':')?;
    let mut chars = scheme.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "ftp" => Some(21),
        _ => None,
    };
    let special = default_port.is_some() || scheme == "file";
    let authority = if scheme == "file" {
        match rest.strip_prefix("//") {
            Some(rest) => rest.split(['/', '\\', '?', '#']).next().unwrap_or(""),
            None => "",
        }
    } else if special {
        let rest = rest.trim_start_matches(['/', '\\']);
        rest.split(['/', '\\', '?', '#']).next().unwrap_or("")
    } else if let Some(rest) = rest.strip_prefix("//") {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    } else {
        return Some(String::new()); // an opaque path: no host
    };
    let hostport = match authority.rfind('@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    let (host, port) = if hostport.starts_with('[') {
        let end = hostport.find(']')?;
        let (h, tail) = hostport.split_at(end + 1);
        match tail {
            "" => (h, None),
            t => (h, Some(t.strip_prefix(':')?)),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if scheme == "file" {
        return Some(host.to_ascii_lowercase()).filter(|_| port.is_none());
    }
    if special && host.is_empty() {
        return None;
    }
    let host = if special {
        host.to_ascii_lowercase()
    } else {
        host.to_string()
    };
    let port = match port.filter(|p| !p.is_empty()) {
        None => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
            let digits = p.trim_start_matches('0');
            let n: u32 = digits.parse().unwrap_or(0);
            if digits.len() > 5 || n > 65_535 {
                return None;
            }
            (Some(n) != default_port).then_some(n)
        }
        Some(_) => return None,
    };
    Some(match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_like_javascript_url() {
        // Expected values from node's `URL.parse(s)?.host`.
        let cases: &[(&str, Option<&str>)] = &[
            ("http://127.0.0.1:38849", Some("127.0.0.1:38849")),
            ("http://LOCALHOST:38849/", Some("localhost:38849")),
            ("http://user:pw@127.0.0.1:38849", Some("127.0.0.1:38849")),
            ("http://127.0.0.1:038849", Some("127.0.0.1:38849")),
            ("http://127.0.0.1:80", Some("127.0.0.1")),
            ("HTTP://127.0.0.1:80/", Some("127.0.0.1")),
            (
                "https://api.anthropic.com:443/v1",
                Some("api.anthropic.com"),
            ),
            ("https://gw.example:8443?x=1", Some("gw.example:8443")),
            ("http://[::1]:9000/", Some("[::1]:9000")),
            ("  http://h:1  ", Some("h:1")),
            ("localhost:8080", Some("")),
            ("foo://Bar:12/x", Some("Bar:12")),
            ("127.0.0.1:8080", None),
            ("http://h:99999", None),
            ("http://h:12a", None),
            ("http://", None),
            ("not a url", None),
            ("", None),
            ("http://h:000000080", Some("h")),
            ("file:///x", Some("")),
            ("file://Host/x", Some("host")),
            ("http:\\\\h:5\\x", Some("h:5")),
            ("http:h:7", Some("h:7")),
        ];
        for (input, want) in cases {
            assert_eq!(url_host(input).as_deref(), *want, "{input:?}");
        }
    }

    #[test]
    fn texts_per_status() {
        assert_eq!(describe(300, "m").text, "API Error: 300 mock 300 api_error");
        let e = describe(429, "m");
        assert_eq!(
            e.text,
            "API Error: Request rejected (429) \u{b7} mock 429 rate_limit_error"
        );
        assert_eq!(
            (e.category, e.status, e.etype),
            ("rate_limit", Some(429), Some("rate_limit_error"))
        );
        let e = describe(200, "m");
        assert!(
            e.text.contains("(HTTP 200)") && e.text.contains(", 82 bytes,"),
            "{}",
            e.text
        );
        assert_eq!((e.status, e.etype), (None, None));
        assert_eq!(describe(413, "m").terminal, "image_error");
        assert_eq!(mock_status(0.5), None);
        assert_eq!(mock_status(1.0), Some(200));
        assert_eq!(mock_status(529.9), Some(529));
        assert_eq!(mock_status(12345.0), Some(999));
    }
}

//! The guard every request passes before a handler sees it: `Host` and `Origin` against
//! the loopback names and `--allowed-host`, the bearer token (the main token or a depth
//! token, compared in constant time) and the depth it sets, wrong tokens limited per peer,
//! and the cap on open MCP sessions.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use super::failures::{self, FailureLimit};
use super::{listen, login, page};
use crate::credentials::{Credentials, same};
use crate::mcp::DEPTH_HEADER;

/// What every request passes through before a handler sees it.
#[derive(Clone)]
pub(super) struct Guard {
    /// The tokens; `None` with `--http-no-auth`.
    pub(super) credentials: Option<Arc<Credentials>>,
    /// Accepted `Host` values (and `Origin` hosts).
    pub(super) hosts: Arc<Vec<String>>,
    /// The listening port, which a same-site `Origin` carries.
    pub(super) port: u16,
    /// The session manager and the most sessions it may hold.
    pub(super) sessions: Option<(Arc<LocalSessionManager>, usize)>,
    /// What the page's cookie holds ([`login`]).
    pub(super) page_key: Arc<str>,
    /// What the page's answers to approval requests carry ([`page::CSRF_HEADER`]).
    pub(super) csrf: Arc<str>,
    /// Wrong tokens per peer address.
    pub(super) failures: Arc<failures::Failures>,
}

/// What a request's `Authorization` says.
#[derive(Debug, PartialEq, Eq)]
enum Auth {
    /// Authentication is off (`--http-no-auth`).
    Off,
    /// A token of this server, standing for this depth.
    Depth(u32),
    /// No bearer token at all.
    Missing,
    /// A bearer token this server never issued.
    Wrong,
}

/// The hosts every server answers to, with and without its port.
pub(super) fn loopback_hosts(port: u16, extra: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]", "::1"]
        .into_iter()
        .map(String::from)
        .collect();
    hosts.extend(extra.iter().cloned());
    let with_port: Vec<String> = hosts.iter().map(|h| format!("{h}:{port}")).collect();
    hosts.extend(with_port);
    hosts
}

pub(super) fn refuse(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

impl Guard {
    fn host_ok(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    fn origin_ok(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true; // not a browser
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let Some(rest) = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
        else {
            return false;
        };
        let host = rest.trim_end_matches('/');
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) && {
            // An origin on another port of this host is another site.
            host.rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().ok() == Some(self.port))
        }
    }

    fn auth(&self, headers: &HeaderMap) -> Auth {
        let Some(credentials) = &self.credentials else {
            return Auth::Off;
        };
        let Some(got) = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
        else {
            return Auth::Missing;
        };
        match got.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                match credentials.depth_of(token.trim().as_bytes()) {
                    Some(depth) => Auth::Depth(depth),
                    None => Auth::Wrong,
                }
            }
            _ => Auth::Missing,
        }
    }
}

/// Sets the request's depth header to what its token says, unless the header says more.
fn set_depth(headers: &mut HeaderMap, depth: u32) {
    let claimed = headers
        .get(DEPTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok());
    if claimed.is_none_or(|c| c < depth) {
        headers.insert(DEPTH_HEADER, axum::http::HeaderValue::from(depth));
    }
}

/// The 429 an address gets once it has failed too often.
pub(super) fn too_many_failures(limit: FailureLimit) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (header::RETRY_AFTER, limit.block.as_secs().max(1).to_string()),
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
        ],
        "Too Many Requests: too many wrong tokens from this address; wait and retry with the right one\n",
    )
        .into_response()
}

/// DNS-rebinding protection and authentication, before anything else sees the request.
pub(super) async fn guard(State(g): State<Guard>, mut req: Request, next: Next) -> Response {
    if !g.host_ok(req.headers()) {
        tracing::warn!("refused a request with a foreign Host (403)");
        return refuse(
            StatusCode::FORBIDDEN,
            "Forbidden: the Host header is not allowed\n",
        );
    }
    if !g.origin_ok(req.headers()) {
        tracing::warn!("refused a request with a foreign Origin (403)");
        return refuse(
            StatusCode::FORBIDDEN,
            "Forbidden: the Origin is not allowed\n",
        );
    }
    let get = req.method() == axum::http::Method::GET;
    if get && req.uri().path() == "/health" {
        return next.run(req).await; // liveness is no secret
    }
    let auth = g.auth(req.headers());
    // The page's one action, answering an approval request: a browser's cookie (or a
    // server without a token) opens it only with the page's CSRF value, which only an
    // authenticated read of `status.json` gives and no other site can put in a header.
    let answering = req.method() == axum::http::Method::POST
        && req.uri().path().starts_with(page::ANSWER_PREFIX);
    if answering && !matches!(auth, Auth::Depth(_)) {
        let cookie_ok = auth == Auth::Off
            || login::cookie(req.headers())
                .is_some_and(|c| same(c.as_bytes(), g.page_key.as_bytes()));
        let csrf_ok = req
            .headers()
            .get(page::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| same(v.as_bytes(), g.csrf.as_bytes()));
        if cookie_ok && csrf_ok {
            return next.run(req).await;
        }
        if cookie_ok {
            tracing::warn!("refused an approval answer without the page's CSRF value (403)");
            return refuse(
                StatusCode::FORBIDDEN,
                "Forbidden: an answer from the page needs its CSRF value\n",
            );
        }
    }
    if let Auth::Depth(depth) = auth {
        set_depth(req.headers_mut(), depth);
    } else if auth != Auth::Off {
        let path = req.uri().path();
        if path == "/login" && req.method() == axum::http::Method::POST {
            return next.run(req).await; // where the token is presented
        }
        if get
            && login::page_path(path)
            && login::cookie(req.headers())
                .is_some_and(|c| same(c.as_bytes(), g.page_key.as_bytes()))
        {
            return next.run(req).await;
        }
        if auth == Auth::Wrong {
            let peer = req.extensions().get::<listen::Peer>().map(|p| p.0.ip());
            if let Some(ip) = peer {
                let now = std::time::Instant::now();
                if g.failures.blocked(ip, now) {
                    return too_many_failures(g.failures.limit());
                }
                tracing::warn!(peer = %ip, path, "refused a request with a wrong bearer token (401)");
                if g.failures.failed(ip, now) {
                    tracing::warn!(peer = %ip, "too many wrong tokens from one address: 429 for a while");
                    return too_many_failures(g.failures.limit());
                }
            }
        }
        if get && path == "/" {
            return login::form(StatusCode::UNAUTHORIZED, "This pool needs its token.");
        }
        return (
            StatusCode::UNAUTHORIZED,
            [
                (header::WWW_AUTHENTICATE, "Bearer"),
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            ],
            "Unauthorized: send Authorization: Bearer <token>\n",
        )
            .into_response();
    }
    if let Some((manager, max)) = &g.sessions
        && req.method() == axum::http::Method::POST
        && !req.headers().contains_key("mcp-session-id")
        && manager.sessions.read().await.len() >= *max
    {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: too many MCP sessions are open (--http-max-sessions); close one or retry later\n",
        );
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(token: Option<&str>) -> Guard {
        Guard {
            credentials: token.map(|t| Arc::new(Credentials::new(t, 0))),
            hosts: Arc::new(loopback_hosts(3101, &[])),
            port: 3101,
            sessions: None,
            page_key: Arc::from("k"),
            csrf: Arc::from("c"),
            failures: Arc::default(),
        }
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn only_loopback_hosts_and_their_origins_pass() {
        let g = guard(None);
        assert!(g.host_ok(&headers(&[(header::HOST, "127.0.0.1:3101")])));
        assert!(g.host_ok(&headers(&[(header::HOST, "localhost")])));
        assert!(!g.host_ok(&headers(&[(header::HOST, "evil.example")])));
        assert!(!g.host_ok(&headers(&[(header::HOST, "evil.example:3101")])));
        assert!(!g.host_ok(&HeaderMap::new()));
        assert!(g.origin_ok(&HeaderMap::new()));
        assert!(g.origin_ok(&headers(&[(header::ORIGIN, "http://localhost:3101")])));
        assert!(!g.origin_ok(&headers(&[(header::ORIGIN, "http://evil.example")])));
        assert!(!g.origin_ok(&headers(&[(header::ORIGIN, "http://localhost:8080")])));
        assert!(!g.origin_ok(&headers(&[(header::ORIGIN, "null")])));
    }

    #[test]
    fn a_token_is_required_with_the_bearer_scheme_and_compared_whole() {
        let g = guard(Some("s3cret"));
        let auth = |v: &str| g.auth(&headers(&[(header::AUTHORIZATION, v)]));
        assert_eq!(auth("Bearer s3cret"), Auth::Depth(0));
        assert_eq!(auth("bearer s3cret"), Auth::Depth(0));
        assert_eq!(g.auth(&HeaderMap::new()), Auth::Missing);
        assert_eq!(auth("Bearer s3cre"), Auth::Wrong);
        assert_eq!(auth("Bearer s3cretX"), Auth::Wrong);
        assert_eq!(auth("s3cret"), Auth::Missing);
        assert_eq!(auth("Basic s3cret"), Auth::Missing);
        assert_eq!(guard(None).auth(&HeaderMap::new()), Auth::Off);
    }

    #[test]
    fn a_depth_token_sets_its_depth_and_a_header_may_only_raise_it() {
        let g = guard(Some("s3cret"));
        let Some(credentials) = g.credentials.clone() else {
            panic!("the guard has no credentials");
        };
        let two = credentials.mint(2).expect("a depth token");
        let bearer = format!("Bearer {two}");
        let auth = g.auth(&headers(&[(header::AUTHORIZATION, bearer.as_str())]));
        assert_eq!(auth, Auth::Depth(2));
        for (claimed, want) in [
            (None, "2"),
            (Some("0"), "2"),
            (Some("1"), "2"),
            (Some("5"), "5"),
            (Some("x"), "2"),
        ] {
            let mut h = HeaderMap::new();
            if let Some(c) = claimed {
                h.insert(DEPTH_HEADER, c.parse().expect("header value"));
            }
            set_depth(&mut h, 2);
            assert_eq!(
                h.get(DEPTH_HEADER).and_then(|v| v.to_str().ok()),
                Some(want),
                "claimed {claimed:?}"
            );
        }
    }
}

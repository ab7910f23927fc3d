//! MCP over Streamable HTTP, through rmcp's own server (`/mcp`), `GET /health` and
//! `GET /metrics` ([`crate::metrics`]), and the live status page `GET /` ([`page`]).
//!
//! Safe by default: the listener is whatever the binary bound (loopback unless told
//! otherwise, and a non-loopback bind needs a token); every request's `Host` must be a
//! loopback name or one of the configured hosts, and a present `Origin` must match one of
//! them, else 403 before any MCP processing; with a token, every request needs
//! `Authorization: Bearer <token>` (compared in constant time, never logged), else 401.
//! Bodies are bounded (413), and so are open sessions (503); a session with no request open
//! for `--http-session-idle` (5 minutes) is closed ([`sessions`]), never one under a call. A call that answers at once gets its answer as one
//! JSON body rather than an event stream ([`oneshot`]). Each client gets its own MCP session; they all share the pool,
//! and one client's long `pool_run` never delays another's calls.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

mod inflight;
mod legacy_tasks;
mod login;
mod oneshot;
mod page;
mod sessions;

use crate::mcp::PoolServer;
use crate::metrics::Metrics;
use crate::pool::Pool;
use inflight::InFlight;

/// The largest request body accepted (a 1.5 MB prompt fits several times).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How long a graceful shutdown waits for the MCP calls in flight to answer.
pub const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How the HTTP front-end serves.
#[derive(Clone)]
pub struct HttpOptions {
    /// The bound listener.
    pub listener: Arc<std::net::TcpListener>,
    /// Required as `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Host names accepted besides the loopback ones (for a non-loopback bind).
    pub allowed_hosts: Vec<String>,
    /// The most MCP sessions open at once; a client opening one more gets 503.
    pub max_sessions: usize,
    /// A session with no request open for this long is closed.
    pub session_idle: std::time::Duration,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: say only whether there is one.
        f.debug_struct("HttpOptions")
            .field("listener", &self.listener.local_addr().ok())
            .field("token", &self.token.is_some())
            .field("allowed_hosts", &self.allowed_hosts)
            .field("max_sessions", &self.max_sessions)
            .field("session_idle", &self.session_idle)
            .finish()
    }
}

#[derive(Clone)]
struct Guard {
    token: Option<Arc<[u8]>>,
    hosts: Arc<Vec<String>>,
    port: u16,
    sessions: Option<(Arc<LocalSessionManager>, usize)>,
    /// What the page's cookie holds ([`login`]).
    page_key: Arc<str>,
}

/// The hosts every server answers to, with and without its port.
fn loopback_hosts(port: u16, extra: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]", "::1"]
        .into_iter()
        .map(String::from)
        .collect();
    hosts.extend(extra.iter().cloned());
    let with_port: Vec<String> = hosts.iter().map(|h| format!("{h}:{port}")).collect();
    hosts.extend(with_port);
    hosts
}

/// Equal without revealing where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

fn refuse(status: StatusCode, text: &'static str) -> Response {
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

    fn token_ok(&self, headers: &HeaderMap) -> bool {
        let Some(want) = &self.token else {
            return true;
        };
        let Some(got) = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
        else {
            return false;
        };
        match got.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                same(token.trim().as_bytes(), want)
            }
            _ => false,
        }
    }
}

/// DNS-rebinding protection and authentication, before anything else sees the request.
async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
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
    if !g.token_ok(req.headers()) {
        let path = req.uri().path();
        let get = req.method() == axum::http::Method::GET;
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
    next.run(req).await
}

async fn not_found() -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        "Not found: the pool serves /, /mcp, /health and /metrics\n",
    )
}

#[derive(Clone)]
struct App {
    pool: Pool,
    metrics: Arc<Metrics>,
    /// The token, and the key its cookie holds.
    login: Option<(Arc<[u8]>, Arc<str>)>,
}

/// `POST /login`: the page's form presents the token; the right one gets the cookie.
async fn sign_in(State(app): State<App>, body: axum::body::Bytes) -> Response {
    let Some((want, key)) = &app.login else {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    };
    match login::token_of(&body) {
        Some(got) if same(&got, want) => login::signed_in(key),
        _ => login::form(
            StatusCode::UNAUTHORIZED,
            "That is not the token this server was started with.",
        ),
    }
}

/// Counts every response by status (refusals included).
async fn count(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    m.http_response(r.status().as_u16());
    r
}

/// `GET /metrics`: the Prometheus text format.
async fn metrics(State(app): State<App>) -> Response {
    match app.pool.status().await {
        Ok(status) => {
            app.metrics.caught_up(&status).await;
            (
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                app.metrics.render(&status),
            )
                .into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// `GET /health`: liveness and readiness, 200 when the pool can take work, else 503.
async fn health(State(App { pool, .. }): State<App>) -> Response {
    let status = match pool.status().await {
        Ok(s) => s,
        Err(e) => {
            let body = serde_json::json!({ "ok": false, "ready": false, "error": e.to_string() });
            return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
        }
    };
    let ready_slots = status
        .slots
        .iter()
        .filter(|s| {
            // A cold slot serves: work wakes it.
            matches!(
                s.status,
                claude_pool_protocol::SlotStatus::Idle | claude_pool_protocol::SlotStatus::Cold
            ) || s.active_tasks > 0
        })
        .count();
    let store = pool.store_health();
    let ready = status.running && status.refusing.is_none() && ready_slots > 0;
    let body = serde_json::json!({
        "ok": status.running,
        "ready": ready,
        "slots_ready": ready_slots,
        "slots_total": status.slots.len(),
        "store": store,
        "budget_usd": status.budget_usd,
        "spend_usd": status.spend_usd,
        "budget_remaining": status.budget_remaining,
        "refusing": status.refusing,
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

/// Serves `pool` on the options' listener until `stop` is cancelled; returns why it ended.
///
/// The front-end runs on a thread of its own with a single-threaded runtime: a call crosses
/// several tasks inside rmcp (the session's worker, its service loop, the handler), and on
/// one thread each of those hand-offs is a queue push rather than a wake-up of another
/// thread, which made a quick call cost twice a bare round trip. The pool's actors stay on
/// the main runtime; a call reaches them by message, as from stdio.
pub async fn serve(pool: Pool, options: HttpOptions, stop: CancellationToken) -> String {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let started = std::thread::Builder::new()
        .name("claude-pool-http".into())
        .spawn(move || {
            let out = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(serve_here(pool, options, stop)),
                Err(e) => format!("cannot start the HTTP front-end's runtime: {e}"),
            };
            let _ = tx.send(out);
        });
    if let Err(e) = started {
        return format!("cannot start the HTTP front-end's thread: {e}");
    }
    rx.await
        .unwrap_or_else(|_| "the HTTP front-end's thread panicked".into())
}

async fn serve_here(pool: Pool, options: HttpOptions, stop: CancellationToken) -> String {
    let listener = match options
        .listener
        .try_clone()
        .and_then(|l| {
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .and_then(tokio::net::TcpListener::from_std)
    {
        Ok(l) => l,
        Err(e) => return format!("cannot use the HTTP listener: {e}"),
    };
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let port = addr.map_or(0, |a| a.port());
    let hosts = loopback_hosts(port, &options.allowed_hosts);
    let mcp_pool = pool.clone();
    // The sessions close only after the calls in flight have answered (see below).
    let sessions_ct = CancellationToken::new();
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts.clone())
        .with_cancellation_token(sessions_ct.clone())
        .with_max_request_body_bytes(MAX_BODY_BYTES)
        .with_json_response(true);
    // rmcp's keep-alive counts only messages and would close a session under a long call;
    // idle sessions are closed by [`sessions::sweep`] instead.
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive = None;
    let manager = Arc::new(manager);
    let activity = Arc::new(sessions::Activity::default());
    tokio::spawn(sessions::sweep(
        activity.clone(),
        manager.clone(),
        options.session_idle,
    ));
    let mcp = StreamableHttpService::new(
        move || Ok(PoolServer::new(mcp_pool.clone())),
        manager.clone(),
        config,
    );
    let token: Option<Arc<[u8]>> = options.token.map(|t| Arc::from(t.into_bytes()));
    let page_key: Arc<str> = Arc::from(login::page_key());
    let g = Guard {
        token: token.clone(),
        hosts: Arc::new(hosts),
        port,
        sessions: Some((manager, options.max_sessions.max(1))),
        page_key: page_key.clone(),
    };
    let metrics = Arc::new(Metrics::start(&pool).await);
    let inflight = InFlight::new();
    let mcp = Router::new()
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(
            (inflight.clone(), activity),
            oneshot::layer,
        ))
        .layer(middleware::from_fn_with_state(
            legacy_tasks::ExtensionSessions::default(),
            legacy_tasks::layer,
        ));
    let app = Router::new()
        .merge(mcp)
        .route("/health", axum::routing::get(health))
        .route("/metrics", axum::routing::get(self::metrics))
        .route("/", axum::routing::get(page::index))
        .route("/login", axum::routing::post(sign_in))
        .route("/status.json", axum::routing::get(page::status))
        .route("/transcripts/{id}", axum::routing::get(page::transcript))
        .fallback(not_found)
        .with_state(App {
            pool,
            metrics: metrics.clone(),
            login: token.map(|t| (t, page_key)),
        })
        .layer(middleware::from_fn_with_state(g, guard))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(metrics, count));
    // Graceful shutdown: on `stop` the listener closes and new MCP requests get 503; the
    // calls in flight answer once the pool has ended their tasks (the shutdown runs
    // alongside); then the sessions close and the server returns.
    let closing = stop.clone();
    tokio::spawn(async move {
        closing.cancelled().await;
        inflight.close();
        let n = inflight.count();
        if n > 0 {
            tracing::info!(
                in_flight = n,
                "waiting for the MCP calls in flight to answer"
            );
        }
        if tokio::time::timeout(SHUTDOWN_WAIT, inflight.drained())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = inflight.count(),
                "MCP calls still in flight after {SHUTDOWN_WAIT:?}; closing their sessions"
            );
        }
        sessions_ct.cancel();
    });
    tracing::info!(addr = ?addr, "serving MCP over HTTP at /mcp");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    match served {
        Ok(()) => "stopped".into(),
        Err(e) => format!("the HTTP server ended: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(token: Option<&str>) -> Guard {
        Guard {
            token: token.map(|t| Arc::from(t.as_bytes())),
            hosts: Arc::new(loopback_hosts(3101, &[])),
            port: 3101,
            sessions: None,
            page_key: Arc::from("k"),
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
        assert!(g.token_ok(&headers(&[(header::AUTHORIZATION, "Bearer s3cret")])));
        assert!(g.token_ok(&headers(&[(header::AUTHORIZATION, "bearer s3cret")])));
        assert!(!g.token_ok(&HeaderMap::new()));
        assert!(!g.token_ok(&headers(&[(header::AUTHORIZATION, "Bearer s3cre")])));
        assert!(!g.token_ok(&headers(&[(header::AUTHORIZATION, "Bearer s3cretX")])));
        assert!(!g.token_ok(&headers(&[(header::AUTHORIZATION, "s3cret")])));
        assert!(!g.token_ok(&headers(&[(header::AUTHORIZATION, "Basic s3cret")])));
        assert!(guard(None).token_ok(&HeaderMap::new()));
    }
}

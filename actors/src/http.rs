//! MCP over Streamable HTTP, through rmcp's own server (`/mcp`), `GET /health` and
//! `GET /metrics` ([`crate::metrics`]), and the live status page `GET /` ([`page`]).
//!
//! Safe by default: the listener is whatever the binary bound (loopback unless told
//! otherwise); every request's `Host` must be a loopback name or one of the configured
//! hosts, and a present `Origin` must match one of them, else 403 before any MCP processing;
//! every request but `GET /health` needs `Authorization: Bearer <token>` — the main token or
//! a depth token ([`crate::credentials`]), compared in constant time, never logged — else 401
//! (the page also takes its cookie, [`login`]); only `--http-no-auth` (loopback only) lifts
//! that ([`guard`]). Wrong tokens are limited per peer address (429, [`failures`]). Connections are
//! bounded, and so are the time a request's headers and body may take ([`listen`]). Bodies
//! are bounded (413), and so are open sessions (503) and event streams per session (429); a
//! session with no request open for `--http-session-idle` (5 minutes) is closed
//! ([`sessions`]), never one under a call, whatever event streams it holds. A call that
//! answers at once gets its answer as one JSON body rather than an event stream
//! ([`oneshot`]); the two reads that need nothing of a session are answered without its
//! handler ([`quick`]). Each client gets its own MCP session; they all share the pool, and one
//! client's long `pool_run` never delays another's calls.
//!
//! The recursion depth of a request is the one its token says (the main token: the
//! server's own); an `x-mcp-depth` header may raise it, never lower it. Without
//! authentication the header alone says it, which is then advisory.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

mod failures;
mod guard;
mod inflight;
mod legacy_tasks;
mod listen;
mod login;
mod oneshot;
mod page;
mod quick;
mod sessions;

pub use failures::FailureLimit;

use crate::credentials::{Credentials, same};
use crate::mcp::PoolServer;
use crate::metrics::Metrics;
use crate::pool::Pool;
use guard::{Guard, guard, loopback_hosts, refuse, too_many_failures};
use inflight::InFlight;

/// The largest request body accepted (a 1.5 MB prompt fits several times).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How long a graceful shutdown waits for the MCP calls in flight to answer.
pub const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Bounds on connections and on how slowly a client may send (see [`listen`]).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// How long a request's headers may take to arrive, counted from when the connection
    /// waits for a request (so also how long a keep-alive connection may idle).
    pub header_timeout: std::time::Duration,
    /// How long a request's body may take to arrive after its headers.
    pub body_timeout: std::time::Duration,
    /// The most connections open at once; one more is closed before it is read.
    pub max_connections: usize,
    /// The most event streams (`GET /mcp`) one session may hold open; one more gets 429.
    pub max_streams_per_session: usize,
    /// Wrong tokens per peer address before 429.
    pub failures: FailureLimit,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(30),
            max_connections: 512,
            max_streams_per_session: 4,
            failures: FailureLimit::default(),
        }
    }
}

/// How the HTTP front-end serves.
#[derive(Clone)]
pub struct HttpOptions {
    /// The bound listener.
    pub listener: Arc<std::net::TcpListener>,
    /// The main token and the depth tokens, one of which every request but `/health` must
    /// present as `Authorization: Bearer <token>`; `None` only with `--http-no-auth`.
    pub credentials: Option<Arc<Credentials>>,
    /// Host names accepted besides the loopback ones (for a non-loopback bind).
    pub allowed_hosts: Vec<String>,
    /// The most MCP sessions open at once; a client opening one more gets 503.
    pub max_sessions: usize,
    /// A session with no request open for this long is closed.
    pub session_idle: std::time::Duration,
    /// Connection and timing bounds.
    pub limits: HttpLimits,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: say only whether there is one.
        f.debug_struct("HttpOptions")
            .field("listener", &self.listener.local_addr().ok())
            .field("credentials", &self.credentials)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("max_sessions", &self.max_sessions)
            .field("session_idle", &self.session_idle)
            .field("limits", &self.limits)
            .finish()
    }
}

async fn not_found() -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        "Not found: the pool serves /, /mcp, /health and /metrics\n",
    )
}

/// What the handlers share.
#[derive(Clone)]
struct App {
    /// The pool served.
    pool: Pool,
    /// The `/metrics` registry.
    metrics: Arc<Metrics>,
    /// The token, and the key its cookie holds.
    login: Option<(Arc<Credentials>, Arc<str>)>,
    /// Wrong tokens per peer address (a wrong login is one).
    failures: Arc<failures::Failures>,
    /// The page's guard against cross-site requests, given in `status.json`.
    csrf: Arc<str>,
}

/// `POST /login`: the page's form presents the token; the right one gets the cookie.
async fn sign_in(
    State(app): State<App>,
    peer: Option<axum::Extension<listen::Peer>>,
    body: axum::body::Bytes,
) -> Response {
    let Some((credentials, key)) = &app.login else {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    };
    let ip = peer.map(|p| p.0.0.ip());
    let now = std::time::Instant::now();
    if ip.is_some_and(|ip| app.failures.blocked(ip, now)) {
        return too_many_failures(app.failures.limit());
    }
    match login::token_of(&body) {
        Some(got) if same(&got, credentials.main()) => login::signed_in(key),
        _ => {
            if let Some(ip) = ip {
                tracing::warn!(peer = %ip, "refused a page login with a wrong token (401)");
                if app.failures.failed(ip, now) {
                    return too_many_failures(app.failures.limit());
                }
            }
            login::form(
                StatusCode::UNAUTHORIZED,
                "That is not the token this server was started with.",
            )
        }
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
            let approvals = app.pool.approval_stats().await.unwrap_or_default();
            (
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                app.metrics.render(&status, &approvals),
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
        "store_path": status.store.as_ref().and_then(|st| st.path.clone()),
        "store_mode": status.store.as_ref().map(|st| st.mode.clone()),
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
    let quick_lane: quick::Lane = (pool.clone(), manager.clone());
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
    let page_key: Arc<str> = Arc::from(login::page_key());
    let csrf: Arc<str> = Arc::from(login::page_key());
    let failures = Arc::new(failures::Failures::new(options.limits.failures));
    let g = Guard {
        credentials: options.credentials.clone(),
        hosts: Arc::new(hosts),
        port,
        sessions: Some((manager, options.max_sessions.max(1))),
        page_key: page_key.clone(),
        csrf: csrf.clone(),
        failures: failures.clone(),
    };
    let metrics = Arc::new(Metrics::start(&pool).await);
    let metrics_of_refusals = metrics.clone();
    let inflight = InFlight::new();
    let mcp = Router::new()
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(quick_lane, quick::layer))
        .layer(middleware::from_fn_with_state(
            (
                inflight.clone(),
                activity,
                options.limits.max_streams_per_session.max(1),
            ),
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
        .route("/approvals/{id}", axum::routing::post(page::answer))
        .fallback(not_found)
        .with_state(App {
            pool,
            metrics: metrics.clone(),
            login: options.credentials.map(|c| (c, page_key)),
            failures,
            csrf,
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
    listen::serve(listener, app, options.limits, metrics_of_refusals, stop).await;
    "stopped".into()
}

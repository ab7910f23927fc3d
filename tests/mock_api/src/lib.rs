//! An offline mock of the Anthropic Messages API, good enough to drive the **real** Claude
//! Code CLI end to end (`ANTHROPIC_BASE_URL=<mock url>`, any `ANTHROPIC_API_KEY`; auth is not
//! checked). A faithful Rust port of the project's reference `mock_anthropic.py`.
//!
//! # Endpoints
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/messages` | a message as JSON, or as SSE over chunked transfer encoding when `"stream": true` |
//! | `POST /v1/messages/count_tokens` | `{"input_tokens": N}` |
//! | `GET /v1/models`, `GET /v1/models/<id>` | a small static model list / that model |
//! | `HEAD` anything | `200` (the CLI's reachability probe) |
//! | `GET /_mock/health` | `{"ok": true}` |
//! | `GET /_mock/requests` | JSON array of logged request summaries (see [`MockServer::requests`]) |
//! | `POST /_mock/config` | update runtime knobs (see [`MockServer::configure`]) |
//! | `POST /_mock/reset` | clear the request log and counters |
//! | `GET /_mock/stats` | the `/v1/messages` counters as JSON (see [`MockServer::stats`]) |
//! | anything else | `404` with an Anthropic-style `not_found_error` body (logged) |
//!
//! HTTP/1.1 with keep-alive (many requests per connection), request bodies framed by
//! `Content-Length` or `Transfer-Encoding: chunked`, `Expect: 100-continue`. Compressed request
//! bodies are not supported: a request with a `Content-Encoding` gets `415`. Malformed HTTP gets
//! `400` (or `413`/`431`/`505`) and the connection is closed. Every connection is served by its
//! own task, so a slow or stalled client never holds up the others.
//!
//! # Replies
//!
//! The reply text is `MOCK: <first 40 chars of the last user text>` (`<system-reminder>` blocks
//! that the CLI injects are skipped). When the last message is a `tool_result`, the reply is
//! `MOCK: tool said: <first 40 chars of the result>`. When the request offers a
//! `StructuredOutput` tool (the CLI's `--json-schema`), the mock calls it with the object of a
//! `MOCK_JSON:<json>` directive, or with an instance sampled from the tool's input schema.
//! Usage numbers are deterministic estimates (~4 characters of JSON per token).
//!
//! Directives, anywhere in the last user text (the first user text carrying a directive when
//! the last one has none):
//!
//! | directive | effect |
//! |---|---|
//! | `MOCK_TEXT:<text to end of line>` | reply with exactly this text |
//! | `MOCK_SLEEP:<seconds>` | wait before answering (timeouts, interrupts, signals) |
//! | `MOCK_STATUS:<code>` | answer with this HTTP error status (not after a tool result) |
//! | `MOCK_USAGE:<in>,<out>[,<cache_read>,<cache_write>]` | report exactly these usage numbers (anywhere in the conversation) |
//! | `MOCK_TOOL:<shell command>` | first answer is a `Bash` tool_use running the command |
//! | `MOCK_STALL:<seconds>` | streaming only: stall this long after `message_start` |
//! | `MOCK_FAIL_FIRST:<n>:<key>` | the first `n` requests carrying `key` get HTTP 500 |
//! | `MOCK_REPLY_MODEL:<id>` | put this id in the reply's `model` field |
//! | `MOCK_JSON:<json>` | the StructuredOutput object (with `--json-schema`) |
//! | `MOCK_CALLS:[{"name":..,"input":{..}},..]` | call these tools one per answer (counting tool results so far), then answer `MOCK: tool results: <every result, whole, joined by " \| ">` — the real CLI as a scripted MCP client |
//! | `MOCK_COUNT` | reply `messages=<messages in the request> users=<user messages with a non-system-reminder text block>` (proves `/clear` starts a fresh conversation) |
//!
//! # Limits
//!
//! Off by default. [`MockServer::set_limits`] (or `POST /_mock/config`, or the binary's flags)
//! makes the mock refuse like the real API: `429 rate_limit_error` beyond
//! [`Limits::max_in_flight`] answers in progress, [`Limits::rpm`] requests or [`Limits::tpm`]
//! tokens per sliding window, or while the subscription window is exhausted
//! ([`Unified::rejected_until`]); `529 overloaded_error` for [`Limits::overloaded_for`]. Refusals
//! carry `retry-after`, `x-should-retry: true` and the `anthropic-ratelimit-*` headers; with
//! [`Limits::unified`] every answer carries the `anthropic-ratelimit-unified-*` headers that the
//! real CLI turns into `rate_limit_event` lines (when it runs with `CLAUDE_CODE_OAUTH_TOKEN`).
//! [`MockServer::stats`] counts what happened ([`Stats`]). See the `limits` module for the
//! order of the gates.
//!
//! # Example
//!
//! ```no_run
//! let mock = mock_anthropic::MockServer::start()?;
//! let scratch = std::env::temp_dir().join("my-test");
//! let out = std::process::Command::new("claude")
//!     .args(["-p", "MOCK_TEXT:hi", "--output-format", "json"])
//!     .env_clear()
//!     .envs(mock_anthropic::hermetic_cli_env(&mock.url(), &scratch))
//!     .stdin(std::process::Stdio::null())
//!     .output()?;
//! assert_eq!(mock.message_requests(), 1);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

mod http;
mod limits;
mod pyjson;
mod reply;
mod server;

pub use limits::{Claim, Limits, Stats, Unified};

use server::Shared;

/// A running mock server on `127.0.0.1`.
///
/// It serves on its own thread with its own single-threaded tokio runtime, so it can be used
/// from synchronous code and from any test runtime alike. Dropping the handle stops the
/// server: the listener closes and every open connection is dropped.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Bind `127.0.0.1` on a free port and start serving.
    pub fn start() -> io::Result<MockServer> {
        Self::bind(0)
    }

    /// Bind `127.0.0.1:<port>` (0 = a free port) and start serving.
    pub fn bind(port: u16) -> io::Result<MockServer> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = oneshot::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("mock-anthropic:{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => server::accept_loop(l, thread_shared, stopped).await,
                        Err(e) => eprintln!("mock-anthropic: cannot register listener: {e}"),
                    }
                });
                // Dropping the runtime here cancels every connection task.
                drop(runtime);
            })?;
        Ok(MockServer {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The base URL to give the CLI as `ANTHROPIC_BASE_URL`: `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound TCP port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The logged request summaries, oldest first, as `GET /_mock/requests` returns them.
    ///
    /// Each record has `n` (1-based sequence number), `ts` (unix seconds), `method`, `path`
    /// (with query), `headers` (lowercased names; secrets redacted), `body_bytes`, then either
    /// `summary` (for bodies with `messages`: `model`, `stream`, `max_tokens`, `n_messages`,
    /// `roles`, `system_chars`, `tools`, `thinking`, `metadata`, `last_user_text`,
    /// `other_keys`) or `body`, plus `status` (and `delay` for `/v1/messages`). With the
    /// `log_bodies` knob on, `full_body` holds the whole parsed request body.
    /// Admin requests (`/_mock/...`) are not logged.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests()
    }

    /// How many `POST /v1/messages` requests were received since start or the last reset
    /// (counted when the request is read, whatever the answer).
    pub fn message_requests(&self) -> usize {
        self.shared.message_requests()
    }

    /// Wait until at least `n` `POST /v1/messages` requests have been received (see
    /// [`MockServer::message_requests`]); `false` if `timeout` passed first.
    ///
    /// Use it to know that a CLI turn is in flight (e.g. before interrupting a `MOCK_SLEEP`
    /// turn) without sleeping. Needs a tokio runtime with timers (any test runtime).
    pub async fn wait_for_message_requests(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.shared.watch_message_requests();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|seen| *seen >= n)).await,
            Ok(Ok(_))
        )
    }

    /// The `/v1/messages` counters since start or the last reset, as `GET /_mock/stats`
    /// returns them (there `rejected` is an object keyed `in_flight`, `rpm`, `tpm`, `unified`,
    /// `other`).
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Wait until the counters satisfy `pred`; the last counters seen either way, `Ok` if
    /// `pred` held before `timeout`, `Err` if not (name the missing event in the assertion).
    ///
    /// Needs a tokio runtime with timers (any test runtime).
    pub async fn wait_for_stats(
        &self,
        pred: impl Fn(&Stats) -> bool,
        timeout: Duration,
    ) -> Result<Stats, Stats> {
        let mut rx = self.shared.watch_stats();
        match tokio::time::timeout(timeout, rx.wait_for(|s| pred(s))).await {
            Ok(Ok(s)) => Ok(*s),
            _ => Err(self.shared.stats()),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.shared.limits()
    }

    /// Replace the limits (all of them; start from [`Limits::default`]). The clock of
    /// [`Limits::overloaded_for`] starts now; the windows keep what they hold.
    pub fn set_limits(&self, limits: Limits) {
        self.shared.set_limits(limits)
    }

    /// Clear the request log and counters (`MOCK_FAIL_FIRST` counters included), like
    /// `POST /_mock/reset`. The runtime knobs of [`MockServer::configure`] are kept.
    pub fn reset(&self) {
        self.shared.reset()
    }

    /// Update runtime knobs, like `POST /_mock/config`, and return the resulting knobs.
    ///
    /// Known keys (others are ignored): `fail_status` (answer `/v1/messages` with this status,
    /// 0 = off), `fail_count` (how many requests fail; -1 = forever), `fail_model` (only fail
    /// requests whose model contains this string), `delay` (seconds before every
    /// `/v1/messages` answer), `retry_after` (`retry-after` header on 429/529), `log_bodies`
    /// (keep whole request bodies in the log as `full_body`). The [`Limits`] too, by field
    /// name: `max_in_flight`, `rpm`, `tpm` (0 or `null` = off), `window` (seconds),
    /// `retry_after_limits` (the limiter's `retry-after` seconds), `overloaded_for` (seconds
    /// from now), `unified` (`null` = off, or an object patching [`Unified`]'s fields by name,
    /// `claim` as `"five_hour"`/`"seven_day"`, plus `rejected_for`: seconds from now).
    pub fn configure(&self, patch: &Value) -> Value {
        self.shared.configure(patch)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The environment that runs the real CLI hermetically against a mock at `mock_url`.
///
/// Meant for `Command::env_clear().envs(hermetic_cli_env(..))`. Holds `PATH` (kept from this
/// process, or a default), `HOME=<scratch>/home`, `TMPDIR` and `CLAUDE_CODE_TMPDIR`
/// `=<scratch>/tmp` (both directories are created), `TERM=dumb`, `LANG=C.UTF-8`,
/// `ANTHROPIC_BASE_URL=<mock_url>`, a dummy `ANTHROPIC_API_KEY`, `DISABLE_TELEMETRY=1`,
/// `DISABLE_AUTOUPDATER=1`, `DISABLE_ERROR_REPORTING=1`,
/// `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1` (then a turn makes exactly one request) and
/// `CLAUDE_CODE_MAX_RETRIES=0` (API errors surface at once instead of ~3 minutes of retries).
/// `CLAUDECODE` / `CLAUDE_CODE_ENTRYPOINT` are deliberately absent (a CLI started under a
/// Claude Code parent refuses to run with them). Running as root with
/// `--dangerously-skip-permissions` / `bypassPermissions` also needs `IS_SANDBOX=1`, which
/// callers add themselves when they want it.
pub fn hermetic_cli_env(mock_url: &str, scratch: &Path) -> Vec<(String, String)> {
    let home = scratch.join("home");
    let tmp = scratch.join("tmp");
    let _ = std::fs::create_dir_all(&home);
    let _ = std::fs::create_dir_all(&tmp);
    let path = std::env::var("PATH")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_string());
    let tmp = tmp.to_string_lossy().into_owned();
    [
        ("PATH", path),
        ("HOME", home.to_string_lossy().into_owned()),
        ("TMPDIR", tmp.clone()),
        ("CLAUDE_CODE_TMPDIR", tmp),
        ("TERM", "dumb".into()),
        ("LANG", "C.UTF-8".into()),
        ("ANTHROPIC_BASE_URL", mock_url.to_string()),
        (
            "ANTHROPIC_API_KEY",
            "sk-ant-api03-mock-anthropic-dummy-key".into(),
        ),
        ("DISABLE_TELEMETRY", "1".into()),
        ("DISABLE_AUTOUPDATER", "1".into()),
        ("DISABLE_ERROR_REPORTING", "1".into()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
        ("CLAUDE_CODE_MAX_RETRIES", "0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// 128 random-enough bits for ids (no `rand` dependency: SipHash with per-call random keys).
pub(crate) fn random_u128() -> u128 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut out = 0u128;
    for half in 0u8..2 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u128(nanos);
        h.write_u8(half);
        out = (out << 64) | u128::from(h.finish());
    }
    out
}

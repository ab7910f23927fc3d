//! The server's log as MCP `notifications/message`, for the sessions that ask
//! (`logging/setLevel`).
//!
//! [`McpLogLayer`] is a `tracing` layer: the binary installs it beside its own log output,
//! and a program embedding the pool adds it to its subscriber ([`layer`]). It
//! sees the pool's own events (targets `claude_pool*`) at the most verbose level any session
//! asked for — nothing at all while none did — and hands each to a process-wide broadcast.
//! Each MCP call runs in an `mcp_call` span naming its session, so an event inside a call
//! belongs to that session.
//!
//! A session that asked gets, at the level it asked or more severe: the events of its own
//! calls, and the pool's own events (slots, tasks, the API's limits) that belong to no
//! call — never another session's calls. Lines are forwarded by one task per session, which
//! ends with the session.

// Logging is the 2025-11-25 revision's; rmcp marks it deprecated for the revision after
// (SEP-2577), which sessions of that revision simply never use.
#![allow(deprecated)]

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam};
use rmcp::service::{Peer, RoleServer};
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The span every MCP call runs in; its `session` field names the session.
pub const CALL_SPAN: &str = "mcp_call";

/// Lines kept for a slow session before it misses some.
const BACKLOG: usize = 1024;

/// One log line, as sessions receive it.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// The session whose call logged it; `None`: the pool's own.
    session: Option<u64>,
    level: Level,
    target: &'static str,
    data: serde_json::Value,
}

struct Hub {
    lines: broadcast::Sender<Arc<LogLine>>,
    /// The most verbose level asked, as `verbosity` (0: nothing asked).
    max: AtomicU8,
    /// Each listening session's verbosity.
    sessions: Mutex<std::collections::HashMap<u64, u8>>,
}

fn hub() -> &'static Hub {
    static HUB: OnceLock<Hub> = OnceLock::new();
    HUB.get_or_init(|| Hub {
        lines: broadcast::channel(BACKLOG).0,
        max: AtomicU8::new(0),
        sessions: Mutex::default(),
    })
}

/// 1 (error) to 5 (trace): larger is more verbose.
fn verbosity(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// How verbose a session asking for `level` wants the log: `notice` reads as info,
/// `critical` and above as error.
fn wanted(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 4,
        LoggingLevel::Info | LoggingLevel::Notice => 3,
        LoggingLevel::Warning => 2,
        _ => 1,
    }
}

fn mcp_level(level: Level) -> LoggingLevel {
    match level {
        Level::ERROR => LoggingLevel::Error,
        Level::WARN => LoggingLevel::Warning,
        Level::INFO => LoggingLevel::Info,
        _ => LoggingLevel::Debug,
    }
}

fn set_max(sessions: &std::collections::HashMap<u64, u8>) {
    let max = sessions.values().copied().max().unwrap_or(0);
    hub().max.store(max, Ordering::Relaxed);
}

/// Whether any session asked for the server's log: its calls' lines must then be told
/// apart by session, which only a session's handler does.
pub fn any_session_listening() -> bool {
    hub().max.load(Ordering::Relaxed) > 0
}

/// A new session id for [`CALL_SPAN`].
pub fn new_session() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A session's subscription: `set` starts (or changes) it; dropping the last clone of the
/// session's handle ends it.
#[derive(Debug, Default)]
pub struct SessionLog {
    forwarder: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl SessionLog {
    /// Session `id` wants the log at `level` and above, sent to `peer`.
    pub fn set(&self, id: u64, level: LoggingLevel, peer: Peer<RoleServer>) {
        let want = wanted(level);
        {
            let mut sessions = hub().sessions.lock().unwrap_or_else(|e| e.into_inner());
            sessions.insert(id, want);
            set_max(&sessions);
        }
        let mut rx = hub().lines.subscribe();
        let task = tokio::spawn(async move {
            let _gone = Leave(id);
            loop {
                let line = match rx.recv().await {
                    Ok(line) => line,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if verbosity(line.level) > want || line.session.is_some_and(|s| s != id) {
                    continue;
                }
                let param =
                    LoggingMessageNotificationParam::new(mcp_level(line.level), line.data.clone())
                        .with_logger(line.target);
                if peer.notify_logging_message(param).await.is_err() {
                    return; // the session is gone
                }
            }
        });
        let mut slot = self.forwarder.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = slot.replace(task) {
            old.abort();
        }
    }
}

impl Drop for SessionLog {
    fn drop(&mut self) {
        if let Some(task) = self
            .forwarder
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// Takes a session's level out of the hub when its forwarder ends.
struct Leave(u64);

impl Drop for Leave {
    fn drop(&mut self) {
        let mut sessions = hub().sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.remove(&self.0);
        set_max(&sessions);
    }
}

/// The session an `mcp_call` span belongs to, kept in its extensions.
struct SessionTag(u64);

/// The `tracing` layer that feeds sessions' logs (see the module docs); [`layer`] gives it
/// with its filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct McpLogLayer;

/// The layer to add to a subscriber beside the log's own output, filtered by itself (the
/// output's filter does not limit it, nor it the output's): `mcp_call` spans, and the
/// pool's events at the most verbose level a session asked for.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let filter = tracing_subscriber::filter::dynamic_filter_fn(|meta, _cx| {
        if meta.is_span() {
            return meta.name() == CALL_SPAN;
        }
        ours(meta) && verbosity(*meta.level()) <= hub().max.load(Ordering::Relaxed)
    })
    // Decided once per callsite where it can be: other crates' spans and events (rmcp
    // opens several per request) never reach this layer, so they cost a call nothing here.
    .with_callsite_filter(|meta| {
        if meta.is_span() {
            if meta.name() == CALL_SPAN {
                Interest::always()
            } else {
                Interest::never()
            }
        } else if ours(meta) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    })
    .with_max_level_hint(tracing_subscriber::filter::LevelFilter::DEBUG);
    McpLogLayer.with_filter(filter)
}

fn ours(meta: &tracing::Metadata<'_>) -> bool {
    meta.target().starts_with("claude_pool")
}

impl<S> Layer<S> for McpLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if attrs.metadata().name() != CALL_SPAN {
            return;
        }
        let mut visitor = SessionVisitor(None);
        attrs.record(&mut visitor);
        if let (Some(session), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().insert(SessionTag(session));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !ours(meta) || verbosity(*meta.level()) > hub().max.load(Ordering::Relaxed) {
            return;
        }
        let session = ctx.event_scope(event).and_then(|scope| {
            scope
                .from_root()
                .find_map(|span| span.extensions().get::<SessionTag>().map(|t| t.0))
        });
        let mut fields = FieldsVisitor::default();
        event.record(&mut fields);
        let _ = hub().lines.send(Arc::new(LogLine {
            session,
            level: *meta.level(),
            target: meta.target(),
            data: serde_json::Value::Object(fields.0),
        }));
    }
}

struct SessionVisitor(Option<u64>);

impl Visit for SessionVisitor {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "session" {
            self.0 = Some(value);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

/// An event's fields as JSON: `message` and every other field by name.
#[derive(Default)]
struct FieldsVisitor(serde_json::Map<String, serde_json::Value>);

impl Visit for FieldsVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

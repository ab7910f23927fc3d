//! `GET /metrics` in the Prometheus text format, families prefixed `claude_pool_`.
//!
//! Two sources. What `pool_status` counts (tasks by state, the queue, slots by status) is
//! read from the pool at each scrape, so those figures agree with `pool_status` exactly.
//! What happens over time (task durations and queue waits, spend and tokens by model and
//! project, API errors, slot restarts by cause, HTTP requests by status) is recorded as it
//! happens, by a task following the pool's events and by the HTTP layer.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use claude_pool_protocol::TaskStatus;
use claude_pool_protocol::tools::{PoolStatusReport, TaskKind, TaskReport};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::broadcast::error::RecvError;

use crate::events::PoolEvent;
use crate::pool::Pool;
use crate::restart::FailureKind;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn seconds_histogram() -> Histogram {
    // 10 ms to ~1.4 h.
    Histogram::new(exponential_buckets(0.01, 2.0, 20))
}

/// What is recorded as it happens. Cheap to clone (every family shares its values).
#[derive(Clone)]
pub struct Metrics {
    duration: Histogram,
    queue_wait: Histogram,
    spend: Family<Labels, Counter<f64, AtomicU64>>,
    tokens: Family<Labels, Counter>,
    api_errors: Counter,
    restarts: Family<Labels, Counter>,
    http: Family<Labels, Counter>,
    /// Connections closed unread because `--http-max-connections` were open.
    refused_connections: Counter,
    /// Terminal tasks recorded (plus those that ended before recording began), so a scrape
    /// can wait until every task `pool_status` counts has been recorded.
    seen: Arc<AtomicU64>,
    recorded: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Starts recording `pool`'s events (the follower ends with the pool's event bus).
    pub async fn start(pool: &Pool) -> Metrics {
        let mut events = pool.events();
        let before = pool.status().await.map(|s| terminal(&s)).unwrap_or(0);
        let m = Metrics {
            seen: Arc::new(AtomicU64::new(before)),
            recorded: Arc::new(tokio::sync::Notify::new()),
            duration: seconds_histogram(),
            queue_wait: seconds_histogram(),
            spend: Family::default(),
            tokens: Family::default(),
            api_errors: Counter::default(),
            restarts: Family::default(),
            http: Family::default(),
            refused_connections: Counter::default(),
        };
        let pool = pool.clone();
        let rec = m.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(PoolEvent::Task { id, status }) if status.is_terminal() => {
                        if let Ok(report) = pool.result(&id).await {
                            rec.task_ended(&report);
                        }
                        rec.seen.fetch_add(1, Ordering::SeqCst);
                        rec.recorded.notify_waiters();
                    }
                    Ok(PoolEvent::SlotFailed { kind, .. }) => {
                        let cause = match kind {
                            FailureKind::AfterReady => "after_ready",
                            FailureKind::KilledBeforeReady => "killed_before_ready",
                            FailureKind::StartFailed => "start_failed",
                        };
                        rec.restarts
                            .get_or_create(&labels(&[("cause", cause)]))
                            .inc();
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "metrics fell behind the pool's events");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        m
    }

    fn task_ended(&self, r: &TaskReport) {
        if let Some(ms) = r.duration_ms {
            self.duration.observe(ms as f64 / 1000.0);
        }
        if let Some(ms) = r.queued_ms {
            self.queue_wait.observe(ms as f64 / 1000.0);
        }
        let model = r.model.clone().unwrap_or_default();
        let project = r.project.clone().unwrap_or_default();
        let by = labels(&[("model", &model), ("project", &project)]);
        if r.spend_usd > 0.0 {
            self.spend.get_or_create(&by).inc_by(r.spend_usd);
        }
        let t = &r.tokens_used;
        for (kind, n) in [
            ("input", t.input),
            ("output", t.output),
            ("cache_read", t.cache_read),
            ("cache_write", t.cache_write),
        ] {
            if n > 0 {
                let mut l = by.clone();
                l.push(("type".into(), kind.into()));
                self.tokens.get_or_create(&l).inc_by(n);
            }
        }
        if r.status == TaskStatus::Failed
            && r.error
                .as_deref()
                .is_some_and(|e| e.starts_with("claude reported an error"))
        {
            self.api_errors.inc();
        }
    }

    /// Counts one HTTP response.
    pub fn http_response(&self, status: u16) {
        self.http
            .get_or_create(&labels(&[("status", &status.to_string())]))
            .inc();
    }

    /// Counts one connection closed unread past the connection cap.
    pub fn http_connection_refused(&self) {
        self.refused_connections.inc();
    }

    /// Waits (at most a second) until every task `status` counts as ended is recorded.
    pub async fn caught_up(&self, status: &PoolStatusReport) {
        let want = terminal(status);
        let wait = async {
            loop {
                let notified = self.recorded.notified();
                if self.seen.load(Ordering::SeqCst) >= want {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), wait).await;
    }

    /// The text exposition of everything, with the pool's counts as of `status`.
    pub fn render(
        &self,
        status: &PoolStatusReport,
        approvals: &crate::approvals::ApprovalStats,
    ) -> String {
        let mut reg = Registry::with_prefix("claude_pool");
        let pending: Gauge = Gauge::default();
        pending.set(i64::try_from(approvals.pending).unwrap_or(i64::MAX));
        reg.register(
            "approvals_pending",
            "Workers' permission questions waiting for an answer",
            pending,
        );
        let ceiling: Gauge = Gauge::default();
        ceiling.set(i64::try_from(status.api.ceiling).unwrap_or(i64::MAX));
        reg.register(
            "api_ceiling",
            "Turns allowed at once: the slot count, or fewer while the API refuses turns for rate or load",
            ceiling,
        );
        let refusals: Gauge = Gauge::default();
        refusals.set(i64::try_from(status.api.retries_last_minute).unwrap_or(i64::MAX));
        reg.register(
            "api_refusals_last_minute",
            "Rate and load refusals (HTTP 429, 529) seen in the last minute",
            refusals,
        );
        let paused: Gauge = Gauge::default();
        paused.set(i64::from(status.api.paused.is_some()));
        reg.register(
            "api_paused",
            "1 while a used-up usage window (or --max-window-use) holds every new turn until its reset",
            paused,
        );
        let used: Family<Labels, Gauge<f64, AtomicU64>> = Family::default();
        for w in &status.api.windows {
            if let Some(u) = w.utilization {
                used.get_or_create(&labels(&[("window", &w.name)])).set(u);
            }
        }
        reg.register(
            "api_window_utilization",
            "How much of each subscription usage window is used (0..1), as the API last said",
            used,
        );
        let decided: Family<Labels, Counter> = Family::default();
        for ((outcome, by), n) in &approvals.decided {
            decided
                .get_or_create(&labels(&[("outcome", outcome), ("by", by)]))
                .inc_by(*n);
        }
        reg.register(
            "approvals",
            "Workers' permission questions answered by a person, a timeout or their task's end, by outcome and by who (client, page, tool, api, timeout, task_ended, no_one)",
            decided,
        );
        let tasks: Family<Labels, Counter> = Family::default();
        let open: Family<Labels, Gauge> = Family::default();
        for kind in [TaskKind::Task, TaskKind::Run, TaskKind::Build] {
            let c = status.tasks_by_kind.of(kind);
            let kind = kind.as_str();
            for (state, n) in [
                ("completed", c.completed),
                ("failed", c.failed),
                ("cancelled", c.cancelled),
                ("timed_out", c.timed_out),
                ("interrupted", c.interrupted),
            ] {
                tasks
                    .get_or_create(&labels(&[("kind", kind), ("state", state)]))
                    .inc_by(n);
            }
            for (state, n) in [("pending", c.pending), ("running", c.running)] {
                open.get_or_create(&labels(&[("kind", kind), ("state", state)]))
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        reg.register(
            "tasks",
            "Tasks that reached a terminal state, by kind (task, run, build) and state",
            tasks,
        );
        reg.register(
            "open_tasks",
            "Tasks queued or running now, by kind and state",
            open,
        );
        let queue: Gauge = Gauge::default();
        queue.set(i64::try_from(status.pending_tasks).unwrap_or(i64::MAX));
        reg.register("queue_length", "Tasks waiting for a slot", queue);
        let slots: Family<Labels, Gauge> = Family::default();
        for s in &status.slots {
            slots
                .get_or_create(&labels(&[("status", &s.status.to_string())]))
                .inc();
        }
        reg.register("slots", "Slots by status", slots);
        let remote: Family<Labels, Gauge> = Family::default();
        for s in &status.slots {
            if let Some(host) = &s.host {
                remote
                    .get_or_create(&labels(&[
                        ("host", host),
                        ("status", &s.status.to_string()),
                    ]))
                    .inc();
            }
        }
        reg.register(
            "host_slots",
            "Slots of the hosts that joined from other machines, by host and status",
            remote,
        );
        let warm: Gauge = Gauge::default();
        warm.set(i64::from(status.warm_slots));
        reg.register(
            "slots_warm",
            "Slots with a Claude process (or getting one)",
            warm,
        );
        let floor: Gauge = Gauge::default();
        floor.set(i64::from(status.warm_floor));
        reg.register(
            "slots_warm_floor",
            "Slots kept warm whatever the idle timeout",
            floor,
        );
        let rss: Family<Labels, Gauge> = Family::default();
        for s in &status.slots {
            if let Some(bytes) = s.rss_bytes {
                rss.get_or_create(&labels(&[("slot", &s.id.to_string())]))
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
        reg.register(
            "slot_rss_bytes",
            "Resident memory of each slot's process group",
            rss,
        );
        let store: Family<Labels, Gauge> = Family::default();
        if let Some(st) = &status.store {
            for (file, bytes) in [("db", st.db_bytes), ("wal", st.wal_bytes)] {
                store
                    .get_or_create(&labels(&[("file", file)]))
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
        reg.register(
            "store_bytes",
            "Bytes of the store's database file and of its write-ahead log",
            store,
        );
        reg.register(
            "task_duration_seconds",
            "Time from a task's start on a slot to its end",
            self.duration.clone(),
        );
        reg.register(
            "task_queue_wait_seconds",
            "Time a task waited for a slot",
            self.queue_wait.clone(),
        );
        reg.register(
            "spend_usd",
            "Dollars spent by tasks, by model and project",
            self.spend.clone(),
        );
        reg.register(
            "tokens",
            "Tokens used by tasks, by model, project and type",
            self.tokens.clone(),
        );
        reg.register(
            "api_errors",
            "Tasks that failed with an error the CLI reported (API errors)",
            self.api_errors.clone(),
        );
        reg.register(
            "slot_restarts",
            "Slot restarts by cause",
            self.restarts.clone(),
        );
        reg.register(
            "http_requests",
            "HTTP responses by status",
            self.http.clone(),
        );
        reg.register(
            "http_connections_refused",
            "HTTP connections closed unread because --http-max-connections were open",
            self.refused_connections.clone(),
        );
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
            let _ = writeln!(out, "# the metrics could not be encoded");
        }
        out
    }
}

/// Tasks `status` counts as ended.
fn terminal(status: &PoolStatusReport) -> u64 {
    let c = &status.tasks;
    c.completed + c.failed + c.cancelled + c.timed_out + c.interrupted
}

/// Shared by the HTTP handlers.
pub type SharedMetrics = Arc<Metrics>;

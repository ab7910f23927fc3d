//! What a session hears without asking: when work it started without waiting ends, when
//! one of those tasks waits for an approval, and when the budget passes 90%.
//!
//! - Work a 2025-11-25 session started as an MCP task (a task-augmented call) ends with
//!   `notifications/tasks/status`, carrying the task as `tasks/get` would show it.
//! - With `--channels`, the session also gets Claude Code channel messages
//!   (`notifications/claude/channel`, `{content, meta}`) for everything it started without
//!   waiting (`pool_submit`, `pool_submit_chain`, `claude_run`, `claude_build`, MCP tasks):
//!   what ended, its status and the tool that reads its result; a question waiting for
//!   `pool_approve`; the budget at 90%.
//!
//! Each thing is told once. A session's notices are gathered and sent at most once a
//! second — a thousand tasks ending together are one channel message — and the first
//! goes out a fifth of a second after its event. A session that never starts work without
//! waiting, or has nothing to be told, costs nothing: its follower starts on first use.
//! The follower ends once the session is gone and nothing it follows is left, or when its
//! client's transport closes.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;
use std::time::Duration;

use claude_pool_protocol::approvals::ApprovalRequest;
use claude_pool_protocol::{ChainStatus, TaskId};
use rmcp::model::{CustomNotification, ServerNotification};
use rmcp::service::{Peer, RequestContext, RoleServer};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::PoolServer;
use super::protocol_tasks::legacy::legacy_task;
use super::protocol_tasks::{Phase, View};
use crate::events::PoolEvent;
use crate::pool::handles::{Handle, Work};

/// How long after the first event a batch waits for more.
const GATHER: Duration = Duration::from_millis(200);
/// The least time between two batches.
const EVERY: Duration = Duration::from_secs(1);
/// The share of the budget whose passing is told.
const BUDGET_SHARE: f64 = 0.9;
/// The longest status line a channel message quotes.
const MAX_LINE: usize = 300;

/// The method of a Claude Code channel message.
pub const CHANNEL_METHOD: &str = "notifications/claude/channel";
/// The method of a 2025-11-25 task status notification.
pub const TASK_STATUS_METHOD: &str = "notifications/tasks/status";

/// One session's follower, started on first use.
#[derive(Debug, Default)]
pub(super) struct Notices {
    follower: OnceLock<Option<mpsc::UnboundedSender<Followed>>>,
}

/// Work a session follows.
#[derive(Debug)]
struct Followed {
    handle: Handle,
    /// Whether its end is told as a task status notification (an MCP task of a 2025-11-25
    /// session).
    task_status: bool,
}

impl PoolServer {
    /// Follows `handle`'s work for this session, to tell it when the work ends (see
    /// [`self`]). `task_status`: the work is an MCP task of a 2025-11-25 session.
    pub(super) fn follow_work(
        &self,
        context: &RequestContext<RoleServer>,
        handle: Handle,
        task_status: bool,
    ) {
        let channels = self.pool.config().channels;
        if !channels && !task_status {
            return;
        }
        let follower = self.notices.follower.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let follower = Follower {
                views: PoolServer::new(self.pool.clone()),
                peer: context.peer.clone(),
                channels,
                followed: HashMap::new(),
                triggers: HashMap::new(),
                told_approvals: BTreeSet::new(),
                told_budget: false,
                batch: Vec::new(),
            };
            tokio::spawn(follower.run(rx));
            Some(tx)
        });
        if let Some(tx) = follower {
            let _ = tx.send(Followed {
                handle,
                task_status,
            });
        }
    }
}

/// A handle for work started with `id` by `tool`.
pub(super) fn handle_of(id: &str, tool: &str, work: Work) -> Handle {
    Handle {
        id: id.to_owned(),
        tool: tool.to_owned(),
        work,
        ttl_ms: None,
        created_at_ms: crate::pool::handles::now_ms(),
    }
}

/// Something to tell.
enum Notice {
    Ended { view: View, task_status: bool },
    Approval(ApprovalRequest),
    Budget { share: f64, line: String },
}

struct Follower {
    /// A server of the same pool, for the views `tasks/get` shows (not this session's, so
    /// the session's end is not held up by its own follower).
    views: PoolServer,
    peer: Peer<RoleServer>,
    channels: bool,
    /// What is followed, by the id it is told as.
    followed: HashMap<String, Followed>,
    /// Which followed id an event's id concerns (a fan-out's tasks: the fan-out).
    triggers: HashMap<String, String>,
    told_approvals: BTreeSet<String>,
    told_budget: bool,
    batch: Vec<Notice>,
}

impl Follower {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Followed>) {
        let pool = self.views.pool.clone();
        let mut events = pool.events();
        let mut asked = pool.approvals();
        let mut session_open = true;
        let mut last_sent: Option<Instant> = None;
        let mut due: Option<Instant> = None;
        loop {
            if !session_open && self.followed.is_empty() && self.batch.is_empty() {
                return;
            }
            if self.peer.is_transport_closed() {
                return;
            }
            tokio::select! {
                f = rx.recv(), if session_open => match f {
                    Some(f) => self.follow(f).await,
                    None => session_open = false,
                },
                e = events.recv() => match e {
                    Ok(PoolEvent::Task { id, status }) if status.is_terminal() => {
                        self.check(&id.0).await;
                    }
                    Ok(PoolEvent::Chain { id, status }) if status != ChainStatus::InProgress => {
                        self.check(&id.0).await;
                    }
                    Ok(PoolEvent::Budget) if self.channels && !self.told_budget => {
                        self.check_budget().await;
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => self.check_all().await,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                a = asked.recv(), if self.channels => match a {
                    Ok(request) => self.asked(request),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = sleep_until(due) => {
                    due = None;
                    last_sent = Some(Instant::now());
                    if self.send().await.is_err() {
                        return;
                    }
                }
            }
            if !self.batch.is_empty() && due.is_none() {
                let soon = Instant::now() + GATHER;
                due = Some(match last_sent {
                    Some(t) => soon.max(t + EVERY),
                    None => soon,
                });
            }
        }
    }

    /// Starts following; work that has already ended is told at once.
    async fn follow(&mut self, f: Followed) {
        let id = f.handle.id.clone();
        match &f.handle.work {
            Work::Task(t) | Work::Job(t) => {
                self.triggers.insert(t.0.clone(), id.clone());
            }
            Work::Chain(c) => {
                self.triggers.insert(c.0.clone(), id.clone());
            }
            Work::FanOut(ids) => {
                for t in ids {
                    self.triggers.insert(t.0.clone(), id.clone());
                }
            }
        }
        self.followed.insert(id.clone(), f);
        self.settle(&id).await;
    }

    /// Tells the followed work `event_id` concerns if it has ended.
    async fn check(&mut self, event_id: &str) {
        if let Some(id) = self.triggers.get(event_id).cloned() {
            self.settle(&id).await;
        }
    }

    /// Tells the followed work `id` if it has ended.
    async fn settle(&mut self, id: &str) {
        let id = id.to_owned();
        let Some(f) = self.followed.get(&id) else {
            return;
        };
        let Ok(view) = self.views.view(f.handle.clone()).await else {
            return;
        };
        if matches!(view.phase, Phase::Working) {
            return;
        }
        let f = self.followed.remove(&id).expect("followed");
        self.triggers.retain(|_, v| *v != id);
        self.batch.push(Notice::Ended {
            view,
            task_status: f.task_status,
        });
    }

    async fn check_all(&mut self) {
        let ids: Vec<String> = self.followed.keys().cloned().collect();
        for id in ids {
            self.settle(&id).await;
        }
    }

    fn asked(&mut self, request: ApprovalRequest) {
        let Some(id) = self.triggers.get(&request.task_id.0) else {
            return;
        };
        if self.followed.contains_key(id) && self.told_approvals.insert(request.request_id.clone())
        {
            self.batch.push(Notice::Approval(request));
        }
    }

    async fn check_budget(&mut self) {
        let Ok(b) = self.views.pool.budget().await else {
            return;
        };
        let usd = b.budget_usd.filter(|cap| *cap > 0.0).map(|cap| {
            (
                b.spend_usd / cap,
                format!("${:.2} of ${cap:.2}", b.spend_usd),
            )
        });
        let tokens = b.budget_tokens.filter(|cap| *cap > 0).map(|cap| {
            (
                b.tokens_used as f64 / cap as f64,
                format!("{} of {cap} tokens", b.tokens_used),
            )
        });
        let worst = [usd, tokens]
            .into_iter()
            .flatten()
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((share, line)) = worst.filter(|(share, _)| *share >= BUDGET_SHARE) {
            self.told_budget = true;
            self.batch.push(Notice::Budget {
                share,
                line: format!("{line} ({} period)", b.period),
            });
        }
    }

    /// Sends the batch: a task status notification per ended MCP task, and one channel
    /// message with everything.
    async fn send(&mut self) -> Result<(), rmcp::ServiceError> {
        let batch = std::mem::take(&mut self.batch);
        let mut lines = Vec::new();
        let (mut ended, mut approvals, mut budget) = (0, 0, 0);
        for notice in &batch {
            match notice {
                Notice::Ended { view, task_status } => {
                    ended += 1;
                    if *task_status {
                        self.notify(TASK_STATUS_METHOD, legacy_task(view)).await?;
                    }
                    lines.push(ended_line(view));
                }
                Notice::Approval(r) => {
                    approvals += 1;
                    lines.push(format!(
                        "{} waits for approval {}: {} {} — answer with pool_approve {}",
                        r.task_id,
                        r.request_id,
                        r.tool,
                        clip(&r.summary),
                        json!({ "request_id": r.request_id, "decision": "allow" })
                    ));
                }
                Notice::Budget { share, line } => {
                    budget += 1;
                    lines.push(format!(
                        "budget {:.0}% used: {line}; new work is refused once it is spent",
                        share * 100.0
                    ));
                }
            }
        }
        if self.channels && !lines.is_empty() {
            let meta = json!({
                "source": "claude-pool",
                "ended": ended.to_string(),
                "approvals": approvals.to_string(),
                "budget": budget.to_string(),
            });
            self.notify(
                CHANNEL_METHOD,
                json!({ "content": lines.join("\n"), "meta": meta }),
            )
            .await?;
        }
        Ok(())
    }

    async fn notify(&self, method: &str, params: Value) -> Result<(), rmcp::ServiceError> {
        self.peer
            .send_notification(ServerNotification::CustomNotification(
                CustomNotification::new(method, Some(params)),
            ))
            .await
    }
}

/// "task-… completed (pool_submit): <status> — pool_result {…}".
fn ended_line(view: &View) -> String {
    let id = &view.handle.id;
    let status = match &view.phase {
        Phase::Working => "working",
        Phase::Cancelled(_) => "cancelled",
        Phase::Done(r) if r.is_error == Some(true) => "failed",
        Phase::Done(_) => "completed",
    };
    let read = match &view.handle.work {
        Work::Task(_) => format!("pool_result {}", json!({ "task_id": id })),
        Work::Job(_) => format!("claude_job_status {}", json!({ "jobId": id })),
        Work::Chain(_) => format!("pool_chain_result {}", json!({ "chain_id": id })),
        Work::FanOut(_) => format!("tasks/result {}", json!({ "taskId": id })),
    };
    format!(
        "{id} {status} ({}): {} — {read}",
        view.handle.tool,
        clip(&view.message)
    )
}

fn clip(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    match line.char_indices().nth(MAX_LINE) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The id a pool task is followed by.
pub(super) fn task_handle(id: &TaskId, tool: &str) -> Handle {
    let work = if tool.starts_with("claude_") {
        Work::Job(id.clone())
    } else {
        Work::Task(id.clone())
    };
    handle_of(&id.0, tool, work)
}

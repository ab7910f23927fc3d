//! The approval desk: every worker question no rule answered, until someone answers it,
//! its time runs out, or its task ends.
//!
//! **Place in the tree.** Child of the root supervisor. Not restarted (fail-stop, like the
//! ledger): a fresh desk would not know the questions slots are waiting on.
//!
//! **Owns** the pending requests: for each, the slot to answer, the task's listener (the
//! front-end that submitted it, through the task's progress channel), and a timer. A slot
//! sends [`ApprovalNote::Ask`] when its Claude asks about something the rules leave open;
//! the desk tells the task's listener (an MCP client is asked by elicitation; a waiting
//! call shows "waiting for approval"), publishes [`PoolEvent::Approvals`], and waits. The
//! first answer wins — from an elicitation, `pool_approve`, the status page or the
//! embedding API ([`ApprovalsMsg::Answer`]) — and goes to the slot as
//! [`Answered`], which writes it to Claude and keeps the audit record. With no
//! answer by `--approval-timeout` (or the task's own), the desk answers deny itself. An
//! elicitation from a worker's MCP server that has no listener to ask is cancelled at once.
//!
//! **What ends a request:** an answer, the timeout, or the end of its task
//! ([`ApprovalNote::TaskEnded`], sent by the slot as the task ends — cancel, deadline,
//! drain, scale-down, a crash — and the slot records it as ended unanswered). A slot
//! actor that is gone without saying so leaves requests that the next listing drops.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use claude_pool_protocol::TaskId;
use claude_pool_protocol::approvals::{
    Answer, ApprovalKind, ApprovalRequest, ApproveReport, Decision,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef, RpcReplyPort};

use crate::events::{EventBus, PoolEvent};
use crate::task::TaskProgress;
use crate::wire::{Answered, ApprovalNote};

/// Behaviour of the approval desk.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApprovalsActor;

/// What the desk starts with.
#[derive(Debug, Clone)]
pub struct ApprovalsArgs {
    /// Where changes to the pending requests are published.
    pub events: EventBus,
}

/// Counts for `/metrics` and `pool_status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalStats {
    /// Requests waiting now.
    pub pending: u64,
    /// Requests answered, by outcome and by who: (outcome, by-kind) → count.
    pub decided: BTreeMap<(String, String), u64>,
}

/// Messages the desk handles.
pub enum ApprovalsMsg {
    /// What a slot tells the desk.
    Slot(ApprovalNote),
    /// An answer, from whoever gives it.
    Answer {
        /// The request.
        request_id: String,
        /// The answer.
        answer: Answer,
        /// Who answered (`client:<session>`, `page`, `tool:pool_approve`, `api`).
        by: String,
        /// Told whether the answer was taken.
        reply: Option<RpcReplyPort<Result<ApproveReport, String>>>,
    },
    /// A request's time ran out.
    Expired(String),
    /// The pending requests, oldest first (of one task, when given).
    List {
        /// Only this task's.
        task: Option<TaskId>,
        /// The answer.
        reply: RpcReplyPort<Vec<ApprovalRequest>>,
    },
    /// Counts.
    Stats(RpcReplyPort<ApprovalStats>),
}

impl fmt::Debug for ApprovalsMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApprovalsMsg::Slot(note) => write!(f, "{note:?}"),
            ApprovalsMsg::Answer { request_id, by, .. } => {
                write!(f, "Answer({request_id} by {by})")
            }
            ApprovalsMsg::Expired(id) => write!(f, "Expired({id})"),
            ApprovalsMsg::List { task, .. } => write!(f, "List({task:?})"),
            ApprovalsMsg::Stats(_) => f.write_str("Stats"),
        }
    }
}

#[derive(Debug)]
struct Pending {
    request: ApprovalRequest,
    slot: DerivedActorRef<Answered>,
    /// Orders the listing: asked first, listed first.
    seq: u64,
    /// How long it may wait.
    timeout: Duration,
    timer: tokio::task::JoinHandle<Result<(), ractor::MessagingErr<ApprovalsMsg>>>,
}

/// The desk's state.
#[derive(Debug)]
pub struct ApprovalsState {
    args: ApprovalsArgs,
    pending: HashMap<String, Pending>,
    next_seq: u64,
    stats: ApprovalStats,
}

impl ApprovalsState {
    /// The kind of who answered, for counting (`rule:Bash(x)` → `rule`).
    fn by_kind(by: &str) -> String {
        by.split(':').next().unwrap_or(by).to_owned()
    }

    fn count(&mut self, outcome: &str, by: &str) {
        *self
            .stats
            .decided
            .entry((outcome.to_owned(), Self::by_kind(by)))
            .or_default() += 1;
    }

    fn publish(&self, request: &ApprovalRequest) {
        self.args.events.publish(PoolEvent::Approvals {
            task: request.task_id.clone(),
        });
    }

    /// Takes `id` out of the pending set and sends its answer to the slot.
    fn settle(&mut self, id: &str, answer: Answer, by: String) -> Option<ApproveReport> {
        let p = self.pending.remove(id)?;
        p.timer.abort();
        let outcome = answer.outcome(p.request.kind).to_owned();
        self.count(&outcome, &by);
        let _ = p.slot.send_message(Answered {
            task: p.request.task_id.clone(),
            request_id: id.to_owned(),
            answer,
            by,
        });
        self.publish(&p.request);
        Some(ApproveReport {
            request_id: id.to_owned(),
            task_id: p.request.task_id,
            outcome,
        })
    }

    /// Requests whose slot actor is gone can never be answered: forget them.
    fn drop_orphans(&mut self) {
        let gone: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                matches!(
                    p.slot.get_status(),
                    ractor::ActorStatus::Stopped | ractor::ActorStatus::Stopping
                )
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(p) = self.pending.remove(&id) {
                p.timer.abort();
                self.count("dropped", "task_ended");
                self.publish(&p.request);
            }
        }
    }
}

impl Actor for ApprovalsActor {
    type Msg = ApprovalsMsg;
    type State = ApprovalsState;
    type Arguments = ApprovalsArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<ApprovalsMsg>,
        args: ApprovalsArgs,
    ) -> Result<ApprovalsState, ActorProcessingErr> {
        Ok(ApprovalsState {
            args,
            pending: HashMap::new(),
            next_seq: 0,
            stats: ApprovalStats::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ApprovalsMsg>,
        msg: ApprovalsMsg,
        state: &mut ApprovalsState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ApprovalsMsg::Slot(ApprovalNote::Ask {
                request,
                slot,
                listener,
                timeout,
            }) => {
                let id = request.request_id.clone();
                let told = listener
                    .as_ref()
                    .is_some_and(|l| l.send(TaskProgress::Approval(request.clone())).is_ok());
                if request.kind == ApprovalKind::Elicitation && !told {
                    // Nobody to show the MCP server's form to: say so at once.
                    state.count("cancel", "no_one");
                    let _ = slot.send_message(Answered {
                        task: request.task_id.clone(),
                        request_id: id,
                        answer: Answer::cancel("no client of this task can answer it"),
                        by: "no_one".into(),
                    });
                    return Ok(());
                }
                let expired = id.clone();
                let timer = myself.send_after(timeout, move || ApprovalsMsg::Expired(expired));
                state.next_seq += 1;
                state.publish(&request);
                state.args.events.asked(request.clone());
                state.pending.insert(
                    id,
                    Pending {
                        request,
                        slot,
                        seq: state.next_seq,
                        timeout,
                        timer,
                    },
                );
            }
            ApprovalsMsg::Answer {
                request_id,
                answer,
                by,
                reply,
            } => {
                let answer = match state.pending.get(&request_id) {
                    Some(p) if p.request.kind == ApprovalKind::Tool && answer.content.is_some() => {
                        Err("content answers an elicitation; this request is a tool permission"
                            .to_owned())
                    }
                    Some(p)
                        if p.request.kind == ApprovalKind::Elicitation
                            && answer.decision == Decision::Allow
                            && answer.content.is_none() =>
                    {
                        Err("accepting an elicitation needs `content` (an object matching its schema)".to_owned())
                    }
                    Some(_) => Ok(answer),
                    None => Err(format!(
                        "no pending approval request {request_id} (answered, timed out, or its task ended)"
                    )),
                };
                let result = answer.map(|a| {
                    state
                        .settle(&request_id, a, by)
                        .expect("checked pending above")
                });
                if let Some(r) = reply {
                    let _ = r.send(result);
                }
            }
            ApprovalsMsg::Expired(id) => {
                if let Some(p) = state.pending.get(&id) {
                    let secs = humantime::format_duration(p.timeout);
                    let answer = match p.request.kind {
                        ApprovalKind::Tool => Answer::deny(format!(
                            "denied: nobody answered this permission request within {secs}"
                        )),
                        ApprovalKind::Elicitation => {
                            Answer::cancel(format!("nobody answered within {secs}"))
                        }
                    };
                    state.settle(&id, answer, "timeout".into());
                }
            }
            ApprovalsMsg::Slot(ApprovalNote::Decided { outcome, by }) => state.count(&outcome, &by),
            ApprovalsMsg::Slot(ApprovalNote::TaskEnded(task)) => {
                let ids: Vec<String> = state
                    .pending
                    .iter()
                    .filter(|(_, p)| p.request.task_id == task)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in ids {
                    if let Some(p) = state.pending.remove(&id) {
                        p.timer.abort();
                        state.count("dropped", "task_ended");
                        state.publish(&p.request);
                    }
                }
            }
            ApprovalsMsg::Slot(ApprovalNote::Withdrawn(id)) => {
                if let Some(p) = state.pending.remove(&id) {
                    p.timer.abort();
                    state.count("dropped", "withdrawn");
                    state.publish(&p.request);
                }
            }
            ApprovalsMsg::List { task, reply } => {
                state.drop_orphans();
                let mut list: Vec<(&u64, &ApprovalRequest)> = state
                    .pending
                    .values()
                    .filter(|p| task.as_ref().is_none_or(|t| &p.request.task_id == t))
                    .map(|p| (&p.seq, &p.request))
                    .collect();
                list.sort_by_key(|(seq, _)| **seq);
                let _ = reply.send(list.into_iter().map(|(_, r)| r.clone()).collect());
            }
            ApprovalsMsg::Stats(reply) => {
                state.drop_orphans();
                let mut stats = state.stats.clone();
                stats.pending = state.pending.len() as u64;
                let _ = reply.send(stats);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ApprovalsMsg>,
        state: &mut ApprovalsState,
    ) -> Result<(), ActorProcessingErr> {
        for (_, p) in state.pending.drain() {
            p.timer.abort();
        }
        Ok(())
    }
}

impl From<ApprovalNote> for ApprovalsMsg {
    fn from(n: ApprovalNote) -> Self {
        ApprovalsMsg::Slot(n)
    }
}

impl TryFrom<ApprovalsMsg> for ApprovalNote {
    type Error = ApprovalsMsg;
    fn try_from(m: ApprovalsMsg) -> Result<Self, ApprovalsMsg> {
        match m {
            ApprovalsMsg::Slot(n) => Ok(n),
            other => Err(other),
        }
    }
}

//! The slot actor: one warm Claude process and the task it runs.
//!
//! **Place in the tree.** Child of the slot supervisor, one per slot. Restarted one-for-one
//! with backoff ([`crate::restart`]) when it fails.
//!
//! **Owns** one [`ClaudeProcess`] at a time (a persistent stream-json CLI in its own process
//! group), at most one task, and with `--worktree` its git worktree. The process is warmed up
//! before work arrives: a `/clear` is sent at spawn and its result is the readiness signal.
//! Between tasks another `/clear` gives the next task a fresh conversation, so unrelated
//! tasks never see each other. Model and permission-mode changes go through control
//! requests; an effort change needs other fixed flags, so the process is replaced. After
//! `recycle_after_turns` tasks the process is replaced as well (its memory grows per turn).
//!
//! **Stopping a turn** (cancel, deadline, budget): the interrupt control request, a grace
//! period for the turn's result (so what ran is billed, and nothing more), SIGTERM to the
//! process group, SIGKILL after another grace. The task's terminal state is reported only
//! once the process is reaped and its group swept.
//!
//! **Spend while it runs.** Every API call of a turn shows up as an `assistant` event with
//! the call's input usage; the slot prices it ([`claude_pool_protocol::pricing`]) and tells
//! the budget ledger what the turn has spent so far.
//!
//! **Removal** (scale-down, [`SlotMsg::Retire`]): an idle slot stops at once; a busy one
//! finishes its task within the grace, or the task is cancelled; either way the process
//! group is gone before the actor stops.
//!
//! **Fails on purpose** (returns a [`SlotFailure`], so the supervisor restarts it) when its
//! process exits unexpectedly, misses its deadline, prints a line that is not stream-json,
//! breaks its stdin, or does not warm up in time — always after the task in flight got a
//! terminal state that says what happened. The failure says whether the process had become
//! ready, which is what the restart limit counts. Phases follow [`phase::next`]; the edge
//! list is in `supervision-tree.md`. The process's life (spawn, warm-up, timers, exit,
//! removal) is in [`life`], a task's turn in [`turn`].

mod asks;
mod life;
pub mod phase;
mod turn;
mod warmth;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use claude_pool_protocol::cost::TurnCost;
use claude_pool_protocol::stream::ControlRequest;
use claude_pool_protocol::{SlotId, SlotStatus, TaskId, TaskStatus};
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef, MessagingErr};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{PoolConfig, ProcSettings};
use crate::process::{ClaudeProcess, ProcessEvent};
use crate::restart::{FailureKind, SlotFailure};
use crate::store::transcripts::TranscriptSink;
use crate::task::{Assignment, TaskOutcome};
use crate::wire::{Answered, Healthy, SlotCommand, SlotEvent, Uplinks};
use crate::worktree::{Worktree, Worktrees};
use phase::{Input, Phase};

/// Behaviour of a slot. Holds no data: everything lives in [`SlotState`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SlotActor;

/// What a slot is started with. `Clone` so the supervisor can start it again.
#[derive(Clone)]
pub struct SlotArgs {
    /// The slot's stable id.
    pub slot: SlotId,
    /// The pool's configuration.
    pub config: Arc<PoolConfig>,
    /// Where readiness, progress, outcomes, spend and permission questions are reported.
    pub up: Uplinks,
    /// The supervisor, told when the slot's process first becomes ready.
    pub supervisor: DerivedActorRef<Healthy>,
    /// With `--worktree`: the repository's worktrees, one per slot.
    pub worktrees: Option<Arc<Worktrees>>,
    /// With a store: where every task's stream-json events are kept.
    pub transcripts: Option<TranscriptSink>,
    /// With a store file: a task's prompt is written only once the store has committed
    /// that it started, so a server killed in between never runs it a second time.
    pub record_starts: bool,
}

impl fmt::Debug for SlotArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotArgs")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

/// Messages a slot handles.
#[derive(Debug)]
pub enum SlotMsg {
    /// Start a process (sent to itself at start and after a planned stop).
    Spawn,
    /// What the scheduler tells it.
    Command(SlotCommand),
    /// Leave the pool (scale-down): stop now when idle; a running task gets `grace` to
    /// finish, then it is cancelled. The actor stops once its process group is gone.
    Retire {
        /// How long a running task may still take.
        grace: Duration,
    },
    /// The process (of `generation`) reported something.
    ProcessReported {
        /// Which process of this slot; events of an older one are ignored.
        generation: u64,
        /// What it reported.
        event: ProcessEvent,
    },
    /// The answer to one of the running task's permission questions (from the approval
    /// desk).
    Answered(Answered),
    /// A timer armed for process `generation` fired.
    TimerFired {
        /// Which process the timer belongs to.
        generation: u64,
        /// Which timer.
        timer: Timer,
    },
}

/// The slot's timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// The warm-up must answer by now.
    Startup,
    /// The task's deadline.
    Deadline(TaskId),
    /// The interrupted turn's result must have arrived by now.
    InterruptGrace,
    /// SIGTERM's grace: SIGKILL now.
    KillGrace,
    /// A slot being removed: its running task's grace is over.
    RetireGrace,
}

/// A timer armed with `send_after`; aborting it cancels the message.
type TimerHandle = JoinHandle<Result<(), MessagingErr<SlotMsg>>>;

/// What happens once the process is gone. Ordered: a stronger outcome is never replaced by
/// a weaker one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum AfterExit {
    /// Planned: spawn a replacement.
    Respawn,
    /// Released after being idle: stay cold until woken.
    Cool,
    /// The slot is being removed: stop the actor.
    Retire,
    /// The slot failed: return this error so the supervisor decides about a restart.
    Fail(String, FailureKind),
}

/// A task on this slot.
struct ActiveTask {
    assignment: Assignment,
    /// Set when the prompt was written.
    started_at: Option<Instant>,
    /// Set by the turn's first event (its init): from then on the CLI may have called the
    /// API or run tools, so the task is no longer safe to run again elsewhere.
    turn_began: bool,
    /// The model reported by the turn's init event.
    model: Option<String>,
    /// Decided before the turn ended: cancelled, timed out, or failed (broken process).
    verdict: Option<(TaskStatus, String)>,
    /// The turn's answer, if its result arrived while the turn was being stopped.
    late_output: Option<String>,
    cost: TurnCost,
    /// What the turn has spent so far, from its API calls' usage.
    live_usd: f64,
    /// Tokens its API calls processed so far (input side at each call's start).
    live_tokens: u64,
    /// API message ids already priced (one call may be printed as several events).
    priced: HashSet<String>,
    /// Its permission questions: open ones, grants, and the audit trail.
    asks: asks::TaskAsks,
    /// Tool calls the turn has made (a turn that made none may run again after a rate
    /// limit).
    tool_calls: usize,
    /// The turn ended with the API refusing it for rate or load (429, 529).
    rate_limited: bool,
}

/// A slot's state. Private: only the actor touches it.
pub struct SlotState {
    /// Id, configuration and the actors to report to.
    args: SlotArgs,
    /// For timers and for the process's I/O tasks to message this actor.
    myself: ActorRef<SlotMsg>,
    /// Where the process is in its life; changed only through `phase::next`.
    phase: Phase,
    /// What the scheduler was last told: status and pid.
    visible: (SlotStatus, Option<u32>),
    /// Numbers the processes of this slot, so events of a replaced one are ignored.
    generation: u64,
    /// The live process; dropping it kills its group.
    process: Option<ClaudeProcess>,
    /// Whether the live process has answered its warm-up (restart limits count only
    /// processes that never did).
    process_ready: bool,
    /// Whether the supervisor has been told that this actor's slot works.
    reported_healthy: bool,
    /// Settings the live process runs with.
    current: ProcSettings,
    /// Tasks the live process has served.
    turns: u64,
    /// The live conversation, reported with each task.
    session_id: Option<String>,
    /// Cumulative `total_cost_usd` of the live session at its last result.
    session_total: f64,
    /// The task assigned here, if any (at most one).
    task: Option<ActiveTask>,
    /// Control requests awaiting their answer, by request id.
    pending_controls: HashMap<String, ControlRequest>,
    /// The first refusal among them, which fails the task.
    control_error: Option<String>,
    /// Makes control-request ids unique within the slot.
    next_request: u64,
    /// The one timer of the current phase (warm-up, interrupt grace, kill grace).
    phase_timer: Option<TimerHandle>,
    /// The task's deadline.
    deadline_timer: Option<TimerHandle>,
    /// A slot being removed: the running task's grace.
    retire_timer: Option<TimerHandle>,
    /// Set once the slot is being removed.
    retiring: bool,
    /// What the exit of the current process leads to.
    after_exit: AfterExit,
    /// Writing to stdin failed: the exit that follows is reported as the cause.
    stdin_broke: bool,
    /// With `--worktree`: the slot's worktree, the processes' working directory.
    worktree: Option<Worktree>,
    /// Set while a process started with `--resume` has not begun its turn: an exit or a
    /// result now means the session cannot be resumed.
    resuming: Option<String>,
    /// The task's prompt line, held while the store commits its start.
    unsent: Option<String>,
}

impl fmt::Debug for SlotState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotState")
            .field("slot", &self.args.slot)
            .field("phase", &self.phase)
            .field("generation", &self.generation)
            .field("turns", &self.turns)
            .finish_non_exhaustive()
    }
}

impl Actor for SlotActor {
    type Msg = SlotMsg;
    type State = SlotState;
    type Arguments = SlotArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SlotMsg>,
        args: SlotArgs,
    ) -> Result<SlotState, ActorProcessingErr> {
        let worktree = match &args.worktrees {
            Some(w) => Some(w.ensure(&args.slot).await.map_err(|reason| SlotFailure {
                reason,
                kind: FailureKind::StartFailed,
            })?),
            None => None,
        };
        // Spawning happens in `handle`, so a failure to start the CLI is an actor failure the
        // supervisor sees and restarts with backoff, not a refused spawn.
        myself.cast(SlotMsg::Spawn)?;
        Ok(SlotState {
            current: args.config.defaults.clone(),
            args,
            myself,
            phase: Phase::Stopped,
            visible: (SlotStatus::Starting, None),
            generation: 0,
            process: None,
            process_ready: false,
            reported_healthy: false,
            turns: 0,
            session_id: None,
            session_total: 0.0,
            task: None,
            pending_controls: HashMap::new(),
            control_error: None,
            next_request: 0,
            phase_timer: None,
            deadline_timer: None,
            retire_timer: None,
            retiring: false,
            after_exit: AfterExit::Respawn,
            stdin_broke: false,
            worktree,
            resuming: None,
            unsent: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SlotMsg>,
        msg: SlotMsg,
        state: &mut SlotState,
    ) -> Result<(), ActorProcessingErr> {
        let result = match msg {
            SlotMsg::Spawn => state.on_spawn(),
            SlotMsg::Command(command) => state.on_command(command),
            SlotMsg::Retire { grace } => state.on_retire(grace),
            SlotMsg::ProcessReported { generation, event } => state.on_process(generation, event),
            SlotMsg::TimerFired { generation, timer } => state.on_timer(generation, timer),
            SlotMsg::Answered(a) => {
                state.on_answered(&a.task, &a.request_id, a.answer, a.by);
                Ok(())
            }
        };
        if result.is_ok() && state.retiring && state.phase == Phase::Stopped {
            myself.stop(Some(format!(
                "{} was removed from the pool",
                state.args.slot
            )));
        }
        result
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SlotMsg>,
        state: &mut SlotState,
    ) -> Result<(), ActorProcessingErr> {
        state.cancel_timers();
        if let Some(mut task) = state.task.take() {
            let mut outcome = TaskOutcome::unbilled(
                TaskStatus::Cancelled,
                "the pool shut down while the task was running",
            );
            outcome.approvals = state.end_asks(&mut task.asks, &task.assignment.task);
            state.report_finished(task.assignment.task, outcome);
        }
        if let Some(mut process) = state.process.take() {
            process.terminate(state.args.config.kill_grace).await;
        }
        Ok(())
    }
}

impl SlotState {
    // ---- phase bookkeeping

    /// Applies `input` through the pure state machine. Returns false (and changes nothing)
    /// when the machine has no edge for it.
    fn go(&mut self, input: Input) -> bool {
        let Some(to) = phase::next(self.phase, input) else {
            tracing::debug!(slot = %self.args.slot, phase = %self.phase, %input, "ignored");
            return false;
        };
        tracing::trace!(slot = %self.args.slot, from = %self.phase, %input, %to, "transition");
        self.phase = to;
        self.publish_status();
        true
    }

    fn publish_status(&mut self) {
        let visible = match self.phase {
            _ if self.retiring && self.task.is_none() => SlotStatus::Stopping,
            Phase::Spawning if self.task.is_some() => SlotStatus::Busy,
            Phase::Spawning => SlotStatus::Starting,
            Phase::Idle => SlotStatus::Idle,
            Phase::Configuring | Phase::Running | Phase::Clearing => SlotStatus::Busy,
            Phase::Interrupting => SlotStatus::Cancelling,
            Phase::Terminating if self.task.is_some() => SlotStatus::Cancelling,
            Phase::Terminating | Phase::Stopped if self.after_exit == AfterExit::Cool => {
                SlotStatus::Cold
            }
            Phase::Terminating => SlotStatus::Starting,
            Phase::Stopped => SlotStatus::Restarting,
            Phase::Cold => SlotStatus::Cold,
        };
        let pid = self.process.as_ref().map(ClaudeProcess::pid);
        if (visible, pid) != self.visible {
            self.visible = (visible, pid);
            let _ = self.args.up.events.send_message(SlotEvent::Changed {
                slot: self.args.slot.clone(),
                status: visible,
                pid,
                turns: self.turns,
            });
        }
    }

    fn arm(&mut self, after: Duration, timer: Timer) -> TimerHandle {
        let generation = self.generation;
        self.myself
            .send_after(after, move || SlotMsg::TimerFired { generation, timer })
    }

    fn arm_phase_timer(&mut self, after: Duration, timer: Timer) {
        if let Some(old) = self.phase_timer.take() {
            old.abort();
        }
        self.phase_timer = Some(self.arm(after, timer));
    }

    fn cancel_timers(&mut self) {
        for t in [
            self.phase_timer.take(),
            self.deadline_timer.take(),
            self.retire_timer.take(),
        ]
        .into_iter()
        .flatten()
        {
            t.abort();
        }
    }

    fn send(&mut self, line: String) {
        let sent = self.process.as_ref().is_some_and(|p| p.send_line(line));
        if !sent {
            self.on_broken("claude's stdin is closed".to_owned());
        }
    }

    /// What the exit of the live process should lead to, never weakening a stronger plan.
    fn plan_exit(&mut self, after: AfterExit) {
        if after > self.after_exit {
            self.after_exit = after;
        }
    }

    /// The failure of the live process, classified by whether it had become ready.
    fn failure(&self, reason: String) -> AfterExit {
        let kind = if self.process_ready {
            FailureKind::AfterReady
        } else {
            FailureKind::StartFailed
        };
        AfterExit::Fail(reason, kind)
    }
}

impl From<SlotCommand> for SlotMsg {
    fn from(c: SlotCommand) -> Self {
        SlotMsg::Command(c)
    }
}

impl TryFrom<SlotMsg> for SlotCommand {
    type Error = SlotMsg;
    fn try_from(m: SlotMsg) -> Result<Self, SlotMsg> {
        match m {
            SlotMsg::Command(c) => Ok(c),
            other => Err(other),
        }
    }
}

impl From<Answered> for SlotMsg {
    fn from(a: Answered) -> Self {
        SlotMsg::Answered(a)
    }
}

impl TryFrom<SlotMsg> for Answered {
    type Error = SlotMsg;
    fn try_from(m: SlotMsg) -> Result<Self, SlotMsg> {
        match m {
            SlotMsg::Answered(a) => Ok(a),
            other => Err(other),
        }
    }
}

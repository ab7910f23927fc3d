//! The slot actor: one warm Claude process and the task it runs.
//!
//! **Place in the tree.** Child of the slot supervisor, one per slot. Restarted one-for-one
//! with backoff ([`crate::restart`]) when it fails.
//!
//! **Owns** one [`ClaudeProcess`] at a time (a persistent stream-json CLI in its own process
//! group) and at most one task. The process is warmed up before work arrives: a `/clear`
//! is sent at spawn and its result is the readiness signal. Between tasks another `/clear`
//! gives the next task a fresh conversation, so unrelated tasks never see each other. Model
//! and permission-mode changes go through control requests; an effort change needs other
//! fixed flags, so the process is replaced. After `recycle_after_turns` tasks the process is
//! replaced as well (its memory grows per turn).
//!
//! **Stopping a turn** (cancel or deadline): the interrupt control request, a grace period
//! for the turn's result (so what ran is billed, and nothing more), SIGTERM to the process
//! group, SIGKILL after another grace. The task's terminal state is reported only once the
//! process is reaped and its group swept.
//!
//! **Fails on purpose** (returns `Err`, so the supervisor restarts it with backoff) when its
//! process exits unexpectedly, misses its deadline, prints a line that is not stream-json,
//! breaks its stdin, or does not warm up in time — always after the task in flight got a
//! terminal state that says what happened. A cancel or a recycle replaces the process
//! without failing. Phases follow [`phase::next`]; the edge list is in
//! `supervision-tree.md`.

pub mod phase;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use claude_pool_protocol::cost::{TurnCost, turn_cost};
use claude_pool_protocol::stream::{
    ClaudeEvent, ControlRequest, ResultEvent, deny_control_response_line, user_message_line,
};
use claude_pool_protocol::{PermissionMode, SlotId, SlotStatus, TaskId, TaskStatus};
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{PoolConfig, ProcSettings};
use crate::process::{ClaudeProcess, ExitInfo, ProcessEvent};
use crate::scheduler::SchedulerMsg;
use crate::task::{Assignment, TaskOutcome, TaskProgress};
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
    /// Where readiness, progress and outcomes are reported.
    pub scheduler: ActorRef<SchedulerMsg>,
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
    /// Run this task.
    Run(Assignment),
    /// Stop this task if it is still running here.
    Cancel {
        /// The task.
        task: TaskId,
        /// Why, for the task's error text.
        reason: String,
    },
    /// The process (of `generation`) reported something.
    ProcessReported {
        /// Which process of this slot; events of an older one are ignored.
        generation: u64,
        /// What it reported.
        event: ProcessEvent,
    },
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
}

/// A timer armed with `send_after`; aborting it cancels the message.
type TimerHandle = JoinHandle<Result<(), MessagingErr<SlotMsg>>>;

/// What happens once the process is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AfterExit {
    /// Planned: spawn a replacement.
    Respawn,
    /// The slot failed: return this error so the supervisor restarts the actor.
    Fail(String),
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
}

/// A slot's state. Private: only the actor touches it.
pub struct SlotState {
    /// Id, configuration and the scheduler to report to.
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
    /// What the exit of the current process leads to: a respawn, or the actor's failure.
    after_exit: AfterExit,
    /// Writing to stdin failed: the exit that follows is reported as the cause.
    stdin_broke: bool,
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
            turns: 0,
            session_id: None,
            session_total: 0.0,
            task: None,
            pending_controls: HashMap::new(),
            control_error: None,
            next_request: 0,
            phase_timer: None,
            deadline_timer: None,
            after_exit: AfterExit::Respawn,
            stdin_broke: false,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<SlotMsg>,
        msg: SlotMsg,
        state: &mut SlotState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SlotMsg::Spawn => state.on_spawn(),
            SlotMsg::Run(assignment) => state.on_run(assignment),
            SlotMsg::Cancel { task, reason } => state.on_cancel(&task, reason),
            SlotMsg::ProcessReported { generation, event } => state.on_process(generation, event),
            SlotMsg::TimerFired { generation, timer } => state.on_timer(generation, timer),
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SlotMsg>,
        state: &mut SlotState,
    ) -> Result<(), ActorProcessingErr> {
        state.cancel_timers();
        if let Some(task) = state.task.take() {
            let outcome = TaskOutcome::unbilled(
                TaskStatus::Cancelled,
                "the pool shut down while the task was running",
            );
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
            Phase::Spawning if self.task.is_some() => SlotStatus::Busy,
            Phase::Spawning => SlotStatus::Starting,
            Phase::Idle => SlotStatus::Idle,
            Phase::Configuring | Phase::Running | Phase::Clearing => SlotStatus::Busy,
            Phase::Interrupting => SlotStatus::Cancelling,
            Phase::Terminating if self.task.is_some() => SlotStatus::Cancelling,
            Phase::Terminating => SlotStatus::Starting,
            Phase::Stopped => SlotStatus::Restarting,
        };
        let pid = self.process.as_ref().map(ClaudeProcess::pid);
        if (visible, pid) != self.visible {
            self.visible = (visible, pid);
            let _ = self.args.scheduler.cast(SchedulerMsg::SlotChanged {
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
        for t in [self.phase_timer.take(), self.deadline_timer.take()]
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

    // ---- handlers

    fn on_spawn(&mut self) -> Result<(), ActorProcessingErr> {
        if self.phase != Phase::Stopped {
            return Ok(());
        }
        self.generation += 1;
        let generation = self.generation;
        let settings = match &self.task {
            Some(t) => t.assignment.settings.clone(),
            None => self.args.config.defaults.clone(),
        };
        let spec = self.args.config.spawn_spec(&settings);
        let me = self.myself.clone();
        let process = ClaudeProcess::spawn(&spec, move |event| {
            let _ = me.cast(SlotMsg::ProcessReported { generation, event });
        });
        let process = match process {
            Ok(p) => p,
            Err(e) => {
                let reason = e.to_string();
                if let Some(task) = self.task.take() {
                    let outcome = TaskOutcome::unbilled(
                        TaskStatus::Failed,
                        format!("{}: {reason}", self.args.slot),
                    );
                    self.report_finished(task.assignment.task, outcome);
                }
                return Err(reason.into());
            }
        };
        tracing::debug!(slot = %self.args.slot, pid = process.pid(), "spawned claude");
        self.process = Some(process);
        self.current = settings;
        self.turns = 0;
        self.session_total = 0.0;
        self.pending_controls.clear();
        self.control_error = None;
        self.stdin_broke = false;
        self.after_exit = AfterExit::Respawn;
        self.go(Input::Respawn);
        self.send(user_message_line("/clear"));
        if self.phase == Phase::Spawning {
            self.arm_phase_timer(self.args.config.startup_timeout, Timer::Startup);
        }
        Ok(())
    }

    fn on_run(&mut self, assignment: Assignment) -> Result<(), ActorProcessingErr> {
        if self.phase != Phase::Idle || self.task.is_some() {
            // Not ready after all (it changed after announcing itself): hand it back.
            let _ = self.args.scheduler.cast(SchedulerMsg::TaskRejected {
                slot: self.args.slot.clone(),
                assignment,
                died_before_turn: None,
            });
            return Ok(());
        }
        let remaining = assignment
            .deadline
            .saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            let timeout = humantime::format_duration(assignment.timeout);
            let outcome = TaskOutcome::unbilled(
                TaskStatus::TimedOut,
                format!("timed out after {timeout} before the task could start"),
            );
            self.report_finished(assignment.task, outcome);
            self.became_idle();
            return Ok(());
        }
        self.deadline_timer = Some(self.arm(remaining, Timer::Deadline(assignment.task.clone())));
        self.task = Some(ActiveTask {
            assignment,
            started_at: None,
            turn_began: false,
            model: None,
            verdict: None,
            late_output: None,
            cost: TurnCost::default(),
        });
        self.begin_task();
        Ok(())
    }

    /// Idle with a task in hand: configure the process for it, or replace the process, or
    /// just send the prompt.
    fn begin_task(&mut self) {
        let Some(task) = &self.task else { return };
        let want = task.assignment.settings.clone();
        // The CLI refuses to switch into bypassPermissions unless it was started in it.
        let bypass = Some(PermissionMode::BypassPermissions);
        let needs_respawn = want.effort != self.current.effort
            || (want.model.is_none() && self.current.model.is_some())
            || (want.permission_mode.is_none() && self.current.permission_mode.is_some())
            || (want.permission_mode == bypass && self.current.permission_mode != bypass);
        if needs_respawn {
            self.go(Input::AssignedNeedsRespawn);
            self.after_exit = AfterExit::Respawn;
            self.begin_termination();
            return;
        }
        let mut requests = Vec::new();
        if want.model != self.current.model
            && let Some(m) = &want.model
        {
            requests.push(ControlRequest::SetModel(m.clone()));
        }
        if want.permission_mode != self.current.permission_mode
            && let Some(m) = want.permission_mode
        {
            requests.push(ControlRequest::SetPermissionMode(m.as_str().to_owned()));
        }
        if requests.is_empty() {
            self.go(Input::Assigned);
            self.start_turn();
            return;
        }
        self.control_error = None;
        for request in requests {
            self.next_request += 1;
            let id = format!("{}-{}", self.args.slot, self.next_request);
            let line = request.to_line(&id);
            self.pending_controls.insert(id, request);
            self.send(line);
        }
        self.go(Input::AssignedNeedsControl);
    }

    fn start_turn(&mut self) {
        let Some(task) = self.task.as_mut() else {
            return;
        };
        let prompt = task.assignment.prompt.clone();
        task.started_at = Some(Instant::now());
        let started_at = task.started_at;
        let id = task.assignment.task.clone();
        if let Some(sink) = &task.assignment.progress {
            let _ = sink.send(TaskProgress::Started {
                slot: self.args.slot.clone(),
            });
        }
        let _ = self.args.scheduler.cast(SchedulerMsg::TaskStarted {
            task: id,
            slot: self.args.slot.clone(),
            started_at: started_at.unwrap_or_else(Instant::now),
        });
        self.send(user_message_line(&prompt));
    }

    fn on_cancel(&mut self, task: &TaskId, reason: String) -> Result<(), ActorProcessingErr> {
        self.stop_task(
            task,
            TaskStatus::Cancelled,
            reason,
            Input::Cancel,
            AfterExit::Respawn,
        );
        Ok(())
    }

    /// Cancel and deadline: decide the verdict, then stop what runs.
    fn stop_task(
        &mut self,
        id: &TaskId,
        status: TaskStatus,
        reason: String,
        input: Input,
        after: AfterExit,
    ) {
        let Some(task) = self.task.as_mut().filter(|t| &t.assignment.task == id) else {
            return;
        };
        if task.verdict.is_some() {
            return; // already being stopped
        }
        task.verdict = Some((status, reason));
        let started = task.started_at.is_some();
        if !started {
            // Nothing ran: finish now, billed nothing.
            if let Some(task) = self.task.take() {
                self.finish(task);
            }
        }
        match self.phase {
            Phase::Configuring => {
                self.go(input);
                self.after_exit = after;
                self.begin_termination();
            }
            Phase::Running => {
                self.go(input);
                if let AfterExit::Fail(_) = after {
                    self.after_exit = after;
                }
                self.next_request += 1;
                let id = format!("{}-{}", self.args.slot, self.next_request);
                self.send(ControlRequest::Interrupt.to_line(&id));
                // A failed send already moved the slot on (and armed SIGKILL's timer).
                if self.phase == Phase::Interrupting {
                    self.arm_phase_timer(self.args.config.interrupt_grace, Timer::InterruptGrace);
                }
            }
            Phase::Spawning => {
                self.go(input);
            }
            _ => {}
        }
    }

    fn on_process(
        &mut self,
        generation: u64,
        event: ProcessEvent,
    ) -> Result<(), ActorProcessingErr> {
        if generation != self.generation {
            return Ok(()); // an earlier process of this slot
        }
        match event {
            ProcessEvent::Event(ev) => self.on_claude_event(ev),
            ProcessEvent::BadLine { line, error } => {
                self.on_broken(format!(
                    "claude printed a line that is not stream-json ({error}): {line:?}"
                ));
                Ok(())
            }
            ProcessEvent::WriteFailed(e) => {
                // Almost always the process is dying: its exit (code, signal, stderr) will
                // say more than "broken pipe", so that is what the task and the log get.
                if !matches!(self.phase, Phase::Terminating | Phase::Stopped) {
                    self.stdin_broke = true;
                }
                self.on_broken(format!("writing to claude's stdin failed: {e}"));
                Ok(())
            }
            ProcessEvent::Exited(info) => self.on_exited(info),
        }
    }

    fn on_claude_event(&mut self, ev: ClaudeEvent) -> Result<(), ActorProcessingErr> {
        match ev {
            ClaudeEvent::SystemInit {
                session_id, model, ..
            } => {
                if session_id.is_some() {
                    self.session_id = session_id;
                }
                if let Some(task) = self.task.as_mut()
                    && task.started_at.is_some()
                {
                    task.model = model;
                    task.turn_began = true;
                }
            }
            ClaudeEvent::Assistant(a) => {
                if let Some(sink) = self
                    .task
                    .as_ref()
                    .and_then(|t| t.assignment.progress.as_ref())
                {
                    let _ = sink.send(TaskProgress::Assistant {
                        text: a.text,
                        tool_uses: a.tool_uses,
                    });
                }
            }
            ClaudeEvent::Result(r) => self.on_result(r),
            ClaudeEvent::ControlResponse {
                request_id,
                success,
                error,
            } => {
                self.on_control_response(&request_id, success, error);
            }
            ClaudeEvent::ControlRequest {
                request_id,
                subtype,
            } => {
                // No one can answer a permission prompt here: deny so the turn goes on.
                tracing::warn!(slot = %self.args.slot, %subtype, "claude asked for permission; denied");
                self.send(deny_control_response_line(
                    &request_id,
                    "claude-pool slots cannot grant permissions interactively",
                ));
            }
            ClaudeEvent::System { .. }
            | ClaudeEvent::User
            | ClaudeEvent::ConversationReset
            | ClaudeEvent::Other { .. } => {}
        }
        Ok(())
    }

    fn on_result(&mut self, r: ResultEvent) {
        match self.phase {
            // Only a local command's result (num_turns 0) answers a /clear.
            Phase::Spawning | Phase::Clearing if r.local_command.is_none() && r.num_turns > 0 => {
                tracing::warn!(slot = %self.args.slot, "a turn's result arrived while waiting for /clear; ignored");
            }
            Phase::Running | Phase::Interrupting if r.local_command.is_some() => {
                tracing::warn!(slot = %self.args.slot, "a /clear result arrived while a task ran; ignored");
            }
            Phase::Spawning | Phase::Clearing => {
                self.session_total = r.total_cost_usd;
                if r.session_id.is_some() {
                    self.session_id = r.session_id;
                }
                let input = if self.phase == Phase::Spawning {
                    Input::Handshaken
                } else {
                    Input::ClearDone
                };
                if let Some(t) = self.phase_timer.take() {
                    t.abort();
                }
                self.go(input);
                self.became_idle();
            }
            Phase::Running => {
                let cost = turn_cost(&r, self.session_total);
                self.session_total = r.total_cost_usd;
                self.turns += 1;
                if let Some(mut task) = self.task.take() {
                    task.cost = cost;
                    let outcome = if r.is_error {
                        task.verdict = Some((
                            TaskStatus::Failed,
                            format!("claude reported an error: {}", r.error_text()),
                        ));
                        None
                    } else {
                        Some(r.result.clone().unwrap_or_default())
                    };
                    task.late_output = outcome;
                    if r.session_id.is_some() {
                        self.session_id = r.session_id.clone();
                    }
                    self.finish(task);
                }
                if self.turns >= self.args.config.recycle_after_turns {
                    self.go(Input::TurnEndedRecycle);
                    self.after_exit = AfterExit::Respawn;
                    self.begin_termination();
                } else {
                    self.go(Input::TurnEnded);
                    self.send(user_message_line("/clear"));
                    if self.phase == Phase::Clearing {
                        self.arm_phase_timer(self.args.config.startup_timeout, Timer::Startup);
                    }
                }
            }
            Phase::Interrupting => {
                let cost = turn_cost(&r, self.session_total);
                self.session_total = r.total_cost_usd;
                if let Some(task) = self.task.as_mut() {
                    task.cost = cost;
                    if !r.is_error && r.subtype == "success" {
                        // The answer won the race against the interrupt: keep it.
                        task.verdict = None;
                        task.late_output = Some(r.result.clone().unwrap_or_default());
                    }
                }
                self.go(Input::TurnEnded);
                self.begin_termination();
            }
            _ => {}
        }
    }

    fn on_control_response(&mut self, request_id: &str, success: bool, error: Option<String>) {
        let Some(request) = self.pending_controls.remove(request_id) else {
            return; // e.g. the interrupt's answer
        };
        if success {
            match &request {
                ControlRequest::SetModel(m) => self.current.model = Some(m.clone()),
                ControlRequest::SetPermissionMode(m) => {
                    self.current.permission_mode = m.parse().ok();
                }
                ControlRequest::Interrupt | ControlRequest::EndSession(_) => {}
            }
        } else {
            self.control_error = Some(format!(
                "claude refused {request:?}: {}",
                error.unwrap_or_else(|| "no reason given".into())
            ));
        }
        if self.phase != Phase::Configuring || !self.pending_controls.is_empty() {
            return;
        }
        match self.control_error.take() {
            None => {
                self.go(Input::ControlsDone);
                self.start_turn();
            }
            Some(err) => {
                if let Some(mut task) = self.task.take() {
                    task.verdict = Some((TaskStatus::Failed, err));
                    self.finish(task);
                }
                self.go(Input::ControlRejected);
                self.became_idle();
            }
        }
    }

    fn on_timer(&mut self, generation: u64, timer: Timer) -> Result<(), ActorProcessingErr> {
        // A deadline belongs to its task (named in it), not to a process: it survives the
        // respawn a task may wait for.
        if generation != self.generation && !matches!(timer, Timer::Deadline(_)) {
            return Ok(());
        }
        match (timer, self.phase) {
            (Timer::Startup, Phase::Clearing) => {
                let reason = format!(
                    "claude did not answer /clear within {}",
                    humantime::format_duration(self.args.config.startup_timeout)
                );
                self.on_broken(reason);
            }
            (Timer::Startup, Phase::Spawning) => {
                let reason = format!(
                    "claude did not answer its warm-up within {}",
                    humantime::format_duration(self.args.config.startup_timeout)
                );
                if let Some(mut task) = self.task.take() {
                    task.verdict =
                        Some((TaskStatus::Failed, format!("{}: {reason}", self.args.slot)));
                    self.finish(task);
                }
                self.after_exit = AfterExit::Fail(reason);
                self.go(Input::StartupTimedOut);
                self.begin_termination();
            }
            (Timer::Deadline(id), _) => {
                let Some(task) = self.task.as_ref().filter(|t| t.assignment.task == id) else {
                    return Ok(());
                };
                let timeout = humantime::format_duration(task.assignment.timeout);
                let reason = if task.started_at.is_some() {
                    format!("timed out: no result within {timeout}; the claude process was stopped")
                } else {
                    format!("timed out after {timeout} before the task could start")
                };
                let fail = AfterExit::Fail(format!("task {id} ran past its deadline"));
                self.stop_task(&id, TaskStatus::TimedOut, reason, Input::Deadline, fail);
            }
            (Timer::InterruptGrace, Phase::Interrupting) => {
                self.go(Input::GraceExpired);
                self.begin_termination();
            }
            (Timer::KillGrace, Phase::Terminating) => {
                self.go(Input::GraceExpired);
                if let Some(p) = &self.process {
                    tracing::warn!(slot = %self.args.slot, pid = p.pid(), "claude ignored SIGTERM; sending SIGKILL");
                    p.signal_group(libc::SIGKILL);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The process misbehaved: fail the task, stop the process, then fail the actor.
    fn on_broken(&mut self, reason: String) {
        if matches!(self.phase, Phase::Terminating | Phase::Stopped) {
            return;
        }
        tracing::warn!(slot = %self.args.slot, %reason, "claude process misbehaved");
        if let Some(task) = self.task.as_mut()
            && task.verdict.is_none()
        {
            task.verdict = Some((TaskStatus::Failed, reason.clone()));
        }
        self.after_exit = AfterExit::Fail(reason);
        self.go(Input::Broken);
        self.begin_termination();
    }

    fn on_exited(&mut self, info: ExitInfo) -> Result<(), ActorProcessingErr> {
        let pid = self
            .process
            .as_ref()
            .map(ClaudeProcess::pid)
            .unwrap_or_default();
        let planned = self.phase == Phase::Terminating && !self.stdin_broke;
        let was = self.phase;
        if let Some(t) = self.phase_timer.take() {
            t.abort();
        }
        if !planned {
            let reason = format!("claude process {pid} {info}");
            // A verdict from the failed write of this very prompt does not count: the exit
            // is what happened.
            let stdin_broke = self.stdin_broke;
            let unbegun = self.task.as_ref().is_some_and(|t| {
                let verdict_free = match &t.verdict {
                    None => true,
                    Some((status, _)) => stdin_broke && *status == TaskStatus::Failed,
                };
                t.started_at.is_some() && !t.turn_began && verdict_free
            });
            if unbegun && let Some(task) = self.task.take() {
                // Nothing of the turn happened (no init event): the task can run elsewhere.
                if let Some(t) = self.deadline_timer.take() {
                    t.abort();
                }
                let _ = self.args.scheduler.cast(SchedulerMsg::TaskRejected {
                    slot: self.args.slot.clone(),
                    assignment: task.assignment,
                    died_before_turn: Some(format!("{reason} before its turn began")),
                });
            }
            tracing::warn!(slot = %self.args.slot, phase = %was, %reason, "claude process exited unexpectedly");
            if let Some(task) = self.task.as_mut() {
                let stdin_verdict = task
                    .verdict
                    .as_ref()
                    .is_some_and(|(s, _)| *s == TaskStatus::Failed)
                    && self.stdin_broke;
                if task.verdict.is_none() || stdin_verdict {
                    let when = if task.started_at.is_some() {
                        "while running the task"
                    } else {
                        "before the task started"
                    };
                    task.verdict = Some((TaskStatus::Failed, format!("{reason} {when}")));
                }
            }
            self.after_exit = AfterExit::Fail(reason);
        }
        self.go(Input::ProcessExited);
        // Drop the handle only now: the task's state is reported after the process is gone.
        self.process = None;
        if let Some(task) = self.task.take() {
            let held_for_respawn = task.started_at.is_none() && task.verdict.is_none();
            if held_for_respawn && self.after_exit == AfterExit::Respawn {
                self.task = Some(task);
            } else {
                self.finish(task);
            }
        }
        match std::mem::replace(&mut self.after_exit, AfterExit::Respawn) {
            AfterExit::Respawn => self.on_spawn(),
            AfterExit::Fail(reason) => {
                if let Some(task) = self.task.take() {
                    self.finish(task);
                }
                Err(reason.into())
            }
        }
    }

    // ---- effects

    /// EOF on stdin and SIGTERM to the group; SIGKILL when the grace runs out.
    fn begin_termination(&mut self) {
        if let Some(p) = self.process.as_mut() {
            p.close_stdin();
            p.signal_group(libc::SIGTERM);
        }
        self.arm_phase_timer(self.args.config.kill_grace, Timer::KillGrace);
    }

    fn became_idle(&mut self) {
        if self.task.is_some() {
            // A task waited for this process (it needed other flags): run it now.
            self.begin_task();
            return;
        }
        let Some(pid) = self.process.as_ref().map(ClaudeProcess::pid) else {
            return;
        };
        let _ = self.args.scheduler.cast(SchedulerMsg::SlotReady {
            slot: self.args.slot.clone(),
            actor: self.myself.clone(),
            pid,
            turns: self.turns,
        });
    }

    fn finish(&mut self, task: ActiveTask) {
        if let Some(t) = self.deadline_timer.take() {
            t.abort();
        }
        let (status, output, error) = match task.verdict {
            Some((status, reason)) => (status, None, Some(reason)),
            None => (TaskStatus::Completed, task.late_output, None),
        };
        let outcome = TaskOutcome {
            status,
            output,
            error,
            cost: task.cost,
            session_id: task.started_at.and(self.session_id.clone()),
            model: task.model,
            started_at: task.started_at,
        };
        self.report_finished(task.assignment.task, outcome);
    }

    fn report_finished(&self, task: TaskId, outcome: TaskOutcome) {
        let _ = self.args.scheduler.cast(SchedulerMsg::TaskFinished {
            task,
            slot: self.args.slot.clone(),
            outcome,
        });
    }
}

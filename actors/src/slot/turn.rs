//! A slot's side of one task: taking it, configuring the process for it, writing the
//! prompt, following the turn's events (progress and live spend), and ending it — by its
//! result, or by a cancel, a deadline or a budget stop.

use std::collections::HashSet;

use claude_pool_protocol::cost::{TurnCost, turn_cost};
use claude_pool_protocol::pricing::call_cost_usd;
use claude_pool_protocol::stream::{
    AssistantEvent, ClaudeEvent, ControlRequest, ResultEvent, user_message_line,
};
use claude_pool_protocol::{PermissionMode, TaskId, TaskStatus};
use ractor::ActorProcessingErr;
use tokio::time::Instant;

use super::phase::{Input, Phase};
use super::{ActiveTask, AfterExit, SlotState, Timer};
use crate::process::ProcessEvent;
use crate::task::{Assignment, TaskOutcome, TaskProgress};
use crate::wire::{SlotCommand, SlotEvent, SlotLink, Spend};

impl SlotState {
    /// What the scheduler said.
    pub(super) fn on_command(&mut self, command: SlotCommand) -> Result<(), ActorProcessingErr> {
        match command {
            SlotCommand::Run(assignment) => self.on_run(assignment),
            SlotCommand::StartRecorded { task, result } => {
                self.on_start_recorded(&task, result);
                Ok(())
            }
            SlotCommand::Cancel {
                task,
                status,
                reason,
            } => self.on_cancel(&task, status, reason),
            SlotCommand::Release => {
                self.on_release();
                Ok(())
            }
            SlotCommand::Wake => self.on_wake(),
        }
    }

    pub(super) fn on_run(&mut self, assignment: Assignment) -> Result<(), ActorProcessingErr> {
        if self.phase != Phase::Idle || self.task.is_some() || self.retiring {
            // Not ready after all (it changed after announcing itself): hand it back.
            let _ = self.args.up.events.send_message(SlotEvent::Rejected {
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
            live_usd: 0.0,
            live_tokens: 0,
            priced: HashSet::new(),
            asks: Default::default(),
            tool_calls: 0,
            rate_limited: false,
        });
        self.begin_task();
        Ok(())
    }

    /// Idle with a task in hand: configure the process for it, or replace the process, or
    /// just send the prompt.
    pub(super) fn begin_task(&mut self) {
        let Some(task) = &self.task else { return };
        let want = task.assignment.settings.clone();
        // The CLI refuses to switch into bypassPermissions unless it was started in it.
        let bypass = Some(PermissionMode::BypassPermissions);
        let needs_respawn = want.effort != self.current.effort
            || want.cwd != self.current.cwd
            || want.depth != self.current.depth
            || want.allowed_tools != self.current.allowed_tools
            || task.assignment.resume.is_some()
            || (want.model.is_none() && self.current.model.is_some())
            || (want.permission_mode.is_none() && self.current.permission_mode.is_some())
            || (want.permission_mode == bypass && self.current.permission_mode != bypass);
        if needs_respawn {
            self.go(Input::AssignedNeedsRespawn);
            self.plan_exit(AfterExit::Respawn);
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

    /// The process is ready for the task: its prompt goes now, or — with a store file —
    /// once the store has committed that the task started ([`SlotMsg::StartRecorded`]).
    pub(super) fn start_turn(&mut self) {
        let Some(task) = self.task.as_ref() else {
            return;
        };
        let line = match &task.assignment.preamble {
            Some(pre) => {
                let mut text = String::with_capacity(pre.len() + task.assignment.prompt.len());
                text.push_str(pre);
                text.push_str(&task.assignment.prompt);
                user_message_line(&text)
            }
            None => user_message_line(&task.assignment.prompt),
        };
        let ack = self
            .args
            .record_starts
            .then(|| SlotLink::new(self.myself.get_derived()));
        let _ = self.args.up.events.send_message(SlotEvent::Started {
            task: task.assignment.task.clone(),
            slot: self.args.slot.clone(),
            started_at: Instant::now(),
            ack: ack.clone(),
        });
        if ack.is_some() {
            self.unsent = Some(line);
        } else {
            self.write_prompt(line);
        }
    }

    /// Writes the task's prompt: from here on the task has started.
    fn write_prompt(&mut self, line: String) {
        let Some(task) = self.task.as_mut() else {
            return;
        };
        task.started_at = Some(Instant::now());
        if let Some(sink) = &self.args.transcripts {
            sink.line(&task.assignment.task.0, line.trim_end().as_bytes().to_vec());
        }
        if let Some(sink) = &task.assignment.progress {
            let _ = sink.send(TaskProgress::Started {
                slot: self.args.slot.clone(),
            });
        }
        self.send(line);
    }

    /// The store answered for the start of `task`: its prompt goes, or (the start could
    /// not be recorded, or the task is no longer this slot's) it fails unsent.
    pub(super) fn on_start_recorded(&mut self, task: &TaskId, result: Result<(), String>) {
        let ours = self
            .task
            .as_ref()
            .is_some_and(|t| &t.assignment.task == task);
        if !ours || self.phase != Phase::Running {
            return; // stopped meanwhile; what held the prompt already dropped it
        }
        let Some(line) = self.unsent.take() else {
            return;
        };
        match result {
            Ok(()) => self.write_prompt(line),
            Err(e) => {
                tracing::warn!(slot = %self.args.slot, task = %task, error = %e, "the task's start could not be recorded; its prompt was not sent");
                let after = if self.retiring {
                    AfterExit::Retire
                } else {
                    AfterExit::Respawn
                };
                self.end_unsent(
                    (
                        TaskStatus::Failed,
                        format!(
                            "its start could not be recorded, so it was not sent to claude: {e}"
                        ),
                    ),
                    after,
                );
            }
        }
    }

    /// Ends the task whose prompt was held and never written (billed nothing), and leaves
    /// the process as a finished turn would: cleared for the next task, or replaced.
    fn end_unsent(&mut self, verdict: (TaskStatus, String), after: AfterExit) {
        self.unsent = None;
        if let Some(mut task) = self.task.take() {
            task.verdict = Some(verdict);
            self.finish(task);
        }
        let resumed = self.resuming.take().is_some();
        if resumed || self.retiring || matches!(after, AfterExit::Retire) {
            self.go(Input::TurnEndedRecycle);
            self.plan_exit(after);
            self.begin_termination();
        } else {
            self.go(Input::TurnEnded);
            self.send(user_message_line("/clear"));
            if self.phase == Phase::Clearing {
                self.arm_phase_timer(self.args.config.startup_timeout, Timer::Startup);
            }
        }
    }

    pub(super) fn on_cancel(
        &mut self,
        task: &TaskId,
        status: TaskStatus,
        reason: String,
    ) -> Result<(), ActorProcessingErr> {
        let after = if self.retiring {
            AfterExit::Retire
        } else {
            AfterExit::Respawn
        };
        self.stop_task(task, status, reason, Input::Cancel, after);
        Ok(())
    }

    /// Cancel, deadline, budget stop: decide the verdict, then stop what runs.
    pub(super) fn stop_task(
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
        if self.unsent.is_some() {
            // Its prompt is still held for the store: nothing reached claude.
            self.end_unsent((status, reason), after);
            return;
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
                self.plan_exit(after);
                self.begin_termination();
            }
            Phase::Running => {
                self.go(input);
                self.plan_exit(after);
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
                if self.retiring && self.go(Input::Retire) {
                    self.begin_termination();
                }
            }
            _ => {}
        }
    }

    pub(super) fn on_process(
        &mut self,
        generation: u64,
        event: ProcessEvent,
    ) -> Result<(), ActorProcessingErr> {
        if generation != self.generation {
            return Ok(()); // an earlier process of this slot
        }
        match event {
            ProcessEvent::Event(ev, raw) => {
                if let (Some(sink), Some(raw)) = (&self.args.transcripts, raw)
                    && let Some(task) = self.task.as_ref().filter(|t| t.started_at.is_some())
                {
                    sink.line(&task.assignment.task.0, raw);
                }
                self.on_claude_event(ev)
            }
            ProcessEvent::BadLine { line, error } => {
                self.on_broken(format!(
                    "claude printed a line that is not stream-json ({error}): {line:?}"
                ));
                Ok(())
            }
            ProcessEvent::WriteFailed(e) => {
                // Almost always the process is dying: its exit (code, signal, stderr) will
                // say more than "broken pipe", so that is what the task and the log get.
                let live = !matches!(self.phase, Phase::Terminating | Phase::Stopped);
                if live {
                    self.stdin_broke = true;
                }
                if self.resuming.is_some() {
                    // A CLI that cannot resume the session exits without reading the
                    // prompt: the task's failure, not the slot's, which its exit tells.
                    if live {
                        self.go(Input::Broken);
                        self.begin_termination();
                    }
                    return Ok(());
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
                if self.resuming.take().is_some() {
                    // The conversation was resumed: this process works.
                    self.on_ready();
                }
                if let Some(task) = self.task.as_mut()
                    && task.started_at.is_some()
                {
                    task.model = model;
                    task.turn_began = true;
                }
            }
            ClaudeEvent::Assistant(a) => self.on_assistant(a),
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
                request,
            } => self.on_control_request(request_id, &subtype, request),
            ClaudeEvent::PermissionDenied {
                tool_name,
                message,
                reason,
            } => self.on_cli_denial(tool_name, message, reason),
            ClaudeEvent::ControlCancel { request_id } => self.on_withdrawn(&request_id),
            ClaudeEvent::ApiRetry {
                error_status,
                error,
                attempt,
                ..
            } => self.on_api_retry(error_status, error, attempt),
            ClaudeEvent::RateLimit(info) => {
                if !info.windows.is_empty() {
                    let _ = self
                        .args
                        .up
                        .events
                        .send_message(SlotEvent::ApiWindows(info));
                }
            }
            ClaudeEvent::System { .. }
            | ClaudeEvent::User
            | ClaudeEvent::ConversationReset
            | ClaudeEvent::Other { .. } => {}
        }
        Ok(())
    }

    /// A turn the API refused for rate or load before it ran a tool or spent anything goes
    /// back to the scheduler whole, to run again after a backoff.
    fn hand_back_rate_limited(&mut self, task: ActiveTask, error: String) {
        if let Some(t) = self.deadline_timer.take() {
            t.abort();
        }
        if let Some(t) = self.retire_timer.take() {
            t.abort();
        }
        tracing::info!(slot = %self.args.slot, task = %task.assignment.task, %error, "the API refused the turn for rate or load; handed back");
        let _ = self.args.up.events.send_message(SlotEvent::RateLimited {
            slot: self.args.slot.clone(),
            assignment: task.assignment,
            error,
        });
    }

    /// The CLI retries a failed API call. Rate and load refusals (429, 529) tell the
    /// scheduler to hold back; a refusal that no retry can mend (a bad key, a model or
    /// request the API rejects) ends the turn at once, since the CLI would retry even
    /// those for minutes.
    fn on_api_retry(&mut self, status: Option<u64>, error: Option<String>, attempt: u64) {
        match status {
            Some(429 | 529) => {
                let _ = self.args.up.events.send_message(SlotEvent::ApiPressure {
                    slot: self.args.slot.clone(),
                    status: status.unwrap_or(429),
                });
            }
            Some(s @ (400 | 401 | 403 | 404 | 413)) => {
                let Some(id) = self.task.as_ref().map(|t| t.assignment.task.clone()) else {
                    return;
                };
                let after = if self.retiring {
                    AfterExit::Retire
                } else {
                    AfterExit::Respawn
                };
                let why = format!(
                    "the API refused the request (HTTP {s}{}); such a refusal is not retried (attempt {attempt} stopped)",
                    error.map(|e| format!(": {e}")).unwrap_or_default()
                );
                self.stop_task(&id, TaskStatus::Failed, why, Input::Cancel, after);
            }
            _ => {}
        }
    }

    /// Progress for the caller, and the call's cost for the ledger: each new API message's
    /// usage is final for its input side the moment it starts.
    fn on_assistant(&mut self, a: AssistantEvent) {
        let Some(task) = self.task.as_mut().filter(|t| t.turn_began) else {
            return;
        };
        let new_call = !a.synthetic
            && match &a.message_id {
                Some(id) => task.priced.insert(id.clone()),
                None => true,
            };
        if new_call && let Some(usage) = &a.usage {
            let model = a.model.as_deref().or(task.model.as_deref()).unwrap_or("");
            task.live_usd += call_cost_usd(model, usage);
            task.live_tokens += usage.total();
            let _ = self.args.up.spend.send_message(Spend {
                task: task.assignment.task.clone(),
                usd: task.live_usd,
                tokens: task.live_tokens,
            });
        }
        task.tool_calls += a.tool_uses.len();
        if let Some(sink) = task.assignment.progress.as_ref() {
            let _ = sink.send(TaskProgress::Assistant {
                text: a.text,
                tool_uses: a.tool_uses,
            });
        }
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
                    self.on_ready();
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
            Phase::Running if self.resuming.is_some() => {
                // A result before the resumed turn's init: the CLI refused the session.
                let session = self.resuming.take().unwrap_or_default();
                if let Some(mut task) = self.task.take() {
                    task.verdict = Some((
                        TaskStatus::Failed,
                        format!("session {session} cannot be resumed: {}", r.error_text()),
                    ));
                    self.finish(task);
                }
                self.go(Input::TurnEndedRecycle);
                self.plan_exit(AfterExit::Respawn);
                self.begin_termination();
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
                        task.rate_limited = matches!(r.api_error_status, Some(429 | 529))
                            && task.tool_calls == 0
                            && task.cost.usd == 0.0;
                        // A turn handed back counts as a refusal there; one that is not
                        // (it ran a tool first) is told here.
                        if matches!(r.api_error_status, Some(429 | 529)) && !task.rate_limited {
                            let _ = self.args.up.events.send_message(SlotEvent::ApiPressure {
                                slot: self.args.slot.clone(),
                                status: r.api_error_status.unwrap_or(429),
                            });
                        }
                        None
                    } else {
                        Some(r.result.clone().unwrap_or_default())
                    };
                    task.late_output = outcome;
                    if r.session_id.is_some() {
                        self.session_id = r.session_id.clone();
                    }
                    if task.rate_limited {
                        self.hand_back_rate_limited(task, r.error_text());
                    } else {
                        self.finish(task);
                    }
                }
                if self.retiring
                    || self.turns >= self.args.config.recycle_after_turns
                    || self.over_memory()
                {
                    self.go(Input::TurnEndedRecycle);
                    self.plan_exit(AfterExit::Respawn);
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
}

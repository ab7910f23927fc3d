//! A slot's process from spawn to exit: warm-up, readiness, timers, misbehaviour, the exit
//! and what it leads to (a respawn, the actor's failure, or the slot's removal), and the
//! reports a finished task makes.

use crate::process::SLOT_ENV;
use crate::process::leftovers::STORE_ENV;
use std::time::Duration;

use claude_pool_protocol::stream::user_message_line;
use claude_pool_protocol::{TaskId, TaskStatus};
use ractor::ActorProcessingErr;

use super::phase::{Input, Phase};
use super::{ActiveTask, AfterExit, SlotMsg, SlotState, Timer};
use crate::process::{ClaudeProcess, ExitInfo};
use crate::restart::{FailureKind, SlotFailure};
use crate::task::{TaskOutcome, WorktreeState};
use crate::wire::{Healthy, SlotEvent, SlotLink};

impl SlotState {
    // ---- process life

    pub(super) fn on_spawn(&mut self) -> Result<(), ActorProcessingErr> {
        if !matches!(self.phase, Phase::Stopped | Phase::Cold) {
            return Ok(());
        }
        self.generation += 1;
        let generation = self.generation;
        let settings = match &self.task {
            Some(t) => t.assignment.settings.clone(),
            None => self.args.config.defaults.clone(),
        };
        let cwd = self.worktree.as_ref().map(|w| w.path.as_path());
        // A task that continues a conversation gets a process started on it.
        let resume = self.task.as_ref().and_then(|t| t.assignment.resume.clone());
        let mut spec = self
            .args
            .config
            .spawn_spec(&settings, cwd, resume.as_deref());
        spec.keep_lines = self.args.transcripts.is_some();
        // Which slot a process serves, for its logs and for faults injected on purpose
        // (`crate::pool::faults`).
        spec.env
            .push((SLOT_ENV.into(), self.args.slot.to_string().into()));
        // Which store's server started it, so the next server on that store can find what
        // this process leaves behind if the server is killed (`crate::process::leftovers`).
        if let Some(marker) = &self.args.config.process_marker {
            spec.env
                .push((STORE_ENV.into(), marker.clone().into_os_string()));
        }
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
                return Err(SlotFailure {
                    reason,
                    kind: FailureKind::StartFailed,
                }
                .into());
            }
        };
        tracing::debug!(slot = %self.args.slot, pid = process.pid(), "spawned claude");
        self.process = Some(process);
        self.process_ready = false;
        self.current = settings;
        self.turns = 0;
        self.session_total = 0.0;
        self.pending_controls.clear();
        self.control_error = None;
        self.stdin_broke = false;
        self.after_exit = AfterExit::Respawn;
        self.go(Input::Respawn);
        if let Some(session) = resume {
            // No warm-up: a `/clear` would leave the conversation. The prompt goes first,
            // and the turn's init event shows the session was resumed.
            self.resuming = Some(session);
            self.go(Input::Resumed);
            self.start_turn();
            return Ok(());
        }
        self.resuming = None;
        self.send(user_message_line("/clear"));
        if self.phase == Phase::Spawning {
            self.arm_phase_timer(self.args.config.startup_timeout, Timer::Startup);
        }
        Ok(())
    }

    /// The warm-up `/clear` answered: the process works.
    pub(super) fn on_ready(&mut self) {
        self.process_ready = true;
        if !self.reported_healthy {
            self.reported_healthy = true;
            let _ = self
                .args
                .supervisor
                .send_message(Healthy(self.args.slot.clone()));
        }
    }

    pub(super) fn on_retire(&mut self, grace: Duration) -> Result<(), ActorProcessingErr> {
        if self.retiring {
            return Ok(());
        }
        if self.phase == Phase::Cold {
            // No process: the slot leaves at once.
            self.retiring = true;
            self.go(Input::Retire);
            return Ok(());
        }
        self.retiring = true;
        tracing::info!(slot = %self.args.slot, phase = %self.phase, "removing the slot");
        self.plan_exit(AfterExit::Retire);
        let waiting = self
            .task
            .as_ref()
            .is_some_and(|t| t.started_at.is_none() && t.verdict.is_none());
        if waiting && let Some(task) = self.task.take() {
            // Its prompt never reached Claude: it can run on another slot.
            if let Some(t) = self.deadline_timer.take() {
                t.abort();
            }
            let _ = self.args.up.events.send_message(SlotEvent::Rejected {
                slot: self.args.slot.clone(),
                assignment: task.assignment,
                died_before_turn: None,
            });
        }
        if self.task.is_some() {
            self.retire_timer = Some(self.arm(grace, Timer::RetireGrace));
            self.publish_status();
            return Ok(());
        }
        if self.go(Input::Retire) {
            self.begin_termination();
        } else {
            // Interrupting or terminating already: the planned exit now retires.
            self.publish_status();
        }
        Ok(())
    }

    pub(super) fn on_timer(
        &mut self,
        generation: u64,
        timer: Timer,
    ) -> Result<(), ActorProcessingErr> {
        // A deadline belongs to its task (named in it), not to a process: it survives the
        // respawn a task may wait for. So does a removal's grace.
        if generation != self.generation
            && !matches!(timer, Timer::Deadline(_) | Timer::RetireGrace)
        {
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
                self.plan_exit(AfterExit::Fail(reason, FailureKind::StartFailed));
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
                let fail = self.failure(format!("task {id} ran past its deadline"));
                self.stop_task(&id, TaskStatus::TimedOut, reason, Input::Deadline, fail);
            }
            (Timer::RetireGrace, _) => {
                let Some(id) = self.task.as_ref().map(|t| t.assignment.task.clone()) else {
                    return Ok(());
                };
                let grace = humantime::format_duration(self.args.config.scale_down_grace);
                let reason = format!(
                    "cancelled: {} was removed by a scale-down and the task did not finish within its {grace} grace",
                    self.args.slot
                );
                self.stop_task(
                    &id,
                    TaskStatus::Cancelled,
                    reason,
                    Input::Cancel,
                    AfterExit::Retire,
                );
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
    pub(super) fn on_broken(&mut self, reason: String) {
        if matches!(self.phase, Phase::Terminating | Phase::Stopped) {
            return;
        }
        tracing::warn!(slot = %self.args.slot, %reason, "claude process misbehaved");
        if let Some(task) = self.task.as_mut()
            && task.verdict.is_none()
        {
            task.verdict = Some((TaskStatus::Failed, reason.clone()));
        }
        let fail = self.failure(reason);
        self.plan_exit(fail);
        self.go(Input::Broken);
        self.begin_termination();
    }

    pub(super) fn on_exited(&mut self, info: ExitInfo) -> Result<(), ActorProcessingErr> {
        let pid = self
            .process
            .as_ref()
            .map(ClaudeProcess::pid)
            .unwrap_or_default();
        let mut planned = self.phase == Phase::Terminating && !self.stdin_broke;
        let was = self.phase;
        // A prompt held for the store dies with its process unsent.
        let held = self.unsent.take().is_some();
        if let Some(t) = self.phase_timer.take() {
            t.abort();
        }
        if !planned && let Some(session) = self.resuming.take() {
            // The CLI could not resume the conversation: the task's failure, not the slot's.
            // A failed write of the prompt to the dying process says less than this.
            let stdin_broke = self.stdin_broke;
            if let Some(task) = self.task.as_mut()
                && (task.verdict.is_none() || stdin_broke)
            {
                task.verdict = Some((
                    TaskStatus::Failed,
                    format!("session {session} cannot be resumed: claude process {pid} {info}"),
                ));
            }
            planned = true;
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
                (t.started_at.is_some() || held) && !t.turn_began && verdict_free
            });
            if unbegun && let Some(task) = self.task.take() {
                // Nothing of the turn happened (no init event): the task can run elsewhere.
                if let Some(t) = self.deadline_timer.take() {
                    t.abort();
                }
                let _ = self.args.up.events.send_message(SlotEvent::Rejected {
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
            let kind = FailureKind::of_exit(self.process_ready, info.signal);
            self.after_exit = AfterExit::Fail(reason, kind);
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
            AfterExit::Respawn if self.retiring => Ok(()),
            AfterExit::Respawn => self.on_spawn(),
            AfterExit::Cool => {
                self.go(Input::Cooled);
                Ok(())
            }
            AfterExit::Retire => Ok(()),
            AfterExit::Fail(reason, kind) => {
                if let Some(task) = self.task.take() {
                    self.finish(task);
                }
                Err(SlotFailure { reason, kind }.into())
            }
        }
    }

    // ---- effects

    /// EOF on stdin and SIGTERM to the group; SIGKILL when the grace runs out.
    pub(super) fn begin_termination(&mut self) {
        if let Some(p) = self.process.as_mut() {
            p.close_stdin();
            p.signal_group(libc::SIGTERM);
        }
        self.arm_phase_timer(self.args.config.kill_grace, Timer::KillGrace);
    }

    pub(super) fn became_idle(&mut self) {
        if self.task.is_some() {
            // A task waited for this process (it needed other flags): run it now.
            self.begin_task();
            return;
        }
        if self.retiring {
            if self.go(Input::Retire) {
                self.begin_termination();
            }
            return;
        }
        let Some(pid) = self.process.as_ref().map(ClaudeProcess::pid) else {
            return;
        };
        let _ = self.args.up.events.send_message(SlotEvent::Ready {
            slot: self.args.slot.clone(),
            link: SlotLink::new(self.myself.get_derived()),
            pid,
            turns: self.turns,
            worktree: self.worktree.as_ref().map(|w| w.path.clone()),
            cwd: self.current.cwd.clone(),
        });
    }

    pub(super) fn finish(&mut self, mut task: ActiveTask) {
        if let Some(t) = self.deadline_timer.take() {
            t.abort();
        }
        if let Some(t) = self.retire_timer.take() {
            t.abort();
        }
        let (status, output, error) = match task.verdict {
            Some((status, reason)) => (status, None, Some(reason)),
            None => (TaskStatus::Completed, task.late_output, None),
        };
        let worktree = self.worktree.as_ref().map(|w| WorktreeState {
            path: w.path.clone(),
            branch: w.branch.clone(),
            commit: crate::worktree::head_commit(&w.path),
        });
        let approvals = self.end_asks(&mut task.asks, &task.assignment.task);
        let outcome = TaskOutcome {
            status,
            output,
            error,
            cost: task.cost,
            session_id: task.started_at.and(self.session_id.clone()),
            model: task.model,
            started_at: task.started_at,
            worktree,
            approvals,
            rate_limited: task.rate_limited,
        };
        self.report_finished(task.assignment.task, outcome);
    }

    pub(super) fn report_finished(&self, task: TaskId, outcome: TaskOutcome) {
        if let Some(sink) = &self.args.transcripts {
            sink.close(&task.0);
        }
        let _ = self.args.up.events.send_message(SlotEvent::Finished {
            task,
            slot: self.args.slot.clone(),
            outcome,
        });
    }
}

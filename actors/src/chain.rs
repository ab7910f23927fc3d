//! The chain actor: one per chain, running its steps as pool tasks in dependency order.
//!
//! **Place in the tree.** Child of the chain supervisor ([`crate::chains`]), which keeps
//! its reports. Never restarted: a restart would run steps again and pay for them twice.
//! If it fails, its supervisor marks the chain failed and cancels its running tasks.
//!
//! **Owns** its steps' state: pending, running (a task in the scheduler), completed, failed,
//! skipped or cancelled, with every attempt recorded. A step starts as soon as the steps it
//! depends on are done, its prompt rendered from their outputs ([`plan`]); it is a task like
//! any other, so deadlines, the budget and the context table apply to it. Each task is
//! awaited by a small forwarding task that turns the scheduler's answer into
//! [`ChainMsg::StepFinished`], so the actor never blocks on a step.
//!
//! **Failure policy** per step: `abort` stops the chain (running steps are cancelled, the
//! rest never run), `skip` records the failure and goes on with an empty output, `retry`
//! runs the step again up to its `retries`, then aborts. A cancel stops everything now; a
//! drain lets running steps finish and starts nothing new.

pub mod plan;
mod report;

use std::sync::Arc;

use claude_pool_protocol::tools::{AttemptReport, ChainReport, FailurePolicy, TaskReport};
use claude_pool_protocol::{ChainId, StepStatus, TaskId, TaskStatus};
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef, RpcReplyPort};
use tokio::sync::mpsc;

use crate::scheduler::SchedulerMsg;
use crate::task::TaskSpec;
use plan::ChainPlan;

/// Where a running chain's progress lines go (for MCP progress notifications).
pub type ChainProgressSink = mpsc::UnboundedSender<String>;

/// Behaviour of a chain actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChainActor;

/// What a chain actor starts with.
#[derive(Debug, Clone)]
pub struct ChainArgs {
    /// The chain's id.
    pub id: ChainId,
    /// Its validated steps.
    pub plan: Arc<ChainPlan>,
    /// Where step tasks are submitted.
    pub scheduler: ActorRef<SchedulerMsg>,
    /// Where reports go.
    pub supervisor: DerivedActorRef<ChainReport>,
    /// Where progress lines go, if anyone listens.
    pub progress: Option<ChainProgressSink>,
    /// The depth of the request that started the chain; `None`: the server's own.
    pub depth: Option<u32>,
}

/// Messages of a chain actor.
#[derive(Debug)]
pub enum ChainMsg {
    /// Start the steps that depend on nothing.
    Start,
    /// A step's task is terminal (or could not be awaited: `None`).
    StepFinished {
        /// The step's index.
        step: usize,
        /// The task.
        task: TaskId,
        /// Its report.
        report: Option<TaskReport>,
    },
    /// Stop: cancel running steps, run nothing more.
    Cancel(String),
    /// Start nothing more; let running steps finish. Answered once that holds.
    Drain(RpcReplyPort<()>),
}

#[derive(Debug, Clone)]
struct StepState {
    status: StepStatus,
    output: Option<String>,
    error: Option<String>,
    attempts: Vec<AttemptReport>,
}

/// Why the chain stops early.
#[derive(Debug, Clone, PartialEq)]
enum Stop {
    /// A step failed for good.
    Abort(String),
    /// A caller (or shutdown) cancelled it.
    Cancel(String),
    /// A drain: nothing new starts.
    Drain,
}

/// A chain actor's state.
#[derive(Debug)]
pub struct ChainState {
    args: ChainArgs,
    myself: ActorRef<ChainMsg>,
    steps: Vec<StepState>,
    stop: Option<Stop>,
}

impl Actor for ChainActor {
    type Msg = ChainMsg;
    type State = ChainState;
    type Arguments = ChainArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ChainMsg>,
        args: ChainArgs,
    ) -> Result<ChainState, ActorProcessingErr> {
        let steps = args
            .plan
            .steps
            .iter()
            .map(|_| StepState {
                status: StepStatus::Pending,
                output: None,
                error: None,
                attempts: Vec::new(),
            })
            .collect();
        myself.cast(ChainMsg::Start)?;
        Ok(ChainState {
            args,
            myself,
            steps,
            stop: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ChainMsg>,
        msg: ChainMsg,
        state: &mut ChainState,
    ) -> Result<(), ActorProcessingErr> {
        if let ChainMsg::StepFinished { step, task, .. } = &msg {
            tracing::debug!(chain = %state.args.id, step, %task, "chain step finished");
        }
        match msg {
            ChainMsg::Start => {}
            ChainMsg::StepFinished { step, task, report } => {
                state.on_step_finished(step, task, report).await;
            }
            ChainMsg::Cancel(reason) => state.on_cancel(reason),
            ChainMsg::Drain(reply) => {
                if state.stop.is_none() {
                    state.stop = Some(Stop::Drain);
                }
                let _ = reply.send(());
            }
        }
        state.launch_ready().await;
        let report = state.report();
        let done = report.status.is_terminal();
        let _ = state.args.supervisor.send_message(report);
        if done {
            tracing::debug!(chain = %state.args.id, "chain ended");
            myself.stop(None);
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ChainMsg>,
        state: &mut ChainState,
    ) -> Result<(), ActorProcessingErr> {
        tracing::debug!(chain = %state.args.id, "chain actor stopped");
        Ok(())
    }
}

impl ChainState {
    fn say(&self, line: String) {
        if let Some(p) = &self.args.progress {
            let _ = p.send(line);
        }
    }

    fn running(&self) -> impl Iterator<Item = &TaskId> {
        self.steps
            .iter()
            .filter(|s| s.status == StepStatus::Running)
            .filter_map(|s| s.attempts.last().map(|a| &a.task_id))
    }

    /// Submits every pending step whose dependencies are done.
    async fn launch_ready(&mut self) {
        loop {
            if self.stop.is_some() {
                return;
            }
            let ready = (0..self.steps.len()).find(|&i| {
                self.steps[i].status == StepStatus::Pending
                    && self.args.plan.steps[i]
                        .deps
                        .iter()
                        .all(|&d| self.steps[d].status.is_done())
            });
            let Some(i) = ready else { return };
            self.submit(i).await;
        }
    }

    async fn submit(&mut self, i: usize) {
        let outputs: Vec<Option<String>> = self.steps.iter().map(|s| s.output.clone()).collect();
        let prompt = self.args.plan.render(i, &outputs);
        let planned = &self.args.plan.steps[i];
        let mut spec = TaskSpec::new(prompt).with_options(&planned.options);
        spec.chain = Some(self.args.id.clone());
        spec.depth = self.args.depth;
        let name = planned.name.clone();
        let answer = self
            .args
            .scheduler
            .call(|reply| SchedulerMsg::Submit(spec, reply), None)
            .await;
        let id = match answer {
            Ok(ractor::rpc::CallResult::Success(Ok(id))) => id,
            Ok(ractor::rpc::CallResult::Success(Err(e))) => {
                self.step_failed(i, format!("the step could not be submitted: {e}"));
                return;
            }
            _ => {
                self.step_failed(i, "the scheduler did not answer".into());
                return;
            }
        };
        let step = &mut self.steps[i];
        step.status = StepStatus::Running;
        step.attempts.push(AttemptReport {
            task_id: id.clone(),
            status: TaskStatus::Pending,
            spend_usd: 0.0,
            error: None,
        });
        let attempt = step.attempts.len();
        self.say(if attempt > 1 {
            format!(
                "{}: step {name:?} started again (attempt {attempt}) as {id}",
                self.args.id
            )
        } else {
            format!("{}: step {name:?} started as {id}", self.args.id)
        });
        let scheduler = self.args.scheduler.clone();
        let me = self.myself.clone();
        tokio::spawn(async move {
            let waited = scheduler
                .call(|reply| SchedulerMsg::Wait(id.clone(), reply), None)
                .await;
            let report = match waited {
                Ok(ractor::rpc::CallResult::Success(r)) => r,
                _ => None,
            };
            let _ = me.cast(ChainMsg::StepFinished {
                step: i,
                task: id,
                report,
            });
        });
    }

    async fn on_step_finished(&mut self, i: usize, task: TaskId, report: Option<TaskReport>) {
        let Some(step) = self.steps.get_mut(i) else {
            return;
        };
        let Some(attempt) = step.attempts.iter_mut().find(|a| a.task_id == task) else {
            return;
        };
        let (status, error, output, spend) = match &report {
            Some(r) => (r.status, r.error.clone(), r.output.clone(), r.spend_usd),
            None => (
                TaskStatus::Failed,
                Some("the pool stopped before the step's task ended".into()),
                None,
                0.0,
            ),
        };
        attempt.status = status;
        attempt.error = error.clone();
        attempt.spend_usd = spend;
        if step.status != StepStatus::Running {
            return;
        }
        let name = self.args.plan.steps[i].name.clone();
        if status == TaskStatus::Completed {
            step.status = StepStatus::Completed;
            step.output = Some(output.unwrap_or_default());
            step.error = None;
            let done = self.steps.iter().filter(|s| s.status.is_done()).count();
            self.say(format!(
                "{}: step {name:?} completed ({done} of {} done)",
                self.args.id,
                self.steps.len()
            ));
            return;
        }
        let why = error.unwrap_or_else(|| format!("its task ended as {status}"));
        if matches!(self.stop, Some(Stop::Cancel(_)) | Some(Stop::Abort(_))) {
            step.status = StepStatus::Cancelled;
            step.error = Some(why);
            return;
        }
        let planned = &self.args.plan.steps[i];
        let attempts = u32::try_from(step.attempts.len()).unwrap_or(u32::MAX);
        if planned.policy == FailurePolicy::Retry
            && attempts <= planned.retries
            && self.stop.is_none()
        {
            step.status = StepStatus::Pending;
            step.error = Some(why.clone());
            self.say(format!(
                "{}: step {name:?} failed ({why}); retrying",
                self.args.id
            ));
            self.submit(i).await;
            return;
        }
        self.step_failed(i, why);
    }

    /// Step `i` did not complete: skip it or stop the chain, by its policy.
    fn step_failed(&mut self, i: usize, why: String) {
        let planned = &self.args.plan.steps[i];
        let name = planned.name.clone();
        let step = &mut self.steps[i];
        step.error = Some(why.clone());
        if planned.policy == FailurePolicy::Skip {
            step.status = StepStatus::Skipped;
            step.output = Some(String::new());
            self.say(format!(
                "{}: step {name:?} failed and was skipped: {why}",
                self.args.id
            ));
            return;
        }
        step.status = StepStatus::Failed;
        self.say(format!("{}: step {name:?} failed: {why}", self.args.id));
        let reason = format!("step {name:?} failed: {why}");
        self.stop = Some(Stop::Abort(reason.clone()));
        self.cancel_running(format!("cancelled: {reason}"));
        self.cancel_pending(&format!("not run: {reason}"));
    }

    fn on_cancel(&mut self, reason: String) {
        if matches!(self.stop, Some(Stop::Cancel(_)) | Some(Stop::Abort(_))) {
            return;
        }
        self.stop = Some(Stop::Cancel(reason.clone()));
        self.cancel_running(reason.clone());
        self.cancel_pending(&reason);
    }

    fn cancel_pending(&mut self, reason: &str) {
        for s in &mut self.steps {
            if s.status == StepStatus::Pending {
                s.status = StepStatus::Cancelled;
                s.error = Some(reason.to_owned());
            }
        }
    }

    /// Cancels the running steps' tasks without waiting: their ends come back as
    /// `StepFinished`.
    fn cancel_running(&self, reason: String) {
        let tasks: Vec<TaskId> = self.running().cloned().collect();
        for task in tasks {
            let scheduler = self.args.scheduler.clone();
            tracing::debug!(chain = %self.args.id, %task, %reason, "cancelling a running step");
            tokio::spawn(async move {
                let _ = scheduler
                    .call(|reply| SchedulerMsg::Cancel(task, reply), None)
                    .await;
            });
        }
    }
}

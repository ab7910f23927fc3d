//! MCP tasks: a tool call that starts work answers at once with a task the client follows
//! (`tasks/get`, `tasks/result`, `tasks/cancel`, `tasks/list`), in both shapes the
//! protocol has had — the `tasks` capability of 2025-11-25 ([`legacy`]) and the
//! `io.modelcontextprotocol/tasks` extension of 2026-07-28 (here, through rmcp).
//!
//! A protocol task *is* the pool's work: its id is the task's, job's or chain's own id
//! (`fanout-…` for a fan-out, whose items are pool tasks), so it works with `pool_result`,
//! `pool_cancel`, `claude_job_status`, the resources and the status page, and a pool id
//! works with `tasks/get`. The work runs through the same scheduler, deadline, budget,
//! recursion guard and store as the blocking call, and its handle lives in the store, so
//! another session, or the next server on the same store, follows it. A task's result is
//! the blocking call's result; cancelling it is the pool's cancel (interrupt, SIGTERM,
//! SIGKILL of the process group).

mod extension;
pub mod legacy;
pub mod wire;

pub(super) use extension::as_task;

use claude_pool_protocol::tools::TaskKind;
use claude_pool_protocol::tools::{
    BuildJobParams, ChainParams, FanOutParams, JobReport, RunJobParams, SkillRunParams, TaskParams,
    TaskReport,
};
use claude_pool_protocol::{ChainId, ChainStatus, TaskId, TaskStatus};
use rmcp::ErrorData;
use rmcp::model::{CallToolResult, ErrorCode, JsonObject};
use rmcp::service::{RequestContext, RoleServer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::tasks::{describe_progress, fan_out_result, task_spec};
use super::{Checked, PoolServer, chain_result, fail, structured, task_result};
use crate::clock::rfc3339;
use crate::error::PoolError;
use crate::pool::handles::{Handle, Work, now_ms};

/// How often a client should poll `tasks/get`, in milliseconds.
pub(super) const POLL_INTERVAL_MS: u64 = 500;

/// The longest ttl granted (30 days); a longer request is cut to it.
pub(super) const MAX_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// The tools that start work and may run as a task.
pub const TASK_TOOLS: &[&str] = &[
    "pool_run",
    "pool_fan_out",
    "pool_chain",
    "pool_skill_run",
    "claude_run",
    "claude_build",
];

/// Where a protocol task's work is.
pub(super) enum Phase {
    /// Queued or running.
    Working,
    /// Ended: the blocking call's result (a tool error when the work failed).
    Done(CallToolResult),
    /// Cancelled, with the blocking call's result for it.
    Cancelled(CallToolResult),
}

/// A protocol task as it is now.
pub(super) struct View {
    pub handle: Handle,
    pub phase: Phase,
    /// What it is doing, in the words progress notifications use.
    pub message: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

impl View {
    pub(super) fn created_at(&self) -> String {
        rfc3339(self.handle.created_at_ms)
    }
}

fn parse<T: serde::de::DeserializeOwned>(arguments: JsonObject) -> Result<T, ErrorData> {
    serde_json::from_value::<Checked<T>>(serde_json::Value::Object(arguments))
        .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?
        .get()
}

fn internal(e: PoolError) -> ErrorData {
    ErrorData::internal_error(e.to_string(), None)
}

fn unknown(id: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::INVALID_PARAMS,
        format!("unknown task: {id}"),
        None,
    )
}

impl PoolServer {
    /// Starts `tool`'s work as a protocol task kept for `ttl_ms` (cut to [`MAX_TTL_MS`]).
    /// Answers once the handle is stored, so `tasks/get` resolves from then on; work the
    /// pool refused (budget, drain, recursion limit) is the tool error the blocking call
    /// would have returned, and no task.
    pub(super) async fn start_work(
        &self,
        tool: &str,
        arguments: JsonObject,
        ttl_ms: Option<u64>,
        context: &RequestContext<RoleServer>,
    ) -> Result<Result<Handle, CallToolResult>, ErrorData> {
        let created_at_ms = now_ms();
        let depth = self.request_depth(context);
        let refused = |e: PoolError| fail(e).map(Err);
        let (id, work) = match tool {
            "pool_run" | "pool_skill_run" => {
                let mut spec = if tool == "pool_run" {
                    task_spec(parse::<TaskParams>(arguments)?)?
                } else {
                    match self.skill_spec(parse::<SkillRunParams>(arguments)?) {
                        Ok(s) => s,
                        Err(e) => return refused(e),
                    }
                };
                spec.depth = spec.depth.or(depth);
                let (tx, mut rx) = mpsc::unbounded_channel();
                spec.progress = Some(tx);
                let id = match self.pool.submit(spec).await {
                    Ok(id) => id,
                    Err(e) => return refused(e),
                };
                let (pool, task) = (self.pool.clone(), id.clone());
                tokio::spawn(async move {
                    while let Some(event) = rx.recv().await {
                        pool.set_handle_status(&task.0, Some(describe_progress(&task, event)));
                    }
                    pool.set_handle_status(&task.0, None);
                });
                (id.0.clone(), Work::Task(id))
            }
            "claude_run" | "claude_build" => {
                let accepted = if tool == "claude_run" {
                    self.pool
                        .run_job(parse::<RunJobParams>(arguments)?, depth)
                        .await
                } else {
                    self.pool
                        .build_job(parse::<BuildJobParams>(arguments)?, depth)
                        .await
                };
                match accepted {
                    Ok(a) => (a.job_id.clone(), Work::Job(TaskId(a.job_id))),
                    Err(e) => return refused(e),
                }
            }
            "pool_chain" => {
                let params = parse::<ChainParams>(arguments)?;
                let (tx, mut rx) = mpsc::unbounded_channel();
                let id = match self.pool.submit_chain_at(params, Some(tx), depth).await {
                    Ok(id) => id,
                    Err(e) => return refused(e),
                };
                let (pool, chain) = (self.pool.clone(), id.0.clone());
                tokio::spawn(async move {
                    while let Some(line) = rx.recv().await {
                        pool.set_handle_status(&chain, Some(line));
                    }
                    pool.set_handle_status(&chain, None);
                });
                (id.0.clone(), Work::Chain(id))
            }
            "pool_fan_out" => {
                let specs = self.fan_out_specs(parse::<FanOutParams>(arguments)?, context)?;
                let ids = match self.pool.submit_many(specs).await {
                    Ok(ids) => ids,
                    Err(e) => return refused(e),
                };
                let id = format!(
                    "fanout-{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..12]
                );
                let (pool, handle, tasks) = (self.pool.clone(), id.clone(), ids.clone());
                tokio::spawn(async move {
                    let (tx, mut rx) = mpsc::unbounded_channel();
                    let wait = pool.wait_all(&tasks, Some(tx));
                    tokio::pin!(wait);
                    loop {
                        tokio::select! {
                            _ = &mut wait => break,
                            Some((done, total, report)) = rx.recv() => pool.set_handle_status(
                                &handle,
                                Some(format!("{done} of {total} done ({} {})", report.task_id, report.status)),
                            ),
                        }
                    }
                    pool.set_handle_status(&handle, None);
                });
                (id, Work::FanOut(ids))
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("{other} does not run as a task; call it without task"),
                    None,
                ));
            }
        };
        let handle = Handle {
            id,
            tool: tool.to_owned(),
            work,
            ttl_ms: ttl_ms.map(|t| t.min(MAX_TTL_MS)),
            created_at_ms,
        };
        if let Err(e) = self.pool.keep_handle(&handle).await {
            // A task nobody can follow is not left running.
            let _ = self.cancel_work(&handle).await;
            return refused(e);
        }
        Ok(Ok(handle))
    }

    /// The handle `id` names: a protocol task's, or (one id space) a pool task, job or
    /// chain started any other way. An expired or unknown id is an invalid-params error.
    pub(super) async fn find_handle(&self, id: &str) -> Result<Handle, ErrorData> {
        if let Some(h) = self.pool.handle(id).await.map_err(internal)? {
            if h.expired(now_ms()) {
                return Err(ErrorData::invalid_params(
                    format!(
                        "task {id} has expired: its ttl of {} ms has passed",
                        h.ttl_ms.unwrap_or_default()
                    ),
                    None,
                ));
            }
            return Ok(h);
        }
        if id.starts_with(ChainId::PREFIX) {
            let chain = ChainId(id.to_owned());
            return match self.pool.chain_result(&chain).await {
                Ok(_) => Ok(Handle {
                    id: id.to_owned(),
                    tool: "pool_chain".into(),
                    work: Work::Chain(chain),
                    ttl_ms: None,
                    created_at_ms: now_ms(),
                }),
                Err(PoolError::NotFound(_) | PoolError::UnknownChain(_)) => Err(unknown(id)),
                Err(e) => Err(internal(e)),
            };
        }
        let task = TaskId(id.to_owned());
        match self.pool.result(&task).await {
            Ok(r) => {
                let (tool, work) = match r.kind {
                    TaskKind::Run => ("claude_run", Work::Job(task)),
                    TaskKind::Build => ("claude_build", Work::Job(task)),
                    _ => ("pool_run", Work::Task(task)),
                };
                Ok(Handle {
                    id: id.to_owned(),
                    tool: tool.into(),
                    work,
                    ttl_ms: None,
                    created_at_ms: ms_of(r.enqueued_at.as_deref()).unwrap_or_else(now_ms),
                })
            }
            Err(PoolError::NotFound(_) | PoolError::UnknownTask(_)) => Err(unknown(id)),
            Err(e) => Err(internal(e)),
        }
    }

    /// The protocol task `handle` as it is now.
    pub(super) async fn view(&self, handle: Handle) -> Result<View, ErrorData> {
        let live = self.pool.handle_status(&handle.id);
        let created = rfc3339(handle.created_at_ms);
        let (phase, message, updated_at) = match &handle.work {
            Work::Task(id) | Work::Job(id) => {
                let r = self.pool.result(id).await.map_err(internal)?;
                let updated = r
                    .finished_at
                    .clone()
                    .or(r.started_at.clone())
                    .unwrap_or(created);
                let message = match (r.status.is_terminal(), live) {
                    (false, Some(line)) => line,
                    _ => task_message(&r),
                };
                (self.task_phase(&handle, &r)?, message, updated)
            }
            Work::Chain(id) => {
                let r = self.pool.chain_result(id).await.map_err(internal)?;
                let phase = match r.status {
                    ChainStatus::InProgress => Phase::Working,
                    ChainStatus::Cancelled => Phase::Cancelled(chain_result(&r)?),
                    _ => Phase::Done(chain_result(&r)?),
                };
                let message = match (&phase, live) {
                    (Phase::Working, Some(line)) => line,
                    _ => chain_message(&r),
                };
                (phase, message, created)
            }
            Work::FanOut(ids) => {
                let mut reports = Vec::with_capacity(ids.len());
                for id in ids {
                    reports.push(self.pool.result(id).await.map_err(internal)?);
                }
                let done = reports.iter().filter(|r| r.status.is_terminal()).count();
                let updated = reports
                    .iter()
                    .filter_map(|r| r.finished_at.clone())
                    .max()
                    .unwrap_or(created);
                let n = reports.len();
                let cancelled = reports.iter().all(|r| r.status == TaskStatus::Cancelled);
                let phase = if done < n {
                    Phase::Working
                } else if cancelled {
                    Phase::Cancelled(fan_out_result(reports)?)
                } else {
                    Phase::Done(fan_out_result(reports)?)
                };
                (phase, format!("{done} of {n} done"), updated)
            }
        };
        Ok(View {
            handle,
            phase,
            message,
            updated_at,
        })
    }

    fn task_phase(&self, handle: &Handle, r: &TaskReport) -> Result<Phase, ErrorData> {
        if !r.status.is_terminal() {
            return Ok(Phase::Working);
        }
        let result = match handle.work {
            Work::Job(_) => job_result(r)?,
            _ => task_result(r)?,
        };
        Ok(if r.status == TaskStatus::Cancelled {
            Phase::Cancelled(result)
        } else {
            Phase::Done(result)
        })
    }

    /// Waits until the work has ended (or `stop` fires) and returns its result.
    pub(super) async fn wait_work(
        &self,
        handle: &Handle,
        stop: &CancellationToken,
    ) -> Result<CallToolResult, ErrorData> {
        let waited = async {
            match &handle.work {
                Work::Task(id) | Work::Job(id) => self.pool.wait(id).await.map(drop),
                Work::Chain(id) => self.pool.wait_chain(id).await.map(drop),
                Work::FanOut(ids) => self.pool.wait_all(ids, None).await.map(drop),
            }
        };
        tokio::select! {
            r = waited => r.map_err(internal)?,
            () = stop.cancelled() => {
                return Err(ErrorData::internal_error("the request was cancelled; the task goes on", None));
            }
        }
        match self.view(handle.clone()).await?.phase {
            Phase::Done(r) | Phase::Cancelled(r) => Ok(r),
            Phase::Working => Err(ErrorData::internal_error(
                format!("task {} ended but reads working", handle.id),
                None,
            )),
        }
    }

    /// The pool's cancel of the work: a queued task never starts, a running one's process
    /// group is stopped. Returns once it has ended.
    pub(super) async fn cancel_work(&self, handle: &Handle) -> Result<(), ErrorData> {
        match &handle.work {
            Work::Task(id) | Work::Job(id) => self.pool.cancel(id).await.map(drop),
            Work::Chain(id) => self.pool.cancel_chain(id).await.map(drop),
            Work::FanOut(ids) => {
                let mut cancels = tokio::task::JoinSet::new();
                for id in ids {
                    let (pool, id) = (self.pool.clone(), id.clone());
                    cancels.spawn(async move { pool.cancel(&id).await.map(drop) });
                }
                let mut outcome = Ok(());
                while let Some(done) = cancels.join_next().await {
                    if let Ok(Err(e)) = done {
                        outcome = Err(e);
                    }
                }
                outcome
            }
        }
        .map_err(internal)
    }
}

/// A job as the tool result of its task: the job's report; a tool error unless it is done.
fn job_result(r: &TaskReport) -> Result<CallToolResult, ErrorData> {
    let mut result = structured(&JobReport::of(r))?;
    if r.status != TaskStatus::Completed {
        result.is_error = Some(true);
    }
    Ok(result)
}

/// What a task is doing, read from its report.
fn task_message(r: &TaskReport) -> String {
    match r.status {
        TaskStatus::Pending => "queued, waiting for a free slot".to_owned(),
        TaskStatus::Running => match &r.slot_id {
            Some(slot) => format!("running on {slot}, ${:.4} so far", r.spend_usd),
            None => "running".to_owned(),
        },
        status => match &r.error {
            Some(e) => format!("{status}: {e}"),
            None => format!("{status}, ${:.4}", r.spend_usd),
        },
    }
}

/// Where a chain is, read from its report.
fn chain_message(r: &claude_pool_protocol::tools::ChainReport) -> String {
    let step = r
        .current_step
        .as_ref()
        .map(|s| format!(", step {} {}", s.name, s.status))
        .unwrap_or_default();
    match &r.error {
        Some(e) if r.status.is_terminal() => format!("{}: {e}", r.status),
        _ => format!(
            "{}: {} of {} steps done{step}",
            r.status, r.completed_steps, r.total_steps
        ),
    }
}

/// A tool result as a JSON object.
pub(super) fn result_object(result: &CallToolResult) -> Result<JsonObject, ErrorData> {
    match serde_json::to_value(result) {
        Ok(serde_json::Value::Object(o)) => Ok(o),
        Ok(_) => Err(ErrorData::internal_error(
            "a tool result is an object",
            None,
        )),
        Err(e) => Err(ErrorData::internal_error(e.to_string(), None)),
    }
}

/// Unix ms of an RFC 3339 time.
fn ms_of(at: Option<&str>) -> Option<i64> {
    let t = humantime::parse_rfc3339(at?).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

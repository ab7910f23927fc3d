//! Task tools: `pool_run`, `pool_submit`, `pool_result`, `pool_cancel`, `pool_fan_out`.

use std::time::Duration;

use claude_pool_protocol::tools::{
    CancelParams, FanOutParams, FanOutReport, ResultParams, SubmitReport, TaskOptions, TaskParams,
};
use claude_pool_protocol::{ChainId, TaskId, TaskStatus};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ProgressNotificationParam, ProgressToken};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, tool, tool_router};
use tokio::sync::mpsc;

use super::{Checked, PoolServer, approvals, fail, long_poll, structured, task_result};
use crate::task::{TaskProgress, TaskSpec};
use claude_pool_protocol::approvals::ApprovalRequest;
use rmcp::model::{CallToolRequestParams, CallToolResponse, ElicitResult};

/// How often a running call sends a progress notification when nothing else happens, so
/// a client's tool watchdog sees activity.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// One line a client can show for a running task's progress.
pub(super) fn describe_progress(id: &TaskId, event: TaskProgress) -> String {
    match event {
        TaskProgress::Started { slot } => format!("{id} started on {slot}"),
        TaskProgress::Assistant { text, tool_uses } if tool_uses.is_empty() => {
            let text: String = text.chars().take(200).collect();
            format!("{id}: {text}")
        }
        TaskProgress::Assistant { tool_uses, .. } => {
            format!("{id}: calling {}", tool_uses.join(", "))
        }
        TaskProgress::Approval(request) => format!("{id}: {}", approvals::waiting_line(&request)),
        TaskProgress::Held(why) => format!("{id} waits: {why}"),
    }
}

/// A task spec from a prompt and the per-task options, refusing an empty prompt.
/// The task a `pool_run` or `pool_submit` call describes.
pub(super) fn task_spec(params: TaskParams) -> Result<TaskSpec, ErrorData> {
    let options = params.task_options();
    let mut spec = spec_from(params.prompt, &options)?;
    spec.session_id = params.session_id;
    Ok(spec)
}

pub(super) fn spec_from(prompt: String, options: &TaskOptions) -> Result<TaskSpec, ErrorData> {
    if prompt.trim().is_empty() {
        return Err(ErrorData::invalid_params("prompt must not be empty", None));
    }
    Ok(TaskSpec::new(prompt).with_options(options))
}

/// Sends progress notifications for one call, numbered.
pub(super) struct Progress {
    token: Option<ProgressToken>,
    step: u32,
}

impl Progress {
    pub(super) fn new(context: &RequestContext<RoleServer>) -> Self {
        Progress {
            token: context.meta.get_progress_token(),
            step: 0,
        }
    }

    pub(super) fn wanted(&self) -> bool {
        self.token.is_some()
    }

    /// The next numbered notification.
    pub(super) async fn say(&mut self, context: &RequestContext<RoleServer>, message: String) {
        self.step += 1;
        let step = f64::from(self.step);
        self.send(context, step, None, message).await;
    }

    /// A notification with explicit progress and total (`k of n`).
    pub(super) async fn send(
        &mut self,
        context: &RequestContext<RoleServer>,
        progress: f64,
        total: Option<f64>,
        message: String,
    ) {
        if let Some(token) = &self.token {
            let mut p =
                ProgressNotificationParam::new(token.clone(), progress).with_message(message);
            if let Some(t) = total {
                p = p.with_total(t);
            }
            let _ = context.peer.notify_progress(p).await;
        }
    }
}

/// Waits for `wait`, relaying `events` (through `describe`) and a heartbeat as progress.
/// A client that cancels the request gets `cancel` run — nothing is left running for no
/// one — and an error naming `what`.
pub(super) async fn follow<T, M>(
    server: &PoolServer,
    context: &RequestContext<RoleServer>,
    what: &str,
    wait: impl std::future::Future<Output = Result<T, crate::PoolError>>,
    mut events: mpsc::UnboundedReceiver<M>,
    describe: impl Fn(M) -> String,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<Result<T, crate::PoolError>, ErrorData> {
    let mut progress = Progress::new(context);
    tokio::pin!(wait);
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    loop {
        let message = tokio::select! {
            answer = &mut wait => {
                // The last events may still be queued.
                while let Ok(event) = events.try_recv() {
                    progress.say(context, describe(event)).await;
                }
                return Ok(answer);
            }
            Some(event) = events.recv() => describe(event),
            _ = heartbeat.tick() => format!("{what} is still running"),
            () = context.ct.cancelled() => return Err(server.call_cut(what, cancel).await),
        };
        progress.say(context, message).await;
    }
}

impl PoolServer {
    /// Submits `spec` and waits for it, with progress and heartbeats; a client that cancels
    /// the request cancels the task. The task's permission questions are put to the client
    /// by elicitation from inside this call when it can be asked that way.
    pub(super) async fn run_task(
        &self,
        mut spec: TaskSpec,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        spec.progress = Some(tx);
        spec.depth = spec.depth.or(self.request_depth(context));
        let id = match self.pool.submit(spec).await {
            Ok(id) => id,
            Err(e) => return fail(e),
        };
        let mut asker = approvals::CallAsker::new(self.pool.clone(), context);
        let mut progress = Progress::new(context);
        let wait = self.pool.wait(&id);
        tokio::pin!(wait);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        let answer = loop {
            let message = tokio::select! {
                answer = &mut wait => {
                    while let Ok(event) = rx.try_recv() {
                        progress.say(context, describe_progress(&id, event)).await;
                    }
                    break answer;
                }
                Some(event) = rx.recv() => {
                    if let TaskProgress::Approval(request) = &event {
                        asker.question(request).await;
                    }
                    if !progress.wanted() {
                        continue;
                    }
                    describe_progress(&id, event)
                }
                () = asker.drive() => continue,
                _ = heartbeat.tick() => format!("task {id} is still running"),
                () = context.ct.cancelled() => {
                    let what = format!("task {id}");
                    return Err(self.call_cut(&what, async {
                        let _ = self.pool.cancel(&id).await;
                    }).await);
                }
            };
            progress.say(context, message).await;
        };
        match answer {
            Ok(report) => task_result(&report),
            Err(e) => fail(e),
        }
    }

    /// `pool_run` in a session that cannot take a server→client request (2026-07-28): a
    /// permission question ends the call with an `InputRequiredResult` carrying the form,
    /// and the client's retry — with its answer and the `requestState` — answers the
    /// question and goes on waiting for the same task.
    pub(super) async fn run_task_input_required(
        &self,
        request: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let by = approvals::client_name(context);
        let mut asked = self.pool.approvals();
        let mut skip: std::collections::HashSet<String> = std::collections::HashSet::new();
        let (id, mut rx) = match request.request_state.as_deref() {
            Some(state) => {
                let id = approvals::task_of_state(state).ok_or_else(|| {
                    ErrorData::invalid_params("requestState is not one this server gave", None)
                })?;
                let pending = self
                    .pool
                    .pending_approvals(Some(&id))
                    .await
                    .unwrap_or_default();
                for (key, value) in request.input_responses.clone().unwrap_or_default() {
                    skip.insert(key.clone());
                    let Some(asked) = pending.iter().find(|r| r.request_id == key) else {
                        continue;
                    };
                    let Ok(reply) = serde_json::from_value::<ElicitResult>(value) else {
                        continue;
                    };
                    if let Some(answer) = approvals::answer_of(asked.kind, &reply) {
                        let _ = self.pool.approve_as(&key, answer, &by).await;
                    }
                }
                (id, None)
            }
            None => {
                let arguments = request.arguments.clone().unwrap_or_default();
                let params: TaskParams = serde_json::from_value::<Checked<TaskParams>>(
                    serde_json::Value::Object(arguments),
                )
                .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?
                .get()?;
                let mut spec = task_spec(params)?;
                let (tx, rx) = mpsc::unbounded_channel();
                spec.progress = Some(tx);
                spec.depth = spec.depth.or(self.request_depth(context));
                match self.pool.submit(spec).await {
                    Ok(id) => (id, Some(rx)),
                    Err(e) => return fail(e).map(Into::into),
                }
            }
        };
        let input_required = |r: &ApprovalRequest| -> Option<CallToolResponse> {
            let params = approvals::elicitation_of(r)?;
            let mut requests = rmcp::model::InputRequests::new();
            requests.insert(
                approvals::input_key(r).into_owned(),
                rmcp::model::InputRequest::Elicitation(rmcp::model::ElicitRequest::new(params)),
            );
            Some(CallToolResponse::InputRequired(
                rmcp::model::InputRequiredResult::new(
                    Some(requests),
                    Some(approvals::request_state(&id)),
                ),
            ))
        };
        if let Ok(pending) = self.pool.pending_approvals(Some(&id)).await
            && let Some(r) = pending.iter().find(|r| !skip.contains(&r.request_id))
            && let Some(answer) = input_required(r)
        {
            return Ok(answer);
        }
        let mut progress = Progress::new(context);
        let wait = self.pool.wait(&id);
        tokio::pin!(wait);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        loop {
            let next = async {
                match rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let message = tokio::select! {
                answer = &mut wait => return match answer {
                    Ok(report) => task_result(&report).map(Into::into),
                    Err(e) => fail(e).map(Into::into),
                },
                Some(event) = next => {
                    if let TaskProgress::Approval(r) = &event
                        && let Some(answer) = input_required(r)
                    {
                        return Ok(answer);
                    }
                    describe_progress(&id, event)
                }
                Ok(r) = asked.recv() => {
                    if r.task_id == id && !skip.contains(&r.request_id)
                        && let Some(answer) = input_required(&r)
                    {
                        return Ok(answer);
                    }
                    continue;
                }
                _ = heartbeat.tick() => format!("task {id} is still running"),
                () = context.ct.cancelled() => {
                    let what = format!("task {id}");
                    return Err(self.call_cut(&what, async {
                        let _ = self.pool.cancel(&id).await;
                    }).await);
                }
            };
            progress.say(context, message).await;
        }
    }
}

#[tool_router(router = task_tools, vis = "pub(super)")]
impl PoolServer {
    /// Runs a task and waits for it.
    #[tool(
        name = "pool_run",
        description = "Run a prompt on a warm Claude slot and wait for its output."
    )]
    async fn pool_run(
        &self,
        Parameters(params): Parameters<Checked<TaskParams>>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let spec = task_spec(params.get()?)?;
        self.run_task(spec, &context).await
    }

    /// Queues a task and returns its id.
    #[tool(
        name = "pool_submit",
        description = "As pool_run, without waiting: returns task_id."
    )]
    async fn pool_submit(
        &self,
        Parameters(params): Parameters<Checked<TaskParams>>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut spec = task_spec(params.get()?)?;
        spec.depth = self.request_depth(&context);
        spec.progress = self.session_listener(&context);
        match self.pool.submit(spec).await {
            Ok(id) => {
                self.follow_work(
                    &context,
                    super::notices::task_handle(&id, "pool_submit"),
                    false,
                );
                structured(&SubmitReport {
                    task_id: id,
                    status: TaskStatus::Pending,
                })
            }
            Err(e) => fail(e),
        }
    }

    /// A task's report.
    #[tool(
        name = "pool_result",
        description = "A task's status, and its output once ended."
    )]
    async fn pool_result(
        &self,
        Parameters(params): Parameters<Checked<ResultParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        let id = &params.task_id;
        long_poll(params.wait, self.pool.wait(id), self.pool.result(id)).await
    }

    /// Cancels a task or a chain.
    #[tool(name = "pool_cancel", description = "Cancel a task or chain.")]
    async fn pool_cancel(
        &self,
        Parameters(params): Parameters<Checked<CancelParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        let chain = match (params.task_id, params.chain_id) {
            (Some(_), Some(_)) => {
                return Err(ErrorData::invalid_params(
                    "give task_id or chain_id, not both",
                    None,
                ));
            }
            (None, None) => {
                return Err(ErrorData::invalid_params(
                    "missing argument: task_id (or chain_id)",
                    None,
                ));
            }
            (None, Some(c)) => c,
            (Some(t), None) if t.starts_with(ChainId::PREFIX) => ChainId(t),
            (Some(t), None) => {
                return match self.pool.cancel(&TaskId(t)).await {
                    Ok(r) => structured(&r),
                    Err(e) => fail(e),
                };
            }
        };
        match self.pool.cancel_chain(&chain).await {
            Ok(r) => structured(&r),
            Err(e) => fail(e),
        }
    }

    /// Runs many prompts at once.
    #[tool(
        name = "pool_fan_out",
        description = "Run prompts in parallel: a report each, in order. Options as pool_run."
    )]
    async fn pool_fan_out(
        &self,
        Parameters(params): Parameters<Checked<FanOutParams>>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut specs = self.fan_out_specs(params.get()?, &context)?;
        let n = specs.len();
        let (questions_tx, mut questions) = mpsc::unbounded_channel();
        for spec in &mut specs {
            spec.progress = Some(questions_tx.clone());
        }
        drop(questions_tx);
        let mut asker = approvals::CallAsker::new(self.pool.clone(), &context);
        let ids = match self.pool.submit_many(specs).await {
            Ok(ids) => ids,
            Err(e) => return fail(e),
        };
        let mut progress = Progress::new(&context);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let wait = self.pool.wait_all(&ids, Some(tx));
        tokio::pin!(wait);
        let say = async |progress: &mut Progress,
                         (done, total, report): (
            usize,
            usize,
            claude_pool_protocol::tools::TaskReport,
        )| {
            let message = format!(
                "{done} of {total} done ({} {})",
                report.task_id, report.status
            );
            progress
                .send(&context, done as f64, Some(total as f64), message)
                .await;
        };
        let reports = loop {
            tokio::select! {
                reports = &mut wait => match reports {
                    Ok(r) => {
                        // The last items' progress may still be queued.
                        while let Ok(item) = rx.try_recv() {
                            say(&mut progress, item).await;
                        }
                        break r;
                    }
                    Err(e) => return fail(e),
                },
                Some(item) = rx.recv() => say(&mut progress, item).await,
                Some(event) = questions.recv() => {
                    if let TaskProgress::Approval(request) = &event {
                        asker.question(request).await;
                    }
                }
                () = asker.drive() => {}
                () = context.ct.cancelled() => {
                    let what = format!("its {n} tasks");
                    return Err(self.call_cut(&what, async {
                        for id in &ids {
                            let _ = self.pool.cancel(id).await;
                        }
                    }).await);
                }
            }
        };
        fan_out_result(reports)
    }
}

impl PoolServer {
    /// The tasks a `pool_fan_out` call describes, refusing what the tool refuses.
    pub(super) fn fan_out_specs(
        &self,
        params: FanOutParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<Vec<TaskSpec>, ErrorData> {
        let options = params.task_options();
        let n = params.prompts.len();
        if n == 0 {
            return Err(ErrorData::invalid_params(
                "invalid arguments: prompts: give at least one prompt",
                None,
            ));
        }
        if n > claude_pool_protocol::tools::MAX_FAN_OUT {
            return Err(ErrorData::invalid_params(
                format!(
                    "invalid arguments: prompts: at most {} prompts, not {n}",
                    claude_pool_protocol::tools::MAX_FAN_OUT
                ),
                None,
            ));
        }
        if let Some(i) = params.prompts.iter().position(|p| p.trim().is_empty()) {
            return Err(ErrorData::invalid_params(
                format!("invalid arguments: prompts[{i}]: the prompt is empty"),
                None,
            ));
        }
        Ok(params
            .prompts
            .into_iter()
            .map(|p| {
                let mut spec = TaskSpec::new(p).with_options(&options);
                spec.depth = self.request_depth(context);
                spec
            })
            .collect())
    }
}

/// A fan-out's reports, in prompt order, as the tool's result.
pub(super) fn fan_out_result(
    reports: Vec<claude_pool_protocol::tools::TaskReport>,
) -> Result<CallToolResult, ErrorData> {
    let completed = reports
        .iter()
        .filter(|r| r.status == TaskStatus::Completed)
        .count();
    structured(&FanOutReport {
        total: reports.len(),
        completed,
        failed: reports.len() - completed,
        total_spend: reports.iter().map(|r| r.spend_usd).sum(),
        summary: FanOutReport::summarize(&reports),
        results: reports,
    })
}

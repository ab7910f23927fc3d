//! The MCP server handler: tool calls become [`Pool`] calls.
//!
//! Written once, independent of the transport ([`crate::frontend`] runs it over stdio).
//! Errors map in one place ([`to_error_data`]): bad arguments and unknown task ids are
//! invalid-params errors; a task that ran and did not complete is a tool error result
//! carrying the task report; a stopped pool is an internal error.

use std::time::Duration;

use claude_pool_protocol::TaskStatus;
use claude_pool_protocol::tools::{
    ResultParams, StatusParams, SubmitReport, TaskParams, TaskRef, TaskReport,
};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::PoolError;
use crate::pool::Pool;
use crate::task::{TaskProgress, TaskSpec};

/// How often a running `pool_run` sends a progress notification when the model is quiet,
/// so a client's tool watchdog sees activity.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// Tool arguments whose deserialization error is kept for the handler, so that malformed
/// arguments become an invalid-params error (the router alone would turn them into a tool
/// error result). The JSON schema is `T`'s.
#[derive(Debug)]
pub struct Checked<T>(Result<T, String>);

impl<'de, T: serde::de::DeserializeOwned> serde::Deserialize<'de> for Checked<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(Checked(serde_path_to_error::deserialize(value).map_err(
            |e| {
                let path = e.path().to_string();
                if path == "." {
                    format!("invalid arguments: {}", e.into_inner())
                } else {
                    format!("invalid arguments: {path}: {}", e.into_inner())
                }
            },
        )))
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Checked<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

impl<T> Checked<T> {
    fn get(self) -> Result<T, ErrorData> {
        self.0.map_err(|e| ErrorData::invalid_params(e, None))
    }
}

/// The MCP server: one per connection; all state lives in the pool's actors.
#[derive(Clone, Debug)]
pub struct PoolServer {
    pool: Pool,
    #[allow(dead_code)] // read by the #[tool_handler] expansion
    tool_router: ToolRouter<Self>,
}

impl PoolServer {
    /// A server handing tool calls to `pool`.
    pub fn new(pool: Pool) -> Self {
        PoolServer {
            pool,
            tool_router: Self::tool_router(),
        }
    }
}

/// Maps a pool error to the MCP error a client should see.
pub fn to_error_data(e: PoolError) -> ErrorData {
    match &e {
        PoolError::InvalidTask(_) | PoolError::UnknownTask(_) => {
            ErrorData::invalid_params(e.to_string(), None)
        }
        PoolError::Stopped(_) => ErrorData::internal_error(e.to_string(), None),
    }
}

fn structured<T: Serialize>(value: &T) -> Result<CallToolResult, ErrorData> {
    let json =
        serde_json::to_value(value).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    Ok(CallToolResult::structured(json))
}

/// A finished task as a tool result: success when completed, a tool error otherwise, with
/// the reason first so it reads well.
fn task_result(report: &TaskReport) -> Result<CallToolResult, ErrorData> {
    if report.status == TaskStatus::Completed {
        return structured(report);
    }
    let json =
        serde_json::to_value(report).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    let message = format!(
        "task {} {}: {}",
        report.task_id,
        report.status,
        report.error.as_deref().unwrap_or("no reason recorded")
    );
    let mut result = CallToolResult::error(vec![
        ContentBlock::text(message),
        ContentBlock::text(json.to_string()),
    ]);
    result.structured_content = Some(json);
    Ok(result)
}

/// One line a client can show for a running task's progress.
fn describe_progress(id: &claude_pool_protocol::TaskId, event: TaskProgress) -> String {
    match event {
        TaskProgress::Started { slot } => format!("{id} started on {slot}"),
        TaskProgress::Assistant { text, tool_uses } if tool_uses.is_empty() => {
            let text: String = text.chars().take(200).collect();
            format!("{id}: {text}")
        }
        TaskProgress::Assistant { tool_uses, .. } => {
            format!("{id}: calling {}", tool_uses.join(", "))
        }
    }
}

fn spec_from(params: TaskParams) -> Result<TaskSpec, ErrorData> {
    if params.prompt.trim().is_empty() {
        return Err(ErrorData::invalid_params("prompt must not be empty", None));
    }
    Ok(TaskSpec {
        prompt: params.prompt,
        timeout: params.timeout.map(|t| t.0),
        model: params.model,
        permission_mode: params.permission_mode,
        effort: params.effort,
        progress: None,
    })
}

#[tool_router]
impl PoolServer {
    /// Runs a task and waits for it.
    #[tool(
        name = "pool_run",
        description = "Run a task on a warm Claude slot and wait for the answer. Returns output, spend_usd, tokens_used, session_id and duration_ms. Sends progress notifications while it runs. A task that fails, is cancelled or times out comes back as a tool error with the reason."
    )]
    async fn pool_run(
        &self,
        Parameters(params): Parameters<Checked<TaskParams>>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut spec = spec_from(params.get()?)?;
        let token = context.meta.get_progress_token();
        let (tx, mut rx) = mpsc::unbounded_channel();
        if token.is_some() {
            spec.progress = Some(tx);
        }
        let id = self.pool.submit(spec).await.map_err(to_error_data)?;
        let wait = self.pool.wait(&id);
        tokio::pin!(wait);
        let mut step = 0u32;
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        let report = loop {
            let message = tokio::select! {
                report = &mut wait => break report.map_err(to_error_data)?,
                Some(event) = rx.recv() => describe_progress(&id, event),
                _ = heartbeat.tick() => format!("{id} is still running"),
                () = context.ct.cancelled() => {
                    // The client gave up on the call: do not leave the task running for no one.
                    let _ = self.pool.cancel(&id).await;
                    return Err(ErrorData::internal_error(
                        format!("the request was cancelled; task {id} was cancelled"),
                        None,
                    ));
                }
            };
            if let Some(token) = &token {
                step += 1;
                let progress = ProgressNotificationParam::new(token.clone(), f64::from(step))
                    .with_message(message);
                let _ = context.peer.notify_progress(progress).await;
            }
        };
        task_result(&report)
    }

    /// Queues a task and returns its id.
    #[tool(
        name = "pool_submit",
        description = "Submit a task to run in the background. Returns { task_id, status } at once; fetch the outcome with pool_result."
    )]
    async fn pool_submit(
        &self,
        Parameters(params): Parameters<Checked<TaskParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let spec = spec_from(params.get()?)?;
        let id = self.pool.submit(spec).await.map_err(to_error_data)?;
        structured(&SubmitReport {
            task_id: id,
            status: TaskStatus::Pending,
        })
    }

    /// A task's report.
    #[tool(
        name = "pool_result",
        description = "Get a task's status and, once it ended, its output, spend_usd, tokens_used and error. With `wait`, answers as soon as the task ends (or when the wait runs out)."
    )]
    async fn pool_result(
        &self,
        Parameters(params): Parameters<Checked<ResultParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        let report = match params.wait {
            None => self.pool.result(&params.task_id).await,
            Some(wait) => match tokio::time::timeout(wait.0, self.pool.wait(&params.task_id)).await
            {
                Ok(report) => report,
                Err(_) => self.pool.result(&params.task_id).await,
            },
        };
        structured(&report.map_err(to_error_data)?)
    }

    /// Cancels a task.
    #[tool(
        name = "pool_cancel",
        description = "Cancel a pending or running task. A queued task never starts; a running task's Claude process is stopped. Returns the task's final status."
    )]
    async fn pool_cancel(
        &self,
        Parameters(params): Parameters<Checked<TaskRef>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        let report = self
            .pool
            .cancel(&params.task_id)
            .await
            .map_err(to_error_data)?;
        structured(&report)
    }

    /// The pool's state.
    #[tool(
        name = "pool_status",
        description = "Slots (id, status, active_tasks, restarts), active and pending task counts, spend and budget. With `wait_ready`, answers once every slot is idle (warm and free) or given up."
    )]
    async fn pool_status(
        &self,
        Parameters(params): Parameters<Checked<StatusParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        if let Some(wait) = params.wait_ready {
            let _ = tokio::time::timeout(wait.0, self.pool.wait_ready()).await;
        }
        let status = self.pool.status().await.map_err(to_error_data)?;
        structured(&status)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for PoolServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "claude-pool",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "A pool of warm Claude Code processes. pool_run runs a task and waits; \
                 pool_submit + pool_result run it in the background; pool_cancel stops one; \
                 pool_status shows slots, queue and spend.",
            )
    }
}

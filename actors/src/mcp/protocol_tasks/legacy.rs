//! Tasks as protocol 2025-11-25 defines them: the server declares `capabilities.tasks`
//! and each work tool `execution.taskSupport: "optional"`; a `tools/call` whose params
//! carry `task: { ttl }` answers `{ task }` at once; `tasks/get`, `tasks/cancel` answer the
//! task, `tasks/result` the call's result once it ended (a tool error reads `failed`), and
//! `tasks/list` pages through the tasks.
//!
//! rmcp serves only the 2026-07-28 shape, so the transports rewrite a 2025 session's
//! messages on their way in and out ([`super::wire`]): a task-augmented `tools/call` and
//! the 2025 `tasks/get` and `tasks/cancel` arrive here as this server's own methods,
//! answered by [`PoolServer::legacy_request`] (`tasks/result` and `tasks/list`, which rmcp
//! does not know, arrive as they are).

use rmcp::ErrorData;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RequestContext, RoleServer};
use serde::Deserialize;
use serde_json::{Value, json};

use super::wire::{CALL, CANCEL, GET};
use super::{POLL_INTERVAL_MS, Phase, TASK_TOOLS, View};
use crate::mcp::PoolServer;

/// `tasks/result`: 2025-11-25 only; rmcp passes it on as a custom request.
pub const RESULT: &str = "tasks/result";
/// `tasks/list`: 2025-11-25 only; rmcp passes it on as a custom request.
pub const LIST: &str = "tasks/list";

/// Tasks `tasks/list` answers per page.
pub const LIST_PAGE: usize = 50;

/// The `_meta` key that ties a result to its task.
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskIdParams {
    task_id: String,
}

#[derive(Deserialize)]
struct CallParams {
    #[serde(flatten)]
    call: CallToolRequestParams,
    task: Option<TaskMetadata>,
}

#[derive(Deserialize)]
struct TaskMetadata {
    ttl: Option<u64>,
}

#[derive(Deserialize, Default)]
struct ListParams {
    cursor: Option<String>,
}

fn params<T: serde::de::DeserializeOwned>(method: &str, p: Option<Value>) -> Result<T, ErrorData> {
    serde_json::from_value(p.unwrap_or(Value::Null))
        .map_err(|e| ErrorData::invalid_params(format!("invalid params for {method}: {e}"), None))
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, ErrorData> {
    serde_json::to_value(v).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

impl PoolServer {
    /// Answers a 2025-11-25 task request; `None` when `method` is not one.
    pub(in crate::mcp) async fn legacy_request(
        &self,
        method: &str,
        p: Option<Value>,
        context: RequestContext<RoleServer>,
    ) -> Option<Result<Value, ErrorData>> {
        // The 2026-07-28 extension has no `tasks/result` or `tasks/list`: a session of that
        // revision gets "method not found" for them, as for any method it does not have.
        let extension_session = context
            .protocol_version()
            .is_none_or(|v| !super::wire::is_legacy_version(v.as_str()));
        if extension_session && (method == RESULT || method == LIST) {
            return None;
        }
        Some(match method {
            CALL => self.legacy_call(params(method, p), context).await,
            GET => match params::<TaskIdParams>(method, p) {
                Ok(p) => self.legacy_get(&p.task_id).await,
                Err(e) => Err(e),
            },
            CANCEL => match params::<TaskIdParams>(method, p) {
                Ok(p) => self.legacy_cancel(&p.task_id).await,
                Err(e) => Err(e),
            },
            RESULT => match params::<TaskIdParams>(method, p) {
                Ok(p) => self.legacy_result(&p.task_id, &context).await,
                Err(e) => Err(e),
            },
            LIST => match p.map_or(Ok(ListParams::default()), |p| params(method, Some(p))) {
                Ok(p) => self.legacy_list(p.cursor).await,
                Err(e) => Err(e),
            },
            _ => return None,
        })
    }

    async fn legacy_call(
        &self,
        p: Result<CallParams, ErrorData>,
        context: RequestContext<RoleServer>,
    ) -> Result<Value, ErrorData> {
        let CallParams { call, task } = p?;
        if !TASK_TOOLS.contains(&call.name.as_ref()) {
            // A tool that does not run as a task answers as it always does.
            let call = rmcp::handler::server::tool::ToolCallContext::new(self, call, context);
            return match self.tool_router.call(call).await? {
                rmcp::model::CallToolResponse::Complete(r) => to_value(&r),
                _ => Err(ErrorData::internal_error(
                    "the tool answered with no result",
                    None,
                )),
            };
        }
        let ttl = task.and_then(|t| t.ttl);
        let arguments = call.arguments.unwrap_or_default();
        match self
            .start_work(&call.name, arguments, ttl, &context)
            .await?
        {
            Ok(handle) => {
                self.follow_work(&context, handle.clone(), true);
                let view = self.view(handle).await?;
                Ok(json!({ "task": legacy_task(&view) }))
            }
            // Refused before anything ran (budget, drain, recursion limit): no task; the
            // tool's error is the answer.
            Err(refused) => Err(ErrorData::internal_error(refused_text(&refused), None)),
        }
    }

    async fn legacy_get(&self, id: &str) -> Result<Value, ErrorData> {
        let view = self.view(self.find_handle(id).await?).await?;
        Ok(legacy_task(&view))
    }

    async fn legacy_cancel(&self, id: &str) -> Result<Value, ErrorData> {
        let handle = self.find_handle(id).await?;
        let before = self.view(handle.clone()).await?;
        if !matches!(before.phase, Phase::Working) {
            return Err(ErrorData::invalid_params(
                format!(
                    "task {id} is already {}: it cannot be cancelled",
                    legacy_status(&before.phase)
                ),
                None,
            ));
        }
        self.cancel_work(&handle).await?;
        Ok(legacy_task(&self.view(handle).await?))
    }

    async fn legacy_result(
        &self,
        id: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<Value, ErrorData> {
        let handle = self.find_handle(id).await?;
        let result = self.wait_work(&handle, &context.ct).await?;
        let mut value = to_value(&result)?;
        value["_meta"] = json!({ RELATED_TASK: { "taskId": handle.id } });
        Ok(value)
    }

    async fn legacy_list(&self, cursor: Option<String>) -> Result<Value, ErrorData> {
        let (handles, more) = self
            .pool
            .handles(cursor, LIST_PAGE)
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let mut tasks = Vec::with_capacity(handles.len());
        let mut last = None;
        for handle in handles {
            last = Some(handle.id.clone());
            // A task whose work the pool no longer keeps is not listed.
            if let Ok(view) = self.view(handle).await {
                tasks.push(legacy_task(&view));
            }
        }
        let mut page = json!({ "tasks": tasks });
        if more && let Some(last) = last {
            page["nextCursor"] = Value::String(last);
        }
        Ok(page)
    }
}

/// The 2025-11-25 status of a phase: a call whose result is a tool error reads `failed`.
fn legacy_status(phase: &Phase) -> &'static str {
    match phase {
        Phase::Working => "working",
        Phase::Cancelled(_) => "cancelled",
        Phase::Done(r) if r.is_error == Some(true) => "failed",
        Phase::Done(_) => "completed",
    }
}

/// The 2025-11-25 shape of a task.
pub(in crate::mcp) fn legacy_task(view: &View) -> Value {
    json!({
        "taskId": view.handle.id,
        "status": legacy_status(&view.phase),
        "statusMessage": view.message,
        "createdAt": view.created_at(),
        "lastUpdatedAt": view.updated_at,
        "ttl": view.handle.ttl_ms,
        "pollInterval": POLL_INTERVAL_MS,
    })
}

fn refused_text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

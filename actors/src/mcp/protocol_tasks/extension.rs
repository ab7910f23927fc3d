//! The 2026-07-28 `io.modelcontextprotocol/tasks` extension, served through rmcp: a client
//! that declares it gets the task back from `tools/call`, follows it with `tasks/get` (the
//! result comes inline once the work ended) and stops it with `tasks/cancel`.

use rmcp::ErrorData;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CreateTaskResult, DetailedTask, GetTaskResult, Task,
    TaskPayload, TaskStatus as ProtocolTaskStatus,
};
use rmcp::service::{RequestContext, RoleServer};

use super::{POLL_INTERVAL_MS, Phase, TASK_TOOLS, View, result_object};
use crate::mcp::PoolServer;

/// Whether this call becomes an extension task: the tool may run as one, and the client
/// declared the `io.modelcontextprotocol/tasks` extension (at `initialize`, or in the
/// request's own `_meta`).
pub(in crate::mcp) fn as_task(
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> bool {
    TASK_TOOLS.contains(&request.name.as_ref())
        && context
            .client_capabilities()
            .is_some_and(|c| c.supports_tasks())
}

impl PoolServer {
    /// `tools/call` of a client that declared the extension: the task, at once.
    pub(in crate::mcp) async fn start_task(
        &self,
        request: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = request.arguments.unwrap_or_default();
        match self
            .start_work(&request.name, arguments, None, context)
            .await?
        {
            Ok(handle) => {
                let view = self.view(handle).await?;
                Ok(CallToolResponse::Task(CreateTaskResult::new(modern_task(
                    &view,
                ))))
            }
            Err(refused) => Ok(CallToolResponse::Complete(refused)),
        }
    }

    /// `tasks/get`: the task as it is now, with the call's result once it ended.
    pub(in crate::mcp) async fn task_status(
        &self,
        task_id: &str,
    ) -> Result<GetTaskResult, ErrorData> {
        let view = self.view(self.find_handle(task_id).await?).await?;
        let task = modern_task(&view);
        let payload = match view.phase {
            Phase::Working => TaskPayload::Working,
            Phase::Cancelled(_) => TaskPayload::Cancelled,
            // A tool that ran and failed is a completed call whose result is a tool error,
            // as the blocking call returns it.
            Phase::Done(result) => TaskPayload::Completed {
                result: result_object(&result)?,
            },
        };
        Ok(GetTaskResult::new(DetailedTask::new(task, payload)))
    }

    /// `tasks/cancel`: the pool's cancel; an ended task stays as it ended.
    pub(in crate::mcp) async fn cancel_protocol_task(
        &self,
        task_id: &str,
    ) -> Result<(), ErrorData> {
        let handle = self.find_handle(task_id).await?;
        self.cancel_work(&handle).await
    }
}

/// The 2026-07-28 shape of a task.
fn modern_task(view: &View) -> Task {
    let status = match view.phase {
        Phase::Working => ProtocolTaskStatus::Working,
        Phase::Cancelled(_) => ProtocolTaskStatus::Cancelled,
        Phase::Done(_) => ProtocolTaskStatus::Completed,
    };
    let mut task = Task::new(
        view.handle.id.clone(),
        status,
        view.created_at(),
        view.updated_at.clone(),
    )
    .with_status_message(view.message.clone())
    .with_poll_interval_ms(POLL_INTERVAL_MS);
    task.ttl_ms = view.handle.ttl_ms;
    task
}

//! The MCP server handler: tool calls, resource reads and prompt requests become
//! [`Pool`] calls.
//!
//! Written once, independent of the transport ([`crate::frontend`] runs it over stdio).
//! Tools live in one file per area ([`tasks`], [`chains`], [`admin`], [`skills`]); resources
//! and their subscriptions in [`resources`]; skills as MCP prompts in [`skills`].
//!
//! Errors map in one place ([`fail`]): bad arguments and unknown ids are invalid-params
//! errors naming what is wrong; work the pool refuses (drained, budget exhausted, halted,
//! shut down) is a tool error whose text says why, so the model reads it; a task that ran
//! and did not complete is a tool error result carrying the task report.

mod admin;
mod approvals;
mod chains;
mod complete;
mod declarations;
mod jobs;
pub mod logging;
mod notices;
pub mod protocol_tasks;
pub(crate) mod quick;
mod resources;
pub mod schema;
mod skills;
mod tasks;

use std::sync::Arc;

use claude_pool_protocol::TaskStatus;
use claude_pool_protocol::tools::{ChainReport, TaskReport};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock,
    CustomRequest, CustomResult, GetPromptRequestParams, GetPromptResponse, GetTaskParams,
    GetTaskResult, Implementation, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler, tool_handler};
use serde::Serialize;
use tracing::Instrument;

use crate::error::PoolError;
use crate::pool::Pool;
use resources::Subscriptions;

/// What a coordinator is told about the pool when it connects.
pub const INSTRUCTIONS: &str = "claude-pool runs your prompts on a pool of warm Claude Code processes (slots).
- One task: pool_run waits for the answer (output, spend_usd, tokens_used); for long work use pool_submit, then pool_result with `wait` (seconds) until it is done. pool_cancel stops a task or a chain.
- Many independent prompts: pool_fan_out runs them all at once and returns one result per prompt, in order; a failed prompt never fails the others.
- Steps that build on each other: pool_chain (blocks) or pool_submit_chain + pool_chain_result. Use {previous_output} or {output:NAME} in a step's prompt; depends_on lets independent steps run in parallel; failure_policy is abort, skip or retry.
- Notes for every task: context_set/context_delete; each task that starts afterwards sees the table.
- Money: every result has spend_usd; pool_status shows spend_usd, budget_usd and budget_remaining. Give max_budget_usd to cap one task. Once the budget is spent, new work is refused.
- Size: pool_scale_up / pool_scale_down / pool_set_target_slots; pool_drain finishes running work and stops the pool.
- Reusable tasks: pool_skill_list, then pool_skill_run. Timeouts are seconds (90) or durations (\"5m\").
- Workers' permission questions: rules answer what they match; the rest come to you as a form (or see pool_approvals, answer with pool_approve).
- Jobs in projects (claude_list_projects): claude_run (sessionId continues a conversation), claude_build (commits on a new branch), claude_job_status, claude_list_jobs, claude_cancel. pool_transcript reads any task's full transcript.";

/// The MCP server: one per connection; all pool state lives in the pool's actors.
#[derive(Clone, Debug)]
pub struct PoolServer {
    pool: Pool,
    subscriptions: Arc<Subscriptions>,
    /// Where the questions of tasks this session submitted without waiting go (to be put
    /// to its client by elicitation); made on first use.
    session_asker: Arc<std::sync::OnceLock<crate::task::ProgressSink>>,
    /// Cancelled when the transport is closing (stdin's EOF): a call cut short by that is
    /// not a client's cancel, and its work is left to the server's shutdown.
    closing: tokio_util::sync::CancellationToken,
    #[allow(dead_code)] // read by the #[tool_handler] expansion
    tool_router: Arc<ToolRouter<Self>>,
    /// This session's id in its calls' log spans.
    log_session: u64,
    /// Its subscription to the server's log (`logging/setLevel`).
    log: Arc<logging::SessionLog>,
    /// What it is told about work it started without waiting.
    notices: Arc<notices::Notices>,
}

impl PoolServer {
    /// A server handing requests to `pool`.
    pub fn new(pool: Pool) -> Self {
        PoolServer {
            subscriptions: Arc::new(Subscriptions::new(pool.clone())),
            session_asker: Arc::default(),
            closing: tokio_util::sync::CancellationToken::new(),
            tool_router: Self::tools(pool.config().tools),
            pool,
            log_session: logging::new_session(),
            log: Arc::default(),
            notices: Arc::default(),
        }
    }

    /// The same server, told by `closing` when its transport is closing.
    pub fn closing_with(mut self, closing: tokio_util::sync::CancellationToken) -> Self {
        self.closing = closing;
        self
    }

    /// A call cut short: by its client (its work is cancelled: nothing is left running
    /// for no one), or by the transport closing (the work is left to the shutdown, which
    /// keeps it for the next server with a store).
    pub(crate) async fn call_cut(
        &self,
        what: &str,
        cancel: impl std::future::Future<Output = ()>,
    ) -> ErrorData {
        if self.closing.is_cancelled() {
            return ErrorData::internal_error(
                format!("the server is stopping; {what} is left to its shutdown"),
                None,
            );
        }
        cancel.await;
        ErrorData::internal_error(
            format!("the request was cancelled; {what} was cancelled"),
            None,
        )
    }

    /// Every tool as its handler declares it, before [`declarations::apply`].
    fn every_tool() -> ToolRouter<Self> {
        Self::task_tools()
            + Self::chain_tools()
            + Self::admin_tools()
            + Self::skill_tools()
            + Self::job_tools()
            + Self::approval_tools()
    }

    /// Every tool with its schema, built once: a server is made per HTTP session (and per
    /// request of a stateless one), and the schemas cost more to generate than a call.
    fn tools(profile: crate::config::ToolProfile) -> Arc<ToolRouter<Self>> {
        type Built = std::sync::OnceLock<Arc<ToolRouter<PoolServer>>>;
        static TOOLS: [Built; 3] = [Built::new(), Built::new(), Built::new()];
        let slot = match profile {
            crate::config::ToolProfile::Core => 0,
            crate::config::ToolProfile::Jobs => 1,
            crate::config::ToolProfile::All => 2,
        };
        TOOLS[slot]
            .get_or_init(|| {
                let mut router = Self::every_tool();
                for tool in router.list_all() {
                    if !profile.serves(&tool.name) {
                        router.remove_route(&tool.name);
                    }
                }
                for route in router.map.values_mut() {
                    declarations::apply(&mut route.attr);
                }
                Arc::new(router)
            })
            .clone()
    }
}

/// Tool arguments whose deserialization error is kept for the handler, so that malformed
/// arguments become an error naming the field (an `isError` tool result, see
/// `call_tool`). The JSON schema is `T`'s.
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

/// Maps a pool error to what the client should see: a tool error the model reads for
/// refused work, an invalid-params error for everything the caller got wrong.
pub fn fail(e: PoolError) -> Result<CallToolResult, ErrorData> {
    match &e {
        PoolError::Refused(_) | PoolError::Stopped(_) => {
            Ok(CallToolResult::error(vec![ContentBlock::text(
                e.to_string(),
            )]))
        }
        PoolError::RecursionLimit { depth, max } => {
            let mut r = CallToolResult::error(vec![ContentBlock::text(e.to_string())]);
            r.structured_content = Some(serde_json::json!({
                "error": "recursion_limit_exceeded",
                "depth": depth,
                "maxDepth": max,
            }));
            Ok(r)
        }
        _ => Err(to_error_data(e)),
    }
}

/// A tool's argument error as the model sees it: the message as text, and
/// `{"error": "invalid_arguments", "message": …}` as structured content.
fn argument_error(e: &ErrorData) -> CallToolResult {
    let mut r = CallToolResult::error(vec![ContentBlock::text(e.message.to_string())]);
    r.structured_content = Some(serde_json::json!({
        "error": "invalid_arguments",
        "message": e.message,
    }));
    r
}

/// A mistake in a known tool's arguments is the model's to see and correct: a tool result
/// with `isError`, naming the field. Unknown tools and malformed requests stay protocol
/// errors.
fn arguments_as_result<T: From<CallToolResult>>(
    known: bool,
    answer: Result<T, ErrorData>,
) -> Result<T, ErrorData> {
    match answer {
        Err(e) if known && e.code == rmcp::model::ErrorCode::INVALID_PARAMS => {
            Ok(argument_error(&e).into())
        }
        other => other,
    }
}

/// Maps a pool error to a protocol error (for requests that are not tool calls).
pub fn to_error_data(e: PoolError) -> ErrorData {
    match &e {
        PoolError::Stopped(_) | PoolError::Refused(_) => {
            ErrorData::internal_error(e.to_string(), None)
        }
        _ => ErrorData::invalid_params(e.to_string(), None),
    }
}

/// The header a nested Claude's MCP client sets with its own recursion depth.
pub const DEPTH_HEADER: &str = "x-mcp-depth";

impl PoolServer {
    /// The recursion depth of a request: over HTTP the larger of its `x-mcp-depth` header
    /// and the server's own depth; otherwise the server's own (`None`).
    fn request_depth(&self, context: &RequestContext<RoleServer>) -> Option<u32> {
        let header = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.headers.get(DEPTH_HEADER))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok())?;
        Some(header.max(self.pool.depth()))
    }
}

/// `Ok(value)` as structured content, an error through [`fail`].
fn answer<T: Serialize>(r: Result<T, PoolError>) -> Result<CallToolResult, ErrorData> {
    match r {
        Ok(v) => structured(&v),
        Err(e) => fail(e),
    }
}

fn structured<T: Serialize>(value: &T) -> Result<CallToolResult, ErrorData> {
    let json =
        serde_json::to_value(value).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    Ok(CallToolResult::structured(json))
}

/// A tool error with `message` first and `value` as its structured content.
fn structured_error<T: Serialize>(message: String, value: &T) -> Result<CallToolResult, ErrorData> {
    let json =
        serde_json::to_value(value).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    let mut result = CallToolResult::error(vec![
        ContentBlock::text(message),
        ContentBlock::text(json.to_string()),
    ]);
    result.structured_content = Some(json);
    Ok(result)
}

/// Something that ran, as a tool result: success when it completed, a tool error otherwise,
/// with the reason first so it reads well and the report as structured content.
fn finished<T: Serialize>(
    what: std::fmt::Arguments<'_>,
    completed: bool,
    error: Option<&str>,
    report: &T,
) -> Result<CallToolResult, ErrorData> {
    if completed {
        return structured(report);
    }
    let message = format!("{what}: {}", error.unwrap_or("no reason recorded"));
    structured_error(message, report)
}

/// A finished task as a tool result.
fn task_result(report: &TaskReport) -> Result<CallToolResult, ErrorData> {
    finished(
        format_args!("task {} {}", report.task_id, report.status),
        report.status == TaskStatus::Completed,
        report.error.as_deref(),
        report,
    )
}

/// A finished chain as a tool result.
fn chain_result(report: &ChainReport) -> Result<CallToolResult, ErrorData> {
    finished(
        format_args!("chain {} {}", report.chain_id, report.status),
        report.status == claude_pool_protocol::ChainStatus::Completed,
        report.error.as_deref(),
        report,
    )
}

/// Answers with `wait`'s result if it comes within `limit` (when given), else with `now`'s.
async fn long_poll<T: Serialize>(
    limit: Option<claude_pool_protocol::Timeout>,
    wait: impl std::future::Future<Output = Result<T, PoolError>>,
    now: impl std::future::Future<Output = Result<T, PoolError>>,
) -> Result<CallToolResult, ErrorData> {
    let answer = match limit {
        Some(l) => match tokio::time::timeout(l.0, wait).await {
            Ok(r) => r,
            Err(_) => now.await,
        },
        None => now.await,
    };
    match answer {
        Ok(r) => structured(&r),
        Err(e) => fail(e),
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for PoolServer {
    #[allow(deprecated)] // logging: the 2025-11-25 revision's capability
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::builder()
            .enable_tasks()
            .enable_prompts()
            .enable_resources()
            .enable_tools()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .enable_logging()
            .enable_completions()
            .build();
        if self.pool.config().channels {
            // Claude Code's channels: the session registers a listener for
            // `notifications/claude/channel` (see `notices`).
            capabilities.experimental = Some(std::collections::BTreeMap::from([(
                "claude/channel".to_owned(),
                rmcp::model::JsonObject::new(),
            )]));
        }
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "claude-pool",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if protocol_tasks::as_task(&request, &context) {
            return self.start_task(request, &context).await;
        }
        let known = self.tool_router.has_route(&request.name);
        let span = tracing::debug_span!(
            logging::CALL_SPAN,
            session = self.log_session,
            tool = %request.name
        );
        let answer = async {
            let name = request.name.clone();
            tracing::debug!(tool = %name, "call");
            let answer = if request.name == "pool_run"
                && approvals::asking(&context) == approvals::Asking::InputRequired
            {
                self.run_task_input_required(request, &context).await
            } else {
                let call =
                    rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
                self.tool_router.call(call).await
            };
            tracing::debug!(tool = %name, ok = answer.is_ok(), "answered");
            answer
        }
        .instrument(span)
        .await;
        arguments_as_result(known, answer)
    }

    async fn complete(
        &self,
        request: rmcp::model::CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CompleteResult, ErrorData> {
        complete::complete(&self.pool, &request).await
    }

    #[allow(deprecated)] // logging belongs to the 2025-11-25 revision
    async fn set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.log
            .set(self.log_session, request.level, context.peer.clone());
        Ok(())
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        self.task_status(&request.task_id).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.cancel_protocol_task(&request.task_id).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Pool tasks never ask the client for input: there is nothing to answer.
        self.find_handle(&request.task_id).await.map(drop)
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        let CustomRequest { method, params, .. } = request;
        match self.legacy_request(&method, params, context).await {
            Some(answer) => answer.map(CustomResult::new),
            None => Err(ErrorData::new(
                rmcp::model::ErrorCode::METHOD_NOT_FOUND,
                format!("Method not found: {method}"),
                None,
            )),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(resources::listed()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let result = resources::read(&self.pool, &request.uri).await?;
        Ok(ReadResourceResponse::Complete(result))
    }

    #[allow(deprecated)] // the subscription model of protocol versions before 2026-07-28
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions
            .subscribe(&request.uri, context.peer.clone())
            .await
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions.unsubscribe(&request.uri);
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(resources::accepted(requested))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        resources::listen(self.pool.clone(), context).await;
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(skills::prompts(
            &self.pool,
        )))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let result = skills::get_prompt(&self.pool, &request.name, request.arguments)?;
        Ok(GetPromptResponse::Complete(result))
    }
}

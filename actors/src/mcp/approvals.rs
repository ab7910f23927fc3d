//! Approvals over MCP: `pool_approvals` and `pool_approve` for any client, and asking the
//! client that started a task by elicitation.
//!
//! How a client is asked depends on its session:
//! - **2025-11-25 and earlier** (a server→client request has a way back): a waiting call
//!   (`pool_run`) sends `elicitation/create` from inside the call, so over HTTP it rides
//!   the call's own response stream; tasks submitted without waiting are asked through
//!   the session ([`PoolServer::session_listener`]).
//! - **2026-07-28** (no server→client requests): `pool_run` answers with an
//!   `InputRequiredResult` carrying the elicitation; the client retries the call with its
//!   answer and the `requestState` (the task's id), and the call goes on waiting for the
//!   same task.
//!
//! A client that declines or cancels the form, or cannot elicit, leaves the request
//! pending: `pool_approve`, the status page, the embedding API or the timeout answer it.

use std::borrow::Cow;

use claude_pool_protocol::TaskId;
use claude_pool_protocol::approvals::{
    Answer, ApprovalKind, ApprovalRequest, ApprovalsParams, ApprovalsReport, ApproveParams,
    answer_from_form, approval_form_schema,
};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationSchema,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::{ErrorData, RoleServer, tool, tool_router};

use super::{Checked, PoolServer, fail, structured};
use crate::task::{ProgressSink, TaskProgress};

/// How a client can be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Asking {
    /// By `elicitation/create` (protocol 2025-11-25 and earlier).
    Request,
    /// By an `InputRequiredResult` (protocol 2026-07-28).
    InputRequired,
    /// Not at all: it declared no form elicitation.
    No,
}

/// How the client of `context` can be asked.
pub(super) fn asking(context: &RequestContext<RoleServer>) -> Asking {
    let form = context
        .client_capabilities()
        .and_then(|c| c.elicitation)
        .is_some_and(|e| e.form.is_some() || e.url.is_none());
    if !form {
        return Asking::No;
    }
    match context.protocol_version() {
        Some(v) if v >= rmcp::model::ProtocolVersion::V_2026_07_28 => Asking::InputRequired,
        _ => Asking::Request,
    }
}

/// Who a client is, for the audit trail: `client:<name>[/<session>]`.
pub(super) fn client_name(context: &RequestContext<RoleServer>) -> String {
    let name = context
        .client_info()
        .map(|i| i.name)
        .unwrap_or_else(|| "mcp".into());
    let session = context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|p| p.headers.get("mcp-session-id"))
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(12).collect::<String>());
    match session {
        Some(s) => format!("client:{name}/{s}"),
        None => format!("client:{name}"),
    }
}

/// The progress line of a waiting request.
pub(super) fn waiting_line(request: &ApprovalRequest) -> String {
    match request.kind {
        ApprovalKind::Tool => format!(
            "waiting for approval: {} `{}` ({})",
            request.tool, request.summary, request.request_id
        ),
        ApprovalKind::Elicitation => format!(
            "waiting for an answer: {} ({})",
            request.summary, request.request_id
        ),
    }
}

/// The form a person sees for `request`.
pub(super) fn elicitation_of(request: &ApprovalRequest) -> Option<ElicitRequestParams> {
    let (message, schema) = match request.kind {
        ApprovalKind::Tool => {
            let input = serde_json::to_string_pretty(&request.input).unwrap_or_default();
            let input: String = input.chars().take(4000).collect();
            (
                format!(
                    "Task {} on {} wants to use {}:\n\n{}\n\nFull input:\n{}\n\n(request {}; expires {})",
                    request.task_id,
                    request.slot_id,
                    request.tool,
                    request.summary,
                    input,
                    request.request_id,
                    request.expires_at
                ),
                approval_form_schema(),
            )
        }
        ApprovalKind::Elicitation => (
            format!(
                "Task {} on {}: its MCP server {} asks: {}",
                request.task_id,
                request.slot_id,
                request.tool,
                request.message.as_deref().unwrap_or("")
            ),
            request.input.clone(),
        ),
    };
    let requested_schema: ElicitationSchema = serde_json::from_value(schema).ok()?;
    Some(ElicitRequestParams::FormElicitationParams {
        meta: None,
        message,
        requested_schema,
    })
}

/// What a client's reply to the form of a `kind` request answers; `None` leaves the
/// request to the other ways (a declined or cancelled approval form).
pub(super) fn answer_of(kind: ApprovalKind, reply: &ElicitResult) -> Option<Answer> {
    match (kind, &reply.action) {
        (ApprovalKind::Tool, ElicitationAction::Accept) => {
            reply.content.as_ref().and_then(answer_from_form)
        }
        (ApprovalKind::Tool, _) => None,
        (ApprovalKind::Elicitation, ElicitationAction::Accept) => Some(Answer {
            content: Some(
                reply
                    .content
                    .as_ref()
                    .and_then(|c| c.as_object().cloned())
                    .unwrap_or_default(),
            ),
            ..Answer::allow()
        }),
        (ApprovalKind::Elicitation, ElicitationAction::Decline) => {
            Some(Answer::deny("declined by the client"))
        }
        (ApprovalKind::Elicitation, _) => Some(Answer::cancel("cancelled by the client")),
    }
}

/// Asks `peer` about `request` and hands its answer to the pool. Returns the request id
/// and whether the client answered.
pub(super) async fn ask_client(
    pool: crate::Pool,
    peer: Peer<RoleServer>,
    request: ApprovalRequest,
    by: String,
) -> (String, bool) {
    let id = request.request_id.clone();
    let Some(params) = elicitation_of(&request) else {
        if request.kind == ApprovalKind::Elicitation {
            let _ = pool
                .approve_as(
                    &id,
                    Answer::cancel("its form cannot be shown over MCP"),
                    &by,
                )
                .await;
        }
        return (id, false);
    };
    let reply = match peer.create_elicitation(params).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(approval = %id, error = %e, "the client could not be asked");
            if request.kind == ApprovalKind::Elicitation {
                let _ = pool
                    .approve_as(&id, Answer::cancel("the client could not be asked"), &by)
                    .await;
            }
            return (id, false);
        }
    };
    match answer_of(request.kind, &reply) {
        Some(answer) => {
            let taken = pool.approve_as(&id, answer, &by).await.is_ok();
            (id, taken)
        }
        None => (id, false),
    }
}

/// One form in flight: the request it asks about, and whether the client answered.
type FormInFlight = std::pin::Pin<Box<dyn std::future::Future<Output = (String, bool)> + Send>>;

/// The questions of the tasks one waiting call started (`pool_run`, `pool_fan_out`): each
/// is put to the call's client by elicitation from inside the call (so over HTTP it rides
/// the call's own response stream), or — an MCP server's elicitation the client cannot
/// answer — cancelled at once.
pub(super) struct CallAsker<'a> {
    pool: crate::Pool,
    context: &'a RequestContext<RoleServer>,
    asking: Asking,
    by: String,
    asks: futures::stream::FuturesUnordered<FormInFlight>,
}

impl<'a> CallAsker<'a> {
    pub(super) fn new(pool: crate::Pool, context: &'a RequestContext<RoleServer>) -> Self {
        CallAsker {
            pool,
            asking: asking(context),
            by: client_name(context),
            context,
            asks: futures::stream::FuturesUnordered::new(),
        }
    }

    /// A question of one of the call's tasks.
    pub(super) async fn question(&mut self, request: &ApprovalRequest) {
        match self.asking {
            Asking::Request => self.asks.push(Box::pin(ask_client(
                self.pool.clone(),
                self.context.peer.clone(),
                request.clone(),
                self.by.clone(),
            ))),
            _ if request.kind == ApprovalKind::Elicitation => {
                let _ = self
                    .pool
                    .approve_as(
                        &request.request_id,
                        Answer::cancel("the client of this task cannot answer it"),
                        &self.by,
                    )
                    .await;
            }
            _ => {}
        }
    }

    /// Drives the forms in flight; pending while there are none.
    pub(super) async fn drive(&mut self) {
        if self.asks.is_empty() {
            return std::future::pending().await;
        }
        let _ = futures::StreamExt::next(&mut self.asks).await;
    }
}

impl PoolServer {
    /// A listener for tasks this session submits without waiting on them: their
    /// questions go to the session's client by elicitation (when it can be asked that way).
    pub(super) fn session_listener(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Option<ProgressSink> {
        if asking(context) != Asking::Request {
            return None;
        }
        let by = client_name(context);
        Some(
            self.session_asker
                .get_or_init(|| {
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<TaskProgress>();
                    let pool = self.pool.clone();
                    let peer = context.peer.clone();
                    tokio::spawn(async move {
                        while let Some(event) = rx.recv().await {
                            if let TaskProgress::Approval(request) = event {
                                tokio::spawn(ask_client(
                                    pool.clone(),
                                    peer.clone(),
                                    request,
                                    by.clone(),
                                ));
                            }
                        }
                    });
                    tx
                })
                .clone(),
        )
    }
}

#[tool_router(router = approval_tools, vis = "pub(super)")]
impl PoolServer {
    /// Pending permission questions.
    #[tool(
        name = "pool_approvals",
        description = "Workers' permission questions awaiting an answer."
    )]
    async fn pool_approvals(
        &self,
        Parameters(params): Parameters<Checked<ApprovalsParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        let pending = match params.wait {
            Some(limit) => {
                self.pool
                    .wait_approvals(params.task_id.as_ref(), limit.0)
                    .await
            }
            None => self.pool.pending_approvals(params.task_id.as_ref()).await,
        };
        match pending {
            Ok(pending) => structured(&ApprovalsReport { pending }),
            Err(e) => fail(e),
        }
    }

    /// Answers one.
    #[tool(
        name = "pool_approve",
        description = "Answer a worker's permission question."
    )]
    async fn pool_approve(
        &self,
        Parameters(params): Parameters<Checked<ApproveParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        let answer =
            Answer::from_params(&params).map_err(|e| ErrorData::invalid_params(e, None))?;
        match self
            .pool
            .approve_as(&params.request_id, answer, "tool:pool_approve")
            .await
        {
            Ok(r) => structured(&r),
            Err(crate::PoolError::InvalidArgument(e)) => Err(ErrorData::invalid_params(e, None)),
            Err(e) => fail(e),
        }
    }
}

/// The `requestState` of a `pool_run` waiting on `task`.
pub(super) fn request_state(task: &TaskId) -> String {
    format!("pool_run:{task}")
}

/// The task a `requestState` names.
pub(super) fn task_of_state(state: &str) -> Option<TaskId> {
    state
        .strip_prefix("pool_run:")
        .filter(|t| t.starts_with("task-") && t.len() < 64)
        .map(|t| TaskId(t.to_owned()))
}

/// The key of `request` in an `InputRequiredResult`.
pub(super) fn input_key(request: &ApprovalRequest) -> Cow<'_, str> {
    Cow::Borrowed(&request.request_id)
}

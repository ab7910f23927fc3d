//! Tasks as protocol 2025-11-25 defines them: the server declares `capabilities.tasks`
//! and each work tool `execution.taskSupport: "optional"`; a `tools/call` whose params
//! carry `task: { ttl }` answers `{ task }` at once; `tasks/get`, `tasks/cancel` answer the
//! task, `tasks/result` the call's result once it ended (a tool error reads `failed`), and
//! `tasks/list` pages through the tasks.
//!
//! rmcp serves only the 2026-07-28 shape, so the transports rewrite a 2025 session's
//! messages on their way in and out ([`inbound`], [`outbound`]): a task-augmented
//! `tools/call` and the 2025 `tasks/get` and `tasks/cancel` become this server's own
//! methods ([`CALL`], [`GET`], [`CANCEL`]), answered by [`PoolServer::legacy_request`]
//! (`tasks/result` and `tasks/list`, which rmcp does not know, arrive as they are), and
//! the `initialize` and `tools/list` answers gain the capability and the tools' task
//! support.

use rmcp::ErrorData;
use rmcp::model::{CallToolRequestParams, CallToolResult, ProtocolVersion};
use rmcp::service::{RequestContext, RoleServer};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use super::{POLL_INTERVAL_MS, Phase, TASK_TOOLS, View};
use crate::mcp::PoolServer;

/// A task-augmented `tools/call` of a 2025-11-25 session, renamed on the way in.
pub const CALL: &str = "claude-pool/tasks/call";
/// `tasks/get` of a 2025-11-25 session, renamed on the way in.
pub const GET: &str = "claude-pool/tasks/get";
/// `tasks/cancel` of a 2025-11-25 session, renamed on the way in.
pub const CANCEL: &str = "claude-pool/tasks/cancel";
/// `tasks/result`: 2025-11-25 only; rmcp passes it on as a custom request.
pub const RESULT: &str = "tasks/result";
/// `tasks/list`: 2025-11-25 only; rmcp passes it on as a custom request.
pub const LIST: &str = "tasks/list";

/// Tasks `tasks/list` answers per page.
pub const LIST_PAGE: usize = 50;

/// The `_meta` key that ties a result to its task.
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// Whether `version` is a protocol before 2026-07-28 (which has no extension mechanism
/// for tasks and uses the `tasks` capability).
pub fn is_legacy_version(version: &str) -> bool {
    version < ProtocolVersion::V_2026_07_28.as_str()
}

/// What an answer to a rewritten request needs on its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Augment {
    /// An `initialize` answer: add `capabilities.tasks`.
    Initialize,
    /// A `tools/list` answer: mark the work tools `taskSupport: optional`.
    ToolsList,
}

/// What the transports do with one client message.
#[derive(Debug, Default, PartialEq)]
pub struct Inbound {
    /// The message to pass on instead, when it was rewritten.
    pub rewritten: Option<Vec<u8>>,
    /// The request's id (as JSON text) and what its answer needs, if anything.
    pub augment: Option<(String, Augment)>,
    /// For a message that opens a session (`initialize`, `server/discover`): whether the
    /// session uses 2025-11-25 tasks — it speaks a protocol before 2026-07-28 and did not
    /// declare the extension.
    pub opens: Option<bool>,
}

#[derive(Deserialize)]
struct Head {
    id: Option<Value>,
    method: Option<String>,
    params: Option<HeadParams>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeadParams {
    task: Option<IgnoredAny>,
    protocol_version: Option<String>,
    capabilities: Option<HeadCapabilities>,
    #[serde(rename = "_meta")]
    meta: Option<HeadMeta>,
}

#[derive(Deserialize)]
struct HeadCapabilities {
    extensions: Option<serde_json::Map<String, Value>>,
}

impl HeadCapabilities {
    fn declare_tasks(&self) -> bool {
        self.extensions
            .as_ref()
            .is_some_and(|e| e.contains_key(rmcp::model::TASKS_EXTENSION_ID))
    }
}

/// A 2026-07-28 request names its protocol and capabilities in its own `_meta`.
#[derive(Deserialize)]
struct HeadMeta {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: Option<String>,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities")]
    client_capabilities: Option<HeadCapabilities>,
}

/// Looks at one client message; `legacy_session` says whether its session uses
/// 2025-11-25 tasks (see [`Inbound::opens`]); a request's own `_meta` overrides it. Only
/// the messages named in the module's documentation change.
pub fn inbound(message: &[u8], legacy_session: bool) -> Inbound {
    let Ok(head) = serde_json::from_slice::<Head>(message) else {
        return Inbound::default();
    };
    let (Some(method), Some(id)) = (head.method.as_deref(), head.id.as_ref()) else {
        return Inbound::default();
    };
    let id_text = id.to_string();
    let mut out = Inbound::default();
    let params = head.params.as_ref();
    let meta = params.and_then(|p| p.meta.as_ref());
    let own_version = meta.and_then(|m| m.protocol_version.as_deref());
    let own_extension = meta
        .and_then(|m| m.client_capabilities.as_ref())
        .is_some_and(HeadCapabilities::declare_tasks);
    let legacy = !own_extension && own_version.map_or(legacy_session, is_legacy_version);
    let renamed = match method {
        "server/discover" => {
            out.opens = Some(false);
            None
        }
        "initialize" => {
            let version = params.and_then(|p| p.protocol_version.as_deref());
            let extension = params
                .and_then(|p| p.capabilities.as_ref())
                .is_some_and(HeadCapabilities::declare_tasks);
            let legacy = version.is_none_or(is_legacy_version) && !extension;
            out.opens = Some(legacy);
            if legacy {
                out.augment = Some((id_text, Augment::Initialize));
            }
            None
        }
        "tools/list" if legacy => {
            out.augment = Some((id_text, Augment::ToolsList));
            None
        }
        "tools/call" if legacy && params.is_some_and(|p| p.task.is_some()) => Some(CALL),
        "tasks/get" if legacy => Some(GET),
        "tasks/cancel" if legacy => Some(CANCEL),
        _ => None,
    };
    if let Some(to) = renamed
        && let Ok(mut value) = serde_json::from_slice::<Value>(message)
    {
        value["method"] = Value::String(to.to_owned());
        out.rewritten = serde_json::to_vec(&value).ok();
    }
    out
}

/// The id (as JSON text) of a server message that answers a request (a result or an
/// error), if it is one.
pub fn answer_id(message: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Answer {
        id: Option<Value>,
        method: Option<IgnoredAny>,
        result: Option<IgnoredAny>,
        error: Option<IgnoredAny>,
    }
    let a: Answer = serde_json::from_slice(message).ok()?;
    if a.method.is_some() || (a.result.is_none() && a.error.is_none()) {
        return None;
    }
    a.id.map(|id| id.to_string())
}

/// Adds what a 2025-11-25 client reads to an answer (a whole JSON-RPC message).
pub fn outbound(message: &mut Value, augment: Augment) {
    let Some(result) = message.get_mut("result") else {
        return;
    };
    match augment {
        Augment::Initialize => {
            if let Some(caps) = result
                .get_mut("capabilities")
                .and_then(Value::as_object_mut)
            {
                caps.insert(
                    "tasks".into(),
                    json!({ "list": {}, "cancel": {}, "requests": { "tools": { "call": {} } } }),
                );
            }
        }
        Augment::ToolsList => {
            if let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) {
                for tool in tools {
                    let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
                    if TASK_TOOLS.contains(&name) {
                        tool["execution"] = json!({ "taskSupport": "optional" });
                    }
                }
            }
        }
    }
}

/// `outbound` on the bytes of one message; the bytes unchanged when they do not parse.
pub fn outbound_bytes(message: &[u8], augment: Augment) -> Vec<u8> {
    match serde_json::from_slice::<Value>(message) {
        Ok(mut v) => {
            outbound(&mut v, augment);
            serde_json::to_vec(&v).unwrap_or_else(|_| message.to_vec())
        }
        Err(_) => message.to_vec(),
    }
}

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
fn legacy_task(view: &View) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_2025_session_has_its_task_methods_renamed_and_others_pass() {
        let call = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"pool_run","arguments":{"prompt":"x"},"task":{"ttl":60000}}}"#;
        let got = inbound(call, true);
        let v: Value = serde_json::from_slice(&got.rewritten.expect("rewritten")).unwrap();
        assert_eq!(v["method"], CALL);
        assert_eq!(v["params"]["task"]["ttl"], 60000);
        let plain = br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"pool_run","arguments":{"prompt":"x"}}}"#;
        assert_eq!(inbound(plain, true), Inbound::default());
        let get =
            br#"{"jsonrpc":"2.0","id":"g","method":"tasks/get","params":{"taskId":"task-1"}}"#;
        let v: Value = serde_json::from_slice(&inbound(get, true).rewritten.unwrap()).unwrap();
        assert_eq!(
            (v["method"].as_str(), v["id"].as_str()),
            (Some(GET), Some("g"))
        );
        assert_eq!(
            inbound(get, false),
            Inbound::default(),
            "2026 sessions go to rmcp"
        );
        let list = br#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;
        assert_eq!(
            inbound(list, true).augment,
            Some(("5".to_owned(), Augment::ToolsList))
        );
        let init = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#;
        let got = inbound(init, true);
        assert_eq!(got.opens, Some(true));
        assert_eq!(got.augment, Some(("0".to_owned(), Augment::Initialize)));
        let with_extension = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}},"clientInfo":{"name":"c","version":"1"}}}"#;
        let got = inbound(with_extension, true);
        assert_eq!((got.opens, got.augment), (Some(false), None));
        let inline = br#"{"jsonrpc":"2.0","id":"i","method":"tasks/get","params":{"taskId":"t","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        assert_eq!(
            inbound(inline, true),
            Inbound::default(),
            "a request's own _meta decides"
        );
    }

    #[test]
    fn answers_gain_the_capability_and_the_tools_their_task_support() {
        let mut init = json!({"jsonrpc":"2.0","id":0,"result":{"capabilities":{"tools":{}}}});
        outbound(&mut init, Augment::Initialize);
        assert_eq!(
            init["result"]["capabilities"]["tasks"]["requests"]["tools"]["call"],
            json!({})
        );
        let mut list = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"pool_run"},{"name":"pool_status"}]}});
        outbound(&mut list, Augment::ToolsList);
        assert_eq!(
            list["result"]["tools"][0]["execution"]["taskSupport"],
            "optional"
        );
        assert!(list["result"]["tools"][1].get("execution").is_none());
        assert_eq!(
            answer_id(br#"{"jsonrpc":"2.0","id":7,"result":{}}"#).as_deref(),
            Some("7")
        );
        assert_eq!(
            answer_id(br#"{"jsonrpc":"2.0","method":"notifications/progress"}"#),
            None
        );
    }
}

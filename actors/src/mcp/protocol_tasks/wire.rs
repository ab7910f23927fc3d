//! The 2025-11-25 task messages on the wire. rmcp decodes only the 2026-07-28 shape, so the
//! transports (the stdio relay, an HTTP layer) pass every client message through
//! [`inbound`] and every answer that needs it through [`outbound`]: a 2025 session's
//! task-augmented `tools/call`, `tasks/get` and `tasks/cancel` are renamed to this server's
//! own methods ([`CALL`], [`GET`], [`CANCEL`], answered by [`super::legacy`]), and its
//! `initialize` and `tools/list` answers gain `capabilities.tasks` and the work tools'
//! `execution.taskSupport`.

use rmcp::model::ProtocolVersion;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use super::TASK_TOOLS;

/// A task-augmented `tools/call` of a 2025-11-25 session, renamed on the way in.
pub const CALL: &str = "claude-pool/tasks/call";
/// `tasks/get` of a 2025-11-25 session, renamed on the way in.
pub const GET: &str = "claude-pool/tasks/get";
/// `tasks/cancel` of a 2025-11-25 session, renamed on the way in.
pub const CANCEL: &str = "claude-pool/tasks/cancel";
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

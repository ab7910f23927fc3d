//! Approvals: a worker's permission question (or its MCP server's elicitation) waiting for
//! an answer, the answer, and the audit record each question leaves.
//!
//! A slot runs Claude with `--permission-prompt-tool stdio`; when Claude wants a tool its
//! rules do not already allow, it asks the slot. The pool's rules ([`crate::rules`]) answer
//! what they match; everything else becomes an [`ApprovalRequest`] that a person answers
//! (an MCP client by elicitation, `pool_approve`, the status page, the embedding API) or
//! that is denied when `--approval-timeout` runs out.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{SlotId, TaskId};

/// The prefix of every approval request id.
pub const APPROVAL_PREFIX: &str = "apr-";

/// How many characters of a tool's input a request shows in its one-line summary.
pub const SUMMARY_CHARS: usize = 200;

/// What a worker asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalKind {
    /// Claude wants to use a tool (`can_use_tool`): allow or deny.
    Tool,
    /// One of the worker's own MCP servers asks its user for input (`elicitation`):
    /// accept with content, decline or cancel.
    Elicitation,
}

/// A question waiting for an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRequest {
    /// The request's id (`apr-…`), for `pool_approve`.
    pub request_id: String,
    /// The task whose Claude asks.
    pub task_id: TaskId,
    /// The slot it runs on.
    pub slot_id: SlotId,
    /// A tool permission or an MCP server's elicitation.
    pub kind: ApprovalKind,
    /// The tool Claude wants (for an elicitation: the MCP server's name).
    pub tool: String,
    /// One line: the command, the file, the URL, or the input in short.
    pub summary: String,
    /// The tool's whole input (for an elicitation: its requested schema).
    pub input: serde_json::Value,
    /// For an elicitation: what the MCP server says to its user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was asked (RFC 3339, UTC).
    pub requested_at: String,
    /// When it is denied (or cancelled) without an answer (RFC 3339, UTC).
    pub expires_at: String,
}

/// An answer to a tool permission question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Let the tool run.
    Allow,
    /// Refuse it; the message (if any) goes back to Claude.
    Deny,
}

/// How far an allow reaches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// This one request.
    #[default]
    Once,
    /// This request and every later one of the same task that Claude's suggested rule
    /// (or, without one, the same tool and input) covers.
    Task,
}

/// Parameters of `pool_approvals`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    /// Wait this long for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<crate::Timeout>,
}

/// Parameters of `pool_approve`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveParams {
    pub request_id: String,
    /// For an elicitation: allow accepts, deny declines.
    pub decision: Decision,
    /// With deny: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// task: also allow its later requests this rule covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// For an elicitation: the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The longest message a deny may carry back to Claude.
pub const MAX_DENY_MESSAGE: usize = 4096;

/// What `pool_approvals` answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalsReport {
    /// Requests waiting for an answer, oldest first.
    pub pending: Vec<ApprovalRequest>,
}

/// What `pool_approve` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApproveReport {
    /// The request.
    pub request_id: String,
    /// The task it belonged to.
    pub task_id: TaskId,
    /// What was decided (allow, deny, accept, decline).
    pub outcome: String,
}

/// One question and how it ended: the task's audit trail (`approvals` in its report, a
/// line in its transcript, a column in the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRecord {
    /// The request's id (`apr-…`); rule decisions have one too.
    pub request_id: String,
    /// A tool permission or an elicitation.
    pub kind: ApprovalKind,
    /// The tool (or MCP server).
    pub tool: String,
    /// One line: the command, the file, the URL, or the input in short.
    pub summary: String,
    /// allow, deny (tools); accept, decline, cancel (elicitations).
    pub outcome: String,
    /// Who decided: `rule:<rule>`, `grant:<request id>`, `client:<session>`, `page`,
    /// `tool:pool_approve`, `api`, `timeout`, `task_ended`, `no_one`.
    pub by: String,
    /// With allow: once or task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// The message sent back to Claude with a deny.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was asked (RFC 3339, UTC).
    pub requested_at: String,
    /// When it was decided (RFC 3339, UTC).
    pub decided_at: String,
}

/// An answer, as any way of answering gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// Allow (accept) or deny (decline).
    pub decision: Decision,
    /// With deny: why.
    pub message: Option<String>,
    /// With allow: how far it reaches.
    pub scope: Scope,
    /// For an elicitation accepted: the content.
    pub content: Option<serde_json::Map<String, serde_json::Value>>,
    /// For an elicitation: cancel rather than decline.
    pub cancel: bool,
}

impl Answer {
    /// Allow once.
    pub fn allow() -> Self {
        Answer {
            decision: Decision::Allow,
            message: None,
            scope: Scope::Once,
            content: None,
            cancel: false,
        }
    }

    /// Deny, telling Claude why.
    pub fn deny(message: impl Into<String>) -> Self {
        Answer {
            decision: Decision::Deny,
            message: Some(message.into()),
            scope: Scope::Once,
            content: None,
            cancel: false,
        }
    }

    /// Cancel an elicitation (deny a tool), telling why.
    pub fn cancel(message: impl Into<String>) -> Self {
        Answer {
            cancel: true,
            ..Answer::deny(message)
        }
    }

    /// Sets the scope.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// The answer `pool_approve`'s parameters give, refusing what does not fit.
    pub fn from_params(p: &ApproveParams) -> Result<Answer, String> {
        if let Some(m) = &p.message
            && m.chars().count() > MAX_DENY_MESSAGE
        {
            return Err(format!(
                "invalid arguments: message: at most {MAX_DENY_MESSAGE} characters"
            ));
        }
        if p.decision == Decision::Deny && p.scope == Some(Scope::Task) {
            return Err("invalid arguments: scope: only an allow has a scope".into());
        }
        Ok(Answer {
            decision: p.decision,
            message: p.message.clone(),
            scope: p.scope.unwrap_or_default(),
            content: p.content.clone(),
            cancel: false,
        })
    }

    /// The outcome word an audit record uses for this answer to a `kind` request.
    pub fn outcome(&self, kind: ApprovalKind) -> &'static str {
        match (kind, self.decision, self.cancel) {
            (ApprovalKind::Tool, Decision::Allow, _) => "allow",
            (ApprovalKind::Tool, Decision::Deny, _) => "deny",
            (ApprovalKind::Elicitation, _, true) => "cancel",
            (ApprovalKind::Elicitation, Decision::Allow, false) => "accept",
            (ApprovalKind::Elicitation, Decision::Deny, false) => "decline",
        }
    }
}

/// The schema of the form a client is shown for a tool permission question: one choice
/// and an optional message.
pub fn approval_form_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "decision": {
                "type": "string",
                "title": "Decision",
                "enum": ["allow_once", "allow_task", "deny"],
                "enumNames": ["Allow once", "Allow for this task", "Deny"],
                "default": "allow_once"
            },
            "message": {
                "type": "string",
                "title": "Message to Claude (with Deny)",
                "maxLength": MAX_DENY_MESSAGE
            }
        },
        "required": ["decision"]
    })
}

/// Reads an accepted approval form's content. `None` when it does not say allow or deny.
pub fn answer_from_form(content: &serde_json::Value) -> Option<Answer> {
    let decision = content.get("decision").and_then(|d| d.as_str())?;
    let message = content
        .get("message")
        .and_then(|m| m.as_str())
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| m.chars().take(MAX_DENY_MESSAGE).collect::<String>());
    match decision {
        "allow_once" | "allow" => Some(Answer::allow()),
        "allow_task" => Some(Answer::allow().scope(Scope::Task)),
        "deny" => Some(Answer {
            message,
            ..Answer::deny(String::new())
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_answers_read_as_decisions() {
        let allow = answer_from_form(&serde_json::json!({"decision": "allow_once"})).unwrap();
        assert_eq!(
            (allow.decision, allow.scope),
            (Decision::Allow, Scope::Once)
        );
        let task = answer_from_form(&serde_json::json!({"decision": "allow_task"})).unwrap();
        assert_eq!((task.decision, task.scope), (Decision::Allow, Scope::Task));
        let deny =
            answer_from_form(&serde_json::json!({"decision": "deny", "message": " not now "}))
                .unwrap();
        assert_eq!(deny.decision, Decision::Deny);
        assert_eq!(deny.message.as_deref(), Some("not now"));
        let bare = answer_from_form(&serde_json::json!({"decision": "deny"})).unwrap();
        assert_eq!(bare.message, None);
        assert!(answer_from_form(&serde_json::json!({"decision": "maybe"})).is_none());
        assert!(answer_from_form(&serde_json::json!({})).is_none());
    }

    #[test]
    fn a_deny_has_no_scope_and_a_message_has_a_limit() {
        let p = |decision, scope, message: Option<String>| ApproveParams {
            request_id: "apr-1".into(),
            decision,
            message,
            scope,
            content: None,
        };
        assert!(Answer::from_params(&p(Decision::Deny, Some(Scope::Task), None)).is_err());
        assert!(Answer::from_params(&p(Decision::Deny, None, Some("x".repeat(4097)))).is_err());
        let ok = Answer::from_params(&p(Decision::Allow, Some(Scope::Task), None)).unwrap();
        assert_eq!(ok.scope, Scope::Task);
    }

    #[test]
    fn outcome_words() {
        assert_eq!(Answer::allow().outcome(ApprovalKind::Tool), "allow");
        assert_eq!(Answer::deny("x").outcome(ApprovalKind::Tool), "deny");
        assert_eq!(Answer::allow().outcome(ApprovalKind::Elicitation), "accept");
        assert_eq!(
            Answer::deny("x").outcome(ApprovalKind::Elicitation),
            "decline"
        );
        assert_eq!(
            Answer::cancel("x").outcome(ApprovalKind::Elicitation),
            "cancel"
        );
    }
}

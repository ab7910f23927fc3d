//! A slot's side of approvals: Claude's permission questions (`can_use_tool`) and its MCP
//! servers' elicitations (`elicitation`) arrive as control requests while a turn runs.
//!
//! Rules answer first, in this order: a deny rule (the task's or the server's) denies; a
//! grant the task earned ("allow for this task") allows; the task's allow rules when it
//! has its own (never wider than the server's), else the server's, allow. Whatever is left
//! goes to the approval desk ([`crate::approvals`]) and waits; the turn's clock keeps
//! running. Every question and its end is an audit record on the task (and a line in its
//! transcript). A question never outlives its task: [`SlotState::end_asks`] runs on every
//! way a task ends.

use std::collections::HashMap;
use std::path::PathBuf;

use claude_pool_protocol::TaskId;
use claude_pool_protocol::approvals::{
    APPROVAL_PREFIX, Answer, ApprovalKind, ApprovalRecord, ApprovalRequest, Decision,
    SUMMARY_CHARS, Scope,
};
use claude_pool_protocol::rules::{MatchContext, Rule, RuleSet, Verdict, describe_input};
use claude_pool_protocol::stream::{
    allow_control_response_line, deny_control_response_line, elicitation_response_line,
};
use serde_json::{Map, Value};

use super::SlotState;
use crate::clock::{now_ms, rfc3339};
use crate::wire::ApprovalNote;

/// A question sent to the desk, waiting for its answer.
pub(super) struct Ask {
    /// The CLI's control request id, to answer with.
    cli_request: String,
    kind: ApprovalKind,
    tool: String,
    summary: String,
    input: Value,
    /// Claude's suggested rules, the reach of an "allow for this task".
    suggested: Vec<Rule>,
    requested_ms: i64,
}

/// What an "allow for this task" lets through without asking again.
pub(super) enum Grant {
    /// Anything this rule matches.
    Rule(Rule, String),
    /// This exact tool and input.
    Exact(String, Value, String),
}

/// The approvals side of a running task.
#[derive(Default)]
pub(super) struct TaskAsks {
    /// Questions at the desk, by approval id.
    open: HashMap<String, Ask>,
    grants: Vec<Grant>,
    /// The audit trail so far.
    pub(super) records: Vec<ApprovalRecord>,
}

fn new_id() -> String {
    format!("{APPROVAL_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

/// The rules Claude suggests in a `can_use_tool` request (`permission_suggestions`).
fn suggested_rules(request: &Map<String, Value>) -> Vec<Rule> {
    let Some(list) = request
        .get("permission_suggestions")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter(|s| s.get("type").and_then(Value::as_str) == Some("addRules"))
        .filter(|s| s.get("behavior").and_then(Value::as_str) != Some("deny"))
        .flat_map(|s| {
            s.get("rules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|r| {
            let tool = r.get("toolName").and_then(Value::as_str)?;
            let text = match r.get("ruleContent").and_then(Value::as_str) {
                Some(c) if !c.is_empty() => format!("{tool}({c})"),
                _ => tool.to_owned(),
            };
            text.parse().ok()
        })
        .collect()
}

impl SlotState {
    /// The directory the live process works in, for path rules.
    fn work_dir(&self) -> PathBuf {
        self.current
            .cwd
            .clone()
            .or_else(|| self.worktree.as_ref().map(|w| w.path.clone()))
            .or_else(|| self.args.config.cwd.clone())
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| PathBuf::from("/"))
    }

    /// Adds `record` to the running task's audit trail and its transcript.
    fn audit(&mut self, record: ApprovalRecord) {
        let Some(task) = self.task.as_mut() else {
            return;
        };
        if let Some(sink) = &self.args.transcripts {
            let mut line = serde_json::json!({ "type": "pool_approval" });
            if let (Value::Object(l), Ok(Value::Object(r))) =
                (&mut line, serde_json::to_value(&record))
            {
                l.extend(r);
            }
            sink.line(&task.assignment.task.0, line.to_string().into_bytes());
        }
        task.asks.records.push(record);
    }

    /// A control request from Claude.
    pub(super) fn on_control_request(
        &mut self,
        request_id: String,
        subtype: &str,
        request: Map<String, Value>,
    ) {
        let running = self
            .task
            .as_ref()
            .is_some_and(|t| t.started_at.is_some() && t.verdict.is_none());
        match subtype {
            "can_use_tool" if running => self.on_tool_question(request_id, request),
            "elicitation" if running => self.on_elicitation(request_id, request),
            "elicitation" => {
                self.send(elicitation_response_line(&request_id, "cancel", None));
            }
            _ => {
                tracing::warn!(slot = %self.args.slot, %subtype, "claude asked with no task to ask for; denied");
                self.send(deny_control_response_line(
                    &request_id,
                    "no claude-pool task is running to ask for",
                ));
            }
        }
    }

    fn on_tool_question(&mut self, cli_request: String, request: Map<String, Value>) {
        let tool = request
            .get("tool_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let input = request.get("input").cloned().unwrap_or(Value::Null);
        let summary = describe_input(&tool, &input, SUMMARY_CHARS);
        let cwd = self.work_dir();
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let ctx = MatchContext {
            cwd: &cwd,
            home: home.as_deref(),
        };
        let now = now_ms();
        let Some(task) = self.task.as_mut() else {
            return;
        };
        let server = self.args.config.rules.clone();
        let own = task.assignment.rules.clone();
        // Deny first, from either set; then what the task earned; then allow rules.
        let denied = own
            .as_deref()
            .map(RuleSet::deny)
            .unwrap_or_default()
            .iter()
            .chain(server.deny())
            .find(|r| r.matches(&tool, &input, &ctx, true))
            .map(ToString::to_string);
        let granted = task.asks.grants.iter().find_map(|g| match g {
            Grant::Rule(rule, id) => rule.matches(&tool, &input, &ctx, false).then(|| id.clone()),
            Grant::Exact(t, i, id) => (t == &tool && i == &input).then(|| id.clone()),
        });
        let allowed = match own.as_deref() {
            Some(r) if !r.allow().is_empty() => r.decide(&tool, &input, &ctx),
            _ => server.decide(&tool, &input, &ctx),
        }
        .filter(|(verdict, _)| *verdict == Verdict::Allow)
        .map(|(_, rule)| rule.to_string());
        // A task keeps the mode it was given: leaving plan mode from inside the turn would
        // change the warm process's mode behind the slot's back (and past any answer a
        // person gave for one tool).
        let mode_switch = tool == "ExitPlanMode";
        let decided = match (denied, granted, allowed) {
            _ if mode_switch => Some((Decision::Deny, "pool:mode".to_owned())),
            (Some(rule), _, _) => Some((Decision::Deny, format!("rule:{rule}"))),
            (None, Some(id), _) => Some((Decision::Allow, format!("grant:{id}"))),
            (None, None, Some(rule)) => Some((Decision::Allow, format!("rule:{rule}"))),
            (None, None, None) => None,
        };
        if let Some((decision, by)) = decided {
            let message = (decision == Decision::Deny).then(|| {
                if mode_switch {
                    "claude-pool tasks keep the permission mode they were given: give the plan as your answer".to_owned()
                } else {
                    format!(
                        "denied by claude-pool's permission rule {}",
                        by.trim_start_matches("rule:")
                    )
                }
            });
            let line = match decision {
                Decision::Allow => allow_control_response_line(&cli_request, &input),
                Decision::Deny => {
                    deny_control_response_line(&cli_request, message.as_deref().unwrap_or(""))
                }
            };
            let stamp = rfc3339(now);
            let outcome = match decision {
                Decision::Allow => "allow",
                Decision::Deny => "deny",
            };
            let _ = self.args.up.approvals.send_message(ApprovalNote::Decided {
                outcome: outcome.to_owned(),
                by: by.clone(),
            });
            self.audit(ApprovalRecord {
                request_id: new_id(),
                kind: ApprovalKind::Tool,
                tool,
                summary,
                outcome: outcome.to_owned(),
                by,
                scope: None,
                message,
                requested_at: stamp.clone(),
                decided_at: stamp,
            });
            self.send(line);
            return;
        }
        let suggested = suggested_rules(&request);
        self.ask(
            cli_request,
            ApprovalKind::Tool,
            tool,
            summary,
            input,
            None,
            suggested,
        );
    }

    /// The CLI refused a tool itself (a deny rule it was given, or its mode): recorded so
    /// the audit trail has every refusal, not only those the pool decided.
    pub(super) fn on_cli_denial(&mut self, tool: String, message: String, reason: String) {
        if self.task.as_ref().is_none_or(|t| !t.turn_began) {
            return;
        }
        let stamp = rfc3339(now_ms());
        let by = format!("cli:{}", if reason.is_empty() { "rule" } else { &reason });
        let _ = self.args.up.approvals.send_message(ApprovalNote::Decided {
            outcome: "deny".into(),
            by: by.clone(),
        });
        self.audit(ApprovalRecord {
            request_id: new_id(),
            kind: ApprovalKind::Tool,
            tool,
            summary: message.chars().take(SUMMARY_CHARS).collect(),
            outcome: "deny".into(),
            by,
            scope: None,
            message: Some(message),
            requested_at: stamp.clone(),
            decided_at: stamp,
        });
    }

    fn on_elicitation(&mut self, cli_request: String, request: Map<String, Value>) {
        let server = request
            .get("mcp_server_name")
            .and_then(Value::as_str)
            .unwrap_or("an MCP server")
            .to_owned();
        let message = request
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let schema = request
            .get("requested_schema")
            .cloned()
            .unwrap_or(Value::Null);
        let summary: String = format!("{server} asks: {message}")
            .chars()
            .take(SUMMARY_CHARS)
            .collect();
        self.ask(
            cli_request,
            ApprovalKind::Elicitation,
            server,
            summary,
            schema,
            Some(message),
            Vec::new(),
        );
    }

    /// Sends a question no rule answered to the desk; the turn waits for the answer.
    #[allow(clippy::too_many_arguments)]
    fn ask(
        &mut self,
        cli_request: String,
        kind: ApprovalKind,
        tool: String,
        summary: String,
        input: Value,
        message: Option<String>,
        suggested: Vec<Rule>,
    ) {
        let Some(task) = self.task.as_mut() else {
            return;
        };
        let id = new_id();
        let now = now_ms();
        let timeout = task
            .assignment
            .approval_timeout
            .unwrap_or(self.args.config.approval_timeout);
        let expires = now + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 2);
        let request = ApprovalRequest {
            request_id: id.clone(),
            task_id: task.assignment.task.clone(),
            slot_id: self.args.slot.clone(),
            kind,
            tool: tool.clone(),
            summary: summary.clone(),
            input: input.clone(),
            message,
            requested_at: rfc3339(now),
            expires_at: rfc3339(expires),
        };
        task.asks.open.insert(
            id,
            Ask {
                cli_request,
                kind,
                tool,
                summary,
                input,
                suggested,
                requested_ms: now,
            },
        );
        tracing::info!(slot = %self.args.slot, task = %request.task_id, approval = %request.request_id, tool = %request.tool, "claude asks for approval");
        let _ = self.args.up.approvals.send_message(ApprovalNote::Ask {
            request,
            slot: self.myself.get_derived(),
            listener: task.assignment.progress.clone(),
            timeout,
        });
    }

    /// The desk's answer to question `id` of `task`.
    pub(super) fn on_answered(&mut self, task_id: &TaskId, id: &str, answer: Answer, by: String) {
        let Some(task) = self.task.as_mut().filter(|t| &t.assignment.task == task_id) else {
            return; // the task ended meanwhile; its record says so
        };
        let Some(ask) = task.asks.open.remove(id) else {
            return;
        };
        let line = match (ask.kind, answer.decision, answer.cancel) {
            (ApprovalKind::Tool, Decision::Allow, _) => {
                if answer.scope == Scope::Task {
                    let grants = &mut task.asks.grants;
                    if ask.suggested.is_empty() {
                        grants.push(Grant::Exact(
                            ask.tool.clone(),
                            ask.input.clone(),
                            id.to_owned(),
                        ));
                    }
                    for rule in &ask.suggested {
                        grants.push(Grant::Rule(rule.clone(), id.to_owned()));
                    }
                }
                allow_control_response_line(&ask.cli_request, &ask.input)
            }
            (ApprovalKind::Tool, Decision::Deny, _) => deny_control_response_line(
                &ask.cli_request,
                answer
                    .message
                    .as_deref()
                    .unwrap_or("the person asked denied this permission request"),
            ),
            (ApprovalKind::Elicitation, _, true) => {
                elicitation_response_line(&ask.cli_request, "cancel", None)
            }
            (ApprovalKind::Elicitation, Decision::Allow, false) => {
                elicitation_response_line(&ask.cli_request, "accept", answer.content.as_ref())
            }
            (ApprovalKind::Elicitation, Decision::Deny, false) => {
                elicitation_response_line(&ask.cli_request, "decline", None)
            }
        };
        let record = ApprovalRecord {
            request_id: id.to_owned(),
            kind: ask.kind,
            tool: ask.tool,
            summary: ask.summary,
            outcome: answer.outcome(ask.kind).to_owned(),
            scope: (answer.decision == Decision::Allow && ask.kind == ApprovalKind::Tool)
                .then_some(answer.scope),
            message: answer.message,
            by,
            requested_at: rfc3339(ask.requested_ms),
            decided_at: rfc3339(now_ms()),
        };
        self.audit(record);
        self.send(line);
    }

    /// The CLI withdrew question `cli_request` (its turn is being interrupted): it ends
    /// unanswered, and the desk forgets it.
    pub(super) fn on_withdrawn(&mut self, cli_request: &str) {
        let Some(task) = self.task.as_mut() else {
            return;
        };
        let Some(id) = task
            .asks
            .open
            .iter()
            .find(|(_, a)| a.cli_request == cli_request)
            .map(|(id, _)| id.clone())
        else {
            return;
        };
        let Some(ask) = task.asks.open.remove(&id) else {
            return;
        };
        let _ = self
            .args
            .up
            .approvals
            .send_message(ApprovalNote::Withdrawn(id.clone()));
        self.audit(ApprovalRecord {
            request_id: id,
            kind: ask.kind,
            tool: ask.tool,
            summary: ask.summary,
            outcome: "unanswered".into(),
            by: "withdrawn".into(),
            scope: None,
            message: None,
            requested_at: rfc3339(ask.requested_ms),
            decided_at: rfc3339(now_ms()),
        });
    }

    /// The task is ending: its open questions end with it (recorded as such), and the desk
    /// forgets them. Returns the audit trail.
    pub(super) fn end_asks(&self, asks: &mut TaskAsks, task: &TaskId) -> Vec<ApprovalRecord> {
        if !asks.open.is_empty() {
            let now = rfc3339(now_ms());
            for (id, ask) in asks.open.drain() {
                asks.records.push(ApprovalRecord {
                    request_id: id,
                    kind: ask.kind,
                    tool: ask.tool,
                    summary: ask.summary,
                    outcome: "unanswered".into(),
                    by: "task_ended".into(),
                    scope: None,
                    message: None,
                    requested_at: rfc3339(ask.requested_ms),
                    decided_at: now.clone(),
                });
            }
            let _ = self
                .args
                .up
                .approvals
                .send_message(ApprovalNote::TaskEnded(task.clone()));
        }
        std::mem::take(&mut asks.records)
    }
}

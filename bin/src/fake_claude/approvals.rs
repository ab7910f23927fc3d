//! Questions a turn asks its host over stdout, as the real CLI 2.1.329 does with
//! `--input-format stream-json`: a `can_use_tool` permission question before a `MOCK_TOOL`
//! command runs (with `--permission-prompt-tool stdio`), and an MCP `elicitation`
//! (`MOCK_ELICIT`). The turn waits for the matching `control_response`, which the stdin reader
//! hands over (see [`Shared::ask`]); `interrupt` / `end_session` end the wait, and so does
//! stdin closing. Shapes measured on the real CLI against the mock.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};

use crate::api_error::url_host;
use crate::control::{Asked, Reply, Shared};
use crate::permissions::{Accept, Decision, Refusal, no_output_expected};
use crate::pricing::Usage;
use crate::runner::{Res, Runner};
use crate::sys;

const DONT_ASK: &str = "Permission to use Bash has been denied because Claude Code is running \
in don't ask mode. IMPORTANT: You *may* attempt to accomplish this action using other tools that \
might naturally be used to accomplish this goal, e.g. using head instead of cat. But you *should \
not* attempt to work around this denial in malicious ways, e.g. do not use your ability to run \
tests to execute non-test actions. You should only try to work around this restriction in \
reasonable ways that do not attempt to bypass the intent behind this denial. If you believe this \
capability is essential to complete the user's request, STOP and explain to the user what you \
were trying to do and why you need this permission. Let the user decide how to proceed.";

const CLASSIFIER: &str = "Auto mode is unavailable: its safety check does not run for this \
session, so Bash was not run. Other actions that need the check will be denied too, and \
retrying won't help. Finish what you can without them, then tell the user what is blocked and \
that they can switch to another permission mode.";

const REJECTED: &str = "The user doesn't want to proceed with this tool use. The tool use was \
rejected (eg. if it was a file edit, the new_string was NOT written to the file). STOP what you \
are doing and wait for the user to tell you how to proceed.";

const UNAVAILABLE: &str = "Error: No such tool available: Bash. Bash is disabled for this session, in subagents as \
     well as here.";

/// The `tool_result_meta` entry of a refused call.
fn reject_meta(tid: &str, kind: &str, source: &str, reason_type: Option<&str>) -> Value {
    let mut decision = json!({"decision": "reject", "source": source});
    if let Some(r) = reason_type {
        decision["reason_type"] = json!(r);
    }
    json!({"id": tid, "non_execution_kind": kind, "permission_decision": decision})
}

/// Top-level keys of a JSON object's text in the order written, with the value text of each
/// (`None` if `text` is no object). `text` is valid JSON: it was parsed before.
fn object_entries(text: &str) -> Option<Vec<(String, &str)>> {
    let b = text.as_bytes();
    let ws = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    // The index just past the string starting at `i`.
    let string_end = |mut i: usize| {
        i += 1;
        while let Some(&c) = b.get(i) {
            i += 1;
            match c {
                b'\\' => i += 1,
                b'"' => return i,
                _ => {}
            }
        }
        i
    };
    // The index just past the value starting at `i` (scalars: up to the next `,` or `}`).
    let value_end = |mut i: usize| {
        let mut depth = 0usize;
        while let Some(&c) = b.get(i) {
            match c {
                b'"' => {
                    i = string_end(i);
                    if depth == 0 {
                        return i;
                    }
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth == 0 => return i,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                b',' if depth == 0 => return i,
                _ => {}
            }
            i += 1;
        }
        i
    };
    let mut i = ws(0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut out = Vec::new();
    i = ws(i + 1);
    while b.get(i) == Some(&b'"') {
        let k_end = string_end(i);
        let key: String = serde_json::from_str(text.get(i..k_end)?).ok()?;
        i = ws(k_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let v_start = ws(i + 1);
        let v_end = value_end(v_start);
        out.push((key, text.get(v_start..v_end)?.trim_end()));
        i = ws(v_end);
        if b.get(i) == Some(&b',') {
            i = ws(i + 1);
        }
    }
    Some(out)
}

/// The elicitation's `property_order`: the schema's `properties` keys in the order written,
/// array-index-like names first in numeric order (JavaScript's object key order); `None`
/// without a `properties` object.
fn property_order(schema_text: &str) -> Option<Vec<String>> {
    let (_, props) = object_entries(schema_text)?
        .into_iter()
        .rfind(|(k, _)| k == "properties")?;
    let mut keys: Vec<String> = Vec::new();
    for (k, _) in object_entries(props)? {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let index = |k: &str| {
        k.parse::<u32>()
            .ok()
            .filter(|n| *n < u32::MAX && n.to_string() == k)
    };
    let (mut indices, names): (Vec<String>, Vec<String>) =
        keys.into_iter().partition(|k| index(k).is_some());
    indices.sort_by_key(|k| index(k));
    indices.extend(names);
    Some(indices)
}

/// What a `can_use_tool` question came to.
enum Verdict {
    /// Run this command (the answer's `updatedInput.command`, or the original); true when
    /// the answer added a working directory.
    Allow(String, bool),
    /// Refused with this tool_result text and meta.
    Deny(String, Value),
    /// Interrupted (interrupt, end_session, or a deny with `interrupt: true`).
    Abort,
}

impl Runner {
    fn emit_if_streaming(&mut self, ev: Value) {
        if self.stream {
            self.emit(ev);
        }
    }

    fn user_event(&self, content: Value) -> Value {
        json!({"type": "user", "message": {"role": "user", "content": content},
               "parent_tool_use_id": null, "session_id": self.st.session_id,
               "uuid": sys::uuid4(), "timestamp": sys::iso_now()})
    }

    /// MOCK_TOOL's Bash call under `--permission-prompt-tool stdio`: the permission check
    /// (see `permissions.rs`), the question when it asks, then the command runs (`sh -c` in the
    /// cwd) or is refused; prints the tool_result event and returns the mock's answer to it.
    /// `Err`: the turn was interrupted while asking (its result).
    pub(crate) fn bash_tool(
        &mut self,
        t0: Instant,
        tid: &str,
        command: &str,
        usage: Usage,
    ) -> Result<String, Value> {
        let input = json!({"command": command, "description": "mock tool call"});
        let cwd = self.st.cwd.clone();
        let mode = self.sh.permission_mode();
        let decision = self.policy.decide(&mode, command, Path::new(&cwd));
        let verdict = match decision {
            Decision::Unavailable => {
                let text = format!("<tool_use_error>{UNAVAILABLE}</tool_use_error>");
                let mut ev = self.user_event(json!([{"type": "tool_result", "content": text,
                                                     "is_error": true, "tool_use_id": tid}]));
                ev["tool_use_result"] = json!(UNAVAILABLE);
                self.emit_if_streaming(ev);
                return Ok(tool_said(&text));
            }
            Decision::Run(accept) => return Ok(tool_said(&self.run_bash(tid, command, accept))),
            Decision::Refuse(refusal) => self.refusal(tid, refusal),
            Decision::Ask(q) => {
                let mut request = json!({
                    "subtype": "can_use_tool", "tool_name": "Bash", "display_name": "Bash",
                    "input": input, "description": "mock tool call",
                    "permission_suggestions": q.suggestions});
                match q.blocked_path {
                    Some(p) => request["blocked_path"] = json!(p),
                    None => {
                        request["decision_reason"] = json!("This command requires approval");
                        request["decision_reason_type"] = json!("other");
                    }
                }
                request["tool_use_id"] = json!(tid);
                match ask(&self.sh, Asked::CanUseTool, request) {
                    None => failed(tid, "AbortError: Stream closed"),
                    Some(Reply::Closed) => failed(
                        tid,
                        "AbortError: Tool permission stream closed before response received",
                    ),
                    Some(Reply::Aborted) => Verdict::Abort,
                    Some(Reply::Answer(r)) => self.verdict(tid, command, &r),
                }
            }
        };
        let denial = json!({"tool_name": "Bash", "tool_use_id": tid, "tool_input": input});
        match verdict {
            Verdict::Allow(command, new_dirs) => {
                let accept = Accept {
                    source: "user_temporary",
                    reason_type: None,
                };
                let text = self.run_bash(tid, &command, accept);
                // The reminder the real CLI appends after the tool_result: the mock answers
                // the (empty) last user text instead.
                Ok(if new_dirs {
                    "MOCK: ".into()
                } else {
                    tool_said(&text)
                })
            }
            Verdict::Deny(text, meta) => {
                let mut ev = self.user_event(json!([{"type": "tool_result", "content": text,
                                                     "is_error": true, "tool_use_id": tid}]));
                ev["tool_use_result"] = json!(format!("Error: {text}"));
                ev["tool_result_meta"] = json!([meta]);
                self.emit_if_streaming(ev);
                self.denials.push(denial);
                Ok(tool_said(&text))
            }
            Verdict::Abort => {
                let mut ev = self.user_event(json!([{"type": "tool_result", "content": REJECTED,
                                                     "is_error": true, "tool_use_id": tid}]));
                ev["tool_use_result"] = json!("User rejected tool use");
                ev["tool_result_meta"] =
                    json!([{"id": tid, "non_execution_kind": "user-rejected"}]);
                self.emit_if_streaming(ev);
                let ev = self.user_event(
                    json!([{"type": "text", "text": "[Request interrupted by user for tool use]"}]),
                );
                self.emit_if_streaming(ev);
                self.denials.push(denial);
                let errors = vec![
                    "[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=tool_use"
                        .into(),
                ];
                Err(self.result(
                    t0,
                    Res {
                        turns: 3,
                        usage,
                        stop: Some("tool_use"),
                        subtype: "error_during_execution",
                        errors: Some(errors),
                        terminal: "aborted_tools",
                        ..Res::default()
                    },
                ))
            }
        }
    }

    /// A refusal without a question: the `permission_denied` event (and, the first time the
    /// classifier refuses, the auto-mode notice), then the verdict.
    fn refusal(&mut self, tid: &str, refusal: Refusal) -> Verdict {
        let sid = self.st.session_id.clone();
        let (event, text, meta) = match refusal {
            Refusal::Rule(cmd) => {
                let text = format!("Permission to use Bash with command {cmd} has been denied.");
                let ev = json!({"type": "system", "subtype": "permission_denied",
                                "tool_name": "Bash", "tool_use_id": tid,
                                "decision_reason_type": "subcommandResults", "message": text,
                                "uuid": sys::uuid4(), "session_id": sid});
                let meta = reject_meta(tid, "permission-rule", "config", Some("subcommandResults"));
                (ev, text, meta)
            }
            Refusal::Mode => {
                let ev = json!({"type": "system", "subtype": "permission_denied",
                                "tool_name": "Bash", "tool_use_id": tid,
                                "decision_reason_type": "mode", "message": DONT_ASK,
                                "uuid": sys::uuid4(), "session_id": sid});
                let meta = reject_meta(tid, "permission-rule", "config", Some("mode"));
                (ev, DONT_ASK.to_string(), meta)
            }
            Refusal::Classifier => {
                if !self.classifier_warned {
                    self.classifier_warned = true;
                    let notice = auto_mode_notice(&sid);
                    self.emit_if_streaming(notice);
                }
                let ev = json!({"type": "system", "subtype": "permission_denied",
                                "tool_name": "Bash", "tool_use_id": tid,
                                "decision_reason_type": "classifier",
                                "decision_reason_code": "auto_mode_no_check_in_session",
                                "decision_reason": "Classifier unavailable", "message": CLASSIFIER,
                                "uuid": sys::uuid4(), "session_id": sid});
                let meta = reject_meta(tid, "automode-unavailable", "config", Some("classifier"));
                (ev, CLASSIFIER.to_string(), meta)
            }
        };
        self.emit_if_streaming(event);
        Verdict::Deny(text, meta)
    }

    /// The host's control_response to a can_use_tool question. An allow applies its
    /// `updatedPermissions` (a `setMode` prints the status event, as the real CLI does).
    fn verdict(&mut self, tid: &str, command: &str, r: &Value) -> Verdict {
        if r.get("subtype").and_then(Value::as_str) != Some("success") {
            let error = r.get("error").and_then(Value::as_str).unwrap_or("");
            return failed(tid, &format!("Error: {error}"));
        }
        let answer = r.get("response").cloned().unwrap_or(Value::Null);
        match answer.get("behavior").and_then(Value::as_str) {
            Some("allow") => {
                let mut new_dirs = false;
                if let Some(updates) = answer.get("updatedPermissions") {
                    let cwd = self.st.cwd.clone();
                    let updated = self.policy.update(updates, Path::new(&cwd));
                    if let Some(mode) = updated.mode {
                        self.switch_mode(&mode);
                    }
                    new_dirs = updated.new_dirs;
                }
                let updated = answer
                    .get("updatedInput")
                    .and_then(|i| i.get("command"))
                    .and_then(Value::as_str);
                Verdict::Allow(updated.unwrap_or(command).to_string(), new_dirs)
            }
            Some("deny") if answer.get("interrupt") == Some(&Value::Bool(true)) => Verdict::Abort,
            Some("deny") => {
                let text = answer.get("message").and_then(Value::as_str).unwrap_or("");
                let meta = json!({"id": tid, "non_execution_kind": "permission-rule",
                                  "permission_decision": {"decision": "reject",
                                                          "source": "user_reject"}});
                Verdict::Deny(text.to_string(), meta)
            }
            _ => failed(tid, "Error: invalid permission response"),
        }
    }

    /// A `setMode` from an answer: like `set_permission_mode`, a status event when it changes.
    fn switch_mode(&mut self, mode: &str) {
        let mode = if mode == "manual" { "default" } else { mode };
        if !crate::cli::PERMISSION_MODES.contains(&mode)
            || (mode == "bypassPermissions" && !self.sh.bypass_allowed())
        {
            return;
        }
        if self.sh.set_permission_mode(mode.to_string()) {
            let ev = json!({"type": "system", "subtype": "status", "status": null,
                            "permissionMode": mode, "uuid": sys::uuid4(),
                            "session_id": self.st.session_id});
            self.emit_if_streaming(ev);
        }
    }

    /// Runs an accepted command with `sh -c` in the cwd and prints its tool_result the way the
    /// real CLI's Bash tool reports it; returns the tool_result text.
    fn run_bash(&mut self, tid: &str, command: &str, accept: Accept) -> String {
        let mut decision = json!({"decision": "accept", "source": accept.source});
        if let Some(r) = accept.reason_type {
            decision["reason_type"] = json!(r);
        }
        let meta = json!([{"id": tid, "permission_decision": decision}]);
        let out = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&self.st.cwd)
            .stdin(Stdio::null())
            .output();
        let (code, stdout, stderr) = match out {
            Ok(o) => (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stdout).trim_end().to_string(),
                String::from_utf8_lossy(&o.stderr).trim_end().to_string(),
            ),
            Err(e) => (127, String::new(), format!("sh: {e}")),
        };
        let output: Vec<&str> = [stdout.as_str(), stderr.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        let output = output.join("\n");
        let mut ev = if code == 0 {
            let text = if output.is_empty() {
                "(Bash completed with no output)".to_string()
            } else {
                output
            };
            let mut ev = self.user_event(json!([{"tool_use_id": tid, "type": "tool_result",
                                                 "content": text, "is_error": false}]));
            ev["tool_use_result"] = json!({"stdout": stdout, "stderr": stderr,
                                           "interrupted": false, "isImage": false,
                                           "noOutputExpected": no_output_expected(command)});
            ev
        } else {
            let mut text = format!("Exit code {code}");
            if !output.is_empty() {
                text = format!("{text}\n{output}");
            }
            let mut ev = self.user_event(json!([{"type": "tool_result", "content": text,
                                                 "is_error": true, "tool_use_id": tid}]));
            ev["tool_use_result"] = json!(format!("Error: {text}"));
            ev
        };
        ev["tool_result_meta"] = meta;
        let text = ev["message"]["content"][0]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.emit_if_streaming(ev);
        text
    }

    /// MOCK_ELICIT:<json schema>: an `elicitation` control request from the MCP server "mock"
    /// (the schema's `description` is the message); the reply text names the host's action and
    /// content. `None`: interrupted while waiting. Without a host to ask (one-shot mode, stdin
    /// closed) the action is "cancel", as the real CLI's.
    pub(crate) fn elicit(&mut self, schema_text: &str) -> Option<String> {
        const EMPTY: &str = r#"{"type":"object","properties":{}}"#;
        let (schema, schema_text) = match serde_json::from_str::<Value>(schema_text) {
            Ok(v) if v.is_object() => (v, schema_text),
            _ => (json!({"type": "object", "properties": {}}), EMPTY),
        };
        let message = schema
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("Please provide the requested input");
        let mut request = json!({"subtype": "elicitation", "mcp_server_name": "mock",
                                 "message": message, "mode": "form",
                                 "requested_schema": schema});
        if let Some(order) = property_order(schema_text) {
            request["property_order"] = json!(order);
        }
        let (action, content) = match ask(&self.sh, Asked::Elicitation, request) {
            Some(Reply::Aborted) => return None,
            None | Some(Reply::Closed) => ("cancel".to_string(), None),
            Some(Reply::Answer(r)) => {
                let answer = r
                    .get("response")
                    .filter(|_| r.get("subtype").and_then(Value::as_str) == Some("success"));
                let action = answer
                    .and_then(|a| a.get("action"))
                    .and_then(Value::as_str)
                    .unwrap_or("cancel");
                (
                    action.to_string(),
                    answer.and_then(|a| a.get("content")).cloned(),
                )
            }
        };
        Some(match content {
            Some(c) => format!("MOCK: elicitation {action} {c}"),
            None => format!("MOCK: elicitation {action}"),
        })
    }
}

/// The mock's answer to a tool_result: its first 40 characters, on one line.
pub(crate) fn tool_said(result: &str) -> String {
    let head: String = result.trim().replace('\n', " ").chars().take(40).collect();
    format!("MOCK: tool said: {head}")
}

/// Prints `request` as a control_request with a fresh id and waits for its answer; `None`
/// when stdin is closed already (nothing printed).
fn ask(sh: &Shared, kind: Asked, request: Value) -> Option<Reply> {
    let id = sys::uuid4();
    let line = json!({"type": "control_request", "request_id": id, "request": request});
    let asked = sh.ask(&id, kind, || {
        if !sys::emit_line(&line) {
            sys::exit(1);
        }
    });
    asked.then(|| sh.await_reply())
}

/// A question that failed (stdin closed, an error answer): refused as the real CLI does.
fn failed(tid: &str, why: &str) -> Verdict {
    Verdict::Deny(
        format!("Tool permission request failed: {why}"),
        reject_meta(tid, "permission-rule", "config", Some("other")),
    )
}

/// The notice the real CLI prints once when the auto-mode classifier cannot run (always, for
/// a fake: it talks to no server).
fn auto_mode_notice(session_id: &str) -> Value {
    let base = std::env::var("ANTHROPIC_BASE_URL").unwrap_or_default();
    let host = url_host(&base)
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "api.anthropic.com".into());
    let content = format!(
        "Auto mode can't check actions in this session. Its safety check runs on the server, \
         and your requests go through {host}, which doesn't pass it through. Nobody can be \
         asked to approve actions in this session, so every action that needs the check is \
         refused. To run these actions, use another permission mode. To use auto mode, ask \
         whoever runs {host} to pass Claude Code's server-side safety check through: \
         https://code.claude.com/docs/en/permission-modes#server-side-classifier-review"
    );
    json!({"type": "system", "subtype": "informational", "content": content, "isMeta": false,
           "timestamp": sys::iso_now(), "uuid": sys::uuid4(), "level": "warning",
           "tag": "auto_mode_no_server_check", "session_id": session_id})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_order_keeps_the_written_order() {
        let schema = r#"{"type":"object","properties":{"name":{"type":"string","title":"Na}me"},"age":{"type":"integer"},"b":[1,{"x":2}]},"required":["name"]}"#;
        assert_eq!(
            property_order(schema),
            Some(vec!["name".into(), "age".into(), "b".into()])
        );
        assert_eq!(
            property_order(r#" { "properties" : { "z" : 1 , "10" : 2, "2": 3, "a\"b": null } } "#),
            Some(vec!["2".into(), "10".into(), "z".into(), "a\"b".into()])
        );
        assert_eq!(property_order(r#"{"type":"object"}"#), None);
        assert_eq!(property_order(r#"{"properties":[1]}"#), None);
        assert_eq!(property_order(r#"{"properties":{}}"#), Some(vec![]));
    }
}

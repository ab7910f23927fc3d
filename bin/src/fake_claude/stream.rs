//! `--input-format stream-json`: a reader thread parses stdin lines, answers control requests
//! at once (even mid-turn) and queues user messages; the main thread runs the queued turns in
//! order. EOF lets in-flight and queued turns finish; `end_session` aborts the running turn.

use std::io::{self, BufRead};
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};

use serde_json::{Value, json};

use crate::control::{Asked, Shared};
use crate::pricing::resolve_model;
use crate::runner::Runner;
use crate::sys;

/// Text of a user message's `content`: a string, or the `text` of its content blocks joined
/// by newlines. Anything else counts as empty.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.is_object())
            .map(|b| b.get("text").and_then(Value::as_str).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Modes `set_permission_mode` accepts ("manual" too, as an alias of "default").
const SETTABLE_MODES: &[&str] = &[
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "default",
    "dontAsk",
    "plan",
];

/// How Python's `"%s" % value` prints a JSON value (for error texts).
fn py_str(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "None".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn respond(v: &Value) {
    if !sys::emit_line(v) {
        sys::exit(1);
    }
}

/// Answers one control request; returns false when the reader must stop (`end_session`).
fn control(sh: &Shared, msg: &Value) -> bool {
    let req = msg.get("request").filter(|r| r.is_object());
    let rid = msg.get("request_id").cloned().unwrap_or(Value::Null);
    let field = |k: &str| req.and_then(|r| r.get(k));
    let sub = field("subtype");
    let ok = |response: Value| {
        json!({"type": "control_response",
               "response": {"subtype": "success", "request_id": rid, "response": response}})
    };
    let error = |text: String, code: &str| {
        json!({"type": "control_response",
               "response": {"subtype": "error", "request_id": rid, "error": text,
                            "error_code": code}})
    };
    // A question the turn waits on is withdrawn when interrupt / end_session aborts it: the
    // real CLI prints the control_cancel_request before its answer for a can_use_tool, after
    // it for an elicitation.
    let pending = sh.pending();
    let cancel = || {
        if let Some((id, _)) = &pending {
            respond(&json!({"type": "control_cancel_request", "request_id": id}));
        }
    };
    let cancel_first = matches!(pending, Some((_, Asked::CanUseTool)));
    match sub.and_then(Value::as_str) {
        Some("interrupt") => {
            // The control_response precedes the aborted turn's events, as the real CLI's does.
            if cancel_first {
                cancel();
            }
            respond(&ok(json!({"still_queued": []})));
            if !cancel_first {
                cancel();
            }
            sh.abort();
        }
        Some("set_model") => {
            let model = resolve_model(field("model").and_then(Value::as_str));
            sh.set_model(model.clone());
            respond(&ok(json!({"model": model})));
        }
        Some("set_permission_mode") => {
            let mode = match field("mode").and_then(Value::as_str) {
                Some("manual") => Some("default"),
                m => m.filter(|m| SETTABLE_MODES.contains(m)),
            };
            match mode {
                None => respond(&error(
                    format!(
                        "Cannot set permission mode: must be one of {}",
                        SETTABLE_MODES.join(", ")
                    ),
                    "invalid_mode",
                )),
                Some("bypassPermissions") if !sh.bypass_allowed() => respond(&error(
                    "Cannot set permission mode to bypassPermissions because the session was \
                     not launched with --dangerously-skip-permissions"
                        .into(),
                    "bypass_not_launched",
                )),
                Some(mode) => {
                    let changed = sh.set_permission_mode(mode.to_string());
                    respond(&ok(json!({"mode": mode})));
                    if changed {
                        respond(
                            &json!({"type": "system", "subtype": "status", "status": null,
                                        "permissionMode": mode, "uuid": sys::uuid4(),
                                        "session_id": sh.session_id()}),
                        );
                    }
                }
            }
        }
        Some("end_session") => {
            if cancel_first {
                cancel();
            }
            respond(&json!({"type": "control_response",
                            "response": {"subtype": "success", "request_id": rid}}));
            if !cancel_first {
                cancel();
            }
            sh.end();
            return false;
        }
        _ => respond(&error(
            format!("Unsupported control request subtype: {}", py_str(sub)),
            "unsupported_request",
        )),
    }
    true
}

/// The stdin reader: `Some(prompt)` per user message, `None` at EOF or after `end_session`.
fn reader(sh: &Shared, work: &Sender<Option<String>>) {
    let mut stdin = io::stdin().lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match stdin.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        let line = String::from_utf8_lossy(&buf);
        if line.trim().is_empty() {
            continue;
        }
        let Ok(msg) = serde_json::from_slice::<Value>(&buf) else {
            sys::die(
                &format!(
                    "Error parsing streaming input line (type=unknown, {} chars): SyntaxError",
                    line.trim_end_matches('\n').chars().count()
                ),
                1,
            );
        };
        match msg.get("type").and_then(Value::as_str) {
            Some("control_request") => {
                if !control(sh, &msg) {
                    break;
                }
                continue;
            }
            // The host's answer to a question a turn asked (can_use_tool, elicitation).
            Some("control_response") => {
                if let Some(r) = msg.get("response") {
                    sh.deliver(r);
                }
                continue;
            }
            Some("keep_alive") => continue,
            _ => {}
        }
        let m = msg.get("message").filter(|m| m.is_object());
        let role = m.and_then(|m| m.get("role"));
        if msg.get("type").and_then(Value::as_str) != Some("user")
            || role.and_then(Value::as_str) != Some("user")
        {
            let shown = match role {
                None | Some(Value::Null) => "undefined".to_string(),
                Some(r) => py_str(Some(r)),
            };
            sys::die(
                &format!("Error: Expected message role 'user', got '{shown}'"),
                1,
            );
        }
        if work
            .send(Some(content_text(m.and_then(|m| m.get("content")))))
            .is_err()
        {
            break;
        }
    }
    sh.close();
    let _ = work.send(None);
}

/// Runs the persistent session; returns the exit code (1 if the last result was an error).
pub fn run(mut runner: Runner) -> i32 {
    let (tx, rx) = mpsc::channel();
    let sh: Arc<Shared> = Arc::clone(&runner.sh);
    let reader_sh = Arc::clone(&sh);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || reader(&reader_sh, &tx));
    if let Err(e) = spawned {
        sys::die(
            &format!("fake-claude: cannot start the stdin reader: {e}"),
            1,
        );
    }
    let mut rc = 0;
    while let Ok(Some(prompt)) = rx.recv() {
        if sh.ended() {
            break;
        }
        sh.clear_abort();
        if prompt.trim() == "/clear" {
            runner.clear();
            continue;
        }
        let r = runner.run_turn(&prompt);
        rc = i32::from(r.get("is_error") == Some(&Value::Bool(true)));
        // The conversation is on disk before its result is printed, as the real CLI's
        // transcript is: a caller that read the result can resume it at once.
        runner.st.save();
        runner.emit(r);
        if sh.ended() {
            break;
        }
    }
    rc
}

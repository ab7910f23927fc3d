//! The Claude Code CLI's stream-json protocol, as the pool reads and writes it.
//!
//! Reading: [`parse_line`] turns one stdout line into a [`ClaudeEvent`]. It parses by field
//! name and ignores what it does not know: the CLI adds fields and event types between
//! versions, and an unknown `type` becomes [`ClaudeEvent::Other`], never an error. Only a line
//! that is not a JSON object with a string `type` is an error — the pool treats that as a
//! misbehaving process.
//!
//! Writing: [`user_message_line`] and [`ControlRequest::to_line`] build the stdin lines, each
//! a single line of JSON ending in `\n` (serde_json escapes every newline inside strings, so a
//! prompt of any size and content is one line).

use serde_json::{Map, Value, json};

/// One line of the CLI's stdout.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaudeEvent {
    /// `system`/`init`, printed at the start of every turn (and after `/clear`).
    SystemInit {
        /// The conversation this turn belongs to.
        session_id: Option<String>,
        /// The model the turn will use.
        model: Option<String>,
        /// The permission mode in force.
        permission_mode: Option<String>,
    },
    /// Any other `system` subtype (`api_retry`, `model_fallback`, `status`, …).
    System {
        /// The subtype, as printed.
        subtype: String,
    },
    /// The CLI is retrying a failed API call (`system/api_retry`): one line per attempt.
    ApiRetry {
        /// This attempt's number (1 for the first retry).
        attempt: u64,
        /// The CLI's retry budget.
        max_retries: u64,
        /// How long the CLI waits before it.
        retry_delay_ms: u64,
        /// The HTTP status of the failed call (429, 529, 5xx, 401, …), if it had one.
        error_status: Option<u64>,
        /// The error's text.
        error: Option<String>,
    },
    /// The CLI refused a tool by itself (a `--disallowedTools` rule, or its mode), without
    /// asking (`system/permission_denied`).
    PermissionDenied {
        /// The tool refused.
        tool_name: String,
        /// What the CLI says (and tells the model).
        message: String,
        /// Why (`subcommandResults` for a rule, `classifier`, …).
        reason: String,
    },
    /// A message from the model: text and tool calls.
    Assistant(AssistantEvent),
    /// A user-role event: tool results, or the interruption marker.
    User,
    /// The end of a turn. Exactly one per user message.
    Result(ResultEvent),
    /// The answer to a control request the pool sent.
    ControlResponse {
        /// Echo of the request's id.
        request_id: String,
        /// `subtype == "success"`.
        success: bool,
        /// The error text when not successful.
        error: Option<String>,
    },
    /// A request from the CLI to the pool (for example `can_use_tool`).
    ControlRequest {
        /// The id to answer with.
        request_id: String,
        /// What is asked.
        subtype: String,
        /// The whole request object (tool name, input, suggestions; or the elicitation).
        request: serde_json::Map<String, Value>,
    },
    /// The CLI withdrew a question it had asked (its turn is being interrupted).
    ControlCancel {
        /// The withdrawn request's id.
        request_id: String,
    },
    /// `/clear` started a new conversation.
    ConversationReset,
    /// The API's usage windows, from its rate-limit headers (`rate_limit_event`, printed
    /// with subscription credentials).
    RateLimit(crate::limits::RateLimitInfo),
    /// A type this parser does not model; carried by name only.
    Other {
        /// The `type` field.
        kind: String,
    },
}

/// The part of an `assistant` event the pool uses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AssistantEvent {
    /// Concatenated text blocks.
    pub text: String,
    /// Names of the tools called in this message.
    pub tool_uses: Vec<String>,
    /// The API message id: one API call may be printed as several events (one per content
    /// block) that share it.
    pub message_id: Option<String>,
    /// The model that answered.
    pub model: Option<String>,
    /// The usage the API reported when the message started: input and cache counts are
    /// final, the output count is only the start-of-stream figure.
    pub usage: Option<Usage>,
    /// True for a message the CLI made up itself (model `<synthetic>`, e.g. for an API
    /// error): no API call was paid for it.
    pub synthetic: bool,
}

/// Token counts, as the CLI reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_input_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_creation_input_tokens: u64,
}

impl Usage {
    /// Every token the API processed: input, output, cache reads and writes.
    pub fn total(&self) -> u64 {
        self.input_tokens
            + self.output_tokens
            + self.cache_read_input_tokens
            + self.cache_creation_input_tokens
    }

    fn add(&mut self, other: Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_input_tokens += other.cache_read_input_tokens;
        self.cache_creation_input_tokens += other.cache_creation_input_tokens;
    }
}

/// One model's share of a turn (`model_usage_since_last_result`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelTurnUsage {
    /// The model id.
    pub model: String,
    /// Tokens this turn.
    pub usage: Usage,
    /// Dollars this turn, as the CLI priced it.
    pub cost_usd: f64,
}

/// A `result` event: how a turn ended, what it said and what it cost.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResultEvent {
    /// `success`, `error_during_execution`, `error_max_turns`, …
    pub subtype: String,
    /// The CLI's own verdict. Success means a result was read and this is false.
    pub is_error: bool,
    /// The answer text (absent on some errors).
    pub result: Option<String>,
    /// The conversation the turn belonged to.
    pub session_id: Option<String>,
    /// Cumulative dollars for the whole session (resets on `/clear` and in a new process).
    pub total_cost_usd: f64,
    /// This turn's tokens.
    pub usage: Usage,
    /// This turn's per-model usage and cost, when the CLI printed it (stream-json does).
    pub since_last: Option<Vec<ModelTurnUsage>>,
    /// Number of model turns; 0 for local commands such as `/clear`.
    pub num_turns: u64,
    /// Wall time the CLI measured for the turn.
    pub duration_ms: Option<u64>,
    /// Error details (`errors` array) when present.
    pub errors: Vec<String>,
    /// HTTP status of an API error.
    pub api_error_status: Option<u64>,
    /// `"clear"` for the result of a `/clear`.
    pub local_command: Option<String>,
}

impl ResultEvent {
    /// A human-readable reason for an error result.
    pub fn error_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.result.as_deref().filter(|r| !r.is_empty()) {
            parts.push(r.to_owned());
        }
        parts.extend(self.errors.iter().cloned());
        if parts.is_empty() {
            parts.push("no details".to_owned());
        }
        let status = self
            .api_error_status
            .map(|s| format!(", HTTP {s}"))
            .unwrap_or_default();
        format!("{} ({}{status})", parts.join("; "), self.subtype)
    }
}

/// Why a stdout line is not a stream-json event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all (or not UTF-8).
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object with a string `type`.
    #[error("JSON without a \"type\" field")]
    NoType,
}

/// Parses one stdout line (without or with its trailing newline).
pub fn parse_line(line: &[u8]) -> Result<ClaudeEvent, ParseError> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(ParseError::NoType);
    };
    let kind = str_field(&obj, "type").ok_or(ParseError::NoType)?;
    Ok(match kind {
        "system" => {
            let subtype = str_field(&obj, "subtype").unwrap_or_default();
            if subtype == "init" {
                ClaudeEvent::SystemInit {
                    session_id: string_field(&obj, "session_id"),
                    model: string_field(&obj, "model"),
                    permission_mode: string_field(&obj, "permissionMode"),
                }
            } else if subtype == "api_retry" {
                ClaudeEvent::ApiRetry {
                    attempt: u64_field(&obj, "attempt").unwrap_or(0),
                    max_retries: u64_field(&obj, "max_retries").unwrap_or(0),
                    retry_delay_ms: u64_field(&obj, "retry_delay_ms").unwrap_or(0),
                    error_status: u64_field(&obj, "error_status"),
                    error: string_field(&obj, "error"),
                }
            } else if subtype == "permission_denied" {
                ClaudeEvent::PermissionDenied {
                    tool_name: string_field(&obj, "tool_name").unwrap_or_default(),
                    message: string_field(&obj, "message").unwrap_or_default(),
                    reason: string_field(&obj, "decision_reason_type").unwrap_or_default(),
                }
            } else {
                ClaudeEvent::System {
                    subtype: subtype.to_owned(),
                }
            }
        }
        "assistant" => ClaudeEvent::Assistant(parse_assistant(&obj)),
        "user" => ClaudeEvent::User,
        "result" => ClaudeEvent::Result(parse_result(&obj)),
        "control_response" => {
            let resp = obj.get("response").and_then(Value::as_object);
            let get = |k: &str| resp.and_then(|r| str_field(r, k));
            ClaudeEvent::ControlResponse {
                request_id: get("request_id").unwrap_or_default().to_owned(),
                success: get("subtype") == Some("success"),
                error: get("error").map(str::to_owned),
            }
        }
        "control_request" => {
            let req = obj.get("request").and_then(Value::as_object);
            ClaudeEvent::ControlRequest {
                request_id: string_field(&obj, "request_id").unwrap_or_default(),
                subtype: req
                    .and_then(|r| str_field(r, "subtype"))
                    .unwrap_or_default()
                    .to_owned(),
                request: req.cloned().unwrap_or_default(),
            }
        }
        "conversation_reset" => ClaudeEvent::ConversationReset,
        "rate_limit_event" => ClaudeEvent::RateLimit(crate::limits::RateLimitInfo::parse(&obj)),
        "control_cancel_request" => ClaudeEvent::ControlCancel {
            request_id: string_field(&obj, "request_id").unwrap_or_default(),
        },
        other => ClaudeEvent::Other {
            kind: other.to_owned(),
        },
    })
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

fn string_field(obj: &Map<String, Value>, key: &str) -> Option<String> {
    str_field(obj, key).map(str::to_owned)
}

fn u64_field(obj: &Map<String, Value>, key: &str) -> Option<u64> {
    obj.get(key)
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64)))
}

fn parse_assistant(obj: &Map<String, Value>) -> AssistantEvent {
    let mut ev = AssistantEvent::default();
    let message = obj.get("message").and_then(Value::as_object);
    if let Some(m) = message {
        ev.message_id = string_field(m, "id");
        ev.model = string_field(m, "model");
        ev.synthetic = ev.model.as_deref() == Some("<synthetic>");
        if m.get("usage").is_some_and(Value::is_object) {
            ev.usage = Some(parse_usage_snake(m.get("usage")));
        }
    }
    let content = message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array);
    for block in content.into_iter().flatten() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(t) = block.get("text").and_then(Value::as_str) {
                    ev.text.push_str(t);
                }
            }
            Some("tool_use") => {
                let name = block.get("name").and_then(Value::as_str).unwrap_or("tool");
                ev.tool_uses.push(name.to_owned());
            }
            _ => {}
        }
    }
    ev
}

fn parse_usage_snake(v: Option<&Value>) -> Usage {
    let Some(Value::Object(u)) = v else {
        return Usage::default();
    };
    Usage {
        input_tokens: u64_field(u, "input_tokens").unwrap_or(0),
        output_tokens: u64_field(u, "output_tokens").unwrap_or(0),
        cache_read_input_tokens: u64_field(u, "cache_read_input_tokens").unwrap_or(0),
        cache_creation_input_tokens: u64_field(u, "cache_creation_input_tokens").unwrap_or(0),
    }
}

fn parse_since_last(v: Option<&Value>) -> Option<Vec<ModelTurnUsage>> {
    let Value::Object(models) = v? else {
        return None;
    };
    let mut out: Vec<ModelTurnUsage> = models
        .iter()
        .filter_map(|(model, entry)| {
            let e = entry.as_object()?;
            Some(ModelTurnUsage {
                model: model.clone(),
                usage: Usage {
                    input_tokens: u64_field(e, "inputTokens").unwrap_or(0),
                    output_tokens: u64_field(e, "outputTokens").unwrap_or(0),
                    cache_read_input_tokens: u64_field(e, "cacheReadInputTokens").unwrap_or(0),
                    cache_creation_input_tokens: u64_field(e, "cacheCreationInputTokens")
                        .unwrap_or(0),
                },
                cost_usd: e.get("costUSD").and_then(Value::as_f64).unwrap_or(0.0),
            })
        })
        .collect();
    out.sort_by(|a, b| a.model.cmp(&b.model));
    Some(out)
}

fn parse_result(obj: &Map<String, Value>) -> ResultEvent {
    ResultEvent {
        subtype: string_field(obj, "subtype").unwrap_or_default(),
        is_error: obj
            .get("is_error")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        result: string_field(obj, "result"),
        session_id: string_field(obj, "session_id"),
        total_cost_usd: obj
            .get("total_cost_usd")
            .and_then(Value::as_f64)
            .unwrap_or(0.0),
        usage: parse_usage_snake(obj.get("usage")),
        since_last: parse_since_last(obj.get("model_usage_since_last_result")),
        num_turns: u64_field(obj, "num_turns").unwrap_or(0),
        duration_ms: u64_field(obj, "duration_ms"),
        errors: obj
            .get("errors")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        api_error_status: u64_field(obj, "api_error_status"),
        local_command: string_field(obj, "local_command"),
    }
}

impl ResultEvent {
    /// Sum of this turn's usage over all models, falling back to `usage`.
    pub fn turn_usage(&self) -> Usage {
        match &self.since_last {
            Some(models) if !models.is_empty() => {
                let mut total = Usage::default();
                for m in models {
                    total.add(m.usage);
                }
                total
            }
            _ => self.usage,
        }
    }
}

/// The CLI arguments of a persistent stream-json process: one JSON message per stdin line,
/// one JSON event per stdout line.
pub const PERSISTENT_ARGS: [&str; 6] = [
    "-p",
    "--input-format",
    "stream-json",
    "--output-format",
    "stream-json",
    "--verbose",
];

/// The stdin line for one user message (ends in `\n`).
pub fn user_message_line(prompt: &str) -> String {
    let mut line = json!({
        "type": "user",
        "message": { "role": "user", "content": prompt },
    })
    .to_string();
    line.push('\n');
    line
}

/// A control request the pool sends to a running CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlRequest {
    /// End the current turn now; the process stays alive.
    Interrupt,
    /// Later turns use this model.
    SetModel(String),
    /// Later turns use this permission mode.
    SetPermissionMode(String),
    /// Exit (idle) or abort and exit (mid-turn).
    EndSession(String),
}

impl ControlRequest {
    /// The stdin line carrying this request under `request_id` (ends in `\n`).
    pub fn to_line(&self, request_id: &str) -> String {
        let request = match self {
            ControlRequest::Interrupt => json!({ "subtype": "interrupt" }),
            ControlRequest::SetModel(m) => json!({ "subtype": "set_model", "model": m }),
            ControlRequest::SetPermissionMode(m) => {
                json!({ "subtype": "set_permission_mode", "mode": m })
            }
            ControlRequest::EndSession(reason) => {
                json!({ "subtype": "end_session", "reason": reason })
            }
        };
        let mut line = json!({
            "type": "control_request",
            "request_id": request_id,
            "request": request,
        })
        .to_string();
        line.push('\n');
        line
    }
}

/// The answer to a `can_use_tool` control request that the pool does not grant.
pub fn deny_control_response_line(request_id: &str, message: &str) -> String {
    let mut line = json!({
        "type": "control_response",
        "response": {
            "subtype": "success",
            "request_id": request_id,
            "response": { "behavior": "deny", "message": message },
        },
    })
    .to_string();
    line.push('\n');
    line
}

/// The answer to a `can_use_tool` control request that lets the tool run with `input`.
pub fn allow_control_response_line(request_id: &str, input: &Value) -> String {
    let mut line = json!({
        "type": "control_response",
        "response": {
            "subtype": "success",
            "request_id": request_id,
            "response": { "behavior": "allow", "updatedInput": input },
        },
    })
    .to_string();
    line.push('\n');
    line
}

/// The answer to an `elicitation` control request: `action` is accept, decline or cancel;
/// `content` goes with accept.
pub fn elicitation_response_line(
    request_id: &str,
    action: &str,
    content: Option<&serde_json::Map<String, Value>>,
) -> String {
    let mut response = json!({ "action": action });
    if let Some(c) = content {
        response["content"] = Value::Object(c.clone());
    }
    let mut line = json!({
        "type": "control_response",
        "response": {
            "subtype": "success",
            "request_id": request_id,
            "response": response,
        },
    })
    .to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESULT: &str = r#"{"type":"result","subtype":"success","is_error":false,"result":"MOCK: hi","session_id":"s1","total_cost_usd":0.25,"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":1,"cache_creation_input_tokens":2},"model_usage_since_last_result":{"claude-sonnet-5-5":{"inputTokens":10,"outputTokens":5,"cacheReadInputTokens":1,"cacheCreationInputTokens":2,"costUSD":0.07}},"num_turns":1,"duration_ms":66,"brand_new_field":{"x":1}}"#;

    #[test]
    fn parses_every_event_kind_the_pool_uses() {
        let cases: Vec<(&str, ClaudeEvent)> = vec![
            (
                r#"{"type":"system","subtype":"init","session_id":"abc","model":"claude-opus-5-5","permissionMode":"plan","tools":[]}"#,
                ClaudeEvent::SystemInit {
                    session_id: Some("abc".into()),
                    model: Some("claude-opus-5-5".into()),
                    permission_mode: Some("plan".into()),
                },
            ),
            (
                r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":581,"error_status":529,"error":"overloaded"}"#,
                ClaudeEvent::ApiRetry {
                    attempt: 1,
                    max_retries: 10,
                    retry_delay_ms: 581,
                    error_status: Some(529),
                    error: Some("overloaded".into()),
                },
            ),
            (
                r#"{"type":"assistant","message":{"id":"msg_1","model":"claude-sonnet-5-5","content":[{"type":"text","text":"he"},{"type":"tool_use","name":"Bash","input":{}},{"type":"text","text":"llo"}],"usage":{"input_tokens":1000,"output_tokens":1,"cache_read_input_tokens":5}}}"#,
                ClaudeEvent::Assistant(AssistantEvent {
                    text: "hello".into(),
                    tool_uses: vec!["Bash".into()],
                    message_id: Some("msg_1".into()),
                    model: Some("claude-sonnet-5-5".into()),
                    usage: Some(Usage {
                        input_tokens: 1000,
                        output_tokens: 1,
                        cache_read_input_tokens: 5,
                        cache_creation_input_tokens: 0,
                    }),
                    synthetic: false,
                }),
            ),
            (
                r#"{"type":"user","message":{"content":[]}}"#,
                ClaudeEvent::User,
            ),
            (
                r#"{"type":"control_response","response":{"subtype":"success","request_id":"r1","response":{}}}"#,
                ClaudeEvent::ControlResponse {
                    request_id: "r1".into(),
                    success: true,
                    error: None,
                },
            ),
            (
                r#"{"type":"control_response","response":{"subtype":"error","request_id":"r2","error":"Unsupported"}}"#,
                ClaudeEvent::ControlResponse {
                    request_id: "r2".into(),
                    success: false,
                    error: Some("Unsupported".into()),
                },
            ),
            (
                r#"{"type":"control_request","request_id":"q","request":{"subtype":"can_use_tool","tool_name":"Bash"}}"#,
                ClaudeEvent::ControlRequest {
                    request_id: "q".into(),
                    subtype: "can_use_tool".into(),
                    request: serde_json::from_str(
                        r#"{"subtype":"can_use_tool","tool_name":"Bash"}"#,
                    )
                    .unwrap(),
                },
            ),
            (
                r#"{"type":"conversation_reset","trigger":"clear"}"#,
                ClaudeEvent::ConversationReset,
            ),
            (
                r#"{"type":"rate_limit_event","x":1}"#,
                ClaudeEvent::RateLimit(crate::limits::RateLimitInfo::default()),
            ),
            (
                r#"{"type":"a_future_event","x":1}"#,
                ClaudeEvent::Other {
                    kind: "a_future_event".into(),
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line.as_bytes()), Ok(want), "line {line}");
        }
    }

    #[test]
    fn reads_result_fields_and_ignores_unknown_ones() {
        let Ok(ClaudeEvent::Result(r)) = parse_line(RESULT.as_bytes()) else {
            panic!("not a result");
        };
        assert_eq!(r.subtype, "success");
        assert!(!r.is_error);
        assert_eq!(r.result.as_deref(), Some("MOCK: hi"));
        assert_eq!(r.total_cost_usd, 0.25);
        assert_eq!(r.usage.input_tokens, 10);
        assert_eq!(r.duration_ms, Some(66));
        let since = r.since_last.expect("since_last");
        assert_eq!(since.len(), 1);
        assert_eq!(since[0].cost_usd, 0.07);
    }

    #[test]
    fn rejects_lines_that_are_not_stream_json() {
        assert!(matches!(
            parse_line(b"this is not json {"),
            Err(ParseError::NotJson(_))
        ));
        assert!(matches!(
            parse_line(b"\xff\xfe garbage"),
            Err(ParseError::NotJson(_))
        ));
        assert_eq!(parse_line(b"[1,2]"), Err(ParseError::NoType));
        assert_eq!(parse_line(br#"{"type":5}"#), Err(ParseError::NoType));
    }

    #[test]
    fn stdin_lines_are_single_lines_whatever_the_prompt() {
        let prompt = "line one\nline \"two\"\r\n\u{2028}end";
        let line = user_message_line(prompt);
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        let v: Value = serde_json::from_str(line.trim_end()).expect("json");
        assert_eq!(v["message"]["content"], prompt);

        let c = ControlRequest::SetPermissionMode("acceptEdits".into()).to_line("r7");
        let v: Value = serde_json::from_str(c.trim_end()).expect("json");
        assert_eq!(v["request"]["subtype"], "set_permission_mode");
        assert_eq!(v["request"]["mode"], "acceptEdits");
        assert_eq!(v["request_id"], "r7");
    }
}

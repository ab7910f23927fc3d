//! What the mock answers to `POST /v1/messages`: prompt directives, the reply plan, the
//! message object and its SSE event sequence. A line-by-line port of the reference
//! `mock_anthropic.py` (same texts, same usage arithmetic, same event order).

use serde_json::{Map, Value, json};

use crate::pyjson::{approx_tokens, dumps};

/// Anthropic error `type` for an HTTP status (`api_error` when unlisted).
pub(crate) fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        415 => "invalid_request_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// The static model list of `GET /v1/models`.
pub(crate) const MODELS: &[(&str, &str)] = &[
    ("claude-opus-5-5", "Claude Opus 5.5"),
    ("claude-sonnet-5-5", "Claude Sonnet 5.5"),
    ("claude-haiku-5-5", "Claude Haiku 5.5"),
    ("claude-opus-4-1-20250805", "Claude Opus 4.1"),
    ("claude-opus-4-20250514", "Claude Opus 4"),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5"),
    ("claude-sonnet-4-20250514", "Claude Sonnet 4"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5"),
    ("claude-3-5-haiku-20241022", "Claude Haiku 3.5"),
];

// ------------------------------------------------------------------ message helpers

fn messages(body: &Value) -> &[Value] {
    body.get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn role(m: &Value) -> Option<&str> {
    m.get("role").and_then(Value::as_str)
}

/// Text strings of a message content (a string, or the `text` of its text blocks).
fn block_texts(content: Option<&Value>) -> Vec<&str> {
    match content {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .map(|b| b.get("text").and_then(Value::as_str).unwrap_or(""))
            .collect(),
        _ => Vec::new(),
    }
}

fn is_system_reminder(t: &str) -> bool {
    t.trim_start().starts_with("<system-reminder>")
}

fn has_tool_result(content: Option<&Value>) -> bool {
    content.and_then(Value::as_array).is_some_and(|bs| {
        bs.iter()
            .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
    })
}

/// Text of the last user message, skipping `<system-reminder>` blocks the CLI injects.
pub(crate) fn last_user_text(msgs: &[Value]) -> String {
    for m in msgs.iter().rev() {
        if role(m) != Some("user") {
            continue;
        }
        let content = m.get("content");
        let all = block_texts(content);
        if let Some(t) = all.iter().rev().find(|t| !is_system_reminder(t)) {
            return (*t).to_string();
        }
        if has_tool_result(content) {
            return String::new();
        }
        return all.last().map(|t| (*t).to_string()).unwrap_or_default();
    }
    String::new()
}

/// The first user text block that carries a directive (`MOCK_` anywhere), if any.
fn first_user_text(msgs: &[Value]) -> String {
    msgs.iter()
        .filter(|m| role(m) == Some("user"))
        .flat_map(|m| block_texts(m.get("content")))
        .find(|t| t.contains("MOCK_"))
        .unwrap_or("")
        .to_string()
}

/// `(tool_use_id, text)` if the last message is a user message with a `tool_result` block.
pub(crate) fn tool_result_of_last(msgs: &[Value]) -> Option<(Value, String)> {
    let m = msgs.last()?;
    if role(m) != Some("user") {
        return None;
    }
    let blocks = m.get("content")?.as_array()?;
    let b = blocks
        .iter()
        .find(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))?;
    let text = match b.get("content") {
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|x| x.is_object())
            .map(|x| x.get("text").and_then(Value::as_str).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" "),
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) | Some(Value::Bool(false)) => String::new(),
        Some(other) => other.to_string(),
    };
    Some((b.get("tool_use_id").cloned().unwrap_or(Value::Null), text))
}

// ------------------------------------------------------------------ directives

/// Value of `NAME:<value>` in `text` (rest of that line, trimmed), first occurrence.
pub(crate) fn directive(text: &str, name: &str) -> Option<String> {
    let key = format!("{name}:");
    let at = text.find(&key)?;
    let rest = &text[at + key.len()..];
    let line = rest.split('\n').next().unwrap_or("");
    Some(line.trim().to_string())
}

/// Every position right after an occurrence of `NAME:` in `text`.
fn occurrences<'a>(text: &'a str, name: &str) -> impl Iterator<Item = &'a str> {
    let key = format!("{name}:");
    text.match_indices(&key)
        .map(|(at, k)| &text[at + k.len()..])
        .collect::<Vec<_>>()
        .into_iter()
}

/// Leading number of the first `NAME:<number>` (spaces allowed after the colon).
pub(crate) fn num_directive(text: &str, name: &str) -> Option<f64> {
    occurrences(text, name).find_map(|rest| {
        let rest = rest.trim_start();
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if int_len == 0 {
            return None;
        }
        let mut end = int_len;
        let frac = &rest.as_bytes()[int_len..];
        if frac.first() == Some(&b'.') {
            let frac_len = frac[1..].iter().take_while(|b| b.is_ascii_digit()).count();
            if frac_len > 0 {
                end += 1 + frac_len;
            }
        }
        rest[..end].parse().ok()
    })
}

/// `MOCK_FAIL_FIRST:<n>:<key>` → `(n, key)`.
pub(crate) fn fail_first(text: &str) -> Option<(u64, String)> {
    occurrences(text, "MOCK_FAIL_FIRST").find_map(|rest| {
        let rest = rest.trim_start();
        let n_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let after = rest[n_len..].strip_prefix(':')?;
        let key_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            .count();
        if n_len == 0 || key_len == 0 {
            return None;
        }
        Some((
            rest[..n_len].parse().unwrap_or(u64::MAX),
            after[..key_len].to_string(),
        ))
    })
}

/// `MOCK_USAGE:<in>,<out>[,<cache_read>,<cache_write>]` anywhere in the conversation
/// (latest text block first) → `[in, out, cache_read, cache_write]`.
///
/// Deliberate difference from the Python mock, which reads the blocks of one message front to
/// back: after an interrupt the real CLI sends the interrupted prompt, `[Request interrupted
/// by user]` and the next prompt as blocks of ONE user message, and the newest prompt's
/// directive must win.
fn forced_usage(msgs: &[Value]) -> Option<[u64; 4]> {
    for m in msgs.iter().rev() {
        for t in block_texts(m.get("content")).into_iter().rev() {
            for rest in occurrences(t, "MOCK_USAGE") {
                let rest = rest.trim_start();
                if !rest.starts_with(|c: char| c.is_ascii_digit()) {
                    continue;
                }
                let len = rest
                    .bytes()
                    .take_while(|b| b.is_ascii_digit() || *b == b',')
                    .count();
                let mut nums = [0u64; 4];
                for (slot, part) in nums
                    .iter_mut()
                    .zip(rest[..len].split(',').filter(|p| !p.is_empty()))
                {
                    *slot = part.parse().unwrap_or(u64::MAX);
                }
                return Some(nums);
            }
        }
    }
    None
}

/// The prompt text directives are read from: the last user text, else the first user text
/// carrying a directive.
pub(crate) fn directive_text(body: &Value) -> String {
    let msgs = messages(body);
    let t = last_user_text(msgs);
    if t.is_empty() {
        first_user_text(msgs)
    } else {
        t
    }
}

/// True when the last message is a tool result (status directives then do not apply).
pub(crate) fn last_is_tool_result(body: &Value) -> bool {
    tool_result_of_last(messages(body)).is_some()
}

// ------------------------------------------------------------------ reply

/// A tiny deterministic instance of a JSON Schema (for the StructuredOutput tool).
fn sample_from_schema(schema: &Value, depth: usize) -> Value {
    let empty = Map::new();
    let s = schema.as_object().unwrap_or(&empty);
    if depth > 64 {
        return Value::Null;
    }
    let t = match s.get("type") {
        Some(Value::Array(ts)) => ts.first().and_then(Value::as_str),
        Some(Value::String(t)) => Some(t.as_str()),
        _ => None,
    };
    if let Some(e) = s.get("enum") {
        return e
            .as_array()
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or(Value::Null);
    }
    if t == Some("object") || s.contains_key("properties") {
        let props = s
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let required: Vec<String> = match s.get("required").and_then(Value::as_array) {
            Some(r) if !r.is_empty() => r
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            _ => props.keys().cloned().collect(),
        };
        let mut out = Map::new();
        for k in required {
            let sub = props.get(&k).cloned().unwrap_or(Value::Object(Map::new()));
            out.insert(k, sample_from_schema(&sub, depth + 1));
        }
        return Value::Object(out);
    }
    match t {
        Some("array") => {
            let items = s.get("items").cloned().unwrap_or(Value::Object(Map::new()));
            json!([sample_from_schema(&items, depth + 1)])
        }
        Some("integer") | Some("number") => json!(0),
        Some("boolean") => json!(false),
        Some("null") => Value::Null,
        _ => json!("mock"),
    }
}

/// What to answer.
#[derive(Debug)]
pub(crate) enum Plan {
    Text(String),
    Tool { name: String, input: Value },
}

/// Decide the reply (tool result echo, StructuredOutput, MOCK_TOOL, MOCK_COUNT, MOCK_TEXT, echo).
pub(crate) fn plan_reply(body: &Value) -> Plan {
    let msgs = messages(body);
    if let Some(plan) = scripted_calls(msgs) {
        return plan;
    }
    let text = last_user_text(msgs);
    if let Some((_, result)) = tool_result_of_last(msgs) {
        let flat: String = result.trim().replace('\n', " ").chars().take(40).collect();
        return Plan::Text(format!("MOCK: tool said: {flat}"));
    }
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if let Some(so) = tools
        .iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some("StructuredOutput"))
    {
        let first = first_user_text(msgs);
        let src = if first.is_empty() { &text } else { &first };
        let schema = so.get("input_schema").cloned().unwrap_or(Value::Null);
        let obj = match directive(src, "MOCK_JSON").filter(|raw| !raw.is_empty()) {
            Some(raw) => {
                serde_json::from_str(&raw).unwrap_or_else(|_| sample_from_schema(&schema, 0))
            }
            None => sample_from_schema(&schema, 0),
        };
        return Plan::Tool {
            name: "StructuredOutput".into(),
            input: obj,
        };
    }
    if let Some(cmd) = directive(&text, "MOCK_TOOL").filter(|c| !c.is_empty()) {
        return Plan::Tool {
            name: "Bash".into(),
            input: json!({"command": cmd, "description": "mock tool call"}),
        };
    }
    if text.contains("MOCK_COUNT") {
        let users = msgs
            .iter()
            .filter(|m| role(m) == Some("user"))
            .filter(|m| {
                block_texts(m.get("content"))
                    .iter()
                    .any(|t| !is_system_reminder(t))
            })
            .count();
        return Plan::Text(format!("messages={} users={users}", msgs.len()));
    }
    if let Some(exact) = directive(&text, "MOCK_TEXT") {
        return Plan::Text(exact);
    }
    Plan::Text(format!(
        "MOCK: {}",
        text.trim().chars().take(40).collect::<String>()
    ))
}

/// Every `tool_result` text in the conversation, in order.
fn tool_results(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .filter(|m| role(m) == Some("user"))
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        .map(|b| match b.get("content") {
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|x| x.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        })
        .collect()
}

/// `MOCK_CALLS:[{"name": .., "input": {..}}, ..]` in the first user text carrying a
/// directive: the model calls those tools one after the other (one per answer, counting the
/// tool results already in the conversation), then answers `MOCK: tool results: ` followed
/// by every tool result, whole, joined by ` | `. This makes the real CLI a scripted client of
/// MCP tools (e.g. `mcp__pool__pool_run`).
fn scripted_calls(msgs: &[Value]) -> Option<Plan> {
    let first = first_user_text(msgs);
    let raw = directive(&first, "MOCK_CALLS")?;
    let calls: Vec<Value> = serde_json::from_str(&raw).ok()?;
    let results = tool_results(msgs);
    match calls.get(results.len()) {
        Some(call) => Some(Plan::Tool {
            name: call.get("name")?.as_str()?.to_owned(),
            input: call.get("input").cloned().unwrap_or_else(|| json!({})),
        }),
        None => Some(Plan::Text(format!(
            "MOCK: tool results: {}",
            results.join(" | ")
        ))),
    }
}

/// A random lowercase hex id of `digits` hex digits (at most 32).
pub(crate) fn rand_hex(digits: usize) -> String {
    let v = crate::random_u128();
    let full = format!("{v:032x}");
    full[32 - digits.min(32)..].to_string()
}

/// The complete (non-streamed) message for `plan`.
pub(crate) fn make_message(body: &Value, plan: &Plan) -> Value {
    let msgs = messages(body);
    let mut model = match body.get("model") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => json!("claude-sonnet-4-5-20250929"),
        Some(Value::String(s)) if s.is_empty() => json!("claude-sonnet-4-5-20250929"),
        Some(m) => m.clone(),
    };
    for m in msgs.iter().rev() {
        // newest block first (see `forced_usage`)
        let rm = block_texts(m.get("content"))
            .into_iter()
            .rev()
            .find(|t| t.contains("MOCK_REPLY_MODEL:"))
            .and_then(|t| directive(t, "MOCK_REPLY_MODEL"));
        if let Some(first) = rm.as_deref().and_then(|r| r.split_whitespace().next()) {
            model = json!(first);
            break;
        }
    }
    let mut in_tok = approx_tokens(body.get("messages"))
        + approx_tokens(body.get("system"))
        + approx_tokens(body.get("tools"));
    let (content, stop, mut out_tok) = match plan {
        Plan::Tool { name, input } => (
            json!([{"type": "tool_use", "id": format!("toolu_mock_{}", rand_hex(20)),
                    "name": name, "input": input}]),
            "tool_use",
            approx_tokens(Some(input)) + 10,
        ),
        Plan::Text(t) => (
            json!([{"type": "text", "text": t}]),
            "end_turn",
            approx_tokens(Some(&json!(t))),
        ),
    };
    let (mut cache_read, mut cache_write) = (0, 0);
    if let Some([i, o, cr, cw]) = forced_usage(msgs) {
        (in_tok, out_tok, cache_read, cache_write) = (i, o, cr, cw);
    }
    json!({
        "id": format!("msg_mock_{}", rand_hex(24)),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": {
            "input_tokens": in_tok,
            "cache_creation_input_tokens": cache_write,
            "cache_read_input_tokens": cache_read,
            "output_tokens": out_tok,
            "service_tier": "standard",
        },
    })
}

/// Split like Python's `re.findall(r"\S+\s*|\s+", text)`.
fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while chars.peek().is_some_and(|(_, c)| !c.is_whitespace()) {
                chars.next();
            }
            while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                chars.next();
            }
        }
        let end = chars.peek().map(|(j, _)| *j).unwrap_or(text.len());
        out.push(&text[start..end]);
    }
    out
}

/// The `(event, data)` pairs of the streamed version of `msg`.
pub(crate) fn sse_events(msg: &Value) -> Vec<(&'static str, Value)> {
    let mut ev = Vec::new();
    let usage = msg.get("usage").cloned().unwrap_or_else(|| json!({}));
    let mut start = msg.clone();
    if let Some(o) = start.as_object_mut() {
        o.insert("content".into(), json!([]));
        o.insert("stop_reason".into(), Value::Null);
        o.insert("stop_sequence".into(), Value::Null);
        let mut u = usage.clone();
        if let Some(uo) = u.as_object_mut() {
            uo.insert("output_tokens".into(), json!(1));
        }
        o.insert("usage".into(), u);
    }
    ev.push((
        "message_start",
        json!({"type": "message_start", "message": start}),
    ));
    ev.push(("ping", json!({"type": "ping"})));
    let blocks = msg
        .get("content")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, block) in blocks.iter().enumerate() {
        if block.get("type").and_then(Value::as_str) == Some("text") {
            ev.push((
                "content_block_start",
                json!({"type": "content_block_start", "index": i,
                       "content_block": {"type": "text", "text": ""}}),
            ));
            let text = block.get("text").and_then(Value::as_str).unwrap_or("");
            let mut ws = words(text);
            if ws.is_empty() {
                ws.push("");
            }
            for group in ws.chunks(3) {
                ev.push((
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": i,
                           "delta": {"type": "text_delta", "text": group.concat()}}),
                ));
            }
        } else {
            let mut cb = block.clone();
            if let Some(o) = cb.as_object_mut() {
                o.insert("input".into(), json!({}));
            }
            ev.push((
                "content_block_start",
                json!({"type": "content_block_start", "index": i, "content_block": cb}),
            ));
            // Python's json.dumps output is pure ASCII, so byte slicing is char slicing.
            let js = dumps(block.get("input").unwrap_or(&Value::Null));
            for j in (0..js.len()).step_by(16) {
                let part = &js[j..(j + 16).min(js.len())];
                ev.push((
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": i,
                           "delta": {"type": "input_json_delta", "partial_json": part}}),
                ));
            }
        }
        ev.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        ));
    }
    ev.push((
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": msg.get("stop_reason"), "stop_sequence": null},
               "usage": {"input_tokens": usage.get("input_tokens"),
                         "cache_creation_input_tokens": usage.get("cache_creation_input_tokens"),
                         "cache_read_input_tokens": usage.get("cache_read_input_tokens"),
                         "output_tokens": usage.get("output_tokens")}}),
    ));
    ev.push(("message_stop", json!({"type": "message_stop"})));
    ev
}

/// One SSE frame: `event: <name>\ndata: <json>\n\n`.
pub(crate) fn sse_frame(event: &str, data: &Value) -> String {
    format!("event: {event}\ndata: {}\n\n", dumps(data))
}

/// The request summary logged for bodies with `messages`.
pub(crate) fn summarize(body: &Value) -> Value {
    let msgs = messages(body);
    let system_chars = match body.get("system") {
        Some(Value::String(s)) => s.chars().count(),
        None | Some(Value::Null) => 2,
        Some(other) => dumps(other).len(),
    };
    let known = [
        "model",
        "stream",
        "max_tokens",
        "messages",
        "system",
        "tools",
        "thinking",
        "metadata",
    ];
    let mut other: Vec<String> = body
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| !known.contains(&k.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    other.sort();
    let tools: Vec<Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .map(|t| t.get("name").cloned().unwrap_or(Value::Null))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "model": body.get("model"),
        "stream": body.get("stream"),
        "max_tokens": body.get("max_tokens"),
        "n_messages": msgs.len(),
        "roles": msgs.iter().map(|m| m.get("role").cloned().unwrap_or(Value::Null)).collect::<Vec<_>>(),
        "system_chars": system_chars,
        "tools": tools,
        "thinking": body.get("thinking"),
        "metadata": body.get("metadata"),
        "last_user_text": last_user_text(msgs).chars().take(200).collect::<String>(),
        "other_keys": other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_like_python_findall() {
        assert_eq!(words("a bb  c"), vec!["a ", "bb  ", "c"]);
        assert_eq!(words("  lead x"), vec!["  ", "lead ", "x"]);
        assert!(words("").is_empty());
    }

    #[test]
    fn directives() {
        assert_eq!(
            directive("x MOCK_TEXT: hi there \nmore", "MOCK_TEXT").as_deref(),
            Some("hi there")
        );
        assert_eq!(
            num_directive("MOCK_SLEEP:x MOCK_SLEEP: 1.5s", "MOCK_SLEEP"),
            Some(1.5)
        );
        assert_eq!(num_directive("MOCK_SLEEP:3.", "MOCK_SLEEP"), Some(3.0));
        assert_eq!(num_directive("nothing", "MOCK_SLEEP"), None);
        assert_eq!(
            fail_first("MOCK_FAIL_FIRST:2:k-1.x rest"),
            Some((2, "k-1.x".into()))
        );
        let msgs = vec![json!({"role": "user", "content": "MOCK_USAGE:1000,500 x"})];
        assert_eq!(forced_usage(&msgs), Some([1000, 500, 0, 0]));
        let merged = vec![json!({"role": "user", "content": [
            {"type": "text", "text": "MOCK_USAGE:2000,700 MOCK_SLEEP:5 slow\n"},
            {"type": "text", "text": "[Request interrupted by user]\n"},
            {"type": "text", "text": "MOCK_USAGE:1,2,3,4 after"}]})];
        assert_eq!(forced_usage(&merged), Some([1, 2, 3, 4]));
    }

    #[test]
    fn last_user_text_skips_reminders() {
        let msgs = vec![json!({"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
            {"type": "text", "text": "hello"},
            {"type": "text", "text": "  <system-reminder>more"}]})];
        assert_eq!(last_user_text(&msgs), "hello");
    }

    #[test]
    fn count_directive() {
        let body = json!({"messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "MOCK: first"},
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>x"},
                                         {"type": "text", "text": "MOCK_COUNT"}]}]});
        match plan_reply(&body) {
            Plan::Text(t) => assert_eq!(t, "messages=3 users=2"),
            other => panic!("unexpected plan {other:?}"),
        }
    }

    #[test]
    fn tool_stream_reassembles() {
        let body =
            json!({"model": "m", "messages": [{"role": "user", "content": "MOCK_TOOL:echo hé"}]});
        let msg = make_message(&body, &plan_reply(&body));
        let partial: String = sse_events(&msg)
            .iter()
            .filter_map(|(_, d)| {
                d.pointer("/delta/partial_json")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .collect();
        let input: Value = serde_json::from_str(&partial).expect("valid json");
        assert_eq!(input["command"], "echo hé");
    }
}

//! Turns and the events they print, with the shapes of the real CLI 2.1.329.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api_error;
use crate::cli::{Opts, VERSION};
use crate::control::Shared;
use crate::directives as d;
use crate::permissions::Policy;
use crate::pricing::{Usage, js_num, resolve_model};
use crate::session::{self, ApiMsg, State, usage_map_json};
use crate::sys;

/// What a result reports; `Res::default()` is a plain success.
#[derive(Debug)]
pub(crate) struct Res {
    pub(crate) turns: u64,
    pub(crate) usage: Usage,
    pub(crate) stop: Option<&'static str>,
    pub(crate) subtype: &'static str,
    pub(crate) result: Option<String>,
    pub(crate) errors: Option<Vec<String>>,
    pub(crate) api_status: Option<i64>,
    pub(crate) api_type: Option<&'static str>,
    pub(crate) terminal: &'static str,
}

impl Default for Res {
    fn default() -> Self {
        Self {
            turns: 1,
            usage: [0; 4],
            stop: None,
            subtype: "success",
            result: None,
            errors: None,
            api_status: None,
            api_type: None,
            terminal: "completed",
        }
    }
}

fn subagent_stats() -> Value {
    json!({"spawned": 0, "requested": {"background": 0, "foreground": 0, "unset": 0},
           "started_in_background": 0, "max_depth": 0, "spawned_by_subagents": 0,
           "completed": 0, "failed": 0, "killed": {"parent": 0, "user": 0, "system": 0},
           "refused": {"depth_limit": 0, "concurrency_limit": 0, "budget": 0},
           "by_type": {}})
}

/// The `usage` block of a result (this turn's tokens).
pub fn usage_block(u: &Usage) -> Value {
    json!({"input_tokens": u[0], "cache_creation_input_tokens": u[3],
           "cache_read_input_tokens": u[2], "output_tokens": u[1],
           "output_tokens_details": {"thinking_tokens": 0},
           "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
           "service_tier": "standard",
           "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": u[3]},
           "inference_geo": "", "iterations": [], "speed": "standard", "fallback_credit": null})
}

/// The user event that marks an interrupted turn (also printed on SIGINT).
pub fn interrupted_event(session_id: &str) -> Value {
    json!({"type": "user", "message": {"role": "user", "content": [
              {"type": "text", "text": "[Request interrupted by user]"}]},
           "parent_tool_use_id": null, "session_id": session_id, "uuid": sys::uuid4(),
           "timestamp": sys::iso_now()})
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}

#[derive(Debug)]
pub struct Runner {
    pub sh: Arc<Shared>,
    pub st: State,
    pub o: Opts,
    /// `--output-format json --verbose`: every event, printed as one JSON array at the end.
    pub collect: Option<Vec<Value>>,
    /// Whether events (init, assistant, ...) are produced at all.
    pub stream: bool,
    turn_delay: Duration,
    base_input_tokens: u64,
    /// Permission rules and extra working directories (`--permission-prompt-tool stdio`);
    /// what answers add outlives `/clear`.
    pub(crate) policy: Policy,
    /// This turn's refused tool calls, for the result's `permission_denials`.
    pub(crate) denials: Vec<Value>,
    /// Whether the auto-mode "can't check actions" notice was printed (once per process).
    pub(crate) classifier_warned: bool,
}

impl Runner {
    pub fn new(sh: Arc<Shared>, st: State, o: Opts) -> Self {
        let collect = (o.output == "json" && o.verbose).then(Vec::new);
        let stream = o.output == "stream-json" || collect.is_some();
        let env_u64 = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let policy = Policy::new(&o.allowed_tools, &o.disallowed_tools);
        Self {
            sh,
            st,
            o,
            collect,
            stream,
            turn_delay: Duration::from_millis(env_u64("FAKE_CLAUDE_TURN_MS").unwrap_or(20)),
            base_input_tokens: env_u64("FAKE_CLAUDE_INPUT_TOKENS").unwrap_or(12414),
            policy,
            denials: Vec::new(),
            classifier_warned: false,
        }
    }

    /// Prints an event (or collects it for the JSON array). A vanished stdout ends the process.
    pub fn emit(&mut self, v: Value) {
        match &mut self.collect {
            Some(c) => c.push(v),
            None => {
                if !sys::emit_line(&v) {
                    sys::exit(1);
                }
            }
        }
    }

    fn init_event(&self) -> Value {
        let key_source = if std::env::var_os("ANTHROPIC_API_KEY").is_some_and(|k| !k.is_empty()) {
            "ANTHROPIC_API_KEY"
        } else {
            "none"
        };
        json!({"type": "system", "subtype": "init", "cwd": self.st.cwd,
               "session_id": self.st.session_id,
               "tools": ["Task", "Bash", "Edit", "Read", "Write"], "mcp_servers": [],
               "model": self.sh.model(), "permissionMode": self.sh.permission_mode(),
               "slash_commands": ["clear"], "apiKeySource": key_source,
               "claude_code_version": VERSION, "output_style": "default", "agents": [],
               "skills": [], "plugins": [], "uuid": sys::uuid4(), "fast_mode_state": "off"})
    }

    fn assistant_event(&self, model: &str, content: Value, u: &Usage, stop: Option<&str>) -> Value {
        json!({"type": "assistant", "message": {
                   "id": format!("msg_fake_{}", sys::rand_hex(96)), "type": "message",
                   "role": "assistant", "model": model, "content": content, "stop_reason": stop,
                   "stop_sequence": null,
                   "usage": {"input_tokens": u[0], "cache_creation_input_tokens": u[3],
                             "cache_read_input_tokens": u[2], "output_tokens": 1,
                             "service_tier": "standard"},
                   "context_management": null},
               "parent_tool_use_id": null, "session_id": self.st.session_id,
               "uuid": sys::uuid4(), "timestamp": sys::iso_now(),
               "request_id": format!("req_fake_{}", sys::rand_hex(64))})
    }

    fn text_event(&self, model: &str, text: &str, u: &Usage) -> Value {
        self.assistant_event(model, json!([{"type": "text", "text": text}]), u, None)
    }

    pub(crate) fn result(&mut self, t0: Instant, r: Res) -> Value {
        let st = &mut self.st;
        let is_error =
            r.subtype != "success" || r.api_status.is_some() || r.terminal != "completed";
        let ms = t0.elapsed().as_millis() as u64;
        let mut v = json!({
            "type": "result", "subtype": r.subtype, "is_error": is_error,
            "duration_ms": ms, "duration_api_ms": st.api_ms, "num_turns": r.turns,
            "stop_reason": r.stop, "session_id": st.session_id, "total_cost_usd": js_num(st.cost),
            "usage": usage_block(&r.usage), "modelUsage": st.model_usage_json(),
            "permission_denials": std::mem::take(&mut self.denials),
            "terminal_reason": r.terminal, "fast_mode_state": "off",
            "fast_mode_disabled_reason": "sdk_opt_in_required",
            "subagent_stats": subagent_stats(), "safety_stops": 0, "uuid": sys::uuid4(),
            "queued_turn_count": 0, "result_index": st.result_index,
        });
        if let Value::Object(m) = &mut v {
            match r.errors {
                Some(errors) => {
                    m.insert("errors".into(), json!(errors));
                }
                None => {
                    m.insert("api_error_status".into(), json!(r.api_status));
                    if let Some(t) = r.api_type {
                        m.insert("api_error_type".into(), json!(t));
                    }
                    m.insert("result".into(), json!(r.result));
                }
            }
            if r.subtype == "success" && r.terminal == "completed" && r.turns > 0 {
                for k in ["ttft_ms", "ttft_stream_ms", "first_content_frame_ms"] {
                    m.insert(k.into(), json!(ms));
                }
                m.insert("time_to_request_ms".into(), json!(0));
            }
            if self.o.output == "stream-json" {
                m.insert(
                    "model_usage_since_last_result".into(),
                    usage_map_json(&st.since_last),
                );
            }
        }
        st.result_index += 1;
        st.since_last.clear();
        v
    }

    /// What the real CLI prints when a turn is interrupted or ended mid-flight.
    fn aborted_result(&mut self, t0: Instant) -> Value {
        if self.stream {
            let ev = interrupted_event(&self.st.session_id);
            self.emit(ev);
        }
        let errors =
            vec!["[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=null".into()];
        self.result(
            t0,
            Res {
                turns: 2,
                subtype: "error_during_execution",
                errors: Some(errors),
                terminal: "aborted_streaming",
                ..Res::default()
            },
        )
    }

    /// `/clear`: conversation_reset, background_tasks_changed, init with a new session id, and
    /// an empty result with `num_turns: 0`, `local_command: "clear"` and the cost reset (no
    /// `api_error_status` or `terminal_reason` keys, like the real CLI's).
    pub fn clear(&mut self) {
        let old = self.st.session_id.clone();
        self.st.reset();
        self.sh.set_session_id(&self.st.session_id);
        let conversation = sys::uuid4();
        self.emit(
            json!({"type": "conversation_reset", "new_conversation_id": conversation,
                   "uuid": conversation, "trigger": "clear",
                   "user_message_uuid": sys::uuid4(), "timestamp": sys::iso_now(),
                   "session_id": old}),
        );
        self.emit(
            json!({"type": "system", "subtype": "background_tasks_changed", "tasks": [],
                         "uuid": sys::uuid4(), "session_id": old}),
        );
        let init = self.init_event();
        self.emit(init);
        let mut r = self.result(
            Instant::now(),
            Res {
                turns: 0,
                result: Some(String::new()),
                ..Res::default()
            },
        );
        if let Value::Object(m) = &mut r {
            m.remove("api_error_status");
            m.remove("terminal_reason");
            m.insert("local_command".into(), json!("clear"));
        }
        self.emit(r);
    }

    /// Runs one user prompt, logging `turn_start` / `turn_end`; returns the result (which the
    /// caller prints, after `turn_end` is logged).
    pub fn run_turn(&mut self, prompt: &str) -> Value {
        let head = prompt_head(prompt);
        sys::log(
            &json!({"event": "turn_start", "pid": sys::pid(), "mono_ns": sys::mono_ns(),
                         "prompt_len": prompt.len(), "head": head, "slot": sys::slot()}),
        );
        let armed = crate::faults::claim("turn");
        let r = match armed {
            Some(directives) => self.turn(&format!("{directives} {prompt}")),
            None => self.turn(prompt),
        };
        sys::log(
            &json!({"event": "turn_end", "pid": sys::pid(), "mono_ns": sys::mono_ns(),
                         "subtype": r.get("subtype"), "head": head}),
        );
        r
    }

    /// Reply text forced by MOCK_ECHO_STATS / MOCK_HISTORY / MOCK_SHELL / MOCK_ECHO_PROMPT /
    /// MOCK_SHOW_CONFIG (joined by a space when several are present).
    fn stats_text(&self, prompt: &str) -> Option<String> {
        let mut parts = Vec::new();
        if d::flag(prompt, "MOCK_ECHO_STATS") {
            parts.push(format!(
                "len={} fnv={:016x}",
                prompt.len(),
                d::fnv1a64(prompt.as_bytes())
            ));
        }
        if d::flag(prompt, "MOCK_HISTORY") {
            parts.push(format!("history={}", self.st.user_prompts()));
        }
        if let Some(cmd) = d::line(prompt, "MOCK_SHELL") {
            let out = Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .stdin(Stdio::null())
                .output();
            parts.push(match out {
                Ok(o) => format!(
                    "shell rc={} out={}",
                    o.status.code().unwrap_or(-1),
                    String::from_utf8_lossy(&o.stdout).trim()
                ),
                Err(e) => format!("shell error={e}"),
            });
        }
        if d::flag(prompt, "MOCK_ECHO_PROMPT") {
            parts.push(format!("prompt=<<{prompt}>>"));
        }
        if d::flag(prompt, "MOCK_SHOW_CONFIG") {
            let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
            parts.push(format!(
                "model={} permission_mode={} effort={} append_system_prompt={} system_prompt={}",
                self.sh.model(),
                self.sh.permission_mode(),
                or_none(&self.o.effort),
                or_none(&self.o.append_system_prompt),
                or_none(&self.o.system_prompt),
            ));
        }
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// MOCK_CHILD: a `sleep` grandchild in our process group, reaped by a helper thread;
    /// returns its pid.
    fn spawn_child(&self, secs: f64) -> Option<u32> {
        let spawned = Command::new("sleep")
            .arg(format!("{secs}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Ok(mut child) => {
                let child_pid = child.id();
                sys::log(&json!({"event": "child", "pid": sys::pid(), "child_pid": child_pid}));
                let _ = std::thread::Builder::new()
                    .name("reaper".into())
                    .spawn(move || child.wait());
                Some(child_pid)
            }
            Err(e) => {
                sys::eprint_line(&format!("fake-claude: cannot spawn sleep: {e}"));
                None
            }
        }
    }

    /// One user turn: init, the directives' misbehaviour and delays, then one API call (or an
    /// API error, or a two-call tool loop) and the result.
    fn turn(&mut self, prompt: &str) -> Value {
        let t0 = Instant::now();
        if let Some(rc) = d::number(prompt, "MOCK_CRASH") {
            sys::die("fake_claude: simulated crash", rc as i32);
        }
        if self.stream {
            let init = self.init_event();
            self.emit(init);
        }
        self.st
            .history
            .push(json!({"role": "user", "content": prompt}));
        self.st.api_user();
        let base_in = self.base_input_tokens + 8 * self.st.history.len() as u64;
        let forced = d::usage(prompt);
        let mut usage = forced.unwrap_or([base_in, 1, 0, 0]);
        self.misbehave(prompt, &usage);
        if self.delays(prompt, &usage) {
            return self.aborted_result(t0);
        }

        let elicited = match d::line(prompt, "MOCK_ELICIT") {
            Some(schema) => match self.elicit(&schema) {
                Some(text) => Some(text),
                None => return self.aborted_result(t0),
            },
            None => None,
        };
        let forced_text = match (self.stats_text(prompt), elicited) {
            (Some(stats), Some(elicited)) => Some(format!("{stats} {elicited}")),
            (stats, elicited) => stats.or(elicited),
        };
        let mut text = forced_text.clone().unwrap_or_else(|| {
            if d::flag(prompt, "MOCK_COUNT") {
                let (messages, users) = self.st.api_counts();
                return format!("messages={messages} users={users}");
            }
            d::line(prompt, "MOCK_TEXT").unwrap_or_else(|| {
                format!(
                    "MOCK: {}",
                    prompt.trim().chars().take(40).collect::<String>()
                )
            })
        });
        if forced.is_none() {
            usage[1] = (text.chars().count() as u64).div_ceil(4).max(1);
        }
        let mut status = d::number(prompt, "MOCK_STATUS").and_then(api_error::mock_status);
        if status.is_none()
            && d::fail_first(prompt)
                .is_some_and(|(n, key)| session::fail_first(&self.st.dir, n, &key))
        {
            status = Some(500);
        }
        if status.is_none()
            && d::limited_first(prompt).is_some_and(|(n, key)| {
                session::fail_first(&self.st.dir, n, &format!("limited-{key}"))
            })
        {
            status = Some(429);
        }
        let mut model = self.sh.model();
        if status == Some(529)
            && let Some(fb) = &self.o.fallback
        {
            let fb = resolve_model(fb.split(',').next());
            if self.stream {
                let ev = json!({"type": "system", "subtype": "model_fallback",
                                "uuid": sys::uuid4(), "trigger": "overloaded",
                                "original_model": model, "fallback_model": fb,
                                "content": "Switched to fallback model",
                                "session_id": self.st.session_id});
                self.emit(ev);
            }
            model = fb;
            status = None;
        }
        if let Some(code) = status {
            return self.api_error(t0, code, &model);
        }

        let mut turns = 1;
        if let Some(tool) = d::line(prompt, "MOCK_TOOL").filter(|t| !t.is_empty()) {
            let said = match self.tool_call(t0, &tool, &model, usage) {
                Ok(said) => said,
                Err(early) => return early,
            };
            text = forced_text.unwrap_or(said);
            turns = 2;
        }
        let mut structured = None;
        if self.o.schema.as_deref().is_some_and(|s| !s.is_empty()) {
            let raw = d::line(prompt, "MOCK_JSON").unwrap_or_default();
            let v: Value = serde_json::from_str(&raw).unwrap_or_else(|_| json!({}));
            text = v.to_string();
            structured = Some(v);
            turns += 1;
        }
        self.st.api_ms += 20;
        self.st.account(&model, &usage);
        self.st
            .history
            .push(json!({"role": "assistant", "content": text}));
        self.st.api.push(ApiMsg::Assistant);
        if structured.is_some() {
            // The StructuredOutput tool call; its tool_result ends the turn.
            self.st.api.push(ApiMsg::ToolResult);
        }
        if self.stream {
            let ev = self.text_event(&model, &text, &usage);
            self.emit(ev);
        }
        if let Some(r) = self.budget_exceeded(t0, turns, usage, "end_turn") {
            return r;
        }
        let res = Res {
            turns,
            usage,
            stop: Some("end_turn"),
            result: Some(text),
            ..Res::default()
        };
        let mut r = self.result(t0, res);
        if let (Some(s), Value::Object(m)) = (structured, &mut r) {
            m.insert("structured_output".into(), s);
        }
        r
    }

    /// MOCK_CRASH_MID, MOCK_GARBAGE, MOCK_IGNORE_TERM and MOCK_HANG (the first, third and
    /// fourth never return).
    fn misbehave(&mut self, prompt: &str, usage: &Usage) {
        if let Some(rc) = d::number(prompt, "MOCK_CRASH_MID") {
            if self.stream {
                let ev = self.text_event(&self.sh.model(), "partial", usage);
                self.emit(ev);
            }
            sys::eprint_line("fake_claude: simulated crash mid-turn");
            sys::exit(rc as i32);
        }
        if d::flag(prompt, "MOCK_GARBAGE") && !sys::write_stdout(b"this is not json {\n") {
            sys::exit(1);
        }
        if d::flag(prompt, "MOCK_IGNORE_TERM") {
            sys::ignore_termination_signals();
            self.sh.hang(false);
        }
        if d::flag(prompt, "MOCK_HANG") {
            self.sh.hang(true);
            sys::exit(1); // end_session on a wedged turn: gone, without a result
        }
    }

    /// MOCK_CHILD (with its `child <pid>` assistant event) / MOCK_SLEEP, MOCK_STREAM chunks
    /// and the API call's own latency; true when an interrupt or end_session cut them short.
    fn delays(&mut self, prompt: &str, usage: &Usage) -> bool {
        let mut sleep = d::number(prompt, "MOCK_SLEEP").unwrap_or(0.0);
        if let Some(s) = d::number(prompt, "MOCK_CHILD") {
            if let Some(child_pid) = self.spawn_child(s)
                && self.stream
            {
                let ev = self.text_event(&self.sh.model(), &format!("child {child_pid}"), usage);
                self.emit(ev);
            }
            sleep = sleep.max(s);
        }
        if sleep > 0.0 && self.sh.wait(secs(sleep)) {
            return true;
        }
        if let Some((n, ms)) = d::stream(prompt) {
            for i in 1..=n {
                if self.stream {
                    let ev = self.text_event(&self.sh.model(), &format!("chunk {i}"), usage);
                    self.emit(ev);
                }
                if self.sh.wait(Duration::from_millis(ms)) {
                    return true;
                }
            }
        }
        self.sh.wait(self.turn_delay)
    }

    /// MOCK_TOOL: the first API call asks for a Bash tool, whose result is "ok" (nothing runs)
    /// — or, with `--permission-prompt-tool stdio`, what the permission check and the command
    /// make of it (see `approvals.rs`). `Ok` carries the mock's answer to the tool_result;
    /// `Err` the result when the turn ends here (max turns, budget, interrupt).
    fn tool_call(
        &mut self,
        t0: Instant,
        tool: &str,
        model: &str,
        usage: Usage,
    ) -> Result<String, Value> {
        let tid = format!("toolu_fake_{}", sys::rand_hex(80));
        let tool_use = json!([{"type": "tool_use", "id": tid, "name": "Bash",
                               "input": {"command": tool, "description": "mock tool call"}}]);
        self.st.api_ms += 20;
        self.st.account(model, &usage);
        // The tool runs even when the turn stops here (max turns, budget): its result is part
        // of the conversation the next prompt is merged into.
        self.st.api.extend([ApiMsg::Assistant, ApiMsg::ToolResult]);
        if self.stream {
            let ev = self.assistant_event(model, tool_use, &usage, None);
            self.emit(ev);
        }
        if let Some(max) = self.o.max_turns.filter(|m| *m < 2) {
            let errors = vec![format!("Reached maximum number of turns ({max})")];
            return Err(self.result(
                t0,
                Res {
                    turns: 2,
                    usage,
                    stop: Some("tool_use"),
                    subtype: "error_max_turns",
                    errors: Some(errors),
                    terminal: "max_turns",
                    ..Res::default()
                },
            ));
        }
        if let Some(r) = self.budget_exceeded(t0, 1, usage, "tool_use") {
            return Err(r);
        }
        let said = if self.o.asks_host() {
            self.bash_tool(t0, &tid, tool, usage)?
        } else {
            if self.stream {
                let ev = json!({"type": "user", "message": {"role": "user", "content": [
                                    {"tool_use_id": tid, "type": "tool_result", "content": "ok",
                                     "is_error": false}]},
                                "parent_tool_use_id": null, "session_id": self.st.session_id,
                                "uuid": sys::uuid4(), "timestamp": sys::iso_now(),
                                "tool_use_result": {"stdout": "ok", "stderr": "",
                                                    "interrupted": false, "isImage": false,
                                                    "noOutputExpected": false}});
                self.emit(ev);
            }
            crate::approvals::tool_said("ok")
        };
        if self.sh.wait(self.turn_delay) {
            return Err(self.aborted_result(t0));
        }
        Ok(said)
    }

    fn budget_exceeded(
        &mut self,
        t0: Instant,
        turns: u64,
        usage: Usage,
        stop: &'static str,
    ) -> Option<Value> {
        let (given, max) = self.o.budget.clone()?;
        (self.st.cost >= max).then(|| {
            self.result(
                t0,
                Res {
                    turns,
                    usage,
                    stop: Some(stop),
                    subtype: "error_max_budget_usd",
                    errors: Some(vec![format!("Reached maximum budget (${given})")]),
                    terminal: "budget_exhausted",
                    ..Res::default()
                },
            )
        })
    }

    /// MOCK_STATUS:<code>: a synthetic assistant error message and an is_error result, with
    /// the real CLI's texts (see [`api_error::describe`]).
    fn api_error(&mut self, t0: Instant, code: i64, model: &str) -> Value {
        let e = api_error::describe(code, model);
        if self.stream {
            let ev = self.synthetic_error_event(&e);
            self.emit(ev);
        }
        self.result(
            t0,
            Res {
                usage: [0; 4],
                stop: Some("stop_sequence"),
                result: Some(e.text),
                api_status: e.status,
                api_type: e.etype,
                terminal: e.terminal,
                ..Res::default()
            },
        )
    }

    /// The assistant event the real CLI makes up for an API error (model `<synthetic>`).
    fn synthetic_error_event(&self, e: &api_error::ApiError) -> Value {
        let mut ev = json!({"type": "assistant", "message": {
                "diagnostics": null, "id": sys::uuid4(), "container": null,
                "model": "<synthetic>", "role": "assistant", "stop_details": null,
                "stop_reason": "stop_sequence", "stop_sequence": "", "type": "message",
                "usage": {"output_tokens_details": null, "input_tokens": 0, "output_tokens": 0,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                          "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
                          "service_tier": null,
                          "cache_creation": {"ephemeral_1h_input_tokens": 0,
                                             "ephemeral_5m_input_tokens": 0},
                          "inference_geo": null, "iterations": null, "speed": null,
                          "fallback_credit": null},
                "content": [{"type": "text", "text": e.text}], "context_management": null},
            "parent_tool_use_id": null, "session_id": self.st.session_id, "uuid": sys::uuid4(),
            "timestamp": sys::iso_now(), "error": e.category, "is_api_error_message": true});
        if let (Some(status), Value::Object(m)) = (e.status, &mut ev) {
            m.insert(
                "request_id".into(),
                json!(format!("req_fake_{}", sys::rand_hex(64))),
            );
            m.insert("api_error_status".into(), json!(status));
            m.insert("api_error_type".into(), json!(e.etype));
        }
        ev
    }

    /// The result printed (in stream mode) when `--resume` names an unknown session.
    pub fn resume_failed_result(&self, sid: &str, err: &str) -> Value {
        json!({"type": "result", "subtype": "error_during_execution", "duration_ms": 0,
               "duration_api_ms": 0, "is_error": true, "num_turns": 0, "stop_reason": null,
               "session_id": sid, "total_cost_usd": 0, "usage": usage_block(&[0; 4]),
               "modelUsage": {}, "permission_denials": [], "uuid": sys::uuid4(),
               "errors": [err], "result_index": 0})
    }
}

/// The start of a prompt as the log shows it (at most 200 bytes, cut on a char boundary), so
/// a test can tell which of its prompts a turn ran.
fn prompt_head(prompt: &str) -> &str {
    let mut end = prompt.len().min(200);
    while !prompt.is_char_boundary(end) {
        end -= 1;
    }
    &prompt[..end]
}

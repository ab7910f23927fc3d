//! `fake-claude`: a fast, faithful stand-in for the Claude Code CLI (`claude` 2.1.329) in
//! headless mode, for tests of code that supervises `claude` processes. It is a Rust port of
//! the reference `fake_claude.py` (same JSON shapes, event sequences, price table and cost
//! arithmetic) plus directives that make it misbehave on command.
//!
//! # Modes
//! - One-shot: `-p "<prompt>"` and/or the prompt on stdin, `--output-format text|json|stream-json`
//!   (stream-json needs `--verbose`; `json --verbose` prints a JSON array of every event).
//! - Persistent: `-p --input-format stream-json --output-format stream-json --verbose`. One JSON
//!   object per stdin line. A reader thread answers control requests at once, even mid-turn:
//!   `interrupt` (the running turn ends with "[Request interrupted by user]" and an
//!   `error_during_execution` result; the process lives on), `set_model` (aliases opus / sonnet /
//!   haiku / fable resolved; answers `{"model": ..}`), `set_permission_mode` (field `mode`; later
//!   init events report it as `permissionMode`; answers `{"mode": ..}`), `end_session` (idle: exit;
//!   mid-turn: the turn is aborted, exit 1); other subtypes get an `unsupported_request` error.
//!   `set_permission_mode` takes acceptEdits, auto, bypassPermissions, default, dontAsk or plan
//!   ("manual" is answered as "default"); when the mode actually changes, the control_response
//!   is followed by `{"type":"system","subtype":"status","status":null,"permissionMode":<mode>,
//!   "uuid":..,"session_id":..}`. Any other mode: an `invalid_mode` error ("Cannot set
//!   permission mode: must be one of ..."); bypassPermissions in a session not started with
//!   `--dangerously-skip-permissions`, `--allow-dangerously-skip-permissions` or
//!   `--permission-mode bypassPermissions`: a `bypass_not_launched` error. Input lines of type
//!   `keep_alive` and `control_response` are ignored; any other non-user message ends the
//!   process like the CLI. User messages are queued and run in order. `/clear` prints
//!   conversation_reset, system background_tasks_changed, an init with a new session id and a
//!   `num_turns: 0` result with `local_command: "clear"` (and, like the real CLI's, without
//!   `api_error_status` and `terminal_reason` keys), and resets history, cost and API time. EOF:
//!   in-flight and queued turns finish, then exit 0 (1 if the last result was an error). A
//!   non-JSON line: stderr message, exit 1.
//!
//! # Flags
//! Every flag of `claude --help` is accepted; these matter: `--model`, `--fallback-model`,
//! `--permission-mode` (init's `permissionMode`, default "default"), `--effort`,
//! `--system-prompt`, `--append-system-prompt`, `--max-turns`, `--max-budget-usd`, `--json-schema`,
//! `--session-id`, `--resume`, `--continue`, `--fork-session`, `--no-session-persistence`, `--verbose`,
//! `--dangerously-skip-permissions` (init's `permissionMode` is then bypassPermissions, whatever
//! `--permission-mode` says), `--allow-dangerously-skip-permissions`. `--permission-mode manual`
//! means "default". As root, `--dangerously-skip-permissions`,
//! `--allow-dangerously-skip-permissions` and `--permission-mode bypassPermissions` are refused
//! unless `IS_SANDBOX` is set. Unknown flags: `error: unknown option '--x'`, exit 1. Like the
//! real CLI (commander.js), variadic flags (`--allowedTools`, `--tools`, `--add-dir`, ...) swallow
//! following positional arguments and `[value]` flags (`-d`, `-w`, ...) take the next non-flag one.
//!
//! # Prompt directives (anywhere in the prompt)
//! - `MOCK_STATUS:<code>`: an API error, as the real CLI reports the mock's error answer (with
//!   `CLAUDE_CODE_MAX_RETRIES=0`): a `<synthetic>` assistant event (`error`, `is_api_error_message`)
//!   and an `is_error` result with `api_error_status` / `api_error_type` and `terminal_reason`
//!   "api_error". Like the mock, a code below 1 means no error and others are clamped to
//!   200..=999; 529 switches to `--fallback-model` when one is given. The texts, with
//!   `<detail>` = `<code> mock <code> <type>`:
//!   - 2xx: "API Error: API returned an empty or malformed response (HTTP <code>) — ..." (no
//!     `api_error_status`, assistant `error` "unknown");
//!   - 401, 403: "Failed to authenticate. API Error: <detail>" (`authentication_failed`);
//!   - 404: "There's an issue with the selected model (<model>). It may not exist or you may not
//!     have access to it. Run --model to pick a different model." (the last sentence only when
//!     `CLAUDE_CODE_ENTRYPOINT` is unset, empty, `cli`, `sdk-cli` or
//!     `claude-code-github-action`; `model_not_found`);
//!   - 413: "Request too large (max 32MB). Accumulated images and attachments in the
//!     conversation pushed the request over the limit. Remove older images or compact the
//!     conversation." (`invalid_request`, `terminal_reason` "image_error");
//!   - 429: "API Error: Request rejected (429) · mock 429 rate_limit_error" (`rate_limit`);
//!   - 500 and up: "API Error: <detail>. This is a server-side issue, usually temporary — try
//!     again in a moment. If it persists, check your inference gateway (<host>)." with `<host>`
//!     the host[:port] of `ANTHROPIC_BASE_URL` (the default port omitted, the raw value if it is
//!     no URL); when `ANTHROPIC_BASE_URL` is unset or empty or its host is `api.anthropic.com`
//!     (or `_CLAUDE_CODE_ASSUME_FIRST_PARTY_BASE_URL` is set), the last sentence is "If it
//!     persists, check https://status.claude.com." (`server_error`);
//!   - any other: "API Error: <detail>" (`unknown`).
//! - `MOCK_SLEEP:<sec>`: wait before answering (interruptible by `interrupt` / `end_session`).
//! - `MOCK_TOOL:<cmd>`: a 2-call Bash tool loop (the command is not executed; tool result "ok").
//! - `MOCK_TEXT:<text>`: the exact reply text (rest of the line).
//! - `MOCK_USAGE:<in>,<out>[,<cache_read>,<cache_write>]`: exact token usage, for cost tests.
//! - `MOCK_JSON:<json>`: the structured output when `--json-schema` is given.
//! - `MOCK_CRASH:<rc>`: exit at once with `rc`, a stderr message and no output.
//! - `MOCK_COUNT`: reply `messages=<m> users=<u>`, the mock's count of the API request the real
//!   CLI would send: every message of the conversation (since spawn, `/clear`, or of the resumed
//!   session) plus the CLI's `role: "system"` environment message, and the user messages with
//!   text. A turn adds its prompt, per tool call an assistant tool_use and a user tool_result
//!   (not counted as a user), then the assistant answer (`--json-schema`: the StructuredOutput
//!   tool_use and its tool_result). A turn without an answer (API error, interrupt) adds only its
//!   prompt, and the next prompt is merged into that user message (likewise into a trailing
//!   tool_result after max turns). So the first turn answers `messages=2 users=1`, the second
//!   `messages=4 users=2`. Overrides `MOCK_TEXT`, is overridden by `MOCK_TOOL` and `--json-schema`
//!   and by the five fake-only reply directives below. (After a turn that ended on a tool call,
//!   the real mock answers "MOCK: tool said: .." instead; the fake does not model that.)
//! - `MOCK_FAIL_FIRST:<n>:<key>`: the first `n` turns carrying `key` (counted across processes in
//!   the state dir) fail like `MOCK_STATUS:500`.
//! - `MOCK_CRASH_MID:<rc>`: print the init event and one assistant event (text "partial"), then
//!   exit with `rc` (a crash mid-turn: a stderr message, no result).
//! - `MOCK_GARBAGE`: print the line `this is not json {` after the init event, then go on.
//! - `MOCK_HANG`: the turn never ends; `interrupt` is answered but has no effect; `end_session`
//!   is answered and the process exits 1 without a result.
//! - `MOCK_IGNORE_TERM`: SIGTERM, SIGINT and SIGHUP become SIG_IGN, then the turn hangs for good:
//!   `interrupt` and `end_session` are answered without effect. Only SIGKILL ends it.
//! - `MOCK_CHILD:<sec>`: spawn `sleep <sec>` as a plain child in our process group (stdio on
//!   /dev/null), log it, print an assistant event with the text `child <grandchild pid>`, then
//!   behave like `MOCK_SLEEP:<sec>` (interruptible).
//! - `MOCK_ECHO_STATS`: reply `len=<prompt bytes> fnv=<FNV-1a 64 of the prompt, 16 hex digits>`.
//! - `MOCK_HISTORY`: reply `history=<user prompts in this conversation, this one included>`.
//! - `MOCK_SHELL:<cmd>`: run `sh -c <cmd>` (rest of the line) in the working directory and
//!   reply `shell rc=<exit code> out=<its stdout, trimmed>`; unlike `MOCK_TOOL`, it really runs.
//! - `MOCK_ECHO_PROMPT`: reply `prompt=<<the whole user message>>`.
//! - `MOCK_SHOW_CONFIG`: reply `model=<model> permission_mode=<mode> effort=<..|none>
//!   append_system_prompt=<..|none> system_prompt=<..|none>`.
//! - `MOCK_STREAM:<n>:<ms>`: print `n` assistant events with text `chunk 1` .. `chunk <n>`
//!   (numbered from 1), waiting `<ms>` after each (interruptible), then answer as usual.
//!
//! The five reply directives above override `MOCK_TEXT` and combine (joined by a space, in
//! that order). Directives combine where it makes sense (e.g. `MOCK_USAGE` with `MOCK_SLEEP`).
//! Default reply: `MOCK: <first 40 chars of the prompt>`.
//!
//! # Environment
//! - `FAKE_CLAUDE_LOG=<file>`: append one JSON line per event, each one write(2) on an O_APPEND
//!   descriptor: `start` (pid, pgid, ppid, args without argv[0], env CLAUDECODE and
//!   CLAUDE_CODE_ENTRYPOINT or null), `turn_start` (pid, mono_ns = CLOCK_MONOTONIC ns,
//!   prompt_len in bytes), `turn_end` (pid, mono_ns, subtype; logged just before the result is
//!   printed; none for `/clear`), `child` (pid, child_pid) and `exit` (pid, code) on every exit
//!   that is not a signal death.
//! - `FAKE_CLAUDE_TURN_MS` (default 20): time an API call takes before its answer
//!   (interruptible; a tool loop makes two calls).
//! - `FAKE_CLAUDE_STARTUP_MS` (default 0): sleep before reading stdin (cold start).
//! - `FAKE_CLAUDE_STDIN_WAIT` (default 3): one-shot mode, seconds to wait for stdin data.
//! - `FAKE_CLAUDE_STATE`: session files (`fake_claude.py`'s format plus the `api_messages` that
//!   `MOCK_COUNT` counts) and MOCK_FAIL_FIRST counters (default `$HOME/.fake-claude`).
//! - `FAKE_CLAUDE_INPUT_TOKENS` (default 12414): input tokens of a call, plus 8 per history entry.
//! - `ANTHROPIC_API_KEY`: only reported as the init event's `apiKeySource`.
//! - `ANTHROPIC_BASE_URL`, `_CLAUDE_CODE_ASSUME_FIRST_PARTY_BASE_URL`, `CLAUDE_CODE_ENTRYPOINT`:
//!   only shape the `MOCK_STATUS` texts (see there); nothing is contacted.
//!
//! # Signals
//! SIGTERM: exit 143, SIGHUP: exit 129, both without a result. SIGINT: exit 0; with stream-json
//! output a "[Request interrupted by user]" user event is printed first.

// libc signal handling (sigaction, SIG_IGN, _exit), getpgid, clock_gettime, poll, flock and
// geteuid need `unsafe`; every use is a plain FFI call commented with its safety argument.
#![allow(unsafe_code)]

mod api_error;
mod cli;
mod control;
mod directives;
mod pricing;
mod runner;
mod session;
mod stream;
mod sys;

use std::io::{IsTerminal, Read};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::control::Shared;
use crate::pricing::resolve_model;
use crate::runner::Runner;
use crate::session::State;
use crate::sys::die;

fn log_start(args: &[String]) {
    let env = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
    sys::log(&json!({
        "event": "start", "pid": sys::pid(), "pgid": sys::pgid(), "ppid": sys::ppid(),
        "args": args,
        "env": {"CLAUDECODE": env("CLAUDECODE"),
                "CLAUDE_CODE_ENTRYPOINT": env("CLAUDE_CODE_ENTRYPOINT")},
    }));
}

fn env_f64(key: &str) -> Option<f64> {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// One-shot mode: stdin text (if any arrives within `FAKE_CLAUDE_STDIN_WAIT` seconds).
fn read_stdin_text() -> String {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return String::new();
    }
    let wait = env_f64("FAKE_CLAUDE_STDIN_WAIT").unwrap_or(3.0);
    if !sys::stdin_ready(Duration::from_secs_f64(wait.min(1e9))) {
        sys::eprint_line(&format!(
            "Warning: no stdin data received in {}s, proceeding without it. If piping from a \
             slow command, redirect stdin explicitly: < /dev/null to skip, or wait longer.",
            wait as u64
        ));
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = stdin.lock().read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn one_shot(mut runner: Runner) -> i32 {
    let mut prompt = runner.o.prompt.join(" ");
    let extra = read_stdin_text();
    if !extra.is_empty() {
        prompt = if prompt.is_empty() {
            extra
        } else {
            format!("{prompt}\n{extra}")
        };
    }
    if prompt.trim().is_empty() {
        if let Some((arg, flag)) = &runner.o.swallowed {
            sys::eprint_line(&format!(
                "\"{arg}\" was read as a value of {flag}, not as a prompt \u{b7} put a prompt \
                 before {flag} or after --"
            ));
        }
        die(
            "Error: Input must be provided either through stdin or as a prompt argument when using --print",
            1,
        );
    }
    let r = runner.run_turn(&prompt);
    runner.st.save();
    let is_error = r.get("is_error") == Some(&json!(true));
    let out = if let Some(mut events) = runner.collect.take() {
        events.push(r);
        Some(serde_json::Value::Array(events).to_string())
    } else if runner.o.output == "stream-json" {
        runner.emit(r);
        None
    } else if runner.o.output == "json" {
        Some(r.to_string())
    } else if let Some(text) = r.get("result").and_then(|v| v.as_str()) {
        Some(text.to_string())
    } else if r.get("subtype") == Some(&json!("error_max_turns")) {
        let max = runner
            .o
            .max_turns
            .map(|m| m.to_string())
            .unwrap_or_else(|| "None".into());
        Some(format!("Error: Reached max turns ({max})"))
    } else {
        let errors: Vec<&str> = r
            .get("errors")
            .and_then(|e| e.as_array())
            .map(|e| e.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        Some(format!("Error: {}", errors.join("; ")))
    };
    if let Some(mut line) = out {
        line.push('\n');
        if !sys::write_stdout(line.as_bytes()) {
            return 1;
        }
    }
    i32::from(is_error)
}

fn main() {
    sys::seed_rng();
    sys::log_init();
    sys::install_signal_handlers();
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    log_start(&args);

    let o = cli::parse(&args);
    if !o.print && std::io::stdout().is_terminal() {
        die("fake-claude supports headless (-p) use only", 1);
    }
    if o.output == "stream-json" && !o.verbose {
        die(
            "Error: When using --print, --output-format=stream-json requires --verbose",
            1,
        );
    }
    if o.input == "stream-json" && o.output != "stream-json" {
        die(
            "Error: --input-format=stream-json requires output-format=stream-json.",
            1,
        );
    }
    let mut st = State::new(o.persist);
    let opened = st.open_session(&o);
    let sh = Arc::new(Shared::new(
        resolve_model(o.model.as_deref()),
        o.initial_permission_mode(),
        o.bypass_allowed(),
    ));
    sh.set_session_id(&st.session_id);
    if o.output == "stream-json" {
        let sh = Arc::clone(&sh);
        sys::on_sigint(move || {
            sys::emit_line(&runner::interrupted_event(&sh.session_id()));
        });
    }
    if let Some(ms) = env_f64("FAKE_CLAUDE_STARTUP_MS").filter(|ms| *ms > 0.0) {
        std::thread::sleep(Duration::from_secs_f64(ms.min(1e12) / 1000.0));
    }
    let stream_in = o.input == "stream-json";
    let mut runner = Runner::new(sh, st, o);

    if let Err(err) = opened {
        if runner.stream {
            let sid = runner.o.resume.clone().unwrap_or_default();
            let r = runner.resume_failed_result(&sid, &err);
            runner.emit(r);
        }
        die(&err, 1);
    }
    let rc = if stream_in {
        stream::run(runner)
    } else {
        one_shot(runner)
    };
    sys::exit(rc)
}

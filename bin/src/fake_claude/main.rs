#![doc = include_str!("help.md")]
// libc signal handling (sigaction, SIG_IGN, _exit), getpgid, clock_gettime, poll, flock and
// geteuid need `unsafe`; every use is a plain FFI call commented with its safety argument.
#![allow(unsafe_code)]

mod api_error;
mod approvals;
mod cli;
mod control;
mod directives;
mod faults;
mod permissions;
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
        "slot": sys::slot(),
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
    if let Some(ms) = faults::claim("start")
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|ms| *ms > 0.0)
    {
        std::thread::sleep(Duration::from_secs_f64(ms.min(1e12) / 1000.0));
    }
    let stream_in = o.input == "stream-json";
    if !stream_in {
        // One-shot: stdin is read to its end before the turn, so no question can be answered.
        sh.close();
    }
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

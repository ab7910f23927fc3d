//! `mock-anthropic`: run the offline Anthropic Messages API mock as a standalone server.
//!
//! ```text
//! mock-anthropic [--port N] [--port-file FILE] [--fail-status CODE [--fail-count N]
//!                [--fail-model SUBSTR]] [--delay SECONDS] [--retry-after VALUE] [--log-bodies]
//!                [--max-in-flight N] [--rpm N] [--tpm N] [--rate-window SECONDS]
//!                [--limit-retry-after SECONDS] [--overloaded-for SECONDS]
//!                [--unified-claim five_hour|seven_day] [--unified-5h-utilization U]
//!                [--unified-7d-utilization U] [--unified-rejected-until UNIX]
//!                [--unified-rejected-for SECONDS] [--unified-warn-at U]
//! ```
//!
//! The limit flags set the library's `Limits` (see `mock_anthropic::Limits`); any
//! `--unified-*` flag turns the subscription headers on.
//!
//! Prints the listening URL (`http://127.0.0.1:<port>`) on stdout once it accepts
//! connections, writes the port number to `--port-file` (atomically) when given, and serves
//! until it is killed. See the library documentation for endpoints and prompt directives.

use std::io::Write;
use std::process::ExitCode;

use serde_json::{Map, Value, json};

const USAGE: &str = "usage: mock-anthropic [--port N] [--port-file FILE] [--fail-status CODE] \
[--fail-count N] [--fail-model SUBSTR] [--delay SECONDS] [--retry-after VALUE] [--log-bodies] \
[--max-in-flight N] [--rpm N] [--tpm N] [--rate-window SECONDS] [--limit-retry-after SECONDS] \
[--overloaded-for SECONDS] [--unified-claim five_hour|seven_day] [--unified-5h-utilization U] \
[--unified-7d-utilization U] [--unified-rejected-until UNIX] [--unified-rejected-for SECONDS] \
[--unified-warn-at U]";

#[derive(Debug, Default)]
struct Args {
    port: u16,
    port_file: Option<String>,
    config: Map<String, Value>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut fail_count: i64 = -1;
    let mut fail_status: i64 = 0;
    let mut unified = Map::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if name == "-h" || name == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if name == "--log-bodies" {
            args.config.insert("log_bodies".into(), json!(true));
            continue;
        }
        const WITH_VALUE: [&str; 19] = [
            "--port",
            "--port-file",
            "--fail-status",
            "--fail-count",
            "--fail-model",
            "--delay",
            "--retry-after",
            "--max-in-flight",
            "--rpm",
            "--tpm",
            "--rate-window",
            "--limit-retry-after",
            "--overloaded-for",
            "--unified-claim",
            "--unified-5h-utilization",
            "--unified-7d-utilization",
            "--unified-rejected-until",
            "--unified-rejected-for",
            "--unified-warn-at",
        ];
        if !WITH_VALUE.contains(&name.as_str()) {
            return Err(format!("unknown option '{name}'"));
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{name} needs a value"))?,
        };
        let bad = |what: &str| format!("{name}: invalid {what} '{value}'");
        match name.as_str() {
            "--port" => args.port = value.parse().map_err(|_| bad("port"))?,
            "--port-file" => args.port_file = Some(value),
            "--fail-status" => fail_status = value.parse().map_err(|_| bad("status"))?,
            "--fail-count" => fail_count = value.parse().map_err(|_| bad("count"))?,
            "--fail-model" => {
                args.config.insert("fail_model".into(), json!(value));
            }
            "--delay" => {
                let d: f64 = value.parse().map_err(|_| bad("number of seconds"))?;
                args.config.insert("delay".into(), json!(d));
            }
            "--retry-after" => {
                args.config.insert("retry_after".into(), json!(value));
            }
            "--max-in-flight" | "--rpm" | "--tpm" | "--limit-retry-after" => {
                let n: u64 = value.parse().map_err(|_| bad("count"))?;
                let key = match name.as_str() {
                    "--max-in-flight" => "max_in_flight",
                    "--rpm" => "rpm",
                    "--tpm" => "tpm",
                    _ => "retry_after_limits",
                };
                args.config.insert(key.into(), json!(n));
            }
            "--rate-window" | "--overloaded-for" => {
                let d: f64 = value.parse().map_err(|_| bad("number of seconds"))?;
                let key = if name == "--rate-window" {
                    "window"
                } else {
                    "overloaded_for"
                };
                args.config.insert(key.into(), json!(d));
            }
            "--unified-claim" => {
                if value != "five_hour" && value != "seven_day" {
                    return Err(bad("claim (five_hour or seven_day)"));
                }
                unified.insert("claim".into(), json!(value));
            }
            "--unified-5h-utilization"
            | "--unified-7d-utilization"
            | "--unified-warn-at"
            | "--unified-rejected-for"
            | "--unified-rejected-until" => {
                let v: f64 = value.parse().map_err(|_| bad("number"))?;
                let key = match name.as_str() {
                    "--unified-5h-utilization" => "five_hour_utilization",
                    "--unified-7d-utilization" => "seven_day_utilization",
                    "--unified-warn-at" => "warn_at",
                    "--unified-rejected-for" => "rejected_for",
                    _ => "rejected_until",
                };
                let v = if key == "rejected_until" {
                    json!(v as u64)
                } else {
                    json!(v)
                };
                unified.insert(key.into(), v);
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    if fail_status != 0 {
        args.config.insert("fail_status".into(), json!(fail_status));
        args.config.insert("fail_count".into(), json!(fail_count));
    }
    if !unified.is_empty() {
        args.config.insert("unified".into(), Value::Object(unified));
    }
    Ok(args)
}

fn write_port_file(path: &str, port: u16) -> std::io::Result<()> {
    let tmp = format!("{path}.tmp{}", std::process::id());
    std::fs::write(&tmp, port.to_string())?;
    std::fs::rename(&tmp, path)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mock-anthropic: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let server = match mock_anthropic::MockServer::bind(args.port) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "mock-anthropic: cannot listen on 127.0.0.1:{}: {e}",
                args.port
            );
            return ExitCode::from(1);
        }
    };
    server.configure(&Value::Object(args.config));
    if let Some(path) = &args.port_file
        && let Err(e) = write_port_file(path, server.port())
    {
        eprintln!("mock-anthropic: cannot write port file {path}: {e}");
        return ExitCode::from(1);
    }
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{}", server.url());
    let _ = stdout.flush();
    loop {
        std::thread::park();
    }
}

//! `fake-claude` as a user's own test drives it: directly, with the real CLI's flags, the way
//! its `--help` and the README document it.

use std::process::Stdio;
use std::time::Duration;

use claude_pool_tests::{Scratch, fake_claude_bin, within};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

fn user(text: &str) -> String {
    format!(
        "{}\n",
        json!({ "type": "user", "message": { "role": "user", "content": text } })
    )
}

#[tokio::test]
async fn persistent_mode_answers_each_message_with_the_cost_the_directives_set() {
    let scratch = Scratch::new("fake-cli");
    let mut child = Command::new(fake_claude_bin())
        .args([
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
            "--model",
            "sonnet",
        ])
        .env("HOME", scratch.path())
        .env("FAKE_CLAUDE_TURN_MS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn fake-claude");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    stdin
        .write_all(user("MOCK_USAGE:1000,50 MOCK_TEXT: hi").as_bytes())
        .await
        .unwrap();
    stdin
        .write_all(user("MOCK_USAGE:2000,100 MOCK_TEXT: again").as_bytes())
        .await
        .unwrap();
    drop(stdin); // EOF: both turns finish, then it exits 0
    let mut results = Vec::new();
    within(Duration::from_secs(20), "both results", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: Value = serde_json::from_str(&line).expect("every stdout line is JSON");
            if v["type"] == "result" {
                results.push(v);
            }
        }
    })
    .await;
    let status = within(Duration::from_secs(10), "fake-claude's exit", child.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0]["result"], "hi");
    assert_eq!(results[1]["result"], "again");
    assert_eq!(results[0]["usage"]["input_tokens"], 1000);
    assert_eq!(results[1]["usage"]["output_tokens"], 100);
    // Sonnet 5.5 at $2 / $10 per million tokens; the CLI's total is cumulative per process.
    let first = 1000.0 * 2.0 / 1e6 + 50.0 * 10.0 / 1e6;
    let second = first + 2000.0 * 2.0 / 1e6 + 100.0 * 10.0 / 1e6;
    for (r, want) in results.iter().zip([first, second]) {
        let got = r["total_cost_usd"].as_f64().expect("total_cost_usd");
        assert!(
            (got - want).abs() < 1e-12,
            "cost {got}, expected {want}: {r}"
        );
    }
}

#[tokio::test]
async fn failure_directives_crash_and_fail_as_documented() {
    let scratch = Scratch::new("fake-cli");
    let run = |prompt: &str| {
        Command::new(fake_claude_bin())
            .args(["-p", prompt, "--output-format", "json"])
            .env("HOME", scratch.path())
            .env("FAKE_CLAUDE_TURN_MS", "1")
            .stdin(Stdio::null())
            .output()
    };
    let crash = within(
        Duration::from_secs(20),
        "MOCK_CRASH's exit",
        run("MOCK_CRASH:3"),
    )
    .await
    .unwrap();
    assert_eq!(crash.status.code(), Some(3), "{crash:?}");
    assert!(crash.stdout.is_empty(), "a crash prints nothing on stdout");
    let api = within(
        Duration::from_secs(20),
        "MOCK_STATUS's result",
        run("MOCK_STATUS:429"),
    )
    .await
    .unwrap();
    let v: Value = serde_json::from_slice(&api.stdout).expect("a JSON result");
    assert_eq!(v["is_error"], true, "{v}");
    assert_eq!(v["api_error_status"], 429, "{v}");
}

#[tokio::test]
async fn its_help_documents_every_directive_the_readme_names() {
    let out = within(
        Duration::from_secs(20),
        "fake-claude --help",
        Command::new(fake_claude_bin()).arg("--help").output(),
    )
    .await
    .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let readme =
        std::fs::read_to_string(claude_pool_tests::workspace_root().join("README.md")).unwrap();
    let section = readme
        .split("## Test your own code offline")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README's fake-claude section");
    let named: Vec<&str> = section
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("MOCK_") || w.starts_with("FAKE_CLAUDE_"))
        .filter(|w| *w != "FAKE_CLAUDE_")
        .collect();
    assert!(named.len() >= 12, "{named:?}");
    for name in named {
        assert!(help.contains(name), "--help does not document {name}");
    }
}

/// A persistent `fake-claude --permission-prompt-tool stdio` in `dir`, with its stdin and a
/// reader of its stdout lines as JSON.
struct Asking {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Asking {
    fn spawn(scratch: &Scratch, dir: &std::path::Path) -> Asking {
        let mut child = Command::new(fake_claude_bin())
            .args([
                "-p",
                "--input-format",
                "stream-json",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-prompt-tool",
                "stdio",
                "--permission-mode",
                "default",
            ])
            .current_dir(dir)
            .env("HOME", scratch.path())
            .env("FAKE_CLAUDE_TURN_MS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn fake-claude");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Asking {
            child,
            stdin,
            lines,
        }
    }

    async fn send(&mut self, v: &Value) {
        let line = format!("{v}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
    }

    /// The next stdout line whose `type` is `kind`.
    async fn next(&mut self, kind: &str) -> Value {
        within(Duration::from_secs(20), &format!("a {kind} line"), async {
            loop {
                let line = self.lines.next_line().await.unwrap();
                let line = line.unwrap_or_else(|| panic!("stdout ended before a {kind} line"));
                let v: Value = serde_json::from_str(&line).expect("every stdout line is JSON");
                if v["type"] == kind {
                    return v;
                }
            }
        })
        .await
    }

    async fn answer(&mut self, request: &Value, response: Value) {
        let id = &request["request_id"];
        self.send(&json!({"type": "control_response",
                          "response": {"subtype": "success", "request_id": id,
                                       "response": response}}))
            .await;
    }
}

#[tokio::test]
async fn permission_questions_and_elicitations_wait_for_the_hosts_answer() {
    let scratch = Scratch::new("fake-cli-ask");
    let dir = scratch.path().join("work");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let mut fake = Asking::spawn(&scratch, &dir);

    // Allowed: the command really runs.
    fake.send(&json!({"type": "user", "message": {"role": "user",
                                                  "content": "MOCK_TOOL:touch approved"}}))
        .await;
    let tool_use = fake.next("assistant").await;
    let ask = fake.next("control_request").await;
    let q = &ask["request"];
    assert_eq!(q["subtype"], "can_use_tool", "{ask}");
    assert_eq!(q["tool_name"], "Bash", "{ask}");
    assert_eq!(q["input"]["command"], "touch approved", "{ask}");
    assert_eq!(
        q["tool_use_id"], tool_use["message"]["content"][0]["id"],
        "{ask}"
    );
    let blocked = dir.join("approved");
    assert_eq!(q["blocked_path"], blocked.to_str().unwrap(), "{ask}");
    assert!(!blocked.exists(), "nothing runs before the answer");
    fake.answer(
        &ask,
        json!({"behavior": "allow", "updatedInput": q["input"]}),
    )
    .await;
    let r = fake.next("result").await;
    assert_eq!(
        r["result"], "MOCK: tool said: (Bash completed with no output)",
        "{r}"
    );
    assert_eq!(r["permission_denials"], json!([]), "{r}");
    assert!(blocked.exists(), "an allowed command runs");

    // Denied: the message goes to the model, the call to permission_denials.
    fake.send(&json!({"type": "user", "message": {"role": "user",
                                                  "content": "MOCK_TOOL:touch refused"}}))
        .await;
    let ask = fake.next("control_request").await;
    fake.answer(
        &ask,
        json!({"behavior": "deny", "message": "no touching here"}),
    )
    .await;
    let r = fake.next("result").await;
    assert_eq!(r["is_error"], false, "{r}");
    assert_eq!(r["result"], "MOCK: tool said: no touching here", "{r}");
    assert_eq!(
        r["permission_denials"][0]["tool_input"]["command"], "touch refused",
        "{r}"
    );
    assert!(
        !dir.join("refused").exists(),
        "a denied command does not run"
    );

    // Read-only commands are not asked about.
    fake.send(&json!({"type": "user", "message": {"role": "user",
                                                  "content": "MOCK_TOOL:echo hi"}}))
        .await;
    let r = fake.next("result").await;
    assert_eq!(r["result"], "MOCK: tool said: hi", "{r}");

    // An elicitation from the CLI's MCP server "mock".
    let schema =
        r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}}}"#;
    fake.send(&json!({"type": "user", "message": {"role": "user",
                                                  "content": format!("MOCK_ELICIT:{schema}")}}))
        .await;
    let ask = fake.next("control_request").await;
    assert_eq!(ask["request"]["subtype"], "elicitation", "{ask}");
    assert_eq!(ask["request"]["mcp_server_name"], "mock", "{ask}");
    assert_eq!(
        ask["request"]["property_order"],
        json!(["name", "age"]),
        "{ask}"
    );
    fake.answer(&ask, json!({"action": "accept", "content": {"name": "x"}}))
        .await;
    let r = fake.next("result").await;
    assert_eq!(
        r["result"], r#"MOCK: elicitation accept {"name":"x"}"#,
        "{r}"
    );

    drop(fake.stdin);
    let status = within(
        Duration::from_secs(10),
        "fake-claude's exit",
        fake.child.wait(),
    )
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn an_interrupt_withdraws_an_open_permission_question() {
    let scratch = Scratch::new("fake-cli-ask");
    let mut fake = Asking::spawn(&scratch, scratch.path());
    fake.send(&json!({"type": "user", "message": {"role": "user",
                                                  "content": "MOCK_TOOL:touch never"}}))
        .await;
    let ask = fake.next("control_request").await;
    fake.send(&json!({"type": "control_request", "request_id": "int-1",
                      "request": {"subtype": "interrupt"}}))
        .await;
    let cancel = fake.next("control_cancel_request").await;
    assert_eq!(cancel["request_id"], ask["request_id"], "{cancel}");
    let r = fake.next("result").await;
    assert_eq!(r["subtype"], "error_during_execution", "{r}");
    assert_eq!(r["terminal_reason"], "aborted_tools", "{r}");
    assert_eq!(
        r["permission_denials"][0]["tool_input"]["command"],
        "touch never"
    );
    // A late answer is dropped; the process takes the next prompt.
    fake.answer(&ask, json!({"behavior": "allow"})).await;
    fake.send(&json!({"type": "user", "message": {"role": "user",
                                                  "content": "MOCK_TEXT: still here"}}))
        .await;
    let r = fake.next("result").await;
    assert_eq!(r["result"], "still here", "{r}");
    assert!(!scratch.path().join("never").exists());
}

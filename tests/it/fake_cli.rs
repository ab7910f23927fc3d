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

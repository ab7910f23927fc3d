//! Registered the way Claude Code users register servers: the pinned CLI's own
//! `claude mcp add` (stdio, and HTTP with the bearer header), then `claude mcp get`, which
//! connects to the server and says so. An isolated HOME holds the CLI's config. With
//! `CI=true` a missing CLI fails these tests instead of skipping them.

use std::path::Path;
use std::time::Duration;

use claude_pool_tests::server::{Server, ServerOptions, Transport};
use claude_pool_tests::{Scratch, fake_claude_bin, real_claude_bin, server_bin, within};

/// Runs the CLI's `mcp` subcommand with `args` in the isolated `home`; its stdout.
async fn mcp(claude: &Path, home: &Path, args: &[&str]) -> String {
    let out = within(
        Duration::from_secs(90),
        &format!("claude mcp {}", args.join(" ")),
        tokio::process::Command::new(claude)
            .arg("mcp")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("ANTHROPIC_API_KEY", "sk-ant-api03-registration-test")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run the CLI");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "claude mcp {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test]
async fn claude_mcp_add_registers_the_stdio_server_and_claude_mcp_get_connects_to_it() {
    let Some(claude) = real_claude_bin() else {
        return;
    };
    let scratch = Scratch::new("registration");
    let home = scratch.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let server = server_bin();
    let fake = fake_claude_bin();
    let added = mcp(
        &claude,
        &home,
        &[
            "add",
            "claude-pool",
            "--scope",
            "user",
            "--",
            server.to_str().unwrap(),
            "--no-db",
            "--slots",
            "1",
            "--claude-bin",
            fake.to_str().unwrap(),
        ],
    )
    .await;
    assert!(added.contains("claude-pool"), "{added}");
    let got = mcp(&claude, &home, &["get", "claude-pool"]).await;
    assert!(got.contains("Connected"), "not connected: {got}");
    assert!(got.contains("stdio"), "{got}");
}

#[tokio::test]
async fn claude_mcp_add_registers_the_http_daemon_with_its_token_and_refuses_it_without() {
    let Some(claude) = real_claude_bin() else {
        return;
    };
    let daemon = Server::start(ServerOptions::fake(1).transport(Transport::Http)).await;
    let url = daemon.url.clone().expect("the daemon's URL");
    let token = daemon.token.clone().expect("the daemon's token");
    let scratch = Scratch::new("registration-http");
    let home = scratch.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let header = format!("Authorization: Bearer {token}");
    mcp(
        &claude,
        &home,
        &[
            "add",
            "--transport",
            "http",
            "claude-pool",
            &url,
            "--header",
            &header,
            "--scope",
            "user",
        ],
    )
    .await;
    let got = mcp(&claude, &home, &["get", "claude-pool"]).await;
    assert!(got.contains("Connected"), "not connected: {got}");
    // Without the token the daemon lets nothing through.
    mcp(
        &claude,
        &home,
        &[
            "add",
            "--transport",
            "http",
            "no-token",
            &url,
            "--scope",
            "user",
        ],
    )
    .await;
    let refused = mcp(&claude, &home, &["get", "no-token"]).await;
    assert!(
        refused.contains("Failed to connect") && !refused.contains("✔ Connected"),
        "connected without a token: {refused}"
    );
    daemon.close().await;
}

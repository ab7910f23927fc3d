//! End to end with the pinned real Claude CLI (2.1.329) against the project's own mock of
//! the Messages API. With `CI=true` a missing CLI fails these tests instead of skipping them.

use std::time::Duration;

use claude_pool_tests::mock_anthropic::{MockServer, hermetic_cli_env};
use claude_pool_tests::procs::{self, assert_gone, assert_group_gone};
use claude_pool_tests::server::{Server, ServerOptions, Transport, content, finish_call};
use claude_pool_tests::{Scratch, real_claude_bin};
use serde_json::json;

const GONE: Duration = Duration::from_secs(15);

pub(crate) struct RealPool {
    pub(crate) server: Server,
    pub(crate) mock: MockServer,
    pub(crate) _scratch: Scratch,
}

impl RealPool {
    /// Starts `pool_run` on the only slot and waits until its CLI is mid-request at the
    /// mock; returns the pending call, the task id and the slot's process.
    async fn start_run_in_flight(
        &self,
        prompt: &str,
    ) -> (rmcp::service::RequestHandle<rmcp::RoleClient>, String, u32) {
        let (call, _, id) = self.server.start_run(prompt).await;
        assert!(
            self.mock
                .wait_for_message_requests(1, Duration::from_secs(30))
                .await,
            "the CLI never called the API"
        );
        let pid = self.server.status().await["slots"][0]["pid"]
            .as_u64()
            .unwrap() as u32;
        (call, id, pid)
    }
}

pub(crate) async fn real_pool(slots: usize, args: &[&str]) -> Option<RealPool> {
    real_pool_over(Transport::from_env(), slots, args).await
}

/// A pool of the real CLI served over `transport`.
pub(crate) async fn real_pool_over(
    transport: Transport,
    slots: usize,
    args: &[&str],
) -> Option<RealPool> {
    let claude = real_claude_bin()?;
    let mock = MockServer::start().expect("mock API");
    let scratch = Scratch::new("real-cli");
    let mut opts = ServerOptions {
        claude_bin: claude,
        slots,
        args: Vec::new(),
        env: Vec::new(),
        state: None,
        transport,
        tasks_extension: false,
        elicitation: false,
        umask: None,
    }
    .args(args);
    for (k, v) in hermetic_cli_env(&mock.url(), scratch.path()) {
        opts = opts.env(&k, &v);
    }
    let server = Server::start(opts).await;
    server.wait_ready().await;
    Some(RealPool {
        server,
        mock,
        _scratch: scratch,
    })
}

#[tokio::test]
async fn real_cli_runs_tasks_on_warm_slots_with_their_own_cost() {
    let Some(p) = real_pool(2, &["--model", "sonnet"]).await else {
        return;
    };
    let s = p.server.status().await;
    assert_eq!(s["slots"].as_array().unwrap().len(), 2);
    // sonnet at $2/$10 per million: 1000 in + 500 out = $0.007, for each task on its own.
    for round in 0..3 {
        let r = p
            .server
            .call_ok(
                "pool_run",
                json!({ "prompt": "hello there MOCK_USAGE:1000,500" }),
            )
            .await;
        assert_eq!(r["status"], "completed");
        assert_eq!(r["output"], "MOCK: hello there MOCK_USAGE:1000,500");
        let spend = r["spend_usd"].as_f64().unwrap();
        assert!((spend - 0.007).abs() < 1e-9, "round {round}: spend {spend}");
        assert_eq!(r["tokens_used"]["input"], 1000);
        assert_eq!(r["tokens_used"]["output"], 500);
        assert_eq!(r["model"], "claude-sonnet-5-5");
    }
    let total = p.server.status().await["spend_usd"].as_f64().unwrap();
    assert!((total - 0.021).abs() < 1e-9, "pool spend {total}");
    assert!(p.mock.message_requests() >= 3);
    p.server.close().await;
}

#[tokio::test]
async fn real_cli_gives_every_task_a_fresh_conversation() {
    let Some(p) = real_pool(1, &[]).await else {
        return;
    };
    for _ in 0..3 {
        let r = p
            .server
            .call_ok("pool_run", json!({ "prompt": "MOCK_COUNT" }))
            .await;
        // A fresh conversation's request: the user message plus the CLI's environment message.
        assert_eq!(
            r["output"], "messages=2 users=1",
            "a task saw an earlier task's conversation"
        );
    }
    p.server.close().await;
}

#[tokio::test]
async fn real_cli_submit_then_result() {
    let Some(p) = real_pool(1, &[]).await else {
        return;
    };
    let sub = p
        .server
        .call_ok("pool_submit", json!({ "prompt": "background job" }))
        .await;
    let r = p
        .server
        .call_ok(
            "pool_result",
            json!({ "task_id": sub["task_id"], "wait": "60s" }),
        )
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["output"], "MOCK: background job");
    p.server.close().await;
}

#[tokio::test]
async fn real_cli_cancel_kills_the_process() {
    let Some(p) = real_pool(1, &[]).await else {
        return;
    };
    let (call, id, pid) = p.start_run_in_flight("MOCK_SLEEP:60 slow answer").await;
    let c = p
        .server
        .call_ok("pool_cancel", json!({ "task_id": id }))
        .await;
    assert_eq!(c["status"], "cancelled");
    assert!(
        !procs::exists(pid),
        "the cancelled task's claude process {pid} is still there"
    );
    assert_group_gone(pid, GONE, "the cancelled task's process group").await;
    let r = finish_call(call, "the cancelled run").await;
    assert_eq!(content(&r)["status"], "cancelled");
    let next = p
        .server
        .call_ok("pool_run", json!({ "prompt": "after cancel" }))
        .await;
    assert_eq!(next["output"], "MOCK: after cancel");
    p.server.close().await;
}

#[tokio::test]
async fn real_cli_killed_mid_task_fails_the_task_and_the_slot_recovers() {
    let Some(p) = real_pool(1, &[]).await else {
        return;
    };
    let (call, _, pid) = p.start_run_in_flight("MOCK_SLEEP:60 doomed").await;
    procs::kill(pid, libc::SIGKILL);
    let r = finish_call(call, "the killed task").await;
    let c = content(&r);
    assert_eq!(c["status"], "failed");
    assert!(c["error"].as_str().unwrap().contains("SIGKILL"), "{c}");
    assert_gone(pid, GONE, "the killed claude").await;
    let s = p.server.wait_ready().await;
    assert_eq!(s["slots"][0]["restarts"], 1);
    let next = p
        .server
        .call_ok("pool_run", json!({ "prompt": "recovered" }))
        .await;
    assert_eq!(next["output"], "MOCK: recovered");
    let pids = Server::slot_pids(&p.server.status().await);
    p.server.close().await;
    for pid in pids {
        assert_gone(pid, GONE, "a slot after shutdown").await;
    }
}

/// With the real CLI, a mode above the server's ceiling never reaches a process: the call
/// is refused naming the ceiling, no API request is made, no process is started or
/// switched, and the slot then runs a task allowed under the ceiling as usual.
#[tokio::test]
async fn real_cli_a_mode_above_the_ceiling_is_refused_before_any_process_sees_it() {
    let Some(p) = real_pool(1, &[]).await else {
        return;
    };
    let before = p.server.status().await;
    let pids = Server::slot_pids(&before);
    let requests = p.mock.message_requests();
    let started = procs::children(p.server.pid).len();
    for mode in ["bypassPermissions", "auto"] {
        p.server
            .expect_argument_error(
                "pool_run",
                json!({ "prompt": "MOCK_TEXT: never", "permission_mode": mode }),
                "acceptEdits",
            )
            .await;
    }
    assert_eq!(
        p.mock.message_requests(),
        requests,
        "an API request was made"
    );
    let after = p.server.status().await;
    assert_eq!(Server::slot_pids(&after), pids, "a slot's process changed");
    assert_eq!(after["tasks"]["total"], 0, "something was queued: {after}");
    assert_eq!(
        procs::children(p.server.pid).len(),
        started,
        "a process was started"
    );
    let r = p
        .server
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_TEXT: allowed", "permission_mode": "acceptEdits" }),
        )
        .await;
    assert_eq!(r["output"], "allowed");
    p.server.close().await;
}

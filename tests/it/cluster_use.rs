//! Slots on other machines in use (feature `cluster`): scaling onto hosts, their slots in
//! `/metrics`, a remote worker's permission question, a task that may run again, and a Rust
//! program on either side.

use std::time::Duration;

use claude_pool_tests::server::{content, finish_call};
use claude_pool_tests::{Scratch, fake_claude_bin, within};
use serde_json::json;

use super::cluster::{Host, all_idle, cookie, free_port, on_host, scheduler, slots_until};

#[tokio::test]
async fn metrics_count_each_host_s_slots_by_status() {
    use claude_pool_tests::http::HttpServer;
    let scratch = Scratch::new("cluster-metrics");
    let port = free_port();
    let secret = cookie(scratch.path(), "metrics-cookie");
    let listen = format!("127.0.0.1:{port}");
    let server = HttpServer::start(
        1,
        &[
            "--listen-hosts",
            &listen,
            "--cluster-cookie-file",
            secret.to_str().expect("utf-8"),
        ],
    )
    .await;
    let _h1 = Host::start(scratch.path(), "h1", port, 2, &secret, &[]).await;
    server
        .log_until("both of h1's slots joined", |log| {
            log.matches("a host's slot joined the pool").count() == 2
        })
        .await;
    let metrics = server.request("GET", "/metrics", &[], "").await;
    assert_eq!(metrics.status, 200);
    let h1: u64 = metrics
        .body
        .lines()
        .filter(|l| l.starts_with("claude_pool_host_slots{host=\"h1\","))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(h1, 2, "{}", metrics.body);
    server.stop().await;
}

#[tokio::test]
async fn a_remote_worker_s_permission_question_waits_at_the_scheduler_s_desk_and_its_answer_reaches_it()
 {
    let scratch = Scratch::new("cluster-approvals");
    let port = free_port();
    let secret = cookie(scratch.path(), "approvals-cookie");
    let server = scheduler(port, &secret, &["--permission-mode", "default"]).await;
    let _h1 = Host::start(
        scratch.path(),
        "h1",
        port,
        1,
        &secret,
        &["--permission-mode", "default"],
    )
    .await;
    slots_until(&server, "h1's slot idle", |s| all_idle(s, 2)).await;
    // The local slot is busy, so the asking task goes to h1.
    let busy = server
        .call_ok(
            "pool_submit",
            json!({ "prompt": "MOCK_SLEEP:4 MOCK_TEXT: busy" }),
        )
        .await;
    slots_until(&server, "the local slot busy", |s| {
        s.iter()
            .any(|x| x["id"] == "slot-0" && x["status"] == "busy")
    })
    .await;
    let file = scratch.join("remote-approved");
    let call = server
        .start_call(
            "pool_run",
            json!({ "prompt": format!("MOCK_TOOL:touch {}", file.display()) }),
        )
        .await;
    let token = call.progress_token.clone();
    let started = server
        .progress_until(&token, "the task to start", |m| m.contains("started on"))
        .await;
    assert!(started.contains("h1/slot-0"), "{started}");
    let line = server
        .progress_until(&token, "the remote permission question", |m| {
            m.contains("waiting for approval")
        })
        .await;
    let apr = line[line.rfind("(apr-").expect("an approval id") + 1..]
        .trim_end_matches(')')
        .to_owned();
    let listed = server.call_ok("pool_approvals", json!({})).await;
    assert_eq!(listed["pending"][0]["request_id"], apr.as_str(), "{listed}");
    assert_eq!(listed["pending"][0]["slot_id"], "h1/slot-0", "{listed}");
    assert!(!file.exists(), "nothing runs before the answer");
    let answer = server
        .call_ok(
            "pool_approve",
            json!({ "request_id": apr, "decision": "allow" }),
        )
        .await;
    assert_eq!(answer["outcome"], "allow", "{answer}");
    let done = content(&finish_call(call, "the approved remote task").await);
    assert_eq!(done["status"], "completed", "{done}");
    assert!(file.exists(), "the allowed command ran on the host");
    assert_eq!(done["approvals"][0]["outcome"], "allow", "{done}");
    assert_eq!(done["approvals"][0]["by"], "tool:pool_approve", "{done}");
    let b = server
        .wait_task(busy["task_id"].as_str().expect("id"))
        .await;
    assert_eq!(b["status"], "completed");
    server.close().await;
}

#[tokio::test]
async fn scaling_asks_a_named_host_or_the_least_loaded_one_and_never_reuses_an_id() {
    let scratch = Scratch::new("cluster-scale");
    let port = free_port();
    let secret = cookie(scratch.path(), "scale-cookie");
    let server = scheduler(port, &secret, &[]).await;
    let _h1 = Host::start(scratch.path(), "h1", port, 1, &secret, &[]).await;
    let _h2 = Host::start(scratch.path(), "h2", port, 2, &secret, &[]).await;
    slots_until(&server, "four slots idle", |s| all_idle(s, 4)).await;

    let up = server
        .call_ok("pool_scale_up", json!({ "count": 2, "host": "h1" }))
        .await;
    assert_eq!(up["slots"], json!(["h1/slot-1", "h1/slot-2"]), "{up}");
    assert_eq!(up["new_slot_count"], 3, "{up}");
    slots_until(&server, "h1's three slots idle", |s| {
        all_idle(s, 6) && on_host(s, "h1").len() == 3
    })
    .await;
    let down = server
        .call_ok("pool_scale_down", json!({ "count": 2, "host": "h1" }))
        .await;
    assert_eq!(
        down["slots"],
        json!(["h1/slot-2", "h1/slot-1"]),
        "newest idle first: {down}"
    );
    assert_eq!(down["new_slot_count"], 1, "{down}");
    let slots = server.status().await["slots"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let h1: Vec<&str> = on_host(&slots, "h1")
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(h1, ["h1/slot-0"], "{slots:?}");

    // The least loaded host: no tasks anywhere, so the one with fewer slots (h1, 1 < 2);
    // an added slot never takes a removed one's id.
    let any = server
        .call_ok("pool_scale_up", json!({ "count": 1, "host": "any" }))
        .await;
    assert_eq!(any["slots"], json!(["h1/slot-3"]), "{any}");
    server
        .expect_argument_error(
            "pool_scale_up",
            json!({ "count": 1, "host": "nope" }),
            "no slot host \"nope\"",
        )
        .await;
    server
        .expect_argument_error(
            "pool_scale_down",
            json!({ "count": 2, "host": "h2" }),
            "at least one stays",
        )
        .await;
    // Without a host, this machine's slots, as before.
    let local = server.call_ok("pool_scale_up", json!({ "count": 1 })).await;
    assert_eq!(local["slots"], json!(["slot-1"]), "{local}");
    server.close().await;
}

#[tokio::test]
async fn a_task_that_may_run_again_is_queued_again_when_its_host_is_lost() {
    let scratch = Scratch::new("cluster-retry");
    let port = free_port();
    let secret = cookie(scratch.path(), "retry-cookie");
    let server = scheduler(port, &secret, &[]).await;
    let h1 = Host::start(scratch.path(), "h1", port, 1, &secret, &[]).await;
    slots_until(&server, "both slots idle", |s| all_idle(s, 2)).await;
    let local = server
        .call_ok(
            "pool_submit",
            json!({ "prompt": "MOCK_SLEEP:1 MOCK_TEXT: local" }),
        )
        .await;
    slots_until(&server, "the local slot busy", |s| {
        s.iter()
            .any(|x| x["id"] == "slot-0" && x["status"] == "busy")
    })
    .await;
    let again = server
        .call_ok(
            "pool_submit",
            json!({ "prompt": "MOCK_SLEEP:2 MOCK_TEXT: ran again", "retry_if_lost": true }),
        )
        .await;
    let id = again["task_id"].as_str().expect("id").to_owned();
    let started = server.wait_started(&id).await;
    assert_eq!(started["slot_id"], "h1/slot-0", "{started}");
    // Started: without `retry_if_lost` it would now end interrupted.
    h1.signal(libc::SIGKILL);
    let r = server.wait_task(&id).await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["output"], "ran again");
    assert_eq!(r["slot_id"], "slot-0", "it ran again on this machine: {r}");
    // It ran here once (on h1 it may have begun too: it allowed that).
    let here = server
        .fake_events()
        .iter()
        .filter(|e| {
            e["event"] == "turn_start"
                && e["head"].as_str().is_some_and(|h| h.contains("ran again"))
        })
        .count();
    let there = h1
        .turns()
        .iter()
        .filter(|(_, h)| h.contains("ran again"))
        .count();
    assert_eq!(here, 1);
    assert!(there <= 1, "{there}");
    assert_eq!(
        server
            .wait_task(local["task_id"].as_str().expect("id"))
            .await["status"],
        "completed"
    );
    server.close().await;
}

/// Waits (on the pool's events) until its slots satisfy `pred`.
async fn pool_slots_until(
    pool: &claude_pool::Pool,
    what: &str,
    pred: impl Fn(&[claude_pool::protocol::tools::SlotReport]) -> bool,
) -> Vec<claude_pool::protocol::tools::SlotReport> {
    let mut events = pool.events();
    within(Duration::from_secs(30), what, async {
        loop {
            let slots = pool.status().await.expect("status").slots;
            if pred(&slots) {
                return slots;
            }
            let _ = events.recv().await;
        }
    })
    .await
}

#[tokio::test]
async fn a_rust_program_can_be_the_scheduler_or_a_host() {
    use claude_pool::cluster::ClusterOptions;
    use claude_pool::cluster::host::{HostArgs, HostHandle};
    use claude_pool::protocol::{SlotStatus, TaskStatus};
    use claude_pool::{Pool, TaskSpec};

    let scratch = Scratch::new("cluster-embed");
    let secret = cookie(scratch.path(), "embed-cookie");
    let mut options = ClusterOptions::new("embed-cookie");
    options.heartbeat = Duration::from_millis(200);
    options.deadline = Duration::from_millis(1500);

    // This program as the scheduler, a host process joining it.
    let port = free_port();
    let pool = Pool::builder()
        .slots(1)
        .claude_bin(fake_claude_bin())
        .env("HOME", scratch.path())
        .env("FAKE_CLAUDE_TURN_MS", "5")
        .memory_store()
        .listen_for_hosts(([127, 0, 0, 1], port).into(), options.clone())
        .build()
        .await
        .expect("a pool that takes hosts");
    let _h1 = Host::start(scratch.path(), "h1", port, 2, &secret, &[]).await;
    let slots = pool_slots_until(&pool, "h1's two slots idle", |s| {
        s.len() == 3 && s.iter().all(|x| x.status == SlotStatus::Idle)
    })
    .await;
    let hosts: Vec<Option<&str>> = slots.iter().map(|s| s.host.as_deref()).collect();
    assert_eq!(hosts, [None, Some("h1"), Some("h1")]);
    let specs: Vec<TaskSpec> = (0..6)
        .map(|i| TaskSpec::new(format!("MOCK_SLEEP:0.1 MOCK_TEXT: embedded {i}")))
        .collect();
    let ids = pool.submit_many(specs).await.expect("submit");
    let mut remote = 0;
    for (i, id) in ids.iter().enumerate() {
        let r = within(Duration::from_secs(30), "a task's end", pool.wait(id))
            .await
            .expect("report");
        assert_eq!(r.status, TaskStatus::Completed, "{r:?}");
        assert_eq!(r.output.as_deref(), Some(format!("embedded {i}").as_str()));
        remote += usize::from(r.slot_id.as_ref().is_some_and(|s| s.0.starts_with("h1/")));
    }
    assert!(remote > 0, "no task ran on the host");
    within(
        Duration::from_secs(30),
        "the pool's shutdown",
        pool.shutdown(),
    )
    .await;

    // This program as a host, joining a scheduler process.
    let port = free_port();
    let server = scheduler(
        port,
        &secret,
        &["--host-heartbeat", "200ms", "--host-deadline", "1500ms"],
    )
    .await;
    let config = Pool::builder()
        .claude_bin(fake_claude_bin())
        .env("HOME", scratch.path())
        .env("FAKE_CLAUDE_TURN_MS", "5")
        .config()
        .clone();
    let host = HostHandle::start(HostArgs {
        name: "embedded".into(),
        join: ([127, 0, 0, 1], port).into(),
        slots: 1,
        options,
        config: std::sync::Arc::new(config),
        refusals: None,
        version: claude_pool::cluster::frame::VERSION.into(),
    })
    .await
    .expect("a host in this process");
    slots_until(&server, "the embedded host's slot idle", |s| {
        on_host(s, "embedded").len() == 1 && all_idle(s, 2)
    })
    .await;
    assert_eq!(host.epoch().await, Some(1));
    let r = server
        .call_ok(
            "pool_fan_out",
            json!({ "prompts": ["MOCK_TEXT: a", "MOCK_SLEEP:0.2 MOCK_TEXT: b"] }),
        )
        .await;
    let outputs: Vec<&str> = r["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|x| x["output"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(outputs, ["a", "b"]);
    within(
        Duration::from_secs(30),
        "the host's shutdown",
        host.shutdown(),
    )
    .await;
    slots_until(&server, "the embedded host's slot lost once it left", |s| {
        on_host(s, "embedded").iter().all(|x| x["status"] == "lost")
    })
    .await;
    server.close().await;
}

//! Slots on other machines (feature `cluster`): a scheduler server and slot hosts, each its
//! own process on this machine, joined over loopback.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use claude_pool_tests::procs::assert_group_gone;
use claude_pool_tests::server::{ResourceNote, Server, ServerOptions};
use claude_pool_tests::{Scratch, fake_claude_bin, read_fake_log, server_bin, within};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// A free loopback port (bound, read, released).
pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A private cookie file in `dir`.
pub(crate) fn cookie(dir: &Path, secret: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("cookie-{secret}"));
    std::fs::write(&path, secret).expect("write cookie");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// The scheduler: a server with one local slot that takes hosts at `port`.
pub(crate) async fn scheduler(port: u16, cookie: &Path, extra: &[&str]) -> Server {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "--listen-hosts",
        listen.as_str(),
        "--cluster-cookie-file",
        cookie.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    Server::start(ServerOptions::fake(1).args(&args)).await
}

/// A slot host process.
pub(crate) struct Host {
    child: Child,
    log: PathBuf,
    fake_log: PathBuf,
}

impl Host {
    pub(crate) async fn start(
        dir: &Path,
        name: &str,
        port: u16,
        slots: usize,
        cookie: &Path,
        extra: &[&str],
    ) -> Host {
        let log = dir.join(format!("{name}.log"));
        let fake_log = dir.join(format!("{name}-fake.log"));
        let child = Command::new(server_bin())
            .arg("host")
            .args(["--join", &format!("127.0.0.1:{port}")])
            .args(["--host-name", name])
            .args(["--slots", &slots.to_string()])
            .arg("--claude-bin")
            .arg(fake_claude_bin())
            .arg("--cluster-cookie-file")
            .arg(cookie)
            .args(["--no-db", "--log-level", "debug"])
            .args(extra)
            .env("HOME", dir)
            .env("FAKE_CLAUDE_LOG", &fake_log)
            .env("FAKE_CLAUDE_STATE", dir.join(format!("{name}-state")))
            .env("FAKE_CLAUDE_TURN_MS", "5")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .kill_on_drop(true)
            .spawn()
            .expect("start a host");
        Host {
            child,
            log,
            fake_log,
        }
    }

    pub(crate) fn signal(&self, sig: i32) {
        claude_pool_tests::procs::kill(self.child.id().expect("pid"), sig);
    }

    /// Turn starts the host's fake CLI logged: (slot, prompt head).
    pub(crate) fn turns(&self) -> Vec<(String, String)> {
        read_fake_log(&self.fake_log)
            .into_iter()
            .filter(|e| e["event"] == "turn_start")
            .map(|e| {
                (
                    e["slot"].as_str().unwrap_or_default().to_owned(),
                    e["head"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The Claude processes the host started so far (each leads its own group).
    fn processes(&self) -> Vec<u32> {
        read_fake_log(&self.fake_log)
            .into_iter()
            .filter(|e| e["event"] == "start")
            .filter_map(|e| e["pid"].as_u64().map(|p| p as u32))
            .collect()
    }
}

/// Waits (on `pool://slots` updates) until the slots satisfy `pred`; returns them.
pub(crate) async fn slots_until(
    server: &Server,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let uri = "pool://slots";
    server.subscribe(uri).await.expect("subscribe to the slots");
    loop {
        let status = server.status().await;
        let slots = status["slots"].as_array().cloned().unwrap_or_default();
        if pred(&slots) {
            return slots;
        }
        let want = ResourceNote::Updated(uri.to_owned());
        server.resource_note_until(what, |n| *n == want).await;
    }
}

pub(crate) fn on_host<'a>(slots: &'a [Value], host: &str) -> Vec<&'a Value> {
    slots.iter().filter(|s| s["host"] == host).collect()
}

pub(crate) fn all_idle(slots: &[Value], n: usize) -> bool {
    slots.len() == n && slots.iter().all(|s| s["status"] == "idle")
}

#[tokio::test]
async fn a_fan_out_runs_on_the_scheduler_and_two_hosts_with_the_same_results() {
    let scratch = Scratch::new("cluster-fanout");
    let port = free_port();
    let secret = cookie(scratch.path(), "fan-out-cookie");
    let server = scheduler(port, &secret, &[]).await;
    let h1 = Host::start(scratch.path(), "h1", port, 2, &secret, &[]).await;
    let h2 = Host::start(scratch.path(), "h2", port, 2, &secret, &[]).await;
    let slots = slots_until(
        &server,
        "one local slot and two hosts' two slots each, idle",
        |s| all_idle(s, 5),
    )
    .await;
    assert_eq!(on_host(&slots, "h1").len(), 2, "{slots:?}");
    assert_eq!(on_host(&slots, "h2").len(), 2, "{slots:?}");
    let ids: Vec<&str> = slots.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["slot-0", "h1/slot-0", "h1/slot-1", "h2/slot-0", "h2/slot-1"]
    );

    let prompts: Vec<String> = (0..64)
        .map(|i| format!("MOCK_SLEEP:0.05 MOCK_TEXT: answer {i}"))
        .collect();
    let r = server
        .call_ok("pool_fan_out", json!({ "prompts": prompts }))
        .await;
    let results = r["results"].as_array().expect("results");
    assert_eq!(results.len(), 64);
    for (i, item) in results.iter().enumerate() {
        assert_eq!(item["status"], "completed", "{item}");
        assert_eq!(item["output"], format!("answer {i}"), "{item}");
    }
    // A task that ran on a host has its whole transcript at the scheduler.
    let remote = results
        .iter()
        .find(|r| r["slot_id"].as_str().is_some_and(|s| s.starts_with("h1/")))
        .expect("a task that ran on h1");
    let page = server
        .call_ok("pool_transcript", json!({ "task_id": remote["task_id"] }))
        .await;
    let events: Vec<Value> = page["ndjson"]
        .as_str()
        .expect("ndjson")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(
        events.first().map(|e| e["type"].clone()),
        Some(json!("user")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "system" && e["subtype"] == "init")
    );
    let last = events.last().expect("events");
    assert_eq!(last["type"], "result", "{events:?}");
    assert_eq!(last["result"], remote["output"], "{events:?}");
    // Every prompt's turn began exactly once, somewhere; all three machines ran some.
    let local: Vec<String> = server
        .fake_events()
        .iter()
        .filter(|e| e["event"] == "turn_start")
        .map(|e| e["head"].as_str().unwrap_or_default().to_owned())
        .collect();
    let (t1, t2) = (h1.turns(), h2.turns());
    assert!(
        !local.is_empty() && !t1.is_empty() && !t2.is_empty(),
        "local {} h1 {} h2 {}",
        local.len(),
        t1.len(),
        t2.len()
    );
    assert!(t1.iter().all(|(slot, _)| slot.starts_with("h1/")), "{t1:?}");
    let mut heads: Vec<String> = local;
    heads.extend(t1.into_iter().map(|(_, h)| h));
    heads.extend(t2.into_iter().map(|(_, h)| h));
    heads.retain(|h| h.contains("answer"));
    heads.sort();
    let mut expected = prompts.clone();
    expected.sort();
    assert_eq!(heads, expected, "each prompt's turn began exactly once");
    server.close().await;
}

#[tokio::test]
async fn a_killed_host_interrupts_its_running_tasks_and_the_rest_completes_elsewhere() {
    let scratch = Scratch::new("cluster-kill");
    let port = free_port();
    let secret = cookie(scratch.path(), "kill-cookie");
    let fast = ["--host-heartbeat", "200ms", "--host-deadline", "2s"];
    let server = scheduler(port, &secret, &fast).await;
    let h1 = Host::start(scratch.path(), "h1", port, 2, &secret, &fast).await;
    let _h2 = Host::start(scratch.path(), "h2", port, 1, &secret, &fast).await;
    slots_until(&server, "all four slots idle", |s| all_idle(s, 4)).await;

    let mut ids = Vec::new();
    for i in 0..12 {
        let r = server
            .call_ok(
                "pool_submit",
                json!({ "prompt": format!("MOCK_SLEEP:2 MOCK_TEXT: long {i}") }),
            )
            .await;
        ids.push(r["task_id"].as_str().expect("task id").to_owned());
    }
    let busy = slots_until(&server, "both of h1's slots busy", |s| {
        let h = on_host(s, "h1");
        h.len() == 2
            && h.iter()
                .all(|x| x["status"] == "busy" && x["task_id"].is_string())
    })
    .await;
    let on_h1: Vec<String> = on_host(&busy, "h1")
        .iter()
        .map(|s| s["task_id"].as_str().unwrap().to_owned())
        .collect();
    // Handed to h1 is not yet started there: wait until each has begun.
    for id in &on_h1 {
        server.wait_started(id).await;
    }
    h1.signal(libc::SIGKILL);

    let mut completed = 0;
    for id in &ids {
        let r = within(
            Duration::from_secs(40),
            "every task's end",
            server.wait_task(id),
        )
        .await;
        if on_h1.contains(id) {
            assert_eq!(r["status"], "interrupted", "{r}");
            assert!(
                r["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("host h1 was lost"),
                "{r}"
            );
        } else {
            assert_eq!(r["status"], "completed", "{r}");
            completed += 1;
        }
    }
    assert_eq!(completed, 12 - on_h1.len());
    let slots = server.status().await["slots"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        on_host(&slots, "h1").iter().all(|s| s["status"] == "lost"),
        "{slots:?}"
    );
    // Nothing ran twice: each prompt began once, across every machine.
    let mut heads: Vec<String> = server
        .fake_events()
        .iter()
        .filter(|e| e["event"] == "turn_start")
        .filter_map(|e| e["head"].as_str().map(str::to_owned))
        .collect();
    heads.extend(h1.turns().into_iter().map(|(_, h)| h));
    heads.extend(_h2.turns().into_iter().map(|(_, h)| h));
    let heads: Vec<String> = heads.into_iter().filter(|h| h.contains("long")).collect();
    assert_eq!(heads.len(), 12, "{heads:?}");
    // The killed host's Claude processes end with it (their stdin closes): no orphans.
    let started = h1.processes();
    assert!(!started.is_empty());
    for pgid in started {
        assert_group_gone(
            pgid,
            Duration::from_secs(10),
            "a killed host's Claude process group",
        )
        .await;
    }
    server.close().await;
}

#[tokio::test]
async fn a_stopped_host_is_lost_fenced_and_rejoins_fresh_after_it_continues() {
    let scratch = Scratch::new("cluster-stop");
    let port = free_port();
    let secret = cookie(scratch.path(), "stop-cookie");
    let fast = ["--host-heartbeat", "200ms", "--host-deadline", "1500ms"];
    let server = scheduler(port, &secret, &fast).await;
    let h1 = Host::start(scratch.path(), "h1", port, 1, &secret, &fast).await;
    slots_until(&server, "both slots idle", |s| all_idle(s, 2)).await;

    let mut ids = Vec::new();
    for i in 0..2 {
        let r = server
            .call_ok(
                "pool_submit",
                json!({ "prompt": format!("MOCK_SLEEP:2.5 MOCK_TEXT: held {i}") }),
            )
            .await;
        ids.push(r["task_id"].as_str().expect("task id").to_owned());
    }
    let busy = slots_until(&server, "h1's slot busy", |s| {
        on_host(s, "h1")
            .iter()
            .any(|x| x["status"] == "busy" && x["task_id"].is_string())
    })
    .await;
    let held = on_host(&busy, "h1")[0]["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Handed to h1 is not yet started there: wait until it has begun.
    server.wait_started(&held).await;
    h1.signal(libc::SIGSTOP);
    let r = within(
        Duration::from_secs(20),
        "the stopped host's task to end",
        server.wait_task(&held),
    )
    .await;
    assert_eq!(r["status"], "interrupted", "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no word from it"),
        "{r}"
    );
    slots_until(&server, "h1's slot lost", |s| {
        on_host(s, "h1").iter().all(|x| x["status"] == "lost")
    })
    .await;
    // Its turn (2.5 s) ends while it is stopped; after it continues, nothing of that epoch
    // is accepted, and it joins again as a fresh host.
    let before = h1.processes();
    h1.signal(libc::SIGCONT);
    slots_until(&server, "h1 back, idle", |s| {
        let h = on_host(s, "h1");
        h.len() == 1 && h[0]["status"] == "idle"
    })
    .await;
    let again = server
        .call_ok("pool_result", json!({ "task_id": held }))
        .await;
    assert_eq!(
        again["status"], "interrupted",
        "a fenced host's result was taken: {again}"
    );
    assert!(again["output"].is_null(), "{again}");
    let log = server.log();
    assert!(
        log.contains("epoch=2"),
        "h1 did not rejoin with a new epoch:\n{log}"
    );
    assert!(h1.log().contains("leaving the scheduler"), "{}", h1.log());
    for pgid in before {
        assert_group_gone(
            pgid,
            Duration::from_secs(10),
            "the fenced epoch's Claude process group",
        )
        .await;
    }
    let other = ids.iter().find(|i| **i != held).expect("the other task");
    assert_eq!(server.wait_task(other).await["status"], "completed");
    server.close().await;
}

#[tokio::test]
async fn plaintext_beyond_loopback_another_version_and_a_public_cookie_are_refused() {
    let scratch = Scratch::new("cluster-refusals");
    let secret = cookie(scratch.path(), "refusal-cookie");
    // Plaintext to an address that is not loopback, on either side.
    for args in [
        vec!["host".to_owned(), "--join".into(), "192.0.2.10:7878".into()],
        vec!["--listen-hosts".to_owned(), "0.0.0.0:0".into()],
    ] {
        let out = Command::new(server_bin())
            .args(&args)
            .arg("--claude-bin")
            .arg(fake_claude_bin())
            .arg("--cluster-cookie-file")
            .arg(&secret)
            .arg("--no-db")
            .env("HOME", scratch.path())
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(
            err.contains("is not a loopback address") && err.contains("TLS"),
            "{args:?}: {err}"
        );
    }
    // A cookie file others can read.
    let open = scratch.path().join("open-cookie");
    std::fs::write(&open, "x").expect("write");
    let out = Command::new(server_bin())
        .args(["host", "--join", "127.0.0.1:9", "--cluster-cookie-file"])
        .arg(&open)
        .arg("--claude-bin")
        .arg(fake_claude_bin())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("readable by others"),
        "{err}"
    );

    // Another version: the scheduler refuses it, naming both versions, and the host exits.
    let port = free_port();
    let server = scheduler(port, &secret, &[]).await;
    let mut old = Host::start(
        scratch.path(),
        "old",
        port,
        1,
        &secret,
        &["--cluster-version", "0.0.1"],
    )
    .await;
    let status = within(
        Duration::from_secs(30),
        "the refused host's exit",
        old.child.wait(),
    )
    .await
    .expect("wait");
    assert!(!status.success());
    let log = old.log();
    let ours = env!("CARGO_PKG_VERSION");
    assert!(
        log.contains(&format!(
            "this scheduler runs claude-pool {ours}, host old runs 0.0.1"
        )),
        "{log}"
    );
    server.close().await;
}

/// `claude-pool-server cluster-certs DIR NODE…`; returns each node's directory.
async fn certs(dir: &Path, nodes: &[&str]) -> Vec<PathBuf> {
    let out = Command::new(server_bin())
        .arg("cluster-certs")
        .arg(dir)
        .args(nodes)
        .output()
        .await
        .expect("cluster-certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .collect();
    assert_eq!(made.len(), nodes.len());
    made
}

#[tokio::test]
async fn over_tls_only_certificates_of_the_pool_s_ca_join_and_a_silent_socket_holds_nothing() {
    let scratch = Scratch::new("cluster-tls");
    let ours = certs(&scratch.join("ca"), &["scheduler", "h1", "h2"]).await;
    let theirs = certs(&scratch.join("other-ca"), &["rogue"]).await;
    let port = free_port();
    let secret = cookie(scratch.path(), "tls-cookie");
    let tls = |d: &PathBuf| d.to_str().expect("utf-8").to_owned();
    let server = scheduler(port, &secret, &["--cluster-tls-dir", &tls(&ours[0])]).await;
    // The refusal is read from the server's log, as MCP log notifications.
    #[allow(deprecated)] // logging: the 2025-11-25 revision's
    server
        .client()
        .set_level(rmcp::model::SetLevelRequestParams::new(
            rmcp::model::LoggingLevel::Warning,
        ))
        .await
        .expect("logging/setLevel");
    let _h1 = Host::start(
        scratch.path(),
        "h1",
        port,
        1,
        &secret,
        &["--cluster-tls-dir", &tls(&ours[1])],
    )
    .await;
    slots_until(&server, "h1 joined over TLS", |s| all_idle(s, 2)).await;

    // A certificate of another CA (its holder trusts ours): the scheduler refuses the
    // handshake, the host never joins.
    let rogue_dir = scratch.join("rogue-tls");
    std::fs::create_dir_all(&rogue_dir).expect("mkdir");
    std::fs::copy(ours[0].join("ca.pem"), rogue_dir.join("ca.pem")).expect("ca");
    for f in ["node.pem", "node.key"] {
        std::fs::copy(theirs[0].join(f), rogue_dir.join(f)).expect("rogue file");
    }
    let _rogue = Host::start(
        scratch.path(),
        "rogue",
        port,
        1,
        &secret,
        &["--cluster-tls-dir", &tls(&rogue_dir)],
    )
    .await;
    let refused = server
        .log_until("the rogue certificate's refusal", |m| {
            m["data"]["message"] == "refused a connection: TLS"
        })
        .await;
    assert!(
        refused["data"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("certificate"),
        "{refused}"
    );
    // A connection that never starts TLS does not hold the others up.
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("a silent connection");
    let _h2 = Host::start(
        scratch.path(),
        "h2",
        port,
        1,
        &secret,
        &["--cluster-tls-dir", &tls(&ours[2])],
    )
    .await;
    let slots = slots_until(&server, "h2 joined while a silent socket is open", |s| {
        all_idle(s, 3)
    })
    .await;
    assert!(on_host(&slots, "rogue").is_empty(), "{slots:?}");
    assert_eq!(on_host(&slots, "h2").len(), 1, "{slots:?}");
    server.close().await;
}

/// A host's own network: a namespace joined to this one by a veth pair, whose link the
/// test cuts and restores. Deleted on drop.
struct Netns {
    name: String,
    outside: String,
    /// The address on this side (the scheduler's), and the host's inside.
    here: String,
}

impl Netns {
    /// Whether this runs as root with iproute2.
    fn possible() -> bool {
        let root = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .map(|l| l.split_whitespace().nth(2) == Some("0"))
            })
            .unwrap_or(false);
        root && std::process::Command::new("ip").arg("-V").output().is_ok()
    }

    /// `None` (the test is skipped, saying why) unless this runs as root with iproute2.
    fn new(tag: &str) -> Option<Netns> {
        if !Netns::possible() {
            eprintln!("skipped: a network namespace needs root and iproute2 (`ip`)");
            return None;
        }
        let n = std::process::id() % 200 + 20;
        let ns = Netns {
            name: format!("cp-{tag}-{n}"),
            outside: format!("cpa{tag}{n}"),
            here: format!("10.231.{n}.1"),
        };
        let inside = format!("cpb{tag}{n}");
        let there = format!("10.231.{n}.2/30");
        let here = format!("{}/30", ns.here);
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &ns.name])
            .output();
        for args in [
            vec!["netns", "add", &ns.name],
            vec![
                "link",
                "add",
                &ns.outside,
                "type",
                "veth",
                "peer",
                "name",
                &inside,
            ],
            vec!["link", "set", &inside, "netns", &ns.name],
            vec!["addr", "add", &here, "dev", &ns.outside],
            vec!["link", "set", &ns.outside, "up"],
            vec!["-n", &ns.name, "addr", "add", &there, "dev", &inside],
            vec!["-n", &ns.name, "link", "set", &inside, "up"],
            vec!["-n", &ns.name, "link", "set", "lo", "up"],
        ] {
            ns.ip(&args);
        }
        Some(ns)
    }

    fn ip(&self, args: &[&str]) {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .expect("ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Cuts (`false`) or restores (`true`) the link.
    fn link(&self, up: bool) {
        self.ip(&["link", "set", &self.outside, if up { "up" } else { "down" }]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.outside])
            .output();
    }
}

#[tokio::test]
async fn a_cut_link_loses_the_host_like_a_stop_and_restoring_it_brings_the_host_back() {
    let Some(net) = Netns::new("cut") else {
        return;
    };
    let scratch = Scratch::new("cluster-netns");
    let made = certs(
        &scratch.join("ca"),
        &[&format!("scheduler={}", net.here), "h1"],
    )
    .await;
    let port = free_port();
    let secret = cookie(scratch.path(), "netns-cookie");
    let listen = format!("{}:{port}", net.here);
    let fast = ["--host-heartbeat", "200ms", "--host-deadline", "1500ms"];
    let tls = |d: &PathBuf| d.to_str().expect("utf-8").to_owned();
    let (s_tls, h_tls) = (tls(&made[0]), tls(&made[1]));
    let mut args = vec![
        "--listen-hosts",
        listen.as_str(),
        "--cluster-cookie-file",
        secret.to_str().expect("utf-8"),
        "--cluster-tls-dir",
        s_tls.as_str(),
    ];
    args.extend_from_slice(&fast);
    let server = Server::start(ServerOptions::fake(1).args(&args)).await;

    // The host runs inside the namespace: the scheduler is reachable only over the veth.
    let log = scratch.join("h1.log");
    let fake_log = scratch.join("h1-fake.log");
    let host = Command::new("ip")
        .args(["netns", "exec", &net.name])
        .arg(server_bin())
        .args([
            "host",
            "--join",
            &listen,
            "--host-name",
            "h1",
            "--slots",
            "1",
        ])
        .arg("--claude-bin")
        .arg(fake_claude_bin())
        .arg("--cluster-cookie-file")
        .arg(&secret)
        .args([
            "--cluster-tls-dir",
            &h_tls,
            "--no-db",
            "--log-level",
            "debug",
        ])
        .args(fast)
        .env("HOME", scratch.path())
        .env("FAKE_CLAUDE_LOG", &fake_log)
        .env("FAKE_CLAUDE_STATE", scratch.join("h1-state"))
        .env("FAKE_CLAUDE_TURN_MS", "5")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .kill_on_drop(true)
        .spawn()
        .expect("a host in the namespace");
    let h1 = Host {
        child: host,
        log,
        fake_log,
    };
    slots_until(&server, "h1 joined across the veth", |s| all_idle(s, 2)).await;

    let mut ids = Vec::new();
    for i in 0..2 {
        let r = server
            .call_ok(
                "pool_submit",
                json!({ "prompt": format!("MOCK_SLEEP:2.5 MOCK_TEXT: cut {i}") }),
            )
            .await;
        ids.push(r["task_id"].as_str().expect("task id").to_owned());
    }
    let busy = slots_until(&server, "h1's slot busy", |s| {
        on_host(s, "h1")
            .iter()
            .any(|x| x["status"] == "busy" && x["task_id"].is_string())
    })
    .await;
    let held = on_host(&busy, "h1")[0]["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Handed to h1 is not yet started there: wait until it has begun.
    server.wait_started(&held).await;
    net.link(false);
    let r = within(
        Duration::from_secs(20),
        "the cut-off host's task to end",
        server.wait_task(&held),
    )
    .await;
    assert_eq!(r["status"], "interrupted", "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no word from it"),
        "{r}"
    );
    slots_until(&server, "h1's slot lost", |s| {
        on_host(s, "h1").iter().all(|x| x["status"] == "lost")
    })
    .await;
    let before = h1.processes();
    net.link(true);
    slots_until(&server, "h1 back across the restored link", |s| {
        let h = on_host(s, "h1");
        h.len() == 1 && h[0]["status"] == "idle"
    })
    .await;
    let again = server
        .call_ok("pool_result", json!({ "task_id": held }))
        .await;
    assert_eq!(
        again["status"], "interrupted",
        "a cut-off host's result was taken: {again}"
    );
    for pgid in before {
        assert_group_gone(
            pgid,
            Duration::from_secs(10),
            "the cut-off epoch's Claude process group",
        )
        .await;
    }
    let other = ids.iter().find(|i| **i != held).expect("the other task");
    assert_eq!(server.wait_task(other).await["status"], "completed");
    assert!(h1.log().contains("leaving the scheduler"), "{}", h1.log());
    server.close().await;
}

#[tokio::test]
async fn the_chaos_harness_kills_stops_and_cuts_off_hosts_and_every_invariant_holds() {
    let scratch = Scratch::new("cluster-chaos");
    let server = server_bin();
    let (code, v, table) = super::chaos_cli::chaos(
        &[
            "--target",
            "stdio",
            "--server-bin",
            server.to_str().expect("utf-8 path"),
            "--hosts",
            "2",
            "--slots",
            "2",
            "--tasks",
            "120",
            "--seed",
            "4",
            "--fault-rate",
            "0.45",
        ],
        &scratch,
        "hosts.json",
    )
    .await;
    assert_eq!(code, Some(0), "{table}");
    assert_eq!(v["violations"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(v["slots"], 6, "2 local slots and 2 hosts of 2: {v}");
    let mut kinds = vec!["host-kill", "host-stop"];
    if Netns::possible() {
        kinds.push("host-cut");
    }
    for kind in kinds {
        assert!(v["faults"][kind].as_u64() > Some(0), "no {kind} fault: {v}");
    }
    let states: u64 = v["tasks_by_state"]
        .as_object()
        .expect("tasks by state")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(states, 120, "every task ends in one state: {v}");
}

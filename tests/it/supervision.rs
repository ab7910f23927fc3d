//! Supervision under fire, with the embedding API and the fake CLI: restart limits catch
//! crash loops, not healthy processes killed from outside; a given-up slot and a halted pool
//! come back by themselves once the CLI starts again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use claude_pool::protocol::{SlotStatus, TaskStatus};
use claude_pool::{Pool, PoolEvent, PoolHealth, RestartPolicy, TaskSpec};
use claude_pool_tests::procs::{self, assert_gone};
use claude_pool_tests::{Scratch, fake_claude_bin, read_fake_log, within};

/// A CLI that can start only once `flag` exists — except the very first process, which
/// always starts when `first_works` (so one slot stays healthy while the others loop).
fn flaky_cli(dir: &Scratch, flag: &Path, first_works: bool) -> std::path::PathBuf {
    let path = dir.join("flaky-claude");
    let lock = dir.join("first.lock");
    let first = if first_works {
        format!(
            "if mkdir {} 2>/dev/null; then exec {} \"$@\"; fi\n",
            lock.display(),
            fake_claude_bin().display()
        )
    } else {
        String::new()
    };
    let script = format!(
        "#!/bin/sh\n{first}if [ -e {flag} ]; then exec {fake} \"$@\"; fi\necho 'claude: cannot start: broken install' >&2\nexit 3\n",
        flag = flag.display(),
        fake = fake_claude_bin().display()
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn quick_probe() -> RestartPolicy {
    RestartPolicy {
        backoff_base: Duration::from_millis(300),
        backoff_max: Duration::from_secs(2),
        ..RestartPolicy::PROBE_DEFAULT
    }
}

/// Waits for the first event that `pred` accepts.
async fn event(
    rx: &mut tokio::sync::broadcast::Receiver<PoolEvent>,
    what: &str,
    pred: impl Fn(&PoolEvent) -> bool,
) -> PoolEvent {
    within(Duration::from_secs(60), what, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("{what}: the event stream ended: {e}"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_given_up_slot_is_probed_and_comes_back_once_its_cli_starts() {
    let dir = Scratch::new("flaky-slot");
    let flag = dir.join("fixed");
    let pool = Pool::builder()
        .slots(2)
        .claude_bin(flaky_cli(&dir, &flag, true))
        .env("HOME", dir.path())
        .slot_restart(RestartPolicy {
            max_restarts: 1,
            ..RestartPolicy::SLOT_DEFAULT
        })
        .probe(quick_probe())
        .build()
        .await
        .unwrap();
    let mut events = pool.events();
    let given_up = event(&mut events, "a slot given up", |e| {
        matches!(
            e,
            PoolEvent::SlotFailed {
                restarting: false,
                ..
            }
        )
    })
    .await;
    let PoolEvent::SlotFailed {
        id: broken, reason, ..
    } = given_up
    else {
        unreachable!()
    };
    assert!(
        reason.contains("restart limit") && reason.contains("broken install"),
        "{reason}"
    );
    // The other slot works all along: the pool keeps serving.
    let r = pool
        .run(TaskSpec::new("MOCK_TEXT: still serving"))
        .await
        .unwrap();
    assert_eq!(r.status, TaskStatus::Completed, "{r:?}");
    assert_eq!(pool.health(), PoolHealth::Running);
    // A failed probe keeps it given up; once the CLI starts, it is back.
    event(
        &mut events,
        "a failed probe",
        |e| matches!(e, PoolEvent::SlotFailed { id, restarting: false, .. } if *id == broken),
    )
    .await;
    std::fs::write(&flag, "").unwrap();
    event(
        &mut events,
        "the given-up slot idle again",
        |e| matches!(e, PoolEvent::Slot { id, status: SlotStatus::Idle } if *id == broken),
    )
    .await;
    let s = pool.slot(&broken).await.unwrap();
    assert_eq!(s.status, SlotStatus::Idle, "{s:?}");
    pool.shutdown().await;
}

#[tokio::test]
async fn a_halted_pool_is_probed_and_accepts_work_again_once_the_cli_starts() {
    let dir = Scratch::new("flaky-pool");
    let flag = dir.join("fixed");
    let pool = Pool::builder()
        .slots(1)
        .claude_bin(flaky_cli(&dir, &flag, false))
        .env("HOME", dir.path())
        .slot_restart(RestartPolicy {
            max_restarts: 1,
            ..RestartPolicy::SLOT_DEFAULT
        })
        .supervisor_restart(RestartPolicy {
            backoff_base: Duration::from_millis(100),
            ..RestartPolicy::SLOT_SUPERVISOR_DEFAULT
        })
        .probe(quick_probe())
        .build()
        .await
        .unwrap();
    let queued = pool
        .submit(TaskSpec::new("MOCK_TEXT: queued"))
        .await
        .unwrap();
    let mut health = pool.health_changes();
    let halted = within(
        Duration::from_secs(60),
        "the pool to halt",
        health.wait_for(|h| matches!(h, PoolHealth::Halted(_))),
    )
    .await
    .unwrap()
    .clone();
    let PoolHealth::Halted(why) = halted else {
        unreachable!()
    };
    assert!(why.contains("broken install"), "{why}");
    // Detected quickly: queued work fails with the CLI's own stderr; new work is refused.
    let r = pool.wait(&queued).await.unwrap();
    assert_eq!(r.status, TaskStatus::Failed);
    assert!(r.error.unwrap().contains("broken install"));
    let refused = pool.submit(TaskSpec::new("late")).await.unwrap_err();
    assert!(
        refused.to_string().contains("no slot can start"),
        "{refused}"
    );
    // Fixed: a probe finds the CLI working and the pool serves again by itself.
    std::fs::write(&flag, "").unwrap();
    within(
        Duration::from_secs(60),
        "the pool to run again",
        health.wait_for(|h| *h == PoolHealth::Running),
    )
    .await
    .unwrap();
    let r = pool.run(TaskSpec::new("MOCK_TEXT: back")).await.unwrap();
    assert_eq!(r.output.as_deref(), Some("back"), "{r:?}");
    pool.shutdown().await;
}

/// A tiny deterministic random source (xorshift), so the victim order is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test]
async fn sustained_random_kills_give_up_no_slot_and_lose_no_task() {
    let scratch = Scratch::new("sustained");
    let log = scratch.join("fake.log");
    // Default supervision settings: 5 start failures in 60 s, 250 ms backoff.
    let pool = Pool::builder()
        .slots(4)
        .claude_bin(fake_claude_bin())
        .env("HOME", scratch.path())
        .env("FAKE_CLAUDE_LOG", &log)
        .env("FAKE_CLAUDE_TURN_MS", "5")
        .build()
        .await
        .unwrap();
    within(Duration::from_secs(30), "warm-up", pool.wait_ready())
        .await
        .unwrap();
    let mut events = pool.events();
    let (stop_watching, mut stop) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        let (mut restarts, mut given_up) = (0u32, Vec::new());
        loop {
            let e = tokio::select! {
                e = events.recv() => e,
                _ = &mut stop => return (restarts, given_up),
            };
            match e {
                Ok(PoolEvent::SlotFailed {
                    restarting, reason, ..
                }) => {
                    restarts += 1;
                    if !restarting {
                        given_up.push(reason);
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    panic!("the event watcher fell {n} events behind")
                }
                Err(_) => return (restarts, given_up),
            }
        }
    });

    // 200 short tasks, one every 150 ms, while a random live slot process is SIGKILLed
    // every 150 ms for 30 s.
    let submitter = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(150));
            for i in 0..200 {
                tick.tick().await;
                let spec = TaskSpec::new(format!("MOCK_SLEEP:0.1 MOCK_TEXT: out-{i}"));
                ids.push((i, pool.submit(spec).await.unwrap()));
            }
            ids
        })
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut kills = 0u32;
    let mut tick = tokio::time::interval(Duration::from_millis(150));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        tick.tick().await;
        let live: Vec<u32> = pool
            .status()
            .await
            .unwrap()
            .slots
            .iter()
            .filter_map(|s| s.pid)
            .collect();
        if live.is_empty() {
            continue;
        }
        let victim = live[(rng.next() % live.len() as u64) as usize];
        procs::kill(victim, libc::SIGKILL);
        kills += 1;
    }
    let last_kill = Instant::now();
    within(
        Duration::from_secs(30),
        "every slot idle after the last kill",
        pool.wait_ready(),
    )
    .await
    .unwrap();
    let back_to_idle = last_kill.elapsed();
    let status = pool.status().await.unwrap();
    assert!(
        status.slots.iter().all(|s| s.status == SlotStatus::Idle),
        "every slot is back and idle: {:?}",
        status.slots
    );
    assert_eq!(status.slots.len(), 4);

    let ids = submitter.await.unwrap();
    let mut by_state: BTreeMap<String, u32> = BTreeMap::new();
    for (i, id) in &ids {
        let r = within(
            Duration::from_secs(60),
            "a task's terminal state",
            pool.wait(id),
        )
        .await
        .unwrap();
        assert!(r.status.is_terminal(), "task {i}: {r:?}");
        *by_state.entry(r.status.to_string()).or_default() += 1;
        match r.status {
            TaskStatus::Completed => {
                assert_eq!(
                    r.output.as_deref(),
                    Some(format!("out-{i}").as_str()),
                    "task {i}"
                )
            }
            _ => {
                let e = r.error.unwrap_or_default();
                assert!(!e.contains("the pool stopped"), "task {i}: {e}");
            }
        }
    }
    let t = pool.status().await.unwrap().tasks;
    assert_eq!(t.total, 200);
    assert_eq!(t.pending + t.running, 0);
    assert_eq!(t.completed + t.failed + t.cancelled + t.timed_out, 200);

    let _ = stop_watching.send(());
    let (restarts, given_up) = watcher.await.unwrap();
    pool.shutdown().await;
    assert!(given_up.is_empty(), "slots were given up: {given_up:?}");
    eprintln!(
        "sustained kills: {kills} kills over 30 s, {restarts} slot restarts, tasks {by_state:?}, back to 4 idle slots {back_to_idle:?} after the last kill"
    );
    let started: BTreeSet<u32> = read_fake_log(&log)
        .iter()
        .filter(|e| e["event"] == "start")
        .filter_map(|e| e["pid"].as_u64().map(|p| p as u32))
        .collect();
    for pid in started {
        assert_gone(pid, Duration::from_secs(10), "a process the pool started").await;
    }
}

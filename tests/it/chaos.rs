//! The chaos harness: slot processes are killed on purpose while work flows. Every task must
//! reach a terminal state, counts must add up, killed slots must come back, and no process
//! may be left behind.

use std::collections::BTreeSet;
use std::time::Duration;

use claude_pool::protocol::TaskStatus;
use claude_pool::{Pool, RestartPolicy, TaskProgress, TaskSpec};
use claude_pool_tests::procs::{self, assert_gone};
use claude_pool_tests::{Scratch, fake_claude_bin, read_fake_log, within};
use tokio::sync::mpsc;

#[tokio::test]
async fn killing_slot_processes_at_random_loses_no_task_and_leaks_no_process() {
    let scratch = Scratch::new("chaos");
    let log = scratch.join("fake.log");
    let pool = Pool::builder()
        .slots(3)
        .claude_bin(fake_claude_bin())
        .env("HOME", scratch.path())
        .env("FAKE_CLAUDE_LOG", &log)
        .env("FAKE_CLAUDE_TURN_MS", "2")
        .slot_restart(RestartPolicy {
            max_restarts: 100,
            backoff_base: Duration::from_millis(10),
            ..RestartPolicy::SLOT_DEFAULT
        })
        .build()
        .await
        .unwrap();
    within(Duration::from_secs(30), "warm-up", pool.wait_ready())
        .await
        .unwrap();

    // Every 3rd task is a victim: its process is SIGKILLed once its turn has begun (its first
    // assistant event), so the turn is lost for good and the task must fail. A process killed
    // before a turn begins is another story (the task runs again): see the mcp tests.
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, TaskProgress)>();
    let mut ids = Vec::new();
    for i in 0..24 {
        let victim = i % 3 == 0;
        let prompt = if victim {
            format!("victim {i} MOCK_STREAM:1:30000")
        } else {
            format!("task {i} MOCK_SLEEP:0.02")
        };
        let (ptx, mut prx) = mpsc::unbounded_channel();
        let fwd = tx.clone();
        tokio::spawn(async move {
            while let Some(p) = prx.recv().await {
                let _ = fwd.send((i, p));
            }
        });
        ids.push((
            i,
            victim,
            pool.submit(TaskSpec::new(prompt).progress(ptx))
                .await
                .unwrap(),
        ));
    }
    drop(tx);
    let victims: Vec<usize> = ids
        .iter()
        .filter(|(_, v, _)| *v)
        .map(|(i, _, _)| *i)
        .collect();
    let mut killed = BTreeSet::new();
    let mut slot_of = std::collections::HashMap::new();
    within(Duration::from_secs(60), "every victim to start", async {
        while killed.len() < victims.len() {
            let Some((i, p)) = rx.recv().await else {
                break;
            };
            match p {
                TaskProgress::Started { slot } => {
                    slot_of.insert(i, slot);
                }
                TaskProgress::Assistant { .. } if victims.contains(&i) && !killed.contains(&i) => {
                    let status = pool.status().await.unwrap();
                    let slot = &slot_of[&i];
                    let pid = status
                        .slots
                        .iter()
                        .find(|s| &s.id == slot)
                        .and_then(|s| s.pid)
                        .unwrap();
                    procs::kill(pid, libc::SIGKILL);
                    killed.insert(i);
                }
                _ => {}
            }
        }
    })
    .await;

    for (i, victim, id) in &ids {
        let r = within(
            Duration::from_secs(60),
            "a task's terminal state",
            pool.wait(id),
        )
        .await
        .unwrap();
        if *victim {
            assert_eq!(r.status, TaskStatus::Failed, "victim {i}: {r:?}");
            assert!(
                r.error.as_deref().unwrap_or_default().contains("SIGKILL"),
                "victim {i}: {r:?}"
            );
        } else {
            assert_eq!(r.status, TaskStatus::Completed, "task {i}: {r:?}");
        }
    }
    let status = pool.status().await.unwrap();
    let t = status.tasks;
    assert_eq!(
        (t.total, t.completed, t.failed, t.running, t.pending),
        (24, 16, 8, 0, 0),
        "{status:?}"
    );
    let restarts: u32 = status.slots.iter().map(|s| s.restarts).sum();
    assert_eq!(restarts, 8, "one restart per killed process: {status:?}");

    pool.shutdown().await;
    let started: BTreeSet<u32> = read_fake_log(&log)
        .iter()
        .filter(|e| e["event"] == "start")
        .filter_map(|e| e["pid"].as_u64().map(|p| p as u32))
        .collect();
    assert!(
        started.len() > 3,
        "the killed processes were replaced: {} started",
        started.len()
    );
    for pid in started {
        assert_gone(pid, Duration::from_secs(10), "a process the pool started").await;
    }
}

#[tokio::test]
async fn a_server_killed_again_and_again_on_one_store_loses_no_task_and_bills_none_twice() {
    let scratch = claude_pool_tests::Scratch::new("crash-run");
    let plan = claude_pool_tests::crash::CrashPlan {
        tasks: 80,
        kills: 3,
        slots: 3,
        seed: 0x5eed,
    };
    let report = claude_pool_tests::crash::crash_run(plan, scratch.path()).await;
    assert!(report.violations.is_empty(), "{:#?}", report);
    assert_eq!(report.submitted, 80);
    assert_eq!(
        report.states.values().sum::<usize>(),
        80,
        "{:?}",
        report.states
    );
    assert!(
        report.states.get("completed").copied().unwrap_or(0) > 0,
        "{:?}",
        report.states
    );
}

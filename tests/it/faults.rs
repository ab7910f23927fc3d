//! Faults injected from the embedding handle: a SIGKILLed or SIGSTOPped slot process, and
//! with `fake-claude` a next turn that fails or prints garbage and a slow start; each seen
//! through the pool's typed events, and each recovered from.

use std::time::Duration;

use claude_pool::events::PoolEvent;
use claude_pool::protocol::{SlotId, SlotStatus, TaskStatus};
use claude_pool::restart::FailureKind;
use claude_pool::{FakeFaults, Pool, TaskSpec, TurnFault};
use claude_pool_tests::procs::assert_gone;
use claude_pool_tests::{Scratch, fake_claude_bin, within};
use tokio::sync::broadcast;

const LIMIT: Duration = Duration::from_secs(30);

async fn pool(scratch: &Scratch, faults: &FakeFaults) -> Pool {
    let (k, v) = faults.env();
    let pool = Pool::builder()
        .slots(1)
        .claude_bin(fake_claude_bin())
        .env("HOME", scratch.path())
        .env("FAKE_CLAUDE_LOG", scratch.join("fake.log"))
        .env("FAKE_CLAUDE_TURN_MS", "5")
        .env(k, v)
        .build()
        .await
        .expect("pool starts");
    within(LIMIT, "the pool's warm-up", pool.wait_ready())
        .await
        .expect("ready");
    pool
}

/// Waits for the first event `pick` accepts.
async fn event<T>(
    rx: &mut broadcast::Receiver<PoolEvent>,
    what: &str,
    pick: impl Fn(&PoolEvent) -> Option<T>,
) -> T {
    within(LIMIT, what, async {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if let Some(t) = pick(&e) {
                        return t;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("{what}: the event bus closed ({e})"),
            }
        }
    })
    .await
}

async fn slot_idle_again(rx: &mut broadcast::Receiver<PoolEvent>, slot: &SlotId, what: &str) {
    event(rx, what, |e| match e {
        PoolEvent::Slot { id, status } if id == slot && *status == SlotStatus::Idle => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn a_killed_or_hung_slot_is_seen_in_the_events_and_the_pool_recovers() {
    let scratch = Scratch::new("faults");
    let faults = FakeFaults::new(&scratch.join("faults")).unwrap();
    let pool = pool(&scratch, &faults).await;
    let slot = pool.status().await.unwrap().slots[0].id.clone();
    let first = pool.slot_pid(&slot).await.unwrap().expect("a process");
    let mut rx = pool.events();

    assert_eq!(pool.kill_slot(&slot).await.unwrap(), first);
    let kind = event(&mut rx, "the kill's failure event", |e| match e {
        PoolEvent::SlotFailed {
            id,
            kind,
            restarting,
            ..
        } if *id == slot => Some((*kind, *restarting)),
        _ => None,
    })
    .await;
    assert_eq!(kind, (FailureKind::AfterReady, true));
    slot_idle_again(&mut rx, &slot, "the slot ready again after the kill").await;
    assert_gone(first, LIMIT, "the killed process").await;
    let second = pool.slot_pid(&slot).await.unwrap().expect("a new process");
    assert_ne!(second, first);

    // A hang: the task's deadline kills the stopped process's group.
    let id = pool
        .submit(TaskSpec::new("MOCK_SLEEP:30").timeout(Duration::from_secs(1)))
        .await
        .unwrap();
    event(&mut rx, "the task running", |e| match e {
        PoolEvent::Task { id: t, status } if *t == id && *status == TaskStatus::Running => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(pool.hang_slot(&slot).await.unwrap(), second);
    let report = within(LIMIT, "the hung task's end", pool.wait(&id))
        .await
        .unwrap();
    assert_eq!(report.status, TaskStatus::TimedOut, "{report:?}");
    slot_idle_again(&mut rx, &slot, "the slot ready again after the hang").await;
    assert_gone(second, LIMIT, "the stopped process").await;
    pool.shutdown().await;
}

#[tokio::test]
async fn fake_faults_make_the_next_turn_fail_or_print_garbage_once_and_slow_a_start() {
    let scratch = Scratch::new("faults");
    let faults = FakeFaults::new(&scratch.join("faults")).unwrap();
    let pool = pool(&scratch, &faults).await;
    let slot = pool.status().await.unwrap().slots[0].id.clone();
    let run = async |prompt: &str| {
        within(LIMIT, "a task", pool.run(TaskSpec::new(prompt)))
            .await
            .unwrap()
    };

    faults.next_turn(&slot, TurnFault::ApiError).unwrap();
    let failed = run("MOCK_TEXT: first").await;
    assert_eq!(failed.status, TaskStatus::Failed, "{failed:?}");
    assert!(
        failed.error.as_deref().unwrap_or_default().contains("500"),
        "{failed:?}"
    );
    assert!(!faults.armed(&slot, "turn"), "the fault was taken");
    // Taken once: the next turn is normal.
    let ok = run("MOCK_TEXT: second").await;
    assert_eq!(ok.output.as_deref(), Some("second"), "{ok:?}");

    // Garbage on stdout breaks the protocol: the task fails naming the line, the slot gets
    // a fresh process, and the next task runs.
    faults.next_turn(&slot, TurnFault::Garbage).unwrap();
    let garbled = run("MOCK_TEXT: third").await;
    assert_eq!(garbled.status, TaskStatus::Failed, "{garbled:?}");
    assert!(
        garbled
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("not stream-json"),
        "{garbled:?}"
    );
    assert!(!faults.armed(&slot, "turn"));
    let ok = run("MOCK_TEXT: fourth").await;
    assert_eq!(ok.output.as_deref(), Some("fourth"), "{ok:?}");

    // A slow start is taken by the process that replaces a killed one.
    let mut rx = pool.events();
    faults.slow_start(&slot, 300).unwrap();
    pool.kill_slot(&slot).await.unwrap();
    // The kill's failure first: an idle event of the earlier task may still be on its way.
    event(&mut rx, "the kill's failure event", |e| match e {
        PoolEvent::SlotFailed { id, .. } if *id == slot => Some(()),
        _ => None,
    })
    .await;
    slot_idle_again(&mut rx, &slot, "the slot ready after a slow start").await;
    assert!(
        !faults.armed(&slot, "start"),
        "the new process took the slow start"
    );
    let log = std::fs::read_to_string(scratch.join("fake.log")).unwrap();
    let taken: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"event\":\"fault\""))
        .collect();
    assert_eq!(taken.len(), 3, "three faults taken, each once: {taken:?}");
    pool.shutdown().await;
}

//! The library API: pools embedded in a Rust program, several in one process.

use std::time::Duration;

use claude_pool::protocol::TaskStatus;
use claude_pool::{Pool, PoolError, PoolHealth, TaskProgress, TaskSpec};
use claude_pool_tests::procs::assert_gone;
use claude_pool_tests::{Scratch, fake_claude_bin, within};
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(30);

async fn fake_pool(slots: usize, scratch: &Scratch) -> Pool {
    let pool = Pool::builder()
        .slots(slots)
        .claude_bin(fake_claude_bin())
        .env("HOME", scratch.path())
        .env("FAKE_CLAUDE_LOG", scratch.join("fake.log"))
        .env("FAKE_CLAUDE_TURN_MS", "5")
        .build()
        .await
        .expect("pool starts");
    within(LIMIT, "the pool's warm-up", pool.wait_ready())
        .await
        .expect("ready");
    pool
}

fn pids(status: &claude_pool::protocol::tools::PoolStatusReport) -> Vec<u32> {
    status.slots.iter().filter_map(|s| s.pid).collect()
}

#[tokio::test]
async fn two_pools_in_one_process_are_independent() {
    let (sa, sb) = (Scratch::new("pool-a"), Scratch::new("pool-b"));
    let a = fake_pool(1, &sa).await;
    let b = fake_pool(2, &sb).await;
    let ra = within(LIMIT, "pool a's task", a.run(TaskSpec::new("from a")))
        .await
        .unwrap();
    let rb = within(LIMIT, "pool b's task", b.run(TaskSpec::new("from b")))
        .await
        .unwrap();
    assert_eq!(ra.output.as_deref(), Some("MOCK: from a"));
    assert_eq!(rb.output.as_deref(), Some("MOCK: from b"));
    assert_eq!(a.status().await.unwrap().slots.len(), 1);
    assert_eq!(b.status().await.unwrap().slots.len(), 2);

    let a_pids = pids(&a.status().await.unwrap());
    within(LIMIT, "pool a's shutdown", a.shutdown()).await;
    for pid in a_pids {
        assert_gone(pid, LIMIT, "pool a's slot process").await;
    }
    assert!(matches!(a.health(), PoolHealth::Stopped(_)));
    assert!(matches!(
        a.submit(TaskSpec::new("late")).await,
        Err(PoolError::Stopped(_))
    ));
    // Pool b never noticed.
    let rb = within(
        LIMIT,
        "pool b's second task",
        b.run(TaskSpec::new("still b")),
    )
    .await
    .unwrap();
    assert_eq!(rb.status, TaskStatus::Completed);
    b.shutdown().await;
}

#[tokio::test]
async fn the_handle_submits_waits_streams_progress_and_cancels() {
    let scratch = Scratch::new("handle");
    let pool = fake_pool(1, &scratch).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = pool
        .submit(TaskSpec::new("MOCK_STREAM:2:10").progress(tx))
        .await
        .unwrap();
    let report = within(LIMIT, "the streamed task", pool.wait(&id))
        .await
        .unwrap();
    assert_eq!(report.status, TaskStatus::Completed);
    let mut seen = Vec::new();
    while let Ok(p) = rx.try_recv() {
        seen.push(p);
    }
    assert!(
        matches!(seen.first(), Some(TaskProgress::Started { .. })),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .filter(|p| matches!(p, TaskProgress::Assistant { .. }))
            .count()
            >= 2,
        "{seen:?}"
    );

    let long = pool.submit(TaskSpec::new("MOCK_SLEEP:30")).await.unwrap();
    let queued = pool.submit(TaskSpec::new("queued")).await.unwrap();
    let c = within(LIMIT, "cancel of the queued task", pool.cancel(&queued))
        .await
        .unwrap();
    assert!(c.cancelled);
    let c = within(LIMIT, "cancel of the running task", pool.cancel(&long))
        .await
        .unwrap();
    assert_eq!(c.status, TaskStatus::Cancelled);
    assert!(matches!(
        pool.result(&"task-nope".into()).await,
        Err(PoolError::UnknownTask(_))
    ));
    assert!(matches!(
        pool.submit(TaskSpec::new("   ")).await,
        Err(PoolError::InvalidTask(_))
    ));
    pool.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_tasks_and_kills_every_process() {
    let scratch = Scratch::new("shutdown");
    let pool = fake_pool(2, &scratch).await;
    let running = pool.submit(TaskSpec::new("MOCK_CHILD:60")).await.unwrap();
    let other = pool
        .submit(TaskSpec::new("MOCK_IGNORE_TERM"))
        .await
        .unwrap();
    let queued = pool.submit(TaskSpec::new("never runs")).await.unwrap();
    let status = pool.status().await.unwrap();
    let slot_pids = pids(&status);
    let waiters: Vec<_> = [running, other, queued]
        .into_iter()
        .map(|id| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.wait(&id).await })
        })
        .collect();
    within(LIMIT, "the shutdown", pool.shutdown()).await;
    for pid in slot_pids {
        assert_gone(pid, LIMIT, "a slot process after shutdown").await;
    }
    // Every open task was ended and its waiter answered.
    for w in waiters {
        let r = within(LIMIT, "a waiter's answer", w)
            .await
            .unwrap()
            .expect("a report");
        assert_eq!(r.status, TaskStatus::Cancelled, "{r:?}");
        assert!(
            r.error.as_deref().unwrap_or_default().contains("shut down"),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn only_the_most_recent_finished_tasks_are_kept_and_counts_still_add_up() {
    let scratch = Scratch::new("retention");
    let pool = Pool::builder()
        .slots(1)
        .claude_bin(fake_claude_bin())
        .env("HOME", scratch.path())
        .env("FAKE_CLAUDE_TURN_MS", "1")
        .max_finished_tasks(3)
        .build()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = within(LIMIT, "a task", pool.run(TaskSpec::new(format!("t{i}"))))
            .await
            .unwrap();
        ids.push(r.task_id);
    }
    for old in &ids[..2] {
        assert!(
            matches!(pool.result(old).await, Err(PoolError::UnknownTask(_))),
            "{old} was kept"
        );
    }
    for recent in &ids[2..] {
        assert_eq!(
            pool.result(recent).await.unwrap().status,
            TaskStatus::Completed
        );
    }
    let t = pool.status().await.unwrap().tasks;
    assert_eq!((t.total, t.completed), (5, 5), "{t:?}");
    pool.shutdown().await;
}

/// An embedding program sees each worker question on `Pool::approvals()` and answers it
/// with `Pool::approve`; the audit trail says `api`.
#[tokio::test]
async fn an_embedding_program_answers_workers_questions_through_the_api() {
    let scratch = Scratch::new("pool-approvals");
    let pool = Pool::builder()
        .slots(1)
        .claude_bin(fake_claude_bin())
        .env("HOME", scratch.path())
        .env("FAKE_CLAUDE_TURN_MS", "5")
        .permission_mode(claude_pool::protocol::PermissionMode::Default)
        .build()
        .await
        .expect("pool starts");
    let mut asked = pool.approvals();
    let allowed = scratch.join("allowed");
    let denied = scratch.join("denied");
    let a = pool
        .submit(TaskSpec::new(format!(
            "MOCK_TOOL:touch {}",
            allowed.display()
        )))
        .await
        .unwrap();
    let q = within(LIMIT, "the first question", asked.recv())
        .await
        .unwrap();
    assert_eq!(q.task_id, a);
    assert_eq!(q.tool, "Bash");
    assert_eq!(q.summary, format!("touch {}", allowed.display()));
    assert_eq!(
        pool.pending_approvals(Some(&a)).await.unwrap()[0].request_id,
        q.request_id
    );
    pool.approve(
        &q.request_id,
        claude_pool::protocol::approvals::Answer::allow(),
    )
    .await
    .unwrap();
    let r = within(LIMIT, "the allowed task", pool.wait(&a))
        .await
        .unwrap();
    assert_eq!(r.status, TaskStatus::Completed);
    assert!(allowed.exists());
    assert_eq!(r.approvals[0].by, "api");

    let b = pool
        .submit(TaskSpec::new(format!(
            "MOCK_TOOL:touch {}",
            denied.display()
        )))
        .await
        .unwrap();
    let q = within(LIMIT, "the second question", asked.recv())
        .await
        .unwrap();
    pool.approve(
        &q.request_id,
        claude_pool::protocol::approvals::Answer::deny("not from this program"),
    )
    .await
    .unwrap();
    let r = within(LIMIT, "the denied task", pool.wait(&b))
        .await
        .unwrap();
    assert!(!denied.exists());
    assert_eq!(
        r.output.as_deref(),
        Some("MOCK: tool said: not from this program")
    );
    let stats = pool.approval_stats().await.unwrap();
    assert_eq!(stats.pending, 0);
    assert_eq!(
        stats.decided.get(&("allow".to_owned(), "api".to_owned())),
        Some(&1)
    );
    within(LIMIT, "the shutdown", pool.shutdown()).await;
}

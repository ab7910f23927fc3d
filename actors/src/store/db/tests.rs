//! Writes of the store and reading them back (queries are in `tests_query.rs`, the open
//! rules in `tests_open.rs`), and the helpers all three share.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

/// A fresh directory under the system temp dir, removed on drop.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new(name: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("claude-pool-db-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A pending task with the given attributes and everything else empty.
pub(super) fn row(id: &str, kind: &str, project: Option<&str>, enqueued_at_ms: i64) -> TaskRow {
    TaskRow {
        id: id.into(),
        kind: kind.into(),
        project: project.map(Into::into),
        chain_id: None,
        prompt: format!("prompt of {id}"),
        options: serde_json::json!({"model": "sonnet", "n": 1}),
        state: "pending".into(),
        enqueued_at_ms,
        started_at_ms: None,
        finished_at_ms: None,
        slot: None,
        output: None,
        output_bytes: None,
        error: None,
        session_id: None,
        resume_session: None,
        spend_usd: 0.0,
        tokens: [0; 4],
        model: None,
        branch: None,
        commit_sha: None,
        worktree: None,
        approvals: None,
    }
}

/// A finish of `id` in `state` with `output`, everything else empty.
pub(super) fn finish(id: &str, state: &str, at_ms: i64, output: Option<String>) -> Finish {
    Finish {
        id: id.into(),
        state: state.into(),
        finished_at_ms: at_ms,
        output,
        error: None,
        session_id: None,
        spend_usd: 0.0,
        tokens: [0; 4],
        model: None,
        branch: None,
        commit_sha: None,
        worktree: None,
        approvals: None,
        started_at_ms: None,
        slot: None,
    }
}

pub(super) fn memory() -> Db {
    Db::open_memory().expect("open memory store").0
}

#[test]
fn insert_started_finished_round_trip_through_task() {
    let dir = TempDir::new("round-trip");
    let (mut db, recovered) = Db::open(&dir.path().join("store.db"), 7).expect("open");
    assert!(!recovered.run.continued && !recovered.run.id.is_empty());
    assert_eq!(
        recovered,
        Recovered {
            run: recovered.run.clone(),
            ..Recovered::default()
        }
    );
    let mut inserted = row("t1", "build", Some("proj"), 1000);
    inserted.resume_session = Some("s0".into());
    db.apply(&[Write::InsertTask(inserted.clone())])
        .expect("insert");
    assert_eq!(db.task("t1").expect("get"), Some(inserted.clone()));

    db.apply(&[Write::Started {
        id: "t1".into(),
        slot: "slot-0".into(),
        at_ms: 1100,
    }])
    .expect("start");
    let mut done = finish("t1", "completed", 1500, Some("all done".into()));
    done.session_id = Some("s1".into());
    done.spend_usd = 0.25;
    done.tokens = [10, 20, 30, 40];
    done.model = Some("claude-sonnet".into());
    done.branch = Some("pool/t1".into());
    done.commit_sha = Some("abc123".into());
    done.worktree = Some("/tmp/wt".into());
    done.approvals = Some(r#"[{"request_id":"apr-1","outcome":"allow"}]"#.into());
    db.apply(&[Write::Finished(done)]).expect("finish");

    let expected = TaskRow {
        state: "completed".into(),
        started_at_ms: Some(1100),
        finished_at_ms: Some(1500),
        slot: Some("slot-0".into()),
        output: Some("all done".into()),
        output_bytes: Some(8),
        session_id: Some("s1".into()),
        spend_usd: 0.25,
        tokens: [10, 20, 30, 40],
        model: Some("claude-sonnet".into()),
        branch: Some("pool/t1".into()),
        commit_sha: Some("abc123".into()),
        worktree: Some("/tmp/wt".into()),
        approvals: Some(serde_json::json!([{"request_id": "apr-1", "outcome": "allow"}])),
        ..inserted
    };
    let got = db.task("t1").expect("get").expect("stored");
    assert_eq!(got, expected);
    assert!(!got.output_truncated());
    assert_eq!(db.task("nope").expect("get"), None);
    assert_eq!(db.path(), Some(dir.path().join("store.db").as_path()));
}

#[test]
fn requeued_task_is_pending_again_without_start_or_slot() {
    let mut db = memory();
    db.apply(&[
        Write::InsertTask(row("t1", "task", None, 1)),
        Write::Started {
            id: "t1".into(),
            slot: "slot-1".into(),
            at_ms: 2,
        },
        Write::Requeued { id: "t1".into() },
    ])
    .expect("apply");
    assert_eq!(
        db.task("t1").expect("get"),
        Some(row("t1", "task", None, 1))
    );
}

#[test]
fn output_keeps_its_last_51200_bytes_and_its_full_length() {
    let mut db = memory();
    let output: String = (0..60_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    db.apply(&[
        Write::InsertTask(row("t1", "task", None, 1)),
        Write::Finished(finish("t1", "completed", 2, Some(output.clone()))),
    ])
    .expect("apply");
    let got = db.task("t1").expect("get").expect("stored");
    assert_eq!(
        got.output.as_deref(),
        Some(&output[60_000 - OUTPUT_KEEP_BYTES..])
    );
    assert_eq!(got.output_bytes, Some(60_000));
    assert!(got.output_truncated());
}

#[test]
fn output_cut_inside_a_multibyte_char_stays_valid_utf8() {
    let mut db = memory();
    // "€" is 3 bytes: 60_000 bytes of them, cut at 60_000 - 51_200 = 8_800, which is
    // inside a char (8_800 = 3 * 2_933 + 1); the kept tail starts at the next one, 8_802.
    let output = "€".repeat(20_000);
    assert!(!output.is_char_boundary(output.len() - OUTPUT_KEEP_BYTES));
    db.apply(&[
        Write::InsertTask(row("t1", "task", None, 1)),
        Write::Finished(finish("t1", "failed", 2, Some(output.clone()))),
    ])
    .expect("apply");
    let got = db.task("t1").expect("get").expect("stored");
    let kept = got.output.clone().expect("output");
    assert_eq!(kept.len(), OUTPUT_KEEP_BYTES - 2);
    assert!(output.ends_with(&kept));
    assert!(kept.chars().all(|c| c == '€'));
    assert_eq!(got.output_bytes, Some(output.len() as u64));
    assert!(got.output_truncated());
}

#[test]
fn finished_on_a_terminal_task_changes_nothing() {
    let mut db = memory();
    let mut cancel = finish("t1", "cancelled", 5, None);
    cancel.error = Some("cancelled by the caller".into());
    db.apply(&[
        Write::InsertTask(row("t1", "task", None, 1)),
        Write::Finished(cancel),
    ])
    .expect("apply");
    let before = db.task("t1").expect("get");
    let mut late = finish("t1", "completed", 9, Some("late".into()));
    late.spend_usd = 3.0;
    late.session_id = Some("s".into());
    db.apply(&[
        Write::Finished(late),
        Write::Started {
            id: "t1".into(),
            slot: "slot-0".into(),
            at_ms: 10,
        },
        Write::Requeued { id: "t1".into() },
        Write::InsertTask(row("t1", "run", Some("other"), 11)),
    ])
    .expect("apply");
    assert_eq!(db.task("t1").expect("get"), before);
    assert_eq!(before.map(|t| t.state), Some("cancelled".to_owned()));
}

#[test]
fn context_and_chain_writes_are_stored_and_chain_upsert_keeps_created_at() {
    let dir = TempDir::new("context");
    let path = dir.path().join("store.db");
    let chain = |status: &str, created: i64, updated: i64| ChainRow {
        id: "c1".into(),
        status: status.into(),
        error: None,
        report: serde_json::json!({"status": status, "steps": [1, 2]}),
        created_at_ms: created,
        updated_at_ms: updated,
    };
    {
        let (mut db, _) = Db::open(&path, 1).expect("open");
        db.apply(&[
            Write::ContextSet {
                key: "b".into(),
                value: "1".into(),
                at_ms: 1,
            },
            Write::ContextSet {
                key: "a".into(),
                value: "2".into(),
                at_ms: 1,
            },
            Write::ContextSet {
                key: "b".into(),
                value: "3".into(),
                at_ms: 2,
            },
            Write::ContextSet {
                key: "c".into(),
                value: "4".into(),
                at_ms: 2,
            },
            Write::ContextDelete { key: "c".into() },
            Write::Chain(chain("running", 10, 10)),
            Write::Chain(chain("completed", 99, 20)),
        ])
        .expect("apply");
        assert_eq!(
            db.chain("c1").expect("chain"),
            Some(chain("completed", 10, 20))
        );
        assert_eq!(db.chain("c2").expect("chain"), None);
    }
    let (mut db, recovered) = Db::open(&path, 1).expect("reopen");
    assert_eq!(
        recovered.context,
        [("a".to_owned(), "2".to_owned()), ("b".into(), "3".into())]
    );
    assert!(recovered.chains_interrupted.is_empty());
    db.apply(&[Write::ContextClear]).expect("clear");
    drop(db);
    let (_db, recovered) = Db::open(&path, 1).expect("reopen");
    assert!(recovered.context.is_empty());
}

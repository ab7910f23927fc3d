//! The open rules: the crash rule, the lock, and every refusal leaving the file untouched.

use rusqlite::Connection;

use super::tests::{TempDir, finish, row};
use super::*;

#[test]
fn crash_rule_on_reopen_interrupts_running_and_chain_tasks_and_fails_chains() {
    let dir = TempDir::new("crash");
    let path = dir.path().join("store.db");
    let spends = [0.5, 0.25, 1.0, 0.125, 2.0];
    {
        let (mut db, _) = Db::open(&path, 1).expect("open");
        let mut chained = row("chained", "task", None, 4);
        chained.chain_id = Some("c1".into());
        let mut rows = vec![
            row("queued-late", "task", None, 9),
            row("busy", "run", Some("p"), 2),
            row("queued-early", "build", None, 3),
            chained,
            row("done", "task", None, 1),
        ];
        for (r, spend) in rows.iter_mut().zip(spends) {
            r.spend_usd = spend;
        }
        let mut batch: Vec<Write> = rows.into_iter().map(Write::InsertTask).collect();
        let mut done = finish("done", "completed", 5, Some("ok".into()));
        done.spend_usd = spends[4];
        batch.extend([
            Write::Started {
                id: "busy".into(),
                slot: "slot-0".into(),
                at_ms: 6,
            },
            Write::Finished(done),
            Write::ContextSet {
                key: "k".into(),
                value: "v".into(),
                at_ms: 7,
            },
        ]);
        for (id, status) in [("c1", "running"), ("c2", "completed"), ("c3", "pending")] {
            batch.push(Write::Chain(ChainRow {
                id: id.into(),
                status: status.into(),
                error: None,
                report: serde_json::json!({"id": id, "status": status, "steps": []}),
                created_at_ms: 1,
                updated_at_ms: 1,
            }));
        }
        db.apply(&batch).expect("apply");
        // Dropped without any shutdown: what a crash leaves behind.
    }
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let (db, recovered) = Db::open(&path, 2).expect("reopen");

    let pending: Vec<&str> = recovered.pending.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(pending, ["queued-early", "queued-late"]);
    assert_eq!(recovered.interrupted, ["busy", "chained"]);
    assert_eq!(recovered.chains_interrupted, ["c1", "c3"]);
    assert_eq!(recovered.context, [("k".to_owned(), "v".to_owned())]);
    assert_eq!(recovered.spend_usd, spends.iter().sum::<f64>());
    assert_eq!(
        recovered.counts,
        [
            ("completed".to_owned(), 1),
            ("interrupted".into(), 2),
            ("pending".into(), 2)
        ]
    );

    let busy = db.task("busy").expect("get").expect("stored");
    assert_eq!(busy.state, "interrupted");
    assert_eq!(busy.error.as_deref(), Some(INTERRUPTED_RUNNING));
    assert!(
        busy.finished_at_ms
            .is_some_and(|t| u128::try_from(t).expect("positive") >= before)
    );
    let chained = db.task("chained").expect("get").expect("stored");
    assert_eq!(chained.state, "interrupted");
    assert_eq!(chained.error.as_deref(), Some(INTERRUPTED_CHAIN_TASK));
    assert_eq!(
        db.task("done").expect("get").map(|t| t.state),
        Some("completed".into())
    );

    let c1 = db.chain("c1").expect("chain").expect("stored");
    assert_eq!(c1.status, "failed");
    assert_eq!(c1.error.as_deref(), Some(INTERRUPTED_CHAIN));
    assert_eq!(
        c1.report,
        serde_json::json!({"id": "c1", "status": "failed", "steps": [], "error": INTERRUPTED_CHAIN})
    );
    assert_eq!(
        db.chain("c2").expect("chain").map(|c| c.status),
        Some("completed".into())
    );
}

#[test]
fn second_open_of_a_live_store_is_in_use_with_our_pid() {
    let dir = TempDir::new("in-use");
    let path = dir.path().join("store.db");
    let first = Db::open(&path, 4242).expect("open");
    let err = Db::open(&path, 1).expect_err("second open must be refused");
    assert_eq!(
        err,
        OpenError::InUse {
            path: path.clone(),
            pid: Some(4242)
        }
    );
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("pid 4242"),
        "{text}"
    );
    drop(first);
    Db::open(&path, 1).expect("open once the first store is dropped");
}

#[test]
fn random_bytes_file_is_corrupt_and_left_untouched() {
    let dir = TempDir::new("corrupt");
    let path = dir.path().join("store.db");
    let bytes: Vec<u8> = (0..8192_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &bytes).expect("write");
    let err = Db::open(&path, 1).expect_err("random bytes must be refused");
    assert!(
        matches!(&err, OpenError::Corrupt { path: p, .. } if p == &path),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("not a SQLite database") && text.contains("left untouched"),
        "{text}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
}

#[test]
fn foreign_sqlite_database_is_refused_naming_its_tables_and_left_untouched() {
    let dir = TempDir::new("foreign");
    let path = dir.path().join("jobs.db");
    {
        let conn = Connection::open(&path).expect("create");
        conn.execute_batch(
            "CREATE TABLE jobs (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO jobs (name) VALUES ('backup');",
        )
        .expect("schema");
    }
    let bytes = std::fs::read(&path).expect("read");
    let err = Db::open(&path, 1).expect_err("a foreign database must be refused");
    assert_eq!(
        err,
        OpenError::Foreign {
            path: path.clone(),
            application_id: 0,
            tables: vec!["jobs".into()]
        }
    );
    assert!(err.to_string().contains("tables: jobs"), "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
}

#[test]
fn store_with_a_newer_schema_version_is_too_new() {
    let dir = TempDir::new("too-new");
    let path = dir.path().join("store.db");
    {
        let conn = Connection::open(&path).expect("create");
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .expect("app id");
        conn.pragma_update(None, "user_version", 99)
            .expect("version");
        conn.execute_batch("CREATE TABLE tasks (id TEXT)")
            .expect("table");
    }
    let bytes = std::fs::read(&path).expect("read");
    let err = Db::open(&path, 1).expect_err("a newer store must be refused");
    assert_eq!(
        err,
        OpenError::TooNew {
            path: path.clone(),
            version: 99
        }
    );
    assert!(err.to_string().contains("upgrade claude-pool"), "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
}

#[test]
fn path_whose_parent_is_a_regular_file_is_unusable() {
    let dir = TempDir::new("parent-file");
    let parent = dir.path().join("not-a-dir");
    std::fs::write(&parent, b"x").expect("write");
    let path = parent.join("store.db");
    let err = Db::open(&path, 1).expect_err("must be refused");
    assert!(
        matches!(&err, OpenError::Unusable { path: p, .. } if p == &path),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read(&parent).expect("read"), b"x");
}

#[test]
fn directory_path_is_unusable() {
    let dir = TempDir::new("dir-path");
    let err = Db::open(dir.path(), 1).expect_err("must be refused");
    assert!(matches!(err, OpenError::Unusable { .. }), "{err:?}");
}

#[test]
fn missing_parent_directory_is_created_and_a_zero_byte_file_becomes_a_store() {
    let dir = TempDir::new("fresh");
    let nested = dir.path().join("a/b/store.db");
    let (db, _) = Db::open(&nested, 1).expect("open with missing parents");
    assert_eq!(db.path(), Some(nested.as_path()));
    drop(db);

    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").expect("write");
    let (mut db, recovered) = Db::open(&empty, 1).expect("open a zero-byte file");
    assert!(recovered.pending.is_empty());
    db.apply(&[Write::InsertTask(row("t1", "task", None, 1))])
        .expect("insert");
    drop(db);
    let conn = Connection::open(&empty).expect("open");
    let id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .expect("pragma");
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("pragma");
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .expect("pragma");
    assert_eq!(
        (id, version, mode.as_str()),
        (APPLICATION_ID, SCHEMA_VERSION, "wal")
    );
}

#[test]
fn memory_store_starts_empty_and_has_no_path() {
    let (db, recovered) = Db::open_memory().expect("open");
    assert!(!recovered.run.continued && !recovered.run.id.is_empty());
    assert_eq!(
        recovered,
        Recovered {
            run: recovered.run.clone(),
            ..Recovered::default()
        }
    );
    assert_eq!(db.path(), None);
    assert!(db.counts().expect("counts").is_empty());
}

#[test]
fn store_left_by_a_killed_server_reopens_from_its_wal() {
    let dir = TempDir::new("killed");
    let live = dir.path().join("live.db");
    let (mut db, _) = Db::open(&live, 1).expect("open");
    db.apply(&[
        Write::InsertTask(row("t1", "task", None, 1)),
        Write::Started {
            id: "t1".into(),
            slot: "slot-0".into(),
            at_ms: 2,
        },
    ])
    .expect("apply");
    // What kill -9 leaves: the database file and its unmerged WAL, no lock holder.
    let copy = dir.path().join("copy.db");
    let wal = std::fs::read(dir.path().join("live.db-wal")).expect("a WAL with the commits");
    assert!(!wal.is_empty());
    std::fs::copy(&live, &copy).expect("copy db");
    std::fs::write(dir.path().join("copy.db-wal"), wal).expect("copy wal");
    drop(db);

    let (db, recovered) = Db::open(&copy, 2).expect("reopen");
    assert_eq!(recovered.interrupted, ["t1"]);
    assert_eq!(
        db.task("t1").expect("get").map(|t| t.state),
        Some("interrupted".into())
    );
}

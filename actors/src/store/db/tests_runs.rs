//! Runs, servers sharing one store, retention and the WAL: what a new session inherits,
//! what a crash restart keeps, and how big the files may grow.

use super::tests::{TempDir, finish, row};
use super::*;

fn ctx(key: &str, value: &str) -> Write {
    Write::ContextSet {
        key: key.into(),
        value: value.into(),
        at_ms: 1,
    }
}

fn spent(id: &str, usd: f64, at_ms: i64) -> Write {
    let mut f = finish(id, "completed", at_ms, Some("out".into()));
    f.spend_usd = usd;
    Write::Finished(f)
}

#[test]
fn a_graceful_stop_ends_the_run_and_the_next_server_starts_from_nothing_but_the_queue() {
    let dir = TempDir::new("runs-graceful");
    let path = dir.path().join("pool.db");
    let first_run = {
        let (mut db, recovered) = Db::open(&path, 1).expect("open");
        db.apply(&[
            Write::InsertTask(row("done", "task", None, 1)),
            spent("done", 0.25, 2),
            Write::InsertTask(row("queued", "task", None, 3)),
            ctx("style", "terse"),
        ])
        .expect("apply");
        db.close_gracefully().expect("close");
        recovered.run.id
    };
    let (_db, recovered) = Db::open(&path, 2).expect("reopen");
    assert_ne!(recovered.run.id, first_run, "a graceful stop ends the run");
    assert!(!recovered.run.continued);
    assert!(recovered.context.is_empty(), "{:?}", recovered.context);
    assert_eq!(recovered.spend_usd, 0.0);
    // The queued task runs in the new server, and is this run's only task.
    let pending: Vec<_> = recovered.pending.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(pending, ["queued"]);
    assert_eq!(recovered.counts, [("pending".to_owned(), 1)]);
    assert_eq!(
        recovered.lifetime_before.counts_by_kind,
        [("task".to_owned(), "completed".to_owned(), 1)]
    );
    assert_eq!(recovered.lifetime_before.spend_usd, 0.25);
}

#[test]
fn a_server_that_crashed_is_continued_with_its_spend_context_and_counts() {
    let dir = TempDir::new("runs-crash");
    let path = dir.path().join("pool.db");
    let first_run = {
        let (mut db, recovered) = Db::open(&path, 1).expect("open");
        db.apply(&[
            Write::InsertTask(row("a", "task", None, 1)),
            spent("a", 0.5, 2),
            Write::InsertTask(row("b", "run", None, 3)),
            Write::Started {
                id: "b".into(),
                slot: "slot-0".into(),
                at_ms: 4,
            },
            ctx("k", "v"),
        ])
        .expect("apply");
        recovered.run.id
        // dropped without a graceful close: a crash
    };
    let (_db, recovered) = Db::open(&path, 2).expect("reopen");
    assert_eq!(recovered.run.id, first_run);
    assert!(recovered.run.continued);
    assert_eq!(recovered.spend_usd, 0.5);
    assert_eq!(recovered.context, [("k".to_owned(), "v".to_owned())]);
    assert_eq!(recovered.interrupted, ["b"]);
    assert_eq!(
        recovered.counts,
        [("completed".to_owned(), 1), ("interrupted".to_owned(), 1)]
    );
    assert_eq!(recovered.lifetime_before.spend_usd, 0.0);
}

#[test]
fn servers_share_a_project_store_and_only_a_dead_ones_work_is_taken_over() {
    let dir = TempDir::new("shared");
    let path = dir.path().join("pool.db");
    let (mut a, ra) = Db::open_as(&path, 10, Sharing::Shared).expect("first server");
    let (mut b, rb) = Db::open_as(&path, 11, Sharing::Shared).expect("second server at once");
    assert_ne!(
        ra.run.id, rb.run.id,
        "each live server has a run of its own"
    );
    a.apply(&[
        Write::InsertTask(row("a-running", "task", None, 1)),
        Write::Started {
            id: "a-running".into(),
            slot: "slot-0".into(),
            at_ms: 2,
        },
        Write::InsertTask(row("a-queued", "task", None, 3)),
        ctx("a-key", "a"),
    ])
    .expect("a writes");
    b.apply(&[Write::InsertTask(row("b-running", "task", None, 4))])
        .expect("b writes");
    b.apply(&[Write::Started {
        id: "b-running".into(),
        slot: "slot-0".into(),
        at_ms: 5,
    }])
    .expect("b starts");
    // Either server answers for the other's task.
    assert_eq!(
        b.task("a-queued").expect("read").map(|t| t.state),
        Some("pending".to_owned())
    );
    // A third server while both live takes over nothing and sees no one's context.
    let (mut c, rc) = Db::open_as(&path, 12, Sharing::Shared).expect("third server");
    assert!(rc.pending.is_empty() && rc.interrupted.is_empty());
    assert!(rc.context.is_empty());
    c.close_gracefully().expect("c stops gracefully");
    drop(c);
    // The first dies (its lease goes with it); the next server interrupts what it ran and
    // runs what it had queued; the second's running task is left alone.
    let a_lease = a.lease_path().expect("lease").to_owned();
    drop(a);
    let (d, rd) = Db::open_as(&path, 13, Sharing::Shared).expect("after a crash");
    assert_eq!(rd.interrupted, ["a-running"]);
    let pending: Vec<_> = rd.pending.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(pending, ["a-queued"]);
    assert_eq!(rd.dead_servers.len(), 1, "a: {:?}", rd.dead_servers);
    assert!(!a_lease.exists(), "a dead server's lease file is removed");
    assert_eq!(
        d.task("b-running").expect("read").map(|t| t.state),
        Some("running".to_owned())
    );
    // A crashed server's run (with its context) is continued by the next one.
    assert_eq!(rd.run.id, ra.run.id);
    assert_eq!(rd.context, [("a-key".to_owned(), "a".to_owned())]);
}

#[test]
fn an_explicit_store_and_a_project_store_keep_each_other_away() {
    let dir = TempDir::new("sharing-modes");
    let path = dir.path().join("pool.db");
    let shared = Db::open_as(&path, 20, Sharing::Shared).expect("shared");
    let err = Db::open(&path, 21).expect_err("exclusive while shared");
    assert!(matches!(err, OpenError::InUse { .. }), "{err}");
    drop(shared);
    let _exclusive = Db::open(&path, 22).expect("exclusive alone");
    let err = Db::open_as(&path, 23, Sharing::Shared).expect_err("shared while exclusive");
    assert!(
        matches!(err, OpenError::InUse { pid: Some(22), .. }),
        "{err}"
    );
}

#[test]
fn retention_deletes_the_oldest_finished_rows_and_keeps_their_totals() {
    let mut db = super::tests::memory();
    let mut writes = Vec::new();
    for i in 0..10 {
        let id = format!("t{i}");
        let mut r = row(&id, "task", None, i);
        r.prompt = "p".repeat(1000);
        writes.push(Write::InsertTask(r));
        writes.push(spent(&id, 0.1, 100 + i));
    }
    writes.push(Write::InsertTask(row("queued", "task", None, 50)));
    db.apply(&writes).expect("apply");
    // Four rows by count, then a byte cap that holds two of them.
    let pruned = db
        .prune(&Retention {
            max_tasks: 4,
            ..Retention::UNBOUNDED
        })
        .expect("prune by count");
    assert_eq!(pruned, 6);
    let pruned = db
        .prune(&Retention {
            max_bytes: 2 * 1500,
            ..Retention::UNBOUNDED
        })
        .expect("prune by bytes");
    assert_eq!(pruned, 2);
    let kept: Vec<_> = db
        .list(&TaskFilter::default())
        .expect("list")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        kept,
        ["queued", "t9", "t8"],
        "the newest stay, pending never goes"
    );
    let mut counts = db.counts().expect("counts");
    counts.sort();
    assert_eq!(
        counts,
        [("completed".to_owned(), 2), ("pending".to_owned(), 1)]
    );
    // The pruned rows' spend still counts: ten tasks at $0.10 each.
    let total = db.spend_since(0).expect("spend");
    assert!((total - 1.0).abs() < 1e-9, "{total}");
}

#[test]
fn retention_by_age_spares_recent_rows() {
    let mut db = super::tests::memory();
    let now = now_ms();
    let day = 86_400_000;
    db.apply(&[
        Write::InsertTask(row("old", "task", None, now - 40 * day)),
        spent("old", 0.0, now - 40 * day),
        Write::InsertTask(row("new", "task", None, now - day)),
        spent("new", 0.0, now - day),
    ])
    .expect("apply");
    let n = db.prune(&Retention::DEFAULT).expect("prune");
    assert_eq!(n, 1);
    assert!(db.task("old").expect("read").is_none());
    assert!(db.task("new").expect("read").is_some());
}

#[test]
fn a_graceful_close_empties_the_wal_and_leaves_a_complete_database_file() {
    let dir = TempDir::new("wal");
    let path = dir.path().join("pool.db");
    let (mut db, _) = Db::open(&path, 1).expect("open");
    let checkpoints = db.split_checkpoints().expect("split");
    let big = "x".repeat(200_000);
    for i in 0..20 {
        let mut r = row(&format!("t{i}"), "task", None, i);
        r.prompt = big.clone();
        db.apply(&[Write::InsertTask(r)]).expect("insert");
    }
    let (_, wal_before) = db.file_bytes();
    assert!(
        wal_before > 4_000_000,
        "the WAL holds the writes: {wal_before}"
    );
    drop(checkpoints);
    db.close_gracefully().expect("close");
    let (_, wal_after) = db.file_bytes();
    assert_eq!(wal_after, 0, "a graceful close truncates the WAL");
    drop(db);
    // The database file alone (copied away from its WAL) holds every row.
    let copy = dir.path().join("copy.db");
    std::fs::copy(&path, &copy).expect("copy");
    let conn = rusqlite::Connection::open(&copy).expect("open copy");
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 20);
}

#[test]
fn store_files_are_private_whatever_the_umask_made_them() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("modes");
    let path = dir.path().join("nested/pool.db");
    let (mut db, _) = Db::open_as(&path, 1, Sharing::Shared).expect("open");
    db.apply(&[Write::InsertTask(row("t", "task", None, 1))])
        .expect("write");
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let with = |suffix: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(suffix);
        std::path::PathBuf::from(s)
    };
    assert_eq!(mode(path.parent().expect("parent")), 0o700);
    for file in [path.clone(), with("-wal"), with("-shm"), with(".lock")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert_eq!(mode(&with(".servers")), 0o700);
    assert_eq!(mode(db.lease_path().expect("lease")), 0o600);
}

#[test]
fn retention_gives_the_freed_pages_back_to_the_file_system() {
    let dir = TempDir::new("vacuum");
    let path = dir.path().join("pool.db");
    let (mut db, _) = Db::open(&path, 1).expect("open");
    let big = "y".repeat(100_000);
    for i in 0..40 {
        let id = format!("t{i}");
        let mut r = row(&id, "task", None, i);
        r.prompt = big.clone();
        db.apply(&[Write::InsertTask(r), spent(&id, 0.0, 10 + i)])
            .expect("write");
    }
    db.prune(&Retention {
        max_bytes: 500_000,
        ..Retention::UNBOUNDED
    })
    .expect("prune");
    db.close_gracefully().expect("close");
    let (db_bytes, _) = db.file_bytes();
    assert!(
        db_bytes < 1_500_000,
        "4 MB written, 0.5 MB kept: the file is {db_bytes}"
    );
}

#[test]
fn a_live_server_adopts_the_queue_of_one_that_died_and_interrupts_what_it_ran() {
    let dir = TempDir::new("adopt");
    let path = dir.path().join("pool.db");
    let (mut a, _) = Db::open_as(&path, 30, Sharing::Shared).expect("a");
    let (mut b, rb) = Db::open_as(&path, 31, Sharing::Shared).expect("b");
    a.apply(&[
        Write::InsertTask(row("a-queued", "task", None, 1)),
        Write::InsertTask(row("a-running", "task", None, 2)),
        Write::Started {
            id: "a-running".into(),
            slot: "slot-0".into(),
            at_ms: 3,
        },
    ])
    .expect("a writes");
    b.apply(&[Write::InsertTask(row("b-queued", "task", None, 4))])
        .expect("b writes");
    // While a lives, b takes nothing.
    assert_eq!(b.adopt_orphans().expect("adopt"), Orphans::default());
    drop(a);
    let orphans = b.adopt_orphans().expect("adopt");
    let ids: Vec<_> = orphans.pending.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["a-queued"], "its own queue is not adopted again");
    assert_eq!(orphans.interrupted, ["a-running"]);
    assert_eq!(orphans.dead_servers.len(), 1);
    // Now b's, in b's run: a later server of the project leaves it alone while b lives.
    let (_c, rc) = Db::open_as(&path, 32, Sharing::Shared).expect("c");
    assert!(rc.pending.is_empty(), "{:?}", rc.pending);
    assert_ne!(rc.run.id, rb.run.id);
    assert_eq!(b.adopt_orphans().expect("again"), Orphans::default());
}

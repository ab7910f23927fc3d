//! The queries: listing with filters, session lookup, pruning and counts.

use super::tests::{finish, memory, row};
use super::*;

#[test]
fn list_filters_by_project_state_kind_and_limit() {
    let mut db = memory();
    let projects = [Some("a"), Some("b"), None];
    let kinds = ["task", "run", "build"];
    let states = ["pending", "running", "completed", "failed"];
    let mut rows = Vec::new();
    for i in 0..30_i64 {
        let idx = usize::try_from(i).expect("small");
        let mut r = row(
            &format!("t{i:02}"),
            kinds[idx % 3],
            projects[idx / 3 % 3],
            100 + i / 2,
        );
        r.state = states[idx % 4].into();
        rows.push(r);
    }
    // Inserted shuffled, so rowid order differs from id order where enqueued_at ties.
    let mut batch: Vec<Write> = rows.iter().rev().cloned().map(Write::InsertTask).collect();
    batch.rotate_left(7);
    db.apply(&batch).expect("insert");

    let rowid_of = |id: &str| {
        batch
            .iter()
            .position(|w| matches!(w, Write::InsertTask(t) if t.id == id))
    };
    let expect = |filter: &TaskFilter| -> Vec<String> {
        let mut picked: Vec<&TaskRow> = rows
            .iter()
            .filter(|r| filter.project.is_none() || r.project == filter.project)
            .filter(|r| filter.state.as_ref().is_none_or(|s| &r.state == s))
            .filter(|r| filter.kind.as_ref().is_none_or(|k| &r.kind == k))
            .collect();
        picked.sort_by_key(|r| std::cmp::Reverse((r.enqueued_at_ms, rowid_of(&r.id))));
        let limit = filter.limit.unwrap_or(50).clamp(1, 1000);
        picked
            .into_iter()
            .take(limit)
            .map(|r| r.id.clone())
            .collect()
    };
    let some = |s: &str| Some(s.to_owned());
    let filters = [
        TaskFilter::default(),
        TaskFilter {
            limit: Some(7),
            ..Default::default()
        },
        TaskFilter {
            limit: Some(0),
            ..Default::default()
        },
        TaskFilter {
            project: some("a"),
            ..Default::default()
        },
        TaskFilter {
            project: some("b"),
            state: some("pending"),
            ..Default::default()
        },
        TaskFilter {
            state: some("failed"),
            ..Default::default()
        },
        TaskFilter {
            kind: some("build"),
            limit: Some(3),
            ..Default::default()
        },
        TaskFilter {
            project: some("a"),
            state: some("running"),
            kind: some("run"),
            limit: None,
        },
        TaskFilter {
            project: some("zzz"),
            ..Default::default()
        },
    ];
    for filter in &filters {
        let got: Vec<String> = db
            .list(filter)
            .expect("list")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(got, expect(filter), "filter {filter:?}");
    }
    assert_eq!(db.list(&filters[0]).expect("list").len(), 30);
    assert_eq!(db.list(&filters[2]).expect("list").len(), 1);
    let newest = TaskFilter {
        limit: Some(1),
        ..Default::default()
    };
    let full = db.list(&newest).expect("list");
    let newest_id = expect(&newest).remove(0);
    assert_eq!(
        full.iter().collect::<Vec<_>>(),
        rows.iter()
            .filter(|r| r.id == newest_id)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        db.counts().expect("counts"),
        vec![
            ("completed".to_owned(), 7),
            ("failed".to_owned(), 7),
            ("pending".to_owned(), 8),
            ("running".to_owned(), 8)
        ]
    );
}

#[test]
fn session_known_matches_session_and_resume_session() {
    let mut db = memory();
    let mut resuming = row("t2", "task", None, 2);
    resuming.resume_session = Some("s-old".into());
    let mut done = finish("t1", "completed", 3, None);
    done.session_id = Some("s-new".into());
    db.apply(&[
        Write::InsertTask(row("t1", "task", None, 1)),
        Write::InsertTask(resuming),
        Write::Finished(done),
    ])
    .expect("apply");
    assert!(db.session_known("s-new").expect("query"));
    assert!(db.session_known("s-old").expect("query"));
    assert!(!db.session_known("s-other").expect("query"));
}

#[test]
fn prune_finished_keeps_the_newest_terminal_rows_and_every_live_one() {
    let mut db = memory();
    let mut batch = Vec::new();
    for i in 0..10 {
        batch.push(Write::InsertTask(row(&format!("done{i}"), "task", None, i)));
        // Finish order is the reverse of enqueue order: age is the finish time.
        batch.push(Write::Finished(finish(
            &format!("done{i}"),
            "completed",
            100 - i,
            None,
        )));
    }
    batch.push(Write::InsertTask(row("waiting", "task", None, 0)));
    batch.push(Write::InsertTask(row("busy", "task", None, 0)));
    batch.push(Write::Started {
        id: "busy".into(),
        slot: "slot-0".into(),
        at_ms: 1,
    });
    db.apply(&batch).expect("apply");

    assert_eq!(db.prune_finished(3).expect("prune"), 7);
    let mut left: Vec<String> = db
        .list(&TaskFilter::default())
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    left.sort();
    assert_eq!(left, ["busy", "done0", "done1", "done2", "waiting"]);
    assert_eq!(db.prune_finished(3).expect("prune"), 0);
    assert_eq!(db.prune_finished(0).expect("prune"), 3);
    assert_eq!(db.counts().expect("counts").len(), 2);
}

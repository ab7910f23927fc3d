//! `supervision-tree.md` must stay true: its slot state machine is exactly the code's, and
//! every test its failure matrix names exists.

use std::collections::BTreeSet;

use claude_pool::slot::phase::edges;
use claude_pool_tests::workspace_root;

fn doc() -> String {
    std::fs::read_to_string(workspace_root().join("supervision-tree.md"))
        .expect("supervision-tree.md")
}

fn section<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start} marker missing"));
    let to = text[from..]
        .find(end)
        .unwrap_or_else(|| panic!("{end} marker missing"))
        + from;
    &text[from + start.len()..to]
}

fn table_rows(block: &str) -> Vec<Vec<String>> {
    block
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('|') && !l.contains("---"))
        .skip(1) // header
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn the_documented_slot_state_machine_is_exactly_the_codes() {
    let text = doc();
    let documented: BTreeSet<(String, String, String)> = table_rows(section(
        &text,
        "<!-- slot-edges:start -->",
        "<!-- slot-edges:end -->",
    ))
    .into_iter()
    .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
    .collect();
    let code: BTreeSet<(String, String, String)> = edges()
        .into_iter()
        .map(|(f, i, t)| (f.to_string(), i.to_string(), t.to_string()))
        .collect();
    let missing: Vec<_> = code.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&code).collect();
    let table: String = code
        .iter()
        .map(|(f, i, t)| format!("| {f} | {i} | {t} |\n"))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "edges in code but not documented: {missing:?}\nedges documented but not in code: {extra:?}\nthe code's table:\n| from | input | to |\n|---|---|---|\n{table}"
    );
}

#[test]
fn every_test_named_in_the_failure_matrix_exists() {
    let text = doc();
    let rows = table_rows(section(
        &text,
        "<!-- failure-matrix:start -->",
        "<!-- failure-matrix:end -->",
    ));
    assert!(rows.len() >= 10, "the failure matrix is too short");
    let mut sources = String::new();
    let mut dirs: Vec<std::path::PathBuf> = ["tests/it", "actors/src", "protocol/src"]
        .iter()
        .map(|d| workspace_root().join(d))
        .collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    for row in rows {
        let test = row.last().unwrap();
        assert!(
            sources.contains(&format!("fn {test}(")),
            "the failure matrix names `{test}`, which no test defines"
        );
    }
}

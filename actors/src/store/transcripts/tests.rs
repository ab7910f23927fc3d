use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use super::*;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "claude-pool-transcripts-{name}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8 name")
        })
        .collect();
    names.sort();
    names
}

#[test]
fn lines_written_then_flushed_are_the_file_content() {
    let dir = TempDir::new("lines");
    let transcripts = Transcripts::open(dir.path(), 10, u64::MAX).expect("open");
    let sink = transcripts.writer();
    let lines = [
        r#"{"type":"system"}"#,
        r#"{"type":"assistant","text":"héllo"}"#,
        "{}",
    ];
    for line in lines {
        sink.line("task-1", line.as_bytes().to_vec());
    }
    sink.line("task_2", b"other".to_vec());
    sink.flush();
    let path = transcripts.path("task-1").expect("valid id");
    assert_eq!(path, dir.path().join("task-1.ndjson"));
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        format!("{}\n", lines.join("\n"))
    );

    sink.line("task-1", b"more".to_vec());
    sink.close("task-1");
    sink.flush();
    let content = std::fs::read_to_string(&path).expect("read");
    assert!(content.ends_with("{}\nmore\n"), "{content}");
    assert_eq!(
        std::fs::read(dir.path().join("task_2.ndjson")).expect("read"),
        b"other\n"
    );
}

#[test]
fn open_keeps_exactly_the_newest_transcripts() {
    let dir = TempDir::new("retention");
    let start = SystemTime::now() - Duration::from_secs(3600);
    // Written in this order, each a minute newer than the last; names deliberately not in
    // age order, so the test tells mtime order from name order.
    let order = ["e", "a", "d", "b", "c"];
    for (i, name) in order.iter().enumerate() {
        let path = dir.path().join(format!("{name}.ndjson"));
        std::fs::write(&path, b"{}\n").expect("write");
        let file = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open");
        file.set_modified(start + Duration::from_secs(60 * i as u64))
            .expect("set mtime");
    }
    std::fs::write(dir.path().join("notes.txt"), b"not a transcript").expect("write");

    let transcripts = Transcripts::open(dir.path(), 3, u64::MAX).expect("open");
    assert_eq!(
        names(transcripts.dir()),
        ["b.ndjson", "c.ndjson", "d.ndjson", "notes.txt"]
    );
    Transcripts::open(dir.path(), 0, u64::MAX).expect("open");
    assert_eq!(names(dir.path()), ["notes.txt"]);
}

/// Writes `<name>.ndjson` in `dir`, `age` old.
fn old_transcript(dir: &Path, name: &str, age: Duration) {
    let path = dir.join(format!("{name}.ndjson"));
    std::fs::write(&path, b"{}\n").expect("write");
    let file = std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_modified(SystemTime::now() - age)
        .expect("set mtime");
}

fn ndjson(names: &[&str]) -> Vec<String> {
    let mut files: Vec<String> = names.iter().map(|n| format!("{n}.ndjson")).collect();
    files.sort();
    files
}

#[test]
fn writer_keeps_exactly_the_newest_transcripts_after_each_new_one() {
    let dir = TempDir::new("writer-prune");
    // Found by open, oldest first: "z" then "y" (name order would say otherwise).
    old_transcript(dir.path(), "z", Duration::from_secs(7200));
    old_transcript(dir.path(), "y", Duration::from_secs(3600));
    let transcripts = Transcripts::open(dir.path(), 5, u64::MAX).expect("open");
    // Not there at open: the writer never lists the directory, so never counts it.
    std::fs::write(dir.path().join("later.ndjson"), b"{}\n").expect("write");
    let sink = transcripts.writer();
    let mut all = vec!["z".to_owned(), "y".to_owned()];
    for i in 0..20 {
        let id = format!("t{i:03}");
        sink.line(&id, b"{}".to_vec());
        sink.close(&id);
        sink.flush();
        all.push(id.clone());
        let newest: Vec<&str> = all.iter().rev().take(5).map(String::as_str).collect();
        let mut expected = ndjson(&newest);
        expected.push("later.ndjson".to_owned());
        expected.sort();
        assert_eq!(names(dir.path()), expected, "after {id}");
    }
}

#[test]
fn writer_counts_a_task_reopened_after_its_close_once() {
    let dir = TempDir::new("writer-reopen");
    let transcripts = Transcripts::open(dir.path(), 3, u64::MAX).expect("open");
    let sink = transcripts.writer();
    for id in ["a", "b", "c", "a"] {
        sink.line(id, format!("{id} line").into_bytes());
        sink.close(id);
    }
    sink.flush();
    // Counted twice, "a" would have pushed the oldest out.
    assert_eq!(names(dir.path()), ndjson(&["a", "b", "c"]));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a.ndjson")).expect("read"),
        "a line\na line\n"
    );
    // Its second close made "a" the newest closed transcript: "b" goes first.
    sink.line("d", b"d line".to_vec());
    sink.close("d");
    sink.flush();
    assert_eq!(names(dir.path()), ndjson(&["a", "c", "d"]));
}

#[test]
fn writer_never_deletes_an_open_transcript() {
    let dir = TempDir::new("writer-open");
    let transcripts = Transcripts::open(dir.path(), 1, u64::MAX).expect("open");
    let sink = transcripts.writer();
    sink.line("long", b"first".to_vec());
    for i in 0..5 {
        let id = format!("t{i}");
        sink.line(&id, b"{}".to_vec());
        sink.close(&id);
        sink.flush();
        // "long" is open and fills the one place: each short one goes as it closes.
        assert_eq!(names(dir.path()), ndjson(&["long"]), "after {id}");
    }
    sink.line("long", b"last".to_vec());
    sink.close("long");
    sink.flush();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("long.ndjson")).expect("read"),
        "first\nlast\n"
    );
    sink.line("next", b"{}".to_vec());
    sink.flush();
    assert_eq!(names(dir.path()), ndjson(&["next"]));
}

#[test]
fn writer_keeps_at_most_64_files_open_and_loses_no_line() {
    let dir = TempDir::new("lru");
    // Exactly as many as are written: a file reopened after the LRU closed it must not be
    // counted again (it would be deleted, and its lines lost).
    let transcripts = Transcripts::open(dir.path(), MAX_OPEN + 6, u64::MAX).expect("open");
    let sink = transcripts.writer();
    for round in 0..3 {
        for i in 0..(MAX_OPEN + 6) {
            sink.line(&format!("t{i}"), format!("line {round}").into_bytes());
        }
    }
    sink.flush();
    for i in 0..(MAX_OPEN + 6) {
        let text = std::fs::read_to_string(dir.path().join(format!("t{i}.ndjson"))).expect("read");
        assert_eq!(text, "line 0\nline 1\nline 2\n", "t{i}");
    }
}

#[test]
fn read_pages_through_the_whole_transcript_without_splitting_lines() {
    let dir = TempDir::new("read");
    let transcripts = Transcripts::open(dir.path(), 10, u64::MAX).expect("open");
    let sink = transcripts.writer();
    let mut expected = String::new();
    for i in 0..50 {
        let line = format!(r#"{{"n":{i},"text":"{}"}}"#, "ü€".repeat(i % 7));
        expected.push_str(&line);
        expected.push('\n');
        sink.line("t1", line.into_bytes());
    }
    sink.flush();
    let total = expected.len() as u64;

    let mut offset = 0;
    let mut seen = String::new();
    let mut pages = 0;
    loop {
        let page = transcripts
            .read("t1", offset, 100)
            .expect("read")
            .expect("exists");
        assert_eq!((page.offset, page.total_bytes), (offset, total));
        assert!(page.text.len() <= 100 && !page.text.is_empty());
        assert!(
            page.text.ends_with('\n'),
            "page at {offset} split a line: {:?}",
            page.text
        );
        seen.push_str(&page.text);
        pages += 1;
        match page.next_offset {
            Some(next) => offset = next,
            None => break,
        }
    }
    assert_eq!(seen, expected);
    assert!(pages > 10, "{pages} pages");

    let past = transcripts
        .read("t1", total + 5, 100)
        .expect("read")
        .expect("exists");
    assert_eq!((past.text.as_str(), past.next_offset), ("", None));
    assert_eq!(transcripts.read("absent", 0, 100).expect("read"), None);
}

#[test]
fn read_of_a_page_without_a_line_end_never_splits_a_character() {
    let dir = TempDir::new("read-utf8");
    let transcripts = Transcripts::open(dir.path(), 10, u64::MAX).expect("open");
    let line = "€".repeat(10);
    std::fs::write(dir.path().join("t1.ndjson"), format!("{line}\n")).expect("write");
    let page = transcripts.read("t1", 0, 8).expect("read").expect("exists");
    assert_eq!((page.text.as_str(), page.next_offset), ("€€", Some(6)));
    let tiny = transcripts.read("t1", 0, 1).expect("read").expect("exists");
    assert_eq!((tiny.text.as_str(), tiny.next_offset), ("€", Some(3)));
}

#[test]
fn bad_task_ids_have_no_path_and_no_transcript() {
    let dir = TempDir::new("bad-id");
    let transcripts = Transcripts::open(dir.path(), 10, u64::MAX).expect("open");
    let too_long = "a".repeat(65);
    for id in ["", "../etc/passwd", "a/b", "a.b", "é", too_long.as_str()] {
        assert_eq!(transcripts.path(id), None, "{id:?}");
        assert_eq!(transcripts.read(id, 0, 100).expect("read"), None, "{id:?}");
    }
    assert!(transcripts.path(&"a".repeat(64)).is_some());
    let sink = transcripts.writer();
    sink.line("../escape", b"x".to_vec());
    sink.flush();
    assert!(names(dir.path()).is_empty());
    assert!(!dir.path().join("../escape.ndjson").exists());
}

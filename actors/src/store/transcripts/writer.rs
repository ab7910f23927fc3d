//! The transcript writer thread: owns every open transcript file.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::SystemTime;

use super::{MAX_OPEN, PRUNE_EVERY, transcript_path, valid_task_id};

/// What a [`super::TranscriptSink`] asks of the writer thread.
#[derive(Debug)]
pub(super) enum Cmd {
    /// Append `line` and a newline to the task's transcript.
    Line { task: String, line: Vec<u8> },
    /// Flush and close the task's transcript.
    Close { task: String },
    /// Flush every open transcript, then answer.
    Flush(mpsc::SyncSender<()>),
}

/// One open transcript.
struct Open {
    out: BufWriter<File>,
    /// When it was last written (the writer's tick), to close the least recently used.
    used: u64,
}

/// The writer thread's state.
pub(super) struct Writer {
    dir: PathBuf,
    keep: usize,
    open: HashMap<String, Open>,
    /// Counts commands; the LRU clock.
    tick: u64,
    /// Closes since the last prune.
    closes: u64,
    /// Tasks whose I/O error was already logged (cleared on close).
    warned: HashSet<String>,
}

impl Writer {
    pub(super) fn new(dir: PathBuf, keep: usize) -> Writer {
        Writer {
            dir,
            keep,
            open: HashMap::new(),
            tick: 0,
            closes: 0,
            warned: HashSet::new(),
        }
    }

    /// Serves commands until every sender is gone, then flushes what is open.
    pub(super) fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        while let Ok(cmd) = rx.recv() {
            self.tick += 1;
            match cmd {
                Cmd::Line { task, line } => self.on_line(task, &line),
                Cmd::Close { task } => self.on_close(&task),
                Cmd::Flush(done) => {
                    self.flush_all();
                    let _ = done.send(());
                }
            }
        }
        self.flush_all();
    }

    fn on_line(&mut self, task: String, line: &[u8]) {
        if !self.open.contains_key(&task) {
            let Some(file) = self.create(&task) else {
                return;
            };
            if self.open.len() >= MAX_OPEN {
                self.close_least_recent();
            }
            self.open.insert(
                task.clone(),
                Open {
                    out: BufWriter::new(file),
                    used: 0,
                },
            );
        }
        let tick = self.tick;
        let Some(open) = self.open.get_mut(&task) else {
            return;
        };
        open.used = tick;
        let written = open
            .out
            .write_all(line)
            .and_then(|()| open.out.write_all(b"\n"));
        if let Err(e) = written {
            self.open.remove(&task);
            self.warn(&task, "cannot write", &e);
        }
    }

    fn on_close(&mut self, task: &str) {
        if let Some(mut open) = self.open.remove(task)
            && let Err(e) = open.out.flush()
        {
            self.warn(task, "cannot write", &e);
        }
        self.warned.remove(task);
        self.closes += 1;
        if self.closes >= PRUNE_EVERY {
            self.closes = 0;
            let open = &self.open;
            let protected = |name: &str| {
                name.strip_suffix(".ndjson")
                    .is_some_and(|id| open.contains_key(id))
            };
            if let Err(e) = prune(&self.dir, self.keep, protected) {
                tracing::warn!(dir = %self.dir.display(), "cannot prune transcripts: {e}");
            }
        }
    }

    /// Opens the task's file for appending, or logs why not.
    fn create(&mut self, task: &str) -> Option<File> {
        let Some(path) = transcript_path(&self.dir, task) else {
            if self.warned.insert(task.to_owned()) {
                tracing::warn!(
                    task,
                    "transcript dropped: the task id is not a safe file name"
                );
            }
            return None;
        };
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(file) => Some(file),
            Err(e) => {
                self.warn(task, "cannot open", &e);
                None
            }
        }
    }

    fn close_least_recent(&mut self) {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, open)| open.used)
            .map(|(t, _)| t.clone());
        if let Some(task) = oldest
            && let Some(mut open) = self.open.remove(&task)
            && let Err(e) = open.out.flush()
        {
            self.warn(&task, "cannot write", &e);
        }
    }

    fn flush_all(&mut self) {
        let mut failed = Vec::new();
        for (task, open) in &mut self.open {
            if let Err(e) = open.out.flush() {
                failed.push((task.clone(), e));
            }
        }
        for (task, e) in failed {
            self.open.remove(&task);
            self.warn(&task, "cannot write", &e);
        }
    }

    fn warn(&mut self, task: &str, what: &str, e: &std::io::Error) {
        if self.warned.insert(task.to_owned()) {
            let dir = self.dir.display();
            tracing::warn!(
                task,
                dir = %dir,
                "{what} the transcript (its later lines may be lost): {e}"
            );
        }
    }
}

/// Deletes the oldest transcripts in `dir` (by modification time, then name) beyond `keep`,
/// sparing files `protected` names (they are being written). Only `<valid id>.ndjson` files
/// count; a file that cannot be deleted is logged and skipped.
pub(super) fn prune(
    dir: &Path,
    keep: usize,
    protected: impl Fn(&str) -> bool,
) -> std::io::Result<()> {
    let mut found: Vec<(SystemTime, String)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.strip_suffix(".ndjson").is_some_and(valid_task_id) {
            continue;
        }
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_file() {
            found.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), name));
        }
    }
    if found.len() <= keep {
        return Ok(());
    }
    found.sort();
    let excess = found.len() - keep;
    for (_, name) in found.into_iter().take(excess) {
        if protected(&name) {
            continue;
        }
        let path = dir.join(&name);
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(file = %path.display(), "cannot delete an old transcript: {e}");
        }
    }
    Ok(())
}

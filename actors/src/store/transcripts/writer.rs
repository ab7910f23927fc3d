//! The transcript writer thread: owns every open transcript file, and the retention list.
//!
//! Retention is incremental: [`scan`] lists the directory once (at [`super::Transcripts::open`]),
//! and from then on the writer keeps the list of transcripts itself, oldest first, and deletes
//! the oldest with one `remove_file` each whenever it knows of more than `keep`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::SystemTime;

use super::{MAX_ID_LEN, MAX_OPEN, transcript_path, valid_task_id};

/// What a [`super::TranscriptSink`] asks of the writer thread.
#[derive(Debug)]
pub(super) enum Cmd {
    /// Append `line` and a newline to the task's transcript.
    Line { task: TaskId, line: Vec<u8> },
    /// Flush and close the task's transcript.
    Close { task: TaskId },
    /// Flush every open transcript, then answer.
    Flush(mpsc::SyncSender<()>),
}

/// A task id as a [`Cmd`] carries it: inline when it is no longer than a valid id can be, so
/// sending a line allocates nothing.
pub(super) enum TaskId {
    /// The first `len` bytes of `bytes` are the id (whole UTF-8: copied from a `&str`).
    Inline { len: u8, bytes: [u8; MAX_ID_LEN] },
    /// A longer id (never a valid one; kept to name it in the log).
    Heap(Box<str>),
}

impl TaskId {
    pub(super) fn new(id: &str) -> TaskId {
        match u8::try_from(id.len()) {
            Ok(len) if id.len() <= MAX_ID_LEN => {
                let mut bytes = [0; MAX_ID_LEN];
                bytes[..id.len()].copy_from_slice(id.as_bytes());
                TaskId::Inline { len, bytes }
            }
            _ => TaskId::Heap(id.into()),
        }
    }

    pub(super) fn as_str(&self) -> &str {
        match self {
            // Never fails: the bytes are a whole `&str`.
            TaskId::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            TaskId::Heap(id) => id,
        }
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TaskId").field(&self.as_str()).finish()
    }
}

/// One open transcript.
struct Open {
    out: BufWriter<File>,
    /// When it was last written (the writer's tick), to close the least recently used.
    used: u64,
}

impl Open {
    fn write(&mut self, line: &[u8], tick: u64) -> std::io::Result<()> {
        self.used = tick;
        self.out.write_all(line)?;
        self.out.write_all(b"\n")
    }
}

/// The writer thread's state.
///
/// Every transcript the writer knows (found by [`scan`], or created since) is a key of
/// `known`; `known.len()` is the count held against `keep`. A transcript's age is when its
/// file was last closed (which is about its modification time, the order [`scan`] uses): each
/// close pushes a `(name, stamp)` entry on `order` and records the stamp in `known`, so an
/// older entry of the same name is stale and skipped when it comes up. An open file has no
/// entry that counts (it gets one when it closes) and is never deleted.
pub(super) struct Writer {
    dir: PathBuf,
    keep: usize,
    /// The most bytes all transcripts may take together.
    max_bytes: u64,
    /// Bytes of each known transcript (as found, plus what this writer appended).
    sizes: HashMap<Arc<str>, u64>,
    /// Their sum.
    total: u64,
    /// Keyed by the same `Arc` as `known`, so a task costs one name allocation.
    open: HashMap<Arc<str>, Open>,
    /// Counts commands; the LRU clock.
    tick: u64,
    /// Every transcript on disk this writer knows -> the stamp of its live `order` entry
    /// (0: none yet, it is open and was never closed).
    known: HashMap<Arc<str>, u64>,
    /// Closed transcripts, oldest first; an entry whose stamp is not its name's in `known`
    /// is stale.
    order: VecDeque<(Arc<str>, u64)>,
    /// The last stamp handed out.
    stamp: u64,
    /// Tasks whose I/O error was already logged (cleared on close).
    warned: HashSet<String>,
}

impl Writer {
    /// A writer for `dir` that knows `found` (oldest first), as [`scan`] returned it.
    pub(super) fn new(
        dir: PathBuf,
        keep: usize,
        max_bytes: u64,
        found: &[(Arc<str>, u64)],
    ) -> Writer {
        let mut writer = Writer {
            dir,
            keep,
            max_bytes,
            sizes: HashMap::with_capacity(found.len()),
            total: 0,
            open: HashMap::new(),
            tick: 0,
            known: HashMap::with_capacity(found.len()),
            order: VecDeque::with_capacity(found.len()),
            stamp: 0,
            warned: HashSet::new(),
        };
        for (name, size) in found {
            writer.sizes.insert(Arc::clone(name), *size);
            writer.total += size;
            writer.stamp += 1;
            writer.known.insert(Arc::clone(name), writer.stamp);
            writer.order.push_back((Arc::clone(name), writer.stamp));
        }
        writer.enforce_keep();
        writer
    }

    /// Serves commands until every sender is gone, then flushes what is open.
    pub(super) fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        while let Ok(cmd) = rx.recv() {
            self.tick += 1;
            match cmd {
                Cmd::Line { task, line } => self.on_line(task.as_str(), &line),
                Cmd::Close { task } => self.on_close(task.as_str()),
                Cmd::Flush(done) => {
                    self.flush_all();
                    let _ = done.send(());
                }
            }
        }
        self.flush_all();
    }

    fn on_line(&mut self, task: &str, line: &[u8]) {
        let tick = self.tick;
        let written = match self.open.get_mut(task) {
            Some(open) => open.write(line, tick),
            None => match self.open_file(task) {
                Some(open) => open.write(line, tick),
                None => return,
            },
        };
        if let Err(e) = written {
            self.warn(task, "cannot write", &e);
            self.close_file(task);
            return;
        }
        let grown = line.len() as u64 + 1;
        if let Some(size) = self.sizes.get_mut(task) {
            *size += grown;
        }
        self.total += grown;
        if self.total > self.max_bytes {
            self.enforce_keep();
        }
    }

    fn on_close(&mut self, task: &str) {
        self.close_file(task);
        self.warned.remove(task);
    }

    /// Opens the task's file for appending (creating it, and counting it, when the task is
    /// not known yet), or logs why not.
    fn open_file(&mut self, task: &str) -> Option<&mut Open> {
        let Some(path) = transcript_path(&self.dir, task) else {
            if self.warned.insert(task.to_owned()) {
                tracing::warn!(
                    task,
                    "transcript dropped: the task id is not a safe file name"
                );
            }
            return None;
        };
        let file = match crate::private::open_append(&path) {
            // Held shared while open: another server of the project sharing the directory
            // then knows it is being written and never deletes it (see `enforce_keep`).
            Ok(file) => {
                let _ = file.try_lock_shared();
                file
            }
            Err(e) => {
                self.warn(task, "cannot open", &e);
                return None;
            }
        };
        let (name, created) = match self.known.get_key_value(task) {
            Some((name, _)) => (Arc::clone(name), false),
            None => (Arc::<str>::from(task), true),
        };
        // In `open` (and the most recently used) before anything else is closed or deleted,
        // so that neither can pick this file.
        self.open.insert(
            Arc::clone(&name),
            Open {
                out: BufWriter::new(file),
                used: self.tick,
            },
        );
        if self.open.len() > MAX_OPEN {
            self.close_least_recent();
        }
        if created {
            self.sizes.insert(Arc::clone(&name), 0);
            self.known.insert(name, 0);
            self.enforce_keep();
        }
        self.open.get_mut(task)
    }

    /// Flushes and closes the task's file, if it is open; it becomes the newest closed
    /// transcript.
    fn close_file(&mut self, task: &str) {
        let Some((name, mut open)) = self.open.remove_entry(task) else {
            return;
        };
        let flushed = open.out.flush();
        drop(open);
        if let Err(e) = flushed {
            self.warn(task, "cannot write", &e);
        }
        self.stamp += 1;
        let stamp = self.stamp;
        self.known.insert(Arc::clone(&name), stamp);
        self.order.push_back((name, stamp));
        // Stale entries pile up as files close more than once (LRU); drop them before they
        // outnumber the live ones (amortised O(1) a close).
        if self.order.len() > 2 * self.known.len() + MAX_OPEN {
            let known = &self.known;
            self.order
                .retain(|(name, stamp)| known.get(&**name) == Some(stamp));
        }
        self.enforce_keep();
    }

    /// Deletes the oldest closed transcripts while more than `keep` are known or they
    /// take more than `max_bytes` together.
    ///
    /// Every entry is popped at most once: a stale one is dropped, so is the entry of a file
    /// that is open again (it is spared, and gets a new entry when it closes).
    fn enforce_keep(&mut self) {
        while self.known.len() > self.keep || self.total > self.max_bytes {
            let Some((name, stamp)) = self.order.pop_front() else {
                return;
            };
            if self.known.get(&*name) != Some(&stamp) || self.open.contains_key(&*name) {
                continue;
            }
            self.known.remove(&*name);
            self.total = self
                .total
                .saturating_sub(self.sizes.remove(&*name).unwrap_or(0));
            // Another server of the project (the directory is the project's) is writing it:
            // it is that server's to count, not this one's to delete.
            if transcript_path(&self.dir, &name).is_some_and(|p| held_elsewhere(&p)) {
                continue;
            }
            if let Some(path) = transcript_path(&self.dir, &name) {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!(
                        file = %path.display(),
                        "cannot delete an old transcript (no longer counted): {e}"
                    ),
                }
            }
        }
    }

    fn close_least_recent(&mut self) {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, open)| open.used)
            .map(|(task, _)| Arc::clone(task));
        if let Some(task) = oldest {
            self.close_file(&task);
        }
    }

    fn flush_all(&mut self) {
        let mut failed = Vec::new();
        for (task, open) in &mut self.open {
            if let Err(e) = open.out.flush() {
                failed.push((Arc::clone(task), e));
            }
        }
        for (task, e) in failed {
            self.warn(&task, "cannot write", &e);
            self.close_file(&task);
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

/// Whether another open file description holds a lock on `path` (a writer of another
/// server has it open).
fn held_elsewhere(path: &Path) -> bool {
    match File::open(path) {
        Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

/// Lists `dir` once: deletes the oldest transcripts (by modification time, then name) beyond
/// `keep`, or beyond `max_bytes` together, and returns the task ids of the others with their
/// sizes, oldest first. Only `<valid id>.ndjson` files count; a file that cannot be deleted
/// is logged and no longer counted.
pub(super) fn scan(
    dir: &Path,
    keep: usize,
    max_bytes: u64,
) -> std::io::Result<Vec<(Arc<str>, u64)>> {
    let mut found: Vec<(SystemTime, String, u64)> = Vec::new();
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
            found.push((
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                name,
                meta.len(),
            ));
        }
    }
    // By file name on a tie, as before; the ids are the names without ".ndjson".
    found.sort();
    let mut excess = found.len().saturating_sub(keep);
    // The newest that fit in `max_bytes` together stay.
    let mut bytes = 0u64;
    for (i, (_, _, len)) in found.iter().enumerate().rev() {
        bytes = bytes.saturating_add(*len);
        if bytes > max_bytes {
            excess = excess.max(i + 1);
            break;
        }
    }
    let mut kept = Vec::with_capacity(found.len() - excess.min(found.len()));
    for (i, (_, name, len)) in found.into_iter().enumerate() {
        if i >= excess {
            kept.push((
                Arc::from(name.strip_suffix(".ndjson").unwrap_or(&name)),
                len,
            ));
            continue;
        }
        let path = dir.join(&name);
        if held_elsewhere(&path) {
            continue; // another server of the project is writing it
        }
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != ErrorKind::NotFound
        {
            tracing::warn!(file = %path.display(), "cannot delete an old transcript: {e}");
        }
    }
    Ok(kept)
}

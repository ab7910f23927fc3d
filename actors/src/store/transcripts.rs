//! Per-task transcripts: every stream-json line a task's Claude process printed, appended to
//! `<dir>/<task_id>.ndjson`.
//!
//! Writing happens on a thread of its own ([`Transcripts::writer`]) so that a slow disk never
//! holds up the slot reading Claude's output: [`TranscriptSink::line`] only sends on an
//! unbounded channel (a valid task id travels inline, so a line costs no allocation beyond its
//! own bytes). The thread keeps a buffered file per open task (at most [`MAX_OPEN`], least
//! recently used closed first). An I/O error is logged once per task and the lines it affects
//! are lost; the thread never panics. It ends when every sink is dropped.
//!
//! Retention is incremental. [`Transcripts::open`] lists the directory once, deletes the
//! oldest transcripts (by modification time, then name) beyond `keep`, and remembers the rest,
//! oldest first. The writer starts from that list and never lists the directory again: a
//! task's first line creates its file and counts it (a task known already, say one written to
//! again after its close, reopens its file and is not counted twice), each close of a file
//! makes that transcript the newest, and whenever more than `keep` are known the oldest closed
//! ones are deleted, one `remove_file` each. A file that is open is never deleted (one the LRU
//! closed is closed, as before). Files put in the directory by anything else after `open` are
//! not counted. The same list caps the bytes the transcripts take together: the oldest
//! closed ones go while the total is over `max_bytes` (a task's file grows as its lines are
//! written, so the total is known without listing the directory).

mod writer;

use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use writer::{Cmd, TaskId, Writer};

/// Most transcript files the writer keeps open at once.
pub const MAX_OPEN: usize = 64;
/// Longest valid task id, in bytes.
const MAX_ID_LEN: usize = 64;

/// The transcript directory and how many transcripts it keeps.
#[derive(Clone)]
pub struct Transcripts {
    /// Where the `.ndjson` files live.
    dir: PathBuf,
    /// How many transcripts are kept (the newest).
    keep: usize,
    /// The most bytes they may take together.
    max_bytes: u64,
    /// The task ids and sizes of the transcripts [`Transcripts::open`] kept, oldest first:
    /// where a writer's retention list starts.
    found: Arc<[(Arc<str>, u64)]>,
}

impl std::fmt::Debug for Transcripts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcripts")
            .field("dir", &self.dir)
            .field("keep", &self.keep)
            .field("found", &self.found.len())
            .finish()
    }
}

/// A slice of one transcript, as [`Transcripts::read`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptPage {
    /// The bytes read, as text (invalid UTF-8 in the file is replaced).
    pub text: String,
    /// Where in the file `text` starts.
    pub offset: u64,
    /// Where the next page starts; `None` when this page reaches the end of the file.
    pub next_offset: Option<u64>,
    /// The file's size when it was read.
    pub total_bytes: u64,
}

/// Sends lines to a writer thread (or, on a slot host, to the scheduler); clone it freely.
/// The thread ends when the last clone is dropped.
#[derive(Clone)]
pub struct TranscriptSink {
    to: SinkTo,
}

/// Where a forwarding sink's lines go: a task's line, or `None` when its transcript closes.
type Forward = Arc<dyn Fn(&str, Option<Vec<u8>>) + Send + Sync>;

#[derive(Clone)]
enum SinkTo {
    /// To the writer thread.
    Writer(mpsc::Sender<Cmd>),
    /// To a function, called on the sender's thread (so a line is sent before whatever its
    /// sender does next).
    Forward(Forward),
}

impl fmt::Debug for TranscriptSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.to {
            SinkTo::Writer(_) => "TranscriptSink(writer)",
            SinkTo::Forward(_) => "TranscriptSink(forward)",
        })
    }
}

impl Transcripts {
    /// Creates `dir` if needed and deletes the oldest transcripts (by modification time,
    /// then name) beyond `keep` or beyond `max_bytes` together. This is the only time the
    /// directory is listed. The directory is private (0700), and so is every transcript.
    pub fn open(dir: &Path, keep: usize, max_bytes: u64) -> std::io::Result<Transcripts> {
        crate::private::create_dir_all(dir)?;
        let found = writer::scan(dir, keep, max_bytes)?;
        Ok(Transcripts {
            dir: dir.to_owned(),
            keep,
            max_bytes,
            found: found.into(),
        })
    }

    /// The transcript directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<task_id>.ndjson`; None for an id that is not [A-Za-z0-9_-]{1,64}.
    pub fn path(&self, task_id: &str) -> Option<PathBuf> {
        transcript_path(&self.dir, task_id)
    }

    /// Starts the writer thread, its retention list seeded with what [`Transcripts::open`]
    /// kept.
    ///
    /// Start one writer per `open`: a second one would not know the files the first created,
    /// and the two would not spare each other's open files.
    ///
    /// If the thread cannot be spawned, that is logged and the sink's lines are dropped.
    pub fn writer(&self) -> TranscriptSink {
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(self.dir.clone(), self.keep, self.max_bytes, &self.found);
        let spawned = std::thread::Builder::new()
            .name("transcripts".into())
            .spawn(move || writer.run(rx));
        if let Err(e) = spawned {
            tracing::warn!(dir = %self.dir.display(), "cannot start the transcript writer: {e}");
        }
        TranscriptSink {
            to: SinkTo::Writer(tx),
        }
    }

    /// Up to `max_bytes` from byte `offset` of the task's transcript (cut back to a line end
    /// when possible, never splitting UTF-8), with the file's total size; None when there is
    /// none.
    ///
    /// A page always makes progress: `max_bytes` below 4 counts as 4, and a page that holds
    /// no line end is cut at the last whole character instead.
    pub fn read(
        &self,
        task_id: &str,
        offset: u64,
        max_bytes: usize,
    ) -> std::io::Result<Option<TranscriptPage>> {
        let Some(path) = self.path(task_id) else {
            return Ok(None);
        };
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let total_bytes = file.metadata()?.len();
        let mut buf = Vec::new();
        if offset < total_bytes {
            file.seek(SeekFrom::Start(offset))?;
            let max = u64::try_from(max_bytes.max(4)).unwrap_or(u64::MAX);
            file.take(max).read_to_end(&mut buf)?;
        }
        let end_of_file = offset.saturating_add(buf.len() as u64) >= total_bytes;
        if !end_of_file {
            buf.truncate(page_cut(&buf));
        }
        let read = buf.len() as u64;
        let next = offset.saturating_add(read);
        Ok(Some(TranscriptPage {
            text: String::from_utf8(buf)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            offset,
            next_offset: (next < total_bytes).then_some(next),
            total_bytes,
        }))
    }
}

impl TranscriptSink {
    /// A sink whose lines go to `to` instead of a file: `Some` line of a task, or `None`
    /// when its transcript is closed (a slot host sends its tasks' transcripts to the
    /// scheduler this way).
    pub fn forwarding(
        to: impl Fn(&str, Option<Vec<u8>>) + Send + Sync + 'static,
    ) -> TranscriptSink {
        TranscriptSink {
            to: SinkTo::Forward(Arc::new(to)),
        }
    }

    /// Appends one line (a newline is added) to the task's transcript; never blocks on disk.
    pub fn line(&self, task_id: &str, line: Vec<u8>) {
        // A send fails only when the writer thread is gone; the line is lost, as documented.
        match &self.to {
            SinkTo::Writer(tx) => {
                let _ = tx.send(Cmd::Line {
                    task: TaskId::new(task_id),
                    line,
                });
            }
            SinkTo::Forward(to) => to(task_id, Some(line)),
        }
    }

    /// Flushes and closes the task's file.
    pub fn close(&self, task_id: &str) {
        match &self.to {
            SinkTo::Writer(tx) => {
                let _ = tx.send(Cmd::Close {
                    task: TaskId::new(task_id),
                });
            }
            SinkTo::Forward(to) => to(task_id, None),
        }
    }

    /// Returns once everything sent before it is on disk (for shutdown and tests).
    pub fn flush(&self) {
        let SinkTo::Writer(tx) = &self.to else {
            return;
        };
        let (done, wait) = mpsc::sync_channel(1);
        if tx.send(Cmd::Flush(done)).is_ok() {
            // An error means the thread ended, which also flushed everything.
            let _ = wait.recv();
        }
    }
}

/// Whether `id` is [A-Za-z0-9_-]{1,64}: safe as a file name, whatever a client sends.
pub fn valid_task_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `<dir>/<task_id>.ndjson` for a valid id.
fn transcript_path(dir: &Path, task_id: &str) -> Option<PathBuf> {
    valid_task_id(task_id).then(|| dir.join(format!("{task_id}.ndjson")))
}

/// Where a page that does not reach the end of the file stops: after its last newline, or
/// else at its last whole character, or else (no whole character at all) where it is.
fn page_cut(buf: &[u8]) -> usize {
    if let Some(newline) = buf.iter().rposition(|&b| b == b'\n') {
        return newline + 1;
    }
    match std::str::from_utf8(buf) {
        Ok(_) => buf.len(),
        Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
        Err(_) => buf.len(),
    }
}

#[cfg(test)]
mod tests;

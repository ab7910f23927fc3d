//! The store actor and its writer thread.
//!
//! **Place in the tree.** Child of the root supervisor, started before the scheduler. It is
//! not restarted: it holds the store's lock, and the file is opened (and checked) once, by
//! [`crate::Pool::start`], before any actor exists.
//!
//! **Owns** the SQLite connection, on a thread of its own: SQLite is blocking, and the
//! scheduler must never wait on a disk. Writers hold a [`StoreWriter`] (a queue into that
//! thread) and never block: the thread takes whatever has queued up and commits it in one
//! transaction (group commit), then runs each write's completion. A task's insert completes
//! the caller's submit, so a task is durable before its id is returned, while the
//! scheduler goes on dispatching others. Reads run on the same thread, after the writes
//! queued before them, so a read sees every write that came before it.
//!
//! **Failure rule.** A batch that fails to commit is retried three times (50 ms, 200 ms,
//! 1 s); then its writes are dropped with an error in the log, their completions get the
//! error (a submit is refused, and nothing of it runs), and the store reads as failing in
//! [`StoreWriter::health`] until a later batch commits.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;

use super::db::{Db, Retention, Write};

/// What runs after a batch commits: `Ok` once durable, or why it could not be written.
pub type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;

enum Op {
    Write(Box<Write>, Option<Completion>),
    Read(Box<dyn FnOnce(&mut Db) + Send>),
}

/// The most operations one transaction takes.
const MAX_BATCH: usize = 512;

/// A queue into the store's thread. Cheap to clone; sending never blocks.
#[derive(Clone)]
pub struct StoreWriter {
    tx: mpsc::Sender<Op>,
    failure: Arc<Mutex<Option<String>>>,
    path: Option<PathBuf>,
    /// The retention rule, applied once more at a graceful stop.
    retention: Retention,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StoreWriter {
    /// Queues a write.
    pub fn write(&self, w: Write) {
        let _ = self.tx.send(Op::Write(Box::new(w), None));
    }

    /// Queues writes; `then` runs (on the store's thread) once they are committed, or
    /// could not be.
    pub fn write_then(&self, writes: Vec<Write>, then: Completion) {
        let n = writes.len();
        let mut then = Some(then);
        for (i, w) in writes.into_iter().enumerate() {
            let done = if i + 1 == n { then.take() } else { None };
            if self.tx.send(Op::Write(Box::new(w), done)).is_err() {
                break;
            }
        }
        if let Some(then) = then {
            then(Err("the store is closed".into()));
        }
    }

    /// Runs `f` on the store's thread after every write queued before it.
    pub async fn read<R, F>(&self, f: F) -> Result<R, String>
    where
        R: Send + 'static,
        F: FnOnce(&mut Db) -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let op = Op::Read(Box::new(move |db| {
            let _ = tx.send(f(db));
        }));
        self.tx
            .send(op)
            .map_err(|_| "the store is closed".to_owned())?;
        rx.await.map_err(|_| "the store is closed".to_owned())
    }

    /// In memory only: deletes the oldest finished tasks beyond `keep` (a file store
    /// keeps everything).
    pub fn prune_memory(&self, keep: usize) {
        if self.path.is_some() {
            return;
        }
        let _ = self.tx.send(Op::Read(Box::new(move |db| {
            if let Err(e) = db.prune_finished(keep) {
                tracing::warn!(error = %e, "cannot prune the in-memory store");
            }
        })));
    }

    /// Returns once every write queued before it is committed (or given up).
    pub async fn flush(&self) {
        let _ = self.read(|_| ()).await;
    }

    /// A graceful stop, after every write queued before it: the run ends, this server's
    /// lease goes, and the WAL is emptied into the database.
    pub async fn close_gracefully(&self) {
        let retention = self.retention;
        let close = move |db: &mut Db| {
            if db.path().is_some()
                && let Err(e) = db.prune(&retention)
            {
                tracing::warn!(error = %e, "the store's retention could not run at the stop");
            }
            db.close_gracefully()
        };
        match self.read(close).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the store could not record the run's end"),
            Err(e) => tracing::warn!(error = %e, "the store could not record the run's end"),
        }
    }

    /// `None` while the store writes; the last error while it cannot.
    pub fn health(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// The store's file; `None` in memory.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }
}

/// Starts the store's thread on an opened database, which keeps `retention`.
pub fn start(db: Db, retention: Retention) -> std::io::Result<(StoreWriter, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let failure = Arc::new(Mutex::new(None));
    let path = db.path().map(std::path::Path::to_path_buf);
    let thread_failure = failure.clone();
    let join = std::thread::Builder::new()
        .name("claude-pool-store".into())
        .spawn(move || run(db, rx, &thread_failure, retention))?;
    Ok((
        StoreWriter {
            tx,
            failure,
            path,
            retention,
        },
        join,
    ))
}

/// Committed writes between two checkpoints.
const CHECKPOINT_EVERY: usize = 1000;
/// A WAL past this many bytes is checkpointed at once, however few writes made it (a few
/// tasks with megabyte prompts grow it as much as thousands of small ones).
const CHECKPOINT_WAL_BYTES: u64 = 32 * 1024 * 1024;
/// A WAL past this many bytes is checkpointed by the writer itself and cut back: the bound
/// on the WAL's size whatever the load.
const WAL_HARD_BYTES: u64 = 96 * 1024 * 1024;
/// Committed writes between two runs of the retention rule; it also runs once the texts
/// written since the last run reach an eighth of its byte bound (at least 1 MiB), so a
/// few huge tasks cannot carry the store far past it.
const PRUNE_EVERY: usize = 2000;
/// When a run of the retention rule found nothing to delete (the bytes written were tasks
/// still queued or running), how long before the bytes make it run again.
const PRUNE_RETRY: Duration = Duration::from_secs(2);

/// The checkpointer: copies the WAL into the database when the writer says enough was
/// committed, on a connection and thread of its own, so the writer's commits never wait on
/// the fsync a checkpoint does. Ends with the writer.
fn start_checkpointer(db: &Db) -> Option<mpsc::SyncSender<()>> {
    let conn = match db.split_checkpoints() {
        Ok(Some(c)) => c,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "checkpoints stay on the store's writer");
            return None;
        }
    };
    let (tx, rx) = mpsc::sync_channel::<()>(1);
    let spawned = std::thread::Builder::new()
        .name("claude-pool-checkpoint".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                if let Err(e) = super::db::checkpoint(&conn) {
                    tracing::warn!(error = %e, "a store checkpoint failed; the next one retries");
                }
            }
            let _ = super::db::checkpoint(&conn);
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the checkpointer");
            None
        }
    }
}

fn run(mut db: Db, rx: mpsc::Receiver<Op>, failure: &Mutex<Option<String>>, retention: Retention) {
    let checkpointer = start_checkpointer(&db);
    let mut since_checkpoint = 0usize;
    let mut since_prune = 0usize;
    let mut bytes_since_prune = 0u64;
    let mut retry_at: Option<std::time::Instant> = None;
    let mut writes: Vec<Write> = Vec::new();
    let mut thens: Vec<Completion> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(op) = next.take() {
            match op {
                Op::Write(w, then) => {
                    writes.push(*w);
                    thens.extend(then);
                }
                Op::Read(f) => {
                    commit(&mut db, &mut writes, &mut thens, failure);
                    f(&mut db);
                }
            }
            if writes.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        since_checkpoint += writes.len();
        since_prune += writes.len();
        bytes_since_prune += writes.iter().map(Write::text_bytes).sum::<u64>();
        commit(&mut db, &mut writes, &mut thens, failure);
        let bytes_due = bytes_since_prune >= (retention.max_bytes / 8).max(1 << 20)
            && retry_at.is_none_or(|at| std::time::Instant::now() >= at);
        if (since_prune >= PRUNE_EVERY || bytes_due) && db.path().is_some() {
            since_prune = 0;
            match db.prune(&retention) {
                // The bytes written are still pending or running tasks' (never deleted):
                // try again in a while, as they finish.
                Ok(0) => retry_at = Some(std::time::Instant::now() + PRUNE_RETRY),
                Ok(n) => {
                    bytes_since_prune = 0;
                    retry_at = None;
                    tracing::debug!(tasks = n, "retention deleted old task rows");
                    // The freed pages leave the file at the next checkpoint.
                    since_checkpoint = CHECKPOINT_EVERY;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the store's retention failed; it runs again later")
                }
            }
        }
        let wal_bytes = if checkpointer.is_some() {
            db.file_bytes().1
        } else {
            0
        };
        if wal_bytes >= WAL_HARD_BYTES {
            // The checkpointer copies behind a writer that never pauses, and a WAL is only
            // rewound once a checkpoint has caught up: under a long burst of large writes
            // it would grow without end. Here the writer stops for one full checkpoint and
            // the file is cut back.
            if let Err(e) = db.checkpoint_truncate().map(drop) {
                tracing::warn!(error = %e, "a store checkpoint failed; the next one retries");
            }
        }
        let wal_full = wal_bytes >= CHECKPOINT_WAL_BYTES;
        if (since_checkpoint >= CHECKPOINT_EVERY || wal_full)
            && let Some(c) = &checkpointer
        {
            // A checkpoint already asked for covers this one too.
            let _ = c.try_send(());
            since_checkpoint = 0;
        }
    }
    commit(&mut db, &mut writes, &mut thens, failure);
}

fn commit(
    db: &mut Db,
    writes: &mut Vec<Write>,
    thens: &mut Vec<Completion>,
    failure: &Mutex<Option<String>>,
) {
    if writes.is_empty() {
        for then in thens.drain(..) {
            then(Ok(()));
        }
        return;
    }
    let mut result = db.apply(writes);
    for pause in [50, 200, 1000] {
        let Err(e) = &result else { break };
        tracing::warn!(error = %e, writes = writes.len(), "the store could not commit; retrying");
        std::thread::sleep(Duration::from_millis(pause));
        result = db.apply(writes);
    }
    let outcome = match result {
        Ok(()) => {
            if let Ok(mut f) = failure.lock() {
                *f = None;
            }
            Ok(())
        }
        Err(e) => {
            let what = match db.path() {
                Some(p) => format!("the store {} cannot be written: {e}", p.display()),
                None => format!("the store cannot be written: {e}"),
            };
            tracing::error!(writes = writes.len(), "{what}; these writes are lost");
            if let Ok(mut f) = failure.lock() {
                *f = Some(what.clone());
            }
            Err(what)
        }
    };
    writes.clear();
    for then in thens.drain(..) {
        then(outcome.clone());
    }
}

/// The store actor: the tree's handle on the store's thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreActor;

/// Messages the store actor handles.
#[derive(Debug)]
pub enum StoreMsg {
    /// Answered once everything written so far is committed.
    Flush(RpcReplyPort<()>),
    /// `None` while the store writes, else why it cannot.
    Health(RpcReplyPort<Option<String>>),
    /// A graceful stop: answered once everything written so far is committed, the run has
    /// ended and the WAL is emptied.
    Close(RpcReplyPort<()>),
}

/// The store actor's state: the writer.
pub struct StoreState {
    writer: StoreWriter,
}

impl std::fmt::Debug for StoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreState")
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl Actor for StoreActor {
    type Msg = StoreMsg;
    type State = StoreState;
    type Arguments = StoreWriter;

    async fn pre_start(
        &self,
        _myself: ActorRef<StoreMsg>,
        writer: StoreWriter,
    ) -> Result<StoreState, ActorProcessingErr> {
        Ok(StoreState { writer })
    }

    async fn handle(
        &self,
        _myself: ActorRef<StoreMsg>,
        msg: StoreMsg,
        state: &mut StoreState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            StoreMsg::Flush(reply) => {
                state.writer.flush().await;
                let _ = reply.send(());
            }
            StoreMsg::Health(reply) => {
                let _ = reply.send(state.writer.health());
            }
            StoreMsg::Close(reply) => {
                state.writer.close_gracefully().await;
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<StoreMsg>,
        state: &mut StoreState,
    ) -> Result<(), ActorProcessingErr> {
        // The thread ends once every writer is dropped; every write queued so far is
        // committed first.
        state.writer.flush().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::Write;

    #[tokio::test]
    async fn a_batch_the_store_cannot_commit_fails_its_writers_until_one_commits() {
        let (db, _) = Db::open_memory().expect("memory store");
        let (writer, _thread) = start(db, Retention::UNBOUNDED).expect("store thread");
        // Break the store: every write of a context entry now fails to commit.
        writer
            .read(|db| db.execute_for_test("DROP TABLE context"))
            .await
            .expect("store thread")
            .expect("drop");
        let (tx, rx) = tokio::sync::oneshot::channel();
        writer.write_then(
            vec![Write::ContextSet {
                key: "k".into(),
                value: "v".into(),
                at_ms: 0,
            }],
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        let result = rx.await.expect("completion ran");
        let err = result.expect_err("the write cannot commit");
        assert!(err.contains("cannot be written"), "{err}");
        assert_eq!(writer.health().as_deref(), Some(err.as_str()));
        // A later batch that commits clears the failure.
        writer.write(Write::ContextDelete { key: "k".into() });
        writer
            .read(|db| db.execute_for_test("CREATE TABLE context (run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated_at_ms INTEGER NOT NULL, PRIMARY KEY (run_id, key))"))
            .await
            .expect("store thread")
            .expect("create");
        writer.write(Write::ContextClear);
        writer.flush().await;
        assert_eq!(writer.health(), None);
    }
}

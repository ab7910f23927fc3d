//! What a pool opens before its tree starts: the store (checked, locked, crash rule
//! applied), the transcripts beside it, and the projects file.

use std::sync::Arc;

use super::actor::{self, StoreWriter};
use super::db::{Db, Lease, Recovered, Sharing};
use super::transcripts::{TranscriptSink, Transcripts};
use crate::config::{PoolConfig, StoreLocation};
use crate::error::PoolError;
use crate::projects::ProjectRegistry;

/// The durable parts of a pool, handed to the root supervisor.
#[derive(Clone)]
pub struct Durable {
    /// The store's queue, if there is a store.
    pub writer: Option<StoreWriter>,
    /// What the store held at start.
    pub restored: Arc<Recovered>,
    /// The transcripts directory (file stores only).
    pub transcripts: Option<Arc<Transcripts>>,
    /// Their writer.
    pub sink: Option<TranscriptSink>,
    /// The job API's projects.
    pub projects: Arc<ProjectRegistry>,
    /// Where the store is and how it is held, for status reports.
    pub location: Option<StoreLocation>,
    /// The marker every process this server starts carries: its lease file on a shared
    /// store, the store file on an exclusive one (`crate::process::leftovers`).
    pub marker: Option<std::path::PathBuf>,
    /// The budget window's spend when the server started (calendar periods only): every
    /// task of the project's store that finished inside the window, whichever server ran it.
    pub window_spend_usd: Option<f64>,
    /// The budget window's tokens when the server started, likewise.
    pub window_tokens: Option<u64>,
    /// Why the last reload of the projects file was refused, if it was.
    pub projects_error: Arc<std::sync::Mutex<Option<String>>>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl Durable {
    /// Opens what `config` asks for. Every error names the file and leaves it untouched.
    pub async fn open(config: &PoolConfig) -> Result<Durable, PoolError> {
        let projects = match &config.projects_file {
            Some(f) => ProjectRegistry::load(f).map_err(PoolError::InvalidArgument)?,
            None => ProjectRegistry::empty(),
        };
        let location = config.store.clone();
        let keep = config.keep_transcripts;
        let keep_bytes = config.transcripts_max_bytes;
        let retention = config.retention;
        let window = config.budget_period.window(super::db::now_ms());
        let opened = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let Some(location) = location else {
                return Ok(None);
            };
            let pid = std::process::id();
            let (mut db, recovered) = match &location {
                StoreLocation::File(path) => Db::open_as(path, pid, Sharing::Exclusive),
                StoreLocation::Shared(path) => Db::open_as(path, pid, Sharing::Shared),
                StoreLocation::Memory => Db::open_memory(),
            }
            .map_err(|e| e.to_string())?;
            // Whatever still carries the marker of a server that is gone was left by a
            // server that was killed: on an exclusive store, any process marked with the
            // store (this server holds its lock now); on a shared one, those marked with
            // the lease of a server found dead.
            let marker = match &location {
                StoreLocation::File(path) => {
                    let left = crate::process::leftovers::sweep(path);
                    if left > 0 {
                        tracing::warn!(
                            processes = left,
                            "killed what a previous server on this store left running"
                        );
                    }
                    Some(crate::process::leftovers::marker(path).into())
                }
                StoreLocation::Shared(path) => {
                    for dead in &recovered.dead_servers {
                        let lease = Lease::path_of(path, dead);
                        let left = crate::process::leftovers::sweep(&lease);
                        if left > 0 {
                            tracing::warn!(
                                processes = left,
                                server = %dead,
                                "killed what a previous server on this store left running"
                            );
                        }
                    }
                    db.lease_path().map(|l| crate::process::leftovers::marker(l).into())
                }
                StoreLocation::Memory => None,
            };
            match db.prune(&retention) {
                Ok(0) => {}
                // What retention freed leaves the file at a checkpoint.
                Ok(_) => {
                    if let Err(e) = db.checkpoint_now() {
                        tracing::warn!(error = %e, "a store checkpoint failed; the next one retries");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the store's retention could not run at start"),
            }
            let window_spend = match window {
                Some((start, _)) => Some(db.used_since(start).map_err(|e| e.to_string())?),
                None => None,
            };
            let transcripts = match location.beside("transcripts").filter(|_| keep > 0) {
                Some(dir) => Some(Transcripts::open(&dir, keep, keep_bytes).map_err(|e| {
                    format!(
                        "cannot use the transcripts directory {}: {e}",
                        dir.display()
                    )
                })?),
                None => None,
            };
            Ok(Some((db, recovered, transcripts, location, marker, window_spend)))
        })
        .await
        .map_err(|e| PoolError::InvalidArgument(format!("opening the store failed: {e}")))?
        .map_err(PoolError::InvalidArgument)?;
        let Some((db, recovered, transcripts, location, marker, window_spend)) = opened else {
            return Ok(Durable {
                writer: None,
                restored: Arc::new(Recovered::default()),
                transcripts: None,
                sink: None,
                projects: Arc::new(projects),
                projects_error: Arc::default(),
                location: None,
                marker: None,
                window_spend_usd: None,
                window_tokens: None,
            });
        };
        if recovered.run.continued {
            tracing::warn!(
                run = %recovered.run.id,
                "continuing the run of a server that stopped without a graceful shutdown"
            );
        }
        if !recovered.interrupted.is_empty() {
            tracing::warn!(
                tasks = recovered.interrupted.len(),
                chains = recovered.chains_interrupted.len(),
                "tasks the previous server was running when it stopped now read interrupted"
            );
        }
        // The thread ends (and the lock is released) when the last writer is dropped.
        let (writer, _thread) = actor::start(db, retention)
            .map_err(|e| PoolError::InvalidArgument(format!("cannot start the store: {e}")))?;
        let sink = transcripts.as_ref().map(Transcripts::writer);
        Ok(Durable {
            writer: Some(writer),
            restored: Arc::new(recovered),
            transcripts: transcripts.map(Arc::new),
            sink,
            projects: Arc::new(projects),
            projects_error: Arc::default(),
            location: Some(location),
            marker,
            window_spend_usd: window_spend.map(|(usd, _)| usd),
            window_tokens: window_spend.map(|(_, tokens)| tokens),
        })
    }
}

//! What a pool opens before its tree starts: the store (checked, locked, crash rule
//! applied), the transcripts beside it, and the projects file.

use std::sync::Arc;

use super::actor::{self, StoreWriter};
use super::db::{Db, Recovered};
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
        let opened = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let Some(location) = location else {
                return Ok(None);
            };
            let (db, recovered) = match &location {
                StoreLocation::File(path) => Db::open(path, std::process::id()),
                StoreLocation::Memory => Db::open_memory(),
            }
            .map_err(|e| e.to_string())?;
            // This server holds the store's lock now: whatever still carries the store's
            // marker was left by a server that was killed.
            if let StoreLocation::File(path) = &location {
                let left = crate::process::leftovers::sweep(path);
                if left > 0 {
                    tracing::warn!(
                        processes = left,
                        "killed what a previous server on this store left running"
                    );
                }
            }
            let transcripts = match location.beside("transcripts").filter(|_| keep > 0) {
                Some(dir) => Some(Transcripts::open(&dir, keep).map_err(|e| {
                    format!(
                        "cannot use the transcripts directory {}: {e}",
                        dir.display()
                    )
                })?),
                None => None,
            };
            Ok(Some((db, recovered, transcripts)))
        })
        .await
        .map_err(|e| PoolError::InvalidArgument(format!("opening the store failed: {e}")))?
        .map_err(PoolError::InvalidArgument)?;
        let Some((db, recovered, transcripts)) = opened else {
            return Ok(Durable {
                writer: None,
                restored: Arc::new(Recovered::default()),
                transcripts: None,
                sink: None,
                projects: Arc::new(projects),
                projects_error: Arc::default(),
            });
        };
        if !recovered.interrupted.is_empty() {
            tracing::warn!(
                tasks = recovered.interrupted.len(),
                chains = recovered.chains_interrupted.len(),
                "tasks the previous server was running when it stopped now read interrupted"
            );
        }
        // The thread ends (and the lock is released) when the last writer is dropped.
        let (writer, _thread) = actor::start(db)
            .map_err(|e| PoolError::InvalidArgument(format!("cannot start the store: {e}")))?;
        let sink = transcripts.as_ref().map(Transcripts::writer);
        Ok(Durable {
            writer: Some(writer),
            restored: Arc::new(recovered),
            transcripts: transcripts.map(Arc::new),
            sink,
            projects: Arc::new(projects),
            projects_error: Arc::default(),
        })
    }
}

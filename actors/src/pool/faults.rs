//! Faults on purpose, for chaos tests of a pool: the embedding handle can SIGKILL a slot's
//! process or SIGSTOP it (a hang), and — with the shipped `fake-claude` — make a slot's next
//! turn fail, print garbage, crash mid-turn or hang, and delay its next start. The pool's
//! typed events ([`Pool::events`]) are how a harness sees the consequences.
//!
//! The fake faults travel through files: every Claude process gets `CLAUDE_POOL_SLOT=<slot>`,
//! and a `fake-claude` started with `FAKE_CLAUDE_FAULTS=<dir>` claims `<dir>/<slot>.turn`
//! (directives added to its next prompt) at each turn start and `<dir>/<slot>.start`
//! (milliseconds to wait) when it starts. A claimed file is renamed first, so a fault is
//! taken once, by one process.

use std::path::{Path, PathBuf};

use claude_pool_protocol::SlotId;

use super::Pool;
use crate::error::PoolError;

pub use crate::process::SLOT_ENV;

/// The environment variable naming `fake-claude`'s fault directory.
pub const FAULTS_ENV: &str = "FAKE_CLAUDE_FAULTS";

/// What a slot's next turn does (with `fake-claude`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TurnFault {
    /// Fails with an API error (HTTP 500): the process lives on.
    ApiError,
    /// Prints a line that is not JSON, then answers as usual.
    Garbage,
    /// Prints part of a turn, then exits 1.
    CrashMidTurn,
    /// Never ends (only a kill stops it).
    Hang,
}

impl TurnFault {
    /// The directive that makes it happen.
    pub fn directive(self) -> &'static str {
        match self {
            TurnFault::ApiError => "MOCK_STATUS:500",
            TurnFault::Garbage => "MOCK_GARBAGE",
            TurnFault::CrashMidTurn => "MOCK_CRASH_MID:1",
            TurnFault::Hang => "MOCK_HANG",
        }
    }
}

impl Pool {
    /// The pid of `slot`'s process now, if it has one.
    pub async fn slot_pid(&self, slot: &SlotId) -> Result<Option<u32>, PoolError> {
        let status = self.status().await?;
        Ok(status
            .slots
            .iter()
            .find(|s| &s.id == slot)
            .and_then(|s| s.pid))
    }

    /// SIGKILLs `slot`'s process, as a crash would; returns its pid. The slot's supervisor
    /// restarts it; a task running there fails with the kill.
    pub async fn kill_slot(&self, slot: &SlotId) -> Result<u32, PoolError> {
        self.signal_slot(slot, libc::SIGKILL).await
    }

    /// SIGSTOPs `slot`'s process: it hangs, answering nothing, until the task's deadline (or
    /// a cancel) kills its group. Returns its pid.
    pub async fn hang_slot(&self, slot: &SlotId) -> Result<u32, PoolError> {
        self.signal_slot(slot, libc::SIGSTOP).await
    }

    async fn signal_slot(&self, slot: &SlotId, signal: i32) -> Result<u32, PoolError> {
        let pid = self
            .slot_pid(slot)
            .await?
            .ok_or_else(|| PoolError::InvalidTask(format!("{slot} has no process now")))?;
        crate::process::signal_process(pid, signal).map_err(|e| {
            PoolError::InvalidTask(format!("cannot signal {slot}'s process {pid}: {e}"))
        })?;
        Ok(pid)
    }
}

/// Faults for slots running `fake-claude`: give the pool `FAKE_CLAUDE_FAULTS=<dir>` (see
/// [`FakeFaults::env`]), then arm faults per slot.
#[derive(Debug, Clone)]
pub struct FakeFaults {
    dir: PathBuf,
}

impl FakeFaults {
    /// Faults kept in `dir` (created if missing).
    pub fn new(dir: &Path) -> std::io::Result<FakeFaults> {
        std::fs::create_dir_all(dir)?;
        Ok(FakeFaults {
            dir: dir.to_path_buf(),
        })
    }

    /// The variable to give the pool's processes (`PoolBuilder::env`).
    pub fn env(&self) -> (&'static str, PathBuf) {
        (FAULTS_ENV, self.dir.clone())
    }

    /// Makes `slot`'s next turn do `fault` (replacing one armed and not yet taken).
    pub fn next_turn(&self, slot: &SlotId, fault: TurnFault) -> std::io::Result<()> {
        self.arm(slot, "turn", fault.directive())
    }

    /// Makes `slot`'s next process wait `ms` before it reads its input (a slow start).
    pub fn slow_start(&self, slot: &SlotId, ms: u64) -> std::io::Result<()> {
        self.arm(slot, "start", &ms.to_string())
    }

    /// Whether a fault armed for `slot` has not been taken yet.
    pub fn armed(&self, slot: &SlotId, what: &str) -> bool {
        self.dir.join(format!("{slot}.{what}")).exists()
    }

    fn arm(&self, slot: &SlotId, what: &str, content: &str) -> std::io::Result<()> {
        // Written aside and renamed into place, so a process never reads half a fault.
        let tmp = self.dir.join(format!(".{slot}.{what}.tmp"));
        std::fs::write(&tmp, content)?;
        std::fs::rename(&tmp, self.dir.join(format!("{slot}.{what}")))
    }
}

//! What the harness runs its workload against: an embedded [`Pool`], driven through the
//! embedding handle (its fault API and event bus), or an [`External`] server over MCP.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use claude_pool::protocol::tools::{PoolStatusReport, TaskReport};
use claude_pool::protocol::{SlotId, SlotStatus, TaskId};
use claude_pool::{FakeFaults, Pool, TaskSpec};

use crate::plan::Plan;
use crate::server::External;

/// The pool under test.
pub enum Target {
    /// A pool in this process.
    Embedded(Pool),
    /// A `claude-pool-server` this harness started.
    External(External),
}

impl Target {
    /// Submits task `p`.
    pub async fn submit(&self, p: &Plan) -> anyhow::Result<TaskId> {
        match self {
            Target::Embedded(pool) => pool
                .submit(TaskSpec::new(p.prompt()).timeout(p.timeout()))
                .await
                .map_err(|e| anyhow!("submit: {e}")),
            Target::External(s) => s.submit(p.prompt(), p.timeout()).await,
        }
    }

    /// The task's report once it is terminal.
    pub async fn wait(&self, id: &TaskId) -> anyhow::Result<TaskReport> {
        match self {
            Target::Embedded(pool) => pool.wait(id).await.map_err(|e| anyhow!("wait: {e}")),
            Target::External(s) => loop {
                let r = s.result(id, Some(Duration::from_secs(30))).await?;
                if r.status.is_terminal() {
                    return Ok(r);
                }
            },
        }
    }

    /// The task's report now.
    pub async fn result(&self, id: &TaskId) -> anyhow::Result<TaskReport> {
        match self {
            Target::Embedded(pool) => pool.result(id).await.map_err(|e| anyhow!("result: {e}")),
            Target::External(s) => s.result(id, None).await,
        }
    }

    /// Cancels the task.
    pub async fn cancel(&self, id: &TaskId) -> anyhow::Result<()> {
        match self {
            Target::Embedded(pool) => pool
                .cancel(id)
                .await
                .map(drop)
                .map_err(|e| anyhow!("cancel: {e}")),
            Target::External(s) => s.cancel(id).await,
        }
    }

    /// `pool_status`.
    pub async fn status(&self) -> anyhow::Result<PoolStatusReport> {
        match self {
            Target::Embedded(pool) => pool.status().await.map_err(|e| anyhow!("status: {e}")),
            Target::External(s) => s.status().await,
        }
    }

    /// SIGKILL of the process serving `slot` (pid `pid`, as the fake CLI logged it).
    pub async fn kill(&self, slot: &SlotId, pid: u32) {
        match self {
            Target::Embedded(pool) => drop(pool.kill_slot(slot).await),
            Target::External(_) => drop(claude_pool::process::signal_process(pid, libc::SIGKILL)),
        }
    }

    /// SIGSTOP of the process serving `slot`.
    pub async fn hang(&self, slot: &SlotId, pid: u32) {
        match self {
            Target::Embedded(pool) => drop(pool.hang_slot(slot).await),
            Target::External(_) => drop(claude_pool::process::signal_process(pid, libc::SIGSTOP)),
        }
    }

    /// Arms a slow next start of `slot` and kills its process.
    pub async fn slow_start(&self, faults: &FakeFaults, slot: &SlotId, pid: u32) {
        let _ = faults.slow_start(slot, 300);
        self.kill(slot, pid).await;
    }

    /// SIGKILL of the server and a restart on its store (external only).
    pub async fn kill_server(&self) -> anyhow::Result<()> {
        match self {
            Target::Embedded(_) => Ok(()),
            Target::External(s) => s.kill_and_restart().await,
        }
    }

    /// Slot restarts over the run.
    pub async fn restarts(&self) -> u64 {
        match self {
            Target::Embedded(pool) => pool
                .status()
                .await
                .map(|s| s.slots.iter().map(|s| u64::from(s.restarts)).sum())
                .unwrap_or(0),
            Target::External(s) => {
                let _ = s.status().await;
                s.restarts().await
            }
        }
    }

    /// Waits (up to `bound`) until the pool has `n` slots (hosts joined).
    pub async fn wait_slots(&self, n: usize, bound: Duration) -> bool {
        let until = Instant::now() + bound;
        loop {
            if let Ok(s) = self.status().await
                && s.slots.len() == n
            {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to `bound`) until every slot is idle and nothing is queued.
    pub async fn wait_idle(&self, bound: Duration) -> bool {
        let until = Instant::now() + bound;
        loop {
            if let Ok(s) = self.status().await
                && s.pending_tasks == 0
                && s.slots.iter().all(|s| s.status == SlotStatus::Idle)
            {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the pool (gracefully).
    pub async fn shutdown(&self) -> anyhow::Result<()> {
        match self {
            Target::Embedded(pool) => {
                pool.shutdown().await;
                Ok(())
            }
            Target::External(s) => s.shutdown().await,
        }
    }
}

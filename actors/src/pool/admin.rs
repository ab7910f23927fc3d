//! The pool's administration through [`Pool`]: the shared context table, budget and status,
//! scaling, drain, and skills.

use std::collections::BTreeMap;
use std::time::Duration;

use claude_pool_protocol::SlotId;
use claude_pool_protocol::tools::{
    BudgetReport, ContextEntry, DrainReport, LifetimeReport, PoolStatusReport, RunReport,
    ScaleReport, SlotReport, StoreReport, TaskCounts,
};
use serde_json::{Map, Value};

use super::{MEMORY_READING_AGE, Pool};
use crate::chains::ChainSupervisorMsg;
use crate::context::ContextMsg;
use crate::error::PoolError;
use crate::ledger::LedgerMsg;
use crate::root::RootMsg;
use crate::scheduler::{ScaleRequest, SchedulerMsg};
use crate::skills::SkillRegistry;
use crate::task::TaskSpec;

impl Pool {
    // ---- shared context

    /// Sets a context key; every task that starts from now on sees it.
    pub async fn context_set(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<ContextEntry, PoolError> {
        let (key, value) = (key.into(), value.into());
        self.ask(&self.refs.context, |reply| ContextMsg::Set {
            key,
            value,
            reply,
        })
        .await?
    }

    /// One context key's value.
    pub async fn context_get(&self, key: &str) -> Result<ContextEntry, PoolError> {
        let k = key.to_owned();
        let value = self
            .ask(&self.refs.context, |reply| ContextMsg::Get(k, reply))
            .await?;
        value
            .map(|value| ContextEntry {
                key: key.to_owned(),
                value,
            })
            .ok_or_else(|| PoolError::NotFound(format!("context key not found: {key:?}")))
    }

    /// Every context entry.
    pub async fn context_list(&self) -> Result<BTreeMap<String, String>, PoolError> {
        self.ask(&self.refs.context, ContextMsg::List).await
    }

    /// Removes a context key; true when it existed. No later task sees it.
    pub async fn context_delete(&self, key: &str) -> Result<bool, PoolError> {
        let k = key.to_owned();
        self.ask(&self.refs.context, |reply| ContextMsg::Delete(k, reply))
            .await
    }

    // ---- budget, status, scaling, drain

    /// Spend, the cap and what is left.
    pub async fn budget(&self) -> Result<BudgetReport, PoolError> {
        self.ask(&self.refs.ledger, LedgerMsg::Report).await
    }

    /// Slots, task and chain counts, spend and budget.
    pub async fn status(&self) -> Result<PoolStatusReport, PoolError> {
        // Four actors, asked at once: a busy scheduler does not make the others wait, and
        // the call waits for one round trip between threads, not one per actor.
        let (status, budget, chains, pending) = tokio::join!(
            self.ask(&self.refs.scheduler, SchedulerMsg::Status),
            self.budget(),
            self.ask(&self.refs.chains, ChainSupervisorMsg::Counts),
            self.pending_approvals(None),
        );
        let (mut status, budget) = (status?, budget?);
        status.spend_usd = budget.spend_usd;
        status.budget_usd = budget.budget_usd;
        status.budget_remaining = budget.budget_remaining;
        status.chains = chains?;
        status.lifetime = self.lifetime(&status.tasks, budget.lifetime_spend_usd);
        status.budget = Some(budget);
        status.store = self.store_report();
        let run = &self.durable.restored.run;
        status.run = (!run.id.is_empty()).then(|| RunReport {
            id: run.id.clone(),
            started_at: crate::clock::rfc3339_seconds(run.started_at_ms),
            continued: run.continued,
        });
        status.approvals = claude_pool_protocol::tools::ApprovalsStatus {
            allow: self
                .config
                .rules
                .allow()
                .iter()
                .map(ToString::to_string)
                .collect(),
            deny: self
                .config
                .rules
                .deny()
                .iter()
                .map(ToString::to_string)
                .collect(),
            timeout_secs: self.config.approval_timeout.as_secs_f64(),
            pending: pending.unwrap_or_default(),
        };
        self.add_memory(&mut status).await;
        Ok(status)
    }

    /// Every run's task counts: the store's history before this run, and this run's.
    fn lifetime(&self, run: &TaskCounts, spend_usd: f64) -> LifetimeReport {
        let mut tasks = *run;
        for (_, state, n) in &self.durable.restored.lifetime_before.counts_by_kind {
            let slot = match state.as_str() {
                "pending" => &mut tasks.pending,
                "running" => &mut tasks.running,
                "completed" => &mut tasks.completed,
                "failed" => &mut tasks.failed,
                "cancelled" => &mut tasks.cancelled,
                "timed_out" => &mut tasks.timed_out,
                "interrupted" => &mut tasks.interrupted,
                _ => continue,
            };
            *slot += n;
            tasks.total += n;
        }
        LifetimeReport { tasks, spend_usd }
    }

    /// Where the store is, how it is held, and its files' sizes now.
    pub fn store_report(&self) -> Option<StoreReport> {
        let location = self.durable.location.as_ref()?;
        // Two stats, not a trip through the store's thread: a status never waits on writes.
        let (db_bytes, wal_bytes) = match location.file() {
            Some(f) => crate::store::db::file_bytes_of(f),
            None => (0, 0),
        };
        Some(StoreReport {
            path: location.file().map(|p| p.display().to_string()),
            mode: location.mode().to_owned(),
            db_bytes,
            wal_bytes,
        })
    }

    /// Fills in the resident memory of each slot's process group. The reading comes from a
    /// walk of `/proc`, which a status call never waits for once there is one: a reading
    /// older than a second is refreshed in the background for the next call.
    async fn add_memory(&self, status: &mut PoolStatusReport) {
        let pids: Vec<u32> = status.slots.iter().filter_map(|s| s.pid).collect();
        let cached = {
            let last = self
                .memory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            last.as_ref()
                .map(|(at, rss, _)| (at.elapsed(), rss.clone()))
        };
        let rss = match cached {
            Some((age, rss)) => {
                if age >= MEMORY_READING_AGE
                    && !self
                        .memory_refreshing
                        .swap(true, std::sync::atomic::Ordering::AcqRel)
                {
                    let (memory, refreshing) =
                        (self.memory.clone(), self.memory_refreshing.clone());
                    tokio::task::spawn_blocking(move || {
                        let rss = crate::process::memory::group_rss(&pids);
                        *memory
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some((std::time::Instant::now(), rss, pids));
                        refreshing.store(false, std::sync::atomic::Ordering::Release);
                    });
                }
                rss
            }
            None => {
                let of = pids.clone();
                let rss =
                    tokio::task::spawn_blocking(move || crate::process::memory::group_rss(&of))
                        .await
                        .unwrap_or_default();
                *self
                    .memory
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((std::time::Instant::now(), rss.clone(), pids));
                rss
            }
        };
        for slot in &mut status.slots {
            slot.rss_bytes = slot.pid.and_then(|p| rss.get(&p).copied());
        }
        status.slots_rss_bytes = status.slots.iter().filter_map(|s| s.rss_bytes).sum();
    }

    /// One slot's report.
    pub async fn slot(&self, id: &SlotId) -> Result<SlotReport, PoolError> {
        let mut status = self.ask(&self.refs.scheduler, SchedulerMsg::Status).await?;
        self.add_memory(&mut status).await;
        status
            .slots
            .into_iter()
            .find(|s| &s.id == id)
            .ok_or_else(|| PoolError::NotFound(format!("slot not found: {id}")))
    }

    /// Waits until every slot has warmed up once (or the pool stopped).
    pub async fn wait_ready(&self) -> Result<(), PoolError> {
        self.ask(&self.refs.scheduler, SchedulerMsg::WaitReady)
            .await
    }

    /// Adds `count` slots (within the bounds; out of them, nothing changes).
    pub async fn scale_up(&self, count: u32) -> Result<ScaleReport, PoolError> {
        self.scale(ScaleRequest::Up(count)).await
    }

    /// Removes `count` slots, idle ones first; a busy slot gets the scale-down grace to
    /// finish, then its task is cancelled. Returns once their process groups are gone.
    pub async fn scale_down(&self, count: u32) -> Result<ScaleReport, PoolError> {
        self.scale(ScaleRequest::Down(count)).await
    }

    /// Sizes the pool to exactly `target` slots.
    pub async fn set_target_slots(&self, target: u32) -> Result<ScaleReport, PoolError> {
        self.scale(ScaleRequest::Target(target)).await
    }

    /// Adds (`up`) or removes `count` slots of slot host `host` (`any`: the least loaded);
    /// returns once the added slots exist, or the removed ones' process groups are gone.
    #[cfg(feature = "cluster")]
    pub async fn scale_host(
        &self,
        host: &str,
        count: u32,
        up: bool,
    ) -> Result<ScaleReport, PoolError> {
        let hosts = ractor::call!(self.root, RootMsg::Hosts)
            .map_err(|e| PoolError::Stopped(format!("the pool did not answer: {e}")))?;
        let Some(hosts) = hosts else {
            return Err(PoolError::InvalidArgument(
                "this pool takes no slot hosts (--listen-hosts)".into(),
            ));
        };
        let host = host.to_owned();
        let report = ractor::call!(hosts, |reply| crate::cluster::hosts::HostsMsg::Scale {
            host,
            count,
            up,
            reply,
        })
        .map_err(|e| PoolError::Stopped(format!("the hosts actor did not answer: {e}")))?;
        report.map_err(PoolError::InvalidArgument)
    }

    async fn scale(&self, request: ScaleRequest) -> Result<ScaleReport, PoolError> {
        self.ask(&self.refs.scheduler, |reply| {
            SchedulerMsg::Scale(request, reply)
        })
        .await?
    }

    /// Drains the pool: pending tasks are cancelled, chains start nothing new, running
    /// tasks finish (cancelled after `timeout`, if given), new work is refused from now on,
    /// and the slots' processes are stopped. Returns the summary of every task.
    pub async fn drain(&self, timeout: Option<Duration>) -> Result<DrainReport, PoolError> {
        self.ask(&self.refs.chains, ChainSupervisorMsg::Drain)
            .await?;
        let mut report = self
            .ask(&self.refs.scheduler, |reply| {
                SchedulerMsg::Drain(timeout, reply)
            })
            .await?;
        report.cancelled_chains = self
            .ask(&self.refs.chains, ChainSupervisorMsg::WaitIdle)
            .await?;
        report.total_spend = self.budget().await?.spend_usd;
        let _ = ractor::call!(self.root, RootMsg::StopSlots);
        Ok(report)
    }

    // ---- skills

    /// The pool's skills.
    pub fn skills(&self) -> &SkillRegistry {
        &self.skills
    }

    /// The task a skill run would submit: the skill's prompt for `arguments`, or what is
    /// wrong with them (nothing runs).
    pub fn skill_task(
        &self,
        skill: &str,
        arguments: &Map<String, Value>,
    ) -> Result<TaskSpec, PoolError> {
        let s = self.skills.get(skill).ok_or_else(|| {
            PoolError::NotFound(format!(
                "skill not found: {skill:?} (known skills: {})",
                self.skills.names().join(", ")
            ))
        })?;
        let prompt = s.render(arguments).map_err(PoolError::InvalidTask)?;
        Ok(TaskSpec::new(prompt))
    }
}

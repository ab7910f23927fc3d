//! Pool tools: `pool_status`, the context table, scaling and `pool_drain`.

use claude_pool_protocol::tools::{
    ContextDeleteReport, ContextKeyParams, ContextSetParams, DrainParams, ScaleParams,
    StatusParams, TargetParams,
};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{ErrorData, tool, tool_router};

use super::{Checked, PoolServer, answer};

#[tool_router(router = admin_tools, vis = "pub(super)")]
impl PoolServer {
    /// The pool's state.
    #[tool(
        name = "pool_status",
        description = "Slots (id, status, active_tasks, restarts, pid), active and pending task counts, chains, spend_usd, budget_usd and budget_remaining, and why new work is refused if it is. With `wait_ready` (seconds), answers once every slot is idle (warm and free) or given up."
    )]
    async fn pool_status(
        &self,
        Parameters(params): Parameters<Checked<StatusParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        if let Some(wait) = params.wait_ready {
            let _ = tokio::time::timeout(wait.0, self.pool.wait_ready()).await;
        }
        answer(self.pool.status().await)
    }

    /// Sets a context key.
    #[tool(
        name = "context_set",
        description = "Share a key-value note with every task that starts from now on (it is written before each task's prompt; Claude Code's own system prompt is untouched). Returns { key, value }. Keys: letters, digits, _ - . (at most 128 bytes); values at most 16 KiB; at most 64 keys."
    )]
    async fn context_set(
        &self,
        Parameters(params): Parameters<Checked<ContextSetParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        answer(self.pool.context_set(params.key, params.value).await)
    }

    /// One context value.
    #[tool(
        name = "context_get",
        description = "A shared context value: { key, value }; an unknown key is an error."
    )]
    async fn context_get(
        &self,
        Parameters(params): Parameters<Checked<ContextKeyParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        answer(self.pool.context_get(&params.key).await)
    }

    /// The whole context table.
    #[tool(
        name = "context_list",
        description = "Every shared context entry, as { key: value, ... }."
    )]
    async fn context_list(&self) -> Result<CallToolResult, ErrorData> {
        answer(self.pool.context_list().await)
    }

    /// Removes a context key.
    #[tool(
        name = "context_delete",
        description = "Remove a shared context key; no task that starts afterwards sees it. Returns { key, deleted } (false when there was no such key)."
    )]
    async fn context_delete(
        &self,
        Parameters(params): Parameters<Checked<ContextKeyParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        let deleted = self.pool.context_delete(&params.key).await;
        answer(deleted.map(|deleted| ContextDeleteReport {
            key: params.key,
            deleted,
        }))
    }

    /// Adds slots.
    #[tool(
        name = "pool_scale_up",
        description = "Add `count` slots. Returns { success, new_slot_count, details }. Fails, changing nothing, if the pool would exceed --max-slots."
    )]
    async fn pool_scale_up(
        &self,
        Parameters(params): Parameters<Checked<ScaleParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        answer(self.pool.scale_up(params.count).await)
    }

    /// Removes slots.
    #[tool(
        name = "pool_scale_down",
        description = "Remove `count` slots, idle ones first. A busy slot gets 30 seconds (--scale-down-grace) to finish its task, then the task is cancelled. Answers once the removed slots' processes are gone: { success, new_slot_count, details }. Fails, changing nothing, if the pool would drop below --min-slots."
    )]
    async fn pool_scale_down(
        &self,
        Parameters(params): Parameters<Checked<ScaleParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        answer(self.pool.scale_down(params.count).await)
    }

    /// Sizes the pool.
    #[tool(
        name = "pool_set_target_slots",
        description = "Give the pool exactly `target` slots, scaling up or down as needed (within --min-slots and --max-slots). Returns { success, new_slot_count, target }."
    )]
    async fn pool_set_target_slots(
        &self,
        Parameters(params): Parameters<Checked<TargetParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        answer(self.pool.set_target_slots(params.target).await)
    }

    /// Drains the pool.
    #[tool(
        name = "pool_drain",
        description = "Graceful shutdown: pending tasks are cancelled (they never start), chains start no new step, running tasks finish (cancelled after `timeout` seconds, if given), new work is refused from then on, and the slots' processes stop. Returns { total_tasks, completed, errors, cancelled, total_spend }."
    )]
    async fn pool_drain(
        &self,
        Parameters(params): Parameters<Checked<DrainParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        answer(self.pool.drain(params.timeout.map(|t| t.0)).await)
    }
}

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
        description = "Slots, tasks, spend, budget, API limits; why work is refused."
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
        description = "Share a note with every task started from now on."
    )]
    async fn context_set(
        &self,
        Parameters(params): Parameters<Checked<ContextSetParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        answer(self.pool.context_set(params.key, params.value).await)
    }

    /// One context value.
    #[tool(name = "context_get", description = "A shared note.")]
    async fn context_get(
        &self,
        Parameters(params): Parameters<Checked<ContextKeyParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        answer(self.pool.context_get(&params.key).await)
    }

    /// The whole context table.
    #[tool(name = "context_list", description = "Every shared note.")]
    async fn context_list(&self) -> Result<CallToolResult, ErrorData> {
        answer(self.pool.context_list().await)
    }

    /// Removes a context key.
    #[tool(name = "context_delete", description = "Remove a shared note.")]
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
    #[tool(name = "pool_scale_up", description = "Add slots.")]
    async fn pool_scale_up(
        &self,
        Parameters(params): Parameters<Checked<ScaleParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        #[cfg(feature = "cluster")]
        if let Some(host) = &params.host {
            return answer(self.pool.scale_host(host, params.count, true).await);
        }
        answer(self.pool.scale_up(params.count).await)
    }

    /// Removes slots.
    #[tool(
        name = "pool_scale_down",
        description = "Remove slots, idle ones first."
    )]
    async fn pool_scale_down(
        &self,
        Parameters(params): Parameters<Checked<ScaleParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        #[cfg(feature = "cluster")]
        if let Some(host) = &params.host {
            return answer(self.pool.scale_host(host, params.count, false).await);
        }
        answer(self.pool.scale_down(params.count).await)
    }

    /// Sizes the pool.
    #[tool(
        name = "pool_set_target_slots",
        description = "Scale to `target` slots."
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
        description = "Stop the pool: queued tasks are cancelled, running ones finish."
    )]
    async fn pool_drain(
        &self,
        Parameters(params): Parameters<Checked<DrainParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        answer(self.pool.drain(params.timeout.map(|t| t.0)).await)
    }
}

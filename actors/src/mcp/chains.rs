//! Chain tools: `pool_chain`, `pool_submit_chain`, `pool_chain_result`.

use claude_pool_protocol::ChainStatus;
use claude_pool_protocol::tools::{ChainParams, ChainResultParams, ChainSubmitReport};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, tool, tool_router};
use tokio::sync::mpsc;

use super::tasks::{Progress, follow};
use super::{Checked, PoolServer, chain_result, fail, long_poll, structured};

#[tool_router(router = chain_tools, vis = "pub(super)")]
impl PoolServer {
    /// Runs a chain and waits for it.
    #[tool(
        name = "pool_chain",
        description = "Run a pipeline of steps and wait for it. Each step is { prompt, name?, failure_policy?: abort|skip|retry, retries?, depends_on? }. A step runs after the one before it, or after the steps in its depends_on (independent steps run in parallel). In a prompt, {previous_output} is the output of the step it follows and {output:NAME} that of step NAME. Returns { status, final_output, steps: [...], total_spend }; progress notifications follow each step. A chain that did not complete is a tool error with the report."
    )]
    async fn pool_chain(
        &self,
        Parameters(params): Parameters<Checked<ChainParams>>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        let depth = self.request_depth(&context);
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Progress::new(&context).wanted().then_some(tx);
        let id = match self.pool.submit_chain_at(params, sink, depth).await {
            Ok(id) => id,
            Err(e) => return fail(e),
        };
        let what = format!("chain {id}");
        let cancel = async {
            let _ = self.pool.cancel_chain(&id).await;
        };
        let wait = self.pool.wait_chain(&id);
        let report = match follow(self, &context, &what, wait, rx, |line| line, cancel).await? {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        chain_result(&report)
    }

    /// Starts a chain and returns its id.
    #[tool(
        name = "pool_submit_chain",
        description = "Start a pipeline of steps (as pool_chain) in the background. Returns { chain_id } at once; follow it with pool_chain_result and stop it with pool_cancel."
    )]
    async fn pool_submit_chain(
        &self,
        Parameters(params): Parameters<Checked<ChainParams>>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        let depth = self.request_depth(&context);
        let total_steps = params.steps.len();
        match self.pool.submit_chain_at(params, None, depth).await {
            Ok(chain_id) => structured(&ChainSubmitReport {
                chain_id,
                status: ChainStatus::InProgress,
                total_steps,
            }),
            Err(e) => fail(e),
        }
    }

    /// A chain's progress and results.
    #[tool(
        name = "pool_chain_result",
        description = "A chain's progress and results: { status, completed_steps, total_steps, current_step: { name, status }, steps: [...], final_output, total_spend }. With `wait` (seconds, or \"30s\"), answers as soon as the chain ends (or when the wait runs out)."
    )]
    async fn pool_chain_result(
        &self,
        Parameters(params): Parameters<Checked<ChainResultParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        let id = &params.chain_id;
        long_poll(
            params.wait,
            self.pool.wait_chain(id),
            self.pool.chain_result(id),
        )
        .await
    }
}

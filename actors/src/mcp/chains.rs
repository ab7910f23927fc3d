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
        description = "Run steps in order, or by depends_on (in parallel when independent). {previous_output} and {output:NAME} in a prompt are earlier outputs. Options as pool_run."
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
        description = "As pool_chain, without waiting: returns chain_id."
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
            Ok(chain_id) => {
                let handle = super::notices::handle_of(
                    &chain_id.0,
                    "pool_submit_chain",
                    crate::pool::handles::Work::Chain(chain_id.clone()),
                );
                self.follow_work(&context, handle, false);
                structured(&ChainSubmitReport {
                    chain_id,
                    status: ChainStatus::InProgress,
                    total_steps,
                })
            }
            Err(e) => fail(e),
        }
    }

    /// A chain's progress and results.
    #[tool(
        name = "pool_chain_result",
        description = "A chain's status, steps and final_output."
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

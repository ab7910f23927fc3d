//! The job tools (`claude_run`, `claude_build`, `claude_job_status`, `claude_list_jobs`,
//! `claude_cancel`, `claude_list_projects`) and `pool_transcript`.

use claude_pool_protocol::tools::{
    BuildJobParams, JobAccepted, JobIdParams, JobList, ListJobsParams, ProjectList, RunJobParams,
    TranscriptParams,
};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, tool, tool_router};

use super::{Checked, PoolServer, answer, structured};

#[tool_router(router = job_tools, vis = "pub(super)")]
impl PoolServer {
    /// Queues a prompt in a project.
    #[tool(
        name = "claude_run",
        description = "Run a prompt in a project's directory; returns jobId at once."
    )]
    async fn claude_run(
        &self,
        Parameters(params): Parameters<Checked<RunJobParams>>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let depth = self.request_depth(&context);
        let accepted = self.pool.run_job(params.get()?, depth).await;
        self.follow_job(&context, &accepted, "claude_run");
        answer(accepted)
    }

    /// Queues a build on a new branch.
    #[tool(
        name = "claude_build",
        description = "Implement a spec on a new branch of a project: tested and committed."
    )]
    async fn claude_build(
        &self,
        Parameters(params): Parameters<Checked<BuildJobParams>>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let depth = self.request_depth(&context);
        let accepted = self.pool.build_job(params.get()?, depth).await;
        self.follow_job(&context, &accepted, "claude_build");
        answer(accepted)
    }

    /// A job's state and result.
    #[tool(
        name = "claude_job_status",
        description = "A job's state, output and commitSha."
    )]
    async fn claude_job_status(
        &self,
        Parameters(params): Parameters<Checked<JobIdParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        answer(self.pool.job(&params.get()?.job_id).await)
    }

    /// Jobs, newest first.
    #[tool(name = "claude_list_jobs", description = "Jobs, newest first.")]
    async fn claude_list_jobs(
        &self,
        Parameters(params): Parameters<Checked<ListJobsParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let p = params.get()?;
        answer(
            self.pool
                .list_jobs(p.project, p.state, p.limit)
                .await
                .map(|jobs| JobList { jobs }),
        )
    }

    /// Cancels a job.
    #[tool(name = "claude_cancel", description = "Cancel a job.")]
    async fn claude_cancel(
        &self,
        Parameters(params): Parameters<Checked<JobIdParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        answer(self.pool.cancel_job(&params.get()?.job_id).await)
    }

    /// The projects.
    #[tool(name = "claude_list_projects", description = "Projects jobs run in.")]
    async fn claude_list_projects(&self) -> Result<CallToolResult, ErrorData> {
        structured(&ProjectList {
            projects: self.pool.projects(),
        })
    }

    /// A task's transcript.
    #[tool(
        name = "pool_transcript",
        description = "A page of a task's or job's transcript (NDJSON)."
    )]
    async fn pool_transcript(
        &self,
        Parameters(params): Parameters<Checked<TranscriptParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let p = params.get()?;
        answer(
            self.pool
                .transcript(&p.task_id, p.offset.unwrap_or(0), p.max_bytes)
                .await,
        )
    }
}

impl PoolServer {
    /// Follows an accepted job for this session (see [`super::notices`]).
    fn follow_job(
        &self,
        context: &RequestContext<RoleServer>,
        accepted: &Result<JobAccepted, crate::PoolError>,
        tool: &str,
    ) {
        if let Ok(a) = accepted {
            let id = claude_pool_protocol::TaskId(a.job_id.clone());
            self.follow_work(context, super::notices::task_handle(&id, tool), false);
        }
    }
}

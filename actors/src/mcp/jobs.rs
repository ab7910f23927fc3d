//! The job tools (`claude_run`, `claude_build`, `claude_job_status`, `claude_list_jobs`,
//! `claude_cancel`, `claude_list_projects`) and `pool_transcript`.

use claude_pool_protocol::tools::{
    BuildJobParams, JobIdParams, JobList, ListJobsParams, ProjectList, RunJobParams,
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
        description = "Submit a prompt to Claude Code in a project's directory. Returns { jobId, state } at once; poll claude_job_status. Options: sessionId (continue that conversation; jobs on one session run one at a time), allowedTools (within the server's --allowed-tools), timeoutMs (default 30 min, at most 6 h). A project runs one job at a time unless its maxConcurrent says more."
    )]
    async fn claude_run(
        &self,
        Parameters(params): Parameters<Checked<RunJobParams>>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let depth = self.request_depth(&context);
        answer(self.pool.run_job(params.get()?, depth).await)
    }

    /// Queues a build on a new branch.
    #[tool(
        name = "claude_build",
        description = "Have Claude Code implement a spec on a new branch of a project, in a worktree of its own (the project's checkout is never touched): it implements, runs the tests (runTests, default true), commits, and the job's commitSha is the branch head. branch must not exist; baseBranch defaults to the project's defaultBranch; timeoutMs default 4 h, at most 6 h. Returns { jobId, state }."
    )]
    async fn claude_build(
        &self,
        Parameters(params): Parameters<Checked<BuildJobParams>>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let depth = self.request_depth(&context);
        answer(self.pool.build_job(params.get()?, depth).await)
    }

    /// A job's state and result.
    #[tool(
        name = "claude_job_status",
        description = "A job's jobId, kind, project, state (queued, running, done, failed, cancelled, interrupted), enqueuedAt, startedAt, finishedAt, output, sessionId, commitSha, branch, error."
    )]
    async fn claude_job_status(
        &self,
        Parameters(params): Parameters<Checked<JobIdParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        answer(self.pool.job(&params.get()?.job_id).await)
    }

    /// Jobs, newest first.
    #[tool(
        name = "claude_list_jobs",
        description = "Jobs newest first, optionally only one project's or one state's; limit defaults to 50 (at most 1000). Returns { jobs: [...] }."
    )]
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
    #[tool(
        name = "claude_cancel",
        description = "Cancel a job: a queued one never starts; a running one's Claude process group is stopped (interrupt, then SIGTERM, then SIGKILL). Returns { ok, state } once it has ended."
    )]
    async fn claude_cancel(
        &self,
        Parameters(params): Parameters<Checked<JobIdParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        answer(self.pool.cancel_job(&params.get()?.job_id).await)
    }

    /// The projects.
    #[tool(
        name = "claude_list_projects",
        description = "The projects jobs can run in: { projects: [{ name, defaultBranch, path, maxConcurrent }] }."
    )]
    async fn claude_list_projects(&self) -> Result<CallToolResult, ErrorData> {
        structured(&ProjectList {
            projects: self.pool.projects(),
        })
    }

    /// A task's transcript.
    #[tool(
        name = "pool_transcript",
        description = "A page of a task's or job's transcript: its prompt as sent and every stream-json event Claude printed, as NDJSON, with the full output even when the stored one is truncated. Page with offset / next_offset."
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

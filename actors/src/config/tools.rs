//! Which tools the MCP front-end offers (`--tools`).

/// The tools the MCP front-end lists and serves (`--tools`): fewer tools, less of every
/// coordinator's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolProfile {
    /// The pool toolkit: run, submit, results, fan-out, chains, shared context, status,
    /// scaling, drain, skills — plus the approval tools.
    Core,
    /// The job API: `claude_run`, `claude_build`, job status, list and cancel, projects —
    /// plus the approval tools.
    Jobs,
    /// Every tool.
    #[default]
    All,
}

impl ToolProfile {
    /// Whether `tool` is served. The approval tools are in every profile: a worker's
    /// question must always be answerable.
    pub fn serves(self, tool: &str) -> bool {
        const APPROVALS: [&str; 2] = ["pool_approvals", "pool_approve"];
        const JOBS: [&str; 6] = [
            "claude_run",
            "claude_build",
            "claude_job_status",
            "claude_list_jobs",
            "claude_cancel",
            "claude_list_projects",
        ];
        match self {
            ToolProfile::All => true,
            _ if APPROVALS.contains(&tool) => true,
            ToolProfile::Jobs => JOBS.contains(&tool),
            ToolProfile::Core => !JOBS.contains(&tool) && tool != "pool_transcript",
        }
    }
}

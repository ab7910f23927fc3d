//! The job API: `claude_run`, `claude_build`, `claude_job_status`, `claude_list_jobs`,
//! `claude_cancel`, `claude_list_projects`, with the camelCase names and states of the
//! ClaudeMCP job server. A job is a pool task with a project; its id works with the pool
//! tools too (`pool_result`, `pool_cancel`, transcripts) and the other way round.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::task::{TaskKind, TaskReport};
use crate::status::TaskStatus;

/// The longest timeout a job may ask for: 6 hours.
pub const MAX_JOB_TIMEOUT_MS: u64 = 6 * 3600 * 1000;
/// A run's timeout when it sets none: 30 minutes.
pub const DEFAULT_RUN_TIMEOUT_MS: u64 = 30 * 60 * 1000;
/// A build's timeout when it sets none: 4 hours.
pub const DEFAULT_BUILD_TIMEOUT_MS: u64 = 4 * 3600 * 1000;

/// Parameters of `claude_run`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunJobParams {
    #[serde(deserialize_with = "crate::validate::de::project")]
    pub project: String,
    pub prompt: String,
    /// Default 30 min, at most 6 h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// An earlier job's, to continue it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::validate::de::opt_session_id"
    )]
    pub session_id: Option<String>,
    /// Allowed unasked, e.g. Bash(git diff:*).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::validate::de::opt_tools"
    )]
    pub allowed_tools: Option<Vec<String>>,
}

/// Parameters of `claude_build`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BuildJobParams {
    #[serde(deserialize_with = "crate::validate::de::project")]
    pub project: String,
    pub spec: String,
    /// Must not exist.
    #[serde(deserialize_with = "crate::validate::de::branch")]
    pub branch: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::validate::de::opt_branch"
    )]
    pub base_branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_tests: Option<bool>,
    /// Default 4 h, at most 6 h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Parameters of `claude_job_status` and `claude_cancel`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobIdParams {
    pub job_id: String,
}

/// Parameters of `claude_list_jobs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListJobsParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// Default 50, at most 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its project's turn and a slot.
    Queued,
    /// Claude is working on it.
    Running,
    /// Finished without error.
    Done,
    /// Claude reported an error, the process failed, or the deadline passed.
    Failed,
    /// Cancelled.
    Cancelled,
    /// Running when an earlier server stopped without a graceful shutdown.
    Interrupted,
}

impl JobState {
    /// The state a task's status reads as.
    pub fn of(status: TaskStatus) -> JobState {
        match status {
            TaskStatus::Pending => JobState::Queued,
            TaskStatus::Running => JobState::Running,
            TaskStatus::Completed => JobState::Done,
            TaskStatus::Failed | TaskStatus::TimedOut => JobState::Failed,
            TaskStatus::Cancelled => JobState::Cancelled,
            TaskStatus::Interrupted => JobState::Interrupted,
        }
    }

    /// The task statuses that read as this state.
    pub fn statuses(self) -> &'static [TaskStatus] {
        match self {
            JobState::Queued => &[TaskStatus::Pending],
            JobState::Running => &[TaskStatus::Running],
            JobState::Done => &[TaskStatus::Completed],
            JobState::Failed => &[TaskStatus::Failed, TaskStatus::TimedOut],
            JobState::Cancelled => &[TaskStatus::Cancelled],
            JobState::Interrupted => &[TaskStatus::Interrupted],
        }
    }
}

/// What `claude_run` and `claude_build` return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobAccepted {
    pub job_id: String,
    /// queued.
    pub state: JobState,
}

/// A job as `claude_job_status` and `claude_list_jobs` report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobReport {
    pub job_id: String,
    /// run or build (task for pool tasks read through this API).
    pub kind: TaskKind,
    /// Its project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// queued, running, done, failed, cancelled or interrupted.
    pub state: JobState,
    /// When it was submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_at: Option<String>,
    /// When Claude started on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Claude's answer (the last 50 KiB when `outputTruncated`; the transcript has it all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Set when `output` is only the end of the answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_truncated: bool,
    /// The conversation: pass it back as sessionId to continue it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// A build's commit: the branch head as git reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_sha: Option<String>,
    /// A build's branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Why it did not finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Dollars it cost.
    pub spend_usd: f64,
}

impl JobReport {
    /// The job view of a task's report.
    pub fn of(r: &TaskReport) -> JobReport {
        JobReport {
            job_id: r.task_id.0.clone(),
            kind: r.kind,
            project: r.project.clone(),
            state: JobState::of(r.status),
            enqueued_at: r.enqueued_at.clone(),
            started_at: r.started_at.clone(),
            finished_at: r.finished_at.clone(),
            output: r.output.clone(),
            output_truncated: r.output_truncated,
            session_id: r.session_id.clone(),
            commit_sha: r.commit.clone(),
            branch: r.branch.clone(),
            error: r.error.clone(),
            spend_usd: r.spend_usd,
        }
    }
}

/// What `claude_list_jobs` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<JobReport>,
}

/// What `claude_cancel` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JobCancelled {
    /// True when the job is cancelled (now or before).
    pub ok: bool,
    /// Its state after the call.
    pub state: JobState,
    /// What happened, in words.
    pub message: String,
}

/// One project as `claude_list_projects` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectInfo {
    /// Its name.
    pub name: String,
    /// The branch builds start from by default.
    pub default_branch: String,
    /// Its directory.
    pub path: String,
    /// Jobs of the project that may run at once.
    pub max_concurrent: usize,
}

/// What `claude_list_projects` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProjectList {
    /// Every project, by name.
    pub projects: Vec<ProjectInfo>,
}

/// Parameters of `pool_transcript`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TranscriptParams {
    pub task_id: String,
    /// The previous page's next_offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Default 256 KiB, at most 4 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<usize>,
}

/// What `pool_transcript` returns: a page of the task's NDJSON transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TranscriptReport {
    /// The task.
    pub task_id: String,
    /// Where this page starts.
    pub offset: u64,
    /// Where the next page starts; null at the end.
    pub next_offset: Option<u64>,
    /// The transcript's size.
    pub total_bytes: u64,
    /// Stream-json events, one per line: the prompt as sent, then everything Claude printed.
    pub ndjson: String,
}

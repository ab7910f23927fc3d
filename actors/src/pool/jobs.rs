//! The job API on the embedding handle: `claude_run`, `claude_build`, job status, lists,
//! cancel, projects. What a task must pass before it is queued and what the store answers
//! are in [`super::stored`].

use std::path::PathBuf;
use std::time::Duration;

use claude_pool_protocol::tools::{
    BuildJobParams, DEFAULT_BUILD_TIMEOUT_MS, DEFAULT_RUN_TIMEOUT_MS, JobAccepted, JobCancelled,
    JobReport, JobState, MAX_JOB_TIMEOUT_MS, ProjectInfo, RunJobParams, TaskKind,
};
use claude_pool_protocol::{PermissionMode, TaskId, validate};

use super::Pool;
use super::stored::query;
use crate::error::PoolError;
use crate::projects::{Projects, Reload};
use crate::store::db::TaskFilter;
use crate::task::TaskSpec;

/// The tool a build needs besides edits (accepted by its permission mode): Claude itself
/// runs the project's tests and `git add`/`git commit` on the build's branch (the pool only
/// reads the branch afterwards), so the shell must run without asking.
const BUILD_TOOL: &str = "Bash";

/// The permission mode a build runs in: its edits are accepted without asking.
/// bypassPermissions would be simpler, but the CLI refuses it to root.
const BUILD_MODE: PermissionMode = PermissionMode::AcceptEdits;

impl Pool {
    // ---- jobs

    /// `claude_run`: a prompt in a project's directory, optionally continuing a session;
    /// `depth` is the request's recursion depth (the server's own when `None`).
    pub async fn run_job(
        &self,
        p: RunJobParams,
        depth: Option<u32>,
    ) -> Result<JobAccepted, PoolError> {
        let timeout = job_timeout(p.timeout_ms, DEFAULT_RUN_TIMEOUT_MS)?;
        let mut spec = TaskSpec::new(p.prompt).timeout(timeout).project(p.project);
        spec.kind = TaskKind::Run;
        spec.session_id = p.session_id;
        spec.allowed_tools = p.allowed_tools.map(|t| self.allowed_tools(t));
        spec.depth = depth;
        self.accepted(self.submit(spec).await?)
    }

    /// `claude_build`: a spec implemented and committed on a new branch of the project,
    /// in a worktree of its own (the project's checkout is never touched).
    pub async fn build_job(
        &self,
        p: BuildJobParams,
        depth: Option<u32>,
    ) -> Result<JobAccepted, PoolError> {
        self.check_depth(depth)?;
        let tools = self.build_tools()?;
        validate::branch(&p.branch)
            .map_err(|e| PoolError::InvalidArgument(format!("branch: {e}")))?;
        if let Some(base) = &p.base_branch {
            validate::branch(base)
                .map_err(|e| PoolError::InvalidArgument(format!("baseBranch: {e}")))?;
        }
        let timeout = job_timeout(p.timeout_ms, DEFAULT_BUILD_TIMEOUT_MS)?;
        let projects = self.durable.projects.current();
        let project = known_project(&projects, &p.project)?;
        if p.spec.trim().is_empty() {
            return Err(PoolError::InvalidTask("the spec is empty".into()));
        }
        let base = p
            .base_branch
            .clone()
            .unwrap_or_else(|| project.default_branch.clone());
        let builds = self.build_dir();
        crate::private::private_dir(&builds).map_err(PoolError::Refused)?;
        let dir = builds.join(uuid::Uuid::new_v4().simple().to_string());
        let plan = crate::build::prepare(&project.path, &p.branch, &base, &dir)
            .await
            .map_err(PoolError::InvalidArgument)?;
        let prompt = crate::build::prompt(&p.spec, &p.branch, &base, p.run_tests.unwrap_or(true));
        let mut spec = TaskSpec::new(prompt)
            .timeout(timeout)
            .project(p.project)
            .permission_mode(BUILD_MODE);
        spec.allowed_tools = Some(tools);
        spec.kind = TaskKind::Build;
        spec.depth = depth;
        spec.cwd = Some(plan.worktree.clone());
        spec.build = Some(plan.clone());
        match self.submit(spec).await {
            Ok(id) => self.accepted(id),
            Err(e) => {
                crate::build::cleanup(&plan, false).await;
                Err(e)
            }
        }
    }

    /// `claude_job_status`.
    pub async fn job(&self, id: &str) -> Result<JobReport, PoolError> {
        let report = self
            .result(&TaskId(id.to_owned()))
            .await
            .map_err(|e| unknown_job(e, id))?;
        Ok(JobReport::of(&report))
    }

    /// `claude_list_jobs`: newest first, filtered exactly (the store answers; without one,
    /// nothing is listed).
    pub async fn list_jobs(
        &self,
        project: Option<String>,
        state: Option<JobState>,
        limit: Option<usize>,
    ) -> Result<Vec<JobReport>, PoolError> {
        let Some(store) = &self.durable.writer else {
            return Ok(Vec::new());
        };
        let limit = limit.unwrap_or(50).clamp(1, 1000);
        let states: Vec<String> = match state {
            Some(s) => s.statuses().iter().map(|t| t.as_str().to_owned()).collect(),
            None => Vec::new(),
        };
        let rows = query(store, move |db| -> rusqlite::Result<Vec<_>> {
            // Jobs only (runs and builds), not pool tasks.
            let states: Vec<Option<String>> = if states.is_empty() {
                vec![None]
            } else {
                states.into_iter().map(Some).collect()
            };
            let mut out = Vec::new();
            for kind in [TaskKind::Run, TaskKind::Build] {
                for st in &states {
                    out.extend(db.list(&TaskFilter {
                        project: project.clone(),
                        state: st.clone(),
                        kind: Some(kind.as_str().to_owned()),
                        limit: Some(limit),
                    })?);
                }
            }
            out.sort_by_key(|r| std::cmp::Reverse(r.enqueued_at_ms));
            out.truncate(limit);
            Ok(out)
        })
        .await?;
        Ok(self
            .live_reports(rows)
            .await
            .iter()
            .map(JobReport::of)
            .collect())
    }

    /// `claude_cancel`: a queued job never starts; a running one has its process group
    /// stopped (interrupt, SIGTERM, SIGKILL).
    pub async fn cancel_job(&self, id: &str) -> Result<JobCancelled, PoolError> {
        let r = self
            .cancel(&TaskId(id.to_owned()))
            .await
            .map_err(|e| unknown_job(e, id))?;
        let state = JobState::of(r.status);
        Ok(JobCancelled {
            ok: state == JobState::Cancelled,
            state,
            message: r.message,
        })
    }

    /// `claude_list_projects`.
    pub fn projects(&self) -> Vec<ProjectInfo> {
        self.durable
            .projects
            .current()
            .list()
            .map(|p| ProjectInfo {
                name: p.name.clone(),
                default_branch: p.default_branch.clone(),
                path: p.path.display().to_string(),
                max_concurrent: p.max_concurrent,
            })
            .collect()
    }

    /// Reads the projects file again (SIGHUP): new projects appear, removed ones refuse
    /// new jobs, running jobs are untouched; a broken file keeps the old contents.
    pub fn reload_projects(&self) -> Result<Reload, String> {
        let result = self.durable.projects.reload();
        if let Ok(mut last) = self.durable.projects_error.lock() {
            *last = result.as_ref().err().cloned();
        }
        self.events.publish(crate::events::PoolEvent::Projects);
        result
    }

    /// The projects, their file, and why its last reload was refused (if it was).
    pub fn projects_report(&self) -> serde_json::Value {
        let error = self
            .durable
            .projects_error
            .lock()
            .ok()
            .and_then(|e| e.clone());
        serde_json::json!({
            "projects": self.projects(),
            "file": self.durable.projects.file().map(|f| f.display().to_string()),
            "last_reload_error": error,
        })
    }

    fn accepted(&self, id: TaskId) -> Result<JobAccepted, PoolError> {
        Ok(JobAccepted {
            job_id: id.0,
            state: JobState::Queued,
        })
    }

    /// A job's tools, within the server's `--allowed-tools`.
    fn allowed_tools(&self, asked: Vec<String>) -> Vec<String> {
        match &self.config.max_allowed_tools {
            Some(max) => asked.into_iter().filter(|t| max.contains(t)).collect(),
            None => asked,
        }
    }

    /// The tools a build runs with, or why this server cannot run one: it edits in
    /// [`BUILD_MODE`], which must be within the permission ceiling, and it needs the shell
    /// ([`BUILD_TOOL`]), which must be within `--allowed-tools` (its `Bash` entries are what
    /// the build gets: `Bash(git:*)` lets it commit but not run other commands).
    fn build_tools(&self) -> Result<Vec<String>, PoolError> {
        let ceiling = self.config.permission_ceiling();
        if !BUILD_MODE.within(ceiling) {
            return Err(PoolError::InvalidArgument(format!(
                "claude_build edits files in permission mode \"{BUILD_MODE}\", above this server's permission ceiling \"{ceiling}\" (modes from least to most allowed: {}); the operator allows builds with --max-permission-mode acceptEdits",
                PermissionMode::order_text()
            )));
        }
        let Some(max) = &self.config.max_allowed_tools else {
            return Ok(vec![BUILD_TOOL.to_owned()]);
        };
        let shell: Vec<String> = max
            .iter()
            .filter(|t| *t == BUILD_TOOL || t.starts_with(&format!("{BUILD_TOOL}(")))
            .cloned()
            .collect();
        if shell.is_empty() {
            return Err(PoolError::InvalidArgument(format!(
                "claude_build needs the {BUILD_TOOL} tool (Claude runs git commit and the project's tests itself), which this server's --allowed-tools ({}) does not allow; the operator allows builds by adding {BUILD_TOOL} (or a rule such as {BUILD_TOOL}(git:*)) to --allowed-tools",
                max.join(",")
            )));
        }
        Ok(shell)
    }

    /// Where build worktrees are made (a private directory, see [`crate::private`]):
    /// beside the store file, else in the temp directory under a name of this user's own (a
    /// shared name could be taken first by another user).
    fn build_dir(&self) -> PathBuf {
        self.config
            .store
            .as_ref()
            .and_then(|s| s.beside("builds"))
            .unwrap_or_else(|| {
                let user = crate::private::own_uid()
                    .map(|u| format!("-{u}"))
                    .unwrap_or_default();
                std::env::temp_dir().join(format!("claude-pool-builds{user}"))
            })
    }
}

pub(super) fn known_project<'a>(
    projects: &'a Projects,
    name: &str,
) -> Result<&'a crate::projects::Project, PoolError> {
    projects.get(name).ok_or_else(|| {
        let known: Vec<&str> = projects.list().map(|p| p.name.as_str()).collect();
        PoolError::NotFound(if known.is_empty() {
            format!("unknown project \"{name}\": the server has no projects (--projects FILE)")
        } else {
            format!(
                "unknown project \"{name}\": the projects are {}",
                known.join(", ")
            )
        })
    })
}

/// A job id nothing has, in the job API's words.
fn unknown_job(e: PoolError, id: &str) -> PoolError {
    match e {
        PoolError::UnknownTask(_) => {
            PoolError::NotFound(format!("unknown job \"{id}\": no job has this id"))
        }
        other => other,
    }
}

fn job_timeout(ms: Option<u64>, default_ms: u64) -> Result<Duration, PoolError> {
    let ms = ms.unwrap_or(default_ms);
    if ms == 0 || ms > MAX_JOB_TIMEOUT_MS {
        return Err(PoolError::InvalidArgument(format!(
            "timeoutMs must be between 1 and {MAX_JOB_TIMEOUT_MS} (6 h), not {ms}"
        )));
    }
    Ok(Duration::from_millis(ms))
}

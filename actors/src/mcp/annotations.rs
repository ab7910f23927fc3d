//! Every tool's title and behaviour hints (`annotations`), for clients that show tools to
//! a person or decide what to confirm.
//!
//! - `readOnlyHint`: reads the pool and changes nothing.
//! - `destructiveHint` (tools that change something): may undo or remove what exists —
//!   cancel, drain, scale down, overwrite or delete shared context.
//! - `idempotentHint`: calling it again with the same arguments changes nothing more.
//! - `openWorldHint`: starts Claude work, which reaches past the pool (files, commands,
//!   the web, as its permissions allow).

use rmcp::model::ToolAnnotations;

/// `(title, read_only, destructive, idempotent, open_world)` of each tool.
const TABLE: &[(&str, &str, bool, bool, bool, bool)] = &[
    ("pool_run", "Run a task and wait", false, false, false, true),
    ("pool_submit", "Submit a task", false, false, false, true),
    (
        "pool_result",
        "Read a task's result",
        true,
        false,
        true,
        false,
    ),
    (
        "pool_cancel",
        "Cancel a task or chain",
        false,
        true,
        true,
        false,
    ),
    (
        "pool_fan_out",
        "Run many prompts in parallel",
        false,
        false,
        false,
        true,
    ),
    (
        "pool_chain",
        "Run a chain of steps",
        false,
        false,
        false,
        true,
    ),
    (
        "pool_submit_chain",
        "Submit a chain of steps",
        false,
        false,
        false,
        true,
    ),
    (
        "pool_chain_result",
        "Read a chain's result",
        true,
        false,
        true,
        false,
    ),
    (
        "context_set",
        "Set shared context",
        false,
        true,
        true,
        false,
    ),
    (
        "context_get",
        "Read shared context",
        true,
        false,
        true,
        false,
    ),
    (
        "context_list",
        "List shared context",
        true,
        false,
        true,
        false,
    ),
    (
        "context_delete",
        "Delete shared context",
        false,
        true,
        true,
        false,
    ),
    ("pool_status", "Pool status", true, false, true, false),
    ("pool_scale_up", "Add slots", false, false, false, false),
    ("pool_scale_down", "Remove slots", false, true, false, false),
    (
        "pool_set_target_slots",
        "Set the slot count",
        false,
        true,
        true,
        false,
    ),
    ("pool_drain", "Drain the pool", false, true, true, false),
    ("pool_skill_run", "Run a skill", false, false, false, true),
    ("pool_skill_list", "List skills", true, false, true, false),
    ("pool_skill_get", "Read a skill", true, false, true, false),
    (
        "pool_transcript",
        "Read a task's transcript",
        true,
        false,
        true,
        false,
    ),
    (
        "pool_approvals",
        "Questions waiting for approval",
        true,
        false,
        true,
        false,
    ),
    (
        "pool_approve",
        "Answer a worker's question",
        false,
        false,
        true,
        false,
    ),
    (
        "claude_run",
        "Start a job in a project",
        false,
        false,
        false,
        true,
    ),
    (
        "claude_build",
        "Build a branch in a project",
        false,
        false,
        false,
        true,
    ),
    ("claude_job_status", "Read a job", true, false, true, false),
    ("claude_list_jobs", "List jobs", true, false, true, false),
    ("claude_cancel", "Cancel a job", false, true, true, false),
    (
        "claude_list_projects",
        "List projects",
        true,
        false,
        true,
        false,
    ),
];

/// The title and annotations of `tool`, if it is known.
pub fn of(tool: &str) -> Option<(&'static str, ToolAnnotations)> {
    let &(_, title, read_only, destructive, idempotent, open_world) =
        TABLE.iter().find(|row| row.0 == tool)?;
    // The title is the tool's own `title`; not repeated in the annotations.
    let mut a = ToolAnnotations::new()
        .read_only(read_only)
        .idempotent(idempotent)
        .open_world(open_world);
    if !read_only {
        a = a.destructive(destructive);
    }
    Some((title, a))
}

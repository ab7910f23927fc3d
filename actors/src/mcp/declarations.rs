//! How every tool declares itself in `tools/list`: its title, its behaviour hints
//! (`annotations`, for clients that show tools to a person or decide what to confirm) and
//! the schema of its result (`outputSchema`, which its `structuredContent` matches).
//!
//! - `readOnlyHint`: reads the pool and changes nothing.
//! - `destructiveHint` (tools that change something): may undo or remove what exists —
//!   cancel, drain, scale down, overwrite or delete shared context.
//! - `idempotentHint`: calling it again with the same arguments changes nothing more.
//! - `openWorldHint`: starts Claude work, which reaches past the pool (files, commands,
//!   the web, as its permissions allow).
//!
//! A hint is listed only where it differs from the protocol's default (not read-only,
//! destructive, not idempotent, open world): an absent hint means the default.

use std::sync::Arc;

use claude_pool_protocol::approvals::{ApprovalsReport, ApproveReport};
use claude_pool_protocol::tools::TASK_OPTION_FIELDS;
use claude_pool_protocol::tools::*;
use rmcp::handler::server::common::schema_for_output;
use rmcp::model::{JsonObject, Tool, ToolAnnotations};

use super::schema;

/// The schema of a tool's `structuredContent` when it succeeds.
type Output = fn() -> Arc<JsonObject>;

/// Which of a tool's arguments are described in another tool's schema (its own schema
/// gives their types only, and its description says "as pool_run").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Described {
    /// Every argument is described here.
    Here,
    /// The task options are described in pool_run's schema.
    OptionsInPoolRun,
    /// Every argument is described in the schema of the tool this one is a variant of.
    AllIn(&'static str),
}
use Described::*;

/// `(tool, title, read_only, destructive, idempotent, open_world, result, arguments)`.
type Row = (
    &'static str,
    &'static str,
    bool,
    bool,
    bool,
    bool,
    Output,
    Described,
);

/// Every tool's row.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    ("pool_run", "Run a task", false, false, false, true, schema_for_output::<TaskReport>, Here),
    ("pool_submit", "Submit a task", false, false, false, true, schema_for_output::<SubmitReport>, AllIn("pool_run")),
    ("pool_result", "Task result", true, false, true, false, schema_for_output::<TaskReport>, Here),
    ("pool_cancel", "Cancel", false, true, true, false, cancel_output, Here),
    ("pool_fan_out", "Fan out prompts", false, false, false, true, schema_for_output::<FanOutReport>, OptionsInPoolRun),
    ("pool_chain", "Run a chain", false, false, false, true, schema_for_output::<ChainReport>, OptionsInPoolRun),
    ("pool_submit_chain", "Submit a chain", false, false, false, true, schema_for_output::<ChainSubmitReport>, AllIn("pool_chain")),
    ("pool_chain_result", "Chain result", true, false, true, false, schema_for_output::<ChainReport>, Here),
    ("context_set", "Set context", false, true, true, false, schema_for_output::<ContextEntry>, Here),
    ("context_get", "Get context", true, false, true, false, schema_for_output::<ContextEntry>, Here),
    ("context_list", "List context", true, false, true, false, schema_for_output::<std::collections::BTreeMap<String, String>>, Here),
    ("context_delete", "Delete context", false, true, true, false, schema_for_output::<ContextDeleteReport>, Here),
    ("pool_status", "Pool status", true, false, true, false, schema_for_output::<PoolStatusReport>, Here),
    ("pool_scale_up", "Add slots", false, false, false, false, schema_for_output::<ScaleReport>, Here),
    ("pool_scale_down", "Remove slots", false, true, false, false, schema_for_output::<ScaleReport>, Here),
    ("pool_set_target_slots", "Set slot count", false, true, true, false, schema_for_output::<ScaleReport>, Here),
    ("pool_drain", "Drain the pool", false, true, true, false, schema_for_output::<DrainReport>, Here),
    ("pool_skill_run", "Run a skill", false, false, false, true, schema_for_output::<TaskReport>, OptionsInPoolRun),
    ("pool_skill_list", "List skills", true, false, true, false, schema_for_output::<SkillListReport>, Here),
    ("pool_skill_get", "Read a skill", true, false, true, false, schema_for_output::<SkillInfo>, Here),
    ("pool_transcript", "Transcript", true, false, true, false, schema_for_output::<TranscriptReport>, Here),
    ("pool_approvals", "Pending approvals", true, false, true, false, schema_for_output::<ApprovalsReport>, Here),
    ("pool_approve", "Answer approval", false, false, true, false, schema_for_output::<ApproveReport>, Here),
    ("claude_run", "Start a job", false, false, false, true, schema_for_output::<JobAccepted>, Here),
    ("claude_build", "Build a branch", false, false, false, true, schema_for_output::<JobAccepted>, Here),
    ("claude_job_status", "Job status", true, false, true, false, schema_for_output::<JobReport>, Here),
    ("claude_list_jobs", "List jobs", true, false, true, false, schema_for_output::<JobList>, Here),
    ("claude_cancel", "Cancel a job", false, true, true, false, schema_for_output::<JobCancelled>, Here),
    ("claude_list_projects", "List projects", true, false, true, false, schema_for_output::<ProjectList>, Here),
];

/// `pool_cancel` answers for a task or for a chain.
fn cancel_output() -> Arc<JsonObject> {
    let mut defs = JsonObject::new();
    let mut alternatives = Vec::new();
    for one in [
        schema_for_output::<CancelReport>(),
        schema_for_output::<ChainCancelReport>(),
    ] {
        let mut one = one.as_ref().clone();
        if let Some(serde_json::Value::Object(d)) = one.remove("$defs") {
            defs.extend(d);
        }
        alternatives.push(serde_json::Value::Object(one));
    }
    let mut either = JsonObject::new();
    either.insert("type".into(), "object".into());
    either.insert("anyOf".into(), alternatives.into());
    either.insert("$defs".into(), defs.into());
    Arc::new(either)
}

/// Rewrites `tool` as `tools/list` shows it: its compact input schema, title,
/// annotations and output schema. A tool missing from the table keeps what it has.
pub fn apply(tool: &mut Tool) {
    let mut input = schema::input(&tool.input_schema);
    let Some(&(_, title, read_only, destructive, idempotent, open_world, output, described)) =
        TABLE.iter().find(|row| row.0 == tool.name)
    else {
        tool.input_schema = Arc::new(input);
        return;
    };
    match described {
        Here => {}
        OptionsInPoolRun => schema::described_elsewhere(&mut input, &TASK_OPTION_FIELDS),
        AllIn(_) => {
            let all: Vec<String> = input
                .get("properties")
                .and_then(|p| p.as_object())
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            schema::described_elsewhere(&mut input, &all);
        }
    }
    let mut a = ToolAnnotations::new();
    if read_only {
        a = a.read_only(true);
    } else {
        // Only a tool that changes something can be destructive or idempotent.
        if !destructive {
            a = a.destructive(false);
        }
        if idempotent {
            a = a.idempotent(true);
        }
    }
    if !open_world {
        a = a.open_world(false);
    }
    tool.input_schema = Arc::new(input);
    tool.title = Some(title.to_owned());
    tool.annotations = Some(a);
    tool.output_schema = Some(Arc::new(schema::output(&output())));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::mcp::PoolServer;

    fn listed() -> Vec<Tool> {
        let mut tools = PoolServer::every_tool().list_all();
        for t in &mut tools {
            apply(t);
        }
        tools
    }

    fn top_level(schema: &JsonObject) -> BTreeSet<String> {
        schema
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn every_tool_is_declared() {
        let raw = PoolServer::every_tool().list_all();
        let declared: BTreeSet<&str> = TABLE.iter().map(|row| row.0).collect();
        let served: BTreeSet<&str> = raw.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(declared, served);
    }

    /// The compact schemas keep every argument: the same names at the top, the same
    /// required ones, and every nested property either in the tool's own listing or in
    /// the listing of the tool that describes it.
    #[test]
    fn no_argument_is_lost() {
        let raw = PoolServer::every_tool().list_all();
        let listed = listed();
        let schema_of = |name: &str| -> &JsonObject {
            &listed
                .iter()
                .find(|t| t.name == name)
                .expect("listed")
                .input_schema
        };
        for t in &raw {
            let name = t.name.as_ref();
            let shown = schema_of(name);
            assert_eq!(top_level(shown), top_level(&t.input_schema), "{name}");
            assert_eq!(
                shown.get("required"),
                t.input_schema.get("required"),
                "{name}"
            );
            let row = TABLE.iter().find(|row| row.0 == name).expect("declared");
            let mut paths = schema::property_paths(shown);
            match row.7 {
                Here => {}
                OptionsInPoolRun => paths.extend(schema::property_paths(schema_of("pool_run"))),
                AllIn(other) => paths.extend(schema::property_paths(schema_of(other))),
            }
            let missing: Vec<String> = schema::property_paths(&t.input_schema)
                .difference(&paths)
                .cloned()
                .collect();
            assert!(missing.is_empty(), "{name} lost {missing:?}");
        }
    }

    #[test]
    fn a_tool_described_elsewhere_takes_the_same_arguments_as_the_one_describing_it() {
        let raw = PoolServer::every_tool().list_all();
        let input = |name: &str| {
            top_level(
                &raw.iter()
                    .find(|t| t.name == name)
                    .expect("served")
                    .input_schema,
            )
        };
        for row in TABLE {
            match row.7 {
                Here => {}
                OptionsInPoolRun => {
                    let options: BTreeSet<String> =
                        TASK_OPTION_FIELDS.iter().map(|f| f.to_string()).collect();
                    assert!(input(row.0).is_superset(&options), "{}", row.0);
                    assert!(input("pool_run").is_superset(&options));
                }
                AllIn(other) => assert_eq!(input(row.0), input(other), "{}", row.0),
            }
        }
    }

    #[test]
    fn an_output_schema_names_fields_its_result_type_always_has() {
        for row in TABLE {
            let full = (row.6)();
            let required = |s: &JsonObject| -> BTreeSet<String> {
                s.get("required")
                    .and_then(|r| r.as_array())
                    .map(|r| {
                        r.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let shown = schema::output(&full);
            assert_eq!(shown.get("type"), Some(&"object".into()), "{}", row.0);
            assert!(
                required(&shown).is_subset(&required(&full)),
                "{}: {:?} names fields its type may leave out",
                row.0,
                shown
            );
        }
    }
}

//! `completion/complete`: values for a skill's arguments (prompts) and for the ids in the
//! resource templates.
//!
//! - A prompt (skill) argument: its default, and the configured project names for an
//!   argument named `project`; an unknown skill or argument is invalid params.
//! - `pool://results/{task_id}`, `pool://transcripts/{task_id}`: the newest task ids that
//!   start with what was typed; `pool://chains/{chain_id}`: chain ids; `pool://slots/{id}`:
//!   slot ids. Any other template is invalid params.

use rmcp::ErrorData;
use rmcp::model::{CompleteRequestParams, CompleteResult, CompletionInfo, Reference};

use crate::pool::Pool;
use crate::store::db::RecentTable;

/// The most values one answer carries (the protocol's own cap).
const MAX: usize = CompletionInfo::MAX_VALUES;

/// Answers one `completion/complete`.
pub async fn complete(
    pool: &Pool,
    request: &CompleteRequestParams,
) -> Result<CompleteResult, ErrorData> {
    let typed = request.argument.value.as_str();
    let values = match &request.r#ref {
        Reference::Prompt(p) => prompt_values(pool, &p.name, &request.argument.name, typed)?,
        Reference::Resource(r) => {
            resource_values(pool, &r.uri, &request.argument.name, typed).await?
        }
        _ => {
            return Err(ErrorData::invalid_params(
                "unknown completion reference",
                None,
            ));
        }
    };
    let mut values: Vec<String> = values
        .into_iter()
        .filter(|v| v.starts_with(typed))
        .collect();
    values.dedup();
    let has_more = values.len() > MAX;
    let total = values.len();
    values.truncate(MAX);
    let mut info = CompletionInfo::new(values).map_err(|e| ErrorData::internal_error(e, None))?;
    info.total = u32::try_from(total).ok();
    info.has_more = Some(has_more);
    Ok(CompleteResult::new(info))
}

fn prompt_values(
    pool: &Pool,
    skill: &str,
    argument: &str,
    _typed: &str,
) -> Result<Vec<String>, ErrorData> {
    let Some(s) = pool.skills().get(skill) else {
        return Err(ErrorData::invalid_params(
            format!("no prompt named {skill:?}"),
            Some(serde_json::json!({ "prompt": skill })),
        ));
    };
    let Some(arg) = s.arguments.iter().find(|a| a.name == argument) else {
        return Err(ErrorData::invalid_params(
            format!("the prompt {skill:?} has no argument {argument:?}"),
            None,
        ));
    };
    let mut values: Vec<String> = arg.default.iter().cloned().collect();
    if argument == "project" {
        values.extend(pool.projects().into_iter().map(|p| p.name));
    }
    Ok(values)
}

async fn resource_values(
    pool: &Pool,
    uri: &str,
    argument: &str,
    typed: &str,
) -> Result<Vec<String>, ErrorData> {
    let table = match (uri, argument) {
        ("pool://results/{task_id}" | "pool://transcripts/{task_id}", "task_id") => {
            RecentTable::Tasks
        }
        ("pool://chains/{chain_id}", "chain_id") => RecentTable::Chains,
        ("pool://slots/{id}", "id") => {
            let status = pool.status().await.map_err(super::to_error_data)?;
            return Ok(status.slots.into_iter().map(|s| s.id.0).collect());
        }
        _ => {
            return Err(ErrorData::invalid_params(
                format!("nothing to complete for {argument:?} of {uri:?}"),
                Some(serde_json::json!({ "uri": uri })),
            ));
        }
    };
    pool.recent_ids(table, typed, MAX + 1)
        .await
        .map_err(super::to_error_data)
}

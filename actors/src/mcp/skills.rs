//! Skill tools (`pool_skill_run`, `pool_skill_list`, `pool_skill_get`), and every skill as
//! an MCP prompt, so Claude Code offers it as a slash command.

use claude_pool_protocol::tools::{SkillGetParams, SkillListReport, SkillRunParams};
use claude_pool_protocol::validate::MAX_RENDERED_PROMPT;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, GetPromptResult, JsonObject, Prompt, PromptArgument, PromptMessage, Role,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, tool, tool_router};

use super::{Checked, PoolServer, fail, structured, to_error_data};
use crate::error::PoolError;
use crate::pool::Pool;
use crate::task::TaskSpec;

/// Every skill as a prompt.
pub(super) fn prompts(pool: &Pool) -> Vec<Prompt> {
    pool.skills()
        .all()
        .map(|s| {
            let args = s
                .arguments
                .iter()
                .map(|a| {
                    PromptArgument::new(a.name.clone())
                        .with_description(a.description.clone())
                        .with_required(a.required)
                })
                .collect();
            Prompt::new(s.name.clone(), Some(s.description.clone()), Some(args))
        })
        .collect()
}

/// The prompt of skill `name`: an instruction to run it on the pool, with the rendered
/// task, so the coordinator can delegate it in one call.
pub(super) fn get_prompt(
    pool: &Pool,
    name: &str,
    arguments: Option<JsonObject>,
) -> Result<GetPromptResult, ErrorData> {
    let args = arguments.unwrap_or_default();
    let task = pool.skill_task(name, &args).map_err(to_error_data)?;
    let skill = pool
        .skills()
        .get(name)
        .ok_or_else(|| ErrorData::invalid_params(format!("unknown prompt {name:?}"), None))?;
    let call = serde_json::json!({ "skill": name, "arguments": args }).to_string();
    // The task is within the cap already; the call repeats the arguments beside it.
    let len = call.len() + task.prompt.len();
    if len > MAX_RENDERED_PROMPT {
        return Err(ErrorData::invalid_params(
            format!(
                "prompt {name:?} would be over {len} bytes with these arguments, over the cap of {MAX_RENDERED_PROMPT} bytes (1 MiB) on a prompts/get result; pass shorter arguments"
            ),
            None,
        ));
    }
    let text = format!(
        "Run the claude-pool skill \"{name}\" on a pool slot: call the pool_skill_run tool with {call}, then report its output.\n\nThe task it runs:\n\n{}",
        task.prompt
    );
    Ok(
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description(skill.description.clone()),
    )
}

#[tool_router(router = skill_tools, vis = "pub(super)")]
impl PoolServer {
    /// Runs a skill.
    #[tool(name = "pool_skill_run", description = "Run a skill; as pool_run.")]
    async fn pool_skill_run(
        &self,
        Parameters(params): Parameters<Checked<SkillRunParams>>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        match self.skill_spec(params.get()?) {
            Ok(spec) => self.run_task(spec, &context).await,
            Err(e) => fail(e),
        }
    }

    /// Lists the skills.
    #[tool(
        name = "pool_skill_list",
        description = "Every skill and its arguments."
    )]
    async fn pool_skill_list(&self) -> Result<CallToolResult, ErrorData> {
        structured(&SkillListReport {
            skills: self.pool.skills().all().map(|s| s.info(false)).collect(),
        })
    }

    /// Describes one skill.
    #[tool(
        name = "pool_skill_get",
        description = "A skill and its prompt template."
    )]
    async fn pool_skill_get(
        &self,
        Parameters(params): Parameters<Checked<SkillGetParams>>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = params.get()?;
        match self.pool.skills().get(&params.skill) {
            Some(s) => structured(&s.info(true)),
            None => Err(ErrorData::invalid_params(
                format!(
                    "skill not found: {:?} (known skills: {})",
                    params.skill,
                    self.pool.skills().names().join(", ")
                ),
                None,
            )),
        }
    }
}

impl PoolServer {
    /// The task a `pool_skill_run` call describes.
    pub(super) fn skill_spec(&self, params: SkillRunParams) -> Result<TaskSpec, PoolError> {
        let options = params.task_options();
        let args = params.arguments.unwrap_or_default();
        Ok(self
            .pool
            .skill_task(&params.skill, &args)?
            .with_options(&options))
    }
}

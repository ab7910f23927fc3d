//! Skills: `pool_skill_run`, `pool_skill_list`, `pool_skill_get`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::with_task_options;

with_task_options! {
    /// Parameters of `pool_skill_run`.
    pub struct SkillRunParams {
            pub skill: String,
        /// By name; values are strings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub arguments: Option<Map<String, Value>>,
    }
}

/// Parameters of `pool_skill_get`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SkillGetParams {
    pub skill: String,
}

/// One declared argument of a skill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SkillArgumentInfo {
    /// The name, used as `{name}` in the skill's prompt.
    pub name: String,
    /// What to pass.
    pub description: String,
    /// Whether pool_skill_run refuses to run without it.
    pub required: bool,
    /// The value used when it is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// A skill as `pool_skill_list` and `pool_skill_get` describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SkillInfo {
    /// The name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its arguments.
    pub arguments: Vec<SkillArgumentInfo>,
    /// "builtin", or the SKILL.md file it was loaded from.
    pub source: String,
    /// The prompt template (pool_skill_get only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// What `pool_skill_list` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SkillListReport {
    /// Every skill, by name.
    pub skills: Vec<SkillInfo>,
}

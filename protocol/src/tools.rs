//! MCP tool parameters and results. Names and fields follow claude-pool-server's documented
//! interface (`output`, `spend_usd`, `tokens_used {input, output}`, `task_id`, `chain_id`,
//! `final_output`, `total_spend`, `success`, `new_slot_count`, `details`, `deleted`, the
//! `pool_status` fields), plus what a caller needs to act on a result (`error`,
//! `session_id`, `duration_ms`, …).
//!
//! Every field's doc comment becomes its JSON-schema description. Parameter structs reject
//! unknown fields, so a misspelt option is an error instead of being silently ignored.

mod admin;
mod chain;
mod context;
mod fanout;
mod job;
mod skill;
mod task;

pub use admin::*;
pub use chain::*;
pub use context::*;
pub use fanout::*;
pub use job::*;
pub use skill::*;
pub use task::*;

use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// A positive, finite amount of US dollars (a budget cap).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Usd(pub f64);

impl Usd {
    /// Checks that `v` is a usable cap: finite and greater than zero.
    pub fn new(v: f64) -> Result<Usd, String> {
        if v.is_finite() && v > 0.0 {
            Ok(Usd(v))
        } else {
            Err(format!(
                "a dollar amount must be a positive number, not {v}"
            ))
        }
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${:.4}", self.0)
    }
}

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Usd::new(v).map_err(de::Error::custom)
    }
}

impl JsonSchema for Usd {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Usd".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "US dollars, greater than zero."
        })
    }
}

/// The per-task options every tool that starts work accepts (`pool_run`, `pool_submit`,
/// `pool_fan_out` for each prompt, `pool_chain` for each step, `pool_skill_run`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskOptions {
    /// Deadline, counted from submission.
    pub timeout: Option<crate::Timeout>,
    /// Model override.
    pub model: Option<String>,
    /// Permission-mode override.
    pub permission_mode: Option<crate::PermissionMode>,
    /// Effort override.
    pub effort: Option<crate::Effort>,
    /// Spend cap of one task.
    pub max_budget_usd: Option<Usd>,
    /// Permission rules that allow without asking (within the server's allow rules).
    pub allow: Option<Vec<String>>,
    /// Permission rules that deny without asking.
    pub deny: Option<Vec<String>>,
    /// How long a permission question waits.
    pub approval_timeout: Option<crate::Timeout>,
    /// Run it again elsewhere if its slot's host is lost after it started (it may then
    /// run twice).
    #[cfg(feature = "cluster")]
    pub retry_if_lost: Option<bool>,
}

/// The names of the [`TaskOptions`] fields, as every tool that starts work takes them.
pub const TASK_OPTION_FIELDS: [&str; 8] = [
    "timeout",
    "model",
    "permission_mode",
    "effort",
    "max_budget_usd",
    "allow",
    "deny",
    "approval_timeout",
];

/// Declares a parameter struct with its own fields followed by the [`TaskOptions`] fields,
/// and a `task_options()` accessor. (`#[serde(flatten)]` cannot be combined with
/// `deny_unknown_fields`, so the shared fields are spelled out by this macro instead.)
macro_rules! with_task_options {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// Seconds or "5m" from submission.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub timeout: Option<$crate::Timeout>,
            /// E.g. "sonnet".
            #[serde(
                default,
                skip_serializing_if = "Option::is_none",
                deserialize_with = "crate::validate::de::opt_model"
            )]
            pub model: Option<String>,
            /// At most --max-permission-mode.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub permission_mode: Option<$crate::PermissionMode>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub effort: Option<$crate::Effort>,
            /// Per task; reaching it stops it.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub max_budget_usd: Option<$crate::tools::Usd>,
            /// Rules run unasked, e.g. Bash(cargo test:*).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub allow: Option<Vec<String>>,
            /// Rules refused.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub deny: Option<Vec<String>>,
            /// How long a permission question waits.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub approval_timeout: Option<$crate::Timeout>,
            /// Run again elsewhere if its host is lost mid-run (it may run twice).
            #[cfg(feature = "cluster")]
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub retry_if_lost: Option<bool>,
        }

        impl $name {
            /// The shared per-task options of these parameters.
            pub fn task_options(&self) -> $crate::tools::TaskOptions {
                $crate::tools::TaskOptions {
                    timeout: self.timeout,
                    model: self.model.clone(),
                    permission_mode: self.permission_mode,
                    effort: self.effort,
                    max_budget_usd: self.max_budget_usd,
                    allow: self.allow.clone(),
                    deny: self.deny.clone(),
                    approval_timeout: self.approval_timeout,
                    #[cfg(feature = "cluster")]
                    retry_if_lost: self.retry_if_lost,
                }
            }
        }
    };
}
pub(crate) use with_task_options;

//! Chains: `pool_chain`, `pool_submit_chain`, `pool_chain_result`.
//!
//! A chain is a list of steps. By default each step runs after the one before it; a step
//! that declares `depends_on` runs as soon as the named steps are done instead, so steps
//! whose dependencies are met run in parallel (a DAG).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{ChainId, TaskId};
use crate::status::{ChainStatus, StepStatus, TaskStatus};
use crate::timeout::Timeout;

use super::with_task_options;

/// The most steps one chain takes.
pub const MAX_CHAIN_STEPS: usize = 100;

/// What happens when a step does not complete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Stop the chain: running steps are cancelled, the rest never run. The default.
    #[default]
    Abort,
    /// Record the failure and go on; later steps see an empty output for this one.
    Skip,
    /// Run the step again, up to `retries` more times (default 1); then abort.
    Retry,
}

/// One step of a chain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChainStepParams {
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// abort the chain (default), skip the step, or retry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<FailurePolicy>,
    /// With retry (default 1, at most 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Default: the previous step; [] none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::validate::de::opt_model"
    )]
    pub model: Option<String>,
}

with_task_options! {
    /// Parameters of `pool_chain` and `pool_submit_chain`. The task options apply to every
    /// step.
    pub struct ChainParams {
        pub steps: Vec<ChainStepParams>,
    }
}

/// Parameters naming one chain.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChainResultParams {
    pub chain_id: ChainId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Timeout>,
}

/// What `pool_submit_chain` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChainSubmitReport {
    /// Id to pass to pool_chain_result and pool_cancel.
    pub chain_id: ChainId,
    /// in_progress right after submission.
    pub status: ChainStatus,
    /// Number of steps.
    pub total_steps: usize,
}

/// One run of a step's task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AttemptReport {
    /// The task that ran it.
    pub task_id: TaskId,
    /// How it ended (or running).
    pub status: TaskStatus,
    /// Dollars it cost.
    pub spend_usd: f64,
    /// Why it did not complete.
    pub error: Option<String>,
}

/// One step in a chain's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// pending, running, completed, failed, skipped or cancelled.
    pub status: StepStatus,
    /// The step's output, once completed.
    pub output: Option<String>,
    /// Dollars its attempts cost together.
    pub spend_usd: f64,
    /// Why it did not complete.
    pub error: Option<String>,
    /// The task of its latest attempt.
    pub task_id: Option<TaskId>,
    /// Every attempt, in order (more than one with failure_policy retry).
    pub attempts: Vec<AttemptReport>,
    /// The steps it waited for.
    pub depends_on: Vec<String>,
}

/// The step a chain is at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CurrentStep {
    /// Its name.
    pub name: String,
    /// Its status.
    pub status: StepStatus,
}

/// A chain's progress and results: what `pool_chain` and `pool_chain_result` return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChainReport {
    pub chain_id: ChainId,
    /// in_progress, completed, failed or cancelled.
    pub status: ChainStatus,
    /// Steps that are done (completed or skipped).
    pub completed_steps: usize,
    /// Number of steps.
    pub total_steps: usize,
    /// The first step running now (or the one that stopped the chain).
    pub current_step: Option<CurrentStep>,
    /// Every step running now (several when dependencies allow).
    pub running_steps: Vec<String>,
    /// Every step, in the order given.
    pub steps: Vec<StepReport>,
    /// The output of the last step (in the order given) that completed, once the chain
    /// completed.
    pub final_output: Option<String>,
    /// Dollars every attempt of every step cost together.
    pub total_spend: f64,
    /// Why the chain did not complete.
    pub error: Option<String>,
}

/// What `pool_cancel` returns for a chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChainCancelReport {
    pub chain_id: ChainId,
    /// Its final status.
    pub status: ChainStatus,
    /// True when this call cancelled it.
    pub cancelled: bool,
    /// What happened, in words.
    pub message: String,
}

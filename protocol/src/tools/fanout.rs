//! `pool_fan_out`: many prompts at once, one result per prompt.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{TaskReport, with_task_options};

/// The most prompts one `pool_fan_out` takes; more is an invalid-params error.
pub const MAX_FAN_OUT: usize = 1000;

with_task_options! {
    /// Parameters of `pool_fan_out`.
    pub struct FanOutParams {
        /// The prompts, each run as its own task, all at once over the pool (more prompts
        /// than slots wait in the queue). At most 1000.
        pub prompts: Vec<String>,
    }
}

/// What `pool_fan_out` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FanOutReport {
    /// One report per prompt, in prompt order, each with its own status, output, spend_usd,
    /// tokens_used and error.
    pub results: Vec<TaskReport>,
    /// Number of prompts.
    pub total: usize,
    /// Prompts that completed.
    pub completed: usize,
    /// Prompts that did not complete (failed, cancelled or timed out).
    pub failed: usize,
    /// Dollars spent by all of them.
    pub total_spend: f64,
}

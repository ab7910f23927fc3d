//! `pool_fan_out`: many prompts at once, one result per prompt.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{TaskReport, with_task_options};

/// The most prompts one `pool_fan_out` takes; more is an invalid-params error.
pub const MAX_FAN_OUT: usize = 1000;

with_task_options! {
    /// Parameters of `pool_fan_out`.
    pub struct FanOutParams {
        /// One task each; at most 1000.
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
    /// One line: how many completed, and how the others ended (e.g. "4 of 5 completed; 1
    /// failed"). Every completed prompt's output is in `results` whatever the others did.
    #[serde(default)]
    pub summary: String,
}

impl FanOutReport {
    /// The summary line of `results`.
    pub fn summarize(results: &[TaskReport]) -> String {
        let total = results.len();
        let completed = results
            .iter()
            .filter(|r| r.status == crate::TaskStatus::Completed)
            .count();
        let mut others: std::collections::BTreeMap<String, usize> = Default::default();
        for r in results
            .iter()
            .filter(|r| r.status != crate::TaskStatus::Completed)
        {
            *others.entry(r.status.to_string()).or_default() += 1;
        }
        let mut line = format!("{completed} of {total} completed");
        if !others.is_empty() {
            let rest: Vec<String> = others.iter().map(|(s, n)| format!("{n} {s}")).collect();
            line.push_str("; ");
            line.push_str(&rest.join(", "));
        }
        line
    }
}

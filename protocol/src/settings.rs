//! Claude CLI settings a caller may choose per pool or per task.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The CLI's `--permission-mode`. Changeable inside a running process with the
/// `set_permission_mode` control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PermissionMode {
    /// Read-only tools run, writes are denied under `-p`.
    #[serde(rename = "default")]
    Default,
    /// File edits are accepted without asking.
    #[serde(rename = "acceptEdits")]
    AcceptEdits,
    /// The CLI decides.
    #[serde(rename = "auto")]
    Auto,
    /// Every tool runs without asking (refused as root unless `IS_SANDBOX=1`).
    #[serde(rename = "bypassPermissions")]
    BypassPermissions,
    /// Tools need manual approval.
    #[serde(rename = "manual")]
    Manual,
    /// Never ask; deny what would need asking.
    #[serde(rename = "dontAsk")]
    DontAsk,
    /// Plan only, execute nothing.
    #[serde(rename = "plan")]
    Plan,
}

impl PermissionMode {
    /// Every mode, in CLI order.
    pub const ALL: [PermissionMode; 7] = [
        PermissionMode::Default,
        PermissionMode::AcceptEdits,
        PermissionMode::Auto,
        PermissionMode::BypassPermissions,
        PermissionMode::Manual,
        PermissionMode::DontAsk,
        PermissionMode::Plan,
    ];

    /// Every mode from the one that lets a task do least to the one that lets it do most:
    /// the order the server's ceiling (`--max-permission-mode`) is measured in.
    ///
    /// | rank | mode | why here |
    /// |---|---|---|
    /// | 0 | `plan` | executes nothing: Claude only plans |
    /// | 1 | `dontAsk` | never asks: anything not pre-approved (`--allowedTools`, settings rules) is denied |
    /// | 2 | `manual` | every tool waits for an approval; an approver (a permission-prompt tool) may grant it, which dontAsk never does |
    /// | 3 | `default` | read-only tools run; anything else would ask, and under `-p` nobody answers |
    /// | 4 | `acceptEdits` | file edits in the working directory are accepted without asking |
    /// | 5 | `auto` | a classifier approves tool calls, the shell included: no human in the loop |
    /// | 6 | `bypassPermissions` | every tool runs without any check |
    pub const BY_ALLOWANCE: [PermissionMode; 7] = [
        PermissionMode::Plan,
        PermissionMode::DontAsk,
        PermissionMode::Manual,
        PermissionMode::Default,
        PermissionMode::AcceptEdits,
        PermissionMode::Auto,
        PermissionMode::BypassPermissions,
    ];

    /// The mode's place in [`PermissionMode::BY_ALLOWANCE`]: a mode with a higher rank lets a
    /// task do more.
    pub fn rank(self) -> u8 {
        match self {
            PermissionMode::Plan => 0,
            PermissionMode::DontAsk => 1,
            PermissionMode::Manual => 2,
            PermissionMode::Default => 3,
            PermissionMode::AcceptEdits => 4,
            PermissionMode::Auto => 5,
            PermissionMode::BypassPermissions => 6,
        }
    }

    /// Whether a task may ask for this mode under `ceiling`: it lets it do no more.
    pub fn within(self, ceiling: PermissionMode) -> bool {
        self.rank() <= ceiling.rank()
    }

    /// The one of the two that lets a task do more.
    pub fn most(self, other: PermissionMode) -> PermissionMode {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// The modes from least to most allowed, for messages: `plan < dontAsk < … `.
    pub fn order_text() -> String {
        let names: Vec<&str> = PermissionMode::BY_ALLOWANCE
            .iter()
            .map(|m| m.as_str())
            .collect();
        names.join(" < ")
    }

    /// The CLI's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionMode::Default => "default",
            PermissionMode::AcceptEdits => "acceptEdits",
            PermissionMode::Auto => "auto",
            PermissionMode::BypassPermissions => "bypassPermissions",
            PermissionMode::Manual => "manual",
            PermissionMode::DontAsk => "dontAsk",
            PermissionMode::Plan => "plan",
        }
    }
}

impl fmt::Display for PermissionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PermissionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PermissionMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = PermissionMode::ALL.iter().map(|m| m.as_str()).collect();
                format!(
                    "unknown permission mode {s:?} (expected one of: {})",
                    all.join(", ")
                )
            })
    }
}

/// The CLI's `--effort`. Fixed per process: a task that asks for another effort than its
/// slot's process has gets a freshly spawned process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Effort {
    /// The least effort; the CLI has no lower level than `low`, so this is sent as `low`.
    Min,
    /// `--effort low`.
    Low,
    /// `--effort medium`.
    Medium,
    /// `--effort high`.
    High,
    /// `--effort xhigh`.
    Xhigh,
    /// `--effort max`.
    Max,
}

impl Effort {
    /// Every level.
    pub const ALL: [Effort; 6] = [
        Effort::Min,
        Effort::Low,
        Effort::Medium,
        Effort::High,
        Effort::Xhigh,
        Effort::Max,
    ];

    /// The user-facing name.
    pub fn as_str(self) -> &'static str {
        match self {
            Effort::Min => "min",
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
            Effort::Xhigh => "xhigh",
            Effort::Max => "max",
        }
    }

    /// The value passed to the CLI's `--effort`.
    pub fn cli_value(self) -> &'static str {
        match self {
            Effort::Min => "low",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for Effort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Effort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Effort::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown effort {s:?} (expected one of: min, low, medium, high, xhigh, max)"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_modes_round_trip_through_their_cli_spelling() {
        for m in PermissionMode::ALL {
            assert_eq!(m.as_str().parse::<PermissionMode>(), Ok(m));
            let json = serde_json::to_string(&m).expect("serialize");
            assert_eq!(json, format!("\"{}\"", m.as_str()));
        }
        assert!("yolo".parse::<PermissionMode>().is_err());
    }

    #[test]
    fn permission_modes_are_ordered_by_what_they_let_a_task_do() {
        use PermissionMode::*;
        // (mode, ceiling, allowed)
        let table = [
            (Plan, Plan, true),
            (DontAsk, Plan, false),
            (Plan, DontAsk, true),
            (Manual, DontAsk, false),
            (DontAsk, Manual, true),
            (Default, Manual, false),
            (Manual, Default, true),
            (Default, AcceptEdits, true),
            (AcceptEdits, AcceptEdits, true),
            (Auto, AcceptEdits, false),
            (BypassPermissions, AcceptEdits, false),
            (AcceptEdits, Auto, true),
            (BypassPermissions, Auto, false),
            (Auto, BypassPermissions, true),
            (BypassPermissions, BypassPermissions, true),
            (AcceptEdits, Plan, false),
        ];
        for (mode, ceiling, allowed) in table {
            assert_eq!(mode.within(ceiling), allowed, "{mode} under {ceiling}");
        }
        // The order is total: every mode once, ranks strictly increasing.
        let ranks: Vec<u8> = PermissionMode::BY_ALLOWANCE
            .iter()
            .map(|m| m.rank())
            .collect();
        assert_eq!(ranks, (0..7).collect::<Vec<u8>>());
        for m in PermissionMode::ALL {
            assert!(PermissionMode::BY_ALLOWANCE.contains(&m), "{m} unranked");
        }
        assert_eq!(Plan.most(AcceptEdits), AcceptEdits);
        assert_eq!(BypassPermissions.most(Default), BypassPermissions);
        assert_eq!(
            PermissionMode::order_text(),
            "plan < dontAsk < manual < default < acceptEdits < auto < bypassPermissions"
        );
    }

    #[test]
    fn min_effort_is_sent_to_the_cli_as_low() {
        assert_eq!(Effort::Min.cli_value(), "low");
        assert_eq!(Effort::Max.cli_value(), "max");
        assert_eq!("xhigh".parse::<Effort>(), Ok(Effort::Xhigh));
    }
}

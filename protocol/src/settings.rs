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
    fn min_effort_is_sent_to_the_cli_as_low() {
        assert_eq!(Effort::Min.cli_value(), "low");
        assert_eq!(Effort::Max.cli_value(), "max");
        assert_eq!("xhigh".parse::<Effort>(), Ok(Effort::Xhigh));
    }
}

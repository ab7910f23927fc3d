//! Identifier newtypes. They serialize as plain strings.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Identifies one task for its whole life: queued, running and terminal.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct TaskId(pub String);

/// Identifies a slot (`slot-0`, `slot-1`, …). Stable across restarts of the slot's process
/// and of the slot actor itself.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct SlotId(pub String);

/// Identifies one chain (`chain-…`) for its whole life.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct ChainId(pub String);

impl ChainId {
    /// The prefix every chain id starts with (task ids start with `task-`).
    pub const PREFIX: &'static str = "chain-";
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SlotId {
    /// The id of the slot at `index` in the pool.
    pub fn from_index(index: usize) -> Self {
        SlotId(format!("slot-{index}"))
    }

    /// The index in `slot-<index>`, for ordering (`slot-2` before `slot-10`).
    pub fn index(&self) -> Option<usize> {
        self.0.strip_prefix("slot-").and_then(|n| n.parse().ok())
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SlotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for TaskId {
    fn from(s: &str) -> Self {
        TaskId(s.to_owned())
    }
}

//! Pure data for claude-pool.
//!
//! Everything that crosses a boundary lives here, with no runtime attached: identifiers,
//! task and slot status enums, the MCP tool parameters and results (serde + JSON schema),
//! the Claude Code CLI's stream-json events with a tolerant line parser, the lines the pool
//! writes to a CLI's stdin, and the per-turn cost arithmetic.
//!
//! No tokio, no ractor: the behaviour lives in the `claude-pool` crate (`actors/`).

pub mod approvals;
pub mod cost;
pub mod ids;
pub mod limits;
pub mod pricing;
pub mod rules;
pub mod settings;
pub mod status;
pub mod stream;
pub mod timeout;
pub mod tools;
pub mod validate;

pub use cost::{TurnCost, turn_cost};
pub use ids::{ChainId, SlotId, TaskId};
pub use settings::{Effort, PermissionMode};
pub use status::{ChainStatus, SlotStatus, StepStatus, TaskStatus};
pub use stream::{ClaudeEvent, ControlRequest, ParseError, ResultEvent, parse_line};
pub use timeout::Timeout;

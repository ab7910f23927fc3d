//! claude-pool's integration tests: one binary, one module per area.
//!
//! - `mcp`: the real server binary over stdio, driven by rmcp's client, slots running the
//!   fake CLI (`fake-claude`, `bin/src/fake_claude`), one test per behaviour users rely on;
//! - `embedding`: the library API (`Pool`) in-process, several pools in one test binary;
//! - `chaos`: slot processes killed on purpose while work flows;
//! - `tree_doc`: `supervision-tree.md` stays true to the code;
//! - `real_cli`: the pinned real Claude CLI against the Rust mock of the Messages API;
//! - `real_depth`: the real CLI as a nested client over HTTP, held by `--max-depth`.
#![allow(clippy::unwrap_used)]

mod approvals;
mod approvals_http;
mod budget;
mod builds;
mod caps;
mod ceiling;
mod chains;
mod chaos;
mod chaos_cli;
#[cfg(feature = "cluster")]
mod cluster;
#[cfg(feature = "cluster")]
mod cluster_use;
mod complete;
mod context;
mod drain;
mod embedding;
mod fake_cli;
mod fanout;
mod faults;
mod http;
mod http_defaults;
mod http_quick;
mod idle;
mod jobs;
mod limits;
mod logging;
mod mcp;
mod notices;
mod outputs;
mod private_files;
mod protocol_tasks;
mod protocol_tasks_py;
mod real_approvals;
mod real_cli;
mod real_depth;
mod real_jobs;
mod real_limits;
mod real_registration;
mod real_toolkit;
mod resources;
mod scaling;
mod sessions;
mod skills;
mod stdio_fuzz;
mod store;
mod supervision;
mod tree_doc;
mod validation;
mod worktrees;

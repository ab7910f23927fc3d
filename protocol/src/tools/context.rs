//! The shared context table: `context_set`, `context_get`, `context_list`, `context_delete`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest key, in bytes.
pub const MAX_CONTEXT_KEY_BYTES: usize = 128;
/// Longest value, in bytes.
pub const MAX_CONTEXT_VALUE_BYTES: usize = 16 * 1024;
/// Most keys in the table.
pub const MAX_CONTEXT_KEYS: usize = 64;
/// Most bytes of keys and values in the table together.
pub const MAX_CONTEXT_TOTAL_BYTES: usize = 64 * 1024;

/// Parameters of `context_set`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextSetParams {
    pub key: String,
    pub value: String,
}

/// Parameters of `context_get` and `context_delete`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextKeyParams {
    pub key: String,
}

/// One entry: what `context_set` and `context_get` return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ContextEntry {
    pub key: String,
    /// Its value.
    pub value: String,
}

/// What `context_delete` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ContextDeleteReport {
    pub key: String,
    /// True when the key existed and is gone; false when there was no such key.
    pub deleted: bool,
}

//! The durable store: tasks, jobs, chains, the context table and spend in SQLite ([`db`]),
//! each task's stream-json transcript as an NDJSON file ([`transcripts`]), the actor and
//! writer thread that own them ([`actor`]), what a pool opens at start ([`durable`]), and
//! the mapping between rows and the scheduler's records ([`convert`]).
//!
//! Spend is not a row of its own: the ledger is the sum of the tasks' stored spends, so
//! it cannot drift from them.

pub mod actor;
pub mod convert;
pub mod db;
pub mod durable;
pub mod transcripts;

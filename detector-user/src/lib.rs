//! The detector agent as a library: the `detector` binary is a thin shell over it, and the
//! privileged integration tests drive the same code.
//!
//! Data flows `sources` (kernel capture, recordings) → `enrich` (process table, workload
//! identity) → `engine` (pure correlation rules) → `sinks` (alert delivery).

pub mod capture;
pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod enrich;
pub mod event;
pub mod input;
pub mod ledger;
pub(crate) mod metrics;
pub(crate) mod notice;
pub(crate) mod policy;
pub mod privs;
pub mod sinks;
pub mod sources;

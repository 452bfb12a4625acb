//! Enrichment: process table, cgroup → workload, identity.
pub mod fingerprint;
pub mod identity;

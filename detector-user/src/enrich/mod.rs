//! Enrichment: process table, cgroup → workload, identity.
pub mod cgroup;
pub mod enricher;
pub mod fingerprint;
pub mod identity;
pub mod k8s;
pub mod process;

//! Enrichment: process table, cgroup → workload, user and group names, destination names,
//! identity.
pub mod accounts;
pub mod cgroup;
pub mod enricher;
pub mod fingerprint;
pub mod identity;
pub mod k8s;
pub mod names;
pub mod process;

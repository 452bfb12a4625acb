//! Enrichment: process table, cgroup → workload, user and group names, destination names,
//! identity.
pub(crate) mod accounts;
pub(crate) mod cgroup;
pub(crate) mod enricher;
pub(crate) mod fingerprint;
pub mod identity;
pub(crate) mod k8s;
pub mod names;
pub(crate) mod process;
pub(crate) mod reused;

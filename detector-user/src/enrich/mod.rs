//! Enrichment: process table, cgroup → workload, identity.

//! What the operator declares about workloads, read by both the engine (derived fields such as
//! `credential.owned`, `net.peer_allowed`, fan-out budgets) and enrichment (the identity
//! resolver): `identities.yaml` and the learned baseline. It sits below both, over `input`
//! (the YAML front-end), so neither imports the other for it.

pub(crate) mod identities;

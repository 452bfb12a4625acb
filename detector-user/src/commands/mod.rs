//! One module per subcommand.

pub(crate) mod capture_opts;
pub(crate) mod detect_opts;
pub(crate) mod inventory;
pub(crate) mod learn;
pub(crate) mod probe;
pub(crate) mod record;
pub mod replay;
pub(crate) mod rules;
pub(crate) mod run;
pub(crate) mod status;

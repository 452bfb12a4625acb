//! One module per subcommand.

pub mod capture_opts;
pub mod detect_opts;
pub mod inventory;
pub mod learn;
pub mod probe;
pub mod record;
pub mod replay;
pub mod rules;
pub mod run;
pub mod status;

//! Correlation engine: pure, driven by event timestamps (engine issue).

pub mod cond;
pub mod fields;
pub mod yaml;

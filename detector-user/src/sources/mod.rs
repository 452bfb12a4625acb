//! Where events come from: the kernel (live capture) or a recording.

pub(crate) mod connects;
pub mod decode;
pub mod kernel;
pub(crate) mod listeners;
pub mod loader;
pub mod offsets;
pub(crate) mod pacer;
pub mod preflight;
pub(crate) mod ringfill;
// Only its test reads the kernel programs' stack use (from the built object).
#[cfg(test)]
mod stack;
pub(crate) mod watchbits;
pub mod watchlist;

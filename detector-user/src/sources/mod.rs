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
pub(crate) mod stack;
pub(crate) mod watchbits;
pub mod watchlist;

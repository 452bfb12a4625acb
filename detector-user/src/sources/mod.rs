//! Where events come from: the kernel (live capture) or a recording.

pub mod connects;
pub mod decode;
pub mod kernel;
pub mod listeners;
pub mod loader;
pub mod offsets;
pub mod pacer;
pub mod preflight;
pub mod ringfill;
pub mod stack;
pub mod watchbits;
pub mod watchlist;

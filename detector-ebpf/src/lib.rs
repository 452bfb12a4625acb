#![no_std]
//! Library target only so that `detector-user` can declare a build dependency on this crate
//! (cargo then rebuilds the agent when the kernel programs change).

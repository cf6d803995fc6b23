//! The library half of the `huddle` binary: process composition, shared by
//! `huddle all`, the end-to-end tests and the benchmarks.

pub mod livekit_standin;
pub mod stack;

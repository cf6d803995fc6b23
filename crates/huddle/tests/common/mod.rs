//! The harness lives in `huddle-testapp`, shared with the benches.
#![allow(unused_imports)]

pub use huddle_testapp::*;

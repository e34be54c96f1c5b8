//! The `logdomain` command's subcommands.

pub mod bench;
pub mod demo;
pub mod eval;
pub mod npy;
pub mod stability;

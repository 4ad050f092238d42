//! Infera: a settlement protocol for AI inference.
//!
//! This package holds the `infera` command-line tool. What it is built from lives in crates of its
//! own: the shared protocol types ([`protocol`], `infera-protocol`) and the on-chain clients
//! ([`chain`], `infera-chain`: deployment, the job market, keys, the devnet), re-exported here;
//! the executor (`infera-executor`); [`local`] puts a devnet and an executor in one process;
//! [`verify`] checks results by hand (`infera verify`).

pub mod job;
pub mod local;
pub mod verify;

pub use infera_chain as chain;
pub use infera_chain::{deploy, devnet, keys, market};
pub use infera_protocol as protocol;

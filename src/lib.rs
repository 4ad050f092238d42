//! Infera: a settlement protocol for AI inference.
//!
//! This package holds the `infera` command-line tool and what it is built from: deploying the
//! contracts ([`deploy`]) and running a local chain with them ([`devnet`]). The shared protocol
//! types live in the [`protocol`] crate (`infera-protocol`).

pub mod deploy;
pub mod devnet;
pub mod keys;
pub mod market;

pub use infera_protocol as protocol;

//! Infera's on-chain clients, shared by the CLI and every service (executor, validator, indexer,
//! gateway) without linking the inference engine:
//!
//! - [`bindings`]: alloy `sol!` bindings of the contracts (JobEscrow, Staking, ModelRegistry, the
//!   devnet MockSettlementToken and the ExampleConsumer dApp), generated from the committed forge
//!   artifacts in `chain/artifacts`;
//! - [`deploy`]: deploying and wiring the contracts, one error type for every contract transaction;
//! - [`market`]: a typed client of the job market, one method per lifecycle step;
//! - [`keys`]: loading an operator's signing key without ever printing it;
//! - [`devnet`]: a local anvil chain with the protocol deployed;
//! - [`config`]: one TOML file plus environment overrides, for every service;
//! - [`redact`]: credentials out of the URLs that services log or print;
//! - [`tx`]: the transaction manager: one nonce sequence per key, an append-only log, fee bumps,
//!   gap filling and recovery in the background.

pub mod bindings;
pub mod config;
pub mod deploy;
pub mod devnet;
pub mod keys;
pub mod market;
pub mod redact;
pub mod tx;

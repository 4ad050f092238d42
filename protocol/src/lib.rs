//! Infera protocol crate: what every Infera service shares, with no I/O.
//!
//! - [`commitment`]: the executor's commitment to a computation, encoded exactly as the Solidity
//!   library `Commitment` does (pinned by `contracts/test/vectors/commitment.json`).
//! - [`bindings`]: alloy `sol!` bindings of the contracts (JobEscrow, Staking, ModelRegistry and the
//!   devnet MockSettlementToken), generated from the committed forge artifacts.

pub mod bindings;
pub mod commitment;

pub use commitment::{
    COMMITMENT_TAG, CommitmentInput, Error, FinishReason, SamplingParams, pack_tokens, tokens_hash,
    unpack_tokens,
};

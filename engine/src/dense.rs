//! The dense scoring path: the GGUF's weights dequantised to `f32` once at load, and the model
//! run as batched dense matmuls over a window of positions at a time.
//!
//! Decoding is memory-bound and reads the quantised weights once per token; scoring knows every
//! token up front, so a window of `W` positions shares each weight read and runs as a matrix
//! product (gemm), many times the throughput of mistral.rs's quantised prefill on a CPU. The
//! KV cache is kept across windows, so memory is bounded by the cache (`layers × 2 × kv_heads ×
//! head_dim × tokens × 4` bytes) plus one window's activations and logits (`W × vocab × 4`).
//! Logits are computed only for the positions that are scored (the output), not the prompt.
//!
//! Only the `qwen2` architecture (the default model) is implemented: RMSNorm, neox-style RoPE
//! with the file's `rope.freq_base`, grouped-query attention with q/k/v biases, SwiGLU, and the
//! output matrix (the token embedding when the file has no `output.weight`). Other architectures
//! are refused at load; validators then score through [`crate::Engine::score`].
//!
//! The numbers differ from mistral.rs's (which multiplies `q8`-quantised activations with the
//! quantised weights) by float noise only: the sampler's margins absorb it (DESIGN.md §4).
//! Threads: candle's gemm uses `RAYON_NUM_THREADS` (default: every core).

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use candle_core::{DType, Device, Tensor};
use candle_nn::{
    ops::{rms_norm, softmax_last_dim, swiglu},
    rotary_emb::rope,
};

use crate::{
    EngineConfig, EngineError,
    gguf::Header,
    score::{ScoreRequest, Scores, score_rows, validate},
};

/// Positions per forward window unless set otherwise ([`DenseScorer::with_window`]).
pub const DEFAULT_WINDOW: usize = 128;

/// One transformer block's weights, `[out, in]` as in the file.
struct Layer {
    attn_norm: Tensor,
    /// q, k and v stacked: `[(heads + 2 kv_heads) · head_dim, hidden]`.
    qkv: Tensor,
    /// Their biases, stacked likewise.
    qkv_bias: Tensor,
    attn_output: Tensor,
    ffn_norm: Tensor,
    /// gate and up stacked: `[2 · ffn, hidden]` (SwiGLU takes the halves).
    gate_up: Tensor,
    down: Tensor,
}

/// The model's shape.
#[derive(Debug, Clone, Copy)]
struct Shape {
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
    context: usize,
    eps: f32,
}

/// The fast CPU path: the GGUF's weights dequantised to `f32`, one batched forward per window of
/// positions (KV cache kept between windows, so memory is bounded for long transcripts).
/// `Send + Sync`: share it in an `Arc`; [`DenseScorer::score`] blocks (call it from
/// `spawn_blocking`).
pub struct DenseScorer {
    layers: Vec<Layer>,
    embedding: Tensor,
    output_norm: Tensor,
    output: Tensor,
    /// RoPE tables for every position of the context: `[context, head_dim / 2]`.
    cos: Tensor,
    sin: Tensor,
    shape: Shape,
    window: usize,
    model_path: PathBuf,
}

impl std::fmt::Debug for DenseScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenseScorer")
            .field("model_path", &self.model_path)
            .field("layers", &self.layers.len())
            .field("shape", &self.shape)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

fn load_error(e: candle_core::Error) -> EngineError {
    EngineError::Load(format!("dense scorer: {e}"))
}

fn forward_error(e: candle_core::Error) -> EngineError {
    EngineError::Generate(format!("dense forward: {e}"))
}

impl DenseScorer {
    /// Verifies the model file as [`crate::Engine::load`] does (real path, size, sha256 against
    /// the registry) and dequantises its weights. Takes a few seconds and about 4 bytes of memory
    /// per parameter.
    ///
    /// # Errors
    /// [`EngineError::Model`] when the file is missing or not the registered one,
    /// [`EngineError::Load`] when it is not a `qwen2` GGUF or cannot be read.
    pub fn load(config: &EngineConfig) -> Result<Self, EngineError> {
        let path = infera_models::verify(&config.model_path, config.size, config.sha256)?;
        let started = Instant::now();
        let (header, mut reader) = Header::read(&path)?;
        let arch = header.architecture()?;
        if arch != "qwen2" {
            return Err(EngineError::Load(format!(
                "the dense scorer runs qwen2 models only, not {arch:?}: score through the engine"
            )));
        }
        let key = |name: &str| format!("{arch}.{name}");
        let hidden = header.usize(&key("embedding_length"))?;
        let heads = header.usize(&key("attention.head_count"))?;
        let kv_heads = header.usize(&key("attention.head_count_kv"))?;
        let layers = header.usize(&key("block_count"))?;
        let context = header.usize(&key("context_length"))?;
        let eps = header.f64(&key("attention.layer_norm_rms_epsilon"))? as f32;
        let theta = header.f64(&key("rope.freq_base")).unwrap_or(10_000.0);
        if heads == 0 || kv_heads == 0 || hidden % heads != 0 || heads % kv_heads != 0 {
            return Err(EngineError::Load(format!(
                "unsupported attention shape: {heads} heads, {kv_heads} kv heads, {hidden} wide"
            )));
        }
        let head_dim = hidden / heads;
        if head_dim % 2 != 0 {
            return Err(EngineError::Load(format!("odd head dimension {head_dim}")));
        }
        let vocab = header.vocab_size()?;
        let shape = Shape {
            hidden,
            heads,
            kv_heads,
            head_dim,
            vocab,
            context,
            eps,
        };

        let device = Device::Cpu;
        let content = &header.content;
        let mut tensor = |name: &str| -> Result<Tensor, EngineError> {
            content
                .tensor(&mut reader, name, &device)
                .and_then(|q| q.dequantize(&device))
                .map_err(|e| EngineError::Load(format!("dense scorer: tensor {name}: {e}")))
        };
        let expect = |t: &Tensor, dims: &[usize], name: &str| -> Result<(), EngineError> {
            if t.dims() == dims {
                Ok(())
            } else {
                Err(EngineError::Load(format!(
                    "dense scorer: {name} has shape {:?}, expected {dims:?}",
                    t.dims()
                )))
            }
        };
        let embedding = tensor("token_embd.weight")?;
        expect(&embedding, &[vocab, hidden], "token_embd.weight")?;
        let output = if content.tensor_infos.contains_key("output.weight") {
            let output = tensor("output.weight")?;
            expect(&output, &[vocab, hidden], "output.weight")?;
            output
        } else {
            embedding.clone()
        };
        let output_norm = tensor("output_norm.weight")?;
        expect(&output_norm, &[hidden], "output_norm.weight")?;
        let qkv_rows = (heads + 2 * kv_heads) * head_dim;
        let mut blocks = Vec::with_capacity(layers);
        for n in 0..layers {
            let name = |part: &str| format!("blk.{n}.{part}");
            let stack = |parts: &[Tensor]| Tensor::cat(parts, 0).map_err(load_error);
            let qkv = stack(&[
                tensor(&name("attn_q.weight"))?,
                tensor(&name("attn_k.weight"))?,
                tensor(&name("attn_v.weight"))?,
            ])?;
            expect(&qkv, &[qkv_rows, hidden], &name("attn_qkv"))?;
            let qkv_bias = stack(&[
                tensor(&name("attn_q.bias"))?,
                tensor(&name("attn_k.bias"))?,
                tensor(&name("attn_v.bias"))?,
            ])?;
            expect(&qkv_bias, &[qkv_rows], &name("attn_qkv.bias"))?;
            let attn_output = tensor(&name("attn_output.weight"))?;
            expect(
                &attn_output,
                &[hidden, heads * head_dim],
                &name("attn_output"),
            )?;
            let gate_up = stack(&[
                tensor(&name("ffn_gate.weight"))?,
                tensor(&name("ffn_up.weight"))?,
            ])?;
            let ffn = gate_up.dim(0).map_err(load_error)? / 2;
            expect(&gate_up, &[2 * ffn, hidden], &name("ffn_gate_up"))?;
            let down = tensor(&name("ffn_down.weight"))?;
            expect(&down, &[hidden, ffn], &name("ffn_down"))?;
            let attn_norm = tensor(&name("attn_norm.weight"))?;
            let ffn_norm = tensor(&name("ffn_norm.weight"))?;
            expect(&attn_norm, &[hidden], &name("attn_norm"))?;
            expect(&ffn_norm, &[hidden], &name("ffn_norm"))?;
            blocks.push(Layer {
                attn_norm,
                qkv,
                qkv_bias,
                attn_output,
                ffn_norm,
                gate_up,
                down,
            });
        }
        let (cos, sin) = rope_tables(theta, head_dim, context)?;
        tracing::info!(
            model = %path.display(),
            load_ms = started.elapsed().as_millis() as u64,
            layers,
            vocab,
            "dense scorer loaded"
        );
        Ok(Self {
            layers: blocks,
            embedding,
            output_norm,
            output,
            cos,
            sin,
            shape,
            window: DEFAULT_WINDOW,
            model_path: path,
        })
    }

    /// Positions per forward window (at least 1): larger windows use the matmul units better and
    /// hold more logits at once (`window × vocab × 4` bytes).
    #[must_use]
    pub fn with_window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self
    }

    /// Positions per forward window.
    pub fn window(&self) -> usize {
        self.window
    }

    /// The verified model file.
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// The vocabulary size: ids at or above it are refused.
    pub fn vocab_size(&self) -> usize {
        self.shape.vocab
    }

    /// The context length the model declares: longer transcripts are refused.
    pub fn context_length(&self) -> usize {
        self.shape.context
    }

    /// Scores `request`: the logits after `prompt ++ output[..t]` at every output position `t`,
    /// window by window, and the sampler on each. Blocks (call it from `spawn_blocking`).
    ///
    /// # Errors
    /// [`EngineError::InvalidRequest`] for an empty prompt or an id outside the vocabulary,
    /// [`EngineError::ContextExceeded`] when the transcript does not fit the model's context,
    /// [`EngineError::Generate`] when a tensor operation fails.
    pub fn score(&self, request: ScoreRequest<'_>) -> Result<Scores, EngineError> {
        let tokens = validate(&request, self.shape.vocab, Some(self.shape.context))?;
        if tokens == 0 {
            return Ok(Scores::default());
        }
        let prompt_len = request.prompt_ids.len();
        let output = request.output_ids;
        let mut ids = Vec::with_capacity(tokens);
        ids.extend_from_slice(request.prompt_ids);
        ids.extend_from_slice(&output[..output.len() - 1]);

        let cache = self.cache(tokens)?;
        let mut scores = Scores {
            positions: Vec::with_capacity(output.len()),
            tokens_forwarded: tokens,
            ..Scores::default()
        };
        // Row r's logits predict token r + 1: output position t is row prompt_len - 1 + t.
        let first_scored = prompt_len - 1;
        for start in (0..tokens).step_by(self.window) {
            let end = (start + self.window).min(tokens);
            let started = Instant::now();
            let logits = self
                .forward(&ids[start..end], start, first_scored, &cache)
                .map_err(forward_error)?;
            scores.forward += started.elapsed();
            let Some(logits) = logits else {
                continue;
            };
            let started = Instant::now();
            let first = start.max(first_scored) - first_scored;
            let rows = end - start.max(first_scored);
            let claimed = &output[first..first + rows];
            scores
                .positions
                .extend(score_rows(request.sampler, first, claimed, &logits)?);
            scores.sampling += started.elapsed();
        }
        Ok(scores)
    }

    /// An empty KV cache for `tokens` positions: per layer, keys and values `[kv_heads, tokens,
    /// head_dim]`.
    fn cache(&self, tokens: usize) -> Result<Vec<(Tensor, Tensor)>, EngineError> {
        let Shape {
            kv_heads, head_dim, ..
        } = self.shape;
        self.layers
            .iter()
            .map(|_| {
                let zeros =
                    || Tensor::zeros((kv_heads, tokens, head_dim), DType::F32, &Device::Cpu);
                Ok((zeros()?, zeros()?))
            })
            .collect::<candle_core::Result<_>>()
            .map_err(forward_error)
    }

    /// Runs `ids` (positions `start..`) through the model, appending to `cache`; returns the
    /// logits of the positions at or after `first_scored`, `[rows, vocab]`, or `None` when the
    /// window has none.
    fn forward(
        &self,
        ids: &[u32],
        start: usize,
        first_scored: usize,
        cache: &[(Tensor, Tensor)],
    ) -> candle_core::Result<Option<Tensor>> {
        let Shape {
            hidden,
            heads,
            kv_heads,
            head_dim,
            eps,
            ..
        } = self.shape;
        let w = ids.len();
        let end = start + w;
        let group = heads / kv_heads;
        let device = Device::Cpu;
        let scale = 1.0 / (head_dim as f64).sqrt();
        {
            let mut x = self
                .embedding
                .index_select(&Tensor::new(ids, &device)?, 0)?;
            let cos = self.cos.narrow(0, start, w)?;
            let sin = self.sin.narrow(0, start, w)?;
            let mask = causal_mask(start, w)?;
            for (layer, (k_cache, v_cache)) in self.layers.iter().zip(cache) {
                let h = rms_norm(&x, &layer.attn_norm, eps)?;
                let qkv = h.matmul(&layer.qkv.t()?)?.broadcast_add(&layer.qkv_bias)?;
                // [w, n · head_dim] → [n, w, head_dim]
                let split = |offset: usize, n: usize| -> candle_core::Result<Tensor> {
                    qkv.narrow(1, offset * head_dim, n * head_dim)?
                        .reshape((w, n, head_dim))?
                        .transpose(0, 1)?
                        .contiguous()
                };
                let q = rope(&split(0, heads)?.unsqueeze(0)?, &cos, &sin)?;
                let k = rope(&split(heads, kv_heads)?.unsqueeze(0)?, &cos, &sin)?;
                let v = split(heads + kv_heads, kv_heads)?;
                k_cache.slice_set(&k.squeeze(0)?, 1, start)?;
                v_cache.slice_set(&v, 1, start)?;
                let keys = k_cache.narrow(1, 0, end)?;
                let values = v_cache.narrow(1, 0, end)?;
                // The query heads sharing a kv head stacked as one matrix: [kv, group · w, d].
                let q = q.reshape((kv_heads, group * w, head_dim))?;
                let attention = (q.matmul(&keys.t()?)? * scale)?
                    .reshape((kv_heads, group, w, end))?
                    .broadcast_add(&mask)?;
                let attention = softmax_last_dim(&attention)?
                    .reshape((kv_heads, group * w, end))?
                    .matmul(&values)?
                    .reshape((heads, w, head_dim))?
                    .transpose(0, 1)?
                    .reshape((w, hidden))?;
                x = (x + attention.matmul(&layer.attn_output.t()?)?)?;
                let h = rms_norm(&x, &layer.ffn_norm, eps)?;
                let ffn = swiglu(&h.matmul(&layer.gate_up.t()?)?)?.matmul(&layer.down.t()?)?;
                x = (x + ffn)?;
            }
            if end <= first_scored {
                return Ok(None);
            }
            let skip = first_scored.saturating_sub(start);
            let h = rms_norm(&x.narrow(0, skip, w - skip)?, &self.output_norm, eps)?;
            Ok(Some(h.matmul(&self.output.t()?)?))
        }
    }
}

/// `[w, start + w]`: 0 where query `start + i` may attend key `j` (`j ≤ start + i`), `-∞` after.
fn causal_mask(start: usize, w: usize) -> candle_core::Result<Tensor> {
    let end = start + w;
    let mask: Vec<f32> = (0..w)
        .flat_map(|i| {
            (0..end).map(move |j| {
                if j <= start + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (w, end), &Device::Cpu)
}

/// Neox-style RoPE tables: `cos` and `sin` of `position · θ^(-2i / head_dim)`, `[context,
/// head_dim / 2]`, computed in `f64` and rounded once.
fn rope_tables(
    theta: f64,
    head_dim: usize,
    context: usize,
) -> Result<(Tensor, Tensor), EngineError> {
    let half = head_dim / 2;
    let inv_freq: Vec<f64> = (0..half)
        .map(|i| theta.powf(-((2 * i) as f64) / head_dim as f64))
        .collect();
    let mut cos = Vec::with_capacity(context * half);
    let mut sin = Vec::with_capacity(context * half);
    for position in 0..context {
        for f in &inv_freq {
            let angle = position as f64 * f;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    let table = |v| Tensor::from_vec(v, (context, half), &Device::Cpu).map_err(load_error);
    Ok((table(cos)?, table(sin)?))
}

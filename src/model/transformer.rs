//! A Llama-family decoder with either a dense SwiGLU feed-forward or a Mixtral sparse
//! Mixture-of-Experts one, following Hugging Face transformers' `modeling_llama.py` and
//! `modeling_mixtral.py` (Mixtral: Jiang et al. 2024, arXiv 2401.04088).
//!
//! Names mirror the checkpoint keys (`self_attn.q_proj`, `block_sparse_moe.experts.3.w1`, ...)
//! so a weight's code is found by its name. Unlike candle-transformers' Mixtral example this
//! module batches rows of different lengths (left padding, a padding-aware mask and per-row
//! positions), keeps a preallocated KV cache that can be reset, keeps routing in tensors, and
//! can force a task's expert into every token's top-k.
//!
//! Projections are full-precision or ggml-quantised ([`Proj`]), so GGUF models run through this
//! same decoder. Experts are full SwiGLU FFNs, or low-rank deltas over a shared frozen FFN
//! (LoRA, Hu et al. 2021, arXiv 2106.09685) for models upcycled to be trained on a CPU.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::kv_cache::KvCache;
use candle_nn::{Linear, RmsNorm, VarBuilder};

use super::config::{Architecture, ExpertLora, ModelConfig};
use super::weights::{Proj, TokenEmbedding, Weights};

/// Which positions' logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position of each row: `(batch, vocab)`. What generation needs.
    Last,
    /// Every position: `(batch, seq, vocab)`. For scoring hypotheses and training.
    All,
    /// No logits: the final-normed hidden states `(batch, seq, hidden)` of every position, for
    /// [`Transformer::lm_head`] on the few positions a loss needs (training).
    Hidden,
}

/// Left-padding of each row, in tokens, counted over the whole sequence (cache included).
pub type Pads = [usize];

/// Rotary position embedding tables, gathered per row so left-padded rows get the positions
/// they would have unpadded.
#[derive(Debug, Clone)]
struct RotaryEmbedding {
    cos: Tensor,
    sin: Tensor,
}

impl RotaryEmbedding {
    fn new(cfg: &ModelConfig, dtype: DType, dev: &Device) -> Result<Self> {
        let half = cfg.head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1f32 / (cfg.rope_theta as f32).powf(2.0 * i as f32 / cfg.head_dim as f32))
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), dev)?;
        let max = cfg.max_position_embeddings;
        let t = Tensor::arange(0u32, max as u32, dev)?
            .to_dtype(DType::F32)?
            .reshape((max, 1))?;
        let freqs = t.matmul(&inv_freq)?;
        Ok(Self {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
        })
    }

    /// `(b, q, half)` cos/sin tables for the given flat position ids.
    fn gather(&self, positions: &Tensor, b: usize, q: usize) -> Result<(Tensor, Tensor)> {
        let half = self.cos.dim(1)?;
        let cos = self.cos.index_select(positions, 0)?.reshape((b, q, half))?;
        let sin = self.sin.index_select(positions, 0)?.reshape((b, q, half))?;
        Ok((cos, sin))
    }
}

/// Grouped-query self-attention with a KV cache.
#[derive(Debug, Clone)]
struct Attention {
    q_proj: Proj,
    k_proj: Proj,
    v_proj: Proj,
    o_proj: Proj,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    kv_cache: KvCache,
    /// Backward-capable ops and no KV cache (see [`Transformer::set_training`]).
    training: bool,
}

impl Attention {
    fn new(cfg: &ModelConfig, w: &Weights) -> Result<Self> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        Ok(Self {
            q_proj: w.pp("q_proj").proj(h, cfg.num_attention_heads * d)?,
            k_proj: w.pp("k_proj").proj(h, cfg.num_key_value_heads * d)?,
            v_proj: w.pp("v_proj").proj(h, cfg.num_key_value_heads * d)?,
            o_proj: w.pp("o_proj").proj(cfg.num_attention_heads * d, h)?,
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim: d,
            kv_cache: KvCache::new(2, 1),
            training: false,
        })
    }

    /// `xs` is `(b, q, hidden)`, or the real tokens `(1, tokens, hidden)` of a `(b, q)` block
    /// when `packing` is given (the projections then skip the padding; attention runs on the
    /// block with zeros in the padding slots, which only padding queries see).
    fn forward(
        &mut self,
        xs: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        packing: Option<&Packing>,
    ) -> Result<Tensor> {
        let (b, q) = match packing {
            Some(p) => (p.b, p.q),
            None => {
                let (b, q, _) = xs.dims3()?;
                (b, q)
            }
        };
        let heads = |t: Tensor, n: usize| {
            let t = match packing {
                Some(p) => p.unpack(&t)?,
                None => t,
            };
            t.reshape((b, q, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let qs = heads(self.q_proj.forward(xs)?, self.num_heads)?;
        let ks = heads(self.k_proj.forward(xs)?, self.num_kv_heads)?;
        let vs = heads(self.v_proj.forward(xs)?, self.num_kv_heads)?;
        let (qs, ks, vs) = if self.training {
            // The cache writes in place (no backward): training runs whole sequences.
            (rope_diff(&qs, cos, sin)?, rope_diff(&ks, cos, sin)?, vs)
        } else {
            let qs = candle_nn::rotary_emb::rope(&qs, cos, sin)?;
            let ks = candle_nn::rotary_emb::rope(&ks, cos, sin)?;
            let (ks, vs) = self.kv_cache.append(&ks, &vs)?;
            (qs, ks, vs)
        };
        let kv_len = ks.dim(2)?;
        let rep = self.num_heads / self.num_kv_heads;
        // Grouped-query attention without copying K/V `rep` times: the `rep` query heads that
        // share a KV head (heads are grouped as transformers' `repeat_kv` lays them out) are
        // stacked along the query axis, (b, kv_heads, rep * q, dim).
        let qs = qs.reshape((b, self.num_kv_heads, rep * q, self.head_dim))?;
        // K/V are a narrowed view of the preallocated cache: matmul reads them in place.
        // (b, heads, q, kv); softmax in f32 as transformers does, whatever the weights' dtype.
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (qs.matmul(&ks.t()?)? * scale)?
            .reshape((b, self.num_heads, q, kv_len))?
            .to_dtype(DType::F32)?;
        let probs = softmax(&scores.broadcast_add(mask)?, self.training)?;
        let probs = probs
            .to_dtype(vs.dtype())?
            .reshape((b, self.num_kv_heads, rep * q, kv_len))?;
        let out = probs
            .matmul(&vs)?
            .reshape((b, self.num_heads, q, self.head_dim))?;
        let out = out
            .transpose(1, 2)?
            .reshape((b, q, self.num_heads * self.head_dim))?;
        match packing {
            Some(p) => self.o_proj.forward(&p.pack(&out)?),
            None => self.o_proj.forward(&out),
        }
    }
}

/// Where the real (non-padding) tokens of a `(b, q)` block of a left-padded batch sit, so a
/// prefill pass runs the position-wise layers (projections, feed-forward, norms) on those
/// tokens only, `(1, tokens, hidden)`, and only attention sees the padded block. Exact: each
/// token's row of a position-wise layer depends on that token alone, and padding slots are
/// masked from every real query (their K/V are left at zero).
#[derive(Debug, Clone)]
struct Packing {
    b: usize,
    q: usize,
    /// The flat `b * q` slot of each real token, in order.
    real: Tensor,
    /// For each of the `b * q` slots, its token's index among the real ones, or the number
    /// of real tokens (a zero row) for padding.
    slots: Tensor,
}

impl Packing {
    /// The packing of a block whose slot `(i, j)` is padding when `is_pad(i, j)`; `None` when
    /// the block has no padding or nothing but padding.
    fn new(
        b: usize,
        q: usize,
        is_pad: impl Fn(usize, usize) -> bool,
        dev: &Device,
    ) -> Result<Option<Self>> {
        let mut real = Vec::with_capacity(b * q);
        let mut slots = Vec::with_capacity(b * q);
        let mut pads = Vec::new();
        for i in 0..b {
            for j in 0..q {
                if is_pad(i, j) {
                    pads.push(slots.len());
                    slots.push(0);
                } else {
                    slots.push(real.len() as u32);
                    real.push((i * q + j) as u32);
                }
            }
        }
        if pads.is_empty() || real.is_empty() {
            return Ok(None);
        }
        let n = real.len() as u32;
        for k in pads {
            slots[k] = n;
        }
        Ok(Some(Self {
            b,
            q,
            real: Tensor::new(real.as_slice(), dev)?,
            slots: Tensor::new(slots.as_slice(), dev)?,
        }))
    }

    /// `(b, q, d)` → the real tokens `(1, tokens, d)`.
    fn pack(&self, xs: &Tensor) -> Result<Tensor> {
        let d = xs.dim(D::Minus1)?;
        xs.reshape((self.b * self.q, d))?
            .index_select(&self.real, 0)?
            .unsqueeze(0)
    }

    /// The real tokens `(1, tokens, d)` → `(b, q, d)`, zeros in the padding slots.
    fn unpack(&self, xs: &Tensor) -> Result<Tensor> {
        let d = xs.dim(D::Minus1)?;
        let xs = xs.squeeze(0)?;
        let zero = Tensor::zeros((1, d), xs.dtype(), xs.device())?;
        Tensor::cat(&[&xs, &zero], 0)?
            .index_select(&self.slots, 0)?
            .reshape((self.b, self.q, d))
    }
}

impl Attention {
    /// The cached K/V `(b, kv_heads, len, dim)`, if anything is cached.
    fn cached(&self) -> Result<Option<(Tensor, Tensor)>> {
        match (self.kv_cache.k()?, self.kv_cache.v()?) {
            (Some(k), Some(v)) => Ok(Some((k, v))),
            _ => Ok(None),
        }
    }

    /// A fresh cache of `capacity` positions per row holding `k`/`v`.
    fn refill(&mut self, k: &Tensor, v: &Tensor, capacity: usize) -> Result<()> {
        self.kv_cache = KvCache::new(2, capacity.max(1));
        self.kv_cache.append(&k.contiguous()?, &v.contiguous()?)?;
        Ok(())
    }
}

/// The per-layer K/V of a prompt prefix shared by many rows, computed once with batch 1.
///
/// A prefix's K/V at position `t` depends on tokens `0..=t` only, so a cache of `n` tokens
/// also holds every shorter prefix of them exactly ([`PrefixCache::truncate`]).
#[derive(Debug, Clone)]
pub struct PrefixCache {
    /// The prefix's token ids.
    pub tokens: Vec<u32>,
    /// K and V `(1, kv_heads, len, dim)` of every layer.
    kv: Vec<(Tensor, Tensor)>,
}

impl PrefixCache {
    /// Prefix length in tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the prefix is empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Keeps the first `n` tokens (exact: later tokens never influence earlier K/V).
    pub fn truncate(&mut self, n: usize) -> Result<()> {
        if n >= self.len() {
            return Ok(());
        }
        self.tokens.truncate(n);
        for (k, v) in &mut self.kv {
            *k = k.narrow(2, 0, n)?;
            *v = v.narrow(2, 0, n)?;
        }
        Ok(())
    }

    /// Bytes held by the K/V tensors.
    pub fn bytes(&self) -> usize {
        self.kv
            .iter()
            .map(|(k, v)| (k.elem_count() + v.elem_count()) * k.dtype().size_in_bytes())
            .sum()
    }
}

/// A SwiGLU feed-forward `down(silu(gate(x)) * up(x))`: Llama's dense `mlp`
/// (`gate_proj`, `up_proj`, `down_proj`) and a Mixtral expert (`w1`, `w3`, `w2`) alike.
#[derive(Debug, Clone)]
struct SwiGlu {
    gate: Proj,
    up: Proj,
    down: Proj,
}

impl SwiGlu {
    /// Loads the three projections named `[gate, up, down]`.
    fn new(cfg: &ModelConfig, w: &Weights, names: [&str; 3]) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate: w.pp(names[0]).proj(h, i)?,
            up: w.pp(names[1]).proj(h, i)?,
            down: w.pp(names[2]).proj(i, h)?,
        })
    }
}

/// Hugging Face's names of the dense feed-forward and of a Mixtral expert's projections.
const MLP_NAMES: [&str; 3] = ["gate_proj", "up_proj", "down_proj"];
const EXPERT_NAMES: [&str; 3] = ["w1", "w3", "w2"];

impl Module for SwiGlu {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let gated = candle_nn::ops::silu(&self.gate.forward(xs)?)?;
        self.down.forward(&(gated * self.up.forward(xs)?)?)
    }
}

/// A LoRA delta `scale · B(A(x))` with `lora_A.weight (r, in)` and `lora_B.weight (out, r)`.
#[derive(Debug, Clone)]
struct LoraDelta {
    lora_a: Linear,
    lora_b: Linear,
    scale: f64,
}

impl LoraDelta {
    fn new(w: &Weights, in_dim: usize, out_dim: usize, lora: ExpertLora) -> Result<Self> {
        Ok(Self {
            lora_a: w.pp("lora_A").linear(in_dim, lora.rank)?,
            lora_b: w.pp("lora_B").linear(lora.rank, out_dim)?,
            scale: lora.scale(),
        })
    }
}

impl Module for LoraDelta {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.lora_b.forward(&self.lora_a.forward(xs)?)? * self.scale
    }
}

/// One Mixtral expert: a full SwiGLU FFN of its own, or low-rank deltas on the three
/// projections of the block's shared FFN (`experts.E.w1.lora_A.weight`, ...).
#[derive(Debug, Clone)]
enum Expert {
    Full(SwiGlu),
    LowRank {
        w1: LoraDelta,
        w3: LoraDelta,
        w2: LoraDelta,
    },
}

impl Expert {
    fn new(cfg: &ModelConfig, w: &Weights) -> Result<Self> {
        match cfg.expert_lora {
            None => Ok(Expert::Full(SwiGlu::new(cfg, w, EXPERT_NAMES)?)),
            Some(lora) => {
                let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
                Ok(Expert::LowRank {
                    w1: LoraDelta::new(&w.pp("w1"), h, i, lora)?,
                    w3: LoraDelta::new(&w.pp("w3"), h, i, lora)?,
                    w2: LoraDelta::new(&w.pp("w2"), i, h, lora)?,
                })
            }
        }
    }
}

/// Mixtral's sparse MoE block: a linear gate scores the experts, each token runs its top-k
/// experts, and their outputs are mixed by the renormalised gate probabilities.
#[derive(Debug, Clone)]
struct SparseMoeBlock {
    gate: Linear,
    /// The frozen FFN that low-rank experts modify (`block_sparse_moe.shared.{w1,w3,w2}`).
    shared: Option<SwiGlu>,
    experts: Vec<Expert>,
    top_k: usize,
    /// The `(tokens, top_k)` expert ids chosen in the last forward pass, for inspection.
    last_routing: Option<Tensor>,
    /// The gate's f32 logits `(tokens, experts)` of the last forward pass, kept in training
    /// for router losses.
    last_gate_logits: Option<Tensor>,
    training: bool,
    /// Run the frozen shared FFN alone, as the base model did before upcycling (see
    /// [`Transformer::set_base_only`]).
    base_only: bool,
}

impl SparseMoeBlock {
    fn new(cfg: &ModelConfig, w: &Weights) -> Result<Self> {
        let gate = w
            .pp("gate")
            .linear(cfg.hidden_size, cfg.num_local_experts)?;
        let shared = match cfg.expert_lora {
            Some(_) => Some(SwiGlu::new(cfg, &w.pp("shared"), EXPERT_NAMES)?),
            None => None,
        };
        let experts = (0..cfg.num_local_experts)
            .map(|e| Expert::new(cfg, &w.pp("experts").pp(e)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            gate,
            shared,
            experts,
            top_k: cfg.num_experts_per_tok,
            last_routing: None,
            last_gate_logits: None,
            training: false,
            base_only: false,
        })
    }

    /// Top-k expert ids `(n, k)`, their renormalised weights `(n, k)` and the gate's logits
    /// `(n, experts)`, in f32. A forced expert gets a bonus above any probability so it is
    /// always selected, while its weight stays the gate's own probability.
    fn route(&self, xs: &Tensor, forced: Option<usize>) -> Result<(Tensor, Tensor, Tensor)> {
        let logits = self.gate.forward(xs)?.to_dtype(DType::F32)?;
        let probs = softmax(&logits, self.training)?;
        let selection = match forced {
            Some(e) => {
                let n_exp = self.experts.len();
                let mut bonus = vec![0f32; n_exp];
                bonus[e] = 2.0;
                probs.broadcast_add(&Tensor::from_vec(bonus, (1, n_exp), xs.device())?)?
            }
            None => probs.clone(),
        };
        let ids = selection
            .arg_sort_last_dim(false)?
            .narrow(D::Minus1, 0, self.top_k)?
            .contiguous()?;
        let weights = probs.gather(&ids, D::Minus1)?;
        let weights = weights.broadcast_div(&weights.sum_keepdim(D::Minus1)?)?;
        Ok((ids, weights, logits))
    }

    fn forward(&mut self, xs: &Tensor, forced: Option<usize>) -> Result<Tensor> {
        if let (true, Some(shared)) = (self.base_only, &self.shared) {
            self.last_routing = None;
            return shared.forward(xs);
        }
        let (b, s, h) = xs.dims3()?;
        let flat = xs.reshape((b * s, h))?;
        let (ids, weights, logits) = self.route(&flat, forced)?;
        self.last_gate_logits = self.training.then_some(logits);
        let weights = weights.to_dtype(xs.dtype())?.flatten_all()?;
        // Group (token, slot) pairs by expert; each expert then runs one matmul over its tokens.
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); self.experts.len()];
        let mut slots: Vec<Vec<u32>> = vec![Vec::new(); self.experts.len()];
        for (token, chosen) in ids.to_vec2::<u32>()?.iter().enumerate() {
            for (slot, &e) in chosen.iter().enumerate() {
                rows[e as usize].push(token as u32);
                slots[e as usize].push((token * self.top_k + slot) as u32);
            }
        }
        // Low-rank experts share the frozen gate/up projections: compute them once per token.
        // The shared down projection is linear, so it too runs once per token, on the
        // gate-weighted sum of the experts' hidden states (`mixed`), not once per expert.
        let shared_in = match &self.shared {
            Some(s) => Some((s.gate.forward(&flat)?, s.up.forward(&flat)?)),
            None => None,
        };
        let mut out = flat.zeros_like()?;
        let mut mixed = match &shared_in {
            Some((gate, _)) => Some(gate.zeros_like()?),
            None => None,
        };
        for (e, expert) in self.experts.iter().enumerate() {
            if rows[e].is_empty() {
                continue;
            }
            let idx = Tensor::new(rows[e].as_slice(), xs.device())?;
            let w = weights
                .index_select(&Tensor::new(slots[e].as_slice(), xs.device())?, 0)?
                .unsqueeze(1)?;
            let x = flat.index_select(&idx, 0)?;
            let y = match (expert, &shared_in, &mut mixed) {
                (Expert::Full(ffn), _, _) => ffn.forward(&x)?,
                (Expert::LowRank { w1, w3, w2 }, Some((gate, up)), Some(mixed)) => {
                    let g = (gate.index_select(&idx, 0)? + w1.forward(&x)?)?;
                    let u = (up.index_select(&idx, 0)? + w3.forward(&x)?)?;
                    let h = (candle_nn::ops::silu(&g)? * u)?;
                    *mixed = mixed.index_add(&idx, &h.broadcast_mul(&w)?, 0)?;
                    w2.forward(&h)?
                }
                (Expert::LowRank { .. }, _, _) => {
                    candle_core::bail!("low-rank experts without a shared FFN")
                }
            };
            out = out.index_add(&idx, &y.broadcast_mul(&w)?, 0)?;
        }
        if let (Some(shared), Some(mixed)) = (&self.shared, mixed) {
            out = (out + shared.down.forward(&mixed)?)?;
        }
        self.last_routing = Some(ids);
        out.reshape((b, s, h))
    }
}

#[derive(Debug, Clone)]
enum FeedForward {
    Dense(SwiGlu),
    Sparse(SparseMoeBlock),
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: Attention,
    feed_forward: FeedForward,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    training: bool,
}

impl DecoderLayer {
    fn new(cfg: &ModelConfig, w: &Weights) -> Result<Self> {
        let feed_forward = match cfg.architecture {
            Architecture::Dense => FeedForward::Dense(SwiGlu::new(cfg, &w.pp("mlp"), MLP_NAMES)?),
            Architecture::Mixtral => {
                FeedForward::Sparse(SparseMoeBlock::new(cfg, &w.pp("block_sparse_moe"))?)
            }
        };
        Ok(Self {
            self_attn: Attention::new(cfg, &w.pp("self_attn"))?,
            feed_forward,
            input_layernorm: rms_norm(cfg, &w.pp("input_layernorm"))?,
            post_attention_layernorm: rms_norm(cfg, &w.pp("post_attention_layernorm"))?,
            training: false,
        })
    }

    fn forward(
        &mut self,
        xs: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        forced: Option<usize>,
        packing: Option<&Packing>,
    ) -> Result<Tensor> {
        let attn = self.self_attn.forward(
            &norm(&self.input_layernorm, xs, self.training)?,
            cos,
            sin,
            mask,
            packing,
        )?;
        let xs = (xs + attn)?;
        let normed = norm(&self.post_attention_layernorm, &xs, self.training)?;
        let ff = match &mut self.feed_forward {
            FeedForward::Dense(mlp) => mlp.forward(&normed)?,
            FeedForward::Sparse(moe) => moe.forward(&normed, forced)?,
        };
        xs + ff
    }
}

/// candle's fused softmax, RMSNorm and RoPE kernels have no backward and raise no error
/// (parameters behind them silently stop learning), so training uses these op-by-op forms.
fn softmax(xs: &Tensor, training: bool) -> Result<Tensor> {
    if training {
        candle_nn::ops::softmax(xs, D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(xs)
    }
}

fn norm(n: &RmsNorm, xs: &Tensor, training: bool) -> Result<Tensor> {
    if training {
        n.forward_diff(xs)
    } else {
        n.forward(xs)
    }
}

/// Half-split RoPE from primitives: `x (b, h, q, d)`, `cos`/`sin` `(b, q, d/2)` per row.
fn rope_diff(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(1)?;
    let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(1)?;
    let rotated = Tensor::cat(
        &[
            &x.narrow(D::Minus1, half, half)?.neg()?,
            &x.narrow(D::Minus1, 0, half)?,
        ],
        D::Minus1,
    )?;
    x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
}

fn rms_norm(cfg: &ModelConfig, w: &Weights) -> Result<RmsNorm> {
    Ok(RmsNorm::new(
        w.tensor("weight", cfg.hidden_size)?,
        cfg.rms_norm_eps,
    ))
}

/// The decoder: embeddings, layers, final norm and LM head (`model.*` and `lm_head` keys).
#[derive(Debug, Clone)]
pub struct Transformer {
    embed_tokens: TokenEmbedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Proj,
    rotary: RotaryEmbedding,
    sliding_window: Option<usize>,
    /// Tokens of the shared prefix at the start of every row's cache; row padding follows it.
    prefix_len: usize,
    device: Device,
    dtype: DType,
    training: bool,
}

impl Transformer {
    /// Builds the decoder from a `VarBuilder` over the checkpoint's tensors.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        Self::load(cfg, &Weights::from(vb))
    }

    /// Builds the decoder from safetensors or GGUF weights.
    pub fn load(cfg: &ModelConfig, w: &Weights) -> Result<Self> {
        let w_m = w.pp("model");
        let embed_tokens = w_m
            .pp("embed_tokens")
            .embedding(cfg.vocab_size, cfg.hidden_size)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(cfg, &w_m.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let norm = rms_norm(cfg, &w_m.pp("norm"))?;
        // Tied models (SmolLM2) project with the embedding matrix; a stored lm_head beside it
        // is ignored, as transformers ties it to the embedding.
        let lm_head = if cfg.tie_word_embeddings {
            match (&embed_tokens, w.quantize_target()) {
                (TokenEmbedding::Full(e), Some(target)) => {
                    super::weights::quantize_proj(e.embeddings().clone(), target)?
                }
                _ => embed_tokens.tied_head()?,
            }
        } else {
            w.pp("lm_head").head(cfg.hidden_size, cfg.vocab_size)?
        };
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary: RotaryEmbedding::new(cfg, w.dtype(), w.device())?,
            sliding_window: cfg.sliding_window,
            prefix_len: 0,
            device: w.device().clone(),
            dtype: w.dtype(),
            training: false,
        })
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype of the weights and activations.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Training mode: backward-capable ops in place of candle's fused kernels (which have no
    /// backward), no KV cache (each forward pass is a whole sequence from position 0), and the
    /// gate's logits kept for [`Transformer::router_logits`]. Off by default (inference).
    /// Runs the model as its base (`on`) or as itself: low-rank experts are deltas over a
    /// frozen shared FFN and their renormalised gate weights sum to one, so with the deltas
    /// left out every token gets exactly the base model's FFN. Returns whether the model has
    /// such a base (every feed-forward a block of low-rank experts); if not, nothing changes.
    pub fn set_base_only(&mut self, on: bool) -> bool {
        let low_rank = |l: &DecoderLayer| matches!(&l.feed_forward, FeedForward::Sparse(moe) if moe.shared.is_some());
        if !self.layers.iter().all(low_rank) {
            return false;
        }
        for layer in &mut self.layers {
            if let FeedForward::Sparse(moe) = &mut layer.feed_forward {
                moe.base_only = on;
            }
        }
        true
    }

    pub fn set_training(&mut self, on: bool) {
        self.training = on;
        for layer in &mut self.layers {
            layer.training = on;
            layer.self_attn.training = on;
            layer.self_attn.kv_cache = KvCache::new(2, 1);
            if let FeedForward::Sparse(moe) = &mut layer.feed_forward {
                moe.training = on;
                moe.last_gate_logits = None;
            }
        }
    }

    /// Drops the gate logits kept from the last forward pass (and with them its graph), so a
    /// training step holds one graph at a time.
    pub fn clear_router_logits(&mut self) {
        for layer in &mut self.layers {
            if let FeedForward::Sparse(moe) = &mut layer.feed_forward {
                moe.last_gate_logits = None;
            }
        }
    }

    /// The gate's f32 logits `(tokens, experts)` per MoE layer from the last forward pass in
    /// training mode, attached to the graph (for router losses).
    pub fn router_logits(&self) -> Vec<Tensor> {
        self.layers
            .iter()
            .filter_map(|l| match &l.feed_forward {
                FeedForward::Sparse(moe) => moe.last_gate_logits.clone(),
                FeedForward::Dense(_) => None,
            })
            .collect()
    }

    /// Tokens already in the KV cache.
    pub fn cached_len(&self) -> usize {
        self.layers
            .first()
            .map(|l| l.self_attn.kv_cache.current_seq_len())
            .unwrap_or(0)
    }

    /// Empties the KV cache and preallocates room for `capacity` positions per row, so
    /// decoding appends in place instead of concatenating.
    pub fn reset(&mut self, capacity: usize) {
        self.prefix_len = 0;
        for layer in &mut self.layers {
            layer.self_attn.kv_cache = KvCache::new(2, capacity.max(1));
        }
    }

    /// Runs `tokens` alone (batch 1, from an empty cache) and keeps their per-layer K/V.
    pub fn prefill_prefix(&mut self, tokens: &[u32], forced: Option<usize>) -> Result<PrefixCache> {
        self.reset(tokens.len());
        if !tokens.is_empty() {
            let input = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
            self.forward(&input, &[0], forced, Logits::Last)?;
        }
        let mut kv = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            match layer.self_attn.cached()? {
                Some((k, v)) => kv.push((k.contiguous()?, v.contiguous()?)),
                None => candle_core::bail!("an empty prefix has no cache"),
            }
        }
        Ok(PrefixCache {
            tokens: tokens.to_vec(),
            kv,
        })
    }

    /// Empties the cache, preallocating `capacity` positions per row, and fills the start of
    /// each of `batch` rows with `prefix`. Later `pads` count from the end of the prefix: the
    /// layout of row i is `[prefix | pads[i] padding | row tokens]`.
    pub fn reset_with_prefix(
        &mut self,
        prefix: &PrefixCache,
        batch: usize,
        capacity: usize,
    ) -> Result<()> {
        if prefix.kv.len() != self.layers.len() {
            candle_core::bail!(
                "prefix cache of {} layers for a model of {}",
                prefix.kv.len(),
                self.layers.len()
            );
        }
        for (layer, (k, v)) in self.layers.iter_mut().zip(&prefix.kv) {
            let k = k.repeat((batch, 1, 1, 1))?;
            let v = v.repeat((batch, 1, 1, 1))?;
            layer.self_attn.refill(&k, &v, capacity.max(prefix.len()))?;
        }
        self.prefix_len = prefix.len();
        Ok(())
    }

    /// Keeps only the cache rows `rows` (in that order), so finished rows stop costing
    /// compute. The caller drops the same rows' pads.
    pub fn retain_rows(&mut self, rows: &[usize]) -> Result<()> {
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::new(idx.as_slice(), &self.device)?;
        for layer in &mut self.layers {
            let capacity = layer.self_attn.kv_cache.k_cache().max_seq_len();
            if let Some((k, v)) = layer.self_attn.cached()? {
                let k = k.contiguous()?.index_select(&idx, 0)?;
                let v = v.contiguous()?.index_select(&idx, 0)?;
                layer.self_attn.refill(&k, &v, capacity)?;
            }
        }
        Ok(())
    }

    /// Runs `input_ids` `(b, q)` after whatever is in the cache. `pads[i]` is row i's
    /// padding, counted over the whole sequence; it sits after the shared prefix
    /// ([`Transformer::reset_with_prefix`]), at the start of the row when there is none; `forced` is the expert forced into every token's
    /// top-k (task routing), if any. Returns f32 logits per [`Logits`].
    pub fn forward(
        &mut self,
        input_ids: &Tensor,
        pads: &Pads,
        forced: Option<usize>,
        logits: Logits,
    ) -> Result<Tensor> {
        let (b, q) = input_ids.dims2()?;
        if pads.len() != b {
            candle_core::bail!("{} pad lengths for a batch of {b}", pads.len());
        }
        let offset = self.cached_len();
        let positions = self.positions(pads, offset, q)?;
        let (cos, sin) = self.rotary.gather(&positions, b, q)?;
        let mask = self.mask(pads, offset, q)?;
        let mut xs = self.embed_tokens.forward(input_ids)?;
        // Prompt blocks with padding run the position-wise layers on their real tokens only.
        let packing = match self.training {
            true => None,
            false => {
                let n = self.prefix_len;
                let is_pad = |i: usize, j: usize| is_padding(offset + j, n, pads[i]);
                Packing::new(b, q, is_pad, &self.device)?
            }
        };
        if let Some(p) = &packing {
            xs = p.pack(&xs)?;
        }
        for layer in &mut self.layers {
            xs = layer.forward(&xs, &cos, &sin, &mask, forced, packing.as_ref())?;
        }
        if let Some(p) = &packing {
            xs = p.unpack(&xs)?;
        }
        let xs = match logits {
            Logits::Last => xs.narrow(1, q - 1, 1)?.squeeze(1)?,
            Logits::All | Logits::Hidden => xs,
        };
        let xs = norm(&self.norm, &xs, self.training)?;
        if logits == Logits::Hidden {
            return Ok(xs);
        }
        self.lm_head(&xs)
    }

    /// f32 logits of final-normed hidden states (what [`Logits::Hidden`] returns).
    pub fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)?.to_dtype(DType::F32)
    }

    /// The `(tokens, top_k)` expert ids each MoE layer chose in the last forward pass (empty
    /// for dense models); the tokens of a padded prompt block are its real ones, in order.
    pub fn last_routing(&self) -> Vec<Tensor> {
        self.layers
            .iter()
            .filter_map(|l| match &l.feed_forward {
                FeedForward::Sparse(moe) => moe.last_routing.clone(),
                FeedForward::Dense(_) => None,
            })
            .collect()
    }

    /// Position ids: row i's token at absolute index t sits at `t - pads[i]` after the
    /// prefix and its padding, at `t` inside the prefix, as unpadded.
    fn positions(&self, pads: &Pads, offset: usize, q: usize) -> Result<Tensor> {
        let n = self.prefix_len;
        let ids: Vec<u32> = pads
            .iter()
            .flat_map(|&p| (offset..offset + q).map(move |t| position(t, n, p) as u32))
            .collect();
        Tensor::new(ids.as_slice(), &self.device)
    }

    /// Additive attention mask `(b, 1, q, kv)`: causal, blind to padding, and within the
    /// sliding window (measured in positions). A padding query attends to itself only, so no
    /// row is all `-inf`.
    fn mask(&self, pads: &Pads, offset: usize, q: usize) -> Result<Tensor> {
        let kv = offset + q;
        let n = self.prefix_len;
        let window = self.sliding_window.unwrap_or(usize::MAX);
        let mut data = Vec::with_capacity(pads.len() * q * kv);
        for &p in pads {
            let is_pad = |i: usize| is_padding(i, n, p);
            for t in offset..offset + q {
                let pt = position(t, n, p);
                for j in 0..kv {
                    let visible = if is_pad(t) {
                        j == t
                    } else {
                        !is_pad(j) && j <= t && pt - position(j, n, p) < window
                    };
                    data.push(if visible { 0f32 } else { f32::NEG_INFINITY });
                }
            }
        }
        Tensor::from_vec(data, (pads.len(), 1, q, kv), &self.device)
    }
}

/// Whether index `i` of a row laid out as `[prefix (n) | padding (p) | tokens]` is padding.
fn is_padding(i: usize, n: usize, p: usize) -> bool {
    i >= n && i < n + p
}

/// The position of index `i` in a row laid out as `[prefix (n) | padding (p) | tokens]`;
/// padding slots get the position after the prefix (any valid position would do: they are
/// masked).
fn position(i: usize, n: usize, p: usize) -> usize {
    if i < n {
        i
    } else if i < n + p {
        n
    } else {
        i - p
    }
}

/// One decoder layer's attention and feed-forward, callable on their own for the criterion
/// benchmarks (`benches/model.rs`); not part of the supported API.
#[doc(hidden)]
pub struct LayerBench {
    layer: DecoderLayer,
    rotary: RotaryEmbedding,
    device: Device,
}

#[doc(hidden)]
impl LayerBench {
    /// Layer 0 of a checkpoint (`model.layers.0.*`).
    pub fn new(cfg: &ModelConfig, w: &Weights) -> Result<Self> {
        Ok(Self {
            layer: DecoderLayer::new(cfg, &w.pp("model").pp("layers").pp(0))?,
            rotary: RotaryEmbedding::new(cfg, w.dtype(), w.device())?,
            device: w.device().clone(),
        })
    }

    /// A fresh cache holding `cached` positions of zeros, room for `q` more, for `b` rows:
    /// the setup of [`Self::attention`], kept out of its timing.
    pub fn fill_cache(&mut self, b: usize, q: usize, cached: usize, dtype: DType) -> Result<()> {
        let attn = &mut self.layer.self_attn;
        attn.kv_cache = KvCache::new(2, cached + q);
        if cached > 0 {
            let shape = (b, attn.num_kv_heads, cached, attn.head_dim);
            let kv = Tensor::zeros(shape, dtype, &self.device)?;
            attn.kv_cache.append(&kv, &kv)?;
        }
        Ok(())
    }

    /// Self-attention over `xs` `(b, q, hidden)` after the `cached` positions that
    /// [`Self::fill_cache`] put in the cache (a decode step when `q` is 1).
    pub fn attention(&mut self, xs: &Tensor, cached: usize) -> Result<Tensor> {
        let (b, q, _) = xs.dims3()?;
        let attn = &mut self.layer.self_attn;
        let ids: Vec<u32> = (0..b)
            .flat_map(|_| (cached..cached + q).map(|t| t as u32))
            .collect();
        let (cos, sin) = self
            .rotary
            .gather(&Tensor::new(ids.as_slice(), &self.device)?, b, q)?;
        let mut mask = Vec::with_capacity(q * (cached + q));
        for t in cached..cached + q {
            mask.extend((0..cached + q).map(|j| if j <= t { 0f32 } else { f32::NEG_INFINITY }));
        }
        let mask = Tensor::from_vec(mask, (1, 1, q, cached + q), &self.device)?;
        attn.forward(xs, &cos, &sin, &mask, None)
    }

    /// The feed-forward (sparse MoE block or dense MLP) over `xs` `(b, q, hidden)`.
    pub fn feed_forward(&mut self, xs: &Tensor, forced: Option<usize>) -> Result<Tensor> {
        match &mut self.layer.feed_forward {
            FeedForward::Dense(mlp) => mlp.forward(xs),
            FeedForward::Sparse(moe) => moe.forward(xs, forced),
        }
    }
}

//! GGUF files, llama.cpp's single-file format: the model configuration from the metadata, and
//! the tensors under their Hugging Face names in Hugging Face layout, still quantised.
//!
//! llama.cpp's converter (`convert_hf_to_gguf.py`, `LlamaModel.permute`) reorders the rows of
//! `q_proj` and `k_proj` so that its interleaved RoPE, which rotates pairs `(2i, 2i+1)`, computes
//! what Hugging Face's half-split RoPE computes on pairs `(i, i + d/2)`. neko undoes that
//! permutation on the raw rows while loading. A quantised row is a run of blocks along the
//! input dimension, independent of every other row, so reordering rows is exact for every ggml
//! type and needs no requantisation. One RoPE layout then serves safetensors and GGUF models,
//! and `neko convert` writes exactly the weights the GGUF model computes with.
//!
//! Only the `llama` architecture is read (Llama, Mistral, SmolLM2, and Mixtral with either the
//! per-expert `ffn_gate.E` or the stacked `ffn_gate_exps` layout).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QTensor};
use candle_core::Device;

use super::config::{Architecture, ModelConfig};
use super::ModelError;

/// Quantised tensors by Hugging Face name, in Hugging Face layout.
pub type GgufTensors = BTreeMap<String, Arc<QTensor>>;

/// An open GGUF file: its header (metadata and tensor directory); tensors load on request.
#[derive(Debug)]
pub struct GgufFile {
    pub path: PathBuf,
    pub content: Content,
}

impl GgufFile {
    /// Reads the header of `path`.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let mut f = File::open(path).map_err(|e| ModelError::files(path, e.to_string()))?;
        let content = Content::read(&mut f)
            .map_err(|e| ModelError::files(path, unreadable(&e.to_string())))?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            content,
        })
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn err(&self, message: impl Into<String>) -> ModelError {
        ModelError::files(&self.path, message)
    }

    fn need(&self, key: &str) -> Result<&Value, ModelError> {
        self.get(key)
            .ok_or_else(|| self.err(format!("metadata `{key}` is missing")))
    }

    /// An unsigned integer, whatever integer type the writer chose.
    pub fn uint(&self, key: &str) -> Result<Option<u64>, ModelError> {
        self.get(key)
            .map(|v| as_u64(v).ok_or_else(|| self.err(format!("metadata `{key}`: not an integer"))))
            .transpose()
    }

    fn float(&self, key: &str) -> Result<Option<f64>, ModelError> {
        self.get(key)
            .map(|v| match v {
                Value::F32(x) => Ok(*x as f64),
                Value::F64(x) => Ok(*x),
                v => as_u64(v)
                    .map(|x| x as f64)
                    .ok_or_else(|| self.err(format!("metadata `{key}`: not a number"))),
            })
            .transpose()
    }

    /// A string value.
    pub fn string(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// A boolean value (`None` when absent or not a boolean).
    pub fn flag(&self, key: &str) -> Option<bool> {
        match self.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// `general.architecture`, which prefixes the model's keys.
    pub fn architecture(&self) -> Result<&str, ModelError> {
        match self.need("general.architecture")? {
            Value::String(s) => Ok(s),
            _ => Err(self.err("metadata `general.architecture`: not a string")),
        }
    }

    /// The chat template the file carries (`tokenizer.chat_template`), if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.string("tokenizer.chat_template")
    }

    /// The model configuration, from `{arch}.*` and `tokenizer.ggml.*` metadata.
    pub fn config(&self) -> Result<ModelConfig, ModelError> {
        // One part of a model split across files (`*-00001-of-00003.gguf`) lacks the others'
        // tensors: said as such, not as a missing tensor after the load.
        if let Some(parts) = self.uint("split.count")?.filter(|&n| n > 1) {
            let part = self.uint("split.no")?.unwrap_or(0) + 1;
            return Err(self.err(format!(
                "part {part} of {parts} of a split GGUF: join the parts into one file first (llama.cpp's `llama-gguf-split --merge FIRST-PART OUT.gguf`)"
            )));
        }
        let arch = self.architecture()?.to_string();
        if arch != "llama" {
            return Err(self.err(format!(
                "GGUF architecture `{arch}` is not supported (llama is: Llama, Mistral, Mixtral, SmolLM2)"
            )));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let need_uint = |k: &str| -> Result<usize, ModelError> {
            self.uint(&key(k))?
                .map(|v| v as usize)
                .ok_or_else(|| self.err(format!("metadata `{}` is missing", key(k))))
        };
        if let Some(kind) = self.string(&key("rope.scaling.type")) {
            if kind != "none" {
                return Err(self.err(format!("RoPE scaling `{kind}` is not supported")));
            }
        }
        // llama.cpp reads a factor without a type as linear scaling, and older converters wrote
        // it as `rope.scale_linear`: running such a file unscaled would rotate every position
        // wrongly, so any factor but 1 is refused like the typed form.
        for k in ["rope.scaling.factor", "rope.scale_linear"] {
            if let Some(f) = self.float(&key(k))? {
                if f != 0.0 && f != 1.0 {
                    return Err(self.err(format!(
                        "RoPE scaling `linear` (`{}` = {f}) is not supported",
                        key(k)
                    )));
                }
            }
        }
        if self.content.tensor_infos.contains_key("rope_freqs.weight") {
            return Err(self.err("RoPE frequency factors (`rope_freqs`) are not supported"));
        }
        let hidden_size = need_uint("embedding_length")?;
        let num_attention_heads = need_uint("attention.head_count")?;
        let num_key_value_heads = self
            .uint(&key("attention.head_count_kv"))?
            .map(|v| v as usize)
            .unwrap_or(num_attention_heads);
        if num_attention_heads == 0 || num_key_value_heads == 0 {
            return Err(self.err("attention head counts must be positive"));
        }
        let head_dim = match self.uint(&key("attention.key_length"))? {
            Some(d) => d as usize,
            None => hidden_size / num_attention_heads,
        };
        // The head counts must fit the first layer's projections, or loading would slice
        // past them (a bad header must be an error, not a panic).
        for (tensor, heads) in [
            ("blk.0.attn_q.weight", num_attention_heads),
            ("blk.0.attn_k.weight", num_key_value_heads),
        ] {
            let elements = self
                .content
                .tensor_infos
                .get(tensor)
                .map(|t| t.shape.elem_count());
            if let Some(n) =
                elements.filter(|&n| head_dim == 0 || n != hidden_size * heads * head_dim)
            {
                return Err(self.err(format!(
                    "`{tensor}` has {n} values, not {hidden_size} × {heads} heads × {head_dim}: \
                     the head counts in the metadata do not fit it"
                )));
            }
        }
        if let Some(rot) = self.uint(&key("rope.dimension_count"))? {
            if rot as usize != head_dim {
                return Err(self.err(format!(
                    "partial rotary embeddings ({rot} of {head_dim} dimensions) are not supported"
                )));
            }
        }
        let experts = self.uint(&key("expert_count"))?.unwrap_or(0) as usize;
        let (architecture, num_local_experts, num_experts_per_tok) = if experts > 0 {
            let k = self.uint(&key("expert_used_count"))?.unwrap_or(2) as usize;
            if k == 0 || k > experts {
                return Err(self.err(format!(
                    "`{}` is {k}: it must be between 1 and the {experts} experts",
                    key("expert_used_count")
                )));
            }
            (Architecture::Mixtral, experts, k)
        } else {
            (Architecture::Dense, 1, 1)
        };
        let intermediate_size = match self.uint(&key("expert_feed_forward_length"))? {
            Some(n) if experts > 0 => n as usize,
            _ => need_uint("feed_forward_length")?,
        };
        let vocab_size = match self.content.tensor_infos.get("token_embd.weight") {
            Some(info) => info.shape.dims()[0],
            None => return Err(self.err("tensor `token_embd.weight` is missing")),
        };
        let mut eos_token_ids = Vec::new();
        for k in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
            if let Some(id) = self.uint(k)? {
                if !eos_token_ids.contains(&(id as u32)) {
                    eos_token_ids.push(id as u32);
                }
            }
        }
        let config = ModelConfig {
            architecture,
            model_type: if experts > 0 { "mixtral" } else { "llama" }.into(),
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers: need_uint("block_count")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            max_position_embeddings: self
                .uint(&key("context_length"))?
                .map(|v| v as usize)
                .unwrap_or(4096),
            // f32 in the file: 1e-5 reads back as 9.999999747e-06; round to what was meant.
            rms_norm_eps: self
                .float(&key("attention.layer_norm_rms_epsilon"))?
                .map(round_f32)
                .unwrap_or(1e-5),
            rope_theta: self
                .float(&key("rope.freq_base"))?
                .map(round_f32)
                .unwrap_or(10_000.0),
            sliding_window: None,
            tie_word_embeddings: !self.content.tensor_infos.contains_key("output.weight"),
            num_local_experts,
            num_experts_per_tok,
            bos_token_id: self.uint("tokenizer.ggml.bos_token_id")?.map(|v| v as u32),
            eos_token_ids,
            task_experts: BTreeMap::new(),
            dtype: None,
            expert_lora: None,
        };
        // The checks a config.json gets, on what the metadata says: a RoPE base of 0, a
        // context of 0 or an EOS id past the vocabulary loaded and answered `<unk>...`.
        ModelConfig::from_json(&config.to_hf_json("float32").to_string())
            .map_err(|e| self.err(format!("the metadata, read as a config.json: {e}")))?;
        Ok(config)
    }

    /// The stored tensors: GGUF name, ggml dtype and shape `(out, in)` (Hugging Face order).
    pub fn tensor_infos(&self) -> Vec<(String, GgmlDType, Vec<usize>)> {
        let mut v: Vec<_> = self
            .content
            .tensor_infos
            .iter()
            .map(|(n, i)| (n.clone(), i.ggml_dtype, i.shape.dims().to_vec()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Reads every tensor onto `device`, renamed to Hugging Face names, Q/K rows un-permuted and
    /// stacked experts split, without dequantising anything.
    pub fn tensors(&self, device: &Device) -> Result<GgufTensors, ModelError> {
        let cfg = self.config()?;
        let werr = |m: String| ModelError::Weights {
            path: self.path.display().to_string(),
            message: m,
        };
        let file =
            File::open(&self.path).map_err(|e| ModelError::files(&self.path, e.to_string()))?;
        let file_len = file
            .metadata()
            .map_err(|e| ModelError::files(&self.path, e.to_string()))?
            .len();
        let mut f = BufReader::new(file);
        let mut infos: Vec<_> = self.content.tensor_infos.iter().collect();
        infos.sort_by_key(|(_, i)| i.offset);
        let mut out = GgufTensors::new();
        for (name, info) in infos {
            let dims = info.shape.dims().to_vec();
            let dtype = info.ggml_dtype;
            // The header's dimensions are checked against the file before anything is
            // allocated: a damaged header must be named, not abort the process.
            let elems = dims
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .filter(|&e| e > 0)
                .ok_or_else(|| werr(format!("{name}: impossible dimensions {dims:?}")))?;
            if !elems.is_multiple_of(dtype.block_size()) {
                return Err(werr(format!("{name}: size not a multiple of its block")));
            }
            let bytes = elems / dtype.block_size() * dtype.type_size();
            let start = self.content.tensor_data_offset + info.offset;
            if start.saturating_add(bytes as u64) > file_len {
                return Err(werr(format!(
                    "{name}: {dims:?} ends past the end of the file (cut short or damaged)"
                )));
            }
            let mut raw = vec![0u8; bytes];
            f.seek(SeekFrom::Start(start))
                .and_then(|_| f.read_exact(&mut raw))
                .map_err(|e| werr(format!("{name}: {e}")))?;
            let Some(mapped) = hf_name(name).map_err(|m| werr(format!("{name}: {m}")))? else {
                continue;
            };
            let load = |hf: String, raw: Vec<u8>, dims: Vec<usize>| {
                let raw = match rope_heads(&hf, &cfg) {
                    // Every layer's, not only the first's (checked with the config): a row
                    // count that is no whole number of even-sized heads cannot be un-permuted.
                    Some(heads)
                        if !dims.first().is_some_and(|&r| r > 0 && r % (2 * heads) == 0) =>
                    {
                        return Err(werr(format!(
                            "{name}: {dims:?} rows are no whole number of {heads} heads of even size"
                        )));
                    }
                    Some(heads) => unpermute_rows(&raw, dims[0], heads),
                    None => raw,
                };
                qtensor_from_ggml(dtype, &raw, dims, device)
                    .map(|t| (hf, Arc::new(t)))
                    .map_err(|e| werr(format!("{name}: {e}")))
            };
            match mapped {
                Mapped::One(hf) => {
                    let (k, v) = load(hf, raw, dims)?;
                    out.insert(k, v);
                }
                Mapped::Stacked { layer, proj } => {
                    // (experts, out, in): each expert is a contiguous run of rows.
                    let [n, rows, cols] = dims[..] else {
                        return Err(werr(format!("{name}: expected 3 dimensions, got {dims:?}")));
                    };
                    let per = raw.len() / n;
                    for e in 0..n {
                        let hf = format!(
                            "model.layers.{layer}.block_sparse_moe.experts.{e}.{proj}.weight"
                        );
                        let part = raw[e * per..(e + 1) * per].to_vec();
                        let (k, v) = load(hf, part, vec![rows, cols])?;
                        out.insert(k, v);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The message for a header candle cannot read. candle names an unknown tensor type
/// "unknown dtype for tensor N" where N is the type's number, which reads like a corrupt file;
/// a valid file in a newer quantisation (the IQ and TQ types) is told so, with what is read.
fn unreadable(candle: &str) -> String {
    let Some(n) = candle
        .strip_prefix("unknown dtype for tensor ")
        .and_then(|n| n.trim().parse::<u32>().ok())
    else {
        return format!("not a readable GGUF file: {candle}");
    };
    let name = match n {
        16 => " (IQ2_XXS)",
        17 => " (IQ2_XS)",
        18 => " (IQ3_XXS)",
        19 => " (IQ1_S)",
        20 => " (IQ4_NL)",
        21 => " (IQ3_S)",
        22 => " (IQ2_S)",
        23 => " (IQ4_XS)",
        29 => " (IQ1_M)",
        34 => " (TQ1_0)",
        35 => " (TQ2_0)",
        _ => "",
    };
    format!(
        "GGUF tensor type {n}{name} is not supported (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, \
         Q8_0 and Q2_K to Q8_K are): requantise it, e.g. with llama-quantize to Q8_0 or Q4_K_M"
    )
}

/// What a GGUF tensor becomes.
enum Mapped {
    One(String),
    /// `blk.L.ffn_{gate,down,up}_exps`: all experts' `w1`/`w2`/`w3` in one 3-d tensor.
    Stacked {
        layer: usize,
        proj: &'static str,
    },
}

/// The Hugging Face name of a GGUF tensor (`None`: a tensor neko does not need).
fn hf_name(name: &str) -> Result<Option<Mapped>, String> {
    let top = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Ok(Some(Mapped::One(t.to_string())));
    }
    let unknown = || Err("unknown tensor (not a llama-architecture weight)".to_string());
    let Some(rest) = name.strip_prefix("blk.") else {
        return unknown();
    };
    let Some((layer, rest)) = rest.split_once('.') else {
        return unknown();
    };
    let Ok(layer) = layer.parse::<usize>() else {
        return unknown();
    };
    let Some(stem) = rest.strip_suffix(".weight") else {
        return if rest.ends_with(".bias") {
            Err("bias tensors are not supported".into())
        } else {
            unknown()
        };
    };
    let l = format!("model.layers.{layer}");
    let one = |s: &str| Ok(Some(Mapped::One(format!("{l}.{s}.weight"))));
    match stem {
        "attn_norm" => one("input_layernorm"),
        "ffn_norm" => one("post_attention_layernorm"),
        "attn_q" => one("self_attn.q_proj"),
        "attn_k" => one("self_attn.k_proj"),
        "attn_v" => one("self_attn.v_proj"),
        "attn_output" => one("self_attn.o_proj"),
        "ffn_gate" => one("mlp.gate_proj"),
        "ffn_up" => one("mlp.up_proj"),
        "ffn_down" => one("mlp.down_proj"),
        "ffn_gate_inp" => one("block_sparse_moe.gate"),
        "ffn_gate_exps" => Ok(Some(Mapped::Stacked { layer, proj: "w1" })),
        "ffn_down_exps" => Ok(Some(Mapped::Stacked { layer, proj: "w2" })),
        "ffn_up_exps" => Ok(Some(Mapped::Stacked { layer, proj: "w3" })),
        // Precomputed rotary tables in old files; neko computes its own.
        "attn_rot_embd" => Ok(None),
        s => match s.rsplit_once('.') {
            Some((p, e)) if e.parse::<usize>().is_ok() => {
                let w = match p {
                    "ffn_gate" => "w1",
                    "ffn_down" => "w2",
                    "ffn_up" => "w3",
                    _ => return unknown(),
                };
                one(&format!("block_sparse_moe.experts.{e}.{w}"))
            }
            _ => unknown(),
        },
    }
}

/// The GGUF name of a Hugging Face tensor (per-expert layout for Mixtral), for writing GGUF
/// files; the inverse of the loader's renaming.
pub fn gguf_name(hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let stem = rest.strip_suffix(".weight")?;
    let g = match stem {
        "input_layernorm" => "attn_norm".to_string(),
        "post_attention_layernorm" => "ffn_norm".into(),
        "self_attn.q_proj" => "attn_q".into(),
        "self_attn.k_proj" => "attn_k".into(),
        "self_attn.v_proj" => "attn_v".into(),
        "self_attn.o_proj" => "attn_output".into(),
        "mlp.gate_proj" => "ffn_gate".into(),
        "mlp.up_proj" => "ffn_up".into(),
        "mlp.down_proj" => "ffn_down".into(),
        "block_sparse_moe.gate" => "ffn_gate_inp".into(),
        s => {
            let (e, w) = s
                .strip_prefix("block_sparse_moe.experts.")?
                .split_once('.')?;
            let p = match w {
                "w1" => "ffn_gate",
                "w2" => "ffn_down",
                "w3" => "ffn_up",
                _ => return None,
            };
            format!("{p}.{e}")
        }
    };
    Some(format!("blk.{layer}.{g}.weight"))
}

/// Heads whose rows llama.cpp permuted, for `q_proj` and `k_proj` weights.
fn rope_heads(hf: &str, cfg: &ModelConfig) -> Option<usize> {
    if hf.ends_with("self_attn.q_proj.weight") {
        Some(cfg.num_attention_heads)
    } else if hf.ends_with("self_attn.k_proj.weight") {
        Some(cfg.num_key_value_heads)
    } else {
        None
    }
}

/// The source row of Hugging Face row `r` in llama.cpp's permuted layout. llama.cpp views the
/// rows as `(heads, 2, d/2)` and stores them as `(heads, d/2, 2)`.
pub fn permuted_row(r: usize, rows: usize, heads: usize) -> usize {
    let d = rows / heads;
    let half = d / 2;
    let (h, within) = (r / d, r % d);
    let (j, i) = (within / half, within % half);
    h * d + 2 * i + j
}

/// Undoes llama.cpp's Q/K permutation on raw row data (any ggml type: rows are independent).
fn unpermute_rows(raw: &[u8], rows: usize, heads: usize) -> Vec<u8> {
    let row_bytes = raw.len() / rows;
    let mut out = Vec::with_capacity(raw.len());
    for r in 0..rows {
        let src = permuted_row(r, rows, heads);
        out.extend_from_slice(&raw[src * row_bytes..(src + 1) * row_bytes]);
    }
    out
}

fn as_u64(v: &Value) -> Option<u64> {
    match *v {
        Value::U8(x) => Some(x as u64),
        Value::U16(x) => Some(x as u64),
        Value::U32(x) => Some(x as u64),
        Value::U64(x) => Some(x),
        Value::I8(x) => u64::try_from(x).ok(),
        Value::I16(x) => u64::try_from(x).ok(),
        Value::I32(x) => u64::try_from(x).ok(),
        Value::I64(x) => u64::try_from(x).ok(),
        _ => None,
    }
}

/// An f32 metadata value widened to the shortest f64 that prints the same (1e-5, not
/// 9.999999747378752e-06).
fn round_f32(x: f64) -> f64 {
    (x as f32).to_string().parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// candle's "unknown dtype for tensor 23" names a type, not a tensor: a valid IQ4_XS file
    /// is told its type is unsupported, and what to do, not that it is unreadable.
    #[test]
    fn an_unknown_tensor_type_is_named_as_a_type() {
        let got = unreadable("unknown dtype for tensor 23");
        assert!(got.contains("type 23 (IQ4_XS) is not supported"), "{got}");
        assert!(
            got.contains("Q8_0") && !got.contains("not a readable"),
            "{got}"
        );
        let other = unreadable("invalid gguf magic 1234");
        assert_eq!(other, "not a readable GGUF file: invalid gguf magic 1234");
    }

    #[test]
    fn permutation_is_llama_cpp_s() {
        // llama.cpp: w.reshape(heads, 2, d/2, in).swapaxes(1, 2): stored row h*d + 2i + j holds
        // HF row h*d + j*d/2 + i. Two heads of d = 4: HF rows [0 1 2 3 | 4 5 6 7] are stored as
        // [0 2 1 3 | 4 6 5 7].
        let stored = [0usize, 2, 1, 3, 4, 6, 5, 7];
        for r in 0..8 {
            assert_eq!(stored[permuted_row(r, 8, 2)], r);
        }
    }

    #[test]
    fn names_round_trip() {
        for hf in [
            "model.embed_tokens.weight",
            "lm_head.weight",
            "model.layers.3.self_attn.k_proj.weight",
            "model.layers.0.mlp.down_proj.weight",
            "model.layers.1.block_sparse_moe.gate.weight",
            "model.layers.1.block_sparse_moe.experts.7.w3.weight",
        ] {
            let g = gguf_name(hf).unwrap();
            match hf_name(&g).unwrap() {
                Some(Mapped::One(back)) => assert_eq!(back, hf),
                _ => panic!("{g} did not map back"),
            }
        }
        assert!(hf_name("blk.0.attn_q.bias").is_err());
        assert!(matches!(
            hf_name("blk.2.ffn_up_exps.weight").unwrap(),
            Some(Mapped::Stacked {
                layer: 2,
                proj: "w3"
            })
        ));
    }
}

//! The model configuration, read from a Hugging Face `config.json` as real checkpoints write it.
//!
//! Real files vary: `rope_theta` sits at the top level or (transformers v5) inside
//! `rope_parameters`; `sliding_window` may be null; `head_dim`, `tie_word_embeddings` and
//! `num_key_value_heads` may be absent; `eos_token_id` may be a list. Unknown keys are ignored.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::Task;

/// Which decoder family a checkpoint is. Both share attention; they differ in the feed-forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Dense SwiGLU feed-forward (`mlp.{gate,up,down}_proj`): Llama, Mistral, SmolLM2.
    Dense,
    /// Sparse Mixture-of-Experts feed-forward (`block_sparse_moe.{gate,experts.E.w1/w2/w3}`).
    Mixtral,
}

/// How tokens choose experts at inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutingMode {
    /// The learned gate alone picks each token's top-k experts (the paper's inference).
    #[default]
    Learned,
    /// The task's expert is forced into each token's top-k; the gate picks the rest and the
    /// weights (the design card: the task tag selects the expert).
    Task,
}

/// Everything neko needs from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    /// `model_type` as written (`mixtral`, `llama`, `mistral`, ...).
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub sliding_window: Option<usize>,
    pub tie_word_embeddings: bool,
    /// Experts per MoE layer (1 for dense models).
    pub num_local_experts: usize,
    /// Experts each token is routed to (top-k).
    pub num_experts_per_tok: usize,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// The task-to-expert map (`"task_experts": {"asr": 0, ...}`), when the model has one.
    pub task_experts: BTreeMap<Task, usize>,
    /// The weights' dtype as the config states it (`torch_dtype` or `dtype`).
    pub dtype: Option<String>,
    /// Low-rank experts (`expert_lora_rank`): each expert is a LoRA delta over the block's
    /// shared, frozen FFN (`block_sparse_moe.shared.*`) instead of a full FFN of its own.
    pub expert_lora: Option<ExpertLora>,
}

/// The shape of low-rank experts: `W_e = W_shared + (alpha / rank) · B_e A_e` per projection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpertLora {
    pub rank: usize,
    pub alpha: f64,
}

impl ExpertLora {
    /// The factor on `B A`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// `model_type` of neko's low-rank-expert checkpoints. It is not `mixtral` on purpose: Hugging
/// Face transformers would otherwise load them as Mixtral and silently initialise the missing
/// full experts at random; with an unknown type it refuses loudly instead.
pub const LORA_MOE_MODEL_TYPE: &str = "neko_lora_mixtral";

/// Why a `config.json` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error("field `{field}`: {message}")]
    Field { field: String, message: String },
}

fn field_err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.to_string(),
        message: message.into(),
    }
}

/// The raw fields, with serde defaults for everything real configs leave out.
#[derive(Debug, Deserialize)]
struct RawConfig {
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    architectures: Vec<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default)]
    rms_norm_eps: Option<f64>,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_parameters: Option<Value>,
    #[serde(default)]
    rope_scaling: Option<Value>,
    /// Biases on the attention and feed-forward projections, which neko's Llama does not
    /// apply: such a checkpoint is refused rather than run without them.
    #[serde(default, deserialize_with = "null_as_default")]
    attention_bias: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    mlp_bias: bool,
    /// Absent (`None`) apart from null (`Some(None)`): Mistral's default window is 4096.
    #[serde(default, deserialize_with = "present")]
    sliding_window: Option<Option<usize>>,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    num_local_experts: Option<usize>,
    #[serde(default)]
    num_experts_per_tok: Option<usize>,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    bos_token_id: Option<Value>,
    #[serde(default)]
    eos_token_id: Option<Value>,
    #[serde(default)]
    task_experts: Option<BTreeMap<String, usize>>,
    #[serde(default)]
    torch_dtype: Option<String>,
    #[serde(default)]
    dtype: Option<String>,
    #[serde(default)]
    expert_lora_rank: Option<usize>,
    #[serde(default)]
    expert_lora_alpha: Option<f64>,
    #[serde(default)]
    quantization_config: Option<Value>,
}

fn default_max_pos() -> usize {
    4096
}

/// `null` for a field with a default (`"architectures": null`, which transformers writes and
/// reads) is the default.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// The key whose value serde's error at (1-based) `line` and `column` of `text` points into:
/// the last `"key":` before that place (a `:` inside a string value is passed over).
fn key_before(text: &str, line: usize, column: usize) -> Option<String> {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let mut end = (start + column).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut before = &text[..end];
    while let Some(colon) = before.rfind(':') {
        before = &before[..colon];
        let Some(key) = before.trim_end().strip_suffix('"') else {
            continue;
        };
        let open = key.rfind('"')?;
        return Some(key[open + 1..].to_string());
    }
    None
}

/// transformers' defaults for a config that leaves `rope_theta` or `rms_norm_eps` out:
/// The attention window transformers gives a config: Llama has none whatever the config says
/// (a "llamafied" conversion may carry one); a Mistral config without the key gets
/// `MistralConfig`'s 4096; others the value written (null: none).
fn sliding_window_of(raw: &RawConfig) -> Option<usize> {
    match (raw.model_type.as_deref(), raw.sliding_window) {
        (Some("llama"), _) => None,
        (Some("mistral"), None) => Some(4096),
        (_, window) => window.flatten(),
    }
}

/// A field that is present, whatever its value (null included): `Some` of it.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Mixtral's differ from Llama's (and Mistral's, Qwen2's), and a wrong one runs another model.
fn defaults_of(model_type: Option<&str>) -> (f64, f64) {
    match model_type.map(str::to_ascii_lowercase).as_deref() {
        Some("mixtral") => (1e6, 1e-5),
        _ => (10_000.0, 1e-6),
    }
}

impl ModelConfig {
    /// Parses the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| {
            // A value of the wrong type is named by its key, not called broken JSON.
            match e
                .is_data()
                .then(|| key_before(text, e.line(), e.column()))
                .flatten()
            {
                Some(field) => field_err(&field, e.to_string()),
                None => ConfigError::Json(e),
            }
        })?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        // Packed integer weights (GPTQ, AWQ, bitsandbytes, FP8) would fail later as a tensor
        // of the wrong dtype or shape; the reason is here.
        if let Some(q) = &raw.quantization_config {
            let method = q
                .get("quant_method")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            return Err(field_err(
                "quantization_config",
                format!("a {method}-quantised checkpoint, whose packed weights neko cannot read: use the unquantised checkpoint, or a GGUF (neko quantises at load with --quant)"),
            ));
        }
        let architecture = architecture_of(&raw)?;
        for (field, on) in [
            ("attention_bias", raw.attention_bias),
            ("mlp_bias", raw.mlp_bias),
        ] {
            if on {
                return Err(field_err(field, "projection biases are not supported"));
            }
        }
        if let Some(act) = raw.hidden_act.as_deref() {
            if act != "silu" && act != "swish" {
                return Err(field_err(
                    "hidden_act",
                    format!("`{act}` is not supported (silu only)"),
                ));
            }
        }
        if raw.num_attention_heads == 0
            || (!raw.hidden_size.is_multiple_of(raw.num_attention_heads) && raw.head_dim.is_none())
        {
            return Err(field_err("num_attention_heads", "must divide hidden_size"));
        }
        let num_key_value_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if num_key_value_heads == 0 || !raw.num_attention_heads.is_multiple_of(num_key_value_heads)
        {
            return Err(field_err(
                "num_key_value_heads",
                "must divide num_attention_heads",
            ));
        }
        let (num_local_experts, num_experts_per_tok) = match architecture {
            Architecture::Dense => (1, 1),
            Architecture::Mixtral => (
                raw.num_local_experts.unwrap_or(8),
                raw.num_experts_per_tok.unwrap_or(2),
            ),
        };
        if num_experts_per_tok == 0 || num_experts_per_tok > num_local_experts {
            return Err(field_err(
                "num_experts_per_tok",
                "must be between 1 and num_local_experts",
            ));
        }
        let task_experts = task_map(
            raw.task_experts.clone().unwrap_or_default(),
            num_local_experts,
        )?;
        for (field, n) in [
            ("vocab_size", raw.vocab_size),
            ("hidden_size", raw.hidden_size),
            ("num_hidden_layers", raw.num_hidden_layers),
            ("max_position_embeddings", raw.max_position_embeddings),
        ] {
            if n == 0 {
                return Err(field_err(field, "must be at least 1"));
            }
        }
        // Values that load but make every answer NaN (`<unk><unk>...`).
        let rms_norm_eps = (raw.rms_norm_eps).unwrap_or(defaults_of(raw.model_type.as_deref()).1);
        if !(rms_norm_eps.is_finite() && rms_norm_eps > 0.0 && rms_norm_eps < 1.0) {
            return Err(field_err(
                "rms_norm_eps",
                "must be a small positive number (1e-6, 1e-5)",
            ));
        }
        if raw.sliding_window == Some(Some(0)) {
            return Err(field_err(
                "sliding_window",
                "must be at least 1, or null for none",
            ));
        }
        for (field, ids) in [
            ("bos_token_id", &raw.bos_token_id),
            ("eos_token_id", &raw.eos_token_id),
        ] {
            token_ids_in(field, ids.as_ref(), raw.vocab_size)?;
        }
        Ok(ModelConfig {
            architecture,
            model_type: raw.model_type.clone().unwrap_or_else(|| "llama".into()),
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads,
            head_dim: raw
                .head_dim
                .unwrap_or(raw.hidden_size / raw.num_attention_heads),
            max_position_embeddings: raw.max_position_embeddings,
            rms_norm_eps,
            rope_theta: rope_theta_of(&raw)?,
            sliding_window: sliding_window_of(&raw),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            num_local_experts,
            num_experts_per_tok,
            bos_token_id: raw.bos_token_id.as_ref().and_then(first_id),
            eos_token_ids: raw.eos_token_id.as_ref().map(all_ids).unwrap_or_default(),
            task_experts,
            expert_lora: expert_lora_of(&raw, architecture)?,
            dtype: raw.dtype.or(raw.torch_dtype),
        })
    }

    /// The expert a task is routed to, when the model maps it.
    pub fn task_expert(&self, task: Task) -> Option<usize> {
        self.task_experts.get(&task).copied()
    }

    /// Whether the feed-forward is a Mixture of Experts.
    pub fn is_moe(&self) -> bool {
        self.architecture == Architecture::Mixtral
    }

    /// This configuration as a Hugging Face `config.json`, as `neko convert` and `neko upcycle`
    /// write it: dense models as `LlamaForCausalLM` (or Mistral), MoE models as
    /// `MixtralForCausalLM`, low-rank-expert models under [`LORA_MOE_MODEL_TYPE`]. `dtype` names
    /// the stored weights (`float32`, `bfloat16`). RoPE's base is written both at the top level
    /// (transformers v4) and in `rope_parameters` (v5).
    pub fn to_hf_json(&self, dtype: &str) -> Value {
        use serde_json::json;
        let (model_type, architecture) = match (self.architecture, self.expert_lora) {
            (Architecture::Mixtral, Some(_)) => (LORA_MOE_MODEL_TYPE, "NekoLoraMixtralForCausalLM"),
            (Architecture::Mixtral, None) => ("mixtral", "MixtralForCausalLM"),
            (Architecture::Dense, _) if self.model_type == "mistral" => {
                ("mistral", "MistralForCausalLM")
            }
            (Architecture::Dense, _) => ("llama", "LlamaForCausalLM"),
        };
        let mut j = json!({
            "architectures": [architecture],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_parameters": {"rope_theta": self.rope_theta, "rope_type": "default"},
            "hidden_act": "silu",
            "attention_bias": false,
            "attention_dropout": 0.0,
            "mlp_bias": false,
            "initializer_range": 0.02,
            "tie_word_embeddings": self.tie_word_embeddings,
            "use_cache": true,
            "dtype": dtype,
            "torch_dtype": dtype,
        });
        let o = j.as_object_mut().expect("an object");
        if let Some(bos) = self.bos_token_id {
            o.insert("bos_token_id".into(), json!(bos));
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => {
                o.insert("eos_token_id".into(), json!(one));
            }
            many => {
                o.insert("eos_token_id".into(), json!(many));
            }
        }
        if self.architecture == Architecture::Mixtral || self.sliding_window.is_some() {
            o.insert("sliding_window".into(), json!(self.sliding_window));
        }
        if self.is_moe() {
            o.insert("num_local_experts".into(), json!(self.num_local_experts));
            o.insert(
                "num_experts_per_tok".into(),
                json!(self.num_experts_per_tok),
            );
            o.insert("output_router_logits".into(), json!(false));
            o.insert("router_aux_loss_coef".into(), json!(0.02));
            o.insert("router_jitter_noise".into(), json!(0.0));
        }
        if !self.task_experts.is_empty() {
            let map: serde_json::Map<String, Value> = self
                .task_experts
                .iter()
                .map(|(t, e)| (t.to_string(), json!(e)))
                .collect();
            o.insert("task_experts".into(), Value::Object(map));
        }
        if let Some(l) = self.expert_lora {
            o.insert("expert_lora_rank".into(), json!(l.rank));
            o.insert("expert_lora_alpha".into(), json!(l.alpha));
        }
        j
    }
}

fn architecture_of(raw: &RawConfig) -> Result<Architecture, ConfigError> {
    let ty = raw.model_type.as_deref().unwrap_or("").to_ascii_lowercase();
    let arch = raw
        .architectures
        .first()
        .map(|a| a.to_ascii_lowercase())
        .unwrap_or_default();
    if ty == "mixtral" || ty == LORA_MOE_MODEL_TYPE || arch.starts_with("mixtral") {
        Ok(Architecture::Mixtral)
    } else if ["llama", "mistral", ""].contains(&ty.as_str()) {
        Ok(Architecture::Dense)
    } else {
        Err(field_err(
            "model_type",
            format!("`{ty}` is not supported (mixtral, llama and mistral are)"),
        ))
    }
}

fn expert_lora_of(
    raw: &RawConfig,
    architecture: Architecture,
) -> Result<Option<ExpertLora>, ConfigError> {
    let Some(rank) = raw.expert_lora_rank else {
        return Ok(None);
    };
    if architecture != Architecture::Mixtral {
        return Err(field_err(
            "expert_lora_rank",
            "low-rank experts need a Mixture-of-Experts model",
        ));
    }
    if rank == 0 {
        return Err(field_err("expert_lora_rank", "must be at least 1"));
    }
    if raw
        .expert_lora_alpha
        .is_some_and(|a| !(a.is_finite() && a > 0.0))
    {
        return Err(field_err("expert_lora_alpha", "must be a positive number"));
    }
    Ok(Some(ExpertLora {
        rank,
        alpha: raw.expert_lora_alpha.unwrap_or(rank as f64),
    }))
}

/// `rope_theta` at the top level, or inside `rope_parameters` (transformers v5); scaled RoPE
/// variants are refused rather than silently computed wrong.
fn rope_theta_of(raw: &RawConfig) -> Result<f64, ConfigError> {
    for (name, v) in [
        ("rope_parameters", &raw.rope_parameters),
        ("rope_scaling", &raw.rope_scaling),
    ] {
        if let Some(Value::Object(o)) = v {
            // Older configs name it `type`, as transformers still reads.
            let kind = o.get("rope_type").or_else(|| o.get("type"));
            if let Some(kind) = kind.and_then(Value::as_str) {
                if kind != "default" {
                    return Err(field_err(
                        name,
                        format!("rope_type `{kind}` is not supported"),
                    ));
                }
            }
        }
    }
    let nested = raw
        .rope_parameters
        .as_ref()
        .and_then(|p| p.get("rope_theta"))
        .and_then(Value::as_f64);
    // transformers 4 reads the top-level value, 5 the nested one: two that disagree leave the
    // model's positions in doubt.
    if let (Some(top), Some(inner)) = (raw.rope_theta, nested) {
        if top != inner {
            return Err(field_err(
                "rope_theta",
                format!("{top}, but rope_parameters.rope_theta is {inner}: give one, or make them agree"),
            ));
        }
    }
    let theta = (raw.rope_theta.or(nested)).unwrap_or(defaults_of(raw.model_type.as_deref()).0);
    if !(theta.is_finite() && theta > 1.0) {
        return Err(field_err(
            "rope_theta",
            format!("{theta}: must be a base above 1 (10000, 1e5)"),
        ));
    }
    Ok(theta)
}

fn task_map(
    raw: BTreeMap<String, usize>,
    experts: usize,
) -> Result<BTreeMap<Task, usize>, ConfigError> {
    raw.into_iter()
        .map(|(name, e)| {
            let task: Task = name
                .parse()
                .map_err(|err| field_err("task_experts", format!("{err}")))?;
            if e >= experts {
                return Err(field_err(
                    "task_experts",
                    format!("task `{name}` maps to expert {e}, but the model has {experts}"),
                ));
            }
            Ok((task, e))
        })
        .collect()
}

/// Checks that a token-id field (a number or a list of numbers, or null) names tokens of the
/// vocabulary: an id outside it fails every record at decoding time instead of at load.
fn token_ids_in(field: &str, v: Option<&Value>, vocab_size: usize) -> Result<(), ConfigError> {
    let items: Vec<&Value> = match v {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(other) => vec![other],
    };
    for item in items {
        match token_id(item) {
            Some(id) if (id as usize) < vocab_size => {}
            Some(id) => {
                return Err(field_err(
                    field,
                    format!("{id} is outside the vocabulary (vocab_size {vocab_size})"),
                ))
            }
            None => {
                return Err(field_err(
                    field,
                    format!("expected a token id (a non-negative integer), found {item}"),
                ))
            }
        }
    }
    Ok(())
}

fn first_id(v: &Value) -> Option<u32> {
    all_ids(v).into_iter().next()
}

pub(crate) fn all_ids(v: &Value) -> Vec<u32> {
    match v {
        Value::Array(a) => a.iter().filter_map(token_id).map(|x| x as u32).collect(),
        other => token_id(other).map(|x| vec![x as u32]).unwrap_or_default(),
    }
}

/// A token id: a non-negative integer, also when a tool wrote it as a float (`2.0`).
fn token_id(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        let f = v.as_f64()?;
        (f >= 0.0 && f.fract() == 0.0 && f < 4e9).then_some(f as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXTRAL_8X7B: &str = r#"{
      "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
      "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
      "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mixtral",
      "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
      "num_key_value_heads": 8, "num_local_experts": 8, "output_router_logits": false,
      "rms_norm_eps": 1e-05, "rope_theta": 1e6, "router_aux_loss_coef": 0.02,
      "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
      "transformers_version": "4.36.0.dev0", "use_cache": true, "vocab_size": 32000 }"#;

    /// The window transformers would use: none for Llama whatever the config says, Mistral's
    /// 4096 when the key is absent, the value (or none for null) otherwise.
    #[test]
    fn sliding_window_is_what_transformers_uses() {
        let window = |model_type: &str, entry: &str| {
            let text = MIXTRAL_8X7B
                .replace("\"mixtral\"", &format!("\"{model_type}\""))
                .replace("\"sliding_window\": null,", entry);
            ModelConfig::from_json(&text).unwrap().sliding_window
        };
        assert_eq!(window("llama", "\"sliding_window\": 3,"), None);
        assert_eq!(window("mistral", ""), Some(4096));
        assert_eq!(window("mistral", "\"sliding_window\": null,"), None);
        assert_eq!(window("mixtral", "\"sliding_window\": 5,"), Some(5));
        assert_eq!(window("mixtral", ""), None);
    }

    #[test]
    fn reads_the_published_mixtral_config() {
        let c = ModelConfig::from_json(MIXTRAL_8X7B).unwrap();
        assert_eq!(c.architecture, Architecture::Mixtral);
        assert_eq!((c.num_local_experts, c.num_experts_per_tok), (8, 2));
        assert_eq!(c.head_dim, 128);
        assert_eq!(c.rope_theta, 1e6);
        assert_eq!(c.sliding_window, None);
        assert_eq!(c.eos_token_ids, vec![2]);
        assert_eq!(c.dtype.as_deref(), Some("bfloat16"));
    }

    #[test]
    fn reads_nested_rope_theta_and_task_map() {
        let text = r#"{"model_type": "mixtral", "vocab_size": 10, "hidden_size": 8,
          "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
          "num_local_experts": 4, "num_experts_per_tok": 2, "eos_token_id": [2, 7],
          "rope_parameters": {"rope_theta": 5000.0, "rope_type": "default"},
          "task_experts": {"asr": 0, "tec": 3}}"#;
        let c = ModelConfig::from_json(text).unwrap();
        assert_eq!(c.rope_theta, 5000.0);
        assert_eq!(c.num_key_value_heads, 2);
        // Both levels agreeing is one value; disagreeing (transformers 4 and 5 would read
        // different ones) is refused by name.
        let both = text.replace(
            "\"eos_token_id\"",
            "\"rope_theta\": 5000.0, \"eos_token_id\"",
        );
        assert_eq!(ModelConfig::from_json(&both).unwrap().rope_theta, 5000.0);
        let apart = text.replace(
            "\"eos_token_id\"",
            "\"rope_theta\": 500000.0, \"eos_token_id\"",
        );
        let err = ModelConfig::from_json(&apart).unwrap_err().to_string();
        assert!(
            err.contains("rope_theta") && err.contains("rope_parameters.rope_theta is 5000"),
            "{err}"
        );
        assert_eq!(c.task_expert(Task::Asr), Some(0));
        assert_eq!(c.task_expert(Task::Gec), Some(3));
        assert_eq!(c.eos_token_ids, vec![2, 7]);
    }

    /// Left out, `rope_theta` and `rms_norm_eps` take transformers' defaults for the type:
    /// Mixtral's (1e6, 1e-5) are not Llama's (1e4, 1e-6).
    #[test]
    fn missing_rope_theta_and_eps_take_the_types_defaults() {
        let base = r#""vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
          "num_hidden_layers": 1, "num_attention_heads": 2"#;
        let of = |ty: &str| {
            let extra = if ty == "mixtral" {
                r#", "num_local_experts": 2, "num_experts_per_tok": 1"#
            } else {
                ""
            };
            let text = format!(r#"{{"model_type": "{ty}", {base}{extra}}}"#);
            let c = ModelConfig::from_json(&text).unwrap();
            (c.rope_theta, c.rms_norm_eps)
        };
        assert_eq!(of("mixtral"), (1e6, 1e-5));
        assert_eq!(of("llama"), (10_000.0, 1e-6));
        assert_eq!(of("mistral"), (10_000.0, 1e-6));
    }

    #[test]
    fn a_quantised_checkpoint_is_refused_as_such() {
        let text = r#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
          "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
          "quantization_config": {"quant_method": "gptq", "bits": 4}}"#;
        let err = ModelConfig::from_json(text).unwrap_err().to_string();
        assert!(
            err.starts_with("field `quantization_config`: a gptq-quantised"),
            "{err}"
        );
    }

    /// A value of the wrong type names its field; `null` where transformers allows it loads.
    #[test]
    fn a_wrongly_typed_field_is_named() {
        let text = r#"{"model_type": "llama", "architectures": null, "vocab_size": 10,
          "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": "one",
          "num_attention_heads": 2, "_name_or_path": "C:/m"}"#;
        let err = ModelConfig::from_json(text).unwrap_err().to_string();
        assert!(
            err.starts_with("field `num_hidden_layers`: invalid type"),
            "{err}"
        );
        let fixed = text.replace("\"one\"", "1");
        assert_eq!(ModelConfig::from_json(&fixed).unwrap().num_hidden_layers, 1);
        let null_path = fixed
            .replace("\"C:/m\"", "null")
            .replace("\"vocab_size\": 10", "\"vocab_size\": \"a:b\"");
        let err = ModelConfig::from_json(&null_path).unwrap_err().to_string();
        assert!(err.starts_with("field `vocab_size`"), "{err}");
    }

    #[test]
    fn hf_json_round_trips() {
        let mut c = ModelConfig::from_json(MIXTRAL_8X7B).unwrap();
        c.task_experts.insert(Task::Ocr, 5);
        c.dtype = Some("float32".into());
        assert_eq!(
            ModelConfig::from_json(&c.to_hf_json("float32").to_string()).unwrap(),
            c
        );
        c.expert_lora = Some(ExpertLora {
            rank: 8,
            alpha: 16.0,
        });
        c.model_type = LORA_MOE_MODEL_TYPE.into();
        let j = c.to_hf_json("float32");
        assert_eq!(j["model_type"], LORA_MOE_MODEL_TYPE);
        assert_eq!(ModelConfig::from_json(&j.to_string()).unwrap(), c);
    }

    #[test]
    fn refuses_bad_task_maps_and_architectures() {
        let base = r#""vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
          "num_hidden_layers": 1, "num_attention_heads": 2"#;
        let bad_map = format!(
            r#"{{"model_type": "mixtral", "num_local_experts": 2, {base}, "task_experts": {{"asr": 5}}}}"#
        );
        assert!(ModelConfig::from_json(&bad_map)
            .unwrap_err()
            .to_string()
            .contains("expert 5"));
        let bad_arch = format!(r#"{{"model_type": "gpt2", {base}}}"#);
        assert!(ModelConfig::from_json(&bad_arch)
            .unwrap_err()
            .to_string()
            .contains("gpt2"));
        // What would run silently wrong is refused: projection biases neko does not apply,
        // and scaled RoPE in the older spelling (`type`) as in the newer (`rope_type`).
        for (extra, says) in [
            (r#""attention_bias": true"#, "attention_bias"),
            (r#""mlp_bias": true"#, "mlp_bias"),
            (
                r#""rope_scaling": {"type": "linear", "factor": 4.0}"#,
                "linear",
            ),
        ] {
            let json = format!(r#"{{"model_type": "llama", {base}, {extra}}}"#);
            let err = ModelConfig::from_json(&json).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
        let plain = format!(r#"{{"model_type": "llama", {base}, "attention_bias": false}}"#);
        assert!(ModelConfig::from_json(&plain).is_ok());
    }
}

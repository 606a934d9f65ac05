//! Models: configuration, files, the decoder, and loading them onto a device.
//!
//! [`Decoder`] is the seam between generation and a network: the [`Transformer`] implements it
//! for safetensors and GGUF weights alike; other backends (a remote server) plug in beside it.

pub mod chat;
pub mod check;
pub mod config;
pub mod files;
pub mod gguf;
pub mod gguf_tokenizer;
pub mod streamed;
pub mod transformer;
pub mod weights;

use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::Tokenizer;

pub use chat::ChatTemplate;
pub use config::{Architecture, ExpertLora, ModelConfig, RoutingMode};
pub use files::{Format, ModelFiles};
pub use gguf::GgufFile;
pub use transformer::{Logits, PrefixCache, Transformer};
#[cfg(target_arch = "x86_64")]
pub use weights::x86_kernel_tier;
pub use weights::{kernel_env_set, parse_quant, Weights, CANDLE_KERNEL_ENV};

/// Why a model could not be loaded. Every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {message}")]
    Files { path: String, message: String },
    // The config error is shown in the message, not chained as a source: a chain would
    // print it twice.
    #[error("{path}: {error}")]
    Config {
        path: String,
        error: config::ConfigError,
    },
    #[error("{path}: cannot load the tokenizer: {message}")]
    Tokenizer { path: String, message: String },
    #[error("{path}: {message}")]
    Weights { path: String, message: String },
    #[error("device `{0}`: {1}")]
    Device(String, String),
    #[error("dtype `{0}`: unknown (auto, f32, bf16, f16)")]
    Dtype(String),
}

impl ModelError {
    pub(crate) fn files(path: &Path, message: impl Into<String>) -> Self {
        ModelError::Files {
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}

/// A network that turns token ids into next-token logits, with a KV cache.
pub trait Decoder: Send {
    /// Runs `input_ids` `(batch, seq)` after what is cached; `pads[i]` is row i's left padding
    /// over the whole sequence; `forced` is an expert forced into every token's top-k.
    fn forward(
        &mut self,
        input_ids: &Tensor,
        pads: &[usize],
        forced: Option<usize>,
        logits: Logits,
    ) -> candle_core::Result<Tensor>;

    /// Empties the cache, preallocating `capacity` positions per row.
    fn reset(&mut self, capacity: usize);

    /// The device inputs must live on.
    fn device(&self) -> &Device;

    /// Expert ids `(tokens, top_k)` per MoE layer from the last forward pass.
    fn last_routing(&self) -> Vec<Tensor> {
        Vec::new()
    }

    /// Runs `tokens` alone and keeps their K/V as a prefix shared by later batches; `None`
    /// when the backend cannot reuse a prefix (callers then send whole prompts).
    fn prefill_prefix(
        &mut self,
        _tokens: &[u32],
        _forced: Option<usize>,
    ) -> candle_core::Result<Option<PrefixCache>> {
        Ok(None)
    }

    /// Like [`Decoder::reset`], with `prefix` already cached at the start of each of `batch`
    /// rows; `pads` of later calls then count from the end of the prefix.
    fn reset_with_prefix(
        &mut self,
        _prefix: &PrefixCache,
        _batch: usize,
        _capacity: usize,
    ) -> candle_core::Result<()> {
        candle_core::bail!("this decoder cannot reuse a prefix cache")
    }

    /// Keeps only the cache rows `rows` (finished rows dropped); `false` when unsupported.
    fn retain_rows(&mut self, _rows: &[usize]) -> candle_core::Result<bool> {
        Ok(false)
    }

    /// Runs as the base model the experts were trained over (`on`) or as the model itself;
    /// `false` when it has no such base (see [`Transformer::set_base_only`]).
    fn set_base_only(&mut self, _on: bool) -> bool {
        false
    }
}

impl Decoder for Transformer {
    fn forward(
        &mut self,
        input_ids: &Tensor,
        pads: &[usize],
        forced: Option<usize>,
        logits: Logits,
    ) -> candle_core::Result<Tensor> {
        Transformer::forward(self, input_ids, pads, forced, logits)
    }

    fn reset(&mut self, capacity: usize) {
        Transformer::reset(self, capacity)
    }

    fn device(&self) -> &Device {
        Transformer::device(self)
    }

    fn last_routing(&self) -> Vec<Tensor> {
        Transformer::last_routing(self)
    }

    fn prefill_prefix(
        &mut self,
        tokens: &[u32],
        forced: Option<usize>,
    ) -> candle_core::Result<Option<PrefixCache>> {
        Transformer::prefill_prefix(self, tokens, forced).map(Some)
    }

    fn reset_with_prefix(
        &mut self,
        prefix: &PrefixCache,
        batch: usize,
        capacity: usize,
    ) -> candle_core::Result<()> {
        Transformer::reset_with_prefix(self, prefix, batch, capacity)
    }

    fn retain_rows(&mut self, rows: &[usize]) -> candle_core::Result<bool> {
        Transformer::retain_rows(self, rows).map(|_| true)
    }

    fn set_base_only(&mut self, on: bool) -> bool {
        Transformer::set_base_only(self, on)
    }
}

/// A loaded model: its configuration, tokenizer and decoder.
pub struct Model {
    pub files: ModelFiles,
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    pub decoder: Box<dyn Decoder>,
    pub dtype: DType,
    /// The type projection weights were quantised to at load (`--quant`), if any.
    pub quant: Option<GgmlDType>,
    /// Whether some weights are quantised (by `--quant`, or as a GGUF stores them): their
    /// products' results then depend on the CPU's kernels and the thread count.
    pub quantised: bool,
    /// The chat format prompts are wrapped in (instruct models that declare one).
    pub chat: Option<ChatTemplate>,
    /// Why a chat template the model declares is not used, if so ([`PromptSide::chat_ignored`]).
    pub chat_ignored: Option<String>,
    /// End tokens only generation_config.json names ([`PromptSide::generation_ends`]).
    pub generation_ends: Vec<u32>,
}

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    /// Activations' dtype, and the weights' unless they are quantised.
    pub dtype: DType,
    /// Quantise projection weights at load (`--quant`): full-precision ones, and GGUF ones
    /// stored in another type (requantised).
    pub quantize: Option<GgmlDType>,
    /// Tensors that replace the checkpoint's (`--adapter`: trained experts and gates); they
    /// sign the model as part of its weights.
    pub adapter: Option<PathBuf>,
    /// Wrap prompts in the model's chat template when it declares a recognised one.
    pub chat_template: bool,
}

impl LoadOptions {
    pub fn new(device: &Device, dtype: DType) -> Self {
        LoadOptions {
            device: device.clone(),
            dtype,
            quantize: None,
            adapter: None,
            chat_template: true,
        }
    }
}

impl Model {
    /// Loads a model folder, `.gguf` file or cached hub id onto `device` in `dtype`.
    pub fn load(spec: &str, device: &Device, dtype: DType) -> Result<Self, ModelError> {
        Self::load_with(spec, &LoadOptions::new(device, dtype))
    }

    /// Loads a model with explicit options.
    pub fn load_with(spec: &str, opts: &LoadOptions) -> Result<Self, ModelError> {
        let PromptSide {
            mut files,
            gguf,
            config,
            tokenizer,
            chat,
            chat_ignored,
            generation_ends,
        } = PromptSide::read(ModelFiles::resolve(spec)?, opts.chat_template)?;
        check::tokenizer_fits(&tokenizer, &config, &files.tokenizer)?;
        if let Some(g) = gguf.as_ref().filter(|_| !files.tokenizer_in_gguf()) {
            if let Some(vocabulary) = gguf_tokenizer::vocabulary(g) {
                check::tokenizer_matches_gguf(&tokenizer, &vocabulary, &files.tokenizer, &g.path)?;
            }
        }
        let mut stored_quantised = false;
        let decoder = match &gguf {
            Some(g) if opts.adapter.is_some() => {
                return Err(ModelError::files(
                    &g.path,
                    "--adapter needs a safetensors model folder, not a GGUF file",
                ))
            }
            Some(g) => {
                let tensors = g.tensors(&opts.device)?;
                stored_quantised = tensors.values().any(|q| !weights::is_float(q.dtype()));
                let weights = Weights::gguf(tensors, opts.dtype, &opts.device, opts.quantize);
                Transformer::load(&config, &weights).map_err(|e| ModelError::Weights {
                    path: g.path.display().to_string(),
                    message: e.to_string(),
                })?
            }
            None => load_transformer(&files, &config, opts)?,
        };
        if let Some(adapter) = &opts.adapter {
            // The adapter is part of what was loaded: its content signs the model (`neko
            // correct`'s signature, which a resume checks), as a rebuilt checkpoint's would.
            files.weights.push(adapter.clone());
        }
        Ok(Model {
            files,
            config,
            tokenizer,
            decoder: Box::new(decoder),
            dtype: opts.dtype,
            quant: opts.quantize,
            quantised: opts.quantize.is_some() || stored_quantised,
            chat,
            chat_ignored,
            generation_ends,
        })
    }

    /// A rendered prompt as the model should see it: wrapped in its chat template when it
    /// has one, unchanged otherwise.
    pub fn wrap_prompt(&self, prompt: String) -> String {
        match &self.chat {
            Some(c) => c.wrap(&prompt),
            None => prompt,
        }
    }
}

/// What renders a model's prompts, read without its weights: the config (context length,
/// BOS, EOS ids), the tokenizer and the chat template. `neko correct --backend openai` needs
/// only this (`crate::backend::render`); [`Model::load_with`] adds the weights.
pub struct PromptSide {
    pub files: ModelFiles,
    /// The open GGUF file, for GGUF models (its header holds config, tokenizer and template).
    pub gguf: Option<GgufFile>,
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    pub chat: Option<ChatTemplate>,
    /// Why a template the model declares is not used (not ChatML, or its end-of-turn token
    /// missing from the tokenizer): prompts go unwrapped, and loading says so on stderr.
    pub chat_ignored: Option<String>,
    /// The end tokens that generation_config.json adds to config.json's and the chat
    /// template's: they stop decoding, and the model's fingerprint does not cover that file,
    /// so a run's signature names them.
    pub generation_ends: Vec<u32>,
}

impl PromptSide {
    /// Reads the prompt side of `files`; `chat_template` false ignores a declared template.
    pub fn read(files: ModelFiles, chat_template: bool) -> Result<Self, ModelError> {
        let gguf = match files.format {
            Format::Gguf => Some(GgufFile::open(&files.config)?),
            Format::Safetensors => None,
        };
        let mut config = match &gguf {
            Some(g) => g.config()?,
            None => read_config(&files.config)?,
        };
        let tokenizer_error = |e: String| ModelError::Tokenizer {
            path: files.tokenizer.display().to_string(),
            message: e,
        };
        let tokenizer = match &gguf {
            Some(g) if files.tokenizer_in_gguf() => {
                gguf_tokenizer::tokenizer(g).map_err(|e| tokenizer_error(e.to_string()))?
            }
            _ => Tokenizer::from_file(&files.tokenizer)
                .map_err(|e| tokenizer_error(e.to_string()))?,
        };
        // It decides the chat template and the BOS token, which are read leniently later: a
        // file there that is not JSON must not be passed over as if it were absent.
        if let Some(dir) = files.tokenizer.parent() {
            let path = dir.join("tokenizer_config.json");
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                    return Err(ModelError::files(&path, format!("not valid JSON: {e}")));
                }
            }
        }
        // transformers' `generate` (and vLLM) also stop on generation_config.json's end
        // tokens, which some instruct models list only there (an end-of-turn id).
        let mut generation_ends = Vec::new();
        if files.format == Format::Safetensors {
            let path = files.config.with_file_name("generation_config.json");
            if let Ok(text) = std::fs::read_to_string(&path) {
                let json: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| ModelError::files(&path, format!("not valid JSON: {e}")))?;
                let vocab = config.vocab_size as u32;
                let ids = json.get("eos_token_id").map(config::all_ids);
                for id in ids.unwrap_or_default().into_iter().filter(|&id| id < vocab) {
                    if !config.eos_token_ids.contains(&id) {
                        config.eos_token_ids.push(id);
                        generation_ends.push(id);
                    }
                }
            }
        }
        let (chat, chat_ignored) = match chat_template {
            true => find_chat_template(&files, gguf.as_ref(), &tokenizer),
            false => (None, None),
        };

        if let Some(id) = chat
            .as_ref()
            .and_then(|c| tokenizer.token_to_id(c.end_of_turn()))
        {
            generation_ends.retain(|&end| end != id);
            // The turn ends with the template's end token whatever the config calls EOS.
            if !config.eos_token_ids.contains(&id) {
                config.eos_token_ids.push(id);
            }
        }
        Ok(PromptSide {
            files,
            gguf,
            config,
            tokenizer,
            chat,
            chat_ignored,
            generation_ends,
        })
    }
}

/// The model's chat template, when it declares one neko recognises and its tokenizer has the
/// template's end-of-turn token; else why a declared one is not used.
fn find_chat_template(
    files: &ModelFiles,
    gguf: Option<&GgufFile>,
    tokenizer: &Tokenizer,
) -> (Option<ChatTemplate>, Option<String>) {
    let text = gguf
        .and_then(|g| g.chat_template().map(String::from))
        .or_else(|| chat::template_in_dir(files.tokenizer.parent()?));
    let Some(text) = text else {
        let dir = files.tokenizer.parent();
        if gguf.is_none() && dir.is_some_and(chat::named_without_default) {
            let why = "its tokenizer_config.json names chat templates but none `default`";
            return (None, Some(why.to_string()));
        }
        return (None, None);
    };
    let Some(chat) = ChatTemplate::detect(&text) else {
        let why = "its chat template is not ChatML, the one format neko renders";
        return (None, Some(why.to_string()));
    };
    match tokenizer.token_to_id(chat.end_of_turn()) {
        Some(_) => (Some(chat), None),
        None => (
            None,
            Some(format!(
                "its chat template ends turns with {}, which its tokenizer lacks",
                chat.end_of_turn()
            )),
        ),
    }
}

/// Reads and validates `config.json`.
pub fn read_config(path: &Path) -> Result<ModelConfig, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::files(path, e.to_string()))?;
    ModelConfig::from_json(&text).map_err(|error| ModelError::Config {
        path: path.display().to_string(),
        error,
    })
}

fn load_transformer(
    files: &ModelFiles,
    config: &ModelConfig,
    opts: &LoadOptions,
) -> Result<Transformer, ModelError> {
    // Name the file at fault before candle's generic messages can hide it.
    check::weights_open(&files.weights)?;
    // Tensors are read one by one (not memory-mapped), so peak memory is the weights plus the
    // largest tensor rather than the weights twice (src/model/streamed.rs).
    let mut backend = streamed::ReadSafetensors::open(&files.weights)
        .map_err(|e| check::explain_load_error(&e, &files.weights))?;
    if let Some(adapter) = &opts.adapter {
        let what = files.config.parent().unwrap_or(Path::new(".")).display();
        backend.overlay(adapter, &what.to_string())?;
    }
    let usage = backend.usage();
    let vb = VarBuilder::from_backend(Box::new(backend), opts.dtype, opts.device.clone());
    let net = Transformer::load(config, &Weights::safetensors(vb, opts.quantize))
        .map_err(|e| check::explain_load_error(&e, &files.weights))?;
    warn_unread(&usage.unread(), config, files);
    Ok(net)
}

/// Says on stderr which checkpoint tensors the architecture in config.json did not use, as
/// transformers does: more layers or experts than the config names, or another model's
/// parts. A stored `lm_head` beside tied embeddings and RoPE's cached frequencies are expected.
fn warn_unread(unread: &[String], config: &ModelConfig, files: &ModelFiles) {
    let unexpected: Vec<&String> = unread
        .iter()
        .filter(|n| !(config.tie_word_embeddings && n.as_str() == "lm_head.weight"))
        .filter(|n| !n.ends_with("rotary_emb.inv_freq"))
        .collect();
    if unexpected.is_empty() {
        return;
    }
    let shown: Vec<&str> = unexpected.iter().take(3).map(|n| n.as_str()).collect();
    let more = match unexpected.len() - shown.len() {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    // A sharded checkpoint's are named by its folder: they may sit in any shard.
    let holder = match files.weights.as_slice() {
        [one] => one.display().to_string(),
        _ => format!(
            "{} (its shards)",
            files.config.parent().unwrap_or(Path::new(".")).display()
        ),
    };
    crate::say!(
        "neko: warning: {holder}: {} checkpoint tensors are not used by the architecture in {} ({}{more}): does config.json match the weights?",
        unexpected.len(),
        files.config.display(),
        shown.join(", ")
    );
}

/// Parses a `--device` value: `cpu`, `cuda`, `cuda:N` or `metal`.
pub fn parse_device(spec: &str) -> Result<Device, ModelError> {
    let err = |m: &str| {
        // candle's words for a backend left out of this build; say how to put it in.
        let m = match m.contains("not been built with") {
            true if spec == "metal" => format!("{m}: rebuild neko with `--features metal`"),
            true => format!("{m}: rebuild neko with `cargo build --release --features cuda`"),
            false => m.to_string(),
        };
        ModelError::Device(spec.to_string(), m)
    };
    match spec {
        "cpu" => Ok(Device::Cpu),
        "metal" => Device::new_metal(0).map_err(|e| err(&e.to_string())),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = s
                .strip_prefix("cuda:")
                .map(str::parse)
                .unwrap_or(Ok(0))
                .map_err(|_| err("bad ordinal"))?;
            Device::new_cuda(ordinal).map_err(|e| err(&e.to_string()))
        }
        _ => Err(err("expected cpu, cuda, cuda:N or metal")),
    }
}

/// Parses a `--dtype` value; `auto` is f32 on CPU (fast and exact there) and bf16 elsewhere.
pub fn parse_dtype(spec: &str, device: &Device) -> Result<DType, ModelError> {
    match spec {
        "auto" if device.is_cpu() => Ok(DType::F32),
        "auto" => Ok(DType::BF16),
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        other => Err(ModelError::Dtype(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    /// A build without a GPU backend says how to get one.
    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_missing_gpu_backend_says_how_to_build_it() {
        let err = super::parse_device("cuda").unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
        assert!(super::parse_device("tpu").is_err());
    }
}

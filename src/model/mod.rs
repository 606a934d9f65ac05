//! Models: configuration, files, the decoder, and loading them onto a device.
//!
//! [`Decoder`] is the seam between generation and a network: the safetensors [`Transformer`]
//! implements it today; other backends (quantised GGUF, a remote server) plug in beside it.

pub mod config;
pub mod files;
pub mod transformer;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::Tokenizer;

pub use config::{Architecture, ModelConfig, RoutingMode};
pub use files::ModelFiles;
pub use transformer::{Logits, Transformer};

/// Why a model could not be loaded. Every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {message}")]
    Files { path: String, message: String },
    #[error("{path}: {source}")]
    Config {
        path: String,
        source: config::ConfigError,
    },
    #[error("{path}: cannot load the tokenizer: {message}")]
    Tokenizer { path: String, message: String },
    #[error("{path}: {message}")]
    Weights { path: String, message: String },
    #[error("device `{0}`: {1}")]
    Device(String, String),
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
}

/// A loaded model: its configuration, tokenizer and decoder.
pub struct Model {
    pub files: ModelFiles,
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    pub decoder: Box<dyn Decoder>,
    pub dtype: DType,
}

impl Model {
    /// Loads a model folder or cached hub id onto `device` in `dtype`.
    pub fn load(spec: &str, device: &Device, dtype: DType) -> Result<Self, ModelError> {
        let files = ModelFiles::resolve(spec)?;
        let config = read_config(&files.config)?;
        let tokenizer =
            Tokenizer::from_file(&files.tokenizer).map_err(|e| ModelError::Tokenizer {
                path: files.tokenizer.display().to_string(),
                message: e.to_string(),
            })?;
        let decoder = load_transformer(&files, &config, device, dtype)?;
        Ok(Model {
            files,
            config,
            tokenizer,
            decoder: Box::new(decoder),
            dtype,
        })
    }
}

/// Reads and validates `config.json`.
pub fn read_config(path: &Path) -> Result<ModelConfig, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::files(path, e.to_string()))?;
    ModelConfig::from_json(&text).map_err(|source| ModelError::Config {
        path: path.display().to_string(),
        source,
    })
}

fn load_transformer(
    files: &ModelFiles,
    config: &ModelConfig,
    device: &Device,
    dtype: DType,
) -> Result<Transformer, ModelError> {
    let weights_err = |message: String| ModelError::Weights {
        path: files
            .weights
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        message,
    };
    // Safety: the files are memory-mapped read-only; neko does not modify them while loaded.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files.weights, dtype, device) }
        .map_err(|e| weights_err(e.to_string()))?;
    Transformer::new(config, vb).map_err(|e| weights_err(e.to_string()))
}

/// Parses a `--device` value: `cpu`, `cuda`, `cuda:N` or `metal`.
pub fn parse_device(spec: &str) -> Result<Device, ModelError> {
    let err = |m: &str| ModelError::Device(spec.to_string(), m.to_string());
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
        other => Err(ModelError::Device(
            other.to_string(),
            "unknown dtype (auto, f32, bf16, f16)".into(),
        )),
    }
}

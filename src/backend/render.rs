//! A model's prompt side without its weights. With `--backend openai` the server holds the
//! weights; neko needs only what renders prompts exactly as the in-process path does: the
//! config (context length, BOS), the tokenizer and the chat template. A folder then needs just
//! `config.json` and `tokenizer.json` (plus `tokenizer_config.json` for the chat template), a
//! GGUF file only its header.

use std::path::Path;

use crate::model::{Decoder, Format, Logits, Model, ModelError, ModelFiles, PromptSide};
use candle_core::{Device, Tensor};

/// Loads the prompt side of `spec` (a folder, a `.gguf` file or a cached hub id). Its decoder
/// refuses to run: answers must come from a backend.
pub fn load(spec: &str, chat_template: bool) -> Result<Model, ModelError> {
    let path = Path::new(spec);
    let files = if path.is_dir() {
        let need = |name: &str| {
            let p = path.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(ModelError::files(
                    &p,
                    "missing (the prompt side of a model needs it)",
                ))
            }
        };
        ModelFiles {
            spec: spec.to_string(),
            format: Format::Safetensors,
            config: need("config.json")?,
            tokenizer: need("tokenizer.json")?,
            weights: Vec::new(),
        }
    } else {
        ModelFiles::resolve(spec)?
    };
    let side = PromptSide::read(files, chat_template)?;
    Ok(Model {
        files: side.files,
        config: side.config,
        tokenizer: side.tokenizer,
        decoder: Box::new(Unloaded {
            device: Device::Cpu,
        }),
        dtype: candle_core::DType::F32,
        quant: None,
        quantised: false,
        chat: side.chat,
        chat_ignored: side.chat_ignored,
        generation_ends: side.generation_ends,
    })
}

/// The decoder of a model loaded without weights.
struct Unloaded {
    device: Device,
}

impl Decoder for Unloaded {
    fn forward(
        &mut self,
        _input_ids: &Tensor,
        _pads: &[usize],
        _forced: Option<usize>,
        _logits: Logits,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!("this model was loaded without weights: its answers come from a server")
    }

    fn reset(&mut self, _capacity: usize) {}

    fn device(&self) -> &Device {
        &self.device
    }
}

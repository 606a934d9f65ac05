//! `neko convert`: a GGUF model (or a Hugging Face folder) written as a Hugging Face folder with
//! f32/bf16 safetensors that neko and transformers both load.

use std::path::PathBuf;

use clap::Args;

use super::EXIT_OK;
use crate::convert::{parse_write_dtype, Checkpoint};

/// Flags of `neko convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The model to convert: a .gguf file (dequantised; Q/K permutation undone), or a model
    /// folder (to change its dtype).
    #[arg(long)]
    pub from: String,

    /// The folder to write: config.json, tokenizer.json, tokenizer_config.json,
    /// generation_config.json, model.safetensors.
    #[arg(long)]
    pub to: PathBuf,

    /// Dtype of the written weights: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,

    /// Overwrite a model already in --to: its config, weights, tokenizer and generation files
    /// are replaced, and the side files loaders would read beside the new ones
    /// (tokenizer.model, vocab.json, merges.txt, special_tokens_map.json, added_tokens.json,
    /// chat_template.jinja) removed. Without it, a folder holding any file of a model (tokenizer and
    /// generation settings or a chat_template.jinja included) is refused.
    #[arg(long)]
    pub force: bool,
}

/// Runs `neko convert`.
pub fn run(args: &ConvertArgs) -> anyhow::Result<u8> {
    let dtype = parse_write_dtype(&args.dtype)?;
    crate::convert::check_destination(&args.to, args.force)?;
    let ck = Checkpoint::read(&args.from)?;
    super::announce_write(&ck, &args.to, dtype);
    ck.write(&args.to, dtype, args.force)?;
    crate::say!(
        "neko: wrote {} ({} tensors, {} parameters, {})",
        args.to.display(),
        ck.tensors.len(),
        ck.parameters(),
        args.dtype
    );
    Ok(EXIT_OK)
}

//! `neko upcycle`: a dense model made into a task-routed Mixture of Experts whose experts all
//! start as the dense FFN (see [`crate::upcycle`]).

use std::path::PathBuf;

use clap::Args;

use super::EXIT_OK;
use crate::convert::{parse_write_dtype, Checkpoint};
use crate::model::ExpertLora;
use crate::upcycle::{apply_adapter, parse_task_map, upcycle, UpcycleOptions};

/// Flags of `neko upcycle`.
#[derive(Debug, Args)]
pub struct UpcycleArgs {
    /// The dense model: a model folder or a .gguf file.
    #[arg(long, env = "NEKO_MODEL")]
    pub model: String,

    /// Experts per MoE layer.
    #[arg(long, default_value_t = 4)]
    pub experts: usize,

    /// Experts each token is routed to.
    #[arg(long, default_value_t = 2)]
    pub top_k: usize,

    /// The task-to-expert map written to config.json, e.g. asr=0,st=1,mt=1,ocr=2,gec=3.
    #[arg(long)]
    pub tasks: Option<String>,

    /// Make experts low-rank deltas of this rank over a shared frozen FFN (parameter-efficient;
    /// neko-only format) instead of full copies (loads in transformers as Mixtral).
    #[arg(long)]
    pub lora_rank: Option<usize>,

    /// LoRA scale numerator: deltas are scaled by alpha / rank (default: alpha = rank).
    #[arg(long, requires = "lora_rank", value_parser = positive_alpha)]
    pub lora_alpha: Option<f64>,

    /// Seed of the LoRA A initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Dtype of the written weights: f32, bf16 or f16 (default: as the source stores them;
    /// f32 for GGUF).
    #[arg(long)]
    pub dtype: Option<String>,

    /// Trained tensors (`neko train`'s adapter.safetensors) to put in place of the fresh
    /// experts and gates: rebuilds a trained model from its base (how neko-smol is set up).
    #[arg(long)]
    pub adapter: Option<PathBuf>,

    /// The folder to write.
    #[arg(long)]
    pub to: PathBuf,

    /// Overwrite a model already in --to: its config, weights, tokenizer and generation files
    /// are replaced, and the side files loaders would read beside the new ones
    /// (tokenizer.model, vocab.json, merges.txt, special_tokens_map.json, added_tokens.json,
    /// chat_template.jinja) removed. Without it, a folder holding any file of a model (tokenizer and
    /// generation settings or a chat_template.jinja included) is refused.
    #[arg(long)]
    pub force: bool,
}

/// Runs `neko upcycle`.
pub fn run(args: &UpcycleArgs) -> anyhow::Result<u8> {
    let opts = UpcycleOptions {
        experts: args.experts,
        top_k: args.top_k,
        task_experts: match &args.tasks {
            Some(t) => parse_task_map(t)?,
            None => Default::default(),
        },
        lora: args.lora_rank.map(|rank| ExpertLora {
            rank,
            alpha: args.lora_alpha.unwrap_or(rank as f64),
        }),
        seed: args.seed,
    };
    opts.validate()?;
    let explicit = args.dtype.as_deref().map(parse_write_dtype).transpose()?;
    // Upcycling in place would replace the dense model, which a later upcycle (or --adapter
    // rebuild) needs.
    let same = match (
        std::fs::canonicalize(&args.model),
        std::fs::canonicalize(&args.to),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        anyhow::bail!(
            "--to {} is the dense model --model {}: upcycling would replace it; give another folder",
            args.to.display(),
            args.model
        );
    }
    crate::convert::check_destination(&args.to, args.force)?;
    let ck = Checkpoint::read(&args.model)?;
    let dtype = match explicit {
        Some(d) => d,
        None => ck
            .tensors
            .values()
            .next()
            .map(|t| t.dtype())
            .unwrap_or(candle_core::DType::F32),
    };
    let mut ck = upcycle(ck, &opts)?;
    if let Some(adapter) = &args.adapter {
        let n = apply_adapter(&mut ck, adapter)?;
        crate::say!("neko: {n} trained tensors from {}", adapter.display());
    }
    super::announce_write(&ck, &args.to, dtype);
    ck.write(&args.to, dtype, args.force)?;
    crate::say!(
        "neko: wrote {} ({} experts, top-{}, {}; {} parameters)",
        args.to.display(),
        opts.experts,
        opts.top_k,
        match opts.lora {
            Some(l) => format!("low-rank experts r={} alpha={}", l.rank, l.alpha),
            None => "full experts".to_string(),
        },
        ck.parameters()
    );
    Ok(EXIT_OK)
}

/// A LoRA alpha: positive and finite (0 would freeze the experts; NaN and infinity are not
/// written back as numbers).
fn positive_alpha(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(a) if a > 0.0 && a.is_finite() => Ok(a),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

//! `neko info`: what a model is (architecture, experts, task map, dtype, parameters), read from
//! its config and safetensors headers without loading the weights.

use clap::Args;
use serde::Serialize;

use super::EXIT_OK;
use crate::model::{self, ModelFiles};

/// Flags of `neko info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A model folder (config.json, tokenizer.json, safetensors) or a hub id in the local cache.
    #[arg(long, env = "NEKO_MODEL")]
    pub model: String,

    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What `neko info` reports.
#[derive(Debug, Serialize)]
pub struct ModelInfo {
    pub model: String,
    pub architecture: String,
    pub model_type: String,
    pub layers: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub attention_heads: usize,
    pub kv_heads: usize,
    pub vocab_size: usize,
    pub experts: usize,
    pub experts_per_token: usize,
    pub task_experts: std::collections::BTreeMap<String, usize>,
    pub dtype: Option<String>,
    /// Stored dtypes of the tensors, with how many tensors have each.
    pub tensor_dtypes: std::collections::BTreeMap<String, usize>,
    pub parameters: u64,
    /// Parameters a token actually uses (shared weights plus its top-k experts).
    pub active_parameters: u64,
    pub weight_files: Vec<String>,
}

/// Runs `neko info`.
pub fn run(args: &InfoArgs) -> anyhow::Result<u8> {
    let info = inspect(&args.model)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print_text(&info);
    }
    Ok(EXIT_OK)
}

/// Reads a model's description without loading its weights.
pub fn inspect(spec: &str) -> anyhow::Result<ModelInfo> {
    let files = ModelFiles::resolve(spec)?;
    let cfg = model::read_config(&files.config)?;
    let (mut total, mut expert_params) = (0u64, 0u64);
    let mut dtypes = std::collections::BTreeMap::new();
    for path in &files.weights {
        // Safety: read-only map of the header and data; nothing else writes these files.
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for (name, view) in st.tensors() {
            let n: u64 = view.shape().iter().map(|&d| d as u64).product();
            total += n;
            if name.contains(".experts.") {
                expert_params += n;
            }
            *dtypes
                .entry(format!("{:?}", view.dtype()).to_lowercase())
                .or_insert(0) += 1;
        }
    }
    let per_expert = expert_params / cfg.num_local_experts.max(1) as u64;
    let active = total - expert_params + per_expert * cfg.num_experts_per_tok as u64;
    Ok(ModelInfo {
        model: files.spec.clone(),
        architecture: format!("{:?}", cfg.architecture).to_lowercase(),
        model_type: cfg.model_type.clone(),
        layers: cfg.num_hidden_layers,
        hidden_size: cfg.hidden_size,
        intermediate_size: cfg.intermediate_size,
        attention_heads: cfg.num_attention_heads,
        kv_heads: cfg.num_key_value_heads,
        vocab_size: cfg.vocab_size,
        experts: cfg.num_local_experts,
        experts_per_token: cfg.num_experts_per_tok,
        task_experts: cfg
            .task_experts
            .iter()
            .map(|(t, e)| (t.to_string(), *e))
            .collect(),
        dtype: cfg.dtype.clone(),
        tensor_dtypes: dtypes,
        parameters: total,
        active_parameters: if cfg.is_moe() { active } else { total },
        weight_files: files
            .weights
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    })
}

fn print_text(i: &ModelInfo) {
    println!("model          {}", i.model);
    println!(
        "architecture   {} (model_type {})",
        i.architecture, i.model_type
    );
    println!(
        "layers         {}  hidden {}  ffn {}  heads {}/{} kv  vocab {}",
        i.layers, i.hidden_size, i.intermediate_size, i.attention_heads, i.kv_heads, i.vocab_size
    );
    println!("experts        {} (top-{})", i.experts, i.experts_per_token);
    let map: Vec<String> = i
        .task_experts
        .iter()
        .map(|(t, e)| format!("{t}={e}"))
        .collect();
    println!(
        "task experts   {}",
        if map.is_empty() {
            "none (learned routing only)".to_string()
        } else {
            map.join(" ")
        }
    );
    println!(
        "dtype          {} (stored: {})",
        i.dtype.as_deref().unwrap_or("unstated"),
        i.tensor_dtypes
            .iter()
            .map(|(d, n)| format!("{d}×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "parameters     {} ({} active per token)",
        human(i.parameters),
        human(i.active_parameters)
    );
    println!("weights        {} file(s)", i.weight_files.len());
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

//! `neko info`: what a model is (architecture, experts, task map, dtype, parameters), read from
//! its config and safetensors headers, or a GGUF file's header, without loading the weights.

use clap::Args;
use serde::Serialize;
use std::fmt::Write as _;

use super::EXIT_OK;
use crate::model::{self, ModelFiles};

/// Flags of `neko info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A model folder (config.json, tokenizer.json, safetensors), a .gguf file, or a hub id in
    /// the local cache. Default: neko-smol, as `scripts/setup.sh` builds it.
    #[arg(long, env = "NEKO_MODEL")]
    pub model: Option<String>,

    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,

    /// Measure routing instead: per task, the share of tokens whose top-k (learned routing)
    /// includes the task's expert, over the records of --data (prompt and reference answer).
    #[arg(long, requires = "data")]
    pub routing: bool,

    /// Record files for --routing (JSONL or HyPoradise arrays).
    #[arg(long, num_args = 1.., requires = "routing")]
    pub data: Vec<std::path::PathBuf>,

    /// Task of records without a `task` field (--routing).
    #[arg(long, requires = "routing")]
    pub task: Option<crate::Task>,

    /// Records read per file (--routing).
    #[arg(long, default_value_t = 200, requires = "routing", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_records: usize,

    /// Trained tensors (`neko train`'s adapter.safetensors) replacing the model's own
    /// (--routing).
    #[arg(long, requires = "routing")]
    pub adapter: Option<std::path::PathBuf>,
}

/// What `neko info` reports.
#[derive(Debug, Serialize)]
pub struct ModelInfo {
    pub model: String,
    /// `safetensors` or `gguf`.
    pub format: String,
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
    /// Rank of low-rank experts (LoRA deltas over a shared FFN), when the model has them.
    pub expert_lora_rank: Option<usize>,
    pub task_experts: std::collections::BTreeMap<String, usize>,
    pub dtype: Option<String>,
    /// Stored dtypes of the tensors, with how many tensors have each.
    pub tensor_dtypes: std::collections::BTreeMap<String, usize>,
    pub parameters: u64,
    /// Parameters a token actually uses (shared weights plus its top-k experts).
    pub active_parameters: u64,
    pub weight_files: Vec<String>,
    /// The tokenizer file, or `gguf metadata` when it is built from the GGUF header.
    pub tokenizer: String,
    /// The recognised chat format prompts are wrapped in (`chatml`), if any.
    pub chat_template: Option<String>,
    /// Why a chat template the model declares is not used (prompts go unwrapped), if so.
    pub chat_template_ignored: Option<String>,
}

/// Runs `neko info`.
pub fn run(args: &InfoArgs) -> anyhow::Result<u8> {
    if args.routing {
        return run_routing(args);
    }
    let info = inspect(&super::resolve_model(args.model.as_deref())?)?;
    let text = match args.json {
        true => serde_json::to_string_pretty(&info)? + "\n",
        false => text_of(&info)?,
    };
    super::emit(&text)?;
    Ok(EXIT_OK)
}

/// `neko info --routing`: expert use per task under learned routing.
fn run_routing(args: &InfoArgs) -> anyhow::Result<u8> {
    let opts = model::LoadOptions::new(&candle_core::Device::Cpu, candle_core::DType::F32);
    let spec = super::resolve_model(args.model.as_deref())?;
    let mut m = match &args.adapter {
        Some(a) => crate::train::load_with_adapter(&spec, &opts, a)?,
        None => model::Model::load_with(&spec, &opts)?,
    };
    let specs: Vec<crate::train::data::DataSpec> = args
        .data
        .iter()
        .map(|p| crate::train::data::DataSpec {
            path: p.clone(),
            task: args.task,
            max_records: Some(args.max_records),
            target: Default::default(),
        })
        .collect();
    if !m.config.is_moe() {
        anyhow::bail!(
            "--routing: {} is dense, with no experts to route to (upcycle it, or give a Mixture of Experts)",
            spec
        );
    }
    let max_len = m.config.max_position_embeddings;
    let examples = crate::train::routing::examples(&m, &specs, max_len)?;
    if examples.is_empty() {
        // An empty table would read as a measurement.
        anyhow::bail!(
            "--data: no record to measure (the files are empty, unreadable, or every prompt is longer than the model's {max_len} positions)"
        );
    }
    let progress = super::progress_bar(Some(examples.len() as u64), "routing");
    let rows = crate::train::routing::measure(&mut m, examples, &progress)?;
    progress.finish_and_clear();
    if args.json {
        super::emit(&(serde_json::to_string_pretty(&rows)? + "\n"))?;
        return Ok(EXIT_OK);
    }
    let mut out = String::new();
    // A top-1 model's top-k column would repeat its top-1.
    let k = m.config.num_experts_per_tok;
    let top_k = match k {
        1 => String::new(),
        k => format!("  top-{k}"),
    };
    writeln!(out,
        "task  expert  records  tokens   top-1{top_k} (share of tokens routed to the task's expert, mean of layers; top-k per layer)"
    )?;
    for r in rows {
        let share = match k {
            1 => String::new(),
            _ => format!("  {:>5.1}%", r.share * 100.0),
        };
        let layers: Vec<String> = r
            .per_layer
            .iter()
            .map(|s| format!("{:.0}", s * 100.0))
            .collect();
        writeln!(
            out,
            "{:<5} {:>6} {:>8} {:>7}  {:>5.1}%{share}  [{}]",
            r.task.to_string(),
            r.expert,
            r.records,
            r.tokens,
            r.top1 * 100.0,
            layers.join(" ")
        )?;
    }
    super::emit(&out)?;
    Ok(EXIT_OK)
}

/// Reads a model's description without loading its weights.
pub fn inspect(spec: &str) -> anyhow::Result<ModelInfo> {
    // The config, tokenizer and chat template as `neko correct` reads them, so the template
    // reported is the one prompts get (a template whose end-of-turn token the tokenizer
    // lacks is not used, and not reported).
    let side = model::PromptSide::read(ModelFiles::resolve(spec)?, true)?;
    // (name, stored dtype, elements) of every tensor.
    let mut tensors: Vec<(String, String, u64)> = Vec::new();
    match &side.gguf {
        Some(g) => {
            for (name, dtype, shape) in g.tensor_infos() {
                let n = shape.iter().map(|&d| d as u64).product();
                tensors.push((name, format!("{dtype:?}").to_lowercase(), n));
            }
            if !side.files.tokenizer_in_gguf() {
                if let Err(e) = model::check::tokenizer_file_matches_gguf(&side.files.tokenizer, g)
                {
                    crate::say!("neko: warning: {e}");
                }
            }
        }
        None => {
            for path in &side.files.weights {
                // Safety: read-only map of the header and data; nothing else writes these files.
                let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                for (name, view) in st.tensors() {
                    let n = view.shape().iter().map(|&d| d as u64).product();
                    tensors.push((name, format!("{:?}", view.dtype()).to_lowercase(), n));
                }
            }
        }
    }
    let (files, cfg) = (&side.files, &side.config);
    let (mut total, mut expert_params) = (0u64, 0u64);
    let mut dtypes = std::collections::BTreeMap::new();
    for (name, dtype, n) in &tensors {
        total += n;
        if is_expert_tensor(name) {
            expert_params += n;
        }
        *dtypes.entry(dtype.clone()).or_insert(0) += 1;
    }
    let per_expert = expert_params / cfg.num_local_experts.max(1) as u64;
    let active = total - expert_params + per_expert * cfg.num_experts_per_tok as u64;
    Ok(ModelInfo {
        model: files.spec.clone(),
        format: format!("{:?}", files.format).to_lowercase(),
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
        expert_lora_rank: cfg.expert_lora.map(|l| l.rank),
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
        tokenizer: if files.tokenizer_in_gguf() {
            "gguf metadata".to_string()
        } else {
            files.tokenizer.display().to_string()
        },
        chat_template: side.chat.map(|c| c.name().to_string()),
        chat_template_ignored: side.chat_ignored,
    })
}

/// Whether a tensor belongs to one expert (safetensors `experts.E.*`, GGUF `ffn_*.E` or the
/// stacked `ffn_*_exps`, which holds all of them).
fn is_expert_tensor(name: &str) -> bool {
    if name.contains(".experts.") || name.contains("_exps.") {
        return true;
    }
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() == 5
        && parts[0] == "blk"
        && parts[2].starts_with("ffn_")
        && parts[3].parse::<usize>().is_ok()
}

fn text_of(i: &ModelInfo) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    writeln!(out, "model          {} ({})", i.model, i.format)?;
    writeln!(
        out,
        "architecture   {} (model_type {})",
        i.architecture, i.model_type
    )?;
    writeln!(
        out,
        "layers         {}  hidden {}  ffn {}  heads {}/{} kv  vocab {}",
        i.layers, i.hidden_size, i.intermediate_size, i.attention_heads, i.kv_heads, i.vocab_size
    )?;
    match i.expert_lora_rank {
        Some(r) => writeln!(
            out,
            "experts        {} (top-{}), low-rank r={r} over a shared FFN",
            i.experts, i.experts_per_token
        )?,
        None => writeln!(
            out,
            "experts        {} (top-{})",
            i.experts, i.experts_per_token
        )?,
    }
    let map: Vec<String> = i
        .task_experts
        .iter()
        .map(|(t, e)| format!("{t}={e}"))
        .collect();
    writeln!(
        out,
        "task experts   {}",
        if map.is_empty() {
            "none (learned routing only)".to_string()
        } else {
            map.join(" ")
        }
    )?;
    writeln!(
        out,
        "dtype          {} (stored: {})",
        i.dtype.as_deref().unwrap_or("unstated"),
        i.tensor_dtypes
            .iter()
            .map(|(d, n)| format!("{d}×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(
        out,
        "parameters     {} ({} active per token)",
        super::human(i.parameters),
        super::human(i.active_parameters)
    )?;
    writeln!(out, "weights        {} file(s)", i.weight_files.len())?;
    writeln!(out, "tokenizer      {}", i.tokenizer)?;
    writeln!(
        out,
        "chat template  {}",
        match (&i.chat_template, &i.chat_template_ignored) {
            (Some(name), _) => name.clone(),
            (None, Some(why)) => format!("none used: {why}"),
            (None, None) => "none".to_string(),
        }
    )?;
    Ok(out)
}

//! Sparse upcycling (Komatsuzaki et al. 2023, arXiv 2212.05055): a dense decoder becomes a
//! Mixtral-style Mixture of Experts whose every expert starts as the dense FFN, with a task map
//! for NeKo's task-oriented routing (arXiv 2411.05945).
//!
//! The router's gate starts at zero, so every expert gets probability `1/E`; the top-k are tied
//! and their renormalised weights are `1/k` each. With identical experts the block then
//! computes exactly the dense FFN, whichever tied experts the sort returns, under learned and
//! task-forced routing alike: the upcycled model starts with the dense model's logits.
//!
//! Two forms:
//! - full: `block_sparse_moe.experts.E.{w1,w2,w3}.weight`, each a copy of the dense
//!   `mlp.{gate,down,up}_proj`. Loads in Hugging Face transformers as `MixtralForCausalLM`.
//! - low-rank (`--lora-rank r`): the dense FFN is kept once as
//!   `block_sparse_moe.shared.{w1,w2,w3}.weight` (to stay frozen) and each expert is a LoRA
//!   delta per projection, `experts.E.wN.lora_A.weight (r, in)` random and
//!   `experts.E.wN.lora_B.weight (out, r)` zero, scaled by `alpha / r`. What a CPU can train:
//!   only `lora_*` and `block_sparse_moe.gate` tensors need gradients.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};

use crate::convert::Checkpoint;
use crate::model::config::LORA_MOE_MODEL_TYPE;
use crate::model::{Architecture, ExpertLora};
use crate::Task;

/// How to upcycle.
#[derive(Debug, Clone)]
pub struct UpcycleOptions {
    pub experts: usize,
    /// Experts per token (Mixtral: 2).
    pub top_k: usize,
    pub task_experts: BTreeMap<Task, usize>,
    /// Low-rank experts instead of full copies.
    pub lora: Option<ExpertLora>,
    /// Seed of the LoRA `A` initialisation.
    pub seed: u64,
}

impl UpcycleOptions {
    /// Checks the options on their own (before any model is read).
    pub fn validate(&self) -> Result<()> {
        if self.experts < 1 || self.top_k < 1 || self.top_k > self.experts {
            bail!(
                "need 1 <= top-k ({}) <= experts ({})",
                self.top_k,
                self.experts
            );
        }
        for (task, &e) in &self.task_experts {
            if e >= self.experts {
                bail!(
                    "task `{task}` maps to expert {e}, but there are {}",
                    self.experts
                );
            }
        }
        if self.lora.is_some_and(|l| l.rank == 0) {
            bail!("--lora-rank must be at least 1");
        }
        Ok(())
    }
}

/// Upcycles a dense checkpoint in place of its FFN tensors.
pub fn upcycle(mut ck: Checkpoint, opts: &UpcycleOptions) -> Result<Checkpoint> {
    let cfg = &ck.config;
    if cfg.architecture != Architecture::Dense {
        bail!("upcycling needs a dense model; this one is already a Mixture of Experts");
    }
    opts.validate()?;
    let (hidden, inter) = (cfg.hidden_size, cfg.intermediate_size);
    // A delta of rank min(hidden, intermediate) can already be any matrix: a larger rank only
    // adds parameters (and is likelier a typo), and full experts train the same.
    if let Some(l) = opts.lora.filter(|l| l.rank > hidden.min(inter)) {
        bail!(
            "--lora-rank {} is above the model's hidden size {hidden} (intermediate {inter}): a delta that large is no low-rank one; give a smaller rank or full experts (no --lora-rank)",
            l.rank
        );
    }
    let mut rng = SplitMix64(opts.seed);
    for layer in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{layer}");
        let mut take = |name: &str| {
            ck.tensors
                .remove(&format!("{p}.mlp.{name}.weight"))
                .with_context(|| format!("{p}.mlp.{name}.weight is missing"))
        };
        // Mixtral's names: w1 = gate, w3 = up, w2 = down.
        let dense = [
            ("w1", take("gate_proj")?),
            ("w3", take("up_proj")?),
            ("w2", take("down_proj")?),
        ];
        let dtype = dense[0].1.dtype();
        let moe = format!("{p}.block_sparse_moe");
        ck.tensors.insert(
            format!("{moe}.gate.weight"),
            Tensor::zeros((opts.experts, hidden), dtype, &Device::Cpu)?,
        );
        match opts.lora {
            None => {
                for e in 0..opts.experts {
                    for (w, t) in &dense {
                        ck.tensors
                            .insert(format!("{moe}.experts.{e}.{w}.weight"), t.clone());
                    }
                }
            }
            Some(lora) => {
                for (w, t) in &dense {
                    ck.tensors
                        .insert(format!("{moe}.shared.{w}.weight"), t.clone());
                }
                for e in 0..opts.experts {
                    for w in ["w1", "w3", "w2"] {
                        let (in_dim, out_dim) = if w == "w2" {
                            (inter, hidden)
                        } else {
                            (hidden, inter)
                        };
                        let key = format!("{moe}.experts.{e}.{w}");
                        ck.tensors.insert(
                            format!("{key}.lora_A.weight"),
                            lora_a(&mut rng, lora.rank, in_dim)?.to_dtype(dtype)?,
                        );
                        ck.tensors.insert(
                            format!("{key}.lora_B.weight"),
                            Tensor::zeros((out_dim, lora.rank), dtype, &Device::Cpu)?,
                        );
                    }
                }
            }
        }
    }
    let c = &mut ck.config;
    c.architecture = Architecture::Mixtral;
    c.model_type = match opts.lora {
        Some(_) => LORA_MOE_MODEL_TYPE.to_string(),
        None => "mixtral".to_string(),
    };
    c.num_local_experts = opts.experts;
    c.num_experts_per_tok = opts.top_k;
    c.task_experts = opts.task_experts.clone();
    c.expert_lora = opts.lora;
    Ok(ck)
}

/// LoRA's `A` initialisation as PEFT does it (Kaiming-uniform with `a = √5`):
/// `U(-1/√in, 1/√in)`, shape `(rank, in)`.
fn lora_a(rng: &mut SplitMix64, rank: usize, in_dim: usize) -> Result<Tensor> {
    let bound = 1.0 / (in_dim as f32).sqrt();
    let v: Vec<f32> = (0..rank * in_dim)
        .map(|_| (rng.next_f32() * 2.0 - 1.0) * bound)
        .collect();
    Ok(Tensor::from_vec(v, (rank, in_dim), &Device::Cpu)?.to_dtype(DType::F32)?)
}

/// A small seeded generator (SplitMix64), so upcycling (and training's data order) is
/// reproducible; candle's CPU device ignores seeds.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Replaces tensors of an upcycled checkpoint by trained ones (`neko train`'s
/// `adapter.safetensors`): every adapter tensor must exist in `ck` with the same shape, and
/// takes the checkpoint's dtype. This is how the shipped neko-smol is rebuilt from its base.
/// Returns how many tensors were replaced.
pub fn apply_adapter(ck: &mut Checkpoint, adapter: &std::path::Path) -> Result<usize> {
    check_adapter_settings(adapter, &ck.config)?;
    let trained = candle_core::safetensors::load(adapter, &Device::Cpu)
        .with_context(|| format!("{}: cannot read the adapter", adapter.display()))?;
    check_finite(adapter, &trained)?;
    for (name, t) in &trained {
        let Some(old) = ck.tensors.get(name) else {
            bail!(
                "{}: tensor `{name}` is not in the upcycled model (an adapter of another \
                 upcycling or another base model: check --model, --experts and --lora-rank)",
                adapter.display()
            );
        };
        if old.dims() != t.dims() {
            bail!(
                "{}: tensor `{name}` has shape {:?}, the upcycled model {:?}",
                adapter.display(),
                t.dims(),
                old.dims()
            );
        }
    }
    let n = trained.len();
    for (name, t) in trained {
        let dtype = ck.tensors[&name].dtype();
        ck.tensors.insert(name, t.to_dtype(dtype)?);
    }
    Ok(n)
}

/// Refuses an adapter with a NaN or infinite value (a run that diverged): every answer of the
/// model would be `<unk>`.
pub fn check_finite(adapter: &std::path::Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    for (name, t) in tensors {
        let values: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        if values.iter().any(|v| !v.is_finite()) {
            bail!(
                "{}: tensor `{name}` holds NaN or infinite values (the training run diverged)",
                adapter.display()
            );
        }
    }
    Ok(())
}

/// The upcycling an adapter was trained on, as `neko train` writes it into `adapter.json`
/// beside `adapter.safetensors`: tensors of the same names and shapes mean nothing under
/// another LoRA alpha (every delta scaled otherwise), top-k or task map.
pub fn adapter_settings(config: &crate::model::ModelConfig) -> serde_json::Value {
    let tasks: serde_json::Map<String, serde_json::Value> = (config.task_experts.iter())
        .map(|(t, e)| (t.to_string(), (*e).into()))
        .collect();
    serde_json::json!({
        "num_local_experts": config.num_local_experts,
        "num_experts_per_tok": config.num_experts_per_tok,
        "expert_lora_rank": config.expert_lora.map(|l| l.rank),
        "expert_lora_alpha": config.expert_lora.map(|l| l.alpha),
        "task_experts": tasks,
    })
}

/// What `neko train` recorded beside `adapter` (its `adapter.json`), when there is a record.
pub fn adapter_record(adapter: &std::path::Path) -> Result<Option<serde_json::Value>> {
    Ok(adapter_record_at(adapter)?.map(|(v, _)| v))
}

/// The record and its path: `NAME.json` beside `NAME.safetensors`, else the folder's
/// `adapter.json` (a renamed copy).
fn adapter_record_at(
    adapter: &std::path::Path,
) -> Result<Option<(serde_json::Value, std::path::PathBuf)>> {
    let named = adapter.with_extension("json");
    let path = match named.is_file() {
        true => named,
        false => adapter.with_file_name("adapter.json"),
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let recorded =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    Ok(Some((recorded, path)))
}

/// Checks `adapter`'s recorded upcycling (`adapter.json` beside it, its `upcycle` object)
/// against the model it is put into; an adapter without one is taken on its names and shapes.
pub fn check_adapter_settings(
    adapter: &std::path::Path,
    config: &crate::model::ModelConfig,
) -> Result<()> {
    let Some((recorded, path)) = adapter_record_at(adapter)? else {
        return Ok(());
    };
    let Some(trained) = recorded.get("upcycle").and_then(|u| u.as_object()) else {
        return Ok(());
    };
    let now = adapter_settings(config);
    for (key, want) in trained {
        let have = &now[key.as_str()];
        // Numbers compare as numbers: 16 and 16.0 are one alpha.
        let same = match (want.as_f64(), have.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => want == have,
        };
        if !same {
            bail!(
                "{}: the adapter was trained with {key} {want}, the model it is put into has {have} (an adapter of another upcycling: match --experts, --top-k, --lora-rank, --lora-alpha and --tasks)",
                path.display()
            );
        }
    }
    Ok(())
}

/// Parses a task map: `asr=0,st=1,mt=1,ocr=2,gec=3`.
pub fn parse_task_map(spec: &str) -> Result<BTreeMap<Task, usize>> {
    let mut map = BTreeMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (task, expert) = part
            .split_once('=')
            .with_context(|| format!("`{part}`: expected TASK=EXPERT"))?;
        let task: Task = task
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("`{part}`: {e}"))?;
        let expert: usize = expert
            .trim()
            .parse()
            .with_context(|| format!("`{part}`: the expert must be a number"))?;
        if map.insert(task, expert).is_some() {
            bail!("task `{task}` is mapped twice");
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_maps_parse() {
        let m = parse_task_map("asr=0, st=1,mt=1,ocr=2,gec=3").unwrap();
        assert_eq!(m.len(), 5);
        assert_eq!(m[&Task::Gec], 3);
        assert!(parse_task_map("asr").is_err());
        assert!(parse_task_map("asr=0,asr=1").is_err());
        assert!(parse_task_map("xyz=0").is_err());
    }

    #[test]
    fn lora_a_is_bounded_and_seeded() {
        let a = lora_a(&mut SplitMix64(7), 4, 64).unwrap();
        let b = lora_a(&mut SplitMix64(7), 4, 64).unwrap();
        let v: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v, b.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert!(v.iter().all(|x| x.abs() <= 0.125));
        assert!(v.iter().any(|x| x.abs() > 0.06));
    }
}

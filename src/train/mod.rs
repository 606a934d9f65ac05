//! `neko train`: task-oriented expert training (NeKo, arXiv 2411.05945, section 3).
//!
//! Each task's tokens are taught to use the task's own expert, in either reading of the paper:
//! the task's expert is forced into every token's top-k during training
//! ([`RoutingLoss::Forced`]), or an auxiliary cross-entropy pulls each token's gate toward the
//! task's expert ([`RoutingLoss::Aux`]), or both. A load-balancing term (Switch Transformer,
//! Fedus et al. 2021) is available. The language-model loss covers the answer tokens only.
//!
//! Trainable tensors are `candle_core::Var`s read from the checkpoint (or the last adapter
//! when resuming); everything else is loaded as plain, frozen tensors. The model runs in
//! training mode ([`Transformer::set_training`]): candle's fused softmax, RMSNorm and RoPE
//! kernels have no backward. A run directory holds the adapter (trainable tensors only), the
//! optimizer's moments, the state and a JSONL log, so `--resume` continues bit for bit.

pub mod adamw;
pub mod data;
pub mod routing;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor, Var, D};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::model::{Logits, Model, ModelFiles, Transformer, Weights};
use adamw::{AdamW, AdamWParams};
use data::{DataReport, DataSpec, Example, Renderer, Schedule};

/// How task-oriented routing is taught.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RoutingLoss {
    /// The task's expert is forced into each token's top-k (the gate fills the other slots).
    #[default]
    Forced,
    /// Learned routing plus a router cross-entropy toward the task's expert.
    Aux,
    /// Forced routing and the router cross-entropy.
    Both,
}

/// Which tensors train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TrainMode {
    /// Low-rank experts over a frozen base: `lora_*` tensors and the router gates (CPU).
    #[default]
    Lora,
    /// Every tensor but the token embeddings (GPU).
    Full,
}

/// The hyper-parameters (`[train]` of the TOML config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hyper {
    pub mode: TrainMode,
    pub routing: RoutingLoss,
    /// Weight of the router cross-entropy (`aux` and `both`).
    pub aux_weight: f64,
    /// Weight of the load-balancing term (0: off).
    pub balance_weight: f64,
    /// Also train the RMSNorm weights.
    pub train_norms: bool,
    pub seed: u64,
    /// Optimizer steps of the whole run (the schedule's length).
    pub steps: usize,
    /// Examples per micro-batch (one task each).
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    pub lr: f64,
    /// The cosine schedule ends at `lr * min_lr_ratio`.
    pub min_lr_ratio: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Clip the gradients' global L2 norm to this (0: off).
    pub max_grad_norm: f64,
    /// Examples longer than this many tokens (prompt + answer) are skipped.
    pub max_len: usize,
    /// Save a checkpoint every this many steps (and always at exit).
    pub checkpoint_every: usize,
    /// Compute the validation loss every this many steps (0: only at the end).
    pub valid_every: usize,
    /// Where to train: `cpu`, `cuda`, `cuda:N` (a `--features cuda` build) or `metal`. Weights,
    /// activations and optimizer state are f32 everywhere.
    pub device: String,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            mode: TrainMode::Lora,
            routing: RoutingLoss::Forced,
            aux_weight: 0.1,
            balance_weight: 0.0,
            train_norms: false,
            seed: 0,
            steps: 100,
            batch_size: 4,
            grad_accum: 1,
            lr: 2e-4,
            min_lr_ratio: 0.1,
            warmup_steps: 10,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_grad_norm: 1.0,
            max_len: 384,
            checkpoint_every: 50,
            valid_every: 0,
            device: "cpu".to_string(),
        }
    }
}

/// A training configuration (TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The upcycled model to start from (a folder).
    pub model: String,
    /// The run directory (checkpoints, log); `neko train --out` gives or overrides it.
    #[serde(default)]
    pub out: PathBuf,
    #[serde(default)]
    pub train: Hyper,
    pub data: Vec<DataSpec>,
    #[serde(default)]
    pub valid: Vec<DataSpec>,
}

impl TrainConfig {
    pub fn from_toml(text: &str) -> Result<Self> {
        let c: TrainConfig = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let c = Self::from_toml(&text).with_context(|| format!("{}", path.display()))?;
        // A weight set for a term the routing does not compute would pass unseen.
        let set = |key: &str| {
            let table: Option<toml::Table> = toml::from_str(&text).ok();
            table.is_some_and(|t| t.get("train").and_then(|t| t.get(key)).is_some())
        };
        if c.train.routing == RoutingLoss::Forced && set("aux_weight") {
            crate::say!(
                "neko: {}: aux_weight is set, but routing = \"forced\" trains no router cross-entropy (it is used with \"aux\" or \"both\")",
                path.display()
            );
        }
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        let h = &self.train;
        if h.steps == 0 || h.batch_size == 0 || h.grad_accum == 0 || h.max_len == 0 {
            bail!("steps, batch_size, grad_accum and max_len must be at least 1");
        }
        // Written as `!(x > 0)` so that NaN fails too: a NaN setting trains NaN weights.
        if !(h.lr > 0.0 && h.lr.is_finite() && (0.0..=1.0).contains(&h.min_lr_ratio)) {
            bail!("lr must be positive and finite, and min_lr_ratio within [0, 1]");
        }
        if !((0.0..1.0).contains(&h.beta1) && (0.0..1.0).contains(&h.beta2) && h.eps > 0.0) {
            bail!("beta1 and beta2 must be within [0, 1), and eps positive");
        }
        let finite = [
            h.weight_decay,
            h.max_grad_norm,
            h.aux_weight,
            h.balance_weight,
        ];
        if finite.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
            bail!("weight_decay, max_grad_norm, aux_weight and balance_weight must be finite and not negative");
        }
        if self.data.is_empty() {
            bail!("no [[data]] files");
        }
        if h.warmup_steps > h.steps {
            bail!(
                "warmup_steps {} is longer than the run (steps {}): the learning rate would never reach lr",
                h.warmup_steps,
                h.steps
            );
        }
        if let Some(d) = (self.data.iter().chain(&self.valid)).find(|d| d.max_records == Some(0)) {
            bail!("{}: max_records = 0 reads none of it", d.path.display());
        }
        Ok(())
    }

    /// The learning rate of (1-based) step `step`: linear warm-up, then cosine decay.
    pub fn lr_at(&self, step: usize) -> f64 {
        let h = &self.train;
        if step <= h.warmup_steps {
            return h.lr * step as f64 / h.warmup_steps.max(1) as f64;
        }
        let span = (h.steps - h.warmup_steps.min(h.steps)).max(1) as f64;
        let progress = ((step - h.warmup_steps) as f64 / span).min(1.0);
        let min = h.lr * h.min_lr_ratio;
        min + 0.5 * (h.lr - min) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// Whether a checkpoint tensor trains in `mode`.
pub fn is_trainable(name: &str, h: &Hyper) -> bool {
    let norm = name.ends_with("layernorm.weight") || name == "model.norm.weight";
    match h.mode {
        TrainMode::Lora => {
            name.contains(".lora_")
                || name.ends_with("block_sparse_moe.gate.weight")
                || (h.train_norms && norm)
        }
        TrainMode::Full => !name.contains("embed_tokens") && (h.train_norms || !norm),
    }
}

/// A safetensors store where the trainable names are `Var`s.
struct TrainBackend {
    base: MmapedSafetensors,
    vars: HashMap<String, Var>,
}

impl SimpleBackend for TrainBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        match self.vars.get(name) {
            Some(v) if v.shape() == &s => Ok(v.as_tensor().clone()),
            Some(v) => candle_core::bail!("`{name}`: shape {:?}, expected {s:?}", v.shape()),
            None => SimpleBackend::get(&self.base, s, name, h, dtype, dev),
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.vars.get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => self.base.get_unchecked(name, dtype, dev),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars.contains_key(name) || self.base.contains_tensor(name)
    }
}

/// One optimizer step's numbers (a line of `train.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepLog {
    pub step: usize,
    /// The total objective (LM + router terms).
    pub loss: f64,
    /// Cross-entropy per answer token.
    pub lm_loss: f64,
    pub aux_loss: f64,
    pub balance_loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    /// Tokens run through the model this step (padding excluded) and answer tokens.
    pub tokens: usize,
    pub answer_tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
}

/// A checkpoint's files. They are written into [`NEXT_DIR`], which is renamed to
/// [`COMMIT_DIR`] (the commit point: one atomic rename), and then moved into the run directory
/// ([`recover`] finishes that after a crash), so a resume never sees files of two checkpoints.
pub const CHECKPOINT_FILES: [&str; 4] = [
    "adapter.safetensors",
    "optimizer.safetensors",
    "adapter.json",
    "state.json",
];

/// Where a checkpoint is written, in the run directory.
const NEXT_DIR: &str = ".checkpoint.next";
/// A written checkpoint on its way into the run directory.
const COMMIT_DIR: &str = ".checkpoint.commit";

/// Puts the run directory's checkpoint in order after a crash: a committed checkpoint is
/// moved in the rest of the way, one that was still being written is dropped.
pub fn recover(dir: &Path) -> Result<()> {
    let commit = dir.join(COMMIT_DIR);
    if commit.is_dir() {
        for n in CHECKPOINT_FILES {
            let from = commit.join(n);
            if from.exists() {
                std::fs::rename(&from, dir.join(n))
                    .with_context(|| format!("{}: cannot move it in", from.display()))?;
            }
        }
        std::fs::remove_dir_all(&commit)
            .with_context(|| format!("cannot remove {}", commit.display()))?;
    }
    let next = dir.join(NEXT_DIR);
    if next.exists() {
        std::fs::remove_dir_all(&next)
            .with_context(|| format!("cannot remove {}", next.display()))?;
    }
    // Temporary files of earlier versions, which renamed each file on its own.
    for n in CHECKPOINT_FILES {
        let _ = std::fs::remove_file(dir.join(format!(".{n}.tmp")));
    }
    Ok(())
}

/// Why a run directory's checkpoint cannot be resumed, with what to do.
fn damaged(dir: &Path, what: &str) -> String {
    format!(
        "{}: {what}: the checkpoint is damaged; start over with --config and --force",
        dir.display()
    )
}

/// The saved progress of a run (`state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub step: usize,
    pub tokens: u64,
    pub seconds: f64,
    pub config: TrainConfig,
    /// The start model's fingerprint and a digest of the examples, which a resume must find
    /// again: other weights or other data would make it another run.
    #[serde(default)]
    pub model_fingerprint: Option<String>,
    #[serde(default)]
    pub data_digest: Option<String>,
}

/// The trainer: model, trainable vars, optimizer, data and progress.
pub struct Trainer {
    pub config: TrainConfig,
    pub model: Model,
    net: Transformer,
    vars: Vec<(String, Var)>,
    opt: AdamW,
    examples: Vec<Example>,
    valid: Vec<Example>,
    schedule: Schedule,
    pub report: DataReport,
    /// The same of the `[[valid]]` files.
    pub valid_report: DataReport,
    /// Steps done.
    pub step: usize,
    pub tokens: u64,
    pub seconds: f64,
}

/// Per-micro-batch losses (graph-attached) and counts.
struct BatchLoss {
    total: Tensor,
    lm_sum: f64,
    aux: f64,
    balance: f64,
    tokens: usize,
    answer_tokens: usize,
}

impl Trainer {
    /// A new run from the configuration's model (loads data; writes nothing yet).
    pub fn new(config: TrainConfig) -> Result<Self> {
        Self::build(config, None)
    }

    /// Continues the run saved in `dir`.
    pub fn resume(dir: &Path) -> Result<Self> {
        recover(dir)?;
        let state_path = dir.join("state.json");
        let text = std::fs::read_to_string(&state_path)
            .with_context(|| format!("{}: no checkpoint to resume", dir.display()))?;
        let state: RunState = serde_json::from_str(&text)
            .with_context(|| damaged(dir, "state.json is not a run's state"))?;
        let mut config = state.config.clone();
        config.out = dir.to_path_buf();
        let mut t = Self::build(config, Some(&dir.join("adapter.safetensors")))?;
        let opt_state =
            candle_core::safetensors::load(dir.join("optimizer.safetensors"), &Device::Cpu)
                .with_context(|| damaged(dir, "optimizer.safetensors cannot be read"))?;
        t.opt
            .load_state(&opt_state)
            .with_context(|| damaged(dir, "optimizer.safetensors is not of this run's tensors"))?;
        if t.opt.steps() != state.step {
            bail!(
                "{}: optimizer at step {} but state at {}",
                dir.display(),
                t.opt.steps(),
                state.step
            );
        }
        let start_over = "start over with --config and --force";
        if let Some(then) = &state.model_fingerprint {
            let now = t.model.files.fingerprint()?;
            if *then != now {
                bail!(
                    "{}: the model {} changed since the run started (fp-{then}, now fp-{now}): resuming would train other weights; {start_over}",
                    dir.display(),
                    t.config.model
                );
            }
        }
        if state
            .data_digest
            .as_ref()
            .is_some_and(|d| *d != t.data_digest())
        {
            bail!(
                "{}: the training data changed since the run started ({} examples now): resuming would not continue the same data order; {start_over}",
                dir.display(),
                t.examples.len()
            );
        }
        t.step = state.step;
        t.tokens = state.tokens;
        t.seconds = state.seconds;
        Ok(t)
    }

    /// The longest example kept: `max_len`, or the model's positions if fewer.
    pub fn max_len(&self) -> usize {
        (self.config.train.max_len).min(self.model.config.max_position_embeddings)
    }

    /// A digest of the examples in order (task, tokens, where the answer starts): what a
    /// resume must find again to continue the same data order.
    fn data_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for ex in &self.examples {
            h.update(ex.task.name().as_bytes());
            h.update((ex.answer_start as u64).to_le_bytes());
            h.update((ex.ids.len() as u64).to_le_bytes());
            for id in &ex.ids {
                h.update(id.to_le_bytes());
            }
        }
        crate::model::files::hex(&h.finalize()[..8])
    }

    fn build(config: TrainConfig, adapter: Option<&Path>) -> Result<Self> {
        config.validate()?;
        let device = crate::model::parse_device(&config.train.device)?;
        let mut opts = crate::model::LoadOptions::new(&device, DType::F32);
        opts.chat_template = true;
        let model = Model::load_with(&config.model, &opts)?;
        if !model.config.is_moe() {
            bail!(
                "{}: training needs an upcycled (MoE) model: make one with `neko upcycle --model {} --experts 4 --lora-rank 16 --tasks asr=0,st=1,mt=1,ocr=2,gec=3 --to DIR`",
                config.model,
                config.model
            );
        }
        if model.config.task_experts.is_empty() {
            bail!(
                "{}: the model has no task map (`task_experts`)",
                config.model
            );
        }
        let files = ModelFiles::resolve(&config.model)?;
        // Safety: read-only maps of files nothing else writes while training.
        let base = unsafe { MmapedSafetensors::multi(&files.weights)? };
        let init = match adapter {
            Some(a) => candle_core::safetensors::load(a, &device).with_context(|| {
                damaged(
                    a.parent().unwrap_or(a),
                    "adapter.safetensors cannot be read",
                )
            })?,
            None => HashMap::new(),
        };
        let mut names: Vec<String> = base
            .tensors()
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| is_trainable(n, &config.train))
            .collect();
        names.sort();
        if names.is_empty() {
            bail!("{}: no trainable tensors for this mode", config.model);
        }
        if config.train.mode == TrainMode::Lora && !names.iter().any(|n| n.contains(".lora_")) {
            bail!(
                "{}: mode = \"lora\" trains low-rank experts, and this model has full ones (upcycled without --lora-rank): only its gates would train; use mode = \"full\" or upcycle with --lora-rank",
                config.model
            );
        }
        // A resumed adapter must hold every trainable tensor: one missing would restart from
        // the base's weights without a word.
        if let (Some(a), Some(missing)) = (adapter, names.iter().find(|n| !init.contains_key(*n))) {
            bail!(
                "{}: tensor `{missing}` is missing: the checkpoint is damaged (or of another model); start over with --config and --force",
                a.display()
            );
        }
        let mut vars = Vec::with_capacity(names.len());
        for name in &names {
            // An adapter of another rank or model: said with its file, not at model build.
            if let (Some(a), Some(t), Ok(want)) = (adapter, init.get(name), base.get(name)) {
                if t.dims() != want.shape() {
                    bail!(
                        "{}: tensor `{name}` has shape {:?}, the model's is {:?}: the checkpoint is of another model; start over with --config and --force",
                        a.display(),
                        t.dims(),
                        want.shape()
                    );
                }
            }
            let t = match init.get(name).map(|t| t.to_device(&device)).transpose()? {
                Some(t) => t.clone(),
                None => base.load(name, &device)?,
            };
            vars.push((name.clone(), Var::from_tensor(&t.to_dtype(DType::F32)?)?));
        }
        let backend = TrainBackend {
            base,
            vars: vars.iter().cloned().collect(),
        };
        let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone());
        let mut net = Transformer::load(&model.config, &Weights::from(vb))?;
        // The loaded model's own decoder is replaced by an inference-mode view of the trained
        // weights (shared storage), so the base is held once and `model` runs the trained net.
        let mut model = model;
        model.decoder = Box::new(net.clone());
        net.set_training(true);
        let h = &config.train;
        let opt = AdamW::new(
            vars.clone(),
            AdamWParams {
                beta1: h.beta1,
                beta2: h.beta2,
                eps: h.eps,
                weight_decay: h.weight_decay,
            },
        )?;
        let renderer = Renderer::new(&model);
        // No example may be longer than the model has positions for: one would stop the run
        // at the step that drew it.
        let max_len = h.max_len.min(model.config.max_position_embeddings);
        let has_expert = |t: crate::Task| model.config.task_expert(t).is_some();
        let read = |specs| data::read_examples(&renderer, specs, max_len, &has_expert);
        let (examples, report) = read(&config.data)?;
        let (valid, valid_report) = read(&config.valid)?;
        if examples.is_empty() {
            bail!(
                "no training examples in [[data]] ({} without a reference, {} too long, {} unreadable{})",
                report.no_reference,
                report.too_long,
                report.unreadable,
                (report.first_unreadable.as_ref()).map_or(String::new(), |f| format!("; the first: {f}"))
            );
        }
        if !config.valid.is_empty() && valid.is_empty() {
            bail!(
                "no validation examples in [[valid]] ({} without a reference, {} too long, {} unreadable{}): no validation loss could be measured",
                valid_report.no_reference,
                valid_report.too_long,
                valid_report.unreadable,
                (valid_report.first_unreadable.as_ref()).map_or(String::new(), |f| format!("; the first: {f}"))
            );
        }
        let schedule = Schedule::new(&examples, h.batch_size, h.seed);
        Ok(Trainer {
            config,
            model,
            net,
            vars,
            opt,
            examples,
            valid,
            schedule,
            report,
            valid_report,
            step: 0,
            tokens: 0,
            seconds: 0.0,
        })
    }

    /// The training examples, in file and record order.
    pub fn examples(&self) -> &[Example] {
        &self.examples
    }

    /// The trainable tensors by name.
    pub fn trainable(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Micro-batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.schedule.per_epoch()
    }

    /// Runs a micro-batch forward and builds its losses; `lm_scale` divides the summed token
    /// cross-entropy (the step's answer tokens), `router_scale` the router terms.
    fn batch_loss(
        &mut self,
        batch: &[usize],
        lm_scale: f64,
        router_scale: f64,
    ) -> Result<BatchLoss> {
        let h = self.config.train.clone();
        let rows: Vec<&Example> = batch.iter().map(|&i| &self.examples[i]).collect();
        self.loss_of(
            &rows.into_iter().cloned().collect::<Vec<_>>(),
            &h,
            lm_scale,
            router_scale,
        )
    }

    fn loss_of(
        &mut self,
        rows: &[Example],
        h: &Hyper,
        lm_scale: f64,
        router_scale: f64,
    ) -> Result<BatchLoss> {
        let task = rows[0].task;
        let expert = self
            .model
            .config
            .task_expert(task)
            .context("task without an expert")?;
        let width = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        let pads: Vec<usize> = rows.iter().map(|r| width - r.ids.len()).collect();
        let mut ids = Vec::with_capacity(rows.len() * width);
        let (mut pos, mut targets) = (Vec::new(), Vec::new());
        let mut keep = Vec::new();
        for (b, r) in rows.iter().enumerate() {
            ids.extend(std::iter::repeat_n(0u32, pads[b]));
            ids.extend(&r.ids);
            for i in r.answer_start..r.ids.len() {
                pos.push((b * width + pads[b] + i - 1) as u32);
                targets.push(r.ids[i]);
            }
            keep.extend((0..r.ids.len()).map(|i| (b * width + pads[b] + i) as u32));
        }
        let dev = self.net.device().clone();
        let input = Tensor::from_vec(ids, (rows.len(), width), &dev)?;
        let forced = match h.routing {
            RoutingLoss::Forced | RoutingLoss::Both => Some(expert),
            RoutingLoss::Aux => None,
        };
        // The LM head runs on the answer positions only (a vocabulary of 49k makes it a tenth
        // of the model's work per position).
        let hidden = self.net.forward(&input, &pads, forced, Logits::Hidden)?;
        let size = hidden.dim(D::Minus1)?;
        let hidden = hidden.reshape((rows.len() * width, size))?;
        let pos_t = Tensor::new(pos.as_slice(), &dev)?;
        let targets_t = Tensor::new(targets.as_slice(), &dev)?;
        let logits = self.net.lm_head(&hidden.index_select(&pos_t, 0)?)?;
        let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let lm = lp.gather(&targets_t.unsqueeze(1)?, 1)?.sum_all()?.neg()?;
        let lm_sum = lm.to_scalar::<f32>()? as f64;
        let mut total = (lm / lm_scale)?;
        let keep_t = Tensor::new(keep.as_slice(), &dev)?;
        let (mut aux, mut balance) = (0.0, 0.0);
        let router = self.net.router_logits();
        let layers = router.len().max(1) as f64;
        let aux_on =
            matches!(h.routing, RoutingLoss::Aux | RoutingLoss::Both) && h.aux_weight > 0.0;
        if aux_on || h.balance_weight > 0.0 {
            let routing = self.net.last_routing();
            for (l, g) in router.iter().enumerate() {
                let g = g.index_select(&keep_t, 0)?;
                let n_exp = g.dim(1)?;
                if aux_on {
                    let lp = candle_nn::ops::log_softmax(&g, D::Minus1)?;
                    let ce = lp.narrow(1, expert, 1)?.sum_all()?.neg()?;
                    let term = (ce * (h.aux_weight / (router_scale * layers)))?;
                    aux += term.to_scalar::<f32>()? as f64;
                    total = (total + term)?;
                }
                if h.balance_weight > 0.0 {
                    // Switch Transformer: E · Σ_e f_e P_e, f the share of top-k slots (no
                    // gradient), P the mean gate probability.
                    let probs = candle_nn::ops::softmax(&g, D::Minus1)?;
                    let p_mean = probs.mean(0)?;
                    let chosen = routing[l].index_select(&keep_t, 0)?.to_vec2::<u32>()?;
                    let mut f = vec![0f32; n_exp];
                    let slots = chosen.iter().map(Vec::len).sum::<usize>().max(1) as f32;
                    for e in chosen.iter().flatten() {
                        f[*e as usize] += 1.0 / slots;
                    }
                    let f = Tensor::from_vec(f, n_exp, &dev)?;
                    let term = ((p_mean * f)?.sum_all()?
                        * (n_exp as f64 * h.balance_weight / (layers * h.grad_accum as f64)))?;
                    balance += term.to_scalar::<f32>()? as f64;
                    total = (total + term)?;
                }
            }
        }
        Ok(BatchLoss {
            total,
            lm_sum,
            aux,
            balance,
            tokens: keep.len(),
            answer_tokens: targets.len(),
        })
    }

    /// The gradients of the next step (accumulated over its micro-batches, unclipped) without
    /// applying them: for tests and diagnostics.
    pub fn next_gradients(&mut self) -> Result<HashMap<String, Tensor>> {
        Ok(self.accumulate()?.0)
    }

    fn accumulate(&mut self) -> Result<(HashMap<String, Tensor>, StepLog)> {
        let h = self.config.train.clone();
        let start = Instant::now();
        let batches: Vec<Vec<usize>> = (0..h.grad_accum)
            .map(|j| self.schedule.batch(self.step * h.grad_accum + j))
            .collect();
        let answer: usize = batches
            .iter()
            .flatten()
            .map(|&i| self.examples[i].answer_len())
            .sum();
        let all: usize = batches
            .iter()
            .flatten()
            .map(|&i| self.examples[i].ids.len())
            .sum();
        let mut grads: HashMap<String, Tensor> = HashMap::new();
        let device = self.net.device().clone();
        let mut log = StepLog {
            step: self.step + 1,
            loss: 0.0,
            lm_loss: 0.0,
            aux_loss: 0.0,
            balance_loss: 0.0,
            lr: self.config.lr_at(self.step + 1),
            grad_norm: 0.0,
            tokens: 0,
            answer_tokens: 0,
            seconds: 0.0,
            tokens_per_s: 0.0,
        };
        for batch in &batches {
            let mut l = self.batch_loss(batch, answer.max(1) as f64, all.max(1) as f64)?;
            let store = l.total.backward()?;
            l.total = Tensor::zeros((), DType::F32, &device)?;
            // The kept gate logits would hold this graph into the next micro-batch.
            self.net.clear_router_logits();
            for (name, var) in &self.vars {
                if let Some(g) = store.get(var.as_tensor()) {
                    let g = g.detach();
                    let sum = match grads.remove(name) {
                        Some(prev) => (prev + g)?,
                        None => g,
                    };
                    grads.insert(name.clone(), sum);
                }
            }
            log.lm_loss += l.lm_sum;
            log.aux_loss += l.aux;
            log.balance_loss += l.balance;
            log.tokens += l.tokens;
            log.answer_tokens += l.answer_tokens;
        }
        log.lm_loss /= answer.max(1) as f64;
        log.loss = log.lm_loss + log.aux_loss + log.balance_loss;
        log.seconds = start.elapsed().as_secs_f64();
        Ok((grads, log))
    }

    /// One optimizer step: forward and backward over `grad_accum` micro-batches, clipping,
    /// AdamW with the scheduled learning rate.
    pub fn train_step(&mut self) -> Result<StepLog> {
        let start = Instant::now();
        let (mut grads, mut log) = self.accumulate()?;
        let mut sq = 0f64;
        for g in grads.values() {
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
        log.grad_norm = sq.sqrt();
        let max = self.config.train.max_grad_norm;
        if max > 0.0 && log.grad_norm > max {
            let scale = max / (log.grad_norm + 1e-6);
            for g in grads.values_mut() {
                *g = (&*g * scale)?;
            }
        }
        self.opt.step(&grads, log.lr)?;
        self.step += 1;
        log.seconds = start.elapsed().as_secs_f64();
        log.tokens_per_s = log.tokens as f64 / log.seconds.max(1e-9);
        self.tokens += log.tokens as u64;
        self.seconds += log.seconds;
        Ok(log)
    }

    /// Mean cross-entropy per answer token over the validation examples (no gradients kept).
    pub fn valid_loss(&mut self) -> Result<Option<f64>> {
        if self.valid.is_empty() {
            return Ok(None);
        }
        // Under learned routing, as `neko correct` runs by default: a loss under forced
        // routing would be of a model users do not run (and hide a gate that routes badly).
        let mut h = self.config.train.clone();
        h.routing = RoutingLoss::Aux;
        let valid = self.valid.clone();
        let (mut sum, mut n) = (0.0, 0usize);
        // Same-task chunks, in file order.
        let mut start = 0;
        while start < valid.len() {
            let task = valid[start].task;
            let mut end = start;
            while end < valid.len() && end - start < h.batch_size && valid[end].task == task {
                end += 1;
            }
            let l = self.loss_of(&valid[start..end], &h, 1.0, 1.0)?;
            self.net.clear_router_logits();
            sum += l.lm_sum;
            n += l.answer_tokens;
            start = end;
        }
        Ok(Some(sum / n.max(1) as f64))
    }

    /// The trainable tensors as they are now (what the adapter file holds), on the CPU.
    pub fn adapter_tensors(&self) -> Result<HashMap<String, Tensor>> {
        self.vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().to_device(&Device::Cpu)?)))
            .collect()
    }

    /// Writes the adapter, the optimizer state and `state.json` ([`CHECKPOINT_FILES`]) into the
    /// run directory, all at once: written into [`NEXT_DIR`], committed by one rename, moved in.
    pub fn save_checkpoint(&self) -> Result<()> {
        let out = &self.config.out;
        std::fs::create_dir_all(out)?;
        recover(out)?;
        // Weights an update made NaN (a loss still finite before it) are no checkpoint: the
        // last good one stays.
        let adapter = self.adapter_tensors()?;
        crate::upcycle::check_finite(Path::new("the trained weights"), &adapter).map_err(|e| {
            anyhow::anyhow!("step {}: {e} (training diverged); the last checkpoint is kept, but a --resume replays the same steps: start over with --force and a lower lr or more warmup_steps", self.step)
        })?;
        let dir = &out.join(NEXT_DIR);
        std::fs::create_dir_all(dir)?;
        let tmp = |n: &str| dir.join(n);
        candle_core::safetensors::save(&adapter, tmp("adapter.safetensors"))?;
        let opt: HashMap<String, Tensor> = self
            .opt
            .state()?
            .into_iter()
            .map(|(n, t)| Ok((n, t.to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        candle_core::safetensors::save(&opt, tmp("optimizer.safetensors"))?;
        // The writer creates them owner-only; the run's other files are shared.
        #[cfg(unix)]
        for n in ["adapter.safetensors", "optimizer.safetensors"] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp(n), std::fs::Permissions::from_mode(0o644))?;
        }
        let state = RunState {
            step: self.step,
            tokens: self.tokens,
            seconds: self.seconds,
            config: self.config.clone(),
            model_fingerprint: Some(self.model.files.fingerprint()?),
            data_digest: Some(self.data_digest()),
        };
        std::fs::write(tmp("state.json"), serde_json::to_string_pretty(&state)?)?;
        std::fs::write(
            tmp("adapter.json"),
            serde_json::to_string_pretty(&serde_json::json!({
                "base_model": self.config.model,
                // What `neko correct --adapter` compares the model it is given with.
                "model_fingerprint": self.model.files.fingerprint()?,
                "step": self.step,
                "mode": self.config.train.mode,
                "routing": self.config.train.routing,
                "tensors": self.vars.len(),
                "upcycle": crate::upcycle::adapter_settings(&self.model.config),
                "load_with": format!("neko correct --task TASK --model {} --adapter {}", self.config.model,
                    out.join("adapter.safetensors").display()),
            }))?,
        )?;
        std::fs::rename(dir, out.join(COMMIT_DIR))?;
        recover(out)
    }

    /// Removes an earlier run's checkpoint from the run directory, `state.json` (what a resume
    /// trusts) first, so that a stop before this run's first checkpoint leaves nothing to
    /// resume rather than the old run under the new config.
    pub fn clear_checkpoint(&self) -> Result<()> {
        for d in [COMMIT_DIR, NEXT_DIR] {
            let _ = std::fs::remove_dir_all(self.config.out.join(d));
        }
        for n in CHECKPOINT_FILES.iter().rev() {
            match std::fs::remove_file(self.config.out.join(n)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot remove the earlier {n}"))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The path of the run's JSONL log.
    pub fn log_path(&self) -> PathBuf {
        self.config.out.join("train.jsonl")
    }
}

/// Loads `model` with an adapter's tensors in place of the checkpoint's (the adapter's names
/// must all exist in the model, with the same shapes). What `neko correct --adapter` runs.
pub fn load_with_adapter(
    spec: &str,
    opts: &crate::model::LoadOptions,
    adapter: &Path,
) -> Result<Model> {
    if adapter.is_dir() {
        bail!(
            "--adapter {}: a folder; give the adapter file in it (adapter.safetensors)",
            adapter.display()
        );
    }
    let tensors = candle_core::safetensors::load(adapter, &Device::Cpu).with_context(|| {
        format!(
            "{}: cannot read the adapter (a safetensors file)",
            adapter.display()
        )
    })?;
    crate::upcycle::check_finite(adapter, &tensors)?;
    let mut opts = opts.clone();
    opts.adapter = Some(adapter.to_path_buf());
    let model = Model::load_with(spec, &opts)?;
    crate::upcycle::check_adapter_settings(adapter, &model.config)?;
    if let Some(warning) = other_base(adapter, spec)? {
        crate::say!("neko: warning: {warning}");
    }
    Ok(model)
}

/// Why `adapter` may not belong on the model `spec`: `neko train` records the fingerprint of
/// the model it trained on in `adapter.json`, and a model of the same shapes but other weights
/// takes the adapter without an error and answers nonsense. A warning, not a refusal: the same
/// weights saved otherwise (another dtype, a re-conversion) have another fingerprint too.
fn other_base(adapter: &Path, spec: &str) -> Result<Option<String>> {
    let Some(recorded) = crate::upcycle::adapter_record(adapter)? else {
        return Ok(None);
    };
    let Some(then) = recorded.get("model_fingerprint").and_then(|v| v.as_str()) else {
        return Ok(None);
    };
    let now = ModelFiles::resolve(spec)?.fingerprint()?;
    Ok((then != now).then(|| {
        let base = recorded
            .get("base_model")
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        format!(
            "{}: trained on {base} (fp-{then}); {spec} is fp-{now}: unless it is the same \
             weights saved otherwise, the adapter's answers mean nothing on it",
            adapter.display()
        )
    }))
}

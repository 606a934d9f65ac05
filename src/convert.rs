//! Checkpoints as plain tensors: read a GGUF file or a Hugging Face folder into f32/bf16 tensors
//! under Hugging Face names ([`Checkpoint::read`]) and write one out in Hugging Face layout
//! ([`Checkpoint::write`]: config.json, generation_config.json, tokenizer.json,
//! tokenizer_config.json, model.safetensors). `neko convert` is the two in a row; `neko upcycle`
//! transforms the tensors in between.
//!
//! GGUF tensors are dequantised after the loader has undone llama.cpp's Q/K row permutation
//! (see [`crate::model::gguf`]), so the written model computes what the GGUF model computes,
//! up to the quantisation of activations in the quantised kernels.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

use crate::model::{self, gguf_tokenizer, Format, GgufFile, Model, ModelConfig, ModelFiles};

/// A model held as plain tensors, with what is needed to write it back out.
pub struct Checkpoint {
    pub config: ModelConfig,
    /// Tensors by Hugging Face name.
    pub tensors: BTreeMap<String, Tensor>,
    /// The `tokenizer.json` document.
    pub tokenizer_json: Value,
    /// `tokenizer_config.json`: the source's, or one made from GGUF metadata.
    pub tokenizer_config: Value,
    /// `generation_config.json`: the source's, or one made from the token ids.
    pub generation_config: Value,
    /// The source's `config.json` as written, when it had one: the settings neko does not model
    /// (`pad_token_id`, `initializer_range`, ...) are written back as they were.
    pub source_config: Option<Value>,
}

impl Checkpoint {
    /// Reads a `.gguf` file (dequantised to f32) or a Hugging Face folder (as stored) onto the
    /// CPU.
    pub fn read(spec: &str) -> Result<Self> {
        let files = ModelFiles::resolve(spec)?;
        match files.format {
            Format::Gguf => Self::read_gguf(&files),
            Format::Safetensors => Self::read_folder(&files),
        }
    }

    fn read_gguf(files: &ModelFiles) -> Result<Self> {
        let gguf = GgufFile::open(&files.config)?;
        let config = gguf.config()?;
        let mut tensors = BTreeMap::new();
        for (name, q) in gguf.tensors(&Device::Cpu)? {
            let t = q
                .dequantize(&Device::Cpu)
                .with_context(|| format!("dequantising {name}"))?;
            tensors.insert(name, t);
        }
        let tokenizer_json = if files.tokenizer_in_gguf() {
            gguf_tokenizer::tokenizer_json(&gguf)?
        } else {
            // The file beside the GGUF goes into the written folder: it must be the GGUF's.
            model::check::tokenizer_file_matches_gguf(&files.tokenizer, &gguf)?;
            read_json(&files.tokenizer)?
        };
        let token = |key: &str| -> Option<String> {
            let id = gguf.uint(key).ok().flatten()?;
            token_content(&tokenizer_json, id as u32)
        };
        let mut tc = json!({
            "add_bos_token": gguf.flag("tokenizer.ggml.add_bos_token").unwrap_or(false),
            "add_eos_token": gguf.flag("tokenizer.ggml.add_eos_token").unwrap_or(false),
            "clean_up_tokenization_spaces": false,
            "model_max_length": config.max_position_embeddings,
            "tokenizer_class": "PreTrainedTokenizerFast",
        });
        for (field, key) in [
            ("bos_token", "tokenizer.ggml.bos_token_id"),
            ("eos_token", "tokenizer.ggml.eos_token_id"),
            ("unk_token", "tokenizer.ggml.unknown_token_id"),
            ("pad_token", "tokenizer.ggml.padding_token_id"),
        ] {
            if let Some(t) = token(key) {
                tc[field] = json!(t);
            }
        }
        if let Some(t) = gguf.chat_template() {
            tc["chat_template"] = json!(t);
        }
        let mut gc = json!({});
        if let Some(b) = config.bos_token_id {
            gc["bos_token_id"] = json!(b);
        }
        if let Some(e) = eos_json(&config.eos_token_ids) {
            gc["eos_token_id"] = e;
        }
        if let Some(p) = gguf.uint("tokenizer.ggml.padding_token_id")? {
            gc["pad_token_id"] = json!(p);
        }
        Ok(Checkpoint {
            config,
            tensors,
            tokenizer_json,
            tokenizer_config: tc,
            generation_config: gc,
            source_config: None,
        })
    }

    fn read_folder(files: &ModelFiles) -> Result<Self> {
        let config = model::read_config(&files.config)?;
        let mut tensors = BTreeMap::new();
        for path in &files.weights {
            let shard = candle_core::safetensors::load(path, &Device::Cpu)
                .with_context(|| format!("reading {}", path.display()))?;
            // An integer tensor would be converted by value into nonsense weights.
            if let Some((name, t)) = shard.iter().find(|(_, t)| !t.dtype().is_float()) {
                bail!(
                    "{}: tensor `{name}` is stored as {:?}, not as floating-point weights",
                    path.display(),
                    t.dtype()
                );
            }
            tensors.extend(shard);
        }
        let dir = files.tokenizer.parent().unwrap_or(Path::new("."));
        let optional = |name: &str| -> Result<Option<Value>> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(Some(read_json(&p)?))
            } else {
                Ok(None)
            }
        };
        let mut tokenizer_config = optional("tokenizer_config.json")?.unwrap_or_else(|| json!({}));
        // A chat_template.jinja wins, as in neko and transformers: it goes into
        // tokenizer_config.json, since the rewrite has no .jinja beside it. A template list
        // already there is kept whole.
        let jinja = std::fs::read_to_string(dir.join("chat_template.jinja")).ok();
        if let Some(t) = jinja.or_else(|| {
            tokenizer_config
                .get("chat_template")
                .is_none()
                .then(|| model::chat::template_in_dir(dir))?
        }) {
            tokenizer_config["chat_template"] = json!(t);
        }
        let generation_config = optional("generation_config.json")?.unwrap_or_else(|| {
            json!({"bos_token_id": config.bos_token_id, "eos_token_id": eos_json(&config.eos_token_ids)})
        });
        Ok(Checkpoint {
            config,
            tensors,
            tokenizer_json: read_json(&files.tokenizer)?,
            tokenizer_config,
            generation_config,
            source_config: Some(read_json(&files.config)?),
        })
    }

    /// Writes the checkpoint to `dir` in Hugging Face layout with weights in `dtype`. Refuses
    /// a folder that already holds a model unless `overwrite`. The model is written into a
    /// staging folder ([`staging_dir`]) and loaded from there as `neko correct` would load it:
    /// a source whose tensors do not fit its config fails here, naming the tensor, and leaves
    /// `dir` as it was. Only then are the files moved into `dir`, config.json last.
    pub fn write(&self, dir: &Path, dtype: DType, overwrite: bool) -> Result<()> {
        check_destination(dir, overwrite)?;
        let stage = staging_dir(dir)?;
        // A staging folder left by an interrupted run (its weights' temporary file included).
        if stage.exists() {
            std::fs::remove_dir_all(&stage)
                .with_context(|| format!("removing {}", stage.display()))?;
        }
        std::fs::create_dir_all(&stage).with_context(|| format!("creating {}", stage.display()))?;
        self.write_files(&stage, dtype)?;
        // Checked in the written dtype, so that the check needs no more memory than the file.
        if let Err(e) = Model::load(&stage.to_string_lossy(), &Device::Cpu, dtype) {
            let _ = std::fs::remove_dir_all(&stage);
            bail!("the written model does not load, so nothing was written to {}: {e} (the source's tensors do not fit its configuration)", dir.display());
        }
        move_into(&stage, dir, overwrite)
    }

    /// The model's files in `dir` (an empty folder): weights, tokenizer files, config.json.
    fn write_files(&self, dir: &Path, dtype: DType) -> Result<()> {
        let dtype_name = match dtype {
            DType::F32 => "float32",
            DType::BF16 => "bfloat16",
            DType::F16 => "float16",
            other => bail!("cannot write weights as {other:?} (f32, bf16, f16)"),
        };
        let mut config = self.config.clone();
        config.dtype = Some(dtype_name.to_string());
        let mut out: HashMap<String, Tensor> = HashMap::new();
        for (name, t) in self
            .tensors
            .iter()
            .filter(|(name, _)| self.is_written(name))
        {
            if dtype == DType::F16 && t.dtype() != DType::F16 {
                check_fits_f16(name, t)?;
            }
            out.insert(name.clone(), t.to_dtype(dtype)?.contiguous()?);
        }
        let weights = dir.join("model.safetensors");
        candle_core::safetensors::save(&out, &weights)
            .with_context(|| format!("writing {}", weights.display()))?;
        // The writer creates the file owner-only; a model folder is meant to be shared.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&weights, std::fs::Permissions::from_mode(0o644))?;
        }
        write_json(&dir.join("tokenizer.json"), &self.tokenizer_json)?;
        write_json(&dir.join("tokenizer_config.json"), &self.tokenizer_config)?;
        write_json(&dir.join("generation_config.json"), &self.generation_config)?;
        let written = config.to_hf_json(dtype_name);
        let written = match &self.source_config {
            Some(source) => over_source(written, source),
            None => written,
        };
        write_json(&dir.join("config.json"), &written)?;
        Ok(())
    }

    /// Parameters held.
    pub fn parameters(&self) -> usize {
        self.tensors.values().map(|t| t.elem_count()).sum()
    }

    /// Bytes of the weights [`Checkpoint::write`] writes as `dtype`.
    pub fn weight_bytes(&self, dtype: DType) -> u64 {
        let elements: usize = (self.tensors.iter())
            .filter(|(name, _)| self.is_written(name))
            .map(|(_, t)| t.elem_count())
            .sum();
        (elements * dtype.size_in_bytes()) as u64
    }

    /// Whether tensor `name` is written: all but a tied `lm_head` (the embedding serves).
    fn is_written(&self, name: &str) -> bool {
        !(name == "lm_head.weight" && self.config.tie_word_embeddings)
    }
}

/// The text of token `id` in a `tokenizer.json` document (added tokens, then the vocabulary).
fn token_content(tokenizer: &Value, id: u32) -> Option<String> {
    let added = tokenizer.get("added_tokens")?.as_array()?;
    if let Some(t) = added
        .iter()
        .find(|t| t.get("id").and_then(Value::as_u64) == Some(id as u64))
    {
        return t.get("content")?.as_str().map(String::from);
    }
    let vocab = tokenizer.get("model")?.get("vocab")?.as_object()?;
    vocab
        .iter()
        .find(|(_, v)| v.as_u64() == Some(id as u64))
        .map(|(k, _)| k.clone())
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Refuses a destination the model cannot be written to: a file, or (without `overwrite`) a
/// folder that holds a model. Called before the source is read, so that a large model is not
/// loaded (and upcycled) only to be refused, and again before writing.
pub fn check_destination(dir: &Path, overwrite: bool) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!(
            "{}: a file, not a folder; give a folder for the model",
            dir.display()
        );
    }
    if !overwrite {
        if let Some(name) = model_file_in(dir) {
            bail!(
                "{} already holds a model or its files ({name}); pass --force to overwrite them",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Refuses a tensor with values beyond f16's range (|x| > 65504): written as f16 they would be
/// infinite, and a model that loads would answer nonsense.
fn check_fits_f16(name: &str, t: &Tensor) -> Result<()> {
    let largest = t
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?;
    if largest.is_nan() || largest > 65504.0 {
        bail!("{name} holds a value of magnitude {largest:e}, beyond f16's range (65504): as f16 it would be infinite; write bf16 or f32");
    }
    Ok(())
}

/// A file in `dir` that belongs to a model (a config, weights, shards or their index), that
/// the write would replace (the tokenizer and generation files: an upstream repo's chat
/// template and end tokens beside a GGUF) or that would change the model written (a
/// `chat_template.jinja` wins over the written template): a folder holding one is not written
/// into without `--force`, even when its config is gone.
fn model_file_in(dir: &Path) -> Option<String> {
    const WRITTEN: &[&str] = &[
        "config.json",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "chat_template.jinja",
    ];
    let names = std::fs::read_dir(dir).ok()?;
    names
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| WRITTEN.contains(&n.as_str()) || n.ends_with(".safetensors"))
}

/// End tokens as generation_config.json lists them: one id, or all of them, since
/// transformers stops only at what that file names once it exists.
fn eos_json(ids: &[u32]) -> Option<Value> {
    match ids {
        [] => None,
        [one] => Some(json!(one)),
        many => Some(json!(many)),
    }
}

/// Settings [`ModelConfig::to_hf_json`] writes only as defaults: a source's own values stand.
const DEFAULT_SETTINGS: &[&str] = &[
    "initializer_range",
    "router_aux_loss_coef",
    "router_jitter_noise",
    "output_router_logits",
    "use_cache",
    "attention_dropout",
];

/// `written` (what neko's config says) over the source's `config.json`: the source's other
/// settings are kept, and its values of [`DEFAULT_SETTINGS`].
fn over_source(written: Value, source: &Value) -> Value {
    let (Value::Object(written), Some(source)) = (written.clone(), source.as_object()) else {
        return written;
    };
    let mut out = source.clone();
    for (k, v) in written {
        if !(DEFAULT_SETTINGS.contains(&k.as_str()) && out.contains_key(&k)) {
            out.insert(k, v);
        }
    }
    Value::Object(out)
}

/// Files of a model folder that a rewrite does not write and that loaders would still read
/// beside the new ones (a template, other tokenizer formats).
const SIDE_FILES: &[&str] = &[
    "chat_template.jinja",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
];

/// Removes what makes `dir` a model before it is written again: its config.json first (so a
/// stop midway leaves no model that looks whole), then a sharded checkpoint's index and shards,
/// which loading would prefer to the new `model.safetensors`, and the old side files.
/// The staging folder's name inside an existing model folder.
pub const STAGE: &str = ".neko-partial";

/// Where a model for `dir` is written before it is moved in: inside `dir` when it exists (on
/// the same filesystem as its files, whatever links or mounts lead there), else beside it, so
/// that every move is a rename.
fn staging_dir(dir: &Path) -> Result<std::path::PathBuf> {
    if dir.is_dir() {
        return Ok(dir.join(STAGE));
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = name.unwrap_or_else(|| "model".into());
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    let parent = parent.unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    Ok(parent.join(format!(".{name}.neko-partial")))
}

/// Moves the staged model into `dir`: a new folder by one rename; into an existing one, file
/// by file, config.json last. With `overwrite` the old model's files go first, config.json
/// first of them, so a move cut short leaves no model that loads as a mix of two: the whole
/// new model is still in the staging folder then, and loading `dir` says so.
fn move_into(stage: &Path, dir: &Path, overwrite: bool) -> Result<()> {
    if !dir.is_dir() {
        return std::fs::rename(stage, dir)
            .with_context(|| format!("moving {} to {}", stage.display(), dir.display()));
    }
    if overwrite {
        remove_model_files(dir)?;
    }
    let mut names: Vec<_> = std::fs::read_dir(stage)?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort_by_key(|n| (n == "config.json", n.clone()));
    for name in names {
        std::fs::rename(stage.join(&name), dir.join(&name))
            .with_context(|| format!("moving {} into {}", stage.display(), dir.display()))?;
    }
    std::fs::remove_dir(stage).with_context(|| format!("removing {}", stage.display()))
}

fn remove_model_files(dir: &Path) -> Result<()> {
    let is_old = |name: &str| {
        name == "config.json"
            || SIDE_FILES.contains(&name)
            || name == "model.safetensors.index.json"
            || model::files::is_shard_name(name)
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_old(n))
        .collect();
    // config.json first.
    names.sort_by_key(|n| (n != "config.json", n.clone()));
    for name in names {
        let path = dir.join(&name);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Parses a weights dtype for writing: `f32`, `bf16` or `f16`.
pub fn parse_write_dtype(spec: &str) -> Result<DType> {
    match spec {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" => Ok(DType::F16),
        other => bail!("unknown dtype `{other}` (f32, bf16, f16)"),
    }
}

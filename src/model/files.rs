//! Finding a model's files: a local folder in Hugging Face layout, a `.gguf` file, or a hub id
//! resolved from the local hub cache (`HF_HOME` / `HF_HUB_CACHE`) with no network.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ModelError;

/// How a model's weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Hugging Face layout: config.json, tokenizer.json, safetensors.
    Safetensors,
    /// One llama.cpp GGUF file holding config, tokenizer and (quantised) weights.
    Gguf,
}

/// The files that make a model.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// What the user named: a folder, a `.gguf` file or a hub id.
    pub spec: String,
    pub format: Format,
    /// `config.json`; for GGUF the `.gguf` file itself (its metadata holds the configuration).
    pub config: PathBuf,
    /// `tokenizer.json`; for GGUF the `tokenizer.json` beside the file when there is one,
    /// otherwise the `.gguf` file (the tokenizer is built from its metadata).
    pub tokenizer: PathBuf,
    /// Safetensors shards, in index order (one file for unsharded checkpoints); for GGUF the
    /// `.gguf` file.
    pub weights: Vec<PathBuf>,
}

impl ModelFiles {
    /// Resolves `spec`: an existing folder is read directly; anything else is taken as a hub
    /// id and looked up in the local hub cache.
    pub fn resolve(spec: &str) -> Result<Self, ModelError> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Self::from_dir(spec, path);
        }
        if path.is_file() && is_gguf(path) {
            return Ok(Self::from_gguf(spec, path));
        }
        if path.exists() {
            return Err(ModelError::files(
                path,
                "expected a model folder (config.json, tokenizer.json, *.safetensors) or a .gguf file",
            ));
        }
        // A .gguf path names a file, never a hub id: a typo is said as a missing file.
        if is_gguf(path) {
            return Err(ModelError::files(path, "no such file"));
        }
        Self::from_hub_cache(spec)
    }

    /// Whether the tokenizer is built from GGUF metadata (no `tokenizer.json` beside the file).
    pub fn tokenizer_in_gguf(&self) -> bool {
        self.format == Format::Gguf && is_gguf(&self.tokenizer)
    }

    fn from_gguf(spec: &str, path: &Path) -> Self {
        let beside = path
            .parent()
            .map(|d| d.join("tokenizer.json"))
            .filter(|p| p.is_file());
        ModelFiles {
            spec: spec.to_string(),
            format: Format::Gguf,
            config: path.to_path_buf(),
            tokenizer: beside.unwrap_or_else(|| path.to_path_buf()),
            weights: vec![path.to_path_buf()],
        }
    }

    fn from_dir(spec: &str, dir: &Path) -> Result<Self, ModelError> {
        let need = |name: &str| -> Result<PathBuf, ModelError> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(ModelError::files(&p, "missing"))
            }
        };
        let staged = dir.join(crate::convert::STAGE).join("config.json");
        if !dir.join("config.json").is_file() && staged.is_file() {
            return Err(ModelError::files(
                &dir.join("config.json"),
                format!(
                    "missing: a neko convert or upcycle into this folder was cut short, and the whole new model is in {}: move its files up into the folder",
                    staged.parent().unwrap_or(dir).display()
                ),
            ));
        }
        if !dir.join("config.json").is_file() {
            if let Some(gguf) = only_gguf(dir) {
                return Err(ModelError::files(
                    &dir.join("config.json"),
                    format!(
                        "missing: the folder holds a GGUF file; pass it itself: --model {}",
                        gguf.display()
                    ),
                ));
            }
        }
        let config = need("config.json")?;
        let tokenizer = need("tokenizer.json")?;
        let index = dir.join("model.safetensors.index.json");
        let weights = if index.is_file() {
            shard_names(&index)?
                .into_iter()
                .map(|n| dir.join(n))
                .collect()
        } else {
            let single = dir.join("model.safetensors");
            if !single.is_file() && has_shard_files(dir) {
                return Err(ModelError::files(
                    &index,
                    "missing: the folder has shard files (model-00001-of-...) but not the index that names them",
                ));
            }
            if !single.is_file() && dir.join("pytorch_model.bin").is_file() {
                return Err(ModelError::files(
                    &single,
                    "missing: the folder holds a PyTorch checkpoint (pytorch_model.bin), and neko reads safetensors; save it with transformers' save_pretrained(..., safe_serialization=True)",
                ));
            }
            vec![need("model.safetensors")?]
        };
        for w in &weights {
            if !w.is_file() {
                return Err(ModelError::files(
                    w,
                    "missing (named by the safetensors index)",
                ));
            }
        }
        Ok(ModelFiles {
            spec: spec.to_string(),
            format: Format::Safetensors,
            config,
            tokenizer,
            weights,
        })
    }

    fn from_hub_cache(id: &str) -> Result<Self, ModelError> {
        // HF_HUB_CACHE names the hub cache itself (as huggingface_hub reads it); otherwise
        // HF_HOME/hub, otherwise ~/.cache/huggingface/hub.
        let cache = match std::env::var_os("HF_HUB_CACHE") {
            Some(dir) => hf_hub::Cache::new(dir.into()),
            None => hf_hub::Cache::from_env(),
        };
        let repo = cache.model(id.to_string());
        let get = |name: &str| {
            repo.get(name).ok_or_else(|| {
                ModelError::files(
                    Path::new(id),
                    format!(
                        "not a local folder, and `{name}` is not in the hub cache at {} (neko works offline: download the model there first, or pass a folder)",
                        cache.path().display()
                    ),
                )
            })
        };
        let config = get("config.json")?;
        let tokenizer = get("tokenizer.json")?;
        let weights = match repo.get("model.safetensors.index.json") {
            Some(index) => shard_names(&index)?
                .iter()
                .map(|n| get(n))
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![get("model.safetensors")?],
        };
        Ok(ModelFiles {
            spec: id.to_string(),
            format: Format::Safetensors,
            config,
            tokenizer,
            weights,
        })
    }
}

fn is_gguf(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// Whether `dir` holds sharded safetensors files (`model-00001-of-00002.safetensors`).
fn has_shard_files(dir: &Path) -> bool {
    let names = std::fs::read_dir(dir).into_iter().flatten().flatten();
    names
        .filter_map(|e| e.file_name().into_string().ok())
        .any(|n| is_shard_name(&n))
}

/// Whether a file name is a sharded checkpoint's (`model-00001-of-00002.safetensors`).
pub fn is_shard_name(name: &str) -> bool {
    name.starts_with("model-") && name.contains("-of-") && name.ends_with(".safetensors")
}

/// The shard file names of a `model.safetensors.index.json`, each once, in first-seen order.
fn shard_names(index: &Path) -> Result<Vec<String>, ModelError> {
    let text =
        std::fs::read_to_string(index).map_err(|e| ModelError::files(index, e.to_string()))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::files(index, format!("not valid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| ModelError::files(index, "no `weight_map` object"))?;
    let mut names: Vec<String> = Vec::new();
    for v in map.values() {
        let name = v
            .as_str()
            .ok_or_else(|| ModelError::files(index, "`weight_map` values must be file names"))?;
        // A shard is a file of the model's folder, never one elsewhere.
        if name.contains(['/', '\\']) || name == ".." || name.is_empty() {
            return Err(ModelError::files(
                index,
                format!(
                    "`{name}` is no file name of this folder (a shard must sit beside the index)"
                ),
            ));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    if names.is_empty() {
        return Err(ModelError::files(index, "its `weight_map` names no shard"));
    }
    names.sort();
    Ok(names)
}

impl ModelFiles {
    /// A short fingerprint of the model for signatures: sha256 over the config, the tokenizer,
    /// the files beside it that shape prompts, and each weight file's name and whole content.
    /// Whole: a model rebuilt with other trained tensors (an adapter's experts sit in the
    /// middle of the file) must not sign as the same model. Each file's digest is remembered
    /// in neko's cache (`file_digest`), so a large checkpoint is read for it once, not on every
    /// run.
    pub fn fingerprint(&self) -> std::io::Result<String> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        // The files that decide the prompt (chat template, BOS) sign too, where there are any.
        let prompt_files: Vec<PathBuf> = (self.tokenizer.parent().into_iter())
            .flat_map(|d| ["tokenizer_config.json", "chat_template.jinja"].map(|n| d.join(n)))
            .filter(|p| p.is_file())
            .collect();
        let mut paths = vec![&self.config, &self.tokenizer];
        paths.extend(self.weights.iter());
        paths.extend(prompt_files.iter());
        paths.dedup();
        for p in paths {
            h.update(
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            h.update(file_digest(p, &neko_cache().join("fingerprints"))?);
        }
        Ok(hex(&h.finalize()[..8]))
    }
}

/// sha256 of a file's content, remembered in `cache` under a key of its path, size and
/// modification time (so an entry goes stale by itself when the file changes). The cache is a
/// convenience: when it cannot be read or written the digest is computed anyway.
fn file_digest(path: &Path, cache: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let meta = std::fs::metadata(path)?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let abs = std::fs::canonicalize(path)?;
    let key = format!("{}\t{}\t{modified}\tv2", abs.display(), meta.len());
    let entry = cache.join(hex(&Sha256::digest(key.as_bytes())[..16]));
    if let Ok(known) = std::fs::read_to_string(&entry) {
        if known.len() == 64 && known.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(known);
        }
    }
    let mut h = Sha256::new();
    match canonical_json(path) {
        Some(text) => h.update(text.as_bytes()),
        None => {
            std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
        }
    }
    let digest = hex(&h.finalize());
    let tmp = entry.with_extension(format!("partial.{}", std::process::id()));
    let _ = std::fs::create_dir_all(cache)
        .and_then(|()| std::fs::write(&tmp, &digest))
        .and_then(|()| std::fs::rename(&tmp, &entry));
    Ok(digest)
}

/// A `.json` file's content with its objects' keys sorted, so that the same settings written
/// in another key order (by another version of the writer) sign the same; `None` for other
/// files and for JSON that does not parse (its bytes sign it).
fn canonical_json(path: &Path) -> Option<String> {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                let map = entries.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::Value::Object(map)
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sorted).collect())
            }
            other => other,
        }
    }
    if path.extension()? != "json" {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some(sorted(value).to_string())
}

/// Lower-case hex of `bytes` (digests in signatures).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The folder's one `.gguf` file, if it holds exactly one.
fn only_gguf(dir: &Path) -> Option<PathBuf> {
    let mut found = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
        });
    let one = found.next()?;
    found.next().is_none().then_some(one)
}

/// neko's own cache: `$NEKO_CACHE`, else `~/.cache/neko` (where `scripts/fetch-base.sh` puts
/// the base and `scripts/setup.sh` builds the default model). An empty `NEKO_CACHE` is unset,
/// as the scripts' `${NEKO_CACHE:-...}` read it (it was the current folder).
pub fn neko_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("NEKO_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join("neko")
}

/// The folder of the default model, neko-smol (loaded when no `--model` is given).
pub fn default_model_dir() -> PathBuf {
    neko_cache().join("neko-smol")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_dir(root: &Path, weights: &[u8]) -> ModelFiles {
        std::fs::create_dir_all(root).unwrap();
        std::fs::write(root.join("config.json"), "{}").unwrap();
        std::fs::write(root.join("tokenizer.json"), "{}").unwrap();
        std::fs::write(root.join("model.safetensors"), weights).unwrap();
        ModelFiles {
            spec: root.display().to_string(),
            format: Format::Safetensors,
            config: root.join("config.json"),
            tokenizer: root.join("tokenizer.json"),
            weights: vec![root.join("model.safetensors")],
        }
    }

    /// Two models that differ in one byte in the middle of a 5 MiB weight file (where an
    /// adapter's tensors would be) sign differently; equal files sign alike, cached or not.
    #[test]
    fn fingerprint_sees_a_change_anywhere_in_the_weights() {
        let tmp = std::env::temp_dir().join(format!("neko-fp-{}", std::process::id()));
        let cache = tmp.join("cache");
        let mut weights = vec![7u8; 5 << 20];
        let a = model_dir(&tmp.join("a"), &weights);
        weights[5 << 19] = 8;
        let b = model_dir(&tmp.join("b"), &weights);
        let c = model_dir(&tmp.join("c"), &weights);
        let digest = |m: &ModelFiles| file_digest(&m.weights[0], &cache).unwrap();
        assert_ne!(digest(&a), digest(&b));
        assert_eq!(digest(&b), digest(&c));
        // The second call reads the cache: the same digest.
        assert_eq!(digest(&b), digest(&b));
        assert!(std::fs::read_dir(&cache).unwrap().count() >= 3);
        assert_ne!(a.fingerprint().unwrap(), b.fingerprint().unwrap());
        assert_eq!(b.fingerprint().unwrap(), c.fingerprint().unwrap());
        // The same config in another key order and layout signs the same; a changed value not.
        let config = |text: &str| {
            std::fs::write(&c.config, text).unwrap();
            c.fingerprint().unwrap()
        };
        let ab = config(r#"{"a": 1, "b": {"x": [1, {"q": 2, "p": 3}], "y": 2}}"#);
        let ba = config("{\"b\":{\"y\":2,\"x\":[1,{\"p\":3,\"q\":2}]},\n \"a\":1}");
        assert_eq!(ab, ba);
        assert_ne!(
            ab,
            config(r#"{"a": 22, "b": {"x": [1, {"q": 2, "p": 3}], "y": 2}}"#)
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}

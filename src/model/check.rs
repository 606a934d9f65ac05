//! Checks of a model's files before any record is processed, so a wrong file fails with a
//! message naming the file and tensor rather than a shape error deep in a forward pass.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use super::{ModelConfig, ModelError};

/// Every safetensors file must open: a truncated or corrupt file is named.
pub fn weights_open(files: &[PathBuf]) -> Result<(), ModelError> {
    for path in files {
        // Safety: read-only map; nothing else writes model files while neko reads them.
        if let Err(e) = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) } {
            return Err(ModelError::files(
                path,
                format!("not a readable safetensors file (truncated or corrupt?): {e}"),
            ));
        }
    }
    Ok(())
}

/// The tokenizer must not produce ids past the embedding matrix.
pub fn tokenizer_fits(
    tokenizer: &Tokenizer,
    config: &ModelConfig,
    path: &Path,
) -> Result<(), ModelError> {
    let size = tokenizer.get_vocab_size(true);
    if size > config.vocab_size {
        return Err(ModelError::Tokenizer {
            path: path.display().to_string(),
            message: format!(
                "its vocabulary has {size} tokens but the model's embedding has {} rows (`vocab_size`): tokenizer and weights do not belong together",
                config.vocab_size
            ),
        });
    }
    // Embeddings are padded past the tokenizer by a few rows (to a multiple of 64 or 128),
    // never by half: a tokenizer that small is another model's.
    if size * 2 < config.vocab_size {
        return Err(ModelError::Tokenizer {
            path: path.display().to_string(),
            message: format!(
                "its vocabulary has {size} tokens but the model's embedding has {} rows (`vocab_size`), less than half: tokenizer and weights do not belong together",
                config.vocab_size
            ),
        });
    }
    Ok(())
}

/// A `tokenizer.json` beside a GGUF file replaces the GGUF's own tokenizer; it must give each
/// id the token the GGUF's vocabulary gives it, or every id the model reads means another
/// word. A few differing entries (a renamed special token) are only reported.
pub fn tokenizer_matches_gguf(
    tokenizer: &Tokenizer,
    vocabulary: &[String],
    path: &Path,
    gguf: &Path,
) -> Result<(), ModelError> {
    let differ: Vec<(usize, String)> = vocabulary
        .iter()
        .enumerate()
        .filter_map(|(id, want)| {
            let got = tokenizer.id_to_token(id as u32).unwrap_or_default();
            (&got != want).then_some((id, got))
        })
        .collect();
    let Some((id, got)) = differ.first() else {
        return Ok(());
    };
    let message = format!(
        "{} of its {} ids name other tokens than {}'s vocabulary (id {id}: `{got}` here, `{}` there)",
        differ.len(),
        vocabulary.len(),
        gguf.display(),
        vocabulary[*id]
    );
    if differ.len() * 100 >= vocabulary.len() {
        return Err(ModelError::Tokenizer {
            path: path.display().to_string(),
            message: format!("{message}: tokenizer and weights do not belong together"),
        });
    }
    crate::say!("neko: warning: {}: {message}", path.display());
    Ok(())
}

/// [`tokenizer_matches_gguf`] for a `tokenizer.json` file beside `gguf` (the file's path
/// is `tokenizer`), read here: what `neko convert` and `neko upcycle` check before copying it.
pub fn tokenizer_file_matches_gguf(
    tokenizer: &Path,
    gguf: &super::gguf::GgufFile,
) -> Result<(), ModelError> {
    let Some(vocabulary) = super::gguf_tokenizer::vocabulary(gguf) else {
        return Ok(());
    };
    let t = Tokenizer::from_file(tokenizer).map_err(|e| ModelError::Tokenizer {
        path: tokenizer.display().to_string(),
        message: e.to_string(),
    })?;
    tokenizer_matches_gguf(&t, &vocabulary, tokenizer, &gguf.path)
}

/// Turns candle's loading error into one that names the file holding the tensor at fault
/// (`shape mismatch for X`) or says which files lack it (`cannot find tensor X`).
pub fn explain_load_error(err: &candle_core::Error, files: &[PathBuf]) -> ModelError {
    let text = err.to_string();
    let all = || {
        files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = tensor_after(&text, "cannot find tensor ") {
        return ModelError::Weights {
            path: all(),
            message: match files.len() {
                1 => format!("tensor `{name}` is missing (the checkpoint does not match config.json's architecture?)"),
                _ => format!("tensor `{name}` is in none of the shards (one incomplete, or the checkpoint does not match config.json's architecture?)"),
            },
        };
    }
    if let Some(name) = tensor_after(&text, "shape mismatch for ") {
        let path = file_holding(files, &name)
            .map(|p| p.display().to_string())
            .unwrap_or_else(all);
        return ModelError::Weights {
            path,
            message: format!(
                "tensor `{name}` has the wrong shape for config.json: {}",
                text.trim()
            ),
        };
    }
    ModelError::Weights {
        path: all(),
        message: text,
    }
}

fn tensor_after(text: &str, marker: &str) -> Option<String> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let name: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ',')
        .collect();
    (!name.is_empty()).then_some(name)
}

fn file_holding<'a>(files: &'a [PathBuf], name: &str) -> Option<&'a PathBuf> {
    files.iter().find(|p| {
        // Safety: as in `weights_open`.
        unsafe { candle_core::safetensors::MmapedSafetensors::new(p.as_path()) }
            .map(|st| st.get(name).is_ok())
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tensor_names_in_candle_messages() {
        let msg = "cannot find tensor model.layers.0.mlp.up_proj.weight";
        assert_eq!(
            tensor_after(msg, "cannot find tensor ").as_deref(),
            Some("model.layers.0.mlp.up_proj.weight")
        );
        let msg = "shape mismatch for model.norm.weight, expected: [64], got: [32]";
        assert_eq!(
            tensor_after(msg, "shape mismatch for ").as_deref(),
            Some("model.norm.weight")
        );
        assert_eq!(tensor_after("other", "shape mismatch for "), None);
    }
}

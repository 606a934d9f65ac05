//! A Hugging Face `tokenizer.json` built from a GGUF file's `tokenizer.ggml.*` metadata, for GGUF
//! models that come without one.
//!
//! Byte-level BPE only (`tokenizer.ggml.model = gpt2`): the vocabulary and merges are in the
//! metadata; the pre-tokenizer is named by `tokenizer.ggml.pre` and mapped to the stages
//! llama.cpp runs for that name (`llama-vocab.cpp`): GPT-2's regex for `gpt-2` (also spelled
//! `gpt2`), and for `default` or none with a warning (llama.cpp's default first splits runs of
//! punctuation and digits, which GPT-2's regex does not), and for the StarCoder family (`smollm`, `starcoder`, `refact`, `command-r`) every digit split off
//! first, then GPT-2's regex. Other names are refused rather than guessed: a wrong
//! pre-tokenizer still round-trips text but feeds the model token sequences it never saw.
//! Special tokens (`token_type` 3, control) are matched in raw text as Hugging Face does.

use std::str::FromStr;

use candle_core::quantized::gguf_file::Value;
use serde_json::{json, Map};
use tokenizers::Tokenizer;

use super::gguf::GgufFile;

/// llama.cpp's token types (`llama_token_type`).
const CONTROL: u64 = 3;
const USER_DEFINED: u64 = 4;

/// Why the metadata cannot make a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum GgufTokenizerError {
    #[error("metadata `{0}` is missing or malformed")]
    Metadata(&'static str),
    #[error("tokenizer model `{0}` is not supported (byte-level BPE, `gpt2`, is); put the model's tokenizer.json beside the .gguf")]
    Model(String),
    #[error("pre-tokenizer `{0}` is not supported (default, gpt2, smollm, starcoder, refact, command-r are); put the model's tokenizer.json beside the .gguf")]
    PreTokenizer(String),
    #[error("the built tokenizer.json does not load: {0}")]
    Build(String),
}

/// The `tokenizer.json` document for a GGUF file's tokenizer.
pub fn tokenizer_json(gguf: &GgufFile) -> Result<serde_json::Value, GgufTokenizerError> {
    use GgufTokenizerError as E;
    let model = gguf
        .string("tokenizer.ggml.model")
        .ok_or(E::Metadata("tokenizer.ggml.model"))?;
    if model != "gpt2" {
        return Err(E::Model(model.to_string()));
    }
    let pre = gguf.string("tokenizer.ggml.pre").unwrap_or("default");
    if pre == "default" {
        // llama.cpp's own "default" first splits runs of punctuation and digits apart, which
        // GPT-2's rule does not: a few texts then tokenise differently than llama.cpp would.
        crate::say!(
            "neko: warning: {}: the GGUF names no pre-tokenizer (`default`); neko splits text by GPT-2's rule, which differs from llama.cpp's default on some punctuation and digits: put the model's tokenizer.json beside the .gguf for its exact tokens",
            gguf.path.display()
        );
    }
    let byte_level = json!({
        "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true
    });
    let pre_tokenizer = match pre {
        "default" | "gpt2" | "gpt-2" => byte_level,
        "smollm" | "starcoder" | "refact" | "command-r" => json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level]
        }),
        other => return Err(E::PreTokenizer(other.to_string())),
    };
    let tokens =
        strings(gguf.get("tokenizer.ggml.tokens")).ok_or(E::Metadata("tokenizer.ggml.tokens"))?;
    let merges =
        strings(gguf.get("tokenizer.ggml.merges")).ok_or(E::Metadata("tokenizer.ggml.merges"))?;
    let types: Vec<u64> = match gguf.get("tokenizer.ggml.token_type") {
        Some(Value::Array(a)) => a.iter().map(|v| int(v).unwrap_or(1)).collect(),
        _ => vec![1; tokens.len()],
    };
    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        vocab.insert(tok.clone(), json!(id));
        let ty = types.get(id).copied().unwrap_or(1);
        if ty == CONTROL || ty == USER_DEFINED {
            added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty == CONTROL
            }));
        }
    }
    let id_of = |key: &str| {
        gguf.uint(key)
            .ok()
            .flatten()
            .and_then(|id| tokens.get(id as usize).cloned())
    };
    let unk = id_of("tokenizer.ggml.unknown_token_id");
    let add_bos = gguf.flag("tokenizer.ggml.add_bos_token") == Some(true);
    let bos = id_of("tokenizer.ggml.bos_token_id")
        .zip(gguf.uint("tokenizer.ggml.bos_token_id").ok().flatten());
    // Without BOS to add, the ByteLevel post-processor only fixes offsets (as SmolLM2's own
    // tokenizer.json has it); with BOS, a template adds it as Llama's tokenizer.json does.
    let post_processor = match bos {
        Some((bos, id)) if add_bos => json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}
            ],
            "special_tokens": {bos.clone(): {"id": bos, "ids": [id], "tokens": [bos]}}
        }),
        _ => json!({
            "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true
        }),
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": {
            "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true
        },
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": unk,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": merges
        }
    }))
}

/// The tokenizer of a GGUF file, built from its metadata.
pub fn tokenizer(gguf: &GgufFile) -> Result<Tokenizer, GgufTokenizerError> {
    let json = tokenizer_json(gguf)?;
    Tokenizer::from_str(&json.to_string()).map_err(|e| GgufTokenizerError::Build(e.to_string()))
}

/// The GGUF file's vocabulary (`tokenizer.ggml.tokens`), by id.
pub fn vocabulary(gguf: &GgufFile) -> Option<Vec<String>> {
    strings(gguf.get("tokenizer.ggml.tokens"))
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match *v {
        Value::I32(x) => u64::try_from(x).ok(),
        Value::U32(x) => Some(x as u64),
        Value::I64(x) => u64::try_from(x).ok(),
        Value::U64(x) => Some(x),
        Value::U8(x) => Some(x as u64),
        Value::I8(x) => u64::try_from(x).ok(),
        Value::U16(x) => Some(x as u64),
        Value::I16(x) => u64::try_from(x).ok(),
        _ => None,
    }
}

//! Wrong model files fail before any record is processed, with exit 2 and a message naming the
//! file and tensor at fault.

use std::path::Path;

use serde_json::Value;

use crate::util::{copy_fixture, neko, run_with_stdin};

/// A copy of tiny-llama in a temporary folder.
fn copy_model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture("tiny-llama", dir.path());
    dir
}

fn edit_config(dir: &Path, field: &str, value: Value) {
    let cfg = dir.join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v[field] = value;
    std::fs::write(&cfg, v.to_string()).unwrap();
}

/// Runs `neko correct` on one record; returns (exit code, stdout, stderr).
fn correct_with(model: &Path) -> (Option<i32>, String, String) {
    correct_with_flags(model, &[])
}

/// [`correct_with`] with more flags (`--adapter A`, `--quant Q`).
fn correct_with_flags(model: &Path, flags: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let mut cmd = neko();
    cmd.args(["correct", "--task", "asr", "--model"])
        .arg(model)
        .args(flags)
        .arg("-");
    let out = run_with_stdin(cmd, b"{\"input\": [\"a record\"]}\n");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = copy_model();
    let path = dir.path().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    tensors.remove("model.layers.1.mlp.up_proj.weight").unwrap();
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let (code, out, err) = correct_with(dir.path());
    assert_eq!(code, Some(2));
    assert!(out.is_empty(), "no record may be written: {out}");
    assert!(
        err.contains("model.layers.1.mlp.up_proj.weight") && err.contains("missing"),
        "{err}"
    );
}

/// A config whose token ids lie outside its vocabulary, or whose sizes are zero, fails at load
/// naming the field, not at every record's decoding.
#[test]
fn config_values_that_cannot_decode_are_named_at_load() {
    for (field, value, says) in [
        (
            "eos_token_id",
            Value::from(99_999),
            "outside the vocabulary",
        ),
        (
            "eos_token_id",
            serde_json::json!([2, 99_999]),
            "outside the vocabulary",
        ),
        ("bos_token_id", Value::from("<s>"), "expected a token id"),
        ("max_position_embeddings", Value::from(0), "at least 1"),
        ("rms_norm_eps", Value::from(-1), "small positive"),
        (
            "rope_parameters",
            serde_json::json!({"rope_theta": 0, "rope_type": "default"}),
            "base above 1",
        ),
        // The fixture gives rope_theta nested too: two values that disagree.
        ("rope_theta", Value::from(5e5), "make them agree"),
        ("sliding_window", Value::from(0), "at least 1"),
    ] {
        let dir = copy_model();
        edit_config(dir.path(), field, value);
        // The nested base is named as the top-level one.
        let field = match field {
            "rope_parameters" => "rope_theta",
            other => other,
        };
        let (code, out, err) = correct_with(dir.path());
        assert_eq!(code, Some(2), "{field}: {err}");
        assert!(out.is_empty());
        assert!(
            err.contains("config.json") && err.contains(field) && err.contains(says),
            "{err}"
        );
    }
    // A token id a tool wrote as a float is still one.
    let dir = copy_model();
    edit_config(dir.path(), "eos_token_id", Value::from(2.0));
    let (code, _, err) = correct_with(dir.path());
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_shape_that_does_not_match_config_names_file_and_tensor() {
    let dir = copy_model();
    edit_config(dir.path(), "intermediate_size", 96.into());
    let (code, out, err) = correct_with(dir.path());
    assert_eq!(code, Some(2));
    assert!(out.is_empty());
    assert!(
        err.contains("model.safetensors") && err.contains("mlp.") && err.contains("wrong shape"),
        "{err}"
    );
}

#[test]
fn a_truncated_safetensors_file_is_named() {
    let dir = copy_model();
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let (code, out, err) = correct_with(dir.path());
    assert_eq!(code, Some(2));
    assert!(out.is_empty());
    assert!(
        err.contains("model.safetensors") && err.contains("truncated or corrupt"),
        "{err}"
    );
}

#[test]
fn a_tokenizer_larger_than_the_embedding_is_refused() {
    let dir = copy_model();
    edit_config(dir.path(), "vocab_size", 256.into());
    let (code, out, err) = correct_with(dir.path());
    assert_eq!(code, Some(2));
    assert!(out.is_empty());
    assert!(
        err.contains("tokenizer.json") && err.contains("512 tokens") && err.contains("256 rows"),
        "{err}"
    );
    // Less than half the embedding's rows: another model's tokenizer.
    edit_config(dir.path(), "vocab_size", 1100.into());
    let (code, _, err) = correct_with(dir.path());
    assert_eq!(code, Some(2));
    assert!(
        err.contains("1100 rows") && err.contains("less than half"),
        "{err}"
    );
}

#[test]
fn a_missing_model_folder_file_is_named() {
    let dir = copy_model();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let (code, _, err) = correct_with(dir.path());
    assert_eq!(code, Some(2));
    assert!(
        err.contains("tokenizer.json") && err.contains("missing"),
        "{err}"
    );
}

/// A broken config.json is named once, with what is wrong with it, not the same parse error
/// three times over.
#[test]
fn a_broken_config_is_named_once() {
    let dir = copy_model();
    std::fs::write(
        dir.path().join("config.json"),
        "{\"model_type\": \"llama\", broken",
    )
    .unwrap();
    let (code, out, err) = correct_with(dir.path());
    assert_eq!(code, Some(2));
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("config.json: not valid JSON"), "{err}");
    assert_eq!(err.matches("key must be a string").count(), 1, "{err}");
}

/// An adapter that is not a safetensors file is named as the adapter.
#[test]
fn an_adapter_that_is_not_safetensors_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("adapter.jsonl");
    std::fs::write(&adapter, "{}\n").unwrap();
    let flags = ["--adapter".as_ref(), adapter.as_os_str()];
    let (code, _, err) = correct_with_flags(&crate::util::fixture("tiny-llama"), &flags);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("adapter.jsonl: cannot read the adapter"),
        "{err}"
    );
}

/// A tensor in two shards is refused (which copy is meant is not for neko to guess), naming it.
#[test]
fn a_tensor_in_two_shards_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture("tiny-mixtral", dir.path());
    let last = dir.path().join("model-00008-of-00008.safetensors");
    let mut tensors = candle_core::safetensors::load(&last, &candle_core::Device::Cpu).unwrap();
    let first = dir.path().join("model-00001-of-00008.safetensors");
    let shard1 = candle_core::safetensors::load(&first, &candle_core::Device::Cpu).unwrap();
    let (name, t) = shard1.into_iter().next().unwrap();
    tensors.insert(name.clone(), t);
    candle_core::safetensors::save(&tensors, &last).unwrap();
    let (code, out, err) = correct_with(dir.path());
    assert_eq!(code, Some(2));
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!("{name}: in more than one weight file")),
        "{err}"
    );
}

/// Weights quantised at load answer differently: `--quant` is in the run's signature, so a
/// resume cannot mix the two.
#[test]
fn quantisation_is_signed() {
    let flags = ["--quant".as_ref(), "q8_0".as_ref()];
    let (code, _, err) = correct_with_flags(&crate::util::fixture("tiny-llama"), &flags);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("|dtype:f32|quant:q8_0|"), "{err}");
}

/// tokenizer_config.json shapes the prompt (chat template, BOS): a broken one is an error
/// naming it, and a changed one changes the model's signature.
#[test]
fn tokenizer_config_is_checked_and_signed() {
    let dir = copy_model();
    let cfg = dir.path().join("tokenizer_config.json");
    let signature = |dir: &Path| -> String {
        let (code, _, err) = correct_with(dir);
        assert_eq!(code, Some(0), "{err}");
        err.lines()
            .find(|l| l.starts_with("neko: correct|"))
            .unwrap()
            .to_string()
    };
    let before = signature(dir.path());
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("\"add_bos_token\": false", "\"add_bos_token\": true"),
    )
    .unwrap();
    assert_ne!(signature(dir.path()), before);
    std::fs::write(&cfg, "{\"add_bos_token\": true,}").unwrap();
    let (code, out, err) = correct_with(dir.path());
    assert_eq!(code, Some(2));
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("tokenizer_config.json: not valid JSON"),
        "{err}"
    );
}

/// An adapter tensor of the wrong shape is named with the adapter's file and both shapes.
#[test]
fn an_adapter_of_the_wrong_shape_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("adapter.safetensors");
    let t =
        candle_core::Tensor::zeros(32, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("model.norm.weight".to_string(), t)]),
        &adapter,
    )
    .unwrap();
    let flags = ["--adapter".as_ref(), adapter.as_os_str()];
    let (code, _, err) = correct_with_flags(&crate::util::fixture("tiny-llama"), &flags);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("adapter.safetensors: tensor `model.norm.weight` has shape [32]"),
        "{err}"
    );
}

/// Tensors the config's architecture does not use (here a third layer of a two-layer config)
/// are named in a warning; the run goes on. The shipped fixture has none.
#[test]
fn unused_checkpoint_tensors_are_named() {
    let (code, _, err) = correct_with(&crate::util::fixture("tiny-llama"));
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("not used"), "{err}");
    let dir = copy_model();
    let path = dir.path().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    let extra = tensors["model.layers.1.mlp.up_proj.weight"].clone();
    tensors.insert("model.layers.2.mlp.up_proj.weight".to_string(), extra);
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let (code, out, err) = correct_with(dir.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("prediction"), "{out}");
    assert!(
        err.contains("1 checkpoint tensors are not used")
            && err.contains("model.layers.2.mlp.up_proj.weight"),
        "{err}"
    );
}

/// A sharded checkpoint's index may name only files beside it, and shards without their index
/// are named as that, not as a missing model.safetensors.
#[test]
fn a_shard_index_names_files_of_its_folder_only() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture("tiny-mixtral", dir.path());
    let index = dir.path().join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    let first = v["weight_map"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let whole = v.clone();
    v["weight_map"][&first] = "../elsewhere/model.safetensors".into();
    std::fs::write(&index, v.to_string()).unwrap();
    let (code, _, err) = correct_with(dir.path());
    assert_eq!(code, Some(2));
    assert!(err.contains("no file name of this folder"), "{err}");
    // An index naming no shard is named (the message had an empty path), and a tensor no
    // shard holds is blamed on the shards, not only on config.json.
    v["weight_map"] = serde_json::json!({});
    std::fs::write(&index, v.to_string()).unwrap();
    let (code, _, err) = correct_with(dir.path());
    assert_eq!(code, Some(2));
    assert!(
        err.contains("index.json: its `weight_map` names no shard"),
        "{err}"
    );
    let shard = whole["weight_map"][&first].as_str().unwrap().to_string();
    let path = dir.path().join(&shard);
    let mut tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    tensors.remove(&first);
    candle_core::safetensors::save(&tensors, &path).unwrap();
    std::fs::write(&index, whole.to_string()).unwrap();
    let (code, _, err) = correct_with(dir.path());
    assert_eq!(code, Some(2));
    assert!(err.contains("is in none of the shards"), "{err}");
    std::fs::remove_file(&index).unwrap();
    let (code, _, err) = correct_with(dir.path());
    assert_eq!(code, Some(2));
    assert!(
        err.contains("model.safetensors.index.json") && err.contains("shard files"),
        "{err}"
    );
}

/// generation_config.json's end tokens stop decoding too, as transformers' `generate` and vLLM
/// stop (some instruct models list their end-of-turn id only there); a broken one is named.
#[test]
fn generation_config_end_tokens_are_end_tokens() {
    let dir = copy_model();
    let gen = dir.path().join("generation_config.json");
    let spec = dir.path().to_str().unwrap();
    let cpu = candle_core::Device::Cpu;
    let load = || neko::model::Model::load(spec, &cpu, candle_core::DType::F32);
    std::fs::write(&gen, r#"{"eos_token_id": [2, 7, 99999]}"#).unwrap();
    let m = load().unwrap();
    let past = "ids past the vocabulary left out";
    assert_eq!(m.config.eos_token_ids, vec![2, 7], "{past}");
    // It does not sign the model (every folder neko writes has one, and a fingerprint that
    // took it in would refuse every training run and output made before): a run's signature
    // names the end tokens only it adds.
    assert_eq!(m.generation_ends, vec![7]);
    let signed = |gen_config: &str| {
        std::fs::write(&gen, gen_config).unwrap();
        crate::util::correct_signature(dir.path(), &[])
    };
    assert!(signed(r#"{"eos_token_id": [2, 7]}"#).contains("|dtype:f32|ends:7|"));
    assert!(signed(r#"{"eos_token_id": [9, 2, 7]}"#).contains("|dtype:f32|ends:7,9|"));
    let ends = signed(r#"{"eos_token_id": [2, 7]}"#);
    assert_eq!(
        crate::util::undocumented_signature_fields(&ends),
        Vec::<String>::new()
    );
    let plain = signed(r#"{"eos_token_id": 2}"#);
    assert!(
        plain.contains("|dtype:f32|routing:") && !plain.contains("ends:"),
        "{plain}"
    );
    std::fs::write(&gen, "{broken").unwrap();
    let err = neko::model::Model::load(spec, &cpu, candle_core::DType::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("generation_config.json") && err.contains("not valid JSON"),
        "{err}"
    );
}

/// A folder holding a PyTorch `.bin` checkpoint and no safetensors is told what it holds.
#[test]
fn a_pytorch_bin_checkpoint_is_named() {
    let dir = copy_model();
    std::fs::rename(
        dir.path().join("model.safetensors"),
        dir.path().join("pytorch_model.bin"),
    )
    .unwrap();
    let (code, _, err) = correct_with(dir.path());
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("pytorch_model.bin") && err.contains("safetensors"),
        "{err}"
    );
}

/// `neko info` reports the chat template `neko correct` wraps prompts in: a ChatML template
/// whose `<|im_end|>` the tokenizer lacks is not used, so it is not reported either.
#[test]
fn info_reports_the_chat_template_correct_uses() {
    let dir = copy_model();
    let template = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}";
    let cfg = dir.path().join("tokenizer_config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["chat_template"] = Value::from(template);
    std::fs::write(&cfg, v.to_string()).unwrap();
    let info_of = |dir: &Path| -> (Value, String) {
        let out = crate::util::ok(neko().args(["info", "--json", "--model"]).arg(dir));
        let info = serde_json::from_slice::<Value>(&out.stdout).unwrap();
        (info, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let template_of = |dir: &Path| info_of(dir).0["chat_template"].clone();
    // A declared template left unused is said, not reported as none declared: by info in
    // its report, by correct on stderr.
    let (info, err) = info_of(dir.path());
    assert_eq!(info["chat_template"], Value::Null);
    let why = "its chat template ends turns with <|im_end|>, which its tokenizer lacks";
    assert_eq!(info["chat_template_ignored"], why);
    assert!(!err.contains(why), "{err}");
    let (code, _, err) = correct_with(dir.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(why) && err.contains("prompts go unwrapped"),
        "{err}"
    );
    let text = crate::util::run_ok(neko().args(["info", "--model"]).arg(dir.path()));
    assert!(
        text.contains(&format!("chat template  none used: {why}")),
        "{text}"
    );
    let tok = dir.path().join("tokenizer.json");
    let mut t: Value = serde_json::from_str(&std::fs::read_to_string(&tok).unwrap()).unwrap();
    let added = serde_json::json!({"id": 512, "content": "<|im_end|>", "single_word": false,
        "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    t["added_tokens"].as_array_mut().unwrap().push(added);
    std::fs::write(&tok, t.to_string()).unwrap();
    assert_eq!(template_of(dir.path()), "chatml");
    // Llama 3's format is not rendered: said, once per load.
    let llama3 = copy_model();
    let cfg = llama3.path().join("tokenizer_config.json");
    v["chat_template"] = Value::from("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>{% endfor %}");
    std::fs::write(&cfg, v.to_string()).unwrap();
    let (info, _) = info_of(llama3.path());
    assert_eq!(info["chat_template"], Value::Null);
    let (code, _, err) = correct_with(llama3.path());
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(err.matches("is not ChatML").count(), 1, "{err}");
    // --no-chat-template says that is meant: nothing on stderr.
    let (code, _, err) = correct_with_flags(llama3.path(), &["--no-chat-template".as_ref()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("ChatML"), "{err}");
}

/// A mistyped .gguf path is a missing file, not a hub id missing from the cache; a `--to`
/// that is a file is refused before the model is written (it was written whole, then failed,
/// its staging folder left behind).
#[test]
fn a_missing_gguf_and_a_file_for_a_folder_are_said_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("smol.ggfu.gguf");
    let err = crate::util::refused(neko().args(["info", "--model"]).arg(&typo));
    assert!(err.contains("smol.ggfu.gguf: no such file"), "{err}");
    let file = dir.path().join("taken");
    std::fs::write(&file, "x").unwrap();
    let err = crate::util::refused(
        neko()
            .args(["convert", "--from"])
            .arg(crate::util::fixture("tiny-llama"))
            .arg("--to")
            .arg(&file),
    );
    assert!(err.contains("a file, not a folder"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

/// An empty `NEKO_CACHE` is unset, as the setup scripts read it: the default model is looked
/// for in `~/.cache/neko`, not in the current folder.
#[test]
fn an_empty_neko_cache_is_the_default_one() {
    let home = tempfile::tempdir().unwrap();
    let err = crate::util::refused(
        neko()
            .env("HOME", home.path())
            .env("NEKO_CACHE", "")
            .env_remove("NEKO_MODEL")
            .arg("info"),
    );
    let want = home.path().join(".cache/neko/neko-smol");
    assert!(
        err.contains(&format!("is not set up in {}", want.display())),
        "{err}"
    );
}

/// BOS as `apply_chat_template` gives it: in a chat template's conversation, exactly when the
/// template writes `{{ bos_token }}` (not from `add_bos_token`); without a template, from
/// `add_bos_token`, the token named by tokenizer_config.json when config.json has no id.
#[test]
fn prompts_get_the_bos_their_template_or_settings_ask_for() {
    let chatml = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}";
    let first_id = |template: Option<String>, add_bos: bool, config_bos: bool, post: bool| {
        let dir = copy_model();
        let cfg = dir.path().join("tokenizer_config.json");
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        v["add_bos_token"] = Value::from(add_bos);
        if let Some(t) = template {
            v["chat_template"] = Value::from(t);
        }
        std::fs::write(&cfg, v.to_string()).unwrap();
        let tok = dir.path().join("tokenizer.json");
        let mut t: Value = serde_json::from_str(&std::fs::read_to_string(&tok).unwrap()).unwrap();
        // Ids 510 and 511 (the last two merges' tokens) become the ChatML markers.
        let merges = t["model"]["merges"].as_array_mut().unwrap();
        merges.truncate(merges.len() - 2);
        let vocab = t["model"]["vocab"].as_object_mut().unwrap();
        vocab.retain(|_, id| id.as_u64() < Some(510));
        for (id, content) in [(510, "<|im_start|>"), (511, "<|im_end|>")] {
            t["model"]["vocab"][content] = Value::from(id);
            let token = serde_json::json!({"id": id, "content": content, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": true});
            t["added_tokens"].as_array_mut().unwrap().push(token);
        }
        if post {
            // A post-processor that puts <s> first, as Llama tokenizers' do.
            let s = serde_json::json!({"SpecialToken": {"id": "<s>", "type_id": 0}});
            let a = serde_json::json!({"Sequence": {"id": "A", "type_id": 0}});
            let b = serde_json::json!({"Sequence": {"id": "B", "type_id": 1}});
            t["post_processor"] = serde_json::json!({"type": "TemplateProcessing",
                "single": [s, a], "pair": [s, a, b],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}});
        }
        std::fs::write(&tok, t.to_string()).unwrap();
        if !config_bos {
            edit_config(dir.path(), "bos_token_id", Value::Null);
        }
        let mut cmd = neko();
        cmd.args(["correct", "--dump-prompts", "--task", "asr", "--model"])
            .arg(dir.path())
            .arg("-");
        let out = run_with_stdin(cmd, b"{\"input\": [\"a record\"]}\n");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line: Value = serde_json::from_slice(&out.stdout).unwrap();
        line["ids"][0].as_u64().unwrap()
    };
    let with_bos = format!("{{{{ bos_token }}}}{chatml}");
    assert_eq!(first_id(Some(with_bos.clone()), false, true, false), 1);
    assert_eq!(first_id(Some(with_bos), true, true, false), 1);
    assert_eq!(first_id(Some(chatml.to_string()), true, true, false), 510);
    // The tokenizer's own BOS is left out of a conversation too, kept without a template.
    assert_eq!(first_id(Some(chatml.to_string()), false, true, true), 510);
    assert_eq!(first_id(None, false, true, true), 1);
    assert_eq!(first_id(None, true, false, false), 1);
    assert_ne!(first_id(None, false, true, false), 1);
}

/// Named chat templates without a `default` (transformers refuses to choose) are said to be
/// left unused, not reported as no template at all.
#[test]
fn named_templates_without_a_default_are_said_unused() {
    let dir = copy_model();
    let cfg = dir.path().join("tokenizer_config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["chat_template"] = serde_json::json!([{"name": "tool_use", "template": "{{ x }}"}]);
    std::fs::write(&cfg, v.to_string()).unwrap();
    let out = crate::util::ok(neko().args(["info", "--json", "--model"]).arg(dir.path()));
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        info["chat_template_ignored"],
        "its tokenizer_config.json names chat templates but none `default`"
    );
}

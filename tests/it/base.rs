//! The pretrained base (issue: GGUF loading, tokenizer, conversion, upcycling).
//!
//! Tests on tiny fixtures always run: tiny-llama written as GGUF the way llama.cpp writes it
//! (Q/K rows permuted, tokenizer in metadata) loads to the same logits and tokens, converts
//! back to the same tensors, and upcycles (full and low-rank experts) to the dense logits.
//! Tests on the real SmolLM2-135M-Instruct GGUF skip with `SKIP:` when it is not cached
//! (`scripts/fetch-base.sh`; `$NEKO_BASE_GGUF` names another path).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value as GValue};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use neko::convert::Checkpoint;
use neko::generate::{greedy_batch, Request, Settings};
use neko::model::{ChatTemplate, LoadOptions, Logits, Model};
use serde_json::Value;

use crate::util::{fixture, neko, ok, run_ok, shared_data};

// ---------------------------------------------------------------------------------------------
// helpers

fn load(spec: &Path) -> Model {
    Model::load(spec.to_str().unwrap(), &Device::Cpu, DType::F32).unwrap()
}

fn load_quant(spec: &Path, q: GgmlDType) -> Model {
    let mut opts = LoadOptions::new(&Device::Cpu, DType::F32);
    opts.quantize = Some(q);
    Model::load_with(spec.to_str().unwrap(), &opts).unwrap()
}

/// All-position logits `(seq, vocab)` of one row, forcing `forced` into every top-k.
fn logits(model: &mut Model, ids: &[u32], forced: Option<usize>) -> Tensor {
    model.decoder.reset(ids.len());
    let t = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .decoder
        .forward(&t, &[0], forced, Logits::All)
        .unwrap()
        .squeeze(0)
        .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn never_stop(_: &[u32]) -> bool {
    false
}

/// Greedy continuations of `prompts`, `n` tokens each, EOS ignored.
fn greedy(
    model: &mut Model,
    prompts: &[Vec<u32>],
    n: usize,
    forced: Option<usize>,
) -> Vec<Vec<u32>> {
    let requests: Vec<Request> = prompts
        .iter()
        .map(|p| Request {
            prompt: p.clone(),
            max_new_tokens: n,
        })
        .collect();
    let settings = Settings {
        eos: &[],
        forced_expert: forced,
        stopped: &never_stop,
        choose: None,
    };
    greedy_batch(model.decoder.as_mut(), &requests, &settings)
        .unwrap()
        .into_iter()
        .map(|g| g.tokens)
        .collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The tiny fixtures' prompts (lengths 66, 20, 55, BOS included).
fn tiny_prompts() -> Vec<Vec<u32>> {
    let r = read_json(&fixture("tiny-llama/reference.json"));
    r["input_ids"].as_array().unwrap().iter().map(ids).collect()
}

/// Every string value in the shared data's JSON/JSONL files under `rel` (recursively).
fn shared_texts(rel: &str) -> Option<Vec<String>> {
    let dir = shared_data(rel)?;
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl" || e == "json"))
        .collect();
    paths.sort();
    fn collect(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            Value::Object(o) => o.values().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    for p in paths {
        let text = std::fs::read_to_string(&p).unwrap();
        if p.extension().unwrap() == "jsonl" {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                collect(&serde_json::from_str(line).unwrap(), &mut out);
            }
        } else {
            collect(&serde_json::from_str(&text).unwrap(), &mut out);
        }
    }
    Some(out)
}

/// Writes a Hugging Face Llama folder as a GGUF file the way llama.cpp's converter does:
/// llama.* metadata, the tokenizer in tokenizer.ggml.*, GGUF tensor names, and the rows of
/// q_proj/k_proj permuted for interleaved RoPE (`LlamaModel.permute`). Projections are stored
/// as `proj`, everything else as f32. Mixtral experts are written per expert
/// (`ffn_gate.E`) or, with `stacked`, as llama.cpp writes them today (`ffn_gate_exps`).
fn write_gguf(src: &Path, dst: &Path, proj: GgmlDType, chat_template: Option<&str>) {
    write_gguf_with(src, dst, proj, chat_template, false, false)
}

fn write_gguf_with(
    src: &Path,
    dst: &Path,
    proj: GgmlDType,
    chat_template: Option<&str>,
    stacked: bool,
    add_bos: bool,
) {
    write_gguf_edited(
        src,
        dst,
        proj,
        chat_template,
        stacked,
        add_bos,
        &|_, w| w,
        &[],
    )
}

/// [`write_gguf_with`], each tensor (Hugging Face name, laid out as llama.cpp stores it) passed
/// through `edit` before it is written, and `extra` metadata added: malformed files for the
/// loader's checks.
#[allow(clippy::too_many_arguments)]
fn write_gguf_edited(
    src: &Path,
    dst: &Path,
    proj: GgmlDType,
    chat_template: Option<&str>,
    stacked: bool,
    add_bos: bool,
    edit: &dyn Fn(&str, Tensor) -> Tensor,
    extra: &[(&str, GValue)],
) {
    let cfg = read_json(&src.join("config.json"));
    let tok = read_json(&src.join("tokenizer.json"));
    let u = |k: &str| cfg[k].as_u64().unwrap() as u32;
    let heads = u("num_attention_heads") as usize;
    let head_dim = cfg["head_dim"]
        .as_u64()
        .map(|d| d as u32)
        .unwrap_or(u("hidden_size") / heads as u32);
    let kv_heads = u("num_key_value_heads") as usize;
    let theta = cfg["rope_parameters"]["rope_theta"].as_f64().unwrap() as f32;
    // tokens by id, special ones typed CONTROL (3)
    let vocab = tok["model"]["vocab"].as_object().unwrap();
    let mut tokens = vec![String::new(); vocab.len()];
    for (t, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = t.clone();
    }
    let mut types = vec![1i32; tokens.len()];
    for a in tok["added_tokens"].as_array().unwrap() {
        types[a["id"].as_u64().unwrap() as usize] = 3;
    }
    let merges: Vec<GValue> = tok["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            Value::String(s) => GValue::String(s.clone()),
            Value::Array(p) => GValue::String(format!(
                "{} {}",
                p[0].as_str().unwrap(),
                p[1].as_str().unwrap()
            )),
            _ => panic!("merge {m}"),
        })
        .collect();
    let mut md: Vec<(String, GValue)> = vec![
        (
            "general.architecture".into(),
            GValue::String("llama".into()),
        ),
        (
            "llama.block_count".into(),
            GValue::U32(u("num_hidden_layers")),
        ),
        (
            "llama.context_length".into(),
            GValue::U32(u("max_position_embeddings")),
        ),
        (
            "llama.embedding_length".into(),
            GValue::U32(u("hidden_size")),
        ),
        (
            "llama.feed_forward_length".into(),
            GValue::U32(u("intermediate_size")),
        ),
        (
            "llama.attention.head_count".into(),
            GValue::U32(heads as u32),
        ),
        (
            "llama.attention.head_count_kv".into(),
            GValue::U32(kv_heads as u32),
        ),
        ("llama.rope.freq_base".into(), GValue::F32(theta)),
        ("llama.rope.dimension_count".into(), GValue::U32(head_dim)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            GValue::F32(cfg["rms_norm_eps"].as_f64().unwrap() as f32),
        ),
        ("tokenizer.ggml.model".into(), GValue::String("gpt2".into())),
        // llama.cpp's spelling of GPT-2's rule, which tiny-llama's tokenizer.json follows.
        ("tokenizer.ggml.pre".into(), GValue::String("gpt-2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            GValue::Array(tokens.into_iter().map(GValue::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            GValue::Array(types.into_iter().map(GValue::I32).collect()),
        ),
        ("tokenizer.ggml.merges".into(), GValue::Array(merges)),
        (
            "tokenizer.ggml.bos_token_id".into(),
            GValue::U32(u("bos_token_id")),
        ),
        (
            "tokenizer.ggml.eos_token_id".into(),
            GValue::U32(u("eos_token_id")),
        ),
        ("tokenizer.ggml.add_bos_token".into(), GValue::Bool(add_bos)),
    ];
    let experts = cfg["num_local_experts"].as_u64().unwrap_or(0) as usize;
    if experts > 0 {
        md.push(("llama.expert_count".into(), GValue::U32(experts as u32)));
        md.push((
            "llama.expert_used_count".into(),
            GValue::U32(u("num_experts_per_tok")),
        ));
    }
    if let Some(t) = chat_template {
        md.push(("tokenizer.chat_template".into(), GValue::String(t.into())));
    }
    let mut weights = HashMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            weights.extend(candle_core::safetensors::load(&path, &Device::Cpu).unwrap());
        }
    }
    let mut names: Vec<&String> = weights.keys().collect();
    names.sort();
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for name in names {
        let mut w = weights[name].clone();
        let n_head = if name.ends_with("q_proj.weight") {
            Some(heads)
        } else if name.ends_with("k_proj.weight") {
            Some(kv_heads)
        } else {
            None
        };
        if let Some(h) = n_head {
            // llama.cpp: w.reshape(h, 2, out/h/2, in).swapaxes(1, 2).reshape(w.shape)
            let (out, inp) = w.dims2().unwrap();
            w = w
                .reshape((h, 2, out / h / 2, inp))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
                .reshape((out, inp))
                .unwrap();
        }
        let w = edit(name, w);
        let dtype = if w.rank() == 2 { proj } else { GgmlDType::F32 };
        if stacked && name.contains(".experts.") {
            continue;
        }
        let gname = neko::model::gguf::gguf_name(name).unwrap();
        tensors.push((gname, QTensor::quantize(&w, dtype).unwrap()));
    }
    if stacked {
        for layer in 0..u("num_hidden_layers") {
            for (w, g) in [("w1", "ffn_gate"), ("w2", "ffn_down"), ("w3", "ffn_up")] {
                let all: Vec<Tensor> = (0..experts)
                    .map(|e| {
                        weights[&format!(
                            "model.layers.{layer}.block_sparse_moe.experts.{e}.{w}.weight"
                        )]
                            .clone()
                    })
                    .collect();
                let t = Tensor::stack(&all, 0).unwrap();
                tensors.push((
                    format!("blk.{layer}.{g}_exps.weight"),
                    QTensor::quantize(&t, proj).unwrap(),
                ));
            }
        }
    }
    md.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let md_refs: Vec<(&str, &GValue)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(dst).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

// ---------------------------------------------------------------------------------------------
// GGUF on tiny fixtures

#[test]
fn gguf_f32_with_llama_cpp_permutation_matches_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    write_gguf(&fixture("tiny-llama"), &gguf, GgmlDType::F32, None);
    let mut want = load(&fixture("tiny-llama"));
    let mut got = load(&gguf);
    assert!(got.files.tokenizer_in_gguf());
    assert_eq!(got.config.num_key_value_heads, 2);
    assert!(got.config.tie_word_embeddings);
    for p in tiny_prompts() {
        let d = max_diff(&logits(&mut want, &p, None), &logits(&mut got, &p, None));
        assert!(d < 1e-5, "max logit diff {d}");
    }
    assert_eq!(
        greedy(&mut got, &tiny_prompts(), 20, None),
        greedy(&mut want, &tiny_prompts(), 20, None)
    );
}

/// Mixtral GGUFs, per-expert (`ffn_gate.E`) and stacked (`ffn_gate_exps`) layouts: the same
/// logits as the safetensors model, under learned and forced routing.
#[test]
fn gguf_mixtral_in_both_expert_layouts_matches_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut want = load(&fixture("tiny-mixtral"));
    let r = read_json(&fixture("tiny-mixtral/reference.json"));
    let prompt = ids(&r["input_ids"][1]);
    for stacked in [false, true] {
        let gguf = tmp.path().join(format!("mixtral-{stacked}.gguf"));
        write_gguf_with(
            &fixture("tiny-mixtral"),
            &gguf,
            GgmlDType::F32,
            None,
            stacked,
            false,
        );
        let mut got = load(&gguf);
        assert_eq!(got.config.num_local_experts, 4);
        assert!(!got.config.tie_word_embeddings);
        for forced in [None, Some(2)] {
            let d = max_diff(
                &logits(&mut want, &prompt, forced),
                &logits(&mut got, &prompt, forced),
            );
            assert!(d < 1e-5, "stacked {stacked}, forced {forced:?}: {d}");
        }
    }
}

/// `tokenizer.ggml.add_bos_token` makes the built tokenizer add BOS, as Llama's tokenizer.json
/// does; without it nothing is added (SmolLM2).
#[test]
fn gguf_tokenizer_adds_bos_when_the_metadata_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    for add in [false, true] {
        let gguf = tmp.path().join(format!("bos-{add}.gguf"));
        write_gguf_with(
            &fixture("tiny-llama"),
            &gguf,
            GgmlDType::F32,
            None,
            false,
            add,
        );
        let tok = load(&gguf).tokenizer;
        let with = tok.encode("hello there", true).unwrap();
        let without = tok.encode("hello there", false).unwrap();
        assert_eq!(with.get_ids().first() == Some(&1), add);
        assert_ne!(without.get_ids().first(), Some(&1));
    }
}

#[test]
fn gguf_tokenizer_from_metadata_encodes_like_tokenizer_json() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    write_gguf(&fixture("tiny-llama"), &gguf, GgmlDType::F32, None);
    let want = load(&fixture("tiny-llama")).tokenizer;
    let got = load(&gguf).tokenizer;
    let r = read_json(&fixture("tiny-llama/reference.json"));
    let mut texts: Vec<String> = r["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    texts.extend(["<s>x</s>", " \t\r\n  ünï 你好 🙂 1234"].map(String::from));
    if let Some(shared) = shared_texts("synth") {
        texts.extend(shared.into_iter().step_by(7));
    }
    for t in &texts {
        let a = want.encode(t.as_str(), false).unwrap();
        let b = got.encode(t.as_str(), false).unwrap();
        assert_eq!(a.get_ids(), b.get_ids(), "{t:?}");
        assert_eq!(&got.decode(b.get_ids(), false).unwrap(), t);
    }
}

/// A tokenizer.json beside a GGUF file is used only when its ids name the GGUF's tokens: the
/// model's own passes, one with the same size but other ids is refused, naming both files.
#[test]
fn a_tokenizer_json_beside_a_gguf_must_match_its_vocabulary() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    write_gguf(&fixture("tiny-llama"), &gguf, GgmlDType::F32, None);
    let beside = tmp.path().join("tokenizer.json");
    std::fs::copy(fixture("tiny-llama/tokenizer.json"), &beside).unwrap();
    assert!(!load(&gguf).files.tokenizer_in_gguf());
    let mut tok = read_json(&beside);
    let n = tok["model"]["vocab"].as_object().unwrap().len() as u64;
    let added: Vec<u64> = tok["added_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    let vocab = tok["model"]["vocab"].as_object_mut().unwrap();
    for id in vocab.values_mut() {
        let i = id.as_u64().unwrap();
        if !added.contains(&i) && i >= 16 {
            *id = ((i - 16 + 1) % (n - 16) + 16).into();
        }
    }
    std::fs::write(&beside, tok.to_string()).unwrap();
    let err = Model::load(gguf.to_str().unwrap(), &Device::Cpu, DType::F32)
        .err()
        .expect("a shifted vocabulary is refused")
        .to_string();
    assert!(
        err.contains("tokenizer.json")
            && err.contains("tiny.gguf")
            && err.contains("do not belong together"),
        "{err}"
    );
    // Nor is it copied into a converted folder.
    let out = neko()
        .args(["convert", "--from", gguf.to_str().unwrap(), "--to"])
        .arg(tmp.path().join("converted"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("do not belong together"));
    assert!(!tmp.path().join("converted").join("tokenizer.json").exists());
}

/// A Q or K projection whose rows are no whole number of heads, in a layer after the first
/// (the config check reads layer 0), is an error naming the tensor, not a panic.
#[test]
fn a_gguf_attention_tensor_that_splits_no_heads_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("bad.gguf");
    let cut = |name: &str, w: Tensor| match name {
        "model.layers.1.self_attn.q_proj.weight" => {
            // A fresh tensor: quantising reads a view's whole storage.
            let rows: Vec<f32> = w
                .narrow(0, 0, 4)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            Tensor::from_vec(rows, (4, w.dim(1).unwrap()), &Device::Cpu).unwrap()
        }
        _ => w,
    };
    write_gguf_edited(
        &fixture("tiny-llama"),
        &gguf,
        GgmlDType::F32,
        None,
        false,
        false,
        &cut,
        &[],
    );
    let err = refused(&gguf);
    assert!(
        err.contains("blk.1.attn_q.weight") && err.contains("heads"),
        "{err}"
    );
}

/// The message of a model at `spec` that must fail to load.
fn refused(spec: &Path) -> String {
    Model::load(spec.to_str().unwrap(), &Device::Cpu, DType::F32)
        .err()
        .expect("refused")
        .to_string()
}

/// GGUF metadata gets config.json's checks (a RoPE base of 0 loaded and answered `<unk>`), and
/// one part of a split GGUF is said to be one.
#[test]
fn gguf_metadata_is_checked_and_a_split_part_named() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    crate::util::copy_fixture("tiny-llama", &src);
    let mut cfg = read_json(&src.join("config.json"));
    cfg["rope_parameters"]["rope_theta"] = 0.0.into();
    std::fs::write(src.join("config.json"), cfg.to_string()).unwrap();
    let zero = tmp.path().join("zero.gguf");
    write_gguf(&src, &zero, GgmlDType::F32, None);
    let err = refused(&zero);
    assert!(
        err.contains("zero.gguf") && err.contains("rope_theta"),
        "{err}"
    );
    let part = tmp.path().join("m-00001-of-00003.gguf");
    let split = [
        ("split.no", GValue::U16(0)),
        ("split.count", GValue::U16(3)),
    ];
    let keep = |_: &str, w: Tensor| w;
    write_gguf_edited(
        &fixture("tiny-llama"),
        &part,
        GgmlDType::F32,
        None,
        false,
        false,
        &keep,
        &split,
    );
    let err = refused(&part);
    assert!(err.contains("part 1 of 3 of a split GGUF"), "{err}");
}

/// A linear RoPE factor written without its type (or as the older `rope.scale_linear`), which
/// llama.cpp applies, is refused as the typed form is, not run unscaled; a file cut inside its
/// tensor data is named before anything that large is allocated; a folder holding only a GGUF
/// says to pass the file.
#[test]
fn gguf_old_rope_scaling_a_cut_file_and_a_gguf_folder_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let keep = |_: &str, w: Tensor| w;
    for key in ["llama.rope.scale_linear", "llama.rope.scaling.factor"] {
        let gguf = tmp.path().join(format!("{key}.gguf"));
        let extra = [(key, GValue::F32(4.0))];
        write_gguf_edited(
            &fixture("tiny-llama"),
            &gguf,
            GgmlDType::F32,
            None,
            false,
            false,
            &keep,
            &extra,
        );
        let err = refused(&gguf);
        assert!(
            err.contains("RoPE scaling `linear`") && err.contains(key),
            "{err}"
        );
    }
    let dir = tmp.path().join("download");
    std::fs::create_dir(&dir).unwrap();
    let gguf = dir.join("tiny.gguf");
    write_gguf(&fixture("tiny-llama"), &gguf, GgmlDType::F32, None);
    let err = refused(&dir);
    assert!(
        err.contains("pass it itself") && err.contains("tiny.gguf"),
        "{err}"
    );
    let len = std::fs::metadata(&gguf).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&gguf).unwrap();
    f.set_len(len - 64).unwrap();
    let err = refused(&gguf);
    assert!(
        err.contains("tiny.gguf") && err.contains("past the end of the file"),
        "{err}"
    );
}

/// Share of positions whose argmax agrees, over `(seq, vocab)` logits.
fn top1_agreement(a: &Tensor, b: &Tensor) -> f32 {
    let ta: Vec<u32> = a.argmax(1).unwrap().to_vec1().unwrap();
    let tb: Vec<u32> = b.argmax(1).unwrap().to_vec1().unwrap();
    ta.iter().zip(&tb).filter(|(x, y)| x == y).count() as f32 / ta.len() as f32
}

/// A weight beyond f16's range is refused by name when writing f16 (it was written as `inf`,
/// the model loaded and answered `<unk>`); bf16 holds it.
#[test]
fn a_weight_beyond_f16_is_refused_when_writing_f16() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ck = Checkpoint::read(fixture("tiny-llama").to_str().unwrap()).unwrap();
    let name = "model.layers.0.mlp.down_proj.weight";
    let t = &ck.tensors[name];
    let big = (t.ones_like().unwrap() * 1e6).unwrap();
    ck.tensors.insert(name.to_string(), big);
    let out = tmp.path().join("f16");
    let err = ck.write(&out, DType::F16, false).unwrap_err().to_string();
    assert!(
        err.contains(name) && err.contains("beyond f16's range"),
        "{err}"
    );
    assert!(!out.join("config.json").exists());
    ck.write(&tmp.path().join("bf16"), DType::BF16, false)
        .unwrap();
}

/// `--to` is checked before the source is read (and, for upcycle, the experts built): a file,
/// or a folder holding a model, is refused at once; upcycling onto its own dense model is
/// refused, as it would replace the model that a later upcycle needs.
#[test]
fn convert_and_upcycle_check_the_destination_first() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("afile");
    std::fs::write(&file, "x").unwrap();
    // The source does not exist: a refusal naming the destination came before reading it.
    let err = crate::util::refused(
        neko()
            .args(["convert", "--from", "/no/such/model", "--to"])
            .arg(&file),
    );
    assert!(err.contains("a file, not a folder"), "{err}");
    let err = crate::util::refused(
        neko()
            .args(["upcycle", "--model", "/no/such/model", "--to"])
            .arg(fixture("tiny-llama")),
    );
    assert!(err.contains("already holds a model"), "{err}");
    assert!(!err.contains("writing"), "{err}");
    let dense = tmp.path().join("dense");
    std::fs::create_dir_all(&dense).unwrap();
    crate::util::copy_fixture("tiny-llama", &dense);
    let err = crate::util::refused(
        neko()
            .args(["upcycle", "--force", "--model"])
            .arg(&dense)
            .arg("--to")
            .arg(&dense),
    );
    assert!(err.contains("is the dense model --model"), "{err}");
    let cfg = std::fs::read_to_string(dense.join("config.json")).unwrap();
    assert!(!cfg.contains("num_local_experts"), "{cfg}");
}

/// A q8_0 GGUF (rows permuted while quantised) and its f32 conversion quantised again at load
/// (`--quant q8_0`, rows un-permuted before quantising) hold the same blocks: q8_0 requantises
/// its own dequantised values exactly, and row order does not change a row's blocks. On x86,
/// prompts of 64 tokens a thread or more go through gemm over the dequantised weights
/// (`gemm_from_rows`: q8_0 64 wide): exactly the logits of the f32 conversion; shorter ones
/// through candle's kernel, whose 8-bit activations move them a little.
#[test]
fn gguf_q8_0_equals_its_conversion_quantised_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny-q8.gguf");
    write_gguf(&fixture("tiny-llama"), &gguf, GgmlDType::Q8_0, None);
    let conv = tmp.path().join("conv");
    Checkpoint::read(gguf.to_str().unwrap())
        .unwrap()
        .write(&conv, DType::F32, false)
        .unwrap();
    let mut q_gguf = load(&gguf);
    let mut q_load = load_quant(&conv, GgmlDType::Q8_0);
    let mut dequantised = load(&conv);
    let mut f32m = load(&fixture("tiny-llama"));
    let prompts = tiny_prompts();
    let gemm_from = 64 * rayon::current_num_threads();
    if rayon::current_num_threads() == 1 {
        // Both paths are taken (as `RAYON_NUM_THREADS=1 cargo test`, CI's command, runs it).
        assert!(prompts.iter().any(|p| p.len() >= 64) && prompts.iter().any(|p| p.len() < 64));
    }
    for p in prompts {
        let (a, b) = (logits(&mut q_gguf, &p, None), logits(&mut q_load, &p, None));
        assert_eq!(max_diff(&a, &b), 0.0);
        let c = logits(&mut dequantised, &p, None);
        let d = max_diff(&a, &c);
        if !cfg!(target_arch = "x86_64") || p.len() < gemm_from {
            assert!(d > 0.0 && d < 0.5, "{} tokens: kernel vs gemm {d}", p.len());
        } else {
            assert_eq!(d, 0.0, "{} tokens: gemm", p.len());
        }
        // And the q8_0 weights are near the f32 model's: they move this random model's logits
        // (std ~1.6) by a few tenths at most, and flip some of its near-ties.
        let f = logits(&mut f32m, &p, None);
        let d = max_diff(&a, &f);
        assert!(d > 0.0 && d < 1.0, "q8_0 vs f32: {d}");
        assert!(top1_agreement(&a, &f) >= 0.85);
    }
    // `--quant` requantises GGUF projections stored in another type.
    let p = &tiny_prompts()[1];
    let a = logits(&mut load_quant(&gguf, GgmlDType::Q4_0), p, None);
    assert!(max_diff(&a, &logits(&mut q_gguf, p, None)) > 0.0);
}

#[test]
fn quantise_at_load_k_quants_fall_back_where_widths_do_not_divide() {
    // tiny-llama's widths (64, 128) are not multiples of 256: q4k falls back to q8_0.
    let p = &tiny_prompts()[1];
    let a = logits(
        &mut load_quant(&fixture("tiny-llama"), GgmlDType::Q4K),
        p,
        None,
    );
    let b = logits(
        &mut load_quant(&fixture("tiny-llama"), GgmlDType::Q8_0),
        p,
        None,
    );
    assert_eq!(max_diff(&a, &b), 0.0);
    // q4_0 divides them, so it applies (4-bit weights move this random model's logits a lot).
    let c = logits(
        &mut load_quant(&fixture("tiny-llama"), GgmlDType::Q4_0),
        p,
        None,
    );
    let f = logits(&mut load(&fixture("tiny-llama")), p, None);
    assert!(max_diff(&c, &b) > 0.0 && max_diff(&c, &f) > max_diff(&b, &f));
}

// ---------------------------------------------------------------------------------------------
// convert and upcycle on tiny fixtures

#[test]
fn convert_gguf_gives_back_the_original_tensors_and_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    write_gguf(&fixture("tiny-llama"), &gguf, GgmlDType::F32, None);
    let out = tmp.path().join("converted");
    run_ok(neko().args([
        "convert",
        "--from",
        gguf.to_str().unwrap(),
        "--to",
        out.to_str().unwrap(),
    ]));
    let orig =
        candle_core::safetensors::load(fixture("tiny-llama/model.safetensors"), &Device::Cpu)
            .unwrap();
    let conv = candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(orig.len(), conv.len());
    for (name, t) in &orig {
        assert_eq!(max_diff(t, &conv[name]), 0.0, "{name}");
    }
    let mut a = load(&fixture("tiny-llama"));
    let mut b = load(&out);
    assert_eq!(a.config, {
        let mut c = b.config.clone();
        c.dtype = a.config.dtype.clone();
        c
    });
    let p = &tiny_prompts()[0];
    assert_eq!(
        max_diff(&logits(&mut a, p, None), &logits(&mut b, p, None)),
        0.0
    );
    // And it refuses to overwrite without --force.
    let again = neko()
        .args([
            "convert",
            "--from",
            gguf.to_str().unwrap(),
            "--to",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
}

/// `--force` over a sharded checkpoint leaves no index or shard behind, which loading would
/// prefer to the new file; converting a folder onto itself works.
/// A source whose tensors do not fit its config is refused by `neko convert` and `neko
/// upcycle` before anything is written (they wrote a model that could not load, with exit 0),
/// and an integer tensor is no weight; a staging folder an interrupted run left goes.
#[test]
fn convert_and_upcycle_refuse_a_source_that_does_not_load() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    crate::util::copy_fixture("tiny-llama", &src);
    let path = src.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    let name = "model.layers.1.mlp.up_proj.weight";
    let wrong =
        candle_core::Tensor::zeros((64, 64), candle_core::DType::F32, &candle_core::Device::Cpu);
    tensors.insert(name.to_string(), wrong.unwrap());
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let stale = tmp.path().join(".out.neko-partial");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join(".tmpXYZ"), "left by a killed run").unwrap();
    let out_dir = tmp.path().join("out");
    let refused = |args: &[&str], names: &str| {
        let err = crate::util::refused(neko().args(args).arg("--to").arg(&out_dir));
        assert!(
            err.contains(names) && err.contains("nothing was written"),
            "{err}"
        );
        assert!(err.contains("wrong shape"), "{err}");
        assert!(!out_dir.exists() && !stale.exists(), "{err}");
    };
    let src_s = src.to_str().unwrap();
    refused(&["convert", "--from", src_s], name);
    std::fs::create_dir_all(&stale).unwrap();
    // Upcycled, the up projection is every expert's w3.
    refused(
        &["upcycle", "--model", src_s, "--experts", "2"],
        "layers.1.block_sparse_moe",
    );
    let ints = candle_core::Tensor::zeros(
        (64, 128),
        candle_core::DType::I64,
        &candle_core::Device::Cpu,
    );
    tensors.insert(name.to_string(), ints.unwrap());
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let out = neko()
        .args(["convert", "--from", src_s, "--to"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stored as I64"), "{err}");
}

/// `--to` through a link writes into the folder it points to; without --force a folder's
/// other files stay; a move cut short is named where the model is next loaded.
#[test]
fn convert_writes_through_links_and_keeps_what_is_not_a_model() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    std::fs::create_dir_all(&real).unwrap();
    for (name, text) in [
        ("vocab.json", "{}"),
        ("merges.txt", "x"),
        ("README.md", "mine"),
    ] {
        std::fs::write(real.join(name), text).unwrap();
    }
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let convert = |extra: &[&str]| {
        run_ok(
            neko()
                .args(["convert", "--from"])
                .arg(fixture("tiny-llama"))
                .arg("--to")
                .arg(&link)
                .args(extra),
        )
    };
    convert(&[]);
    for name in [
        "vocab.json",
        "merges.txt",
        "README.md",
        "config.json",
        "model.safetensors",
    ] {
        assert!(real.join(name).is_file(), "{name}");
    }
    assert!(link.is_symlink() && !real.join(".neko-partial").exists());
    convert(&["--force", "--dtype", "bf16"]);
    assert_eq!(
        read_json(&real.join("config.json"))["torch_dtype"],
        "bfloat16"
    );
    // As a kill in the middle of the move leaves it: no config.json, the new model staged.
    let staged = real.join(".neko-partial");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::rename(real.join("config.json"), staged.join("config.json")).unwrap();
    let out = neko()
        .args(["info", "--model"])
        .arg(&link)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("was cut short") && err.contains(".neko-partial"),
        "{err}"
    );
}

#[test]
fn convert_over_a_sharded_model_replaces_it_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    crate::util::copy_fixture("tiny-mixtral", &dir);
    let convert = |from: &Path, extra: &[&str]| {
        let (from, to) = (from.to_str().unwrap(), dir.to_str().unwrap());
        run_ok(
            neko()
                .args(["convert", "--from", from, "--to", to, "--force"])
                .args(extra),
        );
    };
    // Shards without their config are still a model: not written over without --force.
    let cfg = std::fs::read(dir.join("config.json")).unwrap();
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let out = neko()
        .args(["convert", "--from"])
        .arg(fixture("tiny-llama"))
        .arg("--to")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a model"));
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    // The folder's template file is carried into tokenizer_config.json (it wins over one
    // there, as when the folder is read), and no stale file is left beside the rewrite.
    std::fs::write(dir.join("chat_template.jinja"), "{{ messages }}").unwrap();
    convert(&dir, &["--dtype", "bf16"]);
    assert!(!dir.join("chat_template.jinja").exists());
    let tc = read_json(&dir.join("tokenizer_config.json"));
    assert_eq!(tc["chat_template"], "{{ messages }}");
    // Settings neko does not model are written back as the source had them.
    let cfg = read_json(&dir.join("config.json"));
    assert_eq!(cfg["pad_token_id"], 3);
    assert_eq!(cfg["router_aux_loss_coef"], 0.001);
    assert_eq!(cfg["initializer_range"], 0.2);
    assert_eq!(cfg["torch_dtype"], "bfloat16");
    let weights = |d: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains("safetensors"))
            .collect();
        names.sort();
        names
    };
    assert_eq!(weights(&dir), ["model.safetensors"]);
    assert_eq!(load(&dir).config.num_local_experts, 4);
    convert(&fixture("tiny-llama"), &[]);
    assert_eq!(weights(&dir), ["model.safetensors"]);
    let p = &tiny_prompts()[0];
    let (mut a, mut b) = (load(&fixture("tiny-llama")), load(&dir));
    assert_eq!(
        max_diff(&logits(&mut a, p, None), &logits(&mut b, p, None)),
        0.0
    );
}

/// With `tie_word_embeddings` the embedding is the LM head, as in transformers, even when the
/// checkpoint also stores an `lm_head.weight` (it is ignored).
#[test]
fn a_tied_model_projects_with_its_embedding_whatever_else_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    crate::util::copy_fixture("tiny-llama", dir);
    let weights = dir.join("model.safetensors");
    let mut t = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
    assert!(!t.contains_key("lm_head.weight"));
    let head = t["model.embed_tokens.weight"].neg().unwrap();
    t.insert("lm_head.weight".to_string(), head);
    candle_core::safetensors::save(&t, &weights).unwrap();
    let p = &tiny_prompts()[0];
    let stored = logits(&mut load(dir), p, None);
    let tied = logits(&mut load(&fixture("tiny-llama")), p, None);
    assert_eq!(max_diff(&stored, &tied), 0.0);
}

/// Upcycles tiny-llama into `dir`; returns what it said on stderr.
fn upcycle_tiny(dir: &Path, extra: &[&str]) -> String {
    let mut cmd = neko();
    cmd.args([
        "upcycle",
        "--model",
        fixture("tiny-llama").to_str().unwrap(),
        "--experts",
        "4",
        "--tasks",
        "asr=0,st=1,mt=1,ocr=2,gec=3",
        "--to",
        dir.to_str().unwrap(),
    ]);
    cmd.args(extra);
    String::from_utf8(ok(&mut cmd).stderr).unwrap()
}

/// The upcycling invariant: fresh experts are the dense FFN and the zero gate routes
/// uniformly, so the MoE gives the dense logits under learned and every forced routing.
fn assert_equals_dense(moe_dir: &Path) {
    let mut dense = load(&fixture("tiny-llama"));
    let mut moe = load(moe_dir);
    assert!(moe.config.is_moe());
    assert_eq!(moe.config.num_local_experts, 4);
    assert_eq!(moe.config.task_expert(neko::Task::Ocr), Some(2));
    for p in tiny_prompts() {
        let want = logits(&mut dense, &p, None);
        for forced in [None, Some(0), Some(1), Some(2), Some(3)] {
            let d = max_diff(&want, &logits(&mut moe, &p, forced));
            assert!(d < 1e-5, "forced {forced:?}: max logit diff {d}");
        }
    }
    let want = greedy(&mut dense, &tiny_prompts(), 20, None);
    assert_eq!(greedy(&mut moe, &tiny_prompts(), 20, None), want);
    assert_eq!(greedy(&mut moe, &tiny_prompts(), 20, Some(3)), want);
}

#[test]
fn upcycled_full_experts_give_the_dense_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("moe");
    let said = upcycle_tiny(&dir, &[]);
    // Before writing, it says what the write takes (4 full experts of tiny-llama's FFN, f32 as
    // its source); the file is that and a header.
    let st = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let params: usize = st.values().map(|t| t.elem_count()).sum();
    let mb = params as f64 * 4.0 / 1e6;
    let announced = format!(
        "{:.1}K parameters, {mb:.2}MB as f32 (on disk, and in memory while checking",
        params as f64 / 1e3
    );
    assert!(said.contains(&announced), "{said}\nwanted: {announced}");
    let file = std::fs::metadata(dir.join("model.safetensors"))
        .unwrap()
        .len() as f64;
    assert!(file > mb * 1e6 && file < mb * 1e6 + 20_000.0, "{file}");
    let cfg = read_json(&dir.join("config.json"));
    assert_eq!(cfg["architectures"][0], "MixtralForCausalLM");
    assert_eq!(cfg["num_experts_per_tok"], 2);
    assert_eq!(cfg["tie_word_embeddings"], true);
    let gate = &st["model.layers.0.block_sparse_moe.gate.weight"];
    assert_eq!(gate.dims(), &[4, 64]);
    assert_eq!(
        gate.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );
    assert!(!st.keys().any(|k| k.contains(".mlp.")));
    assert_equals_dense(&dir);
}

#[test]
fn upcycled_low_rank_experts_give_the_dense_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lora");
    upcycle_tiny(&dir, &["--lora-rank", "4", "--lora-alpha", "8"]);
    let cfg = read_json(&dir.join("config.json"));
    assert_eq!(cfg["model_type"], "neko_lora_mixtral");
    assert_eq!(cfg["expert_lora_rank"], 4);
    let st = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let a = &st["model.layers.1.block_sparse_moe.experts.2.w2.lora_A.weight"];
    let b = &st["model.layers.1.block_sparse_moe.experts.2.w2.lora_B.weight"];
    assert_eq!((a.dims(), b.dims()), (&[4, 128][..], &[64, 4][..]));
    assert!(
        a.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.0
    );
    assert_eq!(
        b.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );
    assert!(st.contains_key("model.layers.0.block_sparse_moe.shared.w1.weight"));
    assert!(!st.keys().any(|k| k.contains(".experts.0.w1.weight")));
    assert_equals_dense(&dir);
    let info = run_ok(neko().args(["info", "--json", "--model", dir.to_str().unwrap()]));
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["expert_lora_rank"], 4);
}

/// A low-rank expert computes `W_shared + (alpha/r) B A` per projection: with random B, the
/// low-rank model equals a full-expert model holding those merged weights.
#[test]
fn low_rank_experts_equal_their_merged_full_experts() {
    let tmp = tempfile::tempdir().unwrap();
    let (lora_dir, full_dir) = (tmp.path().join("lora"), tmp.path().join("full"));
    upcycle_random_low_rank(&lora_dir, Some(&full_dir));
    let (mut l, mut f) = (load(&lora_dir), load(&full_dir));
    let mut dense = load(&fixture("tiny-llama"));
    for p in tiny_prompts() {
        for forced in [None, Some(1)] {
            let (a, b) = (logits(&mut l, &p, forced), logits(&mut f, &p, forced));
            let d = max_diff(&a, &b);
            assert!(d < 1e-4, "forced {forced:?}: low-rank vs merged {d}");
            assert!(
                max_diff(&a, &logits(&mut dense, &p, None)) > 0.1,
                "deltas had no effect"
            );
        }
    }
    // With the deltas left out, the low-rank model is its base again, under any routing; a
    // model of full experts or a dense one has no such base and stays as it is.
    assert!(l.decoder.set_base_only(true));
    for p in tiny_prompts() {
        for forced in [None, Some(2)] {
            let d = max_diff(&logits(&mut l, &p, forced), &logits(&mut dense, &p, None));
            assert!(d < 1e-4, "forced {forced:?}: base-only vs dense {d}");
        }
    }
    assert!(l.decoder.set_base_only(false));
    let p = &tiny_prompts()[0];
    assert!(max_diff(&logits(&mut l, p, None), &logits(&mut f, p, None)) < 1e-4);
    assert!(!f.decoder.set_base_only(true));
    assert!(max_diff(&logits(&mut l, p, None), &logits(&mut f, p, None)) < 1e-4);
    assert!(!dense.decoder.set_base_only(true));
}

/// Upcycles tiny-llama to 4 low-rank experts (rank 4, alpha 8) in `lora_dir` with random
/// deltas and gates, as if trained; with `full_dir`, also the full-expert model holding those
/// merged weights.
fn upcycle_random_low_rank(lora_dir: &Path, full_dir: Option<&Path>) {
    let tmp = tempfile::tempdir().unwrap();
    let full_dir = full_dir.map_or_else(|| tmp.path().join("full"), Path::to_path_buf);
    upcycle_tiny(lora_dir, &["--lora-rank", "4", "--lora-alpha", "8"]);
    upcycle_tiny(&full_dir, &[]);
    let mut lora =
        candle_core::safetensors::load(lora_dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut full =
        candle_core::safetensors::load(full_dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let scale = 8.0 / 4.0;
    for layer in 0..2 {
        let moe = format!("model.layers.{layer}.block_sparse_moe");
        // A gate that is not uniform, so experts are weighted differently.
        let gate = Tensor::randn(0f32, 0.5, (4, 64), &Device::Cpu).unwrap();
        lora.insert(format!("{moe}.gate.weight"), gate.clone());
        full.insert(format!("{moe}.gate.weight"), gate);
        for e in 0..4 {
            for w in ["w1", "w2", "w3"] {
                let key = format!("{moe}.experts.{e}.{w}");
                let a = lora[&format!("{key}.lora_A.weight")].clone();
                let rows = lora[&format!("{key}.lora_B.weight")].dim(0).unwrap();
                let b = Tensor::randn(0f32, 0.3, (rows, 4), &Device::Cpu).unwrap();
                let shared = &lora[&format!("{moe}.shared.{w}.weight")];
                let merged = (shared + (b.matmul(&a).unwrap() * scale).unwrap()).unwrap();
                full.insert(format!("{key}.weight"), merged);
                lora.insert(format!("{key}.lora_B.weight"), b);
            }
        }
    }
    candle_core::safetensors::save(&lora, lora_dir.join("model.safetensors")).unwrap();
    candle_core::safetensors::save(&full, full_dir.join("model.safetensors")).unwrap();
}

/// log P(text) under the dense tiny-llama, the text alone between `<s>` and `</s>` (its
/// tokenizer has no `<|endoftext|>`): the reference for the guard's base-model check.
fn dense_log_prob(dense: &mut Model, text: &str) -> f64 {
    let enc = dense.tokenizer.encode(text, false).unwrap();
    let ids = [&[1u32], enc.get_ids(), &[2u32]].concat();
    let lp = logits(dense, &ids[..ids.len() - 1], None);
    let lp = candle_nn::ops::log_softmax(&lp, candle_core::D::Minus1).unwrap();
    let lp = lp.to_vec2::<f32>().unwrap();
    (1..ids.len())
        .map(|k| lp[k - 1][ids[k] as usize] as f64)
        .sum()
}

/// The guard's base-model check (`--guard-base-lm`): a low-rank model's answer is scored by its
/// base alone, as the dense model scores it; `neko guard --score` writes that difference as
/// `"base_lm"` and sends back the answer the base does not prefer.
#[test]
fn base_model_check_scores_answers_as_the_dense_base_does() {
    let tmp = tempfile::tempdir().unwrap();
    let lora_dir = tmp.path().join("lora");
    upcycle_random_low_rank(&lora_dir, None);
    let mut dense = load(&fixture("tiny-llama"));
    let (x, y) = ("one two three four five", "one two three for five");
    let want = dense_log_prob(&mut dense, x) - dense_log_prob(&mut dense, y);
    let opts = neko::correct::CorrectOptions::default();
    let mut c = neko::correct::Corrector::new(load(&lora_dir), None, opts.clone());
    assert!(c.has_base_lm());
    let got = c.base_lm_diff(x, y).unwrap();
    assert!((got - want).abs() < 2e-3, "{got} vs {want}");
    assert!(
        got.abs() > 0.01,
        "the two texts should differ under the base: {got}"
    );
    assert!(!neko::correct::Corrector::new(load(&fixture("tiny-llama")), None, opts).has_base_lm());

    // Two records, each with the other's 1-best as its pick: the base prefers exactly one.
    let input = tmp.path().join("in.jsonl");
    let preds = tmp.path().join("raw.jsonl");
    let rec = |id: &str, best: &str, other: &str| {
        format!(r#"{{"id": "{id}", "input": ["{best}", "{other}"]}}"#)
    };
    std::fs::write(&input, format!("{}\n{}\n", rec("a", y, x), rec("b", x, y))).unwrap();
    let pred = |id: &str, p: &str| format!(r#"{{"id": "{id}", "prediction": "{p}", "margin": 9}}"#);
    std::fs::write(&preds, format!("{}\n{}\n", pred("a", x), pred("b", y))).unwrap();
    let guard = |extra: &[&str]| {
        let mut cmd = neko();
        cmd.args([
            "guard",
            "--score",
            "--model",
            lora_dir.to_str().unwrap(),
            "--input",
        ])
        .arg(&input)
        .args(extra)
        .arg(&preds);
        crate::util::json_lines(&crate::util::ok(&mut cmd).stdout)
    };
    let out = guard(&[]);
    let (a, b) = (&out[0], &out[1]);
    assert!((a["base_lm"].as_f64().unwrap() - want).abs() < 2e-3, "{a}");
    assert!((b["base_lm"].as_f64().unwrap() + want).abs() < 2e-3, "{b}");
    let (kept, sent_back) = if want > 0.0 { (a, b) } else { (b, a) };
    assert!(kept.get("guard").is_none(), "{kept}");
    assert_eq!(sent_back["guard"], "fallback:base-lm");
    // A threshold above the preference sends back both; one below it keeps the preferred.
    let above = format!("{}", want.abs() + 0.01);
    let out = guard(&["--base-lm", &above]);
    assert!(out.iter().all(|r| r["guard"] == "fallback:base-lm"));
    let below = format!("{}", want.abs() - 0.005);
    let out = guard(&["--base-lm", &below]);
    assert_eq!(out.iter().filter(|r| r.get("guard").is_none()).count(), 1);
    // `off` asks nothing: both picks stay, unscored by the base.
    let out = guard(&["--base-lm", "off"]);
    assert!(out
        .iter()
        .all(|r| r.get("guard").is_none() && r.get("base_lm").is_none()));
}

#[test]
fn upcycle_refuses_bad_requests() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        vec!["--experts", "4", "--tasks", "asr=4"],
        vec!["--experts", "2", "--top-k", "3"],
        vec!["--experts", "4", "--tasks", "nope=1"],
    ] {
        let out = neko()
            .args([
                "upcycle",
                "--model",
                fixture("tiny-llama").to_str().unwrap(),
            ])
            .args(&args)
            .args(["--to", tmp.path().join("x").to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let out = neko()
        .args([
            "upcycle",
            "--model",
            fixture("tiny-mixtral").to_str().unwrap(),
        ])
        .args(["--to", tmp.path().join("y").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("dense"));
}

// ---------------------------------------------------------------------------------------------
// the real base: SmolLM2-135M-Instruct, GGUF Q4_1

/// The cached base GGUF, or `None` with a visible skip message.
fn base_gguf() -> Option<PathBuf> {
    let path = match std::env::var_os("NEKO_BASE_GGUF") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = std::env::var_os("NEKO_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/neko"))
                })?;
            cache.join("smollm2-135m-instruct.Q4_1.gguf")
        }
    };
    if path.is_file() {
        Some(path)
    } else {
        crate::util::skip(&format!(
            "{} not found (run scripts/fetch-base.sh, or set NEKO_BASE_GGUF)",
            path.display()
        ));
        None
    }
}

fn base_reference() -> Value {
    read_json(&fixture("smollm2-reference.json"))
}

/// The base converted to f32 in a temporary folder (about 540 MB, a few seconds).
fn converted_base(gguf: &Path) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("smollm2-f32");
    Checkpoint::read(gguf.to_str().unwrap())
        .unwrap()
        .write(&dir, DType::F32, false)
        .unwrap();
    (tmp, dir)
}

/// Largest difference between our logits and the reference top-k values, over all prompts
/// and recorded positions; also checks the top-k id sets where the reference separates them
/// (its k-th and k+1-th logits further apart than `tolerance` twice over).
fn reference_diff(model: &mut Model, r: &Value, tolerance: f32) -> f32 {
    let mut worst = 0f32;
    let mut separated = 0;
    for p in r["prompts"].as_array().unwrap() {
        let input = ids(&p["input_ids"]);
        let all: Vec<Vec<f32>> = logits(model, &input, None).to_vec2().unwrap();
        for pos in p["top_k"].as_array().unwrap() {
            let row = &all[pos["position"].as_u64().unwrap() as usize];
            let want = ids(&pos["ids"]);
            for (id, v) in want.iter().zip(pos["values"].as_array().unwrap()) {
                worst = worst.max((row[*id as usize] - v.as_f64().unwrap() as f32).abs());
            }
            if pos["margin_k_k1"].as_f64().unwrap() as f32 > 2.0 * tolerance {
                let mut order: Vec<u32> = (0..row.len() as u32).collect();
                order.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]));
                let mut top = order[..want.len()].to_vec();
                let mut want = want.clone();
                top.sort_unstable();
                want.sort_unstable();
                assert_eq!(top, want, "top-{} ids at {}", want.len(), pos["position"]);
                separated += 1;
            }
        }
    }
    assert!(separated > 0, "no recorded position separates its top-k");
    worst
}

/// The committed reference's cross-checks (transformers' own GGUF loader and tokenizer
/// against the conversion it was computed on; upcycled folders against the dense model) are
/// clean: otherwise the reference would only restate neko's conversion.
#[test]
fn smollm2_reference_cross_checks_are_clean() {
    let r = base_reference();
    let c = &r["checks"];
    let small = |v: &Value| v.as_f64().is_some_and(|d| d <= 1e-4);
    assert!(
        small(&c["transformers_gguf_vs_converted_weights_max_abs_diff"]),
        "{c}"
    );
    assert!(
        small(&c["transformers_gguf_vs_converted_logits_max_abs_diff"]),
        "{c}"
    );
    assert_eq!(
        c["transformers_gguf_tokenizer_mismatches"],
        Value::Array(vec![]),
        "{c}"
    );
    for up in [
        "tiny_upcycled_in_transformers",
        "smollm2_upcycled_in_transformers",
    ] {
        assert_eq!(c[up]["class"], "MixtralForCausalLM", "{c}");
        assert!(small(&c[up]["max_abs_logit_diff_vs_dense"]), "{c}");
    }
}

#[test]
fn smollm2_tokenizer_from_gguf_matches_transformers_and_round_trips_shared_data() {
    let Some(gguf) = base_gguf() else { return };
    let g = neko::model::GgufFile::open(&gguf).unwrap();
    let tok = neko::model::gguf_tokenizer::tokenizer(&g).unwrap();
    let r = base_reference();
    for s in r["tokenizer_samples"].as_array().unwrap() {
        let text = s["text"].as_str().unwrap();
        let got = tok.encode(text, false).unwrap();
        assert_eq!(got.get_ids(), ids(&s["ids"]).as_slice(), "{text:?}");
    }
    for p in r["prompts"].as_array().unwrap() {
        let got = tok.encode(p["text"].as_str().unwrap(), true).unwrap();
        assert_eq!(got.get_ids(), ids(&p["input_ids"]).as_slice());
    }
    let Some(mut texts) = shared_texts("synth") else {
        return;
    };
    if let Some(h) = shared_texts("hyporadise/train") {
        texts.extend(h);
    }
    let mut digits = 0;
    for t in &texts {
        let enc = tok.encode(t.as_str(), false).unwrap();
        assert_eq!(&tok.decode(enc.get_ids(), false).unwrap(), t);
        digits += t.chars().filter(char::is_ascii_digit).count();
    }
    eprintln!(
        "round-tripped {} shared strings ({digits} digits)",
        texts.len()
    );
}

#[test]
fn smollm2_gguf_declares_chatml_and_stops_on_im_end() {
    let Some(gguf) = base_gguf() else { return };
    let model = load(&gguf);
    let Some(ChatTemplate::ChatMl {
        system: Some(sys), ..
    }) = &model.chat
    else {
        panic!("no ChatML template: {:?}", model.chat);
    };
    assert!(sys.contains("SmolLM"));
    assert!(
        model.config.eos_token_ids.contains(&2),
        "<|im_end|> = 2 ends a turn"
    );
    let wrapped = model.wrap_prompt("Fix: helo".into());
    assert!(wrapped.starts_with("<|im_start|>system\n"));
    assert!(wrapped.ends_with("<|im_start|>user\nFix: helo<|im_end|>\n<|im_start|>assistant\n"));
    let enc = model.tokenizer.encode(wrapped.as_str(), true).unwrap();
    assert_eq!(enc.get_ids()[0], 1, "<|im_start|> is one special token");
    let mut opts = LoadOptions::new(&Device::Cpu, DType::F32);
    opts.chat_template = false;
    let plain = Model::load_with(gguf.to_str().unwrap(), &opts).unwrap();
    assert_eq!(plain.wrap_prompt("x".into()), "x");
}

#[test]
fn smollm2_converted_f32_matches_transformers() {
    let Some(gguf) = base_gguf() else { return };
    let r = base_reference();
    let (_tmp, dir) = converted_base(&gguf);
    let mut f32m = load(&dir);
    let d = reference_diff(&mut f32m, &r, 1e-3);
    eprintln!("smollm2 converted f32 vs transformers: max logit diff {d}");
    assert!(d < 1e-3, "converted f32 vs transformers: {d}");
    for p in r["prompts"].as_array().unwrap() {
        let input = ids(&p["input_ids"]);
        let got = greedy(
            &mut f32m,
            std::slice::from_ref(&input),
            ids(&p["greedy"]).len(),
            None,
        );
        assert_eq!(got[0], ids(&p["greedy"]));
    }
}

/// The GGUF model runs the converted model's weights. On x86, a prompt of 64 tokens a thread or
/// more, its logits computed at every position, goes through gemm over the dequantised
/// weights (`gemm_from_rows`: q4_1 from 16 rows a thread, the q8_0 embeddings as LM head from
/// 64): exactly the converted model's logits. Shorter ones send the LM head through candle's
/// quantised kernel, which also quantises activations to 8 bits per block: close, not equal. How close is judged against candle-transformers' own GGUF runner
/// (`quantized_llama`: interleaved RoPE on the permuted rows, batch 1, kernels only), whose
/// distance to the f32 model is the noise of the kernels themselves.
#[test]
fn smollm2_gguf_is_within_quantisation_noise_of_converted_f32() {
    let Some(gguf) = base_gguf() else { return };
    let r = base_reference();
    let (_tmp, dir) = converted_base(&gguf);
    let mut f32m = load(&dir);
    let mut q = load(&gguf);
    let mut oracle = {
        let mut f = std::fs::File::open(&gguf).unwrap();
        let content = gguf_file::Content::read(&mut f).unwrap();
        candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
            content,
            &mut f,
            &Device::Cpu,
        )
        .unwrap()
    };
    let (mut worst, mut agree, mut n) = (0f32, 0f32, 0f32);
    for p in r["prompts"].as_array().unwrap() {
        let input = ids(&p["input_ids"]);
        let (a, b) = (
            logits(&mut q, &input, None),
            logits(&mut f32m, &input, None),
        );
        let last = input.len() - 1;
        let t = Tensor::new(input.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let c = oracle.forward(&t, 0).unwrap().squeeze(0).unwrap();
        let (ours, theirs) = (
            max_diff(&a.get(last).unwrap(), &b.get(last).unwrap()),
            max_diff(&c, &b.get(last).unwrap()),
        );
        eprintln!(
            "smollm2 prompt of {} tokens, last position, max logit diff to f32: neko gguf {ours}, quantized_llama {theirs}",
            input.len()
        );
        assert!(
            ours < 2.0 * theirs.max(0.25),
            "neko gguf {ours} vs quantized_llama {theirs}"
        );
        if cfg!(target_arch = "x86_64") && input.len() >= 64 * rayon::current_num_threads() {
            assert_eq!(max_diff(&a, &b), 0.0, "{} tokens: gemm", input.len());
        }
        worst = worst.max(max_diff(&a, &b));
        agree += top1_agreement(&a, &b) * input.len() as f32;
        n += input.len() as f32;
    }
    eprintln!(
        "smollm2 gguf q4_1 vs converted f32, all positions: max logit diff {worst}, top-1 agreement {:.3}",
        agree / n
    );
    assert!(agree / n >= 0.9, "top-1 agreement {}", agree / n);
    // Requantised to q8_0 at load (`--quant q8_0`, the fast CPU path): as close.
    let mut q8 = load_quant(&gguf, GgmlDType::Q8_0);
    let input = ids(&r["prompts"][0]["input_ids"]);
    let (a, b) = (
        logits(&mut q8, &input, None),
        logits(&mut f32m, &input, None),
    );
    let agree = top1_agreement(&a, &b);
    eprintln!("smollm2 gguf requantised to q8_0 vs converted f32: top-1 agreement {agree:.3}");
    assert!(agree >= 0.9, "q8_0 top-1 agreement {agree}");
}

/// Batched rows are independent: they differ from running alone only by float summation
/// order (f32: ~1e-5), which with GGUF weights grows to a few tenths, since a row's products
/// go through gemm or through the quantised kernels (8-bit activations) by how many rows a
/// call has (`gemm_from_rows`).
#[test]
fn smollm2_batched_rows_equal_rows_alone() {
    let Some(gguf) = base_gguf() else { return };
    let r = base_reference();
    let prompts: Vec<Vec<u32>> = r["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| ids(&p["input_ids"]))
        .collect();
    let (_tmp, dir) = converted_base(&gguf);
    for (spec, tolerance) in [(dir.clone(), 1e-3f32), (gguf.clone(), 2.0)] {
        let mut m = load(&spec);
        let longest = prompts.iter().map(Vec::len).max().unwrap();
        let pads: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
        let mut flat = Vec::new();
        for (p, &pad) in prompts.iter().zip(&pads) {
            flat.extend(std::iter::repeat_n(2u32, pad));
            flat.extend(p);
        }
        m.decoder.reset(longest);
        let t = Tensor::from_vec(flat, (prompts.len(), longest), &Device::Cpu).unwrap();
        let batched = m.decoder.forward(&t, &pads, None, Logits::Last).unwrap();
        for (i, p) in prompts.iter().enumerate() {
            let alone = logits(&mut m, p, None).get(p.len() - 1).unwrap();
            let d = max_diff(&alone, &batched.get(i).unwrap());
            assert!(d < tolerance, "{} row {i}: {d}", spec.display());
        }
    }
}

#[test]
fn smollm2_info_reads_the_gguf_header() {
    let Some(gguf) = base_gguf() else { return };
    let out = run_ok(neko().args(["info", "--json", "--model", gguf.to_str().unwrap()]));
    let info: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["format"], "gguf");
    assert_eq!(info["layers"], 30);
    assert_eq!(info["kv_heads"], 3);
    assert_eq!(info["tokenizer"], "gguf metadata");
    assert_eq!(info["chat_template"], "chatml");
    assert_eq!(info["tensor_dtypes"]["q4_1"], 210);
    let _: HashMap<String, Value> = serde_json::from_value(info).unwrap();
}

/// The shipped default, neko-smol, rebuilt from the cached base by `scripts/setup.sh` as a user
/// does, gives the answers recorded when it shipped (`tests/fixtures/neko-smol-expected.jsonl`:
/// two records of each synth dev split and two asr-whisper answers the margin sends back;
/// corrections on MT and GEC and on asr-whisper, guard fallbacks on sphinx and OCR; margins
/// from the PyTorch port) through `neko correct` without `--model`.
#[test]
fn shipped_neko_smol_rebuilds_from_the_base_and_gives_its_recorded_answers() {
    let Some(gguf) = base_gguf() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    // setup.sh finds the base through fetch-base.sh's cache: no download.
    std::os::unix::fs::symlink(&gguf, cache.join("smollm2-135m-instruct.Q4_1.gguf")).unwrap();
    // What interrupted runs left (this script's folder and upcycle's staging beside it, and
    // the PID-named ones of older versions) is cleared.
    let left = [
        ".neko-smol.building",
        "..neko-smol.building.neko-partial",
        "neko-smol.partial.123",
        ".neko-smol.partial.123.neko-partial",
    ];
    for name in left {
        std::fs::create_dir_all(cache.join(name)).unwrap();
    }
    // A relative NEKO_CACHE is the caller's folder's, not the repo root's.
    let built = run_ok(
        std::process::Command::new("bash")
            .arg(crate::util::repo().join("scripts/setup.sh"))
            .current_dir(tmp.path())
            .env("NEKO_CACHE", "cache")
            .env("NEKO", env!("CARGO_BIN_EXE_neko")),
    );
    assert_eq!(built.trim(), cache.join("neko-smol").display().to_string());
    for name in left {
        assert!(!cache.join(name).exists(), "{name} left");
    }
    let out = crate::util::ok(
        neko()
            .env("NEKO_CACHE", &cache)
            .env_remove("NEKO_MODEL")
            // Recorded before the N-best pick, which would send asr-whisper-dev-18's longer
            // answer back unscored (the guard's tests cover the pick), and before ASR
            // decoding was constrained by default.
            .env("NEKO_GUARD_NBEST", "free")
            .env("NEKO_CONSTRAIN", "none")
            // And before the base-model check (its own test is below) and the word-boundary
            // check (its tests are the guard's).
            .env("NEKO_GUARD_BASE_LM", "off")
            .env("NEKO_GUARD_SPACING", "free")
            .arg("correct")
            .arg(fixture("records/neko-smol-dev.jsonl")),
    );
    let got = crate::util::json_lines(&out.stdout);
    let want =
        crate::util::json_lines(&std::fs::read(fixture("neko-smol-expected.jsonl")).unwrap());
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        // The guard's margin, against the PyTorch port's (scripts/margins_torch.py).
        assert_same_answer(g, w);
    }
    // Not a copy of the input: the model corrected some records, and the margin sent some
    // answers back.
    assert!(want.iter().any(|w| w["prediction"] != w["best"]));
    assert!(want.iter().any(|w| w["guard"] == "fallback:margin"));

    // The plain default: ASR records constrained to their hypotheses' words, with the
    // answers the ASR dev decoding gave (docs/results/constrain-2026-11-27, same ids); the
    // other tasks decode freely, as recorded above.
    let out = crate::util::ok(
        neko()
            .env("NEKO_CACHE", &cache)
            .env_remove("NEKO_MODEL")
            .arg("correct")
            .arg(fixture("records/neko-smol-dev.jsonl")),
    );
    let got = crate::util::json_lines(&out.stdout);
    let constrained = crate::util::json_lines(
        &std::fs::read(fixture("neko-smol-constrained-expected.jsonl")).unwrap(),
    );
    let mut constrained = constrained.iter();
    for (g, w) in got.iter().zip(&want) {
        match g["task"] == "asr" {
            true => assert_same_answer(g, constrained.next().unwrap()),
            false => assert_same_answer(g, w),
        }
    }
    assert!(constrained.next().is_none());
}

/// `got` has `want`'s id, prediction and guard, and its margin and base-model score within 0.01.
fn assert_same_answer(got: &Value, want: &Value) {
    for field in ["id", "prediction", "guard"] {
        assert_eq!(
            got.get(field),
            want.get(field),
            "{field}: got {got}, recorded {want}"
        );
    }
    for field in ["margin", "base_lm"] {
        let value = |r: &Value| r.get(field).and_then(Value::as_f64);
        match (value(got), value(want)) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 0.01, "{field} {a}, reference {b}"),
            (a, b) => assert_eq!(a, b, "{field} of {}", want["id"]),
        }
    }
}

/// A folder with a model's tokenizer or generation files, or a `chat_template.jinja`, is not
/// written into without `--force` (they were replaced silently, and a kept jinja overrode the
/// written template); every end token goes into the generation_config.json written, which
/// transformers reads instead of config.json's list once it exists.
#[test]
fn convert_keeps_a_folders_tokenizer_files_and_every_end_token() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    crate::util::copy_fixture("tiny-llama", &src);
    let _ = std::fs::remove_file(src.join("generation_config.json"));
    let mut config = read_json(&src.join("config.json"));
    config["eos_token_id"] = serde_json::json!([2, 5]);
    std::fs::write(src.join("config.json"), config.to_string()).unwrap();
    for name in [
        "tokenizer_config.json",
        "generation_config.json",
        "chat_template.jinja",
    ] {
        let to = tmp.path().join(name.replace('.', "-"));
        std::fs::create_dir_all(&to).unwrap();
        std::fs::write(to.join(name), "{\"mine\": true}").unwrap();
        let err = crate::util::refused(
            neko()
                .args(["convert", "--from"])
                .arg(&src)
                .arg("--to")
                .arg(&to),
        );
        assert!(
            err.contains(&format!("already holds a model or its files ({name})")),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(to.join(name)).unwrap(),
            "{\"mine\": true}"
        );
    }
    let to = tmp.path().join("new");
    run_ok(
        neko()
            .args(["convert", "--from"])
            .arg(&src)
            .arg("--to")
            .arg(&to),
    );
    let gc = read_json(&to.join("generation_config.json"));
    assert_eq!(gc["eos_token_id"], serde_json::json!([2, 5]), "{gc}");
}

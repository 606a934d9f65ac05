//! `neko train` on the tiny fixtures: training mode computes the inference logits, every
//! trainable tensor learns (and nothing else), the loss falls, both routing losses train, runs
//! are deterministic, `--resume` is bit-identical, and adapters load for inference.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use neko::correct::{CorrectOptions, Corrector};
use neko::model::{LoadOptions, Logits, Model};
use neko::train::data::{DataSpec, Target};
use neko::train::{is_trainable, Hyper, RoutingLoss, TrainConfig, Trainer};
use neko::Task;

use crate::util::{fixture, json_lines, neko, ok, run_ok};

/// `neko upcycle` of tiny-llama to 4 low-rank experts of `rank` with the task map
/// asr=0, st=1, mt=1, ocr=2, gec=3 (add `--to`, and `--adapter` to put trained tensors in).
fn upcycle_tiny(rank: &str) -> std::process::Command {
    let mut cmd = neko();
    cmd.args([
        "upcycle",
        "--model",
        fixture("tiny-llama").to_str().unwrap(),
    ])
    .args(["--experts", "4", "--lora-rank", rank])
    .args(["--tasks", "asr=0,st=1,mt=1,ocr=2,gec=3"]);
    cmd
}

/// Upcycles tiny-llama to 4 low-rank experts (asr=0, mt=1, ocr=2, gec=3) and writes a small
/// mixed-task training file: two records per task.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let model = dir.join("init");
    run_ok(upcycle_tiny("4").arg("--to").arg(&model));
    let data = dir.join("mix.jsonl");
    let records = [
        r#"{"task": "asr", "input": ["the cat sad", "the cat sat"], "output": "the cat sat"}"#,
        r#"{"task": "asr", "input": ["a dog ran", "a dog can"], "output": "a dog ran"}"#,
        r#"{"task": "mt", "input": ["he go home", "he goes home"], "output": "he goes home"}"#,
        r#"{"task": "mt", "input": ["it is cold", "is it cold"], "output": "it is cold"}"#,
        r#"{"task": "ocr", "input": ["Thc rnoon"], "output": "The moon"}"#,
        r#"{"task": "ocr", "input": ["rn y hat"], "output": "my hat"}"#,
        r#"{"task": "gec", "input": ["She have a pen."], "output": "She has a pen."}"#,
        r#"{"task": "gec", "input": ["They is here."], "output": "They are here."}"#,
    ];
    std::fs::write(&data, records.join("\n") + "\n").unwrap();
    (model, data)
}

fn config(
    model: &Path,
    data: &Path,
    out: &Path,
    routing: RoutingLoss,
    steps: usize,
) -> TrainConfig {
    TrainConfig {
        model: model.to_str().unwrap().to_string(),
        out: out.to_path_buf(),
        train: Hyper {
            routing,
            aux_weight: 0.5,
            steps,
            // One step sees every task: 4 single-task micro-batches of 2.
            batch_size: 2,
            grad_accum: 4,
            lr: 1e-2,
            warmup_steps: 1,
            max_len: 512,
            seed: 3,
            ..Hyper::default()
        },
        data: vec![DataSpec {
            path: data.to_path_buf(),
            task: None,
            max_records: None,
            target: Target::Reference,
        }],
        valid: Vec::new(),
    }
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

fn load_st(p: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(p, &Device::Cpu).unwrap()
}

#[test]
fn training_mode_computes_the_inference_logits() {
    // The backward-capable softmax/RMSNorm/RoPE must compute what the fused kernels compute.
    let tmp = tempfile::tempdir().unwrap();
    let (model, _) = setup(tmp.path());
    let m = Model::load(model.to_str().unwrap(), &Device::Cpu, DType::F32).unwrap();
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(&m.files.weights, DType::F32, &Device::Cpu)
    }
    .unwrap();
    let mut net = neko::model::Transformer::new(&m.config, vb).unwrap();
    let ids = Tensor::new(
        &[[5u32, 9, 33, 7, 100, 2, 41], [0, 0, 12, 13, 14, 15, 16]],
        &Device::Cpu,
    )
    .unwrap();
    let pads = [0, 2];
    for forced in [None, Some(2)] {
        net.reset(8);
        let want = net.forward(&ids, &pads, forced, Logits::All).unwrap();
        net.set_training(true);
        let got = net.forward(&ids, &pads, forced, Logits::All).unwrap();
        net.set_training(false);
        let d = max_abs(&(got.narrow(1, 2, 5).unwrap() - want.narrow(1, 2, 5).unwrap()).unwrap());
        assert!(d < 1e-4, "forced {forced:?}: max logit diff {d}");
    }
}

#[test]
fn every_trainable_tensor_gets_a_gradient_and_only_they_are_saved() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = setup(tmp.path());
    for routing in [RoutingLoss::Forced, RoutingLoss::Aux] {
        let out = tmp.path().join(format!("run-{routing:?}"));
        let mut t = Trainer::new(config(&model, &data, &out, routing, 4)).unwrap();
        let names: Vec<String> = t.trainable().iter().map(|(n, _)| n.clone()).collect();
        // 2 layers x (gate + 4 experts x 3 projections x 2 factors).
        assert_eq!(names.len(), 2 * (1 + 4 * 3 * 2), "{names:?}");
        // Fresh upcycling: lora_B = 0 and identical experts, so lora_A and (without the aux
        // loss) the gate get no gradient yet. With forced routing one step makes every expert
        // differ; with the aux loss alone an expert is used (and learns) once the gate has
        // learned to pick it, which takes a few steps.
        let warm = if routing == RoutingLoss::Forced { 1 } else { 4 };
        for _ in 0..warm {
            t.train_step().unwrap();
        }
        let grads = t.next_gradients().unwrap();
        for name in &names {
            let g = grads
                .get(name)
                .unwrap_or_else(|| panic!("{routing:?}: no gradient for {name}"));
            assert!(max_abs(g) > 0.0, "{routing:?}: zero gradient for {name}");
        }
        t.save_checkpoint().unwrap();
        // The adapter holds exactly the trainable tensors; the frozen base is untouched.
        let adapter = load_st(&out.join("adapter.safetensors"));
        let mut saved: Vec<&String> = adapter.keys().collect();
        saved.sort();
        assert_eq!(saved, names.iter().collect::<Vec<_>>());
        let base = load_st(&model.join("model.safetensors"));
        for (name, tensor) in &base {
            assert_eq!(
                is_trainable(name, &t.config.train),
                adapter.contains_key(name),
                "{name}"
            );
            // Every lora_B has moved off zero (lora_A moves from the second step on, once B is
            // non-zero).
            if let Some(a) = adapter.get(name) {
                if name.contains("lora_B") {
                    assert!(bits(a) != bits(tensor), "{name} did not change");
                }
            }
        }
    }
}

#[test]
fn loss_falls_with_forced_routing_and_with_the_aux_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = setup(tmp.path());
    for routing in [RoutingLoss::Forced, RoutingLoss::Aux, RoutingLoss::Both] {
        let out = tmp.path().join(format!("run-{routing:?}"));
        let mut t = Trainer::new(config(&model, &data, &out, routing, 15)).unwrap();
        let first = t.train_step().unwrap();
        let mut last = first.clone();
        while t.step < 15 {
            last = t.train_step().unwrap();
        }
        assert!(
            last.lm_loss < 0.7 * first.lm_loss,
            "{routing:?}: lm loss {} -> {}",
            first.lm_loss,
            last.lm_loss
        );
        if routing != RoutingLoss::Forced {
            assert!(
                last.aux_loss < first.aux_loss,
                "{routing:?}: router loss {} -> {}",
                first.aux_loss,
                last.aux_loss
            );
        }
    }
}

/// The validation loss is the model's under learned routing, as `neko correct` runs it,
/// whatever routing it trains with: after training, the same weights give the same loss with
/// `routing` set to forced or aux (under forced it was the forced model's, which users do not
/// run).
#[test]
fn the_validation_loss_routes_as_correct_does() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = setup(tmp.path());
    let mut c = config(&model, &data, &tmp.path().join("x"), RoutingLoss::Both, 3);
    c.valid = c.data.clone();
    let mut t = Trainer::new(c).unwrap();
    for _ in 0..3 {
        t.train_step().unwrap();
    }
    let mut loss_under = |routing| {
        t.config.train.routing = routing;
        t.valid_loss().unwrap().unwrap()
    };
    let forced = loss_under(RoutingLoss::Forced);
    assert_eq!(forced, loss_under(RoutingLoss::Aux));
    assert!(forced.is_finite() && forced > 0.0);
}

#[test]
fn runs_are_deterministic_given_the_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = setup(tmp.path());
    let run = |seed: u64| {
        let mut c = config(&model, &data, &tmp.path().join("x"), RoutingLoss::Both, 3);
        c.train.seed = seed;
        c.train.grad_accum = 1;
        let mut t = Trainer::new(c).unwrap();
        for _ in 0..3 {
            t.train_step().unwrap();
        }
        let mut v: Vec<(String, Vec<u32>)> = t
            .adapter_tensors()
            .unwrap()
            .into_iter()
            .map(|(n, x)| (n, bits(&x)))
            .collect();
        v.sort();
        v
    };
    let a = run(1);
    assert_eq!(a, run(1));
    assert_ne!(a, run(2));
}

fn write_config(c: &TrainConfig, path: &Path) {
    std::fs::write(path, toml::to_string(c).unwrap()).unwrap();
}

/// [`setup`] plus a written 2-step `both`-routing config: (model, data, run dir, config path).
fn two_step_run(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let (model, data) = setup(dir);
    let run_dir = dir.join("run");
    let cfg_path = dir.join("train.toml");
    write_config(
        &config(&model, &data, &run_dir, RoutingLoss::Both, 2),
        &cfg_path,
    );
    (model, data, run_dir, cfg_path)
}

/// A resume continues the run that started: other start weights or other data are refused,
/// not trained on silently.
#[test]
fn resume_refuses_a_changed_model_or_data() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data, run_dir, cfg_path) = two_step_run(tmp.path());
    let cfg = cfg_path.to_str().unwrap();
    run_ok(neko().args(["train", "--config", cfg, "--stop-at-step", "1"]));
    let resume = || {
        let out = neko()
            .arg("train")
            .arg("--resume")
            .arg(&run_dir)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let original = std::fs::read_to_string(&data).unwrap();
    let more = r#"{"task": "gec", "input": ["We was late."], "output": "We were late."}"#;
    std::fs::write(&data, format!("{original}{more}\n")).unwrap();
    let (code, err) = resume();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("the training data changed"), "{err}");
    std::fs::write(&data, &original).unwrap();
    let mut other = upcycle_tiny("4");
    run_ok(
        other
            .args(["--lora-alpha", "8", "--force", "--to"])
            .arg(&model),
    );
    let (code, err) = resume();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("changed since the run started"), "{err}");
}

#[test]
fn resume_is_bit_identical_to_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = setup(tmp.path());
    let cfg_path = tmp.path().join("train.toml");
    let mut c = config(
        &model,
        &data,
        &tmp.path().join("unused"),
        RoutingLoss::Both,
        6,
    );
    c.train.grad_accum = 2;
    c.train.checkpoint_every = 2;
    c.train.balance_weight = 0.01;
    write_config(&c, &cfg_path);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let train = |extra: &[&str]| {
        let mut cmd = neko();
        cmd.arg("train").args(extra);
        run_ok(&mut cmd);
    };
    let cfg = cfg_path.to_str().unwrap();
    train(&["--config", cfg, "--out", a.to_str().unwrap()]);
    train(&[
        "--config",
        cfg,
        "--out",
        b.to_str().unwrap(),
        "--stop-at-step",
        "3",
    ]);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["step"], 3);
    train(&["--resume", b.to_str().unwrap()]);
    for file in ["adapter.safetensors", "optimizer.safetensors"] {
        let (x, y) = (load_st(&a.join(file)), load_st(&b.join(file)));
        assert_eq!(x.len(), y.len());
        for (name, t) in &x {
            if t.dtype() == DType::F32 {
                assert_eq!(bits(t), bits(&y[name]), "{file}: {name}");
            }
        }
    }
    // The logs agree on every step's losses.
    let losses = |dir: &Path| -> Vec<(u64, f64)> {
        std::fs::read_to_string(dir.join("train.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v.get("loss").is_some())
            .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
            .collect()
    };
    assert_eq!(losses(&a), losses(&b));
    assert_eq!(losses(&a).len(), 6);

    // Killed while a checkpoint was moved in (the adapter of step 4 in place, its other files
    // still in the commit folder, the next one half written): a resume finishes the move and
    // goes on from step 4, exactly.
    let (c, d) = (tmp.path().join("c"), tmp.path().join("d"));
    train(&[
        "--config",
        cfg,
        "--out",
        c.to_str().unwrap(),
        "--stop-at-step",
        "2",
    ]);
    train(&[
        "--config",
        cfg,
        "--out",
        d.to_str().unwrap(),
        "--stop-at-step",
        "4",
    ]);
    std::fs::rename(d.join("adapter.safetensors"), c.join("adapter.safetensors")).unwrap();
    let commit = c.join(".checkpoint.commit");
    std::fs::create_dir_all(&commit).unwrap();
    for f in ["optimizer.safetensors", "adapter.json", "state.json"] {
        std::fs::rename(d.join(f), commit.join(f)).unwrap();
    }
    let next = c.join(".checkpoint.next");
    std::fs::create_dir_all(&next).unwrap();
    std::fs::write(next.join("adapter.safetensors"), "half").unwrap();
    train(&["--resume", c.to_str().unwrap()]);
    assert!(!commit.exists() && !next.exists());
    let (x, y) = (
        load_st(&a.join("adapter.safetensors")),
        load_st(&c.join("adapter.safetensors")),
    );
    for (name, t) in &x {
        assert_eq!(bits(t), bits(&y[name]), "{name}");
    }
    // A damaged checkpoint is named, with what to do.
    let e = tmp.path().join("e");
    train(&[
        "--config",
        cfg,
        "--out",
        e.to_str().unwrap(),
        "--stop-at-step",
        "2",
    ]);
    let resume_fails = |says: &str| {
        let err = crate::util::refused(neko().arg("train").arg("--resume").arg(&e));
        assert!(
            err.contains(says) && err.contains("start over"),
            "{says}: {err}"
        );
    };
    let adapter = e.join("adapter.safetensors");
    let mut tensors = load_st(&adapter);
    let gone = tensors
        .keys()
        .find(|n| n.contains("layers.1."))
        .unwrap()
        .clone();
    tensors.remove(&gone);
    candle_core::safetensors::save(&tensors, &adapter).unwrap();
    resume_fails(&format!("tensor `{gone}` is missing"));
    std::fs::write(e.join("state.json"), "{").unwrap();
    resume_fails("state.json is not a run's state");
    // A finished run directory is not overwritten without --force.
    let again = neko()
        .args(["train", "--config", cfg, "--out", a.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));

    // The adapter loads for inference and changes the model; routing is measurable.
    let adapter = a.join("adapter.safetensors");
    let opts = LoadOptions::new(&Device::Cpu, DType::F32);
    let mut tuned =
        neko::train::load_with_adapter(model.to_str().unwrap(), &opts, &adapter).unwrap();
    let mut init = Model::load(model.to_str().unwrap(), &Device::Cpu, DType::F32).unwrap();
    let ids = Tensor::new(&[[5u32, 9, 33, 7]], &Device::Cpu).unwrap();
    let run = |m: &mut Model| {
        m.decoder.reset(4);
        m.decoder.forward(&ids, &[0], None, Logits::All).unwrap()
    };
    assert!(max_abs(&(run(&mut tuned) - run(&mut init)).unwrap()) > 1e-3);
    // It signs the model too: a resume of a run made with it, or without, is told apart.
    let sig = |m: Model| Corrector::new(m, None, CorrectOptions::default()).signature(&[Task::Asr]);
    assert_ne!(sig(tuned), sig(init));
    let out = run_ok(neko().args([
        "correct",
        "--model",
        model.to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
        "--max-new-tokens",
        "4",
        data.to_str().unwrap(),
    ]));
    assert_eq!(out.lines().count(), 8);
    // adapter.json records the model it was trained on: another model of the same shapes
    // takes the adapter with a warning naming both.
    let with_adapter = |m: &Path| {
        let out = ok(neko()
            .args(["correct", "--max-new-tokens", "2", "--model"])
            .arg(m)
            .arg("--adapter")
            .arg(&adapter)
            .arg(&data));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(!with_adapter(&model).contains("trained on"));
    let other = tmp.path().join("other-base");
    copy_dir(&model, &other);
    let cfg = other.join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["rms_norm_eps"] = 1e-3.into();
    std::fs::write(&cfg, v.to_string()).unwrap();
    let err = with_adapter(&other);
    assert!(
        err.contains("warning") && err.contains("trained on") && err.contains("other-base is fp-"),
        "{err}"
    );
    let report = run_ok(neko().args([
        "info",
        "--model",
        model.to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
        "--routing",
        "--json",
        "--data",
        data.to_str().unwrap(),
    ]));
    let rows: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 4);
    for r in rows.as_array().unwrap() {
        let share = r["share"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&share), "{r}");
        let top1 = r["top1"].as_f64().unwrap();
        assert!(top1 <= share, "{r}");
        assert_eq!(r["per_layer"].as_array().unwrap().len(), 2);
    }
    // An unknown task is named with its file and line; --adapter belongs to --routing.
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"task\": \"speech\", \"input\": [\"a\"], \"output\": \"a\"}\n",
    )
    .unwrap();
    let info = |extra: &[&str]| {
        let out = neko()
            .args(["info", "--model", model.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = info(&["--routing", "--data", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("bad.jsonl:1: field task: unknown task `speech`"),
        "{err}"
    );
    let (code, err) = info(&["--adapter", adapter.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    // Nothing to measure is said, not printed as an empty table.
    let broken = tmp.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"task\": \"asr\", \"input\": 5}\n").unwrap();
    let (code, err) = info(&["--routing", "--data", broken.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--data: no record to measure"), "{err}");
    let data_arg = data.to_str().unwrap();
    let (code, err) = info(&["--routing", "--data", data_arg, "--max-records", "0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--max-records"), "{err}");
    // The table has a top-k column next to top-1 where k is more than 1.
    let table = |model: &Path| {
        run_ok(
            neko()
                .args(["info", "--routing", "--data"])
                .arg(&data)
                .arg("--model")
                .arg(model),
        )
    };
    let two = table(&model);
    assert!(
        two.starts_with("task  expert  records  tokens   top-1  top-2 (share"),
        "{two}"
    );
    let top1 = tmp.path().join("top1");
    run_ok(upcycle_tiny("4").args(["--top-k", "1", "--to"]).arg(&top1));
    let one = table(&top1);
    assert!(
        one.starts_with("task  expert  records  tokens   top-1 (share"),
        "{one}"
    );
    // One share per row, then the per-layer list.
    let row = one.lines().nth(1).unwrap();
    assert_eq!(row.matches('%').count(), 1, "{one}");
    // Records left out of the table (unreadable, longer than the model) are counted and the
    // first named; a dense model is said to be dense.
    let mixed = tmp.path().join("mixed.jsonl");
    let long = "many words in a long line ".repeat(80);
    std::fs::write(
        &mixed,
        format!("{{\"task\": \"asr\", \"input\": [\"{long}\"]}}\n{{broken\n")
            + &std::fs::read_to_string(&data).unwrap(),
    )
    .unwrap();
    let out = neko()
        .args(["info", "--routing", "--data"])
        .arg(&mixed)
        .arg("--model")
        .arg(&model)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("left out 2 record(s) that cannot be measured; the first: ")
            && err.contains("mixed.jsonl:1: longer than the model's"),
        "{err}"
    );
    let err = crate::util::refused(
        neko()
            .args(["info", "--routing", "--data"])
            .arg(&data)
            .arg("--model")
            .arg(crate::util::fixture("tiny-llama")),
    );
    assert!(err.contains("is dense, with no experts"), "{err}");
}

/// A record longer than the model has positions for is left out even when `max_len` allows
/// it (it used to stop the run at the step that drew it), and `--resume` takes no config.
#[test]
fn examples_longer_than_the_model_are_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = setup(tmp.path());
    let long = format!(
        "{{\"task\": \"asr\", \"input\": [\"{0}\"], \"output\": \"{0}\"}}\n",
        "many words in a long line ".repeat(80)
    );
    let text = std::fs::read_to_string(&data).unwrap() + &long;
    std::fs::write(&data, text).unwrap();
    let run_dir = tmp.path().join("run");
    let mut c = config(&model, &data, &run_dir, RoutingLoss::Both, 2);
    c.train.max_len = 100_000;
    let cfg = tmp.path().join("train.toml");
    write_config(&c, &cfg);
    let out = neko()
        .args(["train", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("8 examples (0 without a reference (missing or empty), 1 over"),
        "{err}"
    );
    let both = neko()
        .args(["train", "--resume", run_dir.to_str().unwrap()])
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2));
}

/// Without a terminal (nohup, `2> log`) the log still says the validation losses and an ETA,
/// which only the progress bar showed.
#[test]
fn a_log_without_a_terminal_has_valid_losses_and_an_eta() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = setup(tmp.path());
    let mut c = config(&model, &data, &tmp.path().join("run"), RoutingLoss::Both, 2);
    c.valid = c.data.clone();
    c.train.valid_every = 1;
    let cfg = tmp.path().join("train.toml");
    write_config(&c, &cfg);
    let out = ok(neko().args(["train", "--config", cfg.to_str().unwrap()]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("neko: step 1: valid loss"), "{err}");
    assert!(
        err.contains("step 2/2: loss") && err.contains(", ETA 0:00:00"),
        "{err}"
    );
}

/// A finished run's final validation line is written once, not again by each `--resume`.
#[test]
fn resuming_a_finished_run_adds_nothing_to_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = setup(tmp.path());
    let run_dir = tmp.path().join("run");
    let mut c = config(&model, &data, &run_dir, RoutingLoss::Both, 2);
    c.valid = c.data.clone();
    c.train.valid_every = 0;
    let cfg = tmp.path().join("train.toml");
    write_config(&c, &cfg);
    run_ok(neko().args(["train", "--config", cfg.to_str().unwrap()]));
    let log = || std::fs::read_to_string(run_dir.join("train.jsonl")).unwrap();
    let before = log();
    assert_eq!(before.matches("valid_loss").count(), 1, "{before}");
    run_ok(neko().args(["train", "--resume", run_dir.to_str().unwrap()]));
    assert_eq!(log(), before);
    // From the environment, --config and --resume are defaults the other flag overrides; both
    // on the command line, or --resume with a new run's flags, are refused.
    let (run, cfg) = (run_dir.to_str().unwrap(), cfg.to_str().unwrap());
    run_ok(
        neko()
            .env("NEKO_TRAIN_CONFIG", cfg)
            .args(["train", "--resume", run]),
    );
    assert_eq!(log(), before);
    let ex = tmp.path().join("ex.jsonl");
    run_ok(
        (neko().env("NEKO_TRAIN_RESUME", run))
            .args(["train", "--config", cfg, "--export-examples"])
            .arg(&ex),
    );
    assert!(ex.exists());
    let err = crate::util::refused(neko().args(["train", "--config", cfg, "--resume", run]));
    assert!(err.contains("not both"), "{err}");
    let err = crate::util::refused(neko().args(["train", "--resume", run, "--force"]));
    assert!(err.contains("go with --config"), "{err}");
}

#[test]
fn configs_parse_and_refuse_test_splits() {
    let text = r#"
model = "models/neko-smol-lora"
out = "runs/x"
[train]
routing = "aux"
steps = 10
[[data]]
path = "../shared/data/synth/ocr.train.jsonl"
"#;
    let c = TrainConfig::from_toml(text).unwrap();
    assert_eq!(c.train.routing, RoutingLoss::Aux);
    assert_eq!(c.train.batch_size, Hyper::default().batch_size);
    assert!(TrainConfig::from_toml(&text.replace("steps", "stepz")).is_err());
    // A warm-up longer than the run, and a file of which no record is read, are mistakes.
    let err = |t: &str| TrainConfig::from_toml(t).unwrap_err().to_string();
    let long = text.replace("steps = 10", "steps = 10\nwarmup_steps = 11");
    assert!(err(&long).contains("longer than the run"), "{}", err(&long));
    let none = format!("{text}max_records = 0\n");
    assert!(
        err(&none).contains("ocr.train.jsonl: max_records = 0"),
        "{}",
        err(&none)
    );
    // Warm-up then cosine down to min_lr_ratio.
    let mut c = c;
    c.train.warmup_steps = 2;
    c.train.min_lr_ratio = 0.1;
    assert!((c.lr_at(1) - c.train.lr / 2.0).abs() < 1e-12);
    assert!((c.lr_at(2) - c.train.lr).abs() < 1e-12);
    assert!((c.lr_at(10) - c.train.lr * 0.1).abs() < 1e-12);
    let shipped =
        TrainConfig::read(&crate::util::repo().join("configs/train/neko-smol.toml")).unwrap();
    assert!(shipped
        .data
        .iter()
        .chain(&shipped.valid)
        .all(|d| !neko::train::data::is_test_split(&d.path)));
}

#[test]
fn frozen_projections_give_the_input_gradient_of_a_plain_matmul() {
    // Proj skips the frozen weight's gradient with a custom op; the input's must not change.
    use candle_core::Module;
    let dev = Device::Cpu;
    let w = Tensor::arange(0f32, 12.0, &dev)
        .unwrap()
        .reshape((3, 4))
        .unwrap()
        .affine(0.1, -0.5)
        .unwrap();
    let x = candle_core::Var::from_tensor(
        &Tensor::arange(0f32, 24.0, &dev)
            .unwrap()
            .reshape((2, 3, 4))
            .unwrap()
            .sin()
            .unwrap(),
    )
    .unwrap();
    let proj = neko::model::weights::Proj::Full(candle_nn::Linear::new(w.clone(), None));
    let plain = candle_nn::Linear::new(
        candle_core::Var::from_tensor(&w)
            .unwrap()
            .as_tensor()
            .clone(),
        None,
    );
    let grad_of = |m: &dyn Module| {
        let y = m.forward(x.as_tensor()).unwrap();
        let loss = y.sqr().unwrap().sum_all().unwrap();
        let g = loss.backward().unwrap();
        (y, g.get(x.as_tensor()).unwrap().clone())
    };
    let (y1, g1) = grad_of(&proj);
    let (y2, g2) = grad_of(&plain);
    assert!(max_abs(&(y1 - y2).unwrap()) < 1e-6);
    assert!(max_abs(&(g1 - g2).unwrap()) < 1e-5);
}

#[test]
fn full_mode_trains_every_tensor_but_the_embeddings() {
    // The GPU mode, on a full-expert checkpoint, run here on the CPU.
    let tmp = tempfile::tempdir().unwrap();
    let (_, data) = setup(tmp.path());
    let model = tmp.path().join("full");
    run_ok(neko().args([
        "upcycle",
        "--model",
        fixture("tiny-llama").to_str().unwrap(),
        "--experts",
        "4",
        "--tasks",
        "asr=0,st=1,mt=1,ocr=2,gec=3",
        "--to",
        model.to_str().unwrap(),
    ]));
    let mut c = config(&model, &data, &tmp.path().join("run"), RoutingLoss::Both, 8);
    c.train.mode = neko::train::TrainMode::Full;
    c.train.lr = 2e-3;
    let mut t = Trainer::new(c).unwrap();
    let names: Vec<String> = t.trainable().iter().map(|(n, _)| n.clone()).collect();
    assert!(names.iter().any(|n| n.ends_with("self_attn.q_proj.weight")));
    assert!(names.iter().any(|n| n.ends_with("experts.3.w2.weight")));
    assert!(!names
        .iter()
        .any(|n| n.contains("embed_tokens") || n.contains("norm")));
    let first = t.train_step().unwrap();
    let grads = t.next_gradients().unwrap();
    for name in &names {
        assert!(max_abs(&grads[name]) > 0.0, "zero gradient for {name}");
    }
    let mut last = first.clone();
    while t.step < 8 {
        last = t.train_step().unwrap();
    }
    assert!(
        last.lm_loss < 0.7 * first.lm_loss,
        "lm loss {} -> {}",
        first.lm_loss,
        last.lm_loss
    );
}

/// neko-smol ships as an adapter over a fetched base: `neko upcycle --adapter` rebuilds the
/// trained model, and `neko correct` without `--model` loads it from $NEKO_CACHE/neko-smol,
/// giving what `--model init --adapter` gives; without it set up, exit 2 says what to run.
#[test]
fn a_trained_adapter_rebuilds_the_default_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data, run_dir, cfg_path) = two_step_run(tmp.path());
    run_ok(neko().args(["train", "--config", cfg_path.to_str().unwrap()]));
    let adapter = run_dir.join("adapter.safetensors");
    let cache = tmp.path().join("cache");
    let upcycle = |rank: &str, to: &Path| {
        let mut cmd = upcycle_tiny(rank);
        cmd.arg("--adapter").arg(&adapter).arg("--to").arg(to);
        cmd.output().unwrap()
    };
    let correct = |extra: &[&str]| {
        let mut cmd = neko();
        cmd.env("NEKO_CACHE", &cache).env_remove("NEKO_MODEL");
        cmd.arg("correct").args(extra);
        cmd.args(["--max-new-tokens", "6", data.to_str().unwrap()]);
        cmd.output().unwrap()
    };
    let missing = correct(&[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("scripts/setup.sh"));

    assert!(upcycle("4", &cache.join("neko-smol")).status.success());
    let default = correct(&[]);
    assert!(default.status.success());
    let explicit = correct(&[
        "--model",
        model.to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
    ]);
    assert_eq!(
        String::from_utf8(default.stdout).unwrap(),
        String::from_utf8(explicit.stdout).unwrap()
    );
    // An adapter of another upcycling (here: a rank the model does not have) is refused.
    let refused = upcycle("2", &tmp.path().join("other"));
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("trained with expert_lora_rank 4"), "{err}");
    // Without its adapter.json, the shapes still tell.
    let bare = tmp.path().join("bare.safetensors");
    std::fs::copy(&adapter, &bare).unwrap();
    let mut cmd = upcycle_tiny("2");
    cmd.arg("--adapter")
        .arg(&bare)
        .arg("--to")
        .arg(tmp.path().join("bare"));
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has shape"));
    // Same names and shapes, another scale of every delta: refused by the adapter.json that
    // training wrote beside it, for a rebuild and for --adapter alike.
    let mut other_alpha = upcycle_tiny("4");
    other_alpha
        .args(["--lora-alpha", "8", "--to"])
        .arg(tmp.path().join("alpha"));
    let refused = other_alpha.arg("--adapter").arg(&adapter).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("trained with expert_lora_alpha 4"), "{err}");
    let mut plain = upcycle_tiny("4");
    plain
        .args(["--lora-alpha", "8", "--to"])
        .arg(tmp.path().join("alpha8"));
    assert!(plain.output().unwrap().status.success());
    let refused = correct(&[
        "--model",
        tmp.path().join("alpha8").to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("expert_lora_alpha"));
    // A renamed copy beside the run's adapter.json is checked by that file.
    let renamed = run_dir.join("renamed.safetensors");
    std::fs::copy(&adapter, &renamed).unwrap();
    let refused = correct(&[
        "--model",
        tmp.path().join("alpha8").to_str().unwrap(),
        "--adapter",
        renamed.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(2));
}

/// `neko train --config CFG --export-examples OUT`: the exported examples.
fn export_examples(cfg: &Path, out: &Path) -> Vec<serde_json::Value> {
    run_ok(
        neko()
            .args(["train", "--config", cfg.to_str().unwrap()])
            .arg("--export-examples")
            .arg(out),
    );
    json_lines(&std::fs::read(out).unwrap())
}

/// Exporting never touches a run, so it works beside one, and it refuses to overwrite its own
/// data; an unreadable record is named; `tec` is `gec`; lora mode on full experts is refused;
/// an empty data file and a low-rank delta above the hidden size are refused.
#[test]
fn training_mistakes_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, data, run_dir, cfg_path) = two_step_run(tmp.path());
    let cfg = cfg_path.to_str().unwrap();
    run_ok(neko().args(["train", "--config", cfg, "--stop-at-step", "1"]));
    let state = std::fs::read(run_dir.join("state.json")).unwrap();
    assert_eq!(
        export_examples(&cfg_path, &tmp.path().join("ex.jsonl")).len(),
        8
    );
    assert_eq!(std::fs::read(run_dir.join("state.json")).unwrap(), state);
    let out = neko()
        .args(["train", "--config", cfg, "--export-examples"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the data file"));
    let text = std::fs::read_to_string(&data).unwrap();
    let more = "{\"task\": \"tec\", \"input\": [\"We was late.\"], \"output\": \"We were late.\"}\n{broken\n";
    std::fs::write(&data, format!("{text}{more}")).unwrap();
    let out = neko()
        .args(["train", "--config", cfg, "--force", "--stop-at-step", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("neko: 9 examples"), "{err}");
    // Without a terminal, progress comes as lines.
    assert!(err.contains("neko: step 1/2: loss "), "{err}");
    assert!(
        err.contains("the first: ") && err.contains("mix.jsonl:10: broken JSON"),
        "{err}"
    );
    let full = tmp.path().join("full");
    run_ok(
        neko()
            .args(["upcycle", "--model"])
            .arg(fixture("tiny-llama"))
            .args([
                "--experts",
                "4",
                "--tasks",
                "asr=0,st=1,mt=1,ocr=2,gec=3",
                "--to",
            ])
            .arg(&full),
    );
    let mut c = config(
        &full,
        &data,
        &tmp.path().join("run-full"),
        RoutingLoss::Both,
        2,
    );
    c.train.mode = neko::train::TrainMode::Lora;
    let full_cfg = tmp.path().join("full.toml");
    write_config(&c, &full_cfg);
    let out = neko()
        .args(["train", "--config", full_cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has full ones"));
    // An empty data file trains on nothing.
    std::fs::write(&data, "").unwrap();
    let out = neko()
        .args(["train", "--config", cfg, "--force"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mix.jsonl: no records"), "{err}");
    // A low-rank delta larger than the model's hidden size (64) is no low-rank one.
    let out = upcycle_tiny("65")
        .arg("--to")
        .arg(tmp.path().join("r65"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--lora-rank 65 is above the model's hidden size 64"),
        "{err}"
    );
}

/// `neko train --export-examples` writes the examples another engine trains on
/// (scripts/train_torch.py): each one's prompt is exactly what `neko correct` renders for the
/// record, the answer follows, the expert is the task's, and nothing is trained.
#[test]
fn exported_examples_are_the_prompts_correct_renders_plus_the_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data, run_dir, cfg_path) = two_step_run(tmp.path());
    let examples = export_examples(&cfg_path, &tmp.path().join("examples.jsonl"));
    assert!(
        !run_dir.join("state.json").exists(),
        "exporting must not train"
    );
    let prompts = json_lines(
        run_ok(
            neko()
                .args(["correct", "--dump-prompts", "--model"])
                .arg(&model)
                .arg(&data),
        )
        .as_bytes(),
    );
    assert_eq!(examples.len(), 8);
    assert_eq!(examples.len(), prompts.len());
    let experts = [("asr", 0), ("mt", 1), ("ocr", 2), ("gec", 3)];
    let ids_of = |v: &serde_json::Value| -> Vec<u64> {
        v["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap())
            .collect()
    };
    for (ex, p) in examples.iter().zip(&prompts) {
        let ids = ids_of(ex);
        let start = ex["answer_start"].as_u64().unwrap() as usize;
        assert!(start < ids.len(), "{ex}");
        let prompt = ids_of(p);
        assert_eq!(ids[..start], prompt[..], "{ex} vs {p}");
        assert_eq!(ex["task"], p["task"]);
        let want = experts.iter().find(|(t, _)| ex["task"] == *t).unwrap().1;
        assert_eq!(ex["expert"], want, "{ex}");
    }
}

/// `target = "pick"`: the answer is the hypothesis closest to the reference (the 1-best on a
/// tie), as `neko correct`'s N-best pick would keep it; the prompt is the same.
#[test]
fn a_pick_target_trains_on_the_closest_hypothesis() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _) = setup(tmp.path());
    let data = tmp.path().join("asr.jsonl");
    let records = [
        r#"{"task": "asr", "input": ["the cat sad on a mat", "the cat sat on a mat"], "output": "The cat sat on the mat."}"#,
        r#"{"task": "asr", "input": ["a dog ran", "a dog can"], "output": "A dog."}"#,
    ];
    std::fs::write(&data, records.join("\n") + "\n").unwrap();
    let export = |target: Target| {
        let mut c = config(&model, &data, &tmp.path().join("run"), RoutingLoss::Both, 1);
        c.data[0].target = target;
        let cfg = tmp.path().join("pick.toml");
        write_config(&c, &cfg);
        export_examples(&cfg, &tmp.path().join("examples.jsonl"))
    };
    let tokenizer = tokenizers::Tokenizer::from_file(model.join("tokenizer.json")).unwrap();
    let answer_starts_with = |ex: &serde_json::Value, text: &str| {
        let ids: Vec<u64> = ex["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap())
            .collect();
        let start = ex["answer_start"].as_u64().unwrap() as usize;
        let want: Vec<u64> = tokenizer
            .encode(text, false)
            .unwrap()
            .get_ids()
            .iter()
            .map(|&i| i as u64)
            .collect();
        ids[start..].starts_with(&want) && ids.len() - start == want.len() + 1
    };
    let picked = export(Target::Pick);
    let reference = export(Target::Reference);
    assert!(
        answer_starts_with(&picked[0], "the cat sat on a mat"),
        "{}",
        picked[0]
    );
    assert!(answer_starts_with(&picked[1], "a dog ran"), "{}", picked[1]);
    assert!(answer_starts_with(&reference[0], "The cat sat on the mat."));
    assert!(answer_starts_with(&reference[1], "A dog."));
    // Only the answer differs.
    for (p, r) in picked.iter().zip(&reference) {
        let start = p["answer_start"].as_u64().unwrap() as usize;
        assert_eq!(p["answer_start"], r["answer_start"]);
        assert_eq!(
            p["ids"].as_array().unwrap()[..start],
            r["ids"].as_array().unwrap()[..start]
        );
    }
}

/// A copy of a model folder's files.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A run whose loss turns NaN stops there with exit 2 and saves nothing of it; an adapter
/// with NaN values (a diverged run's) is refused by `neko correct --adapter`.
#[test]
fn a_diverging_run_stops_and_a_nan_adapter_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = setup(tmp.path());
    let run_dir = tmp.path().join("run");
    let mut c = config(&model, &data, &run_dir, RoutingLoss::Both, 6);
    c.train.lr = 1e30;
    c.train.checkpoint_every = 100;
    let cfg = tmp.path().join("train.toml");
    write_config(&c, &cfg);
    let err = train_refused(&cfg, &[]);
    assert!(
        err.contains("training diverged") && err.contains("no checkpoint was saved"),
        "{err}"
    );
    assert!(!run_dir.join("adapter.safetensors").exists());
    // An update that makes the weights NaN under a loss still finite: not saved either.
    c.train.lr = 1e39;
    c.train.checkpoint_every = 1;
    write_config(&c, &cfg);
    let err = train_refused(&cfg, &["--force"]);
    assert!(
        err.contains("training diverged") && err.contains("NaN or infinite"),
        "{err}"
    );
    // Resuming would replay the same steps: the advice is a new start.
    assert!(
        err.contains("start over with --force and a lower lr"),
        "{err}"
    );
    assert!(!run_dir.join("adapter.safetensors").exists());

    // A finished run's adapter with one NaN written into it.
    c.train.lr = 1e-2;
    c.train.steps = 1;
    write_config(&c, &cfg);
    run_ok(neko().args(["train", "--force", "--config", cfg.to_str().unwrap()]));
    let adapter = run_dir.join("adapter.safetensors");
    let mut tensors = load_st(&adapter);
    let name = tensors.keys().next().unwrap().clone();
    let t = &tensors[&name];
    let nan = (t.ones_like().unwrap() * f64::NAN).unwrap();
    tensors.insert(name.clone(), nan);
    candle_core::safetensors::save(&tensors, &adapter).unwrap();
    let out = neko()
        .args([
            "correct",
            "--task",
            "asr",
            "--model",
            model.to_str().unwrap(),
            "--adapter",
        ])
        .arg(&adapter)
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("tensor `{name}` holds NaN")), "{err}");
}

/// Empty references are no references (an empty answer would be taught), and a `[[valid]]`
/// file with no usable record is refused rather than giving no validation loss unseen; its
/// unreadable records are counted and the first named.
#[test]
fn empty_references_and_an_unusable_valid_file_are_said() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = setup(tmp.path());
    let text = std::fs::read_to_string(&data).unwrap();
    let empty = "{\"task\": \"asr\", \"input\": [\"a b\"], \"output\": \"  \"}\n";
    std::fs::write(&data, format!("{text}{empty}")).unwrap();
    let valid = tmp.path().join("valid.jsonl");
    std::fs::write(
        &valid,
        "{\"task\": \"asr\", \"input\": [\"a\"], \"output\": 5}\n",
    )
    .unwrap();
    let mut c = config(&model, &data, &tmp.path().join("run"), RoutingLoss::Both, 1);
    c.valid = vec![neko::train::data::DataSpec {
        path: valid.clone(),
        ..c.data[0].clone()
    }];
    let cfg = tmp.path().join("train.toml");
    write_config(&c, &cfg);
    let err = train_refused(&cfg, &[]);
    assert!(
        err.contains("no validation examples") && err.contains("valid.jsonl:1"),
        "{err}"
    );
    c.valid.clear();
    write_config(&c, &cfg);
    let out = ok(neko().args(["train", "--force", "--config", cfg.to_str().unwrap()]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("8 examples (1 without a reference (missing or empty)"),
        "{err}"
    );
}

/// A config may leave the run folder to `--out`; without either, the refusal says so.
#[test]
fn a_config_without_out_takes_the_out_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, _, run_dir, cfg) = two_step_run(tmp.path());
    let text = std::fs::read_to_string(&cfg).unwrap();
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("out = ")).collect();
    assert_eq!(kept.len() + 1, text.lines().count(), "{text}");
    std::fs::write(&cfg, kept.join("\n")).unwrap();
    let err = train_refused(&cfg, &[]);
    assert!(err.contains("no `out`") && err.contains("--out"), "{err}");
    let given = tmp.path().join("given");
    ok(neko()
        .args([
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--stop-at-step",
            "1",
        ])
        .arg("--out")
        .arg(&given));
    assert!(given.join("state.json").exists());
    assert!(!run_dir.exists());
}

/// What the data lose is said: by training (every record unreadable: the first named with its
/// field, not "lack a reference") and by `--export-examples` (which needs no `out`); a
/// `valid_every` that does not divide the steps still validates the last; a data file's task
/// without an expert is named with its line.
#[test]
fn what_the_data_lose_is_said_and_the_last_step_validated() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = setup(tmp.path());
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"task\": \"asr\", \"input\": [\"a\"], \"output\": 3}\n{\"task\": \"asr\", \"input\": 5, \"output\": \"x\"}\n",
    )
    .unwrap();
    let mut c = config(&model, &bad, &tmp.path().join("run"), RoutingLoss::Both, 2);
    let cfg = tmp.path().join("train.toml");
    write_config(&c, &cfg);
    let err = train_refused(&cfg, &[]);
    assert!(
        err.contains("no training examples in [[data]] (0 without a reference, 0 too long, 2 unreadable; the first: ")
            && err.contains("bad.jsonl:1: field output: "),
        "{err}"
    );
    // Export: one good record of three, the others counted, and no `out` needed.
    let text = std::fs::read_to_string(&bad).unwrap();
    let first = std::fs::read_to_string(&data).unwrap();
    let first = first.lines().next().unwrap();
    std::fs::write(&bad, format!("{text}{first}\n")).unwrap();
    let no_out: String = (std::fs::read_to_string(&cfg).unwrap().lines())
        .filter(|l| !l.starts_with("out = "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&cfg, no_out).unwrap();
    let ex = tmp.path().join("ex.jsonl");
    let out = ok(neko()
        .args([
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--export-examples",
        ])
        .arg(&ex));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("neko: 1 examples (0 without a reference (missing or empty), 0 over")
            && err.contains("2 unreadable")
            && err.contains("the first: ")
            && err.contains("wrote 1 examples"),
        "{err}"
    );
    // valid_every 2 of 3 steps: step 2 and the last, 3.
    c.data[0].path = data.clone();
    c.valid = c.data.clone();
    c.train.steps = 3;
    c.train.valid_every = 2;
    write_config(&c, &cfg);
    ok(neko().args(["train", "--config", cfg.to_str().unwrap()]));
    let log = std::fs::read_to_string(tmp.path().join("run/train.jsonl")).unwrap();
    let validated: Vec<u64> = (log.lines())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("valid_loss").is_some())
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(validated, [2, 3]);
    // A task the model has no expert for, named with its file and line.
    let three = tmp.path().join("three");
    let mut up = neko();
    up.args(["upcycle", "--model"]).arg(fixture("tiny-llama"));
    run_ok(
        up.args([
            "--experts",
            "3",
            "--tasks",
            "asr=0,mt=1,ocr=2",
            "--lora-rank",
            "4",
        ])
        .arg("--to")
        .arg(&three),
    );
    c.model = three.to_str().unwrap().to_string();
    c.valid.clear();
    write_config(&c, &cfg);
    let err = train_refused(&cfg, &["--force"]);
    assert!(
        err.contains("mix.jsonl line 7: task `gec` has no expert"),
        "{err}"
    );
}

/// A Ctrl-C while a `--force` run loads leaves the run folder as it was: a finished run that
/// `--force` (typed for `--resume`) would have cleared keeps its step, adapter and log.
#[cfg(unix)]
#[test]
fn an_interrupt_before_the_first_step_leaves_the_run_folder_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, data, run_dir, cfg) = two_step_run(tmp.path());
    ok(neko().args(["train", "--config", cfg.to_str().unwrap()]));
    let state = std::fs::read(run_dir.join("state.json")).unwrap();
    let log = std::fs::read(run_dir.join("train.jsonl")).unwrap();
    // Enough records that loading them takes seconds (a real model's load takes tens).
    let line = std::fs::read_to_string(&data).unwrap();
    let line = line.lines().next().unwrap();
    std::fs::write(&data, format!("{line}\n").repeat(40_000)).unwrap();
    let mut child = neko()
        .args(["train", "--force", "--config", cfg.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once its Ctrl-C handler is in (the first thing it does), while it loads: a fixed
    // sleep raced both the handler and the load.
    #[cfg(target_os = "linux")]
    {
        let pid = child.id();
        crate::util::wait_for(&mut child, "the SIGINT handler", || {
            crate::util::catches_signal(pid, 2)
        });
    }
    #[cfg(not(target_os = "linux"))]
    std::thread::sleep(std::time::Duration::from_millis(700));
    crate::util::send_signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("interrupted before the first step"), "{err}");
    assert_eq!(std::fs::read(run_dir.join("state.json")).unwrap(), state);
    assert_eq!(std::fs::read(run_dir.join("train.jsonl")).unwrap(), log);
}

/// `neko train --config CFG EXTRA` that must be refused with exit 2: its stderr.
fn train_refused(cfg: &Path, extra: &[&str]) -> String {
    crate::util::refused(
        neko()
            .args(["train", "--config", cfg.to_str().unwrap()])
            .args(extra),
    )
}

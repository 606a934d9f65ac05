//! The guard's margin check: an answer's margin is its log-probability minus its baseline's
//! (ASR: the answer with its word edits undone), computed after the task's cached prefix with
//! the prompt run once and its cache row copied for the two answers; checked against scoring
//! each answer alone with its whole prompt (tiny f32 fixtures).

use candle_core::{Device, Tensor, D};
use neko::correct::{Constrain, CorrectOptions, Corrector};
use neko::guard::{margin_baseline, Agreed, GuardOptions, Margin, Nbest};
use neko::model::{Logits, Model};
use neko::record::Record;
use neko::style::StyleMode;
use neko::Task;

use crate::util::{fixture, json_lines, load_model, neko, ok, variant_records};

/// log p(answer + end token | prompt), the whole prompt run with the answer in one row.
fn logprob_alone(model: &mut Model, prompt: &[u32], answer: &str) -> f64 {
    let eos = model.config.eos_token_ids[0];
    let enc = model.tokenizer.encode(answer, false).unwrap();
    let target = [enc.get_ids(), &[eos]].concat();
    let ids = [prompt, &target].concat();
    model.decoder.reset(ids.len());
    let input = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model
        .decoder
        .forward(&input, &[0], None, Logits::All)
        .unwrap();
    let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    target
        .iter()
        .enumerate()
        .map(|(k, &t)| lp[prompt.len() + k - 1][t as usize] as f64)
        .sum()
}

fn margins_equal_scoring_alone(name: &str) {
    let options = CorrectOptions {
        max_new_tokens: Some(12),
        // Random tiny models rarely end an answer; a space after the first word does.
        stop: vec![" ".into()],
        // Any answer passes the edit limit; every answer that differs is scored.
        guard: GuardOptions {
            max_edit: Some(1e6),
            margin: Margin::All(f64::NEG_INFINITY),
            agreed: Agreed::Free,
            nbest: Nbest::Free,
            ..GuardOptions::on()
        },
        // Answers in the variants' lower-case style: the margin must score the written text.
        style: StyleMode::Follow,
        // Free answers: constrained ones mostly copy a hypothesis, which has no margin.
        constrain: Constrain::None,
        ..CorrectOptions::default()
    };
    let records = variant_records();
    let refs: Vec<&Record> = records.iter().collect();
    let mut corrector = Corrector::new(load_model(name), None, options);
    let out = corrector.correct_task(Task::Asr, &refs);
    let (mut checked, mut restyled) = (0, 0);
    for (r, c) in records.iter().zip(out) {
        let c = c.unwrap();
        let Some(margin) = c.margin else { continue };
        assert!(c.guard.is_none(), "{name}: no margin is under -inf");
        // The margin scores the answer as the model wrote it, before the hypotheses' style
        // (lower case, no punctuation here) was applied to the output.
        let written = c.written.as_deref().unwrap_or(&c.text);
        restyled += usize::from(c.written.is_some());
        let prompt = corrector.encode_prompt(Task::Asr, r).unwrap();
        let undone = margin_baseline(Task::Asr, written, r.best().unwrap());
        let model = &mut corrector.model;
        let want = logprob_alone(model, &prompt, written) - logprob_alone(model, &prompt, &undone);
        assert!(
            (margin - want).abs() < 1e-3 * want.abs().max(1.0),
            "{name} {}: margin {margin}, scored alone {want}",
            r.id
        );
        checked += 1;
    }
    assert!(checked >= 2, "{name}: only {checked} answers scored");
    assert!(restyled > 0, "{name}: no scored answer was restyled");
    assert_eq!(corrector.stats.scored, checked);
}

#[test]
fn llama_margin_equals_scoring_each_answer_alone() {
    margins_equal_scoring_alone("tiny-llama");
}

#[test]
fn mixtral_margin_equals_scoring_each_answer_alone() {
    margins_equal_scoring_alone("tiny-mixtral");
}

/// `neko correct` with the tiny Mixtral on the HyPoradise record variants (ASR, answers end at
/// a space, any answer passes the edit limit) at guard margin `margin`: output lines, stderr.
fn correct_variants_at_margin(margin: &str) -> (Vec<serde_json::Value>, String) {
    correct_variants_with(margin, &[])
}

/// [`correct_variants_at_margin`] with `extra` decoding flags.
fn correct_variants_with(margin: &str, extra: &[&str]) -> (Vec<serde_json::Value>, String) {
    let mut cmd = neko();
    cmd.args([
        "correct",
        "--task",
        "asr",
        "--max-new-tokens",
        "8",
        "--stop",
        " ",
    ])
    .args(["--guard-max-edit", "1000000", "--guard-margin", margin])
    // The tiny model's answers change anything; only the margin is under test.
    .args(["--guard-agreed", "free", "--guard-nbest", "free"])
    .args(["--guard-dropped", "free", "--guard-spacing", "free"])
    .args(["--constrain", "none"])
    .args(extra)
    .arg("--model")
    .arg(fixture("tiny-mixtral"))
    .arg(fixture("records/variants.json"));
    let out = ok(&mut cmd);
    (
        json_lines(&out.stdout),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn an_answer_under_the_margin_falls_back_to_the_one_best() {
    let run = correct_variants_at_margin;
    let (out, err) = run("1e9");
    assert_eq!(out.len(), 4);
    let scored: Vec<_> = out.iter().filter(|r| r.get("margin").is_some()).collect();
    assert!(!scored.is_empty());
    for r in &scored {
        assert_eq!(r["guard"], "fallback:margin", "{r}");
        assert_eq!(r["prediction"], r["best"]);
        assert!(r["margin"].as_f64().unwrap() < 1e9);
    }
    assert!(err.contains("guard:asr:w1000000+m1000000000"), "{err}");
    // No margin: nothing scored, answers kept.
    let (out, err) = run("off");
    assert!(out
        .iter()
        .all(|r| r.get("margin").is_none() && r.get("guard").is_none()));
    assert!(err.contains("guard:asr:w1000000|"), "{err}");
}

/// `neko guard --score`: answers written elsewhere (here `neko correct`'s, their margins
/// removed, or `null` as a NaN is written) get the margin `neko correct` gives its own, from the
/// same model and prompt; also under task routing and another prompt file, given to both
/// (the scorer used learned routing and the built-in prompt whatever the decoding had).
#[test]
fn guard_scores_answers_from_elsewhere_as_correct_does() {
    let tmp = tempfile::tempdir().unwrap();
    let prompt = tmp.path().join("asr.txt");
    let builtin = neko::prompt::Template::builtin(neko::Task::Asr);
    std::fs::write(&prompt, builtin.text().replace("Below is", "Here is")).unwrap();
    let prompt = prompt.to_str().unwrap().to_string();
    for flags in [
        &[][..],
        &["--routing", "task"][..],
        &["--prompt", &prompt][..],
    ] {
        guard_scores_as_correct_does(tmp.path(), flags);
    }
}

fn guard_scores_as_correct_does(tmp: &std::path::Path, flags: &[&str]) {
    let input = fixture("records/variants.json");
    let (own, _) = correct_variants_with("-1e9", flags);
    let bare: Vec<String> = (own.iter().enumerate())
        .map(|(k, r)| {
            let mut r = r.clone();
            match k % 2 {
                0 => drop(r.as_object_mut().unwrap().remove("margin")),
                _ => r["margin"] = serde_json::Value::Null,
            }
            r.to_string()
        })
        .collect();
    let preds = tmp.join("answers.jsonl");
    std::fs::write(&preds, bare.join("\n")).unwrap();
    let guard = |margin: &str| {
        let mut cmd = neko();
        cmd.args([
            "guard",
            "--score",
            "--max-edit",
            "1000000",
            "--margin",
            margin,
            "--agreed",
            "free",
            "--nbest",
            "free",
            "--dropped",
            "free",
            "--spacing",
            "free",
        ])
        .args(["--max-new-tokens", "8"])
        .args(flags)
        .arg("--model")
        .arg(fixture("tiny-mixtral"))
        .arg("--input")
        .arg(&input)
        .arg(&preds);
        json_lines(&ok(&mut cmd).stdout)
    };
    let scored = guard("-1e9");
    assert_eq!(scored.len(), own.len());
    let margin = |r: &serde_json::Value| r.get("margin").and_then(serde_json::Value::as_f64);
    let mut checked = 0;
    for (a, b) in own.iter().zip(&scored) {
        // A verdict of correct's own (`fallback:length`) passes through as it was.
        if a.get("guard").is_some() {
            assert_eq!(a["guard"], b["guard"], "{flags:?}: {a} vs {b}");
            continue;
        }
        match (margin(a), margin(b)) {
            (Some(x), Some(y)) => {
                assert!((x - y).abs() < 1e-3, "{flags:?}: {a} vs {b}");
                checked += 1;
            }
            (x, y) => assert_eq!(x, y, "{a} vs {b}"),
        }
        assert!(b.get("guard").is_none(), "{b}");
    }
    assert!(checked >= 2, "only {checked} answers scored");
    // The margin then applies: none of them clears a billion nats.
    for r in guard("1e9").iter().filter(|r| margin(r).is_some()) {
        assert_eq!(r["guard"], "fallback:margin", "{r}");
        assert_eq!(r["prediction"], r["best"]);
    }
}

/// `neko guard` on one ASR prediction for the first record of `records/variants.json`, with
/// every check but the margin's and the markers' off; with `score`, tiny-mixtral scores it.
fn guard_one(prediction: &str, margin: &str, score: bool) -> serde_json::Value {
    guard_line(
        serde_json::json!({"id": 0, "task": "asr", "prediction": prediction}),
        margin,
        score,
    )
}

/// [`guard_one`] on a whole prediction `line`.
fn guard_line(line: serde_json::Value, margin: &str, score: bool) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let preds = tmp.path().join("answers.jsonl");
    std::fs::write(&preds, format!("{line}\n")).unwrap();
    let mut cmd = neko();
    cmd.args([
        "guard",
        "--max-edit",
        "1000000",
        "--nbest",
        "free",
        "--agreed",
        "free",
    ])
    .args(["--margin", margin, "--input"])
    .arg(fixture("records/variants.json"))
    .arg(&preds);
    if score {
        cmd.arg("--score")
            .arg("--model")
            .arg(fixture("tiny-mixtral"));
    }
    json_lines(&ok(&mut cmd).stdout).remove(0)
}

/// An answer written elsewhere that the model cannot read after its prompt (it ran to a token
/// limit longer than the context) is not scored, with a warning that says why, and falls back
/// as an unscored margin does.
#[test]
fn guard_score_names_an_answer_longer_than_the_context() {
    let out = guard_one(&vec!["the cat sat on the mat"; 120].join(" "), "task", true);
    let warning = out["warning"].as_str().unwrap_or_default();
    assert!(warning.contains("positions, the model has 512"), "{out}");
    assert_eq!(out["guard"], "fallback:margin", "{out}");
    // A warning the line had (an earlier step's) stays beside the new one.
    let long = vec!["the cat sat on the mat"; 120].join(" ");
    let line = serde_json::json!({"id": 0, "task": "asr", "prediction": long,
        "warning": "an earlier step reported: audio clipped"});
    let out = guard_line(line, "task", true);
    let warning = out["warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains("the model has 512") && warning.contains("audio clipped"),
        "{out}"
    );
}

/// With a model (`--score`), `neko guard` knows its special tokens as `neko correct` does: an
/// answer holding one leaks the prompt; without a model only the common markers count.
#[test]
fn guard_with_a_model_knows_its_special_tokens() {
    let leaking = "the cat sat on the mat <unk>";
    assert_eq!(
        guard_one(leaking, "-1e9", true)["guard"],
        "fallback:markers"
    );
    assert!(guard_one(leaking, "-1e9", false).get("guard").is_none());
}

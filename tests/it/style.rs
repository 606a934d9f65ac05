//! ASR answers follow the hypotheses' casing and punctuation under `--style follow` (the
//! default is `model`, as written): in `neko correct` (with a tiny model) and in `neko guard`,
//! where the style decides whether a cased, punctuated answer to a lower-case N-best spends
//! the edit budget on formatting.

use neko::record::read_path;
use neko::style::Style;

use crate::util::{fixture, json_lines, neko, ok, tiny_correct_variants};

#[test]
fn correct_writes_asr_answers_in_the_hypotheses_style() {
    let entries = read_path(&fixture("records/variants.json")).unwrap();
    // Free decoding: constrained answers are written in the hypotheses' words already.
    let run = |style| tiny_correct_variants(&["--style", style, "--constrain", "none"]);
    let (model, model_err) = run("model");
    let (follow, follow_err) = run("follow");
    assert_eq!((model.len(), follow.len()), (4, 4));
    let mut restyled = 0;
    for ((entry, m), f) in entries.iter().zip(&model).zip(&follow) {
        let hyps = &entry.record.as_ref().unwrap().hypotheses;
        let written = m["prediction"].as_str().unwrap();
        let expected = Style::of(hyps).apply(written);
        assert_eq!(f["prediction"].as_str().unwrap(), expected, "{m} {f}");
        restyled += usize::from(expected != written);
    }
    // The tiny model writes capitals or punctuation somewhere, so the style had work to do.
    assert!(restyled > 0, "{model:?}");
    assert!(follow_err.contains("|style:follow|"), "{follow_err}");
    assert!(model_err.contains("|style:model|"), "{model_err}");
}

#[test]
fn guard_counts_edits_after_the_style_is_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let best = "one two three four five six seven eight nine ten";
    // The hypotheses differ on the last word, which the answer corrects.
    let other = "one two three four five six seven eight nine then";
    let record = format!(r#"{{"id": "a", "input": ["{best}", "{other}"]}}"#);
    std::fs::write(&input, record + "\n").unwrap();
    // One word corrected in ten (within ASR's 0.1), written cased and punctuated.
    let preds = tmp.path().join("raw.jsonl");
    let written = "One, two, three four five six seven eight nine, then.";
    std::fs::write(
        &preds,
        format!(r#"{{"id": "a", "prediction": "{written}"}}"#),
    )
    .unwrap();
    let guard = |style: &str| {
        let mut cmd = neko();
        cmd.args(["guard", "--style", style, "--input"])
            .arg(&input)
            .arg(&preds);
        json_lines(&ok(&mut cmd).stdout).remove(0)
    };
    let follow = guard("follow");
    assert!(follow.get("guard").is_none(), "{follow}");
    assert_eq!(
        follow["prediction"],
        "one two three four five six seven eight nine then"
    );
    // The model's own text is kept, as `neko correct --style follow` keeps it, and guarding the
    // line again reads it from there: the same answer, `written` still the model's.
    assert_eq!(follow["written"], written, "{follow}");
    std::fs::write(&preds, follow.to_string()).unwrap();
    let again = guard("follow");
    assert_eq!(again["prediction"], follow["prediction"], "{again}");
    assert_eq!(again["written"], written, "{again}");
    // Under the model's style nothing is restyled: no `written`.
    std::fs::write(
        &preds,
        r#"{"id": "a", "prediction": "one two three four five six seven eight nine then"}"#,
    )
    .unwrap();
    assert!(guard("model").get("written").is_none());
    std::fs::write(
        &preds,
        format!(r#"{{"id": "a", "prediction": "{written}"}}"#),
    )
    .unwrap();
    // As written, the formatting is four more edited words: the correction falls back.
    let model = guard("model");
    assert_eq!(model["guard"], "fallback:edit", "{model}");
    assert_eq!(model["prediction"], best);
    // A `--style follow` run's line (its `written`) guarded again without it is said to be
    // checked as written.
    let line = format!(
        r#"{{"id": "a", "prediction": "{}", "written": "{written}"}}"#,
        follow["prediction"].as_str().unwrap()
    );
    std::fs::write(&preds, line).unwrap();
    let mut cmd = neko();
    cmd.args(["guard", "--input"]).arg(&input).arg(&preds);
    let err = String::from_utf8_lossy(&ok(&mut cmd).stderr).into_owned();
    assert!(err.contains("1 line(s) carry `written`"), "{err}");
}

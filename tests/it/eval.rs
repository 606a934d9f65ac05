//! `neko eval` end to end, through the binary: numbers against the reference fixtures
//! (`tests/fixtures/metrics/cli.json`, `shared.json`, made by `scripts/make_metric_fixtures.py`
//! with jiwer, sacrebleu and gleu), the published figures of `../shared/design/benchmark.md`,
//! exit codes, environment twins and the baseline gate.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::metrics::{assert_2dp, counts_of};
use crate::util;

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = util::neko();
    cmd.arg("eval").args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("neko runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `neko eval --json ARGS`, expecting success, and parses the report.
fn json(args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let o = run(&all, &[]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("valid JSON")
}

/// A metric's report without its oracle columns, which 1-best files (plain lines, trn) lack.
fn without_oracles(metric: &Value) -> Value {
    let mut m = metric.clone();
    if let Some(o) = m.as_object_mut() {
        o.remove("oracle_nbest");
        o.remove("oracle_compositional");
    }
    m
}

fn records(name: &str) -> String {
    util::fixture(&format!("metrics/records/{name}"))
        .display()
        .to_string()
}

fn expected() -> Value {
    let path = util::fixture("metrics/cli.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn shared_fixture() -> Value {
    let path = util::fixture("metrics/shared.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `{hits, substitutions, deletions, insertions}` of a report rate as fixture counts.
fn rate_counts(rate: &Value) -> Value {
    serde_json::json!([
        rate["hits"],
        rate["substitutions"],
        rate["deletions"],
        rate["insertions"]
    ])
}

fn group<'a>(file: &'a Value, name: &str) -> &'a Value {
    file["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no group {name} in {}", file["path"]))
}

/// A group's GEC edit counts are the fixture's `tp`, `fp` and `fn`.
fn assert_edit_counts(group: &Value, want: &Value) {
    let e = &group["edits"]["counts"];
    let got = ["true_positives", "false_positives", "false_negatives"].map(|k| &e[k]);
    assert_eq!(got, [&want["tp"], &want["fp"], &want["fn"]], "{group}");
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn assert_close(ours: &Value, theirs: &Value, what: &str) {
    assert!(
        (f64_of(ours) - f64_of(theirs)).abs() < 1e-9,
        "{what}: {ours} vs {theirs}"
    );
}

#[test]
fn asr_records_match_jiwer_under_each_normaliser() {
    let want = &expected()["files"]["asr.jsonl"];
    let report = json(&["--normalizer", "whisper-en,none,h2t", &records("asr.jsonl")]);
    for (run, norm) in
        report["runs"]
            .as_array()
            .unwrap()
            .iter()
            .zip(["whisper-en@1", "none@1", "h2t@1"])
    {
        assert_eq!(run["normalizer"], norm);
        let file = &run["files"][0];
        for (name, w) in want[norm].as_object().unwrap() {
            let g = group(file, name);
            let what = format!("{norm} {name}");
            assert_eq!(g["records"], w["records"], "{what}");
            let wer = &g["wer"];
            assert_eq!(
                rate_counts(&wer["one_best"]),
                w["one_best"],
                "{what} 1-best"
            );
            assert_eq!(
                rate_counts(&wer["oracle_nbest"]),
                w["oracle"],
                "{what} oracle"
            );
            assert_eq!(
                rate_counts(&wer["corrected"]),
                w["corrected"],
                "{what} corrected"
            );
            assert_eq!(
                rate_counts(&g["cer"]["one_best"]),
                w["cer_one_best"],
                "{what} CER"
            );
            assert_eq!(
                rate_counts(&g["cer"]["corrected"]),
                w["cer_corrected"],
                "{what} CER"
            );
            assert_eq!(
                wer["oracle_compositional"]["deletions"], w["compositional_errors"],
                "{what} compositional"
            );
            assert_eq!(wer["one_best"]["utterances"], w["utterances"], "{what}");
            assert_close(&wer["one_best"]["per_utterance"], &w["one_best_utt"], &what);
            assert_close(
                &wer["corrected"]["per_utterance"],
                &w["corrected_utt"],
                &what,
            );
            let c = counts_of(&w["one_best"]);
            assert_close(
                &wer["one_best"]["rate"],
                &(100.0 * c.error_rate()).into(),
                &what,
            );
        }
    }
}

/// A file in which no record could be scored measured nothing: an error (exit 2) even though
/// the other files are scored and printed, so that a pipeline that lost its references cannot
/// pass a CI step with a table of dashes.
#[test]
fn a_file_with_nothing_to_score_is_an_error_and_the_others_are_still_scored() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("bare.jsonl");
    std::fs::write(&bare, "{\"id\":\"a\",\"hypotheses\":[\"hello world\"]}\n").unwrap();
    let asr = records("asr.jsonl");
    let o = run(&["--json", &asr, bare.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("bare.jsonl: no record scored (1 read, 1 unscored)"),
        "{}",
        stderr(&o)
    );
    let report: Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let files = report["runs"][0]["files"].as_array().unwrap();
    assert!(files[0]["groups"][0]["records"].as_u64().unwrap() > 0);
    assert_eq!(files[1]["groups"][0]["records"], 0);
    // With its reference the same record is scored, and the run is a success.
    let with_ref = "{\"id\":\"a\",\"hypotheses\":[\"hello world\"],\"output\":\"hello word\"}\n";
    std::fs::write(&bare, with_ref).unwrap();
    assert_eq!(run(&[bare.to_str().unwrap()], &[]).status.code(), Some(0));
}

#[test]
fn records_that_cannot_be_scored_are_named() {
    let report = json(&[&records("asr.jsonl")]);
    let file = &report["runs"][0]["files"][0];
    let unscored = file["unscored"].as_array().unwrap();
    assert_eq!(unscored.len(), 2);
    assert_eq!(unscored[0]["id"], "no-ref");
    assert!(unscored[0]["reason"]
        .as_str()
        .unwrap()
        .contains("no reference"));
    assert_eq!(unscored[1]["index"], 8);
    assert!(unscored[1]["reason"]
        .as_str()
        .unwrap()
        .contains("broken JSON"));
    let fallbacks = file["fallbacks"].as_array().unwrap();
    assert_eq!(fallbacks.len(), 1);
    assert_eq!(fallbacks[0]["id"], "a10");
    assert!(fallbacks[0]["reason"]
        .as_str()
        .unwrap()
        .contains("generation failed"));

    let text = stdout(&run(&[&records("asr.jsonl")], &[]));
    assert!(text.contains("2 record(s) not scored"), "{text}");
    assert!(text.contains("(id \"no-ref\"): no reference"), "{text}");
    assert!(text.contains("(id \"a10\")"), "{text}");
}

#[test]
fn translation_scores_match_sacrebleu() {
    let want = &expected()["files"]["mt.jsonl"];
    let report = json(&[&records("mt.jsonl")]);
    let g = &report["runs"][0]["files"][0]["groups"][0];
    assert_eq!(g["task"], "mt");
    assert_eq!(g["normalizer"], "none@1");
    assert_2dp(
        f64_of(&g["bleu"]["one_best"]["score"]),
        f64_of(&want["bleu_one_best"]),
        "BLEU",
    );
    assert_2dp(
        f64_of(&g["bleu"]["corrected"]["score"]),
        f64_of(&want["bleu_corrected"]),
        "BLEU",
    );
    assert_2dp(
        f64_of(&g["chrf"]["one_best"]["score"]),
        f64_of(&want["chrf_one_best"]),
        "chrF",
    );
    assert_2dp(
        f64_of(&g["chrf"]["corrected"]["score"]),
        f64_of(&want["chrf_corrected"]),
        "chrF",
    );
    for side in ["one_best", "corrected"] {
        let theirs = &want[format!("ter_{side}").as_str()];
        assert_close(&g["ter"][side]["score"], theirs, "TER");
    }
    assert_eq!(rate_counts(&g["wer"]["one_best"]), want["one_best"]);
    assert_eq!(rate_counts(&g["wer"]["corrected"]), want["corrected"]);
    let sigs = report["runs"][0]["signatures"].as_array().unwrap();
    let starts = |p: &str| sigs.iter().any(|s| s.as_str().unwrap().starts_with(p));
    assert!(starts("bleu|norm:none@1|nrefs:1|"), "{sigs:?}");
    assert!(starts("ter|norm:none@1|nrefs:1|"), "{sigs:?}");
    let text = stdout(&run(&[&records("mt.jsonl")], &[]));
    assert!(text.contains("corr.TER"), "{text}");
}

/// `--tokenize TOK` scores BLEU with sacrebleu's other tokenisers, says so in the signature,
/// and a baseline scored with another tokeniser is not compared.
#[test]
fn bleu_tokenisers_on_the_command_line_match_sacrebleu() {
    let want = &expected()["files"]["mt.jsonl"]["bleu_corrected_by_tokenizer"];
    let mt = records("mt.jsonl");
    for (tok, theirs) in want.as_object().unwrap() {
        let report = json(&["--tokenize", tok, &mt]);
        let g = &report["runs"][0]["files"][0]["groups"][0];
        assert_close(&g["bleu"]["corrected"]["score"], theirs, tok);
        let sigs = report["runs"][0]["signatures"].to_string();
        assert!(sigs.contains(&format!("|tok:{tok}|smooth:exp|")), "{sigs}");
        assert_eq!(report["runs"][0]["bleu_tokenize"], tok.as_str());
    }
    let dir = tempfile::tempdir().unwrap();
    let base = temp_json(dir.path(), "base.json", &json(&[&mt]));
    let o = run(
        &[
            "--baseline",
            base.to_str().unwrap(),
            "--tokenize",
            "intl",
            &mt,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("BLEU scored with case:mixed|tok:intl|smooth:exp, its baseline with case:mixed|tok:13a|smooth:exp: not comparable (--tokenize 13a compares)"),
        "{}",
        stderr(&o)
    );
    fails_saying(
        &["--tokenize", "ja-mecab", &mt],
        "unknown BLEU tokeniser `ja-mecab`",
    );
}

/// `metric` (bleu, chrf) of mt.jsonl under each option set of the fixture (keyed by its flags)
/// against sacrebleu's: the corpus score, each `--per-record` row's sentence score, and
/// sacrebleu's signature fields in neko's signature.
fn options_match_sacrebleu(metric: &str) {
    let file = &expected()["files"]["mt.jsonl"];
    let mt = records("mt.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let rows_path = dir.path().join("rows.jsonl");
    let rows_arg = rows_path.to_str().unwrap();
    let corpus = &file[format!("{metric}_corrected_by_options").as_str()];
    let sentences = &file[format!("sentence_{metric}_corrected_by_options").as_str()];
    for (flags, want) in corpus.as_object().unwrap() {
        let mut args: Vec<&str> = flags.split(' ').collect();
        args.extend(["--per-record", rows_arg, &mt]);
        let report = json(&args);
        let g = &report["runs"][0]["files"][0]["groups"][0];
        assert_close(&g[metric]["corrected"]["score"], &want[metric], flags);
        let sigs = report["runs"][0]["signatures"].to_string();
        let theirs = want["signature"].as_str().unwrap();
        let fields = theirs
            .split('|')
            .filter(|f| !f.starts_with("nrefs") && !f.starts_with("version"));
        for field in fields {
            assert!(sigs.contains(&format!("|{field}|")), "{field} in {sigs}");
        }
        let rows = std::fs::read_to_string(&rows_path).unwrap();
        let sentences = sentences.as_array().unwrap();
        assert_eq!(rows.lines().count(), sentences.len());
        for (row, want) in rows.lines().zip(sentences) {
            let row: Value = serde_json::from_str(row).unwrap();
            assert_close(&row["corrected"][metric], &want[flags.as_str()], flags);
        }
    }
}

/// `--lowercase`, `--smooth-method` and `--smooth-value` score BLEU as sacrebleu's same flags
/// do, corpus BLEU and each `--per-record` row's sentence BLEU, name themselves in the
/// signature, and a baseline scored with sacrebleu's defaults is not compared with them.
#[test]
fn bleu_options_on_the_command_line_match_sacrebleu() {
    options_match_sacrebleu("bleu");
    let mt = records("mt.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let base = temp_json(dir.path(), "base.json", &json(&[&mt]));
    let o = run(
        &[
            "--baseline",
            base.to_str().unwrap(),
            "--lowercase",
            "--smooth-method",
            "floor",
            &mt,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("BLEU scored with case:lc|tok:13a|smooth:floor[0.1], its baseline with case:mixed|tok:13a|smooth:exp: not comparable (without --lowercase, --smooth-method exp, without --smooth-value compares)"),
        "{}",
        stderr(&o)
    );
    // Smoothing values the signature's two decimals cannot tell apart are still other settings.
    let small = json(&["--smooth-method", "floor", "--smooth-value", "0.004", &mt]);
    let small = temp_json(dir.path(), "small.json", &small);
    let floor = ["--smooth-method", "floor", "--smooth-value", "0.001", &mt];
    let o = run(
        &[&["--baseline", small.to_str().unwrap()][..], &floor].concat(),
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("--smooth-value 0.004"),
        "{}",
        stderr(&o)
    );
    fails_saying(
        &["--smooth-method", "exp", "--smooth-value", "0.1", &mt],
        "--smooth-method exp takes no --smooth-value",
    );
}

/// The `--chrf-*` flags score chrF as sacrebleu's same flags do, corpus chrF and each
/// `--per-record` row's sentence chrF, name themselves in the signature and the table, and a
/// baseline scored with sacrebleu's defaults is not compared with them.
#[test]
fn chrf_options_on_the_command_line_match_sacrebleu() {
    options_match_sacrebleu("chrf");
    let mt = records("mt.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let text = stdout(&run(
        &["--chrf-beta", "3", "--chrf-word-order", "2", &mt],
        &[],
    ));
    assert!(text.contains("corr.chrF3++"), "{text}");
    let base = temp_json(dir.path(), "base.json", &json(&[&mt]));
    let o = run(
        &[
            "--baseline",
            base.to_str().unwrap(),
            "--chrf-eps-smoothing",
            &mt,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("chrF scored with case:mixed|eff:no|nc:6|nw:0|space:no|beta:2, its baseline with case:mixed|eff:yes|nc:6|nw:0|space:no|beta:2: not comparable (without --chrf-eps-smoothing compares)"),
        "{}",
        stderr(&o)
    );
    fails_saying(&["--chrf-char-order", "7", &mt], "7 is not in 1..=6");
}

/// `--paired-ar` gives each metric's change a p-value: on mt.jsonl, where 6 records changed
/// and all for the better, exactly 2 of the 64 swap patterns (none swapped, all swapped) reach
/// the observed WER difference, so p is 2/64 up to Monte Carlo error; a system compared with
/// itself gets p = 1 (sacrebleu, counting only larger differences, reports 1/10,001). Named
/// in the signature and the table; it implies `--paired-bs`.
#[test]
fn paired_randomization_gives_p_values() {
    let mt = records("mt.jsonl");
    let report = json(&["--paired-ar", &mt]);
    let first = &report["runs"][0];
    let s = &first["files"][0]["groups"][0]["significance"];
    let p = f64_of(&s["wer"]["p_ar"]);
    assert!((p - 2.0 / 64.0).abs() < 0.006, "{p}");
    assert!(f64_of(&s["bleu"]["p_ar"]) > 0.0);
    let sigs = first["signatures"].to_string();
    assert!(sigs.contains("|bs:1000|seed:12345|ar:10000|"), "{sigs}");
    let text = stdout(&run(&["--paired-ar", "--paired-ar-n", "500", &mt], &[]));
    assert!(
        text.contains("p (AR)") && text.contains("500 trials"),
        "{text}"
    );
    // Against itself: nothing to tell the two apart.
    let same = json(&["--paired-ar", "--against", &mt, &mt]);
    let s = &same["runs"][0]["files"][0]["groups"][0]["significance"];
    for metric in ["wer", "cer", "bleu", "chrf", "ter"] {
        assert_eq!(f64_of(&s[metric]["p_ar"]), 1.0, "{metric}");
    }
    // Without it, no p-values.
    let bs = json(&["--paired-bs", &mt]);
    let s = &bs["runs"][0]["files"][0]["groups"][0]["significance"];
    assert!(
        s.get("ar_trials").is_none() && s["wer"].get("p_ar").is_none(),
        "{s}"
    );
    fails_saying(
        &["--paired-ar", "--paired-ar-n", "0", &mt],
        "--paired-ar-n must be at least 1",
    );
}

/// Multi-reference GLEU: a file with one changed record has p = 1 exactly (swapping its two
/// outputs only flips the sign), whatever the references; each trial is measured against the
/// observed difference under its own draw (it was measured against the 500-draw mean: p 0.48).
/// And a GEC record's GLEU is the same with records of other tasks before it: sentence d is
/// its place among the GEC records, as JFLEG scores the GEC sentences alone.
#[test]
fn multi_reference_gleu_is_tested_and_placed_among_gec_records() {
    let dir = tempfile::tempdir().unwrap();
    let gec = "{\"id\": \"g1\", \"task\": \"gec\", \"input\": [\"He go to school yesterday .\"], \"output\": [\"He went to school yesterday .\", \"He goes to school yesterday .\"], \"prediction\": \"He went to school yesterday .\"}\n";
    let asr = "{\"id\": \"a1\", \"task\": \"asr\", \"input\": [\"the cat\"], \"output\": \"the cat\", \"prediction\": \"the cat\"}\n";
    let alone = dir.path().join("alone.jsonl");
    let mixed = dir.path().join("mixed.jsonl");
    std::fs::write(&alone, gec).unwrap();
    std::fs::write(&mixed, format!("{asr}{asr}{gec}")).unwrap();
    let gleu_of = |path: &Path| {
        let r = json(&[
            "--paired-ar",
            "--paired-ar-n",
            "200",
            "--group-by",
            "task",
            path.to_str().unwrap(),
        ]);
        let groups = r["runs"][0]["files"][0]["groups"]
            .as_array()
            .unwrap()
            .clone();
        let g = groups
            .iter()
            .find(|g| g["name"] == "task=gec")
            .unwrap_or(&groups[0])
            .clone();
        (
            f64_of(&g["gleu"]["corrected"]["score"]),
            f64_of(&g["significance"]["gleu"]["p_ar"]),
        )
    };
    let (score, p) = gleu_of(&alone);
    assert_eq!(p, 1.0);
    let (mixed_score, mixed_p) = gleu_of(&mixed);
    assert_eq!((mixed_score, mixed_p), (score, 1.0));
}

/// The metric switches' environment variables read 1 / 0 / true, as every neko switch's do.
#[test]
fn metric_switches_read_their_environment_like_every_switch() {
    let mt = records("mt.jsonl");
    let switches = [
        ("NEKO_EVAL_LOWERCASE", "|case:lc|eff:no|tok:13a|"),
        ("NEKO_EVAL_CHRF_LOWERCASE", "|case:lc|eff:yes|nc:6|"),
        ("NEKO_EVAL_CHRF_WHITESPACE", "|space:yes|"),
        ("NEKO_EVAL_CHRF_EPS_SMOOTHING", "|eff:no|nc:6|"),
        ("NEKO_EVAL_TER_CASE_SENSITIVE", "|case:mixed|tok:tercom|"),
        ("NEKO_EVAL_TER_NORMALIZED", "|tercom-norm:yes|"),
        ("NEKO_EVAL_TER_NO_PUNCT", "|punct:no|"),
        ("NEKO_EVAL_TER_ASIAN_SUPPORT", "|asian:yes|"),
    ];
    for (var, field) in switches {
        for (value, on) in [("1", true), ("0", false), ("true", true)] {
            let o = run(&["--json", &mt], &[(var, value)]);
            assert!(o.status.success(), "{var}={value}: {}", stderr(&o));
            let report: Value = serde_json::from_slice(&o.stdout).unwrap();
            let sigs = report["runs"][0]["signatures"].to_string();
            assert_eq!(sigs.contains(field), on, "{var}={value}: {sigs}");
        }
    }
}

/// `--ter-*` flags score TER as sacrebleu's same flags do, name the options in the signature,
/// and a baseline scored with sacrebleu's TER defaults is not compared with them.
#[test]
fn ter_options_on_the_command_line_match_sacrebleu() {
    let want = &expected()["files"]["mt.jsonl"]["ter_corrected_by_options"];
    let mt = records("mt.jsonl");
    for (flags, theirs) in want.as_object().unwrap() {
        let mut args: Vec<&str> = flags.split(' ').collect();
        args.push(&mt);
        let report = json(&args);
        let g = &report["runs"][0]["files"][0]["groups"][0];
        assert_close(&g["ter"]["corrected"]["score"], theirs, flags);
        let sigs = report["runs"][0]["signatures"].to_string();
        let case = if flags.contains("case") {
            "mixed"
        } else {
            "lc"
        };
        let norm = if flags.contains("normalized") {
            "yes"
        } else {
            "no"
        };
        assert!(
            sigs.contains(&format!("|case:{case}|tok:tercom|tercom-norm:{norm}|")),
            "{sigs}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let base = temp_json(dir.path(), "base.json", &json(&[&mt]));
    let o = run(
        &["--baseline", base.to_str().unwrap(), "--ter-no-punct", &mt],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("TER scored with case:lc|tok:tercom|tercom-norm:no|punct:no|asian:no, its baseline with case:lc|tok:tercom|tercom-norm:no|punct:yes|asian:no: not comparable (without --ter-no-punct compares)"),
        "{}",
        stderr(&o)
    );
}

/// `--chrf-word-order 2` is chrF++ as sacrebleu computes it (one and three references), named
/// in the signature and the table; a baseline of plain chrF is not compared with it.
#[test]
fn chrf_plus_plus_matches_sacrebleu() {
    for file in ["mt.jsonl", "mt-multi.jsonl"] {
        let want = &expected()["files"][file]["chrf_pp_corrected"];
        let report = json(&["--chrf-word-order", "2", &records(file)]);
        let g = &report["runs"][0]["files"][0]["groups"][0];
        assert_close(&g["chrf"]["corrected"]["score"], want, file);
        let sigs = report["runs"][0]["signatures"].to_string();
        assert!(sigs.contains("|nc:6|nw:2|"), "{sigs}");
    }
    let mt = records("mt.jsonl");
    let text = stdout(&run(&["--chrf-word-order", "2", &mt], &[]));
    assert!(text.contains("corr.chrF++"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let base = temp_json(dir.path(), "base.json", &json(&[&mt]));
    let o = run(
        &[
            "--baseline",
            base.to_str().unwrap(),
            "--chrf-word-order",
            "2",
            &mt,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("chrF scored with case:mixed|eff:yes|nc:6|nw:2|space:no|beta:2, its baseline with case:mixed|eff:yes|nc:6|nw:0|space:no|beta:2: not comparable (--chrf-word-order 0 compares)"),
        "{}",
        stderr(&o)
    );
    // Plain chrF's statistics carry no word orders (reports written before chrF++ read back).
    let plain = json(&[&mt]);
    let stats = &plain["runs"][0]["files"][0]["groups"][0]["chrf"]["corrected"]["stats"];
    assert!(stats.get("words").is_none(), "{stats}");
}

/// The MT fixture written as `fairseq-generate` output (its N-bests as `H` and `D` lines, its
/// references as `T` lines, sentences out of order, a log line and the closing score) and as a
/// Moses N-best list with the references apart: both score the 1-bests as sacrebleu did.
#[test]
fn fairseq_and_moses_n_best_lists_score_as_sacrebleu() {
    let text = std::fs::read_to_string(records("mt.jsonl")).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (mut generate, mut moses, mut refs) = (String::new(), String::new(), String::new());
    generate += "2024-05-01 12:00:00 | INFO | fairseq_cli.generate | model loaded\n";
    for (k, r) in records.iter().enumerate().rev() {
        generate += &format!("S-{k}\tquelle\nT-{k}\t{}\n", r["output"].as_str().unwrap());
        for (j, h) in r["input"].as_array().unwrap().iter().enumerate() {
            let h = h.as_str().unwrap();
            generate += &format!("H-{k}\t-{j}.5\t{h} @@\nD-{k}\t-{j}.5\t{h}\n");
        }
    }
    generate += "Generate test with beam=5: BLEU4 = 25.30\n";
    for (k, r) in records.iter().enumerate() {
        for h in r["input"].as_array().unwrap() {
            moses += &format!("{k} ||| {} ||| F0= -1 ||| -1\n", h.as_str().unwrap());
        }
        refs += r["output"].as_str().unwrap();
        refs += "\n";
    }
    let dir = tempfile::tempdir().unwrap();
    let generate = write_in(dir.path(), "gen.out", &generate);
    let (moses, refs) = (
        write_in(dir.path(), "nbest.txt", &moses),
        write_in(dir.path(), "ref.txt", &refs),
    );
    let want = &expected()["files"]["mt.jsonl"];
    for args in [
        vec!["--task", "mt", &generate],
        vec!["--task", "mt", "--ref", &refs, &moses],
    ] {
        let g = &json(&args)["runs"][0]["files"][0]["groups"][0];
        assert_eq!(
            g["records"].as_u64(),
            Some(records.len() as u64),
            "{args:?}"
        );
        assert_2dp(
            f64_of(&g["bleu"]["one_best"]["score"]),
            f64_of(&want["bleu_one_best"]),
            "BLEU",
        );
        assert_2dp(
            f64_of(&g["chrf"]["one_best"]["score"]),
            f64_of(&want["chrf_one_best"]),
            "chrF",
        );
    }
}

/// The GEC fixture written as M2 (each source's correction one edit, with a `noop` that must
/// not count) scores as the `gleu` package scored the fixture's sources against its references.
#[test]
fn an_m2_file_scores_its_sources_against_its_corrections() {
    let text = std::fs::read_to_string(records("gec.jsonl")).unwrap();
    let mut m2 = String::new();
    for line in text.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let source = r["input"][0].as_str().unwrap();
        let n = source.split_whitespace().count();
        m2 += &format!("S {source}\n");
        m2 += &format!(
            "A 0 {n}|||R:X|||{}|||REQUIRED|||-NONE-|||0\n",
            r["output"].as_str().unwrap()
        );
        m2 += "A -1 -1|||noop|||-NONE-|||REQUIRED|||-NONE-|||0\n\n";
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write_in(dir.path(), "gec.m2", &m2);
    let g = &json(&[&path])["runs"][0]["files"][0]["groups"][0];
    assert_eq!(
        g["records"].as_u64(),
        Some(text.lines().count() as u64),
        "{g}"
    );
    let want = &expected()["files"]["gec.jsonl"];
    assert_2dp(
        f64_of(&g["gleu"]["one_best"]["score"]),
        f64_of(&want["gleu_one_best"]),
        "GLEU",
    );
    // A system's corrections as plain lines, scored against the M2 gold standard: the M2
    // sentences are their sources, so the scores are the fixture's corrected ones.
    let predictions: String = (text.lines())
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["prediction"]
                .as_str()
                .unwrap()
                .to_string()
                + "\n"
        })
        .collect();
    let hyps = write_in(dir.path(), "system.txt", &predictions);
    let o = run(&["--json", "--ref", &path, &hyps], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("M2, sentence k for record k"),
        "{}",
        stderr(&o)
    );
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let g = &report["runs"][0]["files"][0]["groups"][0];
    for (got, want) in [
        (&g["gleu"]["one_best"]["score"], &want["gleu_one_best"]),
        (&g["gleu"]["corrected"]["score"], &want["gleu_corrected"]),
    ] {
        assert_2dp(f64_of(got), f64_of(want), "GLEU");
    }
    assert_edit_counts(g, want);
    // A line that cannot be read leaves the lines after it with their own sentences.
    let gold = write_in(
        dir.path(),
        "small.m2",
        "S a b .\nA 0 1|||R:X|||x|||REQUIRED|||-NONE-|||0\n\nS c d .\n\nS e f .\n",
    );
    let system = write_in(dir.path(), "broken.txt", "x b .\n{\"input\": 5}\ne f .\n");
    let g = &json(&["--ref", &gold, &system])["runs"][0]["files"][0]["groups"][0];
    assert_eq!(g["records"], 2, "{g}");
    assert_eq!(g["wer"]["corrected"]["rate"].as_f64(), Some(0.0), "{g}");
    // Records with predictions keep their 1-best as the source: it must be their sentence
    // (spaces aside), or the files are another corpus or order.
    let record = |best: &str, prediction: &str| {
        format!(
            "{{\"task\": \"gec\", \"input\": [\"{best}\"], \"prediction\": \"{prediction}\"}}\n"
        )
    };
    let detokenised = [
        record("a b.", "x b."),
        record("c d.", "c d."),
        record("e f.", "e f."),
    ];
    let same = write_in(dir.path(), "same.jsonl", &detokenised.concat());
    let o = run(&["--ref", &gold, &same], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Paired, but every spacing would count as an edit: said.
    assert!(
        stderr(&o).contains("3 of 3 records of") && stderr(&o).contains("tokenised otherwise"),
        "{}",
        stderr(&o)
    );
    let tokenised = [
        record("a b .", "x b ."),
        record("c d .", "c d ."),
        record("e f .", "e f ."),
    ];
    let same = write_in(dir.path(), "tokenised.jsonl", &tokenised.concat());
    let o = run(&["--ref", &gold, &same], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    // A system's edits as M2 (errant_compare's -hyp) are no predictions: refused, not
    // scored as the unchanged source.
    let system_m2 = write_in(
        dir.path(),
        "hyp.m2",
        "S a b .\nA 0 1|||R:X|||x|||REQUIRED|||-NONE-|||0\n\nS c d .\nA 0 1|||R:X|||y|||REQUIRED|||-NONE-|||0\n\nS e f .\n",
    );
    fails_saying(
        &["--ref", &gold, &system_m2],
        "an M2 file of a system's edits?",
    );
    let swapped = [
        record("e f.", "e f."),
        record("c d.", "c d."),
        record("a b.", "x b."),
    ];
    let other = write_in(dir.path(), "other.jsonl", &swapped.concat());
    fails_saying(&["--ref", &gold, &other], "2 of 3 records of");
    // A sentence count that differs from the records' is exit 2.
    let short = write_in(dir.path(), "short.txt", "one line\n");
    fails_saying(
        &["--ref", &path, &short],
        "sentences: they are paired by position",
    );
}

/// Three references per sentence (`output` as a list): BLEU clips each n-gram by its largest
/// count in any reference and takes the closest reference length, chrF the best reference,
/// as sacrebleu with three reference streams; WER scores the first.
#[test]
fn multi_reference_translation_scores_match_sacrebleu() {
    let want = &expected()["files"]["mt-multi.jsonl"];
    let report = json(&[&records("mt-multi.jsonl")]);
    let g = &report["runs"][0]["files"][0]["groups"][0];
    for metric in ["bleu", "chrf", "ter"] {
        for side in ["one_best", "corrected"] {
            let theirs = &want[format!("{metric}_{side}").as_str()];
            assert_close(&g[metric][side]["score"], theirs, metric);
        }
    }
    assert_eq!(
        g["bleu"]["corrected"]["stats"]["ref_len"],
        want["bleu_ref_len"]
    );
    assert_eq!(rate_counts(&g["wer"]["corrected"]), want["corrected"]);
    let sigs = report["runs"][0]["signatures"].to_string();
    assert!(sigs.contains("bleu|norm:none@1|nrefs:3|"), "{sigs}");
    assert!(sigs.contains("wer|norm:none@1|nrefs:1|"), "{sigs}");
    // The same as plain lines with a reference file each, as sacrebleu's `-r a b c`.
    let text = std::fs::read_to_string(records("mt-multi.jsonl")).unwrap();
    let rows: Vec<Value> = (text.lines())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines = |f: &dyn Fn(&Value) -> &Value| -> String {
        rows.iter()
            .map(|r| f(r).as_str().unwrap().to_string() + "\n")
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let system = write_in(dir.path(), "system.txt", &lines(&|r| &r["prediction"]));
    let refs: Vec<String> = (0..3)
        .map(|k| {
            write_in(
                dir.path(),
                &format!("ref{k}.txt"),
                &lines(&|r| &r["output"][k]),
            )
        })
        .collect();
    let mut args = vec!["--task", "mt"];
    for r in &refs {
        args.extend(["--ref", r.as_str()]);
    }
    args.push(&system);
    let g = &json(&args)["runs"][0]["files"][0]["groups"][0];
    for metric in ["bleu", "chrf", "ter"] {
        let theirs = &want[format!("{metric}_corrected").as_str()];
        assert_close(&g[metric]["one_best"]["score"], theirs, metric);
    }
}

/// Two references per sentence, as JSON Lines and as M2 with two annotators: GLEU is the mean
/// over 500 draws of one reference per sentence under GLEU+'s fixed seeds (the `gleu`
/// package's `--fix-seed`, JFLEG's numbers), the edits count each sentence's reference as
/// ERRANT chooses it, and the paired bootstrap draws a reference set with each resample.
#[test]
fn multi_reference_gec_scores_match_the_gleu_package_and_errants_choice() {
    let want = &expected()["files"]["gec-multi.jsonl"];
    let report = json(&[
        "--paired-bs",
        "--paired-bs-n",
        "200",
        &records("gec-multi.jsonl"),
    ]);
    let g = &report["runs"][0]["files"][0]["groups"][0];
    // The package prints eight decimals.
    let near = |got: &Value, want: &Value, what: &str| {
        let (a, b) = (f64_of(got), f64_of(want));
        assert!((a - b).abs() < 1e-6, "{what}: {a} vs {b}");
    };
    for side in ["one_best", "corrected"] {
        let theirs = &want[format!("gleu_{side}").as_str()];
        near(&g["gleu"][side]["score"], theirs, side);
    }
    assert_eq!(g["gleu"]["corrected"]["draws"], 500);
    assert_edit_counts(g, want);
    assert_close(&g["edits"]["f05"], &want["f05"], "F0.5");
    let bs = &want["bootstrap"];
    let got = &g["significance"]["gleu"];
    for field in ["delta", "low", "high"] {
        near(&got[field], &bs[field], field);
    }
    assert_eq!(got["p_better"], bs["p_better"]);
    let sigs = report["runs"][0]["signatures"].to_string();
    assert!(sigs.contains("gleu|norm:none@1|nrefs:2|"), "{sigs}");
    assert!(sigs.contains("|refs:sampled-500|"), "{sigs}");
    assert!(sigs.contains("|refs:running-best"), "{sigs}");
    // The M2 file's sentences are the sources; its two annotators the references.
    let g = &json(&[&records("gec-multi.m2")])["runs"][0]["files"][0]["groups"][0];
    assert_eq!(g["records"], 12, "{g}");
    near(
        &g["gleu"]["one_best"]["score"],
        &want["gleu_one_best"],
        "M2 GLEU",
    );
    // Not the score against the first reference alone.
    let first = f64_of(&want["gleu_one_best_first_reference"]);
    assert!((f64_of(&want["gleu_one_best"]) - first).abs() > 0.5);
}

/// `--per-record FILE` writes a row per scored record and normaliser, with each side's word
/// errors (which sum to the report's) and `change`; the report counts the records the
/// predictions changed, and which way.
#[test]
fn per_record_rows_add_up_to_the_report_and_name_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let rows_path = dir.path().join("rows.jsonl");
    let rows_arg = rows_path.to_str().unwrap();
    let asr = records("asr.jsonl");
    let args = ["--per-record", rows_arg, "--normalizer", "none,h2t", &asr];
    let report = json(&args);
    let text = std::fs::read_to_string(&rows_path).unwrap();
    let rows: Vec<Value> = (text.lines())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (k, run) in report["runs"].as_array().unwrap().iter().enumerate() {
        let all = &run["files"][0]["groups"][0];
        let norm = ["none@1", "h2t@1"][k];
        let mine: Vec<&Value> = rows.iter().filter(|r| r["normalizer"] == norm).collect();
        assert_eq!(
            mine.len() as u64,
            all["records"].as_u64().unwrap(),
            "{norm}"
        );
        for (side, key) in [("one_best", "one_best"), ("corrected", "corrected")] {
            let sum: u64 = mine
                .iter()
                .map(|r| r[side]["errors"].as_u64().unwrap())
                .sum();
            let rate = &all["wer"][key];
            let errors = ["substitutions", "deletions", "insertions"]
                .map(|f| rate[f].as_u64().unwrap())
                .iter()
                .sum::<u64>();
            assert_eq!(sum, errors, "{norm} {side}");
        }
        let c = &all["changes"];
        let changed = |f: &dyn Fn(i64) -> bool| {
            let n = (mine.iter())
                .filter(|r| r["one_best"]["alignment"]["hyp"] != r["corrected"]["alignment"]["hyp"])
                .filter(|r| f(r["change"].as_i64().unwrap()))
                .count();
            Value::from(n)
        };
        assert_eq!(c["better"], changed(&|d| d < 0), "{norm}: {c}");
        assert_eq!(c["worse"], changed(&|d| d > 0), "{norm}: {c}");
        assert_eq!(c["changed"], changed(&|_| true), "{norm}: {c}");
    }
    // a1 had "a" for "the" (h2t ignores the reference's case and full stop): its row shows
    // the substitution and the fix.
    let a1 = rows
        .iter()
        .find(|r| r["id"] == "a1" && r["normalizer"] == "h2t@1")
        .unwrap();
    assert_eq!(a1["change"], -1);
    assert_eq!(a1["line"], 1);
    assert_eq!(
        a1["one_best"]["alignment"]["ops"].as_str().unwrap().trim(),
        "S"
    );
    // The text report says it too; standard output is the report's, not the rows'.
    let out = stdout(&run(&["--per-record", rows_arg, &asr], &[]));
    assert!(
        out.contains(
            "asr.jsonl: the predictions changed 2 of 10 records: 2 with fewer word errors"
        ),
        "{out}"
    );
    fails_saying(&["--per-record", "-", &asr], "--per-record needs a file");
    // Rows written over a file being scored are refused, before anything is written.
    let scored = dir.path().join("scored.jsonl");
    std::fs::copy(&asr, &scored).unwrap();
    let scored = scored.to_str().unwrap();
    fails_saying(&["--per-record", scored, scored], "--per-record");
    fails_saying(&["--per-record", scored, scored], "is the input");
    fails_saying(
        &["--per-record", scored, &asr, "--against", scored],
        "is the input",
    );
    assert_eq!(std::fs::read(scored).unwrap(), std::fs::read(&asr).unwrap());
    // MT rows carry each side's sentence BLEU, chrF and TER, as sacrebleu's `sentence_bleu`
    // (effective order), `sentence_chrf` and `sentence_ter`.
    json(&["--per-record", rows_arg, &records("mt.jsonl")]);
    let text = std::fs::read_to_string(&rows_path).unwrap();
    let want = &expected()["files"]["mt.jsonl"];
    for (k, line) in text.lines().enumerate() {
        let row: Value = serde_json::from_str(line).unwrap();
        for side in ["one_best", "corrected"] {
            for metric in ["bleu", "chrf", "ter"] {
                let theirs = &want[format!("sentence_{metric}_{side}").as_str()][k];
                assert_close(
                    &row[side][metric],
                    theirs,
                    &format!("row {k} {side} {metric}"),
                );
            }
        }
    }
}

#[test]
fn gec_scores_match_the_reference_scorers() {
    let want = &expected()["files"]["gec.jsonl"];
    let report = json(&[&records("gec.jsonl")]);
    let g = &report["runs"][0]["files"][0]["groups"][0];
    assert_2dp(
        f64_of(&g["gleu"]["one_best"]["score"]),
        f64_of(&want["gleu_one_best"]),
        "GLEU",
    );
    assert_2dp(
        f64_of(&g["gleu"]["corrected"]["score"]),
        f64_of(&want["gleu_corrected"]),
        "GLEU",
    );
    let e = &g["edits"];
    assert_eq!(e["counts"]["true_positives"], want["tp"]);
    assert_eq!(e["counts"]["false_positives"], want["fp"]);
    assert_eq!(e["counts"]["false_negatives"], want["fn"]);
    assert_2dp(f64_of(&e["precision"]), f64_of(&want["precision"]), "P");
    assert_2dp(f64_of(&e["recall"]), f64_of(&want["recall"]), "R");
    assert_2dp(f64_of(&e["f05"]), f64_of(&want["f05"]), "F0.5");
}

#[test]
fn ocr_is_scored_on_raw_text() {
    let want = &expected()["files"]["ocr.jsonl"];
    let report = json(&[&records("ocr.jsonl")]);
    let g = &report["runs"][0]["files"][0]["groups"][0];
    assert_eq!(g["normalizer"], "none@1");
    assert_eq!(rate_counts(&g["wer"]["one_best"]), want["one_best"]);
    assert_eq!(rate_counts(&g["cer"]["one_best"]), want["cer_one_best"]);
}

#[test]
fn records_without_task_are_scored_as_asr_and_stderr_says_so() {
    let want = &expected()["files"]["notask.jsonl"];
    let o = run(&["--json", &records("notask.jsonl")], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("scored as asr"), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let file = &report["runs"][0]["files"][0];
    assert_eq!(file["assumed_task"], 2);
    assert_eq!(file["groups"][0]["normalizer"], "whisper-en@1");
    assert_eq!(
        rate_counts(&file["groups"][0]["wer"]["one_best"]),
        want["one_best"]
    );
    let forced = run(&["--task", "ocr", &records("notask.jsonl")], &[]);
    assert!(!stderr(&forced).contains("scored as asr"));
}

#[test]
fn text_report_names_the_normaliser_and_ends_with_signatures() {
    let text = stdout(&run(&[&records("asr.jsonl"), &records("mt.jsonl")], &[]));
    assert!(
        text.starts_with("normaliser asr=whisper-en@1,mt=none@1 (task default)"),
        "{text}"
    );
    let last: Vec<&str> = text.lines().rev().take(5).collect();
    assert!(
        last[0].starts_with("ter|norm:none@1|nrefs:1|neko:"),
        "{text}"
    );
    assert!(
        last[1].starts_with("chrf|norm:none@1|nrefs:1|neko:"),
        "{text}"
    );
    assert!(last[3].starts_with("cer|"), "{text}");
    assert!(
        last[4].starts_with("wer|norm:asr=whisper-en@1,mt=none@1|nrefs:1|neko:"),
        "{text}"
    );
}

fn temp_json(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    p
}

/// A gate must not pass a run that scored less than its baseline did: a file cut short (what
/// a correction run that died leaves), an empty file, or files the baseline does not have.
#[test]
fn baseline_gate_fails_files_cut_short_and_runs_that_compare_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let asr = records("asr.jsonl");
    let base = temp_json(dir.path(), "base.json", &json(&[&asr]));
    let base = base.to_str().unwrap();
    let lines: Vec<String> = std::fs::read_to_string(&asr)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let cut = dir.path().join("asr.jsonl");
    for (keep, what) in [(2, "cut short"), (0, "empty")] {
        std::fs::write(&cut, lines[..keep].join("\n")).unwrap();
        let o = run(&["--baseline", base, cut.to_str().unwrap()], &[]);
        // Cut short is a regression; empty measured nothing, an error before any comparison.
        let code = if keep == 0 { 2 } else { 1 };
        assert_eq!(o.status.code(), Some(code), "{what}: {}", stdout(&o));
        assert_eq!(
            stderr(&o).contains("no record scored"),
            keep == 0,
            "{}",
            stderr(&o)
        );
        let text = stdout(&o);
        let check = |l: &&str, metric| {
            l.split_whitespace().nth(1) == Some(metric) && l.split_whitespace().count() == 6
        };
        let row = (text.lines())
            .find(|l| check(l, "records"))
            .unwrap_or_else(|| panic!("{what}: no records check: {text}"));
        assert!(row.contains("REGRESSED"), "{what}: {text}");
        let rates = (text.lines()).filter(|l| check(l, "wer"));
        assert_eq!(rates.count(), usize::from(keep > 0), "{what}: {text}");
    }
    let other = dir.path().join("other.jsonl");
    std::fs::copy(&asr, &other).unwrap();
    let o = run(&["--baseline", base, other.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("nothing compared"), "{}", stderr(&o));
    assert!(stdout(&o).contains("in the baseline, not in this run"));
    // A baseline file the run lacks fails the gate though the others pass.
    let two = temp_json(
        dir.path(),
        "two.json",
        &json(&[&asr, &records("ocr.jsonl")]),
    );
    let o = run(&["--baseline", two.to_str().unwrap(), &asr], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("ocr.jsonl: in the baseline, not in this run: REGRESSED"));
    // A metric the baseline measured and the run does not (MT records that lost their task:
    // no BLEU, chrF or TER) fails the gate rather than dropping out of it.
    let mt = records("mt.jsonl");
    let mt_base = temp_json(
        dir.path(),
        "mt-base.json",
        &json(&["--normalizer", "none", &mt]),
    );
    let untasked: String = (std::fs::read_to_string(&mt).unwrap().lines())
        .map(|l| {
            let mut r: Value = serde_json::from_str(l).unwrap();
            r.as_object_mut().unwrap().remove("task");
            r.to_string() + "\n"
        })
        .collect();
    let mt_dir = dir.path().join("untasked");
    std::fs::create_dir(&mt_dir).unwrap();
    let mt_now = mt_dir.join("mt.jsonl");
    std::fs::write(&mt_now, untasked).unwrap();
    let args = [
        "--normalizer",
        "none",
        "--baseline",
        mt_base.to_str().unwrap(),
    ];
    let o = run(&[&args[..], &[mt_now.to_str().unwrap()]].concat(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("mt.jsonl: bleu: measured in the baseline, not in this run"),
        "{}",
        stdout(&o)
    );
    // A baseline saved with a byte-order mark (PowerShell's `>`) is read as it was.
    let bom = dir.path().join("bom.json");
    let text = std::fs::read_to_string(base).unwrap();
    std::fs::write(&bom, format!("\u{feff}{text}")).unwrap();
    let o = run(&["--baseline", bom.to_str().unwrap(), &asr], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The tolerance without a baseline does nothing, and says so.
    let o = run(&["--max-regression", "0.5", &asr], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("no effect without --baseline"));
}

/// A file corrected by a run signed otherwise than its baseline's (here: another decoding) is
/// named with the fields that changed; it is no regression, as the gate compares the scores.
#[test]
fn baseline_gate_names_a_correction_signed_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let asr = dir.path().join("asr.jsonl");
    std::fs::copy(records("asr.jsonl"), &asr).unwrap();
    let sig = neko::output::signature_path(&asr);
    let signed = |decode: &str| {
        let s = format!("correct|model:fp-1|dtype:f32|decode:{decode}|max_new:auto|neko:0.1.0");
        std::fs::write(&sig, s).unwrap();
    };
    let asr = asr.to_str().unwrap();
    signed("greedy");
    let base = temp_json(dir.path(), "base.json", &json(&[asr]));
    let base = base.to_str().unwrap();
    let o = run(&["--baseline", base, asr], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(!stdout(&o).contains("otherwise"), "{}", stdout(&o));
    signed("greedy+words");
    let o = run(&["--baseline", base, asr], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let note = "asr.jsonl: corrected otherwise than its baseline (not a regression): \
                decode: greedy → greedy+words\n";
    assert!(stdout(&o).contains(note), "{}", stdout(&o));
    let report: Value =
        serde_json::from_slice(&run(&["--json", "--baseline", base, asr], &[]).stdout).unwrap();
    assert_eq!(
        report["comparison"]["changed"][0]["fields"],
        serde_json::json!(["decode: greedy → greedy+words"])
    );
    // A run without a signature beside its file, against a signed baseline.
    std::fs::remove_file(&sig).unwrap();
    let o = run(&["--baseline", base, asr], &[]);
    assert!(
        stdout(&o).contains("signature: signed → none"),
        "{}",
        stdout(&o)
    );
}

/// A baseline scored by another neko version is said (a version that moves scores is raised),
/// not failed: the gate compares the scores. The same version says nothing.
#[test]
fn baseline_gate_names_a_baseline_scored_by_another_version() {
    let dir = tempfile::tempdir().unwrap();
    let asr = records("asr.jsonl");
    let mut report = json(&[&asr]);
    let same = temp_json(dir.path(), "same.json", &report);
    report["neko"] = "0.1.0".into();
    let older = temp_json(dir.path(), "older.json", &report);
    let o = run(&["--baseline", same.to_str().unwrap(), &asr], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(!stdout(&o).contains("another version"), "{}", stdout(&o));
    let o = run(&["--baseline", older.to_str().unwrap(), &asr], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let now = env!("CARGO_PKG_VERSION");
    let note = format!(
        "the baseline was scored by another version (neko 0.1.0 → {now}; not a regression)"
    );
    assert!(stdout(&o).contains(&note), "{}", stdout(&o));
    let o = json(&["--baseline", older.to_str().unwrap(), &asr]);
    assert_eq!(o["comparison"]["scored_by"], format!("neko 0.1.0 → {now}"));
    let o = json(&["--baseline", same.to_str().unwrap(), &asr]);
    assert!(o["comparison"].get("scored_by").is_none(), "{o}");
}

/// A `FILE.sig` speaks for FILE only while FILE is what the signed run wrote: its digest line
/// ties them, so a stale one beside a FILE written over by a later run (`> FILE`, which writes
/// no `.sig`) is left out and said, not printed as that run's model; a `.sig` that is not
/// neko's (a dataset's detached signature) is no signature line.
#[test]
fn a_stale_or_foreign_sig_is_not_reported_as_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let correct = |model: &str| {
        let mut c = crate::util::neko();
        c.args(["correct", "--task", "asr", "--model"])
            .arg(crate::util::fixture(model))
            .arg(crate::util::fixture("records/variants.json"));
        c
    };
    crate::util::ok(correct("tiny-llama").arg("-o").arg(&out));
    let sig = std::fs::read_to_string(neko::output::signature_path(&out)).unwrap();
    let signed = sig.lines().next().unwrap();
    assert!(
        sig.lines().nth(1).unwrap().starts_with("file-sha256:"),
        "{sig}"
    );
    let o = run(&[out.to_str().unwrap()], &[]);
    assert!(stdout(&o).contains(signed), "{}", stdout(&o));
    // The --against side is signed too: the comparison is of two correctors.
    let path = out.to_str().unwrap();
    let o = run(&["--against", path, path], &[]);
    let against = format!("{signed}|against:{path}");
    assert!(stdout(&o).contains(&against), "{}", stdout(&o));
    let later = crate::util::ok(&mut correct("tiny-mixtral"));
    std::fs::write(&out, &later.stdout).unwrap();
    let o = run(&[out.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stdout(&o).contains("correct|"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("not the signature of"),
        "{}",
        stderr(&o)
    );
    // Nor does a resume take the lines written over for the signed run's.
    let err = crate::util::refused(correct("tiny-llama").args(["--resume", "-o"]).arg(&out));
    assert!(err.contains("written over since it was signed"), "{err}");
    let minisign = "untrusted comment: signature from minisign secret key\nRWQf6LRC=\n";
    std::fs::write(neko::output::signature_path(&out), minisign).unwrap();
    let o = run(&[out.to_str().unwrap()], &[]);
    assert!(!stdout(&o).contains("minisign"), "{}", stdout(&o));
}

#[test]
fn baseline_gate_exits_1_on_a_regression_beyond_the_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let asr = records("asr.jsonl");
    let now = json(&[&asr]);
    let same = temp_json(dir.path(), "same.json", &now);
    let o = run(&["--baseline", same.to_str().unwrap(), &asr], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("0 regression(s)"));

    // A baseline 0.3 WER points better than this run.
    let mut better = now.clone();
    let wer = &mut better["runs"][0]["files"][0]["groups"][0]["wer"]["corrected"]["rate"];
    *wer = (f64_of(wer) - 0.3).into();
    let better = temp_json(dir.path(), "better.json", &better);
    let b = better.to_str().unwrap();
    let o = run(&["--baseline", b, "--max-regression", "0.2", &asr], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("REGRESSED"));
    assert!(stderr(&o).contains("regression(s) against"));
    // stderr names what regressed and by how much (with --json > FILE it is all CI shows).
    assert!(
        stderr(&o).contains("asr.jsonl: wer") && stderr(&o).contains("(worse by 0.30)"),
        "{}",
        stderr(&o)
    );
    let o = run(
        &["--baseline", b, &asr],
        &[("NEKO_EVAL_MAX_REGRESSION", "0.5")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    // TER is lower-better too: a baseline 0.3 lower is a regression, 0.3 higher is not.
    let mt = records("mt.jsonl");
    let mt_now = json(&[&mt]);
    for (shift, code) in [(-0.3, 1), (0.3, 0)] {
        let mut base = mt_now.clone();
        let ter = &mut base["runs"][0]["files"][0]["groups"][0]["ter"]["corrected"]["score"];
        *ter = (f64_of(ter) + shift).into();
        let base = temp_json(dir.path(), "ter.json", &base);
        let o = run(&["--baseline", base.to_str().unwrap(), &mt], &[]);
        assert_eq!(o.status.code(), Some(code), "{}", stdout(&o));
        assert_eq!(
            stdout(&o).contains("REGRESSED"),
            code == 1,
            "{}",
            stdout(&o)
        );
    }

    // Scores under another normaliser cannot be compared.
    let o = run(
        &[
            "--baseline",
            same.to_str().unwrap(),
            "--normalizer",
            "none",
            &asr,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no run with normaliser"),
        "{}",
        stderr(&o)
    );
    // Nor can a file whose records' tasks now give it another normaliser, though the run's
    // setting (each task's default) is the same; the default named is the default.
    let ocr = dir.path().join("asr.jsonl");
    let as_ocr = std::fs::read_to_string(&asr)
        .unwrap()
        .replace("\"task\": \"asr\"", "\"task\": \"ocr\"");
    assert_ne!(as_ocr, std::fs::read_to_string(&asr).unwrap());
    std::fs::write(&ocr, as_ocr).unwrap();
    let o = run(
        &["--baseline", same.to_str().unwrap(), ocr.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("not comparable"), "{}", stderr(&o));
    let named = [
        "--normalizer",
        "whisper-en",
        "--baseline",
        same.to_str().unwrap(),
    ];
    let o = run(&[&named[..], &[asr.as_str()]].concat(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn paired_bootstrap_matches_the_reference_tools_on_the_same_draws() {
    // scripts/make_metric_fixtures.py draws the same resamples (SplitMix64) and scores each with
    // jiwer, sacrebleu and gleu: every interval and share must agree.
    let files = ["mt.jsonl", "gec.jsonl"].map(records);
    let report = json(&["--paired-bs", "--paired-bs-n", "200", &files[0], &files[1]]);
    for (i, name) in ["mt.jsonl", "gec.jsonl"].iter().enumerate() {
        let want = &expected()["files"][name]["bootstrap"];
        let got = &report["runs"][0]["files"][i]["groups"][0]["significance"];
        assert_eq!(got["resamples"], want["resamples"]);
        assert_eq!(got["seed"], want["seed"]);
        assert_intervals(
            got,
            want,
            &["wer", "cer", "bleu", "chrf", "ter", "gleu"],
            name,
        );
    }
    // A mixed GEC change is not better in every resample; the fixture must keep showing that.
    assert!(f64_of(&expected()["files"]["gec.jsonl"]["bootstrap"]["wer"]["p_better"]) < 1.0);
}

/// `--confidence`: each score's spread over neko's resamples, as sacrebleu's `--confidence`
/// computes it from the reference tools' scores of the same resamples (GLEU with several
/// references: a reference draw per resample); the signature names the draws.
#[test]
fn confidence_matches_sacrebleus_estimate_on_the_same_draws() {
    let cases = [
        ("mt.jsonl", &["wer", "cer", "bleu", "chrf", "ter"][..]),
        ("gec-multi.jsonl", &["gleu"][..]),
    ];
    for (name, metrics) in cases {
        let want = &expected()["files"][name]["confidence"];
        let report = json(&["--confidence", "--paired-bs-n", "200", &records(name)]);
        let got = &report["runs"][0]["files"][0]["groups"][0]["confidence"];
        assert_eq!(got["resamples"], want["resamples"]);
        for metric in metrics {
            for side in ["one_best", "corrected"] {
                for field in ["mean", "ci"] {
                    let (ours, theirs) = (&got[metric][side][field], &want[metric][side][field]);
                    let what = format!("{name} {metric} {side} {field}");
                    assert!(
                        (f64_of(ours) - f64_of(theirs)).abs() < 1e-6,
                        "{what}: {ours} vs {theirs}"
                    );
                }
            }
        }
        let sigs = report["runs"][0]["signatures"].to_string();
        assert!(sigs.contains("|bs:200|seed:12345|"), "{sigs}");
    }
    let text = stdout(&run(&["--confidence", &records("mt.jsonl")], &[]));
    assert!(text.contains("sacrebleu's --confidence"), "{text}");
    assert!(text.contains("μ "), "{text}");
}

/// Each metric's bootstrap interval and share as the fixture's (those it has).
fn assert_intervals(got: &Value, want: &Value, metrics: &[&str], name: &str) {
    for metric in metrics.iter().filter(|m| !want[**m].is_null()) {
        for field in ["delta", "low", "high"] {
            let (ours, theirs) = (&got[metric][field], &want[metric][field]);
            assert_2dp(
                f64_of(ours),
                f64_of(theirs),
                &format!("{name} {metric} {field}"),
            );
        }
        let share = (&got[metric]["p_better"], &want[metric]["p_better"]);
        assert_eq!(share.0, share.1, "{name} {metric}");
    }
}

/// `--against BASE` compares each file with another system's output, record by record: the
/// same draws as the 1-best comparison, each side scored by sacrebleu and jiwer; files whose
/// records are not BASE's are refused.
#[test]
fn paired_bootstrap_against_another_system_matches_the_reference_tools() {
    let (mt, base) = (records("mt.jsonl"), records("mt-base.jsonl"));
    let report = json(&["--against", &base, "--paired-bs-n", "200", &mt]);
    let got = &report["runs"][0]["files"][0]["groups"][0]["significance"];
    let want = &expected()["files"]["mt.jsonl"]["bootstrap_against_base"];
    assert_eq!(got["against"].as_str(), Some(base.as_str()));
    assert_intervals(got, want, &["wer", "bleu", "chrf", "ter"], "mt.jsonl");
    let text = stdout(&run(
        &["--against", &base, "--paired-bs-n", "200", &mt],
        &[],
    ));
    assert!(
        text.contains(&format!("each file against {base}, record by record")),
        "{text}"
    );
    // Other records, or the same records against other references, are no comparison.
    let dir = tempfile::tempdir().unwrap();
    // BASE as plain text (one output per line, as sacrebleu takes it): records without ids
    // pair by position (it was refused: "id 0 in --against, "m0" here").
    let outputs: String = (crate::util::json_lines(&std::fs::read(&base).unwrap()).iter())
        .map(|r| r["prediction"].as_str().unwrap().to_string() + "\n")
        .collect();
    let plain_base = write_in(dir.path(), "base.txt", &outputs);
    let refs: String = (crate::util::json_lines(&std::fs::read(&base).unwrap()).iter())
        .map(|r| r["output"].as_str().unwrap().to_string() + "\n")
        .collect();
    let refs = write_in(dir.path(), "refs.txt", &refs);
    let args = [
        "--ref",
        &refs,
        "--against",
        &plain_base,
        "--paired-bs-n",
        "200",
        &mt,
    ];
    let report = json(&args);
    let got = &report["runs"][0]["files"][0]["groups"][0]["significance"];
    assert_intervals(
        got,
        want,
        &["wer", "bleu", "chrf", "ter"],
        "plain-text base",
    );
    fails_saying(
        &["--against", &plain_base, &mt],
        "no reference (`output`) in --against, one here: give both files theirs with --ref",
    );
    let content = std::fs::read_to_string(&mt).unwrap();
    let lines: Vec<&str> = content.lines().collect();
    let short = write_in(dir.path(), "short.jsonl", &(lines[1..].join("\n") + "\n"));
    fails_saying(
        &["--against", &base, &short],
        "the systems are compared record by record",
    );
    let mut other: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    other[3]["output"] = Value::from("another reference");
    let other: String = other.iter().map(|v| v.to_string() + "\n").collect();
    let other = write_in(dir.path(), "other.jsonl", &other);
    fails_saying(&["--against", &base, &other], "line 4: other references");
    // A base without tasks (a 1-best file) is scored as the file's task, MT, not as ASR (which
    // normalised its text as speech and dropped BLEU); a base of another task is refused.
    let based: Vec<Value> = std::fs::read_to_string(&base)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let with_task = |task: Option<&str>| -> String {
        let lines = based.iter().map(|r| {
            let mut r = r.clone();
            match task {
                Some(t) => r["task"] = Value::from(t),
                None => drop(r.as_object_mut().unwrap().remove("task")),
            }
            r.to_string() + "\n"
        });
        lines.collect()
    };
    let untasked = write_in(dir.path(), "untasked.jsonl", &with_task(None));
    let report = json(&["--against", &untasked, "--paired-bs-n", "200", &mt]);
    let got = &report["runs"][0]["files"][0]["groups"][0]["significance"];
    assert_intervals(got, want, &["wer", "bleu", "chrf", "ter"], "untasked base");
    let asr = write_in(dir.path(), "asr-base.jsonl", &with_task(Some("asr")));
    fails_saying(&["--against", &asr, &mt], "line 1: another task");
    // Either way: a file without tasks is scored as the base's task, MT, also when it comes
    // first of several (it was scored as ASR: a change between identical texts, no BLEU).
    let plain: String = (content.lines())
        .map(|l| {
            let mut r: Value = serde_json::from_str(l).unwrap();
            r.as_object_mut().unwrap().remove("task");
            r.to_string() + "\n"
        })
        .collect();
    let plain = write_in(dir.path(), "plain.jsonl", &plain);
    let report = json(&["--against", &base, "--paired-bs-n", "200", &plain, &mt]);
    for (k, name) in ["plain.jsonl", "mt.jsonl"].iter().enumerate() {
        let got = &report["runs"][0]["files"][k]["groups"][0]["significance"];
        assert_intervals(got, want, &["wer", "bleu", "chrf", "ter"], name);
    }
    // Base records that cannot be scored are said, and counted in the report.
    let broken = based.iter().enumerate().map(|(i, r)| match i {
        2 => "{broken\n".to_string(),
        _ => r.to_string() + "\n",
    });
    let broken = write_in(dir.path(), "broken.jsonl", &broken.collect::<String>());
    let o = run(&["--json", "--against", &broken, &mt], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("broken.jsonl: 1 of its records not scored") && err.contains("line 3"),
        "{err}"
    );
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let missing = &report["runs"][0]["files"][0]["against_unscored"];
    assert_eq!(missing[0]["line"], 3, "{missing}");
}

#[test]
fn paired_bootstrap_is_printed_and_signed_and_off_by_default() {
    let mt = records("mt.jsonl");
    let o = run(
        &[&mt],
        &[
            ("NEKO_EVAL_PAIRED_BS", "1"),
            ("NEKO_EVAL_PAIRED_BS_N", "50"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("paired bootstrap, predictions against their 1-best (50 resamples)"));
    assert!(
        text.contains("95% interval") && text.contains("P(better)"),
        "{text}"
    );
    let bleu = text
        .lines()
        .find(|l| l.starts_with("bleu|"))
        .expect("a BLEU signature");
    assert!(bleu.contains("|bs:50|seed:12345|"), "{bleu}");
    let plain = json(&[&mt]);
    let g = &plain["runs"][0]["files"][0]["groups"][0];
    assert!(
        g.get("significance").is_none(),
        "no bootstrap unless asked: {g}"
    );
    assert!(!plain["runs"][0]["signatures"].to_string().contains("bs:"));
    // A file without predictions has nothing to compare.
    let raw = json(&["--paired-bs", &records("ocr.jsonl")]);
    assert!(raw["runs"][0]["files"][0]["groups"][0]
        .get("significance")
        .is_none());
    let o = run(&["--paired-bs", &records("ocr.jsonl")], &[]);
    assert!(
        stderr(&o).contains("no file here has a `prediction`"),
        "{}",
        stderr(&o)
    );
    let o = run(&["--paired-bs", "--paired-bs-n", "0", &mt], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--paired-bs-n must be at least 1"));
}

#[test]
fn every_flag_has_an_environment_twin() {
    let asr = records("asr.jsonl");
    let o = run(
        &[&asr],
        &[
            ("NEKO_EVAL_JSON", "1"),
            ("NEKO_EVAL_NORMALIZER", "h2t,none"),
            ("NEKO_EVAL_GROUP_BY", "none"),
            ("NEKO_EVAL_TASK", "ocr"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).expect("JSON from NEKO_EVAL_JSON");
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["normalizer"], "h2t@1");
    assert_eq!(runs[0]["task"], "ocr");
    assert_eq!(runs[0]["files"][0]["groups"].as_array().unwrap().len(), 1);
    let o = run(
        &[&asr],
        &[("NEKO_EVAL_BASELINE", "/nonexistent/scores.json")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read baseline"));
}

#[test]
fn bad_input_is_an_error_but_other_files_are_still_scored() {
    let o = run(&["/nonexistent/file.jsonl", &records("ocr.jsonl")], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/file.jsonl"));
    assert!(stdout(&o).contains("ocr.jsonl"), "{}", stdout(&o));
    for bad in [
        &["--normalizer", "nope"][..],
        &["--max-regression", "-1"],
        &["--group-by", "x"],
    ] {
        let mut args = bad.to_vec();
        let ocr = records("ocr.jsonl");
        args.push(&ocr);
        assert_eq!(run(&args, &[]).status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn standard_input_is_read_with_a_dash() {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = util::neko()
        .args(["eval", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let line = "{\"task\": \"ocr\", \"input\": [\"a b c\"], \"output\": \"a b d\"}\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let file = &report["runs"][0]["files"][0];
    assert_eq!(file["path"], "<stdin>");
    assert_eq!(file["groups"][0]["wer"]["one_best"]["substitutions"], 1);
}

/// `neko correct` output carries the 1-best alone (`best`): its oracles are unknown, not the
/// oracles of a one-hypothesis list (which would equal the 1-best and undercut it).
#[test]
fn output_with_only_the_one_best_has_no_oracles() {
    let dir = tempfile::tempdir().unwrap();
    let line = |hyps: &str| {
        format!("{{\"task\": \"asr\", {hyps}, \"prediction\": \"a b d\", \"output\": \"a b d\"}}\n")
    };
    let corrected = dir.path().join("out.jsonl");
    std::fs::write(&corrected, line("\"best\": \"a b c x\"")).unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, line("\"input\": [\"a b c x\", \"a b d\"]")).unwrap();
    let report = json(&[corrected.to_str().unwrap(), input.to_str().unwrap()]);
    let wer = |i: usize| report["runs"][0]["files"][i]["groups"][0]["wer"].clone();
    assert_eq!(wer(0)["one_best"]["rate"], wer(1)["one_best"]["rate"]);
    assert_eq!(wer(0)["oracle_nbest"], Value::Null);
    assert_eq!(wer(0)["oracle_compositional"], Value::Null);
    assert_eq!(wer(1)["oracle_nbest"]["rate"], 0.0);
    let o = run(&[corrected.to_str().unwrap()], &[]);
    let row: Vec<String> = stdout(&o)
        .lines()
        .find(|l| l.starts_with("out.jsonl"))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .unwrap();
    assert_eq!(
        row[..7],
        ["out.jsonl", "1", "3", "66.67", "66.67", "-", "-"]
    );
    assert!(stdout(&o).contains("- where records carry only their 1-best"));
    // A transcript alone in the other shapes too: a NeMo manifest's `pred_text` string, a
    // string `input`; a list of one hypothesis is an N-best of one, its own oracle.
    let manifest = dir.path().join("manifest.json");
    let nemo = "{\"audio_filepath\": \"a.wav\", \"text\": \"a b d\", \"pred_text\": \"a b c x\"}\n";
    std::fs::write(&manifest, nemo).unwrap();
    let string_input = dir.path().join("string.jsonl");
    std::fs::write(&string_input, line("\"input\": \"a b c x\"")).unwrap();
    let one = dir.path().join("one.jsonl");
    std::fs::write(&one, line("\"input\": [\"a b c x\"]")).unwrap();
    let files = [&manifest, &string_input, &one].map(|p| p.to_str().unwrap());
    let report = json(&["--task", "asr", files[0], files[1], files[2]]);
    let wer = |i: usize| report["runs"][0]["files"][i]["groups"][0]["wer"].clone();
    for (i, file) in files[..2].iter().enumerate() {
        assert_eq!(wer(i)["oracle_nbest"], Value::Null, "{file}");
        assert_eq!(wer(i)["oracle_compositional"], Value::Null, "{file}");
    }
    assert_eq!(wer(2)["oracle_nbest"]["rate"], wer(2)["one_best"]["rate"]);
}

#[test]
fn an_empty_file_reports_zero_records() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let o = run(&["--json", empty.to_str().unwrap()], &[]);
    let report: Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let g = &report["runs"][0]["files"][0]["groups"][0];
    assert_eq!(g["records"], 0);
    // No record, no rate: null, where 0.0 would read as a perfect score to a script.
    assert!(g["wer"].is_null() && g["cer"].is_null(), "{g}");
    // The table gives no rate over no words, where 0.00 would read as a perfect score.
    let o = run(&[empty.to_str().unwrap()], &[]);
    let row = stdout(&o)
        .lines()
        .find(|l| l.starts_with("empty.jsonl"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap();
    assert_eq!(row, "empty.jsonl 0 0 - - - - - - - -");
    assert!(stdout(&o).starts_with("normaliser - (no record scored)"));
    assert_eq!(o.status.code(), Some(2), "nothing measured is an error");
    assert!(stdout(&o).contains("wer|norm:-|"));
}

/// Records without a source form their own group, which no source value can join.
#[test]
fn records_without_a_source_are_a_group_no_source_can_join() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sources.jsonl");
    std::fs::write(
        &f,
        "{\"task\": \"asr\", \"source\": \"(none)\", \"output\": \"a\", \"input\": [\"a\"]}\n\
         {\"task\": \"asr\", \"output\": \"b\", \"input\": [\"c\"]}\n",
    )
    .unwrap();
    let report = json(&["--group-by", "source", f.to_str().unwrap()]);
    let groups = report["runs"][0]["files"][0]["groups"].as_array().unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["all", "no source", "source=(none)"]);
}

/// References that normalise to nothing still have a WER (jiwer's: 100 × insertions), in the
/// table as in the JSON.
#[test]
fn empty_references_have_jiwers_rate_in_the_table_too() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("empty_refs.jsonl");
    std::fs::write(
        &f,
        "{\"task\": \"asr\", \"output\": \"\", \"input\": [\"a b\"]}\n\
         {\"task\": \"asr\", \"output\": \"uh\", \"input\": [\"c\"]}\n",
    )
    .unwrap();
    let path = f.to_str().unwrap();
    let g = &json(&[path])["runs"][0]["files"][0]["groups"][0];
    assert_eq!(g["wer"]["one_best"]["rate"], 300.0);
    let o = run(&[path], &[]);
    let row = stdout(&o)
        .lines()
        .find(|l| l.starts_with("empty_refs.jsonl"))
        .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
        .unwrap();
    assert_eq!(row, "empty_refs.jsonl 2 0 300.00");
}

/// The 1-best and N-best oracle columns of `../shared/design/benchmark.md`, to two decimals.
const BENCHMARK_MD: [(&str, u64, u64, f64, f64, f64); 7] = [
    ("test_atis.json", 809, 9111, 8.40, 8.37, 5.31),
    ("test_chime4.json", 1320, 21710, 12.69, 11.64, 9.94),
    ("test_cv.json", 2000, 21186, 15.44, 15.43, 11.32),
    ("test_lrs2.json", 2259, 17288, 11.85, 11.67, 6.80),
    ("test_ls_clean.json", 2620, 52576, 1.79, 1.76, 0.89),
    ("test_swbd.json", 2000, 38414, 15.86, 15.70, 12.57),
    ("test_wsj_score.json", 836, 14157, 6.03, 5.74, 4.56),
];

#[test]
fn hyporadise_reproduces_benchmark_md_and_jiwer() {
    let Some(dir) = util::shared_data("hyporadise/test") else {
        return;
    };
    let files: Vec<String> = BENCHMARK_MD
        .iter()
        .map(|b| dir.join(b.0).display().to_string())
        .collect();
    let mut args = vec!["--normalizer", "none,h2t,whisper-en"];
    args.extend(files.iter().map(String::as_str));
    let report = json(&args);
    let runs = report["runs"].as_array().unwrap();
    let fixture = shared_fixture();
    for (i, (name, utts, words, raw, h2t, oracle)) in BENCHMARK_MD.iter().enumerate() {
        let file = |r: usize| &runs[r]["files"][i]["groups"][0];
        let round = |v: &Value| (f64_of(v) * 100.0).round() / 100.0;
        assert_eq!(file(0)["records"], *utts, "{name}");
        assert_eq!(file(0)["reference_words"], *words, "{name}");
        assert_eq!(
            round(&file(0)["wer"]["one_best"]["rate"]),
            *raw,
            "{name} raw 1-best"
        );
        assert_eq!(
            round(&file(1)["wer"]["one_best"]["rate"]),
            *h2t,
            "{name} h2t 1-best"
        );
        assert_eq!(
            round(&file(0)["wer"]["oracle_nbest"]["rate"]),
            *oracle,
            "{name} oracle"
        );
        for (r, norm) in ["none@1", "h2t@1", "whisper-en@1"].iter().enumerate() {
            let (g, want) = (file(r), &fixture["hyporadise"][name][norm]);
            let what = format!("{name} {norm}");
            assert_eq!(
                rate_counts(&g["wer"]["one_best"]),
                want["one_best"],
                "{what}"
            );
            assert_eq!(
                rate_counts(&g["wer"]["oracle_nbest"]),
                want["oracle"],
                "{what}"
            );
            assert_eq!(
                rate_counts(&g["cer"]["one_best"]),
                want["cer_one_best"],
                "{what}"
            );
            assert_eq!(
                g["wer"]["oracle_compositional"]["deletions"], want["compositional_errors"],
                "{what}"
            );
            assert_close(
                &g["wer"]["one_best"]["per_utterance"],
                &want["one_best_utt"],
                &what,
            );
            assert_close(
                &g["wer"]["oracle_nbest"]["per_utterance"],
                &want["oracle_utt"],
                &what,
            );
        }
    }
}

/// `--paired-ar` on 800 real apertium sentences, the 1-best against a system that takes the
/// second hypothesis on every fifth record: each p-value within Monte Carlo error of
/// sacrebleu's `--paired-ar` (10,000 trials each, different generators; on real sentences
/// ties, where the two count differently, do not arise).
#[test]
fn paired_randomization_agrees_with_sacrebleu_on_real_translations() {
    let Some(dir) = util::shared_data("synth") else {
        return;
    };
    let want = &shared_fixture()["synth"]["mt.dev.jsonl"]["paired_ar"];
    let text = std::fs::read_to_string(dir.join("mt.dev.jsonl")).unwrap();
    let mut lines = String::new();
    for (i, line) in text.lines().enumerate() {
        let mut r: Value = serde_json::from_str(line).unwrap();
        r["prediction"] = r["input"][if i % 5 == 0 { 1 } else { 0 }].clone();
        lines.push_str(&format!("{r}\n"));
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("fifth.jsonl");
    std::fs::write(&file, lines).unwrap();
    let report = json(&["--paired-ar", "--group-by", "none", file.to_str().unwrap()]);
    let g = &report["runs"][0]["files"][0]["groups"][0];
    for metric in ["bleu", "chrf", "ter"] {
        assert_close(
            &g[metric]["corrected"]["score"],
            &want[metric]["score"],
            metric,
        );
        let ours = f64_of(&g["significance"][metric]["p_ar"]);
        let theirs = f64_of(&want[metric]["p"]);
        assert!(
            (ours - theirs).abs() < 0.01,
            "{metric}: p {ours} vs sacrebleu's {theirs}"
        );
    }
    assert_eq!(g["significance"]["ar_trials"], 10_000);
}

#[test]
fn synthetic_dev_sets_match_the_reference_tools() {
    let Some(dir) = util::shared_data("synth") else {
        return;
    };
    let fixture = shared_fixture();
    let want = fixture["synth"].as_object().unwrap();
    let files: Vec<String> = want
        .keys()
        .map(|k| dir.join(k).display().to_string())
        .collect();
    let mut args = vec!["--group-by", "none"];
    args.extend(files.iter().map(String::as_str));
    let report = json(&args);
    for (i, (name, w)) in want.iter().enumerate() {
        let g = &report["runs"][0]["files"][i]["groups"][0];
        assert_eq!(g["normalizer"], w["normalizer"], "{name}");
        assert_eq!(g["records"], w["records"], "{name}");
        assert_eq!(rate_counts(&g["wer"]["one_best"]), w["one_best"], "{name}");
        assert_eq!(
            rate_counts(&g["wer"]["oracle_nbest"]),
            w["oracle"],
            "{name}"
        );
        assert_eq!(
            rate_counts(&g["cer"]["one_best"]),
            w["cer_one_best"],
            "{name}"
        );
        if let Some(b) = w.get("bleu") {
            assert_2dp(f64_of(&g["bleu"]["one_best"]["score"]), f64_of(b), name);
            assert_2dp(
                f64_of(&g["chrf"]["one_best"]["score"]),
                f64_of(&w["chrf"]),
                name,
            );
            assert_2dp(
                f64_of(&g["ter"]["one_best"]["score"]),
                f64_of(&w["ter"]),
                name,
            );
        }
        if let Some(gl) = w.get("gleu") {
            assert_2dp(f64_of(&g["gleu"]["one_best"]["score"]), f64_of(gl), name);
        }
    }
}

/// A record `neko correct` failed on (its 1-best as prediction, and an `error`) is a fallback,
/// not a correction; an unscored record without a task is not counted as scored as ASR; a
/// raw file beside a corrected one shows its 1-best's S D I.
#[test]
fn failed_records_are_fallbacks_and_only_scored_records_count_as_asr() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("out.jsonl");
    std::fs::write(
        &f,
        "{\"id\": \"a\", \"task\": \"asr\", \"prediction\": \"hello world\", \"best\": \"hello word\", \"output\": \"hello world\"}\n\
         {\"id\": \"b\", \"task\": \"asr\", \"prediction\": \"hello word\", \"best\": \"hello word\", \"output\": \"hello world\", \"error\": {\"file\": \"in.jsonl\", \"line\": 2, \"message\": \"timed out\"}}\n\
         {\"id\": \"c\", \"input\": [\"no reference\"]}\n",
    )
    .unwrap();
    let raw = dir.path().join("raw.jsonl");
    std::fs::write(
        &raw,
        "{\"id\": \"r\", \"input\": [\"a b c\"], \"output\": \"a x c d\"}\n",
    )
    .unwrap();
    let o = run(&["--json", f.to_str().unwrap()], &[]);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let file = &report["runs"][0]["files"][0];
    assert_eq!(file["fallbacks"].as_array().unwrap().len(), 1, "{file}");
    let reason = file["fallbacks"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("failed (error: "), "{reason}");
    assert_eq!(file["groups"][0]["predictions"], 1);
    // The record without a reference was not scored, as ASR or otherwise.
    assert_eq!(file["assumed_task"], 0, "{file}");
    assert!(!stderr(&o).contains("scored as asr"), "{}", stderr(&o));
    let text = stdout(&run(&[f.to_str().unwrap(), raw.to_str().unwrap()], &[]));
    let row = text
        .lines()
        .find(|l| l.starts_with("raw.jsonl") || l.contains("/raw.jsonl"))
        .unwrap();
    let sdi: Vec<&str> = row.split_whitespace().rev().take(3).collect();
    assert_eq!(sdi, ["0", "1", "1"], "I D S: {text}");
    assert!(
        text.contains("S D I of the corrected (of the 1-best where a file has no predictions)"),
        "{text}"
    );
}

/// The gate's verdict holds when its reader stops early (`| head`): exit 1, not 0.
#[test]
fn a_closed_stdout_keeps_the_gate_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let asr = records("asr.jsonl");
    let mut better = json(&[&asr]);
    let wer = &mut better["runs"][0]["files"][0]["groups"][0]["wer"]["corrected"]["rate"];
    *wer = serde_json::json!(wer.as_f64().unwrap() - 1.0);
    let base = temp_json(dir.path(), "better.json", &better);
    let mut cmd = util::neko();
    cmd.args(["eval", "--baseline", base.to_str().unwrap(), &asr])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Scores are compared as printed, to two decimals: a WER of 8.396 against 8.604 is 0.21
/// worse whatever the unrounded difference (0.208) says, and 8.404 against 8.596 is 0.19.
#[test]
fn the_gate_compares_scores_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let asr = records("asr.jsonl");
    let now = json(&[&asr]);
    let current = now["runs"][0]["files"][0]["groups"][0]["wer"]["corrected"]["rate"]
        .as_f64()
        .unwrap();
    let printed = (current * 100.0).round() / 100.0;
    let gate = |baseline: f64, tol: &str| {
        let mut b = now.clone();
        b["runs"][0]["files"][0]["groups"][0]["wer"]["corrected"]["rate"] =
            serde_json::json!(baseline);
        let p = temp_json(dir.path(), "b.json", &b);
        run(
            &[
                "--baseline",
                p.to_str().unwrap(),
                "--max-regression",
                tol,
                &asr,
            ],
            &[],
        )
        .status
        .code()
    };
    // Printed 0.20 better than now: within 0.2, whatever the third decimal.
    assert_eq!(gate(printed - 0.2 + 0.004, "0.2"), Some(0));
    assert_eq!(gate(printed - 0.2 - 0.004, "0.2"), Some(0));
    assert_eq!(gate(printed - 0.21 + 0.004, "0.2"), Some(1));
}

/// A baseline file is compared with one file of the run: the one at its path, else the only
/// one with its name. Another file of that name is not compared with it.
#[test]
fn one_baseline_file_matches_one_file_of_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (d1, d2) = (dir.path().join("d1"), dir.path().join("d2"));
    for d in [&d1, &d2] {
        std::fs::create_dir(d).unwrap();
        std::fs::copy(records("asr.jsonl"), d.join("x.jsonl")).unwrap();
    }
    let (x1, x2) = (d1.join("x.jsonl"), d2.join("x.jsonl"));
    let (x1, x2) = (x1.to_str().unwrap(), x2.to_str().unwrap());
    let base = temp_json(dir.path(), "base.json", &json(&[x1]));
    let o = run(&["--baseline", base.to_str().unwrap(), x1, x2], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!("{x2}: not in the baseline, not compared")),
        "{}",
        stdout(&o)
    );
    // Alone, the other file still matches by name (a run from another folder).
    let o = run(&["--baseline", base.to_str().unwrap(), x2], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(!stdout(&o).contains("not compared"), "{}", stdout(&o));
}

/// Ids on more than one record are each scored, and said to be: a file concatenated twice
/// would otherwise count twice unseen.
#[test]
fn repeated_ids_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let line = |id: &str, hyp: &str| {
        format!("{{\"id\": \"{id}\", \"input\": [\"{hyp}\"], \"output\": \"a b\"}}\n")
    };
    let text = [line("x", "a b"), line("y", "a c"), line("x", "a c")].concat();
    let path = dir.path().join("dup.jsonl");
    std::fs::write(&path, text).unwrap();
    let file = path.to_str().unwrap();
    let o = run(&["--task", "asr", file], &[]);
    assert!(
        stderr(&o).contains("1 id(s) on more than one record (the first, \"x\", on lines 1, 3)"),
        "{}",
        stderr(&o)
    );
    let report = json(&["--task", "asr", file]);
    let f = &report["runs"][0]["files"][0];
    assert_eq!(f["repeated_ids"]["ids"], 1);
    assert_eq!(f["groups"][0]["records"], 3);
    let once = dir.path().join("once.jsonl");
    std::fs::write(&once, line("x", "a b")).unwrap();
    let report = json(&["--task", "asr", once.to_str().unwrap()]);
    assert!(report["runs"][0]["files"][0].get("repeated_ids").is_none());
}

/// A NeMo manifest as Canary's or Parakeet's evaluation writes it (`text` the reference,
/// `pred_text` the transcript) is scored as it stands: here 1 error over 5 reference words.
#[test]
fn a_nemo_manifest_is_scored_transcript_against_text() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("manifest.json");
    std::fs::write(
        &f,
        "{\"audio_filepath\": \"a.wav\", \"duration\": 1.2, \"text\": \"the cat sat\", \"pred_text\": \"the cat sad\"}\n\
         {\"audio_filepath\": \"b.wav\", \"duration\": 0.8, \"text\": \"on mats\", \"pred_text\": \"on mats\"}\n",
    )
    .unwrap();
    let g = &json(&["--task", "asr", f.to_str().unwrap()])["runs"][0]["files"][0]["groups"][0];
    assert_eq!(g["records"], 2);
    assert_eq!(g["wer"]["one_best"]["rate"], 20.0, "{g}");
}

/// `--ref FILE` pairs line k of a reference file with record k, as jiwer and sacrebleu take
/// their references: the scores are those of the same pairs written as records with
/// `output`; a file of another length is an error, and a record's own reference that it
/// replaces is said.
/// Runs `neko eval ARGS`, expecting exit 2 and `says` on stderr.
fn fails_saying(args: &[&str], says: &str) {
    let o = run(args, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(says), "{}", stderr(&o));
}

/// Writes `text` to `dir/name` and gives its path as an argument.
fn write_in(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// sclite `trn` and Kaldi `text` references pair by utterance id, so records in another
/// order meet their own; a trn file of 1-bests gives its records those ids; and an utterance
/// with no partner on either side is an error, not a rate over fewer words.
#[test]
fn trn_and_kaldi_references_pair_by_utterance_id() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| write_in(dir.path(), name, text);
    let embedded = write(
        "records.jsonl",
        "{\"id\": \"u2\", \"input\": [\"it's raining\"], \"output\": \"it is raining\"}\n\
         {\"id\": \"u1\", \"input\": [\"the cat sad on the mat\"], \"output\": \"the cat sat on the mat\"}\n",
    );
    let bare = write(
        "bare.jsonl",
        "{\"id\": \"u2\", \"input\": [\"it's raining\"]}\n\
         {\"id\": \"u1\", \"input\": [\"the cat sad on the mat\"]}\n",
    );
    let hyps_trn = write(
        "hyps.trn",
        "the cat sad on the mat (u1)\nit's raining (u2)\n",
    );
    let ref_trn = write(
        "ref.trn",
        "the cat sat on the mat (u1)\nit is raining (u2)\n",
    );
    let kaldi = write("text", "u1 the cat sat on the mat\nu2 it is raining\n");
    // One id mistyped in REF: its record has no reference (exit 2), not the whole file paired
    // by position, each record against another's reference.
    let typo = write("typo.text", "u1 the cat sat on the mat\nu3 it is raining\n");
    fails_saying(
        &["--ref", &typo, &bare],
        "id \"u2\" has no reference in --ref",
    );
    let group = |r: &Value| r["runs"][0]["files"][0]["groups"][0].clone();
    let want = group(&json(&["--task", "asr", &embedded]));
    assert!(
        want["wer"]["one_best"]["rate"].as_f64() > Some(0.0),
        "{want}"
    );
    for (refs, hyps, says) in [
        (&ref_trn, &bare, "sclite trn, paired by the utterance id"),
        (
            &ref_trn,
            &hyps_trn,
            "sclite trn, paired by the utterance id",
        ),
        (&kaldi, &bare, "Kaldi text, paired by the utterance id"),
        (&kaldi, &hyps_trn, "Kaldi text, paired by the utterance id"),
    ] {
        let o = run(&["--json", "--task", "asr", "--ref", refs, hyps], &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
        let got = group(&serde_json::from_slice(&o.stdout).unwrap());
        for metric in ["wer", "cer"] {
            let (a, b) = (
                without_oracles(&got[metric]),
                without_oracles(&want[metric]),
            );
            assert_eq!(a, b, "{refs} {hyps} {metric}");
        }
    }
    // Kaldi text as hypotheses (read as plain text, the id a first word): its first words are
    // the references' ids, so they are its ids, in any order, not words to score.
    let hyps_kaldi = write("hyps.text", "u2 it's raining\nu1 the cat sad on the mat\n");
    for refs in [&kaldi, &ref_trn] {
        let o = run(
            &["--json", "--task", "asr", "--ref", refs, &hyps_kaldi],
            &[],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("hyps.text: read as Kaldi text"),
            "{}",
            stderr(&o)
        );
        let got = group(&serde_json::from_slice(&o.stdout).unwrap());
        assert_eq!(
            without_oracles(&got["wer"]),
            without_oracles(&want["wer"]),
            "{refs}"
        );
    }
    // Without the ids' evidence, plain lines are text: the same words with other first words
    // pair by position, and Kaldi references against them are scored whole, with a warning.
    let plain_kaldi = write("plain.text", "v1 the cat sad on the mat\nv2 it's raining\n");
    let o = run(
        &["--json", "--task", "asr", "--ref", &kaldi, &plain_kaldi],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("read as Kaldi text"), "{}", stderr(&o));
    assert!(stderr(&o).contains("scored as words"), "{}", stderr(&o));
    let got = group(&serde_json::from_slice(&o.stdout).unwrap());
    assert!(got["wer"]["one_best"]["rate"].as_f64() > want["wer"]["one_best"]["rate"].as_f64());
    // Plain 1-bests (no ids) in the trn file's order pair by position, the ids set aside.
    let plain = write("hyps.txt", "the cat sad on the mat\nit's raining\n");
    let o = run(&["--json", "--task", "asr", "--ref", &ref_trn, &plain], &[]);
    assert!(stderr(&o).contains("paired by position"), "{}", stderr(&o));
    let got = group(&serde_json::from_slice(&o.stdout).unwrap());
    assert_eq!(without_oracles(&got["wer"]), without_oracles(&want["wer"]));
    // ... and a trn's blank lines are no references there (a line short, the pairs shifted).
    let blank = write(
        "blank.trn",
        "the cat sat on the mat (u1)\n\nit is raining (u2)\n\n",
    );
    let o = run(&["--json", "--task", "asr", "--ref", &blank, &plain], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let got = group(&serde_json::from_slice(&o.stdout).unwrap());
    assert_eq!(without_oracles(&got["wer"]), without_oracles(&want["wer"]));
    // Records numbered 0, 1, ... meet a trn of those utterance ids by id, in the trn's order
    // (a sort by id as text: 0, 1, 10, 11, 2, ...), not by position.
    let words = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven",
    ];
    let numbered: String = (words.iter().enumerate())
        .map(|(i, w)| format!("{{\"id\": {i}, \"input\": [\"{w} apple\"]}}\n"))
        .collect();
    let numbered = write("numbered.jsonl", &numbered);
    let mut by_text: Vec<usize> = (0..words.len()).collect();
    by_text.sort_by_key(|i| i.to_string());
    let sorted: String = (by_text.iter())
        .map(|&i| format!("{} apple ({i})\n", words[i]))
        .collect();
    let sorted = write("sorted.trn", &sorted);
    let o = run(
        &["--json", "--task", "asr", "--ref", &sorted, &numbered],
        &[],
    );
    assert!(
        stderr(&o).contains("paired by the utterance id"),
        "{}",
        stderr(&o)
    );
    let got = group(&serde_json::from_slice(&o.stdout).unwrap());
    assert_eq!(got["wer"]["one_best"]["rate"].as_f64(), Some(0.0), "{got}");
    // A record without a reference, or a reference without a record: exit 2, named.
    let extra = write(
        "extra.trn",
        "the cat sad on the mat (u1)\nhi (u3)\nit's raining (u2)\n",
    );
    fails_saying(
        &["--ref", &ref_trn, &extra],
        "line 2: id \"u3\" has no reference",
    );
    let short = write("short.trn", "it's raining (u2)\n");
    let o = run(&["--ref", &ref_trn, &short], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("1 reference(s) that no record of") && stderr(&o).contains("\"u1\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn references_from_a_file_of_their_own_pair_by_position() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| write_in(dir.path(), name, text);
    let refs = write("refs.txt", "the cat sat on the mat\n\nit is raining\n");
    let hyps = write("hyps.txt", "the cat sad on the mat\nuh\nit's raining\n");
    let records = write(
        "records.jsonl",
        "{\"input\": [\"the cat sad on the mat\"], \"output\": \"the cat sat on the mat\"}\n\
         {\"input\": [\"uh\"], \"output\": \"\"}\n\
         {\"input\": [\"it's raining\"], \"output\": \"it is raining\"}\n",
    );
    for task in ["asr", "mt"] {
        let group = |r: &Value| r["runs"][0]["files"][0]["groups"][0].clone();
        let by_file = group(&json(&["--task", task, "--ref", &refs, &hyps]));
        let embedded = group(&json(&["--task", task, &records]));
        assert_eq!(by_file["records"], 3, "{by_file}");
        assert!(
            by_file["wer"]["one_best"]["rate"].as_f64() > Some(0.0),
            "{by_file}"
        );
        for metric in ["wer", "cer", "bleu", "chrf"] {
            let (a, b) = (
                without_oracles(&by_file[metric]),
                without_oracles(&embedded[metric]),
            );
            assert_eq!(a, b, "{task} {metric}");
        }
        // Plain lines are 1-bests: no oracle of one hypothesis (a record's list of one is an
        // N-best, whose oracle is its only hypothesis).
        assert!(by_file["wer"]["oracle_nbest"].is_null(), "{by_file}");
        assert!(!embedded["wer"]["oracle_nbest"].is_null(), "{embedded}");
    }
    let short = write("short.txt", "the cat sad on the mat\n");
    fails_saying(&["--ref", &refs, &short], "has 1 records and --ref");
    let o = run(&["--task", "asr", "--ref", &refs, &records], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(!stderr(&o).contains("replaced"), "{}", stderr(&o));
    let other = write("other.txt", "the cat sat on the mat\n\nit was raining\n");
    let o = run(&["--task", "asr", "--ref", &other, &records], &[]);
    assert!(
        stderr(&o).contains("1 record(s) had a reference"),
        "{}",
        stderr(&o)
    );
}

/// `--ref` lines lose their trailing whitespace, as sacrebleu's command line cuts its lines:
/// under `--chrf-whitespace` a padded reference file scores as an unpadded one (it scored
/// 60.06 where sacrebleu says 68.9 for `  a b` / `c d ` against `a b` / `c d`).
#[test]
fn reference_lines_lose_trailing_whitespace_as_sacrebleu_cuts_them() {
    let dir = tempfile::tempdir().unwrap();
    let hyps = write_in(dir.path(), "hyp.txt", "a b\nc d\n");
    let padded = write_in(dir.path(), "padded.txt", "a b  \nc d \t\n");
    let plain = write_in(dir.path(), "plain.txt", "a b\nc d\n");
    let chrf = |reference: &str| {
        let report = json(&[
            "--task",
            "mt",
            "--chrf-whitespace",
            "--ref",
            reference,
            &hyps,
        ]);
        f64_of(&report["runs"][0]["files"][0]["groups"][0]["chrf"]["one_best"]["score"])
    };
    assert_eq!(chrf(&padded), chrf(&plain));
    assert!((chrf(&plain) - 100.0).abs() < 1e-9, "{}", chrf(&plain));
}

/// Standard input is read once: `-` twice among the files, `--ref`, `--baseline` and
/// `--against` is refused as such (the second read was empty, and the message blamed the data).
#[test]
fn standard_input_given_twice_is_refused() {
    fails_saying(&["-", "-"], "standard input can be read once");
    fails_saying(&["--against", "-", "-"], "standard input can be read once");
}

/// A gate compares like with like: a baseline scored against another number of references
/// per record is refused (a second `--ref` moves BLEU by points); a file without predictions
/// against a baseline of corrected output fails (its 1-best was compared with the baseline's
/// corrected scores, and a skipped correction step passed); the baseline's normalisers this
/// run does not score with are named as unchecked.
#[test]
fn baseline_gate_compares_like_with_like() {
    let dir = tempfile::tempdir().unwrap();
    let mt = records("mt.jsonl");
    let mut two_refs = json(&[&mt]);
    for sig in two_refs["runs"][0]["signatures"].as_array_mut().unwrap() {
        *sig = sig.as_str().unwrap().replace("nrefs:1", "nrefs:2").into();
    }
    let base = temp_json(dir.path(), "two.json", &two_refs);
    fails_saying(
        &["--baseline", base.to_str().unwrap(), &mt],
        "nrefs:1 per record, its baseline against nrefs:2",
    );
    // A file added beside it changes the run's counts, not the baseline file's: the new file
    // is listed, the old one compared.
    let multi = records("mt-multi.jsonl");
    let same = temp_json(dir.path(), "mt.json", &json(&[&mt]));
    let o = run(&["--baseline", same.to_str().unwrap(), &mt, &multi], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("nrefs:1-3"), "{}", stdout(&o));
    let asr = records("asr.jsonl");

    let corrected = temp_json(dir.path(), "corrected.json", &json(&[&asr]));
    let bare = dir.path().join("asr.jsonl");
    let lines: String = (std::fs::read_to_string(&asr).unwrap().lines())
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(mut v) => {
                v.as_object_mut().unwrap().remove("prediction");
                format!("{v}\n")
            }
            // The fixture's unreadable line stays as it is.
            Err(_) => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&bare, lines).unwrap();
    let o = run(
        &[
            "--baseline",
            corrected.to_str().unwrap(),
            "--max-regression",
            "100",
            bare.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("predictions"), "{}", stderr(&o));

    let both = json(&["--normalizer", "none,h2t", &asr]);
    let both = temp_json(dir.path(), "both.json", &both);
    let o = run(
        &[
            "--baseline",
            both.to_str().unwrap(),
            "--normalizer",
            "none",
            &asr,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("normaliser(s) h2t") && stderr(&o).contains("were not checked"),
        "{}",
        stderr(&o)
    );
}

/// The sample counts of tests that do not run are named on stderr, not silently dropped (a
/// user who types `--paired-ar-n 5000` for the test gets no p-values).
#[test]
fn sample_counts_without_their_test_are_said_to_do_nothing() {
    let mt = records("mt.jsonl");
    let o = run(&["--paired-ar-n", "500", "--paired-bs-n", "50", &mt], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("--paired-ar-n has no effect without --paired-ar"),
        "{err}"
    );
    assert!(err.contains("--paired-bs-n has no effect without"), "{err}");
    let o = run(&["--paired-bs", "--paired-bs-n", "50", &mt], &[]);
    assert!(!stderr(&o).contains("no effect"), "{}", stderr(&o));
}

/// Numeric ids that happen to equal the records' positions are still ids (neko correct writes
/// `"id": N` for input without ids): out of order against BASE, they are refused, not paired
/// by position.
#[test]
fn against_refuses_numeric_ids_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let line = |id: u32, text: &str| {
        format!("{{\"id\": {id}, \"task\": \"asr\", \"input\": [\"{text}\"], \"prediction\": \"{text}\"}}\n")
    };
    let base = write_in(dir.path(), "base.jsonl", &(line(1, "b c") + &line(0, "a")));
    let ours = write_in(dir.path(), "ours.jsonl", &(line(0, "a") + &line(1, "b c")));
    let refs = write_in(dir.path(), "refs.txt", "a\nb c\n");
    fails_saying(
        &["--ref", &refs, "--against", &base, &ours],
        "id 1 in --against, 0 here",
    );
}

//! `neko correct` and `neko info` end to end, and reading every record variant.

use neko::prompt::Template;
use neko::record;
use neko::Task;
use serde_json::Value;

use crate::util::{
    copy_fixture, correct_signature, fixture, json_lines, neko, ok, refused, run_with_stdin,
    shared_data, tiny_correct_variants, undocumented_signature_fields,
};

#[test]
fn every_hyporadise_variant_parses() {
    let entries = record::read_path(&fixture("records/variants.json")).unwrap();
    let recs: Vec<_> = entries.iter().map(|e| e.record.as_ref().unwrap()).collect();
    assert_eq!(recs.len(), 4);
    assert!(recs
        .iter()
        .all(|r| r.hypotheses.len() == 5 && r.reference.is_some()));
    assert_eq!(recs[1].id, Value::from("q0001"));
    assert_eq!(recs[1].scores.as_ref().unwrap()[1], -2.5);
    assert_eq!(recs[2].scores.as_ref().unwrap().len(), 5);
    assert!(recs[3].instruction.is_some());
    assert_eq!(entries[3].line, 19);
}

/// A prompt file is signed by its name and text, not the path as typed: `./p.txt` and the same
/// file by its full path resume and merge alike (a resume was refused for `./`).
#[test]
fn a_prompt_file_signs_by_its_name_not_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("myasr.txt");
    std::fs::copy(crate::util::repo().join("configs/prompts/asr.txt"), &file).unwrap();
    let dotted = dir.path().join(".").join("myasr.txt");
    let (a, b) = (
        Template::from_file(&file).unwrap(),
        Template::from_file(&dotted).unwrap(),
    );
    assert_eq!(
        (a.origin.as_str(), b.origin.as_str()),
        ("myasr.txt", "myasr.txt")
    );
}

#[test]
fn asr_prompt_reproduces_hyporadise_input1_and_input2() {
    let text = std::fs::read_to_string(fixture("records/variants.json")).unwrap();
    let raw: Vec<Value> = serde_json::from_str(&text).unwrap();
    let rec = record::read_path(&fixture("records/variants.json")).unwrap()[0]
        .record
        .clone()
        .unwrap();
    let prompt = Template::builtin(Task::Asr).render(&rec.hypotheses);
    let (i1, i2) = (
        raw[0]["input1"].as_str().unwrap(),
        raw[0]["input2"].as_str().unwrap(),
    );
    assert!(prompt.contains(&format!(
        "### Best-hypothesis:\n{i1}\n\n### Other-hypothesis:\n{i2}\n\n### Response:\n"
    )));
}

/// On the real files: every record of every test set reads, and the prompt built from
/// `input` equals the one Hypo2Trans builds from `input1`/`input2`, except on the few records
/// where the published `input1`/`input2` disagree with `input` itself (`<unk>` vs `<UNK>`).
#[test]
fn shared_hyporadise_files_read_and_prompt_like_hypo2trans() {
    let Some(dir) = shared_data("hyporadise/test") else {
        return;
    };
    let want = [
        ("atis", 809),
        ("chime4", 1320),
        ("cv", 2000),
        ("lrs2", 2259),
        ("ls_clean", 2620),
        ("swbd", 2000),
        ("wsj_score", 836),
    ];
    let template = Template::builtin(Task::Asr);
    let mut quirks = 0;
    for (set, n) in want {
        let path = dir.join(format!("test_{set}.json"));
        let entries = record::read_path(&path).unwrap();
        assert_eq!(entries.len(), n, "{set}");
        let raw: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for (e, r) in entries.iter().zip(&raw) {
            let rec = e
                .record
                .as_ref()
                .unwrap_or_else(|err| panic!("{set} line {}: {err}", e.line));
            assert_eq!(rec.hypotheses.len(), 5);
            if let (Some(i1), Some(i2)) = (r["input1"].as_str(), r["input2"].as_str()) {
                let p = template.render(&rec.hypotheses);
                quirks +=
                    usize::from(!p.contains(&format!("\n{i1}\n\n### Other-hypothesis:\n{i2}\n\n")));
            }
        }
    }
    assert!(quirks <= 3, "{quirks} prompts differ from Hypo2Trans's");
}

#[test]
fn correct_writes_one_record_per_input_in_order() {
    let out = neko()
        .args(["correct", "--task", "asr", "--model"])
        .arg(fixture("tiny-mixtral"))
        .arg(fixture("records/shapes.jsonl"))
        .arg(fixture("records/variants.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = json_lines(&out.stdout);
    assert_eq!(recs.len(), 9);
    let ids: Vec<Value> = recs.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(
        &ids[..5],
        &[
            Value::from("w1"),
            Value::from(7),
            Value::from(2),
            Value::from(3),
            Value::from("o1")
        ]
    );
    assert_eq!(ids[6], Value::from("q0001"));
    // A record's own task wins over --task; the reference passes through; best is the 1-best.
    assert_eq!(recs[4]["task"], "ocr");
    assert_eq!(recs[0]["task"], "asr");
    assert_eq!(recs[1]["output"], "i was here first");
    assert_eq!(recs[1]["best"], "i was her first");
    assert!(recs
        .iter()
        .all(|r| r["prediction"].is_string() && r.get("error").is_none()));
}

#[test]
fn correct_batched_equals_unbatched_end_to_end() {
    let run = |batch: &str| {
        let out = neko()
            .args([
                "correct",
                "--task",
                "asr",
                "--batch-size",
                batch,
                "--max-new-tokens",
                "12",
                "--model",
            ])
            .arg(fixture("tiny-llama"))
            .arg(fixture("records/variants.json"))
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    };
    assert_eq!(run("1"), run("4"));
    // A batch size of any size is a large one (the record window overflowed: exit 101).
    assert_eq!(run("1"), run("3000000000000000000"));
}

/// A record whose many hypotheses fill tiny-llama's 512 positions (a small answer bound)
/// batched with records of one long hypothesis (a large bound): the batch must not run the
/// long prompt past the context while the others still write. Each record is answered as if
/// alone.
#[test]
fn a_batch_keeps_every_row_within_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let many: Vec<String> = (0..60).map(|i| format!("w{i} x")).collect();
    let long: Vec<String> = (0..200).map(|i| format!("word{i}")).collect();
    let mut lines = vec![serde_json::json!({"id": "many", "input": many}).to_string()];
    for k in 0..4 {
        let hyp = format!("{} {k}", long.join(" "));
        lines.push(serde_json::json!({"id": k, "input": [hyp]}).to_string());
    }
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let run = |batch: &str| {
        let out = neko()
            .args([
                "correct",
                "--task",
                "asr",
                "--no-guard",
                "--batch-size",
                batch,
            ])
            .arg("--model")
            .arg(fixture("tiny-llama"))
            .arg(&input)
            .output()
            .unwrap();
        assert!(out.status.success());
        json_lines(&out.stdout)
    };
    let together = run("8");
    assert_eq!(together.len(), 5);
    for r in &together {
        assert!(r.get("error").is_none(), "{r}");
    }
    assert_eq!(together, run("1"));
}

#[test]
fn correct_reads_stdin_and_writes_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.jsonl");
    let mut cmd = neko();
    cmd.args(["correct", "--task", "gec", "--routing", "task", "-o"])
        .arg(&dest)
        .arg("--model")
        .arg(fixture("tiny-mixtral"))
        .arg("-");
    let out = run_with_stdin(
        cmd,
        b"\"she go to school\"\n{\"input\": [\"they was here\"]}\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let recs = json_lines(&std::fs::read(&dest).unwrap());
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["best"], "she go to school");
    // The temporary file was renamed: only the output and its signature are left.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["out.jsonl", "out.jsonl.sig"]);
}

/// A quantised run's answers can depend on the thread count and on candle's x86 kernel tier
/// (measured on a Q4_1 GGUF), so on x86 it signs both; a full-precision run signs neither.
#[test]
fn a_quantised_run_signs_its_threads_and_kernels() {
    let signature = |flags: &[&str]| correct_signature(&fixture("tiny-llama"), flags);
    let full = signature(&["--threads", "2"]);
    assert!(
        !full.contains("|threads:") && !full.contains("|kernels:"),
        "{full}"
    );
    let one = signature(&["--quant", "q8_0", "--threads", "1"]);
    let two = signature(&["--quant", "q8_0", "--threads", "2"]);
    if cfg!(target_arch = "x86_64") {
        assert!(one.contains("|quant:q8_0|threads:1|kernels:"), "{one}");
        assert!(two.contains("|quant:q8_0|threads:2|kernels:"), "{two}");
        let tier = one
            .split("|kernels:")
            .nth(1)
            .and_then(|t| t.split('|').next());
        assert!(
            tier.is_some_and(|t| ["avx512vnni", "avxvnni", "avx2", "none"].contains(&t)),
            "{one}"
        );
    } else {
        assert_eq!(one, two);
    }
}

/// Every field a run's signature can carry is explained in docs/eval.md: the default run's,
/// and those `--quant`, task routing and a guard switched off add or change.
#[test]
fn every_signature_field_is_documented() {
    let runs: [(&str, &[&str]); 3] = [
        ("tiny-llama", &[]),
        ("tiny-llama", &["--quant", "q8_0", "--no-guard"]),
        ("tiny-mixtral", &["--routing", "task", "--style", "follow"]),
    ];
    for (model, flags) in runs {
        let line = correct_signature(&fixture(model), flags);
        let quant = flags.contains(&"--quant");
        assert_eq!(line.contains("|quant:q8_0|"), quant, "{line}");
        assert_eq!(
            undocumented_signature_fields(&line),
            Vec::<String>::new(),
            "{line}"
        );
    }
    // The check sees a field the table lacks.
    let new = undocumented_signature_fields("correct|model:fp-1|brand_new:x|stop:[\"|\"]|neko:0");
    assert_eq!(new, ["brand_new"]);
}

#[test]
fn missing_task_is_a_clear_error() {
    let out = neko()
        .args(["correct", "--model"])
        .arg(fixture("tiny-llama"))
        .arg(fixture("records/variants.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--task"));
}

/// A record's own `task` wins over `--task`, and stderr says so.
#[test]
fn a_records_own_task_wins_over_the_flag_and_is_noted() {
    let mut cmd = neko();
    cmd.args(["correct", "--task", "ocr", "--model"])
        .arg(fixture("tiny-llama"))
        .arg("-");
    let out = run_with_stdin(
        cmd,
        b"{\"task\": \"asr\", \"input\": [\"a b\"]}\n{\"input\": [\"c\"]}\n",
    );
    let recs = json_lines(&out.stdout);
    assert_eq!(
        (recs[0]["task"].as_str(), recs[1]["task"].as_str()),
        (Some("asr"), Some("ocr"))
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "1 record(s) carry their own `task` (the first: asr), which wins over --task ocr"
        ),
        "{err}"
    );
}

/// An input whose records all fail to read needs no task: each still gets its error line
/// under its id, and a run without --task is not refused for want of one.
#[test]
fn an_input_of_failed_records_alone_gets_its_error_lines() {
    let input = "{\"id\": \"e\", \"task\": \"asr\", \"input\": []}\n{\"id\": \"g\", \"error\": \"upstream failed\"}\n";
    let mut cmd = neko();
    cmd.args(["correct", "--model"])
        .arg(fixture("tiny-llama"))
        .arg("-");
    let out = run_with_stdin(cmd, input.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = json_lines(&out.stdout);
    let ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["e", "g"]);
    assert!(recs.iter().all(|r| r["error"]["message"].is_string()));
    assert_eq!(recs[1]["error"]["message"], "upstream failed");
}

#[test]
fn task_routing_needs_a_task_map() {
    // A Mixtral without the task in its map is refused, and a dense model (no experts to force).
    let dir = tempfile::tempdir().unwrap();
    copy_fixture("tiny-mixtral", dir.path());
    let cfg = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"task_experts\"", "\"unused_map\"");
    std::fs::write(&cfg, text).unwrap();
    let out = neko()
        .args(["correct", "--task", "asr", "--routing", "task", "--model"])
        .arg(dir.path())
        .arg(fixture("records/variants.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("task_experts"));
    let out = neko()
        .args(["correct", "--task", "asr", "--routing", "task", "--model"])
        .arg(fixture("tiny-llama"))
        .arg(fixture("records/variants.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the model is dense"));
}

#[test]
fn bad_records_get_an_error_and_the_run_goes_on() {
    let mut cmd = neko();
    cmd.args(["correct", "--task", "asr", "--model"])
        .arg(fixture("tiny-llama"));
    let out = run_with_stdin(
        cmd,
        b"{\"input\": []}\n{\"input\": [\"ok then\"]}\n{broken\n{\"id\": \"w9\", \"task\": \"gec\", \"input\": [1]}\n\
          {\"id\": \"s\", \"input\": [\"a b\", \"a c\"], \"am_score\": [-0.1, \"x\"], \"source\": 42}\n",
    );
    assert!(out.status.success());
    let recs = json_lines(&out.stdout);
    assert_eq!(recs.len(), 5);
    // A bad field beside readable hypotheses fails the record, which keeps its 1-best.
    assert_eq!(recs[4]["error"]["field"], "am_score");
    assert_eq!(
        (&recs[4]["prediction"], &recs[4]["best"]),
        (&"a b".into(), &"a b".into())
    );
    assert!(recs[0]["prediction"].is_null());
    // A record that cannot be read keeps the id and task it gave, so its line still joins; one
    // that gave no task has the task it would have been corrected as (--task).
    assert_eq!(recs[3]["id"], "w9");
    assert_eq!(recs[3]["task"], "gec");
    assert_eq!(recs[0]["task"], "asr");
    assert_eq!(recs[2]["task"], "asr");
    assert_eq!(recs[3]["error"]["field"], "input[0]");
    assert_eq!(recs[0]["id"], 0);
    assert_eq!(recs[0]["error"]["field"], "input");
    assert_eq!(recs[0]["error"]["line"], 1);
    assert_eq!(recs[0]["error"]["file"], "<stdin>");
    assert!(recs[1].get("error").is_none());
    assert!(recs[2]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("broken JSON"));
}

/// `--dump-prompts` writes the prompts of the records it can correct and says how many it
/// skipped, whose ids are then missing from its output.
#[test]
fn dump_prompts_says_what_it_skipped() {
    let mut cmd = neko();
    cmd.args(["correct", "--task", "asr", "--dump-prompts", "--model"])
        .arg(fixture("tiny-llama"));
    let out = run_with_stdin(
        cmd,
        b"{\"id\": \"ok\", \"input\": [\"fine\"]}\n{\"id\": \"bad\", \"input\": []}\n",
    );
    assert!(out.status.success());
    let recs = json_lines(&out.stdout);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["id"], "ok");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("skipped 1 record(s)"), "{err}");
}

/// Under `--shard`, dumped prompts carry `index` and `of` as corrected lines do (default ids
/// repeat across files); a switch's environment twin set to `0` is off, not a conflicting
/// flag, and an empty twin is unset (`NEKO_ENDPOINT=` is no endpoint given).
#[test]
fn dump_prompts_under_shard_and_switch_twins_set_off() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("records/shapes.jsonl");
    let out = ok(neko()
        .args([
            "correct",
            "--task",
            "asr",
            "--dump-prompts",
            "--shard",
            "1/2",
        ])
        .arg("--model")
        .arg(fixture("tiny-llama"))
        .arg(&input));
    let lines = json_lines(&out.stdout);
    assert!(!lines.is_empty());
    for l in &lines {
        assert_eq!(l["index"].as_u64().unwrap() % 2, 1, "{l}");
        assert!(l["of"].as_u64().unwrap() > 1, "{l}");
    }
    let dest = dir.path().join("out.jsonl");
    ok(tiny_asr(&[])
        .arg("-o")
        .arg(&dest)
        .arg(&input)
        .env("NEKO_DUMP_PROMPTS", "0")
        .env("NEKO_ENDPOINT", "")
        .env("NEKO_SHARD", ""));
    assert!(dest.is_file());
    let err = refused(
        neko()
            .args(["correct", "--task", "asr", "--dump-prompts", "--model"])
            .arg(fixture("tiny-llama"))
            .arg("-o")
            .arg(dir.path().join("p.jsonl"))
            .arg(&input),
    );
    assert!(err.contains("not with -o or --resume"), "{err}");
}

/// `neko correct --task asr` on the tiny model, two answer tokens, with `flags`.
fn tiny_asr(flags: &[&str]) -> std::process::Command {
    let mut cmd = neko();
    cmd.args(["correct", "--task", "asr", "--max-new-tokens", "2"])
        .args(flags)
        .arg("--model")
        .arg(fixture("tiny-llama"));
    cmd
}

/// Flags that do nothing in the run asked for are named: guard flags under `--no-guard`,
/// served-model flags with the in-process model.
#[test]
fn flags_without_effect_are_named() {
    let out = ok(tiny_asr(&[
        "--no-guard",
        "--guard-margin",
        "2",
        "--guard-max-edit",
        "0.3",
    ])
    .args(["--served-model", "m", "--concurrency", "3"])
    .arg(fixture("records/shapes.jsonl")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--guard-max-edit, --guard-margin have no effect under --no-guard"),
        "{err}"
    );
    assert!(
        err.contains("--served-model, --concurrency have no effect with the in-process model"),
        "{err}"
    );
    let out = ok(tiny_asr(&[]).arg(fixture("records/shapes.jsonl")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("no effect"), "{err}");
}

/// A record that carries an earlier step's error beside its hypotheses is corrected, and the
/// error is kept as a warning rather than lost.
#[test]
fn an_earlier_error_beside_hypotheses_becomes_a_warning() {
    let mut cmd = neko();
    cmd.args(["correct", "--task", "asr", "--model"])
        .arg(fixture("tiny-llama"));
    let input = b"{\"id\": \"e\", \"error\": {\"message\": \"bad audio\"}, \"input\": [\"x y\"]}\n";
    let out = run_with_stdin(cmd, input);
    assert!(out.status.success());
    let recs = json_lines(&out.stdout);
    assert!(recs[0].get("error").is_none(), "{}", recs[0]);
    assert_eq!(recs[0]["warning"], "an earlier step reported: bad audio");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 with a warning"), "{err}");
}

/// Switches read from the environment take what shells and CI files write: 1/0, yes/no.
#[test]
fn switches_read_from_the_environment_take_1_and_0() {
    for (value, guard) in [
        ("1", "guard:off"),
        ("yes", "guard:off"),
        ("0", "guard:asr:"),
    ] {
        let mut cmd = neko();
        cmd.args(["correct", "--task", "asr", "--model"])
            .arg(fixture("tiny-llama"))
            .env("NEKO_NO_GUARD", value)
            .env("NEKO_STRICT", "0");
        let out = run_with_stdin(cmd, b"{\"id\": \"a\", \"input\": [\"fine\"]}\n");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{value}: {err}");
        assert!(err.contains(guard), "{value}: {err}");
    }
}

/// What `scripts/whisper_nbest.py` wrote for three files (Whisper base on flite speech; one file
/// was not audio, one was 37 s long and cut at Whisper's segments): every line comes back under
/// its id, the unreadable file's with the recogniser's own error.
#[test]
fn every_whisper_nbest_line_comes_back_under_its_id() {
    let input = fixture("records/whisper_nbest.jsonl");
    let records = record::read_path(&input).unwrap();
    let first = records[0].record.as_ref().unwrap();
    assert_eq!(first.hypotheses.len(), 5);
    assert_eq!(first.scores.as_ref().map(Vec::len), Some(5));
    let out = neko()
        .args(["correct", "--task", "asr", "--model"])
        .arg(fixture("tiny-llama"))
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success());
    let recs = json_lines(&out.stdout);
    let ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a1.wav", "bad.wav", "long.wav#1", "long.wav#2"]);
    assert_eq!(
        recs[1]["error"]["message"],
        "[Errno 1094995529] Invalid data found when processing input: 'bad.wav'"
    );
    assert_eq!(recs[1]["error"]["line"], 2);
    assert!(recs[2]["prediction"].is_string() && recs[2].get("error").is_none());
    // The recogniser's name comes along, so `neko eval` groups the output as it groups the input.
    assert_eq!(recs[0]["source"], "whisper:wb");
    assert!(recs[1].get("source").is_none());
    // A segment of long audio keeps its timing.
    assert_eq!(
        (recs[3]["start"].as_f64(), recs[3]["end"].as_f64()),
        (Some(6.5), Some(12.7))
    );
    assert!(recs[0].get("start").is_none());
}

/// An empty or blank input writes nothing and succeeds, and says so on stderr: an upstream
/// step that wrote nothing does not pass unseen.
#[test]
fn an_empty_input_is_said() {
    for input in [&b""[..], b"\n  \n"] {
        let mut cmd = neko();
        cmd.args(["correct", "--task", "asr", "--model"])
            .arg(fixture("tiny-llama"))
            .arg("-");
        let out = run_with_stdin(cmd, input);
        assert!(out.status.success());
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("<stdin>: no records"), "{err}");
    }
}

/// `neko correct ARGS -` with tiny-llama on `input`, expecting success: the output records.
fn correct_stdin(args: &[&str], input: &[u8]) -> Vec<Value> {
    let mut cmd = neko();
    cmd.arg("correct")
        .args(args)
        .arg("--model")
        .arg(fixture("tiny-llama"))
        .arg("-");
    let out = run_with_stdin(cmd, input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&out.stdout)
}

/// A NeMo manifest (Canary's or Parakeet's transcripts in `pred_text`, references in `text`)
/// is corrected from its transcript, and its reference travels on as `output`, so `neko eval`
/// scores the result; its `audio_filepath`, the utterance's identity there, travels on too.
#[test]
fn a_nemo_manifest_is_corrected_from_its_transcript() {
    let manifest = b"{\"audio_filepath\": \"a.wav\", \"duration\": 1.2, \"text\": \"the cat sat\", \"pred_text\": \"the cat sad\"}\n\
        {\"audio_filepath\": \"b.wav\", \"pred_text\": \"x\", \"task\": \"speech\"}\n\
        {\"audio_filepath\": \"c.wav\", \"pred_text\": 5}\n";
    let recs = correct_stdin(&["--task", "asr"], manifest);
    assert_eq!(recs.len(), 3);
    // One that cannot be read keeps it as well.
    assert!(recs[2]["error"].is_object(), "{}", recs[2]);
    assert_eq!(recs[2]["audio_filepath"], "c.wav");
    assert_eq!(recs[0]["best"], "the cat sad");
    assert_eq!(recs[0]["output"], "the cat sat");
    assert_eq!(recs[0]["audio_filepath"], "a.wav");
    assert!(recs[0]["prediction"].is_string() && recs[0].get("error").is_none());
    assert!(recs[0].get("duration").is_none());
    // A record that fails keeps it as well.
    assert!(recs[1]["error"].is_object(), "{}", recs[1]);
    assert_eq!(recs[1]["audio_filepath"], "b.wav");
}

/// A multi-reference record's references travel on as the list they came as, so that `neko
/// eval` scores the output against all of them.
#[test]
fn a_list_of_references_travels_on_as_a_list() {
    let input = b"{\"id\": 1, \"input\": [\"the cat sad\"], \"output\": [\"the cat sat\", \"a cat sat\"]}\n\
        {\"id\": 2, \"input\": [\"one\"], \"output\": \"won\"}\n";
    let recs = correct_stdin(&["--task", "asr"], input);
    assert_eq!(
        recs[0]["output"],
        serde_json::json!(["the cat sat", "a cat sat"])
    );
    assert_eq!(recs[1]["output"], "won");
}

/// An M2 file (CoNLL-2014, BEA-2019) is corrected without `--task`, a record per sentence,
/// its annotators' corrections travelling on as `output` (a text with one annotator); a
/// broken edit is an error line with the source as its prediction, and the sentences after it
/// are corrected.
#[test]
fn an_m2_file_is_corrected_sentence_by_sentence() {
    let m2 = b"S This are a sentence .\nA 1 2|||R:VERB:SVA|||is|||REQUIRED|||-NONE-|||0\n\n\
        S Broken .\nA 0 7|||R:X|||y|||REQUIRED|||-NONE-|||0\n\n\
        S I has a cat .\nA 1 2|||R:VERB:SVA|||have|||REQUIRED|||-NONE-|||0\n";
    let recs = correct_stdin(&[], m2);
    let got: Vec<Value> = (recs.iter())
        .map(|r| serde_json::json!([r["id"], r["task"], r["best"], r["output"]]))
        .collect();
    let want = serde_json::json!([
        [0, "gec", "This are a sentence .", "This is a sentence ."],
        [1, "gec", "Broken .", null],
        [2, "gec", "I has a cat .", "I have a cat ."]
    ]);
    assert_eq!(Value::from(got), want);
    assert_eq!(recs[1]["prediction"], "Broken .");
    assert_eq!(recs[1]["error"]["line"], 4, "{}", recs[1]);
    assert!(recs[1]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("does not fit"));
}

/// A Moses or Marian N-best list (`ID ||| text ||| features ||| score`) is corrected a
/// sentence at a time, under the sentence's id, its first line the 1-best.
#[test]
fn a_moses_n_best_list_is_corrected_sentence_by_sentence() {
    let nbest = b"0 ||| the house is small ||| F0= -1.5 ||| -1.5\n\
        0 ||| the house is little ||| F0= -2.5 ||| -2.5\n\
        4 ||| good morning ||| F0= -0.5 ||| -0.5\n";
    let recs = correct_stdin(&["--task", "mt"], nbest);
    let got: Vec<Value> = (recs.iter())
        .map(|r| serde_json::json!([r["id"], r["task"], r["best"]]))
        .collect();
    let want = serde_json::json!([[0, "mt", "the house is small"], [4, "mt", "good morning"]]);
    assert_eq!(Value::from(got), want);
}

/// Numeric ids come back as written, digit for digit: a 30-digit id is not rounded to a float,
/// a decimal keeps its trailing zero (serde_json's `arbitrary_precision`).
#[test]
fn numeric_ids_come_back_as_written() {
    let ids = [
        "123456789012345678901234567890",
        "18446744073709551617",
        "1.50",
        "7",
    ];
    let input: String = ids
        .iter()
        .map(|id| format!("{{\"id\": {id}, \"input\": [\"the cat sat\", \"the cat sad\"]}}\n"))
        .collect();
    let mut cmd = neko();
    cmd.args(["correct", "--task", "asr", "--model"])
        .arg(fixture("tiny-llama"))
        .arg("-");
    let out = run_with_stdin(cmd, input.as_bytes());
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let written: Vec<&str> = text
        .lines()
        .map(|l| {
            l.strip_prefix("{\"id\":")
                .unwrap()
                .split(',')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(written, ids);
}

#[test]
fn info_describes_the_model() {
    let out = neko()
        .args(["info", "--json", "--model"])
        .arg(fixture("tiny-mixtral"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["architecture"], "mixtral");
    assert_eq!(info["experts"], 4);
    assert_eq!(info["experts_per_token"], 2);
    assert_eq!(info["task_experts"]["gec"], 3);
    assert_eq!(info["weight_files"].as_array().unwrap().len(), 8);
    // embed 512*64 + lm_head 512*64 + final norm 64, plus per layer: attention (64*64*2 +
    // 64*32*2), two norms (128), gate (4*64) and four experts of 3*64*128.
    let per_layer = 64 * 64 * 2 + 64 * 32 * 2 + 128 + 4 * 64 + 4 * 3 * 64 * 128;
    assert_eq!(info["parameters"], 2 * 512 * 64 + 64 + 2 * per_layer);
    assert_eq!(
        info["active_parameters"],
        2 * 512 * 64 + 64 + 2 * (per_layer - 2 * 3 * 64 * 128)
    );
}

/// Lays out a model as the Hugging Face hub cache does (`models--org--name/refs/main` naming a
/// snapshot folder) under `root`.
fn fake_hub_cache(root: &std::path::Path, id: &str, model: &str) {
    let repo = root.join(format!("models--{}", id.replace('/', "--")));
    let snapshot = repo.join("snapshots/0123456789abcdef");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123456789abcdef").unwrap();
    copy_fixture(model, &snapshot);
}

#[test]
fn hub_ids_resolve_from_the_local_cache_offline() {
    let home = tempfile::tempdir().unwrap();
    fake_hub_cache(
        &home.path().join("hub"),
        "someone/tiny-mixtral",
        "tiny-mixtral",
    );
    let out = neko()
        .env("HF_HOME", home.path())
        .env_remove("HF_HUB_CACHE")
        .args(["info", "--json", "--model", "someone/tiny-mixtral"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["experts"], 4);
    // The sharded checkpoint's index is followed inside the snapshot.
    assert_eq!(info["weight_files"].as_array().unwrap().len(), 8);

    let cache = tempfile::tempdir().unwrap();
    fake_hub_cache(cache.path(), "someone/tiny-llama", "tiny-llama");
    let mut cmd = neko();
    cmd.env("HF_HUB_CACHE", cache.path()).args([
        "correct",
        "--task",
        "asr",
        "--model",
        "someone/tiny-llama",
        "-",
    ]);
    let out = run_with_stdin(cmd, b"the cat sat\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_lines(&out.stdout).len(), 1);

    let out = neko()
        .env("HF_HUB_CACHE", cache.path())
        .args(["info", "--model", "nobody/absent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("offline"));
}

#[test]
fn the_correction_signature_travels_to_eval() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.jsonl");
    let run = |routing: &str| {
        let out = neko()
            .args(["correct", "--task", "asr", "--routing", routing, "-o"])
            .arg(&dest)
            .arg("--model")
            .arg(fixture("tiny-mixtral"))
            .arg(fixture("records/variants.json"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(neko::output::signature_path(&dest)).unwrap()
    };
    let learned = run("learned");
    assert!(learned.starts_with("correct|model:fp-"), "{learned}");
    for part in [
        "routing:learned",
        "decode:greedy",
        "prompt:asr=builtin:asr@",
        "guard:asr:w0.1",
        "dtype:f32",
    ] {
        assert!(learned.contains(part), "{part} not in {learned}");
    }
    let task = run("task");
    assert!(task.contains("routing:task"));
    // Same model files, same fingerprint.
    let fp = |s: &str| s.split('|').nth(1).unwrap().to_string();
    assert_eq!(fp(&learned), fp(&task));
    let out = neko().arg("eval").arg(&dest).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Its first line; the second is the file's digest.
    assert!(text.contains(task.lines().next().unwrap()), "{text}");
}

/// `--constrain words`: every word of every answer occurs in that record's hypotheses, while
/// the (random) tiny model decoding freely writes other words; the signature says which ran.
/// The default (`asr`) decodes these ASR records as `words` does, and signs the same.
#[test]
fn constrained_decoding_writes_only_hypothesis_words() {
    let input = fixture("records/variants.json");
    let run = tiny_correct_variants;
    let entries = record::read_path(&input).unwrap();
    let vocab: Vec<std::collections::HashSet<String>> = entries
        .iter()
        .map(|e| {
            let r = e.record.as_ref().unwrap();
            r.hypotheses
                .iter()
                .flat_map(|h| h.split_whitespace().map(str::to_string))
                .collect()
        })
        .collect();
    let foreign = |recs: &[Value]| -> usize {
        recs.iter()
            .zip(&vocab)
            .map(|(r, words)| {
                r["prediction"]
                    .as_str()
                    .unwrap()
                    .split_whitespace()
                    .filter(|w| !words.contains(*w))
                    .count()
            })
            .sum()
    };
    let (free, free_err) = run(&["--constrain", "none"]);
    let (constrained, stderr) = run(&["--constrain", "words"]);
    let (default, default_err) = run(&[]);
    assert_eq!(default, constrained);
    assert!(
        default_err.contains("|decode:greedy+words|"),
        "{default_err}"
    );
    assert!(free_err.contains("|decode:greedy|"), "{free_err}");
    assert_eq!(constrained.len(), vocab.len());
    assert!(
        foreign(&free) > 0,
        "the random model should stray: {free:?}"
    );
    assert_eq!(foreign(&constrained), 0, "{constrained:?}");
    assert!(constrained
        .iter()
        .any(|r| !r["prediction"].as_str().unwrap().is_empty()));
    assert!(stderr.contains("decode:greedy+words"), "{stderr}");
}

/// The default constrains ASR records only: on a file of every task, the OCR, MT and GEC
/// answers are the free ones, every ASR answer keeps to its hypotheses' words, and the
/// signature names the ASR-only constraint.
#[test]
fn the_default_constrains_asr_records_only() {
    let run = |extra: &[&str]| {
        let out = crate::util::ok(
            neko()
                .args(["correct", "--no-guard", "--max-new-tokens", "12"])
                .args(extra)
                .arg("--model")
                .arg(fixture("tiny-llama"))
                .arg(fixture("records/neko-smol-dev.jsonl")),
        );
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        (json_lines(&out.stdout), err)
    };
    let (default, err) = run(&[]);
    let (free, _) = run(&["--constrain", "none"]);
    assert!(err.contains("|decode:greedy+asr|"), "{err}");
    let entries = record::read_path(&fixture("records/neko-smol-dev.jsonl")).unwrap();
    let (mut asr, mut other) = (0, 0);
    for ((e, d), f) in entries.iter().zip(&default).zip(&free) {
        let r = e.record.as_ref().unwrap();
        if d["task"] == "asr" {
            let words: Vec<&str> = r
                .hypotheses
                .iter()
                .flat_map(|h| h.split_whitespace())
                .collect();
            for w in d["prediction"].as_str().unwrap().split_whitespace() {
                assert!(words.contains(&w), "{w} in {d}");
            }
            asr += 1;
        } else {
            assert_eq!(d["prediction"], f["prediction"], "{d}");
            other += 1;
        }
    }
    assert_eq!((asr, other), (6, 6));
    // The free ASR answers stray from the hypotheses, so the constraint had work to do.
    assert!(default
        .iter()
        .zip(&free)
        .any(|(d, f)| d["prediction"] != f["prediction"]));
}

/// The README says every flag of `neko correct` and `neko eval` has an environment twin: each
/// one but help and version does.
#[test]
fn every_correct_and_eval_flag_has_an_environment_twin() {
    use clap::CommandFactory;
    let cli = neko::cli::Cli::command();
    for name in ["correct", "eval"] {
        let cmd = cli.find_subcommand(name).unwrap();
        let missing: Vec<String> = cmd
            .get_arguments()
            .filter(|a| !a.is_positional() && a.get_env().is_none())
            .map(|a| a.get_id().to_string())
            .filter(|id| !["help", "version"].contains(&id.as_str()))
            .collect();
        assert!(missing.is_empty(), "neko {name}: no twin for {missing:?}");
    }
}

/// A stop string ends the decoding where the answer is cut. One that is a special token
/// (`<unk>`) decoded on to the token limit and every answer fell back as `fallback:length`;
/// under word-constrained decoding one of several tokens (`hypothesis`), begun by the model,
/// was never finished, and the answer lost the word its first piece was glued to.
#[test]
fn stop_strings_end_the_decoding_where_the_answer_is_cut() {
    let free = [
        "--task",
        "ocr",
        "--constrain",
        "none",
        "--guard-max-edit",
        "100",
        "--guard-margin",
        "off",
        "--stop",
        "<unk>",
    ];
    let ocr = correct_stdin(&free, b"{\"id\": \"e8\", \"input\": [\"Thad a dream\"]}\n");
    assert!(ocr[0].get("guard").is_none(), "{}", ocr[0]);
    assert_ne!(ocr[0]["prediction"], "Thad a dream");
    let input = b"{\"id\": \"r7\", \"input\": [\"to to mat small\", \"to to is small\", \"to to blue small\", \"to to to small\", \"small to mat small\"]}\n\
        {\"id\": \"r35\", \"input\": [\"to blue to blue the\", \"to blue sad blue the\", \"to blue and blue the\", \"red blue to blue the\"]}\n";
    let with_stop = |stop: &str| -> Vec<Value> {
        let out = correct_stdin(&["--task", "asr", "--no-guard", "--stop", stop], input);
        out.iter().map(|r| r["prediction"].clone()).collect()
    };
    // tiny-llama begins both with its token `hyp`: one stop is whole then, one goes on.
    let short = with_stop("hyp");
    assert_eq!(short, ["blue is", "blue sad"]);
    assert_eq!(with_stop("hypothesis"), short);
}

/// The same file given twice is said (its records come out twice under the same ids), `-`
/// twice is refused (standard input is read once), and `-o` into a folder that does not exist
/// is refused before the model loads.
#[test]
fn repeated_inputs_and_a_missing_output_folder_are_said_at_once() {
    let input = fixture("records/variants.json");
    let run = |args: &[&std::ffi::OsStr]| {
        let mut cmd = neko();
        cmd.args(["correct", "--task", "asr", "--model"])
            .arg(fixture("tiny-llama"))
            .args(args);
        cmd.output().unwrap()
    };
    let out = run(&[input.as_os_str(), input.as_os_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("is given twice"), "{err}");
    let once = json_lines(&run(&[input.as_os_str()]).stdout).len();
    assert_eq!(json_lines(&out.stdout).len(), 2 * once);
    let out = run(&["-".as_ref(), "-".as_ref()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("- given twice"));
    let out = run(&[
        "-o".as_ref(),
        "/no/such/folder/out.jsonl".as_ref(),
        input.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no such folder") && !err.contains("warning"),
        "{err}"
    );
}

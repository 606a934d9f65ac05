//! `neko bench`: what it reports is what ran, and what it cannot run is said up front.

use serde_json::Value;

use crate::util::{fixture, neko};

fn bench(args: &[&str]) -> (Option<i32>, Value, String) {
    let out = neko()
        .args(["bench", "--model"])
        .arg(fixture("tiny-llama"))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), report, err)
}

#[test]
fn synthetic_bench_reports_its_shape_and_refuses_more_than_the_context() {
    let (code, r, err) = bench(&["--prompt-tokens", "40", "--new-tokens", "4", "--batch", "2"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        (r["batch"].as_u64(), r["prompt_tokens"].as_u64()),
        (Some(2), Some(40))
    );
    assert!(
        r["prefill_tok_s"].as_f64().unwrap() > 0.0 && r["decode_tok_s"].as_f64().unwrap() > 0.0
    );
    // tiny-llama has 512 positions.
    let (code, _, err) = bench(&["--prompt-tokens", "500", "--new-tokens", "50"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("more than the model's 512 positions"), "{err}");
    assert_eq!(r["routing"], "learned");
    // --routing task times the forced path with --task's expert, and a dense model has none.
    let (code, _, err) = bench(&["--prompt-tokens", "8", "--routing", "task"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("the model is dense"), "{err}");
    let out = crate::util::ok(
        neko()
            .args([
                "bench",
                "--prompt-tokens",
                "8",
                "--new-tokens",
                "2",
                "--model",
            ])
            .arg(fixture("tiny-mixtral"))
            .args(["--routing", "task", "--task", "ocr"]),
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["routing"], "task:2", "{r}");
}

/// Records that cannot be corrected are left out, counted and named; the records timed are
/// the ones written to `--predictions`.
#[test]
fn data_bench_counts_what_it_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("in.jsonl");
    std::fs::write(
        &data,
        "{\"id\": \"a\", \"task\": \"asr\", \"input\": [\"the cat sat\"]}\n\
         {\"id\": \"b\", \"task\": \"speech\", \"input\": [\"x\"]}\n\
         {\"id\": \"c\", \"input\": []}\n\
         {\"id\": \"d\", \"input\": [\"a dog ran\"]}\n",
    )
    .unwrap();
    let preds = dir.path().join("preds.jsonl");
    let (code, r, err) = bench(&[
        "--data",
        data.to_str().unwrap(),
        "--predictions",
        preds.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        (
            r["records"].as_u64(),
            r["failed"].as_u64(),
            r["skipped"].as_u64()
        ),
        (Some(2), Some(0), Some(2))
    );
    assert!(
        err.contains("in.jsonl:2: field task: unknown task `speech`"),
        "{err}"
    );
    let lines = crate::util::json_lines(&std::fs::read(&preds).unwrap());
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "d"]);
    // Timed as `neko correct` decodes by default: ASR answers keep to the hypotheses' words.
    assert_eq!(r["constrain"], "asr");
    for (l, words) in lines.iter().zip(["the cat sat", "a dog ran"]) {
        let vocab: Vec<&str> = words.split_whitespace().collect();
        let answer = l["prediction"].as_str().unwrap();
        assert!(answer.split_whitespace().all(|w| vocab.contains(&w)), "{l}");
    }
}

/// A zero that cannot be run is refused, not quietly run as 1 and reported so; the report's
/// thread count is a number.
#[test]
fn zero_runs_rows_or_prompt_tokens_are_refused() {
    for flag in ["--runs", "--batch", "--prompt-tokens"] {
        let (code, _, err) = bench(&[flag, "0"]);
        assert_eq!(code, Some(2), "{flag}: {err}");
        assert!(err.contains(flag), "{err}");
    }
    let (code, r, err) = bench(&["--prompt-tokens", "8", "--new-tokens", "2", "--runs", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(r["threads"].as_u64().is_some_and(|n| n >= 1), "{r}");
}

/// Zero threads (rayon's "every core") and zero new tokens (every answer empty) are refused,
/// in `neko correct` too; bench's prompt and predictions files are named, and refused before
/// the timed run.
#[test]
fn zero_threads_or_tokens_and_bad_files_are_refused_at_once() {
    let (code, _, err) = bench(&["--threads", "0", "--prompt-tokens", "8"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--threads"), "{err}");
    let data = fixture("records/shapes.jsonl");
    let data = data.to_str().unwrap();
    let out = (neko().args([
        "correct",
        "--task",
        "asr",
        "--max-new-tokens",
        "0",
        "--model",
    ]))
    .arg(fixture("tiny-llama"))
    .arg(data)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-new-tokens"));
    let (code, _, err) = bench(&["--data", data, "--prompt", "/nonexistent/p.txt"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("/nonexistent/p.txt: cannot read the prompt"),
        "{err}"
    );
    let (code, _, err) = bench(&["--data", data, "--predictions", "/nonexistent/dir/p.jsonl"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--predictions /nonexistent/dir/p.jsonl"),
        "{err}"
    );
}

/// `--predictions` is refused onto the `--data` file (it used to truncate it) and written whole
/// after the run: a run that fails leaves an earlier file as it was. Flags of the other mode
/// are refused, and a run with no record to time exits 2, not with a row of zeros.
#[test]
fn data_bench_guards_its_files_and_refuses_nothing_to_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("in.jsonl");
    let input = "{\"id\": \"a\", \"input\": [\"the cat sat\"]}\n";
    std::fs::write(&data, input).unwrap();
    let data_s = data.to_str().unwrap();
    let (code, _, err) = bench(&["--data", data_s, "--predictions", data_s]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--predictions") && err.contains("is the input"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&data).unwrap(), input);
    let preds = dir.path().join("preds.jsonl");
    std::fs::write(&preds, "earlier\n").unwrap();
    let err = crate::util::refused(neko().args([
        "bench",
        "--model",
        "/no/such/model",
        "--data",
        data_s,
        "--predictions",
        preds.to_str().unwrap(),
    ]));
    assert!(err.contains("/no/such/model"), "{err}");
    assert_eq!(std::fs::read_to_string(&preds).unwrap(), "earlier\n");
    for flag in [["--batch", "2"], ["--runs", "2"], ["--new-tokens", "3"]] {
        let (code, _, err) = bench(&["--data", data_s, flag[0], flag[1]]);
        assert_eq!(code, Some(2), "{flag:?}: {err}");
        assert!(err.contains(flag[0]), "{err}");
    }
    let (code, _, err) = bench(&["--predictions", preds.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--data"), "{err}");
    let (code, _, err) = bench(&["--data", data_s, "--limit", "0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--limit"), "{err}");
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let (code, r, err) = bench(&["--data", empty.to_str().unwrap()]);
    assert_eq!((code, r), (Some(2), Value::Null), "{err}");
    assert!(err.contains("no record to correct"), "{err}");
}

/// Each answer's first token comes from the prefill's logits: it is counted apart from the
/// decode steps' tokens, so one new token per record times no decode at all (the rate was
/// some 100,000 tokens/s).
#[test]
fn data_bench_decode_rate_counts_decode_steps_only() {
    let data = fixture("records/neko-smol-dev.jsonl");
    let data = data.to_str().unwrap();
    let limit = ["--data", data, "--limit", "3", "--no-guard"];
    let (code, r, err) = bench(&[&limit[..], &["--max-new-tokens", "1"]].concat());
    assert_eq!(code, Some(0), "{err}");
    let st = &r["stats"];
    assert_eq!(
        (st["first_tokens"].as_u64(), st["decode_tokens"].as_u64()),
        (Some(3), Some(0)),
        "{r}"
    );
    assert_eq!(r["decode_tok_s"].as_f64(), Some(0.0), "{r}");
    let (code, r, err) = bench(&[&limit[..], &["--max-new-tokens", "3"]].concat());
    assert_eq!(code, Some(0), "{err}");
    let st = &r["stats"];
    assert_eq!(st["first_tokens"].as_u64(), Some(3), "{r}");
    assert!(
        (1..=6).contains(&st["decode_tokens"].as_u64().unwrap()),
        "{r}"
    );
}

/// A record says where it ran and with what: the device in both, the adapter in the
/// synthetic one, `neko correct`'s signature in the `--data` one (routing, guard, answer
/// bound); decoding flags a synthetic run does not use are named, not silently dropped.
#[test]
fn bench_records_say_where_and_how_they_ran() {
    let (code, r, err) = bench(&["--prompt-tokens", "8", "--new-tokens", "2", "--runs", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!((&r["device"], &r["adapter"]), (&"cpu".into(), &Value::Null));
    host_is_described(&r);
    let (code, _, err) = bench(&[
        "--prompt-tokens",
        "8",
        "--runs",
        "1",
        "--max-new-tokens",
        "4",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("--max-new-tokens has no effect without --data"),
        "{err}"
    );
    let data = fixture("records/neko-smol-dev.jsonl");
    let args = ["--data", data.to_str().unwrap(), "--limit", "2"];
    let (code, r, err) = bench(&[&args[..], &["--max-new-tokens", "3", "--no-guard"]].concat());
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["device"], "cpu");
    host_is_described(&r);
    let sig = r["signature"].as_str().unwrap();
    assert!(sig.starts_with("correct|model:fp-"), "{sig}");
    assert!(
        sig.contains("|routing:learned|") && sig.contains("|max_new:3|"),
        "{sig}"
    );
    assert!(sig.contains("|guard:off|"), "{sig}");
}

/// A record names the host, so that numbers from two machines are not compared unawares: its
/// logical CPUs, neko's version and the SIMD extensions that choose the kernels, each named
/// exactly when this CPU has it.
fn host_is_described(r: &Value) {
    assert!(r["cores"].as_u64().is_some_and(|n| n >= 1), "{r}");
    assert_eq!(r["neko"], env!("CARGO_PKG_VERSION"));
    // Set by nobody here: candle's kernel tier is the CPU's own.
    assert_eq!(r["kernel_env"], serde_json::json!([]), "{r}");
    let named: Vec<&str> = (r["cpu_features"].as_array())
        .unwrap_or_else(|| panic!("no cpu_features: {r}"))
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let edx = core::arch::x86_64::__cpuid_count(7, 0).edx;
        let want = [
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
            ("f16c", has!("f16c")),
            ("avxvnni", has!("avxvnni")),
            ("avx512f", has!("avx512f")),
            ("avx512bw", has!("avx512bw")),
            ("avx512vnni", has!("avx512vnni")),
            ("avx512bf16", has!("avx512bf16")),
            ("amx", edx & (3 << 24) == 3 << 24),
        ];
        let want: Vec<&str> = want.iter().filter(|f| f.1).map(|f| f.0).collect();
        assert_eq!(named, want, "{r}");
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = named;
}

/// `--routing task` is checked for every task of the file before the weights load (the ASR
/// records before an unmapped MT record were decoded first): weights that cannot be read are
/// not reached.
#[test]
fn data_bench_refuses_an_unmapped_task_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("asr-only");
    std::fs::create_dir(&model).unwrap();
    crate::util::copy_fixture("tiny-mixtral", &model);
    let config = model.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["task_experts"] = serde_json::json!({"asr": 0});
    std::fs::write(&config, c.to_string()).unwrap();
    for shard in std::fs::read_dir(&model).unwrap() {
        let shard = shard.unwrap().path();
        if shard.extension().is_some_and(|e| e == "safetensors") {
            std::fs::write(&shard, b"not weights").unwrap();
        }
    }
    let data = dir.path().join("in.jsonl");
    std::fs::write(
        &data,
        "{\"id\": \"a\", \"task\": \"asr\", \"input\": [\"the cat sat\"]}\n\
         {\"id\": \"b\", \"task\": \"mt\", \"input\": [\"a dog ran\"]}\n",
    )
    .unwrap();
    let err = crate::util::refused(
        neko()
            .args(["bench", "--routing", "task", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(&data),
    );
    assert!(err.contains("no `task_experts` entry for `mt`"), "{err}");
}

//! `neko correct --shard I/N` and `neko merge` (issue 7): slices are stable, disjoint and cover
//! the input; merged shards are byte for byte the unsharded output; merge refuses gaps,
//! duplicates and foreign files, naming file and id. In process on the tiny fixture; no server.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{fixture, neko, ok};

/// Two input files (JSON array and JSONL with a text line, which JSON Lines does not allow, and
/// an unreadable line), so positions run across files and unreadable records have a place too.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let bad = dir.join("more.jsonl");
    std::fs::write(
        &bad,
        "{\"id\": \"m1\", \"input\": [\"the cat sat\", \"the cat sad\"]}\n\
         {\"id\": \"m2\", \"input\": 5}\n\
         a plain line\n\
         {\"id\": \"m4\", \"input\": [\"one two three\"]}\n",
    )
    .unwrap();
    vec![
        fixture("records/variants.json"),
        fixture("records/shapes.jsonl"),
        bad,
    ]
}

/// `neko correct` on the tiny model with `extra` flags, writing `dest`, which must succeed.
fn correct(inputs: &[PathBuf], dest: &Path, extra: &[&str]) -> std::process::Output {
    ok(&mut correct_cmd(inputs, dest, extra))
}

/// The command [`correct`] runs.
fn correct_cmd(inputs: &[PathBuf], dest: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = neko();
    cmd.args([
        "correct",
        "--task",
        "asr",
        "--max-new-tokens",
        "4",
        "--model",
    ])
    .arg(fixture("tiny-llama"))
    .args(extra)
    .arg("-o")
    .arg(dest)
    .args(inputs);
    cmd
}

fn read_json_lines(path: &Path) -> Vec<Value> {
    crate::util::json_lines(&std::fs::read(path).unwrap())
}

fn merge(files: &[PathBuf]) -> std::process::Output {
    neko().arg("merge").args(files).output().unwrap()
}

/// Runs every shard of `n` and returns their output files.
fn shards(dir: &Path, inputs: &[PathBuf], n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let dest = dir.join(format!("out.shard{i}of{n}.jsonl"));
            correct(inputs, &dest, &["--shard", &format!("{i}/{n}")]);
            dest
        })
        .collect()
}

#[test]
fn shards_cover_the_input_once_and_merge_to_the_unsharded_output() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = inputs(dir.path());
    let whole = dir.path().join("whole.jsonl");
    correct(&inputs, &whole, &[]);
    let whole_text = std::fs::read_to_string(&whole).unwrap();
    let total = whole_text.lines().count();
    assert_eq!(total, 4 + 5 + 4);
    for n in [1, 2, 3, 5, 16] {
        let files = shards(dir.path(), &inputs, n);
        let mut seen = vec![0; total];
        for (i, f) in files.iter().enumerate() {
            for line in read_json_lines(f) {
                let k = line["index"].as_u64().unwrap() as usize;
                assert_eq!(k % n, i, "{n} shards: record {k} in shard {i}");
                assert_eq!(line["of"].as_u64(), Some(total as u64));
                seen[k] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "{n} shards: {seen:?}");
        // Any order of the files merges to the unsharded run, byte for byte.
        let mut shuffled = files.clone();
        shuffled.reverse();
        let out = merge(&shuffled);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            whole_text,
            "{n} shards"
        );
    }
    // A shard saved with a byte-order mark (an editor on Windows) merges as it was.
    let files = shards(dir.path(), &inputs, 2);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    std::fs::write(&files[0], format!("\u{feff}{text}")).unwrap();
    let out = merge(&files);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), whole_text, "BOM");
    // A reader that is gone (`neko merge ... | head`) is a quiet success, as for correct (it was
    // exit 2, "out.shard1of2.jsonl: Broken pipe", blaming a shard).
    for _ in 0..3 {
        crate::util::succeeds_into_a_closed_pipe(neko().arg("merge").args(&files));
    }
    // Stable: the same slice again is the same file.
    let again = dir.path().join("again.jsonl");
    correct(&inputs, &again, &["--shard", "1/3"]);
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(dir.path().join("out.shard1of3.jsonl")).unwrap()
    );
}

#[test]
fn merge_writes_atomically_with_the_shards_signature() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = inputs(dir.path());
    let files = shards(dir.path(), &inputs, 2);
    let dest = dir.path().join("merged.jsonl");
    let out = neko()
        .arg("merge")
        .args(&files)
        .arg("-o")
        .arg(&dest)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(read_json_lines(&dest).len(), 13);
    assert!(!neko::output::partial_path(&dest).exists());
    let sig = std::fs::read_to_string(neko::output::signature_path(&dest)).unwrap();
    assert!(sig.starts_with("correct|model:fp-"), "{sig}");

    // `-o` naming a shard is refused before anything is written; `NEKO_OUTPUT`, the shards'
    // output setting, does not redirect a merge to stdout.
    let before = std::fs::read(&files[0]).unwrap();
    let out = neko()
        .arg("merge")
        .args(&files)
        .arg("-o")
        .arg(&files[0])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the input"));
    assert_eq!(std::fs::read(&files[0]).unwrap(), before);
    let out = neko()
        .arg("merge")
        .args(&files)
        .env("NEKO_OUTPUT", &files[1])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(crate::util::json_lines(&out.stdout).len(), 13);
    // A pipe cannot be read twice: said as such, not as missing records.
    let out = merge(&[PathBuf::from("/dev/stdin")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
    // A missing file's I/O error is said once.
    let out = merge(&[dir.path().join("none.jsonl")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

#[test]
fn merge_refuses_gaps_duplicates_and_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = inputs(dir.path());
    let files = shards(dir.path(), &inputs, 3);
    let err = |files: &[PathBuf]| {
        let out = merge(files);
        assert_eq!(out.status.code(), Some(2));
        assert!(out.stdout.is_empty(), "nothing is written on refusal");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Shards are read twice: standard input cannot be one.
    let e = err(&[files[0].clone(), PathBuf::from("-")]);
    assert!(e.contains("not standard input"), "{e}");

    // Shard 1 of 3 missing: record 1 (in shapes? no: variants.json's second record, id
    // "q0001") is the first gap, between the records of shards 0 and 2.
    let e = err(&[files[0].clone(), files[2].clone()]);
    assert!(e.contains("4 of 13 records are missing"), "{e}");
    assert!(e.contains("the first is record 1"), "{e}");
    assert!(e.contains("out.shard0of3.jsonl:1"), "{e}");
    assert!(e.contains("out.shard2of3.jsonl:1"), "{e}");

    // The same shard twice: the record, its id and both places are named.
    let copy = dir.path().join("copy.jsonl");
    std::fs::copy(&files[1], &copy).unwrap();
    let e = err(&[files[0].clone(), files[1].clone(), files[2].clone(), copy]);
    assert!(
        e.contains("record 1 (id \"q0001\") is in two shard outputs"),
        "{e}"
    );
    assert!(e.contains("out.shard1of3.jsonl:1 and "), "{e}");
    assert!(e.contains("copy.jsonl:1"), "{e}");

    // A truncated shard (a .partial taken for a finished file): its last record is missing.
    let cut = dir.path().join("cut.jsonl");
    let text = std::fs::read_to_string(&files[2]).unwrap();
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(&cut, kept[..kept.len() - 1].join("\n") + "\n").unwrap();
    let e = err(&[files[0].clone(), files[1].clone(), cut]);
    assert!(
        e.contains("1 of 13 records are missing; the first is record 11"),
        "{e}"
    );

    // An unsharded output has no positions.
    let whole = dir.path().join("whole.jsonl");
    correct(&inputs, &whole, &[]);
    let e = err(&[files[0].clone(), whole]);
    assert!(e.contains("whole.jsonl:1: no `index` field"), "{e}");

    // Shards of another input disagree on its size.
    let other = dir.path().join("other.jsonl");
    correct(&inputs[..1], &other, &["--shard", "1/3"]);
    let e = err(&[files[0].clone(), other]);
    assert!(e.contains("shards of different inputs"), "{e}");

    // Shards of an input with as many records but other contents: the fingerprint differs.
    let edited = dir.path().join("edited.jsonl");
    let text = std::fs::read_to_string(&inputs[2]).unwrap();
    std::fs::write(&edited, text.replace("one two three", "one two four")).unwrap();
    let moved = [inputs[0].clone(), inputs[1].clone(), edited];
    let other = dir.path().join("edited-out.jsonl");
    correct(&moved, &other, &["--shard", "1/3"]);
    let e = err(&[files[0].clone(), other, files[2].clone()]);
    assert!(
        e.contains("from input in-") && e.contains("(the same number of records, other contents)"),
        "{e}"
    );
    // Shards written before lines carried the fingerprint still merge.
    let old: Vec<PathBuf> = (files.iter().enumerate())
        .map(|(i, f)| {
            let text = std::fs::read_to_string(f).unwrap();
            let stripped: String = text
                .lines()
                .map(|l| {
                    let cut = l.rfind(",\"input\":").unwrap();
                    format!("{}}}\n", &l[..cut])
                })
                .collect();
            let p = dir.path().join(format!("old{i}.jsonl"));
            std::fs::write(&p, stripped).unwrap();
            p
        })
        .collect();
    let out = merge(&old);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let whole_text = std::fs::read_to_string(dir.path().join("whole.jsonl")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), whole_text);
}

#[test]
fn merge_refuses_shards_made_with_different_settings() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = inputs(dir.path());
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    correct(&inputs, &a, &["--shard", "0/2"]);
    correct(&inputs, &b, &["--shard", "1/2", "--no-guard"]);
    let out = merge(&[a, b]);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("a.jsonl.sig and"), "{e}");
    assert!(e.contains("different settings"), "{e}");
    // Which settings: the fields that differ.
    assert!(e.contains("differ: guard: asr:w0.1+"), "{e}");
    assert!(e.contains(" → off)"), "{e}");

    // A shard without a signature (written to stdout) does not stop the others' check.
    let part = |i: usize, extra: &[&str]| {
        let f = dir.path().join(format!("p{i}{}.jsonl", extra.len()));
        let slice = format!("{i}/3");
        correct(&inputs, &f, &[&["--shard", slice.as_str()], extra].concat());
        f
    };
    let unsigned = part(0, &[]);
    std::fs::remove_file(neko::output::signature_path(&unsigned)).unwrap();
    let (one, two) = (part(1, &[]), part(2, &[]));
    let out = merge(&[unsigned.clone(), one.clone(), part(2, &["--no-guard"])]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("different settings"));

    // Agreeing shards, one without a signature, merge without one: a signature left by an
    // earlier file of that name would vouch for lines it did not make.
    let dest = dir.path().join("merged.jsonl");
    std::fs::write(neko::output::signature_path(&dest), "correct|stale\n").unwrap();
    let out = neko()
        .arg("merge")
        .args([&unsigned, &one, &two])
        .arg("-o")
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!neko::output::signature_path(&dest).exists());
    // ... and say that the unsigned shard's settings went unchecked.
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("p00.jsonl (1 shard(s) in all) has no .sig of its own")
            && e.contains("unsigned"),
        "{e}"
    );
}

/// A record count no shard output could hold is an error, not an allocation.
#[test]
fn merge_refuses_an_impossible_record_count() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("huge.jsonl");
    std::fs::write(
        &f,
        "{\"id\": 1, \"index\": 0, \"of\": 18446744073709551615}\n",
    )
    .unwrap();
    let out = merge(&[f]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("records are missing"));
}

#[test]
fn a_shard_resumes_like_a_whole_run() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = inputs(dir.path());
    let full = dir.path().join("full.jsonl");
    correct(&inputs, &full, &["--shard", "0/2"]);
    let full_text = std::fs::read_to_string(&full).unwrap();
    let dest = dir.path().join("resumed.jsonl");
    let lines: Vec<&str> = full_text.lines().collect();
    // Interrupted after three lines and part of the fourth.
    let partial = format!(
        "{}\n{}\n{}\n{}",
        lines[0],
        lines[1],
        lines[2],
        &lines[3][..8]
    );
    crate::util::write_partial(&dest, &partial, &full);
    let out = correct(&inputs, &dest, &["--shard", "0/2", "--resume"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 records already written, 4 to go"), "{err}");
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), full_text);
    // Lines of another shape are refused, not resumed into a shard `neko merge` refuses:
    // a shard of another input, an unsharded run's lines, a shard resumed unsharded.
    let refused = |partial: &str, made_like: &Path, inputs: &[PathBuf], shard: &[&str]| {
        crate::util::write_partial(&dest, partial, made_like);
        let flags = [shard, &["--resume"]].concat();
        let out = correct_cmd(inputs, &dest, &flags).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let first = format!("{}\n", lines[0]);
    let more = dir.path().join("added.jsonl");
    std::fs::write(&more, "{\"id\": \"a1\", \"input\": [\"one more\"]}\n").unwrap();
    let grown = [inputs.clone(), vec![more]].concat();
    let err = refused(&first, &full, &grown, &["--shard", "0/2"]);
    assert!(
        err.contains("resumed.jsonl.partial:1: written from another input (of 13, input in-"),
        "{err}"
    );
    let err = refused(&first, &full, &inputs, &[]);
    assert!(err.contains("a shard's line (it has `index`)"), "{err}");
    let whole = dir.path().join("whole.jsonl");
    correct(&inputs, &whole, &[]);
    let whole_first = std::fs::read_to_string(&whole).unwrap();
    let whole_first = format!("{}\n", whole_first.lines().next().unwrap());
    let err = refused(&whole_first, &whole, &inputs, &["--shard", "0/2"]);
    assert!(err.contains("a line without `index`"), "{err}");
    // Another shard's file of the same input (an off-by-one job index).
    let err = refused(&first, &full, &inputs, &["--shard", "1/2"]);
    assert!(
        err.contains("a line of another shard (index 0), and this run writes shard 1/2"),
        "{err}"
    );
}

/// Shards that hold no record carry no record count: a merge of only those cannot tell
/// whether the input had records, and says so instead of merging silently.
#[test]
fn a_merge_of_empty_shards_only_warns() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.jsonl");
    std::fs::write(&one, "{\"id\": \"a\", \"input\": [\"x y\"]}\n").unwrap();
    let all = shards(dir.path(), &[one], 3);
    let out = merge(&all[1..]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no shard output holds a record"), "{err}");
    let out = merge(&all);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("no shard output holds a record"), "{err}");
}

#[test]
fn shard_flag_refuses_bad_slices() {
    for bad in ["3/3", "1/0", "two/4"] {
        let out = neko()
            .args(["correct", "--task", "asr", "--shard", bad, "--model"])
            .arg(fixture("tiny-llama"))
            .arg(fixture("records/shapes.jsonl"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("expected I/N"));
    }
}

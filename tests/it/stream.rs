//! `neko correct` reading JSON Lines as they arrive: lines out before the input ends, and the
//! same lines as a run that reads its input whole.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::util::{fixture, json_lines, neko, ok, run_with_stdin};

/// How long a test waits for a line before failing rather than hanging (not a speed bound:
/// a line that never comes before the input ends is what it catches).
const PATIENCE: Duration = Duration::from_secs(300);

fn tiny_asr() -> std::process::Command {
    let mut cmd = neko();
    cmd.args([
        "correct",
        "--task",
        "asr",
        "--max-new-tokens",
        "4",
        "--model",
    ])
    .arg(fixture("tiny-llama"));
    cmd
}

/// `neko correct -` with its input and output as pipes: the child, its stdin, and its output
/// lines as they come.
fn piped() -> (Child, ChildStdin, mpsc::Receiver<String>) {
    let mut child = tiny_asr()
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let (lines, receive) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    (child, stdin, receive)
}

/// Sends one record and returns the id of the line that comes back while the input is open.
fn answer(stdin: &mut ChildStdin, lines: &mpsc::Receiver<String>, id: &str) -> String {
    let record = format!("{{\"id\": \"{id}\", \"input\": [\"the cat sat\", \"the cat sad\"]}}\n");
    stdin.write_all(record.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let line = (lines.recv_timeout(PATIENCE)).expect("no output line while the input was open");
    let out: serde_json::Value = serde_json::from_str(&line).unwrap();
    out["id"].as_str().unwrap().to_string()
}

/// In a pipeline, a record's line comes out while the input is still open: the recogniser
/// upstream has not finished, and neko has already answered what it sent.
#[test]
fn a_line_comes_out_before_the_input_ends() {
    let (mut child, mut stdin, lines) = piped();
    assert_eq!(answer(&mut stdin, &lines, "u1"), "u1");
    assert_eq!(answer(&mut stdin, &lines, "u2"), "u2");
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert!(lines.recv_timeout(PATIENCE).is_err(), "a line too many");
}

/// Ctrl-C while neko waits for more input ends the run (exit 2) with what it wrote said; it
/// waited for the input, which a recogniser upstream may never close.
#[cfg(unix)]
#[test]
fn ctrl_c_while_the_input_is_silent_ends_the_run() {
    let (mut child, mut stdin, lines) = piped();
    assert_eq!(answer(&mut stdin, &lines, "u1"), "u1");
    crate::util::send_signal(&child, "INT");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > PATIENCE {
            child.kill().unwrap();
            panic!("still waiting for its input after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    assert_eq!(status.code(), Some(2));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("interrupted after 1 records"), "{err}");
}

/// Read as it arrives (to standard output) or whole (to `-o FILE`), an input gives the same
/// lines: ids, predictions, error lines with their file and line, and default ids by position.
#[test]
fn streamed_and_whole_runs_write_the_same_lines() {
    let mut input = std::fs::read(fixture("records/shapes.jsonl")).unwrap();
    input.extend_from_slice(&std::fs::read(fixture("records/whisper_nbest.jsonl")).unwrap());
    input.extend_from_slice(
        concat!(
            "{\"input\": [\"no id here\"]}\n",
            "{\"id\": \"cut\", \"input\": [\"a line cut\n",
            "\n",
            "{\n  \"id\": \"jq\",\n  \"input\": [\n    \"written by jq\"\n  ]\n}\n",
            "{\"id\": \"x\", \"input\": []}\n",
            "{\"id\": \"last\", \"input\": [\"no newline at the end\"]}",
        )
        .as_bytes(),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, &input).unwrap();
    let mut streamed = tiny_asr();
    streamed.arg(&file);
    let streamed = streamed.output().unwrap();
    assert!(streamed.status.success());
    let out = dir.path().join("out.jsonl");
    let whole = tiny_asr().arg(&file).arg("-o").arg(&out).output().unwrap();
    assert!(whole.status.success());
    let written = std::fs::read(&out).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&streamed.stdout),
        String::from_utf8_lossy(&written)
    );
    let lines = json_lines(&written);
    assert_eq!(lines.len(), 14, "{lines:#?}");
    let cut = lines.iter().find(|l| l["id"] == "cut").unwrap();
    assert_eq!(cut["error"]["line"], 11, "{cut}");
    assert!(
        lines.iter().any(|l| l["id"] == 9),
        "a default id by position: {lines:#?}"
    );
}

/// Two inputs, the first read as it arrives and the second whole (a JSON array): one run, in
/// order, and an empty input is still said.
#[test]
fn a_stream_then_an_array_then_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let mut cmd = tiny_asr();
    cmd.arg("-")
        .arg(fixture("records/variants.json"))
        .arg(&empty);
    let out = run_with_stdin(cmd, b"{\"id\": \"first\", \"input\": [\"one\"]}\n");
    assert!(out.status.success());
    let lines = json_lines(&out.stdout);
    assert_eq!(lines[0]["id"], "first");
    let array = neko::record::read_path(&fixture("records/variants.json")).unwrap();
    assert_eq!(lines.len(), 1 + array.len());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("empty.jsonl: no records"), "{err}");
}

/// A named pipe as input is opened once, as its writer expects: its records come through
/// (opened twice, once to check it and once to read it, it lost them and waited forever).
#[cfg(unix)]
#[test]
fn a_named_pipe_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("asr.pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        crate::util::skip("mkfifo not available");
        return;
    }
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            pipe.write_all(
                b"{\"id\": \"p1\", \"input\": [\"a b\"]}\n{\"id\": \"p2\", \"input\": [\"c\"]}\n",
            )
            .unwrap();
        })
    };
    let mut cmd = tiny_asr();
    cmd.arg(&fifo);
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || send.send(cmd.output().unwrap()));
    let out = (receive.recv_timeout(PATIENCE)).expect("no end while the pipe was closed");
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<_> = json_lines(&out.stdout)
        .iter()
        .map(|l| l["id"].clone())
        .collect();
    assert_eq!(ids, ["p1", "p2"]);
}

/// What a run reading its input whole refuses before the model loads, a streamed run refuses
/// then too: a folder, a compressed file (after a good input: nothing is written), a missing
/// file; the model named here does not exist, so the message is the input's.
#[test]
fn bad_inputs_are_refused_before_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, "{\"id\": 1, \"input\": [\"a\"]}\n").unwrap();
    let gz = dir.path().join("in.jsonl.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
    let missing = dir.path().join("missing.jsonl");
    for (input, says) in [
        (dir.path().to_path_buf(), "cannot read: it is a folder"),
        (gz, "in.jsonl.gz: cannot read: gzip-compressed"),
        (missing, "missing.jsonl: cannot read"),
    ] {
        let out = neko()
            .args(["correct", "--task", "asr", "--model"])
            .arg(dir.path().join("no-such-model"))
            .arg(&good)
            .arg(&input)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(says) && !err.contains("no-such-model"),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
}

/// Streamed without --task, a run stops at its first record that can be corrected and has no
/// task (exit 2), even after error lines that need none (an empty N-best).
#[test]
fn a_forgotten_task_stops_a_streamed_run() {
    let mut cmd = neko();
    cmd.args(["correct", "--max-new-tokens", "2", "--model"])
        .arg(fixture("tiny-llama"))
        .arg("-");
    let input = b"{\"id\": \"e\", \"input\": []}\n{\"id\": \"n\", \"input\": [\"a b\"]}\n";
    let out = run_with_stdin(cmd, input);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no task given"), "{err}");
}

/// A task `--routing task` cannot route stops a streamed run at its first record: every line
/// before it is written (those of its window too), and the error says how many.
#[test]
fn an_unroutable_task_stops_after_the_lines_before_it() {
    let dir = tempfile::tempdir().unwrap();
    crate::util::copy_fixture("tiny-mixtral", dir.path());
    let cfg = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    config["task_experts"].as_object_mut().unwrap().remove("mt");
    std::fs::write(&cfg, config.to_string()).unwrap();
    let mut input = String::new();
    for k in 0..5 {
        input += &format!("{{\"id\": {k}, \"task\": \"asr\", \"input\": [\"a b\"]}}\n");
    }
    input += "{\"id\": 5, \"task\": \"mt\", \"input\": [\"c d\"]}\n";
    input += "{\"id\": 6, \"task\": \"asr\", \"input\": [\"e f\"]}\n";
    let mut cmd = neko();
    cmd.args([
        "correct",
        "--routing",
        "task",
        "--max-new-tokens",
        "2",
        "--model",
    ])
    .arg(dir.path())
    .arg("-");
    let out = run_with_stdin(cmd, input.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let ids: Vec<_> = json_lines(&out.stdout)
        .iter()
        .map(|l| l["id"].clone())
        .collect();
    assert_eq!(ids, [0, 1, 2, 3, 4]);
    assert!(
        err.contains("`mt`") && err.contains("the 5 records before it were written"),
        "{err}"
    );
}

/// Inputs are opened one after another, when their turn comes: more files than the process
/// may hold open at once are all read, and pipes a producer writes one after the other (more
/// than a pipe holds into the first) do not wait for each other.
#[cfg(unix)]
#[test]
fn inputs_are_opened_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for k in 0..40 {
        let f = dir.path().join(format!("{k}.jsonl"));
        std::fs::write(&f, format!("{{\"id\": {k}, \"input\": [\"a\"]}}\n")).unwrap();
        files.push(f.display().to_string());
    }
    let model = fixture("tiny-llama").display().to_string();
    let script = format!(
        "ulimit -n 32 && exec \"$0\" correct --task asr --max-new-tokens 2 --model {model} {}",
        files.join(" ")
    );
    let out = ok(std::process::Command::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_neko")])
        .env("RAYON_NUM_THREADS", "1"));
    assert_eq!(json_lines(&out.stdout).len(), 40);

    let (a, b) = (dir.path().join("a.pipe"), dir.path().join("b.pipe"));
    for p in [&a, &b] {
        let made = std::process::Command::new("mkfifo").arg(p).status();
        if !made.is_ok_and(|s| s.success()) {
            crate::util::skip("mkfifo not available");
            return;
        }
    }
    let writer = {
        let (a, b) = (a.clone(), b.clone());
        std::thread::spawn(move || {
            // 100 KB into the first pipe: more than it holds before it is read.
            let record = format!("{{\"id\": \"a\", \"input\": [\"{}\"]}}\n", "x ".repeat(500));
            let mut pipe = std::fs::OpenOptions::new().write(true).open(a).unwrap();
            for _ in 0..100 {
                pipe.write_all(record.as_bytes()).unwrap();
            }
            drop(pipe);
            let mut pipe = std::fs::OpenOptions::new().write(true).open(b).unwrap();
            pipe.write_all(b"{\"id\": \"b\", \"input\": [\"y\"]}\n")
                .unwrap();
        })
    };
    let mut cmd = neko();
    cmd.args([
        "correct",
        "--task",
        "asr",
        "--no-guard",
        "--max-new-tokens",
        "1",
    ])
    .arg("--model")
    .arg(fixture("tiny-llama"))
    .args([&a, &b]);
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || send.send(cmd.output().unwrap()));
    let out = (receive.recv_timeout(PATIENCE)).expect("the pipes waited for each other");
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_lines(&out.stdout).len(), 101);
}

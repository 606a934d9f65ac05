//! Helpers shared by the integration tests: fixture paths, the shared data folder, the binary.

#![allow(dead_code)]

use std::path::PathBuf;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path under `tests/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    repo().join("tests/fixtures").join(rel)
}

/// `../shared/data/<rel>` when it exists; otherwise prints a visible skip message and returns
/// `None` (a user's clone has no `../shared`).
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let p = repo().join("../shared/data").join(rel);
    if p.exists() {
        Some(p)
    } else {
        skip(&format!(
            "{} not found (no ../shared beside the repo)",
            p.display()
        ));
        None
    }
}

/// Says on the terminal that a test skips its check, and why. Written to the process's stderr
/// directly: `cargo test` captures `eprintln!` and shows it only for failed tests, so a
/// skipped test would pass as a plain `ok`.
pub fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIP: {why}");
}

/// A `Command` for the built `neko` binary, with one rayon thread as CI uses.
pub fn neko() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_neko"));
    cmd.env("RAYON_NUM_THREADS", "1");
    cmd
}

/// Runs `cmd`, which must succeed (else the assertion shows its stderr), and returns its output.
pub fn ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed: {err}");
    out
}

/// Runs `cmd`, which must be refused with exit 2, and returns its stderr.
pub fn refused(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
    err
}

/// Runs `cmd`, which must succeed, and returns its standard output.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    String::from_utf8(ok(cmd).stdout).unwrap()
}

/// One JSON value per line of `bytes` (a command's JSONL output).
pub fn json_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `neko correct` with the tiny Llama on the HyPoradise record variants (task ASR, guard off,
/// at most 12 new tokens) and `extra` flags: the output lines and the run's stderr.
pub fn tiny_correct_variants(extra: &[&str]) -> (Vec<serde_json::Value>, String) {
    let mut cmd = neko();
    cmd.args([
        "correct",
        "--task",
        "asr",
        "--no-guard",
        "--max-new-tokens",
        "12",
    ])
    .args(extra)
    .arg("--model")
    .arg(fixture("tiny-llama"))
    .arg(fixture("records/variants.json"));
    let out = ok(&mut cmd);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    (json_lines(&out.stdout), err)
}

/// Runs `cmd` with its standard output closed before it writes (a reader that is gone, as `|
/// head` leaves), asserting that it is the quiet success the README promises: exit 0, no error.
pub fn succeeds_into_a_closed_pipe(cmd: &mut std::process::Command) {
    use std::process::Stdio;
    let mut child = (cmd.stdout(Stdio::piped()).stderr(Stdio::piped()))
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("error") && !err.contains("panicked"), "{err}");
}

/// Waits until `ready()` holds while `child` runs: a child that exits first, or a wait past two
/// minutes, fails the test instead of hanging it.
pub fn wait_for(child: &mut std::process::Child, what: &str, mut ready: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("neko exited ({status}) before {what}");
        }
        assert!(
            start.elapsed().as_secs() < 120,
            "no {what} after two minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether process `pid` catches `signal` (its number) with a handler of its own: the
/// `SigCgt` mask of `/proc/PID/status` (Linux).
#[cfg(target_os = "linux")]
pub fn catches_signal(pid: u32, signal: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mask = (status.lines())
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok());
    mask.is_some_and(|m| m & (1 << (signal - 1)) != 0)
}

/// Sends `signal` (`INT`, `TERM`) to a running child, as Ctrl-C or a job scheduler does.
#[cfg(unix)]
pub fn send_signal(child: &std::process::Child, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} failed");
}

/// Runs `cmd` with `input` on its standard input and collects its output.
pub fn run_with_stdin(mut cmd: std::process::Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Written by a thread of its own: neko answers JSON Lines as they arrive, so its output
    // must be read while its input is written, or both pipes fill and wait for each other.
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || match stdin.write_all(&input) {
        // A run that fails before it reads its input (a model that does not load) closes it.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.unwrap(),
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Copies the files of fixture folder `name` into `dest`.
pub fn copy_fixture(name: &str, dest: &std::path::Path) {
    for f in std::fs::read_dir(fixture(name)).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dest.join(f.file_name().unwrap())).unwrap();
    }
}

/// A tiny fixture model (`tiny-llama`, `tiny-mixtral`) in f32 on the CPU.
pub fn load_model(name: &str) -> neko::model::Model {
    let path = fixture(name);
    neko::model::Model::load(
        path.to_str().unwrap(),
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
    )
    .unwrap()
}

/// The HyPoradise record variants fixture, parsed.
pub fn variant_records() -> Vec<neko::record::Record> {
    let bytes = std::fs::read(fixture("records/variants.json")).unwrap();
    neko::record::parse(&bytes)
        .into_iter()
        .filter_map(|e| e.record.ok())
        .collect()
}

/// What an interrupted `neko correct -o dest` leaves: `text` in `dest.partial`, and beside it
/// the signature it started with (that of `made_like`, a finished run with the same settings).
pub fn write_partial(dest: &std::path::Path, text: &str, made_like: &std::path::Path) {
    use neko::output::{partial_path, read_signature, signature_path};
    std::fs::write(partial_path(dest), text).unwrap();
    // A running run's `.partial.sig` has its signature line only: the digest comes at the end.
    let sig = read_signature(&signature_path(made_like))
        .unwrap()
        .signature;
    std::fs::write(signature_path(&partial_path(dest)), sig + "\n").unwrap();
}

/// The fields of a `correct|` signature line (stderr's `neko: correct|…` or a `.sig`'s first
/// line) that docs/eval.md's table of them does not explain: a field added without its
/// meaning would leave users a signature they cannot read.
pub fn undocumented_signature_fields(signature: &str) -> Vec<String> {
    let docs = std::fs::read_to_string(repo().join("docs/eval.md")).unwrap();
    let table = docs
        .split_once("The fields of a `correct|` signature")
        .expect("docs/eval.md explains the correct signature's fields")
        .1;
    // The first cell of each row, up to the first line that is not a row after the table began.
    let documented: Vec<String> = (table.lines())
        .skip_while(|l| !l.starts_with("| field"))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_string))
        .map(|name| name.split(':').next().unwrap_or_default().to_string())
        .collect();
    let line = signature.trim().trim_start_matches("neko: ");
    // Fields as `--resume` and `neko merge` read them; the first is the kind, `correct`.
    let fields = neko::output::signature_fields(line.lines().next().unwrap_or_default());
    (fields.into_iter().skip(1))
        .map(|(name, _)| name)
        .filter(|name| !documented.contains(name))
        .collect()
}

/// The `correct|…` signature line (stderr's, without `neko: `) of a `neko correct` run of
/// `model` with `flags` on one ASR record read from standard input, answers of two tokens at
/// most; the run must succeed.
pub fn correct_signature(model: &std::path::Path, flags: &[&str]) -> String {
    let mut cmd = neko();
    cmd.args([
        "correct",
        "--task",
        "asr",
        "--max-new-tokens",
        "2",
        "--model",
    ])
    .arg(model)
    .args(flags)
    .arg("-");
    let out = run_with_stdin(cmd, b"{\"id\": 1, \"input\": [\"a b\", \"a c\"]}\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{flags:?}: {err}");
    let line = err.lines().find_map(|l| l.strip_prefix("neko: correct|"));
    format!(
        "correct|{}",
        line.unwrap_or_else(|| panic!("no signature: {err}"))
    )
}

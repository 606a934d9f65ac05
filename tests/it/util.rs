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
        eprintln!(
            "SKIP: {} not found (no ../shared beside the repo)",
            p.display()
        );
        None
    }
}

/// A `Command` for the built `neko` binary, with one rayon thread as CI uses.
pub fn neko() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_neko"));
    cmd.env("RAYON_NUM_THREADS", "1");
    cmd
}

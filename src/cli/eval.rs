//! `neko eval`: scores files of records. (Being built; see the eval issue.)

use std::path::PathBuf;

use clap::Args;

/// Flags of `neko eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Record files to score (JSONL or HyPoradise JSON arrays).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `neko eval`.
pub fn run(_args: &EvalArgs) -> anyhow::Result<u8> {
    anyhow::bail!("neko eval is not built yet")
}

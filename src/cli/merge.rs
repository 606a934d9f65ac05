//! `neko merge`: the outputs of `neko correct --shard I/N` runs back in input order.

use std::path::PathBuf;

use clap::Args;

use super::EXIT_OK;
use crate::output::OutputSink;
use crate::shard::Merge;

/// Flags of `neko merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' output files (`neko correct --shard I/N -o FILE`), in any order.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,

    /// Write to FILE instead of stdout, atomically (through FILE.partial); the shards' common
    /// signature goes to FILE.sig. (No environment twin: `NEKO_OUTPUT`, set for the shards'
    /// `neko correct` runs, must not redirect the merge.)
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Runs `neko merge`: checks that the shards hold every input record exactly once, then
/// writes them in input order, each line as an unsharded run writes it.
pub fn run(args: &MergeArgs) -> anyhow::Result<u8> {
    if args.inputs.iter().any(|p| p.as_os_str() == "-") {
        anyhow::bail!("-: neko merge reads shard files (each twice), not standard input");
    }
    if let Some(out) = &args.output {
        let inputs: Vec<_> = args.inputs.iter().map(PathBuf::as_path).collect();
        super::check_output_path("-o", out, &inputs)?;
    }
    // The shards are read twice (checked, then written in order): pipes cannot be.
    if let Some(p) = (args.inputs.iter()).find(|p| std::fs::metadata(p).is_ok_and(|m| !m.is_file()))
    {
        anyhow::bail!(
            "{}: not a regular file; neko merge reads each shard twice, so save a piped shard (`<(zcat ...)`) to a file first",
            p.display()
        );
    }
    let merge = Merge::check(&args.inputs)?;
    if let Some(first) = merge.unsigned.first() {
        crate::say!(
            "neko: warning: {first} ({} shard(s) in all) has no .sig of its own while others do (none \
             beside it, or one it no longer matches: written over since): its settings cannot be \
             checked against theirs, and the merged file is unsigned",
            merge.unsigned.len()
        );
    }
    let mut sink = match &args.output {
        None => OutputSink::stdout(),
        // The shards' own `.sig` line, as an unsharded run writes it.
        Some(dest) => OutputSink::create(
            dest,
            merge.signature.as_deref().map(|s| s.trim_end_matches('\n')),
        )?,
    };
    if merge.is_empty() {
        // An empty shard carries no record count: the shards that held the records may be
        // the ones missing (failed jobs, a wrong glob), and nothing here can tell.
        crate::say!(
            "neko: warning: no shard output holds a record, so nothing says how many records              the input had: unless it had none, the shards holding them are missing"
        );
    }
    merge.write(&mut sink.writer())?;
    sink.finish()?;
    crate::say!(
        "neko: merged {} records from {} shard outputs",
        merge.len(),
        args.inputs.len()
    );
    Ok(EXIT_OK)
}

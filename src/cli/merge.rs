//! `neko merge`: the outputs of `neko correct --shard I/N` runs back in input order.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::EXIT_OK;
use crate::shard::Merge;

/// Flags of `neko merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' output files (`neko correct --shard I/N -o FILE`), in any order.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,

    /// Write to FILE instead of stdout, atomically (through FILE.partial); the shards' common
    /// signature goes to FILE.sig.
    #[arg(short, long, env = "NEKO_OUTPUT")]
    pub output: Option<PathBuf>,
}

/// Runs `neko merge`: checks that the shards hold every input record exactly once, then
/// writes them in input order, each line as an unsharded run writes it.
pub fn run(args: &MergeArgs) -> anyhow::Result<u8> {
    let merge = Merge::check(&args.inputs)?;
    match &args.output {
        None => merge.write(&mut std::io::BufWriter::new(std::io::stdout().lock()))?,
        Some(dest) => {
            let partial = crate::output::partial_path(dest);
            let file = std::fs::File::create(&partial)
                .with_context(|| format!("{}: cannot create", partial.display()))?;
            let mut out = std::io::BufWriter::new(file);
            merge.write(&mut out)?;
            out.flush()?;
            drop(out);
            std::fs::rename(&partial, dest)
                .with_context(|| format!("{}: cannot rename into place", dest.display()))?;
            if let Some(sig) = &merge.signature {
                let path = crate::output::signature_path(dest);
                std::fs::write(&path, sig)
                    .with_context(|| format!("{}: cannot write", path.display()))?;
            }
        }
    }
    eprintln!(
        "neko: merged {} records from {} shard outputs",
        merge.len(),
        args.inputs.len()
    );
    Ok(EXIT_OK)
}

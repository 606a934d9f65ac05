//! `neko guard`: the over-correction guard applied to predictions made elsewhere — by another
//! engine, or by an earlier `neko correct --no-guard` run, so that guard thresholds can be
//! compared without decoding again.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use super::EXIT_OK;
use crate::generate::Finish;
use crate::guard::{self, GuardOptions};
use crate::record;

/// Flags of `neko guard`.
#[derive(Debug, Args)]
pub struct GuardArgs {
    /// The input records the predictions were made from (their hypotheses; ids join them).
    #[arg(long)]
    pub input: PathBuf,

    /// Predictions: JSONL with `id` and `prediction` (`neko correct --no-guard` output).
    pub predictions: PathBuf,

    /// The edit threshold, as `neko correct --guard-max-edit`.
    #[arg(long, default_value_t = guard::DEFAULT_MAX_EDIT)]
    pub max_edit: f64,
}

/// Runs `neko guard`: every prediction line, with the prediction replaced by the 1-best and
/// `"guard": "fallback:<reason>"` added where the guard rejects it. A prediction already
/// guarded is kept. Without a model, prompt markers are `###` and ChatML/Llama special tokens;
/// a prediction that hit the token limit is not known here (`neko correct` also checks that).
pub fn run(args: &GuardArgs) -> anyhow::Result<u8> {
    let entries = record::read_path(&args.input)
        .with_context(|| format!("{}: cannot read", args.input.display()))?;
    let hypotheses: HashMap<String, Vec<String>> = entries
        .iter()
        .filter_map(|e| {
            let r = e.record.as_ref().ok()?;
            Some((r.id.to_string(), r.hypotheses.clone()))
        })
        .collect();
    let markers: Vec<String> = ["###", "<|im_start|>", "<|im_end|>", "<s>", "</s>"]
        .map(String::from)
        .to_vec();
    let opts = GuardOptions {
        enabled: true,
        max_edit_ratio: args.max_edit,
    };
    let file = std::fs::File::open(&args.predictions)
        .with_context(|| format!("{}: cannot open", args.predictions.display()))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", args.predictions.display(), n + 1);
        let mut rec: Value = serde_json::from_str(&line).with_context(at)?;
        let id = rec.get("id").map(Value::to_string).unwrap_or_default();
        let hyps = hypotheses
            .get(&id)
            .with_context(|| format!("{}: id {id} is not in {}", at(), args.input.display()))?;
        let already = rec.get("guard").is_some() || rec.get("error").is_some();
        if let (false, Some(pred)) = (already, rec["prediction"].as_str()) {
            if let Some(reason) = guard::check(pred, hyps, Finish::Eos, &markers, &opts) {
                let best = hyps.first().cloned().unwrap_or_default();
                rec["prediction"] = Value::from(best);
                rec["guard"] = Value::from(format!("fallback:{}", reason.name()));
            }
        }
        writeln!(out, "{rec}")?;
    }
    out.flush()?;
    Ok(EXIT_OK)
}

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
use crate::guard::{self, GuardOptions, Margin};
use crate::record;
use crate::style::StyleMode;
use crate::Task;

/// Flags of `neko guard`.
#[derive(Debug, Args)]
pub struct GuardArgs {
    /// The input records the predictions were made from (their hypotheses; ids join them).
    #[arg(long)]
    pub input: PathBuf,

    /// Predictions: JSONL with `id` and `prediction` (`neko correct --no-guard` output).
    pub predictions: PathBuf,

    /// One edit threshold for every task, as `neko correct --guard-max-edit` (default: each
    /// task's own).
    #[arg(long)]
    pub max_edit: Option<f64>,

    /// The margin in nats, as `neko correct --guard-margin` (a number, `off`, or `task`:
    /// each task's own). Applies to lines with a `"margin"` (as `neko correct` writes it);
    /// without a model, others are not scored.
    #[arg(long, default_value = "task", allow_hyphen_values = true)]
    pub margin: Margin,

    /// Task of records whose prediction line and input record name none (default: asr).
    #[arg(long)]
    pub task: Option<Task>,

    /// ASR predictions' casing and punctuation, as `neko correct --style`: `model` (default)
    /// keeps them; `follow` writes them in the hypotheses' convention before the checks (a
    /// line's `"margin"` is taken to score the prediction as the model wrote it, as `neko
    /// correct`'s does).
    #[arg(long, value_enum, default_value = "model")]
    pub style: StyleMode,
}

/// Runs `neko guard`: every prediction line, its ASR prediction in the hypotheses' style
/// (`--style`), replaced by the 1-best and `"guard": "fallback:<reason>"` added where the
/// guard rejects it. A prediction already guarded is kept. Without a model, prompt markers are
/// `###` and ChatML/Llama special tokens; a prediction that hit the token limit is not known
/// here (`neko correct` also checks that).
pub fn run(args: &GuardArgs) -> anyhow::Result<u8> {
    let entries = record::read_path(&args.input)
        .with_context(|| format!("{}: cannot read", args.input.display()))?;
    let inputs: HashMap<String, (Vec<String>, Option<String>)> = entries
        .iter()
        .filter_map(|e| {
            let r = e.record.as_ref().ok()?;
            Some((r.id.to_string(), (r.hypotheses.clone(), r.task.clone())))
        })
        .collect();
    let markers: Vec<String> = ["###", "<|im_start|>", "<|im_end|>", "<s>", "</s>"]
        .map(String::from)
        .to_vec();
    let opts = GuardOptions {
        enabled: true,
        max_edit: args.max_edit,
        margin: args.margin,
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
        let (hyps, input_task) = inputs
            .get(&id)
            .with_context(|| format!("{}: id {id} is not in {}", at(), args.input.display()))?;
        let named = rec["task"]
            .as_str()
            .map(str::to_string)
            .or(input_task.clone());
        let task = match named {
            Some(t) => t
                .parse::<Task>()
                .map_err(|e| anyhow::anyhow!("{}: {e}", at()))?,
            None => args.task.unwrap_or(Task::Asr),
        };
        let already = rec.get("guard").is_some() || rec.get("error").is_some();
        if let (false, Some(pred)) = (already, rec["prediction"].as_str()) {
            let margin = || {
                let m = rec.get("margin")?.as_f64()?;
                guard::check_margin(m, task, &opts)
            };
            let written = pred;
            let pred = args.style.apply(task, hyps, written);
            let verdict = guard::check(written, &pred, hyps, task, Finish::Eos, &markers, &opts);
            match verdict.or_else(margin) {
                Some(reason) => {
                    let best = hyps.first().cloned().unwrap_or_default();
                    rec["prediction"] = Value::from(best);
                    rec["guard"] = Value::from(format!("fallback:{}", reason.name()));
                }
                None => rec["prediction"] = Value::from(pred),
            }
        }
        writeln!(out, "{rec}")?;
    }
    out.flush()?;
    Ok(EXIT_OK)
}

//! How well the learned gate routes by task without a task tag: per task, the share of tokens
//! whose top-k includes the task's expert (`neko info --routing --data FILE`).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use candle_core::Tensor;
use serde::Serialize;

use super::data::{DataSpec, Renderer};
use crate::model::{Logits, Model};
use crate::Task;

/// One task's routing figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TaskRouting {
    pub task: Task,
    pub expert: usize,
    pub records: usize,
    pub tokens: usize,
    /// Share of tokens whose top-k includes the task's expert, averaged over layers.
    pub share: f64,
    /// The same share per MoE layer.
    pub per_layer: Vec<f64>,
    /// Share of tokens whose first choice is the task's expert, averaged over layers. Stricter
    /// than `share`: a freshly upcycled model's tied gate puts experts 0 and 1 in every top-2,
    /// so their `share` starts at 100%.
    pub top1: f64,
}

/// What [`measure`] runs: each record's prompt and reference answer as token ids (the prompt
/// alone for a record without a reference), with its task. `max_records` bounds each file.
pub fn examples(
    model: &Model,
    files: &[DataSpec],
    max_len: usize,
) -> Result<Vec<(Task, Vec<u32>)>> {
    let mut examples = Vec::new();
    // Records left out, each with where and why: said on stderr, as the table counts only
    // what was measured.
    let mut left_out: Vec<String> = Vec::new();
    let renderer = Renderer::new(model);
    for spec in files {
        let entries = crate::record::read_path(&spec.path)
            .with_context(|| format!("cannot read {}", spec.path.display()))?;
        for entry in entries
            .into_iter()
            .take(spec.max_records.unwrap_or(usize::MAX))
        {
            let line = entry.line;
            let r = match entry.record {
                Ok(r) => r,
                Err(e) => {
                    left_out.push(format!("{}:{line}: {e}", spec.path.display()));
                    continue;
                }
            };
            let task = match (&r.task, spec.task) {
                (Some(t), _) => t.parse::<Task>().map_err(|e| {
                    anyhow::anyhow!("{}:{line}: field task: {e}", spec.path.display())
                })?,
                (None, Some(t)) => t,
                (None, None) => anyhow::bail!(
                    "{}: records without a `task` (give --task)",
                    spec.path.display()
                ),
            };
            let ids = match r.reference.as_deref() {
                Some(reference) => renderer
                    .example(task, &r.hypotheses, reference, max_len)
                    .map_err(anyhow::Error::msg)?
                    .map(|e| e.ids),
                // Longer prompts than the model has positions for are left out, as
                // examples are.
                None => Some(
                    renderer
                        .prompt(task, &r.hypotheses)
                        .map_err(anyhow::Error::msg)?,
                )
                .filter(|ids| ids.len() <= max_len),
            };
            match ids {
                Some(ids) => examples.push((task, ids)),
                None => left_out.push(format!(
                    "{}:{line}: longer than the model's {max_len} positions",
                    spec.path.display()
                )),
            }
        }
    }
    if let Some(first) = left_out.first() {
        crate::say!(
            "neko: routing: left out {} record(s) that cannot be measured; the first: {first}",
            left_out.len()
        );
    }
    Ok(examples)
}

/// Runs the [`examples`] (teacher-forced, as training sees them) through the model with
/// learned routing and counts, per MoE layer, the tokens whose top-k holds the task's expert;
/// `progress` counts the examples run.
pub fn measure(
    model: &mut Model,
    examples: Vec<(Task, Vec<u32>)>,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<TaskRouting>> {
    let mut acc: BTreeMap<Task, (usize, usize, Vec<usize>, usize)> = BTreeMap::new();
    for (task, ids) in examples {
        progress.inc(1);
        let expert = model
            .config
            .task_expert(task)
            .with_context(|| format!("the model maps no expert to task `{task}`"))?;
        let decoder = model.decoder.as_mut();
        decoder.reset(ids.len());
        let input = Tensor::new(ids.as_slice(), decoder.device())?.unsqueeze(0)?;
        decoder.forward(&input, &[0], None, Logits::Last)?;
        let routing = decoder.last_routing();
        let entry = acc
            .entry(task)
            .or_insert_with(|| (0, 0, vec![0; routing.len()], 0));
        entry.0 += 1;
        entry.1 += ids.len();
        for (l, r) in routing.iter().enumerate() {
            // Rows are the top-k ids, best first.
            let rows = r.to_vec2::<u32>()?;
            let hits = rows
                .iter()
                .filter(|row| row.contains(&(expert as u32)))
                .count();
            entry.2[l] += hits;
            entry.3 += rows
                .iter()
                .filter(|row| row.first() == Some(&(expert as u32)))
                .count();
        }
    }
    Ok(acc
        .into_iter()
        .map(|(task, (records, tokens, hits, first))| {
            let per_layer: Vec<f64> = hits
                .iter()
                .map(|&h| h as f64 / tokens.max(1) as f64)
                .collect();
            let layers = per_layer.len().max(1) as f64;
            let share = per_layer.iter().sum::<f64>() / layers;
            let top1 = first as f64 / (tokens.max(1) as f64 * layers);
            TaskRouting {
                task,
                expert: model.config.task_expert(task).unwrap_or(0),
                records,
                tokens,
                share,
                per_layer,
                top1,
            }
        })
        .collect())
}

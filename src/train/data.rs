//! Training examples: records rendered with the prompts of `neko correct`, and a seeded,
//! resumable order of single-task micro-batches.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::Model;
use crate::prompt::{self, Template};
use crate::upcycle::SplitMix64;
use crate::Task;

/// One record file of the training (or validation) mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// A JSONL file or HyPoradise JSON array (relative paths: from the working directory).
    pub path: PathBuf,
    /// The task of records without a `task` field (a record's own field wins).
    #[serde(default)]
    pub task: Option<Task>,
    /// Use at most this many records of the file (its first ones).
    #[serde(default)]
    pub max_records: Option<usize>,
    /// What the answer is: the reference (default), or the record's best pick.
    #[serde(default)]
    pub target: Target,
}

/// What a training answer is (`target` of a `[[data]]` file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The reference.
    #[default]
    Reference,
    /// The pick closest to the reference ([`best_pick`]): what `neko correct`'s guard keeps of
    /// an ASR answer (`--guard-nbest pick`), so the model learns to rerank its N-best and to
    /// keep the 1-best unless another hypothesis is better.
    Pick,
}

/// Of the hypotheses the guard lets an ASR answer pick (no more words than the 1-best), the
/// one with the fewest word edits to `reference` (words compared as the guard compares them:
/// without the punctuation around them, lowercased), the earliest on a tie, so the 1-best
/// whenever no other is closer; `None` without hypotheses.
pub fn best_pick<'a>(hypotheses: &'a [String], reference: &str) -> Option<&'a str> {
    let reference = crate::guard::word_keys(reference);
    crate::guard::picks(hypotheses)
        .map(|(i, words)| (crate::metrics::align::distance(&words, &reference), i))
        .min()
        .map(|(_, i)| hypotheses[i].as_str())
}

/// A prompt and its answer as token ids; the loss covers the answer tokens only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    pub task: Task,
    /// Prompt tokens followed by answer tokens.
    pub ids: Vec<u32>,
    /// Where the answer starts in `ids`.
    pub answer_start: usize,
}

impl Example {
    /// Answer tokens (the positions the loss covers).
    pub fn answer_len(&self) -> usize {
        self.ids.len() - self.answer_start
    }
}

/// What reading the data skipped, for the log.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DataReport {
    pub examples: usize,
    pub no_reference: usize,
    pub too_long: usize,
    pub unreadable: usize,
    /// Where the first unreadable record is, and why (`FILE:LINE: message`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_unreadable: Option<String>,
}

/// How answers are built: the reference, then the token inference stops on.
pub struct Renderer<'a> {
    model: &'a Model,
    specials: Vec<String>,
    bos: Option<u32>,
    /// The stop token after the answer: the chat template's end of turn (`<|im_end|>`), else
    /// the model's EOS; `None` ends answers with a newline (`neko correct`'s default stop).
    stop: Option<u32>,
}

impl<'a> Renderer<'a> {
    pub fn new(model: &'a Model) -> Self {
        let stop = match &model.chat {
            Some(c) => model.tokenizer.token_to_id(c.end_of_turn()),
            None => model.config.eos_token_ids.first().copied(),
        };
        Renderer {
            model,
            specials: prompt::special_tokens(&model.tokenizer),
            bos: crate::correct::bos_to_add(model),
            stop,
        }
    }

    /// The prompt ids exactly as `neko correct` builds them.
    pub fn prompt(&self, task: Task, hypotheses: &[String]) -> Result<Vec<u32>, String> {
        prompt::model_prompt_ids(
            self.model,
            &Template::builtin(task),
            hypotheses,
            &self.specials,
            self.bos,
        )
    }

    /// The answer ids: the reference (special tokens neutralised, one line, trimmed) and the
    /// stop. Encoded on its own, as generation continues after the prompt's last token.
    pub fn answer(&self, reference: &str) -> Result<Vec<u32>, String> {
        let text = prompt::neutralise_specials(reference, &self.specials);
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let text = match self.stop {
            Some(_) => text,
            None => text + "\n",
        };
        let mut ids = self
            .model
            .tokenizer
            .encode(text, false)
            .map_err(|e| format!("tokenizer: {e}"))?
            .get_ids()
            .to_vec();
        ids.extend(self.stop);
        Ok(ids)
    }

    /// An example from a record, `None` when it has no reference or runs over `max_len`.
    pub fn example(
        &self,
        task: Task,
        hypotheses: &[String],
        reference: &str,
        max_len: usize,
    ) -> Result<Option<Example>, String> {
        let mut ids = self.prompt(task, hypotheses)?;
        let answer_start = ids.len();
        ids.extend(self.answer(reference)?);
        if ids.len() > max_len {
            return Ok(None);
        }
        Ok(Some(Example {
            task,
            ids,
            answer_start,
        }))
    }
}

/// Reads the examples of a mix of files, in file and record order.
pub fn read_examples(
    renderer: &Renderer,
    specs: &[DataSpec],
    max_len: usize,
    has_expert: &dyn Fn(Task) -> bool,
) -> Result<(Vec<Example>, DataReport)> {
    let mut out = Vec::new();
    let mut report = DataReport::default();
    for spec in specs {
        if is_test_split(&spec.path) {
            bail!(
                "{}: test splits are never used for training or validation",
                spec.path.display()
            );
        }
        let entries = crate::record::read_path(&spec.path)
            .with_context(|| format!("cannot read {}", spec.path.display()))?;
        if entries.is_empty() {
            bail!("{}: no records", spec.path.display());
        }
        let limit = spec.max_records.unwrap_or(usize::MAX);
        for entry in entries.into_iter().take(limit) {
            let record = match entry.record {
                Ok(r) => r,
                Err(e) => {
                    report.unreadable += 1;
                    let field = e.field.map_or(String::new(), |f| format!("field {f}: "));
                    let at = format!(
                        "{}:{}: {field}{}",
                        spec.path.display(),
                        entry.line,
                        e.message
                    );
                    report.first_unreadable.get_or_insert(at);
                    continue;
                }
            };
            let task = match (&record.task, spec.task) {
                (Some(t), _) => t.parse::<Task>().map_err(|e| {
                    anyhow::anyhow!("{} line {}: {e}", spec.path.display(), entry.line)
                })?,
                (None, Some(t)) => t,
                (None, None) => bail!(
                    "{} line {}: no `task` in the record and none given for the file",
                    spec.path.display(),
                    entry.line
                ),
            };
            if !has_expert(task) {
                bail!(
                    "{} line {}: task `{task}` has no expert in the model's task map",
                    spec.path.display(),
                    entry.line
                );
            }
            // An empty reference would teach the model to answer nothing.
            let Some(reference) = record.reference.as_deref().filter(|r| !r.trim().is_empty())
            else {
                report.no_reference += 1;
                continue;
            };
            let answer = match spec.target {
                Target::Reference => reference,
                Target::Pick => best_pick(&record.hypotheses, reference).unwrap_or(reference),
            };
            match renderer
                .example(task, &record.hypotheses, answer, max_len)
                .map_err(|e| anyhow::anyhow!("{}: {e}", spec.path.display()))?
            {
                Some(ex) => out.push(ex),
                None => report.too_long += 1,
            }
        }
    }
    report.examples = out.len();
    Ok((out, report))
}

/// Whether a path names a test split: those are for final evaluation only. A word of the file
/// name (or of a folder's) that starts with `test` (`test_atis.json`, `ocr.testset.jsonl`) or
/// ends with it (`newstest2019`, `devtest`), but for English words that merely end so
/// (`latest-gec.jsonl`, `contest`); a word `heldout`; a folder named `test`. Links are
/// followed too (a link to a test folder is one), as deep as the path given: the folders above
/// it (a checkout under `~/test/`) say nothing of the file.
pub fn is_test_split(path: &Path) -> bool {
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    names_a_test_split(path) || names_a_test_split(&as_deep(&resolved, path))
}

/// The end of `resolved` as deep as `given` names folders: `.` names none, and `..` climbs
/// out of one (`../shared/a.jsonl` names `shared/a.jsonl`, not the folder above).
fn as_deep(resolved: &Path, given: &Path) -> std::path::PathBuf {
    let depth = given.components().fold(0usize, |n, c| match c {
        std::path::Component::CurDir => n,
        std::path::Component::ParentDir => n.saturating_sub(1),
        _ => n + 1,
    });
    let parts: Vec<_> = resolved.components().collect();
    parts[parts.len().saturating_sub(depth)..].iter().collect()
}

/// Words that end in `test` and name no test split.
const NOT_TEST: &[&str] = &[
    "latest", "greatest", "contest", "protest", "attest", "detest",
];

fn names_a_test_split(path: &Path) -> bool {
    let test_word = |w: &str| {
        let w = w.trim_end_matches(|c: char| c.is_ascii_digit());
        w.starts_with("test") || w == "heldout" || (w.ends_with("test") && !NOT_TEST.contains(&w))
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    (name.split(|c: char| !c.is_alphanumeric())).any(test_word)
        || path.components().any(|c| {
            let c = c.as_os_str().to_string_lossy().to_lowercase();
            c == "test" || c == "heldout"
        })
}

/// The order examples are seen in: per epoch, each task's examples are shuffled and cut into
/// micro-batches of one task (so task routing can force one expert per forward pass), then the
/// micro-batches of all tasks are shuffled together. Micro-batch `c` of the run is a pure
/// function of the seed and `c`, so a resumed run sees exactly what an uninterrupted one would.
pub struct Schedule {
    seed: u64,
    batch_size: usize,
    /// Example indices per task.
    by_task: Vec<Vec<usize>>,
    per_epoch: usize,
    cached: Option<(usize, Vec<Vec<usize>>)>,
}

impl Schedule {
    pub fn new(examples: &[Example], batch_size: usize, seed: u64) -> Self {
        let mut by_task: Vec<Vec<usize>> = Vec::new();
        for task in Task::ALL {
            let idx: Vec<usize> = (0..examples.len())
                .filter(|&i| examples[i].task == task)
                .collect();
            if !idx.is_empty() {
                by_task.push(idx);
            }
        }
        let per_epoch = by_task
            .iter()
            .map(|v| v.len().div_ceil(batch_size.max(1)))
            .sum();
        Schedule {
            seed,
            batch_size: batch_size.max(1),
            by_task,
            per_epoch,
            cached: None,
        }
    }

    /// Micro-batches per epoch.
    pub fn per_epoch(&self) -> usize {
        self.per_epoch
    }

    /// The example indices of micro-batch `c` (counted from the start of the run).
    pub fn batch(&mut self, c: usize) -> Vec<usize> {
        let epoch = c / self.per_epoch.max(1);
        if self.cached.as_ref().map(|(e, _)| *e) != Some(epoch) {
            self.cached = Some((epoch, self.epoch(epoch)));
        }
        let (_, batches) = self.cached.as_ref().expect("cached");
        batches[c % self.per_epoch.max(1)].clone()
    }

    fn epoch(&self, epoch: usize) -> Vec<Vec<usize>> {
        let mut rng = SplitMix64(self.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut batches = Vec::with_capacity(self.per_epoch);
        for idx in &self.by_task {
            let mut idx = idx.clone();
            shuffle(&mut idx, &mut rng);
            batches.extend(idx.chunks(self.batch_size).map(<[usize]>::to_vec));
        }
        shuffle(&mut batches, &mut rng);
        batches
    }
}

/// Fisher–Yates.
fn shuffle<T>(v: &mut [T], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(task: Task) -> Example {
        Example {
            task,
            ids: vec![1, 2, 3],
            answer_start: 2,
        }
    }

    #[test]
    fn schedule_is_seeded_single_task_and_covers_each_epoch() {
        let examples: Vec<Example> = (0..10)
            .map(|i| ex(if i % 3 == 0 { Task::Asr } else { Task::Ocr }))
            .collect();
        let mut a = Schedule::new(&examples, 3, 7);
        let mut b = Schedule::new(&examples, 3, 7);
        assert_eq!(a.per_epoch(), 2 + 2);
        let mut seen: Vec<usize> = Vec::new();
        for c in 0..a.per_epoch() {
            let batch = a.batch(c);
            assert_eq!(batch, b.batch(c));
            let task = examples[batch[0]].task;
            assert!(batch.iter().all(|&i| examples[i].task == task));
            seen.extend(batch);
        }
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        // A later epoch is another order; going back gives the same batches again.
        let second: Vec<Vec<usize>> = (4..8).map(|c| a.batch(c)).collect();
        assert_ne!(second, (0..4).map(|c| b.batch(c)).collect::<Vec<_>>());
        assert_eq!(a.batch(6), b.batch(6));
    }

    #[test]
    fn the_best_pick_is_the_closest_hypothesis_and_the_earliest_on_a_tie() {
        let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let nbest = h(&[
            "the cat sad on a mat",
            "the cat sat on a mat",
            "the cat sat on the mat",
        ]);
        // Words as the guard compares them: casing and punctuation do not count.
        assert_eq!(
            best_pick(&nbest, "The cat sat on the mat."),
            Some("the cat sat on the mat")
        );
        assert_eq!(
            best_pick(&nbest[..2], "The cat sat on the mat."),
            Some("the cat sat on a mat")
        );
        // A hypothesis longer than the 1-best is no pick, however close.
        assert_eq!(
            best_pick(
                &h(&["the cat sat", "the cat sat on the mat"]),
                "the cat sat on the mat"
            ),
            Some("the cat sat")
        );
        // A tie keeps the earlier hypothesis: the 1-best unless another is closer.
        assert_eq!(
            best_pick(&h(&["a dog ran", "a dog can"]), "a dog"),
            Some("a dog ran")
        );
        assert_eq!(best_pick(&[], "a dog"), None);
    }

    #[test]
    fn test_splits_are_refused() {
        assert!(is_test_split(Path::new(
            "../shared/data/hyporadise/test/test_atis.json"
        )));
        assert!(is_test_split(Path::new("heldout/synth/ocr.test.jsonl")));
        assert!(!is_test_split(Path::new(
            "../shared/data/synth/ocr.dev.jsonl"
        )));
        assert!(!is_test_split(Path::new("tests/fixtures/records/a.jsonl")));
        // A word of the name that starts with "test", not any "test" inside one.
        assert!(is_test_split(Path::new("data/ocr-testset.jsonl")));
        assert!(!is_test_split(Path::new("data/latest-gec.jsonl")));
        assert!(!is_test_split(Path::new("data/contest.jsonl")));
        for name in [
            "newstest2019.jsonl",
            "devtest.jsonl",
            "mt.heldout.jsonl",
            "test2.json",
        ] {
            assert!(is_test_split(Path::new(name)), "{name}");
        }
        // A link to a test folder is one.
        let tmp = std::env::temp_dir().join(format!("neko-split-{}", std::process::id()));
        let test = tmp.join("test");
        std::fs::create_dir_all(&test).unwrap();
        std::fs::write(test.join("x.jsonl"), "").unwrap();
        std::os::unix::fs::symlink(&test, tmp.join("notatest")).unwrap();
        assert!(is_test_split(&tmp.join("notatest").join("x.jsonl")));
        let _ = std::fs::remove_dir_all(&tmp);
        // The folders above a relative path's own say nothing, `./` and `../` written or not
        // (a checkout in ~/test/ refused every shipped config).
        let resolved = Path::new("/home/u/test/shared/data/synth/asr.train.jsonl");
        let given = Path::new("../shared/data/synth/asr.train.jsonl");
        assert_eq!(
            as_deep(resolved, given),
            Path::new("shared/data/synth/asr.train.jsonl")
        );
        let resolved = Path::new("/home/u/test/train.jsonl");
        assert_eq!(
            as_deep(resolved, Path::new("./train.jsonl")),
            Path::new("train.jsonl")
        );
        assert!(!names_a_test_split(&as_deep(
            resolved,
            Path::new("./train.jsonl")
        )));
    }
}

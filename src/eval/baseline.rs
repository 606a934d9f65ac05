//! Comparison with a baseline report (`neko eval --baseline scores.json`), for CI gates.
//!
//! Each file of the current run is matched to the baseline's file with the same path, or else
//! the only one with the same file name, in the baseline run with the same normaliser and task
//! setting. For the whole-file scores, each metric both sides have is compared on its "system"
//! value: the corrected score when the file has predictions, the 1-best otherwise. A metric
//! regresses when it is worse by more than `max_regression` points (absolute, in the metric's
//! own percentage points, as printed to two decimals: WER 8.40 → 8.61 is 0.21 points worse). The number of scored records
//! must be the baseline's: a file cut short (a correction run that died) or scored on other
//! data is not a like-for-like score, however good its rates. A comparison that compares
//! nothing fails the gate ([`Comparison::nothing_compared`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{FileReport, GroupReport, Pair, Report, Run, Scored};
use crate::metrics::bleu::Smooth;
use crate::output::signature_fields_changed;

/// Why a comparison could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaselineError {
    /// The baseline was scored with other settings.
    #[error("the baseline has no run with normaliser {normalizer} and task {task} (it has: {available})")]
    NoMatchingRun {
        /// This run's normaliser.
        normalizer: String,
        /// This run's forced task.
        task: String,
        /// What the baseline has.
        available: String,
    },
    /// A file was scored with another normaliser than its baseline (its records' tasks
    /// differ, say): the numbers do not compare.
    #[error("{file}: scored with normaliser {now}, its baseline with {then}: not comparable")]
    OtherNormalizer {
        file: String,
        now: String,
        then: String,
    },
    /// A metric was computed with other settings than in the baseline (BLEU's tokeniser, case
    /// or smoothing, chrF's word order, TER's options): its numbers do not compare.
    #[error(
        "{metric} scored with {now}, its baseline with {then}: not comparable ({flag} compares)"
    )]
    OtherSetting {
        metric: &'static str,
        now: String,
        then: String,
        flag: String,
    },
    /// A metric was scored against another number of references per record than in the
    /// baseline (a second `--ref` moves BLEU by points): its numbers do not compare.
    #[error("{metric} scored against nrefs:{now} per record, its baseline against nrefs:{then}: not comparable (score both with the same references)")]
    OtherReferences {
        metric: String,
        now: String,
        then: String,
    },
}

/// The outcome of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The baseline file.
    pub baseline: String,
    /// The tolerance, in points.
    pub max_regression: f64,
    /// Every metric compared.
    pub checks: Vec<Check>,
    /// How many checks regressed, plus the baseline files this run lacks.
    pub regressions: u64,
    /// Files of this run that the baseline does not have (not compared).
    pub unmatched: Vec<String>,
    /// Files of the baseline that this run does not have (each a regression).
    #[serde(default)]
    pub missing: Vec<String>,
    /// `FILE: metric` for each metric the baseline measured on a file and this run did not
    /// (each a regression: records that lost their `task` drop BLEU, chrF and TER).
    #[serde(default)]
    pub missing_metrics: Vec<String>,
    /// Files corrected by a run signed otherwise than their baseline's (another model or other
    /// decoding settings): noted, not a regression, as a gate compares what the run gives.
    #[serde(default)]
    pub changed: Vec<Changed>,
    /// The baseline's normalisers this run did not score with: their numbers went unchecked.
    #[serde(default)]
    pub unchecked_normalizers: Vec<String>,
    /// `then → now` when another neko version scored the baseline: a version that moves
    /// scores is raised, so a difference is said, though only the scores gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scored_by: Option<String>,
}

/// A file whose `neko correct` signature differs from its baseline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Changed {
    /// The file (as given in this run).
    pub file: String,
    /// The signature's fields that differ, `baseline → current` (`name:value`, or `none`
    /// where a side has no signature file).
    pub fields: Vec<String>,
}

impl Comparison {
    /// Whether no check was made at all: a gate that compared nothing has not passed.
    pub fn nothing_compared(&self) -> bool {
        self.checks.is_empty()
    }
}

/// One metric of one file, now and in the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The run's normaliser (`None`: each task's default).
    pub normalizer: Option<String>,
    /// The file (as given in this run).
    pub file: String,
    /// `records` (scored records), `wer`, `cer`, `bleu`, `chrf`, `ter`, `gleu` or `f05`.
    pub metric: String,
    /// The baseline's value.
    pub baseline: f64,
    /// This run's value.
    pub current: f64,
    /// How much worse this run is, in points (negative: better).
    pub worse_by: f64,
    /// Whether `worse_by` exceeds the tolerance.
    pub regressed: bool,
}

/// Compares `current` with `baseline`.
pub fn compare(
    current: &Report,
    baseline: &Report,
    baseline_path: &str,
    max_regression: f64,
) -> Result<Comparison, BaselineError> {
    let mut checks = Vec::new();
    let mut unmatched = Vec::new();
    let mut missing = Vec::new();
    let mut missing_metrics = Vec::new();
    let mut changed: Vec<Changed> = Vec::new();
    let mut used_runs = Vec::new();
    for run in &current.runs {
        let base = matching_run(run, baseline)?;
        used_runs.push(base);
        same_settings(run, base)?;
        let mut matched = Vec::new();
        for file in &run.files {
            match matching_file(file, run, base) {
                Some(b) => {
                    matched.push(b.path.as_str());
                    checks.extend(compare_files(run, file, b, max_regression)?);
                    for metric in unmeasured(file, b) {
                        let m = format!("{}: {metric}", file.path);
                        if !missing_metrics.contains(&m) {
                            missing_metrics.push(m);
                        }
                    }
                    let fields = signature_change(&b.correction, &file.correction);
                    if !fields.is_empty() && !changed.iter().any(|c| c.file == file.path) {
                        changed.push(Changed {
                            file: file.path.clone(),
                            fields,
                        });
                    }
                }
                None => unmatched.push(file.path.clone()),
            }
        }
        // Once each, whatever the number of normalisers.
        for b in &base.files {
            if !matched.contains(&b.path.as_str()) && !missing.contains(&b.path) {
                missing.push(b.path.clone());
            }
        }
        // The signatures' reference counts are the run's, not a file's: they compare only
        // when both runs scored the same files (a file added or missing is said otherwise).
        if matched.len() == run.files.len() && matched.len() == base.files.len() {
            same_references(run, base)?;
        }
    }
    // A baseline file this run lacks (renamed, or its job never wrote it) fails the gate too:
    // it would otherwise drop out of it unseen.
    let regressions = (checks.iter().filter(|c| c.regressed).count()
        + missing.len()
        + missing_metrics.len()) as u64;
    let unchecked_normalizers = (baseline.runs.iter())
        .filter(|b| !used_runs.iter().any(|u| std::ptr::eq(*u, *b)))
        .map(|b| b.normalizer_label.clone())
        .collect();
    Ok(Comparison {
        baseline: baseline_path.to_string(),
        max_regression,
        checks,
        regressions,
        unmatched,
        missing,
        missing_metrics,
        changed,
        unchecked_normalizers,
        scored_by: (baseline.neko != current.neko)
            .then(|| format!("neko {} → {}", baseline.neko, current.neko)),
    })
}

/// Each metric's `nrefs` field, from a run's signature lines (`bleu|norm:…|nrefs:2|…`).
fn references_per_metric(run: &Run) -> Vec<(&str, &str)> {
    (run.signatures.iter())
        .filter_map(|s| {
            let metric = s.split('|').next()?;
            let nrefs = s.split('|').find_map(|f| f.strip_prefix("nrefs:"))?;
            Some((metric, nrefs))
        })
        .collect()
}

/// Every metric both runs have, scored against as many references per record.
fn same_references(run: &Run, base: &Run) -> Result<(), BaselineError> {
    let then = references_per_metric(base);
    for (metric, now) in references_per_metric(run) {
        if let Some((_, was)) = then.iter().find(|(m, _)| *m == metric) {
            if *was != now {
                return Err(BaselineError::OtherReferences {
                    metric: metric.to_string(),
                    now: now.to_string(),
                    then: was.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// The whole-file metrics `base` has and `file` lacks (none when either scored no record):
/// a gated metric must not drop out of the gate unseen.
fn unmeasured<'a>(file: &FileReport, base: &'a FileReport) -> Vec<&'a str> {
    let (Some(now), Some(then)) = (file.groups.first(), base.groups.first()) else {
        return Vec::new();
    };
    if now.records == 0 || then.records == 0 {
        return Vec::new();
    }
    let measured: Vec<&str> = system_values(now).iter().map(|(m, _, _)| *m).collect();
    let mut lacking: Vec<&str> = (system_values(then).into_iter())
        .map(|(m, _, _)| m)
        .filter(|m| !measured.contains(m))
        .collect();
    // A baseline of corrected output against a file with no predictions would compare its
    // 1-best with the baseline's corrected scores: a skipped correction step passes whenever
    // the correction gained less than the tolerance.
    if then.predictions > 0 && now.predictions == 0 {
        lacking
            .push("predictions (the baseline's file had them; its scores are of corrected text)");
    }
    lacking
}

/// The signature fields that differ, `then → now`, or that one side has no signature.
fn signature_change(then: &Option<String>, now: &Option<String>) -> Vec<String> {
    match (then, now) {
        (None, None) => Vec::new(),
        (Some(a), Some(b)) => signature_fields_changed(a, b),
        (a, b) => {
            let side = |s: &Option<String>| s.as_ref().map_or("none", |_| "signed");
            vec![format!("signature: {} → {}", side(a), side(b))]
        }
    }
}

/// BLEU, chrF and TER, where both runs have them, computed the same way.
fn same_settings(run: &Run, base: &Run) -> Result<(), BaselineError> {
    // BLEU, chrF and TER come together (ST/MT records).
    let translated =
        |r: &Run| (r.files.iter()).any(|f| f.groups.first().is_some_and(|g| g.bleu.is_some()));
    if !(translated(run) && translated(base)) {
        return Ok(());
    }
    let value = |s: Smooth| match s {
        Smooth::Floor(v) | Smooth::AddK(v) => Some(v.to_string()),
        _ => None,
    };
    // The smoothing value in full: the signature's two decimals (sacrebleu's) would take
    // 0.004 and 0.001 for one setting.
    let bleu = |r: &Run| {
        let case = if r.bleu_lowercase { "lc" } else { "mixed" };
        let smooth = r.bleu_smooth.method();
        let smooth = value(r.bleu_smooth).map_or(smooth.into(), |v| format!("{smooth}[{v}]"));
        format!("case:{case}|tok:{}|smooth:{smooth}", r.bleu_tokenize)
    };
    if bleu(run) != bleu(base) {
        let mut to = Flags::default();
        to.valued("--tokenize", &base.bleu_tokenize, &run.bleu_tokenize);
        to.switch("--lowercase", base.bleu_lowercase, run.bleu_lowercase);
        let (then, now) = (base.bleu_smooth, run.bleu_smooth);
        to.valued("--smooth-method", then.method(), now.method());
        match (value(then), value(now)) {
            (Some(a), b) => to.valued("--smooth-value", &a, &b.unwrap_or_default()),
            (None, b) => to.switch("--smooth-value", false, b.is_some()),
        }
        return Err(BaselineError::OtherSetting {
            metric: "BLEU",
            now: bleu(run),
            then: bleu(base),
            flag: to.0.join(", "),
        });
    }
    let (now, then) = (run.chrf_options(), base.chrf_options());
    if now != then {
        let mut to = Flags::default();
        let n = |n: usize| n.to_string();
        to.valued("--chrf-char-order", &n(then.char_order), &n(now.char_order));
        to.valued("--chrf-word-order", &n(then.word_order), &n(now.word_order));
        to.valued("--chrf-beta", &then.beta.to_string(), &now.beta.to_string());
        to.switch("--chrf-lowercase", then.lowercase, now.lowercase);
        to.switch("--chrf-whitespace", then.whitespace, now.whitespace);
        to.switch(
            "--chrf-eps-smoothing",
            then.eps_smoothing,
            now.eps_smoothing,
        );
        return Err(BaselineError::OtherSetting {
            metric: "chrF",
            now: now.signature(),
            then: then.signature(),
            flag: to.0.join(", "),
        });
    }
    let (now, then) = (run.ter, base.ter);
    if now != then {
        let mut to = Flags::default();
        to.switch(
            "--ter-case-sensitive",
            then.case_sensitive,
            now.case_sensitive,
        );
        to.switch("--ter-normalized", then.normalized, now.normalized);
        to.switch("--ter-no-punct", then.no_punct, now.no_punct);
        to.switch("--ter-asian-support", then.asian_support, now.asian_support);
        return Err(BaselineError::OtherSetting {
            metric: "TER",
            now: now.to_string(),
            then: then.to_string(),
            flag: to.0.join(", "),
        });
    }
    Ok(())
}

/// What to change to score as the baseline did: each setting that differs, as its flag with
/// the baseline's value, or a switch to add or to leave out.
#[derive(Default)]
struct Flags(Vec<String>);

impl Flags {
    fn valued(&mut self, flag: &str, then: &str, now: &str) {
        if then != now {
            self.0.push(format!("{flag} {then}"));
        }
    }

    fn switch(&mut self, flag: &str, then: bool, now: bool) {
        match (then, now) {
            (true, false) => self.0.push(flag.to_string()),
            (false, true) => self.0.push(format!("without {flag}")),
            _ => {}
        }
    }
}

fn matching_run<'b>(run: &Run, baseline: &'b Report) -> Result<&'b Run, BaselineError> {
    let label = |n: &Option<String>| n.clone().unwrap_or_else(|| "default".to_string());
    // The same normaliser setting, or else one that applied the same normalisers (the default
    // and the same normaliser named).
    let runs = || baseline.runs.iter().filter(|b| b.task == run.task);
    runs()
        .find(|b| b.normalizer == run.normalizer)
        .or_else(|| runs().find(|b| b.normalizer_label == run.normalizer_label))
        .ok_or_else(|| BaselineError::NoMatchingRun {
            normalizer: label(&run.normalizer),
            task: run
                .task
                .map_or("(per record)".to_string(), |t| t.to_string()),
            available: (baseline.runs.iter())
                .map(|b| {
                    let task = b.task.map_or("(per record)".to_string(), |t| t.to_string());
                    format!("normaliser {} and task {task}", label(&b.normalizer))
                })
                .collect::<Vec<_>>()
                .join("; "),
        })
}

fn file_name(p: &str) -> Option<&str> {
    Path::new(p).file_name().and_then(|n| n.to_str())
}

/// The baseline file of `file`: the one with its path, or else the only one with its file
/// name, when no other file of this `run` has that name or that baseline file's path (one
/// baseline file is compared with one file of the run).
fn matching_file<'b>(file: &FileReport, run: &Run, base: &'b Run) -> Option<&'b FileReport> {
    if let Some(f) = base.files.iter().find(|b| b.path == file.path) {
        return Some(f);
    }
    let name = file_name(&file.path)?;
    let named = |files: &'b [FileReport]| {
        let mut same = files
            .iter()
            .filter(move |b| file_name(&b.path) == Some(name));
        match (same.next(), same.next()) {
            (Some(f), None) => Some(f),
            _ => None,
        }
    };
    let unique_here = run
        .files
        .iter()
        .filter(|f| file_name(&f.path) == Some(name))
        .count()
        == 1;
    named(&base.files).filter(|b| unique_here && !run.files.iter().any(|f| f.path == b.path))
}

/// `x` rounded to two decimals as the reports print it: through the same formatting, which
/// rounds an exact tie to even (0.125 prints 0.12; `round` would make it 0.13).
fn cents(x: f64) -> f64 {
    format!("{x:.2}").parse().unwrap_or(x)
}

/// The corrected score when there is one, else the 1-best's.
fn score<S>(p: &Option<Pair<Scored<S>>>) -> Option<f64> {
    p.as_ref()
        .map(|p| p.corrected.as_ref().unwrap_or(&p.one_best).score)
}

/// The whole-file metrics of a report, as (name, value, lower is better).
fn system_values(g: &GroupReport) -> Vec<(&'static str, f64, bool)> {
    let mut v = Vec::new();
    if let Some(w) = &g.wer {
        v.push(("wer", w.corrected.unwrap_or(w.one_best).rate, true));
    }
    if let Some(c) = &g.cer {
        v.push(("cer", c.corrected.unwrap_or(c.one_best).rate, true));
    }
    if let Some(s) = score(&g.bleu) {
        v.push(("bleu", s, false));
    }
    if let Some(s) = score(&g.chrf) {
        v.push(("chrf", s, false));
    }
    if let Some(s) = score(&g.ter) {
        v.push(("ter", s, true));
    }
    if let Some(s) = score(&g.gleu) {
        v.push(("gleu", s, false));
    }
    if let Some(e) = &g.edits {
        v.push(("f05", e.f05, false));
    }
    v
}

fn compare_files(
    run: &Run,
    file: &FileReport,
    base: &FileReport,
    tol: f64,
) -> Result<Vec<Check>, BaselineError> {
    let (Some(now), Some(then)) = (file.groups.first(), base.groups.first()) else {
        return Ok(Vec::new());
    };
    // A file without a scored record has nothing to compare, whatever it names.
    if now.records > 0 && then.records > 0 && now.normalizer != then.normalizer {
        return Err(BaselineError::OtherNormalizer {
            file: file.path.clone(),
            now: now.normalizer.clone(),
            then: then.normalizer.clone(),
        });
    }
    let check = |metric: &str, baseline: f64, current: f64, worse_by: f64, regressed| Check {
        normalizer: run.normalizer.clone(),
        file: file.path.clone(),
        metric: metric.to_string(),
        baseline,
        current,
        worse_by,
        regressed,
    };
    let (n, was) = (now.records as f64, then.records as f64);
    let mut checks = vec![check("records", was, n, (n - was).abs(), n != was)];
    if now.records == 0 {
        // The rates of no record are no score.
        return Ok(checks);
    }
    let before = system_values(then);
    checks.extend(
        system_values(now)
            .into_iter()
            .filter_map(|(metric, current, lower_better)| {
                let (_, baseline, _) = before.iter().find(|(m, _, _)| *m == metric)?;
                // Compared as printed, to two decimals: 8.40 → 8.60 is 0.20 worse however
                // the unrounded rates fall.
                let (now, then) = (cents(current), cents(*baseline));
                let worse_by = if lower_better { now - then } else { then - now };
                // A hair of slack so that a value re-read from JSON equals itself.
                let regressed = worse_by > tol + 1e-9;
                Some(check(metric, *baseline, current, worse_by, regressed))
            }),
    );
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gate compares what the table shows: a tie at the third decimal rounds as printed.
    #[test]
    fn cents_are_the_printed_scores() {
        for x in [0.125, 0.115, 1.005, 12.345, 8.875, 0.0, 99.995, 33.333_333] {
            assert_eq!(format!("{:.2}", cents(x)), format!("{x:.2}"), "{x}");
        }
        assert_eq!(cents(0.125), 0.12);
    }
}

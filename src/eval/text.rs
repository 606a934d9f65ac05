//! The plain-text report: one WER/CER table per run (files, then their groups indented), a
//! BLEU/chrF/TER table and a GEC table when such records exist, the records left out and why, the
//! baseline comparison, and the signature lines last.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;

use super::baseline::Comparison;
use super::bootstrap::Spread;
use super::{FileReport, GroupReport, Report, Run};

/// How many records to name per file before pointing to `--json`.
const MAX_NAMED: usize = 20;

/// Renders the whole report.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for (i, run) in report.runs.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_run(run, &mut out);
    }
    if !report.errors.is_empty() {
        out.push_str("\nfiles not read:\n");
        for e in &report.errors {
            let _ = writeln!(out, "  {}: {}", e.path, e.message);
        }
    }
    if let Some(c) = &report.comparison {
        render_comparison(c, &mut out);
    }
    out.push('\n');
    for run in &report.runs {
        for s in &run.signatures {
            let _ = writeln!(out, "{s}");
        }
    }
    out
}

fn render_run(run: &Run, out: &mut String) {
    let labels = Labels::new(&run.files);
    let norm = match &run.normalizer {
        Some(n) => n.clone(),
        None if run.normalizer_label == super::signature::NO_RECORD_SCORED => {
            "- (no record scored)".to_string()
        }
        None => format!("{} (task default)", run.normalizer_label),
    };
    let assumed: u64 = run.files.iter().map(|f| f.assumed_task).sum();
    let task = match run.task {
        Some(t) => format!("task {t} (forced)"),
        None if assumed > 0 => format!("task from records, asr for {} without one", count(assumed)),
        None => "task from records".to_string(),
    };
    let _ = writeln!(out, "normaliser {norm} · {task} · groups {}", run.group_by);
    out.push('\n');
    wer_table(run, &labels).render(out);
    let _ = writeln!(out, "{}", legend(run));
    if run
        .files
        .iter()
        .flat_map(|f| &f.groups)
        .any(|g| g.bleu.is_some())
    {
        out.push('\n');
        translation_table(run, &labels).render(out);
    }
    if run
        .files
        .iter()
        .flat_map(|f| &f.groups)
        .any(|g| g.gleu.is_some())
    {
        out.push('\n');
        gec_table(run, &labels).render(out);
    }
    if let Some(bs) = super::first_significance(&run.files) {
        let _ = match &bs.against {
            None => writeln!(
                out,
                "\npaired bootstrap, predictions against their 1-best ({} resamples): the change, \
                 its 95% interval, and the share of resamples in which the predictions are better",
                count(bs.resamples)
            ),
            Some(base) => writeln!(
                out,
                "\npaired bootstrap, each file against {base}, record by record ({} resamples): \
                 the change, its 95% interval, and the share of resamples in which the file is better",
                count(bs.resamples)
            ),
        };
        if let Some(n) = bs.ar_trials {
            let _ = writeln!(
                out,
                "p (AR): paired approximate randomization over {} trials, the share of random \
                 swaps of the two sides' outputs whose difference is at least this one",
                count(n)
            );
        }
        significance_table(run, &labels).render(out);
    }
    if let Some(c) = super::first_confidence(&run.files) {
        let _ = writeln!(
            out,
            "\n95% confidence, each score over {} resamples of its records: the mean of the \
             resampled scores ± half the width of their central 95% (sacrebleu's --confidence)",
            count(c.resamples)
        );
        confidence_table(run, &labels).render(out);
    }
    notes(run, &labels, out);
}

/// Row labels: file names when they are unique, else paths as given; groups indented.
struct Labels {
    short: bool,
}

impl Labels {
    fn new(files: &[FileReport]) -> Self {
        let names: Vec<Option<&std::ffi::OsStr>> = files
            .iter()
            .map(|f| Path::new(&f.path).file_name())
            .collect();
        let unique: BTreeSet<_> = names.iter().collect();
        Labels {
            short: unique.len() == names.len() && names.iter().all(Option::is_some),
        }
    }

    fn file<'a>(&self, f: &'a FileReport) -> &'a str {
        if self.short {
            Path::new(&f.path)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(&f.path)
        } else {
            &f.path
        }
    }

    fn row(&self, f: &FileReport, g: &GroupReport, first: bool) -> String {
        if first {
            self.file(f).to_string()
        } else {
            format!("  {}", g.name)
        }
    }
}

fn has_predictions(run: &Run) -> bool {
    run.files
        .iter()
        .filter_map(|f| f.groups.first())
        .any(|g| g.wer.as_ref().is_some_and(|w| w.corrected.is_some()))
}

fn legend(run: &Run) -> String {
    let raw_too = (run.files.iter())
        .any(|f| (f.groups.iter()).any(|g| g.wer.as_ref().is_some_and(|w| w.corrected.is_none())));
    let sdi = match (has_predictions(run), raw_too) {
        (true, true) => "corrected (of the 1-best where a file has no predictions)",
        (true, false) => "corrected",
        (false, _) => "1-best",
    };
    let no_nbest = run
        .files
        .iter()
        .flat_map(|f| &f.groups)
        .any(|g| g.wer.as_ref().is_some_and(|w| w.oracle_nbest.is_none()));
    let oracles = if no_nbest {
        " (- where records carry only their 1-best: plain lines, `best` fields, one hypothesis each)"
    } else {
        ""
    };
    format!(
        "WER/CER in %: corpus (errors / reference words), utt = mean per record; N-best = best \
         hypothesis per record; comp. = compositional oracle{oracles}; S D I of the {sdi}"
    )
}

fn wer_table(run: &Run, labels: &Labels) -> Table {
    let corrected = has_predictions(run);
    let skipped = run.files.iter().any(|f| !f.unscored.is_empty());
    let mut header = vec!["file", "records"];
    if skipped {
        header.push("unscored");
    }
    header.extend(["ref words", "1-best", "utt", "N-best", "comp."]);
    if corrected {
        header.extend(["corrected", "utt", "rel.red."]);
    }
    header.push("CER");
    if corrected {
        header.push("corr.CER");
    }
    header.extend(["S", "D", "I"]);
    let mut t = Table::new(&header);
    for f in &run.files {
        for (i, g) in f.groups.iter().enumerate() {
            let mut row = vec![labels.row(f, g, i == 0), count(g.records)];
            if skipped {
                row.push(if i == 0 {
                    count(f.unscored.len() as u64)
                } else {
                    String::new()
                });
            }
            row.push(count(g.reference_words));
            // No record, no rate: a row of dashes (0.00 would claim a perfect score for
            // nothing). Records with empty references have one (jiwer's: 100 × insertions).
            let (Some(w), Some(cer)) = (&g.wer, &g.cer) else {
                let dashes = 4 + if corrected { 5 } else { 1 } + 3;
                row.extend(std::iter::repeat_n("-".to_string(), dashes));
                t.push(row);
                continue;
            };
            let rate = |r: Option<super::Rate>| r.map_or("-".into(), |r| pct(r.rate));
            row.extend([
                pct(w.one_best.rate),
                opt_pct(w.one_best.per_utterance),
                rate(w.oracle_nbest),
                rate(w.oracle_compositional),
            ]);
            if corrected {
                row.push(rate(w.corrected));
                row.push(opt_pct(w.corrected.and_then(|c| c.per_utterance)));
                row.push(opt_pct(w.relative_reduction));
            }
            row.push(pct(cer.one_best.rate));
            if corrected {
                row.push(rate(cer.corrected));
            }
            // A file without predictions in a run with some: its 1-best's (the legend says).
            let r = w.corrected.filter(|_| corrected).unwrap_or(w.one_best);
            row.extend([r.substitutions, r.deletions, r.insertions].map(count));
            t.push(row);
        }
    }
    t
}

fn translation_table(run: &Run, labels: &Labels) -> Table {
    let corrected = run
        .files
        .iter()
        .flat_map(|f| &f.groups)
        .any(|g| g.bleu.as_ref().is_some_and(|b| b.corrected.is_some()));
    let chrf = chrf_name(run);
    let corr_chrf = format!("corr.{chrf}");
    let mut header = vec!["file", "records", "BLEU", &chrf, "TER"];
    if corrected {
        header.extend(["corr.BLEU", &corr_chrf, "corr.TER"]);
    }
    let mut t = Table::new(&header);
    for f in &run.files {
        for (i, g) in f.groups.iter().enumerate() {
            let (Some(b), Some(c), Some(ter)) = (&g.bleu, &g.chrf, &g.ter) else {
                continue;
            };
            let mut row = vec![
                labels.row(f, g, i == 0),
                count(b.one_best.records),
                pct(b.one_best.score),
                pct(c.one_best.score),
                pct(ter.one_best.score),
            ];
            if corrected {
                row.push(b.corrected.as_ref().map_or("-".into(), |s| pct(s.score)));
                row.push(c.corrected.as_ref().map_or("-".into(), |s| pct(s.score)));
                row.push(ter.corrected.as_ref().map_or("-".into(), |s| pct(s.score)));
            }
            t.push(row);
        }
    }
    t
}

/// chrF, or chrF++ with word bigrams (a `+` per word order, as sacrebleu), with its beta when
/// not 2.
fn chrf_name(run: &Run) -> String {
    run.chrf_options().name()
}

fn gec_table(run: &Run, labels: &Labels) -> Table {
    let corrected = run
        .files
        .iter()
        .flat_map(|f| &f.groups)
        .any(|g| g.edits.is_some());
    let mut header = vec!["file", "records", "GLEU"];
    if corrected {
        header.extend(["corr.GLEU", "P", "R", "F0.5"]);
    }
    let mut t = Table::new(&header);
    for f in &run.files {
        for (i, g) in f.groups.iter().enumerate() {
            let Some(gl) = &g.gleu else { continue };
            let mut row = vec![
                labels.row(f, g, i == 0),
                count(gl.one_best.records),
                pct(gl.one_best.score),
            ];
            if corrected {
                row.push(gl.corrected.as_ref().map_or("-".into(), |s| pct(s.score)));
                match &g.edits {
                    Some(e) => row.extend([e.precision, e.recall, e.f05].map(pct)),
                    None => row.extend(["-", "-", "-"].map(String::from)),
                }
            }
            t.push(row);
        }
    }
    t
}

fn significance_table(run: &Run, labels: &Labels) -> Table {
    let ar = super::first_significance(&run.files).is_some_and(|s| s.ar_trials.is_some());
    let mut header = vec!["file", "metric", "change", "95% interval", "P(better)"];
    if ar {
        header.push("p (AR)");
    }
    let mut t = Table::new(&header);
    let chrf = chrf_name(run);
    for f in &run.files {
        for (i, g) in f.groups.iter().enumerate() {
            let Some(s) = &g.significance else { continue };
            let metrics = [
                ("WER", Some(s.wer)),
                ("CER", Some(s.cer)),
                ("BLEU", s.bleu),
                (chrf.as_str(), s.chrf),
                ("TER", s.ter),
                ("GLEU", s.gleu),
            ];
            for (k, (name, iv)) in metrics.iter().enumerate() {
                let Some(iv) = iv else { continue };
                let mut row = vec![
                    if k == 0 {
                        labels.row(f, g, i == 0)
                    } else {
                        String::new()
                    },
                    name.to_string(),
                    format!("{:+.2}", iv.delta),
                    format!("[{:+.2}, {:+.2}]", iv.low, iv.high),
                    format!("{:.3}", iv.p_better),
                ];
                if ar {
                    row.push(iv.p_ar.map_or("-".to_string(), p_value));
                }
                t.push(row);
            }
        }
    }
    t
}

fn confidence_table(run: &Run, labels: &Labels) -> Table {
    let with_predictions = (run.files.iter().flat_map(|f| &f.groups))
        .filter_map(|g| g.confidence.as_ref())
        .any(|c| c.wer.corrected.is_some());
    let mut header = vec!["file", "metric", "1-best"];
    if with_predictions {
        header.push("corrected");
    }
    let mut t = Table::new(&header);
    let chrf = chrf_name(run);
    let cell = |s: &Spread| format!("μ {:.2} ± {:.2}", s.mean, s.ci);
    for f in &run.files {
        for (i, g) in f.groups.iter().enumerate() {
            let Some(c) = &g.confidence else { continue };
            let metrics = [
                ("WER", Some(c.wer)),
                ("CER", Some(c.cer)),
                ("BLEU", c.bleu),
                (chrf.as_str(), c.chrf),
                ("TER", c.ter),
                ("GLEU", c.gleu),
            ];
            let present = metrics.iter().filter_map(|(n, s)| Some((n, s.as_ref()?)));
            for (k, (name, s)) in present.enumerate() {
                let label = if k == 0 {
                    labels.row(f, g, i == 0)
                } else {
                    String::new()
                };
                let mut row = vec![label, name.to_string(), cell(&s.one_best)];
                if with_predictions {
                    row.push(s.corrected.as_ref().map_or("-".into(), cell));
                }
                t.push(row);
            }
        }
    }
    t
}

fn notes(run: &Run, labels: &Labels, out: &mut String) {
    for f in &run.files {
        let name = labels.file(f);
        list(out, name, "not scored", &f.unscored);
        list(
            out,
            name,
            "scored with their 1-best (no prediction, or a failed correction)",
            &f.fallbacks,
        );
        guard_rate(out, name, f);
        changes(out, name, f);
    }
}

/// How many records the predictions changed, and which way their word errors went.
fn changes(out: &mut String, name: &str, f: &super::FileReport) {
    let Some(all) = f.groups.first() else { return };
    let Some(c) = all.changes else { return };
    let _ = writeln!(
        out,
        "\n{name}: the predictions changed {} of {} records: {} with fewer word errors, {} with more, {} with as many",
        c.changed, all.records, c.better, c.worse, c.same
    );
}

/// How often the over-correction guard kept the 1-best, and why.
fn guard_rate(out: &mut String, name: &str, f: &super::FileReport) {
    let total: u64 = f.guard.values().sum();
    if total == 0 {
        return;
    }
    let reasons: Vec<String> = f.guard.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let _ = writeln!(
        out,
        "\n{name}: guard kept the 1-best for {total} of {} records ({:.1}%): {}",
        f.entries,
        100.0 * total as f64 / f.entries.max(1) as f64,
        reasons.join(", ")
    );
}

fn list(out: &mut String, name: &str, what: &str, items: &[super::Unscored]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{name}: {} record(s) {what}:", items.len());
    for u in items.iter().take(MAX_NAMED) {
        let _ = writeln!(out, "  line {} (id {}): {}", u.line, u.id, u.reason);
    }
    if items.len() > MAX_NAMED {
        let _ = writeln!(
            out,
            "  ... and {} more (all in --json)",
            items.len() - MAX_NAMED
        );
    }
}

fn render_comparison(c: &Comparison, out: &mut String) {
    let _ = writeln!(
        out,
        "\nbaseline {} (max regression {} points)",
        c.baseline, c.max_regression
    );
    // Runs under several normalisers compare the same files once each: say which is which.
    let several = (c.checks.iter()).any(|k| k.normalizer != c.checks[0].normalizer);
    let mut t = match several {
        true => Table::new(&[
            "file",
            "normaliser",
            "metric",
            "baseline",
            "current",
            "worse by",
            "",
        ]),
        false => Table::new(&["file", "metric", "baseline", "current", "worse by", ""]),
    };
    for k in &c.checks {
        let (baseline, current, worse_by) = if k.metric == "records" {
            let n = |x: f64| format!("{x:.0}");
            (n(k.baseline), n(k.current), format!("{:.0}", k.worse_by))
        } else {
            (
                pct(k.baseline),
                pct(k.current),
                format!("{:+.2}", k.worse_by),
            )
        };
        let mut row = vec![k.file.clone()];
        if several {
            row.push(k.normalizer.clone().unwrap_or_else(|| "default".into()));
        }
        row.extend([
            k.metric.clone(),
            baseline,
            current,
            worse_by,
            if k.regressed {
                "REGRESSED".into()
            } else {
                "ok".into()
            },
        ]);
        t.push(row);
    }
    t.render(out);
    for u in &c.unmatched {
        let _ = writeln!(out, "  {u}: not in the baseline, not compared");
    }
    for m in &c.missing {
        let _ = writeln!(out, "  {m}: in the baseline, not in this run: REGRESSED");
    }
    for m in &c.missing_metrics {
        let _ = writeln!(
            out,
            "  {m}: measured in the baseline, not in this run (did the records lose their `task`?): REGRESSED"
        );
    }
    for ch in &c.changed {
        let _ = writeln!(
            out,
            "  {}: corrected otherwise than its baseline (not a regression): {}",
            ch.file,
            ch.fields.join(", ")
        );
    }
    if let Some(v) = &c.scored_by {
        let _ = writeln!(
            out,
            "  the baseline was scored by another version ({v}; not a regression): its numbers may differ for that reason alone"
        );
    }
    let _ = writeln!(
        out,
        "{} regression(s) in {} check(s)",
        c.regressions,
        c.checks.len()
    );
}

fn pct(x: f64) -> String {
    format!("{x:.2}")
}

fn opt_pct(x: Option<f64>) -> String {
    x.map_or("-".into(), pct)
}

/// An integer with thousands separators, as in the benchmark tables (`21,710`).
fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A text table: first column left-aligned, the others right-aligned.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn render(&self, out: &mut String) {
        let width = |i: usize| {
            std::iter::once(&self.header)
                .chain(&self.rows)
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.header.len()).map(width).collect();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                if i == 0 {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str("  ");
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
}

/// A p-value to four decimals, or `<0.0001` below them: the randomization test's p is at
/// least 1/(trials+1), never the 0.0000 that rounding would print past 20,000 trials.
fn p_value(p: f64) -> String {
    if p < 0.00005 {
        "<0.0001".to_string()
    } else {
        format!("{p:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(21710), "21,710");
        assert_eq!(count(1234567), "1,234,567");
    }

    #[test]
    fn p_values_below_four_decimals_are_not_printed_as_zero() {
        assert_eq!(p_value(1.0 / 30_001.0), "<0.0001");
        assert_eq!(p_value(1.0 / 10_001.0), "0.0001");
        assert_eq!(p_value(0.0321), "0.0321");
    }
}

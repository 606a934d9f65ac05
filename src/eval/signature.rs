//! Signatures: one line per metric family carrying every setting that changes its numbers, in
//! the style of sacrebleu (`nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.5.1`).
//!
//! | field | meaning |
//! |---|---|
//! | `norm` | the normaliser, with versions; `task=norm,...` when tasks with different defaults mix |
//! | `nrefs` | references per record: 1 for WER and CER, which score the first; `2-4` when records differ |
//! | `refs:sampled-500` | GLEU with several references: the mean over 500 draws of one per record (JFLEG's) |
//! | `refs:running-best` | edits with several references: each record's best for the running F0.5 (ERRANT's) |
//! | `neko` | the neko version |
//! | `tok:ws` | words are whitespace-separated tokens (Python `str.split()`) |
//! | `empty:jiwer4` | an empty reference counts every hypothesis word as an insertion |
//! | `space:squeezed` | CER counts a whitespace run as one character, none at the ends |
//! | `case`, `eff`, `tok:13a`, `smooth`, `nc`, `nw`, `space`, `tok:tercom`, `punct`, `asian` | sacrebleu's own fields |
//! | `tercom-norm` | sacrebleu's TER `norm` (Tercom's normalisation), renamed apart from neko's `norm` |
//! | `compat` | the reference implementation the numbers are tested against |
//! | `src:1-best` | GEC scores take the first hypothesis as the source sentence |
//! | `spans:runs` | an edit is a maximal run of differing words (neither the M2 scorer's nor ERRANT's edits) |

use std::collections::BTreeSet;

use super::{FileReport, Used};
use crate::Task;

/// The normaliser label of a run in which no record was scored.
pub const NO_RECORD_SCORED: &str = "-";

/// The normaliser of a set of records: the one spec, or `task=spec,...` in task order.
pub fn normalizer_label(pairs: impl IntoIterator<Item = (Task, String)>) -> String {
    let pairs: BTreeSet<(Task, String)> = pairs.into_iter().collect();
    let specs: BTreeSet<&String> = pairs.iter().map(|(_, n)| n).collect();
    match specs.len() {
        // No record was scored, so no normaliser was applied: name none rather than `none`.
        0 => NO_RECORD_SCORED.to_string(),
        1 => specs.into_iter().next().expect("one").clone(),
        _ => pairs
            .iter()
            .map(|(t, n)| format!("{t}={n}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// The signature lines of a run: `wer` and `cer` always, the others when their tasks occur.
pub fn signatures(files: &[FileReport], used: &Used) -> Vec<String> {
    let v = env!("CARGO_PKG_VERSION");
    let norm_of = |tasks: &[Task]| {
        let pairs = used.normalizers.iter().filter(|(t, _)| tasks.contains(t));
        normalizer_label(pairs.cloned())
    };
    let refs_of = |tasks: &[Task]| {
        let counts = used.references.iter().filter(|(t, _)| tasks.contains(t));
        let (min, max) = counts.fold((usize::MAX, 0), |(lo, hi), &(_, n)| (lo.min(n), hi.max(n)));
        match (min, max) {
            (lo, hi) if lo >= hi => hi.max(1).to_string(),
            (lo, hi) => format!("{lo}-{hi}"),
        }
    };
    // sacrebleu puts its paired bootstrap's settings into the signature the same way.
    // `--confidence` draws the same resamples as `--paired-bs`.
    let resampled = (super::first_significance(files).map(|s| (s.resamples, s.seed)))
        .or_else(|| super::first_confidence(files).map(|c| (c.resamples, c.seed)));
    let ar = super::first_significance(files)
        .and_then(|s| s.ar_trials)
        .map_or(String::new(), |n| format!("|ar:{n}"));
    let bs = resampled.map_or(String::new(), |(n, seed)| {
        format!("|bs:{n}|seed:{seed}{ar}")
    });
    let plain =
        |name: &str, norm: &str, refs: &str| format!("{name}|norm:{norm}|nrefs:{refs}|neko:{v}");
    let common = |name: &str, norm: &str, refs: &str| format!("{}{bs}", plain(name, norm, refs));
    let all = norm_of(&Task::ALL);
    let mut out = vec![
        format!(
            "{}|tok:ws|empty:jiwer4|compat:jiwer-4.0.0",
            common("wer", &all, "1")
        ),
        format!(
            "{}|space:squeezed|compat:jiwer-4.0.0",
            common("cer", &all, "1")
        ),
    ];
    let has = |tasks: &[Task]| used.normalizers.iter().any(|(t, _)| tasks.contains(t));
    if has(&[Task::St, Task::Mt]) {
        let n = norm_of(&[Task::St, Task::Mt]);
        let refs = refs_of(&[Task::St, Task::Mt]);
        out.push(format!(
            "{}|{}|compat:sacrebleu-2.5.1",
            common("bleu", &n, &refs),
            used.bleu.signature()
        ));
        out.push(format!(
            "{}|{}|compat:sacrebleu-2.5.1",
            common("chrf", &n, &refs),
            used.chrf.signature()
        ));
        out.push(format!(
            "{}|{}|compat:sacrebleu-2.5.1",
            common("ter", &n, &refs),
            used.ter
        ));
    }
    if has(&[Task::Gec]) {
        let n = norm_of(&[Task::Gec]);
        let refs = refs_of(&[Task::Gec]);
        let several = refs != "1";
        let sampled = if several { "|refs:sampled-500" } else { "" };
        out.push(format!(
            "{}|tok:ws|n:4|src:1-best{sampled}|compat:jfleg-gleu",
            common("gleu", &n, &refs)
        ));
        let edits = files
            .iter()
            .any(|f| f.groups.first().is_some_and(|g| g.edits.is_some()));
        if edits {
            // No bootstrap of the edit scores: their line has no `bs`.
            let best = if several { "|refs:running-best" } else { "" };
            out.push(format!(
                "{}|tok:ws|beta:0.5|src:1-best|spans:runs{best}",
                plain("edits", &n, &refs)
            ));
        }
    }
    // How the predictions were made, when `neko correct` left its signature beside the file.
    for f in files {
        if let Some(sig) = &f.correction {
            out.push(format!("{sig}|file:{}", f.path));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_number_of_references_per_metric() {
        let used = Used {
            bleu: Default::default(),
            chrf: Default::default(),
            ter: Default::default(),
            normalizers: [(Task::Mt, "none@1".to_string())].into(),
            references: [(Task::Mt, 1), (Task::Mt, 3)].into(),
        };
        let sigs = signatures(&[], &used);
        let line = |name: &str| sigs.iter().find(|s| s.starts_with(name)).unwrap().clone();
        assert!(line("bleu|").contains("|nrefs:1-3|"), "{sigs:?}");
        assert!(line("chrf|").contains("|nrefs:1-3|"), "{sigs:?}");
        // WER and CER score the first reference only.
        assert!(line("wer|").contains("|nrefs:1|"), "{sigs:?}");
    }

    #[test]
    fn labels_mixed_normalisers_per_task() {
        let one = normalizer_label([
            (Task::Asr, "h2t@1".to_string()),
            (Task::Mt, "h2t@1".to_string()),
        ]);
        assert_eq!(one, "h2t@1");
        let mixed = normalizer_label([
            (Task::Mt, "none@1".to_string()),
            (Task::Asr, "whisper-en@1".to_string()),
        ]);
        assert_eq!(mixed, "asr=whisper-en@1,mt=none@1");
    }
}

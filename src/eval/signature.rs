//! Signatures: one line per metric family carrying every setting that changes its numbers, in
//! the style of sacrebleu (`nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.5.1`).
//!
//! | field | meaning |
//! |---|---|
//! | `norm` | the normaliser, with versions; `task=norm,...` when tasks with different defaults mix |
//! | `nrefs` | references per record (always 1) |
//! | `neko` | the neko version |
//! | `tok:ws` | words are whitespace-separated tokens (Python `str.split()`) |
//! | `empty:jiwer4` | an empty reference counts every hypothesis word as an insertion |
//! | `space:squeezed` | CER counts a whitespace run as one character, none at the ends |
//! | `case`, `eff`, `tok:13a`, `smooth`, `nc`, `nw`, `space` | sacrebleu's own fields |
//! | `compat` | the reference implementation the numbers are tested against |
//! | `src:1-best` | GEC scores take the first hypothesis as the source sentence |

use std::collections::BTreeSet;

use super::FileReport;
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
pub fn signatures(files: &[FileReport], used: &BTreeSet<(Task, String)>) -> Vec<String> {
    let v = env!("CARGO_PKG_VERSION");
    let norm_of =
        |tasks: &[Task]| normalizer_label(used.iter().filter(|(t, _)| tasks.contains(t)).cloned());
    // sacrebleu puts its paired bootstrap's settings into the signature the same way.
    let bs = super::first_significance(files).map_or(String::new(), |s| {
        format!("|bs:{}|seed:{}", s.resamples, s.seed)
    });
    let plain = |name: &str, norm: &str| format!("{name}|norm:{norm}|nrefs:1|neko:{v}");
    let common = |name: &str, norm: &str| format!("{}{bs}", plain(name, norm));
    let all = norm_of(&Task::ALL);
    let mut out = vec![
        format!(
            "{}|tok:ws|empty:jiwer4|compat:jiwer-4.0.0",
            common("wer", &all)
        ),
        format!("{}|space:squeezed|compat:jiwer-4.0.0", common("cer", &all)),
    ];
    let has = |tasks: &[Task]| used.iter().any(|(t, _)| tasks.contains(t));
    if has(&[Task::St, Task::Mt]) {
        let n = norm_of(&[Task::St, Task::Mt]);
        out.push(format!(
            "{}|case:mixed|eff:no|tok:13a|smooth:exp|compat:sacrebleu-2.5.1",
            common("bleu", &n)
        ));
        out.push(format!(
            "{}|case:mixed|eff:yes|nc:6|nw:0|space:no|compat:sacrebleu-2.5.1",
            common("chrf", &n)
        ));
    }
    if has(&[Task::Gec]) {
        let n = norm_of(&[Task::Gec]);
        out.push(format!(
            "{}|tok:ws|n:4|src:1-best|compat:jfleg-gleu",
            common("gleu", &n)
        ));
        let edits = files
            .iter()
            .any(|f| f.groups.first().is_some_and(|g| g.edits.is_some()));
        if edits {
            // No bootstrap of the edit scores: their line has no `bs`.
            out.push(format!("{}|tok:ws|beta:0.5|src:1-best", plain("edits", &n)));
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

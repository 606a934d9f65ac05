//! Per-record rows (`neko eval --per-record FILE`): each scored record's word errors, of its
//! 1-best and of its prediction, with both alignments laid out as jiwer's
//! `visualize_alignment` prints them, so that the records a correction broke can be found and
//! read (`jq 'select(.change > 0)'`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metrics::{EditCounts, Op};
use crate::Task;

/// One scored record under one normaliser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordRow {
    /// The file, as given.
    pub file: String,
    /// The normaliser the words were scored under.
    pub normalizer: String,
    /// 0-based position among the file's records, and the line it starts on.
    pub index: usize,
    pub line: usize,
    pub id: Value,
    pub task: Task,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Reference words after normalisation (of the first reference).
    pub reference_words: u64,
    /// The 1-best's word errors and alignment.
    pub one_best: Side,
    /// The prediction's (its 1-best where it has none), in files with predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected: Option<Side>,
    /// The prediction's word errors minus the 1-best's: negative where it fixed errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<i64>,
}

/// The word errors of one text against the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// Substitutions + deletions + insertions.
    pub errors: u64,
    #[serde(flatten)]
    pub counts: EditCounts,
    /// Sentence BLEU, chrF and TER (ST/MT records).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub sentence: Option<Sentence>,
    pub alignment: Alignment,
}

/// The sentence scores of an ST/MT text, as sacrebleu's `sentence_bleu` (effective order),
/// `sentence_chrf` and `sentence_ter` give them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sentence {
    pub bleu: f64,
    pub chrf: f64,
    pub ter: f64,
}

impl Side {
    pub fn new(counts: EditCounts, sentence: Option<Sentence>, alignment: Alignment) -> Self {
        Side {
            errors: counts.errors(),
            counts,
            sentence,
            alignment,
        }
    }
}

/// An alignment in three lines of equal columns, as jiwer's `visualize_alignment` prints
/// them after `REF: `, `HYP: ` and five spaces: words right-aligned in their column, `*`
/// where one side has no word, `S`, `D`, `I` under the errors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alignment {
    #[serde(rename = "ref")]
    pub reference: String,
    #[serde(rename = "hyp")]
    pub hypothesis: String,
    pub ops: String,
}

impl Alignment {
    /// The layout of `ops` aligning `reference` to `hypothesis` (their words).
    pub fn new(reference: &[&str], hypothesis: &[&str], ops: &[Op]) -> Self {
        let (mut r, mut h) = (reference.iter(), hypothesis.iter());
        let mut out = Alignment::default();
        for op in ops {
            let (rw, hw, mark) = match op {
                Op::Equal => (r.next(), h.next(), ' '),
                Op::Substitute => (r.next(), h.next(), 'S'),
                Op::Delete => (r.next(), None, 'D'),
                Op::Insert => (None, h.next(), 'I'),
            };
            let (rw, hw) = (rw.copied().unwrap_or(""), hw.copied().unwrap_or(""));
            let width = rw.chars().count().max(hw.chars().count()).max(1);
            let cell = |w: &str| match w {
                "" => "*".repeat(width),
                w => format!("{w:>width$}"),
            };
            out.reference += &cell(rw);
            out.hypothesis += &cell(hw);
            out.ops += &format!("{mark:>width$}");
            for line in [&mut out.reference, &mut out.hypothesis, &mut out.ops] {
                line.push(' ');
            }
        }
        for line in [&mut out.reference, &mut out.hypothesis, &mut out.ops] {
            line.truncate(line.trim_end().len());
        }
        out
    }
}

/// How a file's (or group's) predictions changed its records' word errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// Records whose prediction, normalised, is not their 1-best.
    pub changed: u64,
    /// Of those: fewer word errors than the 1-best, more, and as many.
    pub better: u64,
    pub worse: u64,
    pub same: u64,
}

impl Changes {
    /// Counts one record: whether its prediction differs, and its change in word errors.
    pub fn add(&mut self, changed: bool, change: i64) {
        if !changed {
            return;
        }
        self.changed += 1;
        match change {
            c if c < 0 => self.better += 1,
            c if c > 0 => self.worse += 1,
            _ => self.same += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::align::align;

    #[test]
    fn lays_out_columns_as_jiwer() {
        let r = ["the", "cat", "sat", "on", "mat"];
        let h = ["the", "cat", "sad", "on", "the", "mat", "x"];
        let a = Alignment::new(&r, &h, &align(&r, &h));
        assert_eq!(a.reference, "the cat sat on *** mat *");
        assert_eq!(a.hypothesis, "the cat sad on the mat x");
        assert_eq!(a.ops, "          S      I     I");
    }
}

//! Word-level GEC edits and their precision, recall and F0.5.
//!
//! An edit is a maximal run of non-matching alignment steps between the source and a corrected
//! sentence, written as the source span it replaces and the words it puts there. The source is
//! aligned to the hypothesis and, separately, to the reference, with the same aligner as WER
//! ([`super::align`]); a hypothesis edit is a true positive when the reference has the identical
//! edit (same span, same words). Corpus scores pool the counts, and zero denominators follow
//! the M2 scorer and ERRANT: precision is 1 with no proposed edit, recall 1 with no gold edit.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::align::{align, Op};
use super::words;

/// One edit: replace source tokens `start..end` with `replacement`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Edit {
    /// First source token replaced (an insertion has `start == end`).
    pub start: usize,
    /// One past the last source token replaced.
    pub end: usize,
    /// The tokens written in their place (empty for a deletion).
    pub replacement: Vec<String>,
}

/// The edits that turn `source` into `target`, in source order.
pub fn extract(source: &[&str], target: &[&str]) -> Vec<Edit> {
    let mut edits = Vec::new();
    let (mut s, mut t) = (0, 0);
    let mut open: Option<(usize, usize)> = None;
    for op in align(source, target) {
        if op == Op::Equal {
            if let Some((s0, t0)) = open.take() {
                edits.push(edit(target, s0, s, t0, t));
            }
            s += 1;
            t += 1;
            continue;
        }
        open.get_or_insert((s, t));
        match op {
            Op::Substitute => {
                s += 1;
                t += 1;
            }
            Op::Delete => s += 1,
            Op::Insert => t += 1,
            Op::Equal => unreachable!(),
        }
    }
    if let Some((s0, t0)) = open {
        edits.push(edit(target, s0, s, t0, t));
    }
    edits
}

fn edit(target: &[&str], s0: usize, s1: usize, t0: usize, t1: usize) -> Edit {
    Edit {
        start: s0,
        end: s1,
        replacement: target[t0..t1].iter().map(|w| w.to_string()).collect(),
    }
}

/// Edit-level true positives, false positives and false negatives; they add up over a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditScore {
    /// Hypothesis edits that the reference makes too.
    pub true_positives: u64,
    /// Hypothesis edits the reference does not make.
    pub false_positives: u64,
    /// Reference edits the hypothesis misses.
    pub false_negatives: u64,
}

impl EditScore {
    /// Scores the edits of `hypothesis` against those of `reference`, both taken from `source`.
    pub fn segment(source: &str, hypothesis: &str, reference: &str) -> Self {
        let src = words(source);
        let hyp = extract(&src, &words(hypothesis));
        let gold = extract(&src, &words(reference));
        let mut remaining: HashMap<&Edit, u64> = HashMap::new();
        for e in &gold {
            *remaining.entry(e).or_insert(0) += 1;
        }
        let mut tp = 0;
        for e in &hyp {
            if let Some(n) = remaining.get_mut(e).filter(|n| **n > 0) {
                *n -= 1;
                tp += 1;
            }
        }
        EditScore {
            true_positives: tp,
            false_positives: hyp.len() as u64 - tp,
            false_negatives: gold.len() as u64 - tp,
        }
    }

    /// TP / (TP + FP), or 1 when nothing was proposed.
    pub fn precision(&self) -> f64 {
        match self.false_positives {
            0 => 1.0,
            fp => self.true_positives as f64 / (self.true_positives + fp) as f64,
        }
    }

    /// TP / (TP + FN), or 1 when there was nothing to find.
    pub fn recall(&self) -> f64 {
        match self.false_negatives {
            0 => 1.0,
            fneg => self.true_positives as f64 / (self.true_positives + fneg) as f64,
        }
    }

    /// F-beta of precision and recall (F0.5 weighs precision twice as much as recall).
    pub fn f_beta(&self, beta: f64) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        let b2 = beta * beta;
        if p + r == 0.0 {
            0.0
        } else {
            (1.0 + b2) * p * r / (b2 * p + r)
        }
    }
}

impl std::ops::AddAssign for EditScore {
    fn add_assign(&mut self, o: Self) {
        self.true_positives += o.true_positives;
        self.false_positives += o.false_positives;
        self.false_negatives += o.false_negatives;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_merged_spans() {
        let e = extract(&["a", "b", "c", "d"], &["a", "x", "y", "d", "e"]);
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].start, e[0].end), (1, 3));
        assert_eq!(e[0].replacement, vec!["x", "y"]);
        assert_eq!((e[1].start, e[1].end, e[1].replacement.len()), (4, 4, 1));
    }

    #[test]
    fn scores_matching_edits() {
        let s = EditScore::segment("he go to school", "he goes to school", "he goes to school");
        assert_eq!(
            (s.true_positives, s.false_positives, s.false_negatives),
            (1, 0, 0)
        );
        let none = EditScore::segment("fine as is", "fine as is", "fine as is");
        assert_eq!(none.f_beta(0.5), 1.0);
    }
}

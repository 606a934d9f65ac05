//! N-best oracles: how low WER could go if the corrector chose perfectly.
//!
//! - **N-best oracle**: per record, the hypothesis with the fewest word errors against the
//!   reference (the first on ties); corpus WER pools those counts.
//! - **Compositional oracle**: the fewest errors of *any* word sequence made only of words that
//!   occur in the record's hypotheses, in any order and as often as wanted. Such a sequence can
//!   match every reference word that occurs in some hypothesis and must get every other
//!   reference word wrong, so the minimum is the number of reference tokens whose word is in no
//!   hypothesis (reported as deletions). It is a lower bound for every recombination scheme:
//!   confusion networks, lattices, or a corrector that only copies words.

use std::collections::HashSet;

use super::align::{counts, EditCounts};

/// The best single hypothesis of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NbestOracle {
    /// Position of the chosen hypothesis (0 = the 1-best).
    pub index: usize,
    /// Its edit counts against the reference.
    pub counts: EditCounts,
}

/// The hypothesis with the fewest word errors (the first of equals). `None` without hypotheses.
pub fn nbest<S: AsRef<[T]>, T: PartialEq>(
    reference: &[T],
    hypotheses: &[S],
) -> Option<NbestOracle> {
    let mut best: Option<NbestOracle> = None;
    for (index, h) in hypotheses.iter().enumerate() {
        let c = counts(reference, h.as_ref());
        if best.is_none_or(|b| c.errors() < b.counts.errors()) {
            best = Some(NbestOracle { index, counts: c });
        }
    }
    best
}

/// The compositional oracle's counts: reference tokens found in some hypothesis are hits, the
/// others deletions.
pub fn compositional<S: AsRef<[T]>, T: Eq + std::hash::Hash>(
    reference: &[T],
    hypotheses: &[S],
) -> EditCounts {
    let vocab: HashSet<&T> = hypotheses.iter().flat_map(|h| h.as_ref()).collect();
    let hits = reference.iter().filter(|w| vocab.contains(w)).count() as u64;
    EditCounts {
        hits,
        deletions: reference.len() as u64 - hits,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_closest_hypothesis_first_on_ties() {
        let r = ["a", "b", "c"];
        let hyps = vec![
            vec!["a", "x", "c"],
            vec!["a", "b", "c"],
            vec!["a", "b", "c"],
        ];
        let o = nbest(&r, &hyps).unwrap();
        assert_eq!((o.index, o.counts.errors()), (1, 0));
    }

    #[test]
    fn compositional_counts_uncovered_words() {
        let r = ["a", "b", "c", "d"];
        let hyps = vec![vec!["a", "x"], vec!["c", "b"]];
        let c = compositional(&r, &hyps);
        assert_eq!((c.hits, c.deletions, c.errors()), (3, 1, 1));
    }
}

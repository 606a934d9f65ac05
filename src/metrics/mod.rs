//! Metrics: alignment-based WER/CER, BLEU, chrF, TER, GLEU, GEC edit scores and N-best oracles.
//!
//! Every metric here works on already-normalised text ([`crate::normalize`]) and returns
//! sufficient statistics that add up over a corpus, so corpus scores pool counts the way jiwer
//! and sacrebleu do and per-group scores come for free.
//!
//! | metric | module | matches |
//! |---|---|---|
//! | WER, CER, MER, S/D/I | [`align`] | jiwer 4 (rapidfuzz alignment) |
//! | BLEU (13a and its other tokenisers, case, smoothing) | [`bleu`] | sacrebleu 2.x |
//! | chrF (chrF2 and chrF++, sacrebleu's options) | [`chrf`] | sacrebleu 2.x |
//! | TER (Tercom shifts; lower-cased by default, [`tercom`] options) | [`ter`] | sacrebleu 2.x |
//! | GLEU | [`gleu`] | JFLEG `gleu.py` (Napoles et al. 2016); several references sampled as GLEU+ |
//! | edit P / R / F0.5 | [`edits`] | word edits from the same alignment |
//! | N-best and compositional oracles | [`oracle`] | see `docs/eval.md` |

pub mod align;
pub mod bleu;
pub mod chrf;
pub mod edits;
pub mod gleu;
pub mod oracle;
pub mod pyrandom;
pub mod ter;
pub mod tercom;

pub use align::{EditCounts, Op};

use crate::normalize::pychar;

/// Splits text into words at whitespace, exactly as Python's `str.split()` does (so the
/// separators `\x1c`..`\x1f` count, as they do for jiwer and sacrebleu).
pub fn words(text: &str) -> Vec<&str> {
    text.split(pychar::is_space)
        .filter(|w| !w.is_empty())
        .collect()
}

/// The characters CER is computed over: words joined by single spaces, so a run of whitespace
/// is one character and leading or trailing whitespace none.
pub fn cer_chars(text: &str) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len());
    for (i, w) in words(text).into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.extend(w.chars());
    }
    out
}

/// Word-level edit counts of a hypothesis against a reference.
pub fn word_counts(reference: &str, hypothesis: &str) -> EditCounts {
    align::counts(&words(reference), &words(hypothesis))
}

/// Character-level edit counts (see [`cer_chars`]).
pub fn char_counts(reference: &str, hypothesis: &str) -> EditCounts {
    align::counts(&cer_chars(reference), &cer_chars(hypothesis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_python() {
        assert_eq!(words("  a\tb\u{1f}c\u{a0}d  "), vec!["a", "b", "c", "d"]);
        assert!(words(" \n ").is_empty());
        assert_eq!(cer_chars(" a  b "), vec!['a', ' ', 'b']);
    }
}

//! Corpus chrF as sacrebleu 2.x computes it by default (chrF2): character n-grams of orders 1
//! to 6 with whitespace removed, no word n-grams, beta 2, mixed case, statistics summed over the
//! corpus and precision / recall averaged over the orders that occur (sacrebleu's
//! `eps_smoothing=False`). With word n-grams of orders 1 and 2 it is chrF++ (Popović 2017;
//! sacrebleu's `--chrf-word-order 2`), words split at whitespace with one punctuation mark cut
//! off each word's end (or else its start), as sacrebleu's `_remove_punctuation`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::words;

/// The highest character n-gram order.
pub const CHAR_ORDER: usize = 6;
/// The highest word n-gram order (chrF++).
pub const MAX_WORD_ORDER: usize = 2;
/// The recall weight.
pub const BETA: f64 = 2.0;

/// Per order: hypothesis n-grams, reference n-grams, matches. Adds up over a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChrfStats {
    /// `[hyp, ref, match]` for character orders 1 to 6.
    pub orders: [[u64; 3]; CHAR_ORDER],
    /// `[hyp, ref, match]` for word orders 1 and 2 (chrF++); zeros, and absent from JSON, for
    /// plain chrF, whose score they then leave as it is.
    #[serde(default, skip_serializing_if = "no_words")]
    pub words: [[u64; 3]; MAX_WORD_ORDER],
}

fn no_words(w: &[[u64; 3]; MAX_WORD_ORDER]) -> bool {
    w.iter().flatten().all(|&c| c == 0)
}

impl ChrfStats {
    /// Statistics of one hypothesis against one reference (raw text).
    pub fn segment(hypothesis: &str, reference: &str) -> Self {
        Self::segment_refs(hypothesis, &[reference])
    }

    /// Statistics of one hypothesis against several references: those of the reference it
    /// scores best against (the first of equals), as sacrebleu chooses.
    pub fn segment_refs(hypothesis: &str, references: &[&str]) -> Self {
        Self::segment_with(0, hypothesis, references)
    }

    /// [`ChrfStats::segment_refs`] with word n-grams up to `word_order` (2: chrF++; at most
    /// [`MAX_WORD_ORDER`]).
    pub fn segment_with(word_order: usize, hypothesis: &str, references: &[&str]) -> Self {
        let word_order = word_order.min(MAX_WORD_ORDER);
        let hyp: Vec<char> = words(hypothesis).concat().chars().collect();
        let hyp_counts: Vec<HashMap<&[char], u64>> =
            (1..=CHAR_ORDER).map(|n| counts(&hyp, n)).collect();
        // Plain chrF splits no words.
        let split = |text| match word_order {
            0 => Vec::new(),
            _ => punctuation_apart(text),
        };
        let hyp_words = split(hypothesis);
        let hyp_word_counts: Vec<HashMap<&[&str], u64>> =
            (1..=word_order).map(|n| counts(&hyp_words, n)).collect();
        let mut best: Option<(f64, ChrfStats)> = None;
        for reference in references {
            let mut stats = against(&hyp_counts, reference);
            let ref_words = split(reference);
            for (n, hyp_counts) in (1..=word_order).zip(&hyp_word_counts) {
                stats.words[n - 1] = matches(hyp_counts, &counts(&ref_words, n));
            }
            let score = stats.score();
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, stats));
            }
        }
        best.map(|(_, s)| s).unwrap_or_default()
    }

    /// chrF in percent (0-100).
    pub fn score(&self) -> f64 {
        let factor = BETA * BETA;
        let (mut avg_p, mut avg_r, mut effective) = (0.0, 0.0, 0u32);
        for &[n_hyp, n_ref, n_match] in self.orders.iter().chain(&self.words) {
            if n_hyp > 0 && n_ref > 0 {
                avg_p += n_match as f64 / n_hyp as f64;
                avg_r += n_match as f64 / n_ref as f64;
                effective += 1;
            }
        }
        if effective == 0 {
            return 0.0;
        }
        avg_p /= effective as f64;
        avg_r /= effective as f64;
        if avg_p + avg_r == 0.0 {
            return 0.0;
        }
        100.0 * (1.0 + factor) * avg_p * avg_r / (factor * avg_p + avg_r)
    }
}

impl std::ops::AddAssign for ChrfStats {
    fn add_assign(&mut self, o: Self) {
        let (mine, theirs) = (self.orders.iter_mut(), o.orders.iter());
        for (a, b) in mine
            .chain(self.words.iter_mut())
            .zip(theirs.chain(&o.words))
        {
            for k in 0..3 {
                a[k] += b[k];
            }
        }
    }
}

/// The statistics of a hypothesis, given its n-gram counts per order, against one reference.
fn against(hyp_counts: &[HashMap<&[char], u64>], reference: &str) -> ChrfStats {
    let refr: Vec<char> = words(reference).concat().chars().collect();
    let mut stats = ChrfStats::default();
    for (n, hyp_counts) in (1..=CHAR_ORDER).zip(hyp_counts) {
        stats.orders[n - 1] = matches(hyp_counts, &counts(&refr, n));
    }
    stats
}

/// `[hyp, ref, match]` of one order's n-gram counts.
fn matches<T: Eq + std::hash::Hash>(
    hyp: &HashMap<T, u64>,
    reference: &HashMap<T, u64>,
) -> [u64; 3] {
    let mut matched = 0;
    for (gram, &c) in hyp {
        if let Some(&r) = reference.get(gram) {
            matched += c.min(r);
        }
    }
    let hyp_total: u64 = hyp.values().sum();
    let ref_total: u64 = reference.values().sum();
    // sacrebleu: "don't count hits if no reference exists for that n-gram order".
    let hyp_total = if reference.is_empty() { 0 } else { hyp_total };
    [hyp_total, ref_total, matched]
}

fn counts<T: Eq + std::hash::Hash>(items: &[T], n: usize) -> HashMap<&[T], u64> {
    let mut m = HashMap::new();
    if items.len() >= n {
        for g in items.windows(n) {
            *m.entry(g).or_insert(0) += 1;
        }
    }
    m
}

/// chrF++'s words: whitespace-split, a word of two or more characters losing one ASCII
/// punctuation mark from its end, or else from its start, as a word of its own (so `(hi)`
/// gives `(hi` and `)`, as in sacrebleu).
fn punctuation_apart(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for w in words(text) {
        let mut chars = w.chars();
        let (first, last) = (chars.next(), chars.next_back());
        match (first, last) {
            (Some(_), Some(l)) if l.is_ascii_punctuation() => {
                let cut = w.len() - l.len_utf8();
                out.extend([&w[..cut], &w[cut..]]);
            }
            (Some(f), Some(_)) if f.is_ascii_punctuation() => {
                let cut = f.len_utf8();
                out.extend([&w[..cut], &w[cut..]]);
            }
            _ => out.push(w),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_lose_one_punctuation_mark() {
        let w = punctuation_apart("(hi) end. ,start a ! x.y. é!");
        assert_eq!(
            w,
            ["(hi", ")", "end", ".", ",", "start", "a", "!", "x.y", ".", "é", "!"]
        );
    }

    #[test]
    fn identical_is_100_and_disjoint_is_0() {
        assert!((ChrfStats::segment("abc def", "abc def").score() - 100.0).abs() < 1e-9);
        assert_eq!(ChrfStats::segment("xyz", "abc").score(), 0.0);
        assert_eq!(ChrfStats::segment("", "").score(), 0.0);
    }
}

//! Corpus chrF as sacrebleu 2.x computes it by default (chrF2): character n-grams of orders 1
//! to 6 with whitespace removed, no word n-grams, beta 2, mixed case, statistics summed over the
//! corpus and precision / recall averaged over the orders that occur (sacrebleu's
//! `eps_smoothing=False`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::words;

/// The highest character n-gram order.
pub const CHAR_ORDER: usize = 6;
/// The recall weight.
pub const BETA: f64 = 2.0;

/// Per order: hypothesis n-grams, reference n-grams, matches. Adds up over a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChrfStats {
    /// `[hyp, ref, match]` for orders 1 to 6.
    pub orders: [[u64; 3]; CHAR_ORDER],
}

impl ChrfStats {
    /// Statistics of one hypothesis against one reference (raw text).
    pub fn segment(hypothesis: &str, reference: &str) -> Self {
        Self::segment_refs(hypothesis, &[reference])
    }

    /// Statistics of one hypothesis against several references: those of the reference it
    /// scores best against (the first of equals), as sacrebleu chooses.
    pub fn segment_refs(hypothesis: &str, references: &[&str]) -> Self {
        let hyp: Vec<char> = words(hypothesis).concat().chars().collect();
        let hyp_counts: Vec<HashMap<&[char], u64>> =
            (1..=CHAR_ORDER).map(|n| counts(&hyp, n)).collect();
        let mut best: Option<(f64, ChrfStats)> = None;
        for reference in references {
            let stats = against(&hyp_counts, reference);
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
        for &[n_hyp, n_ref, n_match] in &self.orders {
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
        for (a, b) in self.orders.iter_mut().zip(o.orders) {
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
        let ref_counts = counts(&refr, n);
        let mut matches = 0;
        for (gram, &c) in hyp_counts {
            if let Some(&r) = ref_counts.get(gram) {
                matches += c.min(r);
            }
        }
        let hyp_total: u64 = hyp_counts.values().sum();
        let ref_total: u64 = ref_counts.values().sum();
        // sacrebleu: "don't count hits if no reference exists for that n-gram order".
        let hyp_total = if ref_counts.is_empty() { 0 } else { hyp_total };
        stats.orders[n - 1] = [hyp_total, ref_total, matches];
    }
    stats
}

fn counts(chars: &[char], n: usize) -> HashMap<&[char], u64> {
    let mut m = HashMap::new();
    if chars.len() >= n {
        for g in chars.windows(n) {
            *m.entry(g).or_insert(0) += 1;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_is_100_and_disjoint_is_0() {
        assert!((ChrfStats::segment("abc def", "abc def").score() - 100.0).abs() < 1e-9);
        assert_eq!(ChrfStats::segment("xyz", "abc").score(), 0.0);
        assert_eq!(ChrfStats::segment("", "").score(), 0.0);
    }
}

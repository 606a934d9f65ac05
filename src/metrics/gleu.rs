//! GLEU for grammatical error correction (Napoles et al. 2015, revised 2016: "GLEU without
//! tuning"), as the JFLEG repository's `gleu.py` computes it.
//!
//! Per sentence and n-gram order n (1-4), with `h`, `r`, `s` the n-gram counts of hypothesis,
//! reference and source:
//!
//! - numerator   = max(0, |h ∩ r| - |h ∩ (s \ r)|), where `s \ r` keeps the source n-grams that do
//!   not occur in the reference at all (the n-grams a correction should have removed);
//! - denominator = max(0, len(h) + 1 - n).
//!
//! Statistics add up over the corpus; GLEU = BP · exp(mean over n of log(num/den)) with
//! BP = exp(min(0, 1 - r/c)), and 0 as soon as any summed statistic is 0, as in `gleu.py`.
//!
//! With several references, JFLEG's `compute_gleu` samples one reference per sentence and
//! reports the mean corpus GLEU over 500 draws, draw `i` seeded with `i * 101` (GLEU+'s fixed
//! seeds; the `gleu` package's `--fix-seed`): [`sampled_score`] draws the same references.
//! With one reference every draw is the same, so the score is that of the summed statistics.
//! Tokens are whitespace-separated words.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::pyrandom::PyRandom;
use super::words;

/// The highest n-gram order.
pub const MAX_ORDER: usize = 4;

/// Sufficient statistics of GLEU; they add up over a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GleuStats {
    /// Hypothesis length in tokens (`c`).
    pub hyp_len: u64,
    /// Reference length in tokens (`r`).
    pub ref_len: u64,
    /// Penalised n-gram matches per order.
    pub numerators: [u64; MAX_ORDER],
    /// Hypothesis n-grams per order.
    pub denominators: [u64; MAX_ORDER],
}

impl GleuStats {
    /// Statistics of one corrected sentence against its source and reference.
    pub fn segment(source: &str, hypothesis: &str, reference: &str) -> Self {
        let (s, h, r) = (words(source), words(hypothesis), words(reference));
        let mut stats = GleuStats {
            hyp_len: h.len() as u64,
            ref_len: r.len() as u64,
            ..Default::default()
        };
        for n in 1..=MAX_ORDER {
            let (sc, hc, rc) = (counts(&s, n), counts(&h, n), counts(&r, n));
            let mut matched = 0u64;
            let mut penalty = 0u64;
            for (gram, &hn) in &hc {
                if let Some(&rn) = rc.get(gram) {
                    matched += hn.min(rn);
                } else if let Some(&sn) = sc.get(gram) {
                    penalty += hn.min(sn);
                }
            }
            stats.numerators[n - 1] = matched.saturating_sub(penalty);
            stats.denominators[n - 1] = (h.len() + 1).saturating_sub(n) as u64;
        }
        stats
    }

    /// GLEU in percent (0-100).
    pub fn score(&self) -> f64 {
        let all = [self.hyp_len, self.ref_len]
            .into_iter()
            .chain(self.numerators)
            .chain(self.denominators);
        if all.into_iter().any(|x| x == 0) {
            return 0.0;
        }
        let log_prec: f64 = self
            .numerators
            .iter()
            .zip(&self.denominators)
            .map(|(&n, &d)| (n as f64 / d as f64).ln())
            .sum::<f64>()
            / MAX_ORDER as f64;
        let bp = (1.0 - self.ref_len as f64 / self.hyp_len as f64).min(0.0);
        100.0 * (bp + log_prec).exp()
    }
}

/// How many reference draws GLEU with several references averages (JFLEG's default).
pub const DRAWS: usize = 500;

/// One sentence's statistics against each of its references, at its position in the corpus
/// (which decides the references drawn for it).
pub struct Sentence<'a> {
    /// Its 0-based position among the corpus's scored sentences.
    pub position: usize,
    /// Its statistics against each reference, in reference order (never empty).
    pub stats: &'a [GleuStats],
}

/// The reference each sentence gets in draw `draw`: `int(random() * R)` for a sentence with
/// `R` references, Python's generator seeded with `draw * 101` and drawn once per position.
/// `sentences` are in increasing position order.
pub fn choices(draw: usize, sentences: &[Sentence<'_>]) -> Vec<usize> {
    let mut rng = PyRandom::seeded(draw as u64 * 101);
    let mut at = 0;
    sentences
        .iter()
        .map(|s| {
            let mut u = 0.0;
            while at <= s.position {
                u = rng.random();
                at += 1;
            }
            (u * s.stats.len() as f64) as usize
        })
        .collect()
}

/// The corpus statistics of draw `draw`.
pub fn drawn(draw: usize, sentences: &[Sentence<'_>]) -> GleuStats {
    let mut sum = GleuStats::default();
    for (s, r) in sentences.iter().zip(choices(draw, sentences)) {
        sum += s.stats[r];
    }
    sum
}

/// Corpus GLEU in percent: the mean over [`DRAWS`] draws when a sentence has several
/// references, else the score of the summed statistics.
pub fn sampled_score(sentences: &[Sentence<'_>]) -> f64 {
    if sentences.iter().all(|s| s.stats.len() == 1) {
        return drawn(0, sentences).score();
    }
    (0..DRAWS).map(|d| drawn(d, sentences).score()).sum::<f64>() / DRAWS as f64
}

impl std::ops::AddAssign for GleuStats {
    fn add_assign(&mut self, o: Self) {
        self.hyp_len += o.hyp_len;
        self.ref_len += o.ref_len;
        for n in 0..MAX_ORDER {
            self.numerators[n] += o.numerators[n];
            self.denominators[n] += o.denominators[n];
        }
    }
}

fn counts<'a>(tokens: &'a [&'a str], n: usize) -> HashMap<&'a [&'a str], u64> {
    let mut m = HashMap::new();
    if tokens.len() >= n {
        for g in tokens.windows(n) {
            *m.entry(g).or_insert(0) += 1;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copying_the_reference_scores_100() {
        let s = GleuStats::segment(
            "he go to school now",
            "he goes to school now",
            "he goes to school now",
        );
        assert!((s.score() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn keeping_an_error_is_penalised() {
        let src = "he go to the school every day";
        let refr = "he goes to school every day";
        let kept = GleuStats::segment(src, src, refr).score();
        let fixed = GleuStats::segment(src, refr, refr).score();
        assert!(kept < fixed);
    }
}

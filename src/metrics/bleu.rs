//! Corpus BLEU as sacrebleu 2.x computes it by default: the `13a` tokeniser (mteval-v13a),
//! n-grams up to 4, mixed case, brevity penalty against the reference (with several, the one
//! closest in length), and `exp` smoothing (Chen & Cherry 2014, method 3, as in mteval-v13a).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::words;
use crate::normalize::pychar;

/// The highest n-gram order.
pub const MAX_ORDER: usize = 4;

/// Sufficient statistics of BLEU for one segment or a whole corpus (they add up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BleuStats {
    /// Hypothesis length in tokens.
    pub hyp_len: u64,
    /// Reference length in tokens.
    pub ref_len: u64,
    /// Clipped n-gram matches, orders 1 to 4.
    pub correct: [u64; MAX_ORDER],
    /// Hypothesis n-grams, orders 1 to 4.
    pub total: [u64; MAX_ORDER],
}

impl BleuStats {
    /// Statistics of one hypothesis against one reference (both raw text; tokenised here).
    pub fn segment(hypothesis: &str, reference: &str) -> Self {
        Self::segment_refs(hypothesis, &[reference])
    }

    /// Statistics of one hypothesis against several references, as sacrebleu pools them: each
    /// n-gram is clipped by its largest count in any reference, and the reference length is
    /// the one closest to the hypothesis length (the shorter on a tie).
    pub fn segment_refs(hypothesis: &str, references: &[&str]) -> Self {
        let hyp = tokenize_13a(pychar::rstrip(hypothesis));
        let hyp = words(&hyp);
        let refs: Vec<String> = references
            .iter()
            .map(|r| tokenize_13a(pychar::rstrip(r)))
            .collect();
        let ref_words: Vec<Vec<&str>> = refs.iter().map(|r| words(r)).collect();
        let mut ref_counts: HashMap<&[&str], u64> = HashMap::new();
        let mut ref_lens = Vec::with_capacity(refs.len());
        for r in &ref_words {
            ref_lens.push(r.len() as u64);
            for (gram, count) in ngram_counts(r) {
                let max = ref_counts.entry(gram).or_insert(0);
                *max = (*max).max(count);
            }
        }
        let mut stats = BleuStats {
            hyp_len: hyp.len() as u64,
            ref_len: closest_length(hyp.len() as u64, &ref_lens),
            ..Default::default()
        };
        for (gram, count) in ngram_counts(&hyp) {
            let n = gram.len() - 1;
            stats.total[n] += count;
            if let Some(&r) = ref_counts.get(gram) {
                stats.correct[n] += count.min(r);
            }
        }
        stats
    }

    /// BLEU in percent (0-100), sacrebleu's `compute_bleu` with `smooth_method="exp"`.
    pub fn score(&self) -> f64 {
        self.score_over(false)
    }

    /// Sentence BLEU as sacrebleu's `sentence_bleu`: `exp` smoothing with the effective order,
    /// the mean over the orders the hypothesis has n-grams of (a 2-word sentence is not scored
    /// on its 0 trigrams).
    pub fn sentence_score(&self) -> f64 {
        self.score_over(true)
    }

    fn score_over(&self, effective_order: bool) -> f64 {
        let bp = self.brevity_penalty();
        if self.correct.iter().all(|&c| c == 0) {
            return 0.0;
        }
        let mut precisions = [0.0f64; MAX_ORDER];
        let mut smooth = 1.0f64;
        let mut orders = MAX_ORDER;
        for (n, (p, (&correct, &total))) in precisions
            .iter_mut()
            .zip(self.correct.iter().zip(&self.total))
            .enumerate()
        {
            if total == 0 {
                break;
            }
            if effective_order {
                orders = n + 1;
            }
            *p = if correct == 0 {
                smooth *= 2.0;
                100.0 / (smooth * total as f64)
            } else {
                100.0 * correct as f64 / total as f64
            };
        }
        let log_sum: f64 = precisions[..orders].iter().map(|&p| floored_log(p)).sum();
        bp * (log_sum / orders as f64).exp()
    }

    /// exp(1 - r/c) when the hypothesis is shorter than the reference, else 1.
    pub fn brevity_penalty(&self) -> f64 {
        if self.hyp_len >= self.ref_len {
            1.0
        } else if self.hyp_len == 0 {
            0.0
        } else {
            (1.0 - self.ref_len as f64 / self.hyp_len as f64).exp()
        }
    }
}

impl std::ops::AddAssign for BleuStats {
    fn add_assign(&mut self, o: Self) {
        self.hyp_len += o.hyp_len;
        self.ref_len += o.ref_len;
        for n in 0..MAX_ORDER {
            self.correct[n] += o.correct[n];
            self.total[n] += o.total[n];
        }
    }
}

/// sacrebleu's `_get_closest_ref_len`: the reference length nearest `hyp_len`, the shorter of
/// two as near; 0 with no reference.
fn closest_length(hyp_len: u64, ref_lens: &[u64]) -> u64 {
    ref_lens
        .iter()
        .copied()
        .min_by_key(|&r| (r.abs_diff(hyp_len), r))
        .unwrap_or(0)
}

/// sacrebleu's `my_log`: log(0) is floored to -9999999999 rather than -inf.
fn floored_log(p: f64) -> f64 {
    if p == 0.0 {
        -9_999_999_999.0
    } else {
        p.ln()
    }
}

fn ngram_counts<'a>(tokens: &'a [&'a str]) -> HashMap<&'a [&'a str], u64> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_ORDER.min(tokens.len()) {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

// The four substitutions of sacrebleu's `TokenizerRegexp`, in order.
static SYMBOLS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([\{-~\[-`\x20-&\(-\+:-@/])").unwrap());
static PERIOD_COMMA_AFTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([^0-9])([\.,])").unwrap());
static PERIOD_COMMA_BEFORE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([\.,])([^0-9])").unwrap());
static DASH_AFTER_DIGIT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"([0-9])(-)").unwrap());

/// sacrebleu's `13a` tokeniser: mteval-v13a's language-independent tokenisation.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let line = format!(" {line} ");
    let line = SYMBOLS.replace_all(&line, " ${1} ");
    let line = PERIOD_COMMA_AFTER.replace_all(&line, "${1} ${2} ");
    let line = PERIOD_COMMA_BEFORE.replace_all(&line, " ${1} ${2}");
    let line = DASH_AFTER_DIGIT.replace_all(&line, "${1} ${2} ");
    words(&line).join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_like_13a() {
        assert_eq!(tokenize_13a("Hello, world."), "Hello , world .");
        assert_eq!(tokenize_13a("It costs 1,000.50 $"), "It costs 1,000.50 $");
        assert_eq!(tokenize_13a("a-b 3-4 x &amp; y"), "a-b 3 - 4 x & y");
    }

    #[test]
    fn the_reference_length_is_the_closest_the_shorter_on_a_tie() {
        assert_eq!(closest_length(5, &[6, 4]), 4);
        assert_eq!(closest_length(5, &[9, 6, 2]), 6);
        let s = BleuStats::segment_refs("a b c d e", &["a b c d e f", "a b c d"]);
        assert_eq!((s.hyp_len, s.ref_len), (5, 4));
        // Each n-gram is clipped by its largest count in any one reference.
        let s = BleuStats::segment_refs("x x x y", &["x y", "x x z"]);
        assert_eq!(s.correct[0], 3);
    }

    #[test]
    fn perfect_match_is_100() {
        let s = BleuStats::segment("the cat sat on the mat", "the cat sat on the mat");
        assert!((s.score() - 100.0).abs() < 1e-9);
        assert_eq!(BleuStats::segment("", "a b").score(), 0.0);
    }
}

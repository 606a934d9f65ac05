//! Corpus chrF as sacrebleu 2.x computes it by default (chrF2): character n-grams of orders 1
//! to 6 with whitespace removed, no word n-grams, beta 2, mixed case, statistics summed over the
//! corpus and precision / recall averaged over the orders that occur (sacrebleu's
//! `eps_smoothing=False`). With word n-grams of orders 1 and 2 it is chrF++ (Popović 2017;
//! sacrebleu's `--chrf-word-order 2`), words split at whitespace with one punctuation mark cut
//! off each word's end (or else its start), as sacrebleu's `_remove_punctuation`. sacrebleu's
//! other chrF settings (character order, beta, case, whitespace, epsilon smoothing) are
//! [`ChrfOptions`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::words;

/// The highest character n-gram order (sacrebleu's default, and the most neko counts).
pub const CHAR_ORDER: usize = 6;
/// The highest word n-gram order (chrF++).
pub const MAX_WORD_ORDER: usize = 2;
/// The recall weight (sacrebleu's default).
pub const BETA: u32 = 2;

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
        Self::segment_with(ChrfOptions::default(), hypothesis, references)
    }

    /// [`ChrfStats::segment_refs`] under other options: word n-grams up to `word_order` (2:
    /// chrF++), character n-grams up to `char_order` (the orders above stay zero), lower-cased,
    /// with whitespace, and the reference chosen by the options' own score.
    pub fn segment_with(options: ChrfOptions, hypothesis: &str, references: &[&str]) -> Self {
        let word_order = options.word_order.min(MAX_WORD_ORDER);
        let hypothesis = &options.preprocess(hypothesis);
        let hyp = options.characters(hypothesis);
        let hyp_counts: Vec<HashMap<&[char], u64>> = (1..=options.char_order.min(CHAR_ORDER))
            .map(|n| counts(&hyp, n))
            .collect();
        // Plain chrF splits no words.
        fn split(text: &str, word_order: usize) -> Vec<&str> {
            match word_order {
                0 => Vec::new(),
                _ => punctuation_apart(text),
            }
        }
        let hyp_words = split(hypothesis, word_order);
        let hyp_word_counts: Vec<HashMap<&[&str], u64>> =
            (1..=word_order).map(|n| counts(&hyp_words, n)).collect();
        let mut best: Option<(f64, ChrfStats)> = None;
        for reference in references {
            let reference = &options.preprocess(reference);
            let mut stats = against(&hyp_counts, &options.characters(reference));
            let ref_words = split(reference, word_order);
            for (n, hyp_counts) in (1..=word_order).zip(&hyp_word_counts) {
                stats.words[n - 1] = matches(hyp_counts, &counts(&ref_words, n));
            }
            let score = stats.score_with(options);
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, stats));
            }
        }
        best.map(|(_, s)| s).unwrap_or_default()
    }

    /// chrF in percent (0-100), beta 2, over the orders the statistics have (chrF, or chrF++
    /// when they count words).
    pub fn score(&self) -> f64 {
        self.score_with(ChrfOptions::default())
    }

    /// chrF under `options`' beta and smoothing (sacrebleu's `_compute_f_score`). Orders
    /// without n-grams count for nothing, so only epsilon smoothing, which averages over every
    /// order, reads `options`' orders.
    pub fn score_with(&self, options: ChrfOptions) -> f64 {
        let factor = f64::from(options.beta).powi(2);
        if options.eps_smoothing {
            let chars = &self.orders[..options.char_order.min(CHAR_ORDER)];
            let words = &self.words[..options.word_order.min(MAX_WORD_ORDER)];
            return eps_smoothed(chars.iter().chain(words), factor);
        }
        let (chars, words) = (&self.orders, &self.words);
        let (mut avg_p, mut avg_r, mut effective) = (0.0, 0.0, 0u32);
        for &[n_hyp, n_ref, n_match] in chars.iter().chain(words) {
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

/// chrF++.py's (and Moses', NLTK's) epsilon smoothing, sacrebleu's `--chrf-eps-smoothing`:
/// the mean over every order of its F-score, an order without n-grams counting as epsilon.
fn eps_smoothed<'a>(orders: impl Iterator<Item = &'a [u64; 3]>, factor: f64) -> f64 {
    const EPS: f64 = 1e-16;
    let (mut sum, mut count) = (0.0, 0usize);
    for &[n_hyp, n_ref, n_match] in orders {
        let ratio = |total: u64| match total {
            0 => EPS,
            t => n_match as f64 / t as f64,
        };
        let (p, r) = (ratio(n_hyp), ratio(n_ref));
        let denominator = factor * p + r;
        sum += match denominator > 0.0 {
            true => (1.0 + factor) * p * r / denominator,
            false => EPS,
        };
        count += 1;
    }
    100.0 * sum / count as f64
}

/// The statistics of a hypothesis, given its n-gram counts per order, against one reference's
/// characters.
fn against(hyp_counts: &[HashMap<&[char], u64>], reference: &[char]) -> ChrfStats {
    let mut stats = ChrfStats::default();
    for (n, hyp_counts) in (1..).zip(hyp_counts) {
        stats.orders[n - 1] = matches(hyp_counts, &counts(reference, n));
    }
    stats
}

/// How chrF is computed: sacrebleu's `--chrf-char-order`, `--chrf-word-order`, `--chrf-beta`,
/// `--chrf-lowercase`, `--chrf-whitespace` and `--chrf-eps-smoothing`; the default is
/// sacrebleu's chrF2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChrfOptions {
    /// Character n-gram orders, 1 to [`CHAR_ORDER`].
    pub char_order: usize,
    /// Word n-gram orders, 0 to [`MAX_WORD_ORDER`] (2: chrF++).
    pub word_order: usize,
    /// Recall's weight.
    pub beta: u32,
    /// Lower-case the text first.
    pub lowercase: bool,
    /// Keep whitespace in the character n-grams.
    pub whitespace: bool,
    /// Average the orders' F-scores (epsilon for an empty order) rather than their precisions
    /// and recalls over the orders that occur.
    pub eps_smoothing: bool,
}

impl Default for ChrfOptions {
    fn default() -> Self {
        ChrfOptions {
            char_order: CHAR_ORDER,
            word_order: 0,
            beta: BETA,
            lowercase: false,
            whitespace: false,
            eps_smoothing: false,
        }
    }
}

impl ChrfOptions {
    /// sacrebleu's `_preprocess_segment`: lower-cased, optionally (no stripping).
    fn preprocess(self, text: &str) -> std::borrow::Cow<'_, str> {
        match self.lowercase {
            true => std::borrow::Cow::Owned(text.to_lowercase()),
            false => std::borrow::Cow::Borrowed(text),
        }
    }

    /// The characters the n-grams run over: the text without whitespace, or all of it.
    fn characters(self, text: &str) -> Vec<char> {
        match self.whitespace {
            true => text.chars().collect(),
            false => words(text).concat().chars().collect(),
        }
    }

    /// The metric's name: chrF, chrF++, or with its beta when not 2 (`chrF3++`).
    pub fn name(self) -> String {
        let beta = match self.beta {
            2 => String::new(),
            b => b.to_string(),
        };
        format!("chrF{beta}{}", "+".repeat(self.word_order))
    }

    /// The signature's fields: sacrebleu's (`case`, `eff`, `nc`, `nw`, `space`), and `beta`,
    /// which sacrebleu writes in the score's name instead.
    pub fn signature(self) -> String {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        format!(
            "case:{}|eff:{}|nc:{}|nw:{}|space:{}|beta:{}",
            if self.lowercase { "lc" } else { "mixed" },
            yes_no(!self.eps_smoothing),
            self.char_order,
            self.word_order,
            yes_no(self.whitespace),
            self.beta
        )
    }
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

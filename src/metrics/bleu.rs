//! Corpus BLEU as sacrebleu 2.x computes it by default: the `13a` tokeniser (mteval-v13a),
//! n-grams up to 4, mixed case, brevity penalty against the reference (with several, the one
//! closest in length), and `exp` smoothing (Chen & Cherry 2014, method 3, as in mteval-v13a);
//! sacrebleu's lower-casing and other smoothing methods are [`BleuOptions`].
//! sacrebleu's other language-independent tokenisers are here too ([`Tokenizer`]): `intl`
//! (mteval-v14's Unicode punctuation and symbols), `zh` (Chinese characters apart), `char` and
//! `none`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
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
        Self::segment_with(BleuOptions::default(), hypothesis, references)
    }

    /// [`BleuStats::segment_refs`] with another of sacrebleu's tokenisers, or lower-cased
    /// (the options' smoothing plays no part here).
    pub fn segment_with(options: BleuOptions, hypothesis: &str, references: &[&str]) -> Self {
        let hyp = options.preprocess(hypothesis);
        let hyp = words(&hyp);
        let refs: Vec<String> = references.iter().map(|r| options.preprocess(r)).collect();
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
        self.score_with(Smooth::Exp)
    }

    /// Corpus BLEU with another of sacrebleu's smoothing methods.
    pub fn score_with(&self, smooth: Smooth) -> f64 {
        self.score_over(smooth, false)
    }

    /// Sentence BLEU as sacrebleu's `sentence_bleu`: `exp` smoothing with the effective order,
    /// the mean over the orders the hypothesis has n-grams of (a 2-word sentence is not scored
    /// on its 0 trigrams).
    pub fn sentence_score(&self) -> f64 {
        self.sentence_score_with(Smooth::Exp)
    }

    /// Sentence BLEU (the effective order) with another smoothing method.
    pub fn sentence_score_with(&self, smooth: Smooth) -> f64 {
        self.score_over(smooth, true)
    }

    fn score_over(&self, smooth: Smooth, effective_order: bool) -> f64 {
        let bp = self.brevity_penalty();
        if self.correct.iter().all(|&c| c == 0) {
            return 0.0;
        }
        let mut precisions = [0.0f64; MAX_ORDER];
        let mut mteval = 1.0f64;
        let mut orders = MAX_ORDER;
        for (n, p) in precisions.iter_mut().enumerate() {
            // add-k adds k to the matches and the n-grams of orders 2 and up.
            let k = match smooth {
                Smooth::AddK(k) if n > 0 => k,
                _ => 0.0,
            };
            let correct = self.correct[n] as f64 + k;
            let total = self.total[n] as f64 + k;
            if total == 0.0 {
                break;
            }
            if effective_order {
                orders = n + 1;
            }
            *p = match smooth {
                _ if correct > 0.0 => 100.0 * correct / total,
                Smooth::Exp => {
                    mteval *= 2.0;
                    100.0 / (mteval * total)
                }
                Smooth::Floor(v) => 100.0 * v / total,
                // No smoothing: a zero precision, floored in the log below.
                Smooth::None | Smooth::AddK(_) => 0.0,
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

/// How BLEU is computed: sacrebleu's `--tokenize`, `--lowercase` and `--smooth-method` /
/// `--smooth-value`; the default is sacrebleu's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BleuOptions {
    pub tokenize: Tokenizer,
    /// Lower-case the text first (signature `case:lc`).
    pub lowercase: bool,
    pub smooth: Smooth,
}

impl BleuOptions {
    /// A segment as sacrebleu's `_preprocess_segment` makes it: lower-cased (optionally),
    /// trailing whitespace stripped, tokenised.
    fn preprocess(self, text: &str) -> String {
        let text = match self.lowercase {
            true => std::borrow::Cow::Owned(text.to_lowercase()),
            false => std::borrow::Cow::Borrowed(text),
        };
        self.tokenize.apply(pychar::rstrip(&text))
    }

    /// The signature's fields for these options (sacrebleu's `case`, `eff`, `tok`, `smooth`).
    pub fn signature(self) -> String {
        let case = if self.lowercase { "lc" } else { "mixed" };
        format!(
            "case:{case}|eff:no|tok:{}|smooth:{}",
            self.tokenize, self.smooth
        )
    }
}

impl From<Tokenizer> for BleuOptions {
    fn from(tokenize: Tokenizer) -> Self {
        BleuOptions {
            tokenize,
            ..Default::default()
        }
    }
}

/// sacrebleu's BLEU smoothing methods (Chen & Cherry 2014): `none`, `floor` (method 1: a zero
/// precision becomes value / n-grams), `add-k` (method 2: k added to the matches and n-grams of
/// orders 2 and up) and `exp` (method 3, mteval-v13a's, the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Smooth {
    None,
    Floor(f64),
    AddK(f64),
    #[default]
    Exp,
}

impl Smooth {
    pub const METHODS: [&'static str; 4] = ["exp", "floor", "add-k", "none"];

    /// The method named as sacrebleu's `--smooth-method`, with `--smooth-value` or sacrebleu's
    /// default value (floor 0.1, add-k 1); `exp` and `none` take no value.
    pub fn new(method: &str, value: Option<f64>) -> Result<Self, String> {
        if let Some(v) = value.filter(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(format!(
                "--smooth-value must be a non-negative number, not {v}"
            ));
        }
        let smooth = match method {
            "exp" => Smooth::Exp,
            "none" => Smooth::None,
            "floor" => Smooth::Floor(value.unwrap_or(0.1)),
            "add-k" => Smooth::AddK(value.unwrap_or(1.0)),
            other => {
                return Err(format!(
                    "unknown smoothing method `{other}` (expected {})",
                    Smooth::METHODS.join(", ")
                ))
            }
        };
        if value.is_some() && matches!(smooth, Smooth::Exp | Smooth::None) {
            return Err(format!("--smooth-method {method} takes no --smooth-value"));
        }
        Ok(smooth)
    }

    /// Its name on the command line.
    pub fn method(self) -> &'static str {
        match self {
            Smooth::None => "none",
            Smooth::Floor(_) => "floor",
            Smooth::AddK(_) => "add-k",
            Smooth::Exp => "exp",
        }
    }
}

/// As sacrebleu's signature writes it: `exp`, `none`, `floor[0.10]`, `add-k[1.00]`.
impl fmt::Display for Smooth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Smooth::Floor(v) | Smooth::AddK(v) => write!(f, "{}[{v:.2}]", self.method()),
            _ => f.write_str(self.method()),
        }
    }
}

/// sacrebleu's BLEU tokenisers (its `--tokenize`), named as its signature names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tokenizer {
    /// mteval-v13a, sacrebleu's default.
    #[default]
    Mteval13a,
    /// mteval-v14's international tokenisation: Unicode punctuation and symbols apart.
    Intl,
    /// Chinese characters apart, then 13a's rules (sacrebleu's default for Chinese targets).
    Zh,
    /// Every character a token.
    Char,
    /// Whitespace only.
    None,
}

impl Tokenizer {
    pub const ALL: [Tokenizer; 5] = [
        Tokenizer::Mteval13a,
        Tokenizer::Intl,
        Tokenizer::Zh,
        Tokenizer::Char,
        Tokenizer::None,
    ];

    /// The name on the command line and in the signature (`tok:13a`).
    pub fn name(self) -> &'static str {
        match self {
            Tokenizer::Mteval13a => "13a",
            Tokenizer::Intl => "intl",
            Tokenizer::Zh => "zh",
            Tokenizer::Char => "char",
            Tokenizer::None => "none",
        }
    }

    /// The tokenised line, tokens separated by spaces.
    pub fn apply(self, line: &str) -> String {
        match self {
            Tokenizer::Mteval13a => tokenize_13a(line),
            Tokenizer::Intl => tokenize_intl(line),
            Tokenizer::Zh => tokenize_zh(line),
            Tokenizer::Char => {
                let chars: Vec<String> = line.chars().map(String::from).collect();
                chars.join(" ")
            }
            Tokenizer::None => line.to_string(),
        }
    }
}

impl fmt::Display for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Tokenizer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        Tokenizer::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Tokenizer::ALL.iter().map(|t| t.name()).collect();
                format!(
                    "unknown BLEU tokeniser `{s}` (expected {})",
                    names.join(", ")
                )
            })
    }
}

// The four substitutions of sacrebleu's `TokenizerRegexp`, in order (Tercom's normalisation
// uses them too).
pub(super) static SYMBOLS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([\{-~\[-`\x20-&\(-\+:-@/])").unwrap());
pub(super) static PERIOD_COMMA_AFTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([^0-9])([\.,])").unwrap());
pub(super) static PERIOD_COMMA_BEFORE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([\.,])([^0-9])").unwrap());
pub(super) static DASH_AFTER_DIGIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([0-9])(-)").unwrap());

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
    tokenize_regexp(&format!(" {line} "))
}

/// sacrebleu's `TokenizerRegexp`, what `13a` and `zh` end with.
fn tokenize_regexp(line: &str) -> String {
    let line = SYMBOLS.replace_all(line, " ${1} ");
    let line = PERIOD_COMMA_AFTER.replace_all(&line, "${1} ${2} ");
    let line = PERIOD_COMMA_BEFORE.replace_all(&line, " ${1} ${2}");
    let line = DASH_AFTER_DIGIT.replace_all(&line, "${1} ${2} ");
    words(&line).join(" ")
}

// mteval-v14's international rules, as sacrebleu's `intl` applies them, in order.
static PUNCT_AFTER_NON_DIGIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(\P{N})(\p{P})").unwrap());
static PUNCT_BEFORE_NON_DIGIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(\p{P})(\P{N})").unwrap());
static SYMBOL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\p{S})").unwrap());

/// sacrebleu's `intl` tokeniser (mteval-v14 `--international-tokenization`): punctuation
/// apart unless between digits, symbols apart.
pub fn tokenize_intl(line: &str) -> String {
    let line = PUNCT_AFTER_NON_DIGIT.replace_all(line, "${1} ${2} ");
    let line = PUNCT_BEFORE_NON_DIGIT.replace_all(&line, " ${1} ${2}");
    let line = SYMBOL.replace_all(&line, " ${1} ");
    words(&line).join(" ")
}

/// The code points sacrebleu's `zh` tokeniser puts apart. Two of its ranges are written
/// `u'\u20000'` and `u'\u2f800'` (five hex digits where Python reads four and a `0`), so
/// string comparison makes them U+2001..=U+2A6D and U+2F81..=U+2FA1 (general punctuation,
/// arrows, mathematical operators among them) rather than the CJK extensions meant; kept, as
/// the numbers must be sacrebleu's.
const ZH_RANGES: [(u32, u32); 22] = [
    (0x3400, 0x4db5),
    (0x4e00, 0x9fa5),
    (0x9fa6, 0x9fbb),
    (0xf900, 0xfa2d),
    (0xfa30, 0xfa6a),
    (0xfa70, 0xfad9),
    (0x2001, 0x2a6d),
    (0x2f81, 0x2fa1),
    (0xff00, 0xffef),
    (0x2e80, 0x2eff),
    (0x3000, 0x303f),
    (0x31c0, 0x31ef),
    (0x2f00, 0x2fdf),
    (0x2ff0, 0x2fff),
    (0x3100, 0x312f),
    (0x31a0, 0x31bf),
    (0xfe10, 0xfe1f),
    (0xfe30, 0xfe4f),
    (0x2600, 0x26ff),
    (0x2700, 0x27bf),
    (0x3200, 0x32ff),
    (0x3300, 0x33ff),
];

/// sacrebleu's `zh` tokeniser: each Chinese character a token, then 13a's rules (without
/// 13a's entity unescaping).
pub fn tokenize_zh(line: &str) -> String {
    let mut out = String::with_capacity(line.len() * 2);
    for c in line.trim_matches(pychar::is_space).chars() {
        let cp = c as u32;
        if ZH_RANGES.iter().any(|&(lo, hi)| (lo..=hi).contains(&cp)) {
            out.push(' ');
            out.push(c);
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    tokenize_regexp(&out)
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

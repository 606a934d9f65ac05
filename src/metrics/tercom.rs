//! TER's tokeniser and its options, as sacrebleu's `TercomTokenizer` (a port of Tercom's
//! `Normalizer.java`): lower-casing unless case-sensitive, then optionally Tercom's
//! normalisation (punctuation apart, XML entities decoded, CJK characters apart with Asian
//! support), then optionally punctuation removed.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::bleu::{DASH_AFTER_DIGIT, PERIOD_COMMA_AFTER, PERIOD_COMMA_BEFORE, SYMBOLS};
use super::words;
use crate::normalize::pychar;

/// sacrebleu's four TER switches (`--ter-case-sensitive`, `--ter-normalized`,
/// `--ter-no-punct`, `--ter-asian-support`); all off is sacrebleu's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TerOptions {
    /// Keep case (by default text is lower-cased).
    pub case_sensitive: bool,
    /// Tercom's normalisation: punctuation split off, XML entities decoded, lines joined.
    pub normalized: bool,
    /// Remove `. , ? : ; ! " ( )`.
    pub no_punct: bool,
    /// With `normalized`, CJK characters apart; with `no_punct`, CJK and full-width
    /// punctuation removed. Alone it changes nothing.
    pub asian_support: bool,
}

impl TerOptions {
    /// The words of a segment: trailing whitespace stripped, tokenised, split.
    pub fn tokens(self, text: &str) -> Vec<String> {
        let text = self.tokenize(pychar::rstrip(text));
        words(&text).into_iter().map(String::from).collect()
    }

    /// The words of a reference: tokenised twice, as sacrebleu 2.5 does (its reference cache
    /// preprocesses each reference, and TER's reference statistics preprocess the result
    /// again). Only Tercom's normalisation sees a difference: `that's.` is `that's .` after one
    /// pass and `that 's .` after two.
    pub fn reference_tokens(self, text: &str) -> Vec<String> {
        let once = self.tokenize(pychar::rstrip(text));
        self.tokens(&once)
    }

    /// The tokenised line, tokens separated by single spaces (sacrebleu's
    /// `TercomTokenizer.__call__`).
    pub fn tokenize(self, line: &str) -> String {
        let mut line = if self.case_sensitive {
            line.to_string()
        } else {
            line.to_lowercase()
        };
        if self.normalized {
            line = normalize_general_and_western(&line);
            if self.asian_support {
                line = apart(&line, is_asian_apart);
            }
        }
        if self.no_punct {
            let asian = self.asian_support;
            line.retain(|c| !(is_punct(c) || (asian && is_asian_punct(c))));
        }
        words(&line).join(" ")
    }
}

/// The signature fields, as sacrebleu's (`norm` named `tercom-norm`, apart from neko's
/// normaliser).
impl fmt::Display for TerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "case:{}|tok:tercom|tercom-norm:{}|punct:{}|asian:{}",
            if self.case_sensitive { "mixed" } else { "lc" },
            yes_no(self.normalized),
            yes_no(!self.no_punct),
            yes_no(self.asian_support)
        )
    }
}

static POSSESSIVE: LazyLock<Regex> = LazyLock::new(|| Regex::new("'s ").unwrap());

/// Tercom's language-independent and Western normalisation, substitution by substitution.
fn normalize_general_and_western(line: &str) -> String {
    // End-of-line hyphenation joined, then lines joined.
    let line = line.replace("\n-", "").replace('\n', " ");
    let line = line
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    let line = format!(" {line} ");
    let line = SYMBOLS.replace_all(&line, " ${1} ");
    let line = POSSESSIVE.replace_all(&line, " 's ");
    // sacrebleu's second possessive rule (`'s$`) never matches: the line ends with the space
    // added above.
    let line = PERIOD_COMMA_AFTER.replace_all(&line, "${1} ${2} ");
    let line = PERIOD_COMMA_BEFORE.replace_all(&line, " ${1} ${2}");
    DASH_AFTER_DIGIT
        .replace_all(&line, "${1} ${2} ")
        .into_owned()
}

/// `line` with a space either side of every character `split` picks.
fn apart(line: &str, split: fn(char) -> bool) -> String {
    let mut out = String::with_capacity(line.len() * 2);
    for c in line.chars() {
        if split(c) {
            out.extend([' ', c, ' ']);
        } else {
            out.push(c);
        }
    }
    out
}

/// The characters Tercom's Asian normalisation puts apart: CJK ideographs (with extension A),
/// strokes, radicals, compatibility forms, sacrebleu's "enclosed letters" range (which it
/// writes as U+3200-U+3F22), and CJK and full-width punctuation. Its Hiragana, Katakana and
/// phonetic-extension rules are anchored at the line's start, where the normalisation has put a
/// space, so they never match and kana stay joined.
fn is_asian_apart(c: char) -> bool {
    matches!(c,
        '\u{4e00}'..='\u{9fff}'
        | '\u{3400}'..='\u{4dbf}'
        | '\u{31c0}'..='\u{31ef}'
        | '\u{2e80}'..='\u{2eff}'
        | '\u{3300}'..='\u{33ff}'
        | '\u{f900}'..='\u{faff}'
        | '\u{fe30}'..='\u{fe4f}'
        | '\u{3200}'..='\u{3f22}')
        || is_asian_punct(c)
}

/// sacrebleu's `ASIAN_PUNCT` and `FULL_WIDTH_PUNCT`.
fn is_asian_punct(c: char) -> bool {
    matches!(c,
        '\u{3001}' | '\u{3002}' | '\u{3008}'..='\u{3011}' | '\u{3014}'..='\u{301f}'
        | '\u{ff61}'..='\u{ff65}' | '\u{30fb}'
        | '\u{ff0e}' | '\u{ff0c}' | '\u{ff1f}' | '\u{ff1a}' | '\u{ff1b}' | '\u{ff01}'
        | '\u{ff02}' | '\u{ff08}' | '\u{ff09}')
}

/// What `--ter-no-punct` removes.
fn is_punct(c: char) -> bool {
    matches!(c, '.' | ',' | '?' | ':' | ';' | '!' | '"' | '(' | ')')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_only_lower_case() {
        let t = TerOptions::default();
        assert_eq!(t.tokenize("The CAT, sat."), "the cat, sat.");
    }

    #[test]
    fn normalisation_splits_punctuation_but_keeps_numbers() {
        let t = TerOptions {
            normalized: true,
            case_sensitive: true,
            ..Default::default()
        };
        assert_eq!(
            t.tokenize("It's 1,000.5 (dog's) 3-4 &amp;"),
            "It 's 1,000.5 ( dog 's ) 3 - 4 &"
        );
    }

    #[test]
    fn asian_support_alone_changes_nothing() {
        let t = TerOptions {
            asian_support: true,
            ..Default::default()
        };
        assert_eq!(t.tokenize("漢字。"), "漢字。");
        let n = TerOptions {
            normalized: true,
            ..t
        };
        assert_eq!(n.tokenize("漢字かな。"), "漢 字 かな 。");
        let p = TerOptions {
            no_punct: true,
            ..t
        };
        assert_eq!(p.tokenize("漢字。(x)"), "漢字x");
    }

    #[test]
    fn signature_names_the_options() {
        let t = TerOptions {
            case_sensitive: true,
            no_punct: true,
            ..Default::default()
        };
        assert_eq!(
            t.to_string(),
            "case:mixed|tok:tercom|tercom-norm:no|punct:no|asian:no"
        );
    }
}

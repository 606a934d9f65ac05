//! Ports of openai-whisper's text normalisers (whisper/normalizers, MIT; see `LICENSE` here):
//! `EnglishTextNormalizer` ([`english`]) and `BasicTextNormalizer` with its default arguments
//! ([`basic`]). Each step below is one line of the Python, in the same order.
//!
//! Known differences from the Python, all at the level of single unusual characters:
//! - `\b` in the contraction, title and filler patterns and in the number normaliser's (`1`
//!   and `1s`, ordinal suffixes, "and a half") follows Unicode's word definition (the Rust
//!   `regex` crate), which also counts combining marks and connector punctuation other than `_`
//!   as word characters; Python's `re` counts only alphanumerics and `_`, which in turn
//!   include "other" and letter numbers (`²`, `½`, `①`, `Ⅻ`) that the Rust `\w` does not, so
//!   `\b` falls between `mr` and `²` in Rust and not in Python ("mr² smith": Python keeps
//!   `mr`, Rust spells it `mister`).
//! - Unicode tables (categories, NFKD) are those of the Rust crates (Unicode 16) rather than
//!   those of the Python that runs Whisper (Python 3.11: Unicode 14).

mod numbers;
mod spelling;

use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use super::pychar;
pub use numbers::normalize_numbers;
pub use spelling::americanize;

fn re(p: &str) -> Regex {
    Regex::new(p).expect("valid pattern")
}

static BRACKETS: LazyLock<Regex> = LazyLock::new(|| re(r"[<\[][^>\]]*[>\]]"));
static PARENS: LazyLock<Regex> = LazyLock::new(|| re(r"\(([^)]+?)\)"));
static FILLERS: LazyLock<Regex> = LazyLock::new(|| re(r"\b(hmm|mm|mhm|mmm|uh|um)\b"));
static SPACE_APOSTROPHE: LazyLock<Regex> = LazyLock::new(|| re(r"[\s\x1c-\x1f]+'"));
static DIGIT_COMMA: LazyLock<Regex> = LazyLock::new(|| re(r"(\d),(\d)"));
static PERIOD: LazyLock<Regex> = LazyLock::new(|| re(r"\.([^0-9]|$)"));
static SYMBOL_PREFIX: LazyLock<Regex> = LazyLock::new(|| re(r"[.$¢€£]([^0-9])"));
static SYMBOL_SUFFIX: LazyLock<Regex> = LazyLock::new(|| re(r"([^0-9])%"));

/// `EnglishTextNormalizer.replacers`, in order: contractions, titles, perfect tenses, then
/// general contractions. Replacements are in `regex` syntax (`${1}`), none is used here.
const REPLACERS: [(&str, &str); 43] = [
    (r"\bwon't\b", "will not"),
    (r"\bcan't\b", "can not"),
    (r"\blet's\b", "let us"),
    (r"\bain't\b", "aint"),
    (r"\by'all\b", "you all"),
    (r"\bwanna\b", "want to"),
    (r"\bgotta\b", "got to"),
    (r"\bgonna\b", "going to"),
    (r"\bi'ma\b", "i am going to"),
    (r"\bimma\b", "i am going to"),
    (r"\bwoulda\b", "would have"),
    (r"\bcoulda\b", "could have"),
    (r"\bshoulda\b", "should have"),
    (r"\bma'am\b", "madam"),
    (r"\bmr\b", "mister "),
    (r"\bmrs\b", "missus "),
    (r"\bst\b", "saint "),
    (r"\bdr\b", "doctor "),
    (r"\bprof\b", "professor "),
    (r"\bcapt\b", "captain "),
    (r"\bgov\b", "governor "),
    (r"\bald\b", "alderman "),
    (r"\bgen\b", "general "),
    (r"\bsen\b", "senator "),
    (r"\brep\b", "representative "),
    (r"\bpres\b", "president "),
    (r"\brev\b", "reverend "),
    (r"\bhon\b", "honorable "),
    (r"\basst\b", "assistant "),
    (r"\bassoc\b", "associate "),
    (r"\blt\b", "lieutenant "),
    (r"\bcol\b", "colonel "),
    (r"\bjr\b", "junior "),
    (r"\bsr\b", "senior "),
    (r"\besq\b", "esquire "),
    (r"'d been\b", " had been"),
    (r"'s been\b", " has been"),
    (r"'d gone\b", " had gone"),
    (r"'s gone\b", " has gone"),
    (r"'d done\b", " had done"),
    (r"'s got\b", " has got"),
    (r"n't\b", " not"),
    (r"'re\b", " are"),
];

/// The last general contractions (kept apart only to keep the table above readable).
const REPLACERS_TAIL: [(&str, &str); 6] = [
    (r"'s\b", " is"),
    (r"'d\b", " would"),
    (r"'ll\b", " will"),
    (r"'t\b", " not"),
    (r"'ve\b", " have"),
    (r"'m\b", " am"),
];

static COMPILED_REPLACERS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    REPLACERS
        .iter()
        .chain(REPLACERS_TAIL.iter())
        .map(|&(p, r)| (re(p), r))
        .collect()
});

/// All replacers as one alternation. If it finds nothing, no replacer fires: the first one to
/// fire would have to match the untouched input. Most text has no contraction or title, and one
/// search is much cheaper than 49.
static ANY_REPLACER: LazyLock<Regex> = LazyLock::new(|| {
    let alternatives: Vec<String> = REPLACERS
        .iter()
        .chain(REPLACERS_TAIL.iter())
        .map(|(p, _)| format!("(?:{p})"))
        .collect();
    re(&alternatives.join("|"))
});

/// Letters that NFKD does not split into base letter + mark, with their ASCII spelling.
fn additional_diacritic(c: char) -> Option<&'static str> {
    Some(match c {
        'œ' => "oe",
        'Œ' => "OE",
        'ø' => "o",
        'Ø' => "O",
        'æ' => "ae",
        'Æ' => "AE",
        'ß' => "ss",
        'ẞ' => "SS",
        'đ' | 'ð' => "d",
        'Đ' | 'Ð' => "D",
        'þ' | 'Þ' => "th",
        'ł' => "l",
        'Ł' => "L",
        _ => return None,
    })
}

/// Category Mark, Symbol or Punctuation: `unicodedata.category(c)[0] in "MSP"`.
fn is_msp(c: char) -> bool {
    use unicode_general_category::GeneralCategory as G;
    matches!(
        pychar::category(c),
        G::NonspacingMark
            | G::SpacingMark
            | G::EnclosingMark
            | G::MathSymbol
            | G::CurrencySymbol
            | G::ModifierSymbol
            | G::OtherSymbol
            | G::ConnectorPunctuation
            | G::DashPunctuation
            | G::OpenPunctuation
            | G::ClosePunctuation
            | G::InitialPunctuation
            | G::FinalPunctuation
            | G::OtherPunctuation
    )
}

/// `remove_symbols_and_diacritics(s, keep)`: NFKD, drop nonspacing marks, spell out the
/// letters in [`additional_diacritic`], and turn other marks, symbols and punctuation into spaces.
pub fn remove_symbols_and_diacritics(s: &str, keep: &str) -> String {
    if s.is_ascii() {
        // NFKD leaves ASCII alone, and ASCII punctuation is exactly its P and S characters.
        return s
            .chars()
            .map(|c| {
                if c.is_ascii_punctuation() && !keep.contains(c) {
                    ' '
                } else {
                    c
                }
            })
            .collect();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.nfkd() {
        if keep.contains(c) {
            out.push(c);
        } else if let Some(r) = additional_diacritic(c) {
            out.push_str(r);
        } else if pychar::category(c) == unicode_general_category::GeneralCategory::NonspacingMark {
        } else if is_msp(c) {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// `remove_symbols(s)`: NFKC, then marks, symbols and punctuation become spaces.
pub fn remove_symbols(s: &str) -> String {
    s.nfkc().map(|c| if is_msp(c) { ' ' } else { c }).collect()
}

/// The shared start of both normalisers: lower-case, drop `[...]`/`<...>` and `(...)`.
fn lower_and_drop_brackets(s: &str) -> String {
    let s = s.to_lowercase();
    let s = BRACKETS.replace_all(&s, "");
    PARENS.replace_all(&s, "").into_owned()
}

/// Whisper's `EnglishTextNormalizer()(s)`.
pub fn english(s: &str) -> String {
    let s = lower_and_drop_brackets(s);
    let s = FILLERS.replace_all(&s, "");
    let mut s = SPACE_APOSTROPHE.replace_all(&s, "'").into_owned();
    if ANY_REPLACER.is_match(&s) {
        for (pattern, replacement) in COMPILED_REPLACERS.iter() {
            if let std::borrow::Cow::Owned(r) = pattern.replace_all(&s, *replacement) {
                s = r;
            }
        }
    }
    let s = DIGIT_COMMA.replace_all(&s, "${1}${2}");
    let s = PERIOD.replace_all(&s, " ${1}");
    let s = remove_symbols_and_diacritics(&s, ".%$¢€£");
    let s = normalize_numbers(&s);
    let s = americanize(&s);
    let s = SYMBOL_PREFIX.replace_all(&s, " ${1}");
    let s = SYMBOL_SUFFIX.replace_all(&s, "${1} ");
    pychar::squeeze_spaces(&s)
}

/// Whisper's `BasicTextNormalizer()(s)` (no diacritic removal, no letter splitting).
pub fn basic(s: &str) -> String {
    let s = lower_and_drop_brackets(s);
    let s = remove_symbols(&s).to_lowercase();
    pychar::squeeze_spaces(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_examples() {
        assert_eq!(
            english("Mr. Smith won't pay $20 million!"),
            "mister smith will not pay $20000000"
        );
        assert_eq!(
            english("Um, the colour [noise] is (maybe) grey."),
            "the color is gray"
        );
        assert_eq!(english("Café ñandú"), "cafe nandu");
    }

    #[test]
    fn basic_keeps_diacritics() {
        assert_eq!(basic("Café, [x] (y) Ñandú!"), "café ñandú ");
    }
}

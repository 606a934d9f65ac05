//! Small stages: case folding, punctuation removal, whitespace squeezing, and the Hypo2Trans
//! strip. Each is a pure `&str -> String` function.

use unicode_general_category::GeneralCategory as Gc;

use super::pychar;

/// Unicode lower-casing (full mappings, final sigma), as Python's `str.lower()`.
pub fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// Apostrophes that join the parts of one word (`don't`, `rock ’n’ roll`).
pub(crate) fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{02bc}' | '`')
}

/// A letter, a digit, or a mark that belongs to one (a virama, a tone mark, a combining accent
/// as in `cafe\u{301}`): what a word is made of, punctuation and symbols aside. Variation
/// selectors and the keycap mark dress symbols (`❤️`, `1️⃣`), not letters: they are not.
pub(crate) fn is_word_char(c: char) -> bool {
    let dresses_a_symbol =
        matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}' | '\u{20E3}');
    c.is_alphanumeric()
        || (!dresses_a_symbol
            && matches!(
                pychar::category(c),
                Gc::NonspacingMark | Gc::SpacingMark | Gc::EnclosingMark
            ))
}

/// Removes punctuation (Unicode category P*): apostrophes are deleted so `don't` stays one word
/// (`dont`); every other punctuation character becomes a space, so `and/or` and `well-known` split.
/// Symbols (`$`, `%`, `+`) are kept.
pub fn strip_punctuation(s: &str) -> String {
    s.chars()
        .filter(|&c| !is_apostrophe(c))
        .map(|c| if is_punctuation(c) { ' ' } else { c })
        .collect()
}

fn is_punctuation(c: char) -> bool {
    matches!(
        pychar::category(c),
        Gc::ConnectorPunctuation
            | Gc::DashPunctuation
            | Gc::OpenPunctuation
            | Gc::ClosePunctuation
            | Gc::InitialPunctuation
            | Gc::FinalPunctuation
            | Gc::OtherPunctuation
    )
}

/// Squeezes whitespace runs to one space and trims both ends.
pub fn squeeze_whitespace(s: &str) -> String {
    crate::metrics::words(s).join(" ")
}

/// Hypo2Trans' cleaning after lower-casing: `re.sub(r"[^\w\s]|\d", "", s)` with Python's
/// Unicode classes, i.e. delete everything that is neither a word character nor whitespace, and
/// every decimal digit.
pub fn h2t_strip(s: &str) -> String {
    s.chars()
        .filter(|&c| (pychar::is_word(c) || pychar::is_space(c)) && !pychar::is_decimal(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_do_what_they_say() {
        assert_eq!(
            strip_punctuation("Don't, well-known (a/b)!"),
            "Dont  well known  a b  "
        );
        assert_eq!(squeeze_whitespace("  a \t b "), "a b");
        assert_eq!(h2t_strip("it's 4 o'clock_x, ok? ½"), "its  oclock_x ok ½");
        assert_eq!(lower("ΟΔΟΣ"), "\u{3bf}\u{3b4}\u{3bf}\u{3c2}");
    }
}

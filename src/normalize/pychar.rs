//! Python's notion of character classes, so ports of Python normalisers and tokenisers split
//! and delete exactly the characters their originals do: `str.isspace` (and `re`'s `\s`),
//! `str.isalnum` (and `re`'s `\w`, with `_`), `str.isdecimal` (and `re`'s `\d`).

use unicode_general_category::{get_general_category, GeneralCategory as Gc};

/// Python `str.isspace`: Unicode White_Space plus the separators U+001C..U+001F.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python `str.isalnum`: letters (L*) and numbers (N*).
pub fn is_alnum(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    matches!(
        get_general_category(c),
        Gc::UppercaseLetter
            | Gc::LowercaseLetter
            | Gc::TitlecaseLetter
            | Gc::ModifierLetter
            | Gc::OtherLetter
            | Gc::DecimalNumber
            | Gc::LetterNumber
            | Gc::OtherNumber
    )
}

/// Python `re`'s `\w` on `str` patterns: alphanumerics and `_`.
pub fn is_word(c: char) -> bool {
    c == '_' || is_alnum(c)
}

/// Python `re`'s `\d` on `str` patterns: decimal digits (Nd) of any script.
pub fn is_decimal(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    get_general_category(c) == Gc::DecimalNumber
}

/// The value 0-9 of a decimal digit of any script: Unicode encodes each script's digits as a
/// contiguous run starting at zero, so the offset within the run of Nd characters is the value.
pub fn decimal_value(c: char) -> Option<u32> {
    if let Some(d) = c.to_digit(10) {
        return Some(d);
    }
    if !is_decimal(c) {
        return None;
    }
    let mut start = c as u32;
    while let Some(prev) = start.checked_sub(1).and_then(char::from_u32) {
        if !is_decimal(prev) {
            break;
        }
        start -= 1;
    }
    Some((c as u32 - start) % 10)
}

/// Python `str.rstrip()`.
pub fn rstrip(s: &str) -> &str {
    s.trim_end_matches(is_space)
}

/// Python `re.sub(r"\s+", " ", s)`: every whitespace run becomes one space (ends kept).
pub fn squeeze_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_space = false;
    for c in s.chars() {
        if is_space(c) {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out
}

/// The general category of a character, for stages that delete or replace by category.
pub fn category(c: char) -> Gc {
    get_general_category(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_python() {
        assert!(is_space('\u{1f}') && is_space('\u{3000}') && !is_space('\u{200b}'));
        assert!(is_word('_') && is_word('é') && is_word('½') && !is_word('\u{301}'));
        assert!(is_decimal('٣') && !is_decimal('½'));
        assert_eq!(decimal_value('٣'), Some(3));
        assert_eq!(decimal_value('𝟗'), Some(9));
        assert_eq!(squeeze_spaces(" a \t\n b "), " a b ");
    }
}

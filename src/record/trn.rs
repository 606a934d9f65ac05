//! sclite's `trn` transcripts: a line is the text, then the utterance id in parentheses at its
//! end (`the cat sat (spk1-001)`), as NIST's scoring tools, ESPnet and many recipes write
//! references and 1-best lists. Read so that the id is the record's, not a last word that every
//! line would get wrong.

/// The text and the id of a `trn` line, when it is one: it ends with `(ID)`, the id without
/// whitespace or parentheses and with a digit in it (utterance ids are numbered; a transcript
/// line ending in `(laughs)` or `(applause)` is not an id), after whitespace or alone.
pub fn split_line(line: &str) -> Option<(&str, &str)> {
    let body = line.trim().strip_suffix(')')?;
    let open = body.rfind('(')?;
    let (words, id) = (&body[..open], &body[open + 1..]);
    let plain_id = !id.contains(|c: char| c.is_whitespace() || c == ')');
    let apart = words.is_empty() || words.ends_with(char::is_whitespace);
    (plain_id && apart && id.bytes().any(|b| b.is_ascii_digit())).then(|| (words.trim(), id))
}

/// Whether these non-blank lines are a `trn` file: every one a `trn` line, no id twice (a
/// file of numbered asides would repeat them; utterance ids do not).
pub fn is_trn<'a>(mut lines: impl Iterator<Item = &'a str>) -> bool {
    let mut ids = std::collections::HashSet::new();
    let mut any = false;
    let all = lines.all(|l| {
        any = true;
        split_line(l).is_some_and(|(_, id)| ids.insert(id))
    });
    any && all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trn_line_ends_with_a_numbered_id_in_parentheses() {
        assert_eq!(
            split_line("the cat sat (spk1-001)\r"),
            Some(("the cat sat", "spk1-001"))
        );
        assert_eq!(split_line("(utt_7)"), Some(("", "utt_7")));
        assert_eq!(
            split_line("tab\t(1272-128104-0000)"),
            Some(("tab", "1272-128104-0000"))
        );
        // Asides and text glued to the parenthesis are words, not ids.
        assert_eq!(split_line("and then (laughs)"), None);
        assert_eq!(split_line("call f(1)"), None);
        assert_eq!(split_line("a (b c1)"), None);
        assert_eq!(split_line("no id"), None);
    }

    #[test]
    fn a_trn_file_has_every_line_so_and_no_id_twice() {
        assert!(is_trn(["a (u1)", "b (u2)"].into_iter()));
        assert!(!is_trn(["a (u1)", "b"].into_iter()));
        assert!(!is_trn(["a (1)", "b (1)"].into_iter()));
        assert!(!is_trn(std::iter::empty()));
    }
}

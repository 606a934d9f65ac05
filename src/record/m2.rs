//! M2, the grammatical error correction corpora's format (CoNLL-2013/2014, BEA-2019, FCE): a
//! block per sentence, `S` and the tokenised source, then an `A` line per edit, `A start
//! end|||type|||correction|||required|||comment|||annotator`. Read as GEC records: the source
//! is the text to correct, and the source with each annotator's edits applied (as the BEA-2019
//! shared task's `corr_from_m2.py -id N` makes it) is one reference, annotator 0's first. The
//! annotators of a sentence are those its edit lines name (`noop` lines too); a sentence
//! without edit lines is its own reference.

use serde_json::Value;

use super::{Record, RecordError};

/// The annotator of an edit line without the annotator field (fewer than six fields).
const FIRST_ANNOTATOR: &str = "0";

/// Edit types that change nothing: no error (`noop`), an error left uncorrected (`UNK`), and
/// `Um` (unclear meaning), as `corr_from_m2.py` skips them.
const SKIPPED: [&str; 3] = ["noop", "UNK", "Um"];

/// Whether a line opens a sentence: `S` and its tokens.
pub fn is_sentence(line: &str) -> bool {
    line == "S" || line.starts_with("S ")
}

/// Whether a line is an edit: `A`, its span and its `|||` fields.
fn is_edit(line: &str) -> bool {
    line.starts_with("A ") && line.contains("|||")
}

/// Whether these non-blank lines are M2: some edit line, the first of its lines a sentence, and
/// at least half of the lines its own (a line cut short or a stray one is an error of the
/// sentence it falls in, as a broken line of JSON Lines is; a text whose lines start with
/// "A " and "S " has no `|||`).
pub fn is_m2<'a>(lines: impl Iterator<Item = &'a str> + Clone) -> bool {
    let own = |l: &&str| is_sentence(l) || is_edit(l);
    let first = lines.clone().find(own);
    let (count, all) = (lines.clone().filter(own).count(), lines.clone().count());
    first.is_some_and(is_sentence) && lines.clone().any(is_edit) && 2 * count >= all
}

/// The GEC record of one block (its `S` line and the `A` lines after it).
pub fn record(block: &str, index: usize) -> Result<Record, RecordError> {
    let mut lines = block.lines().map(str::trim_end);
    let first = lines.next().unwrap_or_default().trim_start();
    if !is_sentence(first) {
        let why = "a line outside a sentence: no `S` line before it since the blank line";
        return Err(RecordError::new(Some("S"), why));
    }
    let source = first[1..].trim();
    // An error line still carries the task and the source, its prediction as for any record.
    let failed = |mut e: RecordError| {
        (e.task, e.best) = (Some("gec".to_string()), Some(source.to_string()));
        e
    };
    let edits = lines
        .map(edit)
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    let mut references = Vec::new();
    for annotator in annotators(&edits) {
        let own = edits.iter().filter(|e| e.annotator == annotator);
        references.push(apply(source, own).map_err(failed)?);
    }
    let mut references = references.into_iter();
    let mut record = Record::one_best(Value::Null, source.to_string()).at_position(index);
    record.task = Some("gec".to_string());
    record.reference = Some(references.next().unwrap_or_else(|| source.to_string()));
    record.other_references = references.collect();
    Ok(record)
}

/// One `A` line: whose edit it is, and what it does (`None` for `noop`, `UNK`, `Um`).
struct Edit<'a> {
    line: &'a str,
    annotator: &'a str,
    change: Option<(usize, usize, &'a str)>,
}

/// The annotators the edits name, annotator 0 first, then in number order (names that are not
/// numbers after them, alphabetically), as the M2 scorer finds them per sentence.
fn annotators<'a>(edits: &[Edit<'a>]) -> Vec<&'a str> {
    let mut names: Vec<&str> = edits.iter().map(|e| e.annotator).collect();
    names.sort_by_key(|n| (n.parse::<u64>().map_or(1, |_| 0), n.parse::<u64>().ok(), *n));
    names.dedup();
    names
}

/// `source` with one annotator's edits applied in span order (spans are positions in the
/// source, however the lines are ordered, as the M2 scorer and ERRANT read them); each edit
/// moves the later spans by what it added or removed, as `corr_from_m2.py` does.
fn apply<'a>(
    source: &str,
    edits: impl Iterator<Item = &'a Edit<'a>>,
) -> Result<String, RecordError> {
    let mut tokens: Vec<&str> = source.split_whitespace().collect();
    let mut offset: isize = 0;
    let mut edits: Vec<_> = edits.collect();
    // Stable: an insertion keeps its line's place among edits at the same position.
    edits.sort_by_key(|e| e.change.map(|(start, end, _)| (start, end)));
    for e in edits {
        let Some((start, end, correction)) = e.change else {
            continue;
        };
        let (start, end) = (start as isize + offset, end as isize + offset);
        if start < 0 || end < start || end as usize > tokens.len() {
            return Err(RecordError::new(
                Some("A"),
                format!(
                    "`{}`: its span does not fit the sentence's {} tokens (after the edits before it)",
                    e.line,
                    tokens.len()
                ),
            ));
        }
        let words: Vec<&str> = correction_words(correction);
        offset += words.len() as isize - (end - start);
        tokens.splice(start as usize..end as usize, words);
    }
    Ok(tokens.join(" "))
}

/// The words an edit puts in its span. The M2 scorer's conventions: `a||b` are alternatives
/// (a reference takes the first) and `-NONE-` is a deletion, not words to write.
fn correction_words(correction: &str) -> Vec<&str> {
    let first = correction.split("||").next().unwrap_or_default().trim();
    if first == "-NONE-" {
        return Vec::new();
    }
    first.split_whitespace().collect()
}

/// An `A` line read: its annotator, and its span and correction unless it changes nothing.
fn edit(line: &str) -> Result<Edit<'_>, RecordError> {
    let fields: Vec<&str> = line.split("|||").collect();
    let bad = |why: &str| Err(RecordError::new(Some("A"), format!("`{line}`: {why}")));
    if fields.len() < 3 {
        return bad("expected `A start end|||type|||correction|||...|||annotator`");
    }
    let annotator = match fields.len() {
        6.. => fields.last().expect("six fields").trim(),
        _ => FIRST_ANNOTATOR,
    };
    let mut edit = Edit {
        line,
        annotator,
        change: None,
    };
    if SKIPPED.contains(&fields[1].trim()) {
        return Ok(edit);
    }
    let span: Vec<&str> = fields[0]
        .trim_start_matches('A')
        .split_whitespace()
        .collect();
    match span.as_slice() {
        [start, end] => match (start.parse(), end.parse()) {
            (Ok(start), Ok(end)) => {
                edit.change = Some((start, end, fields[2]));
                Ok(edit)
            }
            _ => bad("its span is not two token positions"),
        },
        _ => bad("its span is not two token positions"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spans are source positions whatever the order of the lines; `a||b` gives its first
    /// alternative and `-NONE-` deletes, as the M2 scorer reads them.
    #[test]
    fn edits_apply_in_span_order_with_the_m2_scorer_s_conventions() {
        let reference = |block: &str| record(block, 0).unwrap().reference.unwrap();
        let unordered = "S a b c d\nA 2 3|||R:X|||X Y|||REQUIRED|||-NONE-|||0\nA 0 1|||R:X|||Z|||REQUIRED|||-NONE-|||0";
        assert_eq!(reference(unordered), "Z b X Y d");
        let alternatives = "S The cat sat at mat .\nA 3 4|||Prep|||on|||REQUIRED|||-NONE-|||0\nA 4 4|||ArtOrDet|||the||a|||REQUIRED|||-NONE-|||0";
        assert_eq!(reference(alternatives), "The cat sat on the mat .");
        let none = "S He is a the best .\nA 2 3|||ArtOrDet|||-NONE-|||REQUIRED|||-NONE-|||0";
        assert_eq!(reference(none), "He is the best .");
    }

    /// BEA-2019's example of the format (its website), with a third annotator's `noop`.
    const BEA: &str = "S This are a sentence .\n\
        A 1 2|||R:VERB:SVA|||is|||REQUIRED|||-NONE-|||0\n\
        A 3 3|||M:ADJ|||good|||REQUIRED|||-NONE-|||0\n\
        A 1 2|||R:VERB:SVA|||is|||REQUIRED|||-NONE-|||1\n\
        A -1 -1|||noop|||-NONE-|||REQUIRED|||-NONE-|||2";

    fn reference(block: &str) -> String {
        record(block, 0).unwrap().reference.unwrap()
    }

    #[test]
    fn each_annotators_edits_applied_make_a_reference() {
        let r = record(BEA, 7).unwrap();
        assert_eq!(r.hypotheses, ["This are a sentence ."]);
        assert_eq!(r.reference.as_deref(), Some("This is a good sentence ."));
        // Annotator 1 fixed the verb alone; annotator 2 found nothing to fix.
        assert_eq!(
            r.other_references,
            ["This is a sentence .", "This are a sentence ."]
        );
        assert_eq!((r.id, r.task.as_deref()), (Value::from(7), Some("gec")));
        // Deletions (an empty correction) and insertions move the spans after them.
        let block = "S a b c d e\n\
            A 0 1|||U:DET||||||REQUIRED|||-NONE-|||0\n\
            A 2 2|||M:X|||x y|||REQUIRED|||-NONE-|||0\n\
            A 3 5|||R:X|||z|||REQUIRED|||-NONE-|||0";
        assert_eq!(reference(block), "b x y c z");
        // noop, UNK and Um change nothing; a sentence without edits is its own reference.
        let block = "S it is\nA 0 1|||UNK|||-NONE-|||REQUIRED|||-NONE-|||0";
        assert_eq!(reference(block), "it is");
        assert_eq!(reference("S fine ."), "fine .");
        // Annotator 0 comes first wherever its lines are; a line without the annotator field is
        // annotator 0's.
        let block = "S a b\n\
            A 0 1|||R:X|||c|||REQUIRED|||-NONE-|||10\n\
            A 1 2|||R:X|||d|||REQUIRED|||-NONE-|||2\n\
            A 0 1|||R:X|||e";
        let r = record(block, 0).unwrap();
        assert_eq!(r.references(), ["e b", "a d", "c b"]);
    }

    #[test]
    fn an_edit_that_does_not_fit_is_an_error_naming_it() {
        for (block, says) in [
            (
                "S a b\nA 1 5|||R:X|||c|||REQUIRED|||-NONE-|||0",
                "does not fit",
            ),
            (
                "S a b\nA x 1|||R:X|||c|||REQUIRED|||-NONE-|||0",
                "two token positions",
            ),
            ("S a b\nA 0 1|||R:X", "expected"),
        ] {
            let err = record(block, 0).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("A"), "{block}");
            assert!(err.message.contains(says), "{block}: {}", err.message);
            assert_eq!(err.best.as_deref(), Some("a b"));
        }
    }

    #[test]
    fn m2_is_s_lines_and_a_lines_with_fields() {
        assert!(is_m2(BEA.lines()));
        assert!(is_m2(
            ["S a .", "A 0 1|||R:X|||b|||REQUIRED|||-NONE-|||0", "S c ."].into_iter()
        ));
        // Text whose lines start with "S " and "A ", and sources without one edit, are not.
        assert!(!is_m2(["S is for sun", "A is for apple"].into_iter()));
        assert!(!is_m2(["S one", "S two"].into_iter()));
        assert!(!is_m2(
            ["A 0 1|||R:X|||b|||REQUIRED|||-NONE-|||0", "S a"].into_iter()
        ));
        assert!(!is_m2(std::iter::empty()));
        // A line cut short or a stray line among them: still M2 (its sentence is the error).
        let cut = [
            "S a .",
            "A 0 1|||R:X|||b|||REQUIRED|||-NONE-|||0",
            "S c .",
            "A 0 1",
        ];
        assert!(is_m2(cut.into_iter()));
        assert!(!is_m2(["S a .", "A 0 1|||R:X", "x", "y", "z"].into_iter()));
    }
}

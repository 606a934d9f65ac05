//! `fairseq-generate`'s output, as its translation and speech translation (S2T) users keep it
//! (`fairseq-generate ... --nbest 5 > gen.out`): a sentence's lines together, each `X-ID` and a
//! tab: `S` its source, `T` its reference, `H` a hypothesis with its score, `D` the same
//! detokenised, `P` positional scores. Read as one record per sentence: the `D` lines (else
//! the `H` lines) are its N-best, best first, with their scores; `T` is its reference. The run's
//! log lines and its closing score line (`Generate test with beam=5: BLEU4 = ...`) are no
//! records.

use serde_json::Value;

use super::{Record, RecordError};

const NOT_A_LINE: &str =
    "not a fairseq-generate line (`S-ID`, `T-ID`, `H-ID`, `D-ID` or `P-ID` and a tab)";

/// A line's kind letter, sentence id and the text after the tab, when it is one of
/// `fairseq-generate`'s (`H-12\t-0.35\tthe house`).
pub fn split_line(line: &str) -> Option<(char, &str, &str)> {
    // A line whose text is empty (`T-6`, an empty reference) may have lost its tab to trimming.
    let (head, rest) = line.split_once('\t').unwrap_or((line.trim_end(), ""));
    let (kind, id) = head.split_once('-')?;
    let kind = match kind.as_bytes() {
        [k] if k.is_ascii_uppercase() => *k as char,
        _ => return None,
    };
    let numbered = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    numbered.then_some((kind, id, rest))
}

/// Whether a line is what `fairseq-generate` writes besides its records: a log line (`2024-05-01
/// 12:00:00 | INFO | fairseq...`; fairseq 0.9 and older, `| loaded 3003 examples ...`) or its
/// closing score (`Generate test with beam=5: ...`, older `| Generate test ...`).
pub fn is_chatter(line: &str) -> bool {
    line.starts_with("Generate ")
        || line.starts_with("| ")
        || line.contains(" | INFO | ")
        || line.contains(" | WARNING | ")
}

/// Whether these non-blank lines are `fairseq-generate` output: some `H` line, and at least
/// half of the lines besides its chatter its lines (a line cut short or a stray one is an error).
pub fn is_generate<'a>(lines: impl Iterator<Item = &'a str> + Clone) -> bool {
    let hypothesis = |l: &str| split_line(l).is_some_and(|(k, _, _)| k == 'H');
    let records = lines.filter(|l| !is_chatter(l));
    let count = records.clone().filter(|l| split_line(l).is_some()).count();
    records.clone().any(hypothesis) && 2 * count >= records.count()
}

/// The record of one sentence's lines (`block`, every line with the same id).
pub fn record(block: &str) -> Result<Record, RecordError> {
    let lines: Vec<(char, &str, &str)> = block.lines().filter_map(split_line).collect();
    let id = match lines.first() {
        Some((_, id, _)) => id.parse::<u64>().map_or(Value::from(*id), Value::from),
        None => return Err(RecordError::new(None, NOT_A_LINE)),
    };
    let of = |kind: char| lines.iter().filter(move |(k, _, _)| *k == kind);
    let kind = if of('D').next().is_some() { 'D' } else { 'H' };
    // `score\ttext`; a score alone is an empty hypothesis (its tab trimmed away), and a
    // hypothesis without its score is still a hypothesis.
    let scored: Vec<(&str, &str)> = (of(kind))
        .map(|(_, _, rest)| match rest.split_once('\t') {
            Some(parts) => parts,
            None if rest.trim().parse::<f64>().is_ok() => (*rest, ""),
            None => ("", *rest),
        })
        .collect();
    let hypotheses: Vec<String> = scored.iter().map(|(_, t)| t.trim().to_string()).collect();
    let scores: Option<Vec<f64>> = scored.iter().map(|(s, _)| s.trim().parse().ok()).collect();
    // An error line keeps the sentence's id (a position would clash with fairseq's numbers) and,
    // past a stray line, its 1-best.
    let failed = |field, message: String| RecordError {
        id: Some(Box::new(id.clone())),
        best: hypotheses.first().cloned(),
        ..RecordError::new(field, message)
    };
    if let Some(k) = block.lines().position(|l| split_line(l).is_none()) {
        return Err(failed(None, format!("its line {}: {NOT_A_LINE}", k + 1)));
    }
    if hypotheses.is_empty() {
        let why = "the sentence has no hypothesis (`H-ID` or `D-ID` line)";
        return Err(failed(Some("H"), why.into()));
    }
    let mut record = Record::from_hypotheses(id, hypotheses);
    record.scores = scores;
    record.reference = of('T').next().map(|(_, _, t)| t.trim().to_string());
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentence_s_detokenised_hypotheses_and_reference_make_its_record() {
        let block = "S-12\tdas Haus ist klein\n\
            T-12\tthe house is small\n\
            H-12\t-0.35\tthe house is small\n\
            D-12\t-0.35\tthe house is small\n\
            P-12\t-0.1 -0.2 -0.05\n\
            H-12\t-0.90\tthe house is little\n\
            D-12\t-0.90\tthe house is little";
        let r = record(block).unwrap();
        assert_eq!(r.id, Value::from(12));
        assert_eq!(r.hypotheses, ["the house is small", "the house is little"]);
        assert_eq!(r.scores, Some(vec![-0.35, -0.9]));
        assert_eq!(r.reference.as_deref(), Some("the house is small"));
        // `H` lines when there is no `D`; no `T`, no reference.
        let r = record("H-3\t-1.5\tein Haus").unwrap();
        assert_eq!((r.hypotheses[0].as_str(), r.reference), ("ein Haus", None));
        // Empty texts, their last tab trimmed away or not.
        let r = record(
            "T-6
D-6	-0.5	some text
D-6	-1.5
D-6	-2.5	",
        )
        .unwrap();
        assert_eq!(r.hypotheses, ["some text", "", ""]);
        assert_eq!(r.reference.as_deref(), Some(""));
        assert_eq!(r.scores, Some(vec![-0.5, -1.5, -2.5]));
        // A source and reference alone are an error naming the missing lines.
        let err = record("S-4\tx\nT-4\ty").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("H"));
    }

    #[test]
    fn generate_output_is_its_lines_and_chatter() {
        let out = [
            "2024-05-01 12:00:00 | INFO | fairseq_cli.generate | loading model",
            "S-0\tx",
            "H-0\t-1\ty",
            "Generate test with beam=5: BLEU4 = 25.30",
        ];
        assert!(is_generate(out.into_iter()));
        assert!(!is_generate(["S-0\tx", "T-0\ty"].into_iter()));
        assert!(is_generate(["H-0\t-1\ty", "plain words"].into_iter()));
        assert!(!is_generate(["H-0\t-1\ty", "plain", "words"].into_iter()));
        assert!(!is_generate(["H-x\t-1\ty"].into_iter()));
    }
}

//! Moses' N-best lists, as Moses, Marian (`--n-best`) and many MT systems write them: a line per
//! hypothesis, `ID ||| text ||| feature scores ||| total score`, a sentence's lines one after
//! another, best first. Read as one record per sentence, its hypotheses and their total scores.

use serde_json::Value;

use super::{Record, RecordError};

const NOT_A_LINE: &str = "not a Moses N-best line (`ID ||| text ||| features ||| total`)";

/// A line's sentence id and its fields after it, when it is an N-best line: a number, then at
/// least the text and one more field, split by `|||`.
pub fn split_line(line: &str) -> Option<(&str, Vec<&str>)> {
    let mut fields = line.split("|||");
    let id = fields.next()?.trim();
    let rest: Vec<&str> = fields.collect();
    let numbered = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    (numbered && rest.len() >= 2).then_some((id, rest))
}

/// Whether these non-blank lines are a Moses N-best list: at least half of them N-best lines
/// (a line cut short, as a killed decoder leaves it, is an error of its sentence).
pub fn is_nbest<'a>(lines: impl Iterator<Item = &'a str> + Clone) -> bool {
    let count = lines.clone().filter(|l| split_line(l).is_some()).count();
    count > 0 && 2 * count >= lines.count()
}

/// The record of one sentence's lines (`block`, every line with the same id): its hypotheses in
/// the list's order, and their total scores (the last field) when every line has a number there.
pub fn record(block: &str) -> Result<Record, RecordError> {
    let lines: Vec<(&str, Vec<&str>)> = block.lines().filter_map(split_line).collect();
    let Some((id, _)) = lines.first() else {
        return Err(RecordError::new(None, NOT_A_LINE));
    };
    let id = match id.parse::<u64>() {
        Ok(n) => Value::from(n),
        Err(_) => Value::from(*id),
    };
    if let Some(k) = block.lines().position(|l| split_line(l).is_none()) {
        let mut error = RecordError::new(None, format!("its line {}: {NOT_A_LINE}", k + 1));
        error.best = Some(lines[0].1[0].trim().to_string());
        // Its error line keeps the sentence's number, not its place in the file.
        error.id = Some(Box::new(id));
        return Err(error);
    }
    let hypotheses = lines.iter().map(|(_, f)| f[0].trim().to_string()).collect();
    let scores: Option<Vec<f64>> = (lines.iter())
        .map(|(_, f)| f.last().and_then(|s| s.trim().parse().ok()))
        .collect();
    let mut record = Record::from_hypotheses(id, hypotheses);
    record.scores = scores;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentence_s_lines_are_its_n_best_with_scores() {
        let block = "3 ||| the house is small ||| LM0= -12.1 TM0= -3.2 ||| -5.25\n\
            3 ||| the house is little ||| LM0= -13.0 TM0= -3.0 ||| -5.75";
        let r = record(block).unwrap();
        assert_eq!(r.id, Value::from(3));
        assert_eq!(r.hypotheses, ["the house is small", "the house is little"]);
        assert_eq!(r.scores, Some(vec![-5.25, -5.75]));
        // Marian's shape; a total that is not a number gives no scores, not an error.
        let r = record("0 ||| ein Haus ||| F0= -1.5 ||| x").unwrap();
        assert_eq!((r.hypotheses[0].as_str(), r.scores), ("ein Haus", None));
        // A line cut short makes its sentence an error that keeps the 1-best.
        let err = record("5 ||| the house ||| F0= -1 ||| -1\n5 ||| the hou").unwrap_err();
        assert!(
            err.message.starts_with("its line 2: not a Moses"),
            "{err:?}"
        );
        assert_eq!(err.best.as_deref(), Some("the house"));
    }

    #[test]
    fn an_n_best_list_has_a_numbered_id_and_fields_on_every_line() {
        assert!(is_nbest(
            ["0 ||| a ||| F0= -1 ||| -1", "1 ||| b ||| -2"].into_iter()
        ));
        assert!(is_nbest(["0 ||| a ||| -1", "1 ||| b"].into_iter()));
        assert!(!is_nbest(["0 ||| a ||| -1", "b", "c"].into_iter()));
        assert!(!is_nbest(["x ||| a ||| -1"].into_iter()));
        assert!(!is_nbest(["0 ||| only text"].into_iter()));
        assert!(!is_nbest(std::iter::empty()));
    }
}

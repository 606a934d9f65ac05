//! Property tests of the record parser: it never panics, never loses a record, and reads back
//! what was written.

use neko::record;
use proptest::prelude::*;
use serde_json::{json, Value};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes never panic, and every non-blank line of a non-array input is an entry.
    #[test]
    fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let entries = record::parse(&bytes);
        let starts_array = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
        if !starts_array {
            let lines = bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .count();
            prop_assert_eq!(entries.len(), lines);
        }
        for (i, e) in entries.iter().enumerate() {
            prop_assert_eq!(e.index, i);
            prop_assert!(e.line >= 1);
        }
    }

    /// Hypotheses, ids and references written as JSONL read back exactly, in order.
    #[test]
    fn jsonl_round_trips(recs in proptest::collection::vec(
        (proptest::collection::vec(".{0,20}", 1..6), ".{0,20}", any::<u32>()), 1..12)) {
        let text: String = recs
            .iter()
            .map(|(hyps, out, id)| json!({"id": id, "input": hyps, "output": out}).to_string() + "\n")
            .collect();
        let entries = record::parse(text.as_bytes());
        prop_assert_eq!(entries.len(), recs.len());
        for (e, (hyps, out, id)) in entries.iter().zip(&recs) {
            let r = e.record.as_ref().unwrap();
            prop_assert_eq!(&r.hypotheses, hyps);
            prop_assert_eq!(r.reference.as_deref(), Some(out.as_str()));
            prop_assert_eq!(&r.id, &Value::from(*id));
        }
    }

    /// A JSON array (pretty or compact) yields one entry per element, bad elements included,
    /// with the line each element starts on.
    #[test]
    fn arrays_keep_every_element(recs in proptest::collection::vec(
        (proptest::collection::vec("[a-z ,\\]\\[{}\"\\\\]{0,12}", 0..4), any::<bool>()), 1..10), pretty in any::<bool>()) {
        let values: Vec<Value> = recs.iter().map(|(h, _)| json!({"input": h})).collect();
        let text = if pretty { serde_json::to_string_pretty(&values).unwrap() } else { serde_json::to_string(&values).unwrap() };
        let entries = record::parse(text.as_bytes());
        prop_assert_eq!(entries.len(), recs.len());
        for (e, (h, _)) in entries.iter().zip(&recs) {
            match &e.record {
                Ok(r) => prop_assert_eq!(&r.hypotheses, h),
                Err(err) => prop_assert!(h.is_empty() && err.to_string().contains("empty")),
            }
            let line_start = text.lines().nth(e.line - 1).unwrap_or("");
            prop_assert!(line_start.contains('{'), "line {} is {:?}", e.line, line_start);
        }
    }
}

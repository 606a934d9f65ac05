//! Property tests of the record parser: it never panics, never loses a record, and reads back
//! what was written.

use neko::record;
use proptest::prelude::*;
use serde_json::{json, Value};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes never panic, and every line of plain text (no line opening JSON) is an
    /// entry, blank ones too, when the input has any text.
    #[test]
    fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let entries = record::parse(&bytes);
        let text = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF][..]).unwrap_or(&bytes);
        let body = text.strip_suffix(b"\n").unwrap_or(text);
        let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
        let opens_json = |l: &&[u8]| matches!(l.trim_ascii_start().first(), Some(b'{' | b'[' | b'"'));
        let blank = text.iter().all(u8::is_ascii_whitespace);
        let utf16 = matches!(text, [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..]);
        if blank {
            prop_assert_eq!(entries.len(), 0);
        } else if !utf16 && !lines.iter().any(opens_json) {
            prop_assert_eq!(entries.len(), lines.len());
        }
        for (i, e) in entries.iter().enumerate() {
            prop_assert_eq!(e.index, i);
            prop_assert!(e.line >= 1);
        }
    }

    /// Transcript lines that start with a tag, a quotation or a bracket are plain text: every
    /// line (blank ones too) is one 1-best, as written.
    #[test]
    fn transcript_lines_are_text(lines in proptest::collection::vec(
        ("(\\{laugh\\} |\"|\\[noise\\] |\\{uh\\}|)", "[a-z ,.]{0,12}( \\{cough\\})?"), 1..12)) {
        let lines: Vec<String> = lines.into_iter().map(|(p, w)| p + &w).collect();
        let text = lines.join("\n") + "\n";
        let entries = record::parse(text.as_bytes());
        if lines.iter().all(|l| l.trim().is_empty()) {
            prop_assert_eq!(entries.len(), 0);
        } else {
            prop_assert_eq!(entries.len(), lines.len());
            for (e, l) in entries.iter().zip(&lines) {
                let r = e.record.as_ref().unwrap();
                prop_assert_eq!(r.hypotheses[0].as_str(), l.trim());
            }
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

    /// One element of a pretty-printed array broken by hand (a hypothesis's closing quote, its
    /// closing brace or its opening brace deleted, the first element's too) costs that element only: every other element is
    /// read as written, and the broken one is one error that names its id.
    #[test]
    fn a_broken_element_costs_only_itself(
        recs in proptest::collection::vec(proptest::collection::vec("[a-z ,\\]\\[{}]{1,12}", 1..4), 3..9),
        pick in any::<proptest::sample::Index>(),
        damage in 0..3usize,
        indent in prop_oneof![Just("  "), Just("    "), Just("\t"), Just("")],
    ) {
        let broken = pick.index(recs.len());
        let values: Vec<Value> = recs.iter().enumerate()
            .map(|(i, h)| json!({"id": format!("r{i}"), "input": h})).collect();
        let mut buf = Vec::new();
        let style = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
        serde::Serialize::serialize(&values, &mut serde_json::Serializer::with_formatter(&mut buf, style)).unwrap();
        let mut lines: Vec<String> = String::from_utf8(buf).unwrap().lines().map(String::from).collect();
        // The broken element's lines: its `{` line and its `}` line, at the elements' depth.
        let opens: Vec<usize> = (0..lines.len()).filter(|&k| lines[k] == format!("{indent}{{")).collect();
        let (open, close) = (opens[broken], (opens[broken]..lines.len())
            .find(|&k| lines[k].starts_with(&format!("{indent}}}"))).unwrap());
        match damage {
            0 => {
                // The first hypothesis's closing quote.
                let k = (open..close).find(|&k| lines[k].trim_start().starts_with("\"input\"")).unwrap() + 1;
                let end = lines[k].rfind('"').unwrap();
                lines[k].remove(end);
            }
            1 => lines[close] = lines[close].replacen('}', "", 1),
            _ => lines[open] = String::new(),
        }
        let text = lines.join("\n") + "\n";
        let entries = record::parse(text.as_bytes());
        prop_assert_eq!(entries.len(), recs.len(), "{}", text);
        for (i, (e, h)) in entries.iter().zip(&recs).enumerate() {
            match (&e.record, i == broken) {
                (Ok(r), false) => {
                    prop_assert_eq!(&r.hypotheses, h);
                    prop_assert_eq!(&r.id, &Value::from(format!("r{i}")));
                }
                (Err(err), true) => prop_assert_eq!(err.id.as_deref(), Some(&Value::from(format!("r{i}")))),
                (r, _) => prop_assert!(false, "element {} of {}: {:?}\n{}", i, broken, r, text),
            }
        }
    }

    /// The same in a compact array on one line (`json.dumps(records)`), whatever follows it:
    /// one element's hypothesis loses its closing quote and the others are still read, texts
    /// that end in `},{` (their closing quote after it) included.
    #[test]
    fn a_broken_element_of_a_compact_array_costs_only_itself(
        recs in proptest::collection::vec(proptest::collection::vec("[a-z ,\\]\\[{}]{1,12}", 1..4), 2..9),
        pick in any::<proptest::sample::Index>(),
        after in prop_oneof![Just(""), Just("\n"), Just("\n{\"id\": \"z\", \"input\": [\"q\"]}\n")],
    ) {
        let broken = pick.index(recs.len());
        // The broken record keeps one hypothesis: with more, a lost quote may leave valid JSON
        // of other strings (`["a,"]` of `["a", "]}"]`), a record, not an error.
        let mut recs = recs;
        recs[broken].truncate(1);
        let elements: Vec<String> = recs.iter().enumerate().map(|(i, h)| {
            let mut e = json!({"id": format!("r{i}"), "input": h}).to_string();
            if i == broken {
                // The first hypothesis's closing quote: the alphabet has no quote to escape.
                let at = e.find("\"input\":[\"").unwrap() + "\"input\":[\"".len() + h[0].len();
                e.remove(at);
            }
            e
        }).collect();
        let text = format!("[{}]{after}", elements.join(","));
        let entries = record::parse(text.as_bytes());
        let extra = usize::from(after.contains('z'));
        prop_assert_eq!(entries.len(), recs.len() + extra, "{}", text);
        for (i, e) in entries.iter().enumerate().take(recs.len()) {
            match (&e.record, i == broken) {
                (Ok(r), false) => {
                    prop_assert_eq!(&r.hypotheses, &recs[i]);
                    prop_assert_eq!(&r.id, &Value::from(format!("r{i}")));
                }
                (Err(err), true) => prop_assert_eq!(err.id.as_deref(), Some(&Value::from(format!("r{i}")))),
                (r, _) => prop_assert!(false, "element {} of {}: {:?}\n{}", i, broken, r, text),
            }
        }
        if extra == 1 {
            prop_assert_eq!(&entries[recs.len()].record.as_ref().unwrap().id, &Value::from("z"));
        }
    }
}

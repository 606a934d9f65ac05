use super::value::starts_with_a_key;
use super::*;

/// The 1-best of each record of `text`, read as a file.
fn one_bests(text: &str) -> Vec<String> {
    let entries = parse(text.as_bytes());
    ok(&entries)
        .iter()
        .map(|r| r.hypotheses[0].clone())
        .collect()
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

fn ok(entries: &[Entry]) -> Vec<&Record> {
    entries.iter().map(|e| e.record.as_ref().unwrap()).collect()
}

#[test]
fn jsonl_shapes() {
    let text = concat!(
        "{\"id\": \"a\", \"input\": [\"x y\", \"x z\"], \"output\": \"x y\", \"task\": \"asr\"}\n",
        "\n",
        "{\"hypotheses\": [\"h1\", \"h2\"]}\n",
        "{\"nbest\": [{\"text\": \"n1\", \"score\": -1.5}, {\"text\": \"n2\", \"score\": -2}]}\n",
        "\"a json string\"\n",
        "[\"l1\", \"l2\"]\n",
    );
    let entries = parse(text.as_bytes());
    let r = ok(&entries);
    assert_eq!(r.len(), 5);
    assert_eq!(r[0].id, Value::from("a"));
    assert_eq!(r[0].reference.as_deref(), Some("x y"));
    assert_eq!(r[1].hypotheses, vec!["h1", "h2"]);
    assert_eq!(r[1].id, Value::from(1));
    assert_eq!(r[2].scores, Some(vec![-1.5, -2.0]));
    assert_eq!(r[3].hypotheses, vec!["a json string"]);
    assert_eq!(r[4].hypotheses, vec!["l1", "l2"]);
    assert_eq!(entries[2].line, 4);
}

/// An object written over several lines whose `nbest` entries are whole objects on lines of
/// their own, deeper than the record (as Prettier writes it), is one record: those lines were
/// taken for the next records', and the file was read as text lines `{`, `"id": "x1",`, ...
#[test]
fn nested_one_line_objects_stay_inside_their_record() {
    let record = |id: &str| {
        format!(
            "{{\n  \"id\": \"{id}\",\n  \"nbest\": [\n    {{\"text\": \"a b\", \"score\": -1}},\n    {{\"text\": \"a c\", \"score\": -2}}\n  ],\n  \"output\": \"a b\"\n}}\n"
        )
    };
    let lines: String = (0..10)
        .map(|i| format!("{{\"id\": \"l{i}\", \"input\": [\"w\"]}}\n"))
        .collect();
    for (text, records) in [
        (record("x1") + &record("x2"), 2),
        (lines + &record("x1"), 11),
    ] {
        let entries = parse(text.as_bytes());
        let r = ok(&entries);
        assert_eq!(r.len(), records, "{text}");
        assert_eq!(r[records - 1].hypotheses, vec!["a b", "a c"]);
        assert_eq!(r[records - 1].scores, Some(vec![-1.0, -2.0]));
    }
}

/// A `null` score (what a tool writes for one it has not) is no score, not a broken record.
#[test]
fn a_null_score_keeps_its_record() {
    let entries = parse(b"{\"input\": [\"a\", \"b\"], \"scores\": [-0.5, null]}\n");
    let scores = ok(&entries)[0].scores.clone().unwrap();
    assert!(scores[0] == -0.5 && scores[1].is_nan(), "{scores:?}");
}

/// A pretty-printed array cut off between two elements (`head -n` of a `json.dumps(indent=4)`
/// file) reads its whole records and says that the array never closes (it read them silently).
#[test]
fn a_pretty_array_cut_between_elements_says_so() {
    let element = |i: usize| {
        format!("    {{\n        \"id\": \"r{i}\",\n        \"input\": [\n            \"w{i}\"\n        ]\n    }}")
    };
    let whole = format!("[\n{},\n{},\n{}\n]\n", element(0), element(1), element(2));
    let cut = format!("[\n{},\n{},\n", element(0), element(1));
    let entries = parse(whole.as_bytes());
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|e| e.record.is_ok()));
    let entries = parse(cut.as_bytes());
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(entries[..2].iter().all(|e| e.record.is_ok()));
    let err = entries[2].record.as_ref().unwrap_err();
    assert!(err.message.contains("unterminated JSON array"), "{err}");
}

/// A multi-reference set gives `output` as a list (JFLEG's four corrections, several
/// translations): the first is the reference, the others follow it; an empty list, or one
/// with something other than text, is an error naming the field.
#[test]
fn output_lists_are_several_references() {
    let text = concat!(
        "{\"input\": [\"h\"], \"output\": [\"r1\", \"r2\", \"r3\"]}\n",
        "{\"input\": [\"h\"], \"output\": [\"only\"]}\n",
        "{\"input\": [\"h\"], \"output\": []}\n",
        "{\"input\": [\"h\"], \"output\": [\"r1\", 2]}\n",
    );
    let entries = parse(text.as_bytes());
    let first = entries[0].record.as_ref().unwrap();
    assert_eq!(first.reference.as_deref(), Some("r1"));
    assert_eq!(first.other_references, ["r2", "r3"]);
    assert_eq!(first.references(), ["r1", "r2", "r3"]);
    let one = entries[1].record.as_ref().unwrap();
    assert_eq!(
        (one.reference.as_deref(), one.other_references.len()),
        (Some("only"), 0)
    );
    for (entry, field, says) in [
        (&entries[2], "output", "empty"),
        (&entries[3], "output[1]", "expected a string"),
    ] {
        let err = entry.record.as_ref().unwrap_err();
        assert_eq!(err.field.as_deref(), Some(field));
        assert!(err.message.contains(says), "{err}");
        // The error line still carries the 1-best.
        assert_eq!(err.best.as_deref(), Some("h"));
    }
}

/// NeMo manifests (Canary, Parakeet): `pred_text` is the transcript and `text` the reference,
/// which it is only beside a `pred_text` (Whisper's JSON has its transcript in `text`).
#[test]
fn nemo_manifests_give_transcript_and_reference() {
    let text = concat!(
        "{\"audio_filepath\": \"a.wav\", \"duration\": 1.5, \"text\": \"the cat sat\", \"pred_text\": \"the cat sad\"}\n",
        "{\"audio_filepath\": \"b.wav\", \"pred_text\": [\"one\", \"won\"]}\n",
        "{\"pred_text\": \"x\", \"text\": \"y\", \"output\": \"z\"}\n",
        "{\"input\": [\"h\"], \"pred_text\": \"p\", \"text\": \"t\"}\n",
        "{\"text\": \"a reference alone\"}\n",
        "{\"pred_text\": []}\n",
    );
    let entries = parse(text.as_bytes());
    let r: Vec<&Record> = entries[..4]
        .iter()
        .map(|e| e.record.as_ref().unwrap())
        .collect();
    assert_eq!(r[0].hypotheses, vec!["the cat sad"]);
    assert_eq!(r[0].reference.as_deref(), Some("the cat sat"));
    assert_eq!(r[1].hypotheses, vec!["one", "won"]);
    assert_eq!(r[1].reference, None);
    // `output` is the reference wherever it is given.
    assert_eq!(r[2].reference.as_deref(), Some("z"));
    // Hypotheses from `input`: `text` is nothing neko reads.
    assert_eq!(
        (r[3].hypotheses.clone(), r[3].reference.clone()),
        (vec!["h".to_string()], None)
    );
    let err = entries[4].record.as_ref().unwrap_err();
    assert!(
        err.message.contains("NeMo manifest it is the reference"),
        "{err}"
    );
    let whisper = parse(b"{\"text\": \" Hello.\", \"segments\": [], \"language\": \"en\"}\n");
    let err = whisper[0].record.as_ref().unwrap_err();
    assert!(err.message.contains("Whisper's JSON output"), "{err}");
    let err = entries[5].record.as_ref().unwrap_err();
    assert_eq!(err.field.as_deref(), Some("pred_text"), "{err}");
}

/// A file of JSON Lines is JSON on every line: a line of text there is an error (a
/// fragment of a broken record), not a 1-best.
#[test]
fn a_text_line_in_json_lines_is_an_error() {
    let entries = parse(b"{\"input\": [\"a\"]}\nline two\"]}\n{\"input\": [\"b\"]}\n");
    assert_eq!(entries.len(), 3);
    let err = entries[1].record.as_ref().unwrap_err();
    assert!(err.message.contains("not JSON"), "{err}");
    assert!(entries[2].record.is_ok());
}

/// A plain-text file is text on every line, quotes and braces included; only a line that
/// opens a JSON object is read as one.
#[test]
fn plain_text_lines_are_read_as_written() {
    let text = "He said hello .\n\"I am here,\" he said.\n{laugh} we went home\n\"quoted\"\n";
    let entries = parse(text.as_bytes());
    let hyps: Vec<&str> = ok(&entries)
        .iter()
        .map(|r| r.hypotheses[0].as_str())
        .collect();
    assert_eq!(
        hyps,
        [
            "He said hello .",
            "\"I am here,\" he said.",
            "{laugh} we went home",
            "\"quoted\""
        ]
    );
    // Blank lines are empty 1-bests, so that line k of the output is line k of the input.
    let entries = parse(b"first\n\n  \r\nfourth\n");
    let hyps: Vec<&str> = ok(&entries)
        .iter()
        .map(|r| r.hypotheses[0].as_str())
        .collect();
    assert_eq!(hyps, ["first", "", "", "fourth"]);
    assert_eq!(entries[3].line, 4);
    let entries = parse(b"a plain line\nanother\n{\"input\": [\"cut\"\n");
    let cut = entries[2].record.as_ref().unwrap_err();
    assert!(cut.message.contains("broken JSON"), "{cut}");
    // A checklist or a tag in brackets first: text, every line.
    for text in [
        "[ ] buy milk\n[x] call mom\n[ ] pay rent\n",
        "[\"laughs\"] okay so\nhello there\nbye now\n",
    ] {
        assert_eq!(one_bests(text), text.lines().collect::<Vec<_>>());
    }
    // Tags alone, a `{}` or a list among transcript lines: text all the same.
    let text = "hello world\n{laugh} {cough}\n{}\n[\"x\"]\nsecond line\nthird\n";
    let hyps: Vec<String> = ok(&parse(text.as_bytes()))
        .iter()
        .map(|r| r.hypotheses[0].clone())
        .collect();
    assert_eq!(hyps, text.lines().collect::<Vec<_>>());
}

/// sclite `trn` lines give their utterance id to the record, not a last word to its 1-best
/// (a blank line among them is none: it had no id, and `neko eval --ref` refused the file);
/// a transcript whose lines end in asides, or only some of them in ids, is plain text.
#[test]
fn trn_lines_are_a_1_best_and_its_id() {
    let entries = parse(b"the cat sat (spk1-002)\n\n(spk1-003)\nhello world\t(spk1-001)\r\n");
    let got: Vec<(Value, &str)> = ok(&entries)
        .iter()
        .map(|r| (r.id.clone(), r.hypotheses[0].as_str()))
        .collect();
    let want = [
        (Value::from("spk1-002"), "the cat sat"),
        (Value::from("spk1-003"), ""),
        (Value::from("spk1-001"), "hello world"),
    ];
    assert_eq!(got, want);
    for text in [
        "and then (laughs)\nwe left (applause)\n",
        "one (utt1)\ntwo\n",
        "again (take2)\nagain (take2)\n",
    ] {
        assert_eq!(one_bests(text), text.lines().collect::<Vec<_>>(), "{text}");
    }
}

/// An M2 file (CoNLL-2014, BEA-2019) is a GEC record per sentence: the source to correct and
/// its annotators' corrections as the references; a broken edit is one error line, with the
/// sentence's line and its source as the fallback, and the sentences after it are read.
#[test]
fn m2_sentences_are_gec_records_with_their_corrections() {
    let text = "S This are a sentence .\r\n\
        A 1 2|||R:VERB:SVA|||is|||REQUIRED|||-NONE-|||0\n\
        A 1 2|||R:VERB:SVA|||is|||REQUIRED|||-NONE-|||1\n\
        \n\
        \n\
        S Fine .\n\
        A -1 -1|||noop|||-NONE-|||REQUIRED|||-NONE-|||0\n\
        S No blank line before me .\n\
        \n\
        S Broken edit .\n\
        A 2 9|||R:X|||y|||REQUIRED|||-NONE-|||0\n\
        \n\
        S Last one\n\
        A 2 2|||M:PUNCT|||.|||REQUIRED|||-NONE-|||0";
    let entries = parse(text.as_bytes());
    let lines: Vec<usize> = entries.iter().map(|e| e.line).collect();
    assert_eq!(lines, [1, 6, 8, 10, 13]);
    let read = |e: &Entry| {
        let r = e.record.as_ref().ok()?;
        Some((r.id.clone(), r.hypotheses[0].clone(), r.reference.clone()?))
    };
    let got: Vec<_> = entries.iter().map(read).collect();
    let gec = |i: usize, s: &str, r: &str| Some((Value::from(i), s.to_string(), r.to_string()));
    assert_eq!(
        got,
        [
            gec(0, "This are a sentence .", "This is a sentence ."),
            gec(1, "Fine .", "Fine ."),
            gec(2, "No blank line before me .", "No blank line before me ."),
            None,
            gec(4, "Last one", "Last one ."),
        ]
    );
    // Both annotators of the first sentence made the same correction: two references.
    let first = entries[0].record.as_ref().unwrap();
    assert_eq!(first.other_references, ["This is a sentence ."]);
    assert!(entries[1]
        .record
        .as_ref()
        .unwrap()
        .other_references
        .is_empty());
    let task = |e: &Entry| e.record.as_ref().unwrap().task.clone();
    assert_eq!(task(&entries[0]), Some("gec".to_string()));
    let err = entries[3].record.as_ref().unwrap_err();
    assert!(err.message.contains("does not fit"), "{err:?}");
    assert_eq!(err.best.as_deref(), Some("Broken edit ."));
    // Text whose lines begin with "S " and "A " is text.
    let text = "S is for sun\nA is for apple\n";
    assert_eq!(one_bests(text), text.lines().collect::<Vec<_>>());
}

/// A Moses or Marian N-best list is a record per sentence: its lines, in order, are the
/// hypotheses, their total scores the record's scores; the sentence id is the record's.
#[test]
fn moses_n_best_lines_are_a_record_per_sentence() {
    let text = "0 ||| das Haus ist klein ||| F0= -1.5 ||| -1.5\n\
        0 ||| das Haus ist winzig ||| F0= -2.5 ||| -2.5\n\
        1 ||| gut ||| F0= -0.5 ||| -0.5\r\n\
        \n\
        7 ||| ja ||| F0= -0.1 ||| -0.1\n\
        7 ||| jawohl ||| F0= -0.9 ||| -0.9\n";
    let entries = parse(text.as_bytes());
    let lines: Vec<usize> = entries.iter().map(|e| e.line).collect();
    assert_eq!(lines, [1, 3, 5]);
    let got: Vec<(Value, Vec<String>, Option<Vec<f64>>)> = ok(&entries)
        .iter()
        .map(|r| (r.id.clone(), r.hypotheses.clone(), r.scores.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                Value::from(0),
                strings(&["das Haus ist klein", "das Haus ist winzig"]),
                Some(vec![-1.5, -2.5])
            ),
            (Value::from(1), strings(&["gut"]), Some(vec![-0.5])),
            (
                Value::from(7),
                strings(&["ja", "jawohl"]),
                Some(vec![-0.1, -0.9])
            ),
        ]
    );
    // A line cut short (a killed decoder's last) is its sentence's error, with the 1-best;
    // a text with `|||` in a minority of its lines is text.
    let entries = parse(b"0 ||| a ||| -1\n1 ||| b c ||| -1\n1 ||| b");
    let err = entries[1].record.as_ref().unwrap_err();
    assert_eq!((entries.len(), err.best.as_deref()), (2, Some("b c")));
    let text = "0 ||| a ||| -1\nplain words\nmore words\n";
    assert_eq!(one_bests(text), text.lines().collect::<Vec<_>>());
}

/// `fairseq-generate` output is a record per sentence, in the file's order (fairseq writes
/// sentences as their batches finish), its log lines and closing score no records.
#[test]
fn fairseq_generate_output_is_a_record_per_sentence() {
    let text = "2024-05-01 12:00:00 | INFO | fairseq_cli.generate | loading model\n\
        S-1\tguten Morgen\n\
        T-1\tgood morning\n\
        H-1\t-0.2\tgood morning\n\
        D-1\t-0.2\tgood morning\n\
        P-1\t-0.1 -0.1\n\
        H-1\t-0.7\tgood tomorrow\n\
        D-1\t-0.7\tgood tomorrow\n\
        S-0\tja\n\
        H-0\t-0.1\tyes\n\
        Generate test with beam=5: BLEU4 = 25.30\n";
    let entries = parse(text.as_bytes());
    let lines: Vec<usize> = entries.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 9]);
    let got: Vec<(Value, Vec<String>, Option<String>)> = ok(&entries)
        .iter()
        .map(|r| (r.id.clone(), r.hypotheses.clone(), r.reference.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                Value::from(1),
                strings(&["good morning", "good tomorrow"]),
                Some("good morning".to_string())
            ),
            (Value::from(0), strings(&["yes"]), None),
        ]
    );
}

/// A stray line in `fairseq-generate` output (a warning, `2>&1`) makes the sentence it is in an
/// error line under that sentence's id with its 1-best; no extra record, no clashing id (it was
/// a record of its own under its position, 0 or 2, beside sentences 0 and 2).
#[test]
fn a_stray_line_in_fairseq_output_marks_its_sentence() {
    let warn = "/opt/conda/lib/python3.10/site-packages/torch/functional.py:5076: UserWarning: x";
    let text = format!(
        "{warn}\nS-1\tguten Morgen\nH-1\t-0.2\tgood morning\nD-1\t-0.2\tgood morning\n\
         S-0\tja\nH-0\t-0.1\tyes\n{warn}\nD-0\t-0.1\tyes\nS-2\tnein\nD-2\t-0.3\tno\n"
    );
    let entries = parse(text.as_bytes());
    let ids: Vec<Value> = entries.iter().map(|e| e.id()).collect();
    assert_eq!(ids, [Value::from(1), Value::from(0), Value::from(2)]);
    for (e, best) in entries[..2].iter().zip(["good morning", "yes"]) {
        let err = e.record.as_ref().unwrap_err();
        assert!(err.message.contains("not a fairseq-generate line"), "{err}");
        assert_eq!(err.best.as_deref(), Some(best));
    }
    assert_eq!(ok(&entries[2..])[0].hypotheses, ["no"]);
}

/// Lines that are lists of strings are records' N-bests (`json.dumps(nbest)` per line);
/// one such line alone is still an array of 1-best records.
#[test]
fn lines_of_hypothesis_lists_are_n_bests() {
    let entries = parse(b"[\"hello world\", \"hello word\"]\n[\"foo bar\"]\n");
    let r = ok(&entries);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].hypotheses, ["hello world", "hello word"]);
    assert_eq!((r[1].id.clone(), entries[1].line), (Value::from(1), 2));
    // A bad line is one error line, wherever it is; an object line is a record too.
    let lists: [&[u8]; 2] = [
        b"[\"a b\", \"a c\"]\n[]\n[\"d e\"]\n",
        b"[\"a b\", \"a c\"]\n[\"x\", null]\n[\"d e\"]\n",
    ];
    for text in lists {
        let entries = parse(text);
        assert_eq!(entries.len(), 3);
        assert!(entries[1].record.is_err() && entries[2].record.is_ok());
    }
    // A bad or empty first list too.
    for text in [
        &b"[]\n[\"a b\", \"a c\"]\n[\"d e\"]\n"[..],
        b"[\"x\", null]\n[\"a b\", \"a c\"]\n[\"d e\"]\n",
    ] {
        let entries = parse(text);
        let lines: Vec<usize> = entries.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 2, 3]);
        assert!(entries[0].record.is_err());
        assert_eq!(ok(&entries[1..2])[0].hypotheses, ["a b", "a c"]);
    }
    let entries = parse(b"[\"a b\", \"a c\"]\n{\"id\": \"x\", \"input\": [\"q r\"]}\n");
    assert_eq!(ok(&entries)[0].hypotheses, ["a b", "a c"]);
    assert_eq!(ok(&entries)[1].id, Value::from("x"));
    assert_eq!(ok(&parse(b"[\"a\", \"b\"]\n")).len(), 2);
    // In an array, an element that is a list of strings is an N-best too.
    let r = parse(b"[[\"a\", \"b\"], [\"c\"]]");
    assert_eq!(ok(&r)[0].hypotheses, ["a", "b"]);
}

/// Array elements whose comma was forgotten are still two records.
#[test]
fn array_elements_without_a_comma_are_two_records() {
    let entries = parse(b"[{\"id\": \"a\", \"input\": [\"x y\"]} {\"id\": \"b\", \"input\": [\"r\"]},\n {\"id\": \"c\", \"input\": [\"s\"]}]");
    let ids: Vec<Value> = ok(&entries).iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids, ["a", "b", "c"].map(Value::from));
}

/// An object over several lines is one record: as it is when it is JSON (`jq .` output
/// after the first line), an error naming the line break when a string holds a raw one. A
/// cut line does not swallow the records after it.
#[test]
fn a_record_over_several_lines_is_one_record() {
    let text =
        "{\"id\": \"a\", \"input\": [\"x\"]}\n{\n  \"id\": \"b\",\n  \"input\": [\"y\"]\n}\n\
                    {\"id\": \"c\", \"input\": [\"one\ntwo\"]}\n{\"id\": \"d\", \"input\": [\"z\"\n\
                    {\"id\": \"e\", \"input\": [\"w\"]}\n";
    let entries = parse(text.as_bytes());
    let ids: Vec<String> = entries.iter().map(|e| e.id().to_string()).collect();
    // The cut line's error keeps the id it gave (`d`), as a broken array element's does.
    assert_eq!(ids, ["\"a\"", "\"b\"", "\"c\"", "\"d\"", "\"e\""]);
    let lines: Vec<usize> = entries.iter().map(|e| e.line).collect();
    assert_eq!(lines, [1, 2, 6, 8, 9]);
    assert_eq!(ok(&entries[1..2])[0].hypotheses, ["y"]);
    let c = entries[2].record.as_ref().unwrap_err();
    assert!(c.message.contains("line break inside a JSON string"), "{c}");
    assert!(entries[3].record.is_err() && entries[4].record.is_ok());
    // Every record with a raw line break: still JSON Lines, one error each, ids kept.
    let entries = parse(
            b"{\"id\": \"a\", \"input\": [\"one\ntwo\"]}\n{\"id\": \"b\", \"input\": [\"three\nfour\"]}\n",
        );
    let ids: Vec<String> = entries.iter().map(|e| e.id().to_string()).collect();
    assert_eq!(ids, ["\"a\"", "\"b\""]);
    assert!(entries.iter().all(|e| e.record.is_err()));
}

/// `"error": null`, `false` or `""` is no error (tools write them for "none").
#[test]
fn an_empty_or_false_error_is_none() {
    for e in ["null", "false", "\"\""] {
        let text = format!("{{\"input\": [\"a\"], \"prediction\": \"a\", \"error\": {e}}}\n");
        let entries = parse(text.as_bytes());
        assert_eq!(ok(&entries)[0].error, None, "{e}");
    }
    let entries = parse(b"{\"input\": [\"a\"], \"error\": \"timeout\"}\n");
    assert_eq!(ok(&entries)[0].error, Some(Value::from("timeout")));
}

/// Shapes a final review found misread: a cut `jq .` record at the end of JSON Lines is one
/// error (its lines were 1-bests), a byte-order mark mid-file (files joined with `cat`) is
/// skipped, `jq '.text'` output with a `null` line is still JSON strings, and a
/// transcript's `{"laughs"} okay` is text.
#[test]
fn a_final_review_s_shapes_read_right() {
    let cut = parse(b"{\"input\":[\"a\"]}\n{\"input\":[\"b\"]}\n{\n  \"input\": [\n    \"c d\",\n    \"c e\"\n  ],\n  \"id\": 9,\n");
    assert_eq!(cut.len(), 3);
    let e = cut[2].record.as_ref().unwrap_err();
    assert!(e.message.contains("cut off") && cut[2].id() == 9, "{e}");
    let bom = parse(b"{\"input\":[\"a\"]}\n\xef\xbb\xbf{\"input\":[\"b\"]}\n");
    assert!(bom.iter().all(|e| e.record.is_ok()));
    // The marked lines count as JSON when the file's layout is decided: with a text line
    // among them it is still JSON Lines (the text line an error), not plain text.
    let marked = parse(b"{\"input\":[\"a\"]}\nwords\n\xef\xbb\xbf{\"input\":[\"b\"]}\n");
    assert_eq!(marked.len(), 3);
    assert!(marked[1].record.is_err() && marked[2].record.is_ok());
    // ... and between arrays (`cat a.json b.json`, b.json saved with a mark): all four read.
    let arrays = parse(b"[\n {\"input\":[\"a\"]},\n {\"input\":[\"b\"]}\n]\n\xef\xbb\xbf[\n {\"input\":[\"c\"]},\n {\"input\":[\"d\"]}\n]\n");
    assert_eq!(
        ok(&arrays)
            .iter()
            .map(|r| r.hypotheses[0].as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c", "d"]
    );
    let strings = parse(b"\"hello world\"\n\"good morning\"\nnull\n");
    assert_eq!(ok(&strings[..2])[1].hypotheses, ["good morning"]);
    let null = strings[2].record.as_ref().unwrap_err();
    assert!(null.message.starts_with("null is no record"), "{null}");
    let text = parse(b"{\"laughs\"} okay\nyeah right\nsure\n");
    assert_eq!(ok(&text)[0].hypotheses, ["{\"laughs\"} okay"]);
    // A `jq .` stream with one record cut in the middle: the records after it are read.
    let stream: String = (0..4)
        .map(|i| match i {
            1 => "{\n  \"input\": [\n    \"r1\"\n".to_string(),
            _ => format!("{{\n  \"input\": [\n    \"r{i}\"\n  ]\n}}\n"),
        })
        .collect();
    let entries = parse(stream.as_bytes());
    let read: Vec<bool> = entries.iter().map(|e| e.record.is_ok()).collect();
    assert_eq!(read, [true, false, true, true]);
    assert_eq!(ok(&entries[3..])[0].hypotheses, ["r3"]);
    // Blank lines cost no search each: 200k of them read at once.
    let silence = format!("hello\n{}bye\n", "\n".repeat(200_000));
    assert_eq!(parse(silence.as_bytes()).len(), 200_002);
}

/// A record whose hypotheses read fails for its own bad field with its 1-best, even when
/// it carries an earlier step's error too (which alone would only be a warning).
#[test]
fn a_bad_field_is_the_cause_and_keeps_the_best() {
    let entries = parse(
        b"{\"id\": \"u\", \"input\": [\"a b\"], \"error\": \"timeout\", \"source\": 42}\n\
              {\"id\": [1], \"input\": [\"x y\"]}\n",
    );
    let u = entries[0].record.as_ref().unwrap_err();
    let got = (u.field.as_deref(), u.best.as_deref(), u.upstream);
    assert_eq!(got, (Some("source"), Some("a b"), false));
    let bad_id = entries[1].record.as_ref().unwrap_err();
    let got = (bad_id.field.as_deref(), bad_id.best.as_deref());
    assert_eq!(got, (Some("id"), Some("x y")));
}

#[test]
fn utf16_and_byte_order_marks_are_read_as_windows_tools_mean_them() {
    let jsonl =
        "{\"id\": \"a\", \"input\": [\"h\u{e9}llo\"]}\r\n{\"id\": \"b\", \"input\": [\"x\"]}\r\n";
    let array =
        "[{\"id\": \"a\", \"input\": [\"h\u{e9}llo\"]}, {\"id\": \"b\", \"input\": [\"x\"]}]";
    let utf16 = |text: &str, le: bool, bom: &[u8]| -> Vec<u8> {
        let units = text.encode_utf16();
        let mut out = bom.to_vec();
        out.extend(units.flat_map(|u| if le { u.to_le_bytes() } else { u.to_be_bytes() }));
        out
    };
    for text in [jsonl, array] {
        let mut utf8 = vec![0xEF, 0xBB, 0xBF];
        utf8.extend_from_slice(text.as_bytes());
        for bytes in [
            utf8,
            utf16(text, true, &[0xFF, 0xFE]),
            utf16(text, false, &[0xFE, 0xFF]),
            // Without a BOM, as some tools write it.
            utf16(text, true, &[]),
            utf16(text, false, &[]),
        ] {
            let entries = parse(&bytes);
            let r = ok(&entries);
            assert_eq!(r.len(), 2, "{text}");
            assert_eq!(r[0].id, Value::from("a"));
            assert_eq!(r[0].hypotheses, vec!["h\u{e9}llo"]);
            assert_eq!(r[1].id, Value::from("b"));
            assert_eq!(entries[1].line, if text == jsonl { 2 } else { 1 });
        }
    }
}

#[test]
fn array_keeps_lines_and_isolates_bad_elements() {
    let text = "[\n  {\"input\": [\"a\"], \"output\": \"a\"},\n  {\"input\": []},\n  {\"input\": [\"b, ]\"], \"am_score\": [1.0]}\n]";
    let entries = parse(text.as_bytes());
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[1].line, 3);
    assert!(entries[1].record.is_err());
    let third = entries[2].record.as_ref().unwrap();
    assert_eq!(third.hypotheses, vec!["b, ]"]);
    assert_eq!(third.scores, Some(vec![1.0]));
}

/// An array whose first element lost its `{` is still an array: that element is one error,
/// named by its id and saying what is missing, and the others are read. (It was read as
/// text, `[` and `]` becoming 1-bests.)
#[test]
fn a_first_element_without_its_brace_loses_only_itself() {
    let text =
        "[\n  \"id\": \"a\", \"input\": [\"x y\"]},\n  {\"id\": \"b\", \"input\": [\"p q\"]}\n]\n";
    let entries = parse(text.as_bytes());
    assert_eq!(entries.len(), 2);
    let err = entries[0].record.as_ref().unwrap_err();
    assert_eq!(err.id.as_deref(), Some(&Value::from("a")));
    assert!(err.message.contains("opening `{` is missing"), "{err}");
    assert_eq!(entries[0].line, 2);
    let b = entries[1].record.as_ref().unwrap();
    assert_eq!(
        (&b.id, &b.hypotheses),
        (&Value::from("b"), &vec!["p q".to_string()])
    );
    assert!(starts_with_a_key(b"\"i\\\"d\" : 1"));
    assert!(!starts_with_a_key(b"\"a b\""));
    assert!(!starts_with_a_key(b"\"a\", \"b\""));
    // A text's closing quote, as a compact array's split meets it after `},{`, is no key.
    assert!(!starts_with_a_key(b"\"]},{\"id\":1"));
}

/// One broken element of a pretty-printed array (a quote or a brace missing) is one error
/// with its id and line, and the elements after it are still records; an intact element
/// followed by a brace too many is read. What follows the array is read as before.
#[test]
fn a_broken_element_loses_only_itself() {
    let element = |id: &str| {
        format!("  {{\n    \"id\": \"{id}\",\n    \"input\": [\n      \"w {id}\"\n    ]\n  }}")
    };
    let good: Vec<String> = ["a", "b", "c", "d"].iter().map(|id| element(id)).collect();
    let broken = [
        (element("b").replace("\"w b\"", "\"w b"), false),
        (element("b").replacen("\n  }", "\n", 1), false),
        (element("b").replacen("\n  }", "\n  }}", 1), true),
        (element("b").replacen("  {\n", "", 1), false),
    ];
    for (bad, intact) in broken {
        let mut elements = good.clone();
        elements[1] = bad.clone();
        let after = "{\"id\": \"e\", \"input\": [\"w e\"]}";
        let text = format!("[\n{}\n]\n{after}\n", elements.join(",\n"));
        let entries = parse(text.as_bytes());
        let records = entries.iter().filter_map(|e| e.record.as_ref().ok());
        let ids: Vec<Value> = records.map(|r| r.id.clone()).collect();
        let read: &[&str] = if intact {
            &["a", "b", "c", "d", "e"]
        } else {
            &["a", "c", "d", "e"]
        };
        assert_eq!(
            ids,
            read.iter().map(|&id| Value::from(id)).collect::<Vec<_>>(),
            "{bad}"
        );
        assert_eq!((entries.len(), entries[1].line), (5, 8), "{bad}");
        if !intact {
            let error = entries[1].record.as_ref().unwrap_err();
            assert_eq!(error.id.as_deref(), Some(&Value::from("b")));
            assert!(
                error.message.starts_with("broken JSON"),
                "{}",
                error.message
            );
        }
    }
    // A record that is JSON but not a valid record (an empty N-best) does not make the
    // array be read again: what follows the array is read as it is.
    let text = "[\n  {\"id\": \"a\", \"input\": []},\n  {\"id\": \"b\", \"input\": [\"x\"]}\n]\n[\n  {\"id\": \"c\", \"input\": [\"y\"]}\n]\n";
    let entries = parse(text.as_bytes());
    assert_eq!(entries.len(), 3);
    assert!(entries[0]
        .record
        .as_ref()
        .unwrap_err()
        .message
        .contains("empty"));
    assert_eq!(entries[2].record.as_ref().unwrap().id, "c");
}

/// One-line elements whose array's `]` ends the last line: a broken one costs only itself,
/// and what follows the array is read; an error names the record's own id, not a nested
/// object's.
#[test]
fn a_broken_one_line_element_costs_only_itself() {
    let text = b"[{\"id\": \"a\", \"meta\": {\"id\": \"spk\"}, \"input\": [\"w a]},\n{\"id\": \"b\", \"input\": [\"w b\"]},\n{\"id\": \"c\", \"input\": [\"w c\"]},\n{\"id\": \"d\", \"input\": [\"w d\"]}]\n{\"id\": \"e\", \"input\": [\"w e\"]}\n";
    let entries = parse(text);
    let ids: Vec<String> = entries
        .iter()
        .map(|e| match &e.record {
            Ok(r) => r.id.to_string(),
            Err(err) => format!("error {}", err.id.as_deref().unwrap()),
        })
        .collect();
    assert_eq!(ids, ["error \"a\"", "\"b\"", "\"c\"", "\"d\"", "\"e\""]);
}

/// A record whose first line is longer than the record limit, then more lines, is one
/// error (it panicked slicing past the limit).
#[test]
fn a_first_line_over_the_limit_is_an_error() {
    let entries = parse_with_limit(b"{\"id\": \"a\",\n \"input\": [\"x\"]}\n", 5);
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e.record.is_err()));
}

/// Nothing after or inside an array is lost without a word: joined arrays are all read, a
/// cut-off array keeps its complete records, trailing text is an error entry; and a
/// transcript line starting with a bracket is text, not an array.
#[test]
fn arrays_lose_no_record() {
    let hyps = |e: &Entry| e.record.as_ref().map(|r| r.hypotheses.join("|")).ok();
    let err = |e: &Entry| e.record.as_ref().err().map(|e| e.message.clone());
    let joined = parse(b"[{\"input\": [\"a\"]}]\n[\n{\"input\": [\"b\"]}]\n");
    assert_eq!(
        joined.iter().map(hyps).collect::<Vec<_>>(),
        [Some("a".into()), Some("b".into())]
    );
    assert_eq!((joined[1].index, joined[1].line), (1, 3));

    let cut = parse(b"[\n{\"input\": [\"a\"]},\n{\"input\": [\"b\"]\n");
    assert_eq!(cut.len(), 2);
    assert_eq!(hyps(&cut[0]).as_deref(), Some("a"));
    assert_eq!(cut[1].line, 3);
    assert!(err(&cut[1]).unwrap().contains("cut off"));

    let trailing = parse(b"[{\"input\": [\"a\"]}]\nmore text\n");
    assert_eq!(trailing.len(), 2);
    assert_eq!(trailing[1].line, 2);
    assert!(err(&trailing[1])
        .unwrap()
        .contains("after the last JSON record"));

    // JSON Lines after an array (`cat a.json b.jsonl`) are records with their own ids.
    let mixed =
        parse(b"[{\"input\": [\"a\"]}]\n{\"id\": \"x\", \"task\": \"ocr\", \"input\": [\"b\"]}\n");
    assert_eq!(mixed.len(), 2);
    let second = mixed[1].record.as_ref().unwrap();
    assert_eq!(
        (second.id.clone(), second.task.as_deref(), mixed[1].line),
        ("x".into(), Some("ocr"), 2)
    );

    for text in [
        "[noise] hello there\nsecond line\n",
        "[1] first\n[2] second\n",
    ] {
        let lines = parse(text.as_bytes());
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(hyps(&lines[0]).unwrap(), text.lines().next().unwrap());
    }
    assert!(parse(b"[ ]").is_empty());
}

#[test]
fn compressed_input_is_refused_as_such() {
    let path = std::env::temp_dir().join(format!("neko-gz-{}.jsonl.gz", std::process::id()));
    std::fs::write(&path, [0x1f, 0x8b, 0x08, 0x00, b'\n', 0xff]).unwrap();
    let err = read_input(&path).unwrap_err().to_string();
    std::fs::remove_file(&path).unwrap();
    assert!(
        err.contains("gzip-compressed") && err.contains("zcat"),
        "{err}"
    );
    assert_eq!(compression(b"BZh9..."), Some(("bzip2", "bzcat")));
    assert_eq!(compression(b"BZh is a word"), None);
    assert_eq!(compression(b"{\"input\": []}"), None);
}

/// Objects pretty-printed (`jq .`) or run together on one line are records each, with the
/// line they start on.
#[test]
fn objects_over_several_lines_or_on_one_are_records_each() {
    let hyps = |es: &[Entry]| -> Vec<String> {
        es.iter()
            .map(|e| e.record.as_ref().unwrap().hypotheses.join("|"))
            .collect()
    };
    let pretty = parse(b"{\n  \"input\": [\n    \"a {b}\"\n  ]\n}\n{\n  \"input\": [\"c\"]\n}\n");
    assert_eq!(hyps(&pretty), ["a {b}", "c"]);
    assert_eq!((pretty[0].line, pretty[1].line), (1, 6));
    let together = parse(
        b"{\"input\": [\"a\"]}{\"input\": [\"b\"]} {\"input\": [\"c\"]}\n{\"input\": [\"d\"]}\n",
    );
    assert_eq!(hyps(&together), ["a", "b", "c", "d"]);
    assert_eq!(
        together.iter().map(|e| e.line).collect::<Vec<_>>(),
        [1, 1, 1, 2]
    );
    // A broken first line whose brackets happen to close later is a line, not an object.
    let lines = parse(b"{\"input\": [\"a\n{\"input\": [\"b ]\"]}\n{\"input\": [\"c\"]}\n");
    assert_eq!(lines.len(), 3);
    assert!(lines[0].record.is_err());
    assert_eq!(lines[2].record.as_ref().unwrap().hypotheses, ["c"]);
    // Records run together before a cut one are kept, the cut one is an error; joined
    // with commas too. A cut-off pretty-printed object is named.
    let broken = parse(b"{\"input\": [\"a\"]}{\"input\"\n");
    assert_eq!(broken.len(), 2);
    assert!(broken[0].record.is_ok() && broken[1].record.is_err());
    let commas = parse(b"{\"input\": [\"a\"]}, {\"input\": [\"b\"]}\n");
    assert_eq!(hyps(&commas), ["a", "b"]);
    let cut = parse(b"{\n \"input\": [\"a\"]\n}\n{\n \"input\": [\"b\"\n");
    assert_eq!(cut.len(), 2);
    assert!(cut[1]
        .record
        .as_ref()
        .unwrap_err()
        .message
        .contains("cut off"));
}

#[test]
fn errors_name_the_field() {
    let entries = parse(b"{\"input\": [\"a\", 3]}\n{\"input\": \nnot json\n\xff\xfe\n");
    assert_eq!(entries.len(), 4);
    let msgs: Vec<String> = entries
        .iter()
        .map(|e| {
            e.record
                .as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        })
        .collect();
    assert!(msgs[0].contains("input[1]"), "{}", msgs[0]);
    assert!(msgs[1].contains("broken JSON"), "{}", msgs[1]);
    assert!(msgs[2].contains("not JSON"), "{}", msgs[2]);
    assert!(msgs[3].contains("UTF-8"), "{}", msgs[3]);
}

#[test]
fn an_unreadable_record_keeps_its_id_and_task() {
    let entries = parse(
            b"{\"id\": \"w7\", \"task\": \"asr\", \"input\": [], \"error\": {\"message\": \"no audio\"}}\n{\"input\": []}\n{\"id\": [1], \"input\": [\"a\"]}\n",
        );
    let err = entries[0].record.as_ref().unwrap_err();
    // The record's own error is the cause: it is what the error says.
    assert_eq!(
        (err.field.as_deref(), err.message.as_str()),
        (None, "no audio")
    );
    let own = entries[1].record.as_ref().unwrap_err();
    assert_eq!(own.field.as_deref(), Some("input"));
    assert_eq!(entries[0].id(), Value::from("w7"));
    assert_eq!(err.task.as_deref(), Some("asr"));
    // Without an id, or with one that is not a string or number: the position.
    assert_eq!(entries[1].id(), Value::from(1));
    assert_eq!(entries[2].id(), Value::from(2));
    assert_eq!(
        entries[2].record.as_ref().unwrap_err().field.as_deref(),
        Some("id")
    );
}

/// A broken record's id may hold `,` or `}` (whisper_nbest.py's ids are file paths): its error
/// line keeps it, in lines and in a pretty-printed array.
#[test]
fn a_broken_record_keeps_an_id_with_a_comma_or_brace() {
    let lines = parse(b"{\"id\": \"Smith, John.wav#0\", \"input\": [\"a b\", \"a c\"}\n{\"id\": \"x}y\", \"input\": [\"b\"\n{\"id\": 7, \"input\": [\"c\"]}\n");
    let ids: Vec<Value> = lines.iter().map(|e| e.id()).collect();
    assert_eq!(
        ids,
        [
            Value::from("Smith, John.wav#0"),
            Value::from("x}y"),
            Value::from(7)
        ]
    );
    assert!(lines[0].record.is_err() && lines[1].record.is_err());
    let array = parse(b"[\n  {\n    \"id\": \"a, b\",\n    \"input\": [\"x\"\n  },\n  {\n    \"id\": \"c\",\n    \"input\": [\"y\"]\n  }\n]\n");
    assert_eq!(array[0].id(), Value::from("a, b"));
    assert!(array[0].record.is_err());
    assert_eq!(ok(&array[1..])[0].hypotheses, ["y"]);
}

/// A record too long, or not UTF-8, keeps the id and task it gives, in lines and arrays.
#[test]
fn a_record_too_long_or_not_utf8_keeps_its_id() {
    let bad = b"{\"id\": \"u2\", \"task\": \"ocr\", \"input\": [\"a \xff b\"]}";
    let long = format!("{{\"id\": 7, \"input\": [\"{}\"]}}", "x".repeat(200));
    let mut lines = bad.to_vec();
    lines.push(b'\n');
    lines.extend_from_slice(long.as_bytes());
    let mut array = b"[".to_vec();
    array.extend_from_slice(bad);
    array.push(b',');
    array.extend_from_slice(long.as_bytes());
    array.push(b']');
    for input in [lines, array] {
        let entries = parse_with_limit(&input, 100);
        assert_eq!(entries.len(), 2);
        let err = entries[0].record.as_ref().unwrap_err();
        assert!(err.message.starts_with("invalid UTF-8"), "{}", err.message);
        assert_eq!(
            (entries[0].id(), err.task.as_deref()),
            ("u2".into(), Some("ocr"))
        );
        let err = entries[1].record.as_ref().unwrap_err();
        assert!(err.message.contains("over the limit"), "{}", err.message);
        assert_eq!(entries[1].id(), Value::from(7));
    }
    // Written over several lines (`jq .`), a whole record too long is too long, not "cut off".
    let pretty = format!(
        "{{\n  \"id\": 1,\n  \"input\": [\"a\"]\n}}\n{{\n  \"id\": 2,\n  \"input\": [\n    \"{}\"\n  ]\n}}\n{{\n  \"id\": 3,\n  \"input\": [\"b\"]\n}}\n",
        "x".repeat(200)
    );
    let entries = parse_with_limit(pretty.as_bytes(), 100);
    assert_eq!(entries.len(), 3);
    let err = entries[1].record.as_ref().unwrap_err();
    assert!(err.message.contains("over the limit"), "{}", err.message);
    assert_eq!(entries[1].id(), Value::from(2));
    assert!(entries[0].record.is_ok() && entries[2].record.is_ok());
}

/// A broken record's message says where in the file serde_json stopped, not where in the
/// record: a pretty-printed element, a JSON line, records run together on a line, a compact
/// array's element.
#[test]
fn a_broken_records_position_is_the_files() {
    let message = |text: &str, k: usize| {
        let entries = parse(text.as_bytes());
        entries[k].record.as_ref().unwrap_err().message.clone()
    };
    let pretty = "[\n  {\n    \"id\": \"a\",\n    \"input\": [\"x\"]\n  },\n  {\n    \"id\": \"b\",\n    \"input\": [\"p q]\n  }\n]\n";
    let lines = "{\"id\":\"a\",\"input\":[\"x\"]}\n{\"id\":\"b\",\"input\":[\"y]}\n";
    let together = "{\"id\":\"a\",\"input\":[\"x\"]}\n  {\"id\":\"c\",\"input\":[\"z\"]} {\"id\":\"d\",\"input\":[\"w]}\n";
    let compact = "[{\"id\":\"a\",\"input\":[\"x\"]},{\"id\":\"b\",\"input\":[\"y]},{\"id\":\"c\",\"input\":[\"z\"]}]\n";
    for (text, k, at) in [
        (pretty, 1, "at line 9 column 0"),
        (lines, 1, "at line 2 column 23"),
        (together, 2, "at line 2 column 50"),
        (compact, 1, "at line 1 column 49"),
    ] {
        let m = message(text, k);
        assert!(m.ends_with(at), "{m}, wanted {at}");
    }
    // Other messages are left as they are.
    assert_eq!(
        message("{\"input\": []}\n", 0),
        "the hypothesis list is empty"
    );
}

/// One line of invalid UTF-8 (a Latin-1 byte) leaves a trn, M2 or n-best file what it is: the
/// line (or its sentence) is an error, the others are read with their ids. It made the whole
/// file plain text (trn ids in the text, M2 edit lines "corrected" as sentences).
#[test]
fn one_invalid_utf8_line_keeps_the_files_format() {
    let trn = b"the cat sat (spk1-001)\ncaf\xe9 au lait (spk1-002)\na dog ran (spk1-003)\n";
    let entries = parse(trn);
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].id(), Value::from("spk1-001"));
    assert_eq!(entries[2].id(), Value::from("spk1-003"));
    assert!(entries[1].record.is_err());
    let m2 = b"S This are a sentence .\nA 1 2|||R:VERB:SVA|||is|||REQUIRED|||-NONE-|||0\n\nS caf\xe9 .\nA 0 1|||R:NOUN|||cafe|||REQUIRED|||-NONE-|||0\n\nS He go home .\nA 1 2|||R:VERB|||goes|||REQUIRED|||-NONE-|||0\n";
    let entries = parse(m2);
    assert_eq!(entries.len(), 3);
    assert_eq!(
        entries[2].record.as_ref().unwrap().reference.as_deref(),
        Some("He goes home .")
    );
    assert!(entries[1].record.is_err());
    let moses = b"0 ||| the house ||| F0= -1 ||| -1.5\n0 ||| a house ||| F0= -2 ||| -2.5\n1 ||| caf\xe9 ||| F0= -1 ||| -1\n1 ||| cafe ||| F0= -1 ||| -1.2\n";
    let entries = parse(moses);
    assert_eq!(entries.len(), 2);
    assert_eq!(
        entries[0].record.as_ref().unwrap().hypotheses,
        ["the house", "a house"]
    );
    assert!(entries[1].record.is_err());
}

/// M2 files joined with `cat`, the second with a byte-order mark: two sentences, each with its
/// reference (the marked `S` line did not open a sentence, and both were lost to one error).
#[test]
fn a_mark_mid_file_opens_its_m2_sentence() {
    let joined = "S This are a sentence .\nA 1 2|||R:VERB:SVA|||is|||REQUIRED|||-NONE-|||0\n\u{feff}S He go .\nA 1 2|||R:VERB|||goes|||REQUIRED|||-NONE-|||0\n";
    let entries = parse(joined.as_bytes());
    let refs: Vec<_> = ok(&entries)
        .iter()
        .map(|r| r.reference.clone().unwrap())
        .collect();
    assert_eq!(refs, ["This is a sentence .", "He goes ."]);
}

/// JSON Lines after an array: a broken record is an error under its id, and the records after
/// it are read (they were dropped, the broken one called "cut off").
#[test]
fn a_broken_record_after_an_array_costs_only_itself() {
    let text = "[{\"id\":\"a\",\"input\":[\"x\"]}]\n{\"id\":\"b\",\"input\":[\"y]}\n{\"id\":\"c\",\"input\":[\"z\"]}\n{\"id\":\"d\",\"input\":[\"w\"]}\n";
    let entries = parse(text.as_bytes());
    let ids: Vec<Value> = entries.iter().map(Entry::id).collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    assert!(entries[1].record.is_err());
    assert!(entries[3].record.is_ok());
}

/// A stray line inside a Moses sentence (a log line of `2>&1`) joins it, which becomes an error
/// line under its own id with its 1-best; it split the sentence, the 2nd-best a record of its
/// own and the ids shifted.
#[test]
fn a_stray_line_in_a_moses_sentence_stays_in_it() {
    let text = "0 ||| the house ||| F0= -1 ||| -1.5\n0 ||| a house ||| F0= -2 ||| -2.5\n1 ||| the cat ||| F0= -1 ||| -1\n[2024-05-01 12:00:00] Best translation 1 : the cat\n1 ||| a cat ||| F0= -1 ||| -1.2\n2 ||| hello ||| F0= -1 ||| -0.5\n";
    let entries = parse(text.as_bytes());
    let ids: Vec<Value> = entries.iter().map(Entry::id).collect();
    assert_eq!(ids, [0, 1, 2]);
    assert!(entries[0].record.is_ok() && entries[2].record.is_ok());
    assert!(entries[1].record.is_err());
    // The broken sentence's error keeps its number, not its place (7 came out as id 1).
    let text = text
        .replace("0 |||", "5 |||")
        .replace("1 |||", "7 |||")
        .replace("2 |||", "9 |||");
    let ids: Vec<Value> = parse(text.as_bytes()).iter().map(Entry::id).collect();
    assert_eq!(ids, [5, 7, 9]);
}

/// fairseq 0.9 and older write their log lines as `| loaded ...` and `| Generate ...`: no
/// sentence of theirs (the first and last sentences became error lines).
#[test]
fn old_fairseq_log_lines_are_no_records() {
    let text = "| [de] dictionary: 8848 types\n| loaded 2 examples from: test.de-en.de\n\
        S-0\tja\nH-0\t-0.1\tyes\nS-1\tnein\nH-1\t-0.2\tno\n\
        | Translated 2 sentences (4 tokens) in 0.1s (20.00 sentences/s, 40.00 tokens/s)\n\
        | Generate test with beam=5: BLEU4 = 25.30\n";
    let entries = parse(text.as_bytes());
    let r = ok(&entries);
    assert_eq!(r.len(), 2, "{entries:?}");
    assert_eq!(
        (r[0].hypotheses.clone(), r[1].hypotheses.clone()),
        (strings(&["yes"]), strings(&["no"]))
    );
}

/// JSON Lines of N-best lists whose first line is broken: that line is an error, the others
/// N-bests (read as a stream of arrays, each later hypothesis became a record of its own).
#[test]
fn a_broken_first_nbest_line_keeps_the_others_whole() {
    let text = "[\"cafe au lait\", \"cafe au lait\",]\n[\"the cat sat\", \"the cat sad\"]\n[\"hello world\", \"hello word\"]\n";
    let entries = parse(text.as_bytes());
    assert_eq!(entries.len(), 3);
    assert!(entries[0].record.is_err());
    let second = entries[1].record.as_ref().unwrap();
    assert_eq!(second.hypotheses, ["the cat sat", "the cat sad"]);
}

/// A `jq .` record with invalid UTF-8 says so, not that it was cut off (it closes).
#[test]
fn an_object_over_lines_with_invalid_utf8_says_so() {
    let text = b"{\n  \"id\": \"a\",\n  \"input\": [\"caf\xe9\"]\n}\n{\n  \"id\": \"b\",\n  \"input\": [\"ok\"]\n}\n";
    let entries = parse(text);
    assert_eq!(entries.len(), 2);
    let err = entries[0].record.as_ref().unwrap_err();
    assert!(err.message.contains("invalid UTF-8"), "{}", err.message);
    assert_eq!(entries[0].id(), Value::from("a"));
    assert!(entries[1].record.is_ok());
}

/// A record whose hypotheses cannot all be read still gives its readable 1-best to its error
/// line (a padded N-best's `null`, an `nbest` entry without text, a line over the size limit,
/// invalid UTF-8 after the 1-best); not one read from a lossy decoding of invalid UTF-8.
#[test]
fn error_lines_keep_a_readable_first_hypothesis() {
    let mut text = b"{\"id\": 1, \"input\": [\"first best\", null]}\n\
        {\"id\": 2, \"nbest\": [{\"text\": \"top\", \"score\": -1}, {\"text\": null}]}\n\
        {\"id\": 3, \"input\": [\"fine\", \"caf"
        .to_vec();
    text.extend_from_slice(b"\xe9\"]}\n{\"id\": 4, \"input\": [\"caf\xe9\"]}\n");
    let entries = parse(&text);
    let bests: Vec<Option<&str>> = entries
        .iter()
        .map(|e| e.record.as_ref().unwrap_err().best.as_deref())
        .collect();
    assert_eq!(bests, [Some("first best"), Some("top"), Some("fine"), None]);
    // An object in `input` is no hypothesis the reader takes: no 1-best from it.
    let entries = parse(b"{\"id\": 6, \"input\": [{\"text\": \"obj\"}]}\n");
    assert_eq!(entries[0].record.as_ref().unwrap_err().best, None);
    let long = format!("{{\"id\": 5, \"input\": [\"{}\"]}}\n", "word ".repeat(50));
    let entries = parse_with_limit(long.as_bytes(), 100);
    let err = entries[0].record.as_ref().unwrap_err();
    assert!(
        err.best
            .as_deref()
            .is_some_and(|b| b.starts_with("word word")),
        "{err}"
    );
}

/// Two elements of a pretty-printed array that lost their `{` line cost only themselves:
/// after the first, the second was read as part of the element before it, an intact element
/// became an error and the next one had no line.
#[test]
fn two_elements_without_their_brace_cost_only_themselves() {
    let records: Vec<Value> = (0..5)
        .map(|i| serde_json::json!({"id": format!("e{i}"), "input": [format!("h{i} a"), format!("h{i} b")]}))
        .collect();
    let pretty = serde_json::to_string_pretty(&records).unwrap();
    // Drop the `{` lines of elements 1 and 3.
    let mut opened = 0;
    let text: String = pretty
        .lines()
        .filter(|l| {
            if *l == "  {" {
                opened += 1;
                return !matches!(opened, 2 | 4);
            }
            true
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let entries = parse(text.as_bytes());
    let ids: Vec<Value> = entries.iter().map(|e| e.id()).collect();
    assert_eq!(ids, ["e0", "e1", "e2", "e3", "e4"], "{text}");
    let read: Vec<bool> = entries.iter().map(|e| e.record.is_ok()).collect();
    assert_eq!(read, [true, false, true, false, true]);
}

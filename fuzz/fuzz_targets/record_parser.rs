//! Fuzzes the record parser: any bytes must parse without panicking, every entry must be
//! numbered in order, and in a line-oriented input entries come in line order, within the
//! input, and an input with a non-blank line has one. (An object written over several lines,
//! or one cut off, is one entry for all its lines, records run together on a line are one
//! entry each, and in plain text a blank line is an empty 1-best, so entries and lines are not
//! counted against each other; the unit and integration tests pin those shapes.)
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let entries = neko::record::parse(data);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.index, i);
        assert!(e.line >= 1);
        if let Ok(r) = &e.record {
            assert!(!r.hypotheses.is_empty());
        }
    }
    let is_array = data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    // UTF-16 (its byte-order mark) is transcoded first: its lines are not these bytes'.
    let utf16 = data.starts_with(&[0xFF, 0xFE]) || data.starts_with(&[0xFE, 0xFF]);
    if !is_array && !utf16 {
        let lines = data.split(|&b| b == b'\n').count();
        // A byte-order mark at a line's start is skipped (files joined with `cat`).
        let non_blank = data.split(|&b| b == b'\n').any(|l| {
            let l = l.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(l);
            !l.iter().all(u8::is_ascii_whitespace)
        });
        assert!(!non_blank || !entries.is_empty());
        for pair in entries.windows(2) {
            assert!(pair[0].line <= pair[1].line);
        }
        assert!(entries.iter().all(|e| e.line <= lines));
    }
});

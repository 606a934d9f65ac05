//! Fuzzes the record parser: any bytes must parse without panicking, every entry must be
//! numbered in order, and every non-blank line of a line-oriented input must yield an entry.
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
    if !is_array {
        let lines = data
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .count();
        assert_eq!(entries.len(), lines);
    }
});

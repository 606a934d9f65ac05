//! An input read as it arrives. JSON Lines, the format of pipelines (`whisper_nbest.py | neko
//! correct -`), is parsed a record at a time, so that the records before the input's end can
//! be corrected and written while the rest is still coming, and only what is in flight is held
//! in memory. Any other input (a JSON array, plain text, M2, an N-best list) is read whole, as
//! [`super::parse_with_limit`] reads it: its format is decided from all of its lines.
//!
//! The stream's layout is decided by its first record: JSON Lines when it is one whole JSON
//! object on its line. Read whole, a file is JSON Lines when at least half of its lines open
//! JSON; streamed, a later line that is not JSON is an error line naming its line, not a 1-best.

use std::io::{BufRead, Read};

use super::lines::{parse_json_lines_piece, without_mark, Place};
use super::scan::object_end;
use super::{opens_an_object, parse_with_limit, Entry};

/// Reads `reader` to its end and hands each record to `emit` in input order, as soon as its
/// last line has arrived (a record written over several lines, as soon as the next one starts).
/// Stops early, without error, when `emit` returns false (the receiver is gone).
pub fn read_entries(
    mut reader: impl BufRead,
    max: usize,
    mut emit: impl FnMut(Entry) -> bool,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    if !read_head(&mut reader, &mut head)? {
        // Not JSON Lines: the whole input decides how it is read.
        reader.read_to_end(&mut head)?;
        parse_with_limit(&head, max).into_iter().all(&mut emit);
        return Ok(());
    }
    let mut pieces = Pieces::new(max);
    let mut line = Vec::new();
    // The head's lines first, then the rest as it arrives.
    let mut lines = head.as_slice().chain(reader);
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if !pieces.push(&line).into_iter().all(&mut emit) {
            return Ok(());
        }
    }
    pieces.finish().into_iter().all(&mut emit);
    Ok(())
}

/// Reads the input up to the end of its first non-blank line into `head` and says whether the
/// input is JSON Lines to stream: that line is one whole JSON object (after a UTF-8 byte-order
/// mark, which is dropped). Compressed input is refused here, as [`super::read_input`] does.
fn read_head(reader: &mut impl BufRead, head: &mut Vec<u8>) -> std::io::Result<bool> {
    loop {
        let from = head.len();
        if reader.read_until(b'\n', head)? == 0 {
            return Ok(false);
        }
        // A compressed file's magic bytes hold no newline: its first line has them all.
        if from == 0 {
            refuse_compressed(head)?;
            if head.starts_with(b"\xEF\xBB\xBF") {
                head.drain(..3);
            }
        }
        let line = head[from..].trim_ascii();
        if !line.is_empty() {
            return Ok(is_whole_object(line));
        }
    }
}

/// Refuses input whose first bytes are a compressed file's: read as text, its bytes would
/// become garbage records.
pub fn refuse_compressed(bytes: &[u8]) -> std::io::Result<()> {
    match super::compression(bytes) {
        Some((kind, tool)) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{kind}-compressed: decompress it first (`{tool} FILE | neko ... -`)"),
        )),
        None => Ok(()),
    }
}

/// Whether a line (trimmed) is one JSON object and nothing else.
fn is_whole_object(line: &[u8]) -> bool {
    opens_an_object(line) && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
}

/// The lines of a JSON Lines stream, gathered into pieces that each hold whole records: a
/// piece ends where a line opens an object at its first column (a record's first line, as in
/// a file read whole: an object written over several lines indents its inner lines), and at
/// once after a line that is a whole object by itself, at its first column or, outside any
/// record, indented.
struct Pieces {
    max: usize,
    /// The lines since the last piece ended, and where they start.
    pending: Vec<u8>,
    at: Place,
    /// The number of the next line pushed.
    next_line: usize,
    /// Where in `pending` a line opens an object that it does not close, and that line's
    /// indentation: the lines after it may be that record's, until one closes it.
    open: Option<(usize, usize)>,
}

impl Pieces {
    fn new(max: usize) -> Self {
        Pieces {
            max,
            pending: Vec::new(),
            at: Place::START,
            next_line: 1,
            open: None,
        }
    }

    /// Takes one line (with its newline) and returns the records it completes.
    fn push(&mut self, line: &[u8]) -> Vec<Entry> {
        // Files joined with `cat`, a Windows tool's among them, carry its mark mid-file.
        let text = without_mark(line);
        let trimmed = text.trim_ascii();
        let opens = opens_an_object(trimmed);
        // A line that opens an object and closes it (whole or broken) is a record by itself,
        // as reading whole finds it. Indented, it may also be a record's inner line
        // (`{"text": ...}` in a `jq .` record's `nbest`): a record only when none is open. The
        // lines before it then are records of their own (blank, broken or text lines).
        let alone = opens && object_end(trimmed, 0).is_some();
        let mut done = Vec::new();
        if text.first() == Some(&b'{') || (alone && self.open.is_none()) {
            done = self.take();
        }
        if self.pending.is_empty() {
            self.at.line = self.next_line;
        }
        let from = self.pending.len();
        self.pending.extend_from_slice(line);
        self.next_line += 1;
        let indent = text.len() - text.trim_ascii_start().len();
        // A `jq .` record closes with `}` at its opening line's indentation (deeper ones close
        // its inner objects): once its lines are one object, it is whole.
        let closes = |at: usize, open_indent: usize| {
            trimmed.first() == Some(&b'}')
                && indent <= open_indent
                && is_whole_object(self.pending[at..].trim_ascii())
        };
        match self.open {
            None if alone => done.extend(self.take()),
            None if opens => self.open = Some((from, indent)),
            Some((at, open_indent)) if closes(at, open_indent) => done.extend(self.take()),
            _ => {}
        }
        done
    }

    /// The records of what is left, at the input's end.
    fn finish(mut self) -> Vec<Entry> {
        self.take()
    }

    fn take(&mut self) -> Vec<Entry> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let entries = parse_json_lines_piece(&self.pending, self.max, self.at);
        self.at.index += entries.len();
        self.pending.clear();
        self.open = None;
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(bytes: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        read_entries(bytes, 1 << 20, |e| {
            out.push(e);
            true
        })
        .unwrap();
        out
    }

    /// The records, ids, lines and errors of an entry list, for comparison.
    fn shown(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match &e.record {
                Ok(r) => format!("{} {} {} {:?}", e.index, e.line, r.id, r.hypotheses),
                Err(err) => format!("{} {} {} ERR {}", e.index, e.line, e.id(), err.message),
            })
            .collect()
    }

    /// Streaming JSON Lines gives what reading the whole file gives: the same records, default
    /// ids, lines and error messages, for one-line records, `jq .` records, broken and cut
    /// lines, blank lines, records run together and a byte-order mark.
    #[test]
    fn a_stream_reads_json_lines_as_the_whole_file_does() {
        let input = concat!(
            "\u{feff}{\"id\": \"a\", \"input\": [\"one\", \"won\"]}\n",
            "\n",
            "{\"input\": [\"no id\"]}\n",
            "{\"id\": \"b\", \"input\": [\"cut\n",
            "{\"id\": \"c\", \"input\": [\"after a cut\"]}\r\n",
            "{\n  \"id\": \"d\",\n  \"input\": [\n    \"jq style\"\n  ]\n}\n",
            "{\"id\": \"e\", \"input\": [\"x\"]}{\"id\": \"f\", \"input\": [\"y\"]}\n",
            "{\"id\": \"g\", \"input\": [\"bad\" \"comma\"]}\n",
            "  {\"id\": \"indented\", \"input\": [\"x\"]}\n",
            "\n",
            "not json\n",
            "\t{\"id\": \"after text\", \"input\": [\"x\"]}\n",
            "{\n  \"id\": \"nested\",\n  \"nbest\": [\n    {\"text\": \"a b\", \"score\": -1}\n  ]\n}\n",
            "{\n  \"id\": \"h\",\n  \"input\": [\"never closes\"\n",
            "{\"id\": \"i\", \"input\": [\"last, no newline\"]}",
        );
        let whole = super::super::parse(input.as_bytes());
        let stream = streamed(input.as_bytes());
        assert_eq!(format!("{stream:?}"), format!("{whole:?}"));
        assert_eq!(stream.len(), 14, "{:#?}", shown(&stream));
        assert!(shown(&stream)[7].contains("ERR"), "{:?}", shown(&stream)[7]);
    }

    /// A record is handed over when its line has arrived, before the input ends.
    #[test]
    fn a_whole_line_is_a_record_before_the_next_arrives() {
        let mut pieces = Pieces::new(1 << 20);
        let first = pieces.push(b"{\"id\": 1, \"input\": [\"a\"]}\n");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].line, 1);
        // Indented, a whole object is a record too, outside any record, after a blank or a
        // broken line as well (which is a record of its own).
        assert!(pieces.push(b"\n").is_empty());
        let indented = pieces.push(b"  {\"id\": 1.5, \"input\": [\"a\"]}\n");
        assert_eq!(
            (indented.len(), indented[0].index, indented[0].line),
            (1, 1, 3)
        );
        assert!(pieces.push(b"not json\n").is_empty());
        let after_text = pieces.push(b"\t{\"id\": 1.7, \"input\": [\"b\"]}\n");
        assert_eq!(after_text.len(), 2, "{:?}", shown(&after_text));
        assert!(after_text[0].record.is_err() && after_text[1].record.is_ok());
        // A `jq .` record is whole at its closing line; an inner object's does not close it.
        assert!(pieces.push(b"{\n").is_empty());
        assert!(pieces.push(b"  \"id\": 2, \"nbest\": [\n").is_empty());
        assert!(pieces.push(b"    {\"text\": \"b\"}\n").is_empty());
        assert!(pieces.push(b"  ]\n").is_empty());
        let second = pieces.push(b"}\n");
        assert_eq!((second.len(), second[0].index, second[0].line), (1, 4, 6));
        // A broken line that closes its braces is a record (an error) by itself, and the
        // indented record after it comes at once.
        let broken = pieces.push(b"{\"id\": 3 \"input\": [\"c\"]}\n");
        assert!(broken.len() == 1 && broken[0].record.is_err());
        assert_eq!(pieces.push(b"  {\"id\": 4, \"input\": [\"d\"]}\n").len(), 1);
        assert!(pieces.finish().is_empty());
    }

    /// Input whose first record is not a JSON object on its line is read whole, as before.
    #[test]
    fn other_formats_are_read_whole() {
        for input in [
            "[{\"id\": \"a\", \"input1\": [\"x\"]}]\n",
            "[\"a b\", \"a c\"]\n[\"d\"]\n",
            "plain text line\n{\"id\": 1}\nanother line\n",
            "{\n  \"id\": \"jq\"\n}\n",
            "",
            "\n\n",
        ] {
            let whole = super::super::parse(input.as_bytes());
            let stream = streamed(input.as_bytes());
            assert_eq!(format!("{stream:?}"), format!("{whole:?}"), "{input:?}");
        }
    }

    /// The record fixtures of the integration tests, each file streamed as read whole.
    #[test]
    fn every_record_fixture_streams_as_read_whole() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/records");
        let mut files = 0;
        for path in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(path.unwrap().path()).unwrap();
            let whole = super::super::parse(&bytes);
            let stream = streamed(&bytes);
            assert_eq!(format!("{stream:?}"), format!("{whole:?}"));
            files += 1;
        }
        assert!(files >= 4);
    }

    #[test]
    fn compressed_input_is_refused() {
        let err = read_entries(&[0x1f, 0x8b, 8, 0][..], 1 << 20, |_| true).unwrap_err();
        assert!(err.to_string().contains("gzip-compressed"), "{err}");
    }

    /// A receiver that is gone stops the reading.
    #[test]
    fn emit_false_stops() {
        let input = "{\"id\": 1}\n{\"id\": 2}\n{\"id\": 3}\n";
        let mut seen = 0;
        read_entries(input.as_bytes(), 1 << 20, |_| {
            seen += 1;
            false
        })
        .unwrap();
        assert_eq!(seen, 1);
    }
}

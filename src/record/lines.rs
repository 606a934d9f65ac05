//! Files of lines: JSON Lines (an object written over several lines, `jq .` style, included)
//! and plain text, one 1-best per line. Which of the two a file is, is decided by its lines'
//! share of JSON ([`Layout::of_units`]).

use super::scan::{line_end, object_end, repaired};
use super::value::{identified, placed_in_file, record_from_bytes, with_id_in};
use super::{opens_a_list, opens_an_object, Entry, Record, RecordError};

/// How the lines of a file are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// An element of a JSON array, or an object written over several lines.
    Element,
    /// A line of JSON Lines: JSON, or an error.
    JsonLine,
    /// A line of a plain-text file: a 1-best as written, unless it opens a JSON object
    /// (`{"`): a record that lost its file's other lines is still read as one.
    TextLine,
    /// A line of an sclite `trn` file (every non-blank line `text (ID)`): a 1-best and its id.
    TrnLine,
    /// A sentence of an M2 file (its `S` line and the `A` lines after it): a GEC record.
    M2Block,
    /// A sentence of a Moses N-best list (its lines, `ID ||| text ||| ...`): an N-best record.
    MosesBlock,
    /// A sentence of `fairseq-generate`'s output (its `S-ID`, `T-ID`, `H-ID`, ... lines).
    FairseqBlock,
}

impl Layout {
    /// JSON Lines when at least half of the file's records open JSON (an object, written on
    /// one line or over several, or a list), or when every one is a JSON string (`jq '.text'`
    /// output); else plain text. By the share, not by any one line: a transcript may have a
    /// `{}` or `["x"]` line, and JSON Lines a line cut short or broken. A plain-text line may
    /// start with `{laugh}` or a quotation; neither opens JSON. Plain text whose every line
    /// ends with an utterance id in parentheses is sclite's `trn` ([`super::trn`]); `S` lines
    /// with their `A` lines are the GEC corpora's M2 ([`super::m2`]); `ID ||| text ||| ...`
    /// lines, MT's N-best lists ([`super::moses`]); `H-ID\t...` lines, `fairseq-generate`'s
    /// ([`super::fairseq`]).
    fn of_units(bytes: &[u8], units: &[Unit]) -> Layout {
        // A mark mid-file (files joined with `cat`) hides no line's JSON.
        let texts = || {
            (units.iter())
                .map(|u| (u, without_mark(&bytes[u.start..u.end]).trim_ascii()))
                .filter(|(_, t)| !t.is_empty())
        };
        let opens_json = |(u, t): (&Unit, &[u8])| {
            u.spanned.is_some()
                || opens_an_object(t)
                || (t.first() == Some(&b'[') && opens_a_list(&t[1..]) && t.last() == Some(&b']'))
        };
        // `jq '.text'` writes `null` for a record without the field.
        let json_string = |(_, t): (&Unit, &[u8])| {
            t == b"null"
                || (t.first() == Some(&b'"') && serde_json::from_slice::<String>(t).is_ok())
        };
        let records = texts().count();
        // Read leniently for the format: one line of invalid UTF-8 (a Latin-1 byte) must not
        // turn a trn, M2 or n-best file into plain text; that line alone is an error then.
        let decoded: Vec<std::borrow::Cow<str>> =
            texts().map(|(_, t)| String::from_utf8_lossy(t)).collect();
        let lines = decoded.iter().map(|l| Ok::<&str, ()>(l.as_ref()));
        if 2 * texts().filter(|&x| opens_json(x)).count() >= records || texts().all(json_string) {
            Layout::JsonLine
        } else if super::trn::is_trn(lines.clone().flatten()) {
            Layout::TrnLine
        } else if super::m2::is_m2(lines.clone().flatten()) {
            Layout::M2Block
        } else if super::moses::is_nbest(lines.clone().flatten()) {
            Layout::MosesBlock
        } else if super::fairseq::is_generate(lines.flatten()) {
            Layout::FairseqBlock
        } else {
            Layout::TextLine
        }
    }
}

/// A record's bytes in a file of lines: a line, or in JSON Lines an object over several lines.
#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    /// 1-based line where it starts.
    line: usize,
    /// Over several lines: a whole object, or one that never closes.
    spanned: Option<Span>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Span {
    Whole,
    Cut,
}

/// Every line of `bytes` (without its newline; no unit after a final newline).
fn line_units(bytes: &[u8]) -> Vec<Unit> {
    let mut units = Vec::new();
    let (mut at, mut line) = (0, 1);
    while at < bytes.len() {
        let end = line_end(bytes, at);
        units.push(Unit {
            start: at,
            end,
            line,
            spanned: None,
        });
        (at, line) = (end + 1, line + 1);
    }
    units
}

/// A line without the byte-order mark that files joined with `cat` carry mid-file.
pub(super) fn without_mark(line: &[u8]) -> &[u8] {
    line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
}

/// The lines as JSON Lines reads them: an object that its line does not close and a later line
/// does is one unit over those lines ([`spans_lines`]).
fn json_units(bytes: &[u8], lines: &[Unit], max: usize) -> Vec<Unit> {
    let text = |u: &Unit| bytes[u.start..u.end].trim_ascii();
    let mut units = Vec::with_capacity(lines.len());
    let mut k = 0;
    while k < lines.len() {
        let u = lines[k];
        // Only a line that opens an object and does not close it can span lines.
        let open = u.start
            + bytes[u.start..u.end]
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
        if !opens_an_object(text(&u)) || object_end(&bytes[..u.end], open).is_some() {
            units.push(u);
            k += 1;
            continue;
        }
        // A cut line followed by a whole record is a cut line: it spans nothing.
        let next = lines[k + 1..].iter().find(|n| !text(n).is_empty());
        let next_is_record = next.is_some_and(|n| {
            let t = text(n);
            t.first() == Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(t).is_ok()
        });
        let span = match next_is_record {
            true => None,
            false => spans_lines(bytes, open, u.end, max),
        };
        let (end, kind) = match span {
            Some(close) => (close, Some(Span::Whole)),
            // An object that never closes, with its inner lines (indented, or closing brackets),
            // up to the next record: one error, not one per line. A line cut alone is read as
            // its line (the parser's message says where it stops).
            None => {
                let inner = lines[k + 1..]
                    .iter()
                    .take_while(|n| inner_line(&bytes[n.start..n.end], open - u.start))
                    .last();
                match inner {
                    Some(n) => (n.end, Some(Span::Cut)),
                    None => (u.end, None),
                }
            }
        };
        units.push(Unit {
            end,
            spanned: kind,
            ..u
        });
        k += 1 + lines[k + 1..].iter().take_while(|l| l.start < end).count();
    }
    units
}

/// Whether a line reads as the inside of an object written over several lines, whose opening
/// line is indented by `indent`: indented (but not opening a record with a key at the opening
/// line's indentation or less), or closing brackets at its first column; not a line at column
/// 0 that opens the next record or is text.
fn inner_line(line: &[u8], indent: usize) -> bool {
    let text = line.trim_ascii();
    match line.first() {
        Some(b' ' | b'\t') => {
            // A nested object's `{` stands alone, or opens with a key deeper than the record
            // (`  {"text": ..., "score": ...},` in an `nbest` list).
            let deeper = line.len() - line.trim_ascii_start().len() > indent;
            text == b"{" || (!text.is_empty() && (deeper || !opens_an_object(text)))
        }
        // Closing brackets at the first column (`}`, `],`); a key there is a JSON string line.
        Some(b']' | b'}') => text.iter().all(|b| matches!(b, b']' | b'}' | b',')),
        _ => false,
    }
}

/// JSON Lines (or plain text lines), as [`Layout::of_units`] finds the file. Blank lines are
/// records in plain text only.
pub(super) fn parse_lines(bytes: &[u8], max: usize) -> Vec<Entry> {
    let lines = line_units(bytes);
    let spanned = json_units(bytes, &lines, max);
    let layout = Layout::of_units(bytes, &spanned);
    let units = units_of(bytes, layout, lines, spanned);
    entries_of(bytes, &units, layout, max, Place::START)
}

/// A piece of a JSON Lines stream, read as JSON Lines whatever it holds (the stream's first
/// record decided its layout): its records are numbered from `at`, its lines too.
pub(super) fn parse_json_lines_piece(bytes: &[u8], max: usize, at: Place) -> Vec<Entry> {
    let lines = line_units(bytes);
    let units = json_units(bytes, &lines, max);
    entries_of(bytes, &units, Layout::JsonLine, max, at)
}

/// Where a piece of a file starts: its first record's 0-based index in the file and its first
/// line's 1-based number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub index: usize,
    pub line: usize,
}

impl Place {
    pub const START: Place = Place { index: 0, line: 1 };
}

/// The records' units of a file's lines, as its layout reads them.
fn units_of(bytes: &[u8], layout: Layout, lines: Vec<Unit>, spanned: Vec<Unit>) -> Vec<Unit> {
    // In plain text a whole object over several lines is still one record (a line opening a
    // record is read as one too); anything else is its lines.
    match layout {
        Layout::JsonLine => spanned,
        // An M2 sentence is its `S` line and the lines after it; a Moses sentence, its lines.
        Layout::M2Block => blocks(bytes, lines, |_, line| {
            line == b"S" || line.starts_with(b"S ")
        }),
        // A stray line (a log line of Marian's `2>&1`) joins the sentence it is in, as in
        // fairseq's: only another sentence's line opens one.
        Layout::MosesBlock => blocks(bytes, lines, |block, line| {
            let open = block.split(|&b| b == b'\n').find_map(moses_id);
            matches!((open, moses_id(line)), (Some(a), Some(b)) if a != b)
        }),
        // fairseq's log lines and closing score are no records.
        Layout::FairseqBlock => {
            let text = |u: &Unit| std::str::from_utf8(&bytes[u.start..u.end]).unwrap_or_default();
            let lines = lines
                .into_iter()
                .filter(|u| !super::fairseq::is_chatter(text(u)));
            // A stray line (a warning on stderr, `2>&1`) joins the sentence it is in, which
            // becomes an error line under its own id; only another sentence's line opens one.
            blocks(bytes, lines.collect(), |block, line| {
                let open = block.split(|&b| b == b'\n').find_map(generate_id);
                matches!((open, generate_id(line)), (Some(a), Some(b)) if a != b)
            })
        }
        _ => {
            let whole = |u: &Unit| u.spanned == Some(Span::Whole);
            let objects: Vec<Unit> = spanned.into_iter().filter(whole).collect();
            let mut units = Vec::with_capacity(lines.len());
            let mut covered = 0;
            let mut next = objects.iter().peekable();
            for l in lines {
                while next.peek().is_some_and(|o| o.start <= l.start) {
                    let o = next.next().expect("peeked");
                    units.push(*o);
                    covered = o.end;
                }
                if l.start >= covered {
                    units.push(l);
                }
            }
            units
        }
    }
}

/// The entries of a file's (or a piece's) units.
fn entries_of(bytes: &[u8], units: &[Unit], layout: Layout, max: usize, at: Place) -> Vec<Entry> {
    let mut entries = Vec::new();
    for &u in units {
        let raw = &bytes[u.start..u.end];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        // Files joined with `cat`, a Windows tool's among them, carry its mark mid-file.
        let raw = without_mark(raw);
        // A blank line of plain text is an empty 1-best (silence), so that output line k is
        // input line k (`paste`); in JSON Lines, and among `trn` lines (whose records are
        // their ids, as sclite reads them), it is no record.
        // (Blocks have no blank units: a blank line only closes one.)
        let blank_is_none = matches!(layout, Layout::JsonLine | Layout::TrnLine);
        if raw.iter().all(u8::is_ascii_whitespace) && blank_is_none {
            continue;
        }
        let parts = match (layout, u.spanned) {
            (Layout::JsonLine, None) => run_together(raw),
            _ => vec![raw],
        };
        let line = at.line - 1 + u.line;
        for part in parts {
            let index = at.index + entries.len();
            let record = match u.spanned {
                Some(Span::Whole) => spanned_record(part, index, max),
                Some(Span::Cut) => Err(cut_object(part, max)),
                // A broken JSON line's error keeps the id it gives, as a broken element's does.
                None if layout == Layout::JsonLine => record_from_bytes(part, index, max, layout)
                    .map_err(|error| with_id_in(error, part)),
                None => record_from_bytes(part, index, max, layout),
            };
            // Every part is a slice of `bytes`, so its address gives its offset.
            let start = part.as_ptr() as usize - bytes.as_ptr() as usize;
            entries.push(Entry {
                index,
                line,
                record: record.map_err(|e| placed_in_file(e, bytes, start, line)),
            });
        }
    }
    entries
}

/// The sentence id a Moses N-best line opens with (`3 ||| ...`).
/// The sentence id of a Moses n-best line (`0 ||| text ||| ...`), if it is one.
fn moses_id(line: &[u8]) -> Option<&[u8]> {
    let line = line.trim_ascii();
    let id = nbest_id(line);
    let numbered = !id.is_empty() && id.iter().all(u8::is_ascii_digit);
    (numbered && line[id.len()..].trim_ascii_start().starts_with(b"|||")).then_some(id)
}

fn nbest_id(line: &[u8]) -> &[u8] {
    line.split(|&b| b == b'|')
        .next()
        .unwrap_or_default()
        .trim_ascii()
}

/// The sentence id of a `fairseq-generate` line (`H-12\t...`).
fn generate_id(line: &[u8]) -> Option<&str> {
    let line = std::str::from_utf8(line).ok()?;
    super::fairseq::split_line(line).map(|(_, id, _)| id)
}

/// Lines in blocks, a record each: a line joins the open block unless `opens(block, line)` says
/// it starts another (`block`: the open block's lines so far); a blank line closes the open
/// block and is no record.
fn blocks(bytes: &[u8], lines: Vec<Unit>, opens: impl Fn(&[u8], &[u8]) -> bool) -> Vec<Unit> {
    let mut blocks: Vec<Unit> = Vec::new();
    let mut open = false;
    for l in lines {
        // A mark mid-file (files joined with `cat`) must not hide the line that opens a block.
        let line = &bytes[l.start..l.end];
        let text = without_mark(line).trim_ascii();
        match blocks.last_mut() {
            Some(b) if open && !text.is_empty() && !opens(&bytes[b.start..b.end], text) => {
                b.end = l.end
            }
            _ => {
                open = !text.is_empty();
                blocks.extend(open.then_some(l));
            }
        }
    }
    blocks
}

/// The end of the JSON object that opens at `open` on the line ending at `end` and that the
/// line does not close (the caller has seen both), when a later line closes it (within `max`
/// and before the next record's line) with only whitespace after it,
/// and the text between is JSON once line breaks inside its strings are escaped. (Without that
/// last test, a line cut inside a string would pair its quotes with the next lines' and
/// swallow their records.)
fn spans_lines(bytes: &[u8], open: usize, end: usize, max: usize) -> Option<usize> {
    // Up to the next line that opens an object at its first column (the next record: an
    // object written over several lines indents its inner lines), so that lines cut one
    // after another are not each scanned for the whole window.
    let limit = bytes.len().min(open + max);
    let indent = open
        - bytes[..open]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |n| n + 1);
    let window = &bytes[..next_record_line(bytes, end, limit, indent)];
    let close = object_end(window, open)?;
    let after = &bytes[close..line_end(bytes, close)];
    (after.iter().all(u8::is_ascii_whitespace) && repaired(&bytes[open..close]).is_some())
        .then_some(close)
}

/// Where the next record's line starts after `from` (or `limit`): a line that opens an object
/// at its first column, or one that opens with a key (`{"`) indented no deeper than the
/// record's opening line (`indent`). An object written over several lines puts its nested
/// objects deeper: their `{` alone on a line, or a whole small object (`{"text": ...}`).
fn next_record_line(bytes: &[u8], from: usize, limit: usize, indent: usize) -> usize {
    // A first line longer than the limit: the record cannot end within it.
    if from >= limit {
        return limit;
    }
    let mut at = from;
    while let Some(k) = bytes[at..limit].iter().position(|&b| b == b'\n') {
        let start = at + k + 1;
        let line = &bytes[start..line_end(bytes, start).min(limit)];
        let text = line.trim_ascii();
        let depth = line.len() - line.trim_ascii_start().len();
        if line.first() == Some(&b'{')
            || (depth <= indent
                && text.starts_with(b"{")
                && text[1..].trim_ascii_start().starts_with(b"\""))
        {
            return start;
        }
        at = start;
    }
    limit
}

/// The error of an object that never closes, with the id it gave before it was cut.
fn cut_object(raw: &[u8], max: usize) -> RecordError {
    // An object is looked for only within `max` bytes: one that closes past them is whole, and
    // too long.
    let open = raw.iter().position(|&b| b == b'{');
    if raw.len() > max && open.is_some_and(|o| object_end(raw, o).is_some()) {
        return with_id_in(super::too_long(raw.len(), max), raw);
    }
    // Invalid UTF-8 keeps a whole object from being seen as JSON: said as what it is.
    if let Err(e) = std::str::from_utf8(raw) {
        let line = 1 + raw[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        let error = RecordError::new(None, format!("invalid UTF-8 on its line {line}"));
        return with_id_in(error, raw);
    }
    let lines = raw.iter().filter(|&&b| b == b'\n').count() + 1;
    let error = RecordError::new(
        None,
        format!("a JSON object cut off: it does not close ({lines} line(s))"),
    );
    with_id_in(error, raw)
}

/// A record written over several lines: read as it is when it is JSON; when only a raw line
/// break inside a string keeps it from being JSON, an error that says so (with its id).
fn spanned_record(raw: &[u8], index: usize, max: usize) -> Result<Record, RecordError> {
    if raw.len() > max || serde_json::from_slice::<serde::de::IgnoredAny>(raw).is_ok() {
        return record_from_bytes(raw, index, max, Layout::Element);
    }
    let error = RecordError::new(
        None,
        "a line break inside a JSON string: write it as \\n (JSON Lines keeps a record on one line)",
    );
    Err(identified(error, repaired(raw)))
}

/// A line's records: the line, or the JSON objects written one after another on it
/// (`{...}{...}` or `{...} {...}`, as a careless join makes).
fn run_together(line: &[u8]) -> Vec<&[u8]> {
    let whole = vec![line];
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    if line.get(start) != Some(&b'{')
        || serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
    {
        return whole;
    }
    let mut parts = Vec::new();
    let mut at = start;
    while at < line.len() {
        match object_end(line, at) {
            // Each part must open an object: `{laugh} {cough}` is a transcript's line.
            Some(end) if opens_an_object(&line[at..end]) => {
                parts.push(&line[at..end]);
                at = end;
            }
            // The rest is cut or broken: the records before it are kept, it is one error.
            _ if !parts.is_empty() && opens_an_object(&line[at..]) => {
                parts.push(&line[at..]);
                break;
            }
            _ => return whole,
        }
        // Joined with spaces, or with commas as an array's elements are.
        at += line[at..]
            .iter()
            .take_while(|b| b.is_ascii_whitespace() || **b == b',')
            .count();
    }
    if parts.len() > 1 {
        parts
    } else {
        whole
    }
}

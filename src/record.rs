//! N-best records: reading every shape users have (JSONL, HyPoradise JSON arrays, plain text)
//! into one [`Record`], each with the place it came from so errors can name file, line and field.
//!
//! Format detection is by content: a file whose first non-blank byte is `[` is a JSON array
//! (the HyPoradise files); anything else is read line by line. A file of lines is JSON Lines
//! when at least half of its records open JSON (an object, or a list of hypotheses), or every
//! line is a JSON string: then every line is JSON, and one that is not is an error. Otherwise
//! it is plain text, one 1-best per line as written, quotes and braces included.

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

/// One input record, normalised from whichever shape it arrived in.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The record's `id` as given (string or number), or its 0-based position in the input.
    pub id: Value,
    /// The record's own `task` field, unparsed (validated where the task is needed).
    pub task: Option<String>,
    /// Hypotheses, best first. May contain duplicates (HyPoradise pads short lists).
    pub hypotheses: Vec<String>,
    /// True when the record gave its 1-best alone (`best`, as `neko correct` writes), not its
    /// N-best: `hypotheses` then holds one text that says nothing of the others.
    pub only_best: bool,
    /// Recogniser scores aligned with `hypotheses` (`scores`, `am_score`, `score`, `nbest[].score`).
    pub scores: Option<Vec<f64>>,
    /// The reference transcript (`output`), when present.
    pub reference: Option<String>,
    /// A corrected text (`prediction`), present in files written by `neko correct`.
    pub prediction: Option<String>,
    /// The record's `source` (a sub-corpus or recogniser name), used to group scores.
    pub source: Option<String>,
    /// The segment's `start` and `end` in its audio (`scripts/whisper_nbest.py` writes seconds),
    /// as given: carried to the output so that corrected segments keep their timing.
    pub start: Option<Value>,
    pub end: Option<Value>,
    /// HyPoradise's per-record `instruction`, when present.
    pub instruction: Option<String>,
    /// An `error` already carried by the record (e.g. a failed record in a `neko correct` output).
    pub error: Option<Value>,
    /// The over-correction guard's verdict in a `neko correct` output (`fallback:<reason>`).
    pub guard: Option<String>,
}

impl Record {
    /// A record holding only hypotheses, for tests and callers building records by hand.
    pub fn from_hypotheses(id: Value, hypotheses: Vec<String>) -> Self {
        Record {
            id,
            task: None,
            hypotheses,
            only_best: false,
            scores: None,
            reference: None,
            prediction: None,
            source: None,
            start: None,
            end: None,
            instruction: None,
            error: None,
            guard: None,
        }
    }

    /// The 1-best hypothesis, if there is one.
    pub fn best(&self) -> Option<&str> {
        self.hypotheses.first().map(String::as_str)
    }
}

/// Why one record could not be read. The location is carried by the [`Entry`] around it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", field.as_deref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
pub struct RecordError {
    /// The field at fault, when one is.
    pub field: Option<String>,
    /// What is wrong, in words.
    pub message: String,
    /// The record's `id`, when the record was an object with a valid one: its error line keeps
    /// it, so that a pipeline can still join the line to its input.
    /// (Boxed: a JSON value is large, and errors travel in every `Result` of the parser.)
    pub id: Option<Box<Value>>,
    /// The record's `task`, when it names one as a string.
    pub task: Option<String>,
    /// The record's 1-best, when its hypotheses could be read and another field could not:
    /// its error line still carries it as the prediction.
    pub best: Option<String>,
    /// Whether this is an earlier step's error that the record carried (a recogniser's).
    pub upstream: bool,
}

impl RecordError {
    fn new(field: Option<&str>, message: impl Into<String>) -> Self {
        RecordError {
            field: field.map(str::to_string),
            message: message.into(),
            id: None,
            task: None,
            best: None,
            upstream: false,
        }
    }
}

/// A record, or the reason it could not be read, with where it came from.
#[derive(Debug, Clone)]
pub struct Entry {
    /// 0-based position among the input's records (also the default id).
    pub index: usize,
    /// 1-based line where the record starts.
    pub line: usize,
    /// The parsed record, or what was wrong with it.
    pub record: Result<Record, RecordError>,
}

impl Entry {
    /// The record's id; for a record that could not be read, the id it gave, else its position.
    pub fn id(&self) -> Value {
        match &self.record {
            Ok(r) => r.id.clone(),
            Err(e) => {
                e.id.as_deref()
                    .cloned()
                    .unwrap_or_else(|| Value::from(self.index))
            }
        }
    }
}

/// Reads a whole input: a file path, or `-` for standard input. A compressed file is refused
/// as such: read as text, its bytes would become garbage records.
pub fn read_input(path: &Path) -> std::io::Result<Vec<u8>> {
    let bytes = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().lock().read_to_end(&mut buf)?;
        buf
    } else {
        std::fs::read(path)?
    };
    match compression(&bytes) {
        Some((kind, tool)) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{kind}-compressed: decompress it first (`{tool} FILE | neko ... -`)"),
        )),
        None => Ok(bytes),
    }
}

/// The compression a file's magic bytes name, and the tool that undoes it.
fn compression(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    match bytes {
        [0x1f, 0x8b, ..] => Some(("gzip", "zcat")),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(("zstd", "zstdcat")),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Some(("xz", "xzcat")),
        [b'B', b'Z', b'h', ..] if bytes.get(3).is_some_and(u8::is_ascii_digit) => {
            Some(("bzip2", "bzcat"))
        }
        _ => None,
    }
}

/// The display name of an input, as used in messages (`<stdin>` for `-`).
pub fn input_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    }
}

/// Reads and parses one input file (or `-`). I/O errors are whole-file errors; everything else
/// is reported per record.
pub fn read_path(path: &Path) -> std::io::Result<Vec<Entry>> {
    read_path_with_limit(path, DEFAULT_MAX_RECORD_BYTES)
}

/// [`read_path`], with records longer than `max_record_bytes` reported as errors.
pub fn read_path_with_limit(path: &Path, max_record_bytes: usize) -> std::io::Result<Vec<Entry>> {
    Ok(parse_with_limit(&read_input(path)?, max_record_bytes))
}

/// A whole file (or `-`) of neko's own JSON (prediction lines, shard outputs, reports) as
/// text, read as inputs are: a byte-order mark skipped, UTF-16 transcoded, compression
/// refused; text that is not UTF-8 is an error naming its line.
pub fn read_text(path: &Path) -> std::io::Result<String> {
    let bytes = read_input(path)?;
    let bytes = as_utf8(&bytes).into_owned();
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count();
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("line {line}: invalid UTF-8"),
        )
    })
}

/// The default bound on one record's size. N-best records are a few KB; a line of megabytes
/// is a broken export, and tokenising it would stall the run.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

/// Parses the bytes of an input, detecting its format from content.
pub fn parse(bytes: &[u8]) -> Vec<Entry> {
    parse_with_limit(bytes, DEFAULT_MAX_RECORD_BYTES)
}

/// [`parse`], with records longer than `max_record_bytes` reported as errors.
pub fn parse_with_limit(bytes: &[u8], max_record_bytes: usize) -> Vec<Entry> {
    let bytes = as_utf8(bytes);
    let bytes: &[u8] = &bytes;
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    match start {
        Some(i) if nbest_lines(&bytes[i..]) => parse_lines(bytes, max_record_bytes),
        Some(i) if json_stream(&bytes[i..]) => parse_json_stream(bytes, i, max_record_bytes),
        // Objects written over several lines (`jq .` output) too are read as JSON Lines are,
        // so that one cut among them costs only itself.
        Some(_) => parse_lines(bytes, max_record_bytes),
        None => Vec::new(),
    }
}

/// Whether text is JSON Lines of hypothesis lists (`["a b", "a c"]` per line, as
/// `json.dumps(nbest)` writes them): its first line is a whole list of plain values (strings,
/// or a bad or empty list, still one line's record) and another line follows. One such line
/// alone stays a JSON array of 1-best records.
fn nbest_lines(text: &[u8]) -> bool {
    let mut lines =
        (text.split(|&b| b == b'\n')).filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    lines.next().is_some_and(is_list_line) && lines.next().is_some()
}

/// Whether a line is a whole JSON list none of whose items is an object or a list: a
/// HyPoradise array of records on one long line is none (and is not parsed for this: only a
/// line that opens `["` or `[]` is).
fn is_list_line(line: &[u8]) -> bool {
    let l = line.trim_ascii();
    let opens = l.first() == Some(&b'[') && opens_a_list(&l[1..]) && l.last() == Some(&b']');
    opens
        && matches!(serde_json::from_slice::<Value>(l), Ok(Value::Array(items))
            if items.iter().all(|v| !v.is_object() && !v.is_array()))
}

/// A JSON list of strings (non-empty), as a record's hypotheses.
fn hypothesis_list(v: &Value) -> Option<Vec<String>> {
    let items = v.as_array().filter(|a| !a.is_empty())?;
    items
        .iter()
        .map(|h| h.as_str().map(str::to_string))
        .collect()
}

/// Whether the bytes of JSON text, read one by one, are inside a string (escapes followed), so
/// that brackets and commas there are text.
#[derive(Default)]
struct Strings {
    inside: bool,
    escaped: bool,
}

impl Strings {
    /// Reads `b`: whether it belongs to a string, its quotes included.
    fn read(&mut self, b: u8) -> bool {
        if self.inside {
            match (self.escaped, b) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.inside = false,
                _ => {}
            }
            return true;
        }
        self.inside = b == b'"';
        self.inside
    }
}

/// The end (exclusive) of the JSON object opening at `open`, found by brackets and strings;
/// `None` when it is cut off.
fn object_end(bytes: &[u8], open: usize) -> Option<usize> {
    let (mut depth, mut strings) = (0usize, Strings::default());
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        if strings.read(b) {
            continue;
        }
        match b {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether text is JSON arrays (and objects): it opens an array ([`opens_an_array`]) that,
/// when it closes, is followed by nothing or more JSON. A transcript's `[ ] buy milk` or
/// `["laughs"] okay so` is text. An array that never closes (a file cut short) is JSON.
fn json_stream(text: &[u8]) -> bool {
    if !opens_an_array(text) {
        return false;
    }
    // An array of records (`[{`, `[[`) is JSON whatever follows it: what is not gets an error.
    if matches!(text[1..].trim_ascii_start().first(), Some(b'{' | b'[')) {
        return true;
    }
    match array_element_spans(text, 0).1 {
        ArrayEnd::Closed(close) => json_follows(text, close),
        ArrayEnd::Broken(..) => true,
    }
}

/// Whether text is a JSON array of records: it starts with `[` and its first element is an
/// object, a string or a list of strings (an N-best), or it has none. A plain-text transcript
/// may start with `[noise]` or `[1]`.
fn opens_an_array(text: &[u8]) -> bool {
    let next =
        |from: usize| (text.iter().enumerate().skip(from)).find(|(_, b)| !b.is_ascii_whitespace());
    match (text.first(), next(1)) {
        (Some(b'['), None | Some((_, b'{' | b'"' | b']'))) => true,
        (Some(b'['), Some((k, b'['))) => matches!(next(k + 1), Some((_, b'"'))),
        _ => false,
    }
}

/// The input as UTF-8 without a byte-order mark. Windows tools write one: a UTF-8 BOM would
/// hide the first record's `{` (its JSON would become a 1-best), and UTF-16 text (a BOM of
/// `FF FE` or `FE FF`) is valid UTF-8 byte by byte when ASCII, NULs between the letters, so
/// it is transcoded rather than read as garbage. Unpaired UTF-16 surrogates become U+FFFD.
fn as_utf8(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let utf16 = |rest: &[u8], unit: fn([u8; 2]) -> u16| -> Vec<u8> {
        let units = rest.chunks_exact(2).map(|c| unit([c[0], c[1]]));
        String::from_utf16_lossy(&units.collect::<Vec<u16>>()).into_bytes()
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => rest.into(),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes).into(),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes).into(),
        _ => bytes.into(),
    }
}

fn too_long(len: usize, max: usize) -> RecordError {
    RecordError::new(
        None,
        format!("record of {len} bytes is over the limit of {max} (--max-record-bytes)"),
    )
}

/// How the lines of a file are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// An element of a JSON array, or an object written over several lines.
    Element,
    /// A line of JSON Lines: JSON, or an error.
    JsonLine,
    /// A line of a plain-text file: a 1-best as written, unless it opens a JSON object
    /// (`{"`): a record that lost its file's other lines is still read as one.
    TextLine,
}

impl Layout {
    /// JSON Lines when at least half of the file's records open JSON (an object, written on
    /// one line or over several, or a list), or when every one is a JSON string (`jq '.text'`
    /// output); else plain text. By the share, not by any one line: a transcript may have a
    /// `{}` or `["x"]` line, and JSON Lines a line cut short or broken. A plain-text line may
    /// start with `{laugh}` or a quotation; neither opens JSON.
    fn of_units(bytes: &[u8], units: &[Unit]) -> Layout {
        let texts = || {
            (units.iter())
                .map(|u| (u, bytes[u.start..u.end].trim_ascii()))
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
        if 2 * texts().filter(|&x| opens_json(x)).count() >= records || texts().all(json_string) {
            Layout::JsonLine
        } else {
            Layout::TextLine
        }
    }
}

/// Whether text after a `[` opens a list of hypotheses: a string or the list's end comes next.
fn opens_a_list(rest: &[u8]) -> bool {
    matches!(rest.trim_ascii_start().first(), Some(b'"' | b']'))
}

/// Whether text opens a JSON object (`{"`, `{}`, or `{` alone on its line, as `jq .` writes
/// one), not a `{laugh}` of a transcript.
fn opens_an_object(text: &[u8]) -> bool {
    match text.strip_prefix(b"{") {
        Some(rest) => matches!(rest.trim_ascii_start().first(), None | Some(b'"' | b'}')),
        None => false,
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
                    .take_while(|n| inner_line(&bytes[n.start..n.end]))
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

/// Whether a line reads as the inside of an object written over several lines: indented (but
/// not opening a record with a key), or closing brackets at its first column; not a line at
/// column 0 that opens the next record or is text.
fn inner_line(line: &[u8]) -> bool {
    let text = line.trim_ascii();
    match line.first() {
        Some(b' ' | b'\t') => {
            // A nested object's `{` stands alone; a line opening with a key is a record's.
            text == b"{" || (!text.is_empty() && !opens_an_object(text))
        }
        // Closing brackets at the first column (`}`, `],`); a key there is a JSON string line.
        Some(b']' | b'}') => text.iter().all(|b| matches!(b, b']' | b'}' | b',')),
        _ => false,
    }
}

/// JSON Lines (or plain text lines), as [`Layout::of_units`] finds the file. Blank lines are
/// records in plain text only.
fn parse_lines(bytes: &[u8], max: usize) -> Vec<Entry> {
    let lines = line_units(bytes);
    let spanned = json_units(bytes, &lines, max);
    let layout = Layout::of_units(bytes, &spanned);
    // In plain text a whole object over several lines is still one record (a line opening a
    // record is read as one too); anything else is its lines.
    let units = match layout {
        Layout::JsonLine => spanned,
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
    };
    let mut entries = Vec::new();
    for u in units {
        let raw = &bytes[u.start..u.end];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        // Files joined with `cat`, a Windows tool's among them, carry its mark mid-file.
        let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
        // A blank line of plain text is an empty 1-best (silence), so that output line k is
        // input line k (`paste`); in JSON Lines it is no record.
        if raw.iter().all(u8::is_ascii_whitespace) && layout == Layout::JsonLine {
            continue;
        }
        let parts = match (layout, u.spanned) {
            (Layout::JsonLine, None) => run_together(raw),
            _ => vec![raw],
        };
        for part in parts {
            let index = entries.len();
            let record = match u.spanned {
                Some(Span::Whole) => spanned_record(part, index, max),
                Some(Span::Cut) => Err(cut_object(part)),
                // A broken JSON line's error keeps the id it gives, as a broken element's does.
                None if layout == Layout::JsonLine => record_from_bytes(part, index, max, layout)
                    .map_err(|error| with_id_in(error, part)),
                None => record_from_bytes(part, index, max, layout),
            };
            entries.push(Entry {
                index,
                line: u.line,
                record,
            });
        }
    }
    entries
}

/// The offset of the newline ending the line that starts at `at` (or the end of the text).
fn line_end(bytes: &[u8], at: usize) -> usize {
    (bytes[at..].iter().position(|&b| b == b'\n')).map_or(bytes.len(), |k| at + k)
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
    let window = &bytes[..next_record_line(bytes, end, limit)];
    let close = object_end(window, open)?;
    let after = &bytes[close..line_end(bytes, close)];
    (after.iter().all(u8::is_ascii_whitespace) && repaired(&bytes[open..close]).is_some())
        .then_some(close)
}

/// Where the next record's line starts after `from` (or `limit`): a line that opens an object
/// at its first column, or one that opens with a key (`{"`) however indented. An object
/// written over several lines puts its nested objects' `{` alone on a line.
fn next_record_line(bytes: &[u8], from: usize, limit: usize) -> usize {
    // A first line longer than the limit: the record cannot end within it.
    if from >= limit {
        return limit;
    }
    let mut at = from;
    while let Some(k) = bytes[at..limit].iter().position(|&b| b == b'\n') {
        let start = at + k + 1;
        let line = &bytes[start..line_end(bytes, start).min(limit)];
        let text = line.trim_ascii();
        if line.first() == Some(&b'{')
            || (text.starts_with(b"{") && text[1..].trim_ascii_start().starts_with(b"\""))
        {
            return start;
        }
        at = start;
    }
    limit
}

/// The JSON value of `text` with raw line breaks inside its strings escaped, if that parses.
fn repaired(text: &[u8]) -> Option<Value> {
    let mut strings = Strings::default();
    let mut out = Vec::with_capacity(text.len() + 8);
    for &b in text {
        let inside = strings.read(b);
        match b {
            b'\n' if inside => out.extend_from_slice(b"\\n"),
            b'\r' if inside => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
    serde_json::from_slice(&out).ok()
}

/// The error of an object that never closes, with the id it gave before it was cut.
fn cut_object(raw: &[u8]) -> RecordError {
    let lines = raw.iter().filter(|&&b| b == b'\n').count() + 1;
    let error = RecordError::new(
        None,
        format!("a JSON object cut off: it does not close ({lines} line(s))"),
    );
    with_id_in(error, raw)
}

/// `error` with the id that the broken or cut record `raw` gives as `"id": VALUE`, when it has
/// none: its error line then still joins its input.
fn with_id_in(mut error: RecordError, raw: &[u8]) -> RecordError {
    if error.id.is_some() {
        return error;
    }
    let text = String::from_utf8_lossy(raw);
    let rest = match own_key(text.as_bytes(), b"\"id\"") {
        Some(at) => Some(&text[at..]),
        None => text.split_once("\"id\"").map(|(_, rest)| rest),
    };
    let id = rest.and_then(|rest| {
        let value = rest.trim_start().strip_prefix(':')?.trim_start();
        let end = value.find([',', '\n', '}']).unwrap_or(value.len());
        serde_json::from_str::<Value>(value[..end].trim()).ok()
    });
    error.id = id.filter(|v| v.is_string() || v.is_number()).map(Box::new);
    error
}

/// Where `key` (with its quotes) ends when it is a key of the object `text` opens, not of
/// one nested in it (`{"meta": {"id": ...}, "id": ...}`), as far as brackets and quotes tell.
fn own_key(text: &[u8], key: &[u8]) -> Option<usize> {
    let (mut depth, mut strings) = (0usize, Strings::default());
    for (i, &b) in text.iter().enumerate() {
        let opens = !strings.inside;
        if strings.read(b) {
            if opens && depth == 1 && text[i..].starts_with(key) {
                return Some(i + key.len());
            }
            continue;
        }
        match b {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
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

/// `error` with the id and task of the record it is about, when `value` is its object: its
/// error line then still joins its input.
fn identified(error: RecordError, value: Option<Value>) -> RecordError {
    match value {
        Some(Value::Object(obj)) => RecordError {
            id: valid_id(&obj).map(Box::new),
            task: task_named(&obj),
            ..error
        },
        _ => error,
    }
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

/// One record's bytes (a line, or an array `element`), parsed. A record too long or not UTF-8
/// still keeps the id and task it gives, so that its error line joins its input.
fn record_from_bytes(
    raw: &[u8],
    index: usize,
    max: usize,
    layout: Layout,
) -> Result<Record, RecordError> {
    let error = match std::str::from_utf8(raw) {
        _ if raw.len() > max => too_long(raw.len(), max),
        Ok(text) => return parse_text(text, index, layout),
        Err(e) => {
            let unit = if layout == Layout::Element {
                "record"
            } else {
                "line"
            };
            let at = e.valid_up_to();
            RecordError::new(None, format!("invalid UTF-8 at byte {at} of the {unit}"))
        }
    };
    Err(identified(
        error,
        parse_json(&String::from_utf8_lossy(raw)).ok(),
    ))
}

fn parse_json(text: &str) -> Result<Value, RecordError> {
    serde_json::from_str(text).map_err(|e| RecordError::new(None, format!("broken JSON: {e}")))
}

/// One record's text, read as its layout says.
fn parse_text(text: &str, index: usize, layout: Layout) -> Result<Record, RecordError> {
    let trimmed = text.trim();
    let json = match layout {
        Layout::Element | Layout::JsonLine => true,
        // A record that lost its file's other lines is still read as one (`{"`).
        // A record has a key (`{"input": ...`); `{"laughs"} okay` is a transcript's line.
        Layout::TextLine => {
            let rest = trimmed.strip_prefix('{').map(str::trim_start);
            rest.is_some_and(|r| r.starts_with('"') && r.contains("\":"))
        }
    };
    match json {
        true if layout == Layout::JsonLine && !trimmed.starts_with(['{', '[', '"']) => {
            Err(RecordError::new(
                None,
                "not JSON, in a file of JSON Lines (its other lines are JSON records)",
            ))
        }
        // An object's keys without its `{` (an element or line that lost it): never valid
        // JSON, so nothing valid is turned away here.
        true if starts_with_a_key(trimmed) => Err(RecordError::new(
            None,
            "broken JSON: the record's opening `{` is missing (it starts with a key)",
        )),
        true => from_value(parse_json(trimmed)?, index),
        // A plain text line is a 1-best with nothing else known.
        false => Ok(Record::from_hypotheses(
            Value::from(index),
            vec![trimmed.to_string()],
        )),
    }
}

/// Whether JSON text starts with an object's key (`"id": ...`): an object that lost its `{`.
fn starts_with_a_key(text: &str) -> bool {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<String>();
    matches!(values.next(), Some(Ok(_)))
        && text[values.byte_offset()..].trim_start().starts_with(':')
}

/// JSON documents one after another: arrays of records (HyPoradise files, several as `cat`
/// joins them) and records as objects (pretty-printed by `jq .`, or JSON Lines after an
/// array). Elements are located by a small scanner so each record keeps its line number and a
/// bad element does not take the others with it: a cut-off array or object keeps the complete
/// records before it, and text that is neither is an error entry, not silently ignored.
fn parse_json_stream(bytes: &[u8], first: usize, max: usize) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut lines = LineCounter::default();
    let mut push =
        |entries: &mut Vec<Entry>, offset: usize, record: Result<Record, RecordError>| {
            let line = lines.at(bytes, offset);
            let index = entries.len();
            entries.push(Entry {
                index,
                line,
                record,
            });
        };
    let mut at = first;
    while let Some(skip) = bytes[at..].iter().position(|b| !b.is_ascii_whitespace()) {
        at += skip;
        let broken = match bytes[at] {
            b'[' => {
                let (spans, end) = array_element_spans(bytes, at);
                let scanned = elements(bytes, &spans, entries.len(), max);
                if let Some((split, split_end)) =
                    reread(bytes, at, (&spans, &end, &scanned), entries.len(), max)
                {
                    for (s, record) in split {
                        push(&mut entries, s, record);
                    }
                    at = split_end;
                    continue;
                }
                for (s, record) in scanned {
                    push(&mut entries, s, record);
                }
                match end {
                    ArrayEnd::Closed(close) => {
                        at = close + 1;
                        None
                    }
                    ArrayEnd::Broken(offset, message) => Some((offset, message)),
                }
            }
            b'{' => match object_end(bytes, at) {
                Some(end) => {
                    let record =
                        record_from_bytes(&bytes[at..end], entries.len(), max, Layout::Element);
                    push(&mut entries, at, record);
                    at = end;
                    None
                }
                None => Some((
                    at,
                    "unterminated JSON object: this record is cut off".into(),
                )),
            },
            _ => Some((
                at,
                "text after the last JSON record (not an array or object): not read".into(),
            )),
        };
        if let Some((offset, message)) = broken {
            let cut = &bytes[offset..bytes.len().min(offset.saturating_add(max))];
            let error = with_id_in(RecordError::new(None, message), cut);
            push(&mut entries, offset, Err(error));
            break;
        }
    }
    entries
}

/// Array elements at byte `spans`, parsed, with their start offsets; `index` is the index of
/// the first.
fn elements(bytes: &[u8], spans: &[(usize, usize)], index: usize, max: usize) -> Elements {
    let parsed = spans.iter().enumerate().map(|(k, &(s, e))| {
        let record = record_from_bytes(&bytes[s..e], index + k, max, Layout::Element);
        (s, record.map_err(|error| with_id_in(error, &bytes[s..e])))
    });
    parsed.collect()
}

/// An array's element as read: its start offset and its record or error.
type Element = (usize, Result<Record, RecordError>);

/// An array's elements as read.
type Elements = Vec<Element>;

/// An array the bracket scan did not read as well-formed JSON, read again by its lines
/// ([`element_lines`], [`merged`]), with the offset after it; `None` where that reads fewer
/// records than the scan did, or as many with as many errors or more.
fn reread(
    bytes: &[u8],
    open: usize,
    (spans, end, scanned): (&[(usize, usize)], &ArrayEnd, &Elements),
    index: usize,
    max: usize,
) -> Option<(Elements, usize)> {
    if well_formed(bytes, spans, end) {
        return None;
    }
    // Where the scan closed the array is where it ends, unless the scan paired quotes across
    // a line break (a string never holds a raw one): then it lost its place, and so did its
    // close.
    let close = match *end {
        ArrayEnd::Closed(close) => {
            Some(close).filter(|&c| json_follows(bytes, c) && !strings_cross_lines(&bytes[open..c]))
        }
        ArrayEnd::Broken(..) => None,
    };
    // On one line, the scan is trusted only up to its first error: after it, it may take a
    // broken record's strings for elements.
    let (lines, after, trusted) = match element_lines(bytes, open, close) {
        Some((lines, after)) => (lines, after, scanned.len()),
        None => {
            let (lines, after) = boundary_elements(bytes, open)?;
            let first_error = scanned.iter().position(|(_, r)| r.is_err());
            (lines, after, first_error.unwrap_or(scanned.len()))
        }
    };
    let (spans, scanned) = (&spans[..trusted], &scanned[..trusted]);
    let split = merged(bytes, &lines, (spans, scanned), index, max)?;
    // The scan's reading ends in one more error entry when its array did not close with only
    // JSON after it, or when what it reads on with is text the split took as elements.
    let tail = usize::from(match *end {
        ArrayEnd::Closed(c) => {
            !json_follows(bytes, c) || !bytes[c + 1..after.max(c + 1)].trim_ascii().is_empty()
        }
        ArrayEnd::Broken(..) => true,
    });
    let read = |elements: &[Element]| elements.iter().filter(|(_, r)| r.is_ok()).count();
    // A scan that broke stops reading there; the split reads on after the array, so it wins
    // a tie.
    let broke = matches!(end, ArrayEnd::Broken(..));
    let better = match read(&split).cmp(&read(scanned)) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal if broke => split.len() <= scanned.len() + tail,
        std::cmp::Ordering::Equal => split.len() < scanned.len() + tail,
        std::cmp::Ordering::Less => false,
    };
    better.then_some((split, after))
}

/// The line split's elements, where the bracket scan read an element the split could not
/// (an intact record before a stray `}` or a line of text) with the scan's record, and what
/// follows it in the split's element as an error of its own; `None` unless every record the
/// scan read starts where a split element does (a split that cuts one is wrong about it).
fn merged(
    bytes: &[u8],
    lines: &[(usize, usize)],
    (spans, scanned): (&[(usize, usize)], &[Element]),
    index: usize,
    max: usize,
) -> Option<Elements> {
    let starts: Vec<usize> = lines.iter().map(|&(s, _)| s).collect();
    let mut kept = spans.iter().zip(scanned).filter(|(_, (_, r))| r.is_ok());
    if !kept.all(|((s, _), _)| starts.binary_search(s).is_ok()) {
        return None;
    }
    let split = elements(bytes, lines, index, max);
    // Spans are in order, so a lookup by start is a binary search.
    let read_by_scan = |start: usize| {
        let k = spans.binary_search_by_key(&start, |&(s, _)| s).ok()?;
        scanned[k].1.is_ok().then_some(spans[k])
    };
    let mut pieces = Vec::with_capacity(lines.len());
    for (&(s, e), (_, record)) in lines.iter().zip(&split) {
        match read_by_scan(s).filter(|_| record.is_err()) {
            // The scan's element runs past the split's: they disagree, and the scan stands.
            Some((_, end)) if end > e => return None,
            Some((_, end)) => {
                pieces.push((s, end));
                // What follows it: a stray bracket holds no record, text (a broken record's
                // keys) may.
                let rest = end
                    + bytes[end..e]
                        .iter()
                        .take_while(|b| b.is_ascii_whitespace() || **b == b',')
                        .count();
                if bytes[rest..e].iter().any(u8::is_ascii_alphanumeric) {
                    pieces.push((rest, e));
                }
            }
            None => pieces.push((s, e)),
        }
    }
    Some(elements(bytes, &pieces, index, max))
}

/// Whether an array is well-formed JSON: it closes, only JSON (or nothing) follows it, and
/// every element is JSON (a record may still be invalid: `{"input": []}` is an error of its
/// own, not a fault of the array's).
fn well_formed(bytes: &[u8], spans: &[(usize, usize)], end: &ArrayEnd) -> bool {
    let json = |&(s, e): &(usize, usize)| {
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes[s..e]).is_ok()
    };
    match end {
        ArrayEnd::Closed(close) => json_follows(bytes, *close) && spans.iter().all(json),
        ArrayEnd::Broken(..) => false,
    }
}

/// Whether a string in `text`, its quotes paired as a scan pairs them, holds a raw line break.
fn strings_cross_lines(text: &[u8]) -> bool {
    let mut strings = Strings::default();
    text.iter().any(|&b| strings.read(b) && b == b'\n')
}

/// Whether only JSON (or nothing) follows the array that closes at `close`.
fn json_follows(bytes: &[u8], close: usize) -> bool {
    let rest = bytes[close + 1..].trim_ascii_start();
    matches!(rest.first(), None | Some(b'[' | b'{'))
}

/// The elements of an array on one line (compact JSON, `json.dumps(records)`) that is not
/// well-formed, split after each `}` that a comma and a key's `{"` follow (`},{"`), and the
/// offset where reading goes on; `None` when the array's line does not end with `]` (a cut
/// array, or one over several lines) or no such place is found. A string broken by a missing
/// quote makes the bracket scan lose its place; records rarely hold `},{"` in their text, so
/// the records after the broken one are still read.
fn boundary_elements(bytes: &[u8], open: usize) -> Option<(Vec<(usize, usize)>, usize)> {
    let line = bytes[open..line_end(bytes, open)].trim_ascii_end();
    (line.len() > 1 && line.last() == Some(&b']')).then_some(())?;
    let end = open + line.len() - 1;
    let skip = |mut i: usize| {
        while i < end && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut starts = vec![skip(open + 1)];
    for i in open + 1..end {
        if bytes[i] != b'}' {
            continue;
        }
        let comma = skip(i + 1);
        let brace = skip(comma + 1);
        let quote = skip(brace + 1);
        let boundary = [comma, brace, quote].iter().all(|&k| k < end)
            && (bytes[comma], bytes[brace], bytes[quote]) == (b',', b'{', b'"');
        if boundary {
            starts.push(brace);
        }
    }
    if starts.len() < 2 {
        return None;
    }
    starts.push(end);
    let spans = starts.windows(2).filter_map(|w| {
        let chunk = bytes[w[0]..w[1]].trim_ascii_end();
        let chunk = chunk.strip_suffix(b",").unwrap_or(chunk).trim_ascii_end();
        (!chunk.is_empty()).then_some((w[0], w[0] + chunk.len()))
    });
    Some((spans.collect(), end + 1))
}

/// The elements of a pretty-printed array that is not well-formed, split where a line opens
/// an element ([`opens_element`]) at the column of the line after the `[` (which must open
/// one), and the offset where reading goes on after the array; `None` when fewer than two
/// lines open one. The array ends at `close` (the scan's, when it can be trusted), else at
/// the first line no deeper than that column that opens with `]` or ends with it after an
/// element ([`array_ends`]), else before one that opens another array, else at the end of
/// the text. One broken element (a quote or a bracket missing) makes the bracket scan
/// of [`array_element_spans`] lose its place for the rest of the array; the lines do not, so
/// the elements after the broken one are still read.
fn element_lines(
    bytes: &[u8],
    open: usize,
    close: Option<usize>,
) -> Option<(Vec<(usize, usize)>, usize)> {
    let indent = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count()
    };
    let limit = close.unwrap_or(bytes.len());
    let mut line = line_end(bytes, open + 1) + 1;
    let line_text = |line: usize, column: usize| {
        &bytes[(line + column).min(limit)..line_end(bytes, line.min(bytes.len())).min(limit)]
    };
    // The elements' column is that of the first line, no deeper than the first with text,
    // that opens one: the first line's, unless the first element lost its `{`; then that
    // element is the broken text before it, an error of its own, and one more line must open
    // an element.
    let first_opens = opens_element(line_text(line, indent(line.min(bytes.len()))));
    let (mut next, mut bound) = (line, None);
    let column = loop {
        if next >= limit {
            return None;
        }
        let depth = indent(next);
        let text = line_text(next, depth);
        if !text.trim_ascii().is_empty() {
            let bound = *bound.get_or_insert(depth);
            if depth <= bound && opens_element(text) {
                break depth;
            }
        }
        next = line_end(bytes, next) + 1;
    };
    // Element starts, after the text between the `[` and the first line (empty when the `[`
    // stands alone on its line).
    let mut starts = vec![open + 1];
    // Where the elements end, and where reading goes on.
    let (mut end, mut after) = close.map_or((bytes.len(), bytes.len()), |c| (c, c + 1));
    while line < limit {
        let depth = indent(line);
        let at = line + depth;
        let text = bytes[at..line_end(bytes, line).min(limit)].trim_ascii_end();
        // The scan's close, when trusted, is where the array ends; else its lines say.
        let ends = close
            .is_none()
            .then(|| array_ends(bytes, text, at, depth, column))
            .flatten();
        if let Some((last_element, elements_end, reading_on)) = ends {
            if last_element {
                starts.push(at);
            }
            (end, after) = (elements_end, reading_on);
            break;
        }
        if depth == column && opens_element(text) {
            starts.push(at);
        }
        line = line_end(bytes, line) + 1;
    }
    // The first start is the `[`'s own line: two lines must open elements (one, after a
    // broken first element).
    if starts.len() < 3 - usize::from(!first_opens) {
        return None;
    }
    starts.push(end);
    let spans = starts.windows(2).filter_map(|w| {
        let text = &bytes[w[0]..w[1]];
        let mut chunk = text.trim_ascii();
        if w[1] == bytes.len() {
            // An array cut before its last line: its `]` may end the last element's line.
            chunk = chunk.strip_suffix(b"]").unwrap_or(chunk).trim_ascii_end();
        }
        let chunk = chunk.strip_suffix(b",").unwrap_or(chunk).trim_ascii_end();
        let start = w[0] + (text.len() - text.trim_ascii_start().len());
        (!chunk.is_empty()).then_some((start, start + chunk.len()))
    });
    Some((spans.collect(), after))
}

/// Whether the line `text` (from its first non-blank byte, at offset `at` and `depth`) of an
/// array whose elements start at `column` ends the array: whether it also starts the last
/// element, where the elements end and where reading goes on. It does when it opens with `]`
/// no deeper than the elements, when an element's line or its `}` line at their column ends
/// with the `]`, and (before it) when it opens another array no deeper than the elements.
fn array_ends(
    bytes: &[u8],
    text: &[u8],
    at: usize,
    depth: usize,
    column: usize,
) -> Option<(bool, usize, usize)> {
    let line = at - depth;
    match text.first()? {
        b']' if depth <= column && !(column == 0 && closes_a_list_inside(bytes, text, at)) => {
            Some((false, at, at + 1))
        }
        b'[' if depth <= column => Some((false, line, line)),
        b'{' | b'}' if depth == column && text.ends_with(b"]") => {
            let close = at + text.len() - 1;
            Some((opens_element(&text[..text.len() - 1]), close, close + 1))
        }
        _ => None,
    }
}

/// Whether a `]` line at column 0 (`json.dumps(indent=0)`, where every line is) closes a list
/// inside an element, not the array: a comma follows it on its line (`],`), or the next text
/// is more of an object (`}`, a key, a comma on a line of its own) or another list's end.
fn closes_a_list_inside(bytes: &[u8], text: &[u8], at: usize) -> bool {
    let after = at + text.len();
    let next = bytes[after..].iter().find(|b| !b.is_ascii_whitespace());
    text.trim_ascii_end() != b"]" || matches!(next, Some(b'}' | b']' | b'"' | b','))
}

/// Whether a line of a pretty-printed array (from its first non-blank byte) starts an
/// element: a `{` alone (`json.dumps(indent=...)`, `jq`), or a whole object on one line. A
/// line that opens an object and goes on (`{    "input": [`) is an element's broken line.
fn opens_element(line: &[u8]) -> bool {
    let line = line.trim_ascii_end();
    let line = line.strip_suffix(b",").unwrap_or(line);
    line.first() == Some(&b'{') && (line == b"{" || line.ends_with(b"}"))
}

/// Line numbers of increasing byte offsets, counted in one pass: counting from the start for
/// every record is quadratic (seconds on a 2 MB HyPoradise file).
#[derive(Default)]
struct LineCounter {
    counted: usize,
    newlines: usize,
}

impl LineCounter {
    fn at(&mut self, bytes: &[u8], offset: usize) -> usize {
        self.newlines += bytes[self.counted..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.counted = offset;
        self.newlines + 1
    }
}

/// How the scan of an array ended: at its closing `]`, or at a structural error (its offset
/// and what is wrong).
enum ArrayEnd {
    Closed(usize),
    Broken(usize, String),
}

/// Byte spans of the top-level elements of the array starting at `open`, as far as they are
/// complete, and how the array ended.
fn array_element_spans(bytes: &[u8], open: usize) -> (Vec<(usize, usize)>, ArrayEnd) {
    let mut spans = Vec::new();
    // The brackets open at this point, outermost first: their number is the depth.
    let (mut opened, mut strings) = (Vec::<u8>::new(), Strings::default());
    let mut start: Option<usize> = None;
    // Where the element's object or list closed: another one opening there before a comma is
    // the next element, its comma forgotten (`[{...} {...}]`), not part of this one.
    let mut closed: Option<usize> = None;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        let opens_value = opened.len() == 1 && matches!(b, b'{' | b'[' | b'"') && !strings.inside;
        if let Some(end) = closed.filter(|_| opens_value) {
            closed = None;
            close_span(&mut spans, &mut start, bytes, end);
        }
        if strings.read(b) {
            // A bare string element starts at its opening quote.
            if opened.len() == 1 && start.is_none() {
                start = Some(i);
            }
            continue;
        }
        match b {
            b'[' | b'{' => opened.push(b),
            b']' | b'}' => {
                if opened.is_empty() {
                    let message = "unbalanced brackets in JSON array".into();
                    return (spans, ArrayEnd::Broken(i, message));
                }
                // A `}` closing a `[` (an element that lost its `{`): the array does not end
                // there, it is broken.
                let depth = opened.len();
                if opened.pop() != Some(if b == b']' { b'[' } else { b'{' }) {
                    // The element before it may be whole (`{...}}`): it is kept.
                    if depth == 1 {
                        close_span(&mut spans, &mut start, bytes, i);
                    }
                    let message = format!("a `{}` closes a bracket it does not match", b as char);
                    // Named at the record it breaks, so that its error carries the record's id.
                    return (spans, ArrayEnd::Broken(start.unwrap_or(i), message));
                }
                if opened.is_empty() {
                    close_span(&mut spans, &mut start, bytes, i);
                    return (spans, ArrayEnd::Closed(i));
                }
                if opened.len() == 1 {
                    closed = Some(i + 1);
                }
            }
            b',' if opened.len() == 1 => {
                closed = None;
                close_span(&mut spans, &mut start, bytes, i);
                continue;
            }
            _ => {}
        }
        if !opened.is_empty() && start.is_none() && !b.is_ascii_whitespace() && i != open {
            start = Some(i);
        }
    }
    let end = match start {
        Some(s) => ArrayEnd::Broken(s, "unterminated JSON array: this record is cut off".into()),
        None => ArrayEnd::Broken(bytes.len(), "unterminated JSON array".into()),
    };
    (spans, end)
}

fn close_span(
    spans: &mut Vec<(usize, usize)>,
    start: &mut Option<usize>,
    bytes: &[u8],
    end: usize,
) {
    if let Some(s) = start.take() {
        let mut e = end;
        while e > s && bytes[e - 1].is_ascii_whitespace() {
            e -= 1;
        }
        spans.push((s, e));
    }
}

/// Builds a record from a parsed JSON value (an object, or a bare string as a 1-best).
pub fn from_value(value: Value, index: usize) -> Result<Record, RecordError> {
    let obj = match value {
        Value::Object(obj) => obj,
        Value::String(s) => return Ok(Record::from_hypotheses(Value::from(index), vec![s])),
        // A list of strings is a record's N-best, best first.
        list @ Value::Array(_) => {
            return match hypothesis_list(&list) {
                Some(hyps) => Ok(Record::from_hypotheses(Value::from(index), hyps)),
                None if list.as_array().is_some_and(Vec::is_empty) => {
                    Err(RecordError::new(None, "the hypothesis list is empty"))
                }
                None => Err(RecordError::new(
                    None,
                    "expected an object, or a list of hypothesis strings",
                )),
            };
        }
        other => {
            return Err(RecordError::new(
                None,
                format!("expected an object, found {}", kind(&other)),
            ))
        }
    };
    let id = match obj.get("id") {
        Some(v @ (Value::String(_) | Value::Number(_))) => v.clone(),
        Some(Value::Null) | None => Value::from(index),
        Some(other) => {
            return Err(RecordError {
                best: hypotheses_of(&obj)
                    .ok()
                    .and_then(|(h, _, _)| h.into_iter().next()),
                ..RecordError::new(
                    Some("id"),
                    format!("expected a string or number, found {}", kind(other)),
                )
            })
        }
    };
    record_of(&obj, id.clone()).map_err(|e| {
        // A record that an earlier step (a recogniser, a `neko correct` run) could not make
        // carries that step's error: it is the cause, so it passes through as it was. Where
        // the hypotheses were read, a bad field of this record is the cause instead.
        let cause = match e.best {
            Some(_) => e,
            None => earlier_error(&obj).unwrap_or(e),
        };
        RecordError {
            id: Some(Box::new(id)),
            task: task_named(&obj),
            ..cause
        }
    })
}

/// Whether an `error` field's value says there was one: null, `false` and `""` (as tools write
/// "no error") do not.
pub fn is_error(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false)) && v.as_str() != Some("")
}

/// The record's `id`, where it is one (a string or a number).
fn valid_id(obj: &Map<String, Value>) -> Option<Value> {
    obj.get("id")
        .filter(|v| v.is_string() || v.is_number())
        .cloned()
}

/// The task the record names, where it names one as a string.
fn task_named(obj: &Map<String, Value>) -> Option<String> {
    obj.get("task").and_then(Value::as_str).map(str::to_string)
}

/// The record's own `error` (a string, or an object with a `message` and perhaps a `field`).
fn earlier_error(obj: &Map<String, Value>) -> Option<RecordError> {
    let error = match obj.get("error").filter(|v| is_error(v))? {
        Value::String(s) => RecordError::new(None, s.clone()),
        Value::Object(o) => RecordError::new(
            o.get("field").and_then(Value::as_str),
            o.get("message")?.as_str()?,
        ),
        _ => return None,
    };
    Some(RecordError {
        upstream: true,
        ..error
    })
}

/// The record in `obj`, whose id has been read.
fn record_of(obj: &Map<String, Value>, id: Value) -> Result<Record, RecordError> {
    let (hypotheses, nbest_scores, only_best) = hypotheses_of(obj)?;
    // A bad field besides the hypotheses fails the record, but its 1-best is known.
    let with_best = |e: RecordError| RecordError {
        best: hypotheses.first().cloned(),
        ..e
    };
    let string = |field: &str| opt_string(obj, field).map_err(with_best);
    let scores = match nbest_scores {
        Some(s) => Some(s),
        None => scores_of(obj).map_err(with_best)?,
    };
    Ok(Record {
        id,
        task: string("task")?,
        reference: string("output")?,
        prediction: string("prediction")?,
        source: string("source")?,
        start: obj.get("start").filter(|v| !v.is_null()).cloned(),
        end: obj.get("end").filter(|v| !v.is_null()).cloned(),
        instruction: string("instruction")?,
        error: obj.get("error").filter(|v| is_error(v)).cloned(),
        guard: string("guard")?,
        hypotheses,
        only_best,
        scores,
    })
}

/// The hypotheses, their scores when the list carried them, and whether only the 1-best was given.
type Hypotheses = (Vec<String>, Option<Vec<f64>>, bool);

/// The hypothesis list, from `input`, `hypotheses`, `nbest`, or (for `neko correct` output
/// files) `best`. An empty list is an error: there is nothing to correct or score.
fn hypotheses_of(obj: &Map<String, Value>) -> Result<Hypotheses, RecordError> {
    for field in ["input", "hypotheses"] {
        if let Some(v) = obj.get(field) {
            let hyps = string_list(v, field)?;
            return non_empty(hyps, field).map(|h| (h, None, false));
        }
    }
    if let Some(v) = obj.get("nbest") {
        return nbest_of(v);
    }
    if let Some(v) = obj.get("best") {
        let best = v
            .as_str()
            .ok_or_else(|| RecordError::new(Some("best"), "expected a string"))?;
        return Ok((vec![best.to_string()], None, true));
    }
    Err(RecordError::new(
        Some("input"),
        "missing: a record needs `input` (a list of hypotheses), `hypotheses`, `nbest` or \
         `best` (its 1-best, as `neko correct` writes it)",
    ))
}

fn non_empty(hyps: Vec<String>, field: &str) -> Result<Vec<String>, RecordError> {
    if hyps.is_empty() {
        Err(RecordError::new(
            Some(field),
            "the hypothesis list is empty",
        ))
    } else {
        Ok(hyps)
    }
}

fn string_list(v: &Value, field: &str) -> Result<Vec<String>, RecordError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().map(str::to_string).ok_or_else(|| {
                    RecordError::new(
                        Some(&format!("{field}[{i}]")),
                        format!("expected a string, found {}", kind(item)),
                    )
                })
            })
            .collect(),
        other => Err(RecordError::new(
            Some(field),
            format!("expected a list of strings, found {}", kind(other)),
        )),
    }
}

/// `nbest`: a list of `{"text": ..., "score": ...}` objects (or plain strings).
fn nbest_of(v: &Value) -> Result<Hypotheses, RecordError> {
    let items = v
        .as_array()
        .ok_or_else(|| RecordError::new(Some("nbest"), "expected a list"))?;
    let mut hyps = Vec::with_capacity(items.len());
    let mut scores = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("nbest[{i}]");
        match item {
            Value::String(s) => hyps.push(s.clone()),
            Value::Object(o) => {
                let text = o.get("text").and_then(Value::as_str).ok_or_else(|| {
                    RecordError::new(Some(&format!("{field}.text")), "expected a string")
                })?;
                hyps.push(text.to_string());
                if let Some(s) = o.get("score").and_then(Value::as_f64) {
                    scores.push(s);
                }
            }
            other => {
                return Err(RecordError::new(
                    Some(&field),
                    format!("expected an object with `text`, found {}", kind(other)),
                ))
            }
        }
    }
    let hyps = non_empty(hyps, "nbest")?;
    let scores = (scores.len() == hyps.len()).then_some(scores);
    Ok((hyps, scores, false))
}

fn scores_of(obj: &Map<String, Value>) -> Result<Option<Vec<f64>>, RecordError> {
    for field in ["scores", "am_score", "score"] {
        if let Some(v) = obj.get(field) {
            let list = match v {
                Value::Array(items) => items
                    .iter()
                    .map(|x| {
                        x.as_f64().ok_or_else(|| {
                            RecordError::new(Some(field), "expected a list of numbers")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Value::Number(n) => vec![n.as_f64().unwrap_or(f64::NAN)],
                Value::Null => continue,
                _ => return Err(RecordError::new(Some(field), "expected a list of numbers")),
            };
            return Ok(Some(list));
        }
    }
    Ok(None)
}

fn opt_string(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, RecordError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(RecordError::new(
            Some(field),
            format!("expected a string, found {}", kind(other)),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let hyps: Vec<String> = ok(&parse(text.as_bytes()))
                .iter()
                .map(|r| r.hypotheses[0].clone())
                .collect();
            assert_eq!(hyps, text.lines().collect::<Vec<_>>());
        }
        // Tags alone, a `{}` or a list among transcript lines: text all the same.
        let text = "hello world\n{laugh} {cough}\n{}\n[\"x\"]\nsecond line\nthird\n";
        let hyps: Vec<String> = ok(&parse(text.as_bytes()))
            .iter()
            .map(|r| r.hypotheses[0].clone())
            .collect();
        assert_eq!(hyps, text.lines().collect::<Vec<_>>());
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
        let strings = parse(b"\"hello world\"\n\"good morning\"\nnull\n");
        assert_eq!(ok(&strings[..2])[1].hypotheses, ["good morning"]);
        assert!(strings[2].record.is_err());
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
    fn byte_order_marks_are_read_as_windows_tools_mean_them() {
        let jsonl = "{\"id\": \"a\", \"input\": [\"h\u{e9}llo\"]}\r\n{\"id\": \"b\", \"input\": [\"x\"]}\r\n";
        let array =
            "[{\"id\": \"a\", \"input\": [\"h\u{e9}llo\"]}, {\"id\": \"b\", \"input\": [\"x\"]}]";
        let utf16 = |text: &str, le: bool, bom: [u8; 2]| -> Vec<u8> {
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
                utf16(text, true, [0xFF, 0xFE]),
                utf16(text, false, [0xFE, 0xFF]),
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
        let text = "[\n  \"id\": \"a\", \"input\": [\"x y\"]},\n  {\"id\": \"b\", \"input\": [\"p q\"]}\n]\n";
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
        assert!(starts_with_a_key("\"i\\\"d\" : 1"));
        assert!(!starts_with_a_key("\"a b\""));
        assert!(!starts_with_a_key("\"a\", \"b\""));
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
        let mixed = parse(
            b"[{\"input\": [\"a\"]}]\n{\"id\": \"x\", \"task\": \"ocr\", \"input\": [\"b\"]}\n",
        );
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
        let pretty =
            parse(b"{\n  \"input\": [\n    \"a {b}\"\n  ]\n}\n{\n  \"input\": [\"c\"]\n}\n");
        assert_eq!(hyps(&pretty), ["a {b}", "c"]);
        assert_eq!((pretty[0].line, pretty[1].line), (1, 6));
        let together = parse(b"{\"input\": [\"a\"]}{\"input\": [\"b\"]} {\"input\": [\"c\"]}\n{\"input\": [\"d\"]}\n");
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
    }
}

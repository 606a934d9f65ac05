//! N-best records: reading every shape users have (JSONL, HyPoradise JSON arrays, plain text)
//! into one [`Record`], each with the place it came from so errors can name file, line and field.
//!
//! Format detection is by content: a file whose first non-blank byte is `[` is a JSON array
//! (the HyPoradise files); anything else is read line by line. A file of lines is JSON Lines
//! when at least half of its records open JSON (an object, or a list of hypotheses), or every
//! line is a JSON string: then every line is JSON, and one that is not is an error. Otherwise
//! it is plain text, one 1-best per line as written, quotes and braces included; unless every
//! non-blank line ends with an utterance id in parentheses (sclite's `trn`, `text (spk1-001)`):
//! then each line is a 1-best with that id.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

mod array;
mod fairseq;
mod lines;
pub mod m2;
mod moses;
mod scan;
pub mod stream;
pub mod trn;
mod value;

use array::{array_element_spans, json_follows, parse_json_stream, ArrayEnd};
use lines::parse_lines;
pub use value::{from_value, is_error};

/// One input record, normalised from whichever shape it arrived in.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The record's `id` as given (string or number), or its 0-based position in the input.
    pub id: Value,
    /// False when `id` is only the record's position (a plain-text line, a record without
    /// `id`): such records pair with another file's by position, not by id.
    pub id_given: bool,
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
    /// Further references of a multi-reference set (`output` given as a list; an M2 file's
    /// other annotators): BLEU, chrF, TER, GLEU and GEC edits use them all, WER and CER the first.
    pub other_references: Vec<String>,
    /// A corrected text (`prediction`), present in files written by `neko correct`.
    pub prediction: Option<String>,
    /// The record's `source` (a sub-corpus or recogniser name), used to group scores.
    pub source: Option<String>,
    /// The segment's `start` and `end` in its audio (`scripts/whisper_nbest.py` writes seconds),
    /// as given: carried to the output so that corrected segments keep their timing.
    pub start: Option<Value>,
    pub end: Option<Value>,
    /// A NeMo manifest's `audio_filepath`, the utterance's identity there (its records have no
    /// `id`): carried to the output, so corrected lines join back to their audio.
    pub audio_filepath: Option<Value>,
    /// HyPoradise's per-record `instruction`, when present.
    pub instruction: Option<String>,
    /// An `error` already carried by the record (e.g. a failed record in a `neko correct` output).
    pub error: Option<Value>,
    /// The over-correction guard's verdict in a `neko correct` output (`fallback:<reason>`).
    pub guard: Option<String>,
}

impl Record {
    /// A record of a 1-best alone (a plain text or trn line, a bare JSON string, an M2
    /// sentence): no N-best, so no oracle of it.
    pub fn one_best(id: Value, text: String) -> Self {
        Record {
            only_best: true,
            ..Self::from_hypotheses(id, vec![text])
        }
    }

    /// The record at `index` of its input, which gives it no id of its own.
    pub fn at_position(self, index: usize) -> Self {
        Record {
            id: Value::from(index),
            id_given: false,
            ..self
        }
    }

    /// A record holding only hypotheses, for tests and callers building records by hand.
    pub fn from_hypotheses(id: Value, hypotheses: Vec<String>) -> Self {
        Record {
            id,
            id_given: true,
            task: None,
            hypotheses,
            only_best: false,
            scores: None,
            reference: None,
            other_references: Vec::new(),
            prediction: None,
            source: None,
            start: None,
            end: None,
            audio_filepath: None,
            instruction: None,
            error: None,
            guard: None,
        }
    }

    /// Every reference, the first (`reference`) first; none when the record has none.
    pub fn references(&self) -> Vec<&str> {
        let first = self.reference.as_deref().into_iter();
        first
            .chain(self.other_references.iter().map(String::as_str))
            .collect()
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
    /// A NeMo manifest record's `audio_filepath`, which its error line keeps too.
    pub audio_filepath: Option<Box<Value>>,
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
            audio_filepath: None,
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
    stream::refuse_compressed(&bytes)?;
    Ok(bytes)
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
/// alone stays a JSON array of 1-best records. A first line that only looks like one (`["`
/// to `]`, broken) counts when one of the next two is one: read as a stream of arrays, every
/// later N-best fell apart into 1-best records.
fn nbest_lines(text: &[u8]) -> bool {
    let lines: Vec<&[u8]> = (text.split(|&b| b == b'\n'))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .take(3)
        .collect();
    let looks_like_one = |l: &[u8]| {
        let l = l.trim_ascii();
        l.first() == Some(&b'[') && opens_a_list(&l[1..]) && l.last() == Some(&b']')
    };
    match lines.as_slice() {
        [first, rest @ ..] if !rest.is_empty() => {
            is_list_line(first) || (looks_like_one(first) && rest.iter().any(|l| is_list_line(l)))
        }
        _ => false,
    }
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
/// it is transcoded rather than read as garbage. UTF-16 without a BOM is told by its first
/// two characters, ASCII with a NUL byte before or after each (as Python's
/// `json.detect_encoding` tells it, after RFC 4627): UTF-8 text holds no NUL there. Unpaired
/// UTF-16 surrogates become U+FFFD.
fn as_utf8(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let utf16 = |rest: &[u8], unit: fn([u8; 2]) -> u16| -> Vec<u8> {
        let units = rest.chunks_exact(2).map(|c| unit([c[0], c[1]]));
        String::from_utf16_lossy(&units.collect::<Vec<u16>>()).into_bytes()
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => rest.into(),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes).into(),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes).into(),
        [a, 0, b, 0, ..] if *a != 0 && *b != 0 => utf16(bytes, u16::from_le_bytes).into(),
        [0, a, 0, b, ..] if *a != 0 && *b != 0 => utf16(bytes, u16::from_be_bytes).into(),
        _ => bytes.into(),
    }
}

fn too_long(len: usize, max: usize) -> RecordError {
    RecordError::new(
        None,
        format!("record of {len} bytes is over the limit of {max} (--max-record-bytes)"),
    )
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

#[cfg(test)]
mod tests;

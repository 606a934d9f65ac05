//! One record's text, and its JSON value, read into a [`Record`]: the fields of every
//! variant (`input`, `hypotheses`, `nbest`, scores, ids), and errors that keep the record's id.

use serde_json::{Map, Value};

use super::lines::Layout;
use super::scan::own_key;
use super::{too_long, Record, RecordError};

/// A JSON list of strings (non-empty), as a record's hypotheses.
fn hypothesis_list(v: &Value) -> Option<Vec<String>> {
    let items = v.as_array().filter(|a| !a.is_empty())?;
    items
        .iter()
        .map(|h| h.as_str().map(str::to_string))
        .collect()
}

/// `error` with the id that the broken or cut record `raw` gives as `"id": VALUE`, when it has
/// none: its error line then still joins its input.
pub(super) fn with_id_in(mut error: RecordError, raw: &[u8]) -> RecordError {
    if error.id.is_some() {
        return error;
    }
    let text = String::from_utf8_lossy(raw);
    // A record that lost its opening `{` has its own keys at the top: put it back, so that
    // they are told from the words of its lists (`"input": ["id"]`).
    let text = match text.trim_start().starts_with('{') {
        true => text,
        false => format!("{{{text}").into(),
    };
    let rest = match own_key(text.as_bytes(), b"\"id\"") {
        Some(at) => Some(&text[at..]),
        None => text.split_once("\"id\"").map(|(_, rest)| rest),
    };
    let id = rest.and_then(|rest| {
        let value = rest.trim_start().strip_prefix(':')?.trim_start();
        // One JSON value, whatever follows it: an id may hold `,` or `}` ("Smith, John.wav").
        let mut values = serde_json::Deserializer::from_str(value).into_iter::<Value>();
        values.next()?.ok()
    });
    error.id = id.filter(|v| v.is_string() || v.is_number()).map(Box::new);
    error
}

/// `error` with serde_json's position (`at line L column C`, within the record's text, as
/// `parse_json` wrote it) moved to the file's, so that a user can go to it: the record's text
/// starts at byte `start` of `bytes`, on line `line` of the file.
pub(super) fn placed_in_file(
    mut error: RecordError,
    bytes: &[u8],
    start: usize,
    line: usize,
) -> RecordError {
    let Some((head, at_line, column)) = serde_position(&error.message) else {
        return error;
    };
    // `parse_json` read the text without its leading whitespace, which may hold line breaks.
    let lead = bytes[start..].len() - bytes[start..].trim_ascii_start().len();
    let first = start + lead;
    let first_line = line + bytes[start..first].iter().filter(|&&b| b == b'\n').count();
    // On the text's first line the column counts from where the text starts.
    let (at_line, column) = match at_line {
        1 => (first_line, column_of(bytes, first).map(|c| c + column)),
        l => (first_line + l - 1, Some(column)),
    };
    error.message = match column {
        Some(c) => format!("{head} at line {at_line} column {c}"),
        None => format!("{head} at line {at_line}"),
    };
    error
}

/// How many bytes of its line come before byte `at`; `None` when the line's start is further
/// back than [`LINE_START_SEARCH`], so that a huge one-line file with many broken records is
/// not scanned once per record.
fn column_of(bytes: &[u8], at: usize) -> Option<usize> {
    let window = &bytes[at.saturating_sub(LINE_START_SEARCH)..at];
    match window.iter().rposition(|&b| b == b'\n') {
        Some(k) => Some(window.len() - k - 1),
        None => (at <= LINE_START_SEARCH).then_some(at),
    }
}

/// How far back from a record's start [`column_of`] looks for its line's start.
const LINE_START_SEARCH: usize = 1 << 16;

/// A `broken JSON: ...` message split into its words and serde_json's position in the text.
fn serde_position(message: &str) -> Option<(&str, usize, usize)> {
    message.strip_prefix("broken JSON: ")?;
    let (rest, column) = message.rsplit_once(" column ")?;
    let (head, line) = rest.rsplit_once(" at line ")?;
    Some((head, line.parse().ok()?, column.parse().ok()?))
}

/// `error` with the id and task of the record it is about, when `value` is its object: its
/// error line then still joins its input.
pub(super) fn identified(error: RecordError, value: Option<Value>) -> RecordError {
    match value {
        Some(Value::Object(obj)) => RecordError {
            id: valid_id(&obj).map(Box::new),
            task: task_named(&obj),
            audio_filepath: audio_filepath(&obj),
            // Read from a lossy decoding when the bytes were not UTF-8: a 1-best with the
            // replacement character is not the one the input gave.
            best: (error.best.clone())
                .or_else(|| first_hypothesis(&obj).filter(|b| !b.contains('\u{FFFD}'))),
            ..error
        },
        _ => error,
    }
}

/// The first hypothesis of a record whose hypotheses could not all be read (`["first best",
/// null]`, an `nbest` entry without text), looked for where [`hypotheses_of`] looks: the
/// record's error line still carries it as its fallback.
fn first_hypothesis(obj: &Map<String, Value>) -> Option<String> {
    let (key, field) = ["input", "hypotheses", "nbest", PRED_TEXT, "best"]
        .into_iter()
        .find_map(|k| obj.get(k).map(|v| (k, v)))?;
    let first = match field {
        Value::Array(items) => items.first()?,
        other => other,
    };
    // Only `nbest` entries are objects with a `text`.
    let text = match first {
        Value::Object(o) if key == "nbest" => o.get("text")?,
        other => other,
    };
    text.as_str().map(str::to_string)
}

/// One record's bytes (a line, or an array `element`), parsed. A record too long or not UTF-8
/// still keeps the id and task it gives, so that its error line joins its input.
pub(super) fn record_from_bytes(
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
    match layout {
        Layout::M2Block => return super::m2::record(text, index),
        Layout::MosesBlock => return super::moses::record(text),
        Layout::FairseqBlock => return super::fairseq::record(text),
        _ => {}
    }
    let trimmed = text.trim();
    let json = match layout {
        Layout::Element | Layout::JsonLine => true,
        // A record that lost its file's other lines is still read as one (`{"`).
        // A record has a key (`{"input": ...`); `{"laughs"} okay` is a transcript's line.
        Layout::TextLine => {
            let rest = trimmed.strip_prefix('{').map(str::trim_start);
            rest.is_some_and(|r| r.starts_with('"') && r.contains("\":"))
        }
        Layout::TrnLine | Layout::M2Block | Layout::MosesBlock | Layout::FairseqBlock => false,
    };
    match json {
        true if layout == Layout::JsonLine && !trimmed.starts_with(['{', '[', '"']) => {
            // `jq '.text'` writes `null` for a record without text: JSON, but no record.
            let why = match serde_json::from_str::<Value>(trimmed) {
                Ok(v) => format!(
                    "{} is no record (a record is an object, a list of hypotheses or a string)",
                    kind(&v)
                ),
                Err(_) => {
                    "not JSON, in a file of JSON Lines (its other lines are JSON records)".into()
                }
            };
            Err(RecordError::new(None, why))
        }
        // An object's keys without its `{` (an element or line that lost it): never valid
        // JSON, so nothing valid is turned away here.
        true if starts_with_a_key(trimmed.as_bytes()) => Err(RecordError::new(
            None,
            "broken JSON: the record's opening `{` is missing (it starts with a key)",
        )),
        true => from_value(parse_json(trimmed)?, index),
        // A plain text line is a 1-best with nothing else known; a trn line, a 1-best and its
        // utterance id (a blank one has neither).
        false => {
            let trn = (layout == Layout::TrnLine).then(|| super::trn::split_line(trimmed));
            Ok(match trn.flatten() {
                Some((text, id)) => Record::one_best(Value::from(id), text.to_string()),
                None => Record::one_best(Value::Null, trimmed.to_string()).at_position(index),
            })
        }
    }
}

/// Whether JSON text starts with an object's key (`"id": ...`): an object that lost its `{`.
pub(super) fn starts_with_a_key(text: &[u8]) -> bool {
    let mut values = serde_json::Deserializer::from_slice(text).into_iter::<String>();
    matches!(values.next(), Some(Ok(_)))
        && text[values.byte_offset()..].trim_ascii_start().first() == Some(&b':')
}

/// Builds a record from a parsed JSON value (an object, or a bare string as a 1-best).
pub fn from_value(value: Value, index: usize) -> Result<Record, RecordError> {
    let obj = match value {
        Value::Object(obj) => obj,
        Value::String(s) => return Ok(Record::one_best(Value::Null, s).at_position(index)),
        // A list of strings is a record's N-best, best first.
        list @ Value::Array(_) => {
            return match hypothesis_list(&list) {
                Some(hyps) => Ok(Record::from_hypotheses(Value::Null, hyps).at_position(index)),
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
    let (id, id_given) = match obj.get("id") {
        Some(v @ (Value::String(_) | Value::Number(_))) => (v.clone(), true),
        Some(Value::Null) | None => (Value::from(index), false),
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
    let record = record_of(&obj, id.clone());
    // A record without an `id` is its position's, as a plain-text line is.
    let record = record.map(|r| if id_given { r } else { r.at_position(index) });
    record.map_err(|e| {
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
            audio_filepath: audio_filepath(&obj),
            best: cause.best.clone().or_else(|| first_hypothesis(&obj)),
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

/// A NeMo manifest record's `audio_filepath`, where it has one.
fn audio_filepath(obj: &Map<String, Value>) -> Option<Box<Value>> {
    obj.get("audio_filepath")
        .filter(|v| !v.is_null())
        .cloned()
        .map(Box::new)
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
    let (hypotheses, nbest_scores, from) = hypotheses_of(obj)?;
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
    let mut references = references_of(obj, from).map_err(with_best)?.into_iter();
    Ok(Record {
        id,
        id_given: true,
        task: string("task")?,
        reference: references.next(),
        other_references: references.collect(),
        prediction: string("prediction")?,
        source: string("source")?,
        start: obj.get("start").filter(|v| !v.is_null()).cloned(),
        end: obj.get("end").filter(|v| !v.is_null()).cloned(),
        audio_filepath: audio_filepath(obj).map(|v| *v),
        instruction: string("instruction")?,
        error: obj.get("error").filter(|v| is_error(v)).cloned(),
        guard: string("guard")?,
        hypotheses,
        // A transcript alone (`best`, a NeMo manifest's `pred_text` string, a string `input`)
        // says nothing of any other hypothesis: no oracle of it.
        only_best: from == "best" || obj.get(from).is_some_and(Value::is_string),
        scores,
    })
}

/// The hypotheses, their scores when the list carried them, and the field they came from.
type Hypotheses = (Vec<String>, Option<Vec<f64>>, &'static str);

/// The hypothesis list, from `input`, `hypotheses`, `nbest`, `pred_text` (NeMo manifests), or
/// (for `neko correct` output files) `best`. An empty list is an error: there is nothing to correct or score.
fn hypotheses_of(obj: &Map<String, Value>) -> Result<Hypotheses, RecordError> {
    for field in ["input", "hypotheses"] {
        if let Some(v) = obj.get(field) {
            let hyps = string_list(v, field)?;
            return non_empty(hyps, field).map(|h| (h, None, field));
        }
    }
    if let Some(v) = obj.get("nbest") {
        return nbest_of(v);
    }
    if let Some(v) = obj.get(PRED_TEXT) {
        let hyps = string_list(v, PRED_TEXT)?;
        return non_empty(hyps, PRED_TEXT).map(|h| (h, None, PRED_TEXT));
    }
    if let Some(v) = obj.get("best") {
        let best = v
            .as_str()
            .ok_or_else(|| RecordError::new(Some("best"), "expected a string"))?;
        return Ok((vec![best.to_string()], None, "best"));
    }
    let needs = "missing: a record needs `input` (a list of hypotheses), `hypotheses`, `nbest`, \
                 `pred_text` (a NeMo manifest's transcript) or `best` (its 1-best, as `neko \
                 correct` writes it)";
    Err(RecordError::new(
        Some("input"),
        format!("{needs}{}", text_hint(obj)),
    ))
}

/// What a record with a `text` but no hypotheses probably is, and what to do with it: a
/// `text` is a transcript in Whisper's JSON and a reference in a NeMo manifest, so neko does
/// not guess.
fn text_hint(obj: &Map<String, Value>) -> &'static str {
    match (obj.contains_key("text"), obj.contains_key("segments")) {
        (true, true) => {
            "; this looks like Whisper's JSON output (one transcript, no N-best): \
             scripts/whisper_nbest.py writes N-best records, or give the text as a plain-text \
             line"
        }
        (true, false) => {
            "; a `text` alone is read as nothing: in a NeMo manifest it is the reference, \
             beside the transcript in `pred_text`"
        }
        _ => "",
    }
}

/// A NeMo manifest's transcript field (what `transcribe_speech.py` writes for Canary,
/// Parakeet, ...): the record's 1-best, or its N-best as a list.
const PRED_TEXT: &str = "pred_text";

/// The references: `output` (a text, or a list of texts for a multi-reference set, the first
/// being the one WER and CER use), else, in a NeMo manifest (hypotheses `from` `pred_text`),
/// `text`. Only there: elsewhere `text` may as well be a transcript (Whisper's JSON), and a
/// transcript taken for the reference would score as perfect.
fn references_of(obj: &Map<String, Value>, from: &str) -> Result<Vec<String>, RecordError> {
    match obj.get("output") {
        Some(list @ Value::Array(items)) if !items.is_empty() => string_list(list, "output"),
        Some(Value::Array(_)) => Err(RecordError::new(
            Some("output"),
            "the list of references is empty",
        )),
        _ => match opt_string(obj, "output")? {
            None if from == PRED_TEXT => Ok(opt_string(obj, "text")?.into_iter().collect()),
            output => Ok(output.into_iter().collect()),
        },
    }
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
    Ok((hyps, scores, "nbest"))
}

fn scores_of(obj: &Map<String, Value>) -> Result<Option<Vec<f64>>, RecordError> {
    for field in ["scores", "am_score", "score"] {
        if let Some(v) = obj.get(field) {
            let list = match v {
                Value::Array(items) => items
                    .iter()
                    .map(|x| match x {
                        // What a tool writes for a score it has not (Python's NaN as JSON).
                        Value::Null => Ok(f64::NAN),
                        x => x.as_f64().ok_or_else(|| {
                            RecordError::new(Some(field), "expected a list of numbers")
                        }),
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

//! Files of JSON documents: arrays of records (the HyPoradise files) and objects, one after
//! another ([`parse_json_stream`]), and the scanner that finds an array's elements in them.

use super::lines::Layout;
use super::scan::{line_end, object_end, LineCounter, Strings};
use super::value::{placed_in_file, record_from_bytes, starts_with_a_key, with_id_in};
use super::{Entry, Record, RecordError};

/// JSON documents one after another: arrays of records (HyPoradise files, several as `cat`
/// joins them) and records as objects (pretty-printed by `jq .`, or JSON Lines after an
/// array). Elements are located by a small scanner so each record keeps its line number and a
/// bad element does not take the others with it: a cut-off array or object keeps the complete
/// records before it, and text that is neither is an error entry, not silently ignored.
/// Where the next record of a JSON stream starts: past whitespace and byte-order marks (files
/// joined with `cat`, the second saved by a Windows tool, carry one between their arrays).
fn next_record_start(bytes: &[u8], mut at: usize) -> Option<usize> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    loop {
        at += bytes[at..].iter().position(|b| !b.is_ascii_whitespace())?;
        if !bytes[at..].starts_with(BOM) {
            return Some(at);
        }
        at += BOM.len();
    }
}

pub(super) fn parse_json_stream(bytes: &[u8], first: usize, max: usize) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut lines = LineCounter::default();
    let mut push =
        |entries: &mut Vec<Entry>, offset: usize, record: Result<Record, RecordError>| {
            let line = lines.at(bytes, offset);
            let index = entries.len();
            entries.push(Entry {
                index,
                line,
                record: record.map_err(|e| placed_in_file(e, bytes, offset, line)),
            });
        };
    let mut at = first;
    while let Some(next) = next_record_start(bytes, at) {
        at = next;
        let broken = match bytes[at] {
            b'[' => {
                let (spans, end) = array_element_spans(bytes, at);
                let scanned = elements(bytes, &spans, entries.len(), max);
                if let Some((split, split_end)) =
                    reread(bytes, at, (&spans, &end, &scanned), entries.len(), max)
                {
                    // An array cut off between two elements reads whole by its lines: that it
                    // never closes is said, or the cut would go unseen.
                    let unclosed = matches!(end, ArrayEnd::Broken(..))
                        && split.iter().all(|(_, r)| r.is_ok())
                        && !bytes[at..split_end].trim_ascii_end().ends_with(b"]");
                    for (s, record) in split {
                        push(&mut entries, s, record);
                    }
                    if unclosed {
                        let message = "unterminated JSON array: the file ends before its `]` (cut off?); the records before were read";
                        push(
                            &mut entries,
                            split_end,
                            Err(RecordError::new(None, message)),
                        );
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
                // JSON Lines after an array: a broken record costs its own lines only, up to
                // the next line that opens one (it took every record after it).
                None => match next_line_opening_an_object(bytes, at) {
                    Some(next) => {
                        let raw = &bytes[at..next];
                        let record = record_from_bytes(raw, entries.len(), max, Layout::Element)
                            .map_err(|e| with_id_in(e, raw));
                        push(&mut entries, at, record);
                        at = next;
                        None
                    }
                    None => Some((
                        at,
                        "unterminated JSON object: this record is cut off".into(),
                    )),
                },
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

/// The start of the first line after `at` that opens a JSON object (`{` at its first column).
fn next_line_opening_an_object(bytes: &[u8], at: usize) -> Option<usize> {
    let from = at + 1;
    (bytes[from..].windows(2))
        .position(|w| w == b"\n{")
        .map(|i| from + i + 1)
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
pub(super) fn json_follows(bytes: &[u8], close: usize) -> bool {
    let rest = bytes[close + 1..].trim_ascii_start();
    matches!(rest.first(), None | Some(b'[' | b'{'))
}

/// The elements of an array on one line (compact JSON, `json.dumps(records)`) that is not
/// well-formed, split after each `}` that a comma and a key's `{"` follow (`},{"`), and the
/// offset where reading goes on; `None` when the array's line does not end with `]` (a cut
/// array, or one over several lines) or no such place is found. A string broken by a missing
/// quote makes the bracket scan lose its place; the `"` must open a key (a string, then `:`),
/// so a text that ends in `},{` (its closing quote after it) is not taken for a boundary, and
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
            && (bytes[comma], bytes[brace], bytes[quote]) == (b',', b'{', b'"')
            && starts_with_a_key(&bytes[quote..end]);
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
    // Whether the last line with text closed an element (`}` or `},` at the elements'
    // column): a key line after it, deeper than the column, starts an element that lost its
    // `{`, which would else be read as part of the one before. (With `indent=0` keys stand
    // at the column, and a nested object's `}` too: no such line starts an element there.)
    let mut after_element = false;
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
        let lost_brace = after_element && depth > column && starts_with_a_key(text);
        if (depth == column && opens_element(text)) || lost_brace {
            starts.push(at);
        }
        if !text.is_empty() {
            let bare = text.strip_suffix(b",").unwrap_or(text);
            after_element = depth == column && bare == b"}";
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

/// How the scan of an array ended: at its closing `]`, or at a structural error (its offset
/// and what is wrong).
pub(super) enum ArrayEnd {
    Closed(usize),
    Broken(usize, String),
}

/// Byte spans of the top-level elements of the array starting at `open`, as far as they are
/// complete, and how the array ended.
pub(super) fn array_element_spans(bytes: &[u8], open: usize) -> (Vec<(usize, usize)>, ArrayEnd) {
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

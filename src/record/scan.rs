//! Reading JSON text byte by byte without parsing it (strings, brackets, keys, lines), so that
//! records can be found, and their lines named, in text that may be broken.

use serde_json::Value;

/// Whether the bytes of JSON text, read one by one, are inside a string (escapes followed), so
/// that brackets and commas there are text.
#[derive(Default)]
pub(super) struct Strings {
    pub(super) inside: bool,
    escaped: bool,
}

impl Strings {
    /// Reads `b`: whether it belongs to a string, its quotes included.
    pub(super) fn read(&mut self, b: u8) -> bool {
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
pub(super) fn object_end(bytes: &[u8], open: usize) -> Option<usize> {
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

/// The offset of the newline ending the line that starts at `at` (or the end of the text).
pub(super) fn line_end(bytes: &[u8], at: usize) -> usize {
    (bytes[at..].iter().position(|&b| b == b'\n')).map_or(bytes.len(), |k| at + k)
}

/// The JSON value of `text` with raw line breaks inside its strings escaped, if that parses.
pub(super) fn repaired(text: &[u8]) -> Option<Value> {
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

/// Where `key` (with its quotes) ends when it is a key of the object `text` opens, not of
/// one nested in it (`{"meta": {"id": ...}, "id": ...}`), as far as brackets and quotes tell.
pub(super) fn own_key(text: &[u8], key: &[u8]) -> Option<usize> {
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

/// Line numbers of increasing byte offsets, counted in one pass: counting from the start for
/// every record is quadratic (seconds on a 2 MB HyPoradise file).
#[derive(Default)]
pub(super) struct LineCounter {
    counted: usize,
    newlines: usize,
}

impl LineCounter {
    pub(super) fn at(&mut self, bytes: &[u8], offset: usize) -> usize {
        self.newlines += bytes[self.counted..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.counted = offset;
        self.newlines + 1
    }
}

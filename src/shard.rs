//! Sharded runs, for job arrays (Slurm, Kubernetes Jobs): `neko correct --shard I/N` corrects
//! the records whose position k in the input (0-based, over all input files in order, unreadable
//! lines included) has `k mod N == I`, and writes each line with that position
//! (`"index": k, "of": <records in the input>, "input": <its fingerprint>`). The slices are
//! stable (a record's shard depends on its position only), disjoint and together cover the
//! input. `neko merge` puts the shards' lines back in input order without the three fields, so
//! the merged file is the one an unsharded run writes, and refuses a record that is missing or
//! present twice, or shards of different inputs.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::output::OutputRecord;

/// One slice of a sharded run: `index` of `count` (`3/16` is the 4th of 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}`: expected I/N with 0 <= I < N, e.g. 3/16 (the 4th of 16)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Whether the record at input position `position` belongs to this shard.
    pub fn contains(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

/// An output line of a sharded run: the record's line with its input position added last.
#[derive(Debug, Serialize)]
pub struct ShardLine<'a> {
    #[serde(flatten)]
    pub record: &'a OutputRecord,
    /// The record's 0-based position in the whole input.
    pub index: usize,
    /// How many records the whole input has.
    pub of: usize,
    /// The whole input's fingerprint ([`InputFingerprint`]): shards of inputs with as many
    /// records but other contents are not merged.
    pub input: &'a str,
}

/// A short fingerprint of the input files' bytes, in order (`in-` and 16 hex digits).
#[derive(Default)]
pub struct InputFingerprint(sha2::Sha256);

impl InputFingerprint {
    /// Adds the next input file's bytes.
    pub fn add(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    pub fn finish(self) -> String {
        use sha2::Digest;
        format!("in-{}", crate::model::files::hex(&self.0.finalize()[..8]))
    }
}

/// Why shards cannot be merged; every message names the file (and line, and record id) at
/// fault.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    // The I/O error is shown in the message, not chained as a source: a chain would print
    // it twice.
    #[error("{file}: {error}")]
    Io { file: String, error: std::io::Error },
    // Chained, so that a reader closing the pipe (`neko merge ... | head`) is seen as the
    // success it is.
    #[error("writing the merged output")]
    Output(#[source] std::io::Error),
    #[error("{file}:{line}: {message}")]
    Line {
        file: String,
        line: usize,
        message: String,
    },
    #[error("record {index} (id {id}) is in two shard outputs: {first} and {second}")]
    Duplicate {
        index: usize,
        id: String,
        first: String,
        second: String,
    },
    #[error("{missing} of {of} records are missing; the first is record {index}, {around}")]
    Gap {
        index: usize,
        missing: usize,
        of: usize,
        around: String,
    },
    #[error(
        "{file} says the input has {got} records, {other} says {want}: shards of different inputs"
    )]
    Total {
        file: String,
        got: usize,
        other: String,
        want: usize,
    },
    #[error(
        "{file} was corrected from input {got}, {other} from {want}: shards of different inputs \
         (the same number of records, other contents)"
    )]
    Input {
        file: String,
        got: String,
        other: String,
        want: String,
    },
    #[error(
        "{first} and {second} were corrected with different settings (their .sig files differ: {})",
        fields.join(", ")
    )]
    Signature {
        first: String,
        second: String,
        /// The fields that differ, `first's → second's`.
        fields: Vec<String>,
    },
}

/// Where a record sits in the shard outputs.
#[derive(Debug, Clone)]
struct Place {
    file: usize,
    line: usize,
    id: String,
}

/// Shard outputs read and checked: which file holds each record.
pub struct Merge {
    files: Vec<PathBuf>,
    /// `owner[k]`: the file holding record k.
    owner: Vec<usize>,
    /// The run's signature, when every shard has the same `.sig` file.
    pub signature: Option<String>,
    /// Shards without a `.sig` beside others that have one: their settings are unchecked.
    pub unsigned: Vec<String>,
}

fn name(p: &Path) -> String {
    p.display().to_string()
}

impl Merge {
    /// Reads every shard output and checks that together they hold each record of the input
    /// exactly once.
    pub fn check(files: &[PathBuf]) -> Result<Self, MergeError> {
        let mut places: Vec<Option<Place>> = Vec::new();
        let mut total: Option<(usize, String)> = None;
        // The input's fingerprint and where it was first read.
        let mut input: Option<(String, String)> = None;
        let bytes: usize = (files.iter())
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len() as usize)
            .sum();
        for (f, path) in files.iter().enumerate() {
            let io = |error| MergeError::Io {
                file: name(path),
                error,
            };
            let mut last: Option<usize> = None;
            for (n, line) in lines_of(path).map_err(io)?.enumerate() {
                let line = line.map_err(io)?;
                if line.trim().is_empty() {
                    continue;
                }
                let at = |message: String| MergeError::Line {
                    file: name(path),
                    line: n + 1,
                    message,
                };
                let Position {
                    index,
                    of,
                    id,
                    input: fingerprint,
                } = position(&line).map_err(at)?;
                match (&fingerprint, &input) {
                    (Some(got), Some((want, other))) if got != want => {
                        return Err(MergeError::Input {
                            file: format!("{}:{}", name(path), n + 1),
                            got: got.clone(),
                            other: other.clone(),
                            want: want.clone(),
                        })
                    }
                    (Some(got), None) => {
                        input = Some((got.clone(), format!("{}:{}", name(path), n + 1)));
                    }
                    _ => {}
                }
                match &total {
                    // Each record is a line of at least `{}` and a newline: a count beyond
                    // that is records missing, found before allocating a place for each.
                    None if of > bytes / 3 => {
                        return Err(at(format!(
                            "{of} records, more than {} bytes of shard output can hold: \
                             records are missing",
                            bytes
                        )))
                    }
                    None => {
                        total = Some((of, format!("{}:{}", name(path), n + 1)));
                        places.resize(of, None);
                    }
                    Some((want, other)) if *want != of => {
                        return Err(MergeError::Total {
                            file: format!("{}:{}", name(path), n + 1),
                            got: of,
                            other: other.clone(),
                            want: *want,
                        })
                    }
                    Some(_) => {}
                }
                if index >= of {
                    return Err(at(format!("record {index} of {of}: past the end")));
                }
                if last.is_some_and(|l| index <= l) {
                    return Err(at(format!(
                        "record {index} (id {id}) comes after record {}: not in input order",
                        last.unwrap_or(0)
                    )));
                }
                last = Some(index);
                let here = Place {
                    file: f,
                    line: n + 1,
                    id,
                };
                if let Some(first) = &places[index] {
                    return Err(MergeError::Duplicate {
                        index,
                        id: here.id,
                        first: format!("{}:{}", name(&files[first.file]), first.line),
                        second: format!("{}:{}", name(path), here.line),
                    });
                }
                places[index] = Some(here);
            }
        }
        if let Some(gap) = places.iter().position(Option::is_none) {
            let missing = places.iter().filter(|p| p.is_none()).count();
            let describe = |p: Option<&Place>| {
                p.map(|p| format!("id {} ({}:{})", p.id, name(&files[p.file]), p.line))
            };
            let before = describe(places[..gap].iter().rev().flatten().next());
            let after = describe(places[gap..].iter().flatten().next());
            let around = match (before, after) {
                (Some(b), Some(a)) => format!("between {b} and {a}"),
                (Some(b), None) => format!("after {b}"),
                (None, Some(a)) => format!("before {a}"),
                (None, None) => "and no record is present".into(),
            };
            return Err(MergeError::Gap {
                index: gap,
                missing,
                of: places.len(),
                around,
            });
        }
        let owner = places
            .into_iter()
            .map(|p| p.expect("no gaps").file)
            .collect();
        let (signature, unsigned) = common_signature(files)?;
        Ok(Merge {
            files: files.to_vec(),
            owner,
            signature,
            unsigned,
        })
    }

    /// Writes the records in input order, each line as an unsharded run writes it.
    pub fn write(&self, out: &mut impl Write) -> Result<(), MergeError> {
        let mut readers: Vec<_> = self
            .files
            .iter()
            .map(|p| {
                lines_of(p).map_err(|error| MergeError::Io {
                    file: name(p),
                    error,
                })
            })
            .collect::<Result<_, _>>()?;
        for &f in &self.owner {
            let io = |error| MergeError::Io {
                file: name(&self.files[f]),
                error,
            };
            let line = loop {
                let line = readers[f]
                    .next()
                    .unwrap_or_else(|| Err(std::io::ErrorKind::UnexpectedEof.into()))
                    .map_err(io)?;
                if !line.trim().is_empty() {
                    break line;
                }
            };
            writeln!(out, "{}", unsharded(&line)).map_err(MergeError::Output)?;
        }
        out.flush().map_err(MergeError::Output)
    }

    /// Records merged.
    pub fn len(&self) -> usize {
        self.owner.len()
    }

    /// Whether there is nothing to merge.
    pub fn is_empty(&self) -> bool {
        self.owner.is_empty()
    }
}

/// A shard output's lines, a byte-order mark before the first skipped (an editor on Windows
/// saves one; inputs skip it too).
fn lines_of(path: &Path) -> std::io::Result<impl Iterator<Item = std::io::Result<String>>> {
    let lines = BufReader::new(File::open(path)?).lines();
    Ok(lines.enumerate().map(|(n, line)| {
        line.map(|l| match (n, l.strip_prefix('\u{feff}')) {
            (0, Some(rest)) => rest.to_string(),
            _ => l,
        })
    }))
}

/// What a shard line says of its place: its `index` of `of`, its `id` (as JSON text), and the
/// input's fingerprint (`None` from shards of neko versions that did not write it).
struct Position {
    index: usize,
    of: usize,
    id: String,
    input: Option<String>,
}

fn position(line: &str) -> Result<Position, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not a JSON line: {e}"))?;
    let field = |k: &str| {
        v[k].as_u64().map(|n| n as usize).ok_or_else(|| {
            format!("no `{k}` field: not a line of `neko correct --shard` (merge needs its `index` and `of`)")
        })
    };
    Ok(Position {
        index: field("index")?,
        of: field("of")?,
        id: v["id"].to_string(),
        input: v["input"].as_str().map(str::to_string),
    })
}

/// The line without its `index`, `of` and `input`: byte for byte the line of an unsharded run,
/// which [`ShardLine`] wrote them after. A line rewritten by another tool loses them by parsing.
fn unsharded(line: &str) -> String {
    if let Ok(p) = position(line) {
        let input = (p.input.as_ref()).map_or(String::new(), |i| {
            format!(",\"input\":{}", Value::from(i.as_str()))
        });
        let tail = format!(",\"index\":{},\"of\":{}{input}}}", p.index, p.of);
        if let Some(head) = line.trim_end().strip_suffix(&tail) {
            return format!("{head}}}");
        }
    }
    let mut v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.remove("index");
        m.remove("of");
        m.remove("input");
    }
    v.to_string()
}

/// The `.sig` beside every shard output, when all have one and agree, and the shards without
/// one when others have one. Those there must agree even when one is missing (a shard written
/// to stdout): the merge then has none.
fn common_signature(files: &[PathBuf]) -> Result<(Option<String>, Vec<String>), MergeError> {
    let mut first: Option<(String, String)> = None;
    let mut unsigned = Vec::new();
    for f in files {
        let sig_path = crate::output::signature_path(f);
        // The signature line: each shard's digest line is of its own lines.
        // A shard written over since it was signed (its digest differs) counts as unsigned.
        let read = crate::output::read_signature(&sig_path)
            .ok()
            .filter(|s| s.is_of(f));
        let Some(sig) = read.map(|s| s.signature) else {
            unsigned.push(name(f));
            continue;
        };
        if let Some((text, file)) = &first {
            if *text != sig {
                return Err(MergeError::Signature {
                    first: file.clone(),
                    second: name(&sig_path),
                    fields: crate::output::signature_fields_changed(text, &sig),
                });
            }
        } else {
            first = Some((sig.clone(), name(&sig_path)));
        }
    }
    match first {
        Some((sig, _)) if unsigned.is_empty() => Ok((Some(sig), unsigned)),
        Some(_) => Ok((None, unsigned)),
        None => Ok((None, Vec::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs_parse_and_refuse_nonsense() {
        assert_eq!(
            "3/16".parse::<Shard>(),
            Ok(Shard {
                index: 3,
                count: 16
            })
        );
        for bad in ["16/16", "1/0", "3", "a/2", "-1/4", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_partition_positions() {
        for count in 1..6 {
            for k in 0..50 {
                let owners = (0..count)
                    .filter(|&index| Shard { index, count }.contains(k))
                    .count();
                assert_eq!(owners, 1);
            }
        }
    }

    #[test]
    fn unsharded_strips_the_position_byte_for_byte() {
        let line = r#"{"id":"a","task":"asr","prediction":"x","best":"x","index":4,"of":9}"#;
        assert_eq!(
            unsharded(line),
            r#"{"id":"a","task":"asr","prediction":"x","best":"x"}"#
        );
    }
}

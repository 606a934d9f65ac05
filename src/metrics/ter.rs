//! Corpus TER (translation edit rate, Snover et al. 2006) as sacrebleu 2.x computes it: text
//! tokenised by [`TerOptions`] (by default lower-cased and split at whitespace, nothing else),
//! word edits plus Tercom's block shifts, over the closest reference, divided by the mean
//! reference length.
//!
//! The shift search follows sacrebleu's `lib_ter.py` step by step, because its heuristics decide
//! the number: shifts of at most 10 words moved at most 50 positions, the edit distance over a
//! beam of 25 cells around the (length-ratio) diagonal, at most 1,000 shift candidates tried
//! per sentence, ties broken as Tercom ranks shifts. sacrebleu caches matrix rows of hypothesis
//! prefixes; here a candidate reuses the rows of the prefix it shares with the unshifted
//! hypothesis, which gives the same rows.

use serde::{Deserialize, Serialize};

pub use super::tercom::TerOptions;

const MAX_SHIFT_SIZE: usize = 10;
const MAX_SHIFT_DIST: usize = 50;
const BEAM_WIDTH: usize = 25;
const MAX_SHIFT_CANDIDATES: usize = 1000;
/// sacrebleu's "infinite" cost of a cell outside the beam.
const INFINITY: u64 = 10_000_000_000_000_000;

/// Edits and reference length. Adds up over a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TerStats {
    /// Shifts, insertions, deletions and substitutions against the closest reference.
    pub edits: u64,
    /// Reference words, the mean over the record's references (as sacrebleu pools them).
    pub ref_length: f64,
}

impl TerStats {
    /// Statistics of one hypothesis against its references (raw text): the fewest edits over
    /// the references, and their mean length.
    pub fn segment_refs(hypothesis: &str, references: &[&str]) -> Self {
        Self::segment_with(TerOptions::default(), hypothesis, references)
    }

    /// [`TerStats::segment_refs`] under other options (sacrebleu's `--ter-*` flags).
    pub fn segment_with(options: TerOptions, hypothesis: &str, references: &[&str]) -> Self {
        let hyp = options.tokens(hypothesis);
        let hyp: Vec<&str> = hyp.iter().map(String::as_str).collect();
        let mut stats = TerStats::default();
        let mut fewest = None;
        for reference in references {
            let reference = options.reference_tokens(reference);
            let reference: Vec<&str> = reference.iter().map(String::as_str).collect();
            let edits = edits(&hyp, &reference);
            fewest = Some(fewest.map_or(edits, |f: u64| f.min(edits)));
            stats.ref_length += reference.len() as f64;
        }
        stats.edits = fewest.unwrap_or(0);
        stats.ref_length /= references.len().max(1) as f64;
        stats
    }

    /// TER in percent: 100 for edits against empty references, 0 for nothing against nothing.
    pub fn score(&self) -> f64 {
        if self.ref_length > 0.0 {
            100.0 * self.edits as f64 / self.ref_length
        } else if self.edits > 0 {
            100.0
        } else {
            0.0
        }
    }
}

impl std::ops::AddAssign for TerStats {
    fn add_assign(&mut self, o: Self) {
        self.edits += o.edits;
        self.ref_length += o.ref_length;
    }
}

/// The edits turning `hyp` into `reference`: the shifts taken greedily while each lowers the
/// edit distance, then the edit distance of the shifted hypothesis.
fn edits(hyp: &[&str], reference: &[&str]) -> u64 {
    if reference.is_empty() {
        return hyp.len() as u64;
    }
    let beam = Beam::new(reference, hyp.len());
    let mut words = hyp.to_vec();
    let (mut shifts, mut checked) = (0, 0);
    loop {
        let (gain, shifted) = best_shift(&words, &beam, &mut checked);
        // sacrebleu stops at the candidate limit without taking the shift it found.
        if checked >= MAX_SHIFT_CANDIDATES || gain <= 0 {
            break;
        }
        shifts += 1;
        words = shifted;
    }
    shifts + beam.distance(&beam.rows(&words, &[]))
}

/// An edit operation, rewriting the hypothesis into the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Sub,
    /// A reference word inserted.
    Ins,
    /// A hypothesis word deleted.
    Del,
    /// A cell the beam never reached.
    Undef,
}

type Row = Vec<(u64, Op)>;

/// The Levenshtein matrix over a band around the diagonal, for hypotheses of one length (shifts
/// keep the length, so the band is the same for every candidate).
struct Beam<'a> {
    reference: &'a [&'a str],
    ratio: f64,
    width: i64,
}

impl<'a> Beam<'a> {
    fn new(reference: &'a [&'a str], hyp_len: usize) -> Self {
        let ratio = if hyp_len > 0 {
            reference.len() as f64 / hyp_len as f64
        } else {
            1.0
        };
        // Very unequal lengths: widen the band so that consecutive rows still overlap.
        let width = if (BEAM_WIDTH as f64) < ratio / 2.0 {
            (ratio / 2.0 + BEAM_WIDTH as f64).ceil() as i64
        } else {
            BEAM_WIDTH as i64
        };
        Beam {
            reference,
            ratio,
            width,
        }
    }

    /// Every row of `hyp`'s matrix, reusing `known`: rows of a hypothesis that shares
    /// `hyp`'s first `known.len() - 1` words.
    fn rows(&self, hyp: &[&str], known: &[Row]) -> Vec<Row> {
        let n_ref = self.reference.len();
        let mut rows = known.to_vec();
        if rows.is_empty() {
            rows.push((0..=n_ref).map(|j| (j as u64, Op::Ins)).collect());
        }
        for i in rows.len()..=hyp.len() {
            let prev = &rows[i - 1];
            let mut row = vec![(INFINITY, Op::Undef); n_ref + 1];
            let diagonal = (i as f64 * self.ratio).floor() as i64;
            let low = (diagonal - self.width).max(0) as usize;
            let high = if i == hyp.len() {
                n_ref + 1
            } else {
                (diagonal + self.width).clamp(0, n_ref as i64 + 1) as usize
            };
            for j in low..high {
                if j == 0 {
                    row[0] = (prev[0].0 + 1, Op::Del);
                    continue;
                }
                let (sub_cost, sub) = if hyp[i - 1] == self.reference[j - 1] {
                    (0, Op::Same)
                } else {
                    (1, Op::Sub)
                };
                // Tercom's preference on ties: same/substitution, then deletion, then insertion.
                let ops = [
                    (prev[j - 1].0 + sub_cost, sub),
                    (prev[j].0 + 1, Op::Del),
                    (row[j - 1].0 + 1, Op::Ins),
                ];
                for (cost, op) in ops {
                    if row[j].0 > cost {
                        row[j] = (cost, op);
                    }
                }
            }
            rows.push(row);
        }
        rows
    }

    fn distance(&self, rows: &[Row]) -> u64 {
        rows.last().expect("row 0")[self.reference.len()].0
    }
}

/// The operations of the cheapest path, first to last.
fn trace(rows: &[Row]) -> Vec<Op> {
    let (mut i, mut j) = (rows.len() - 1, rows[0].len() - 1);
    let mut ops = Vec::with_capacity(i + j);
    while i > 0 || j > 0 {
        let op = rows[i][j].1;
        ops.push(op);
        match op {
            Op::Same | Op::Sub => (i, j) = (i - 1, j - 1),
            Op::Ins => j -= 1,
            // A finite path never leaves the band; were it to, stepping back along the
            // hypothesis still ends the walk (sacrebleu raises instead).
            Op::Del | Op::Undef if i > 0 => i -= 1,
            Op::Del | Op::Undef => j -= 1,
        }
    }
    ops.reverse();
    ops
}

/// Where each reference word sits in the hypothesis (the hypothesis position it follows or
/// matches; -1 before the first), and which words of each side are in error.
struct Alignment {
    position: Vec<i64>,
    ref_err: Vec<bool>,
    hyp_err: Vec<bool>,
}

fn alignment(ops: &[Op]) -> Alignment {
    let mut a = Alignment {
        position: Vec::new(),
        ref_err: Vec::new(),
        hyp_err: Vec::new(),
    };
    let mut hyp_pos = -1i64;
    for op in ops {
        match op {
            Op::Same | Op::Sub => {
                hyp_pos += 1;
                a.position.push(hyp_pos);
                a.hyp_err.push(*op == Op::Sub);
                a.ref_err.push(*op == Op::Sub);
            }
            Op::Del => {
                hyp_pos += 1;
                a.hyp_err.push(true);
            }
            Op::Ins | Op::Undef => {
                a.position.push(hyp_pos);
                a.ref_err.push(true);
            }
        }
    }
    a
}

/// A shift as Tercom ranks them: the largest gain, then the longest block, the earliest
/// block, the earliest target, then the shifted words themselves.
type Candidate<'w> = (i64, usize, i64, i64, Vec<&'w str>);

/// The shift that lowers the edit distance most, with its gain (0 and the words unchanged when
/// no shift is worth trying); `checked` counts the candidates scored so far.
fn best_shift<'w>(words: &[&'w str], beam: &Beam<'w>, checked: &mut usize) -> (i64, Vec<&'w str>) {
    let rows = beam.rows(words, &[]);
    let before = beam.distance(&rows) as i64;
    let a = alignment(&trace(&rows));
    let mut best: Option<Candidate<'w>> = None;
    for (start_h, start_r, length) in matching_blocks(words, beam.reference) {
        // Only shift a block that is wrong where it is and to a place that is wrong too.
        if !a.hyp_err[start_h..start_h + length].contains(&true)
            || !a.ref_err[start_r..start_r + length].contains(&true)
        {
            continue;
        }
        let target = a.position[start_r];
        if (start_h as i64) <= target && target < (start_h + length) as i64 {
            continue;
        }
        let mut previous = -1;
        for offset in -1..length as i64 {
            let at = start_r as i64 + offset;
            let idx = match at {
                -1 => 0,
                at if (at as usize) < a.position.len() => a.position[at as usize] + 1,
                _ => break,
            };
            if idx == previous {
                continue;
            }
            previous = idx;
            let shifted = shift(words, start_h, length, idx as usize);
            let shared = start_h.min(idx as usize);
            let after = beam.distance(&beam.rows(&shifted, &rows[..=shared])) as i64;
            let candidate = (before - after, length, -(start_h as i64), -idx, shifted);
            *checked += 1;
            if best.as_ref().is_none_or(|b| candidate > *b) {
                best = Some(candidate);
            }
        }
        if *checked >= MAX_SHIFT_CANDIDATES {
            break;
        }
    }
    best.map_or((0, words.to_vec()), |(gain, .., shifted)| (gain, shifted))
}

/// `words` with the block of `length` at `start` moved before position `target` (positions
/// counted in the unshifted words, as sacrebleu's slices count them).
fn shift<'w>(words: &[&'w str], start: usize, length: usize, target: usize) -> Vec<&'w str> {
    let n = words.len();
    // Python's slice: ends clamped to the length, empty when reversed.
    let s = |a: usize, b: usize| &words[a.min(n)..b.min(n).max(a.min(n))];
    let block = s(start, start + length);
    let parts: [&[&'w str]; 4] = if target < start {
        [s(0, target), block, s(target, start), s(start + length, n)]
    } else if target > start + length {
        [s(0, start), s(start + length, target), block, s(target, n)]
    } else {
        let end = length + target;
        [s(0, start), s(start + length, end), block, s(end, n)]
    };
    parts.concat()
}

/// Every (hypothesis start, reference start, length) of equal word runs of up to 10 words
/// that start at most 50 positions apart, each prefix of a run listed.
fn matching_blocks(h: &[&str], r: &[&str]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    for start_h in 0..h.len() {
        for start_r in 0..r.len() {
            if start_r.abs_diff(start_h) > MAX_SHIFT_DIST {
                continue;
            }
            let mut length = 0;
            while length < MAX_SHIFT_SIZE && h[start_h + length] == r[start_r + length] {
                length += 1;
                out.push((start_h, start_r, length));
                if start_h + length == h.len() || start_r + length == r.len() {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ter(h: &str, r: &str) -> (u64, f64) {
        let s = TerStats::segment_refs(h, &[r]);
        (s.edits, s.score())
    }

    #[test]
    fn a_moved_block_is_one_shift() {
        // Levenshtein would need 6 edits; one shift of "on the mat" does it.
        assert_eq!(
            ter("on the mat the cat sat", "the cat sat on the mat"),
            (1, 100.0 / 6.0)
        );
        assert_eq!(ter("The CAT sat", "the cat sat"), (0, 0.0));
    }

    #[test]
    fn empty_sides() {
        assert_eq!(ter("", "a b c"), (3, 100.0));
        assert_eq!(ter("a b", ""), (2, 100.0));
        assert_eq!(ter("", ""), (0, 0.0));
    }

    #[test]
    fn several_references_take_the_closest_and_the_mean_length() {
        let s = TerStats::segment_refs("a b c", &["a b c d", "x y"]);
        assert_eq!((s.edits, s.ref_length), (1, 3.0));
    }

    #[test]
    fn shifts_slice_as_python_does() {
        let w = ["a", "b", "c", "d", "e"];
        assert_eq!(shift(&w, 3, 2, 0), ["d", "e", "a", "b", "c"]);
        assert_eq!(shift(&w, 0, 2, 4), ["c", "d", "a", "b", "e"]);
        // A target inside the block's reach: Python's clamped slices.
        assert_eq!(shift(&w, 2, 2, 3), ["a", "b", "e", "c", "d"]);
        assert_eq!(shift(&w, 3, 2, 4), ["a", "b", "c", "d", "e"]);
    }
}

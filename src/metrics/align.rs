//! Levenshtein alignment of two token sequences, computed once, from which every error rate
//! (WER, CER, MER) and the GEC edit extraction derive.
//!
//! The alignment is the one jiwer 4 reports: jiwer asks rapidfuzz for `Levenshtein.opcodes`, and
//! when several minimal alignments exist the substitution / deletion / insertion split depends on
//! which one rapidfuzz picks. We reproduce its choices exactly, so S/D/I counts match jiwer and not
//! only their sum:
//!
//! 1. the common prefix and suffix are matched first (rapidfuzz `remove_common_affix`);
//! 2. the remaining middle is traced back from the end of the edit-distance matrix, preferring a
//!    deletion, then an insertion, then the diagonal (rapidfuzz `recover_alignment`);
//! 3. middles whose matrix would exceed rapidfuzz's 1 MiB budget are split in two first, at the
//!    smallest optimal column of the hypothesis' midpoint row (rapidfuzz `find_hirschberg_pos`),
//!    and each half is aligned the same way.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

/// One step of an alignment, reading the reference and the hypothesis left to right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A reference token matched by an equal hypothesis token (a hit).
    Equal,
    /// A reference token replaced by a different hypothesis token.
    Substitute,
    /// A reference token missing from the hypothesis.
    Delete,
    /// A hypothesis token with no reference token.
    Insert,
}

/// Hits, substitutions, deletions and insertions of one or more alignments. Counts add up over
/// a corpus; corpus error rates pool them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditCounts {
    /// Matched tokens.
    pub hits: u64,
    /// Substituted tokens.
    pub substitutions: u64,
    /// Deleted reference tokens.
    pub deletions: u64,
    /// Inserted hypothesis tokens.
    pub insertions: u64,
}

impl EditCounts {
    /// Counts the operations of an alignment.
    pub fn from_ops(ops: &[Op]) -> Self {
        let mut c = EditCounts::default();
        for op in ops {
            match op {
                Op::Equal => c.hits += 1,
                Op::Substitute => c.substitutions += 1,
                Op::Delete => c.deletions += 1,
                Op::Insert => c.insertions += 1,
            }
        }
        c
    }

    /// Substitutions + deletions + insertions.
    pub fn errors(&self) -> u64 {
        self.substitutions + self.deletions + self.insertions
    }

    /// Tokens in the reference: hits + substitutions + deletions.
    pub fn reference_len(&self) -> u64 {
        self.hits + self.substitutions + self.deletions
    }

    /// Tokens in the hypothesis: hits + substitutions + insertions.
    pub fn hypothesis_len(&self) -> u64 {
        self.hits + self.substitutions + self.insertions
    }

    /// Error rate (WER for words, CER for characters) as a fraction, pooled over everything
    /// counted. With an empty reference it is the number of insertions, as in jiwer 4, so
    /// empty against empty is 0.
    pub fn error_rate(&self) -> f64 {
        match self.reference_len() {
            0 => self.insertions as f64,
            n => self.errors() as f64 / n as f64,
        }
    }

    /// Match error rate: errors over hits + errors (jiwer's MER); 0 when both sides are empty.
    pub fn match_error_rate(&self) -> f64 {
        match self.hits + self.errors() {
            0 => 0.0,
            n => self.errors() as f64 / n as f64,
        }
    }
}

impl std::ops::AddAssign for EditCounts {
    fn add_assign(&mut self, o: Self) {
        self.hits += o.hits;
        self.substitutions += o.substitutions;
        self.deletions += o.deletions;
        self.insertions += o.insertions;
    }
}

impl std::ops::Add for EditCounts {
    type Output = EditCounts;
    fn add(mut self, o: Self) -> Self {
        self += o;
        self
    }
}

/// Aligns `reference` to `hypothesis` and returns the operations in reading order.
pub fn align<T: PartialEq>(reference: &[T], hypothesis: &[T]) -> Vec<Op> {
    let mut ops = Vec::with_capacity(reference.len().max(hypothesis.len()));
    SCRATCH.with(|s| align_into(reference, hypothesis, None, &mut s.borrow_mut(), &mut ops));
    ops
}

/// Aligns `reference` to `hypothesis` and counts the operations.
pub fn counts<T: PartialEq>(reference: &[T], hypothesis: &[T]) -> EditCounts {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let mut ops = std::mem::take(&mut s.ops);
        ops.clear();
        align_into(reference, hypothesis, None, &mut s, &mut ops);
        let c = EditCounts::from_ops(&ops);
        s.ops = ops;
        c
    })
}

/// The Levenshtein distance (unit costs) between two sequences, in linear memory.
pub fn distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    last_row(a, b).last().copied().unwrap_or(0) as usize
}

/// Reusable buffers, so scoring a corpus allocates once per thread.
#[derive(Default)]
struct Scratch {
    matrix: Vec<u32>,
    ops: Vec<Op>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// rapidfuzz works in 64-bit words and switches to Hirschberg's split when the bit matrix of the
/// middle would take 1 MiB or more (`2 * band * len(b) / 8` bytes).
const HIRSCHBERG_BYTES: usize = 1024 * 1024;

/// Cells above which the backtrace keeps only the diagonal band instead of the whole matrix.
const FULL_MATRIX_CELLS: usize = 1 << 22;

/// `max` is the known distance of `a` and `b` where a caller has it (the Hirschberg halves),
/// and `None` at the top, where rapidfuzz uses the longer length as its bound.
fn align_into<T: PartialEq>(
    a: &[T],
    b: &[T],
    max: Option<usize>,
    scratch: &mut Scratch,
    out: &mut Vec<Op>,
) {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[prefix..], &b[prefix..]);
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a, b) = (&a[..a.len() - suffix], &b[..b.len() - suffix]);
    out.extend(std::iter::repeat_n(Op::Equal, prefix));

    let bound = max.unwrap_or(usize::MAX).min(a.len().max(b.len()));
    let band = a.len().min(bound.saturating_mul(2).saturating_add(1));
    let bytes = 2usize.saturating_mul(band).saturating_mul(b.len()) / 8;
    if bytes < HIRSCHBERG_BYTES || a.len() < 65 || b.len() < 10 {
        backtrace(a, b, max, scratch, out);
    } else {
        let (a_mid, b_mid, left, right) = hirschberg_split(a, b);
        align_into(&a[..a_mid], &b[..b_mid], Some(left), scratch, out);
        align_into(&a[a_mid..], &b[b_mid..], Some(right), scratch, out);
    }
    out.extend(std::iter::repeat_n(Op::Equal, suffix));
}

/// Where to split: `b` at its middle, `a` at the smallest position where the two halves' distances
/// add up to the minimum. Returns both positions and the two halves' distances.
fn hirschberg_split<T: PartialEq>(a: &[T], b: &[T]) -> (usize, usize, usize, usize) {
    let b_mid = b.len() / 2;
    let left = last_row(a, &b[..b_mid]);
    let a_rev: Vec<&T> = a.iter().rev().collect();
    let b_rev: Vec<&T> = b[b_mid..].iter().rev().collect();
    let right = last_row(&a_rev, &b_rev);
    let n = a.len();
    let mut best = (u32::MAX, 0);
    for (i, &l) in left.iter().enumerate() {
        let total = l + right[n - i];
        if total < best.0 {
            best = (total, i);
        }
    }
    let a_mid = best.1;
    (
        a_mid,
        b_mid,
        left[a_mid] as usize,
        right[n - a_mid] as usize,
    )
}

/// Distances of every prefix of `a` to the whole of `b`: `row[i] = d(a[..i], b)`.
fn last_row<T: PartialEq>(a: &[T], b: &[T]) -> Vec<u32> {
    let mut row: Vec<u32> = (0..=a.len() as u32).collect();
    for (j, y) in b.iter().enumerate() {
        let mut diag = row[0];
        row[0] = j as u32 + 1;
        for (i, x) in a.iter().enumerate() {
            let up = row[i + 1];
            let cost = diag + u32::from(x != y);
            row[i + 1] = cost.min(up + 1).min(row[i] + 1);
            diag = up;
        }
    }
    row
}

/// The traceback of rapidfuzz's `recover_alignment` over the full matrix `d[i][j]` (`i` over `a`,
/// `j` over `b`), or over the diagonal band `|i - j| <= distance` when the matrix is large. A band
/// gives the same path: cells outside it are worth more than the distance, so the comparisons made
/// along an optimal path never depend on them.
fn backtrace<T: PartialEq>(
    a: &[T],
    b: &[T],
    known: Option<usize>,
    scratch: &mut Scratch,
    out: &mut Vec<Op>,
) {
    let (n, m) = (a.len(), b.len());
    let start = out.len();
    if n == 0 || m == 0 {
        out.extend(std::iter::repeat_n(Op::Delete, n));
        out.extend(std::iter::repeat_n(Op::Insert, m));
        return;
    }
    let cells = (n + 1) * (m + 1);
    // Large matrices keep only the band when that is smaller (it is, unless the distance is
    // close to the longer length).
    let band = (cells > FULL_MATRIX_CELLS)
        .then(|| known.unwrap_or_else(|| distance(a, b)))
        .filter(|d| (n + 1).saturating_mul(2 * d + 1) < cells);
    let matrix = match band {
        Some(d) => Matrix::banded(a, b, d, &mut scratch.matrix),
        None => Matrix::full(a, b, &mut scratch.matrix),
    };
    let (mut i, mut j) = (n, m);
    while i > 0 && j > 0 {
        let here = matrix.get(i, j);
        if here == matrix.get(i - 1, j).saturating_add(1) {
            out.push(Op::Delete);
            i -= 1;
        } else if j >= 2 && matrix.get(i, j - 1).saturating_add(1) == matrix.get(i - 1, j - 1) {
            // The vertical delta one column back is -1: reaching (i, j) sideways is optimal.
            out.push(Op::Insert);
            j -= 1;
        } else {
            out.push(if a[i - 1] == b[j - 1] {
                Op::Equal
            } else {
                Op::Substitute
            });
            i -= 1;
            j -= 1;
        }
    }
    out.extend(std::iter::repeat_n(Op::Delete, i));
    out.extend(std::iter::repeat_n(Op::Insert, j));
    out[start..].reverse();
    // The scratch matrix lives as long as the thread: do not keep a huge one around.
    if scratch.matrix.capacity() > FULL_MATRIX_CELLS {
        scratch.matrix = Vec::new();
    }
}

/// An edit-distance matrix over `a` (rows) and `b` (columns), whole or as a diagonal band.
struct Matrix<'s> {
    cells: &'s [u32],
    /// Columns stored per row.
    width: usize,
    /// Half-width of the band, or `None` for the full matrix.
    band: Option<usize>,
}

/// Stands for "more than the distance" outside a band; small enough that `+ 1` cannot overflow.
const FAR: u32 = u32::MAX / 2;

impl<'s> Matrix<'s> {
    fn full<T: PartialEq>(a: &[T], b: &[T], buf: &'s mut Vec<u32>) -> Self {
        let width = b.len() + 1;
        buf.clear();
        buf.resize((a.len() + 1) * width, 0);
        for (j, cell) in buf[..width].iter_mut().enumerate() {
            *cell = j as u32;
        }
        for (i, x) in a.iter().enumerate() {
            let (done, rest) = buf.split_at_mut((i + 1) * width);
            let prev = &done[i * width..];
            let row = &mut rest[..width];
            row[0] = i as u32 + 1;
            for (j, y) in b.iter().enumerate() {
                let diag = prev[j] + u32::from(x != y);
                row[j + 1] = diag.min(prev[j + 1] + 1).min(row[j] + 1);
            }
        }
        Matrix {
            cells: buf,
            width,
            band: None,
        }
    }

    /// Row `i` stores columns `i - k ..= i + k` (clipped to the matrix), at offset `j + k - i`.
    fn banded<T: PartialEq>(a: &[T], b: &[T], k: usize, buf: &'s mut Vec<u32>) -> Self {
        let width = 2 * k + 1;
        buf.clear();
        buf.resize((a.len() + 1) * width, FAR);
        for j in 0..=b.len().min(k) {
            buf[j + k] = j as u32;
        }
        for i in 1..=a.len() {
            let lo = i.saturating_sub(k);
            let hi = (i + k).min(b.len());
            for j in lo..=hi {
                let at = |r: usize, c: usize, buf: &[u32]| -> u32 {
                    if c + k < r || c > r + k {
                        FAR
                    } else {
                        buf[r * width + c + k - r]
                    }
                };
                let v = if j == 0 {
                    i as u32
                } else {
                    let diag = at(i - 1, j - 1, buf) + u32::from(a[i - 1] != b[j - 1]);
                    diag.min(at(i - 1, j, buf) + 1).min(at(i, j - 1, buf) + 1)
                };
                buf[i * width + j + k - i] = v.min(FAR);
            }
        }
        Matrix {
            cells: buf,
            width,
            band: Some(k),
        }
    }

    fn get(&self, i: usize, j: usize) -> u32 {
        match self.band {
            None => self.cells[i * self.width + j],
            Some(k) if j + k < i || j > i + k => FAR,
            Some(k) => self.cells[i * self.width + j + k - i],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(r: &str, h: &str) -> EditCounts {
        let r: Vec<&str> = r.split_whitespace().collect();
        let h: Vec<&str> = h.split_whitespace().collect();
        counts(&r, &h)
    }

    #[test]
    fn identical_and_empty() {
        assert_eq!(c("a b c", "a b c").hits, 3);
        assert_eq!(c("", "").error_rate(), 0.0);
        let ins = c("", "x y");
        assert_eq!((ins.insertions, ins.error_rate()), (2, 2.0));
        let del = c("x y", "");
        assert_eq!((del.deletions, del.error_rate()), (2, 1.0));
    }

    #[test]
    fn ops_cover_both_sequences() {
        let r = ["a", "b", "c", "d"];
        let h = ["a", "x", "c", "e", "f"];
        let ops = align(&r, &h);
        let k = EditCounts::from_ops(&ops);
        assert_eq!(k.reference_len(), 4);
        assert_eq!(k.hypothesis_len(), 5);
        assert_eq!(k.errors() as usize, distance(&r, &h));
    }

    #[test]
    fn banded_matrix_matches_full() {
        let a: Vec<u32> = (0..300).map(|i| (i * 7 % 13) as u32).collect();
        let mut b = a.clone();
        b.remove(10);
        b.insert(100, 99);
        b[200] = 98;
        let d = distance(&a, &b);
        let mut buf1 = Vec::new();
        let mut buf2 = Vec::new();
        let full = Matrix::full(&a, &b, &mut buf1);
        let band = Matrix::banded(&a, &b, d, &mut buf2);
        for i in 0..=a.len() {
            for j in 0..=b.len() {
                let f = full.get(i, j);
                if f as usize <= d {
                    assert_eq!(band.get(i, j), f, "cell ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn hirschberg_halves_add_up() {
        let a: Vec<u32> = (0..2000).map(|i| (i * 31 % 97) as u32).collect();
        let b: Vec<u32> = a
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 9 != 0)
            .map(|(_, &x)| x)
            .collect();
        let k = counts(&a, &b);
        assert_eq!(k.errors() as usize, distance(&a, &b));
        assert_eq!(k.reference_len(), 2000);
    }
}

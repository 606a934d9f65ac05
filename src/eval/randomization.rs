//! Paired approximate randomization (Noreen 1989; Riezler & Maxwell 2005), sacrebleu's
//! `--paired-ar`: is the difference between two systems on the same records more than chance?
//!
//! Under the null hypothesis the two systems are exchangeable, so each trial swaps each
//! record's two outputs with probability 1/2 and scores the two shuffled systems; the p-value
//! is the share of trials whose absolute difference is at least the observed one, with the
//! `+1` that keeps the test exact: `(at_least + 1) / (trials + 1)`. sacrebleu counts only the
//! trials strictly above the observed difference; "at least" is the test's definition (Noreen;
//! Riezler & Maxwell), and it is what makes a system compared with itself get p = 1 where
//! sacrebleu reports 1/(trials + 1). Away from ties the two agree.
//!
//! The swaps come from SplitMix64 seeded per trial (sacrebleu's seed, 12345; its generator is
//! numpy's), so a report is reproducible from its signature (`ar:N`).

use super::bootstrap::splitmix64;

/// sacrebleu's default number of trials.
pub const DEFAULT_TRIALS: usize = 10_000;

/// How to randomize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairedAr {
    /// Trials run.
    pub trials: usize,
    /// Seed of the swaps.
    pub seed: u64,
}

/// The p-value of the difference between the two sides of `pairs`, one per record (`None`:
/// a record the metric does not cover, left out). `None` when no record is covered.
pub fn p_value<S: Default + Copy + std::ops::AddAssign>(
    pairs: &[Option<(S, S)>],
    score: impl Fn(&S) -> f64,
    ar: PairedAr,
) -> Option<f64> {
    let pairs: Vec<(S, S)> = pairs.iter().flatten().copied().collect();
    let difference = |swaps: &mut dyn Iterator<Item = bool>| {
        let (mut a, mut b) = (S::default(), S::default());
        for (&(x, y), swap) in pairs.iter().zip(swaps) {
            let (x, y) = if swap { (y, x) } else { (x, y) };
            a += x;
            b += y;
        }
        (score(&b) - score(&a)).abs()
    };
    let observed = difference(&mut std::iter::repeat(false));
    p_value_with(|_| observed, pairs.len(), |_, swaps| difference(swaps), ar)
}

/// The p-value over `n` records, `shuffled(t, swaps)` giving trial `t`'s absolute difference
/// from its swaps (one per record, `true`: exchange the two outputs) and `observed(t)` the
/// absolute difference it is measured against (the same for every trial, except where a trial
/// scores against its own draw of references, as multi-reference GLEU does). `None` when there
/// is no record.
pub fn p_value_with(
    observed: impl Fn(usize) -> f64,
    n: usize,
    shuffled: impl Fn(usize, &mut dyn Iterator<Item = bool>) -> f64,
    ar: PairedAr,
) -> Option<f64> {
    if n == 0 || ar.trials == 0 {
        return None;
    }
    let at_least = (0..ar.trials)
        .filter(|&t| {
            let observed = observed(t);
            // The same difference reached by another sum of the same counts may differ in
            // its last bits: such a trial ties, and a tie counts.
            let tie = 1e-9 * observed.abs().max(1.0);
            shuffled(t, &mut swaps(ar.seed, t, n)) >= observed - tie
        })
        .count();
    Some((at_least + 1) as f64 / (ar.trials + 1) as f64)
}

/// Trial `t`'s swaps: `n` fair coin flips, 64 from each SplitMix64 draw.
fn swaps(seed: u64, t: usize, n: usize) -> impl Iterator<Item = bool> {
    // Another stream than the bootstrap's resample `t` (which starts from the seed alone).
    let mut state = seed ^ 0xA5A5_A5A5_A5A5_A5A5 ^ (t as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut bits = 0u64;
    (0..n).map(move |i| {
        if i % 64 == 0 {
            bits = splitmix64(&mut state);
        }
        let swap = bits & 1 == 1;
        bits >>= 1;
        swap
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::bootstrap::tests::{counts, wer};
    use crate::metrics::EditCounts;

    const AR: PairedAr = PairedAr {
        trials: 2000,
        seed: 12345,
    };

    #[test]
    fn a_system_against_itself_is_chance() {
        let pairs: Vec<_> = (0..50)
            .map(|i| Some((counts(i % 3, 10), counts(i % 3, 10))))
            .collect();
        assert_eq!(p_value(&pairs, wer, AR), Some(1.0));
    }

    #[test]
    fn a_system_better_on_every_record_is_not_chance() {
        let pairs: Vec<_> = (0..50)
            .map(|_| Some((counts(3, 10), counts(1, 10))))
            .collect();
        let p = p_value(&pairs, wer, AR).unwrap();
        assert!(p < 0.001, "{p}");
        // One record better, the rest the same: nothing to go on.
        let mut one = vec![Some((counts(1, 10), counts(1, 10))); 49];
        one.push(Some((counts(3, 10), counts(1, 10))));
        let p = p_value(&one, wer, AR).unwrap();
        assert!(p > 0.9, "{p}");
    }

    #[test]
    fn swaps_are_fair_and_reproducible() {
        let flips: usize = (0..200)
            .map(|t| swaps(1, t, 100).filter(|&s| s).count())
            .sum();
        assert!((flips as f64 / 20_000.0 - 0.5).abs() < 0.02, "{flips}");
        assert!(swaps(1, 3, 100).eq(swaps(1, 3, 100)));
        assert!(!swaps(1, 3, 100).eq(swaps(1, 4, 100)));
    }

    #[test]
    fn no_records_no_p_value() {
        let none: Vec<Option<(EditCounts, EditCounts)>> = vec![None, None];
        assert_eq!(p_value(&none, wer, AR), None);
    }
}

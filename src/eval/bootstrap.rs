//! Paired bootstrap resampling: how sure a corrected file's gain over its own 1-best is.
//!
//! The records of a group are drawn with replacement, as many as there are, `resamples` times;
//! each draw pools the 1-best's and the prediction's statistics of the same records and scores
//! both, so the two systems are compared on the same sample (Koehn 2004, "Statistical
//! significance tests for machine translation evaluation"; Bisani & Ney 2004 for WER, whose
//! "probability of improvement" is `p_better` here). sacrebleu's `--paired-bs` does the same for
//! two MT systems, with 1,000 resamples and seed 12345 by default, and so does neko.
//!
//! The draws come from SplitMix64 seeded per resample, so a report is reproducible from its
//! signature (`bs:N|seed:S`) and does not depend on thread count or metric order.

use serde::{Deserialize, Serialize};

/// sacrebleu's default number of resamples.
pub const DEFAULT_RESAMPLES: usize = 1000;
/// sacrebleu's default seed for its paired bootstrap.
pub const SEED: u64 = 12345;

/// How to resample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairedBs {
    /// Resamples drawn.
    pub resamples: usize,
    /// Seed of the draws.
    pub seed: u64,
}

/// The change corrected − 1-best of one metric, in the metric's points (percent), with the
/// central 95% of its resampled values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The change on the records as they are (the report's two scores subtracted).
    pub delta: f64,
    /// 2.5th percentile of the resampled changes.
    pub low: f64,
    /// 97.5th percentile of the resampled changes.
    pub high: f64,
    /// Share of resamples in which the prediction scores better than the 1-best (a lower
    /// error rate or TER, a higher BLEU, chrF or GLEU); a tie is not better.
    pub p_better: f64,
    /// The p-value of the change by paired approximate randomization (`--paired-ar`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_ar: Option<f64>,
}

/// The intervals of a group's metrics (those the group has).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Significance {
    /// Resamples drawn.
    pub resamples: u64,
    /// Seed of the draws.
    pub seed: u64,
    /// The other system's file (`--against`) the records were compared with; absent: their
    /// own 1-best.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against: Option<String>,
    /// Trials of the approximate randomization (`--paired-ar`), when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ar_trials: Option<u64>,
    /// Word error rate.
    pub wer: Interval,
    /// Character error rate.
    pub cer: Interval,
    /// BLEU (ST/MT records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bleu: Option<Interval>,
    /// chrF (ST/MT records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chrf: Option<Interval>,
    /// TER (ST/MT records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ter: Option<Interval>,
    /// GLEU (GEC records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gleu: Option<Interval>,
}

/// A score's spread over resamples of its records, as sacrebleu's `--confidence` reports it
/// (`μ = 30.1 ± 0.9`): the mean of the resampled scores and half the distance between the
/// resampled scores at ranks n/40 and n - n/40 - 1 of n (the central 95%).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The mean of the resampled scores.
    pub mean: f64,
    /// Half the width of the central 95% of them (sacrebleu's `± ci`).
    pub ci: f64,
    /// The central 95%'s ends.
    pub low: f64,
    pub high: f64,
}

/// The spreads of one metric, of the 1-best and of the predictions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spreads {
    pub one_best: Spread,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected: Option<Spread>,
}

/// The spreads of a group's metrics (`--confidence`), those it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confidence {
    /// Resamples drawn (the draws of `--paired-bs`: the same seed and records).
    pub resamples: u64,
    /// Seed of the draws.
    pub seed: u64,
    pub wer: Spreads,
    pub cer: Spreads,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bleu: Option<Spreads>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chrf: Option<Spreads>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ter: Option<Spreads>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gleu: Option<Spreads>,
}

/// The spread of a score of `stats`, one per record, over resamples of the records. `None`
/// when there is no record.
pub fn spread<S: Default + Copy + std::ops::AddAssign>(
    stats: &[S],
    score: impl Fn(&S) -> f64,
    bs: PairedBs,
) -> Option<Spread> {
    spread_with(
        stats.len(),
        |_, draw| {
            let mut sum = S::default();
            for i in draw {
                sum += stats[i];
            }
            score(&sum)
        },
        bs,
    )
}

/// The spread of `n` records' score, `resampled(r, draw)` giving resample `r`'s score from
/// the record indices it draws (the draws of [`interval_with`]).
pub fn spread_with(
    n: usize,
    resampled: impl Fn(usize, &mut dyn Iterator<Item = usize>) -> f64,
    bs: PairedBs,
) -> Option<Spread> {
    if n == 0 || bs.resamples == 0 {
        return None;
    }
    let mut scores: Vec<f64> = (0..bs.resamples)
        .map(|r| resampled(r, &mut draws(bs.seed, r, n)))
        .collect();
    scores.sort_by(f64::total_cmp);
    let lower = scores.len() / 40;
    let (low, high) = (scores[lower], scores[scores.len() - lower - 1]);
    Some(Spread {
        mean: scores.iter().sum::<f64>() / scores.len() as f64,
        ci: 0.5 * (high - low),
        low,
        high,
    })
}

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Error rates, TER.
    Lower,
    /// BLEU, chrF, GLEU.
    Higher,
}

/// The interval of one metric over `pairs`, one per record of the group: the record's
/// (1-best, prediction) statistics, or `None` for a record the metric does not cover. Only the
/// covered records are resampled: in a group that mixes tasks, BLEU's interval is that of its
/// MT records (drawing the others too made empty samples, whose change of 0 pulled the
/// interval toward 0). `None` when no record is covered.
pub fn interval<S: Default + Copy + std::ops::AddAssign>(
    pairs: &[Option<(S, S)>],
    score: impl Fn(&S) -> f64,
    better: Better,
    bs: PairedBs,
) -> Option<Interval> {
    let pairs: Vec<(S, S)> = pairs.iter().flatten().copied().collect();
    let delta_of = |draw: &mut dyn Iterator<Item = usize>| {
        let (mut one, mut corr) = (S::default(), S::default());
        for (a, b) in draw.map(|i| pairs[i]) {
            one += a;
            corr += b;
        }
        score(&corr) - score(&one)
    };
    let delta = delta_of(&mut (0..pairs.len()));
    interval_with(delta, pairs.len(), |_, draw| delta_of(draw), better, bs)
}

/// The interval around `delta` of `n` records, `resampled(r, draw)` giving resample `r`'s
/// change from the record indices it draws. `None` when there is no record.
pub fn interval_with(
    delta: f64,
    n: usize,
    resampled: impl Fn(usize, &mut dyn Iterator<Item = usize>) -> f64,
    better: Better,
    bs: PairedBs,
) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let mut deltas: Vec<f64> = (0..bs.resamples)
        .map(|r| resampled(r, &mut draws(bs.seed, r, n)))
        .collect();
    deltas.sort_by(f64::total_cmp);
    let improved = deltas
        .iter()
        .filter(|&&d| match better {
            Better::Lower => d < 0.0,
            Better::Higher => d > 0.0,
        })
        .count();
    Some(Interval {
        delta,
        low: quantile(&deltas, 0.025),
        high: quantile(&deltas, 0.975),
        p_better: improved as f64 / deltas.len().max(1) as f64,
        p_ar: None,
    })
}

/// The record indices of resample `r`: `n` draws with replacement from `0..n`.
fn draws(seed: u64, r: usize, n: usize) -> impl Iterator<Item = usize> {
    // Each resample's stream starts at a hash of (seed, r). It started at `seed ^ r·γ`, and
    // SplitMix64 steps its state by that same γ: resample r+d was then mostly resample r
    // shifted by d draws, and 1,000 resamples held as little as 65 independent ones.
    let mut key = r as u64;
    let mut mixed = seed ^ splitmix64(&mut key);
    let mut state = splitmix64(&mut mixed);
    (0..n).map(move |_| {
        // Lemire's multiply-shift maps a 64-bit draw onto 0..n without a division.
        ((splitmix64(&mut state) as u128 * n as u128) >> 64) as usize
    })
}

/// One step of SplitMix64 (Steele, Lea & Flood 2014).
pub(super) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `q` quantile of sorted values, interpolated linearly between neighbours (numpy's
/// default); 0 for none.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return 0.0;
    };
    let pos = q * last as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::metrics::EditCounts;

    const BS: PairedBs = PairedBs {
        resamples: 200,
        seed: SEED,
    };

    /// A record of `words` words with `errors` substitutions (the randomization's tests too).
    pub(in crate::eval) fn counts(errors: u64, words: u64) -> EditCounts {
        EditCounts {
            hits: words - errors,
            substitutions: errors,
            ..Default::default()
        }
    }

    pub(in crate::eval) fn wer(c: &EditCounts) -> f64 {
        100.0 * c.error_rate()
    }

    #[test]
    fn draws_cover_the_range_and_repeat_with_the_seed() {
        let a: Vec<usize> = draws(SEED, 3, 1000).collect();
        assert_eq!(a, draws(SEED, 3, 1000).collect::<Vec<_>>());
        assert_ne!(a, draws(SEED, 4, 1000).collect::<Vec<_>>());
        assert!(a.iter().all(|&i| i < 1000));
        // With replacement: some records twice, about 1/e of them never.
        let distinct = a.iter().collect::<std::collections::BTreeSet<_>>().len();
        assert!(
            (550..720).contains(&distinct),
            "{distinct} distinct of 1000"
        );
    }

    /// No resample is another one shifted by a few draws: each must be a sample of its own.
    #[test]
    fn resamples_are_not_shifted_copies_of_each_other() {
        let n = 400;
        let all: Vec<Vec<usize>> = (0..200).map(|r| draws(SEED, r, n).collect()).collect();
        let mut shifted = 0;
        for (r, a) in all.iter().enumerate() {
            for (d, b) in all[r + 1..].iter().enumerate().map(|(i, b)| (i + 1, b)) {
                if a[d..d + 20] == b[..20] {
                    shifted += 1;
                }
            }
        }
        assert_eq!(shifted, 0);
    }

    #[test]
    fn the_same_gain_on_every_record_gives_a_point_interval() {
        let pairs = vec![Some((counts(2, 10), counts(1, 10))); 50];
        let i = interval(&pairs, wer, Better::Lower, BS).unwrap();
        assert!((i.delta + 10.0).abs() < 1e-9);
        assert!((i.low + 10.0).abs() < 1e-9 && (i.high + 10.0).abs() < 1e-9);
        assert_eq!(i.p_better, 1.0);
    }

    #[test]
    fn no_change_is_never_better() {
        let pairs: Vec<_> = (0..40)
            .map(|k| Some((counts(k % 3, 10), counts(k % 3, 10))))
            .collect();
        let i = interval(&pairs, wer, Better::Lower, BS).unwrap();
        assert_eq!((i.delta, i.low, i.high, i.p_better), (0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn a_mixed_change_has_an_interval_around_it() {
        // 30 records one error better, 20 one error worse: a small net gain that resampling
        // cannot be sure of.
        let pairs: Vec<_> = (0..50)
            .map(|k| {
                let (a, b) = if k < 30 { (2, 1) } else { (1, 2) };
                Some((counts(a, 10), counts(b, 10)))
            })
            .collect();
        let i = interval(&pairs, wer, Better::Lower, BS).unwrap();
        assert!((i.delta + 2.0).abs() < 1e-9, "{i:?}");
        assert!(i.low < i.delta && i.delta < i.high, "{i:?}");
        assert!(i.low < 0.0 && i.high > 0.0, "{i:?}");
        assert!(i.p_better > 0.7 && i.p_better < 1.0, "{i:?}");
        assert_eq!(Some(i), interval(&pairs, wer, Better::Lower, BS));
    }

    #[test]
    fn records_a_metric_does_not_cover_are_not_drawn() {
        let covered: Vec<_> = (0..20)
            .map(|k| Some((counts(2, 10), counts(k % 3, 10))))
            .collect();
        let mut pairs = vec![None; 30];
        pairs.extend(covered.iter().copied());
        let i = interval(&pairs, wer, Better::Lower, BS).unwrap();
        // The interval of the covered records alone: no empty resample scoring 0 - 0.
        assert_eq!(Some(i), interval(&covered, wer, Better::Lower, BS));
        assert_eq!(i.p_better, 1.0, "{i:?}");
        assert_eq!(
            interval::<EditCounts>(&[None, None], wer, Better::Lower, BS),
            None
        );
    }

    #[test]
    fn a_spread_takes_sacrebleus_ranks() {
        // Every record the same: every resample scores the same.
        let same = vec![counts(2, 10); 30];
        let s = spread(&same, wer, BS).unwrap();
        assert_eq!((s.ci, s.low, s.high), (0.0, 20.0, 20.0));
        assert!((s.mean - 20.0).abs() < 1e-9);
        // Mixed records: the mean near the corpus score, ranks 5 and 194 of 200.
        let mixed: Vec<_> = (0..40).map(|k| counts(k % 4, 10)).collect();
        let s = spread(&mixed, wer, BS).unwrap();
        assert!(s.low < 15.0 && 15.0 < s.high, "{s:?}");
        assert!((s.mean - 15.0).abs() < 1.0, "{s:?}");
        assert!((s.ci - 0.5 * (s.high - s.low)).abs() < 1e-12);
        assert_eq!(spread::<EditCounts>(&[], wer, BS), None);
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 5.0);
        assert!((quantile(&v, 0.025) - 1.1).abs() < 1e-12);
        assert!((quantile(&v, 0.975) - 4.9).abs() < 1e-12);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}

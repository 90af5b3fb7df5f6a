//! Quantiles as Prometheus' `promql/quantile.go`: of values (`quantile`,
//! `quantile_over_time`) and of classic `le` buckets (`histogram_quantile`).

use std::cmp::Ordering;

/// Bucket counts closer than this (relatively) are treated as equal, as Prometheus'
/// `smallDeltaTolerance`: they come from float errors, not from observations.
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// The smallest positive normal float, as `almost.Equal`'s `minNormal`.
const MIN_NORMAL: f64 = f64::MIN_POSITIVE;

/// The φ-quantile of `values` with linear interpolation between the closest ranks; ±Inf
/// for φ outside [0, 1], NaN for no values or a NaN φ. NaN values sort first.
pub(super) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(nan_first);
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Ascending with NaN below every number, as Prometheus' `vectorByValueHeap`.
fn nan_first(a: &f64, b: &f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

/// One classic histogram bucket: observations `<= upper`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bucket {
    pub(super) upper: f64,
    pub(super) count: f64,
}

/// Prometheus' `BucketQuantile`: sorts the buckets, needs a `+Inf` bucket, merges equal
/// bounds, forces the counts monotonic, then interpolates linearly inside the bucket the
/// rank falls in (the lowest bucket from 0 if its bound is positive).
pub(super) fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    sort_buckets(buckets);
    match buckets.last() {
        Some(b) if b.upper == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    coalesce(buckets);
    ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // Go's sort.Search over all but the +Inf bucket: the first with count >= rank. A binary
    // search, as Go's, so NaN counts lead to the same bucket.
    let last = buckets.len() - 1;
    let (mut lo, mut hi) = (0, last);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if buckets[mid].count >= rank {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let b = lo;
    if b == last {
        return buckets[last - 1].upper;
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return buckets[0].upper;
    }
    let mut start = 0.0;
    let end = buckets[b].upper;
    let mut count = buckets[b].count;
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    start + (end - start) * (rank / count)
}

/// By upper bound, in a total order (a `le="NaN"` bucket sorts last, after +Inf, so the
/// histogram has no quantile), so no input can make the sort panic.
fn sort_buckets(buckets: &mut [Bucket]) {
    buckets.sort_by(|a, b| a.upper.total_cmp(&b.upper));
}

/// Merges buckets with the same upper bound (sorted input), summing their counts.
fn coalesce(buckets: &mut Vec<Bucket>) {
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.iter() {
        match out.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => out.push(*b),
        }
    }
    *buckets = out;
}

/// Prometheus' `ensureMonotonicAndIgnoreSmallDeltas`: a count below the previous one (or
/// insignificantly different from it) is replaced by the previous one.
fn ensure_monotonic(buckets: &mut [Bucket]) {
    let Some(first) = buckets.first() else {
        return;
    };
    let mut prev = first.count;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, SMALL_DELTA_TOLERANCE) || curr < prev {
            b.count = prev;
            continue;
        }
        prev = curr;
    }
}

/// Prometheus' `almost.Equal`.
fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Prometheus' `BucketFraction`: the estimated share of observations in `(lower, upper]`,
/// interpolating linearly inside the buckets the bounds fall in. The lowest bucket starts
/// at 0 if its bound is positive (as for quantiles); an infinitely wide bucket adds none
/// of its observations (Prometheus' arithmetic gives NaN there, which it does not define).
pub(super) fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
    sort_buckets(buckets);
    match buckets.last() {
        Some(b) if b.upper == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    coalesce(buckets);
    let count = buckets[buckets.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, None, None);
    for (i, b) in buckets.iter().enumerate() {
        let start = match i.checked_sub(1) {
            Some(p) => buckets[p].upper,
            None if b.upper > 0.0 => 0.0,
            None => f64::NEG_INFINITY,
        };
        let end = b.upper;
        let interpolate = |v: f64| {
            if start.is_infinite() || end.is_infinite() {
                rank
            } else {
                rank + (b.count - rank) * (v - start) / (end - start)
            }
        };
        for (bound, slot) in [(lower, &mut lower_rank), (upper, &mut upper_rank)] {
            if slot.is_none() && start >= bound {
                *slot = Some(rank);
            } else if slot.is_none() && start < bound && end > bound {
                *slot = Some(interpolate(bound));
            }
        }
        if lower_rank.is_some() && upper_rank.is_some() {
            break;
        }
        rank = b.count;
    }
    let clamp = |r: Option<f64>| r.filter(|&r| r <= count).unwrap_or(count);
    (clamp(upper_rank) - clamp(lower_rank)) / count
}

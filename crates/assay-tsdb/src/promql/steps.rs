//! Range queries series at a time. A range query evaluates its expression at every step,
//! but a selector's value at a step, or a range function's (`rate`, `*_over_time`, …),
//! depends only on the series' samples near that step. So for such a node the evaluator
//! decodes each series' samples over the whole query span once and slides the window
//! across the steps ([`lookback_column`], [`window_column`]), filling a [`StepTable`]; each
//! step then reads its vector from the table. The rest of the tree (aggregations, binary
//! operators) still runs per step on those vectors.
//!
//! Invariant: a table's vector at a step is exactly what the per-step evaluation returns
//! there (same elements, order, labels and bits), and it loads as many samples.

use std::collections::{BTreeSet, HashSet};

use promql_parser::parser::{Call, Expr, VectorSelector};

use super::eval::Elem;
use super::{over_time, ResultLabels};

/// Prometheus' staleness marker: a NaN with this exact bit pattern ends a series.
pub(super) const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Cells (series × steps) the step tables of one query may hold together, 16 bytes at
/// most each; beyond it the evaluator falls back to evaluating those nodes step by step.
pub(super) const STEP_TABLE_CELLS_MAX: u64 = 50_000_000;

/// The evaluation times of a range query: `start_ms + i * step_ms` for `i < len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct StepGrid {
    pub(super) start_ms: i64,
    pub(super) step_ms: i64,
    pub(super) len: usize,
}

impl StepGrid {
    /// The grid of a range query; `step_ms > 0` and `start_ms <= end_ms`.
    pub(super) fn new(start_ms: i64, end_ms: i64, step_ms: i64) -> StepGrid {
        assert!(step_ms > 0 && start_ms <= end_ms);
        let len = (i128::from(end_ms) - i128::from(start_ms)) / i128::from(step_ms) + 1;
        StepGrid {
            start_ms,
            step_ms,
            len: usize::try_from(len).expect("steps are bounded by RANGE_QUERY_POINTS_MAX"),
        }
    }

    /// The step evaluated at `t`, if `t` is one of the grid's times.
    pub(super) fn index(&self, t: i64) -> Option<usize> {
        let d = i128::from(t) - i128::from(self.start_ms);
        if d < 0 || d % i128::from(self.step_ms) != 0 {
            return None;
        }
        let i = usize::try_from(d / i128::from(self.step_ms)).ok()?;
        (i < self.len).then_some(i)
    }

    /// The time of step `i < len` (within the query's range, so it does not overflow).
    pub(super) fn time(&self, i: usize) -> i64 {
        debug_assert!(i < self.len);
        self.start_ms + i as i64 * self.step_ms
    }
}

/// A node's instant vector at every step of a range query.
#[derive(Debug, Default)]
pub(super) struct StepTable {
    steps: usize,
    /// Per series with an element at some step, in the order the evaluator returns them.
    labels: Vec<ResultLabels>,
    /// Series-major, `steps` values per series; meaningful where `present`.
    values: Vec<f64>,
    present: Vec<bool>,
    /// Whether no two series share a label set, so no step can hold duplicates.
    pub(super) distinct: bool,
}

impl StepTable {
    pub(super) fn new(steps: usize) -> StepTable {
        StepTable {
            steps,
            ..StepTable::default()
        }
    }

    /// Adds a series' column unless it has no element at any step.
    pub(super) fn push(&mut self, labels: ResultLabels, column: &Column) {
        assert_eq!(column.values.len(), self.steps);
        if column.present.iter().any(|&p| p) {
            self.labels.push(labels);
            self.values.extend_from_slice(&column.values);
            self.present.extend_from_slice(&column.present);
        }
    }

    /// Marks the table complete: checks whether its label sets are distinct.
    pub(super) fn finish(mut self) -> StepTable {
        let mut seen = BTreeSet::new();
        self.distinct = self.labels.iter().all(|l| seen.insert(l));
        self
    }

    /// Series in the table, in evaluation order.
    pub(super) fn labels(&self) -> &[ResultLabels] {
        &self.labels
    }

    /// Series `k`'s value at step `i`, if it has an element there.
    pub(super) fn value(&self, k: usize, i: usize) -> Option<f64> {
        let cell = k * self.steps + i;
        self.present[cell].then(|| self.values[cell])
    }

    /// The whole table as range-query series: `(labels, points)` at the grid's times.
    pub(super) fn to_series(&self, grid: StepGrid) -> Vec<(ResultLabels, Vec<(i64, f64)>)> {
        assert_eq!(grid.len, self.steps);
        (0..self.labels.len())
            .map(|k| {
                let points = (0..self.steps)
                    .filter_map(|i| Some((grid.time(i), self.value(k, i)?)))
                    .collect();
                (self.labels[k].clone(), points)
            })
            .collect()
    }

    /// The vector at step `i`.
    pub(super) fn at(&self, i: usize) -> Vec<Elem> {
        assert!(i < self.steps);
        let mut out = Vec::new();
        for (k, labels) in self.labels.iter().enumerate() {
            let cell = k * self.steps + i;
            if self.present[cell] {
                out.push(Elem {
                    labels: labels.clone(),
                    v: self.values[cell],
                });
            }
        }
        out
    }
}

/// An aggregation's groups over a table: computed once, so a step adds up values without
/// building a group key per element.
#[derive(Debug)]
pub(super) struct Grouping {
    /// The group of each table series, an index into `keys`.
    pub(super) of_series: Vec<usize>,
    /// Group label sets, sorted (the order the per-step aggregation returns groups in).
    pub(super) keys: Vec<ResultLabels>,
}

impl Grouping {
    /// Groups `labels` by `key_of`.
    pub(super) fn new(
        labels: &[ResultLabels],
        key_of: impl Fn(&ResultLabels) -> ResultLabels,
    ) -> Grouping {
        let keys: Vec<ResultLabels> = labels.iter().map(key_of).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        let of_series = keys
            .iter()
            .map(|k| {
                sorted
                    .binary_search(k)
                    .expect("every key is in the sorted keys")
            })
            .collect();
        Grouping {
            of_series,
            keys: sorted,
        }
    }
}

/// One series' values over the steps, reused from series to series.
#[derive(Debug)]
pub(super) struct Column {
    values: Vec<f64>,
    present: Vec<bool>,
}

impl Column {
    pub(super) fn new(steps: usize) -> Column {
        Column {
            values: vec![0.0; steps],
            present: vec![false; steps],
        }
    }

    fn set(&mut self, i: usize, v: Option<f64>) {
        self.present[i] = v.is_some();
        self.values[i] = v.unwrap_or(0.0);
    }
}

/// An instant-vector selector's value at each time of `times` (non-decreasing): the
/// newest of `samples` (time-ordered, stale markers included) in the left-open lookback
/// window `(at - lookback_ms, at]`, none if that one is a stale marker. Returns the samples
/// loaded, as the per-step lookup counts them (one per step that finds a sample).
pub(super) fn lookback_column(
    samples: &[(i64, f64)],
    times: &[i64],
    lookback_ms: i64,
    out: &mut Column,
) -> u64 {
    debug_assert!(times.windows(2).all(|w| w[0] <= w[1]));
    let mut loaded = 0;
    let mut hi = 0; // samples[..hi] are at or before the current time
    for (i, &at) in times.iter().enumerate() {
        let min = at.saturating_sub(lookback_ms).saturating_add(1);
        while hi < samples.len() && samples[hi].0 <= at {
            hi += 1;
        }
        let newest = hi.checked_sub(1).map(|k| samples[k]);
        let found = newest.filter(|&(t, _)| t >= min);
        loaded += u64::from(found.is_some());
        out.set(
            i,
            found
                .filter(|&(_, v)| v.to_bits() != STALE_NAN_BITS)
                .map(|(_, v)| v),
        );
    }
    loaded
}

/// A range function over the left-open windows `(end - range_ms, end]` for each `end` of
/// `ends` (non-decreasing): `f(step, points)` of the window's samples without stale markers,
/// none where the window holds none. Returns the samples loaded: those in each window,
/// stale markers included, as the per-step selection counts them.
pub(super) fn window_column(
    samples: &[(i64, f64)],
    ends: &[i64],
    range_ms: i64,
    out: &mut Column,
    mut f: impl FnMut(usize, &[(i64, f64)]) -> Option<f64>,
) -> u64 {
    debug_assert!(ends.windows(2).all(|w| w[0] <= w[1]));
    let points: Vec<(i64, f64)> = samples
        .iter()
        .copied()
        .filter(|(_, v)| v.to_bits() != STALE_NAN_BITS)
        .collect();
    let mut loaded = 0;
    // Cursors into `samples` (for the count) and `points`: [lo, hi) lies in the window.
    let (mut all_lo, mut all_hi, mut lo, mut hi) = (0, 0, 0, 0);
    for (i, &end) in ends.iter().enumerate() {
        let start = end.saturating_sub(range_ms).saturating_add(1);
        let advance = |k: &mut usize, s: &[(i64, f64)], bound: i64, inclusive: bool| {
            while *k < s.len() && (s[*k].0 < bound || (inclusive && s[*k].0 == bound)) {
                *k += 1;
            }
        };
        advance(&mut all_lo, samples, start, false);
        advance(&mut all_hi, samples, end, true);
        advance(&mut lo, &points, start, false);
        advance(&mut hi, &points, end, true);
        loaded += all_hi.saturating_sub(all_lo) as u64;
        let window = &points[lo..hi.max(lo)];
        out.set(
            i,
            if window.is_empty() {
                None
            } else {
                f(i, window)
            },
        );
    }
    loaded
}

/// Nodes a range query may evaluate series at a time, by address (as the evaluator keys
/// its caches): instant-vector selectors and range functions of a matrix selector with
/// literal scalar arguments, outside subqueries (whose inner steps are not the query's).
pub(super) fn tabulable_nodes(expr: &Expr) -> HashSet<usize> {
    let mut out = HashSet::new();
    collect(expr, &mut out);
    out
}

fn collect(expr: &Expr, out: &mut HashSet<usize>) {
    match expr {
        Expr::VectorSelector(vs) => {
            out.insert(vs as *const VectorSelector as usize);
        }
        Expr::Call(c) => {
            if tabulable_call(c) {
                out.insert(c as *const Call as usize);
            }
            for a in &c.args.args {
                collect(a, out);
            }
        }
        Expr::Paren(p) => collect(&p.expr, out),
        Expr::Unary(u) => collect(&u.expr, out),
        Expr::Aggregate(a) => {
            collect(&a.expr, out);
            if let Some(p) = &a.param {
                collect(p, out);
            }
        }
        Expr::Binary(b) => {
            collect(&b.lhs, out);
            collect(&b.rhs, out);
        }
        Expr::Subquery(_)
        | Expr::MatrixSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::Extension(_) => {}
    }
}

/// A range function whose result at a step depends only on its window: not
/// `absent_over_time` (a vector-wide result) nor the smoothing functions (which check
/// their factors per step), and with number literals as other arguments.
fn tabulable_call(c: &Call) -> bool {
    let name = c.func.name;
    if !over_time::handles(name)
        || matches!(
            name,
            "absent_over_time" | "double_exponential_smoothing" | "holt_winters"
        )
    {
        return false;
    }
    let range_at = over_time::range_arg_index(name);
    let args = &c.args.args;
    let arity = if matches!(name, "quantile_over_time" | "predict_linear") {
        2
    } else {
        1
    };
    args.len() == arity
        && args.iter().enumerate().all(|(i, a)| {
            let a = unparen(a);
            if i == range_at {
                matches!(a, Expr::MatrixSelector(_))
            } else {
                matches!(a, Expr::NumberLiteral(_))
            }
        })
}

pub(super) fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(c: &Column) -> Vec<Option<f64>> {
        c.values
            .iter()
            .zip(&c.present)
            .map(|(&v, &p)| p.then_some(v))
            .collect()
    }

    #[test]
    fn grid_indexes_only_its_times() {
        let g = StepGrid::new(100, 400, 100);
        assert_eq!(g.len, 4);
        let idx: Vec<_> = [99, 100, 150, 300, 400, 500].map(|t| g.index(t)).into();
        assert_eq!(idx, vec![None, Some(0), None, Some(2), Some(3), None]);
        assert_eq!(g.time(3), 400);
        let g = StepGrid::new(i64::MAX - 10, i64::MAX, 5);
        assert_eq!((g.len, g.index(i64::MAX)), (3, Some(2)));
    }

    #[test]
    fn lookback_is_left_open_and_stale_markers_end_series() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        let samples = [(10, 1.0), (20, 2.0), (30, stale), (50, 5.0)];
        let mut c = Column::new(7);
        let loaded = lookback_column(&samples, &[5, 10, 19, 29, 30, 40, 55], 10, &mut c);
        assert_eq!(
            column(&c),
            vec![None, Some(1.0), Some(1.0), Some(2.0), None, None, Some(5.0)]
        );
        assert_eq!(
            loaded, 5,
            "the stale marker counts as loaded, the gap at 40 not"
        );
    }

    #[test]
    fn windows_slide_and_count_stale_markers() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        let samples = [(10, 1.0), (20, 2.0), (30, stale), (40, 4.0)];
        let mut c = Column::new(5);
        let loaded = window_column(&samples, &[10, 20, 30, 30, 60], 15, &mut c, |_, p| {
            Some(p.iter().map(|&(_, v)| v).sum())
        });
        assert_eq!(
            column(&c),
            vec![Some(1.0), Some(3.0), Some(2.0), Some(2.0), None]
        );
        assert_eq!(loaded, 1 + 2 + 2 + 2);
    }
}

//! Functions of a range vector (`rate`, `*_over_time`, `deriv`, …), each as the Prometheus
//! 3 function of the same name in `promql/functions.go`.

use promql_parser::parser::Expr;

use super::eval::{drop_name, kahan_inc, Elem, Evaluator, RangeArg, Val};
use super::quantile::quantile;
use super::QueryError;

/// Whether `name` is a function of one range vector handled here.
pub(super) fn handles(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "increase"
            | "delta"
            | "irate"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "changes"
            | "resets"
            | "sum_over_time"
            | "avg_over_time"
            | "min_over_time"
            | "max_over_time"
            | "count_over_time"
            | "last_over_time"
            | "first_over_time"
            | "ts_of_min_over_time"
            | "ts_of_max_over_time"
            | "ts_of_first_over_time"
            | "ts_of_last_over_time"
            | "present_over_time"
            | "quantile_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "mad_over_time"
            | "absent_over_time"
            | "double_exponential_smoothing"
            | "holt_winters"
    )
}

/// Evaluates the range function `name` at `t`.
pub(super) fn call(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[Box<Expr>],
    t: i64,
) -> Result<Vec<Elem>, QueryError> {
    let range_at = range_arg_index(name);
    let range_expr = args
        .get(range_at)
        .ok_or_else(|| QueryError::bad_data(format!("function `{name}` misses its range")))?;
    let scalars = scalar_args(ev, name, args, range_at, t)?;
    let arg = ev.range_arg(range_expr, t)?;
    if name == "absent_over_time" {
        return Ok(absent_over_time(range_expr, &arg));
    }
    // Prometheus checks the factors per series: an empty argument is no error.
    if matches!(name, "double_exponential_smoothing" | "holt_winters") && !arg.series.is_empty() {
        check_smoothing_factors(&scalars)?;
    }
    let RangeArg {
        series,
        end_ms,
        range_ms,
    } = arg;
    let at = At {
        window: Window {
            start_ms: end_ms.saturating_sub(range_ms),
            end_ms,
            range_ms,
        },
        t_ms: t,
        scalars: &scalars,
    };
    let mut out = Vec::new();
    for s in series {
        let Some(v) = of_series(name, &s.points, &at) else {
            continue;
        };
        // Prometheus keeps the metric name only for the functions returning a sample.
        let labels = if keeps_name(name) {
            s.labels
        } else {
            drop_name(s.labels)
        };
        out.push(Elem { labels, v });
    }
    Ok(out)
}

/// Which argument of `name` is the range vector: `quantile_over_time(φ, range)` is the one
/// with its range second.
pub(super) fn range_arg_index(name: &str) -> usize {
    usize::from(name == "quantile_over_time")
}

/// The range function `name` of one series' points (without stale markers) in the window
/// `(end_ms - range_ms, end_ms]`, evaluated at `t_ms`; `None` drops the series.
pub(super) fn series_value(
    name: &str,
    points: &[(i64, f64)],
    (end_ms, range_ms): (i64, i64),
    t_ms: i64,
    scalars: &[f64],
) -> Option<f64> {
    let at = At {
        window: Window {
            start_ms: end_ms.saturating_sub(range_ms),
            end_ms,
            range_ms,
        },
        t_ms,
        scalars,
    };
    of_series(name, points, &at)
}

/// Whether the function `name` keeps the metric name of its series.
pub(super) fn keeps_name(name: &str) -> bool {
    matches!(name, "last_over_time" | "first_over_time")
}

/// The arguments other than the range, evaluated at `t`: all scalars.
pub(super) fn scalar_args(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[Box<Expr>],
    range_at: usize,
    t: i64,
) -> Result<Vec<f64>, QueryError> {
    let mut scalars = Vec::new();
    for (i, a) in args.iter().enumerate().filter(|&(i, _)| i != range_at) {
        match ev.eval(a, t)? {
            Val::Scalar(v) => scalars.push(v),
            _ => {
                return Err(QueryError::bad_data(format!(
                    "function `{name}` expects a scalar argument {}",
                    i + 1
                )))
            }
        }
    }
    Ok(scalars)
}

/// `absent_over_time`: 1 with the selector's equality labels if no series has samples.
fn absent_over_time(range_expr: &Expr, arg: &RangeArg) -> Vec<Elem> {
    if !arg.series.is_empty() {
        return Vec::new();
    }
    let labels = match range_expr {
        Expr::MatrixSelector(ms) => super::labels::absent_labels(&ms.vs),
        _ => Vec::new(),
    };
    vec![Elem { labels, v: 1.0 }]
}

/// What a function of one series needs besides its points.
struct At<'s> {
    window: Window,
    /// The evaluation time (the intercept of `predict_linear`).
    t_ms: i64,
    scalars: &'s [f64],
}

/// The function `name` of one series' points; `None` drops the series.
fn of_series(name: &str, p: &[(i64, f64)], at: &At<'_>) -> Option<f64> {
    let scalar = |i: usize| at.scalars.get(i).copied().unwrap_or(f64::NAN);
    match name {
        "rate" => extrapolated_rate(p, at.window, true, true),
        "increase" => extrapolated_rate(p, at.window, true, false),
        "delta" => extrapolated_rate(p, at.window, false, false),
        "irate" => instant_value(p, true),
        "idelta" => instant_value(p, false),
        "deriv" => (p.len() >= 2).then(|| linear_regression(p, p[0].0).0),
        "predict_linear" => (p.len() >= 2).then(|| {
            let (slope, intercept) = linear_regression(p, at.t_ms);
            slope * scalar(0) + intercept
        }),
        "changes" => Some(count_pairs(p, |a, b| a != b && !(a.is_nan() && b.is_nan()))),
        "resets" => Some(count_pairs(p, |prev, cur| cur < prev)),
        "sum_over_time" => Some(sum(p)),
        "avg_over_time" => Some(avg(p)),
        "min_over_time" => Some(fold_nan_aware(p, |acc, v| acc > v)),
        "max_over_time" => Some(fold_nan_aware(p, |acc, v| acc < v)),
        "count_over_time" => Some(p.len() as f64),
        "present_over_time" => Some(1.0),
        "quantile_over_time" => Some(quantile(scalar(0), &mut values(p))),
        "stddev_over_time" => Some(variance(p).sqrt()),
        "stdvar_over_time" => Some(variance(p)),
        "mad_over_time" => Some(median_absolute_deviation(p)),
        "double_exponential_smoothing" | "holt_winters" => {
            double_exponential_smoothing(p, scalar(0), scalar(1))
        }
        "first_over_time" => p.first().map(|&(_, v)| v),
        // The last of equal extremes, as Prometheus compares with `<=`/`>=`.
        "ts_of_min_over_time" => Some(ts_of_extreme(p, |cur, acc| cur <= acc)),
        "ts_of_max_over_time" => Some(ts_of_extreme(p, |cur, acc| cur >= acc)),
        "ts_of_first_over_time" => p.first().map(|&(t, _)| t as f64 / 1000.0),
        "ts_of_last_over_time" => p.last().map(|&(t, _)| t as f64 / 1000.0),
        _ => p.last().map(|&(_, v)| v), // last_over_time
    }
}

/// The left-open window `(start_ms, end_ms]` a range function looked at.
#[derive(Clone, Copy, Debug)]
struct Window {
    start_ms: i64,
    end_ms: i64,
    range_ms: i64,
}

fn values(points: &[(i64, f64)]) -> Vec<f64> {
    points.iter().map(|&(_, v)| v).collect()
}

/// Prometheus' `sum_over_time`: Kahan summation.
fn sum(points: &[(i64, f64)]) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for &(_, v) in points {
        (s, c) = kahan_inc(v, s, c);
    }
    if s.is_infinite() {
        s
    } else {
        s + c
    }
}

/// Prometheus' `avg_over_time`: a Kahan sum divided at the end, switching to an
/// incremental mean only if the sum would overflow. (Its incremental step differs from
/// the `avg` aggregation's, as in Prometheus.)
fn avg(points: &[(i64, f64)]) -> f64 {
    let Some(&(_, first)) = points.first() else {
        return f64::NAN;
    };
    let (mut sum, mut c, mut mean) = (first, 0.0, 0.0);
    let mut count = 1.0;
    let mut incremental = false;
    for (i, &(_, v)) in points.iter().enumerate().skip(1) {
        count = (i + 1) as f64;
        if !incremental {
            let (s, nc) = kahan_inc(v, sum, c);
            if !s.is_infinite() {
                (sum, c) = (s, nc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

/// Prometheus' `varianceOverTime`: Welford's online algorithm with Kahan summation.
fn variance(points: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, v) in points {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Prometheus' `mad_over_time`: the median of the absolute deviations from the median.
fn median_absolute_deviation(points: &[(i64, f64)]) -> f64 {
    // A NaN makes the median, and so the deviation, undefined.
    if points.iter().any(|p| p.1.is_nan()) {
        return f64::NAN;
    }
    let median = quantile(0.5, &mut values(points));
    let mut deviations: Vec<f64> = points.iter().map(|&(_, v)| (v - median).abs()).collect();
    quantile(0.5, &mut deviations)
}

/// Seconds of the sample `replaces` picks over all before it (a NaN so far is replaced).
fn ts_of_extreme(points: &[(i64, f64)], replaces: fn(f64, f64) -> bool) -> f64 {
    let Some(&(mut t_acc, mut acc)) = points.first() else {
        return f64::NAN;
    };
    for &(t, v) in points {
        if replaces(v, acc) || acc.is_nan() {
            (t_acc, acc) = (t, v);
        }
    }
    t_acc as f64 / 1000.0
}

/// Consecutive pairs `(previous, current)` for which `counts` holds.
fn count_pairs(points: &[(i64, f64)], counts: fn(f64, f64) -> bool) -> f64 {
    points.windows(2).filter(|w| counts(w[0].1, w[1].1)).count() as f64
}

/// Min or max where a NaN so far is replaced by any later value, as Prometheus.
fn fold_nan_aware(points: &[(i64, f64)], replace: fn(f64, f64) -> bool) -> f64 {
    let mut acc = points.first().map_or(f64::NAN, |p| p.1);
    for &(_, v) in points {
        if replace(acc, v) || acc.is_nan() {
            acc = v;
        }
    }
    acc
}

/// Prometheus' `linearRegression`: least squares with Kahan sums, x in seconds relative
/// to `intercept_ms`; a constant series has slope 0 (NaN if the constant is infinite).
fn linear_regression(points: &[(i64, f64)], intercept_ms: i64) -> (f64, f64) {
    let init_y = points.first().map_or(f64::NAN, |p| p.1);
    let mut const_y = true;
    let mut n = 0.0;
    let (mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    for (i, &(t, y)) in points.iter().enumerate() {
        if const_y && i > 0 && y != init_y {
            const_y = false;
        }
        n += 1.0;
        // In i128: the intercept is the evaluation time, which may be far from the samples.
        let x = (i128::from(t) - i128::from(intercept_ms)) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(y, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * y, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y) = (sum_x + c_x, sum_y + c_y);
    let (sum_xy, sum_x2) = (sum_xy + c_xy, sum_x2 + c_x2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// Prometheus refuses smoothing and trend factors outside (0, 1), at run time.
fn check_smoothing_factors(scalars: &[f64]) -> Result<(), QueryError> {
    let sf = scalars.first().copied().unwrap_or(f64::NAN);
    let tf = scalars.get(1).copied().unwrap_or(f64::NAN);
    // As in Go, a NaN factor passes (and makes the result NaN).
    if sf <= 0.0 || sf >= 1.0 {
        return Err(QueryError::execution(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
        )));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(QueryError::execution(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
        )));
    }
    Ok(())
}

/// Prometheus' `double_exponential_smoothing` (formerly `holt_winters`).
fn double_exponential_smoothing(points: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, points[0].1);
    let mut b = points[1].1 - points[0].1;
    for (i, &(_, v)) in points.iter().enumerate().skip(1) {
        let x = sf * v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}

/// Prometheus' `extrapolatedRate`: the change over the window, corrected for counter
/// resets, extrapolated towards the window edges when samples run close to them.
fn extrapolated_rate(
    points: &[(i64, f64)],
    w: Window,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    let (&(first_t, first_v), &(last_t, last_v)) = (points.first()?, points.last()?);
    if points.len() < 2 {
        return None;
    }
    let mut result = last_v - first_v;
    if is_counter {
        // A drop means the counter restarted from zero: add back what it had reached.
        for pair in points.windows(2) {
            if pair[1].1 < pair[0].1 {
                result += pair[0].1;
            }
        }
    }
    // In i128: a window reaching far back starts near i64::MIN.
    let seconds = |from: i64, to: i64| (i128::from(to) - i128::from(from)) as f64 / 1000.0;
    let mut duration_to_start = seconds(w.start_ms, first_t);
    let mut duration_to_end = seconds(last_t, w.end_ms);
    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let average_between_samples = sampled_interval / (points.len() - 1) as f64;
    let extrapolation_threshold = average_between_samples * 1.1;
    if duration_to_start >= extrapolation_threshold {
        duration_to_start = average_between_samples / 2.0;
    }
    if is_counter && result > 0.0 && first_v >= 0.0 {
        // A counter cannot go below zero: do not extrapolate past where it would be zero.
        let duration_to_zero = sampled_interval * (first_v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= extrapolation_threshold {
        duration_to_end = average_between_samples / 2.0;
    }
    let mut factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    if is_rate {
        factor /= w.range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// Prometheus' `instantValue` (irate, idelta): from the last two samples only.
fn instant_value(points: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    let [.., (prev_t, prev_v), (last_t, last_v)] = points else {
        return None;
    };
    let mut v = if is_rate && last_v < prev_v {
        *last_v
    } else {
        last_v - prev_v
    };
    let interval_ms = last_t - prev_t;
    if interval_ms == 0 {
        return None;
    }
    if is_rate {
        v /= interval_ms as f64 / 1000.0;
    }
    Some(v)
}

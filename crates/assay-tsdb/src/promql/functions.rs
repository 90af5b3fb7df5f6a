//! PromQL functions. Each follows the Prometheus 3 implementation of the same name.

use promql_parser::parser::{Call, Expr, MatrixSelector};

use super::eval::{check_unique, drop_name, duration_ms, Elem, Evaluator, KahanSum, Val};
use super::QueryError;

/// Evaluates a function call at time `t`.
pub(super) fn call(ev: &mut Evaluator<'_>, c: &Call, t: i64) -> Result<Val, QueryError> {
    let name = c.func.name;
    let args = &c.args.args;
    let out = match name {
        "time" => return Ok(Val::Scalar(t as f64 / 1000.0)),
        "vector" => {
            let v = scalar_arg(ev, args, 0, t, name)?;
            return Ok(Val::Vector(vec![Elem {
                labels: Vec::new(),
                v,
            }]));
        }
        "scalar" => {
            let elems = vector_arg(ev, args, 0, t, name)?;
            return Ok(Val::Scalar(match elems.as_slice() {
                [one] => one.v,
                _ => f64::NAN,
            }));
        }
        "abs" | "ceil" | "floor" | "sqrt" | "exp" | "ln" | "log2" | "log10" => {
            let elems = vector_arg(ev, args, 0, t, name)?;
            let f = math_fn(name);
            elems
                .into_iter()
                .map(|e| Elem {
                    labels: drop_name(e.labels),
                    v: f(e.v),
                })
                .collect()
        }
        "rate" | "increase" | "delta" | "irate" | "idelta" | "sum_over_time" | "avg_over_time"
        | "min_over_time" | "max_over_time" | "count_over_time" | "last_over_time"
        | "present_over_time" => range_function(ev, name, args, t)?,
        other => return Err(QueryError::unsupported(&format!("function `{other}`"))),
    };
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

fn math_fn(name: &str) -> fn(f64) -> f64 {
    match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "sqrt" => f64::sqrt,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log2" => f64::log2,
        _ => f64::log10,
    }
}

fn arg<'e>(args: &'e [Box<Expr>], i: usize, name: &str) -> Result<&'e Expr, QueryError> {
    args.get(i)
        .map(|a| a.as_ref())
        .ok_or_else(|| QueryError::bad_data(format!("function `{name}` misses argument {}", i + 1)))
}

fn scalar_arg(
    ev: &mut Evaluator<'_>,
    args: &[Box<Expr>],
    i: usize,
    t: i64,
    name: &str,
) -> Result<f64, QueryError> {
    match ev.eval(arg(args, i, name)?, t)? {
        Val::Scalar(v) => Ok(v),
        _ => Err(QueryError::bad_data(format!(
            "function `{name}` expects a scalar argument"
        ))),
    }
}

fn vector_arg(
    ev: &mut Evaluator<'_>,
    args: &[Box<Expr>],
    i: usize,
    t: i64,
    name: &str,
) -> Result<Vec<Elem>, QueryError> {
    match ev.eval(arg(args, i, name)?, t)? {
        Val::Vector(v) => Ok(v),
        _ => Err(QueryError::bad_data(format!(
            "function `{name}` expects an instant vector"
        ))),
    }
}

/// The matrix selector under optional parentheses; subqueries are not supported.
fn matrix_selector<'e>(e: &'e Expr, name: &str) -> Result<&'e MatrixSelector, QueryError> {
    match e {
        Expr::MatrixSelector(ms) => Ok(ms),
        Expr::Paren(p) => matrix_selector(&p.expr, name),
        Expr::Subquery(_) => Err(QueryError::unsupported("subquery")),
        _ => Err(QueryError::bad_data(format!(
            "function `{name}` expects a range vector"
        ))),
    }
}

fn range_function(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[Box<Expr>],
    t: i64,
) -> Result<Vec<Elem>, QueryError> {
    let ms = matrix_selector(arg(args, 0, name)?, name)?;
    let range_end = ev.selector_time(&ms.vs, t);
    let range_ms = duration_ms(&ms.range);
    let window = Window {
        start_ms: range_end.saturating_sub(range_ms),
        end_ms: range_end,
        range_ms,
    };
    let mut out = Vec::new();
    for series in ev.select_range(ms, t)? {
        let p = &series.points;
        let v = match name {
            "rate" => extrapolated_rate(p, window, true, true),
            "increase" => extrapolated_rate(p, window, true, false),
            "delta" => extrapolated_rate(p, window, false, false),
            "irate" => instant_value(p, true),
            "idelta" => instant_value(p, false),
            "sum_over_time" => Some(kahan(p).value()),
            "avg_over_time" => Some(kahan(p).value() / p.len() as f64),
            "min_over_time" => Some(fold_nan_aware(p, |acc, v| acc > v)),
            "max_over_time" => Some(fold_nan_aware(p, |acc, v| acc < v)),
            "count_over_time" => Some(p.len() as f64),
            "present_over_time" => Some(1.0),
            _ => p.last().map(|&(_, v)| v), // last_over_time
        };
        let Some(v) = v else { continue };
        // Prometheus keeps the metric name only for last_over_time.
        let labels = if name == "last_over_time" {
            series.labels
        } else {
            drop_name(series.labels)
        };
        out.push(Elem { labels, v });
    }
    Ok(out)
}

/// The left-open window `(start_ms, end_ms]` a range function looked at.
#[derive(Clone, Copy, Debug)]
struct Window {
    start_ms: i64,
    end_ms: i64,
    range_ms: i64,
}

fn kahan(points: &[(i64, f64)]) -> KahanSum {
    let mut s = KahanSum::default();
    for &(_, v) in points {
        s.add(v);
    }
    s
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
        let mut prev = 0.0;
        for &(_, v) in points {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let mut duration_to_start = (first_t - w.start_ms) as f64 / 1000.0;
    let mut duration_to_end = (w.end_ms - last_t) as f64 / 1000.0;
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

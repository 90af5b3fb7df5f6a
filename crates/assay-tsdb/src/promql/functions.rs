//! PromQL functions. Each follows the Prometheus 3 implementation of the same name; the
//! ones of a range vector are in `over_time.rs`.

use std::cmp::Ordering;

use promql_parser::parser::{Call, Expr};

use super::eval::{check_unique, drop_name, Elem, Evaluator, Val};
use super::quantile::{bucket_fraction, bucket_quantile, Bucket};
use super::{calendar, labels, over_time, QueryError, ResultLabels};

/// Evaluates a function call at time `t`.
pub(super) fn call(ev: &mut Evaluator<'_>, c: &Call, t: i64) -> Result<Val, QueryError> {
    let name = c.func.name;
    let args = &c.args.args;
    let out = match name {
        "time" => return Ok(Val::Scalar(t as f64 / 1000.0)),
        "pi" => return Ok(Val::Scalar(std::f64::consts::PI)),
        "start" | "end" | "range" | "step" => {
            let (start, end, step) = ev.query_times();
            let ms = match name {
                "start" => start,
                "end" => end,
                "range" => end.saturating_sub(start),
                _ => step,
            };
            return Ok(Val::Scalar(ms as f64 / 1000.0));
        }
        "min_of" | "max_of" => {
            let (a, b) = (
                scalar_arg(ev, args, 0, t, name)?,
                scalar_arg(ev, args, 1, t, name)?,
            );
            return Ok(Val::Scalar(if name == "min_of" {
                go_min(a, b)
            } else {
                go_max(a, b)
            }));
        }
        "scalar" => {
            let elems = vector_arg(ev, args, 0, t, name)?;
            return Ok(Val::Scalar(match elems.as_slice() {
                [one] => one.v,
                _ => f64::NAN,
            }));
        }
        "vector" => vec![Elem {
            labels: Vec::new(),
            v: scalar_arg(ev, args, 0, t, name)?,
        }],
        // Their order is the result: no duplicate check can apply, and none is needed.
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
            return ordering(ev, name, args, t).map(Val::Vector)
        }
        "timestamp" => timestamp(ev, args, t)?,
        // Assay keeps no start timestamps: empty, as Prometheus without them.
        "start_timestamp" => {
            vector_arg(ev, args, 0, t, name)?;
            Vec::new()
        }
        "absent" => absent(ev, args, t)?,
        "label_replace" | "label_join" => label_function(ev, name, args, t)?,
        "round" | "clamp" | "clamp_min" | "clamp_max" => rounding(ev, name, args, t)?,
        "minute" | "hour" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month"
        | "month" | "year" => date_function(ev, name, args, t)?,
        _ if name.starts_with("histogram_") => histogram_function(ev, name, args, t)?,
        _ if over_time::handles(name) => match ev.range_function_table(c, t)? {
            Some((elems, true)) => return Ok(Val::Vector(elems)),
            Some((elems, false)) => elems,
            None => over_time::call(ev, name, args, t)?,
        },
        _ => match math_fn(name) {
            Some(f) => map_values(vector_arg(ev, args, 0, t, name)?, f),
            None => return Err(QueryError::unsupported(&format!("function `{name}`"))),
        },
    };
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

/// `sort`, `sort_desc` (by value, NaN last either way) and `sort_by_label(_desc)`.
fn ordering(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[Box<Expr>],
    t: i64,
) -> Result<Vec<Elem>, QueryError> {
    let mut elems = vector_arg(ev, args, 0, t, name)?;
    if name.starts_with("sort_by_label") {
        let names = string_args(ev, args, 1, t, name)?;
        let desc = name == "sort_by_label_desc";
        return Ok(labels::sort_by_label(elems, &names, desc));
    }
    let desc = name == "sort_desc";
    elems.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if desc => b.v.total_cmp(&a.v),
        _ => a.v.total_cmp(&b.v),
    });
    Ok(elems)
}

/// `absent(v)`: nothing if `v` has elements, else 1 with the selector's equality labels.
fn absent(ev: &mut Evaluator<'_>, args: &[Box<Expr>], t: i64) -> Result<Vec<Elem>, QueryError> {
    if !vector_arg(ev, args, 0, t, "absent")?.is_empty() {
        return Ok(Vec::new());
    }
    // Prometheus looks at the argument as written: parentheses hide the selector.
    let labels = match args.first().map(|a| a.as_ref()) {
        Some(Expr::VectorSelector(vs)) => labels::absent_labels(vs),
        _ => Vec::new(),
    };
    Ok(vec![Elem { labels, v: 1.0 }])
}

/// `label_replace(v, dst, replacement, src, regex)` and `label_join(v, dst, sep, src...)`.
fn label_function(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[Box<Expr>],
    t: i64,
) -> Result<Vec<Elem>, QueryError> {
    let elems = vector_arg(ev, args, 0, t, name)?;
    let s = string_args(ev, args, 1, t, name)?;
    match (name, s.as_slice()) {
        ("label_replace", [dst, repl, src, re]) => labels::label_replace(elems, dst, repl, src, re),
        ("label_join", [dst, sep, srcs @ ..]) => labels::label_join(elems, dst, sep, srcs),
        _ => Err(QueryError::bad_data(format!(
            "wrong number of arguments in call to `{name}`"
        ))),
    }
}

/// `round(v, to_nearest)`, `clamp(v, min, max)`, `clamp_min` and `clamp_max`.
fn rounding(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[Box<Expr>],
    t: i64,
) -> Result<Vec<Elem>, QueryError> {
    let elems = vector_arg(ev, args, 0, t, name)?;
    let mut bound = |i: usize| scalar_arg(ev, args, i, t, name);
    Ok(match name {
        "round" => {
            let to_nearest = if args.len() > 1 { bound(1)? } else { 1.0 };
            // Prometheus multiplies by the inverse: fewer float errors than dividing.
            let inverse = 1.0 / to_nearest;
            map_values(elems, |v| (v * inverse + 0.5).floor() / inverse)
        }
        "clamp" => {
            let (min, max) = (bound(1)?, bound(2)?);
            if max < min {
                return Ok(Vec::new());
            }
            map_values(elems, |v| go_max(min, go_min(max, v)))
        }
        "clamp_min" => {
            let min = bound(1)?;
            map_values(elems, |v| go_max(v, min))
        }
        _ => {
            let max = bound(1)?;
            map_values(elems, |v| go_min(v, max))
        }
    })
}

/// The date functions; without an argument, of `vector(time())` in whole seconds.
fn date_function(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[Box<Expr>],
    t: i64,
) -> Result<Vec<Elem>, QueryError> {
    if args.is_empty() {
        let v = calendar::field(name, t.div_euclid(1000)).unwrap_or(f64::NAN);
        return Ok(vec![Elem {
            labels: Vec::new(),
            v,
        }]);
    }
    let elems = vector_arg(ev, args, 0, t, name)?;
    Ok(map_values(elems, |v| {
        calendar::field(name, calendar::go_seconds(v)).unwrap_or(f64::NAN)
    }))
}

/// `histogram_quantile` and `histogram_fraction` over classic `le` buckets; the functions
/// of native histograms only see floats here, which Prometheus skips: nothing.
fn histogram_function(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[Box<Expr>],
    t: i64,
) -> Result<Vec<Elem>, QueryError> {
    match name {
        "histogram_quantile" => {
            let q = scalar_arg(ev, args, 0, t, name)?;
            let elems = vector_arg(ev, args, 1, t, name)?;
            Ok(per_histogram(elems, |b| bucket_quantile(q, b)))
        }
        "histogram_fraction" => {
            let lower = scalar_arg(ev, args, 0, t, name)?;
            let upper = scalar_arg(ev, args, 1, t, name)?;
            let elems = vector_arg(ev, args, 2, t, name)?;
            Ok(per_histogram(elems, |b| bucket_fraction(lower, upper, b)))
        }
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            vector_arg(ev, args, 0, t, name)?;
            Ok(Vec::new())
        }
        _ => Err(QueryError::unsupported(&format!("function `{name}`"))),
    }
}

/// Applies `f` to every value; the metric name goes, as for every such function.
fn map_values(elems: Vec<Elem>, f: impl Fn(f64) -> f64) -> Vec<Elem> {
    elems
        .into_iter()
        .map(|e| Elem {
            labels: drop_name(e.labels),
            v: f(e.v),
        })
        .collect()
}

fn math_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "sqrt" => f64::sqrt,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        // -1, 1, or the value itself for ±0 and NaN.
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    })
}

/// Go's `math.Max`: NaN wins over finite values, +Inf over NaN, and +0 over -0.
fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() {
            y
        } else {
            x
        }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min`: NaN wins over finite values, -Inf over NaN, and -0 over +0.
fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() {
            x
        } else {
            y
        }
    } else if x < y {
        x
    } else {
        y
    }
}

/// `timestamp(v)`: a plain selector's samples report their own time, anything else the
/// evaluation time, as Prometheus.
fn timestamp(ev: &mut Evaluator<'_>, args: &[Box<Expr>], t: i64) -> Result<Vec<Elem>, QueryError> {
    let mut e = arg(args, 0, "timestamp")?;
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    if let Expr::VectorSelector(vs) = e {
        let elems = ev.select_instant(vs, t)?;
        return Ok(elems
            .into_iter()
            .map(|(e, ts)| Elem {
                labels: drop_name(e.labels),
                v: ts as f64 / 1000.0,
            })
            .collect());
    }
    let elems = vector_arg(ev, args, 0, t, "timestamp")?;
    Ok(map_values(elems, |_| t as f64 / 1000.0))
}

/// `f` of each classic histogram's buckets, labelled without `le` and the name.
fn per_histogram(elems: Vec<Elem>, f: impl Fn(&mut Vec<Bucket>) -> f64) -> Vec<Elem> {
    classic_histograms(elems)
        .into_iter()
        .map(|(labels, mut buckets)| Elem {
            labels: drop_name(labels),
            v: f(&mut buckets),
        })
        .collect()
}

/// Classic histograms: series grouped by all labels but `le` (the name included, as
/// Prometheus groups), in order of first appearance; a series whose `le` does not parse
/// as a float is skipped.
fn classic_histograms(elems: Vec<Elem>) -> Vec<(ResultLabels, Vec<Bucket>)> {
    let mut groups: Vec<(ResultLabels, Vec<Bucket>)> = Vec::new();
    let mut index: std::collections::HashMap<ResultLabels, usize> = Default::default();
    for e in elems {
        let le = super::eval::label_value(&e.labels, "le");
        let Some(upper) = parse_go_float(le) else {
            continue;
        };
        let key: ResultLabels = e.labels.into_iter().filter(|(n, _)| n != "le").collect();
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(Bucket { upper, count: e.v });
    }
    groups
}

/// Go's `strconv.ParseFloat` for the forms `le` values take: decimals, exponents, and
/// case-insensitive `inf`/`infinity`/`nan` with an optional sign.
fn parse_go_float(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let special = ["inf", "infinity", "nan"]
        .iter()
        .any(|w| unsigned.eq_ignore_ascii_case(w));
    let plain = !unsigned.is_empty()
        && unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !(special || plain) {
        return None;
    }
    s.parse::<f64>().ok()
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

/// The string arguments from position `from` on.
fn string_args(
    ev: &mut Evaluator<'_>,
    args: &[Box<Expr>],
    from: usize,
    t: i64,
    name: &str,
) -> Result<Vec<String>, QueryError> {
    let mut out = Vec::new();
    for a in args.iter().skip(from) {
        match ev.eval(a, t)? {
            Val::Str(s) => out.push(s),
            _ => {
                return Err(QueryError::bad_data(format!(
                    "function `{name}` expects string arguments"
                )))
            }
        }
    }
    Ok(out)
}

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
        "sort" | "sort_desc" => {
            let mut elems = vector_arg(ev, args, 0, t, name)?;
            let desc = name == "sort_desc";
            // Ascending or descending, NaN last either way.
            elems.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ if desc => b.v.total_cmp(&a.v),
                _ => a.v.total_cmp(&b.v),
            });
            return Ok(Val::Vector(elems));
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let elems = vector_arg(ev, args, 0, t, name)?;
            let names = string_args(ev, args, 1, t, name)?;
            let desc = name == "sort_by_label_desc";
            return Ok(Val::Vector(labels::sort_by_label(elems, &names, desc)));
        }
        "timestamp" => timestamp(ev, args, t)?,
        "absent" => {
            let elems = vector_arg(ev, args, 0, t, name)?;
            if !elems.is_empty() {
                Vec::new()
            } else {
                let labels = match args.first().map(|a| a.as_ref()) {
                    Some(Expr::VectorSelector(vs)) => labels::absent_labels(vs),
                    _ => Vec::new(),
                };
                vec![Elem { labels, v: 1.0 }]
            }
        }
        "label_replace" => {
            let elems = vector_arg(ev, args, 0, t, name)?;
            let s = string_args(ev, args, 1, t, name)?;
            let [dst, repl, src, re] = s.as_slice() else {
                return Err(QueryError::bad_data("label_replace needs 5 arguments"));
            };
            labels::label_replace(elems, dst, repl, src, re)?
        }
        "label_join" => {
            let elems = vector_arg(ev, args, 0, t, name)?;
            let s = string_args(ev, args, 1, t, name)?;
            let [dst, sep, srcs @ ..] = s.as_slice() else {
                return Err(QueryError::bad_data(
                    "label_join needs at least 3 arguments",
                ));
            };
            labels::label_join(elems, dst, sep, srcs)?
        }
        "round" => {
            let elems = vector_arg(ev, args, 0, t, name)?;
            let to_nearest = match args.len() {
                1 => 1.0,
                _ => scalar_arg(ev, args, 1, t, name)?,
            };
            // Prometheus multiplies by the inverse: fewer float errors than dividing.
            let inverse = 1.0 / to_nearest;
            map_values(elems, |v| (v * inverse + 0.5).floor() / inverse)
        }
        "clamp" => {
            let elems = vector_arg(ev, args, 0, t, name)?;
            let min = scalar_arg(ev, args, 1, t, name)?;
            let max = scalar_arg(ev, args, 2, t, name)?;
            if max < min {
                Vec::new()
            } else {
                map_values(elems, |v| go_max(min, go_min(max, v)))
            }
        }
        "clamp_min" | "clamp_max" => {
            let elems = vector_arg(ev, args, 0, t, name)?;
            let bound = scalar_arg(ev, args, 1, t, name)?;
            if name == "clamp_min" {
                map_values(elems, |v| go_max(v, bound))
            } else {
                map_values(elems, |v| go_min(v, bound))
            }
        }
        "minute" | "hour" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month"
        | "month" | "year" => {
            if args.is_empty() {
                // Without an argument: of `vector(time())`, in whole seconds.
                let v = calendar::field(name, t.div_euclid(1000)).unwrap_or(f64::NAN);
                vec![Elem {
                    labels: Vec::new(),
                    v,
                }]
            } else {
                let elems = vector_arg(ev, args, 0, t, name)?;
                map_values(elems, |v| {
                    calendar::field(name, calendar::go_seconds(v)).unwrap_or(f64::NAN)
                })
            }
        }
        "histogram_quantile" => {
            let q = scalar_arg(ev, args, 0, t, name)?;
            let elems = vector_arg(ev, args, 1, t, name)?;
            histogram_quantile(q, elems)
        }
        "histogram_fraction" => {
            let lower = scalar_arg(ev, args, 0, t, name)?;
            let upper = scalar_arg(ev, args, 1, t, name)?;
            let elems = vector_arg(ev, args, 2, t, name)?;
            classic_histograms(elems)
                .into_iter()
                .map(|(labels, mut buckets)| Elem {
                    labels: drop_name(labels),
                    v: bucket_fraction(lower, upper, &mut buckets),
                })
                .collect()
        }
        // Native histograms only: Assay stores none, and float samples are skipped.
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            for i in 0..args.len() {
                ev.eval(arg(args, i, name)?, t)?;
            }
            Vec::new()
        }
        _ if over_time::handles(name) => over_time::call(ev, name, args, t)?,
        _ => match math_fn(name) {
            Some(f) => map_values(vector_arg(ev, args, 0, t, name)?, f),
            None => return Err(QueryError::unsupported(&format!("function `{name}`"))),
        },
    };
    check_unique(&out)?;
    Ok(Val::Vector(out))
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

/// `histogram_quantile(φ, buckets)` over classic buckets.
fn histogram_quantile(q: f64, elems: Vec<Elem>) -> Vec<Elem> {
    classic_histograms(elems)
        .into_iter()
        .map(|(labels, mut buckets)| Elem {
            labels: drop_name(labels),
            v: bucket_quantile(q, &mut buckets),
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

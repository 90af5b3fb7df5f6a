//! Query results as both servers' HTTP APIs return them, and their comparison.

use std::collections::BTreeMap;

/// A series' labels; a map, so label order in the JSON does not matter.
pub type Labels = BTreeMap<String, String>;

/// One answer of `/api/v1/query` or `/api/v1/query_range`, normalised.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Scalar(i64, f64),
    String(i64, String),
    /// Samples in the order the server returned them.
    Vector(Vec<(Labels, i64, f64)>),
    Matrix(Vec<(Labels, Vec<(i64, f64)>)>),
    /// An API error: its `errorType` (or `http <status>` when the body had none).
    Error {
        kind: String,
        message: String,
    },
}

impl Answer {
    fn type_name(&self) -> &'static str {
        match self {
            Answer::Scalar(..) => "scalar",
            Answer::String(..) => "string",
            Answer::Vector(_) => "vector",
            Answer::Matrix(_) => "matrix",
            Answer::Error { .. } => "error",
        }
    }
}

/// How close two sample values must be.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// Relative to the larger magnitude.
    pub rel: f64,
    /// Absolute, for values near zero.
    pub abs: f64,
}

/// Equal within `tol`; NaN equals NaN, infinities equal by sign only.
pub fn values_equal(a: f64, b: f64, tol: Tolerance) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    let diff = (a - b).abs();
    diff <= tol.abs || diff <= tol.rel * a.abs().max(b.abs())
}

/// Parses a JSON API body (success or error) into an [`Answer`].
pub fn parse_answer(body: &serde_json::Value) -> Result<Answer, String> {
    if body["status"] == "error" {
        return Ok(Answer::Error {
            kind: body["errorType"].as_str().unwrap_or("").to_string(),
            message: body["error"].as_str().unwrap_or("").to_string(),
        });
    }
    if body["status"] != "success" {
        return Err(format!("neither success nor error: {}", short(body)));
    }
    let data = &body["data"];
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("scalar") => {
            let (t, v) = point(result)?;
            Ok(Answer::Scalar(t, v))
        }
        Some("string") => {
            let t = time_ms(&result[0])?;
            let s = result[1].as_str().ok_or("string result without text")?;
            Ok(Answer::String(t, s.to_string()))
        }
        Some("vector") => {
            let mut out = Vec::new();
            for s in array(result)? {
                let (t, v) = point(&s["value"])?;
                out.push((labels(&s["metric"])?, t, v));
            }
            Ok(Answer::Vector(out))
        }
        Some("matrix") => {
            let mut out = Vec::new();
            for s in array(result)? {
                let points = array(&s["values"])?
                    .iter()
                    .map(point)
                    .collect::<Result<Vec<_>, _>>()?;
                out.push((labels(&s["metric"])?, points));
            }
            Ok(Answer::Matrix(out))
        }
        other => Err(format!("unknown resultType {other:?}")),
    }
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    s.chars().take(200).collect()
}

fn array(v: &serde_json::Value) -> Result<&Vec<serde_json::Value>, String> {
    v.as_array()
        .ok_or_else(|| format!("expected an array, got {}", short(v)))
}

fn time_ms(v: &serde_json::Value) -> Result<i64, String> {
    let secs = v
        .as_f64()
        .ok_or_else(|| format!("expected a time, got {}", short(v)))?;
    Ok((secs * 1000.0).round() as i64)
}

fn point(v: &serde_json::Value) -> Result<(i64, f64), String> {
    let t = time_ms(&v[0])?;
    let s = v[1]
        .as_str()
        .ok_or_else(|| format!("expected a value string, got {}", short(v)))?;
    let value = match s {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().map_err(|_| format!("bad sample value {s:?}"))?,
    };
    Ok((t, value))
}

fn labels(v: &serde_json::Value) -> Result<Labels, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("expected a label object, got {}", short(v)))?;
    obj.iter()
        .map(|(k, v)| {
            v.as_str()
                .map(|s| (k.clone(), s.to_string()))
                .ok_or_else(|| format!("label {k} is not a string"))
        })
        .collect()
}

/// Prometheus' `{a="b", ...}` rendering of a label set.
pub fn fmt_labels(l: &Labels) -> String {
    let pairs: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Differences listed per comparison before "... and N more".
const DIFFS_SHOWN_MAX: usize = 3;

/// Compares Prometheus' answer (`want`) with Assay's (`got`). `ordered`: the vector's order
/// is defined (top-level `sort`/`sort_desc`), so the value sequence must match as well.
/// `Err` carries a concise description of the differences.
pub fn compare(want: &Answer, got: &Answer, ordered: bool, tol: Tolerance) -> Result<(), String> {
    match (want, got) {
        (
            Answer::Error {
                kind: a,
                message: ma,
            },
            Answer::Error {
                kind: b,
                message: mb,
            },
        ) => {
            if a == b {
                Ok(())
            } else {
                Err(format!(
                    "error types differ: prometheus {a} ({}), assay {b} ({})",
                    clip(ma),
                    clip(mb)
                ))
            }
        }
        (Answer::Error { kind, message }, other) => Err(format!(
            "prometheus errors ({kind}: {}), assay returns a {}",
            clip(message),
            other.type_name()
        )),
        (other, Answer::Error { kind, message }) => Err(format!(
            "assay errors ({kind}: {}), prometheus returns a {}",
            clip(message),
            other.type_name()
        )),
        (Answer::Scalar(ta, a), Answer::Scalar(tb, b)) => {
            point_diff("scalar", *ta, *a, *tb, *b, tol)
        }
        (Answer::String(ta, a), Answer::String(tb, b)) => {
            if ta == tb && a == b {
                Ok(())
            } else {
                Err(format!(
                    "string differs: prometheus {a:?}@{ta}, assay {b:?}@{tb}"
                ))
            }
        }
        (Answer::Vector(a), Answer::Vector(b)) => compare_vectors(a, b, ordered, tol),
        (Answer::Matrix(a), Answer::Matrix(b)) => compare_matrices(a, b, tol),
        (a, b) => Err(format!(
            "result types differ: prometheus {}, assay {}",
            a.type_name(),
            b.type_name()
        )),
    }
}

fn clip(s: &str) -> String {
    let c: String = s.chars().take(120).collect();
    if c.len() < s.len() {
        format!("{c}…")
    } else {
        c
    }
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn point_diff(what: &str, ta: i64, a: f64, tb: i64, b: f64, tol: Tolerance) -> Result<(), String> {
    if ta == tb && values_equal(a, b, tol) {
        Ok(())
    } else {
        Err(format!(
            "{what}: prometheus {}@{ta}, assay {}@{tb}",
            fmt_value(a),
            fmt_value(b)
        ))
    }
}

/// Collects differences, keeping the first few.
struct Diffs {
    shown: Vec<String>,
    total: usize,
}

impl Diffs {
    fn new() -> Diffs {
        Diffs {
            shown: Vec::new(),
            total: 0,
        }
    }

    fn push(&mut self, d: String) {
        if self.shown.len() < DIFFS_SHOWN_MAX {
            self.shown.push(d);
        }
        self.total += 1;
    }

    fn finish(self) -> Result<(), String> {
        if self.total == 0 {
            return Ok(());
        }
        let mut s = self.shown.join("; ");
        if self.total > self.shown.len() {
            s.push_str(&format!("; … and {} more", self.total - self.shown.len()));
        }
        Err(s)
    }
}

/// Groups by label set; a label set returned twice keeps all its entries (a multiset).
fn by_labels<T: Clone>(items: impl Iterator<Item = (Labels, T)>) -> BTreeMap<Labels, Vec<T>> {
    let mut m: BTreeMap<Labels, Vec<T>> = BTreeMap::new();
    for (l, t) in items {
        m.entry(l).or_default().push(t);
    }
    m
}

fn compare_vectors(
    a: &[(Labels, i64, f64)],
    b: &[(Labels, i64, f64)],
    ordered: bool,
    tol: Tolerance,
) -> Result<(), String> {
    let mut d = Diffs::new();
    if a.len() != b.len() {
        d.push(format!(
            "{} samples from prometheus, {} from assay",
            a.len(),
            b.len()
        ));
    }
    let ma = by_labels(a.iter().map(|(l, t, v)| (l.clone(), (*t, *v))));
    let mb = by_labels(b.iter().map(|(l, t, v)| (l.clone(), (*t, *v))));
    diff_grouped(&ma, &mb, &mut d, |l, pa, pb, d| {
        for (&(ta, va), &(tb, vb)) in pa.iter().zip(pb) {
            if let Err(e) = point_diff(&fmt_labels(l), ta, va, tb, vb, tol) {
                d.push(e);
            }
        }
    });
    if ordered && d.total == 0 {
        // Label sets agree; with ties the label order is free, the value order is not.
        for (i, ((_, _, va), (_, _, vb))) in a.iter().zip(b).enumerate() {
            if !values_equal(*va, *vb, tol) {
                d.push(format!(
                    "order differs at position {i}: prometheus {}, assay {}",
                    fmt_value(*va),
                    fmt_value(*vb)
                ));
                break;
            }
        }
    }
    d.finish()
}

fn compare_matrices(
    a: &[(Labels, Vec<(i64, f64)>)],
    b: &[(Labels, Vec<(i64, f64)>)],
    tol: Tolerance,
) -> Result<(), String> {
    let mut d = Diffs::new();
    let ma = by_labels(a.iter().cloned());
    let mb = by_labels(b.iter().cloned());
    diff_grouped(&ma, &mb, &mut d, |l, sa, sb, d| {
        for (pa, pb) in sa.iter().zip(sb) {
            series_diff(l, pa, pb, tol, d);
        }
    });
    d.finish()
}

/// Reports label sets present on one side only (or a different number of times), and
/// calls `same` for each label set present on both.
fn diff_grouped<T>(
    ma: &BTreeMap<Labels, Vec<T>>,
    mb: &BTreeMap<Labels, Vec<T>>,
    d: &mut Diffs,
    mut same: impl FnMut(&Labels, &[T], &[T], &mut Diffs),
) {
    for (l, va) in ma {
        match mb.get(l) {
            None => d.push(format!("{} only from prometheus", fmt_labels(l))),
            Some(vb) => {
                if va.len() != vb.len() {
                    d.push(format!(
                        "{} returned {}× by prometheus, {}× by assay",
                        fmt_labels(l),
                        va.len(),
                        vb.len()
                    ));
                }
                same(l, va, vb, d);
            }
        }
    }
    for l in mb.keys().filter(|l| !ma.contains_key(*l)) {
        d.push(format!("{} only from assay", fmt_labels(l)));
    }
}

fn series_diff(l: &Labels, a: &[(i64, f64)], b: &[(i64, f64)], tol: Tolerance, d: &mut Diffs) {
    let ta: Vec<i64> = a.iter().map(|p| p.0).collect();
    let tb: Vec<i64> = b.iter().map(|p| p.0).collect();
    if ta != tb {
        let first = ta
            .iter()
            .zip(&tb)
            .position(|(x, y)| x != y)
            .unwrap_or(ta.len().min(tb.len()));
        d.push(format!(
            "{}: {} points from prometheus, {} from assay, timestamps first differ at point {first}",
            fmt_labels(l),
            ta.len(),
            tb.len()
        ));
        return;
    }
    for (&(t, va), &(_, vb)) in a.iter().zip(b) {
        if !values_equal(va, vb, tol) {
            d.push(format!(
                "{}@{t}: prometheus {}, assay {}",
                fmt_labels(l),
                fmt_value(va),
                fmt_value(vb)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOL: Tolerance = Tolerance {
        rel: 1e-6,
        abs: 1e-9,
    };

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tolerance_nan_and_infinities() {
        assert!(values_equal(1.0, 1.0 + 1e-7, TOL));
        assert!(!values_equal(1.0, 1.0 + 1e-5, TOL));
        assert!(values_equal(1e12, 1e12 + 1e5, TOL));
        assert!(!values_equal(1e12, 1e12 + 1e7, TOL));
        assert!(values_equal(0.0, 1e-10, TOL));
        assert!(!values_equal(0.0, 1e-8, TOL));
        assert!(values_equal(f64::NAN, f64::NAN, TOL));
        assert!(!values_equal(f64::NAN, 0.0, TOL));
        assert!(!values_equal(0.0, f64::NAN, TOL));
        assert!(values_equal(f64::INFINITY, f64::INFINITY, TOL));
        assert!(!values_equal(f64::INFINITY, f64::NEG_INFINITY, TOL));
        assert!(!values_equal(f64::INFINITY, f64::MAX, TOL));
    }

    #[test]
    fn parses_every_result_type_and_errors() {
        let v = json!({"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"a":"1"},"value":[1700000000.25,"NaN"]}]}});
        // NaN != NaN under PartialEq: check the parts, then self-comparison through compare.
        let Answer::Vector(got) = parse_answer(&v).unwrap() else {
            panic!("not a vector")
        };
        assert_eq!(got[0].0, l(&[("a", "1")]));
        assert_eq!(got[0].1, 1_700_000_000_250);
        assert!(got[0].2.is_nan());
        let want = parse_answer(&v).unwrap();
        assert!(compare(&want, &want.clone(), false, TOL).is_ok());
        let m = json!({"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{},"values":[[1,"+Inf"],[2,"-Inf"],[3,"1.5"]]}]}});
        assert_eq!(
            parse_answer(&m).unwrap(),
            Answer::Matrix(vec![(
                l(&[]),
                vec![
                    (1000, f64::INFINITY),
                    (2000, f64::NEG_INFINITY),
                    (3000, 1.5)
                ]
            )])
        );
        let s = json!({"status":"success","data":{"resultType":"scalar","result":[5,"2"]}});
        assert_eq!(parse_answer(&s).unwrap(), Answer::Scalar(5000, 2.0));
        let e = json!({"status":"error","errorType":"bad_data","error":"parse error"});
        assert!(
            matches!(parse_answer(&e).unwrap(), Answer::Error { kind, .. } if kind == "bad_data")
        );
        assert!(parse_answer(&json!({"status":"success","data":{"resultType":"x"}})).is_err());
    }

    #[test]
    fn vectors_compare_as_sets_unless_ordered() {
        let a = Answer::Vector(vec![(l(&[("x", "1")]), 0, 1.0), (l(&[("x", "2")]), 0, 2.0)]);
        let b = Answer::Vector(vec![(l(&[("x", "2")]), 0, 2.0), (l(&[("x", "1")]), 0, 1.0)]);
        assert!(compare(&a, &b, false, TOL).is_ok());
        let e = compare(&a, &b, true, TOL).unwrap_err();
        assert!(e.contains("order differs at position 0"), "{e}");
        // Ties: labels may swap when the values are equal.
        let c = Answer::Vector(vec![(l(&[("x", "1")]), 0, 1.0), (l(&[("x", "2")]), 0, 1.0)]);
        let d = Answer::Vector(vec![(l(&[("x", "2")]), 0, 1.0), (l(&[("x", "1")]), 0, 1.0)]);
        assert!(compare(&c, &d, true, TOL).is_ok());
    }

    #[test]
    fn label_set_and_value_differences_are_named() {
        let a = Answer::Vector(vec![(l(&[("x", "1")]), 0, 1.0), (l(&[("y", "1")]), 0, 1.0)]);
        let b = Answer::Vector(vec![(l(&[("x", "1")]), 0, 1.5), (l(&[("z", "1")]), 0, 1.0)]);
        let e = compare(&a, &b, false, TOL).unwrap_err();
        assert!(e.contains(r#"{x="1"}: prometheus 1@0, assay 1.5@0"#), "{e}");
        assert!(e.contains(r#"{y="1"} only from prometheus"#), "{e}");
        assert!(e.contains(r#"{z="1"} only from assay"#), "{e}");
        // A duplicate label set on one side is a difference, not silently merged.
        let dup = Answer::Vector(vec![(l(&[("x", "1")]), 0, 1.0), (l(&[("x", "1")]), 0, 1.0)]);
        let one = Answer::Vector(vec![(l(&[("x", "1")]), 0, 1.0)]);
        assert!(compare(&dup, &one, false, TOL).is_err());
    }

    #[test]
    fn matrices_need_equal_timestamps_and_values() {
        let m = |pts: Vec<(i64, f64)>| Answer::Matrix(vec![(l(&[("a", "b")]), pts)]);
        let a = m(vec![(1000, 1.0), (2000, f64::NAN)]);
        assert!(compare(&a, &m(vec![(1000, 1.0), (2000, f64::NAN)]), false, TOL).is_ok());
        let e = compare(&a, &m(vec![(1000, 1.0)]), false, TOL).unwrap_err();
        assert!(e.contains("2 points from prometheus, 1 from assay"), "{e}");
        let e = compare(&a, &m(vec![(1000, 1.1), (2000, f64::NAN)]), false, TOL).unwrap_err();
        assert!(e.contains("@1000: prometheus 1, assay 1.1"), "{e}");
    }

    #[test]
    fn errors_match_on_type_only() {
        let err = |k: &str, m: &str| Answer::Error {
            kind: k.into(),
            message: m.into(),
        };
        assert!(compare(&err("bad_data", "a"), &err("bad_data", "b"), false, TOL).is_ok());
        let e = compare(&err("execution", "a"), &err("bad_data", "a"), false, TOL).unwrap_err();
        assert!(e.contains("error types differ"), "{e}");
        let e = compare(&err("bad_data", "x"), &Answer::Scalar(0, 1.0), false, TOL).unwrap_err();
        assert!(
            e.contains("prometheus errors (bad_data: x), assay returns a scalar"),
            "{e}"
        );
        let e = compare(&Answer::Scalar(0, 1.0), &Answer::Vector(vec![]), false, TOL).unwrap_err();
        assert!(
            e.contains("result types differ: prometheus scalar, assay vector"),
            "{e}"
        );
    }
}

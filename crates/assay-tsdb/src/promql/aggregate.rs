//! Aggregation operators, each as Prometheus 3's `aggregation` in `engine.go`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use promql_parser::label::METRIC_NAME;
use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::eval::{kahan_inc, set_label, Elem, Evaluator, Val};
use super::quantile::quantile;
use super::{format_value, QueryError, ResultLabels};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AggKind {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
}

/// Evaluates `a` at `t`.
pub(super) fn aggregate(
    ev: &mut Evaluator<'_>,
    a: &AggregateExpr,
    t: i64,
) -> Result<Val, QueryError> {
    let op = a.op.to_string();
    let kind = match op.as_str() {
        "sum" => AggKind::Sum,
        "avg" => AggKind::Avg,
        "min" => AggKind::Min,
        "max" => AggKind::Max,
        "count" => AggKind::Count,
        "group" => AggKind::Group,
        "stddev" => AggKind::Stddev,
        "stdvar" => AggKind::Stdvar,
        "topk" | "bottomk" | "limitk" | "quantile" | "count_values" => {
            return parametric(ev, a, op.as_str(), t)
        }
        other => return Err(QueryError::unsupported(&format!("aggregation `{other}`"))),
    };
    if let Some(out) = aggregate_table(ev, a, kind, t)? {
        return Ok(Val::Vector(out));
    }
    let elems = operand(ev, a, t)?;
    let mut groups: BTreeMap<ResultLabels, Accumulator> = BTreeMap::new();
    for e in elems {
        let key = grouping_labels(&e.labels, a.modifier.as_ref());
        match groups.get_mut(&key) {
            Some(acc) => acc.add(kind, e.v),
            None => {
                groups.insert(key, Accumulator::new(e.v));
            }
        }
    }
    let out = groups.into_iter().map(|(labels, acc)| Elem {
        labels,
        v: acc.result(kind),
    });
    Ok(Val::Vector(out.collect()))
}

/// The aggregation at a step of a range query whose operand has a table: the same adds in
/// the same order as over the operand's vector, with the groups computed once.
fn aggregate_table(
    ev: &mut Evaluator<'_>,
    a: &AggregateExpr,
    kind: AggKind,
    t: i64,
) -> Result<Option<Vec<Elem>>, QueryError> {
    let Some((table, i)) = ev.operand_table(&a.expr, t)? else {
        return Ok(None);
    };
    let key = a as *const AggregateExpr as usize;
    let modifier = a.modifier.as_ref();
    let grouping = ev.grouping(key, &table, |l| grouping_labels(l, modifier));
    let mut accs: Vec<Option<Accumulator>> = vec![None; grouping.keys.len()];
    for (k, &g) in grouping.of_series.iter().enumerate() {
        let Some(v) = table.value(k, i) else {
            continue;
        };
        match &mut accs[g] {
            Some(acc) => acc.add(kind, v),
            None => accs[g] = Some(Accumulator::new(v)),
        }
    }
    let out = accs.iter().zip(&grouping.keys).filter_map(|(acc, labels)| {
        Some(Elem {
            labels: labels.clone(),
            v: acc.as_ref()?.result(kind),
        })
    });
    Ok(Some(out.collect()))
}

fn operand(ev: &mut Evaluator<'_>, a: &AggregateExpr, t: i64) -> Result<Vec<Elem>, QueryError> {
    match ev.eval(&a.expr, t)? {
        Val::Vector(v) => Ok(v),
        _ => Err(QueryError::bad_data(format!(
            "`{}` needs an instant vector",
            a.op
        ))),
    }
}

fn param(ev: &mut Evaluator<'_>, a: &AggregateExpr, t: i64) -> Result<Val, QueryError> {
    let Some(p) = &a.param else {
        return Err(QueryError::bad_data(format!(
            "aggregation `{}` needs a parameter",
            a.op
        )));
    };
    ev.eval(p, t)
}

/// `topk`, `bottomk`, `limitk`, `quantile` and `count_values`: those with a parameter.
fn parametric(
    ev: &mut Evaluator<'_>,
    a: &AggregateExpr,
    op: &str,
    t: i64,
) -> Result<Val, QueryError> {
    let p = param(ev, a, t)?;
    let elems = operand(ev, a, t)?;
    match (op, p) {
        ("count_values", Val::Str(label)) => count_values(elems, &label, a.modifier.as_ref()),
        ("quantile", Val::Scalar(q)) => {
            let mut groups: BTreeMap<ResultLabels, Vec<f64>> = BTreeMap::new();
            for e in elems {
                let key = grouping_labels(&e.labels, a.modifier.as_ref());
                groups.entry(key).or_default().push(e.v);
            }
            let out = groups.into_iter().map(|(labels, mut values)| Elem {
                labels,
                v: quantile(q, &mut values),
            });
            Ok(Val::Vector(out.collect()))
        }
        ("limitk", Val::Scalar(k)) => limitk(elems, k, a.modifier.as_ref()),
        (_, Val::Scalar(k)) => top_bottom(elems, k, op == "topk", a.modifier.as_ref()),
        _ => Err(QueryError::bad_data(format!(
            "wrong parameter type for aggregation `{op}`"
        ))),
    }
}

/// Prometheus' `count_values`: the value (formatted as Go's `FormatFloat(v, 'f', -1)`)
/// becomes a label, overwriting one of the same name, and is part of the grouping.
fn count_values(
    elems: Vec<Elem>,
    label: &str,
    modifier: Option<&LabelModifier>,
) -> Result<Val, QueryError> {
    // Prometheus 3 accepts any non-empty UTF-8 label name.
    if label.is_empty() {
        return Err(QueryError::execution(format!(
            "invalid label name {label:?}"
        )));
    }
    let mut groups: BTreeMap<ResultLabels, f64> = BTreeMap::new();
    for e in elems {
        let mut labels = e.labels;
        set_label(&mut labels, label, &format_value(e.v));
        // Without `without`, the value label joins the `by` labels (none by default).
        let key = match modifier {
            Some(LabelModifier::Exclude(_)) => grouping_labels(&labels, modifier),
            Some(LabelModifier::Include(by)) => labels
                .into_iter()
                .filter(|(n, _)| n == label || by.labels.contains(n))
                .collect(),
            None => labels.into_iter().filter(|(n, _)| n == label).collect(),
        };
        *groups.entry(key).or_insert(0.0) += 1.0;
    }
    let out = groups.into_iter().map(|(labels, v)| Elem { labels, v });
    Ok(Val::Vector(out.collect()))
}

/// Go's `fmt` `%v` of a float, for error messages quoting a parameter.
fn go_float_v(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let exp = if v == 0.0 {
        0
    } else {
        v.abs().log10().floor() as i32
    };
    if (-4..21).contains(&exp) {
        format_value(v)
    } else {
        let s = format!("{v:e}");
        match s.split_once('e') {
            Some((m, e)) if e.starts_with('-') => format!("{m}e-{:0>2}", &e[1..]),
            Some((m, e)) => format!("{m}e+{e:0>2}"),
            None => s,
        }
    }
}

/// Prometheus' `topk`/`bottomk`: per group a heap of the k largest (smallest) elements,
/// with NaN below every number, returned largest (smallest) first. Elements keep all their
/// labels; groups come in the order of their first element.
fn top_bottom(
    elems: Vec<Elem>,
    k: f64,
    top: bool,
    modifier: Option<&LabelModifier>,
) -> Result<Val, QueryError> {
    let Some(k) = k_param(k, elems.len())? else {
        return Ok(Val::Vector(Vec::new()));
    };
    // `less` is the heap order: the root is the element to evict first.
    let less = |a: f64, b: f64| a.is_nan() || if top { a < b } else { a > b };
    let mut order: Vec<ResultLabels> = Vec::new();
    let mut heaps: BTreeMap<ResultLabels, Vec<Elem>> = BTreeMap::new();
    for e in elems {
        let key = grouping_labels(&e.labels, modifier);
        let heap = match heaps.get_mut(&key) {
            Some(h) => h,
            None => {
                order.push(key.clone());
                heaps.entry(key).or_default()
            }
        };
        if heap.len() < k {
            heap.push(e);
            let last = heap.len() - 1;
            heap_up(heap, last, less);
        } else {
            let root = heap[0].v;
            let replace = if top { root < e.v } else { root > e.v };
            if replace || (root.is_nan() && !e.v.is_nan()) {
                heap[0] = e;
                if k > 1 {
                    heap_fix_root(heap, less);
                }
            }
        }
    }
    let mut out = Vec::new();
    for key in order {
        let Some(mut heap) = heaps.remove(&key) else {
            continue;
        };
        // Largest (smallest) first, NaN last: the heap order reversed, as a total order.
        heap.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ if top => b.v.partial_cmp(&a.v).unwrap_or(Ordering::Equal),
            _ => a.v.partial_cmp(&b.v).unwrap_or(Ordering::Equal),
        });
        out.extend(heap);
    }
    Ok(Val::Vector(out))
}

/// The `k` of `topk`/`bottomk`/`limitk` as Prometheus reads it: an error beyond int64,
/// truncated, at most `n`; `None` (an empty result) below 1.
fn k_param(k: f64, n: usize) -> Result<Option<usize>, QueryError> {
    if !(-9.223_372_036_854_776e18..=9.223_372_036_854_776e18).contains(&k) {
        return Err(QueryError::execution(format!(
            "Scalar value {} overflows int64",
            go_float_v(k)
        )));
    }
    let k = (k as i64).min(i64::try_from(n).unwrap_or(i64::MAX));
    Ok(usize::try_from(k).ok().filter(|&k| k >= 1))
}

/// Prometheus' `limitk`: the first `k` elements of each group, in input (label) order.
fn limitk(elems: Vec<Elem>, k: f64, modifier: Option<&LabelModifier>) -> Result<Val, QueryError> {
    let Some(k) = k_param(k, elems.len())? else {
        return Ok(Val::Vector(Vec::new()));
    };
    let mut taken: BTreeMap<ResultLabels, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for e in elems {
        let n = taken
            .entry(grouping_labels(&e.labels, modifier))
            .or_insert(0);
        if *n < k {
            *n += 1;
            out.push(e);
        }
    }
    Ok(Val::Vector(out))
}

/// Go's `container/heap` `up`, so ties are resolved as Prometheus resolves them.
fn heap_up(h: &mut [Elem], mut j: usize, less: impl Fn(f64, f64) -> bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(h[j].v, h[i].v) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

/// Go's `container/heap` `Fix(h, 0)`: the root can only move down.
fn heap_fix_root(h: &mut [Elem], less: impl Fn(f64, f64) -> bool) {
    let n = h.len();
    let mut i = 0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        if j1 + 1 < n && less(h[j1 + 1].v, h[j1].v) {
            j = j1 + 1;
        }
        if !less(h[j].v, h[i].v) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}

/// Running state of one aggregation group, as Prometheus' `groupedAggregation`.
#[derive(Clone, Copy, Debug)]
struct Accumulator {
    value: f64,
    kahan_c: f64,
    mean: f64,
    count: f64,
    incremental_mean: bool,
}

impl Accumulator {
    fn new(v: f64) -> Accumulator {
        Accumulator {
            value: v,
            kahan_c: 0.0,
            mean: v,
            count: 1.0,
            incremental_mean: false,
        }
    }

    fn add(&mut self, kind: AggKind, v: f64) {
        if self.count == 1.0 && matches!(kind, AggKind::Stddev | AggKind::Stdvar) {
            // The variance starts at 0, or NaN when the first value is not finite.
            self.value = if self.mean.is_finite() { 0.0 } else { f64::NAN };
        }
        self.count += 1.0;
        match kind {
            AggKind::Sum => (self.value, self.kahan_c) = kahan_inc(v, self.value, self.kahan_c),
            AggKind::Avg => self.add_to_mean(v),
            // As Prometheus: a NaN so far is replaced by any later value.
            AggKind::Min if self.value > v || self.value.is_nan() => self.value = v,
            AggKind::Max if self.value < v || self.value.is_nan() => self.value = v,
            AggKind::Stddev | AggKind::Stdvar => {
                let delta = v - self.mean;
                self.mean += delta / self.count;
                self.value += delta * (v - self.mean);
            }
            _ => {}
        }
    }

    /// A direct (Kahan) sum while it does not overflow, then an incremental mean.
    fn add_to_mean(&mut self, v: f64) {
        if !self.incremental_mean {
            let (sum, c) = kahan_inc(v, self.value, self.kahan_c);
            if !sum.is_infinite() {
                (self.value, self.kahan_c) = (sum, c);
                return;
            }
            self.incremental_mean = true;
            self.mean = self.value / (self.count - 1.0);
            self.kahan_c /= self.count - 1.0;
        }
        (self.mean, self.kahan_c) = incremental_mean(self.mean, self.kahan_c, v, self.count);
    }

    fn result(&self, kind: AggKind) -> f64 {
        let variance = || {
            if self.count == 1.0 {
                if self.mean.is_finite() {
                    0.0
                } else {
                    f64::NAN
                }
            } else {
                self.value / self.count
            }
        };
        match kind {
            AggKind::Sum => self.value + self.kahan_c,
            AggKind::Avg if self.incremental_mean => self.mean + self.kahan_c,
            AggKind::Avg => (self.value + self.kahan_c) / self.count,
            AggKind::Min | AggKind::Max => self.value,
            AggKind::Count => self.count,
            AggKind::Group => 1.0,
            AggKind::Stdvar => variance(),
            AggKind::Stddev => variance().sqrt(),
        }
    }
}

/// One step of Prometheus' incremental mean with Kahan compensation `c`: the mean of
/// `count` values from that of the first `count - 1` and `v`. An infinite mean stays
/// unless `v` is NaN or the opposite infinity (subtracting it would give NaN).
fn incremental_mean(mean: f64, c: f64, v: f64, count: f64) -> (f64, f64) {
    if mean.is_infinite() {
        let same_infinity = v.is_infinite() && (mean > 0.0) == (v > 0.0);
        if same_infinity || v.is_finite() {
            return (mean, c);
        }
    }
    let current = mean + c;
    kahan_inc(v / count - current / count, mean, c)
}

/// Output labels of an aggregation group.
fn grouping_labels(labels: &ResultLabels, modifier: Option<&LabelModifier>) -> ResultLabels {
    match modifier {
        None => Vec::new(),
        Some(LabelModifier::Include(by)) => labels
            .iter()
            .filter(|(n, _)| by.labels.contains(n))
            .cloned()
            .collect(),
        Some(LabelModifier::Exclude(without)) => labels
            .iter()
            .filter(|(n, _)| n != METRIC_NAME && !without.labels.contains(n))
            .cloned()
            .collect(),
    }
}

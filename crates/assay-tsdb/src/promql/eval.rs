//! The evaluator: one expression at one time. A range query runs it once per step.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use promql_parser::label::METRIC_NAME;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Expr, LabelModifier, MatrixSelector, Offset,
    VectorMatchCardinality, VectorSelector,
};

use super::{
    functions, parse, QueryError, ResultLabels, Sample, Series, Value, LOOKBACK_DELTA_MS,
    QUERY_SAMPLES_LOADED_MAX, QUERY_SERIES_TOUCHED_MAX,
};
use crate::{SeriesId, Tsdb};

/// Prometheus' staleness marker: a NaN with this exact bit pattern ends a series.
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// One element of an instant vector during evaluation.
#[derive(Clone, Debug)]
pub(super) struct Elem {
    pub(super) labels: ResultLabels,
    pub(super) v: f64,
}

/// One series of a range vector during evaluation.
#[derive(Clone, Debug)]
pub(super) struct RangeElem {
    pub(super) labels: ResultLabels,
    pub(super) points: Vec<(i64, f64)>,
}

/// An intermediate value.
#[derive(Clone, Debug)]
pub(super) enum Val {
    Scalar(f64),
    Str(String),
    Vector(Vec<Elem>),
    Matrix(Vec<RangeElem>),
}

/// State of one query: the view, the `@ start()`/`@ end()` times and the limit counters.
pub(super) struct Evaluator<'a> {
    db: &'a Tsdb,
    start_ms: i64,
    end_ms: i64,
    /// Matching series per selector node (keyed by its address in the parsed query, which
    /// lives as long as the query), in label order: matching does not depend on time.
    selections: HashMap<usize, Rc<Vec<SeriesId>>>,
    series_touched: usize,
    samples_loaded: u64,
    limits: Limits,
}

/// The per-query limits; the public constants in production, smaller ones in tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Limits {
    pub(super) series_touched_max: usize,
    pub(super) samples_loaded_max: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            series_touched_max: QUERY_SERIES_TOUCHED_MAX,
            samples_loaded_max: QUERY_SAMPLES_LOADED_MAX,
        }
    }
}

impl<'a> Evaluator<'a> {
    /// Replaces the limits (tests exercise them on small data).
    #[cfg(test)]
    pub(super) fn with_limits(mut self, limits: Limits) -> Evaluator<'a> {
        self.limits = limits;
        self
    }

    pub(super) fn new(db: &'a Tsdb, start_ms: i64, end_ms: i64) -> Evaluator<'a> {
        Evaluator {
            db,
            start_ms,
            end_ms,
            selections: HashMap::new(),
            series_touched: 0,
            samples_loaded: 0,
            limits: Limits::default(),
        }
    }

    /// Evaluates at one time and converts to the public result shape.
    pub(super) fn instant(&mut self, expr: &Expr, t: i64) -> Result<Value, QueryError> {
        Ok(match self.eval(expr, t)? {
            Val::Scalar(v) => Value::Scalar { t_ms: t, v },
            Val::Str(v) => Value::String { t_ms: t, v },
            Val::Vector(mut elems) => {
                check_unique(&elems)?;
                elems.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Vector(
                    elems
                        .into_iter()
                        .map(|e| Sample {
                            labels: e.labels,
                            t_ms: t,
                            v: e.v,
                        })
                        .collect(),
                )
            }
            Val::Matrix(mut series) => {
                series.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(
                    series
                        .into_iter()
                        .map(|s| Series {
                            labels: s.labels,
                            points: s.points,
                        })
                        .collect(),
                )
            }
        })
    }

    /// Evaluates at each step and gathers a matrix (scalars become a series without labels).
    pub(super) fn range(
        &mut self,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, QueryError> {
        let kind = match expr.value_type() {
            ValueType::Vector | ValueType::Scalar => None,
            ValueType::Matrix => Some("range vector"),
            ValueType::String => Some("string"),
        };
        if let Some(kind) = kind {
            return Err(QueryError::bad_data(format!(
                "invalid expression type \"{kind}\" for range query, must be Scalar or instant Vector"
            )));
        }
        let mut out: BTreeMap<ResultLabels, Vec<(i64, f64)>> = BTreeMap::new();
        let mut t = start_ms;
        while t <= end_ms {
            match self.eval(expr, t)? {
                Val::Scalar(v) => out.entry(Vec::new()).or_default().push((t, v)),
                Val::Vector(elems) => {
                    check_unique(&elems)?;
                    for e in elems {
                        out.entry(e.labels).or_default().push((t, e.v));
                    }
                }
                Val::Str(_) | Val::Matrix(_) => {
                    return Err(QueryError::bad_data("range query expression changed type"))
                }
            }
            let Some(next) = t.checked_add(step_ms) else {
                break;
            };
            t = next;
        }
        Ok(Value::Matrix(
            out.into_iter()
                .map(|(labels, points)| Series { labels, points })
                .collect(),
        ))
    }

    pub(super) fn eval(&mut self, expr: &Expr, t: i64) -> Result<Val, QueryError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(elems) => {
                    let out: Vec<Elem> = elems
                        .into_iter()
                        .map(|e| Elem {
                            labels: drop_name(e.labels),
                            v: -e.v,
                        })
                        .collect();
                    check_unique(&out)?;
                    Ok(Val::Vector(out))
                }
                _ => Err(QueryError::bad_data(
                    "unary minus needs a scalar or an instant vector",
                )),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.select_instant(vs, t)?)),
            Expr::MatrixSelector(ms) => Ok(Val::Matrix(self.select_range(ms, t)?)),
            Expr::Call(c) => functions::call(self, c, t),
            Expr::Aggregate(a) => self.aggregate(a, t),
            Expr::Binary(b) => self.binary(b, t),
            Expr::Subquery(_) => Err(QueryError::unsupported("subquery")),
            Expr::Extension(_) => Err(QueryError::unsupported("extension expression")),
        }
    }

    /// Series matching a selector, in label order, counted against the limit once.
    fn selection(&mut self, vs: &VectorSelector) -> Result<Rc<Vec<SeriesId>>, QueryError> {
        let key = vs as *const VectorSelector as usize;
        if let Some(ids) = self.selections.get(&key) {
            return Ok(Rc::clone(ids));
        }
        let db = self.db;
        let sets = parse::selector_matchers(vs)?;
        let mut ids: Vec<SeriesId> = sets.iter().flat_map(|s| db.select(s)).collect();
        ids.sort_unstable();
        ids.dedup();
        self.series_touched += ids.len();
        if self.series_touched > self.limits.series_touched_max {
            return Err(QueryError::execution(format!(
                "query selects more than {} series; narrow its selectors",
                self.limits.series_touched_max
            )));
        }
        ids.sort_by(|a, b| db.entry(*a).labels.cmp(&db.entry(*b).labels));
        let ids = Rc::new(ids);
        self.selections.insert(key, Rc::clone(&ids));
        Ok(ids)
    }

    fn load(&mut self, samples: usize) -> Result<(), QueryError> {
        self.samples_loaded += samples as u64;
        if self.samples_loaded > self.limits.samples_loaded_max {
            return Err(QueryError::execution(format!(
                "query loads more than {} samples; shorten its range or select fewer series",
                self.limits.samples_loaded_max
            )));
        }
        Ok(())
    }

    /// The time a selector reads at: `@` replaces the evaluation time, then `offset` shifts.
    pub(super) fn selector_time(&self, vs: &VectorSelector, t: i64) -> i64 {
        let base = match &vs.at {
            None => t,
            Some(AtModifier::Start) => self.start_ms,
            Some(AtModifier::End) => self.end_ms,
            Some(AtModifier::At(at)) => system_time_ms(at),
        };
        match &vs.offset {
            None => base,
            Some(Offset::Pos(d)) => base.saturating_sub(duration_ms(d)),
            Some(Offset::Neg(d)) => base.saturating_add(duration_ms(d)),
        }
    }

    fn select_instant(&mut self, vs: &VectorSelector, t: i64) -> Result<Vec<Elem>, QueryError> {
        let ids = self.selection(vs)?;
        let at = self.selector_time(vs, t);
        // Left-open lookback window (at - delta, at], as Prometheus 3.
        let min = at.saturating_sub(LOOKBACK_DELTA_MS).saturating_add(1);
        let mut out = Vec::new();
        for &id in ids.iter() {
            let entry = self.db.entry(id);
            let Some((_, v)) = entry.samples.last_in(min, at) else {
                continue;
            };
            self.load(1)?;
            if v.to_bits() != STALE_NAN_BITS {
                out.push(Elem {
                    labels: result_labels(&entry.labels),
                    v,
                });
            }
        }
        Ok(out)
    }

    pub(super) fn select_range(
        &mut self,
        ms: &MatrixSelector,
        t: i64,
    ) -> Result<Vec<RangeElem>, QueryError> {
        let ids = self.selection(&ms.vs)?;
        let end = self.selector_time(&ms.vs, t);
        let start = end.saturating_sub(duration_ms(&ms.range)).saturating_add(1);
        let mut out = Vec::new();
        for &id in ids.iter() {
            let entry = self.db.entry(id);
            // Count first so an over-limit query fails before copying the samples.
            self.load(entry.samples.count_in(start, end))?;
            let points: Vec<(i64, f64)> = entry
                .samples
                .range(start, end)
                .filter(|(_, v)| v.to_bits() != STALE_NAN_BITS)
                .collect();
            if !points.is_empty() {
                out.push(RangeElem {
                    labels: result_labels(&entry.labels),
                    points,
                });
            }
        }
        Ok(out)
    }

    fn aggregate(&mut self, a: &AggregateExpr, t: i64) -> Result<Val, QueryError> {
        let op = a.op.to_string();
        let kind = match op.as_str() {
            "sum" => AggKind::Sum,
            "avg" => AggKind::Avg,
            "min" => AggKind::Min,
            "max" => AggKind::Max,
            "count" => AggKind::Count,
            "group" => AggKind::Group,
            other => return Err(QueryError::unsupported(&format!("aggregation `{other}`"))),
        };
        let Val::Vector(elems) = self.eval(&a.expr, t)? else {
            return Err(QueryError::bad_data(format!(
                "`{op}` needs an instant vector"
            )));
        };
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

    fn binary(&mut self, b: &BinaryExpr, t: i64) -> Result<Val, QueryError> {
        let op = BinOp::parse(&b.op.to_string())?;
        let return_bool = b.return_bool();
        let lhs = self.eval(&b.lhs, t)?;
        let rhs = self.eval(&b.rhs, t)?;
        let out = match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(r)) => {
                return Ok(Val::Scalar(match op.compare(l, r) {
                    Some(keep) => f64::from(u8::from(keep)),
                    None => op.arith(l, r),
                }));
            }
            (Val::Vector(v), Val::Scalar(s)) => vector_scalar(op, v, s, false, return_bool),
            (Val::Scalar(s), Val::Vector(v)) => vector_scalar(op, v, s, true, return_bool),
            (Val::Vector(l), Val::Vector(r)) => {
                let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
                if let Some(m) = &b.modifier {
                    let set_op = matches!(op, BinOp::And | BinOp::Or | BinOp::Unless);
                    if !set_op && m.card != VectorMatchCardinality::OneToOne {
                        return Err(QueryError::unsupported("group_left/group_right matching"));
                    }
                    if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                        return Err(QueryError::unsupported("fill modifier"));
                    }
                }
                match op {
                    BinOp::And | BinOp::Or | BinOp::Unless => set_operation(op, l, r, matching),
                    _ => vector_vector(op, l, r, matching, return_bool)?,
                }
            }
            _ => {
                return Err(QueryError::bad_data(
                    "binary expression must contain only scalar and instant vector types",
                ))
            }
        };
        check_unique(&out)?;
        Ok(Val::Vector(out))
    }
}

#[derive(Clone, Copy, Debug)]
enum AggKind {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
}

/// Running state of one aggregation group.
struct Accumulator {
    sum: KahanSum,
    count: u64,
    min: f64,
    max: f64,
}

impl Accumulator {
    fn new(v: f64) -> Accumulator {
        let mut sum = KahanSum::default();
        sum.add(v);
        Accumulator {
            sum,
            count: 1,
            min: v,
            max: v,
        }
    }

    fn add(&mut self, kind: AggKind, v: f64) {
        self.count += 1;
        match kind {
            AggKind::Sum | AggKind::Avg => self.sum.add(v),
            // As Prometheus: a NaN so far is replaced by any later value.
            AggKind::Min if self.min > v || self.min.is_nan() => self.min = v,
            AggKind::Max if self.max < v || self.max.is_nan() => self.max = v,
            _ => {}
        }
    }

    fn result(&self, kind: AggKind) -> f64 {
        match kind {
            AggKind::Sum => self.sum.value(),
            AggKind::Avg => self.sum.value() / self.count as f64,
            AggKind::Min => self.min,
            AggKind::Max => self.max,
            AggKind::Count => self.count as f64,
            AggKind::Group => 1.0,
        }
    }
}

/// Kahan-Neumaier summation, as Prometheus' `kahanSumInc`, so sums agree bit for bit.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct KahanSum {
    sum: f64,
    c: f64,
}

impl KahanSum {
    pub(super) fn add(&mut self, inc: f64) {
        let t = self.sum + inc;
        if t.is_infinite() {
            self.c = 0.0;
        } else if self.sum.abs() >= inc.abs() {
            self.c += (self.sum - t) + inc;
        } else {
            self.c += (inc - t) + self.sum;
        }
        self.sum = t;
    }

    pub(super) fn value(&self) -> f64 {
        if self.sum.is_infinite() {
            self.sum
        } else {
            self.sum + self.c
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    fn parse(token: &str) -> Result<BinOp, QueryError> {
        Ok(match token {
            "+" => BinOp::Add,
            "-" => BinOp::Sub,
            "*" => BinOp::Mul,
            "/" => BinOp::Div,
            "%" => BinOp::Mod,
            "^" => BinOp::Pow,
            "atan2" => BinOp::Atan2,
            "==" => BinOp::Eq,
            "!=" => BinOp::Ne,
            ">" => BinOp::Gt,
            "<" => BinOp::Lt,
            ">=" => BinOp::Ge,
            "<=" => BinOp::Le,
            "and" => BinOp::And,
            "or" => BinOp::Or,
            "unless" => BinOp::Unless,
            other => {
                return Err(QueryError::unsupported(&format!(
                    "binary operator `{other}`"
                )))
            }
        })
    }

    /// `Some(result)` for a comparison, `None` for arithmetic.
    fn compare(self, l: f64, r: f64) -> Option<bool> {
        Some(match self {
            BinOp::Eq => l == r,
            BinOp::Ne => l != r,
            BinOp::Gt => l > r,
            BinOp::Lt => l < r,
            BinOp::Ge => l >= r,
            BinOp::Le => l <= r,
            _ => return None,
        })
    }

    fn arith(self, l: f64, r: f64) -> f64 {
        match self {
            BinOp::Add => l + r,
            BinOp::Sub => l - r,
            BinOp::Mul => l * r,
            BinOp::Div => l / r,
            // Rust's `%` on floats is C's fmod, as Go's math.Mod.
            BinOp::Mod => l % r,
            BinOp::Pow => l.powf(r),
            BinOp::Atan2 => l.atan2(r),
            _ => f64::NAN,
        }
    }
}

fn vector_scalar(op: BinOp, elems: Vec<Elem>, s: f64, swap: bool, return_bool: bool) -> Vec<Elem> {
    let mut out = Vec::with_capacity(elems.len());
    for e in elems {
        let (l, r) = if swap { (s, e.v) } else { (e.v, s) };
        match op.compare(l, r) {
            Some(keep) if return_bool => out.push(Elem {
                labels: drop_name(e.labels),
                v: f64::from(u8::from(keep)),
            }),
            // A filtering comparison keeps the vector's value and name, whichever side it is.
            Some(true) => out.push(e),
            Some(false) => {}
            None => out.push(Elem {
                labels: drop_name(e.labels),
                v: op.arith(l, r),
            }),
        }
    }
    out
}

/// The labels two elements must share to match: `on` keeps the listed ones, `ignoring`
/// (or no modifier) drops the listed ones and the metric name.
fn signature(labels: &ResultLabels, matching: Option<&LabelModifier>) -> ResultLabels {
    match matching {
        Some(LabelModifier::Include(on)) => labels
            .iter()
            .filter(|(n, _)| on.labels.contains(n))
            .cloned()
            .collect(),
        Some(LabelModifier::Exclude(ign)) => labels
            .iter()
            .filter(|(n, _)| n != METRIC_NAME && !ign.labels.contains(n))
            .cloned()
            .collect(),
        None => labels
            .iter()
            .filter(|(n, _)| n != METRIC_NAME)
            .cloned()
            .collect(),
    }
}

fn vector_vector(
    op: BinOp,
    lhs: Vec<Elem>,
    rhs: Vec<Elem>,
    matching: Option<&LabelModifier>,
    return_bool: bool,
) -> Result<Vec<Elem>, QueryError> {
    let mut right: BTreeMap<ResultLabels, Elem> = BTreeMap::new();
    for r in rhs {
        let sig = signature(&r.labels, matching);
        if let Some(dup) = right.get(&sig) {
            return Err(QueryError::execution(format!(
                "found duplicate series for the match group {} on the right hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                format_labels(&sig), format_labels(&r.labels), format_labels(&dup.labels)
            )));
        }
        right.insert(sig, r);
    }
    let mut matched: BTreeSet<ResultLabels> = BTreeSet::new();
    let mut out = Vec::new();
    for l in lhs {
        let sig = signature(&l.labels, matching);
        let Some(r) = right.get(&sig) else { continue };
        if !matched.insert(sig) {
            return Err(QueryError::execution(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
            ));
        }
        let v = match op.compare(l.v, r.v) {
            Some(keep) if return_bool => f64::from(u8::from(keep)),
            Some(true) => l.v,
            Some(false) => continue,
            None => op.arith(l.v, r.v),
        };
        let mut labels = l.labels;
        if op.compare(0.0, 0.0).is_none() || return_bool {
            labels = drop_name(labels);
        }
        match matching {
            Some(LabelModifier::Include(on)) => labels.retain(|(n, _)| on.labels.contains(n)),
            Some(LabelModifier::Exclude(ign)) => labels.retain(|(n, _)| !ign.labels.contains(n)),
            None => {}
        }
        out.push(Elem { labels, v });
    }
    Ok(out)
}

fn set_operation(
    op: BinOp,
    lhs: Vec<Elem>,
    rhs: Vec<Elem>,
    matching: Option<&LabelModifier>,
) -> Vec<Elem> {
    let right: BTreeSet<ResultLabels> =
        rhs.iter().map(|r| signature(&r.labels, matching)).collect();
    match op {
        BinOp::And => lhs
            .into_iter()
            .filter(|l| right.contains(&signature(&l.labels, matching)))
            .collect(),
        BinOp::Unless => lhs
            .into_iter()
            .filter(|l| !right.contains(&signature(&l.labels, matching)))
            .collect(),
        _ => {
            let left: BTreeSet<ResultLabels> =
                lhs.iter().map(|l| signature(&l.labels, matching)).collect();
            let extra = rhs
                .into_iter()
                .filter(|r| !left.contains(&signature(&r.labels, matching)));
            lhs.into_iter().chain(extra).collect()
        }
    }
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

/// Prometheus refuses a vector whose elements share a label set (e.g. after names drop).
pub(super) fn check_unique(elems: &[Elem]) -> Result<(), QueryError> {
    let mut seen = BTreeSet::new();
    for e in elems {
        if !seen.insert(&e.labels) {
            return Err(QueryError::execution(format!(
                "vector cannot contain metrics with the same labelset {}",
                format_labels(&e.labels)
            )));
        }
    }
    Ok(())
}

pub(super) fn drop_name(mut labels: ResultLabels) -> ResultLabels {
    labels.retain(|(n, _)| n != METRIC_NAME);
    labels
}

/// Stored labels as result labels; an empty value means "no label" in PromQL.
fn result_labels(labels: &assay_ledger::Labels) -> ResultLabels {
    labels
        .pairs()
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .cloned()
        .collect()
}

/// `{a="1", b="2"}` as Prometheus prints label sets in messages.
fn format_labels(labels: &ResultLabels) -> String {
    let inner: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

pub(super) fn duration_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => duration_ms(&d),
        Err(e) => duration_ms(&e.duration()).saturating_neg(),
    }
}

//! Binary operators: arithmetic, comparisons and set operators, with Prometheus' vector
//! matching (`on`/`ignoring`, `group_left`/`group_right`) and its errors.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use promql_parser::label::METRIC_NAME;
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::eval::{check_unique, drop_name, format_labels, set_label, Elem, Evaluator, Val};
use super::{QueryError, ResultLabels};

/// Evaluates `b` at `t`.
pub(super) fn binary(ev: &mut Evaluator<'_>, b: &BinaryExpr, t: i64) -> Result<Val, QueryError> {
    let op = BinOp::parse(&b.op.to_string())?;
    let return_bool = b.return_bool();
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
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
            let card = b
                .modifier
                .as_ref()
                .map_or(&VectorMatchCardinality::OneToOne, |m| &m.card);
            if let Some(m) = &b.modifier {
                if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                    return Err(QueryError::unsupported("fill modifier"));
                }
            }
            match op {
                BinOp::And | BinOp::Or | BinOp::Unless => set_operation(op, l, r, matching),
                _ => vector_vector(op, l, r, matching, card, return_bool)?,
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

    fn is_comparison(self) -> bool {
        self.compare(0.0, 0.0).is_some()
    }

    fn arith(self, l: f64, r: f64) -> f64 {
        match self {
            BinOp::Add => l + r,
            BinOp::Sub => l - r,
            BinOp::Mul => l * r,
            BinOp::Div => l / r,
            // Rust's `%` on floats is C's fmod, as Go's math.Mod.
            BinOp::Mod => l % r,
            // C's pow and Go's math.Pow agree on every special case (NaN, ±0, ±Inf).
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

/// Prometheus' `VectorBinop`: one-to-one, many-to-one (`group_left`) and one-to-many
/// (`group_right`, done as many-to-one with the sides swapped).
fn vector_vector(
    op: BinOp,
    lhs: Vec<Elem>,
    rhs: Vec<Elem>,
    matching: Option<&LabelModifier>,
    card: &VectorMatchCardinality,
    return_bool: bool,
) -> Result<Vec<Elem>, QueryError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let (include, swapped) = match card {
        VectorMatchCardinality::ManyToOne(l) => (l.labels.as_slice(), false),
        VectorMatchCardinality::OneToMany(l) => (l.labels.as_slice(), true),
        _ => (&[][..], false),
    };
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let mut one_side: BTreeMap<ResultLabels, Elem> = BTreeMap::new();
    for r in one {
        let sig = signature(&r.labels, matching);
        if let Some(dup) = one_side.get(&sig) {
            let side = if swapped { "left" } else { "right" };
            return Err(QueryError::execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                format_labels(&sig), format_labels(&r.labels), format_labels(&dup.labels)
            )));
        }
        one_side.insert(sig, r);
    }
    // Per match group, the result label sets produced so far.
    let mut matched: HashMap<ResultLabels, BTreeSet<ResultLabels>> = HashMap::new();
    let mut out = Vec::new();
    for l in many {
        let sig = signature(&l.labels, matching);
        let Some(r) = one_side.get(&sig) else {
            continue;
        };
        let (fl, fr) = if swapped { (r.v, l.v) } else { (l.v, r.v) };
        let v = match op.compare(fl, fr) {
            Some(keep) if return_bool => f64::from(u8::from(keep)),
            Some(true) => fl,
            Some(false) => continue,
            None => op.arith(fl, fr),
        };
        let labels = result_labels(l.labels, &r.labels, op, matching, one_to_one, include);
        let labels = if return_bool {
            drop_name(labels)
        } else {
            labels
        };
        let group = matched.entry(sig).or_default();
        if one_to_one {
            if !group.is_empty() {
                return Err(QueryError::execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                ));
            }
            group.insert(Vec::new());
        } else if !group.insert(labels.clone()) {
            return Err(QueryError::execution(
                "multiple matches for labels: grouping labels must ensure unique matches",
            ));
        }
        out.push(Elem { labels, v });
    }
    Ok(out)
}

/// Prometheus' `resultMetric`: the "many" side's labels, without the name for arithmetic,
/// reduced to the matching labels for one-to-one `on`/`ignoring`, plus the `group_x`
/// labels copied from the "one" side.
fn result_labels(
    mut labels: ResultLabels,
    one: &ResultLabels,
    op: BinOp,
    matching: Option<&LabelModifier>,
    one_to_one: bool,
    include: &[String],
) -> ResultLabels {
    if !op.is_comparison() {
        labels = drop_name(labels);
    }
    if one_to_one {
        match matching {
            Some(LabelModifier::Include(on)) => labels.retain(|(n, _)| on.labels.contains(n)),
            Some(LabelModifier::Exclude(ign)) => labels.retain(|(n, _)| !ign.labels.contains(n)),
            None => {}
        }
    }
    for name in include {
        let v = super::eval::label_value(one, name).to_string();
        set_label(&mut labels, name, &v);
    }
    labels
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

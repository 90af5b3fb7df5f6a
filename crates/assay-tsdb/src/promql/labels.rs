//! Functions that work on labels: `label_replace`, `label_join`, the labels `absent`
//! derives from its selector, and `sort_by_label`'s natural order.

use std::cmp::Ordering;

use promql_parser::label::{MatchOp, METRIC_NAME};
use promql_parser::parser::VectorSelector;
use regex::RegexBuilder;

use super::eval::{label_value, set_label, Elem};
use super::{QueryError, ResultLabels};
use crate::MATCHER_REGEX_BYTES_MAX;

/// Label names as Assay stores them, `[a-zA-Z_][a-zA-Z0-9_]*` (Prometheus 2's rule; 3
/// accepts any UTF-8 but Assay's ingest does not, so a query must not make names a write
/// could not, e.g. in a recording rule's output).
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `label_replace(v, dst, replacement, src, regex)`: where the anchored regex matches the
/// `src` label's value, `dst` becomes the expanded replacement (`$1`, `${name}`).
pub(super) fn label_replace(
    elems: Vec<Elem>,
    dst: &str,
    replacement: &str,
    src: &str,
    regex: &str,
) -> Result<Vec<Elem>, QueryError> {
    let re = RegexBuilder::new(&format!("^(?s:{regex})$"))
        .size_limit(MATCHER_REGEX_BYTES_MAX)
        .build()
        .map_err(|_| {
            QueryError::execution(format!(
                "invalid regular expression in label_replace(): {regex}"
            ))
        })?;
    if !valid_label_name(dst) {
        return Err(QueryError::execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(elems.len());
    for mut e in elems {
        let src_value = label_value(&e.labels, src).to_string();
        if let Some(caps) = re.captures(&src_value) {
            let mut value = String::new();
            caps.expand(replacement, &mut value);
            set_label(&mut e.labels, dst, &value);
        }
        out.push(e);
    }
    Ok(out)
}

/// `label_join(v, dst, separator, src...)`: `dst` becomes the `src` values joined.
pub(super) fn label_join(
    elems: Vec<Elem>,
    dst: &str,
    separator: &str,
    srcs: &[String],
) -> Result<Vec<Elem>, QueryError> {
    if let Some(src) = srcs.iter().find(|s| !valid_label_name(s)) {
        return Err(QueryError::execution(format!(
            "invalid source label name in label_join(): {src}"
        )));
    }
    if !valid_label_name(dst) {
        return Err(QueryError::execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(elems.len());
    for mut e in elems {
        let joined: Vec<&str> = srcs.iter().map(|s| label_value(&e.labels, s)).collect();
        let joined = joined.join(separator);
        set_label(&mut e.labels, dst, &joined);
        out.push(e);
    }
    Ok(out)
}

/// The labels `absent` reports for a selector: those of its equality matchers, except a
/// label matched more than once or also by another matcher, as Prometheus'
/// `createLabelsForAbsentFunction`.
pub(super) fn absent_labels(vs: &VectorSelector) -> ResultLabels {
    let mut labels = ResultLabels::new();
    let mut seen: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && !seen.contains(&m.name.as_str()) {
            set_label(&mut labels, &m.name, &m.value);
            seen.push(&m.name);
        } else {
            set_label(&mut labels, &m.name, "");
        }
    }
    labels
}

/// `sort_by_label(v, names...)` (or `_desc`): by each label in natural order, then by
/// all labels.
pub(super) fn sort_by_label(elems: Vec<Elem>, names: &[String], desc: bool) -> Vec<Elem> {
    let cmp = |a: &Elem, b: &Elem| {
        let (a, b) = if desc { (b, a) } else { (a, b) };
        for name in names {
            let (x, y) = (label_value(&a.labels, name), label_value(&b.labels, name));
            if x == y {
                continue;
            }
            // Natural order is not total (e.g. "01" and "1"): fall back to bytes.
            return match (natural_less(x, y), natural_less(y, x)) {
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                _ => x.cmp(y),
            };
        }
        a.labels.cmp(&b.labels)
    };
    merge_sort(elems, &cmp)
}

/// A stable merge sort that cannot panic whatever the comparison says.
fn merge_sort<T>(mut v: Vec<T>, cmp: &impl Fn(&T, &T) -> Ordering) -> Vec<T> {
    if v.len() <= 1 {
        return v;
    }
    let right = v.split_off(v.len() / 2);
    let (left, right) = (merge_sort(v, cmp), merge_sort(right, cmp));
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut right = right.into_iter().peekable();
    for l in left {
        while let Some(r) = right.next_if(|r| cmp(r, &l) == Ordering::Less) {
            out.push(r);
        }
        out.push(l);
    }
    out.extend(right);
    out
}

/// facette/natsort's `Compare`, which Prometheus uses: runs of digits compare as
/// integers, other runs as strings.
fn natural_less(a: &str, b: &str) -> bool {
    let (ca, cb) = (chunks(a), chunks(b));
    for (i, x) in ca.iter().enumerate() {
        let Some(y) = cb.get(i) else {
            return false;
        };
        let last_a = i == ca.len() - 1;
        let last_b = i == cb.len() - 1;
        match (x.parse::<i64>(), y.parse::<i64>()) {
            (Ok(p), Ok(q)) if p != q => return p < q,
            (Ok(_), Ok(_)) => {}
            _ if x != y => return x < y,
            _ => {}
        }
        if last_a {
            return true;
        }
        if last_b {
            return false;
        }
    }
    false
}

/// Maximal runs of ASCII digits and of everything else.
fn chunks(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev_digit = None;
    for (i, c) in s.char_indices() {
        let digit = c.is_ascii_digit();
        if prev_digit.is_some_and(|p| p != digit) {
            out.push(&s[start..i]);
            start = i;
        }
        prev_digit = Some(digit);
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

//! Prometheus rule files: YAML in, validated [`RuleGroup`]s out, checked as
//! `promtool check rules` does.

use std::fmt;

use serde::Deserialize;

use crate::duration::{format_duration_ms, parse_duration_ms};

/// Bytes of one rule file.
pub const RULE_FILE_BYTES_MAX: usize = 1024 * 1024;
/// Groups in one rule file.
pub const GROUPS_PER_FILE_MAX: usize = 256;
/// Rules in one group.
pub const RULES_PER_GROUP_MAX: usize = 1000;
/// Length of a rule's `expr`, bytes (the tsdb's PromQL accepts no longer query).
pub const RULE_EXPR_BYTES_MAX: usize = 16 * 1024;
/// Labels a rule may set (`labels:`), and annotations an alerting rule may carry.
pub const RULE_LABELS_MAX: usize = 64;
/// Length of a group name, bytes.
pub const GROUP_NAME_BYTES_MAX: usize = 256;
/// Group interval when the file gives none (Prometheus' default `evaluation_interval`).
pub const GROUP_INTERVAL_DEFAULT_MS: i64 = 60_000;
/// Shortest group interval: evaluations are driven by blocks, which are not this frequent.
pub const GROUP_INTERVAL_MIN_MS: i64 = 1_000;
/// Longest group interval.
pub const GROUP_INTERVAL_MAX_MS: i64 = 24 * 3_600_000;

/// A validated rule file.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleFile {
    /// Groups in file order.
    pub groups: Vec<RuleGroup>,
}

/// A named list of rules evaluated together, in order, every `interval_ms`.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleGroup {
    /// Unique within its file.
    pub name: String,
    /// Evaluation interval, ms; evaluations happen at multiples of it in absolute time.
    pub interval_ms: i64,
    /// Queries run this long before the evaluation time, and results are recorded there
    /// (Prometheus' `query_offset`: leaves room for late samples), ms.
    pub query_offset_ms: i64,
    /// Most series one rule may record per evaluation (0: only the engine's own bound).
    pub limit: usize,
    /// Rules in file order.
    pub rules: Vec<Rule>,
}

/// One rule of a group.
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    /// A recording rule: `expr` is evaluated and stored as series named `record`.
    Record {
        /// The metric name the results are stored under.
        record: String,
        /// The PromQL expression (an instant vector or a scalar).
        expr: String,
        /// Labels added to (or, with an empty value, removed from) every result; sorted.
        labels: Vec<(String, String)>,
    },
    /// An alerting rule, parsed and validated but **not evaluated**: alert lifecycle is a
    /// later component (`assay-alert`). The engine skips it; it is kept so one rule file
    /// serves both and so `promtool`-valid files load unchanged.
    Alert {
        /// The alert name.
        alert: String,
        /// The PromQL expression.
        expr: String,
        /// How long the condition must hold before the alert fires, ms.
        for_ms: i64,
        /// How long the alert keeps firing after the condition clears, ms.
        keep_firing_for_ms: i64,
        /// Labels attached to the alert; sorted.
        labels: Vec<(String, String)>,
        /// Annotations (templates, not expanded here); sorted.
        annotations: Vec<(String, String)>,
    },
}

impl Rule {
    /// The `record` or `alert` name.
    pub fn name(&self) -> &str {
        match self {
            Rule::Record { record, .. } => record,
            Rule::Alert { alert, .. } => alert,
        }
    }
}

/// One problem found in a rule file: where it is and what to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleFileError {
    /// The file name given to [`parse_rule_file`].
    pub file: String,
    /// 1-based line, when known (YAML errors; rule problems when the rule can be located).
    pub line: Option<usize>,
    /// The group's name (or `#index` when it has none), when the problem is in a group.
    pub group: Option<String>,
    /// 0-based index of the rule in its group, when the problem is in a rule.
    pub rule: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for RuleFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(group) = &self.group {
            write!(f, ": group {group:?}")?;
        }
        if let Some(rule) = self.rule {
            write!(f, ", rule {rule}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a rule file, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RuleFileErrors(pub Vec<RuleFileError>);

impl fmt::Display for RuleFileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    groups: Vec<RawGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    name: String,
    interval: Option<String>,
    query_offset: Option<String>,
    #[serde(default)]
    limit: usize,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    record: Option<String>,
    alert: Option<String>,
    #[serde(default)]
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// Parses and validates a rule file; `file` names it in errors. All problems are
/// reported, not only the first.
pub fn parse_rule_file(file: &str, text: &str) -> Result<RuleFile, RuleFileErrors> {
    let fail = |line: Option<usize>, message: String| {
        RuleFileErrors(vec![RuleFileError {
            file: file.to_string(),
            line,
            group: None,
            rule: None,
            message,
        }])
    };
    if text.len() > RULE_FILE_BYTES_MAX {
        return Err(fail(
            None,
            format!(
                "file is {} bytes, more than the {RULE_FILE_BYTES_MAX} allowed: split it",
                text.len()
            ),
        ));
    }
    let raw: RawFile = serde_yaml_ng::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        // The library appends "at line L column C"; the line is reported separately.
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        fail(line, format!("not a valid rule file: {msg}"))
    })?;
    let mut check = Checker {
        file,
        rule_lines: rule_lines(text),
        errors: Vec::new(),
    };
    if raw.groups.len() > GROUPS_PER_FILE_MAX {
        check.error(
            None,
            None,
            format!(
                "{} groups, more than the {GROUPS_PER_FILE_MAX} allowed: split the file",
                raw.groups.len()
            ),
        );
        return Err(RuleFileErrors(check.errors));
    }
    let rule_count: usize = raw.groups.iter().map(|g| g.rules.len()).sum();
    if check.rule_lines.len() != rule_count {
        // A flow-style file or a label named `record`: the heuristic cannot tell lines.
        check.rule_lines.clear();
    }
    let mut groups = Vec::with_capacity(raw.groups.len());
    let mut first_rule = 0;
    for (gi, g) in raw.groups.into_iter().enumerate() {
        let n = g.rules.len();
        if let Some(group) = check.group(gi, g, first_rule) {
            if groups.iter().any(|o: &RuleGroup| o.name == group.name) {
                check.error(
                    Some(group.name.clone()),
                    None,
                    "group name is repeated in the file: group names must be unique".into(),
                );
            }
            groups.push(group);
        }
        first_rule += n;
    }
    if check.errors.is_empty() {
        Ok(RuleFile { groups })
    } else {
        Err(RuleFileErrors(check.errors))
    }
}

/// 1-based line of each rule's `- ` item in document order, found by indentation under
/// block-style `rules:` keys; used only when the count matches the rules parsed (a
/// flow-style file gives none).
fn rule_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    // (indentation of the `rules` key, indentation of its items once known)
    let mut block: Option<(usize, Option<usize>)> = None;
    for (i, line) in text.lines().enumerate() {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        if let Some((key_indent, items)) = &mut block {
            let item_indent = *items.get_or_insert(indent);
            let is_item = content.starts_with("- ") || content == "-";
            if indent == item_indent && is_item && item_indent >= *key_indent {
                lines.push(i + 1);
                continue;
            }
            if indent <= item_indent {
                block = None;
            } else {
                continue;
            }
        }
        let key = content
            .strip_prefix("- ")
            .map(str::trim_start)
            .unwrap_or(content);
        if let Some(rest) = key.strip_prefix("rules:") {
            if rest.trim().is_empty() || rest.trim_start().starts_with('#') {
                block = Some((line.len() - key.len(), None));
            }
        }
    }
    lines
}

struct Checker<'a> {
    file: &'a str,
    rule_lines: Vec<usize>,
    errors: Vec<RuleFileError>,
}

impl Checker<'_> {
    fn error(&mut self, group: Option<String>, rule: Option<(usize, usize)>, message: String) {
        self.errors.push(RuleFileError {
            file: self.file.to_string(),
            line: rule.and_then(|(_, k)| self.rule_lines.get(k).copied()),
            group,
            rule: rule.map(|(i, _)| i),
            message,
        });
    }

    /// Validates one group; `first_rule` is the file-wide index of its first rule.
    fn group(&mut self, gi: usize, g: RawGroup, first_rule: usize) -> Option<RuleGroup> {
        let before = self.errors.len();
        let label = if g.name.is_empty() {
            format!("#{gi}")
        } else {
            g.name.clone()
        };
        let gname = Some(label.clone());
        if g.name.is_empty() {
            self.error(gname.clone(), None, "group name must not be empty".into());
        } else if g.name.len() > GROUP_NAME_BYTES_MAX {
            self.error(
                gname.clone(),
                None,
                format!("group name is longer than {GROUP_NAME_BYTES_MAX} bytes"),
            );
        }
        let interval_ms = match g.interval.as_deref() {
            None => GROUP_INTERVAL_DEFAULT_MS,
            Some(s) => match parse_duration_ms(s) {
                Ok(ms) if (GROUP_INTERVAL_MIN_MS..=GROUP_INTERVAL_MAX_MS).contains(&ms) => ms,
                Ok(_) => {
                    self.error(
                        gname.clone(),
                        None,
                        format!(
                            "interval {s:?} is out of range: use {} to {}",
                            format_duration_ms(GROUP_INTERVAL_MIN_MS),
                            format_duration_ms(GROUP_INTERVAL_MAX_MS)
                        ),
                    );
                    0
                }
                Err(e) => {
                    self.error(gname.clone(), None, format!("interval: {e}"));
                    0
                }
            },
        };
        let query_offset_ms = match g.query_offset.as_deref().map(parse_duration_ms) {
            None => 0,
            Some(Ok(ms)) if ms < interval_ms.max(1) * 10 => ms,
            Some(Ok(_)) => {
                self.error(
                    gname.clone(),
                    None,
                    "query_offset must be shorter than 10 intervals".into(),
                );
                0
            }
            Some(Err(e)) => {
                self.error(gname.clone(), None, format!("query_offset: {e}"));
                0
            }
        };
        if g.rules.len() > RULES_PER_GROUP_MAX {
            self.error(
                gname,
                None,
                format!(
                    "{} rules, more than the {RULES_PER_GROUP_MAX} allowed: split the group",
                    g.rules.len()
                ),
            );
            return None;
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(g.rules.len());
        for (ri, r) in g.rules.into_iter().enumerate() {
            let at = Some((ri, first_rule + ri));
            if let Some(rule) = self.rule(&label, at, r) {
                if rules.iter().any(|o| same_series(o, &rule)) {
                    self.error(
                        Some(label.clone()),
                        at,
                        format!(
                            "duplicate rule: an earlier rule of the group has the name {:?} \
                             and the same labels; rename one or give them distinct labels",
                            rule.name()
                        ),
                    );
                }
                rules.push(rule);
            }
        }
        (self.errors.len() == before).then_some(RuleGroup {
            name: g.name,
            interval_ms,
            query_offset_ms,
            limit: g.limit,
            rules,
        })
    }

    fn rule(&mut self, group: &str, at: Option<(usize, usize)>, r: RawRule) -> Option<Rule> {
        let before = self.errors.len();
        let err = |this: &mut Self, m: String| this.error(Some(group.to_string()), at, m);
        let name = match (&r.record, &r.alert) {
            (Some(_), Some(_)) => {
                err(self, "only one of `record` and `alert` may be set".into());
                return None;
            }
            (None, None) => {
                err(self, "one of `record` or `alert` must be set".into());
                return None;
            }
            (Some(n), None) | (None, Some(n)) => n.clone(),
        };
        let is_record = r.record.is_some();
        if is_record && !is_metric_name(&name) {
            err(
                self,
                format!(
                    "invalid recording rule name {name:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*"
                ),
            );
        }
        if !is_record && name.is_empty() {
            err(self, "alert name must not be empty".into());
        }
        if is_record {
            for (field, set) in [
                ("for", r.for_.is_some()),
                ("keep_firing_for", r.keep_firing_for.is_some()),
                ("annotations", r.annotations.is_some()),
            ] {
                if set {
                    err(
                        self,
                        format!("invalid field `{field}` in a recording rule: remove it"),
                    );
                }
            }
        }
        self.expr(group, at, &r.expr, is_record);
        let labels = self.labels(group, at, "label", r.labels, is_record);
        let annotations = self.labels(
            group,
            at,
            "annotation",
            r.annotations.unwrap_or_default(),
            false,
        );
        let for_ms = self.duration(group, at, "for", r.for_.as_deref());
        let keep_firing_for_ms =
            self.duration(group, at, "keep_firing_for", r.keep_firing_for.as_deref());
        if self.errors.len() != before {
            return None;
        }
        Some(if is_record {
            Rule::Record {
                record: name,
                expr: r.expr,
                labels,
            }
        } else {
            Rule::Alert {
                alert: name,
                expr: r.expr,
                for_ms,
                keep_firing_for_ms,
                labels,
                annotations,
            }
        })
    }

    fn expr(&mut self, group: &str, at: Option<(usize, usize)>, expr: &str, is_record: bool) {
        let g = Some(group.to_string());
        if expr.trim().is_empty() {
            self.error(g, at, "field `expr` must be set".into());
            return;
        }
        if expr.len() > RULE_EXPR_BYTES_MAX {
            self.error(
                g,
                at,
                format!(
                    "expr is {} bytes, more than the {RULE_EXPR_BYTES_MAX} allowed",
                    expr.len()
                ),
            );
            return;
        }
        match promql_parser::parser::parse(expr) {
            Err(e) => self.error(g, at, format!("could not parse expr: {}", e.trim())),
            Ok(parsed) => {
                use promql_parser::parser::value::ValueType;
                let t = parsed.value_type();
                if is_record && !matches!(t, ValueType::Vector | ValueType::Scalar) {
                    self.error(
                        g,
                        at,
                        format!(
                            "expr is a {t}: a recording rule needs an instant vector or a scalar"
                        ),
                    );
                }
            }
        }
    }

    fn labels(
        &mut self,
        group: &str,
        at: Option<(usize, usize)>,
        what: &str,
        map: std::collections::BTreeMap<String, String>,
        is_record: bool,
    ) -> Vec<(String, String)> {
        if map.len() > RULE_LABELS_MAX {
            self.error(
                Some(group.to_string()),
                at,
                format!(
                    "{} {what}s, more than the {RULE_LABELS_MAX} allowed",
                    map.len()
                ),
            );
        }
        for name in map.keys() {
            if !is_label_name(name) {
                self.error(
                    Some(group.to_string()),
                    at,
                    format!("invalid {what} name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_]*"),
                );
            } else if is_record && name == "__name__" {
                self.error(
                    Some(group.to_string()),
                    at,
                    "label `__name__` cannot be set: the metric name is `record`".into(),
                );
            }
        }
        map.into_iter().collect()
    }

    fn duration(
        &mut self,
        group: &str,
        at: Option<(usize, usize)>,
        field: &str,
        value: Option<&str>,
    ) -> i64 {
        match value.map(parse_duration_ms) {
            None => 0,
            Some(Ok(ms)) => ms,
            Some(Err(e)) => {
                self.error(Some(group.to_string()), at, format!("{field}: {e}"));
                0
            }
        }
    }
}

/// Whether two rules write the same series: same name and same labels (as promtool's
/// duplicate check; one name with distinct labels is a legitimate split).
fn same_series(a: &Rule, b: &Rule) -> bool {
    let labels = |r: &Rule| match r {
        Rule::Record { labels, .. } | Rule::Alert { labels, .. } => labels.clone(),
    };
    std::mem::discriminant(a) == std::mem::discriminant(b)
        && a.name() == b.name()
        && labels(a) == labels(b)
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, Prometheus' (legacy) metric name rule.
pub fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, Prometheus' (legacy) label name rule.
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

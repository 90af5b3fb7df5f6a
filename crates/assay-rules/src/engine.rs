//! The recording-rule engine: a schedule driven by block time, and group evaluation
//! through a caller-provided [`Evaluate`].

use assay_ledger::{Labels, SampleBatch, METRIC_NAME_LABEL};
use sha2::{Digest, Sha256};

use crate::rule_file::{Rule, RuleGroup};

/// Missed evaluations of one group that one block may catch up; older ones are skipped
/// and counted in [`GroupSchedule::missed`].
pub const CATCH_UP_EVALUATIONS_MAX: u64 = 10;
/// Block times beyond ±this (about ±285,000 years) make nothing due: the schedule's
/// arithmetic stays far from i64's ends.
pub const BLOCK_TIME_ABS_MAX_MS: i64 = 1 << 53;
/// Past evaluations of one group that one late sample may make re-run (the newest).
pub const RECHECK_EVALUATIONS_MAX: u64 = 60;
/// Series one rule may record per evaluation, whatever the group's `limit`.
pub const RULE_SERIES_MAX: usize = 100_000;

/// One element of an instant vector returned by an [`Evaluate`].
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSample {
    /// Result labels, any order; `__name__` (if present) is replaced by the rule's name.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// Runs PromQL for the engine; the node implements it over the tsdb, tests over a table.
pub trait Evaluate {
    /// The value of `expr` at `t_ms` as an instant vector (a scalar is one sample with no
    /// labels). `recorded` holds what earlier rules of the same group recorded in this
    /// evaluation, not yet in the ledger: the answer must be as if they were stored
    /// (Prometheus semantics). It is empty when `expr` cannot select any of them (no
    /// selector names an earlier rule's `record`, and every selector names a metric), so
    /// an evaluator pays for an overlay only when a rule builds on another. The error is
    /// a human-readable reason.
    fn instant(
        &mut self,
        expr: &str,
        t_ms: i64,
        recorded: &SampleBatch,
    ) -> Result<Vec<RuleSample>, String>;
}

/// An evaluation the schedule says is due: group `group` (index into the engine's
/// groups) at `t_ms`, a multiple of the group's interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    /// Index of the group.
    pub group: usize,
    /// The evaluation time, ms since the Unix epoch.
    pub t_ms: i64,
}

/// Schedule state of one group (plain data: the node snapshots it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupSchedule {
    /// The next evaluation time not yet due; `None` before the first block.
    pub next_ms: Option<i64>,
    /// Evaluations made due so far.
    pub evaluations: u64,
    /// Evaluations skipped because a block came more than
    /// [`CATCH_UP_EVALUATIONS_MAX`] intervals after the previous one.
    pub missed: u64,
}

/// Why one rule recorded nothing in an evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleFailure {
    /// Index of the group.
    pub group: usize,
    /// Index of the rule in its group.
    pub rule: usize,
    /// What went wrong.
    pub message: String,
}

/// What one group evaluation produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupOutput {
    /// Recorded samples, at the evaluation time less the group's query offset.
    pub batch: SampleBatch,
    /// Rules that recorded nothing, and why.
    pub failures: Vec<RuleFailure>,
}

/// Recording rules over block time: which groups are due, and their evaluation.
///
/// Pure: no clock, no I/O; the schedule depends only on the block times given to
/// [`RuleEngine::on_block`], so replicas and replays agree.
#[derive(Clone, Debug)]
pub struct RuleEngine {
    groups: Vec<RuleGroup>,
    /// Per group, per rule: whether its expression may select a series an earlier rule
    /// of the group records (only then is it shown the earlier results).
    reads_earlier: Vec<Vec<bool>>,
    schedule: Vec<GroupSchedule>,
    /// Time of the newest block seen.
    last_block_ms: Option<i64>,
}

impl RuleEngine {
    /// An engine for `groups` (usually [`crate::RuleFile::groups`]), before any block.
    pub fn new(groups: Vec<RuleGroup>) -> RuleEngine {
        assert!(
            groups.iter().all(|g| g.interval_ms > 0),
            "group intervals are validated positive"
        );
        let schedule = vec![GroupSchedule::default(); groups.len()];
        let reads_earlier = groups.iter().map(reads_earlier_records).collect();
        RuleEngine {
            groups,
            reads_earlier,
            schedule,
            last_block_ms: None,
        }
    }

    /// An engine for which the block at `block_time_ms` was already handled: the first
    /// evaluations it makes due are those after that block. What a node builds at start-up
    /// (after its last applied block) or when the rules change, so that an evaluation is
    /// never made due twice. The schedule needs no other history: after a block at `T`,
    /// every group's next evaluation is the first multiple of its interval after `T`.
    pub fn after_block(groups: Vec<RuleGroup>, block_time_ms: i64) -> RuleEngine {
        let mut engine = RuleEngine::new(groups);
        engine.on_block(block_time_ms);
        for s in &mut engine.schedule {
            s.evaluations = 0;
        }
        engine
    }

    /// An engine resumed from [`RuleEngine::schedule`] and [`RuleEngine::last_block_ms`]
    /// of a snapshot; `schedule` must have one entry per group.
    pub fn resume(
        groups: Vec<RuleGroup>,
        schedule: Vec<GroupSchedule>,
        last_block_ms: Option<i64>,
    ) -> RuleEngine {
        assert_eq!(groups.len(), schedule.len(), "one schedule per group");
        let mut engine = RuleEngine::new(groups);
        engine.schedule = schedule;
        engine.last_block_ms = last_block_ms;
        engine
    }

    /// The groups, in file order.
    pub fn groups(&self) -> &[RuleGroup] {
        &self.groups
    }

    /// Schedule state of each group.
    pub fn schedule(&self) -> &[GroupSchedule] {
        &self.schedule
    }

    /// Time of the newest block seen.
    pub fn last_block_ms(&self) -> Option<i64> {
        self.last_block_ms
    }

    /// Advances the schedule to a committed block's time and returns the evaluations now
    /// due, by time then group. A block no newer than the previous one, or beyond
    /// [`BLOCK_TIME_ABS_MAX_MS`], makes nothing due.
    ///
    /// A group's evaluations are at multiples of its interval (no per-group offset). The
    /// first block makes the newest multiple at or before it due; later blocks make every
    /// multiple since due, at most [`CATCH_UP_EVALUATIONS_MAX`] (the newest) per block.
    pub fn on_block(&mut self, block_time_ms: i64) -> Vec<Due> {
        if self.last_block_ms.is_some_and(|t| block_time_ms <= t)
            || block_time_ms.unsigned_abs() > BLOCK_TIME_ABS_MAX_MS as u64
        {
            return Vec::new();
        }
        self.last_block_ms = Some(block_time_ms);
        let mut due = Vec::new();
        for (gi, (g, s)) in self.groups.iter().zip(&mut self.schedule).enumerate() {
            let interval = g.interval_ms;
            let newest = block_time_ms.div_euclid(interval) * interval;
            let next = s.next_ms.unwrap_or(newest);
            if newest < next {
                continue;
            }
            let count = ((newest - next) / interval) as u64 + 1;
            let run = count.min(CATCH_UP_EVALUATIONS_MAX);
            s.missed += count - run;
            s.evaluations += run;
            let first = newest - (run as i64 - 1) * interval;
            due.extend((0..run as i64).map(|k| Due {
                group: gi,
                t_ms: first + k * interval,
            }));
            s.next_ms = Some(newest + interval);
            debug_assert!(s.next_ms.unwrap() > block_time_ms);
        }
        due.sort_by_key(|d| (d.t_ms, d.group));
        due
    }

    /// The evaluation times a sample at `sample_ms` arriving late may change, by time then
    /// group: a rule evaluated at `E` reads samples up to `E − query_offset`, so every
    /// evaluation time (multiple of the group's interval) with `E − query_offset ≥
    /// sample_ms`, up to the group's last due one. None before `not_before_ms` (the caller's
    /// out-of-order window and start), and per group at most [`RECHECK_EVALUATIONS_MAX`],
    /// the newest. Times the schedule skipped (catch-up limit) are included: a late sample
    /// fills in what it should have produced. Re-running them and recording what changed
    /// corrects the results without counting a sample twice.
    pub fn evaluations_since(&self, sample_ms: i64, not_before_ms: i64) -> Vec<Due> {
        let mut due = Vec::new();
        for (gi, (g, s)) in self.groups.iter().zip(&self.schedule).enumerate() {
            let Some(next) = s.next_ms else { continue };
            let interval = g.interval_ms;
            let last = next - interval;
            let from = sample_ms
                .saturating_add(g.query_offset_ms)
                .max(not_before_ms)
                .clamp(-BLOCK_TIME_ABS_MAX_MS, BLOCK_TIME_ABS_MAX_MS);
            // The first multiple of the interval at or after `from`.
            let first =
                (from.div_euclid(interval) + (from.rem_euclid(interval) != 0) as i64) * interval;
            if first > last {
                continue;
            }
            let count = (((last - first) / interval) as u64 + 1).min(RECHECK_EVALUATIONS_MAX);
            let start = last - (count as i64 - 1) * interval;
            due.extend((0..count as i64).map(|k| Due {
                group: gi,
                t_ms: start + k * interval,
            }));
        }
        due.sort_by_key(|d| (d.t_ms, d.group));
        due
    }

    /// Evaluates the recording rules of `due.group` at `due.t_ms`, in order; each rule's
    /// `expr` runs at `due.t_ms` less the group's query offset, and sees what the earlier
    /// rules recorded. Alerting rules are skipped. A rule that fails records nothing, and
    /// the others still run (as Prometheus).
    pub fn evaluate(&self, due: &Due, ev: &mut impl Evaluate) -> GroupOutput {
        let g = &self.groups[due.group];
        let t = due.t_ms - g.query_offset_ms;
        let mut out = GroupOutput::default();
        let nothing = SampleBatch::new();
        for (ri, rule) in g.rules.iter().enumerate() {
            let Rule::Record {
                record,
                expr,
                labels,
            } = rule
            else {
                continue;
            };
            // A rule that cannot read earlier results gets none: the evaluator can skip
            // its overlay.
            let recorded = match self.reads_earlier[due.group][ri] {
                true => &out.batch,
                false => &nothing,
            };
            let result = ev
                .instant(expr, t, recorded)
                .and_then(|samples| record_samples(record, labels, samples, g.limit));
            match result {
                Ok(samples) => {
                    for (l, v) in samples {
                        out.batch.push(l, t, v);
                    }
                }
                Err(message) => out.failures.push(RuleFailure {
                    group: due.group,
                    rule: ri,
                    message,
                }),
            }
        }
        out
    }

    /// [`RuleEngine::on_block`] then [`RuleEngine::evaluate`] of everything due, in order:
    /// what a live node runs after committing a block. One batch for all groups.
    pub fn run_block(&mut self, block_time_ms: i64, ev: &mut impl Evaluate) -> GroupOutput {
        let mut out = GroupOutput::default();
        for due in self.on_block(block_time_ms) {
            let g = self.evaluate(&due, ev);
            for (l, t, v) in g.batch.iter() {
                out.batch.push(l.clone(), t, v);
            }
            out.failures.extend(g.failures);
        }
        out
    }

    /// SHA-256 of the groups and the schedule: equal engines have equal digests.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(format!("{:?}", self.groups).as_bytes());
        h.update(format!("{:?}{:?}", self.schedule, self.last_block_ms).as_bytes());
        h.finalize().into()
    }
}

/// The series a rule records from an evaluator's result: `__name__` replaced by
/// `record`, rule labels set (an empty value removes the label), sorted by labels.
/// Fails as Prometheus does when two results end up with one label set, and when the
/// result has more series than `limit` (0: [`RULE_SERIES_MAX`]).
fn record_samples(
    record: &str,
    rule_labels: &[(String, String)],
    samples: Vec<RuleSample>,
    limit: usize,
) -> Result<Vec<(Labels, f64)>, String> {
    let max = if limit == 0 {
        RULE_SERIES_MAX
    } else {
        limit.min(RULE_SERIES_MAX)
    };
    if samples.len() > max {
        return Err(format!(
            "{} series exceed the limit of {max}: narrow the expression or raise the group's limit",
            samples.len()
        ));
    }
    let mut out = Vec::with_capacity(samples.len());
    for s in samples {
        let mut pairs: Vec<(String, String)> = s
            .labels
            .into_iter()
            .filter(|(n, v)| n != METRIC_NAME_LABEL && !v.is_empty())
            .filter(|(n, _)| !rule_labels.iter().any(|(r, _)| r == n))
            .collect();
        pairs.extend(rule_labels.iter().filter(|(_, v)| !v.is_empty()).cloned());
        pairs.push((METRIC_NAME_LABEL.to_string(), record.to_string()));
        let labels = Labels::new(pairs).map_err(|e| format!("result labels: {e}"))?;
        out.push((labels, s.value));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!(
            "two results have the label set {:?} after applying the rule's labels",
            w[0].0.pairs()
        ));
    }
    Ok(out)
}

/// For each rule of `g`: whether its expression may select a series named like an
/// earlier recording rule of the group (a selector without a fixed name may).
fn reads_earlier_records(g: &RuleGroup) -> Vec<bool> {
    let mut earlier: Vec<&str> = Vec::new();
    let mut out = Vec::with_capacity(g.rules.len());
    for rule in &g.rules {
        let Rule::Record { record, expr, .. } = rule else {
            out.push(false);
            continue;
        };
        let reads = match promql_parser::parser::parse(expr) {
            Ok(e) => {
                let mut names = Vec::new();
                selector_names(&e, &mut names);
                names
                    .iter()
                    .any(|n| n.as_deref().is_none_or(|n| earlier.contains(&n)))
            }
            Err(_) => true,
        };
        out.push(reads && !earlier.is_empty());
        earlier.push(record);
    }
    out
}

/// The metric name of every selector in `e`; `None` for one without a fixed name.
fn selector_names(e: &promql_parser::parser::Expr, out: &mut Vec<Option<String>>) {
    use promql_parser::label::MatchOp;
    use promql_parser::parser::{Expr, VectorSelector};
    let vs_name = |vs: &VectorSelector| {
        vs.name.clone().or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == METRIC_NAME_LABEL && m.op == MatchOp::Equal)
                .filter(|_| vs.matchers.or_matchers.is_empty())
                .map(|m| m.value.clone())
        })
    };
    match e {
        Expr::VectorSelector(vs) => out.push(vs_name(vs)),
        Expr::MatrixSelector(ms) => out.push(vs_name(&ms.vs)),
        Expr::Aggregate(a) => {
            selector_names(&a.expr, out);
            if let Some(p) = &a.param {
                selector_names(p, out);
            }
        }
        Expr::Unary(u) => selector_names(&u.expr, out),
        Expr::Binary(b) => {
            selector_names(&b.lhs, out);
            selector_names(&b.rhs, out);
        }
        Expr::Paren(p) => selector_names(&p.expr, out),
        Expr::Subquery(s) => selector_names(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| selector_names(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        // Unknown node: assume it may read anything.
        Expr::Extension(_) => out.push(None),
    }
}

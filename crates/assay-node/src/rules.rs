//! Recording rules on a live node: rule files loaded at start, groups evaluated by the
//! sequencer, results committed to the ledger like any write.
//!
//! The schedule runs on block time ([`assay_rules::RuleEngine`]): after each committed
//! block, and once a second while no writes arrive (so an idle node still records). A
//! group's rules run in order against the views; when a rule reads what an earlier rule of
//! the same evaluation recorded, those results are committed (ledger, then views) first, so
//! it sees them as Prometheus' rules do, without the views ever holding what the ledger
//! does not. Results pass the same admission as client writes: an evaluation repeated
//! after a restart with a different answer is refused and logged, never overwritten.
//! Replay applies recorded results and never re-evaluates.
//!
//! Late samples (event time): after a block whose samples are older than evaluations
//! already made (an agent that was offline, a slow sender), those evaluations — within the
//! out-of-order window, made by this process — run again and the results that changed are
//! committed at the same evaluation time ([`correct_late`]). The view keeps the later
//! write, so a sum over a window counts each late sample once; the ledger keeps both the
//! first answer and the correction.

use std::path::PathBuf;

use assay_ledger::{Entry, SampleBatch};
use assay_rules::{Evaluate, RuleEngine, RuleGroup, RuleSample};
use assay_tsdb::promql::{self, Value};

use crate::sequencer::{commit_entries, Shared};
use crate::NodeError;

/// Reads and checks every rule file (as `promtool check rules`); the groups of all files.
pub fn load(files: &[PathBuf]) -> Result<Vec<RuleGroup>, NodeError> {
    let mut groups = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| NodeError::Rules(format!("reading rule file {}: {e}", path.display())))?;
        let file = assay_rules::parse_rule_file(&path.display().to_string(), &text)
            .map_err(|e| NodeError::Rules(e.to_string()))?;
        groups.extend(file.groups);
    }
    Ok(groups)
}

/// The tsdb's PromQL for the engine, committing earlier rules' results before a later rule
/// runs.
struct ViewsEvaluator<'a> {
    shared: &'a Shared,
    window_ms: i64,
    /// Samples of the current evaluation already committed (a prefix of its batch).
    committed: usize,
    /// A ledger failure: the sequencer stops accepting writes.
    ledger_error: Option<String>,
    /// Re-running a past evaluation: commit only results that differ from the view's,
    /// replacing them (no admission: these are the node's own corrections).
    correcting: bool,
    /// Results committed as corrections.
    corrected: usize,
}

impl ViewsEvaluator<'_> {
    /// Commits the samples of `batch` past those already committed.
    fn commit_rest(&mut self, batch: &SampleBatch) {
        if batch.len() <= self.committed || self.ledger_error.is_some() {
            return;
        }
        let mut rest = SampleBatch::with_capacity(batch.len() - self.committed);
        for (labels, t, v) in batch.iter().skip(self.committed) {
            rest.push(labels.clone(), t, v);
        }
        self.committed = batch.len();
        if self.correcting {
            let changed = {
                let views = self.shared.views.read().expect("views lock");
                let mut changed = SampleBatch::new();
                for (labels, t, v) in rest.iter() {
                    let held = views.tsdb.value_at_exactly(labels, t);
                    if held.map(f64::to_bits) != Some(v.to_bits()) {
                        changed.push(labels.clone(), t, v);
                    }
                }
                changed
            };
            if changed.is_empty() {
                return;
            }
            self.corrected += changed.len();
            let entry = Entry::Samples(changed);
            if let Err(e) = commit_entries(self.shared, &[&entry.encode()], &[&entry], &[]) {
                self.ledger_error = Some(e);
            }
            return;
        }
        let conflict = {
            let views = self.shared.views.read().expect("views lock");
            assay_tsdb::Admission::new(&views.tsdb, self.window_ms)
                .admit(&rest)
                .err()
        };
        if let Some(c) = conflict {
            tracing::warn!(error = %c, "recording rule results refused");
            return;
        }
        let entry = Entry::Samples(rest);
        if let Err(e) = commit_entries(self.shared, &[&entry.encode()], &[&entry], &[]) {
            self.ledger_error = Some(e);
        }
    }
}

impl Evaluate for ViewsEvaluator<'_> {
    fn instant(
        &mut self,
        expr: &str,
        t_ms: i64,
        recorded: &SampleBatch,
    ) -> Result<Vec<RuleSample>, String> {
        self.commit_rest(recorded);
        if let Some(e) = &self.ledger_error {
            return Err(format!("the ledger failed: {e}"));
        }
        let views = self.shared.views.read().expect("views lock");
        match promql::instant_query(&views.tsdb, expr, t_ms) {
            Ok(Value::Vector(v)) => Ok(v
                .into_iter()
                .map(|s| RuleSample {
                    labels: s.labels,
                    value: s.v,
                })
                .collect()),
            Ok(Value::Scalar { v, .. }) => Ok(vec![RuleSample {
                labels: Vec::new(),
                value: v,
            }]),
            Ok(_) => Err("a recording rule's expression must give a vector or a scalar".into()),
            Err(e) => Err(e.message),
        }
    }
}

/// Runs the groups due at `time_ms` and commits their results; `Err` when the ledger failed.
pub(crate) fn run_due(
    shared: &Shared,
    engine: &mut RuleEngine,
    time_ms: i64,
    window_ms: i64,
) -> Result<(), String> {
    let due = engine.on_block(time_ms);
    evaluate(shared, engine, &due, window_ms, false)
}

/// Re-runs the evaluations a late sample at `earliest_sample_ms` may change (none before
/// `not_before_ms`) and commits the results that changed; `Err` when the ledger failed.
pub(crate) fn correct_late(
    shared: &Shared,
    engine: &RuleEngine,
    earliest_sample_ms: i64,
    not_before_ms: i64,
    window_ms: i64,
) -> Result<(), String> {
    let due = engine.evaluations_since(earliest_sample_ms, not_before_ms);
    evaluate(shared, engine, &due, window_ms, true)
}

fn evaluate(
    shared: &Shared,
    engine: &RuleEngine,
    due: &[assay_rules::Due],
    window_ms: i64,
    correcting: bool,
) -> Result<(), String> {
    for due in due {
        let mut ev = ViewsEvaluator {
            shared,
            window_ms,
            committed: 0,
            ledger_error: None,
            correcting,
            corrected: 0,
        };
        let out = engine.evaluate(due, &mut ev);
        ev.commit_rest(&out.batch);
        let group = &engine.groups()[due.group].name;
        for f in &out.failures {
            let rule = engine.groups()[due.group].rules[f.rule].name();
            tracing::warn!(group = %group, rule = %rule, error = %f.message, "recording rule failed");
        }
        if correcting {
            if ev.corrected > 0 {
                tracing::debug!(group = %group, t_ms = due.t_ms, corrected = ev.corrected, "late samples corrected recorded results");
            }
            shared.metrics.rules_corrected(ev.corrected);
        } else {
            shared
                .metrics
                .rules_evaluated(out.batch.len(), out.failures.len());
        }
        if let Some(e) = ev.ledger_error {
            return Err(e);
        }
    }
    Ok(())
}

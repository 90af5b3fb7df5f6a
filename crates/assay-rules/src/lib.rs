//! Recording rules and event-time windowed aggregation, as pure state machines driven by
//! the ledger: block time in, samples out. No clock, no I/O, no threads.
//!
//! # Start here
//! - [`parse_rule_file`] → [`RuleFile`]: Prometheus rule-file YAML, validated like
//!   `promtool check rules` (every problem reported with file, line when known, group,
//!   rule index and what to fix).
//! - [`RuleEngine`]: which groups are due at a block's time ([`RuleEngine::on_block`]) and
//!   their evaluation ([`RuleEngine::evaluate`]) through an [`Evaluate`] the caller
//!   provides (the node: the tsdb's PromQL; tests: a table).
//! - [`WindowAggregator`]: tumbling or hopping event-time windows over samples in ledger
//!   order, with a watermark, allowed lateness, corrected results (updates) for late
//!   samples and no double counting.
//!
//! # How the node wires it (not done here)
//! ```text
//! start-up / rules changed:  rules = RuleEngine::after_block(groups, time of last applied block)
//!                            windows = WindowAggregator::new(spec)   (a view: rebuilt by replay)
//! apply block B (time T):    tsdb.apply_batch(..) and windows.push_batch(batch, &mut results)
//!                            for each of B's entries, in ledger order
//! after B commits (leader):  for d in rules.on_block(T) {
//!                                out = rules.evaluate(&d, &mut TsdbEvaluator { tsdb, .. });
//!                                submit out.batch as Entry::Samples; log out.failures
//!                            }
//! ```
//! [`RuleEngine::run_block`] does `on_block` and every `evaluate` in one call. Rule results
//! are ordinary ledger entries, applied like any write: replay applies them and never
//! re-evaluates, and the tsdb stays a pure function of the ledger although evaluation
//! reads it. The schedule after a block at `T` depends only on `T` (the next multiple of
//! each interval), so a new leader or a restarted node that builds its engine with
//! [`RuleEngine::after_block`] continues without repeating an evaluation; evaluations due
//! at a block whose results never reached the ledger (a crash in between) are a gap, as a
//! Prometheus restart leaves one. Rule files must be the same on every node (best: in
//! the ledger), or leaders will record different rules.
//!
//! The [`Evaluate`] over the tsdb must make the `recorded` batch visible to later rules of
//! the same evaluation (an overlay; the tsdb's `instant_query` reads one `Tsdb`): see
//! [`Evaluate::instant`]. A scalar result is one sample without labels.
//!
//! Window results ([`WindowResult`]) are a view, like the tsdb: deterministic from the
//! ledger, so they need not be committed; a node that wants them queryable turns each
//! into samples (e.g. `<name>_sum{job=..}` at the window end, a later revision replacing
//! the earlier value at the same timestamp, as the tsdb does).
//!
//! # Invariants
//! - **Block time is the only clock.** `on_block` takes it; windows use event time (the
//!   samples' timestamps) only. Same inputs → same outputs and same digest, bit for bit.
//! - **No map iteration order leaks.** Hash maps are lookups only; outputs are sorted by
//!   time, group/window and labels.
//! - **Everything is bounded**: the constants in [`rule_file`], [`engine`] and
//!   [`WindowSpec`]'s limits; what a bound drops is counted, never silently lost.
//!
//! # Not here
//! Alert evaluation (alerting rules are parsed and validated, then skipped), stale
//! markers for series a rule stops producing, templating of labels, and evaluation
//! itself (PromQL is the tsdb's).

mod duration;
pub mod engine;
pub mod rule_file;
pub mod window;

pub use duration::{format_duration_ms, parse_duration_ms};
pub use engine::{Due, Evaluate, GroupOutput, GroupSchedule, RuleEngine, RuleFailure, RuleSample};
pub use rule_file::{parse_rule_file, Rule, RuleFile, RuleFileError, RuleFileErrors, RuleGroup};
pub use window::{Aggregate, WindowAggregator, WindowError, WindowResult, WindowSpec, WindowStats};

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
//! apply block B (time T):  tsdb.apply_batch(..) for B's entries
//!                          windows.push_batch(batch, &mut results) for B's entries
//!                          due = rules.on_block(T)           ← on every replica, on replay too
//! after commit, live only: for d in due { out = rules.evaluate(&d, &mut TsdbEvaluator) }
//!                          submit out.batch as an Entry::Samples  → in the ledger, applied
//!                          like any write; replay applies it and never re-evaluates
//! ```
//! [`RuleEngine::run_block`] does `on_block` and every `evaluate` in one call. The rule
//! results are data in the ledger, so the tsdb stays a pure function of the ledger even
//! though evaluation reads a view. The [`Evaluate`] over the tsdb must make the
//! `recorded` batch visible to later rules of the same evaluation (an overlay): see
//! [`Evaluate::instant`].
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

//! The evaluator: one expression at one time. A range query runs it once per step.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use promql_parser::label::METRIC_NAME;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AtModifier, Call, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};

use super::steps::{
    lookback_column, tabulable_nodes, unparen, window_column, Column, Grouping, StepGrid,
    StepTable, STALE_NAN_BITS, STEP_TABLE_CELLS_MAX,
};
use super::{
    aggregate, binary, functions, over_time, parse, QueryError, ResultLabels, Sample, Series,
    Value, LOOKBACK_DELTA_MS, QUERY_SAMPLES_LOADED_MAX, QUERY_SERIES_TOUCHED_MAX,
    QUERY_SUBQUERY_STEPS_MAX, SUBQUERY_DEFAULT_STEP_MS,
};
use crate::{SeriesId, Tsdb};

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

/// A range-vector argument of a function: its series and the window `(end - range, end]`.
pub(super) struct RangeArg {
    pub(super) series: Vec<RangeElem>,
    pub(super) end_ms: i64,
    pub(super) range_ms: i64,
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
    /// The range query's step; 0 for an instant query.
    step_ms: i64,
    /// Matching series per selector node (keyed by its address in the parsed query, which
    /// lives as long as the query), in label order: matching does not depend on time.
    selections: HashMap<usize, Rc<Vec<SeriesId>>>,
    series_touched: usize,
    samples_loaded: u64,
    subquery_steps: u64,
    /// Per subquery node (keyed by address, as `selections`), its inner results by step.
    subquery_cache: HashMap<usize, BTreeMap<i64, Vec<Elem>>>,
    /// A range query's steps; none for an instant query.
    grid: Option<StepGrid>,
    /// Nodes (by address, as `selections`) a range query evaluates series at a time.
    tabulable: HashSet<usize>,
    /// Their values at every step, built on first use (see `steps.rs`).
    tables: HashMap<usize, Rc<StepTable>>,
    /// Cells of all tables, against [`STEP_TABLE_CELLS_MAX`].
    table_cells: u64,
    /// Per aggregation node over a table (by address), its groups.
    groupings: HashMap<usize, Rc<Grouping>>,
    /// Whether range queries use tables (tests compare with the per-step evaluation).
    tabulate: bool,
    limits: Limits,
    /// When the query gives up (`QueryOptions::deadline`), checked as samples are loaded.
    deadline: Option<std::time::Instant>,
}

/// The per-query limits; the public constants in production, smaller ones in tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Limits {
    pub(super) series_touched_max: usize,
    pub(super) samples_loaded_max: u64,
    pub(super) subquery_steps_max: u64,
    pub(super) step_table_cells_max: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            series_touched_max: QUERY_SERIES_TOUCHED_MAX,
            samples_loaded_max: QUERY_SAMPLES_LOADED_MAX,
            subquery_steps_max: QUERY_SUBQUERY_STEPS_MAX,
            step_table_cells_max: STEP_TABLE_CELLS_MAX,
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

    /// Evaluates range queries step by step only (tests compare the two).
    #[cfg(test)]
    pub(super) fn without_tables(mut self) -> Evaluator<'a> {
        self.tabulate = false;
        self
    }

    /// Samples loaded so far.
    #[cfg(test)]
    pub(super) fn samples_loaded(&self) -> u64 {
        self.samples_loaded
    }

    pub(super) fn new(db: &'a Tsdb, start_ms: i64, end_ms: i64) -> Evaluator<'a> {
        Evaluator {
            db,
            start_ms,
            end_ms,
            step_ms: 0,
            selections: HashMap::new(),
            series_touched: 0,
            samples_loaded: 0,
            subquery_steps: 0,
            subquery_cache: HashMap::new(),
            grid: None,
            tabulable: HashSet::new(),
            tables: HashMap::new(),
            table_cells: 0,
            groupings: HashMap::new(),
            tabulate: true,
            limits: Limits::default(),
            deadline: None,
        }
    }

    /// Gives up with a timeout error once `deadline` has passed.
    pub(super) fn with_deadline(mut self, deadline: Option<std::time::Instant>) -> Evaluator<'a> {
        self.deadline = deadline;
        self
    }

    /// Evaluates at one time and converts to the public result shape.
    pub(super) fn instant(&mut self, expr: &Expr, t: i64) -> Result<Value, QueryError> {
        Ok(match self.eval(expr, t)? {
            Val::Scalar(v) => Value::Scalar { t_ms: t, v },
            Val::Str(v) => Value::String { t_ms: t, v },
            Val::Vector(mut elems) => {
                check_unique(&elems)?;
                if !keeps_order(expr) {
                    elems.sort_by(|a, b| a.labels.cmp(&b.labels));
                }
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
        self.step_ms = step_ms;
        self.grid = Some(StepGrid::new(start_ms, end_ms, step_ms));
        if self.tabulate {
            self.tabulable = tabulable_nodes(expr);
        }
        let mut out: BTreeMap<ResultLabels, Vec<(i64, f64)>> = BTreeMap::new();
        if let Some((table, _)) = self.operand_table(expr, start_ms)? {
            // Nothing above the table: its columns are the result.
            out.extend(table.to_series(StepGrid::new(start_ms, end_ms, step_ms)));
            return Ok(Value::Matrix(
                out.into_iter()
                    .map(|(labels, points)| Series { labels, points })
                    .collect(),
            ));
        }
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
            Expr::VectorSelector(vs) => {
                if let Some(table) = self.selector_table(vs, t)? {
                    return Ok(Val::Vector(table));
                }
                let elems = self.select_instant(vs, t)?;
                Ok(Val::Vector(elems.into_iter().map(|(e, _)| e).collect()))
            }
            Expr::MatrixSelector(ms) => Ok(Val::Matrix(self.select_range(ms, t)?)),
            Expr::Call(c) => functions::call(self, c, t),
            Expr::Aggregate(a) => aggregate::aggregate(self, a, t),
            Expr::Binary(b) => binary::binary(self, b, t),
            Expr::Subquery(sq) => Ok(Val::Matrix(self.subquery(sq, t)?.series)),
            Expr::Extension(_) => Err(QueryError::unsupported("extension expression")),
        }
    }

    /// The query's `(start, end, step)` in ms, for `start()`, `end()`, `range()`, `step()`.
    pub(super) fn query_times(&self) -> (i64, i64, i64) {
        (self.start_ms, self.end_ms, self.step_ms)
    }

    /// A range-vector argument (matrix selector or subquery, maybe in parentheses) at `t`.
    pub(super) fn range_arg(&mut self, e: &Expr, t: i64) -> Result<RangeArg, QueryError> {
        match e {
            Expr::Paren(p) => self.range_arg(&p.expr, t),
            Expr::MatrixSelector(ms) => Ok(RangeArg {
                series: self.select_range(ms, t)?,
                end_ms: self.selector_time(&ms.vs, t),
                range_ms: duration_ms(&ms.range),
            }),
            Expr::Subquery(sq) => self.subquery(sq, t),
            _ => Err(QueryError::bad_data(format!(
                "expected a range vector, got {}",
                e.value_type()
            ))),
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
        self.load_u64(samples as u64)
    }

    fn load_u64(&mut self, samples: u64) -> Result<(), QueryError> {
        // Every read of samples passes here, so this is where a query notices its deadline.
        if self
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
        {
            return Err(QueryError {
                kind: super::QueryErrorKind::Timeout,
                message: "query timed out in expression evaluation".into(),
            });
        }
        self.samples_loaded = self.samples_loaded.saturating_add(samples);
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
        self.modified_time(vs.at.as_ref(), vs.offset.as_ref(), t)
    }

    fn modified_time(&self, at: Option<&AtModifier>, offset: Option<&Offset>, t: i64) -> i64 {
        let base = match at {
            None => t,
            Some(AtModifier::Start) => self.start_ms,
            Some(AtModifier::End) => self.end_ms,
            Some(AtModifier::At(at)) => system_time_ms(at),
        };
        match offset {
            None => base,
            Some(Offset::Pos(d)) => base.saturating_sub(duration_ms(d)),
            Some(Offset::Neg(d)) => base.saturating_add(duration_ms(d)),
        }
    }

    /// The instant vector of a selector, each element with its sample's timestamp.
    pub(super) fn select_instant(
        &mut self,
        vs: &VectorSelector,
        t: i64,
    ) -> Result<Vec<(Elem, i64)>, QueryError> {
        let ids = self.selection(vs)?;
        let at = self.selector_time(vs, t);
        // Left-open lookback window (at - delta, at], as Prometheus 3.
        let min = at.saturating_sub(LOOKBACK_DELTA_MS).saturating_add(1);
        let mut out = Vec::new();
        for &id in ids.iter() {
            let entry = self.db.entry(id);
            let Some((ts, v)) = entry.samples.last_in(min, at) else {
                continue;
            };
            self.load(1)?;
            if v.to_bits() != STALE_NAN_BITS {
                let labels = result_labels(&entry.labels);
                out.push((Elem { labels, v }, ts));
            }
        }
        Ok(out)
    }

    fn select_range(&mut self, ms: &MatrixSelector, t: i64) -> Result<Vec<RangeElem>, QueryError> {
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

    /// The table of a tabulable node (by address) when `t` is a step of the range query,
    /// built by `build` on first use; `build` returns `None` to leave the node to the
    /// per-step evaluation (as when its table would be too large).
    fn table(
        &mut self,
        key: usize,
        t: i64,
        build: impl FnOnce(&mut Self, StepGrid) -> Result<Option<StepTable>, QueryError>,
    ) -> Result<Option<(Rc<StepTable>, usize)>, QueryError> {
        let Some(grid) = self.grid else {
            return Ok(None);
        };
        let Some(i) = grid.index(t) else {
            return Ok(None);
        };
        if let Some(table) = self.tables.get(&key) {
            return Ok(Some((Rc::clone(table), i)));
        }
        if !self.tabulable.contains(&key) {
            return Ok(None);
        }
        let Some(table) = build(self, grid)? else {
            self.tabulable.remove(&key);
            return Ok(None);
        };
        let table = Rc::new(table);
        self.tables.insert(key, Rc::clone(&table));
        Ok(Some((table, i)))
    }

    /// The table of `e` (a selector or a range function, maybe in parentheses) and the
    /// step of `t`, when the range query has one whose label sets are distinct: then its
    /// vector at the step is exactly what evaluating `e` returns.
    pub(super) fn operand_table(
        &mut self,
        e: &Expr,
        t: i64,
    ) -> Result<Option<(Rc<StepTable>, usize)>, QueryError> {
        let table = match unparen(e) {
            Expr::VectorSelector(vs) => {
                let key = vs as *const VectorSelector as usize;
                self.table(key, t, |ev, grid| ev.build_selector_table(vs, grid))?
            }
            Expr::Call(c) => {
                let key = c as *const Call as usize;
                self.table(key, t, |ev, grid| ev.build_range_function_table(c, grid))?
            }
            _ => None,
        };
        Ok(table.filter(|(table, _)| table.distinct))
    }

    /// The groups of aggregation node `key` over `table`, computed on first use.
    pub(super) fn grouping(
        &mut self,
        key: usize,
        table: &StepTable,
        key_of: impl Fn(&ResultLabels) -> ResultLabels,
    ) -> Rc<Grouping> {
        let g = self
            .groupings
            .entry(key)
            .or_insert_with(|| Rc::new(Grouping::new(table.labels(), key_of)));
        Rc::clone(g)
    }

    /// Reserves the cells of a table of `series` over the grid; false when the query's
    /// tables would exceed [`STEP_TABLE_CELLS_MAX`].
    fn reserve_cells(&mut self, series: usize, grid: StepGrid) -> bool {
        let cells = (series as u64).saturating_mul(grid.len as u64);
        if self.table_cells.saturating_add(cells) > self.limits.step_table_cells_max {
            return false;
        }
        self.table_cells += cells;
        true
    }

    /// An instant-vector selector's vector at `t` from its table, in a range query.
    fn selector_table(
        &mut self,
        vs: &VectorSelector,
        t: i64,
    ) -> Result<Option<Vec<Elem>>, QueryError> {
        let key = vs as *const VectorSelector as usize;
        let table = self.table(key, t, |ev, grid| ev.build_selector_table(vs, grid))?;
        Ok(table.map(|(table, i)| table.at(i)))
    }

    fn build_selector_table(
        &mut self,
        vs: &VectorSelector,
        grid: StepGrid,
    ) -> Result<Option<StepTable>, QueryError> {
        self.tabulate_series(
            vs,
            grid,
            LOOKBACK_DELTA_MS,
            true,
            |samples, times, column| lookback_column(samples, times, LOOKBACK_DELTA_MS, column),
        )
    }

    /// A table over the series `vs` selects: per series, its samples from `window_ms`
    /// before the first step's selector time to the last one's, turned into a column by
    /// `fill` (given the samples and every step's selector time; it returns the samples it
    /// loaded). `None` when the table would exceed the cell bound.
    fn tabulate_series(
        &mut self,
        vs: &VectorSelector,
        grid: StepGrid,
        window_ms: i64,
        keep_name: bool,
        mut fill: impl FnMut(&[(i64, f64)], &[i64], &mut Column) -> u64,
    ) -> Result<Option<StepTable>, QueryError> {
        let ids = self.selection(vs)?;
        if !self.reserve_cells(ids.len(), grid) {
            return Ok(None);
        }
        let times: Vec<i64> = (0..grid.len)
            .map(|i| self.selector_time(vs, grid.time(i)))
            .collect();
        let (first, last) = (times[0], times[grid.len - 1]);
        let min = first.saturating_sub(window_ms).saturating_add(1);
        let mut table = StepTable::new(grid.len);
        let mut column = Column::new(grid.len);
        // Reused from series to series: one allocation, not one per series.
        let mut samples = Vec::new();
        for &id in ids.iter() {
            let entry = self.db.entry(id);
            samples.clear();
            samples.extend(entry.samples.range(min, last));
            let loaded = fill(&samples, &times, &mut column);
            self.load_u64(loaded)?;
            let labels = result_labels(&entry.labels);
            table.push(if keep_name { labels } else { drop_name(labels) }, &column);
        }
        Ok(Some(table.finish()))
    }

    /// A range function of a matrix selector at `t` from its table, in a range query;
    /// the flag says whether the vector's label sets are known distinct.
    pub(super) fn range_function_table(
        &mut self,
        c: &Call,
        t: i64,
    ) -> Result<Option<(Vec<Elem>, bool)>, QueryError> {
        let key = c as *const Call as usize;
        let table = self.table(key, t, |ev, grid| ev.build_range_function_table(c, grid))?;
        Ok(table.map(|(table, i)| (table.at(i), table.distinct)))
    }

    fn build_range_function_table(
        &mut self,
        c: &Call,
        grid: StepGrid,
    ) -> Result<Option<StepTable>, QueryError> {
        let name = c.func.name;
        let args = &c.args.args;
        let range_at = over_time::range_arg_index(name);
        let Expr::MatrixSelector(ms) = unparen(&args[range_at]) else {
            return Ok(None);
        };
        // Number literals (`tabulable_nodes` checked): the same at every step.
        let scalars = over_time::scalar_args(self, name, args, range_at, grid.start_ms)?;
        let range_ms = duration_ms(&ms.range);
        let keep_name = over_time::keeps_name(name);
        self.tabulate_series(
            &ms.vs,
            grid,
            range_ms,
            keep_name,
            |samples, ends, column| {
                window_column(samples, ends, range_ms, column, |i, points| {
                    over_time::series_value(
                        name,
                        points,
                        (ends[i], range_ms),
                        grid.time(i),
                        &scalars,
                    )
                })
            },
        )
    }

    /// The inner expression of a subquery at one of its steps, counted against the limit.
    fn subquery_step(&mut self, sq: &SubqueryExpr, ts: i64) -> Result<Vec<Elem>, QueryError> {
        self.subquery_steps += 1;
        if self.subquery_steps > self.limits.subquery_steps_max {
            return Err(QueryError::execution(format!(
                "query evaluates more than {} subquery steps; use a larger subquery step or a shorter range",
                self.limits.subquery_steps_max
            )));
        }
        let Val::Vector(elems) = self.eval(&sq.expr, ts)? else {
            return Err(QueryError::bad_data(
                "subquery is only allowed on instant vector",
            ));
        };
        check_unique(&elems)?;
        Ok(elems)
    }

    /// `expr[range:step]` at `t`: the inner expression at every multiple of the step (in
    /// absolute time) within `(end - range, end]`, as Prometheus aligns subquery steps.
    fn subquery(&mut self, sq: &SubqueryExpr, t: i64) -> Result<RangeArg, QueryError> {
        let end = self.modified_time(sq.at.as_ref(), sq.offset.as_ref(), t);
        let range = duration_ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map_or(SUBQUERY_DEFAULT_STEP_MS, duration_ms);
        if step <= 0 {
            return Err(QueryError::bad_data("subquery step must be positive"));
        }
        let lo = end.saturating_sub(range);
        let mut ts = lo.div_euclid(step).saturating_mul(step);
        if ts <= lo {
            ts = ts.saturating_add(step);
        }
        // Steps are absolute multiples of `step`, so consecutive evaluations (range query
        // steps) share most of them: keep the inner results still inside the window.
        let key = sq as *const SubqueryExpr as usize;
        let mut cache = self.subquery_cache.remove(&key).unwrap_or_default();
        cache = cache.split_off(&ts);
        let mut out: BTreeMap<ResultLabels, Vec<(i64, f64)>> = BTreeMap::new();
        while ts <= end {
            let elems = match cache.entry(ts) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => v.insert(self.subquery_step(sq, ts)?),
            };
            for e in elems.iter() {
                match out.get_mut(&e.labels) {
                    Some(points) => points.push((ts, e.v)),
                    None => {
                        out.insert(e.labels.clone(), vec![(ts, e.v)]);
                    }
                }
            }
            let Some(next) = ts.checked_add(step) else {
                break;
            };
            ts = next;
        }
        self.subquery_cache.insert(key, cache);
        let series = out
            .into_iter()
            .map(|(labels, points)| RangeElem { labels, points })
            .collect();
        Ok(RangeArg {
            series,
            end_ms: end,
            range_ms: range,
        })
    }
}

/// Whether an instant query returns its vector in the evaluator's order rather than
/// sorted by labels: Prometheus keeps the order of `sort*` and of `topk`/`bottomk`.
fn keeps_order(expr: &Expr) -> bool {
    match expr {
        Expr::Paren(p) => keeps_order(&p.expr),
        Expr::Call(c) => matches!(
            c.func.name,
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc"
        ),
        Expr::Aggregate(a) => matches!(a.op.to_string().as_str(), "topk" | "bottomk"),
        _ => false,
    }
}

/// Prometheus refuses a vector whose elements share a label set (e.g. after names drop),
/// with this message and without naming the label set.
pub(super) fn check_unique(elems: &[Elem]) -> Result<(), QueryError> {
    let mut seen = BTreeSet::new();
    for e in elems {
        if !seen.insert(&e.labels) {
            return Err(QueryError::execution(
                "vector cannot contain metrics with the same labelset",
            ));
        }
    }
    Ok(())
}

pub(super) fn drop_name(mut labels: ResultLabels) -> ResultLabels {
    labels.retain(|(n, _)| n != METRIC_NAME);
    labels
}

/// The value of a label, empty when absent (as Prometheus' `Labels.Get`).
pub(super) fn label_value<'l>(labels: &'l ResultLabels, name: &str) -> &'l str {
    labels
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Sets a label, keeping the pairs sorted; an empty value removes it, as Prometheus.
pub(super) fn set_label(labels: &mut ResultLabels, name: &str, value: &str) {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => labels[i].1 = value.to_string(),
        Err(_) if value.is_empty() => {}
        Err(i) => labels.insert(i, (name.to_string(), value.to_string())),
    }
}

/// Stored labels as result labels; an empty value means "no label" in PromQL.
fn result_labels(labels: &assay_ledger::Labels) -> ResultLabels {
    labels
        .pairs()
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// `{a="1", b="2"}` as Prometheus prints label sets in messages.
pub(super) fn format_labels(labels: &ResultLabels) -> String {
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

/// Prometheus' `kahanSumInc` (Kahan-Neumaier): adds `inc` to `sum` with compensation `c`,
/// so sums agree with Prometheus bit for bit.
pub(super) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

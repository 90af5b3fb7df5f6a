//! Event-time windowed aggregation over samples in ledger order.
//!
//! # Semantics
//! - **Windows.** `[start, start + size_ms)` for every `start` that is a multiple of
//!   `hop_ms` (tumbling when `hop_ms == size_ms`); a sample belongs to each window holding
//!   its timestamp. A window's results are keyed by the values of the `by` labels (a
//!   missing label is left out, as PromQL's `sum by`).
//! - **Watermark** = newest event time seen − `watermark_delay_ms`. Event time only: the
//!   samples' own timestamps, never a clock. A window is **emitted** (revision 0) once the
//!   watermark reaches its end.
//! - **Late samples.** A window keeps its state until the watermark reaches
//!   `end + allowed_lateness_ms`. A sample arriving before that is counted; if the window
//!   was already emitted, the keys it changed are emitted again as an **update**
//!   (revision 1, 2, …: the corrected full result, not a delta). A sample arriving after
//!   that is dropped and counted in [`WindowStats::too_late`].
//! - **No double counting.** A sample is identified by (series, timestamp). The same
//!   series and timestamp with the same value bits is a retried write: ignored
//!   ([`WindowStats::duplicates`]). With different bits it **replaces** the earlier value
//!   (the later write in ledger order wins, as in the tsdb): the key's aggregate is
//!   recomputed from its samples in arrival order, so `sum` and `count` are exactly what
//!   they would be had the new value arrived first, and `min`/`max` forget the old value.
//! - **Aggregates**: count, sum, min, max, last (value at the greatest timestamp; among
//!   equal timestamps, the later arrival), avg = sum / count. `min`/`max` ignore NaN
//!   unless every value is NaN; `sum` propagates it. Prometheus stale markers are skipped.
//! - **Output order**: results are produced at the end of each [`WindowAggregator::push_batch`],
//!   by window start, then key labels. Same batches in the same order → same results and
//!   the same [`WindowAggregator::digest`].

use std::collections::BTreeMap;
use std::sync::Arc;

use assay_ledger::{Labels, SampleBatch};
use rustc_hash::{FxHashMap, FxHashSet};
use sha2::{Digest, Sha256};

/// Windows one sample may fall into (`size_ms / hop_ms`, rounded up).
pub const WINDOWS_PER_SAMPLE_MAX: i64 = 64;
/// Samples with a timestamp beyond ±this (about ±285,000 years) are dropped and counted
/// in [`WindowStats::out_of_range`]: window arithmetic stays far from i64's ends.
pub const TIMESTAMP_ABS_MAX_MS: i64 = 1 << 53;
/// Default [`WindowSpec::open_windows_max`].
pub const OPEN_WINDOWS_MAX_DEFAULT: usize = 1024;
/// Default [`WindowSpec::keys_per_window_max`].
pub const KEYS_PER_WINDOW_MAX_DEFAULT: usize = 10_000;
/// Default [`WindowSpec::samples_per_window_max`].
pub const SAMPLES_PER_WINDOW_MAX_DEFAULT: usize = 1_000_000;
/// Default [`WindowSpec::series_max`].
pub const SERIES_MAX_DEFAULT: usize = 1_000_000;
/// Prometheus' stale marker: a NaN with this exact bit pattern ends a series.
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// What to aggregate and how: the configuration of a [`WindowAggregator`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    /// Only series with this metric name (`__name__`); `None`: every series.
    pub metric: Option<String>,
    /// Labels whose values key the results (`sum by (...)`).
    pub by: Vec<String>,
    /// Window length, ms.
    pub size_ms: i64,
    /// Distance between window starts, ms; equal to `size_ms` for tumbling windows.
    pub hop_ms: i64,
    /// How far the watermark trails the newest event time, ms (out-of-order tolerance
    /// before the first emission).
    pub watermark_delay_ms: i64,
    /// How long after its first emission a window still takes late samples, ms
    /// (measured in watermark time).
    pub allowed_lateness_ms: i64,
    /// Windows holding state at once; a sample that would open one more is dropped.
    pub open_windows_max: usize,
    /// Keys one window may hold; a sample with one more key is dropped.
    pub keys_per_window_max: usize,
    /// Distinct samples (series, timestamp) one window may hold (each is kept until the
    /// window closes, for duplicates and replacements); one more is dropped.
    pub samples_per_window_max: usize,
    /// Series tracked (for duplicate detection); a sample of one more is dropped.
    pub series_max: usize,
}

impl WindowSpec {
    /// Tumbling windows of `size_ms` keyed by `by`, over every series, no delay or
    /// lateness, default limits.
    pub fn tumbling(size_ms: i64, by: &[&str]) -> WindowSpec {
        WindowSpec {
            metric: None,
            by: by.iter().map(|s| s.to_string()).collect(),
            size_ms,
            hop_ms: size_ms,
            watermark_delay_ms: 0,
            allowed_lateness_ms: 0,
            open_windows_max: OPEN_WINDOWS_MAX_DEFAULT,
            keys_per_window_max: KEYS_PER_WINDOW_MAX_DEFAULT,
            samples_per_window_max: SAMPLES_PER_WINDOW_MAX_DEFAULT,
            series_max: SERIES_MAX_DEFAULT,
        }
    }

    fn validate(&self) -> Result<(), WindowError> {
        let bad = |m: &str| Err(WindowError(m.to_string()));
        if self.size_ms <= 0 || self.hop_ms <= 0 {
            return bad("size_ms and hop_ms must be positive");
        }
        if self.hop_ms > self.size_ms {
            return bad("hop_ms must not exceed size_ms (samples would fall between windows)");
        }
        if (self.size_ms + self.hop_ms - 1) / self.hop_ms > WINDOWS_PER_SAMPLE_MAX {
            return bad("size_ms / hop_ms exceeds WINDOWS_PER_SAMPLE_MAX");
        }
        if self.watermark_delay_ms < 0 || self.allowed_lateness_ms < 0 {
            return bad("watermark_delay_ms and allowed_lateness_ms must not be negative");
        }
        if [
            self.open_windows_max,
            self.keys_per_window_max,
            self.samples_per_window_max,
            self.series_max,
        ]
        .contains(&0)
        {
            return bad("limits must be positive");
        }
        Ok(())
    }
}

/// A [`WindowSpec`] that cannot work, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid window spec: {0}")]
pub struct WindowError(pub String);

/// The aggregates of one key in one window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Aggregate {
    /// Samples counted.
    pub count: u64,
    /// Their sum, added in arrival order.
    pub sum: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Value at the greatest timestamp.
    pub last: f64,
    /// That timestamp, ms.
    pub last_ms: i64,
}

impl Aggregate {
    const EMPTY: Aggregate = Aggregate {
        count: 0,
        sum: 0.0,
        min: f64::NAN,
        max: f64::NAN,
        last: f64::NAN,
        last_ms: i64::MIN,
    };

    /// sum / count.
    pub fn avg(&self) -> f64 {
        self.sum / self.count as f64
    }

    fn add(&mut self, t_ms: i64, v: f64) {
        self.count += 1;
        self.sum += v;
        // f64::min/max return the non-NaN operand: NaN only when every value is NaN.
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if t_ms >= self.last_ms {
            self.last = v;
            self.last_ms = t_ms;
        }
    }
}

/// One key's result for one window.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowResult {
    /// Window start, ms (inclusive).
    pub start_ms: i64,
    /// Window end, ms (exclusive).
    pub end_ms: i64,
    /// Values of the `by` labels, sorted by name.
    pub key: Vec<(String, String)>,
    /// 0 for the first emission, then 1, 2, … for each correction.
    pub revision: u32,
    /// The aggregates, over every sample counted so far.
    pub aggregate: Aggregate,
}

/// Counters of what the aggregator did with its input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Sample-to-window assignments counted.
    pub counted: u64,
    /// Samples of other metrics, skipped.
    pub filtered: u64,
    /// Retried writes (same series, timestamp and value) ignored.
    pub duplicates: u64,
    /// Samples that replaced an earlier value at the same series and timestamp.
    pub replacements: u64,
    /// Assignments dropped: the window was past its allowed lateness.
    pub too_late: u64,
    /// Stale markers skipped.
    pub stale_markers: u64,
    /// Samples dropped: timestamp beyond [`TIMESTAMP_ABS_MAX_MS`].
    pub out_of_range: u64,
    /// Assignments dropped by `open_windows_max`.
    pub dropped_open_windows: u64,
    /// Assignments dropped by `keys_per_window_max`.
    pub dropped_keys: u64,
    /// Assignments dropped by `samples_per_window_max`.
    pub dropped_samples: u64,
    /// Samples dropped by `series_max`.
    pub dropped_series: u64,
    /// Results emitted for the first time.
    pub emitted: u64,
    /// Corrected results emitted.
    pub updates: u64,
}

#[derive(Debug)]
struct GroupKey {
    /// Never reused, assigned in first-seen ledger order.
    id: u64,
    labels: Vec<(String, String)>,
}

#[derive(Debug)]
struct SeriesSlot {
    /// Never reused, assigned in first-seen ledger order.
    id: u64,
    group: Arc<GroupKey>,
}

#[derive(Clone, Copy, Debug)]
struct Contribution {
    series: u64,
    t_ms: i64,
    value: f64,
}

#[derive(Debug)]
struct KeyState {
    group: Arc<GroupKey>,
    /// In arrival order; a replacement rewrites its value in place.
    contribs: Vec<Contribution>,
    aggregate: Aggregate,
    revision: u32,
    dirty: bool,
}

impl KeyState {
    fn recompute(&mut self) {
        let mut a = Aggregate::EMPTY;
        for c in &self.contribs {
            a.add(c.t_ms, c.value);
        }
        self.aggregate = a;
    }
}

#[derive(Debug, Default)]
struct Window {
    keys: Vec<KeyState>,
    /// Group key id → index into `keys`.
    key_index: FxHashMap<u64, u32>,
    /// (series id, timestamp) → (index into `keys`, index into its `contribs`).
    seen: FxHashMap<(u64, i64), (u32, u32)>,
    emitted: bool,
    dirty: bool,
}

/// Where a batch series' samples go.
enum Route {
    Skip,
    Drop,
    To(u64, Arc<GroupKey>),
}

/// Tumbling or hopping event-time windows; see the module docs for the semantics.
#[derive(Debug)]
pub struct WindowAggregator {
    spec: WindowSpec,
    series: FxHashMap<Labels, SeriesSlot>,
    groups: FxHashMap<Vec<(String, String)>, Arc<GroupKey>>,
    next_series_id: u64,
    next_group_id: u64,
    /// Series count that triggers the next sweep of series no open window references.
    sweep_at: usize,
    windows: BTreeMap<i64, Window>,
    newest_ms: Option<i64>,
    stats: WindowStats,
}

impl WindowAggregator {
    /// An empty aggregator; `by` is sorted and deduplicated.
    pub fn new(mut spec: WindowSpec) -> Result<WindowAggregator, WindowError> {
        spec.validate()?;
        spec.by.sort();
        spec.by.dedup();
        Ok(WindowAggregator {
            spec,
            series: FxHashMap::default(),
            groups: FxHashMap::default(),
            next_series_id: 0,
            next_group_id: 0,
            sweep_at: 1024,
            windows: BTreeMap::new(),
            newest_ms: None,
            stats: WindowStats::default(),
        })
    }

    /// The configuration.
    pub fn spec(&self) -> &WindowSpec {
        &self.spec
    }

    /// What happened to the input so far.
    pub fn stats(&self) -> WindowStats {
        self.stats
    }

    /// Newest event time seen less the watermark delay; `None` before any sample.
    pub fn watermark_ms(&self) -> Option<i64> {
        self.newest_ms
            .map(|t| t.saturating_sub(self.spec.watermark_delay_ms))
    }

    /// Windows holding state.
    pub fn open_windows(&self) -> usize {
        self.windows.len()
    }

    /// Feeds one committed batch, in ledger order, and appends the results it completes or
    /// corrects to `out` (by window start, then key).
    pub fn push_batch(&mut self, batch: &SampleBatch, out: &mut Vec<WindowResult>) {
        let routes: Vec<Route> = batch.series().iter().map(|l| self.route(l)).collect();
        for s in batch.samples() {
            match &routes[s.series as usize] {
                Route::Skip => self.stats.filtered += 1,
                Route::Drop => self.stats.dropped_series += 1,
                Route::To(id, group) => self.add(*id, group, s.timestamp_ms, s.value),
            }
        }
        self.advance(out);
        if self.series.len() >= self.sweep_at.min(self.spec.series_max) {
            self.sweep();
        }
    }

    fn route(&mut self, labels: &Labels) -> Route {
        if let Some(m) = &self.spec.metric {
            if labels.metric_name() != Some(m.as_str()) {
                return Route::Skip;
            }
        }
        if let Some(slot) = self.series.get(labels) {
            return Route::To(slot.id, slot.group.clone());
        }
        // No sweep here: series routed earlier in this batch have no samples in a window
        // yet, and forgetting them would let a retried write count twice.
        if self.series.len() >= self.spec.series_max {
            return Route::Drop;
        }
        let key: Vec<(String, String)> = self
            .spec
            .by
            .iter()
            .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.to_string())))
            .collect();
        let group = match self.groups.get(&key) {
            Some(g) => g.clone(),
            None => {
                let g = Arc::new(GroupKey {
                    id: self.next_group_id,
                    labels: key.clone(),
                });
                self.next_group_id += 1;
                self.groups.insert(key, g.clone());
                g
            }
        };
        let id = self.next_series_id;
        self.next_series_id += 1;
        self.series.insert(
            labels.clone(),
            SeriesSlot {
                id,
                group: group.clone(),
            },
        );
        Route::To(id, group)
    }

    /// Forgets series and keys no open window references (they can hold no duplicate);
    /// runs between batches, once the series have doubled since the last sweep.
    fn sweep(&mut self) {
        let live: FxHashSet<u64> = self
            .windows
            .values()
            .flat_map(|w| w.keys.iter())
            .flat_map(|k| k.contribs.iter().map(|c| c.series))
            .collect();
        self.series.retain(|_, s| live.contains(&s.id));
        // The map's own reference is the only one left for a key nothing uses.
        self.groups.retain(|_, g| Arc::strong_count(g) > 1);
        self.sweep_at = (self.series.len() * 2).max(1024);
    }

    fn add(&mut self, series: u64, group: &Arc<GroupKey>, t_ms: i64, value: f64) {
        if value.to_bits() == STALE_NAN_BITS {
            self.stats.stale_markers += 1;
            return;
        }
        if t_ms.unsigned_abs() > TIMESTAMP_ABS_MAX_MS as u64 {
            self.stats.out_of_range += 1;
            return;
        }
        let (size, hop) = (self.spec.size_ms, self.spec.hop_ms);
        let mut start = t_ms.div_euclid(hop) * hop;
        while start > t_ms - size {
            self.add_to_window(start, series, group, t_ms, value);
            start -= hop;
        }
        self.newest_ms = Some(self.newest_ms.map_or(t_ms, |n| n.max(t_ms)));
    }

    fn add_to_window(
        &mut self,
        start: i64,
        series: u64,
        group: &Arc<GroupKey>,
        t_ms: i64,
        value: f64,
    ) {
        let closes = start
            .saturating_add(self.spec.size_ms)
            .saturating_add(self.spec.allowed_lateness_ms);
        if self.watermark_ms().is_some_and(|w| closes <= w) {
            self.stats.too_late += 1;
            return;
        }
        if !self.windows.contains_key(&start) && self.windows.len() >= self.spec.open_windows_max {
            self.stats.dropped_open_windows += 1;
            return;
        }
        let keys_max = self.spec.keys_per_window_max;
        let samples_max = self.spec.samples_per_window_max;
        let w = self.windows.entry(start).or_default();
        let Window {
            keys,
            key_index,
            seen,
            emitted,
            dirty,
        } = w;
        let full = seen.len() >= samples_max;
        match seen.entry((series, t_ms)) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let (k, c) = *e.get();
                let key = &mut keys[k as usize];
                let old = &mut key.contribs[c as usize];
                if old.value.to_bits() == value.to_bits() {
                    self.stats.duplicates += 1;
                    return;
                }
                old.value = value;
                key.recompute();
                key.dirty |= *emitted;
                *dirty |= *emitted;
                self.stats.replacements += 1;
            }
            std::collections::hash_map::Entry::Vacant(_) if full => {
                self.stats.dropped_samples += 1;
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                let k = match key_index.get(&group.id) {
                    Some(&k) => k,
                    None if keys.len() >= keys_max => {
                        self.stats.dropped_keys += 1;
                        return;
                    }
                    None => {
                        key_index.insert(group.id, keys.len() as u32);
                        keys.push(KeyState {
                            group: group.clone(),
                            contribs: Vec::new(),
                            aggregate: Aggregate::EMPTY,
                            revision: 0,
                            dirty: false,
                        });
                        keys.len() as u32 - 1
                    }
                };
                let key = &mut keys[k as usize];
                e.insert((k, key.contribs.len() as u32));
                key.contribs.push(Contribution {
                    series,
                    t_ms,
                    value,
                });
                key.aggregate.add(t_ms, value);
                key.dirty |= *emitted;
                *dirty |= *emitted;
                self.stats.counted += 1;
            }
        }
    }

    /// Emits windows the watermark completed and corrections of emitted ones, then drops
    /// windows past their allowed lateness.
    fn advance(&mut self, out: &mut Vec<WindowResult>) {
        let Some(wm) = self.watermark_ms() else {
            return;
        };
        let size = self.spec.size_ms;
        for (&start, w) in self.windows.iter_mut() {
            if start.saturating_add(size) > wm {
                break;
            }
            if w.emitted && !w.dirty {
                continue;
            }
            let first = !w.emitted;
            let mut order: Vec<usize> = (0..w.keys.len())
                .filter(|&k| first || w.keys[k].dirty)
                .collect();
            order.sort_by(|&a, &b| w.keys[a].group.labels.cmp(&w.keys[b].group.labels));
            for k in order {
                let key = &mut w.keys[k];
                if !first {
                    key.revision += 1;
                    self.stats.updates += 1;
                } else {
                    self.stats.emitted += 1;
                }
                key.dirty = false;
                out.push(WindowResult {
                    start_ms: start,
                    end_ms: start.saturating_add(size),
                    key: key.group.labels.clone(),
                    revision: key.revision,
                    aggregate: key.aggregate,
                });
            }
            w.emitted = true;
            w.dirty = false;
        }
        let lateness = self.spec.allowed_lateness_ms;
        while let Some(e) = self.windows.first_entry() {
            if e.key().saturating_add(size).saturating_add(lateness) > wm {
                break;
            }
            debug_assert!(e.get().emitted, "a window is emitted before it closes");
            e.remove();
        }
    }

    /// SHA-256 over the state in a canonical order: equal states, equal digests.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(format!("{:?}{:?}{:?}", self.spec, self.newest_ms, self.stats).as_bytes());
        h.update(self.next_series_id.to_le_bytes());
        for (start, w) in &self.windows {
            h.update(start.to_le_bytes());
            h.update([u8::from(w.emitted)]);
            let mut keys: Vec<&KeyState> = w.keys.iter().collect();
            keys.sort_by(|a, b| a.group.labels.cmp(&b.group.labels));
            for k in keys {
                h.update(format!("{:?}", k.group.labels).as_bytes());
                h.update(k.revision.to_le_bytes());
                for c in &k.contribs {
                    h.update(c.series.to_le_bytes());
                    h.update(c.t_ms.to_le_bytes());
                    h.update(c.value.to_bits().to_le_bytes());
                }
            }
        }
        h.finalize().into()
    }
}

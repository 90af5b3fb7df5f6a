//! Admission: whether a batch may enter the ledger, given the samples the view already holds.
//!
//! Prometheus rejects a write that would append a sample older than its series' newest one
//! (out of order) or a second, different value at a timestamp it already has (duplicate),
//! and its remote-write senders drop such a request instead of retrying it. Assay applies
//! the same rules *before* a batch is sequenced, so the ledger holds only accepted writes and
//! apply stays total and pure. Two differences, both so edge agents that replay a spool
//! lose nothing:
//!
//! * an **out-of-order window**: a sample up to `window_ms` older than its series' newest
//!   sample is accepted and inserted in order (Prometheus' `out_of_order_time_window`,
//!   counted per series);
//! * an **exact duplicate** (same series, timestamp and value bits) is accepted wherever it
//!   lies: a retried request whose first attempt was committed succeeds again, and applying
//!   it changes nothing.
//!
//! A block may hold several batches for the same series; [`Admission`] remembers what the
//! batches admitted before in the same block so the rules hold across them too.

use assay_ledger::{Labels, SampleBatch};
use rustc_hash::FxHashMap;

use crate::Tsdb;

/// Why a batch was refused; the caller answers 400 (the sender must not retry it).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Conflict {
    /// The sample is older than the series' newest one by the window or more.
    #[error(
        "out of order sample: series {series} has a sample at {newest_ms} ms, and {ts_ms} ms is \
         not within the out-of-order window of {window_ms} ms before it; send samples of a \
         series in time order, or raise tsdb.out_of_order_window_ms"
    )]
    OutOfOrder {
        /// The series, in Prometheus text notation.
        series: String,
        /// The rejected sample's timestamp.
        ts_ms: i64,
        /// The series' newest timestamp.
        newest_ms: i64,
        /// The configured window.
        window_ms: i64,
    },
    /// The series has a different value at this timestamp.
    #[error(
        "duplicate sample for timestamp: series {series} already has value {existing} at \
         {ts_ms} ms, this write gives {new}; one timestamp holds one value"
    )]
    Duplicate {
        /// The series, in Prometheus text notation.
        series: String,
        /// The timestamp.
        ts_ms: i64,
        /// The value held.
        existing: f64,
        /// The value refused.
        new: f64,
    },
}

/// What the batches admitted earlier in the same block wrote to one series.
#[derive(Default)]
struct Pending {
    newest_ms: Option<i64>,
    /// `(timestamp, value bits)`, unordered; searched only for writes at or below `newest_ms`.
    samples: Vec<(i64, u64)>,
}

/// Admission state for one block: borrow the view, check batches in sequence order.
pub struct Admission<'a> {
    db: &'a Tsdb,
    window_ms: i64,
    /// Keyed by the series' hash; a collision only shares a `Vec` of candidates.
    pending: FxHashMap<u64, Vec<(Labels, Pending)>>,
}

impl<'a> Admission<'a> {
    /// Starts a block over `db`; samples up to `window_ms` older than a series' newest are
    /// accepted (0: strictly in order, as Prometheus by default).
    pub fn new(db: &'a Tsdb, window_ms: i64) -> Admission<'a> {
        debug_assert!(window_ms >= 0);
        Admission {
            db,
            window_ms: window_ms.max(0),
            pending: FxHashMap::default(),
        }
    }

    /// Checks `batch` against the view and the batches admitted before it; on success it
    /// counts as admitted for the next ones, on failure nothing is remembered.
    pub fn admit(&mut self, batch: &SampleBatch) -> Result<(), Conflict> {
        self.check(batch)?;
        // Resolve each series of the batch to its slot once, then samples are an index away.
        let slots: Vec<(u64, usize)> = batch
            .series()
            .iter()
            .zip(batch.series_hashes())
            .map(|(labels, &hash)| {
                let candidates = self.pending.entry(hash).or_default();
                let at = match candidates.iter().position(|(l, _)| l == labels) {
                    Some(at) => at,
                    None => {
                        candidates.push((labels.clone(), Pending::default()));
                        candidates.len() - 1
                    }
                };
                (hash, at)
            })
            .collect();
        for s in batch.samples() {
            let (hash, at) = slots[s.series as usize];
            let p = &mut self.pending.get_mut(&hash).expect("slot resolved above")[at].1;
            p.newest_ms = Some(
                p.newest_ms
                    .map_or(s.timestamp_ms, |n| n.max(s.timestamp_ms)),
            );
            p.samples.push((s.timestamp_ms, s.value.to_bits()));
        }
        Ok(())
    }

    fn check(&self, batch: &SampleBatch) -> Result<(), Conflict> {
        // The view's lookup per distinct series of the batch, not per sample.
        let stored: Vec<Option<u32>> = batch
            .series()
            .iter()
            .zip(batch.series_hashes())
            .map(|(l, &h)| self.db.lookup(l, h))
            .collect();
        let pending: Vec<Option<&Pending>> = if self.pending.is_empty() {
            Vec::new()
        } else {
            batch
                .series()
                .iter()
                .zip(batch.series_hashes())
                .map(|(l, h)| {
                    self.pending
                        .get(h)
                        .and_then(|c| c.iter().find(|(pl, _)| pl == l))
                        .map(|(_, p)| p)
                })
                .collect()
        };
        for s in batch.samples() {
            let i = s.series as usize;
            let store = stored[i].map(|id| &self.db.entry(id).samples);
            let pend = pending.get(i).copied().flatten();
            let newest = match (
                store.and_then(|st| st.newest_ms()),
                pend.and_then(|p| p.newest_ms),
            ) {
                (Some(a), Some(b)) => a.max(b),
                (a, b) => match a.or(b) {
                    Some(n) => n,
                    None => continue, // a new series takes any timestamp
                },
            };
            if s.timestamp_ms > newest {
                continue;
            }
            let held = store
                .and_then(|st| st.value_at(s.timestamp_ms).map(f64::to_bits))
                .or_else(|| {
                    pend.and_then(|p| {
                        p.samples
                            .iter()
                            .rev()
                            .find(|(t, _)| *t == s.timestamp_ms)
                            .map(|&(_, v)| v)
                    })
                });
            let series = || render_series(&batch.series()[i]);
            match held {
                Some(bits) if bits == s.value.to_bits() => {}
                Some(bits) => {
                    return Err(Conflict::Duplicate {
                        series: series(),
                        ts_ms: s.timestamp_ms,
                        existing: f64::from_bits(bits),
                        new: s.value,
                    })
                }
                None if s.timestamp_ms > newest - self.window_ms => {}
                None => {
                    return Err(Conflict::OutOfOrder {
                        series: series(),
                        ts_ms: s.timestamp_ms,
                        newest_ms: newest,
                        window_ms: self.window_ms,
                    })
                }
            }
        }
        Ok(())
    }
}

/// `name{a="b"}` as Prometheus prints a series.
fn render_series(labels: &Labels) -> String {
    let name = labels.metric_name().unwrap_or("");
    let rest: Vec<String> = labels
        .pairs()
        .iter()
        .filter(|(n, _)| n != "__name__")
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn labels(host: &str) -> Labels {
        Labels::new(vec![
            ("__name__".into(), "up".into()),
            ("host".into(), host.into()),
        ])
        .unwrap()
    }

    fn batch(samples: &[(&str, i64, f64)]) -> SampleBatch {
        let mut b = SampleBatch::new();
        for &(h, t, v) in samples {
            b.push(labels(h), t, v);
        }
        b
    }

    fn outcome(db: &Tsdb, window: i64, batches: &[SampleBatch]) -> String {
        let mut a = Admission::new(db, window);
        batches
            .iter()
            .map(|b| match a.admit(b) {
                Ok(()) => "ok".to_string(),
                Err(e) => e.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn in_order_new_series_and_exact_duplicates_pass() {
        let mut db = Tsdb::new();
        db.apply_batch(&batch(&[("a", 100, 1.0), ("a", 200, 2.0)]));
        let got = outcome(
            &db,
            0,
            &[
                batch(&[("a", 300, 3.0), ("b", 5, 0.0)]),
                // A retry of a committed write: identical samples, older than the newest.
                batch(&[("a", 100, 1.0), ("a", 200, 2.0)]),
                // The same sample as a batch earlier in this block.
                batch(&[("a", 300, 3.0), ("b", 5, 0.0)]),
            ],
        );
        expect![[r#"
            ok
            ok
            ok"#]]
        .assert_eq(&got);
    }

    #[test]
    fn out_of_order_beyond_the_window_is_refused() {
        let mut db = Tsdb::new();
        db.apply_batch(&batch(&[("a", 1_000, 1.0)]));
        let got = outcome(
            &db,
            100,
            &[
                batch(&[("a", 950, 0.5)]),
                batch(&[("a", 900, 0.5)]),
                batch(&[("b", 10, 0.5), ("a", 2_000, 2.0)]),
                // The window counts from the newest sample admitted earlier in the block.
                batch(&[("a", 1_500, 1.5)]),
                batch(&[("a", 1_950, 1.5)]),
            ],
        );
        expect![[r#"
            ok
            out of order sample: series up{host="a"} has a sample at 1000 ms, and 900 ms is not within the out-of-order window of 100 ms before it; send samples of a series in time order, or raise tsdb.out_of_order_window_ms
            ok
            out of order sample: series up{host="a"} has a sample at 2000 ms, and 1500 ms is not within the out-of-order window of 100 ms before it; send samples of a series in time order, or raise tsdb.out_of_order_window_ms
            ok"#]]
        .assert_eq(&got);
    }

    #[test]
    fn a_different_value_at_a_held_timestamp_is_refused() {
        let mut db = Tsdb::new();
        db.apply_batch(&batch(&[("a", 100, 1.0), ("a", 200, 2.0)]));
        let got = outcome(
            &db,
            1_000,
            &[
                batch(&[("a", 100, 1.5)]),
                batch(&[("b", 7, 1.0)]),
                batch(&[("b", 7, 2.0)]),
                // A refused batch leaves no trace: its samples do not conflict later.
                batch(&[("a", 150, 9.0), ("a", 100, 7.0)]),
                batch(&[("a", 150, 8.0)]),
            ],
        );
        expect![[r#"
            duplicate sample for timestamp: series up{host="a"} already has value 1 at 100 ms, this write gives 1.5; one timestamp holds one value
            ok
            duplicate sample for timestamp: series up{host="b"} already has value 1 at 7 ms, this write gives 2; one timestamp holds one value
            duplicate sample for timestamp: series up{host="a"} already has value 1 at 100 ms, this write gives 7; one timestamp holds one value
            ok"#]]
        .assert_eq(&got);
    }

    #[test]
    fn nan_values_compare_by_bits() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut db = Tsdb::new();
        db.apply_batch(&batch(&[("a", 100, stale)]));
        assert_eq!(outcome(&db, 0, &[batch(&[("a", 100, stale)])]), "ok");
        assert!(outcome(&db, 0, &[batch(&[("a", 100, f64::NAN)])]).starts_with("duplicate"));
    }
}

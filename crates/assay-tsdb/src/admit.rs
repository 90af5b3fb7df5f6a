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

use assay_ledger::{Labels, SampleBatch, SeriesIndex};

use crate::{SeriesId, Tsdb};

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

/// Admission state for one block: borrow the view and the block's batches, check the
/// batches in sequence order.
///
/// Series admitted earlier in the block are remembered by reference (the batches outlive
/// the admission), and their samples in one flat list: cloning labels and allocating per
/// series was a quarter of the sequencer's time under remote-write load.
pub struct Admission<'a> {
    db: &'a Tsdb,
    window_ms: i64,
    /// Series hash → slot (slots are dense ids `0..n`; collisions chain).
    by_hash: SeriesIndex,
    /// Per slot: the series and its newest admitted timestamp.
    slots: Vec<(&'a Labels, i64)>,
    /// `(slot, timestamp, value bits)` of every admitted sample; searched only for a write
    /// at or below its series' newest.
    samples: Vec<(u32, i64, u64)>,
    /// Per admitted batch, in order: each series' id in the view, as looked up to check it.
    resolved: Vec<Vec<Option<SeriesId>>>,
}

/// Memory an [`Admission`] keeps for the next block: a block's sample list and series
/// index are large, and fresh memory for them every block (the kernel zeroing its pages)
/// cost more than the admission's own work.
#[derive(Default)]
pub struct AdmissionBuffers {
    by_hash: SeriesIndex,
    samples: Vec<(u32, i64, u64)>,
}

/// What an admission found, for applying the admitted batches.
pub struct Admitted {
    /// Per admitted batch, in admission order: each of its series' id in the view when it
    /// was checked (`None`: new to the view). Valid for applying those batches to the same
    /// view, unchanged but for the batches applied before them (ids are only added).
    pub resolved: Vec<Vec<Option<SeriesId>>>,
    /// The memory to start the next block's admission with.
    pub buffers: AdmissionBuffers,
}

impl<'a> Admission<'a> {
    /// Starts a block over `db`; samples up to `window_ms` older than a series' newest are
    /// accepted (0: strictly in order, as Prometheus by default).
    pub fn new(db: &'a Tsdb, window_ms: i64) -> Admission<'a> {
        Admission::with_buffers(db, window_ms, AdmissionBuffers::default())
    }

    /// [`Admission::new`] reusing the memory of an earlier block's admission.
    pub fn with_buffers(db: &'a Tsdb, window_ms: i64, buffers: AdmissionBuffers) -> Admission<'a> {
        debug_assert!(window_ms >= 0);
        let AdmissionBuffers {
            mut by_hash,
            mut samples,
        } = buffers;
        by_hash.clear();
        samples.clear();
        Admission {
            db,
            window_ms: window_ms.max(0),
            by_hash,
            slots: Vec::new(),
            samples,
            resolved: Vec::new(),
        }
    }

    /// Ends the block: the admitted batches' series ids, and the memory to reuse.
    pub fn finish(self) -> Admitted {
        Admitted {
            resolved: self.resolved,
            buffers: AdmissionBuffers {
                by_hash: self.by_hash,
                samples: self.samples,
            },
        }
    }

    /// The slot of a series admitted earlier in the block.
    fn slot(&self, labels: &Labels, hash: u64) -> Option<u32> {
        // Equal labels from the parser's series cache compare by pointer.
        self.by_hash
            .get(hash, |s| self.slots[s as usize].0 == labels)
    }

    /// Checks `batch` against the view and the batches admitted before it; on success it
    /// counts as admitted for the next ones, on failure nothing is remembered.
    pub fn admit(&mut self, batch: &'a SampleBatch) -> Result<(), Conflict> {
        let known: Vec<Option<u32>> = if self.slots.is_empty() {
            vec![None; batch.series().len()]
        } else {
            batch
                .series()
                .iter()
                .zip(batch.series_hashes())
                .map(|(l, &h)| self.slot(l, h))
                .collect()
        };
        let stored = self.check(batch, &known)?;
        self.resolved.push(stored);
        let slots: Vec<u32> = batch
            .series()
            .iter()
            .zip(batch.series_hashes())
            .zip(known)
            .map(|((labels, &hash), known)| {
                known.unwrap_or_else(|| {
                    let slot = self.slots.len() as u32;
                    self.slots.push((labels, i64::MIN));
                    self.by_hash.insert(hash, slot);
                    slot
                })
            })
            .collect();
        self.samples.reserve(batch.len());
        for s in batch.samples() {
            let slot = slots[s.series as usize];
            let newest = &mut self.slots[slot as usize].1;
            *newest = (*newest).max(s.timestamp_ms);
            self.samples.push((slot, s.timestamp_ms, s.value.to_bits()));
        }
        Ok(())
    }

    /// Checks every sample; on success, each series' id in the view (`None`: new to it).
    fn check(
        &self,
        batch: &SampleBatch,
        known: &[Option<u32>],
    ) -> Result<Vec<Option<SeriesId>>, Conflict> {
        // The view's lookup per distinct series of the batch, not per sample.
        let stored: Vec<Option<u32>> = batch
            .series()
            .iter()
            .zip(batch.series_hashes())
            .map(|(l, &h)| self.db.lookup(l, h))
            .collect();
        for s in batch.samples() {
            let i = s.series as usize;
            let store = stored[i].map(|id| &self.db.entry(id).samples);
            let pending = known[i].map(|slot| (slot, self.slots[slot as usize].1));
            let newest = match (store.and_then(|st| st.newest_ms()), pending.map(|p| p.1)) {
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
                    let (slot, _) = pending?;
                    self.samples
                        .iter()
                        .rev()
                        .find(|&&(sl, t, _)| sl == slot && t == s.timestamp_ms)
                        .map(|&(_, _, v)| v)
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
        Ok(stored)
    }
}

/// `name{a="b"}` as Prometheus prints a series.
fn render_series(labels: &Labels) -> String {
    let name = labels.metric_name().unwrap_or("");
    let rest: Vec<String> = labels
        .pairs()
        .filter(|(n, _)| *n != "__name__")
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
    fn admission_hands_apply_the_ids_it_found_and_wrong_hints_change_nothing() {
        let mut db = Tsdb::new();
        db.apply_batch(&batch(&[("a", 100, 1.0), ("z", 100, 1.0)]));
        let blocks = [
            batch(&[("a", 200, 2.0), ("b", 200, 2.0)]),
            batch(&[("b", 300, 3.0), ("z", 300, 3.0), ("c", 300, 3.0)]),
        ];
        let mut buffers = AdmissionBuffers::default();
        for round in 0..2 {
            let mut a = Admission::with_buffers(&db, 0, std::mem::take(&mut buffers));
            for b in &blocks {
                a.admit(b).unwrap();
            }
            let admitted = a.finish();
            buffers = admitted.buffers;
            // Ids in the view when checked: `b` and `c` are new to it, even after the
            // first batch admitted `b`.
            let expected = if round == 0 {
                vec![vec![Some(0), None], vec![None, Some(1), None]]
            } else {
                vec![vec![Some(0), Some(2)], vec![Some(2), Some(1), Some(3)]]
            };
            assert_eq!(admitted.resolved, expected, "round {round}");
            let mut plain = db.clone();
            let mut wrong = db.clone();
            for (b, ids) in blocks.iter().zip(&admitted.resolved) {
                plain.apply_batch(b);
                db.apply_batch_resolved(b, ids);
                // Hints naming another series, or none at all, are ignored.
                let bad: Vec<Option<SeriesId>> = ids.iter().map(|_| Some(1)).collect();
                wrong.apply_batch_resolved(b, &bad);
            }
            assert_eq!(db.digest(), plain.digest());
            assert_eq!(wrong.digest(), plain.digest());
        }
        // Out of range hints too.
        let mut plain = db.clone();
        plain.apply_batch(&blocks[0]);
        db.apply_batch_resolved(&blocks[0], &[Some(99), Some(u32::MAX)]);
        assert_eq!(db.digest(), plain.digest());
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

    proptest::proptest! {
        /// Admission agrees with a plain model: per series a map of timestamp → value bits,
        /// held samples first, then every admitted batch's.
        #[test]
        fn agrees_with_a_sorted_map_model(
            held in proptest::collection::vec((0u8..4, 0i64..50, 0u8..3), 0..40),
            batches in proptest::collection::vec(
                proptest::collection::vec((0u8..4, 0i64..60, 0u8..3), 1..6), 1..8),
            window in 0i64..20,
        ) {
            use std::collections::BTreeMap;
            let host = |k: u8| ["a", "b", "c", "d"][k as usize];
            let mut db = Tsdb::new();
            let mut model: BTreeMap<u8, BTreeMap<i64, u64>> = BTreeMap::new();
            let mut initial = SampleBatch::new();
            let mut seen = std::collections::BTreeSet::new();
            for &(k, t, v) in &held {
                if seen.insert((k, t)) {
                    initial.push(labels(host(k)), t * 10, v as f64);
                    model.entry(k).or_default().insert(t * 10, (v as f64).to_bits());
                }
            }
            db.apply_batch(&initial);
            let built: Vec<SampleBatch> = batches
                .iter()
                .map(|b| {
                    let mut out = SampleBatch::new();
                    let mut seen = std::collections::BTreeSet::new();
                    for &(k, t, v) in b {
                        if seen.insert((k, t)) {
                            out.push(labels(host(k)), t * 10, v as f64);
                        }
                    }
                    out
                })
                .collect();
            let mut a = Admission::new(&db, window * 10);
            for (b, raw) in built.iter().zip(&batches) {
                let mut seen = std::collections::BTreeSet::new();
                let samples: Vec<(u8, i64, u64)> = raw
                    .iter()
                    .filter(|&&(k, t, _)| seen.insert((k, t)))
                    .map(|&(k, t, v)| (k, t * 10, (v as f64).to_bits()))
                    .collect();
                let ok = samples.iter().all(|&(k, t, v)| {
                    let series = model.get(&k);
                    match series.and_then(|m| m.get(&t)) {
                        Some(&held) => held == v,
                        None => series
                            .and_then(|m| m.keys().next_back())
                            .is_none_or(|&newest| t > newest - window * 10),
                    }
                });
                proptest::prop_assert_eq!(a.admit(b).is_ok(), ok, "batch {:?}", samples);
                if ok {
                    for (k, t, v) in samples {
                        model.entry(k).or_default().insert(t, v);
                    }
                }
            }
        }
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

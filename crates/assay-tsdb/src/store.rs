//! The per-series sample store.
//!
//! Kept behind this small type so Gorilla-style compressed chunks can replace the plain
//! vector without touching the index, the digest or the evaluator: they only use
//! `insert`, `len`, `range` and `iter`.

/// Samples of one series: timestamps strictly increasing, one value per timestamp.
#[derive(Clone, Debug, Default)]
pub(crate) struct SampleStore {
    samples: Vec<(i64, f64)>,
}

impl SampleStore {
    /// Inserts a sample in timestamp order; a sample at an existing timestamp replaces it
    /// (the later write in ledger order wins). Returns true when the sample was new.
    pub(crate) fn insert(&mut self, ts_ms: i64, value: f64) -> bool {
        // Appending in order is the common case: scrapes arrive with increasing time.
        match self.samples.last() {
            None => {
                self.samples.push((ts_ms, value));
                return true;
            }
            Some(&(last, _)) if last < ts_ms => {
                self.samples.push((ts_ms, value));
                return true;
            }
            _ => {}
        }
        match self.samples.binary_search_by(|(t, _)| t.cmp(&ts_ms)) {
            Ok(i) => {
                self.samples[i].1 = value;
                false
            }
            Err(i) => {
                self.samples.insert(i, (ts_ms, value));
                true
            }
        }
    }

    /// The newest sample's timestamp.
    pub(crate) fn newest_ms(&self) -> Option<i64> {
        self.samples.last().map(|&(t, _)| t)
    }

    /// The value at exactly `ts_ms`, if the series has one.
    pub(crate) fn value_at(&self, ts_ms: i64) -> Option<f64> {
        let i = self.samples.binary_search_by(|(t, _)| t.cmp(&ts_ms)).ok()?;
        Some(self.samples[i].1)
    }

    /// Number of samples.
    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }

    /// Samples with `min_ms <= ts <= max_ms`, in timestamp order.
    pub(crate) fn range(&self, min_ms: i64, max_ms: i64) -> impl Iterator<Item = (i64, f64)> + '_ {
        let lo = self.samples.partition_point(|&(t, _)| t < min_ms);
        let hi = self.samples.partition_point(|&(t, _)| t <= max_ms).max(lo);
        self.samples[lo..hi].iter().copied()
    }

    /// Number of samples with `min_ms <= ts <= max_ms`, without reading them.
    pub(crate) fn count_in(&self, min_ms: i64, max_ms: i64) -> usize {
        let lo = self.samples.partition_point(|&(t, _)| t < min_ms);
        self.samples
            .partition_point(|&(t, _)| t <= max_ms)
            .saturating_sub(lo)
    }

    /// The latest sample with `min_ms <= ts <= max_ms`, if any.
    pub(crate) fn last_in(&self, min_ms: i64, max_ms: i64) -> Option<(i64, f64)> {
        let hi = self.samples.partition_point(|&(t, _)| t <= max_ms);
        let s = *self.samples.get(hi.checked_sub(1)?)?;
        (s.0 >= min_ms).then_some(s)
    }

    /// True when some sample lies in `min_ms..=max_ms`.
    pub(crate) fn overlaps(&self, min_ms: i64, max_ms: i64) -> bool {
        self.last_in(min_ms, max_ms).is_some()
    }

    /// All samples in timestamp order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.samples.iter().copied()
    }

    /// Checks the invariant: timestamps strictly increasing.
    pub(crate) fn is_sorted_unique(&self) -> bool {
        self.samples.windows(2).all(|w| w[0].0 < w[1].0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_orders_and_later_write_wins() {
        let mut s = SampleStore::default();
        assert!(s.insert(20, 2.0));
        assert!(s.insert(10, 1.0));
        assert!(s.insert(30, 3.0));
        assert!(!s.insert(20, 9.0));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![(10, 1.0), (20, 9.0), (30, 3.0)]
        );
        assert!(s.is_sorted_unique());
        assert_eq!(
            s.range(11, 30).collect::<Vec<_>>(),
            vec![(20, 9.0), (30, 3.0)]
        );
        assert_eq!(s.range(31, 10).count(), 0);
        assert_eq!(
            (
                s.count_in(11, 30),
                s.count_in(31, 10),
                s.count_in(i64::MIN, i64::MAX)
            ),
            (2, 0, 3)
        );
        assert_eq!(s.last_in(0, 25), Some((20, 9.0)));
        assert_eq!(s.last_in(21, 29), None);
        assert!(!s.overlaps(i64::MIN, 9));
        assert!(s.overlaps(30, i64::MAX));
    }
}

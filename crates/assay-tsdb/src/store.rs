//! The per-series sample store: compressed chunks and an uncompressed head.
//!
//! The index, the digest and the evaluator see only `insert`, `len`, `range`, `last_in`,
//! `count_in` and `iter`, so the layout can change without touching them.

use crate::chunk::{Chunk, OpenChunk};

/// Samples a series collects uncompressed before they are sealed into a [`Chunk`]
/// (Prometheus' 120: two hours of 1-minute scrapes, 30 minutes of 15-second ones).
pub(crate) const HEAD_SAMPLES_MAX: usize = 120;

/// A sealed chunk that out-of-order writes grew past this is split in two.
const CHUNK_SAMPLES_MAX: usize = 2 * HEAD_SAMPLES_MAX;
/// Most samples a sealed chunk can hold (a snapshot with more is rejected).
pub(crate) const CHUNK_LEN_MAX: u64 = CHUNK_SAMPLES_MAX as u64;

/// Samples of one series: timestamps strictly increasing, one value per timestamp.
///
/// Old samples live in sealed chunks (each in the smaller of two encodings); the newest up to [`HEAD_SAMPLES_MAX`] in an open
/// chunk that in-order appends (the common case) extend in place. A write older than the
/// newest sample (an out-of-order sample the window admitted) recompresses the one chunk it
/// falls in.
#[derive(Clone, Debug, Default)]
pub(crate) struct SampleStore {
    /// Time-ordered, non-overlapping; every timestamp below the head's first.
    sealed: Vec<Chunk>,
    head: OpenChunk,
}

/// What [`SampleStore::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Inserted {
    /// The timestamp was new (else the value replaced the one held).
    pub(crate) new: bool,
    /// The open chunk filled and was sealed, unsettled, as the last sealed chunk.
    pub(crate) sealed: bool,
}

/// Inserts into sorted samples; true when the timestamp was new (else the value replaced).
fn insert_sorted(samples: &mut Vec<(i64, f64)>, ts_ms: i64, value: f64) -> bool {
    match samples.binary_search_by(|(t, _)| t.cmp(&ts_ms)) {
        Ok(at) => {
            samples[at].1 = value;
            false
        }
        Err(at) => {
            samples.insert(at, (ts_ms, value));
            true
        }
    }
}

impl SampleStore {
    /// Asks the CPU to bring the end of the open chunk's bytes (where the next sample
    /// goes) into the caches.
    pub(crate) fn prefetch_head(&self) {
        self.head.prefetch_tail();
    }

    /// Inserts a sample in timestamp order; a sample at an existing timestamp replaces it
    /// (the later write in ledger order wins).
    pub(crate) fn insert(&mut self, ts_ms: i64, value: f64) -> Inserted {
        // The usual case, newer than the head's newest, needs no look at the sealed chunks
        // (every sealed sample is older than the head's first).
        let into_head = match self.head.last() {
            Some((last, _)) if ts_ms > last => true,
            _ => self.sealed.last().is_none_or(|c| ts_ms > c.max_t()),
        };
        if into_head {
            let new = match self.head.last() {
                Some((last, _)) if last >= ts_ms => {
                    let mut samples: Vec<(i64, f64)> = self.head.iter().collect();
                    let new = insert_sorted(&mut samples, ts_ms, value);
                    self.head = OpenChunk::default();
                    for (t, v) in samples {
                        self.head.append(t, v);
                    }
                    new
                }
                _ => {
                    self.head.append(ts_ms, value);
                    true
                }
            };
            let sealed = self.head.len() >= HEAD_SAMPLES_MAX;
            if sealed {
                self.sealed.extend(self.head.seal());
            }
            return Inserted { new, sealed };
        }
        // Older than the head: into the chunk covering it, or the one before the gap it
        // falls in (the first chunk for a sample older than all).
        let i = self
            .sealed
            .partition_point(|c| c.min_t() <= ts_ms)
            .saturating_sub(1);
        let mut samples: Vec<(i64, f64)> = self.sealed[i].iter().collect();
        let new = insert_sorted(&mut samples, ts_ms, value);
        if samples.len() > CHUNK_SAMPLES_MAX {
            let (a, b) = samples.split_at(samples.len() / 2);
            self.sealed
                .splice(i..=i, [Chunk::encode(a), Chunk::encode(b)]);
        } else {
            self.sealed[i] = Chunk::encode(&samples);
        }
        Inserted { new, sealed: false }
    }

    /// The unsettled sealed chunk starting at `min_t`, if there is one.
    pub(crate) fn unsettled_at(&self, min_t: i64) -> Option<&Chunk> {
        let i = self.sealed.partition_point(|c| c.min_t() < min_t);
        self.sealed
            .get(i)
            .filter(|c| c.min_t() == min_t && !c.is_settled())
    }

    /// Puts `settled` in the place of `unsettled` (its settled form) if that chunk is
    /// still held, unsettled; true if it was.
    pub(crate) fn install_settled(&mut self, unsettled: &Chunk, settled: Chunk) -> bool {
        debug_assert!(settled.is_settled());
        let i = self
            .sealed
            .partition_point(|c| c.min_t() < unsettled.min_t());
        match self.sealed.get_mut(i) {
            Some(c) if !c.is_settled() && c == unsettled => {
                *c = settled;
                true
            }
            _ => false,
        }
    }

    /// Settles the newest sealed chunk in place, if it is unsettled.
    pub(crate) fn settle_last(&mut self) {
        if let Some(c) = self.sealed.last_mut() {
            c.settle();
        }
    }

    /// Settles every unsettled sealed chunk in place; returns how many.
    pub(crate) fn settle_all(&mut self) -> usize {
        self.sealed
            .iter_mut()
            .map(|c| usize::from(c.settle()))
            .sum()
    }

    /// Drops whole chunks whose newest sample is older than `cutoff_ms` (a chunk that
    /// straddles the cutoff stays, as a Prometheus block does); returns the samples dropped.
    pub(crate) fn drop_before(&mut self, cutoff_ms: i64) -> usize {
        let keep_from = self.sealed.partition_point(|c| c.max_t() < cutoff_ms);
        let mut dropped: usize = self.sealed.drain(..keep_from).map(|c| c.len()).sum();
        if self.head.last().is_some_and(|(t, _)| t < cutoff_ms) {
            dropped += self.head.len();
            self.head = OpenChunk::default();
        }
        dropped
    }

    /// `(newest timestamp, bytes)` of each sealed chunk (settled, as every replica sizes
    /// it) and of the open one.
    pub(crate) fn chunk_sizes(&self) -> impl Iterator<Item = (i64, usize)> + '_ {
        self.sealed
            .iter()
            .map(|c| (c.max_t(), c.settled_len() + std::mem::size_of::<Chunk>()))
            .chain(self.head.last().map(|(t, _)| (t, self.head.memory_bytes())))
    }

    /// `(samples, heap bytes)` of the open chunk.
    pub(crate) fn head_size(&self) -> (usize, usize) {
        (self.head.len(), self.head.memory_bytes())
    }

    /// True when no sample is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.head.len() == 0
    }

    /// Sample counts of the sealed chunks, oldest first: with the samples, the whole state.
    pub(crate) fn sealed_lens(&self) -> Vec<usize> {
        self.sealed.iter().map(Chunk::len).collect()
    }

    /// The newest sample's timestamp.
    pub(crate) fn newest_ms(&self) -> Option<i64> {
        match self.head.last() {
            Some((t, _)) => Some(t),
            None => self.sealed.last().map(Chunk::max_t),
        }
    }

    /// The value at exactly `ts_ms`, if the series has one.
    pub(crate) fn value_at(&self, ts_ms: i64) -> Option<f64> {
        self.last_in(ts_ms, ts_ms).map(|(_, v)| v)
    }

    /// Number of samples.
    pub(crate) fn len(&self) -> usize {
        self.sealed.iter().map(Chunk::len).sum::<usize>() + self.head.len()
    }

    /// Bytes held for samples: compressed chunks plus the open one (approximate; no
    /// allocator overhead).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.sealed
            .iter()
            .map(|c| c.heap_bytes() + std::mem::size_of::<Chunk>())
            .sum::<usize>()
            + self.head.memory_bytes()
    }

    /// The sealed chunks, oldest first.
    pub(crate) fn sealed(&self) -> &[Chunk] {
        &self.sealed
    }

    /// The open chunk.
    pub(crate) fn head(&self) -> &OpenChunk {
        &self.head
    }

    /// Replaces sealed chunk `i` by one with the same samples (bytes moved to a file).
    pub(crate) fn replace_sealed(&mut self, i: usize, chunk: Chunk) {
        debug_assert!(self.sealed[i] == chunk);
        self.sealed[i] = chunk;
    }

    /// A store from sealed chunks (ordered, disjoint) and the open chunk's samples (after
    /// them, fewer than [`HEAD_SAMPLES_MAX`]); the caller checked both.
    pub(crate) fn from_parts(sealed: Vec<Chunk>, head: &[(i64, f64)]) -> SampleStore {
        let mut store = SampleStore {
            sealed,
            head: OpenChunk::default(),
        };
        for &(t, v) in head {
            store.head.append(t, v);
        }
        store
    }

    /// Chunks that may hold samples in `min_ms..=max_ms`.
    fn chunks_in(&self, min_ms: i64, max_ms: i64) -> &[Chunk] {
        let lo = self.sealed.partition_point(|c| c.max_t() < min_ms);
        let hi = self.sealed.partition_point(|c| c.min_t() <= max_ms).max(lo);
        &self.sealed[lo..hi]
    }

    /// The open chunk's samples in `min_ms..=max_ms` (decoding only when they may exist).
    fn head_in(&self, min_ms: i64, max_ms: i64) -> impl Iterator<Item = (i64, f64)> + '_ {
        let overlaps = match (self.head.min_t(), self.head.last()) {
            (Some(lo), Some((hi, _))) => lo <= max_ms && min_ms <= hi,
            _ => false,
        };
        self.head
            .iter()
            .take(if overlaps { usize::MAX } else { 0 })
            .skip_while(move |&(t, _)| t < min_ms)
            .take_while(move |&(t, _)| t <= max_ms)
    }

    /// Samples with `min_ms <= ts <= max_ms`, in timestamp order.
    pub(crate) fn range(&self, min_ms: i64, max_ms: i64) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.chunks_in(min_ms, max_ms)
            .iter()
            .flat_map(move |c| {
                c.iter()
                    .skip_while(move |&(t, _)| t < min_ms)
                    .take_while(move |&(t, _)| t <= max_ms)
            })
            .chain(self.head_in(min_ms, max_ms))
    }

    /// Number of samples with `min_ms <= ts <= max_ms`, decoding only the chunks the range
    /// cuts through.
    pub(crate) fn count_in(&self, min_ms: i64, max_ms: i64) -> usize {
        let chunks: usize = self
            .chunks_in(min_ms, max_ms)
            .iter()
            .map(|c| {
                if min_ms <= c.min_t() && c.max_t() <= max_ms {
                    c.len()
                } else {
                    c.iter()
                        .filter(|&(t, _)| min_ms <= t && t <= max_ms)
                        .count()
                }
            })
            .sum();
        let head = match (self.head.min_t(), self.head.last()) {
            (Some(lo), Some((hi, _))) if min_ms <= lo && hi <= max_ms => self.head.len(),
            _ => self.head_in(min_ms, max_ms).count(),
        };
        chunks + head
    }

    /// The latest sample with `min_ms <= ts <= max_ms`, if any.
    pub(crate) fn last_in(&self, min_ms: i64, max_ms: i64) -> Option<(i64, f64)> {
        // The newest sample is kept decoded: an instant query at "now" reads no chunk.
        if let Some((t, v)) = self.head.last() {
            if t <= max_ms {
                return (t >= min_ms).then_some((t, v));
            }
        }
        if let Some(s) = self.head_in(min_ms, max_ms).last() {
            return Some(s);
        }
        let chunk = self.chunks_in(min_ms, max_ms).last()?;
        chunk
            .iter()
            .take_while(|&(t, _)| t <= max_ms)
            .filter(|&(t, _)| t >= min_ms)
            .last()
    }

    /// True when some sample lies in `min_ms..=max_ms`.
    pub(crate) fn overlaps(&self, min_ms: i64, max_ms: i64) -> bool {
        self.last_in(min_ms, max_ms).is_some()
    }

    /// All samples in timestamp order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.sealed
            .iter()
            .flat_map(Chunk::iter)
            .chain(self.head.iter())
    }

    /// Checks the invariants: timestamps strictly increasing across chunks and head, the
    /// open chunk shorter than [`HEAD_SAMPLES_MAX`].
    pub(crate) fn is_sorted_unique(&self) -> bool {
        let all: Vec<i64> = self.iter().map(|(t, _)| t).collect();
        all.windows(2).all(|w| w[0] < w[1]) && self.head.len() < HEAD_SAMPLES_MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn insert_orders_and_later_write_wins() {
        let mut s = SampleStore::default();
        assert!(s.insert(20, 2.0).new);
        assert!(s.insert(10, 1.0).new);
        assert!(s.insert(30, 3.0).new);
        assert!(!s.insert(20, 9.0).new);
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

    #[test]
    fn in_order_samples_are_sealed_into_compressed_chunks() {
        let mut s = SampleStore::default();
        for i in 0..1000i64 {
            assert!(s.insert(1_700_000_000_000 + i * 15_000, (i % 7) as f64).new);
        }
        assert_eq!((s.len(), s.sealed.len(), s.head.len()), (1000, 8, 40));
        assert!(s.head.memory_bytes() < 40 * 16, "{}", s.head.memory_bytes());
        // Sealed unsettled (the open chunk's XOR bytes); settling keeps the samples.
        assert!(s.sealed.iter().all(|c| !c.is_settled()));
        let before: Vec<(i64, f64)> = s.iter().collect();
        assert_eq!(s.settle_all(), 8);
        assert_eq!((s.settle_all(), s.iter().collect::<Vec<_>>()), (0, before));
        // 16 bytes per sample uncompressed; sealed chunks take a fraction of that.
        let sealed: usize = s.sealed.iter().map(Chunk::byte_len).sum();
        assert!(sealed < 960 * 3, "{sealed} bytes for 960 samples");
        assert!(s.is_sorted_unique());
    }

    #[test]
    fn retention_drops_whole_chunks_older_than_the_cutoff() {
        let mut s = SampleStore::default();
        for i in 0..300i64 {
            s.insert(i * 10, i as f64);
        }
        // Chunks cover 0..=1190 and 1200..=2390; the head 2400..=2990.
        assert_eq!(s.drop_before(1_195), 120);
        assert_eq!((s.len(), s.iter().next()), (180, Some((1_200, 120.0))));
        assert_eq!(s.drop_before(1_300), 0, "a straddling chunk stays");
        assert_eq!(
            s.chunk_sizes().map(|(t, _)| t).collect::<Vec<_>>(),
            vec![2_390, 2_990]
        );
        assert_eq!(s.drop_before(3_000), 180);
        assert!(s.is_empty() && s.newest_ms().is_none());
    }

    #[test]
    fn out_of_order_write_rewrites_a_sealed_columns_chunk() {
        let mut s = SampleStore::default();
        for i in 0..300i64 {
            s.insert(i * 15_000, 100.0 + (i * 37 % 11) as f64 / 100.0);
        }
        let columns = Some(crate::chunk::ChunkEncoding::Columns);
        assert_eq!(s.settle_all(), 2);
        assert!(s.sealed.iter().all(|c| c.encoding() == columns));
        // Into the first chunk (a gap between scrapes), and a replacement in the second.
        assert!(s.insert(7_500, f64::from_bits(0x7ff0_0000_0000_0002)).new);
        assert!(!s.insert(150 * 15_000, -0.0).new);
        assert_eq!((s.len(), s.sealed_lens()), (301, vec![121, 120]));
        assert!(s.sealed.iter().all(|c| c.encoding() == columns));
        assert_eq!(
            s.value_at(7_500).map(f64::to_bits),
            Some(0x7ff0_0000_0000_0002)
        );
        assert_eq!(
            s.value_at(150 * 15_000).map(f64::to_bits),
            Some((-0.0f64).to_bits())
        );
        assert_eq!(s.value_at(15_000), Some(100.04));
        assert!(s.is_sorted_unique());
    }

    proptest! {
        /// The store answers every read like a sorted map of the same writes, whatever
        /// their order (out-of-order writes land in sealed chunks, which split when full).
        #[test]
        fn behaves_like_a_sorted_map(
            writes in proptest::collection::vec((0i64..2_000, -3i32..3), 1..600),
            reads in proptest::collection::vec((-10i64..2_010, 0i64..600), 1..40),
        ) {
            let mut s = SampleStore::default();
            let mut model = BTreeMap::new();
            for (i, &(t, v)) in writes.iter().enumerate() {
                // Mostly increasing, some late: time = i + t/4 spreads writes forward.
                let ts = i as i64 + t / 4;
                let new = s.insert(ts, v as f64).new;
                prop_assert_eq!(new, model.insert(ts, v as f64).is_none());
                // Reads and writes must not care which chunks are settled.
                if t % 7 == 0 {
                    s.settle_all();
                }
            }
            prop_assert!(s.is_sorted_unique());
            prop_assert_eq!(s.len(), model.len());
            prop_assert_eq!(s.iter().collect::<Vec<_>>(), model.iter().map(|(&t, &v)| (t, v)).collect::<Vec<_>>());
            prop_assert_eq!(s.newest_ms(), model.keys().next_back().copied());
            for (min, width) in reads {
                let max = min + width;
                let want: Vec<(i64, f64)> = model.range(min..=max).map(|(&t, &v)| (t, v)).collect();
                prop_assert_eq!(s.range(min, max).collect::<Vec<_>>(), want.clone());
                prop_assert_eq!(s.count_in(min, max), want.len());
                prop_assert_eq!(s.last_in(min, max), want.last().copied());
                prop_assert_eq!(s.overlaps(min, max), !want.is_empty());
                prop_assert_eq!(s.value_at(min), model.get(&min).copied());
            }
        }
    }
}

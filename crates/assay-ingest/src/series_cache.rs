//! A bounded cache from a series' raw label bytes to its validated [`Labels`] and hash.
//!
//! Remote write sends every series again on every scrape, with the same label bytes. The
//! parser looks those bytes up here and, on a hit, skips decoding, UTF-8 checks, validation,
//! allocation and hashing of the labels. Only successes are stored, so a rejected series is
//! walked (and its error named) exactly as without the cache.
//!
//! A cached result holds only for the [`Limits`] it was validated under: the cache keeps a
//! copy of them, and the parser consults it only when the request is parsed under equal
//! limits (a node that changes its limits gets a cache that is never consulted, never a
//! stale "valid").
//!
//! Bounds: entries and bytes (key bytes plus label bytes plus a fixed overhead per entry and
//! per pair) in each of two generations. New entries go to the current generation; when it
//! is full, it becomes the previous one and the old previous is dropped; a hit in the
//! previous generation moves the entry to the current one. So the cache holds at most twice
//! the per-generation bounds and keeps the series seen since the last rotation.
//! The keys are split over [`SERIES_CACHE_SHARDS`] locked shards, so parsers on several
//! threads rarely wait for each other; each shard has its share of the bounds.
//!
//! **More active series than the cache holds.** Remote write cycles through every series
//! once per scrape, so with more series than fit, each generation is dropped just before
//! its series come round again: every lookup missed and every miss paid an insert and,
//! later, an eviction (measured: 10–25 % more CPU than no cache at 1 M series). So a shard
//! whose generation filled up while fewer than half the lookups of keys it admits hit
//! admits only a fixed, hash-chosen share of new keys from then on (halved at each such
//! rotation, down to 1/2^[`ADMIT_SHIFT_MAX`]); that share stays resident and hits. When a
//! shard has not
//! rotated for [`RELAX_AFTER_GENERATIONS`] generations' worth of lookups, it admits twice
//! the share again, so a fleet that shrank is cached whole (under a steady overload the
//! share so swings between the one that fits and twice it, which thrashes for about a
//! generation before it is halved again).
//!
//! **Prefetch.** A generation is an open-addressing table whose first probe slot follows
//! from the key's hash alone, so the parser names the next series' key
//! ([`SeriesCache::prefetch`]) before it adds the current one, and the slot is in the CPU
//! cache by the time it is looked up: the lookup's miss on the slot was two thirds of its
//! time (the largest single cost of remote-write parsing in the side-by-side profile).

use std::hash::BuildHasher;
use std::sync::Mutex;

use assay_ledger::Labels;
use rustc_hash::FxBuildHasher;

use crate::Limits;

/// Default bound on entries per generation (two generations: at most twice this).
pub const SERIES_CACHE_ENTRIES_MAX: usize = 256 * 1024;
/// Default bound on accounted bytes per generation (two generations: at most twice this).
pub const SERIES_CACHE_BYTES_MAX: usize = 64 << 20;
/// Independently locked shards.
pub const SERIES_CACHE_SHARDS: usize = 16;

/// The smallest share of new keys a thrashing shard admits is 1/2^this.
pub const ADMIT_SHIFT_MAX: u32 = 8;
/// Lookups, in generations' worth of entries, after which a shard with room admits more.
const RELAX_AFTER_GENERATIONS: u64 = 8;

/// Bytes accounted per entry besides its key and label strings (map slot, the labels'
/// `Arc` and its two allocations, allocator rounding).
const ENTRY_OVERHEAD_BYTES: usize = 96;
/// Bytes accounted per label pair besides its strings (two `u32` end offsets).
const PAIR_OVERHEAD_BYTES: usize = 8;

/// Raw label bytes → (labels, `SeriesIndex::hash` of them), validated under `limits`.
pub struct SeriesCache {
    limits: Limits,
    shards: Box<[Mutex<Shard>]>,
    /// Per shard and generation.
    entries_max: usize,
    /// Per shard and generation.
    bytes_max: usize,
    /// Tests make keys' hashes collide by masking them.
    #[cfg(test)]
    key_hash_mask: u64,
}

/// A cached key and its result.
struct Cached {
    /// What the key is filed under ([`SeriesCache::key_hash`]).
    key_hash: u64,
    key: Box<[u8]>,
    labels: Labels,
    hash: u64,
}

/// One generation: entries by key hash, one per hash, in an open-addressing table with
/// linear probing, at most 3/4 full (so every probe sequence ends at an empty slot).
#[derive(Default)]
struct Generation {
    /// Empty, or a power of two (at least [`GENERATION_SLOTS_MIN`]) of slots.
    slots: Box<[Option<Cached>]>,
    len: usize,
}

/// The fewest slots a non-empty generation has.
const GENERATION_SLOTS_MIN: usize = 8;

impl Generation {
    /// Room for `n` entries without growing.
    fn with_capacity(n: usize) -> Generation {
        let mut g = Generation::default();
        if n > 0 {
            g.slots = empty_slots(slots_for(n));
        }
        g
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Where the probe for `key_hash` starts (the table must not be empty).
    fn home(&self, key_hash: u64) -> usize {
        // Fibonacci hashing: the product's high bits depend on all of the hash's bits (the
        // shard took bits 32–35 and admission takes the top 16, so no plain slice will do).
        let bits = self.slots.len().trailing_zeros();
        (key_hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
    }

    /// The slot holding `key_hash`.
    fn find(&self, key_hash: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key_hash);
        loop {
            match &self.slots[i] {
                None => return None,
                Some(c) if c.key_hash == key_hash => return Some(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    fn get(&self, key_hash: u64) -> Option<&Cached> {
        self.find(key_hash).and_then(|i| self.slots[i].as_ref())
    }

    /// Files `c`, replacing (and returning) the entry with its key hash.
    fn insert(&mut self, c: Cached) -> Option<Cached> {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(c.key_hash);
        loop {
            match &self.slots[i] {
                Some(o) if o.key_hash != c.key_hash => i = (i + 1) & mask,
                Some(_) => return self.slots[i].replace(c),
                None => {
                    self.slots[i] = Some(c);
                    self.len += 1;
                    return None;
                }
            }
        }
    }

    fn grow(&mut self) {
        let bigger = empty_slots((self.slots.len() * 2).max(GENERATION_SLOTS_MIN));
        let old = std::mem::replace(&mut self.slots, bigger);
        self.len = 0;
        for c in old.into_vec().into_iter().flatten() {
            self.insert(c);
        }
    }

    /// Takes out the entry with `key_hash`, shifting back the entries probed past its slot
    /// (no tombstones: every probe still ends at the first empty slot).
    fn remove(&mut self, key_hash: u64) -> Option<Cached> {
        let at = self.find(key_hash)?;
        let removed = self.slots[at].take();
        self.len -= 1;
        let mask = self.slots.len() - 1;
        let mut hole = at;
        let mut j = (at + 1) & mask;
        while let Some(c) = &self.slots[j] {
            // The entry at j may fill the hole when the hole lies on its probe path, that is
            // from its home up to j (cyclically).
            let home = self.home(c.key_hash);
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                self.slots[hole] = self.slots[j].take();
                hole = j;
            }
            j = (j + 1) & mask;
        }
        removed
    }

    fn values(&self) -> impl Iterator<Item = &Cached> {
        self.slots.iter().flatten()
    }

    /// Asks the CPU to load the slot a lookup of `key_hash` reads first.
    fn prefetch(&self, key_hash: u64) {
        if self.slots.is_empty() {
            return;
        }
        let slot: *const Option<Cached> = &self.slots[self.home(key_hash)];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch never faults and reads nothing the program can observe, whatever
        // the address (this one is a live slot besides).
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(slot.cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }
}

/// Slots for `n` entries at most 3/4 full.
fn slots_for(n: usize) -> usize {
    (n.saturating_mul(4) / 3 + 1)
        .next_power_of_two()
        .max(GENERATION_SLOTS_MIN)
}

fn empty_slots(n: usize) -> Box<[Option<Cached>]> {
    std::iter::repeat_with(|| None).take(n).collect()
}

#[derive(Default)]
struct Shard {
    /// Keyed by the hash of the key bytes (computed once per lookup, not again by the
    /// map); an entry whose bytes differ is another key (a hash collision), which
    /// replaces it on insert.
    current: Generation,
    current_bytes: usize,
    previous: Generation,
    /// New keys are admitted when their hash's admission bits are 0 in the low
    /// `admit_shift` bits (0: every key).
    admit_shift: u32,
    /// Lookups and hits of admitted keys since the last rotation or change of
    /// `admit_shift`.
    lookups: u64,
    hits: u64,
    /// All lookups since the last rotation or change of `admit_shift`.
    all_lookups: u64,
    /// Lookups and hits since the cache was made (for the node's metrics).
    total_lookups: u64,
    total_hits: u64,
}

/// What the cache has done since it was made, and what it holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeriesCacheStats {
    /// Lookups.
    pub lookups: u64,
    /// Lookups that found the series.
    pub hits: u64,
    /// Entries held, both generations.
    pub entries: u64,
}

impl Shard {
    /// Starts counting anew (after a rotation or a change of `admit_shift`).
    fn reset_counts(&mut self) {
        self.lookups = 0;
        self.hits = 0;
        self.all_lookups = 0;
    }

    /// Whether a new key with this hash would be cached.
    fn admits(&self, key_hash: u64) -> bool {
        admission_bits(key_hash) & ((1u64 << self.admit_shift) - 1) == 0
    }
}

/// The bits of a key's hash that decide its admission (the shard uses bits 32 and up).
fn admission_bits(hash: u64) -> u64 {
    hash >> 48
}

impl SeriesCache {
    /// A cache for results validated under `limits`, with the default bounds.
    pub fn new(limits: &Limits) -> SeriesCache {
        SeriesCache::with_bounds(limits, SERIES_CACHE_ENTRIES_MAX, SERIES_CACHE_BYTES_MAX)
    }

    /// A cache holding at most `entries_max` entries and `bytes_max` accounted bytes per
    /// generation (rounded up to a multiple of [`SERIES_CACHE_SHARDS`]).
    pub fn with_bounds(limits: &Limits, entries_max: usize, bytes_max: usize) -> SeriesCache {
        SeriesCache {
            limits: limits.clone(),
            shards: (0..SERIES_CACHE_SHARDS)
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            entries_max: entries_max.div_ceil(SERIES_CACHE_SHARDS).max(1),
            bytes_max: bytes_max.div_ceil(SERIES_CACHE_SHARDS),
            #[cfg(test)]
            key_hash_mask: u64::MAX,
        }
    }

    /// The most entries and accounted bytes it holds, both generations together.
    pub fn bounds(&self) -> (usize, usize) {
        let n = 2 * SERIES_CACHE_SHARDS;
        (n * self.entries_max, n * self.bytes_max)
    }

    /// The limits the cached results were validated under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Entries held, both generations.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().expect("series cache lock");
                s.current.len() + s.previous.len()
            })
            .sum()
    }

    /// Lookups and hits so far, and the entries held.
    pub fn stats(&self) -> SeriesCacheStats {
        self.shards
            .iter()
            .fold(SeriesCacheStats::default(), |mut acc, s| {
                let s = s.lock().expect("series cache lock");
                acc.lookups += s.total_lookups;
                acc.hits += s.total_hits;
                acc.entries += (s.current.len() + s.previous.len()) as u64;
                acc
            })
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Accounted bytes of the entries held, both generations.
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().expect("series cache lock");
                s.current_bytes + s.previous.values().map(Cached::cost).sum::<usize>()
            })
            .sum()
    }

    #[cfg(test)]
    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        &self.shards[shard_of(self.key_hash(key))]
    }

    /// The hash a key is filed under.
    fn key_hash(&self, key: &[u8]) -> u64 {
        let h = FxBuildHasher.hash_one(key);
        #[cfg(test)]
        let h = h & self.key_hash_mask;
        h
    }

    /// The labels and hash cached for these raw label bytes.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &[u8]) -> Option<(Labels, u64)> {
        self.get_hashed(key, self.key_hash(key))
    }

    /// Starts loading what a lookup of `key` will read, and returns the hash to look it up
    /// with ([`SeriesCache::get_hashed`]).
    pub(crate) fn prefetch(&self, key: &[u8]) -> u64 {
        let key_hash = self.key_hash(key);
        self.shards[shard_of(key_hash)]
            .lock()
            .expect("series cache lock")
            .current
            .prefetch(key_hash);
        key_hash
    }

    /// [`SeriesCache::get`] of a key whose hash [`SeriesCache::prefetch`] returned.
    pub(crate) fn get_hashed(&self, key: &[u8], key_hash: u64) -> Option<(Labels, u64)> {
        debug_assert_eq!(key_hash, self.key_hash(key));
        let mut guard = self.shards[shard_of(key_hash)]
            .lock()
            .expect("series cache lock");
        let shard = &mut *guard;
        // Only lookups of keys the shard admits tell whether what it admits fits.
        let counted = u64::from(shard.admits(key_hash));
        shard.lookups += counted;
        shard.all_lookups += 1;
        shard.total_lookups += 1;
        if let Some(hit) = shard.current.get(key_hash).filter(|c| *c.key == *key) {
            shard.hits += counted;
            shard.total_hits += 1;
            return Some((hit.labels.clone(), hit.hash));
        }
        if shard.previous.get(key_hash).is_none_or(|c| *c.key != *key) {
            self.relax_if_roomy(shard);
            return None;
        }
        let hit = shard.previous.remove(key_hash).expect("found just now");
        shard.hits += counted;
        shard.total_hits += 1;
        let found = (hit.labels.clone(), hit.hash);
        self.put(shard, hit);
        Some(found)
    }

    /// Admits twice the share of new keys when the shard has not rotated for a while
    /// (see the module docs).
    fn relax_if_roomy(&self, shard: &mut Shard) {
        if shard.admit_shift > 0
            && shard.all_lookups >= RELAX_AFTER_GENERATIONS * self.entries_max as u64
        {
            shard.admit_shift -= 1;
            shard.reset_counts();
        }
    }

    /// The shard of `key` admits 1/2^this of new keys.
    #[cfg(test)]
    fn admit_shift(&self, key: &[u8]) -> u32 {
        self.shard(key)
            .lock()
            .expect("series cache lock")
            .admit_shift
    }

    /// Caches labels that passed validation under [`SeriesCache::limits`] after a miss
    /// ([`SeriesCache::get`] found neither generation holding them); `hash` must be their
    /// `SeriesIndex::hash`.
    pub(crate) fn insert(&self, key: &[u8], labels: &Labels, hash: u64) {
        debug_assert_eq!(hash, assay_ledger::SeriesIndex::hash(labels));
        if cost(key, labels) > self.bytes_max {
            return; // Larger than a generation: never cached.
        }
        // Not looked up again: another request may have cached the same key meanwhile,
        // which `put` replaces (with equal labels). A copy left in the previous generation
        // is only counted twice until it rotates out.
        let key_hash = self.key_hash(key);
        let mut shard = self.shards[shard_of(key_hash)]
            .lock()
            .expect("series cache lock");
        if !shard.admits(key_hash) {
            return; // Thrashing: only a fixed share of keys is cached.
        }
        let cached = Cached {
            key_hash,
            key: key.into(),
            labels: labels.clone(),
            hash,
        };
        self.put(&mut shard, cached);
    }

    /// Adds an entry to the current generation, rotating first when it is full.
    fn put(&self, shard: &mut Shard, value: Cached) {
        let c = value.cost();
        if shard.current.len() >= self.entries_max || shard.current_bytes + c > self.bytes_max {
            // A generation filled while most lookups of admitted keys missed: they cycle
            // through more than the cache holds, so admit half as many from now on.
            if shard.hits * 2 < shard.lookups && shard.admit_shift < ADMIT_SHIFT_MAX {
                shard.admit_shift += 1;
            }
            shard.reset_counts();
            // The next generation will likely fill as this one did: size it so.
            let next = Generation::with_capacity(shard.current.len());
            shard.previous = std::mem::replace(&mut shard.current, next);
            shard.current_bytes = 0;
        }
        shard.current_bytes += c;
        if let Some(replaced) = shard.current.insert(value) {
            // The same key (with equal labels), or another with the same hash.
            shard.current_bytes -= replaced.cost();
        }
        debug_assert!(shard.current.len() <= self.entries_max);
        debug_assert!(shard.current_bytes <= self.bytes_max);
    }
}

/// The shard of a key with this hash (the high bits: FxHash mixes them best).
fn shard_of(key_hash: u64) -> usize {
    (key_hash >> 32) as usize % SERIES_CACHE_SHARDS
}

impl Cached {
    fn cost(&self) -> usize {
        cost(&self.key, &self.labels)
    }
}

/// What an entry is accounted as: its key, its label strings and fixed overheads.
fn cost(key: &[u8], labels: &Labels) -> usize {
    let strings: usize = labels
        .pairs()
        .map(|(n, v)| n.len() + v.len() + PAIR_OVERHEAD_BYTES)
        .sum();
    key.len() + strings + ENTRY_OVERHEAD_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_the_same_hash_never_answer_for_each_other() {
        let mut cache = SeriesCache::new(&Limits::default());
        cache.key_hash_mask = 0; // every key collides with every other
        let (a, b) = (labels(1), labels(2));
        let (ha, hb) = (
            assay_ledger::SeriesIndex::hash(&a),
            assay_ledger::SeriesIndex::hash(&b),
        );
        cache.insert(b"key-a", &a, ha);
        assert_eq!(cache.get(b"key-b"), None);
        assert_eq!(cache.get(b"key-a"), Some((a.clone(), ha)));
        cache.insert(b"key-b", &b, hb); // replaces a: one slot per hash
        assert_eq!(cache.get(b"key-a"), None);
        assert_eq!(cache.get(b"key-b"), Some((b.clone(), hb)));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.bytes(), cost(b"key-b", &b));
    }

    fn labels(i: usize) -> Labels {
        Labels::new(vec![
            ("__name__".into(), "up".into()),
            ("instance".into(), format!("host-{i}")),
        ])
        .unwrap()
    }

    fn fill(cache: &SeriesCache, n: usize) {
        for i in 0..n {
            let l = labels(i);
            let h = assay_ledger::SeriesIndex::hash(&l);
            cache.insert(format!("key-{i}").as_bytes(), &l, h);
        }
    }

    #[test]
    fn entries_are_bounded_by_two_generations() {
        let limits = Limits::default();
        let cache = SeriesCache::with_bounds(&limits, 64, usize::MAX / 4);
        fill(&cache, 10_000);
        // 64 per generation rounds to 4 per shard: at most 2 × 16 × 4.
        assert!(cache.len() <= 2 * 64, "{} entries", cache.len());
        assert!(cache.len() >= 64, "{} entries", cache.len());
        // The newest entries are kept.
        let l = labels(9_999);
        assert_eq!(cache.get(b"key-9999").map(|h| h.0), Some(l));
        assert_eq!(cache.get(b"key-0"), None);
    }

    #[test]
    fn bytes_are_bounded_by_two_generations() {
        let limits = Limits::default();
        let bytes_max = 16 * 1024;
        let cache = SeriesCache::with_bounds(&limits, usize::MAX / 4, bytes_max);
        fill(&cache, 10_000);
        assert!(cache.bytes() <= 2 * bytes_max, "{} bytes", cache.bytes());
        assert!(cache.bytes() > 0);
        // An entry larger than a whole shard's generation is not cached at all.
        let tiny = SeriesCache::with_bounds(&limits, 1024, 16);
        fill(&tiny, 10);
        assert!(tiny.is_empty());
    }

    /// Cycles `keys` keys through the cache `rounds` times as remote write does (look up,
    /// insert on a miss); the hit rate of the last round.
    fn cycle(cache: &SeriesCache, keys: usize, rounds: usize) -> f64 {
        let mut hits = 0;
        for _ in 0..rounds {
            hits = 0;
            for i in 0..keys {
                let key = format!("key-{i}");
                match cache.get(key.as_bytes()) {
                    Some(_) => hits += 1,
                    None => {
                        let l = labels(i);
                        cache.insert(key.as_bytes(), &l, assay_ledger::SeriesIndex::hash(&l));
                    }
                }
            }
        }
        hits as f64 / keys as f64
    }

    #[test]
    fn more_series_than_fit_keep_a_resident_share_and_a_smaller_fleet_is_cached_whole() {
        let limits = Limits::default();
        // 100 entries per shard and generation: 3,200 at most.
        let cache = SeriesCache::with_bounds(&limits, 1_600, usize::MAX / 4);
        // Without admission every lookup of a 6,400-key cycle would miss (each generation
        // is dropped just before its keys come round); a share stays resident instead.
        let hit_rate = cycle(&cache, 6_400, 30);
        assert!(hit_rate >= 0.15, "hit rate {hit_rate}");
        let stats = cache.stats();
        assert_eq!(stats.lookups, 6_400 * 30);
        assert!(
            stats.hits > 6_400 * 3 && stats.hits < stats.lookups,
            "{stats:?}"
        );
        assert_eq!(stats.entries, cache.len() as u64);
        assert!(cache.len() <= 3_200, "{} entries", cache.len());
        assert!(cache.admit_shift(b"key-0") >= 1);
        // A fleet that shrank is admitted whole again.
        let hit_rate = cycle(&cache, 400, 200);
        assert_eq!(hit_rate, 1.0);
        assert_eq!(cache.admit_shift(b"key-0"), 0);
    }

    proptest::proptest! {
        /// A generation answers as a map from key hash to entry does, through inserts,
        /// replacements, removals (with their backward shifts) and growth; hashes are drawn
        /// from a small set, masked so that many share a home slot and probe runs wrap.
        #[test]
        fn a_generation_is_a_map_from_key_hash_to_entry(
            ops in proptest::collection::vec((proptest::bool::weighted(0.6), 0u64..48), 0..400),
            mask in proptest::sample::select(vec![u64::MAX, 0x8000_0000_0000_0007, 0]),
        ) {
            let mut g = Generation::default();
            let mut model = std::collections::BTreeMap::new();
            for (i, &(insert, k)) in ops.iter().enumerate() {
                // Distinct hashes that, under a narrow mask, collide in their home slot.
                let key_hash = k.wrapping_mul(0x0100_0000_0000_0001) & mask | k << 8;
                if insert {
                    let c = Cached {
                        key_hash,
                        key: i.to_le_bytes().into(),
                        labels: labels(i),
                        hash: i as u64,
                    };
                    let replaced = g.insert(c).map(|c| c.hash);
                    proptest::prop_assert_eq!(replaced, model.insert(key_hash, i as u64));
                } else {
                    let removed = g.remove(key_hash).map(|c| c.hash);
                    proptest::prop_assert_eq!(removed, model.remove(&key_hash));
                }
                proptest::prop_assert_eq!(g.len(), model.len());
                proptest::prop_assert!(g.len() * 4 <= g.slots.len() * 3);
            }
            for (&key_hash, &i) in &model {
                proptest::prop_assert_eq!(g.get(key_hash).map(|c| c.hash), Some(i));
            }
            let mut held: Vec<u64> = g.values().map(|c| c.key_hash).collect();
            held.sort_unstable();
            proptest::prop_assert_eq!(held, model.keys().copied().collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_hit_in_the_previous_generation_moves_to_the_current_one() {
        let limits = Limits::default();
        // One entry per shard and generation.
        let cache = SeriesCache::with_bounds(&limits, SERIES_CACHE_SHARDS, usize::MAX / 4);
        let a = b"key-a".as_slice();
        let same_shard: Vec<Vec<u8>> = (0..)
            .map(|i| format!("key-{i}").into_bytes())
            .filter(|k| std::ptr::eq(cache.shard(k), cache.shard(a)))
            .take(2)
            .collect();
        let (b, c) = (&same_shard[0], &same_shard[1]);
        let put = |key: &[u8], i| {
            let l = labels(i);
            cache.insert(key, &l, assay_ledger::SeriesIndex::hash(&l));
        };
        put(a, 0);
        put(b, 1); // a moves to the previous generation
        assert_eq!(cache.get(a).map(|h| h.0), Some(labels(0))); // and back: b is previous
        put(c, 2); // rotates: a stays (previous), b is dropped
        assert_eq!(cache.get(b), None);
        assert_eq!(cache.get(a).map(|h| h.0), Some(labels(0)));
        assert_eq!(cache.limits(), &limits);
    }
}

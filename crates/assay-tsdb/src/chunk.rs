//! Gorilla-style compressed chunks: delta-of-delta timestamps and XOR'd float values.
//!
//! The bit layout is Prometheus' XOR chunk (itself Facebook's Gorilla, VLDB 2015) with
//! Prometheus' timestamp buckets for millisecond data: regular scrapes cost about one bit per
//! timestamp and slowly changing values a few bits each, so a sample takes 1–2 bytes instead
//! of 16.
//!
//! * sample 0: timestamp as a zig-zag varint, value as 64 raw bits;
//! * sample 1: timestamp delta as a zig-zag varint, value XOR'd with the previous one;
//! * later samples: delta-of-delta in one of `0`, `10`+14 bits, `110`+17 bits, `1110`+20
//!   bits, `1111`+64 bits; values as `0` (same as before), `10`+bits (meaningful bits fit the
//!   previous window), or `11`+5 bits leading zeros+6 bits length+bits.
//!
//! Chunks are built and read only by this crate (snapshots and chunk files store them with
//! checksums), so a decoder running off the end is a bug: it stops and debug builds assert.

use std::sync::Arc;

use crate::chunk_file::ChunkFile;

/// Appends bits to a byte vector, most significant bit first.
#[derive(Clone, Debug, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = the last byte is full or there is none).
    used: u8,
}

impl BitWriter {
    fn write_bit(&mut self, bit: bool) {
        if self.used == 0 {
            self.bytes.push(0);
        }
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 0x80 >> self.used;
        }
        self.used = (self.used + 1) % 8;
    }

    /// Writes the low `n` bits of `v`, most significant first.
    fn write_bits(&mut self, v: u64, mut n: u8) {
        debug_assert!(n <= 64);
        while n > 0 {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let free = 8 - self.used;
            let take = free.min(n);
            let shift = n - take;
            let part = ((v >> shift) & ((1u64 << take) - 1)) as u8;
            let last = self.bytes.len() - 1;
            self.bytes[last] |= part << (free - take);
            self.used = (self.used + take) % 8;
            n -= take;
        }
    }

    fn write_varint(&mut self, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                self.write_bits(byte as u64, 8);
                return;
            }
            self.write_bits((byte | 0x80) as u64, 8);
        }
    }
}

/// Reads bits written by [`BitWriter`].
struct BitReader<'a> {
    bytes: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl BitReader<'_> {
    fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let bit = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Some(bit)
    }

    fn read_bits(&mut self, mut n: u8) -> Option<u64> {
        let mut v = 0u64;
        while n > 0 {
            let byte = *self.bytes.get(self.pos / 8)?;
            let offset = (self.pos % 8) as u8;
            let avail = 8 - offset;
            let take = avail.min(n);
            let part = (byte >> (avail - take)) & (((1u16 << take) - 1) as u8);
            v = (v << take) | part as u64;
            self.pos += take as usize;
            n -= take;
        }
        Some(v)
    }

    fn read_varint(&mut self) -> Option<i64> {
        let mut z = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.read_bits(8)? as u8;
            z |= ((byte & 0x7f) as u64).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        None
    }
}

/// Delta-of-delta buckets: (prefix bits, prefix length, value bits).
const DOD_BUCKETS: [(u64, u8, u8); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

/// An immutable compressed run of samples with strictly increasing timestamps.
#[derive(Clone, Debug)]
pub(crate) struct Chunk {
    min_t: i64,
    max_t: i64,
    count: u32,
    bytes: ChunkBytes,
}

/// Where a sealed chunk's bytes are: on the heap, or in a mapped chunk file.
#[derive(Clone, Debug)]
enum ChunkBytes {
    Mem(Box<[u8]>),
    Mapped {
        file: Arc<ChunkFile>,
        offset: usize,
        len: usize,
    },
}

impl PartialEq for Chunk {
    /// Equal samples and layout, wherever the bytes live.
    fn eq(&self, other: &Chunk) -> bool {
        (self.min_t, self.max_t, self.count) == (other.min_t, other.max_t, other.count)
            && self.bytes() == other.bytes()
    }
}

impl Chunk {
    /// Compresses `samples` (non-empty, strictly increasing timestamps).
    pub(crate) fn encode(samples: &[(i64, f64)]) -> Chunk {
        debug_assert!(!samples.is_empty());
        debug_assert!(samples.windows(2).all(|w| w[0].0 < w[1].0));
        let mut enc = Encoder::default();
        for &(t, v) in samples {
            enc.append(t, v);
        }
        Chunk {
            min_t: samples[0].0,
            max_t: samples[samples.len() - 1].0,
            count: samples.len() as u32,
            bytes: ChunkBytes::Mem(enc.w.bytes.into_boxed_slice()),
        }
    }

    /// A chunk from bytes a snapshot holds: `None` unless they decode to exactly `count`
    /// strictly increasing samples.
    pub(crate) fn from_bytes(bytes: Box<[u8]>, count: u32) -> Option<Chunk> {
        let mut it = ChunkIter::new(&bytes, count);
        let mut first = None;
        let mut last: Option<i64> = None;
        for _ in 0..count {
            let (t, _) = it.step()?;
            if last.is_some_and(|l| t <= l) {
                return None;
            }
            first.get_or_insert(t);
            last = Some(t);
        }
        // Canonical: no byte beyond the last sample's bits.
        if it.r.pos.div_ceil(8) != bytes.len() {
            return None;
        }
        Some(Chunk {
            min_t: first?,
            max_t: last?,
            count,
            bytes: ChunkBytes::Mem(bytes),
        })
    }

    /// A chunk whose bytes are `len` bytes at `offset` of `file`; `None` if the file does
    /// not hold them. The caller vouches for the bytes (a CRC in the snapshot).
    pub(crate) fn mapped(
        file: &Arc<ChunkFile>,
        offset: usize,
        len: usize,
        min_t: i64,
        max_t: i64,
        count: u32,
    ) -> Option<Chunk> {
        file.get(offset, len)?;
        Some(Chunk {
            min_t,
            max_t,
            count,
            bytes: ChunkBytes::Mapped {
                file: file.clone(),
                offset,
                len,
            },
        })
    }

    /// The compressed bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match &self.bytes {
            ChunkBytes::Mem(b) => b,
            ChunkBytes::Mapped { file, offset, len } => file
                .get(*offset, *len)
                .expect("checked when the chunk was mapped"),
        }
    }

    /// `(file id, offset, length)` when the bytes live in a chunk file.
    pub(crate) fn file_ref(&self) -> Option<(u64, usize, usize)> {
        match &self.bytes {
            ChunkBytes::Mem(_) => None,
            ChunkBytes::Mapped { file, offset, len } => Some((file.id(), *offset, *len)),
        }
    }

    /// Heap bytes held (0 for a mapped chunk: its bytes are page cache).
    pub(crate) fn heap_bytes(&self) -> usize {
        match &self.bytes {
            ChunkBytes::Mem(b) => b.len(),
            ChunkBytes::Mapped { .. } => 0,
        }
    }

    /// Oldest timestamp.
    pub(crate) fn min_t(&self) -> i64 {
        self.min_t
    }

    /// Newest timestamp.
    pub(crate) fn max_t(&self) -> i64 {
        self.max_t
    }

    /// Number of samples.
    pub(crate) fn len(&self) -> usize {
        self.count as usize
    }

    /// Compressed size in bytes, wherever they live (so retention by bytes does not depend
    /// on what was moved to disk).
    pub(crate) fn byte_len(&self) -> usize {
        match &self.bytes {
            ChunkBytes::Mem(b) => b.len(),
            ChunkBytes::Mapped { len, .. } => *len,
        }
    }

    /// The samples, oldest first.
    pub(crate) fn iter(&self) -> ChunkIter<'_> {
        ChunkIter::new(self.bytes(), self.count)
    }
}

/// The chunk a series is appending to: compressed as it grows, so a million series with
/// open chunks cost a few hundred bytes each rather than 16 bytes per sample.
#[derive(Clone, Debug, Default)]
pub(crate) struct OpenChunk {
    enc: Encoder,
    min_t: i64,
}

impl OpenChunk {
    /// Appends a sample newer than every sample held.
    pub(crate) fn append(&mut self, t: i64, v: f64) {
        debug_assert!(self.enc.n == 0 || t > self.enc.t);
        if self.enc.n == 0 {
            self.min_t = t;
        }
        self.enc.append(t, v);
    }

    /// Number of samples.
    pub(crate) fn len(&self) -> usize {
        self.enc.n as usize
    }

    /// Oldest timestamp, if any sample is held.
    pub(crate) fn min_t(&self) -> Option<i64> {
        (self.enc.n > 0).then_some(self.min_t)
    }

    /// The newest sample, without decoding.
    pub(crate) fn last(&self) -> Option<(i64, f64)> {
        (self.enc.n > 0).then(|| (self.enc.t, f64::from_bits(self.enc.v)))
    }

    /// Heap bytes held (the bit stream's capacity; the encoder's state is inline).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.enc.w.bytes.capacity()
    }

    /// The samples, oldest first.
    pub(crate) fn iter(&self) -> ChunkIter<'_> {
        ChunkIter::new(&self.enc.w.bytes, self.enc.n)
    }

    /// Closes the chunk; `None` when it is empty. Leaves an empty open chunk behind.
    pub(crate) fn seal(&mut self) -> Option<Chunk> {
        let enc = std::mem::take(&mut self.enc);
        let last = self.last_of(&enc)?;
        Some(Chunk {
            min_t: self.min_t,
            max_t: last,
            count: enc.n,
            bytes: ChunkBytes::Mem(enc.w.bytes.into_boxed_slice()),
        })
    }

    fn last_of(&self, enc: &Encoder) -> Option<i64> {
        (enc.n > 0).then_some(enc.t)
    }
}

/// Streaming compressor behind [`Chunk::encode`] and [`OpenChunk`].
#[derive(Clone, Debug, Default)]
struct Encoder {
    w: BitWriter,
    n: u32,
    t: i64,
    delta: i64,
    v: u64,
    /// Leading and trailing zeros of the last XOR written with its window.
    window: Option<(u8, u8)>,
}

impl Encoder {
    fn append(&mut self, t: i64, v: f64) {
        let bits = v.to_bits();
        match self.n {
            0 => {
                self.w.write_varint(t);
                self.w.write_bits(bits, 64);
            }
            1 => {
                self.delta = t - self.t;
                self.w.write_varint(self.delta);
                self.write_value(bits);
            }
            _ => {
                let delta = t - self.t;
                let dod = delta.wrapping_sub(self.delta);
                if dod == 0 {
                    self.w.write_bit(false);
                } else if let Some(&(prefix, plen, vbits)) =
                    DOD_BUCKETS.iter().find(|&&(_, _, b)| fits(dod, b))
                {
                    self.w.write_bits(prefix, plen);
                    self.w.write_bits(dod as u64 & ((1u64 << vbits) - 1), vbits);
                } else {
                    self.w.write_bits(0b1111, 4);
                    self.w.write_bits(dod as u64, 64);
                }
                self.delta = delta;
                self.write_value(bits);
            }
        }
        self.t = t;
        self.v = bits;
        self.n += 1;
    }

    fn write_value(&mut self, bits: u64) {
        let xor = bits ^ self.v;
        if xor == 0 {
            self.w.write_bit(false);
            return;
        }
        self.w.write_bit(true);
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if let Some((l, t)) = self.window {
            if leading >= l && trailing >= t {
                self.w.write_bit(false);
                self.w.write_bits(xor >> t, 64 - l - t);
                return;
            }
        }
        self.window = Some((leading, trailing));
        let sig = 64 - leading - trailing;
        self.w.write_bit(true);
        self.w.write_bits(leading as u64, 5);
        // 64 significant bits do not fit 6 bits: written as 0, as Prometheus does.
        self.w.write_bits((sig % 64) as u64, 6);
        self.w.write_bits(xor >> trailing, sig);
    }
}

/// Whether `dod` fits a `bits`-wide bucket, Prometheus' `bitRange`: `-(2^(b-1)-1)..=2^(b-1)`.
fn fits(dod: i64, bits: u8) -> bool {
    let half = 1i64 << (bits - 1);
    -(half - 1) <= dod && dod <= half
}

/// Decodes a chunk's samples in order.
pub(crate) struct ChunkIter<'a> {
    r: BitReader<'a>,
    left: u32,
    n: u32,
    t: i64,
    delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl<'a> ChunkIter<'a> {
    fn new(bytes: &'a [u8], count: u32) -> ChunkIter<'a> {
        ChunkIter {
            r: BitReader { bytes, pos: 0 },
            left: count,
            n: 0,
            t: 0,
            delta: 0,
            v: 0,
            leading: 0,
            trailing: 0,
        }
    }

    fn step(&mut self) -> Option<(i64, f64)> {
        match self.n {
            0 => {
                self.t = self.r.read_varint()?;
                self.v = self.r.read_bits(64)?;
            }
            1 => {
                self.delta = self.r.read_varint()?;
                self.t = self.t.wrapping_add(self.delta);
                self.read_value()?;
            }
            _ => {
                let mut ones = 0u8;
                while ones < 4 && self.r.read_bit()? {
                    ones += 1;
                }
                let dod = match ones {
                    0 => 0,
                    4 => self.r.read_bits(64)? as i64,
                    k => {
                        let bits = DOD_BUCKETS[k as usize - 1].2;
                        let raw = self.r.read_bits(bits)?;
                        // Sign-extend; the bucket's top value 2^(b-1) reads back as negative.
                        let mut d = raw as i64;
                        if raw > (1u64 << (bits - 1)) {
                            d -= 1i64 << bits;
                        }
                        d
                    }
                };
                self.delta = self.delta.wrapping_add(dod);
                self.t = self.t.wrapping_add(self.delta);
                self.read_value()?;
            }
        }
        self.n += 1;
        Some((self.t, f64::from_bits(self.v)))
    }

    fn read_value(&mut self) -> Option<()> {
        if !self.r.read_bit()? {
            return Some(());
        }
        if self.r.read_bit()? {
            self.leading = self.r.read_bits(5)? as u8;
            let mut sig = self.r.read_bits(6)? as u8;
            if sig == 0 {
                sig = 64;
            }
            self.trailing = 64u8.checked_sub(self.leading.checked_add(sig)?)?;
        }
        let sig = 64 - self.leading - self.trailing;
        let bits = self.r.read_bits(sig)?;
        self.v ^= bits << self.trailing;
        Some(())
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let s = self.step();
        debug_assert!(s.is_some(), "a chunk ended before its sample count");
        if s.is_none() {
            self.left = 0;
        }
        s
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(samples: &[(i64, f64)]) {
        let c = Chunk::encode(samples);
        let back: Vec<(i64, u64)> = c.iter().map(|(t, v)| (t, v.to_bits())).collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(back, want);
        assert_eq!(
            (c.min_t(), c.max_t(), c.len()),
            (want[0].0, want[want.len() - 1].0, want.len())
        );
    }

    #[test]
    fn regular_scrapes_take_about_a_byte_per_sample() {
        // A gauge moving slowly, scraped every 15 s with a little jitter.
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| {
                (
                    1_700_000_000_000 + i * 15_000 + (i % 3),
                    100.0 + (i / 10) as f64,
                )
            })
            .collect();
        roundtrip(&samples);
        let c = Chunk::encode(&samples);
        assert!(c.byte_len() < 2 * 120, "{} bytes", c.byte_len());
        // A counter with a constant step compresses to about 2 bits per sample after setup.
        let counter: Vec<(i64, f64)> = (0..120).map(|i| (i * 15_000, i as f64 * 3.0)).collect();
        roundtrip(&counter);
    }

    #[test]
    fn edge_values_and_bucket_boundaries_roundtrip() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut t = -5i64;
        let mut samples = vec![(t, 0.0)];
        for (i, d) in [
            1i64,
            8193,
            8192,
            8191,
            65537,
            65536,
            524289,
            524288,
            1 << 40,
            1,
            2,
            3,
        ]
        .into_iter()
        .enumerate()
        {
            t += d;
            let v = [
                f64::NAN,
                stale,
                f64::INFINITY,
                -0.0,
                f64::MIN_POSITIVE,
                f64::MAX,
                1.0,
            ][i % 7];
            samples.push((t, v));
        }
        roundtrip(&samples);
        roundtrip(&[(i64::MIN / 4, 1.0), (i64::MAX / 4, -1.0)]);
        roundtrip(&[(7, 1.0)]);
    }

    proptest! {
        #[test]
        fn any_increasing_samples_roundtrip(
            start in -1_000_000_000_000i64..1_000_000_000_000,
            steps in proptest::collection::vec((1i64..10_000_000, any::<u64>(), 0u8..4), 1..300),
        ) {
            let mut t = start;
            let mut prev = 0u64;
            let samples: Vec<(i64, f64)> = steps
                .into_iter()
                .map(|(d, bits, kind)| {
                    t += d;
                    // Mix repeated, nearby and arbitrary values to hit every XOR case.
                    prev = match kind {
                        0 => prev,
                        1 => prev ^ (bits & 0xff),
                        2 => prev ^ (bits & 0x00ff_ff00_0000_0000),
                        _ => bits,
                    };
                    (t, f64::from_bits(prev))
                })
                .collect();
            roundtrip(&samples);
        }
    }
}

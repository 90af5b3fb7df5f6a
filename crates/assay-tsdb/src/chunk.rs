//! Compressed chunks: Gorilla XOR for the open chunk, the smaller of XOR and columns for
//! sealed ones.
//!
//! A sealed chunk's bytes start with its encoding ([`ChunkEncoding`], as Prometheus tags its
//! chunk encodings): `0x01` then an XOR bit stream, or `0x02` then two `assay_columns`
//! columns (timestamps, then values, both from the `*_packed` encoders). Sealing and
//! rewriting encode both and keep the smaller (XOR on a tie), so the bytes are a pure
//! function of the samples; on the bench fleet columns take about a third of XOR's bytes.
//! The open chunk grows in place, so it stays XOR (an untagged bit stream).
//!
//! The XOR bit layout is Prometheus' XOR chunk (itself Facebook's Gorilla, VLDB 2015) with
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

/// Asks the CPU to bring the cache line holding `p` into its caches; a hint only (any
/// address is allowed, none is read).
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and reads nothing the program can observe, whatever
    // the address.
    #[allow(unused_unsafe)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

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
    fn write_bits(&mut self, v: u64, n: u8) {
        debug_assert!(n <= 64);
        if n == 0 {
            return;
        }
        // The partial last byte's bits and the new ones, joined in one word and stored
        // whole bytes at a time (this is on every sample's path; bit at a time was 7 % of
        // ingest CPU).
        let v = u128::from(v) & ((1u128 << n) - 1);
        let used = u32::from(self.used);
        let head = match used {
            0 => 0,
            _ => u128::from(self.bytes.pop().expect("a partial byte exists") >> (8 - used)),
        };
        let total = used + u32::from(n); // <= 71
        let len = total.div_ceil(8) as usize; // <= 9
        let joined = ((head << n) | v) << (len as u32 * 8 - total);
        if self.bytes.capacity() - self.bytes.len() >= 16 {
            // The `len` bytes go first, all 16 are appended and the rest cut off again: a
            // fixed-size copy, where appending `len` bytes was a call to memcpy. Only with
            // room to spare, so a chunk's capacity grows exactly as without it.
            let joined = joined << ((16 - len) * 8);
            self.bytes.extend_from_slice(&joined.to_be_bytes());
            self.bytes.truncate(self.bytes.len() - (16 - len));
        } else {
            self.bytes
                .extend_from_slice(&joined.to_be_bytes()[16 - len..]);
        }
        self.used = (total % 8) as u8;
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

    fn read_bits(&mut self, n: u8) -> Option<u64> {
        debug_assert!(n <= 64);
        if n == 0 {
            return Some(0);
        }
        let end = self.pos + usize::from(n);
        if end > self.bytes.len() * 8 {
            return None;
        }
        // The bytes that hold the field (at most 9), as one big-endian word: 16 at once
        // where the buffer has them, else only those up to its end.
        let first = self.pos / 8;
        let word = match self.bytes.get(first..first + 16) {
            Some(b) => u128::from_be_bytes(b.try_into().expect("16 bytes")),
            None => {
                let mut b = [0u8; 16];
                let tail = &self.bytes[first..];
                b[..tail.len()].copy_from_slice(tail);
                u128::from_be_bytes(b)
            }
        };
        let shift = 128 - (self.pos % 8) as u32 - u32::from(n);
        self.pos = end;
        Some(((word >> shift) & ((1u128 << n) - 1)) as u64)
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

/// How a sealed chunk's bytes are encoded: their first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ChunkEncoding {
    /// Gorilla XOR bit stream (as the open chunk).
    Xor = 1,
    /// `assay_columns` timestamps then values.
    Columns = 2,
}

impl ChunkEncoding {
    fn of(bytes: &[u8]) -> Option<ChunkEncoding> {
        match bytes.first()? {
            1 => Some(ChunkEncoding::Xor),
            2 => Some(ChunkEncoding::Columns),
            _ => None,
        }
    }
}

/// A columns chunk's samples: timestamps and values, or `None` unless `body` holds
/// exactly `count` of each and nothing more.
fn decode_columns(body: &[u8], count: u32) -> Option<(Vec<i64>, Vec<f64>)> {
    let (ts, used) = assay_columns::decode_timestamps(body, count as usize).ok()?;
    let (vs, used_v) = assay_columns::decode_values(&body[used..], count as usize).ok()?;
    (used + used_v == body.len()).then_some((ts, vs))
}

/// An immutable compressed run of samples with strictly increasing timestamps.
///
/// A chunk is *settled* when its bytes are the smaller of its two encodings, the only
/// form a snapshot, a chunk file or retention by bytes ever sees. A chunk just sealed from
/// the open chunk is not: it keeps the open chunk's XOR bytes (so sealing costs no
/// re-encoding on the writer's path) until [`Chunk::settled`] is installed in its place.
/// Settling changes bytes, never samples.
#[derive(Clone, Debug)]
pub(crate) struct Chunk {
    min_t: i64,
    max_t: i64,
    count: u32,
    settled: bool,
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
        let mut enc = Encoder::default();
        for &(t, v) in samples {
            enc.append(t, v);
        }
        let ts: Vec<i64> = samples.iter().map(|s| s.0).collect();
        let vs: Vec<f64> = samples.iter().map(|s| s.1).collect();
        Chunk::smaller_of(&ts, &vs, &enc.w.bytes)
    }

    /// The chunk of the samples `(ts[i], vs[i])` in the smaller encoding: `xor` is their
    /// XOR bit stream.
    fn smaller_of(ts: &[i64], vs: &[f64], xor: &[u8]) -> Chunk {
        debug_assert!(!ts.is_empty() && ts.len() == vs.len());
        debug_assert!(ts.windows(2).all(|w| w[0] < w[1]));
        let mut bytes = Vec::with_capacity(xor.len() + 1);
        bytes.push(ChunkEncoding::Columns as u8);
        assay_columns::encode_timestamps_packed(ts, &mut bytes);
        assay_columns::encode_values_packed(vs, &mut bytes);
        // Both carry one encoding byte; XOR wins a tie.
        if bytes.len() > xor.len() {
            bytes.clear();
            bytes.push(ChunkEncoding::Xor as u8);
            bytes.extend_from_slice(xor);
        }
        Chunk {
            min_t: ts[0],
            max_t: ts[ts.len() - 1],
            count: ts.len() as u32,
            settled: true,
            bytes: ChunkBytes::Mem(bytes.into_boxed_slice()),
        }
    }

    /// Whether the bytes are already the smaller encoding (see the type's docs).
    pub(crate) fn is_settled(&self) -> bool {
        self.settled
    }

    /// The settled form of an unsettled chunk (same samples, the smaller encoding's
    /// bytes); `None` when it is settled already. A pure function of the bytes.
    pub(crate) fn settled(&self) -> Option<Chunk> {
        if self.settled {
            return None;
        }
        let bytes = self.bytes();
        debug_assert_eq!(ChunkEncoding::of(bytes), Some(ChunkEncoding::Xor));
        // Decoded straight into the two columns the encoders take.
        let (mut ts, mut vs) = (
            Vec::with_capacity(self.len()),
            Vec::with_capacity(self.len()),
        );
        for (t, v) in self.iter() {
            ts.push(t);
            vs.push(v);
        }
        Some(Chunk::smaller_of(&ts, &vs, &bytes[1..]))
    }

    /// Replaces an unsettled chunk by its settled form; true if it was unsettled.
    pub(crate) fn settle(&mut self) -> bool {
        match self.settled() {
            Some(settled) => {
                *self = settled;
                true
            }
            None => false,
        }
    }

    /// Length of the settled form's bytes (computed for an unsettled chunk).
    pub(crate) fn settled_len(&self) -> usize {
        self.settled().map_or(self.byte_len(), |c| c.byte_len())
    }

    /// A chunk from bytes a snapshot holds: `None` unless they decode to exactly `count`
    /// strictly increasing samples ([`Chunk::decode_bytes`]).
    pub(crate) fn from_bytes(bytes: Box<[u8]>, count: u32) -> Option<Chunk> {
        let samples = Chunk::decode_bytes(&bytes, count)?;
        Some(Chunk {
            min_t: samples.first()?.0,
            max_t: samples.last()?.0,
            count,
            settled: true,
            bytes: ChunkBytes::Mem(bytes),
        })
    }

    /// The samples of a chunk's bytes (either encoding, with its encoding byte): `None`
    /// unless they decode to exactly `count` strictly increasing samples and no byte is left
    /// over. The one check of bytes read from a snapshot, sealed or open chunk alike.
    pub(crate) fn decode_bytes(bytes: &[u8], count: u32) -> Option<Vec<(i64, f64)>> {
        let samples: Vec<(i64, f64)> = match ChunkEncoding::of(bytes)? {
            ChunkEncoding::Xor => {
                let body = &bytes[1..];
                let mut it = XorIter::new(body, count);
                let samples = (0..count).map(|_| it.step()).collect::<Option<Vec<_>>>()?;
                // Canonical: no byte beyond the last sample's bits.
                (it.r.pos.div_ceil(8) == body.len()).then_some(samples)?
            }
            ChunkEncoding::Columns => {
                let (ts, vs) = decode_columns(&bytes[1..], count)?;
                ts.into_iter().zip(vs).collect()
            }
        };
        if samples.windows(2).any(|w| w[0].0 >= w[1].0) {
            return None;
        }
        Some(samples)
    }

    /// How the bytes are encoded.
    pub(crate) fn encoding(&self) -> Option<ChunkEncoding> {
        ChunkEncoding::of(self.bytes())
    }

    /// True when the bytes start with an encoding this build reads (a mapped chunk's bytes
    /// are vouched for by a CRC, not decoded, when a snapshot is loaded).
    pub(crate) fn has_known_encoding(&self) -> bool {
        self.encoding().is_some()
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
            settled: true,
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
        let bytes = self.bytes();
        match ChunkEncoding::of(bytes) {
            Some(ChunkEncoding::Xor) => ChunkIter::Xor(XorIter::new(&bytes[1..], self.count)),
            Some(ChunkEncoding::Columns) => {
                // Checked when the chunk was built or loaded, so this decodes.
                let (ts, vs) = decode_columns(&bytes[1..], self.count).unwrap_or_default();
                debug_assert_eq!(ts.len(), self.count as usize, "a chunk's columns decode");
                ChunkIter::Columns(ts.into_iter().zip(vs))
            }
            None => {
                debug_assert!(false, "a chunk's bytes start with its encoding");
                ChunkIter::Columns(Vec::new().into_iter().zip(Vec::new()))
            }
        }
    }
}

/// A chunk's samples in order, whatever its encoding.
pub(crate) enum ChunkIter<'a> {
    Xor(XorIter<'a>),
    Columns(std::iter::Zip<std::vec::IntoIter<i64>, std::vec::IntoIter<f64>>),
}

impl Iterator for ChunkIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        match self {
            ChunkIter::Xor(it) => it.next(),
            ChunkIter::Columns(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            ChunkIter::Xor(it) => it.size_hint(),
            ChunkIter::Columns(it) => it.size_hint(),
        }
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
    /// Asks the CPU to bring the last byte of the bit stream into the caches.
    pub(crate) fn prefetch_tail(&self) {
        let bytes = &self.enc.w.bytes;
        if let Some(last) = bytes.last() {
            prefetch(last as *const u8);
        }
    }

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
    pub(crate) fn iter(&self) -> XorIter<'_> {
        XorIter::new(&self.enc.w.bytes, self.enc.n)
    }

    /// Appends what a sealed chunk of these samples would hold in the XOR encoding (the
    /// encoding byte, then the bit stream as it is: a copy, no re-encoding).
    pub(crate) fn put_chunk_bytes(&self, out: &mut Vec<u8>) {
        out.push(ChunkEncoding::Xor as u8);
        out.extend_from_slice(&self.enc.w.bytes);
    }

    /// Bytes [`OpenChunk::put_chunk_bytes`] appends.
    pub(crate) fn chunk_bytes_len(&self) -> usize {
        1 + self.enc.w.bytes.len()
    }

    /// Closes the chunk, unsettled (its XOR bytes; see [`Chunk`]); `None` when it is
    /// empty. Leaves an empty open chunk behind.
    pub(crate) fn seal(&mut self) -> Option<Chunk> {
        if self.enc.n == 0 {
            return None;
        }
        let enc = std::mem::take(&mut self.enc);
        let mut bytes = Vec::with_capacity(enc.w.bytes.len() + 1);
        bytes.push(ChunkEncoding::Xor as u8);
        bytes.extend_from_slice(&enc.w.bytes);
        Some(Chunk {
            min_t: self.min_t,
            max_t: enc.t,
            count: enc.n,
            settled: false,
            bytes: ChunkBytes::Mem(bytes.into_boxed_slice()),
        })
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

/// Decodes an XOR bit stream's samples in order.
pub(crate) struct XorIter<'a> {
    r: BitReader<'a>,
    left: u32,
    n: u32,
    t: i64,
    delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl<'a> XorIter<'a> {
    fn new(bytes: &'a [u8], count: u32) -> XorIter<'a> {
        XorIter {
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

impl Iterator for XorIter<'_> {
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

    /// The bit stream of `writes`, one bit at a time: the reference for the word-wise
    /// writer and reader.
    fn bits_one_by_one(writes: &[(u64, u8)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut at = 0usize;
        for &(v, n) in writes {
            for i in (0..n).rev() {
                if at.is_multiple_of(8) {
                    bytes.push(0);
                }
                if v >> i & 1 == 1 {
                    *bytes.last_mut().unwrap() |= 0x80 >> (at % 8);
                }
                at += 1;
            }
        }
        bytes
    }

    proptest! {
        #[test]
        fn bits_written_and_read_by_words_are_those_of_one_by_one(
            writes in proptest::collection::vec((any::<u64>(), 0u8..=64), 0..40),
        ) {
            let mut w = BitWriter::default();
            for &(v, n) in &writes {
                w.write_bits(v, n);
            }
            prop_assert_eq!(&w.bytes, &bits_one_by_one(&writes));
            let total: usize = writes.iter().map(|&(_, n)| usize::from(n)).sum();
            prop_assert_eq!(usize::from(w.used), total % 8);
            let mut r = BitReader { bytes: &w.bytes, pos: 0 };
            for &(v, n) in &writes {
                let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                prop_assert_eq!(r.read_bits(n), Some(v & mask));
            }
            // Past the end: the padding bits of the last byte, then nothing.
            let pad = (8 - total % 8) % 8;
            prop_assert_eq!(r.read_bits(pad as u8), Some(0));
            prop_assert_eq!(r.read_bits(1), None);
        }
    }

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

    /// A counter in cents scraped every 15 s: the fleet's most common shape.
    fn cents_counter(n: i64) -> Vec<(i64, f64)> {
        let mut v = 1_234.5;
        (0..n)
            .map(|i| {
                v += (((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as f64) / 100.0;
                (
                    1_700_000_000_000 + i * 15_000,
                    (v * 100.0f64).round() / 100.0,
                )
            })
            .collect()
    }

    #[test]
    fn sealing_keeps_the_smaller_encoding_deterministically() {
        let counter = cents_counter(120);
        let c = Chunk::encode(&counter);
        roundtrip(&counter);
        assert_eq!(c.encoding(), Some(ChunkEncoding::Columns));
        // Sealing the open chunk gives the same bytes as encoding the samples.
        let mut open = OpenChunk::default();
        for &(t, v) in &counter {
            open.append(t, v);
        }
        let xor_len = open.enc.w.bytes.len() + 1;
        let sealed = open.seal().unwrap();
        assert_eq!(open.len(), 0);
        // Sealed unsettled: the XOR bytes, the same samples; settling gives `c`.
        assert!(!sealed.is_settled() && c.is_settled());
        assert_eq!(sealed.encoding(), Some(ChunkEncoding::Xor));
        assert_eq!(sealed.byte_len(), xor_len);
        assert_eq!(sealed.iter().collect::<Vec<_>>(), counter);
        assert_eq!(sealed.settled_len(), c.byte_len());
        let settled = sealed.settled().expect("unsettled");
        assert_eq!(settled, c);
        assert!(settled.is_settled() && settled.settled().is_none());
        expect_test::expect!["columns 171 B, xor 809 B"]
            .assert_eq(&format!("columns {} B, xor {xor_len} B", c.byte_len()));
        // Random bit patterns are all exceptions as columns: XOR is smaller and kept.
        let noise: Vec<(i64, f64)> = (0..50)
            .map(|i| {
                (
                    i,
                    f64::from_bits(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i as u64 + 1)),
                )
            })
            .collect();
        let x = Chunk::encode(&noise);
        assert_eq!(x.encoding(), Some(ChunkEncoding::Xor));
        roundtrip(&noise);
    }

    #[test]
    fn from_bytes_checks_the_encoding_and_every_sample() {
        for samples in [cents_counter(120), vec![(5, f64::NAN), (9, -0.0)]] {
            let c = Chunk::encode(&samples);
            let n = c.len() as u32;
            let back = Chunk::from_bytes(c.bytes().into(), n).expect("own bytes load");
            assert_eq!(back, c);
            let mut bytes = c.bytes().to_vec();
            assert!(Chunk::from_bytes(bytes[..bytes.len() - 1].into(), n).is_none());
            bytes.push(0);
            assert!(
                Chunk::from_bytes(bytes.clone().into(), n).is_none(),
                "trailing"
            );
            bytes.pop();
            bytes[0] = 3;
            assert!(
                Chunk::from_bytes(bytes.into(), n).is_none(),
                "unknown encoding"
            );
        }
        assert!(Chunk::from_bytes(Box::new([]), 1).is_none());
        // Columns whose timestamps do not increase are refused.
        let mut bytes = vec![ChunkEncoding::Columns as u8];
        assay_columns::encode_timestamps_packed(&[10, 10], &mut bytes);
        assay_columns::encode_values_packed(&[1.0, 2.0], &mut bytes);
        assert!(Chunk::from_bytes(bytes.into(), 2).is_none());
    }

    proptest! {
        /// Realistic columns (decimal values, regular timestamps) round-trip through either
        /// encoding.
        #[test]
        fn decimal_samples_roundtrip(
            start in -1_000_000_000i64..1_000_000_000,
            steps in proptest::collection::vec((0i64..40, -5_000i64..5_000, 0u8..20), 1..240),
        ) {
            let mut t = start;
            let mut cents = 0i64;
            let samples: Vec<(i64, f64)> = steps
                .into_iter()
                .map(|(jitter, d, special)| {
                    t += 15_000 + jitter;
                    cents += d;
                    let v = match special {
                        0 => f64::from_bits(0x7ff0_0000_0000_0002),
                        1 => f64::INFINITY,
                        _ => cents as f64 / 100.0,
                    };
                    (t, v)
                })
                .collect();
            roundtrip(&samples);
            let c = Chunk::encode(&samples);
            prop_assert_eq!(Chunk::from_bytes(c.bytes().into(), c.len() as u32), Some(c));
        }

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

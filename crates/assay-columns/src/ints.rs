//! Integer sequences (timestamps, decimal mantissas): constant, delta or delta-of-delta,
//! coded as zig-zag varints or bit-packed.

use crate::varint::{put_varint, put_zz, varint_len, zigzag, Reader};
use crate::ColumnError;

const CONSTANT: u8 = 0;
const DELTA: u8 = 1;
const DOD: u8 = 2;
const TRANSFORM_MASK: u8 = 3;
const PACKED: u8 = 4;

/// Which layouts an encoder may choose from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Layouts {
    /// Delta-of-delta varints only (the specified timestamp layout).
    DodVarint,
    /// Byte-aligned varints (for a general-purpose compressor to run over).
    Varint,
    /// Varints or bit-packing, whichever is smaller (stored as is).
    Any,
}

/// Appends timestamps: first, first delta, then delta-of-deltas as zig-zag varints.
/// Lossless for any `i64` sequence (wrapping arithmetic); regular scrapes cost a byte each.
pub fn encode_timestamps(ts: &[i64], out: &mut Vec<u8>) {
    encode_ints(ts, Layouts::DodVarint, out);
}

/// Like [`encode_timestamps`], but bit-packs the delta-of-deltas when that is smaller
/// (regular scrapes then cost a few bytes per column): for bytes stored uncompressed.
pub fn encode_timestamps_packed(ts: &[i64], out: &mut Vec<u8>) {
    encode_ints(ts, Layouts::Any, out);
}

/// Decodes `count` timestamps from the start of `bytes`; returns them and the bytes used.
pub fn decode_timestamps(bytes: &[u8], count: usize) -> Result<(Vec<i64>, usize), ColumnError> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::with_capacity(count.min(bytes.len().saturating_mul(8)));
    decode_ints(&mut r, count, &mut out)?;
    Ok((out, r.at))
}

/// How residues are bit-packed: `min + gcd × u`, each `u` in `width` bits.
#[derive(Clone, Copy)]
struct Packing {
    min: i64,
    gcd: u64,
    width: u32,
}

impl Packing {
    /// Bytes the packed codes take (header included).
    fn bytes(&self, codes: usize) -> usize {
        varint_len(zigzag(self.min))
            + varint_len(self.gcd)
            + 1
            + (codes * self.width as usize).div_ceil(8)
    }
}

/// What choosing a layout needs to know of a code sequence, gathered in one pass.
#[derive(Clone, Copy)]
struct CodeStats {
    /// Bytes the codes take as zig-zag varints.
    varint_bytes: usize,
    min: i64,
    max: i64,
}

impl CodeStats {
    fn new() -> CodeStats {
        CodeStats {
            varint_bytes: 0,
            min: i64::MAX,
            max: i64::MIN,
        }
    }

    #[inline(always)]
    fn add(&mut self, c: i64) {
        self.varint_bytes += varint_len(zigzag(c));
        self.min = self.min.min(c);
        self.max = self.max.max(c);
    }

    /// The packing of the codes these stats are of (`codes` themselves, for the divisor).
    fn packing(&self, codes: impl Iterator<Item = i64>) -> Packing {
        if self.min > self.max {
            return Packing {
                min: 0,
                gcd: 1,
                width: 0,
            };
        }
        let min = self.min;
        if self.max == min {
            // All codes equal: every residue is 0, the divisor 1 and the width 0.
            return Packing {
                min,
                gcd: 1,
                width: 0,
            };
        }
        let mut gcd = 0u64;
        for c in codes {
            // Once 1, the gcd stays 1 (most columns get there within a few codes).
            if gcd == 1 {
                break;
            }
            gcd = gcd_u64(gcd, c.wrapping_sub(min) as u64);
        }
        let gcd = gcd.max(1);
        let range = self.max.wrapping_sub(min) as u64;
        Packing {
            min,
            gcd,
            width: 64 - (range / gcd).leading_zeros(),
        }
    }
}

/// Binary (Stein's) gcd: shifts instead of the divisions Euclid's takes (a 64-bit division
/// costs tens of cycles, and a column's first few codes take a dozen).
fn gcd_u64(a: u64, b: u64) -> u64 {
    if a == 0 || b == 0 {
        return a | b;
    }
    let shift = (a | b).trailing_zeros();
    let mut a = a >> a.trailing_zeros();
    let mut b = b;
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

/// Appends `xs` in the smallest layout `layouts` allows (ties: the earlier candidate).
///
/// One pass gathers every candidate's size (varint bytes, and the range a packing needs);
/// only a packing's divisor takes another (usually short) pass.
pub(crate) fn encode_ints(xs: &[i64], layouts: Layouts, out: &mut Vec<u8>) {
    let Some(&first) = xs.first() else {
        return;
    };
    let first_delta = (xs.len() > 1).then(|| xs[1].wrapping_sub(first));
    let mut deltas = CodeStats::new();
    let mut dods = CodeStats::new();
    if let Some(d) = first_delta {
        deltas.add(d);
        let mut prev = d;
        for w in xs[1..].windows(2) {
            let d = w[1].wrapping_sub(w[0]);
            deltas.add(d);
            dods.add(d.wrapping_sub(prev));
            prev = d;
        }
    }
    let delta_codes = || xs.windows(2).map(|w| w[1].wrapping_sub(w[0]));
    let dod_codes = || {
        xs.windows(3).map(|w| {
            w[2].wrapping_sub(w[1])
                .wrapping_sub(w[1].wrapping_sub(w[0]))
        })
    };
    let first_delta_len = first_delta.map_or(0, |d| varint_len(zigzag(d)));
    // Candidates in order, the first of the smallest wins: constant, deltas, delta-of-deltas
    // (varints), then deltas and delta-of-deltas bit-packed (with their packing).
    let mut best: Option<(u8, usize, Option<Packing>)> = None;
    let mut consider = |mode: u8, bytes: usize, packing: Option<Packing>| {
        if best.is_none_or(|(_, b, _)| bytes < b) {
            best = Some((mode, bytes, packing));
        }
    };
    // All deltas zero: min = max = 0 (or no deltas at all).
    let constant = first_delta.is_none() || (deltas.min == 0 && deltas.max == 0);
    if layouts != Layouts::DodVarint {
        if constant {
            consider(CONSTANT, 0, None);
        }
        consider(DELTA, deltas.varint_bytes, None);
    }
    consider(DOD, first_delta_len + dods.varint_bytes, None);
    if layouts == Layouts::Any {
        // A packing is never smaller than nothing: skip the divisor pass when a candidate
        // already takes no bytes (a constant column, or a single value).
        if !constant {
            let p = deltas.packing(delta_codes());
            consider(DELTA | PACKED, p.bytes(xs.len() - 1), Some(p));
            let p = dods.packing(dod_codes());
            consider(
                DOD | PACKED,
                first_delta_len + p.bytes(xs.len().saturating_sub(2)),
                Some(p),
            );
        }
    }
    let (mode, bytes, packing) = best.expect("delta-of-deltas is always a candidate");
    let start = out.len();
    out.reserve(1 + 10 + bytes);
    out.push(mode);
    put_zz(out, first);
    match mode & TRANSFORM_MASK {
        CONSTANT => {}
        DELTA => put_codes(delta_codes(), packing, out),
        _ => {
            if let Some(d) = first_delta {
                put_zz(out, d);
            }
            put_codes(dod_codes(), packing, out);
        }
    }
    debug_assert_eq!(out.len() - start, 1 + varint_len(zigzag(first)) + bytes);
}

fn put_codes(codes: impl Iterator<Item = i64>, packing: Option<Packing>, out: &mut Vec<u8>) {
    match packing {
        None => {
            for c in codes {
                put_zz(out, c);
            }
        }
        Some(p) => put_packed(codes, p, out),
    }
}

fn put_packed(codes: impl Iterator<Item = i64>, packing: Packing, out: &mut Vec<u8>) {
    let Packing { min, gcd, width } = packing;
    put_zz(out, min);
    put_varint(out, gcd);
    out.push(width as u8);
    if width == 0 {
        return;
    }
    let mut acc: u128 = 0;
    let mut have = 0u32;
    for c in codes {
        let u = c.wrapping_sub(min) as u64;
        let u = if gcd == 1 { u } else { u / gcd };
        acc |= (u as u128) << have;
        have += width;
        while have >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            have -= 8;
        }
    }
    if have > 0 {
        out.push(acc as u8);
    }
}

/// Decodes `n` integers written by [`encode_ints`] into `out`.
pub(crate) fn decode_ints(
    r: &mut Reader<'_>,
    n: usize,
    out: &mut Vec<i64>,
) -> Result<(), ColumnError> {
    if n == 0 {
        return Ok(());
    }
    let mode_at = r.at;
    let mode = r.u8("integer column mode")?;
    if mode & !(TRANSFORM_MASK | PACKED) != 0 || mode & TRANSFORM_MASK == 3 {
        return Err(ColumnError::Invalid {
            what: "integer column mode",
            at: mode_at,
        });
    }
    let first = r.zz("first integer")?;
    out.push(first);
    match mode & TRANSFORM_MASK {
        CONSTANT => {
            if mode & PACKED != 0 {
                return Err(ColumnError::Invalid {
                    what: "integer column mode",
                    at: mode_at,
                });
            }
            out.extend(std::iter::repeat_n(first, n - 1));
        }
        DELTA => {
            let mut x = first;
            read_codes(r, n - 1, mode & PACKED != 0, |d| {
                x = x.wrapping_add(d);
                out.push(x);
            })?;
        }
        _ => {
            if n < 2 {
                return Ok(());
            }
            let mut delta = r.zz("first delta")?;
            let mut x = first.wrapping_add(delta);
            out.push(x);
            read_codes(r, n - 2, mode & PACKED != 0, |dod| {
                delta = delta.wrapping_add(dod);
                x = x.wrapping_add(delta);
                out.push(x);
            })?;
        }
    }
    Ok(())
}

/// Reads `k` codes, varints or packed, handing each to `f`.
fn read_codes(
    r: &mut Reader<'_>,
    k: usize,
    packed: bool,
    mut f: impl FnMut(i64),
) -> Result<(), ColumnError> {
    if !packed {
        for _ in 0..k {
            f(r.zz("delta")?);
        }
        return Ok(());
    }
    let min = r.zz("packed minimum")?;
    let gcd_at = r.at;
    let gcd = r.varint("packed divisor")?;
    if gcd == 0 {
        let (what, at) = ("packed divisor", gcd_at);
        return Err(ColumnError::Invalid { what, at });
    }
    let width_at = r.at;
    let width = r.u8("packed width")? as u32;
    if width > 64 {
        let (what, at) = ("packed width", width_at);
        return Err(ColumnError::Invalid { what, at });
    }
    let bits = k.checked_mul(width as usize);
    let len = bits.map(|b| b.div_ceil(8)).unwrap_or(usize::MAX);
    let bytes = r.take(len, "packed bits")?;
    let mask = if width == 0 {
        0
    } else {
        u64::MAX >> (64 - width)
    };
    let mut acc: u128 = 0;
    let mut have = 0u32;
    let mut next = bytes.iter();
    for _ in 0..k {
        while have < width {
            // `take` checked the length: the bytes cannot run out here.
            acc |= (*next.next().unwrap_or(&0) as u128) << have;
            have += 8;
        }
        let u = acc as u64 & mask;
        acc >>= width;
        have -= width;
        f(min.wrapping_add(u.wrapping_mul(gcd) as i64));
    }
    Ok(())
}

#[cfg(test)]
mod reference {
    //! The encoder as first written (a pass per candidate, Euclid's gcd): the single-pass
    //! one must write the same bytes.
    use super::*;

    fn pack_params(codes: &[i64]) -> Packing {
        let Some(&min) = codes.iter().min() else {
            return Packing {
                min: 0,
                gcd: 1,
                width: 0,
            };
        };
        let mut gcd = 0u64;
        let mut max = 0u64;
        for &c in codes {
            let u = c.wrapping_sub(min) as u64;
            if gcd != 1 {
                gcd = euclid(gcd, u);
            }
            max = max.max(u);
        }
        let gcd = gcd.max(1);
        Packing {
            min,
            gcd,
            width: 64 - (max / gcd).leading_zeros(),
        }
    }

    pub(super) fn euclid(mut a: u64, mut b: u64) -> u64 {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }

    fn varint_codes_len(codes: &[i64]) -> usize {
        codes.iter().map(|&c| varint_len(zigzag(c))).sum()
    }

    pub(super) fn encode_ints(xs: &[i64], layouts: Layouts, out: &mut Vec<u8>) {
        let Some(&first) = xs.first() else {
            return;
        };
        let deltas: Vec<i64> = xs.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        let dods: Vec<i64> = deltas.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        let first_delta_len = deltas.first().map_or(0, |&d| varint_len(zigzag(d)));
        let mut best: Option<(u8, usize, Option<Packing>)> = None;
        let mut consider = |mode: u8, bytes: usize, packing: Option<Packing>| {
            if best.is_none_or(|(_, b, _)| bytes < b) {
                best = Some((mode, bytes, packing));
            }
        };
        if layouts != Layouts::DodVarint {
            if deltas.iter().all(|&d| d == 0) {
                consider(CONSTANT, 0, None);
            }
            consider(DELTA, varint_codes_len(&deltas), None);
        }
        consider(DOD, first_delta_len + varint_codes_len(&dods), None);
        if layouts == Layouts::Any {
            let p = pack_params(&deltas);
            consider(DELTA | PACKED, p.bytes(deltas.len()), Some(p));
            let p = pack_params(&dods);
            consider(DOD | PACKED, first_delta_len + p.bytes(dods.len()), Some(p));
        }
        let (mode, _, packing) = best.expect("delta-of-deltas is always a candidate");
        out.push(mode);
        put_zz(out, first);
        let codes: &[i64] = match mode & TRANSFORM_MASK {
            CONSTANT => &[],
            DELTA => &deltas,
            _ => {
                if let Some(&d) = deltas.first() {
                    put_zz(out, d);
                }
                &dods
            }
        };
        put_codes(codes.iter().copied(), packing, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layouts() -> impl Strategy<Value = Layouts> {
        prop::sample::select(vec![Layouts::DodVarint, Layouts::Varint, Layouts::Any])
    }

    proptest! {
        #[test]
        fn the_single_pass_encoder_writes_the_reference_bytes(
            xs in prop_oneof![
                proptest::collection::vec(any::<i64>(), 0..140),
                // Counters: small, often equal or multiple steps (constant, gcd > 1).
                (any::<i32>(), proptest::collection::vec(0i64..4, 0..140), 1i64..2000)
                    .prop_map(|(start, steps, q)| steps
                        .iter()
                        .scan(start as i64, |x, &s| { *x += s * q; Some(*x) })
                        .collect()),
                // Extremes, where the arithmetic wraps.
                proptest::collection::vec(
                    prop::sample::select(vec![i64::MIN, i64::MAX, 0, -1, 1, i64::MIN + 1]),
                    0..20),
            ],
            layouts in layouts(),
        ) {
            let (mut fast, mut reference) = (Vec::new(), Vec::new());
            encode_ints(&xs, layouts, &mut fast);
            reference::encode_ints(&xs, layouts, &mut reference);
            prop_assert_eq!(fast, reference);
        }

        #[test]
        fn binary_gcd_is_euclids(a in any::<u64>(), b in any::<u64>(), k in 0u32..20) {
            prop_assert_eq!(gcd_u64(a, b), reference::euclid(a, b));
            let (a, b) = (a >> k << k, b >> (k / 2) << (k / 2));
            prop_assert_eq!(gcd_u64(a, b), reference::euclid(a, b));
        }
    }
}

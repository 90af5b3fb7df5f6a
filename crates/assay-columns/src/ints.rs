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
#[derive(Clone, Copy, PartialEq, Eq)]
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

/// The packing of `codes`.
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
        // Once 1, the gcd stays 1: skip the divisions (most columns get there quickly).
        if gcd != 1 {
            gcd = gcd_u64(gcd, u);
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

fn gcd_u64(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn varint_codes_len(codes: &[i64]) -> usize {
    codes.iter().map(|&c| varint_len(zigzag(c))).sum()
}

/// Appends `xs` in the smallest layout `layouts` allows (ties: the earlier candidate).
pub(crate) fn encode_ints(xs: &[i64], layouts: Layouts, out: &mut Vec<u8>) {
    let Some(&first) = xs.first() else {
        return;
    };
    let deltas: Vec<i64> = xs.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    let dods: Vec<i64> = deltas.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    let first_delta_len = deltas.first().map_or(0, |&d| varint_len(zigzag(d)));
    // Candidates in order, the first of the smallest wins: constant, deltas, delta-of-deltas
    // (varints), then deltas and delta-of-deltas bit-packed (with their packing).
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
    let (mode, bytes, packing) = best.expect("delta-of-deltas is always a candidate");
    let start = out.len();
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
    match packing {
        None => {
            for &c in codes {
                put_zz(out, c);
            }
        }
        Some(p) => put_packed(codes, p, out),
    }
    debug_assert_eq!(out.len() - start, 1 + varint_len(zigzag(first)) + bytes);
}

fn put_packed(codes: &[i64], packing: Packing, out: &mut Vec<u8>) {
    let Packing { min, gcd, width } = packing;
    put_zz(out, min);
    put_varint(out, gcd);
    out.push(width as u8);
    let mut acc: u128 = 0;
    let mut have = 0u32;
    for &c in codes {
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

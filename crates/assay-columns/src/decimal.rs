//! Float columns as decimal mantissas with one exponent, plus exceptions.

use crate::ints::{decode_ints, encode_ints, Layouts};
use crate::varint::{put_varint, put_zz, Reader};
use crate::ColumnError;

/// Largest magnitude (exclusive) of a mantissa: every integer below it is an exact double.
const MANTISSA_LIMIT: i64 = 1 << 53;
/// Largest |exponent| of Clinger's fast path: 10^22 is the largest exact power of ten.
const EXPONENT_MAX: i32 = 22;

/// 10^0..=10^22, each exact as a double.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The double `mantissa × 10^exponent` (`|mantissa| < 2^53`, `|exponent| ≤ 22`): one
/// correctly rounded division or multiplication of exact doubles.
fn compose(mantissa: i64, exponent: i32) -> f64 {
    debug_assert!(mantissa.abs() < MANTISSA_LIMIT && exponent.abs() <= EXPONENT_MAX);
    let m = mantissa as f64;
    if exponent < 0 {
        m / POW10[(-exponent) as usize]
    } else {
        m * POW10[exponent as usize]
    }
}

/// A decimal for `v`: the fewest fractional digits (or most trailing zeros) whose
/// [`compose`] gives back `v`'s exact bits; `None` for values only an exception can hold.
/// Zero is `(0, EXPONENT_MAX)`: it fits every exponent.
#[cfg(test)]
fn decimal(v: f64) -> Option<(i64, i32)> {
    decimal_hinted(v, 0)
}

/// [`decimal`], trying `digits` fractional digits first (a column's values mostly share
/// them: one try instead of a search). A hit is reduced by stripping trailing zeros, which
/// gives the search's answer whenever the value has one decimal of at most `digits` digits.
fn decimal_hinted(v: f64, digits: i32) -> Option<(i64, i32)> {
    if v.to_bits() == 0 {
        return Some((0, EXPONENT_MAX));
    }
    if !v.is_finite() || v == 0.0 || !v.is_normal() {
        return None;
    }
    let limit = MANTISSA_LIMIT as f64;
    let try_digits = |k: i32| {
        let x = v * POW10[k as usize];
        // Round half away from zero by hand (`f64::round` is a libm call); a candidate that
        // rounded the wrong way would fail the check below, never pass it wrongly.
        let m = (x + 0.5f64.copysign(x)) as i64;
        (x.abs() < limit && m.abs() < MANTISSA_LIMIT && compose(m, -k).to_bits() == v.to_bits())
            .then_some((m, -k))
    };
    let found = if v.abs() < limit {
        let hint = (1..=EXPONENT_MAX)
            .contains(&digits)
            .then(|| try_digits(digits));
        // More digits only grow the mantissa: stop once it reaches 2^53.
        let fits = |&k: &i32| (v * POW10[k as usize]).abs() < limit;
        hint.flatten()
            .or_else(|| (0..=EXPONENT_MAX).take_while(fits).find_map(try_digits))
    } else {
        (1..=EXPONENT_MAX).find_map(|k| {
            let m = (v / POW10[k as usize]).round();
            (m.abs() < limit && compose(m as i64, k).to_bits() == v.to_bits())
                .then_some((m as i64, k))
        })
    };
    let (mut m, mut e) = found?;
    while m % 10 == 0 && e < EXPONENT_MAX {
        m /= 10;
        e += 1;
    }
    Some((m, e))
}

/// `m × 10^(e - to)` if it is a valid mantissa at exponent `to` (`e >= to`).
fn rescale(m: i64, e: i32, to: i32) -> Option<i64> {
    if m == 0 {
        return Some(0);
    }
    let shift = u32::try_from(e - to).ok()?;
    let m = m.checked_mul(10i64.checked_pow(shift)?)?;
    (m.abs() < MANTISSA_LIMIT).then_some(m)
}

/// The common exponent that leaves the fewest exceptions (ties: the largest, which gives
/// the smallest mantissas).
fn common_exponent(decimals: &[Option<(i64, i32)>]) -> i32 {
    let mut exps: Vec<i32> = decimals.iter().flatten().map(|&(_, e)| e).collect();
    exps.sort_unstable();
    let misfits = |to: i32| {
        decimals
            .iter()
            .filter(|d| !d.is_some_and(|(m, e)| rescale(m, e, to).is_some()))
            .count()
    };
    let undecimal = decimals.len() - exps.len();
    // Ascending: a value with a smaller exponent never fits, so `undecimal + below` bounds a
    // candidate's misfits from below and most candidates need no count (usually only the
    // smallest does: every value fits it).
    let mut best: Option<(usize, i32)> = None;
    let mut below = 0;
    while below < exps.len() {
        let to = exps[below];
        let run = exps[below..].iter().take_while(|&&e| e == to).count();
        if best.is_none_or(|(b, _)| undecimal + below <= b) {
            let m = misfits(to);
            if best.is_none_or(|(b, _)| m <= b) {
                best = Some((m, to));
            }
        }
        below += run;
    }
    best.map_or(0, |(_, to)| to)
}

/// The smallest exponent of a non-zero decimal, if every decimal rescales to it (and one
/// non-zero decimal at least): `common_exponent`'s answer then, as every decimal fits it and
/// none fits a larger one. The usual column, whose values share one count of decimal places
/// (or sometimes end in 0: cents counters), needs no sort.
fn smallest_exponent(decimals: &[Option<(i64, i32)>]) -> Option<i32> {
    let smallest = decimals
        .iter()
        .flatten()
        .filter(|(m, _)| *m != 0)
        .map(|&(_, e)| e)
        .min()?;
    decimals
        .iter()
        .flatten()
        .all(|&(m, e)| e == smallest || rescale(m, e, smallest).is_some())
        .then_some(smallest)
}

/// Appends `vs` losslessly with byte-aligned varints (for a compressor to run over).
pub fn encode_values(vs: &[f64], out: &mut Vec<u8>) {
    encode(vs, Layouts::Varint, out);
}

/// Like [`encode_values`], but bit-packs the mantissa codes when that is smaller: for
/// bytes stored as they are.
pub fn encode_values_packed(vs: &[f64], out: &mut Vec<u8>) {
    encode(vs, Layouts::Any, out);
}

fn encode(vs: &[f64], layouts: Layouts, out: &mut Vec<u8>) {
    encode_with(vs, layouts, out, true);
}

/// [`encode`]; `shortcut`: take the smallest exponent without the general search when every
/// decimal rescales to it (the bytes are the same either way; tests compare them).
fn encode_with(vs: &[f64], layouts: Layouts, out: &mut Vec<u8>, shortcut: bool) {
    if vs.is_empty() {
        return;
    }
    let mut digits = 0;
    let decimals: Vec<Option<(i64, i32)>> = vs
        .iter()
        .map(|&v| {
            let d = decimal_hinted(v, digits);
            if let Some((m, e)) = d.filter(|&(m, _)| m != 0) {
                digits = (-e).max(0);
                debug_assert!(m % 10 != 0 || e >= 0);
            }
            d
        })
        .collect();
    let mut mantissas = Vec::with_capacity(vs.len());
    let mut exceptions = Vec::new();
    let smallest = if shortcut {
        smallest_exponent(&decimals)
    } else {
        None
    };
    let exponent = match smallest {
        Some(exponent) => {
            for (i, (&v, d)) in vs.iter().zip(&decimals).enumerate() {
                match d {
                    // The decimal's own, checked when it was found.
                    Some((m, e)) if *e == exponent => mantissas.push(*m),
                    Some((m, e)) => {
                        let m = rescale(*m, *e, exponent).expect("checked by smallest_exponent");
                        match compose(m, exponent).to_bits() == v.to_bits() {
                            true => mantissas.push(m),
                            false => exceptions.push((i, v.to_bits())),
                        }
                    }
                    None => exceptions.push((i, v.to_bits())),
                }
            }
            exponent
        }
        None => {
            let exponent = common_exponent(&decimals);
            for (i, (&v, d)) in vs.iter().zip(&decimals).enumerate() {
                let m = d.and_then(|(m, e)| rescale(m, e, exponent));
                // Clinger says it decodes exactly; check anyway, an exception costs only
                // bytes.
                match m.filter(|&m| compose(m, exponent).to_bits() == v.to_bits()) {
                    Some(m) => mantissas.push(m),
                    None => exceptions.push((i, v.to_bits())),
                }
            }
            exponent
        }
    };
    put_zz(out, exponent as i64);
    put_varint(out, exceptions.len() as u64);
    let mut next = 0;
    for &(i, bits) in &exceptions {
        put_varint(out, (i - next) as u64);
        out.extend_from_slice(&bits.to_le_bytes());
        next = i + 1;
    }
    encode_ints(&mantissas, layouts, out);
}

/// Decodes `count` values from the start of `bytes`; returns them and the bytes used.
pub fn decode_values(bytes: &[u8], count: usize) -> Result<(Vec<f64>, usize), ColumnError> {
    if count == 0 {
        return Ok((Vec::new(), 0));
    }
    let mut r = Reader::new(bytes);
    let exp_at = r.at;
    let exponent = r.zz("value exponent")?;
    if exponent.unsigned_abs() > EXPONENT_MAX as u64 {
        let (what, at) = ("value exponent", exp_at);
        return Err(ColumnError::Invalid { what, at });
    }
    let exponent = exponent as i32;
    let n_at = r.at;
    let n_exceptions = r.varint("exception count")?;
    // Each exception takes at least 9 bytes: this bounds the allocation by the input.
    if n_exceptions > count as u64 || n_exceptions > (r.remaining() / 9) as u64 {
        let (what, at) = ("exception count", n_at);
        return Err(ColumnError::Invalid { what, at });
    }
    let mut exceptions = Vec::with_capacity(n_exceptions as usize);
    let mut next = 0u64;
    for _ in 0..n_exceptions {
        let at = r.at;
        let pos = next.saturating_add(r.varint("exception position")?);
        if pos >= count as u64 {
            let what = "exception position";
            return Err(ColumnError::Invalid { what, at });
        }
        exceptions.push((pos as usize, r.u64le("exception bits")?));
        next = pos + 1;
    }
    let ints_at = r.at;
    let mut mantissas = Vec::with_capacity((count - exceptions.len()).min(r.remaining() * 8));
    decode_ints(&mut r, count - exceptions.len(), &mut mantissas)?;
    if mantissas
        .iter()
        .any(|m| m.unsigned_abs() >= MANTISSA_LIMIT as u64)
    {
        let (what, at) = ("value mantissa", ints_at);
        return Err(ColumnError::Invalid { what, at });
    }
    let mut out = Vec::with_capacity(count);
    let mut ms = mantissas.into_iter();
    let mut ex = exceptions.into_iter().peekable();
    for i in 0..count {
        match ex.next_if(|&(p, _)| p == i) {
            Some((_, bits)) => out.push(f64::from_bits(bits)),
            // decode_ints yielded exactly count - exceptions mantissas.
            None => out.push(compose(ms.next().unwrap_or(0), exponent)),
        }
    }
    Ok((out, r.at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_smallest_exponent_shortcut_writes_the_general_bytes(
            values in proptest::collection::vec(
                (0i64..2_000_000, 0i32..4, 0u8..12), 1..130),
            layouts in prop::sample::select(vec![0u8, 1, 2]),
        ) {
            // Decimals with 0-3 places (mostly one count per column, as real columns),
            // zeros, and values only an exception holds.
            let vs: Vec<f64> = values
                .iter()
                .map(|&(m, places, kind)| match kind {
                    0 => 0.0,
                    1 => f64::NAN,
                    2 => -0.0,
                    3 => m as f64 / 10f64.powi(places),
                    // Exactly three places (the last digit is 1): a shared exponent.
                    _ => (m * 10 + 1) as f64 / 1000.0,
                })
                .collect();
            let layouts = [Layouts::DodVarint, Layouts::Varint, Layouts::Any][layouts as usize];
            let (mut fast, mut general) = (Vec::new(), Vec::new());
            encode_with(&vs, layouts, &mut fast, true);
            encode_with(&vs, layouts, &mut general, false);
            prop_assert_eq!(fast, general);
        }
    }

    #[test]
    fn the_smallest_exponent_is_taken_when_every_decimal_rescales_to_it() {
        // One count of decimal places (zeros fit any exponent; `None` is an exception).
        let decimals = [
            Some((1251, -3)),
            Some((0, EXPONENT_MAX)),
            None,
            Some((7, -3)),
        ];
        assert_eq!(smallest_exponent(&decimals), Some(-3));
        // Mixed counts: 1.25 rescales to 1250 at -3.
        assert_eq!(
            smallest_exponent(&[Some((125, -2)), Some((7, -3))]),
            Some(-3)
        );
        assert_eq!(common_exponent(&[Some((125, -2)), Some((7, -3))]), -3);
        // No non-zero decimal: nothing to take.
        assert_eq!(smallest_exponent(&[Some((0, EXPONENT_MAX)), None]), None);
        // A mantissa that would pass 2^53 at the smallest exponent: the general search.
        assert_eq!(
            smallest_exponent(&[Some((1 << 50, 0)), Some((1, -3))]),
            None
        );
    }

    #[test]
    fn decimals_are_shortest_and_exact() {
        assert_eq!(decimal(0.1), Some((1, -1)));
        assert_eq!(decimal(123.45), Some((12345, -2)));
        assert_eq!(decimal(6.0e9), Some((6, 9)));
        assert_eq!(decimal(1e22), Some((1, 22)));
        assert_eq!(decimal(-2.5), Some((-25, -1)));
        assert_eq!(decimal(0.0), Some((0, EXPONENT_MAX)));
        // 2^60 = 1152921504606846976; 16 digits already give it back.
        assert_eq!(decimal(2f64.powi(60)), Some((1_152_921_504_606_847, 3)));
        for v in [-0.0, f64::NAN, f64::INFINITY, 5e-324, 1e-300, 0.1 + 0.2] {
            assert_eq!(decimal(v), None, "{v:?}");
        }
        assert_eq!(rescale(12, 0, -3), Some(12_000));
        assert_eq!(rescale(12, -1, 0), None);
        assert_eq!(rescale(1, 16, 0), None, "10^16 > 2^53");
    }
}

//! Round trips, encoded sizes of typical columns, and decoders fed arbitrary bytes.

use assay_columns::{
    decode_timestamps, decode_values, encode_timestamps, encode_timestamps_packed, encode_values,
    encode_values_packed, ColumnError,
};
use expect_test::{expect, Expect};
use proptest::prelude::*;

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Encodes with both encoders, checks both decode to the same bits and report every byte
/// used (with a trailing byte the decoder must leave alone); returns the two sizes.
fn roundtrip_values(vs: &[f64]) -> (usize, usize) {
    let want: Vec<u64> = vs.iter().map(|v| v.to_bits()).collect();
    let mut sizes = [0; 2];
    for (i, encode) in [encode_values, encode_values_packed].iter().enumerate() {
        let mut out = Vec::new();
        encode(vs, &mut out);
        sizes[i] = out.len();
        out.push(0xAB);
        let (back, used) = decode_values(&out, vs.len()).expect("own encoding decodes");
        assert_eq!(used, sizes[i]);
        assert_eq!(back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want);
    }
    (sizes[0], sizes[1])
}

fn roundtrip_timestamps(ts: &[i64]) -> (usize, usize) {
    let mut sizes = [0; 2];
    for (i, encode) in [encode_timestamps, encode_timestamps_packed]
        .iter()
        .enumerate()
    {
        let mut out = Vec::new();
        encode(ts, &mut out);
        sizes[i] = out.len();
        out.push(0xAB);
        let (back, used) = decode_timestamps(&out, ts.len()).expect("own encoding decodes");
        assert_eq!((back.as_slice(), used), (ts, sizes[i]));
    }
    (sizes[0], sizes[1])
}

fn check_values(vs: &[f64], expect: Expect) {
    let (varint, packed) = roundtrip_values(vs);
    expect.assert_eq(&format!(
        "{} values: varint {varint} B, packed {packed} B",
        vs.len()
    ));
}

fn check_timestamps(ts: &[i64], expect: Expect) {
    let (varint, packed) = roundtrip_timestamps(ts);
    expect.assert_eq(&format!(
        "{} timestamps: varint {varint} B, packed {packed} B",
        ts.len()
    ));
}

/// A cheap deterministic noise source in [0, 1).
fn noise(i: u64) -> f64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Rounded to `q` and then to 6 decimals, as exporters print values.
fn quantize(v: f64, q: f64) -> f64 {
    ((v / q).round() * q * 1e6).round() / 1e6
}

#[test]
fn typical_timestamp_columns() {
    let t0 = 1_700_000_000_000i64;
    let regular: Vec<i64> = (0..120).map(|i| t0 + i * 15_000).collect();
    check_timestamps(
        &regular,
        expect!["120 timestamps: varint 128 B, packed 12 B"],
    );
    let jitter: Vec<i64> = (0..120)
        .map(|i| t0 + i * 15_000 + (noise(i as u64) * 20.0) as i64)
        .collect();
    check_timestamps(
        &jitter,
        expect!["120 timestamps: varint 128 B, packed 102 B"],
    );
    check_timestamps(&[], expect!["0 timestamps: varint 0 B, packed 0 B"]);
    check_timestamps(&[t0], expect!["1 timestamps: varint 7 B, packed 7 B"]);
    check_timestamps(
        &[i64::MAX, i64::MIN, 0, -1, i64::MIN, i64::MAX],
        expect!["6 timestamps: varint 52 B, packed 34 B"],
    );
}

#[test]
fn typical_value_columns() {
    // A CPU-seconds counter: cents, growing by about 9.3 per 15 s scrape.
    let mut acc = 1_234_567.89;
    let cpu: Vec<f64> = (0..120)
        .map(|i| {
            acc += 9.3 * (0.4 + 1.2 * noise(i));
            quantize(acc, 0.01)
        })
        .collect();
    check_values(&cpu, expect!["120 values: varint 230 B, packed 175 B"]);
    // A byte counter in 512-byte sectors.
    let mut acc = 3.0e11;
    let disk: Vec<f64> = (0..120)
        .map(|i| {
            acc += 1.35e6 * (0.4 + 1.2 * noise(i + 1000));
            quantize(acc, 512.0)
        })
        .collect();
    check_values(&disk, expect!["120 values: varint 376 B, packed 194 B"]);
    // A load-average gauge wandering around 1.2.
    let load: Vec<f64> = (0..120)
        .map(|i| quantize(1.2 + 0.8 * (i as f64 / 240.0).sin() + 0.4 * noise(i), 0.01))
        .collect();
    check_values(&load, expect!["120 values: varint 124 B, packed 113 B"]);
    // Histogram buckets: cumulative request counts, integers.
    let mut acc = 0.0;
    let bucket: Vec<f64> = (0..120)
        .map(|i| {
            acc += (600.0 * (0.5 + noise(i + 2000)) * 0.55).floor();
            acc
        })
        .collect();
    check_values(&bucket, expect!["120 values: varint 203 B, packed 143 B"]);
    check_values(&[1.0; 120], expect!["120 values: varint 4 B, packed 4 B"]);
    check_values(&[], expect!["0 values: varint 0 B, packed 0 B"]);
    // A counter with one stale marker: one 9-byte exception, the rest stays decimal.
    let mut with_stale: Vec<f64> = (0..120).map(|i| i as f64 * 3.0).collect();
    with_stale[60] = f64::from_bits(STALE_NAN);
    check_values(
        &with_stale,
        expect!["120 values: varint 131 B, packed 31 B"],
    );
}

#[test]
fn edge_values_roundtrip_to_the_bit() {
    let edges = [
        f64::NAN,
        -f64::NAN,
        f64::from_bits(STALE_NAN),
        f64::from_bits(0x7ff8_dead_beef_0001),
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        -0.0,
        5e-324,
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        0.1 + 0.2,
        1e22,
        1e23,
        9_007_199_254_740_993.0,
        -9_007_199_254_740_991.0,
        123_456.789,
    ];
    roundtrip_values(&edges);
    for &v in &edges {
        roundtrip_values(&[v]);
        roundtrip_values(&[v, 1.5, v]);
    }
}

#[test]
fn decoders_name_what_is_wrong() {
    assert_eq!(
        decode_values(&[], 1),
        Err(ColumnError::Truncated {
            what: "value exponent",
            at: 0
        })
    );
    assert_eq!(
        decode_values(&[0x2e, 0, 0, 0], 1),
        Err(ColumnError::Invalid {
            what: "value exponent",
            at: 0
        })
    );
    assert_eq!(
        decode_timestamps(&[7, 0], 2),
        Err(ColumnError::Invalid {
            what: "integer column mode",
            at: 0
        })
    );
    assert_eq!(
        decode_values(&[0, 2, 0], 1),
        Err(ColumnError::Invalid {
            what: "exception count",
            at: 1
        })
    );
    // Mantissa 2^53 (zig-zag 2^54): not one an encoder writes.
    let mut bytes = vec![0, 0, 0];
    let mut z = 1u64 << 54;
    while z >= 0x80 {
        bytes.push(z as u8 | 0x80);
        z >>= 7;
    }
    bytes.push(z as u8);
    assert_eq!(
        decode_values(&bytes, 1),
        Err(ColumnError::Invalid {
            what: "value mantissa",
            at: 2
        })
    );
    let err = decode_timestamps(&[1, 2], 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "column truncated: delta at byte 2 runs past the end of the input"
    );
}

proptest! {
    #[test]
    fn any_bit_patterns_roundtrip(bits in proptest::collection::vec(any::<u64>(), 0..300)) {
        let vs: Vec<f64> = bits.iter().map(|&b| f64::from_bits(b)).collect();
        roundtrip_values(&vs);
    }

    #[test]
    fn any_timestamps_roundtrip(ts in proptest::collection::vec(any::<i64>(), 0..300)) {
        roundtrip_timestamps(&ts);
    }

    #[test]
    fn scrape_timestamps_roundtrip(
        start in -(1i64 << 50)..(1i64 << 50),
        steps in proptest::collection::vec(0i64..100_000, 0..300),
    ) {
        let ts: Vec<i64> = steps.iter().scan(start, |t, d| { *t += d; Some(*t) }).collect();
        roundtrip_timestamps(&ts);
    }

    /// Counters with cent increments, gauges rounded to a quantum, histogram buckets.
    #[test]
    fn realistic_series_roundtrip_densely(
        start in 0.0f64..1e9,
        steps in proptest::collection::vec(0.0f64..1.0, 1..300),
        quantum in prop::sample::select(vec![0.001, 0.01, 1.0, 512.0, 4096.0]),
        kind in 0u8..3,
    ) {
        let mut acc = start;
        let vs: Vec<f64> = steps
            .iter()
            .map(|&h| match kind {
                0 => {
                    acc += 50.0 * h;
                    quantize(acc, quantum)
                }
                1 => quantize(start * (0.9 + 0.2 * h), quantum),
                _ => {
                    acc += (600.0 * h).floor();
                    acc.floor()
                }
            })
            .collect();
        let (varint, packed) = roundtrip_values(&vs);
        prop_assert!(packed <= varint);
        // Decimal, not exceptions: at most the raw 8 bytes a value plus the header.
        prop_assert!(varint <= 8 * vs.len() + 12, "{} bytes for {} values", varint, vs.len());
    }

    /// Arbitrary bytes decode to Ok or Err, never panic, and never yield more than `count`.
    #[test]
    fn decoding_random_bytes_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        count in 0usize..5_000,
    ) {
        if let Ok((v, used)) = decode_values(&bytes, count) {
            prop_assert!(v.len() == count && used <= bytes.len());
        }
        if let Ok((t, used)) = decode_timestamps(&bytes, count) {
            prop_assert!(t.len() == count && used <= bytes.len());
        }
    }

    /// Random bytes behind a valid mode byte reach the deeper decoding paths.
    #[test]
    fn decoding_random_bodies_never_panics(
        mode in 0u8..8,
        body in proptest::collection::vec(any::<u8>(), 0..100),
        count in 0usize..500,
    ) {
        let mut bytes = vec![0, 0, mode];
        bytes.extend(&body);
        let _ = decode_values(&bytes, count);
        let _ = decode_timestamps(&bytes[2..], count);
    }
}

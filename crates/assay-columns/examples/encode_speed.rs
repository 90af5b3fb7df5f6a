//! Times the packed encoders and the decoders on a 120-sample cents counter column.
//!
//! `cargo run --release -p assay-columns --example encode_speed`

use std::time::Instant;

fn main() {
    let mut acc = 1_234_567.89f64;
    let mut z = 0x9E37_79B9_7F4A_7C15u64;
    let vs: Vec<f64> = (0..120)
        .map(|_| {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            acc += 9.3 * (0.4 + 1.2 * (z >> 11) as f64 / (1u64 << 53) as f64);
            ((acc * 100.0).round()) / 100.0
        })
        .collect();
    let ts: Vec<i64> = (0..120).map(|i| 1_700_000_000_000 + i * 15_000).collect();
    let rounds = 20_000;
    let mut out = Vec::new();
    let t = Instant::now();
    for _ in 0..rounds {
        out.clear();
        assay_columns::encode_timestamps_packed(std::hint::black_box(&ts), &mut out);
    }
    let ts_ns = t.elapsed().as_nanos() as f64 / rounds as f64;
    let t = Instant::now();
    for _ in 0..rounds {
        out.clear();
        assay_columns::encode_values_packed(std::hint::black_box(&vs), &mut out);
    }
    let vs_ns = t.elapsed().as_nanos() as f64 / rounds as f64;
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(assay_columns::decode_values(&out, 120).unwrap());
    }
    let dec_ns = t.elapsed().as_nanos() as f64 / rounds as f64;
    println!(
        "per 120-sample column: encode timestamps {ts_ns:.0} ns, encode values {vs_ns:.0} ns, \
         decode values {dec_ns:.0} ns ({} bytes)",
        out.len()
    );
}

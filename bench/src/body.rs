//! Pre-serialized `/v1/push` bodies whose series ids and timestamps are patched in place.
//!
//! A run pushes millions of distinct samples; serializing each request from scratch would
//! cost the generator a noticeable share of a core the server needs. So each client builds
//! its JSON once, remembers where every fixed-width series id and timestamp sits, and
//! before each request rewrites only those digits (21 bytes per sample).
//!
//! Sample `g` of a client (counting over all its requests) goes to series `g mod S` at
//! `ts_start_ms + g div S`: each series gets strictly increasing timestamps, 1 ms apart,
//! and no two samples of a run share (series, timestamp).

use anyhow::{bail, Result};

/// Digits of a series id (zero-padded string label value).
const SERIES_DIGITS: usize = 8;
/// Largest series count per client that fits [`SERIES_DIGITS`].
pub const SERIES_PER_CLIENT_MAX: u64 = 99_999_999;
/// Digits of a millisecond timestamp: fixed from 2001 to 2286, and never a leading zero,
/// which JSON numbers forbid.
const TS_DIGITS: usize = 13;
/// Digits of the marker sequence number.
const SEQ_DIGITS: usize = 8;

/// What one client's bodies look like.
#[derive(Clone, Debug)]
pub struct BodySpec {
    /// Label `run`: keeps separate runs in separate series.
    pub run: String,
    /// Metric name of the data samples.
    pub metric: String,
    /// Label `client`: keeps clients' series disjoint.
    pub client: u32,
    /// Data samples per request.
    pub samples: usize,
    /// Distinct series this client cycles through.
    pub series: u64,
    /// Timestamp of each series' first sample, ms since the epoch.
    pub ts_start_ms: i64,
    /// Whether the body starts with one extra marker sample (`bench_marker{run,seq}`).
    pub marker: bool,
}

/// A reusable request body.
pub struct BatchBody {
    bytes: Vec<u8>,
    /// Byte offsets of (series id, timestamp) of each data sample.
    slots: Vec<(usize, usize)>,
    /// Byte offsets of the marker's (seq, timestamp).
    marker: Option<(usize, usize)>,
    series: u64,
    ts_start_ms: i64,
}

impl BatchBody {
    /// Serializes the template (all ids and timestamps still zero-filled placeholders).
    pub fn new(spec: &BodySpec) -> Result<BatchBody> {
        if spec.series == 0 || spec.series > SERIES_PER_CLIENT_MAX {
            bail!(
                "series per client is {}: it must be in 1..={SERIES_PER_CLIENT_MAX}",
                spec.series
            );
        }
        if spec.samples == 0 {
            bail!("a batch needs at least one sample");
        }
        let mut b = Vec::with_capacity(spec.samples * 120 + 200);
        let mut slots = Vec::with_capacity(spec.samples);
        b.extend_from_slice(b"{\"samples\":[");
        let marker = spec.marker.then(|| {
            b.extend_from_slice(
                format!(
                    "{{\"name\":\"bench_marker\",\"labels\":{{\"run\":\"{}\",\"seq\":\"",
                    spec.run
                )
                .as_bytes(),
            );
            let seq_at = placeholder(&mut b, SEQ_DIGITS);
            b.extend_from_slice(b"\"},\"value\":1,\"timestamp_ms\":");
            let ts_at = placeholder(&mut b, TS_DIGITS);
            b.push(b'}');
            (seq_at, ts_at)
        });
        for i in 0..spec.samples {
            if i > 0 || spec.marker {
                b.push(b',');
            }
            b.extend_from_slice(
                format!(
                    "{{\"name\":\"{}\",\"labels\":{{\"run\":\"{}\",\"client\":\"{}\",\"series\":\"",
                    spec.metric, spec.run, spec.client
                )
                .as_bytes(),
            );
            let series_at = placeholder(&mut b, SERIES_DIGITS);
            // Values vary by position so the tsdb sees realistic, non-constant data.
            let value = ((i as u64 * 7919) % 100_000) as f64 / 100.0;
            b.extend_from_slice(format!("\"}},\"value\":{value},\"timestamp_ms\":").as_bytes());
            let ts_at = placeholder(&mut b, TS_DIGITS);
            b.push(b'}');
            slots.push((series_at, ts_at));
        }
        b.extend_from_slice(b"]}");
        Ok(BatchBody {
            bytes: b,
            slots,
            marker,
            series: spec.series,
            ts_start_ms: spec.ts_start_ms,
        })
    }

    /// Rewrites the data samples to be this client's `batch_no`-th batch.
    pub fn fill(&mut self, batch_no: u64) {
        let first = batch_no * self.slots.len() as u64;
        let mut series = first % self.series;
        let mut round = first / self.series;
        let mut ts = [0u8; TS_DIGITS];
        write_digits(&mut ts, (self.ts_start_ms + round as i64) as u64);
        for &(series_at, ts_at) in &self.slots {
            write_digits(
                &mut self.bytes[series_at..series_at + SERIES_DIGITS],
                series,
            );
            self.bytes[ts_at..ts_at + TS_DIGITS].copy_from_slice(&ts);
            series += 1;
            if series == self.series {
                series = 0;
                round += 1;
                write_digits(&mut ts, (self.ts_start_ms + round as i64) as u64);
            }
        }
    }

    /// Timestamp (ms) of the newest sample `fill(batch_no)` writes: the run's time span.
    pub fn last_ts_ms(&self, batch_no: u64) -> i64 {
        let last = (batch_no + 1) * self.slots.len() as u64 - 1;
        self.ts_start_ms + (last / self.series) as i64
    }

    /// Sets the marker sample's sequence number and timestamp (no-op without a marker).
    pub fn set_marker(&mut self, seq: u64, ts_ms: i64) {
        if let Some((seq_at, ts_at)) = self.marker {
            write_digits(&mut self.bytes[seq_at..seq_at + SEQ_DIGITS], seq);
            write_digits(&mut self.bytes[ts_at..ts_at + TS_DIGITS], ts_ms as u64);
        }
    }

    /// The body as it stands.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Samples in one request, the marker included.
    pub fn samples(&self) -> usize {
        self.slots.len() + usize::from(self.marker.is_some())
    }
}

/// Appends `n` zero digits and returns where they start.
fn placeholder(b: &mut Vec<u8>, n: usize) -> usize {
    let at = b.len();
    b.resize(at + n, b'0');
    at
}

/// Writes `v` as zero-padded decimal filling `out` exactly (higher digits are dropped).
fn write_digits(out: &mut [u8], mut v: u64) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn spec(samples: usize, series: u64, marker: bool) -> BodySpec {
        BodySpec {
            run: "r1".into(),
            metric: "m".into(),
            client: 3,
            samples,
            series,
            ts_start_ms: 1_700_000_000_000,
            marker,
        }
    }

    /// Renders (series, ts) of each data sample after `fill(batch_no)`, checking it parses.
    fn check(spec: BodySpec, batch_no: u64, expect: Expect) {
        let mut body = BatchBody::new(&spec).unwrap();
        body.fill(batch_no);
        body.set_marker(42, 1_700_000_000_999);
        let v: serde_json::Value = serde_json::from_slice(body.bytes()).unwrap();
        let rows: Vec<String> = v["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let l = &s["labels"];
                let id = l.get("series").or(l.get("seq")).unwrap().as_str().unwrap();
                format!("{}/{id}@{}", s["name"].as_str().unwrap(), s["timestamp_ms"])
            })
            .collect();
        expect.assert_eq(&rows.join(" "));
    }

    #[test]
    fn samples_cycle_series_and_advance_time_per_round() {
        check(
            spec(3, 2, false),
            0,
            expect!["m/00000000@1700000000000 m/00000001@1700000000000 m/00000000@1700000000001"],
        );
        check(
            spec(3, 2, false),
            1,
            expect!["m/00000001@1700000000001 m/00000000@1700000000002 m/00000001@1700000000002"],
        );
        check(
            spec(2, 5, true),
            3,
            expect!["bench_marker/00000042@1700000000999 m/00000001@1700000000001 m/00000002@1700000000001"],
        );
    }

    #[test]
    fn last_timestamp_matches_fill_and_limits_are_checked() {
        let body = BatchBody::new(&spec(3, 2, false)).unwrap();
        assert_eq!(body.last_ts_ms(1), 1_700_000_000_002);
        assert_eq!(body.samples(), 3);
        assert!(BatchBody::new(&spec(3, 0, false)).is_err());
        assert!(BatchBody::new(&spec(3, SERIES_PER_CLIENT_MAX + 1, false)).is_err());
        assert!(BatchBody::new(&spec(3, SERIES_PER_CLIENT_MAX, false)).is_ok());
        assert!(BatchBody::new(&spec(0, 1, false)).is_err());
    }
}

//! Property tests: no input makes a parser panic, and every rejection explains itself.
//! Inputs are random bytes and mutations (truncation, byte flips) of real, valid inputs.

use assay_ingest::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};
use assay_ingest::{
    parse_influx_line, parse_json_push, parse_junit, parse_prometheus_text, parse_remote_write,
    parse_remote_write_cached, CiRun, InfluxPrecision, IngestError, Limits, SeriesCache,
};
use proptest::prelude::*;
use prost::Message;

const NOW_MS: i64 = 1_800_000_000_000;

const JSON: &[u8] = br#"{"samples":[{"name":"cpu_load","labels":{"host":"a","dc":"x"},"value":0.42,"timestamp_ms":1799999999000},{"name":"up","value":"NaN"}]}"#;
const TEXT: &[u8] = include_bytes!("fixtures/prometheus/python-client.prom");
const JEST: &[u8] = include_bytes!("fixtures/junit/jest.xml");
const SUREFIRE: &[u8] = include_bytes!("fixtures/junit/surefire-CalcTest.xml");
const TELEGRAF: &[u8] = include_bytes!("fixtures/influx/telegraf.lp");

/// A valid remote write request (before snappy): two series, one with a stale marker.
fn write_request() -> Vec<u8> {
    let label = |name: &str, value: &str| Label {
        name: name.into(),
        value: value.into(),
    };
    WriteRequest {
        timeseries: vec![
            TimeSeries {
                labels: vec![label("__name__", "up"), label("job", "node")],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: NOW_MS - 1000,
                }],
                ..TimeSeries::default()
            },
            TimeSeries {
                labels: vec![label("__name__", "node_load1"), label("instance", "a:9100")],
                samples: vec![
                    Sample {
                        value: 0.5,
                        timestamp: NOW_MS - 2000,
                    },
                    Sample {
                        value: f64::from_bits(0x7ff0_0000_0000_0002),
                        timestamp: NOW_MS,
                    },
                ],
                ..TimeSeries::default()
            },
        ],
        metadata: vec![],
    }
    .encode_to_vec()
}

fn snappy(protobuf: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(protobuf).unwrap()
}

fn run() -> CiRun {
    CiRun {
        pipeline: "ci".into(),
        job: "test".into(),
        run: "1".into(),
    }
}

/// Every parser on one input: an error must say something; a success must hold samples.
fn all_parsers_hold_up(body: &[u8]) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    let check_err = |e: &IngestError| -> Result<(), TestCaseError> {
        prop_assert!(!e.message.trim().is_empty(), "empty message: {e:?}");
        prop_assert_eq!(e.to_string(), e.message.clone());
        Ok(())
    };
    match parse_json_push(body, NOW_MS, &limits) {
        Ok(batch) => prop_assert!(!batch.is_empty()),
        Err(e) => check_err(&e)?,
    }
    match parse_prometheus_text(body, NOW_MS, &limits) {
        Ok(batch) => prop_assert!(!batch.is_empty()),
        Err(e) => check_err(&e)?,
    }
    let cold = parse_remote_write(body, NOW_MS, &limits);
    match &cold {
        Ok(rw) => prop_assert!(rw.batch.len() <= limits.samples_per_batch_max),
        Err(e) => check_err(e)?,
    }
    // The series cache changes nothing: warmed with the valid seed, then filled by this body.
    let cache = SeriesCache::new(&limits);
    prop_assert!(
        parse_remote_write_cached(&snappy(&write_request()), NOW_MS, &limits, &cache).is_ok()
    );
    for _ in 0..2 {
        prop_assert_eq!(
            &parse_remote_write_cached(body, NOW_MS, &limits, &cache),
            &cold
        );
    }
    match parse_influx_line(body, NOW_MS, InfluxPrecision::Nanoseconds, &limits) {
        Ok(lines) => prop_assert!(lines.batch.len() <= limits.samples_per_batch_max),
        Err(e) => check_err(&e)?,
    }
    match parse_junit(body, &run(), NOW_MS, &limits) {
        Ok(entry) => {
            // Totals come first: ci_tests equals the sum of the four outcomes.
            let v: Vec<f64> = entry.batch().iter().take(5).map(|(_, _, v)| v).collect();
            prop_assert_eq!(v.len(), 5);
            prop_assert_eq!(v[0], v[1] + v[2] + v[3] + v[4]);
        }
        Err(e) => check_err(&e)?,
    }
    Ok(())
}

/// A valid input cut short and with a few bytes changed.
fn mutated(seed: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    mutated_owned(seed.to_vec())
}

fn mutated_owned(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    (
        0..=seed.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    )
        .prop_map(move |(len, flips)| {
            let mut body = seed[..len].to_vec();
            if !body.is_empty() {
                for (at, byte) in flips {
                    let i = at.index(body.len());
                    body[i] = byte;
                }
            }
            body
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(body in prop::collection::vec(any::<u8>(), 0..256)) {
        all_parsers_hold_up(&body)?;
    }

    #[test]
    fn random_text_of_format_characters(body in "[a-z_{}=\",# <>/0-9.\\\\\n]{0,200}") {
        all_parsers_hold_up(body.as_bytes())?;
    }

    #[test]
    fn mutated_json(body in mutated(JSON)) {
        all_parsers_hold_up(&body)?;
    }

    #[test]
    fn mutated_text(body in mutated(TEXT)) {
        all_parsers_hold_up(&body)?;
    }

    #[test]
    fn snappy_of_random_bytes(protobuf in prop::collection::vec(any::<u8>(), 0..256)) {
        all_parsers_hold_up(&snappy(&protobuf))?;
    }

    #[test]
    fn snappy_of_mutated_protobuf(protobuf in mutated_owned(write_request())) {
        all_parsers_hold_up(&snappy(&protobuf))?;
    }

    #[test]
    fn mutated_snappy(body in mutated_owned(snappy(&write_request()))) {
        all_parsers_hold_up(&body)?;
    }

    #[test]
    fn mutated_line_protocol(body in mutated(TELEGRAF)) {
        all_parsers_hold_up(&body)?;
    }

    #[test]
    fn random_text_of_line_protocol_characters(body in "[a-z_,= \"\\\\\n\r#0-9.tfiu-]{0,200}") {
        all_parsers_hold_up(body.as_bytes())?;
    }

    #[test]
    fn mutated_junit(body in prop_oneof![mutated(JEST), mutated(SUREFIRE)]) {
        all_parsers_hold_up(&body)?;
    }
}

#[test]
fn unmutated_seeds_parse() {
    let limits = Limits::default();
    assert_eq!(
        parse_json_push(JSON, NOW_MS, &limits).map(|b| b.len()),
        Ok(2)
    );
    assert!(parse_prometheus_text(TEXT, NOW_MS, &limits).is_ok());
    assert!(parse_junit(JEST, &run(), NOW_MS, &limits).is_ok());
    assert!(parse_junit(SUREFIRE, &run(), NOW_MS, &limits).is_ok());
    let rw = parse_remote_write(&snappy(&write_request()), NOW_MS, &limits);
    assert_eq!(rw.map(|r| r.batch.len()), Ok(3));
    let lines = parse_influx_line(TELEGRAF, NOW_MS, InfluxPrecision::Nanoseconds, &limits);
    assert!(lines.is_ok());
}

/// A sample as labels, timestamp and value bits.
type Flat = (Vec<(String, String)>, i64, u64);

/// A valid request with distinct timestamps per series, and what it must parse to.
fn valid_request() -> impl Strategy<Value = WriteRequest> {
    let label = ("[a-z_][a-z0-9_]{0,6}", "[ -~é]{0,8}");
    let series = (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
        prop::collection::btree_map(label.0, label.1, 0..5),
        prop::collection::btree_map(-100_000i64..=0, any::<u64>(), 0..4),
    );
    prop::collection::vec(series, 0..8).prop_map(|all| WriteRequest {
        timeseries: all
            .into_iter()
            .map(|(name, labels, samples)| TimeSeries {
                labels: std::iter::once(("__name__".to_string(), name))
                    .chain(labels.into_iter().filter(|(n, _)| !n.starts_with("__")))
                    .map(|(name, value)| Label { name, value })
                    .collect(),
                samples: samples
                    .into_iter()
                    .map(|(ago, bits)| Sample {
                        value: f64::from_bits(bits),
                        timestamp: NOW_MS + ago,
                    })
                    .collect(),
                ..TimeSeries::default()
            })
            .collect(),
        metadata: vec![],
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// The hand-written wire walker reads exactly what prost wrote.
    #[test]
    fn remote_write_round_trips(request in valid_request()) {
        let parsed = parse_remote_write(&assay_ingest::encode_remote_write(&request), NOW_MS, &Limits::default());
        let parsed = parsed.map_err(|e| TestCaseError::fail(e.message))?;
        let got: Vec<Flat> = parsed
            .batch
            .iter()
            .map(|(l, ts, v)| (l.to_vec(), ts, v.to_bits()))
            .collect();
        let mut want = Vec::new();
        for ts in &request.timeseries {
            let mut pairs: Vec<(String, String)> = ts
                .labels
                .iter()
                .filter(|l| !l.value.is_empty())
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            pairs.sort();
            for s in &ts.samples {
                want.push((pairs.clone(), s.timestamp, s.value.to_bits()));
            }
        }
        prop_assert_eq!(got, want);
    }
}

#[test]
fn a_body_parses_the_same_after_a_longer_one() {
    // The decoded-body buffer is reused from request to request: a truncated request after
    // a longer one must not read the longer one's bytes.
    let limits = Limits::default();
    let long = WriteRequest {
        timeseries: (0..100)
            .map(|i| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                    Label {
                        name: "instance".into(),
                        value: format!("host-{i}:9100"),
                    },
                ],
                samples: vec![Sample {
                    value: i as f64,
                    timestamp: NOW_MS - 1000,
                }],
                ..TimeSeries::default()
            })
            .collect(),
        metadata: vec![],
    }
    .encode_to_vec();
    let short = write_request();
    let cut = &short[..short.len() - 7];
    let on_its_own = |body: Vec<u8>| {
        let limits = limits.clone();
        std::thread::spawn(move || format!("{:?}", parse_remote_write(&body, NOW_MS, &limits)))
            .join()
            .unwrap()
    };
    for body in [snappy(cut), snappy(&short)] {
        let alone = on_its_own(body.clone());
        assert!(parse_remote_write(&snappy(&long), NOW_MS, &limits).is_ok());
        let after = format!("{:?}", parse_remote_write(&body, NOW_MS, &limits));
        assert_eq!(after, alone);
    }
    assert!(
        on_its_own(snappy(cut)).contains("Err"),
        "the cut request is rejected"
    );
}

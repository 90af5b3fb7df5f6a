//! The JSON push format: `{"samples":[{"name":..,"labels":{..},"value":..,"timestamp_ms":..}]}`.

use std::cell::Cell;
use std::fmt;

use assay_ledger::SampleBatch;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::json;

use crate::validate::{check_metric_name, BatchBuilder, SeriesLabels};
use crate::{IngestError, IngestErrorKind, Limits};

/// Parses a JSON push body into a batch, or names the first offending field.
pub fn parse_json_push(
    body: &[u8],
    now_ms: i64,
    limits: &Limits,
) -> Result<SampleBatch, IngestError> {
    let samples = read_samples(body, limits)?;
    if samples.is_empty() {
        return Err(field_error(
            IngestErrorKind::BadRequest,
            "samples",
            "the list is empty; send at least one sample",
        ));
    }
    let mut builder = BatchBuilder::with_capacity(limits, now_ms, samples.len());
    for (i, sample) in samples.into_iter().enumerate() {
        // Field paths are built only for an error: this loop runs once per sample.
        let path = || format!("samples[{i}]");
        check_metric_name(&sample.name, limits).map_err(|e| {
            field_error(IngestErrorKind::BadRequest, &format!("{}.name", path()), &e)
        })?;
        let mut labels = SeriesLabels::new(limits);
        for (name, value) in sample.labels.0 {
            if let Err(e) = labels.check(&name, &value) {
                let field = format!("{}.labels.{name}", path());
                return Err(field_error(IngestErrorKind::BadRequest, &field, &e));
            }
            labels.push_checked(name, value);
        }
        let labels = labels.finish(&sample.name);
        builder
            .push(labels, sample.timestamp_ms, sample.value.0)
            .map_err(|r| {
                let (kind, why) = r.describe();
                let field = match sample.timestamp_ms {
                    Some(_) => format!("{}.timestamp_ms", path()),
                    None => path(),
                };
                field_error(kind, &field, &why)
            })?;
    }
    Ok(builder.finish())
}

fn field_error(kind: IngestErrorKind, field: &str, why: &str) -> IngestError {
    IngestError::new(
        kind,
        format!("field `{field}`: {why}"),
        json!({ "field": field }),
    )
}

/// Bytes of JSON per sample assumed when reserving room for a body's samples: typical
/// samples take 60–150 bytes, so growing past the estimate is rare and cheap.
const JSON_BYTES_PER_SAMPLE_ESTIMATE: usize = 64;

/// Room to reserve for a body's samples: bounded by the batch limit and by the body.
fn capacity_for(body_bytes: usize, limits: &Limits) -> usize {
    (body_bytes / JSON_BYTES_PER_SAMPLE_ESTIMATE).min(limits.samples_per_batch_max)
}

/// Deserializes the body, bounding the sample count while reading (not after).
///
/// The first pass runs without path tracking, which costs a tenth of ingest time; only a
/// body that fails is read again, tracked, to name the field (same input, same failure).
fn read_samples(body: &[u8], limits: &Limits) -> Result<Vec<RawSample>, IngestError> {
    let overflow = Cell::new(false);
    let seed = BodySeed {
        samples_max: limits.samples_per_batch_max,
        capacity: capacity_for(body.len(), limits),
        overflow: &overflow,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let untracked = seed
        .deserialize(&mut de)
        .and_then(|samples| de.end().map(|()| samples));
    if let Ok(samples) = untracked {
        return Ok(samples);
    }
    overflow.set(false);
    let seed = BodySeed {
        samples_max: limits.samples_per_batch_max,
        capacity: capacity_for(body.len(), limits),
        overflow: &overflow,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut track = serde_path_to_error::Track::new();
    let result = seed
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .and_then(|samples| de.end().map(|()| samples));
    result.map_err(|e| {
        let path = track.path().to_string();
        if overflow.get() {
            let why = format!(
                "more than samples_per_batch_max = {} samples; split the upload",
                limits.samples_per_batch_max
            );
            return field_error(IngestErrorKind::PayloadTooLarge, "samples", &why);
        }
        json_error(&e, &path)
    })
}

/// A serde_json error as a 400 naming line, column and field path.
fn json_error(e: &serde_json::Error, path: &str) -> IngestError {
    let full = e.to_string();
    // serde_json appends " at line L column C"; we say where ourselves.
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let why = full.strip_suffix(&suffix).unwrap_or(&full);
    let field = if path == "." { "" } else { path };
    let message = if field.is_empty() {
        format!(
            "invalid JSON at line {}, column {}: {why}",
            e.line(),
            e.column()
        )
    } else {
        format!(
            "invalid JSON at line {}, column {}, field `{field}`: {why}",
            e.line(),
            e.column()
        )
    };
    IngestError::new(
        IngestErrorKind::BadRequest,
        message,
        json!({ "line": e.line(), "column": e.column(), "field": field }),
    )
}

/// One sample as sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSample {
    name: String,
    #[serde(default)]
    labels: LabelPairs,
    value: JsonValue,
    #[serde(default)]
    timestamp_ms: Option<i64>,
}

/// A `labels` object in the order given, duplicates kept so they can be rejected.
#[derive(Default)]
struct LabelPairs(Vec<(String, String)>);

impl<'de> Deserialize<'de> for LabelPairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = LabelPairs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of label names to string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LabelPairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    pairs.push((k, v));
                }
                Ok(LabelPairs(pairs))
            }
        }
        d.deserialize_map(PairsVisitor)
    }
}

/// A sample value: a JSON number, or "NaN" / "+Inf" / "-Inf" as Prometheus' JSON API writes.
struct JsonValue(f64);

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl Visitor<'_> for ValueVisitor {
            type Value = JsonValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a number or one of the strings "NaN", "+Inf", "-Inf""#)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonValue, E> {
                Ok(JsonValue(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsonValue, E> {
                Ok(JsonValue(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsonValue, E> {
                Ok(JsonValue(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonValue, E> {
                match v {
                    "NaN" => Ok(JsonValue(f64::NAN)),
                    "+Inf" => Ok(JsonValue(f64::INFINITY)),
                    "-Inf" => Ok(JsonValue(f64::NEG_INFINITY)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(ValueVisitor)
    }
}

/// The top-level object; only `samples` is allowed.
struct BodySeed<'a> {
    samples_max: usize,
    /// Samples to make room for up front, estimated from the body's size.
    capacity: usize,
    overflow: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = Vec<RawSample>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = Vec<RawSample>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"an object {"samples": [...]}"#)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut samples = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "samples" {
                return Err(de::Error::unknown_field(&key, &["samples"]));
            }
            if samples.is_some() {
                return Err(de::Error::duplicate_field("samples"));
            }
            let seed = SamplesSeed {
                samples_max: self.samples_max,
                capacity: self.capacity,
                overflow: self.overflow,
            };
            samples = Some(map.next_value_seed(seed)?);
        }
        samples.ok_or_else(|| de::Error::missing_field("samples"))
    }
}

/// The `samples` list, read up to `samples_max` elements.
struct SamplesSeed<'a> {
    samples_max: usize,
    capacity: usize,
    overflow: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for SamplesSeed<'_> {
    type Value = Vec<RawSample>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SamplesSeed<'_> {
    type Value = Vec<RawSample>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of samples")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(self.capacity));
        while let Some(sample) = seq.next_element::<RawSample>()? {
            if out.len() == self.samples_max {
                self.overflow.set(true);
                return Err(de::Error::custom("too many samples"));
            }
            out.push(sample);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    const NOW: i64 = 1_700_000_000_000;

    fn check(body: &str, expect: Expect) {
        check_with(body, &Limits::default(), expect)
    }

    fn check_with(body: &str, limits: &Limits, expect: Expect) {
        let got = match parse_json_push(body.as_bytes(), NOW, limits) {
            Ok(batch) => batch
                .iter()
                .map(|(l, ts, v)| format!("{l:?} {ts} {v}\n"))
                .collect::<String>(),
            Err(e) => format!("{:?} {}\n{}\n", e.kind, e.message, e.detail),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn accepts_the_documented_shape() {
        check(
            r#"{"samples":[
                {"name":"cpu_load","labels":{"host":"a","zone":""},"value":0.42,"timestamp_ms":1699999999000},
                {"name":"up","value":1},
                {"name":"x","value":"NaN"},
                {"name":"x","labels":{"k":"v"},"value":"+Inf"},
                {"name":"x","labels":{"k":"w"},"value":"-Inf","timestamp_ms":null}
            ]}"#,
            expect![[r#"
                Labels([("__name__", "cpu_load"), ("host", "a")]) 1699999999000 0.42
                Labels([("__name__", "up")]) 1700000000000 1
                Labels([("__name__", "x")]) 1700000000000 NaN
                Labels([("__name__", "x"), ("k", "v")]) 1700000000000 inf
                Labels([("__name__", "x"), ("k", "w")]) 1700000000000 -inf
            "#]],
        );
    }

    #[test]
    fn syntax_and_type_errors_name_line_column_and_field() {
        check(
            "{\"samples\":[\n {\"name\":\"a\",\"value\":1},\n {\"name\":\"b\",\"value\":tru}]}",
            expect![[r#"
                BadRequest invalid JSON at line 3, column 25, field `samples[1].value`: expected ident
                {"column":25,"field":"samples[1].value","line":3}
            "#]],
        );
        check(
            r#"{"samples":[{"name":"a","value":"1.5"}]}"#,
            expect![[r#"
                BadRequest invalid JSON at line 1, column 37, field `samples[0].value`: invalid value: string "1.5", expected a number or one of the strings "NaN", "+Inf", "-Inf"
                {"column":37,"field":"samples[0].value","line":1}
            "#]],
        );
        check(
            r#"{"samples":[{"name":"a","value":1,"labels":{"host":7}}]}"#,
            expect![[r#"
                BadRequest invalid JSON at line 1, column 52, field `samples[0].labels.host`: invalid type: integer `7`, expected a string
                {"column":52,"field":"samples[0].labels.host","line":1}
            "#]],
        );
        check(
            r#"{"samples":[{"name":"a","value":1,"timestamp_ms":1.7e12}]}"#,
            expect![[r#"
                BadRequest invalid JSON at line 1, column 55, field `samples[0].timestamp_ms`: invalid type: floating point `1700000000000.0`, expected i64
                {"column":55,"field":"samples[0].timestamp_ms","line":1}
            "#]],
        );
        check(
            r#"{"samples":[{"name":"a"}]}"#,
            expect![[r#"
                BadRequest invalid JSON at line 1, column 24, field `samples[0]`: missing field `value`
                {"column":24,"field":"samples[0]","line":1}
            "#]],
        );
        check(
            r#"{"samples":[]} x"#,
            expect![[r#"
                BadRequest invalid JSON at line 1, column 16: trailing characters
                {"column":16,"field":"","line":1}
            "#]],
        );
        check(
            r#"{"samples":[{"name":"a","value":1e999}]}"#,
            expect![[r#"
                BadRequest invalid JSON at line 1, column 37, field `samples[0].value`: number out of range
                {"column":37,"field":"samples[0].value","line":1}
            "#]],
        );
        check(
            "",
            expect![[r#"
                BadRequest invalid JSON at line 1, column 0: EOF while parsing a value
                {"column":0,"field":"","line":1}
            "#]],
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        check(
            r#"{"samples":[{"name":"a","value":1,"help":"x"}]}"#,
            expect![[r#"
                BadRequest invalid JSON at line 1, column 40, field `samples[0].help`: unknown field `help`, expected one of `name`, `labels`, `value`, `timestamp_ms`
                {"column":40,"field":"samples[0].help","line":1}
            "#]],
        );
        check(
            r#"{"samples":[],"version":2}"#,
            expect![[r#"
                BadRequest invalid JSON at line 1, column 23: unknown field `version`, expected `samples`
                {"column":23,"field":"","line":1}
            "#]],
        );
    }

    #[test]
    fn semantic_errors_name_the_field() {
        check(
            r#"{"samples":[]}"#,
            expect![[r#"
                BadRequest field `samples`: the list is empty; send at least one sample
                {"field":"samples"}
            "#]],
        );
        check(
            r#"{"samples":[{"name":"a","value":1},{"name":"a b","value":1}]}"#,
            expect![[r#"
                BadRequest field `samples[1].name`: metric name `a b` must match [a-zA-Z_:][a-zA-Z0-9_:]*
                {"field":"samples[1].name"}
            "#]],
        );
        check(
            r#"{"samples":[{"name":"a","labels":{"host":"x","__name__":"b"},"value":1}]}"#,
            expect![[r#"
                BadRequest field `samples[0].labels.__name__`: label name `__name__` is reserved: names starting with `__` are Assay's own; rename it
                {"field":"samples[0].labels.__name__"}
            "#]],
        );
        check(
            r#"{"samples":[{"name":"a","labels":{"host":"x","host":"y"},"value":1}]}"#,
            expect![[r#"
                BadRequest field `samples[0].labels.host`: label `host` is given twice in one series
                {"field":"samples[0].labels.host"}
            "#]],
        );
        check(
            r#"{"samples":[{"name":"a","value":1},{"name":"a","value":2}]}"#,
            expect![[r#"
                BadRequest field `samples[1]`: the same series at the same timestamp was already given by sample 1; send one value per series and timestamp
                {"field":"samples[1]"}
            "#]],
        );
        check(
            r#"{"samples":[{"name":"a","value":1,"timestamp_ms":1700000600001}]}"#,
            expect![[r#"
                BadRequest field `samples[0].timestamp_ms`: timestamp 1700000600001 ms is outside the accepted window [1697321600000, 1700000600000] (now - timestamp_past_ms_max, now + timestamp_future_ms_max); check the sender's clock and that timestamps are in milliseconds
                {"field":"samples[0].timestamp_ms"}
            "#]],
        );
    }

    #[test]
    fn limits_at_the_edge() {
        let limits = Limits {
            samples_per_batch_max: 2,
            ..Limits::default()
        };
        let two = r#"{"samples":[{"name":"a","value":1},{"name":"b","value":1}]}"#;
        assert_eq!(
            parse_json_push(two.as_bytes(), NOW, &limits).map(|b| b.len()),
            Ok(2)
        );
        check_with(
            r#"{"samples":[{"name":"a","value":1},{"name":"b","value":1},{"name":"c","value":1}]}"#,
            &limits,
            expect![[r#"
                PayloadTooLarge field `samples`: more than samples_per_batch_max = 2 samples; split the upload
                {"field":"samples"}
            "#]],
        );
        let limits = Limits {
            labels_per_series_max: 1,
            ..Limits::default()
        };
        let one = r#"{"samples":[{"name":"a","labels":{"x":"1"},"value":1}]}"#;
        assert!(parse_json_push(one.as_bytes(), NOW, &limits).is_ok());
        check_with(
            r#"{"samples":[{"name":"a","labels":{"x":"1","y":"2"},"value":1}]}"#,
            &limits,
            expect![[r#"
                BadRequest field `samples[0].labels.y`: series has more than labels_per_series_max = 1 labels; drop some
                {"field":"samples[0].labels.y"}
            "#]],
        );
        let limits = Limits {
            label_name_bytes_max: 3,
            ..Limits::default()
        };
        assert!(
            parse_json_push(br#"{"samples":[{"name":"abc","value":1}]}"#, NOW, &limits).is_ok()
        );
        check_with(
            r#"{"samples":[{"name":"abcd","value":1}]}"#,
            &limits,
            expect![[r#"
                BadRequest field `samples[0].name`: metric name is 4 bytes, over label_name_bytes_max = 3
                {"field":"samples[0].name"}
            "#]],
        );
    }
}

//! Validation every parser shares: names, label sets, limits, timestamps, duplicates.
//!
//! The checks return plain reasons; each parser adds its own location (field path, line and
//! column, element) when it turns a reason into an [`IngestError`].

use assay_ledger::{Labels, SampleBatch, SeriesIndex, METRIC_NAME_LABEL};

use crate::{IngestErrorKind, Limits};

/// Checks a metric name against `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn validate_metric_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return Err("metric name is empty".to_string());
    };
    let ok_first = first.is_ascii_alphabetic() || first == b'_' || first == b':';
    if !ok_first || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':') {
        return Err(format!(
            "metric name `{name}` must match [a-zA-Z_:][a-zA-Z0-9_:]*"
        ));
    }
    Ok(())
}

/// Checks a client label name against `[a-zA-Z_][a-zA-Z0-9_]*`, without the reserved `__` prefix.
pub fn validate_label_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return Err("label name is empty".to_string());
    };
    let ok_first = first.is_ascii_alphabetic() || first == b'_';
    if !ok_first || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "label name `{name}` must match [a-zA-Z_][a-zA-Z0-9_]*"
        ));
    }
    if name.starts_with("__") {
        return Err(format!(
            "label name `{name}` is reserved: names starting with `__` are Assay's own; rename it"
        ));
    }
    Ok(())
}

/// Checks a metric name's syntax and length.
pub(crate) fn check_metric_name(name: &str, limits: &Limits) -> Result<(), String> {
    validate_metric_name(name)?;
    if name.len() > limits.label_name_bytes_max {
        return Err(format!(
            "metric name is {} bytes, over label_name_bytes_max = {}",
            name.len(),
            limits.label_name_bytes_max
        ));
    }
    Ok(())
}

/// Checks a label value's length (it is UTF-8 already, being a `str`).
pub(crate) fn check_label_value(name: &str, value: &str, limits: &Limits) -> Result<(), String> {
    if value.len() > limits.label_value_bytes_max {
        return Err(format!(
            "value of label `{name}` is {} bytes, over label_value_bytes_max = {}",
            value.len(),
            limits.label_value_bytes_max
        ));
    }
    Ok(())
}

/// The labels of one series as a client gives them, checked one at a time.
#[derive(Clone)]
pub(crate) struct SeriesLabels<'l> {
    limits: &'l Limits,
    pairs: Vec<(String, String)>,
}

impl<'l> SeriesLabels<'l> {
    pub(crate) fn new(limits: &'l Limits) -> Self {
        SeriesLabels {
            limits,
            pairs: Vec::new(),
        }
    }

    /// Adds one label: checks the count limit, the name, the value length and duplicates.
    pub(crate) fn add(&mut self, name: String, value: String) -> Result<(), String> {
        self.check(&name, &value)?;
        self.pairs.push((name, value));
        Ok(())
    }

    /// What [`SeriesLabels::add`] checks, without taking the strings.
    pub(crate) fn check(&self, name: &str, value: &str) -> Result<(), String> {
        if self.pairs.len() >= self.limits.labels_per_series_max {
            return Err(format!(
                "series has more than labels_per_series_max = {} labels; drop some",
                self.limits.labels_per_series_max
            ));
        }
        validate_label_name(name)?;
        if name.len() > self.limits.label_name_bytes_max {
            return Err(format!(
                "label name `{}…` is {} bytes, over label_name_bytes_max = {}",
                truncate(name, 32),
                name.len(),
                self.limits.label_name_bytes_max
            ));
        }
        check_label_value(name, value, self.limits)?;
        // Linear: the count limit above keeps this small.
        if self.pairs.iter().any(|(n, _)| n == name) {
            return Err(format!("label `{name}` is given twice in one series"));
        }
        Ok(())
    }

    /// Adds a label that passed [`SeriesLabels::check`].
    pub(crate) fn push_checked(&mut self, name: String, value: String) {
        self.pairs.push((name, value));
    }

    /// The series' identity; `metric` must have passed [`check_metric_name`].
    pub(crate) fn finish(self, metric: &str) -> Labels {
        // Room for `__name__` too, so the push below never regrows the vector.
        let mut pairs = Vec::with_capacity(self.pairs.len() + 1);
        pairs.extend(self.pairs.into_iter().filter(|(_, v)| !v.is_empty()));
        pairs.push((METRIC_NAME_LABEL.to_string(), metric.to_string()));
        // Names were checked to be valid, distinct and not `__`-prefixed, and the metric name
        // is non-empty: Labels::new cannot fail.
        Labels::new(pairs).expect("labels were validated before building the series")
    }
}

fn truncate(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

/// Why a sample could not join the batch.
#[derive(Debug, PartialEq)]
pub(crate) enum PushRejection {
    /// The batch already holds `samples_per_batch_max` samples.
    TooMany { max: usize },
    /// The timestamp lies outside the accepted window.
    Timestamp { ts: i64, min: i64, max: i64 },
    /// The same series at the same timestamp came earlier, as sample `first` (0-based).
    Duplicate { first: usize },
}

impl PushRejection {
    /// The status and a message (without location) for this rejection.
    pub(crate) fn describe(&self) -> (IngestErrorKind, String) {
        match *self {
            PushRejection::TooMany { max } => (
                IngestErrorKind::PayloadTooLarge,
                format!("more than samples_per_batch_max = {max} samples; split the upload"),
            ),
            PushRejection::Timestamp { ts, min, max } => (
                IngestErrorKind::BadRequest,
                format!(
                    "timestamp {ts} ms is outside the accepted window [{min}, {max}] \
                     (now - timestamp_past_ms_max, now + timestamp_future_ms_max); \
                     check the sender's clock and that timestamps are in milliseconds"
                ),
            ),
            PushRejection::Duplicate { first } => (
                IngestErrorKind::BadRequest,
                format!(
                    "the same series at the same timestamp was already given by sample {}; \
                     send one value per series and timestamp",
                    first + 1
                ),
            ),
        }
    }
}

/// A batch under construction, enforcing the per-batch rules.
pub(crate) struct BatchBuilder<'l> {
    limits: &'l Limits,
    now_ms: i64,
    batch: SampleBatch,
    /// Per series index, its newest timestamp so far: while every series' timestamps
    /// rise (the usual case) no sample can repeat an earlier one, and no map is needed.
    newest: Vec<i64>,
    /// (series index, timestamp) → first sample, to reject a repeated sample; made (from
    /// the samples so far) when a series' timestamp first fails to rise.
    seen: Option<rustc_hash::FxHashMap<(u32, i64), usize>>,
}

impl<'l> BatchBuilder<'l> {
    pub(crate) fn new(limits: &'l Limits, now_ms: i64) -> Self {
        BatchBuilder::with_capacity(limits, now_ms, 0)
    }

    /// A builder with room for `samples` samples (capped by the batch limit).
    pub(crate) fn with_capacity(limits: &'l Limits, now_ms: i64, samples: usize) -> Self {
        let n = samples.min(limits.samples_per_batch_max);
        BatchBuilder {
            limits,
            now_ms,
            batch: SampleBatch::with_capacity(n),
            newest: Vec::with_capacity(n),
            seen: None,
        }
    }

    /// Checks the limits and appends one sample; `None` means "at now_ms".
    pub(crate) fn push(
        &mut self,
        labels: Labels,
        timestamp_ms: Option<i64>,
        value: f64,
    ) -> Result<(), PushRejection> {
        let hash = SeriesIndex::hash(&labels);
        self.push_hashed(labels, hash, timestamp_ms, value)
    }

    /// [`BatchBuilder::push`] with the labels' `SeriesIndex::hash` known already.
    pub(crate) fn push_hashed(
        &mut self,
        labels: Labels,
        hash: u64,
        timestamp_ms: Option<i64>,
        value: f64,
    ) -> Result<(), PushRejection> {
        let ts = self.admit(timestamp_ms)?;
        self.batch.push_hashed(labels, hash, ts, value);
        self.order(ts)
    }

    /// [`BatchBuilder::push_hashed`] for another sample of the series of the sample pushed
    /// last (which must have been accepted).
    pub(crate) fn push_again(
        &mut self,
        timestamp_ms: Option<i64>,
        value: f64,
    ) -> Result<(), PushRejection> {
        let ts = self.admit(timestamp_ms)?;
        self.batch.push_again(ts, value);
        self.order(ts)
    }

    /// The sample's timestamp, if the batch has room and it is within the window.
    fn admit(&self, timestamp_ms: Option<i64>) -> Result<i64, PushRejection> {
        if self.batch.len() >= self.limits.samples_per_batch_max {
            return Err(PushRejection::TooMany {
                max: self.limits.samples_per_batch_max,
            });
        }
        let ts = timestamp_ms.unwrap_or(self.now_ms);
        let min = self
            .now_ms
            .saturating_sub(self.limits.timestamp_past_ms_max);
        let max = self
            .now_ms
            .saturating_add(self.limits.timestamp_future_ms_max);
        if ts < min || ts > max {
            return Err(PushRejection::Timestamp { ts, min, max });
        }
        Ok(ts)
    }

    /// Checks the sample just appended (at `ts`) against its series' earlier ones: a
    /// duplicate timestamp is refused.
    fn order(&mut self, ts: i64) -> Result<(), PushRejection> {
        let index = self.batch.len() - 1;
        let series = self.batch.samples()[index].series;
        if self.seen.is_none() {
            match self.newest.get_mut(series as usize) {
                None => {
                    debug_assert_eq!(series as usize, self.newest.len(), "series in order");
                    self.newest.push(ts);
                    return Ok(());
                }
                Some(newest) if ts > *newest => {
                    *newest = ts;
                    return Ok(());
                }
                Some(_) => {}
            }
        }
        let samples = self.batch.samples();
        let seen = self.seen.get_or_insert_with(|| {
            // No two earlier samples share series and timestamp: each series' rose.
            samples[..index]
                .iter()
                .enumerate()
                .map(|(i, s)| ((s.series, s.timestamp_ms), i))
                .collect()
        });
        if let Some(&first) = seen.get(&(series, ts)) {
            // The batch is dropped on any error, so the extra sample never escapes.
            return Err(PushRejection::Duplicate { first });
        }
        seen.insert((series, ts), index);
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.batch.len()
    }

    pub(crate) fn finish(self) -> SampleBatch {
        self.batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check_metric(name: &str, expect: Expect) {
        let got = match validate_metric_name(name) {
            Ok(()) => "ok".to_string(),
            Err(e) => e,
        };
        expect.assert_eq(&got);
    }

    fn check_label(name: &str, expect: Expect) {
        let got = match validate_label_name(name) {
            Ok(()) => "ok".to_string(),
            Err(e) => e,
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn metric_names() {
        check_metric("cpu_load", expect!["ok"]);
        check_metric(":job:rate5m", expect!["ok"]);
        check_metric("_x9", expect!["ok"]);
        check_metric("", expect!["metric name is empty"]);
        check_metric(
            "9x",
            expect!["metric name `9x` must match [a-zA-Z_:][a-zA-Z0-9_:]*"],
        );
        check_metric(
            "a-b",
            expect!["metric name `a-b` must match [a-zA-Z_:][a-zA-Z0-9_:]*"],
        );
        check_metric(
            "é",
            expect!["metric name `é` must match [a-zA-Z_:][a-zA-Z0-9_:]*"],
        );
    }

    #[test]
    fn label_names() {
        check_label("host", expect!["ok"]);
        check_label("_private", expect!["ok"]);
        check_label("", expect!["label name is empty"]);
        check_label(
            "a:b",
            expect!["label name `a:b` must match [a-zA-Z_][a-zA-Z0-9_]*"],
        );
        check_label(
            "1a",
            expect!["label name `1a` must match [a-zA-Z_][a-zA-Z0-9_]*"],
        );
        check_label(
            "__name__",
            expect!["label name `__name__` is reserved: names starting with `__` are Assay's own; rename it"],
        );
        check_label(
            "__x",
            expect![
                "label name `__x` is reserved: names starting with `__` are Assay's own; rename it"
            ],
        );
    }

    #[test]
    fn label_limits_at_the_edge() {
        let limits = Limits {
            labels_per_series_max: 2,
            label_name_bytes_max: 3,
            label_value_bytes_max: 2,
            ..Limits::default()
        };
        let mut s = SeriesLabels::new(&limits);
        assert_eq!(s.add("abc".into(), "xy".into()), Ok(()));
        expect!["label name `abcd…` is 4 bytes, over label_name_bytes_max = 3"]
            .assert_eq(&s.add("abcd".into(), "x".into()).unwrap_err());
        expect!["value of label `b` is 3 bytes, over label_value_bytes_max = 2"]
            .assert_eq(&s.add("b".into(), "xyz".into()).unwrap_err());
        expect!["label `abc` is given twice in one series"]
            .assert_eq(&s.add("abc".into(), "x".into()).unwrap_err());
        assert_eq!(s.add("e".into(), "".into()), Ok(()));
        expect!["series has more than labels_per_series_max = 2 labels; drop some"]
            .assert_eq(&s.add("f".into(), "x".into()).unwrap_err());
        // The empty-valued label is dropped from the identity.
        let labels = s.finish("m");
        assert_eq!(
            labels.pairs().collect::<Vec<_>>(),
            [("__name__", "m"), ("abc", "xy")]
        );
    }

    #[test]
    fn builder_enforces_count_window_and_duplicates() {
        let limits = Limits {
            samples_per_batch_max: 3,
            timestamp_past_ms_max: 10,
            timestamp_future_ms_max: 5,
            ..Limits::default()
        };
        let mut b = BatchBuilder::new(&limits, 1000);
        let l = || SeriesLabels::new(&limits).finish("m");
        assert_eq!(b.push(l(), Some(990), 1.0), Ok(()));
        assert_eq!(b.push(l(), Some(1005), 1.0), Ok(()));
        assert_eq!(
            b.push(l(), Some(989), 1.0),
            Err(PushRejection::Timestamp {
                ts: 989,
                min: 990,
                max: 1005
            })
        );
        assert_eq!(
            b.push(l(), Some(1006), 1.0),
            Err(PushRejection::Timestamp {
                ts: 1006,
                min: 990,
                max: 1005
            })
        );
        assert_eq!(
            b.push(l(), Some(990), 2.0),
            Err(PushRejection::Duplicate { first: 0 })
        );
        let mut b = BatchBuilder::new(&limits, 1000);
        for _ in 0..3 {
            let ts = Some(1000 - b.len() as i64);
            assert_eq!(b.push(l(), ts, 1.0), Ok(()));
        }
        assert_eq!(
            b.push(l(), Some(900), 1.0),
            Err(PushRejection::TooMany { max: 3 })
        );
    }

    proptest::proptest! {
        #[test]
        fn a_repeated_series_and_timestamp_is_rejected_naming_the_first(
            pushes in proptest::collection::vec((0u8..4, 0i64..8), 0..40),
        ) {
            let limits = Limits::default();
            let mut b = BatchBuilder::new(&limits, 1000);
            let mut first = std::collections::HashMap::new();
            for (i, (series, ts)) in pushes.into_iter().enumerate() {
                let mut s = SeriesLabels::new(&limits);
                s.add("s".into(), series.to_string()).unwrap();
                let want = match first.get(&(series, ts)) {
                    Some(&f) => Err(PushRejection::Duplicate { first: f }),
                    None => Ok(()),
                };
                first.entry((series, ts)).or_insert(i);
                let got = b.push(s.finish("m"), Some(1000 - ts), 1.0);
                proptest::prop_assert_eq!(&got, &want);
                if got.is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn window_saturates_at_extreme_now() {
        let limits = Limits::default();
        let mut b = BatchBuilder::new(&limits, i64::MAX);
        assert_eq!(
            b.push(SeriesLabels::new(&limits).finish("m"), None, 1.0),
            Ok(())
        );
    }
}

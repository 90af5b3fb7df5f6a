//! Metric metadata (type, help, unit) as senders declare it, for Prometheus'
//! `/api/v1/metadata`.
//!
//! Like Prometheus, a metric may carry several distinct records (two targets that disagree
//! on a help text). Each metric keeps its most recent [`RECORDS_PER_METRIC_MAX`] distinct
//! records, newest last; a record seen again moves to the end. At most [`METRICS_MAX`]
//! metrics are kept: past it, records for new metrics are dropped (counted), since a
//! sender inventing metric names should not grow the view without bound.

use std::collections::BTreeMap;

use assay_ledger::MetricMetadata;

/// Distinct records kept per metric.
pub const RECORDS_PER_METRIC_MAX: usize = 4;
/// Metrics with metadata kept.
pub const METRICS_MAX: usize = 1_000_000;

/// Record as kept: everything but the metric name, which is the map key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataRecord {
    /// The type.
    pub kind: assay_ledger::MetricType,
    /// Help text.
    pub help: String,
    /// Unit.
    pub unit: String,
}

/// Metadata by metric name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MetadataStore {
    pub(crate) by_metric: BTreeMap<String, Vec<MetadataRecord>>,
    /// Records refused because [`METRICS_MAX`] was reached (not part of the state digest:
    /// it is a counter for operators; it is still deterministic).
    pub(crate) dropped: u64,
}

impl MetadataStore {
    /// Applies one entry's records, in order.
    pub(crate) fn apply(&mut self, records: &[MetricMetadata]) {
        for m in records {
            let record = MetadataRecord {
                kind: m.kind,
                help: m.help.clone(),
                unit: m.unit.clone(),
            };
            if !self.by_metric.contains_key(&m.metric) && self.by_metric.len() >= METRICS_MAX {
                self.dropped += 1;
                continue;
            }
            let list = match self.by_metric.get_mut(&m.metric) {
                Some(list) => list,
                None => self.by_metric.entry(m.metric.clone()).or_default(),
            };
            if let Some(at) = list.iter().position(|r| *r == record) {
                let r = list.remove(at);
                list.push(r);
            } else {
                if list.len() >= RECORDS_PER_METRIC_MAX {
                    list.remove(0);
                }
                list.push(record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_ledger::MetricType;

    fn m(metric: &str, help: &str) -> MetricMetadata {
        MetricMetadata {
            metric: metric.into(),
            kind: MetricType::Counter,
            help: help.into(),
            unit: String::new(),
        }
    }

    #[test]
    fn keeps_distinct_records_newest_last_and_bounded() {
        let mut s = MetadataStore::default();
        s.apply(&[m("a", "one"), m("a", "two"), m("a", "one")]);
        let helps = |s: &MetadataStore| -> Vec<String> {
            s.by_metric["a"].iter().map(|r| r.help.clone()).collect()
        };
        assert_eq!(helps(&s), ["two", "one"]);
        s.apply(&[m("a", "3"), m("a", "4"), m("a", "5")]);
        assert_eq!(helps(&s), ["one", "3", "4", "5"]);
    }
}

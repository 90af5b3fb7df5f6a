//! JUnit XML reports → CI KPIs. The counting rules are in the crate docs.

use assay_ledger::{Entry, Labels};
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};
use sha2::{Digest, Sha256};

use crate::validate::{check_label_value, BatchBuilder, SeriesLabels};
use crate::{utf8_body, IngestError, IngestErrorKind, Limits, LineColumn};

/// Most `<testsuite>` elements one report may hold (each adds six series).
pub const JUNIT_SUITES_MAX: usize = 10_000;
/// Deepest element nesting accepted (real reports nest 3–5 deep).
pub const JUNIT_DEPTH_MAX: usize = 64;

/// The suite label of a `<testsuite>` without a `name`.
const SUITE_UNNAMED: &str = "<unnamed>";

/// Which CI run a report belongs to; each becomes a label of every KPI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CiRun {
    /// The pipeline (workflow) name.
    pub pipeline: String,
    /// The job within the pipeline.
    pub job: String,
    /// The run's identifier (build number, run id).
    pub run: String,
}

/// Parses a JUnit XML report into a [`Entry::CiReport`] of KPIs, or names line and column.
pub fn parse_junit(
    body: &[u8],
    run: &CiRun,
    now_ms: i64,
    limits: &Limits,
) -> Result<Entry, IngestError> {
    let text = utf8_body(body)?;
    check_run(run, limits)?;
    let report = read_report(text, limits)?;
    let batch = kpi_batch(&report, run, now_ms, limits)?;
    let report_sha256: [u8; 32] = Sha256::digest(body).into();
    Ok(Entry::CiReport {
        report_sha256,
        batch,
    })
}

fn check_run(run: &CiRun, limits: &Limits) -> Result<(), IngestError> {
    for (field, value) in [
        ("pipeline", &run.pipeline),
        ("job", &run.job),
        ("run", &run.run),
    ] {
        let why = if value.is_empty() {
            Some("is empty; name the CI run".to_string())
        } else {
            check_label_value(field, value, limits).err()
        };
        if let Some(why) = why {
            return Err(IngestError::new(
                IngestErrorKind::BadRequest,
                format!("field `run.{field}`: {why}"),
                serde_json::json!({ "field": format!("run.{field}") }),
            ));
        }
    }
    Ok(())
}

/// Outcome counts of a set of testcases.
#[derive(Clone, Debug, Default, PartialEq)]
struct Counts {
    passed: u64,
    failed: u64,
    errored: u64,
    skipped: u64,
    /// Summed `time=` of the testcases, in whole microseconds so sums are exact.
    duration_us: u64,
}

impl Counts {
    fn tests(&self) -> u64 {
        self.passed + self.failed + self.errored + self.skipped
    }

    fn add_case(&mut self, case: &CaseFrame) {
        // One outcome per testcase, the most severe child winning.
        if case.error {
            self.errored += 1;
        } else if case.failure {
            self.failed += 1;
        } else if case.skipped {
            self.skipped += 1;
        } else {
            self.passed += 1;
        }
        self.duration_us = self.duration_us.saturating_add(case.duration_us);
    }
}

/// What a report adds up to.
#[derive(Debug, Default)]
struct Report {
    total: Counts,
    /// The root element's `errors` attribute, if any.
    root_errors: Option<u64>,
    /// Per suite name, in first-appearance order.
    suites: Vec<(String, Counts)>,
}

#[derive(Debug)]
struct CaseFrame {
    suite: Option<usize>,
    error: bool,
    failure: bool,
    skipped: bool,
    duration_us: u64,
}

/// An open element.
#[derive(Debug)]
enum Frame {
    Suite(usize),
    Case(CaseFrame),
    Other,
}

/// A reader that knows the text, to turn offsets into line and column.
struct XmlSource<'t> {
    text: &'t str,
    reader: Reader<&'t [u8]>,
}

impl XmlSource<'_> {
    fn error_at(&self, offset: u64, kind: IngestErrorKind, what: &str) -> IngestError {
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        IngestError::at_line(
            kind,
            LineColumn::of_offset(self.text.as_bytes(), offset),
            what,
        )
    }
}

fn read_report(text: &str, limits: &Limits) -> Result<Report, IngestError> {
    let mut src = XmlSource {
        text,
        reader: Reader::from_str(text),
    };
    let mut report = Report::default();
    // (frame, element name, start offset) of every open element.
    let mut stack: Vec<(Frame, String, u64)> = Vec::new();
    let mut seen_root = false;
    let mut cases = 0usize;
    let mut suites = 0usize;
    loop {
        let start = src.reader.buffer_position();
        let event = src.reader.read_event().map_err(|e| {
            let at = src.reader.error_position();
            src.error_at(
                at,
                IngestErrorKind::BadRequest,
                &format!("malformed XML: {e}"),
            )
        })?;
        let (element, empty) = match event {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                // quick-xml checks end names, so this only guards against a change there.
                let Some((frame, _, _)) = stack.pop() else {
                    return Err(src.error_at(
                        start,
                        IngestErrorKind::BadRequest,
                        "an end tag closes no open element",
                    ));
                };
                close(frame, &mut report);
                continue;
            }
            Event::Text(t)
                if stack.is_empty()
                    && !t.as_ref().trim_matches([' ', '\t', '\r', '\n']).is_empty() =>
            {
                return Err(src.error_at(
                    start,
                    IngestErrorKind::BadRequest,
                    "text outside the root element; is this a JUnit XML report?",
                ));
            }
            Event::CData(_) | Event::GeneralRef(_) if stack.is_empty() => {
                return Err(src.error_at(
                    start,
                    IngestErrorKind::BadRequest,
                    "text outside the root element; is this a JUnit XML report?",
                ));
            }
            Event::Eof => break,
            // Declarations, comments, processing instructions, DTDs (never expanded) and text
            // inside elements carry nothing we count.
            _ => continue,
        };
        let name = element.name().as_ref().to_string();
        if stack.len() >= JUNIT_DEPTH_MAX {
            return Err(src.error_at(
                start,
                IngestErrorKind::BadRequest,
                &format!("elements nest deeper than JUNIT_DEPTH_MAX = {JUNIT_DEPTH_MAX}"),
            ));
        }
        if stack.is_empty() {
            if seen_root {
                return Err(src.error_at(
                    start,
                    IngestErrorKind::BadRequest,
                    &format!("a second root element <{name}>; a report has one root"),
                ));
            }
            if name != "testsuites" && name != "testsuite" {
                return Err(src.error_at(
                    start,
                    IngestErrorKind::BadRequest,
                    &format!("the root element is <{name}>, expected <testsuites> or <testsuite>"),
                ));
            }
            seen_root = true;
        }
        let attrs = Attrs::read(&src, &element, start)?;
        if stack.is_empty() {
            report.root_errors = attrs
                .count("errors")
                .map_err(|e| src.error_at(start, IngestErrorKind::BadRequest, &e))?;
        }
        let frame = match name.as_str() {
            "testsuites" => {
                attrs
                    .seconds()
                    .map_err(|e| src.error_at(start, IngestErrorKind::BadRequest, &e))?;
                Frame::Other
            }
            "testsuite" => {
                suites += 1;
                if suites > JUNIT_SUITES_MAX {
                    return Err(src.error_at(start, IngestErrorKind::PayloadTooLarge, &format!("more than JUNIT_SUITES_MAX = {JUNIT_SUITES_MAX} <testsuite> elements; split the report")));
                }
                attrs
                    .seconds()
                    .map_err(|e| src.error_at(start, IngestErrorKind::BadRequest, &e))?;
                let suite_name = attrs
                    .get("name")
                    .filter(|n| !n.is_empty())
                    .unwrap_or(SUITE_UNNAMED);
                check_label_value("suite", suite_name, limits).map_err(|e| {
                    src.error_at(
                        start,
                        IngestErrorKind::BadRequest,
                        &format!("<testsuite name>: {e}"),
                    )
                })?;
                Frame::Suite(suite_index(&mut report, suite_name))
            }
            "testcase" => {
                cases += 1;
                if cases > limits.junit_testcases_max {
                    return Err(src.error_at(start, IngestErrorKind::PayloadTooLarge, &format!("more than junit_testcases_max = {} <testcase> elements; split the report", limits.junit_testcases_max)));
                }
                let seconds = attrs
                    .seconds()
                    .map_err(|e| src.error_at(start, IngestErrorKind::BadRequest, &e))?;
                let suite = stack.iter().rev().find_map(|(f, _, _)| match f {
                    Frame::Suite(i) => Some(*i),
                    _ => None,
                });
                Frame::Case(CaseFrame {
                    suite,
                    error: false,
                    failure: false,
                    skipped: false,
                    duration_us: seconds_to_us(seconds.unwrap_or(0.0)),
                })
            }
            outcome @ ("error" | "failure" | "skipped") => {
                // Only direct children of a testcase: Surefire's <flakyFailure> and
                // <rerunFailure> are other names, so a test that passed on rerun passes.
                if let Some((Frame::Case(case), _, _)) = stack.last_mut() {
                    match outcome {
                        "error" => case.error = true,
                        "failure" => case.failure = true,
                        _ => case.skipped = true,
                    }
                }
                Frame::Other
            }
            _ => Frame::Other,
        };
        if empty {
            close(frame, &mut report);
        } else {
            stack.push((frame, name, start));
        }
    }
    if let Some((_, name, opened)) = stack.last() {
        let pos = LineColumn::of_offset(
            text.as_bytes(),
            usize::try_from(*opened).unwrap_or(usize::MAX),
        );
        let what = format!(
            "the report ends inside <{name}> opened at line {}, column {}; the upload is truncated",
            pos.line, pos.column
        );
        return Err(src.error_at(text.len() as u64, IngestErrorKind::BadRequest, &what));
    }
    if !seen_root {
        return Err(src.error_at(
            text.len() as u64,
            IngestErrorKind::BadRequest,
            "the body holds no XML element; send a JUnit XML report",
        ));
    }
    Ok(report)
}

fn close(frame: Frame, report: &mut Report) {
    if let Frame::Case(case) = frame {
        report.total.add_case(&case);
        if let Some(i) = case.suite {
            report.suites[i].1.add_case(&case);
        }
    }
}

/// The index of the suite named `name`, added on first sight (same names are merged).
fn suite_index(report: &mut Report, name: &str) -> usize {
    // Linear, but bounded by JUNIT_SUITES_MAX and only run once per <testsuite> element.
    match report.suites.iter().position(|(n, _)| n == name) {
        Some(i) => i,
        None => {
            report.suites.push((name.to_string(), Counts::default()));
            report.suites.len() - 1
        }
    }
}

fn seconds_to_us(seconds: f64) -> u64 {
    // `as` saturates for huge values; seconds are checked finite and non-negative.
    (seconds * 1e6).round() as u64
}

/// The attributes of one element, unescaped.
struct Attrs(Vec<(String, String)>);

impl Attrs {
    fn read(
        src: &XmlSource<'_>,
        element: &BytesStart<'_>,
        start: u64,
    ) -> Result<Attrs, IngestError> {
        let mut out = Vec::new();
        for attr in element.attributes() {
            let bad = |e: &dyn std::fmt::Display| {
                src.error_at(
                    start,
                    IngestErrorKind::BadRequest,
                    &format!("malformed attribute: {e}"),
                )
            };
            let attr = attr.map_err(|e| bad(&e))?;
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| bad(&e))?;
            let key = attr.key.as_ref().to_string();
            out.push((key, value.into_owned()));
        }
        Ok(Attrs(out))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `time` attribute in seconds, if present.
    fn seconds(&self) -> Result<Option<f64>, String> {
        let Some(raw) = self.get("time") else {
            return Ok(None);
        };
        // Old Surefire versions format times with a thousands separator ("1,234.5").
        let plain = raw.replace(',', "");
        match plain.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => Ok(Some(s)),
            _ => Err(format!(
                "time=\"{raw}\" is not a non-negative number of seconds"
            )),
        }
    }

    /// A non-negative integer attribute, if present.
    fn count(&self, key: &str) -> Result<Option<u64>, String> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        raw.trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{key}=\"{raw}\" is not a non-negative integer"))
    }
}

/// The KPI series: totals first, then each suite, six series each, all at `now_ms`.
fn kpi_batch(
    report: &Report,
    run: &CiRun,
    now_ms: i64,
    limits: &Limits,
) -> Result<assay_ledger::SampleBatch, IngestError> {
    let mut total = report.total.clone();
    // A build failure gotestsum reports only as the root's errors="1" must not vanish.
    let uncounted = report
        .root_errors
        .unwrap_or(0)
        .saturating_sub(total.errored);
    total.errored += uncounted;
    let mut builder = BatchBuilder::new(limits, now_ms);
    push_counts(&mut builder, run, None, &total, limits)?;
    for (name, counts) in &report.suites {
        push_counts(&mut builder, run, Some(name), counts, limits)?;
    }
    Ok(builder.finish())
}

fn push_counts(
    builder: &mut BatchBuilder<'_>,
    run: &CiRun,
    suite: Option<&str>,
    counts: &Counts,
    limits: &Limits,
) -> Result<(), IngestError> {
    let kpis = [
        ("ci_tests", counts.tests() as f64),
        ("ci_tests_passed", counts.passed as f64),
        ("ci_tests_failed", counts.failed as f64),
        ("ci_tests_errored", counts.errored as f64),
        ("ci_tests_skipped", counts.skipped as f64),
        ("ci_test_duration_seconds", counts.duration_us as f64 / 1e6),
    ];
    for (metric, value) in kpis {
        let labels = kpi_labels(run, suite, metric, limits).map_err(|why| {
            IngestError::new(
                IngestErrorKind::BadRequest,
                format!("the report's KPI labels: {why}"),
                serde_json::json!({ "field": "run" }),
            )
        })?;
        builder.push(labels, None, value).map_err(|r| {
            let (kind, why) = r.describe();
            IngestError::new(
                kind,
                format!("the report's KPIs (six per suite): {why}"),
                serde_json::json!({ "element": "testsuite" }),
            )
        })?;
    }
    Ok(())
}

fn kpi_labels(
    run: &CiRun,
    suite: Option<&str>,
    metric: &str,
    limits: &Limits,
) -> Result<Labels, String> {
    let mut labels = SeriesLabels::new(limits);
    labels.add("pipeline".to_string(), run.pipeline.clone())?;
    labels.add("job".to_string(), run.job.clone())?;
    labels.add("run".to_string(), run.run.clone())?;
    if let Some(suite) = suite {
        labels.add("suite".to_string(), suite.to_string())?;
    }
    Ok(labels.finish(metric))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    const NOW: i64 = 1_700_000_000_000;

    fn run() -> CiRun {
        CiRun {
            pipeline: "p".into(),
            job: "j".into(),
            run: "1".into(),
        }
    }

    /// Renders `suite: tests passed failed errored skipped seconds` rows, or the error.
    fn check_with(xml: &str, limits: &Limits, expect: Expect) {
        let got = match parse_junit(xml.as_bytes(), &run(), NOW, limits) {
            Ok(entry) => {
                let mut rows: Vec<(String, Vec<String>)> = Vec::new();
                for (labels, _, value) in entry.batch().iter() {
                    let suite = labels.get("suite").unwrap_or("(report)").to_string();
                    match rows.iter_mut().find(|(s, _)| *s == suite) {
                        Some((_, cells)) => cells.push(value.to_string()),
                        None => rows.push((suite, vec![value.to_string()])),
                    }
                }
                rows.iter()
                    .map(|(s, c)| format!("{s}: {}\n", c.join(" ")))
                    .collect()
            }
            Err(e) => format!("{:?} {}\n{}\n", e.kind, e.message, e.detail),
        };
        expect.assert_eq(&got);
    }

    fn check(xml: &str, expect: Expect) {
        check_with(xml, &Limits::default(), expect)
    }

    #[test]
    fn nested_suites_count_for_the_innermost_and_merge_by_name() {
        check(
            r#"<?xml version="1.0"?>
<!-- comment --><testsuites errors="0">
  <testsuite name="outer" time="9">
    <testcase name="a" time="0.5"/>
    <testsuite name="inner">
      <testcase name="b" time="0.25"><failure/><error/></testcase>
      <testcase name="c"><skipped/><system-out>x &amp; y</system-out></testcase>
    </testsuite>
  </testsuite>
  <testsuite name="inner"><testcase name="d"><failure message="x"/></testcase></testsuite>
  <testsuite><testcase name="e" time="1,000.5"><flakyFailure/></testcase></testsuite>
  <testsuite name="empty"/>
</testsuites>"#,
            expect![[r#"
                (report): 5 2 1 1 1 1001.25
                outer: 1 1 0 0 0 0.5
                inner: 3 0 1 1 1 0.25
                <unnamed>: 1 1 0 0 0 1000.5
                empty: 0 0 0 0 0 0
            "#]],
        );
    }

    #[test]
    fn root_errors_beyond_the_counted_ones_stay_in_the_totals() {
        check(
            r#"<testsuites errors="3"><testsuite name="s"><testcase name="a"><error/></testcase></testsuite></testsuites>"#,
            expect![[r#"
                (report): 3 0 0 3 0 0
                s: 1 0 0 1 0 0
            "#]],
        );
        // A bare <testsuite> root's errors attribute counts the same way.
        check(
            r#"<testsuite name="s" errors="2"></testsuite>"#,
            expect![[r#"
                (report): 2 0 0 2 0 0
                s: 0 0 0 0 0 0
            "#]],
        );
    }

    #[test]
    fn malformed_input_names_line_and_column() {
        check(
            "<testsuites>\n  <testsuite name=\"s\">\n    <testcase name=\"a\" time=\"fast\"/>",
            expect![[r#"
                BadRequest line 3, column 5: time="fast" is not a non-negative number of seconds
                {"column":5,"line":3}
            "#]],
        );
        check(
            "<testsuites>\n  <testsuite name=\"s\">\n    <testcase name=\"a\">",
            expect![[r#"
                BadRequest line 3, column 24: the report ends inside <testcase> opened at line 3, column 5; the upload is truncated
                {"column":24,"line":3}
            "#]],
        );
        check(
            "<testsuites>\n<testsuite></testcase></testsuites>",
            expect![[r#"
                BadRequest line 2, column 12: malformed XML: ill-formed document: expected `</testsuite>`, but `</testcase>` was found
                {"column":12,"line":2}
            "#]],
        );
        check(
            "PASS src/app.test.js\n",
            expect![[r#"
                BadRequest line 1, column 1: text outside the root element; is this a JUnit XML report?
                {"column":1,"line":1}
            "#]],
        );
        check(
            "<html><body/></html>",
            expect![[r#"
                BadRequest line 1, column 1: the root element is <html>, expected <testsuites> or <testsuite>
                {"column":1,"line":1}
            "#]],
        );
        check(
            "<testsuite/><testsuite/>",
            expect![[r#"
                BadRequest line 1, column 13: a second root element <testsuite>; a report has one root
                {"column":13,"line":1}
            "#]],
        );
        check(
            "<testsuites errors=\"many\"/>",
            expect![[r#"
                BadRequest line 1, column 1: errors="many" is not a non-negative integer
                {"column":1,"line":1}
            "#]],
        );
        check(
            "<testsuite name=\"a &bogus; b\"/>",
            expect![[r#"
                BadRequest line 1, column 1: malformed attribute: at 3..8: unrecognized entity `bogus`
                {"column":1,"line":1}
            "#]],
        );
        check(
            "<testsuite name=\"a\" name=\"b\"/>",
            expect![[r#"
                BadRequest line 1, column 1: malformed attribute: position 19: duplicated attribute, previous declaration at position 10
                {"column":1,"line":1}
            "#]],
        );
        check(
            "",
            expect![[r#"
                BadRequest line 1, column 1: the body holds no XML element; send a JUnit XML report
                {"column":1,"line":1}
            "#]],
        );
        check(
            "<testsuite><testcase time=\"NaN\"/></testsuite>",
            expect![[r#"
                BadRequest line 1, column 12: time="NaN" is not a non-negative number of seconds
                {"column":12,"line":1}
            "#]],
        );
    }

    #[test]
    fn limits_at_the_edge() {
        let limits = Limits {
            junit_testcases_max: 2,
            ..Limits::default()
        };
        check_with(
            "<testsuite name=\"s\"><testcase/><testcase/></testsuite>",
            &limits,
            expect![[r#"
            (report): 2 2 0 0 0 0
            s: 2 2 0 0 0 0
        "#]],
        );
        check_with(
            "<testsuite name=\"s\"><testcase/><testcase/><testcase/></testsuite>",
            &limits,
            expect![[r#"
            PayloadTooLarge line 1, column 43: more than junit_testcases_max = 2 <testcase> elements; split the report
            {"column":43,"line":1}
        "#]],
        );
        let deep_ok = format!(
            "<testsuites>{}{}</testsuites>",
            "<x>".repeat(JUNIT_DEPTH_MAX - 1),
            "</x>".repeat(JUNIT_DEPTH_MAX - 1)
        );
        check(
            &deep_ok,
            expect![[r#"
            (report): 0 0 0 0 0 0
        "#]],
        );
        let too_deep = format!(
            "<testsuites>{}{}</testsuites>",
            "<x>".repeat(JUNIT_DEPTH_MAX),
            "</x>".repeat(JUNIT_DEPTH_MAX)
        );
        check(
            &too_deep,
            expect![[r#"
            BadRequest line 1, column 202: elements nest deeper than JUNIT_DEPTH_MAX = 64
            {"column":202,"line":1}
        "#]],
        );
        // Two suites make 18 samples: totals plus six per suite.
        let limits = Limits {
            samples_per_batch_max: 17,
            ..Limits::default()
        };
        check_with(
            "<testsuites><testsuite name=\"a\"/><testsuite name=\"b\"/></testsuites>",
            &limits,
            expect![[r#"
            PayloadTooLarge the report's KPIs (six per suite): more than samples_per_batch_max = 17 samples; split the upload
            {"element":"testsuite"}
        "#]],
        );
        let limits = Limits {
            label_value_bytes_max: 3,
            ..Limits::default()
        };
        check_with(
            "<testsuite name=\"abcd\"/>",
            &limits,
            expect![[r#"
            BadRequest line 1, column 1: <testsuite name>: value of label `suite` is 4 bytes, over label_value_bytes_max = 3
            {"column":1,"line":1}
        "#]],
        );
    }

    #[test]
    fn suite_count_is_bounded() {
        let many = format!(
            "<testsuites>{}</testsuites>",
            "<testsuite/>".repeat(JUNIT_SUITES_MAX + 1)
        );
        let e = parse_junit(many.as_bytes(), &run(), NOW, &Limits::default()).unwrap_err();
        assert_eq!(e.kind, IngestErrorKind::PayloadTooLarge);
        expect!["line 1, column 120013: more than JUNIT_SUITES_MAX = 10000 <testsuite> elements; split the report"].assert_eq(&e.message);
    }

    #[test]
    fn run_fields_are_checked() {
        let bad = CiRun {
            pipeline: "".into(),
            job: "j".into(),
            run: "1".into(),
        };
        let e = parse_junit(b"<testsuite/>", &bad, NOW, &Limits::default()).unwrap_err();
        expect!["field `run.pipeline`: is empty; name the CI run"].assert_eq(&e.message);
        let limits = Limits {
            label_value_bytes_max: 1,
            ..Limits::default()
        };
        let long = CiRun {
            pipeline: "p".into(),
            job: "jj".into(),
            run: "1".into(),
        };
        let e = parse_junit(b"<testsuite/>", &long, NOW, &limits).unwrap_err();
        expect!["field `run.job`: value of label `job` is 2 bytes, over label_value_bytes_max = 1"]
            .assert_eq(&e.message);
    }

    #[test]
    fn report_hash_is_of_the_raw_body() {
        let body = b"<testsuite name=\"s\"><testcase/></testsuite>";
        let Entry::CiReport { report_sha256, .. } =
            parse_junit(body, &run(), NOW, &Limits::default()).unwrap()
        else {
            panic!("parse_junit returns a CI report");
        };
        expect!["c125273203a2c369a252d183118fee2fea39cf947f14ea739582c195dbdebaec"]
            .assert_eq(&hex(&report_sha256));
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

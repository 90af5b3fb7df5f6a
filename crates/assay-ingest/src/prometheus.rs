//! The Prometheus text exposition format, version 0.0.4, as exporters serve it on `/metrics`.
//!
//! Grammar of one line (blanks are spaces and tabs):
//!
//! ```text
//! line    := blank* ( comment | sample )? blank*
//! comment := '#' ( blank* 'HELP' blank+ name (blank+ docstring)?
//!                | blank* 'TYPE' blank+ name blank+ type
//!                | anything )
//! sample  := name blank* ( '{' (label (',' label)* ','?)? '}' )? blank* value (blank+ timestamp)?
//! label   := blank* lname blank* '=' blank* '"' escaped* '"' blank*
//! ```

use assay_ledger::{MetricMetadata, MetricType, SampleBatch};

use crate::validate::{check_metric_name, BatchBuilder, SeriesLabels};
use crate::{utf8_body, IngestError, IngestErrorKind, Limits, LineColumn};

/// Metric types a `# TYPE` line may name.
const METRIC_TYPES: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];

/// Parses an exposition body into a batch, or names the first offending line and column.
pub fn parse_prometheus_text(
    body: &[u8],
    now_ms: i64,
    limits: &Limits,
) -> Result<SampleBatch, IngestError> {
    parse_prometheus_text_with_metadata(body, now_ms, limits).map(|(batch, _)| batch)
}

/// As [`parse_prometheus_text`], also returning the `# HELP` / `# TYPE` metadata, one record
/// per metric that has either (help unescaped; `untyped` and a missing type are `Unknown`;
/// a metric given twice keeps the last of each line kind).
pub fn parse_prometheus_text_with_metadata(
    body: &[u8],
    now_ms: i64,
    limits: &Limits,
) -> Result<(SampleBatch, Vec<MetricMetadata>), IngestError> {
    let text = utf8_body(body)?;
    let mut builder = BatchBuilder::new(limits, now_ms);
    let mut metadata: std::collections::BTreeMap<&str, MetricMetadata> = Default::default();
    for (index, raw) in text.split('\n').enumerate() {
        // Tolerate CRLF line ends (files edited on Windows), which Prometheus itself does not.
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let mut cursor = Cursor {
            text: line,
            pos: 0,
            line: index + 1,
        };
        cursor.skip_blanks();
        match cursor.peek() {
            None => {}
            Some('#') => {
                if let Some((name, line)) = parse_comment(&mut cursor)? {
                    if metadata.len() >= limits.samples_per_batch_max
                        && !metadata.contains_key(name)
                    {
                        return Err(
                            cursor.error_at(0, "more metadata lines than samples_per_batch_max")
                        );
                    }
                    let m = metadata.entry(name).or_insert_with(|| MetricMetadata {
                        metric: name.to_string(),
                        kind: MetricType::Unknown,
                        help: String::new(),
                        unit: String::new(),
                    });
                    match line {
                        MetaLine::Help(h) => m.help = h,
                        MetaLine::Type(t) => m.kind = t,
                    }
                }
            }
            Some(_) => parse_sample(&mut cursor, limits, &mut builder)?,
        }
    }
    if builder.len() == 0 {
        return Err(IngestError::new(
            IngestErrorKind::BadRequest,
            "the body holds no sample line; send at least one sample".to_string(),
            serde_json::json!({}),
        ));
    }
    Ok((builder.finish(), metadata.into_values().collect()))
}

/// What a `# HELP` or `# TYPE` line says.
enum MetaLine {
    Help(String),
    Type(MetricType),
}

/// A position inside one line.
struct Cursor<'t> {
    text: &'t str,
    /// Byte offset into `text`.
    pos: usize,
    /// 1-based line number.
    line: usize,
}

impl<'t> Cursor<'t> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_blanks(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Takes characters while `keep` holds.
    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'t str {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.bump();
        }
        &self.text[start..self.pos]
    }

    /// Takes a token up to the next blank or the end of the line.
    fn token(&mut self) -> &'t str {
        self.take_while(|c| c != ' ' && c != '\t')
    }

    fn at_end(&self) -> bool {
        self.pos == self.text.len()
    }

    fn position(&self, pos: usize) -> LineColumn {
        let column = self.text[..pos].chars().count() + 1;
        LineColumn {
            line: self.line,
            column,
        }
    }

    /// A 400 at byte offset `pos` of this line.
    fn error_at(&self, pos: usize, what: &str) -> IngestError {
        IngestError::at_line(IngestErrorKind::BadRequest, self.position(pos), what)
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// `# HELP`, `# TYPE` (checked, returned with the metric name) or any other comment
/// (ignored).
fn parse_comment<'t>(c: &mut Cursor<'t>) -> Result<Option<(&'t str, MetaLine)>, IngestError> {
    c.bump(); // '#'
    c.skip_blanks();
    let keyword = c.token();
    if keyword != "HELP" && keyword != "TYPE" {
        return Ok(None);
    }
    if c.skip_blanks() == 0 {
        return Err(c.error_at(
            c.pos,
            &format!("expected a metric name after `# {keyword}`"),
        ));
    }
    let name_at = c.pos;
    let name = c.token();
    crate::validate_metric_name(name).map_err(|e| c.error_at(name_at, &e))?;
    let gap = c.skip_blanks();
    if keyword == "HELP" {
        if !c.at_end() && gap == 0 {
            return Err(c.error_at(
                c.pos,
                "expected a blank between the metric name and the help text",
            ));
        }
        return help_text(c).map(|h| Some((name, MetaLine::Help(h))));
    }
    let type_at = c.pos;
    let kind = c.token();
    if !METRIC_TYPES.contains(&kind) {
        return Err(c.error_at(
            type_at,
            &format!(
                "metric type `{kind}` is not one of counter, gauge, histogram, summary, untyped"
            ),
        ));
    }
    c.skip_blanks();
    if !c.at_end() {
        return Err(c.error_at(c.pos, "unexpected text after the metric type"));
    }
    let kind = match kind {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "summary" => MetricType::Summary,
        _ => MetricType::Unknown,
    };
    Ok(Some((name, MetaLine::Type(kind))))
}

/// Help text allows only the escapes `\\` and `\n`, as Prometheus' parser does.
/// The rest of a `# HELP` line, unescaped (`\\` and `\n` are the only escapes).
fn help_text(c: &mut Cursor<'_>) -> Result<String, IngestError> {
    let mut help = String::new();
    while let Some(ch) = c.bump() {
        if ch == '\\' {
            let at = c.pos - 1;
            match c.bump() {
                Some('\\') => help.push('\\'),
                Some('n') => help.push('\n'),
                _ => return Err(c.error_at(at, "invalid escape in help text; use `\\\\` or `\\n`")),
            }
        } else {
            help.push(ch);
        }
    }
    Ok(help)
}

/// `name{labels} value [timestamp]`.
fn parse_sample(
    c: &mut Cursor<'_>,
    limits: &Limits,
    builder: &mut BatchBuilder<'_>,
) -> Result<(), IngestError> {
    let name_at = c.pos;
    let name = c.take_while(is_name_char);
    if name.is_empty() {
        return Err(c.error_at(
            name_at,
            "expected a metric name, a comment (`#`) or an empty line",
        ));
    }
    check_metric_name(name, limits).map_err(|e| c.error_at(name_at, &e))?;
    let mut labels = SeriesLabels::new(limits);
    let gap = c.skip_blanks();
    let braces = c.peek() == Some('{');
    if braces {
        c.bump();
        parse_labels(c, &mut labels)?;
        c.skip_blanks();
    } else if gap == 0 && !c.at_end() {
        let what = format!(
            "unexpected character `{}` in the metric name",
            c.peek().unwrap_or(' ')
        );
        return Err(c.error_at(c.pos, &what));
    }
    let value_at = c.pos;
    let value = c.token();
    if value.is_empty() {
        return Err(c.error_at(
            value_at,
            "expected a sample value after the metric name and labels",
        ));
    }
    let value = parse_value(value).map_err(|e| c.error_at(value_at, &e))?;
    let timestamp = parse_timestamp(c)?;
    let labels = labels.finish(name);
    builder.push(labels, timestamp, value).map_err(|r| {
        let (kind, why) = r.describe();
        let what = format!("sample `{name}`: {why}");
        IngestError::at_line(kind, c.position(name_at), &what)
    })
}

/// The label list after `{`, up to and including `}`.
fn parse_labels(c: &mut Cursor<'_>, labels: &mut SeriesLabels<'_>) -> Result<(), IngestError> {
    loop {
        c.skip_blanks();
        if c.peek() == Some('}') {
            c.bump();
            return Ok(());
        }
        let name_at = c.pos;
        let name = c.take_while(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if name.is_empty() {
            return Err(c.error_at(name_at, "expected a label name or `}`"));
        }
        crate::validate_label_name(name).map_err(|e| c.error_at(name_at, &e))?;
        c.skip_blanks();
        let eq_at = c.pos;
        if c.bump() != Some('=') {
            return Err(c.error_at(eq_at, &format!("expected `=` after label name `{name}`")));
        }
        c.skip_blanks();
        let value = parse_label_value(c)?;
        labels
            .add(name.to_string(), value)
            .map_err(|e| c.error_at(name_at, &e))?;
        c.skip_blanks();
        match c.bump() {
            Some(',') => continue,
            Some('}') => return Ok(()),
            _ => {
                let at = c.pos.saturating_sub(1);
                return Err(c.error_at(at, "expected `,` or `}` after a label value"));
            }
        }
    }
}

/// A double-quoted label value with the escapes `\\`, `\"` and `\n`.
fn parse_label_value(c: &mut Cursor<'_>) -> Result<String, IngestError> {
    let open_at = c.pos;
    if c.bump() != Some('"') {
        return Err(c.error_at(open_at, "expected `\"` to open the label value"));
    }
    let mut value = String::new();
    loop {
        let at = c.pos;
        match c.bump() {
            None => {
                return Err(c.error_at(open_at, "label value is not closed by `\"` on this line"))
            }
            Some('"') => return Ok(value),
            Some('\\') => match c.bump() {
                Some('\\') => value.push('\\'),
                Some('"') => value.push('"'),
                Some('n') => value.push('\n'),
                _ => {
                    return Err(c.error_at(
                        at,
                        "invalid escape in label value; use `\\\\`, `\\\"` or `\\n`",
                    ))
                }
            },
            Some(ch) => value.push(ch),
        }
    }
}

/// A float, including `NaN`, `+Inf`, `-Inf` (Rust's parser also takes them in any case).
fn parse_value(token: &str) -> Result<f64, String> {
    token.parse::<f64>().map_err(|_| {
        format!("sample value `{token}` is not a number (use digits, `NaN`, `+Inf` or `-Inf`)")
    })
}

/// The optional timestamp, then the end of the line.
fn parse_timestamp(c: &mut Cursor<'_>) -> Result<Option<i64>, IngestError> {
    let gap = c.skip_blanks();
    if c.at_end() {
        return Ok(None);
    }
    let at = c.pos;
    let token = c.token();
    if gap == 0 {
        return Err(c.error_at(at, "expected a blank after the sample value"));
    }
    let ts = token.parse::<i64>().map_err(|_| {
        c.error_at(
            at,
            &format!("timestamp `{token}` is not an integer number of milliseconds"),
        )
    })?;
    c.skip_blanks();
    if !c.at_end() {
        return Err(c.error_at(c.pos, "unexpected text after the timestamp"));
    }
    Ok(Some(ts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    const NOW: i64 = 1_700_000_000_000;

    fn check(body: &str, expect: Expect) {
        check_with(body, &Limits::default(), expect)
    }

    #[test]
    fn help_and_type_lines_become_metadata() {
        let body = "# HELP http_requests_total Requests \\\\ by code,\\nsee docs.\n\
                    # TYPE http_requests_total counter\n\
                    http_requests_total{code=\"200\"} 3\n\
                    # TYPE temp gauge\n\
                    # TYPE temp untyped\n\
                    # HELP only_help Just help.\n\
                    temp 1\n";
        let (batch, meta) =
            parse_prometheus_text_with_metadata(body.as_bytes(), NOW, &Limits::default()).unwrap();
        assert_eq!(batch.len(), 2);
        let got: Vec<String> = meta
            .iter()
            .map(|m| format!("{} {} {:?}", m.metric, m.kind.as_str(), m.help))
            .collect();
        expect![[r#"
            [
                "http_requests_total counter \"Requests \\\\ by code,\\nsee docs.\"",
                "only_help unknown \"Just help.\"",
                "temp unknown \"\"",
            ]
        "#]]
        .assert_debug_eq(&got);
    }

    fn check_with(body: &str, limits: &Limits, expect: Expect) {
        let got = match parse_prometheus_text(body.as_bytes(), NOW, limits) {
            Ok(batch) => batch
                .iter()
                .map(|(l, ts, v)| {
                    let pairs: Vec<String> = l.pairs().map(|(n, v)| format!("{n}={v:?}")).collect();
                    format!("{} {ts} {v}\n", pairs.join(","))
                })
                .collect::<String>(),
            Err(e) => format!("{:?} {}\n{}\n", e.kind, e.message, e.detail),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn parses_samples_labels_escapes_and_specials() {
        check(
            "# HELP http_requests_total The total number of HTTP requests.\n\
             # TYPE http_requests_total counter\n\
             http_requests_total{method=\"post\",code=\"200\"} 1027 1699999999000\n\
             http_requests_total{method=\"post\",code=\"400\",}    3   1699999999000\n\
             \n\
             # A plain comment\n\
             msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n\
             metric_without_timestamp_and_labels 12.47\n\
             something_weird{problem=\"division by zero\"} +Inf 1699999000000\n\
             nan_metric NaN\n\
             neg -Inf\n\
             \t spaced { a = \"1\" , b=\"\" } 5\r\n\
             rpc_duration_seconds{quantile=\"0.99\"} 76656\n\
             rpc_duration_seconds_bucket{le=\"+Inf\"} 2693\n",
            expect![[r#"
                __name__="http_requests_total",code="200",method="post" 1699999999000 1027
                __name__="http_requests_total",code="400",method="post" 1699999999000 3
                __name__="msdos_file_access_time_seconds",error="Cannot find file:\n\"FILE.TXT\"",path="C:\\DIR\\FILE.TXT" 1700000000000 1458255915
                __name__="metric_without_timestamp_and_labels" 1700000000000 12.47
                __name__="something_weird",problem="division by zero" 1699999000000 inf
                __name__="nan_metric" 1700000000000 NaN
                __name__="neg" 1700000000000 -inf
                __name__="spaced",a="1" 1700000000000 5
                __name__="rpc_duration_seconds",quantile="0.99" 1700000000000 76656
                __name__="rpc_duration_seconds_bucket",le="+Inf" 1700000000000 2693
            "#]],
        );
    }

    #[test]
    fn the_spec_example_timestamp_is_out_of_window() {
        // The spec's example uses -3982045 ms (1969): far outside any sane window.
        let limits = Limits {
            timestamp_past_ms_max: 1000,
            ..Limits::default()
        };
        check_with(
            "a 1\nsomething_weird{problem=\"division by zero\"} +Inf -3982045\n",
            &limits,
            expect![[r#"
                BadRequest line 2, column 1: sample `something_weird`: timestamp -3982045 ms is outside the accepted window [1699999999000, 1700000600000] (now - timestamp_past_ms_max, now + timestamp_future_ms_max); check the sender's clock and that timestamps are in milliseconds
                {"column":1,"line":2}
            "#]],
        );
    }

    fn check_err(body: &str, expect: Expect) {
        let e = parse_prometheus_text(body.as_bytes(), NOW, &Limits::default()).unwrap_err();
        expect.assert_eq(&format!("{:?} {}", e.kind, e.message));
    }

    #[test]
    fn errors_name_line_and_column() {
        check_err("ok 1\n9bad 1", expect!["BadRequest line 2, column 1: metric name `9bad` must match [a-zA-Z_:][a-zA-Z0-9_:]*"]);
        check_err(
            "a-b 1",
            expect!["BadRequest line 1, column 2: unexpected character `-` in the metric name"],
        );
        check_err(
            "a{b=\"1\" 2",
            expect!["BadRequest line 1, column 9: expected `,` or `}` after a label value"],
        );
        check_err(
            "a{b=\"1} 2",
            expect!["BadRequest line 1, column 5: label value is not closed by `\"` on this line"],
        );
        check_err(
            "a{b=1} 2",
            expect!["BadRequest line 1, column 5: expected `\"` to open the label value"],
        );
        check_err(
            "a{b} 2",
            expect!["BadRequest line 1, column 4: expected `=` after label name `b`"],
        );
        check_err(
            "a{,} 2",
            expect!["BadRequest line 1, column 3: expected a label name or `}`"],
        );
        check_err("a{b=\"\\t\"} 2", expect!["BadRequest line 1, column 6: invalid escape in label value; use `\\\\`, `\\\"` or `\\n`"]);
        check_err("a{__name__=\"x\"} 2", expect!["BadRequest line 1, column 3: label name `__name__` is reserved: names starting with `__` are Assay's own; rename it"]);
        check_err(
            "a{b=\"1\",b=\"2\"} 2",
            expect!["BadRequest line 1, column 9: label `b` is given twice in one series"],
        );
        check_err(
            "a{é=\"1\"} 2",
            expect!["BadRequest line 1, column 3: expected a label name or `}`"],
        );
        check_err("a", expect!["BadRequest line 1, column 2: expected a sample value after the metric name and labels"]);
        check_err("a{}", expect!["BadRequest line 1, column 4: expected a sample value after the metric name and labels"]);
        check_err("a 1x", expect!["BadRequest line 1, column 3: sample value `1x` is not a number (use digits, `NaN`, `+Inf` or `-Inf`)"]);
        check_err("a 1 1.5", expect!["BadRequest line 1, column 5: timestamp `1.5` is not an integer number of milliseconds"]);
        check_err(
            "a 1 1700000000000 x",
            expect!["BadRequest line 1, column 19: unexpected text after the timestamp"],
        );
        check_err("a 1\na 2", expect!["BadRequest line 2, column 1: sample `a`: the same series at the same timestamp was already given by sample 1; send one value per series and timestamp"]);
        check_err("# TYPE a countr\na 1", expect!["BadRequest line 1, column 10: metric type `countr` is not one of counter, gauge, histogram, summary, untyped"]);
        check_err("# TYPE a", expect!["BadRequest line 1, column 9: metric type `` is not one of counter, gauge, histogram, summary, untyped"]);
        check_err(
            "# TYPE a gauge x",
            expect!["BadRequest line 1, column 16: unexpected text after the metric type"],
        );
        check_err(
            "# HELP 1a x",
            expect![
                "BadRequest line 1, column 8: metric name `1a` must match [a-zA-Z_:][a-zA-Z0-9_:]*"
            ],
        );
        check_err(
            "# HELP a bad \\t escape",
            expect![
                "BadRequest line 1, column 14: invalid escape in help text; use `\\\\` or `\\n`"
            ],
        );
        check_err(
            "# HELP",
            expect!["BadRequest line 1, column 7: expected a metric name after `# HELP`"],
        );
        check_err(
            "# just a comment\n\n",
            expect!["BadRequest the body holds no sample line; send at least one sample"],
        );
        check_err("a{b=\"ü\",} 1\n\u{fffd}", expect!["BadRequest line 2, column 1: expected a metric name, a comment (`#`) or an empty line"]);
    }

    #[test]
    fn columns_count_characters_and_utf8_is_required() {
        check_err(
            "a{b=\"üü\",c=1} 2",
            expect!["BadRequest line 1, column 12: expected `\"` to open the label value"],
        );
        let e =
            parse_prometheus_text(b"a 1\nb{c=\"\xff\"} 1", NOW, &Limits::default()).unwrap_err();
        expect!["line 2, column 6: the body is not valid UTF-8; send UTF-8 text"]
            .assert_eq(&e.message);
    }

    #[test]
    fn limits_at_the_edge() {
        let limits = Limits {
            samples_per_batch_max: 2,
            ..Limits::default()
        };
        check_with(
            "a 1\nb 2\n",
            &limits,
            expect![[r#"
            __name__="a" 1700000000000 1
            __name__="b" 1700000000000 2
        "#]],
        );
        check_with(
            "a 1\nb 2\nc 3\n",
            &limits,
            expect![[r#"
            PayloadTooLarge line 3, column 1: sample `c`: more than samples_per_batch_max = 2 samples; split the upload
            {"column":1,"line":3}
        "#]],
        );
        let limits = Limits {
            label_value_bytes_max: 2,
            ..Limits::default()
        };
        check_with(
            "a{b=\"xy\"} 1",
            &limits,
            expect![[r#"
            __name__="a",b="xy" 1700000000000 1
        "#]],
        );
        check_with(
            "a{b=\"x\\n\\\\\"} 1",
            &limits,
            expect![[r#"
            BadRequest line 1, column 3: value of label `b` is 3 bytes, over label_value_bytes_max = 2
            {"column":3,"line":1}
        "#]],
        );
        let limits = Limits {
            timestamp_future_ms_max: 5,
            ..Limits::default()
        };
        check_with(
            "a 1 1700000000005",
            &limits,
            expect![[r#"
            __name__="a" 1700000000005 1
        "#]],
        );
        check_with(
            "a 1 1700000000006",
            &limits,
            expect![[r#"
            BadRequest line 1, column 1: sample `a`: timestamp 1700000000006 ms is outside the accepted window [1697321600000, 1700000000005] (now - timestamp_past_ms_max, now + timestamp_future_ms_max); check the sender's clock and that timestamps are in milliseconds
            {"column":1,"line":1}
        "#]],
        );
    }
}

//! InfluxDB line protocol, as Telegraf and InfluxDB clients write it.
//!
//! Grammar of one line (`sp` is one or more spaces or tabs):
//!
//! ```text
//! line        := sp? ( '#' comment | measurement (',' key '=' value)* sp fields (sp timestamp)? )? sp? '\r'?
//! fields      := field_key '=' field_value (',' field_key '=' field_value)*
//! field_value := float | integer 'i' | unsigned 'u' | boolean | '"' string '"'
//! ```
//!
//! Escapes: in the measurement `\,` and `\ `; in tag keys, tag values and field keys also `\=`;
//! in string field values `\"` and `\\`. A backslash before any other character is itself.
//! A string field value may span lines.

use std::borrow::Cow;

use assay_ledger::SampleBatch;

use crate::validate::{check_metric_name, BatchBuilder, SeriesLabels};
use crate::{utf8_body, IngestError, IngestErrorKind, Limits, LineColumn};

/// The unit of line protocol timestamps: the `precision` query parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InfluxPrecision {
    /// Nanoseconds, InfluxDB's default.
    #[default]
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
}

impl InfluxPrecision {
    /// Reads the `precision` query parameter: `ns`, `us`, `ms` or `s` (also v1's `n` and `u`).
    /// Without the parameter, use [`InfluxPrecision::default`] (nanoseconds), as InfluxDB does.
    pub fn from_query(value: &str) -> Result<InfluxPrecision, IngestError> {
        match value {
            "ns" | "n" => Ok(InfluxPrecision::Nanoseconds),
            "us" | "u" => Ok(InfluxPrecision::Microseconds),
            "ms" => Ok(InfluxPrecision::Milliseconds),
            "s" => Ok(InfluxPrecision::Seconds),
            _ => Err(IngestError::new(
                IngestErrorKind::BadRequest,
                format!("precision `{value}` is not one of ns, us, ms, s"),
                serde_json::json!({"field": "precision"}),
            )),
        }
    }

    /// A timestamp in this unit as milliseconds (rounded down), if it fits in an `i64`.
    fn to_ms(self, ts: i64) -> Option<i64> {
        match self {
            InfluxPrecision::Nanoseconds => Some(ts.div_euclid(1_000_000)),
            InfluxPrecision::Microseconds => Some(ts.div_euclid(1_000)),
            InfluxPrecision::Milliseconds => Some(ts),
            InfluxPrecision::Seconds => ts.checked_mul(1_000),
        }
    }
}

/// Parsed line protocol: the samples, and how many string fields were skipped.
#[derive(Clone, Debug, PartialEq)]
pub struct InfluxLines {
    /// One sample per numeric or boolean field.
    pub batch: SampleBatch,
    /// String fields, which have no numeric value to store.
    pub string_fields_skipped: usize,
}

/// Parses a line protocol body, or names the first offending line and column.
pub fn parse_influx_line(
    body: &[u8],
    now_ms: i64,
    precision: InfluxPrecision,
    limits: &Limits,
) -> Result<InfluxLines, IngestError> {
    let text = utf8_body(body)?;
    let mut parser = Parser {
        c: Cursor {
            text,
            pos: 0,
            line: 1,
            line_start: 0,
        },
        limits,
        precision,
        builder: BatchBuilder::new(limits, now_ms),
        string_fields_skipped: 0,
    };
    while !parser.c.at_end() {
        parser.line()?;
    }
    Ok(InfluxLines {
        batch: parser.builder.finish(),
        string_fields_skipped: parser.string_fields_skipped,
    })
}

/// A position in the body.
struct Cursor<'t> {
    text: &'t str,
    /// Byte offset into `text`.
    pos: usize,
    /// 1-based line number of `pos`.
    line: usize,
    /// Byte offset where that line starts.
    line_start: usize,
}

impl<'t> Cursor<'t> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos == self.text.len()
    }

    /// Skips spaces and tabs; returns how many.
    fn skip_blanks(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// At `\n`, `\r\n` or the end of the body.
    fn at_line_end(&self) -> bool {
        match self.peek() {
            None | Some(b'\n') => true,
            Some(b'\r') => matches!(self.text.as_bytes().get(self.pos + 1), None | Some(b'\n')),
            _ => false,
        }
    }

    /// Consumes a line end (the caller checked [`Cursor::at_line_end`]).
    fn end_line(&mut self) {
        if self.peek() == Some(b'\r') {
            self.pos += 1;
        }
        if self.peek() == Some(b'\n') {
            self.pos += 1;
            self.line += 1;
            self.line_start = self.pos;
        }
    }

    /// Skips the rest of the line, including its end.
    fn skip_line(&mut self) {
        match self.text[self.pos..].find('\n') {
            Some(i) => {
                self.pos += i;
                self.end_line();
            }
            None => self.pos = self.text.len(),
        }
    }

    /// The line and column of byte offset `pos`, which lies on the current line.
    fn position(&self, pos: usize) -> LineColumn {
        LineColumn {
            line: self.line,
            column: self.text[self.line_start..pos].chars().count() + 1,
        }
    }

    fn error_at(&self, pos: usize, what: &str) -> IngestError {
        IngestError::at_line(IngestErrorKind::BadRequest, self.position(pos), what)
    }

    /// Reads up to an unescaped byte of `stops`, a blank or the line end; `\x` for `x` in
    /// `escapable` stands for `x`, any other backslash for itself.
    fn escaped(&mut self, stops: &[u8], escapable: &[u8]) -> Cow<'t, str> {
        let start = self.pos;
        let mut owned: Option<String> = None;
        let mut copied = start;
        let bytes = self.text.as_bytes();
        while let Some(&b) = bytes.get(self.pos) {
            if b == b'\\'
                && bytes
                    .get(self.pos + 1)
                    .is_some_and(|n| escapable.contains(n))
            {
                let s = owned.get_or_insert_with(String::new);
                s.push_str(&self.text[copied..self.pos]);
                copied = self.pos + 1; // keep the escaped character, drop the backslash
                self.pos += 2;
                continue;
            }
            if stops.contains(&b) || matches!(b, b' ' | b'\t' | b'\n') || self.at_line_end() {
                break;
            }
            self.pos += 1;
        }
        match owned {
            None => Cow::Borrowed(&self.text[start..self.pos]),
            Some(mut s) => {
                s.push_str(&self.text[copied..self.pos]);
                Cow::Owned(s)
            }
        }
    }
}

/// A field's value, by type.
enum FieldValue {
    Number(f64),
    Text,
}

struct Parser<'t, 'l> {
    c: Cursor<'t>,
    limits: &'l Limits,
    precision: InfluxPrecision,
    builder: BatchBuilder<'l>,
    string_fields_skipped: usize,
}

impl<'t, 'l> Parser<'t, 'l> {
    /// One line, including its end.
    fn line(&mut self) -> Result<(), IngestError> {
        self.c.skip_blanks();
        if self.c.at_line_end() {
            self.c.end_line();
            return Ok(());
        }
        if self.c.peek() == Some(b'#') {
            self.c.skip_line();
            return Ok(());
        }
        let measurement_at = self.c.pos;
        let measurement = self.c.escaped(b",", b", ");
        if measurement.is_empty() {
            return Err(self
                .c
                .error_at(measurement_at, "expected a measurement name"));
        }
        let labels = self.tags()?;
        if self.c.skip_blanks() == 0 || self.c.at_line_end() {
            return Err(self.c.error_at(
                self.c.pos,
                "expected a blank and then fields (`name=value`) after the measurement and tags",
            ));
        }
        let fields = self.fields()?;
        let timestamp = self.timestamp()?;
        self.c.end_line();
        for (key_at, key, value) in fields {
            let FieldValue::Number(value) = value else {
                self.string_fields_skipped += 1;
                continue;
            };
            let metric = metric_name(&measurement, &key);
            check_metric_name(&metric, self.limits).map_err(|e| self.error_at(key_at, &e))?;
            let series = labels.clone().finish(&metric);
            self.builder.push(series, timestamp, value).map_err(|r| {
                let (kind, why) = r.describe();
                IngestError::at_line(kind, key_at, &format!("field `{key}`: {why}"))
            })?;
        }
        Ok(())
    }

    fn error_at(&self, at: LineColumn, what: &str) -> IngestError {
        IngestError::at_line(IngestErrorKind::BadRequest, at, what)
    }

    /// `,key=value` pairs after the measurement.
    fn tags(&mut self) -> Result<SeriesLabels<'l>, IngestError> {
        let mut labels = SeriesLabels::new(self.limits);
        while self.c.peek() == Some(b',') {
            self.c.pos += 1;
            let key_at = self.c.pos;
            let key = self.c.escaped(b",=", b",= ");
            if key.is_empty() {
                return Err(self.c.error_at(key_at, "expected a tag key after `,`"));
            }
            if self.c.peek() != Some(b'=') {
                let what = format!("expected `=` after tag key `{key}`");
                return Err(self.c.error_at(self.c.pos, &what));
            }
            self.c.pos += 1;
            let value_at = self.c.pos;
            let value = self.c.escaped(b",=", b",= ");
            if value.is_empty() {
                let what = format!("tag `{key}` has no value");
                return Err(self.c.error_at(value_at, &what));
            }
            labels
                .add(sanitize(&key), value.into_owned())
                .map_err(|e| self.c.error_at(key_at, &e))?;
        }
        Ok(labels)
    }

    /// The field set: key, position and value of each field.
    fn fields(&mut self) -> Result<Vec<(LineColumn, Cow<'t, str>, FieldValue)>, IngestError> {
        let mut fields = Vec::new();
        loop {
            let key_at = self.c.pos;
            let key = self.c.escaped(b",=", b",= ");
            if key.is_empty() {
                return Err(self.c.error_at(key_at, "expected a field key"));
            }
            if self.c.peek() != Some(b'=') {
                let what = format!("expected `=` after field key `{key}`");
                return Err(self.c.error_at(self.c.pos, &what));
            }
            self.c.pos += 1;
            // Positions are taken before a string value, which may end on a later line.
            let key_position = self.c.position(key_at);
            let value = self.field_value()?;
            fields.push((key_position, key, value));
            if self.c.peek() != Some(b',') {
                return Ok(fields);
            }
            self.c.pos += 1;
        }
    }

    fn field_value(&mut self) -> Result<FieldValue, IngestError> {
        let at = self.c.pos;
        if self.c.peek() == Some(b'"') {
            self.string_value(at)?;
            return Ok(FieldValue::Text);
        }
        let token = self.c.escaped(b",", b"");
        parse_number(&token)
            .map(FieldValue::Number)
            .map_err(|e| self.c.error_at(at, &e))
    }

    /// A double-quoted string, which may contain `\"`, `\\` and newlines.
    fn string_value(&mut self, open_at: usize) -> Result<(), IngestError> {
        let open = self.c.position(open_at);
        self.c.pos += 1;
        loop {
            let bytes = self.c.text.as_bytes();
            match self.c.peek() {
                None => return Err(self.error_at(open, "string field value is not closed by `\"`")),
                Some(b'"') => {
                    self.c.pos += 1;
                    return Ok(());
                }
                Some(b'\\') if matches!(bytes.get(self.c.pos + 1), Some(b'"' | b'\\')) => {
                    self.c.pos += 2;
                }
                Some(b'\n') => {
                    self.c.pos += 1;
                    self.c.line += 1;
                    self.c.line_start = self.c.pos;
                }
                // Byte by byte: only ASCII positions are ever sliced at.
                Some(_) => self.c.pos += 1,
            }
        }
    }

    /// The optional timestamp in `precision`, as ms, then the end of the line.
    fn timestamp(&mut self) -> Result<Option<i64>, IngestError> {
        let gap = self.c.skip_blanks();
        if self.c.at_line_end() {
            return Ok(None);
        }
        let at = self.c.pos;
        if gap == 0 {
            return Err(self
                .c
                .error_at(at, "expected `,` or a blank after a field value"));
        }
        let token = self.c.escaped(b"", b"");
        let ts = token
            .parse::<i64>()
            .ok()
            .and_then(|ts| self.precision.to_ms(ts))
            .ok_or_else(|| {
                let what = format!(
                    "timestamp `{token}` is not an integer number of {} that fits in 64 bits",
                    self.precision.unit()
                );
                self.c.error_at(at, &what)
            })?;
        self.c.skip_blanks();
        if !self.c.at_line_end() {
            return Err(self
                .c
                .error_at(self.c.pos, "unexpected text after the timestamp"));
        }
        Ok(Some(ts))
    }
}

impl InfluxPrecision {
    fn unit(self) -> &'static str {
        match self {
            InfluxPrecision::Nanoseconds => "nanoseconds",
            InfluxPrecision::Microseconds => "microseconds",
            InfluxPrecision::Milliseconds => "milliseconds",
            InfluxPrecision::Seconds => "seconds",
        }
    }
}

/// A float, `<int>i`, `<uint>u` or a boolean, as f64 (integers beyond 2^53 lose precision).
fn parse_number(token: &str) -> Result<f64, String> {
    let parsed = match token {
        "t" | "T" | "true" | "True" | "TRUE" => Some(1.0),
        "f" | "F" | "false" | "False" | "FALSE" => Some(0.0),
        _ if token.ends_with('i') => token[..token.len() - 1]
            .parse::<i64>()
            .ok()
            .map(|n| n as f64),
        _ if token.ends_with('u') => token[..token.len() - 1]
            .parse::<u64>()
            .ok()
            .map(|n| n as f64),
        // Rust also reads `inf`, `NaN` and `infinity`, which line protocol does not have.
        _ if token
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            token.parse::<f64>().ok()
        }
        _ => None,
    };
    parsed.ok_or_else(|| {
        format!(
            "field value `{token}` is not a float, an integer (`1i`), an unsigned integer (`1u`), \
             a boolean or a double-quoted string"
        )
    })
}

/// `{measurement}_{field}`, or just `{measurement}` for a field named `value`, sanitized.
fn metric_name(measurement: &str, field: &str) -> String {
    if field == "value" {
        sanitize(measurement)
    } else {
        sanitize(&format!("{measurement}_{field}"))
    }
}

/// Every character outside `[a-zA-Z0-9_]` becomes `_`; a leading digit gets a `_` before it.
fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    const NOW: i64 = 1_700_000_000_000;

    fn render(result: Result<InfluxLines, IngestError>) -> String {
        match result {
            Ok(lines) => {
                let samples: String = lines
                    .batch
                    .iter()
                    .map(|(l, ts, v)| {
                        let pairs: Vec<String> =
                            l.pairs().map(|(n, v)| format!("{n}={v:?}")).collect();
                        format!("{} {ts} {v}\n", pairs.join(","))
                    })
                    .collect();
                samples + &format!("string fields skipped: {}\n", lines.string_fields_skipped)
            }
            Err(e) => format!("{:?} {}\n{}\n", e.kind, e.message, e.detail),
        }
    }

    fn check_with(body: &str, precision: InfluxPrecision, limits: &Limits, expect: Expect) {
        let got = parse_influx_line(body.as_bytes(), NOW, precision, limits);
        expect.assert_eq(&render(got));
    }

    fn check(body: &str, expect: Expect) {
        check_with(
            body,
            InfluxPrecision::Nanoseconds,
            &Limits::default(),
            expect,
        )
    }

    #[test]
    fn field_types_and_naming() {
        check(
            "weather,location=us-midwest temperature=82 1699999999000000000\n\
             weather,location=us-midwest temperature=82.5,humidity=71i,visible=t,storm=FALSE,count=3u,note=\"sunny\" 1699999998000000000\n\
             cpu value=0.64\n\
             cpu,host=a usage_idle=-1.5e2,usage_user=+3.,x=.5\n",
            expect![[r#"
                __name__="weather_temperature",location="us-midwest" 1699999999000 82
                __name__="weather_temperature",location="us-midwest" 1699999998000 82.5
                __name__="weather_humidity",location="us-midwest" 1699999998000 71
                __name__="weather_visible",location="us-midwest" 1699999998000 1
                __name__="weather_storm",location="us-midwest" 1699999998000 0
                __name__="weather_count",location="us-midwest" 1699999998000 3
                __name__="cpu" 1700000000000 0.64
                __name__="cpu_usage_idle",host="a" 1700000000000 -150
                __name__="cpu_usage_user",host="a" 1700000000000 3
                __name__="cpu_x",host="a" 1700000000000 0.5
                string fields skipped: 1
            "#]],
        );
    }

    #[test]
    fn escapes_from_the_influxdb_docs() {
        check(
            "my\\ measure\\,ment,tag\\ key\\,x=tag\\ value\\,y\\=z field\\=k\\ ey=1 1699999999000000000\n\
             cpu=load,path=C:\\Windows\\System32 value=2\n\
             quotes,q=\"x\" s=\"he said \\\"hi\\\" \\\\o/\",n=1\n\
             multi s=\"line 1\nline 2\",n=2\n\
             \x20  # indented comment\n\
             \t\n\
             crlf value=3\r\n\
             trailing value=4   \n",
            expect![[r#"
                __name__="my_measure_ment_field_k_ey",tag_key_x="tag value,y=z" 1699999999000 1
                __name__="cpu_load",path="C:\\Windows\\System32" 1700000000000 2
                __name__="quotes_n",q="\"x\"" 1700000000000 1
                __name__="multi_n" 1700000000000 2
                __name__="crlf" 1700000000000 3
                __name__="trailing" 1700000000000 4
                string fields skipped: 2
            "#]],
        );
    }

    #[test]
    fn precision_and_timestamps() {
        let at =
            |p: InfluxPrecision, body: &str, e: Expect| check_with(body, p, &Limits::default(), e);
        at(
            InfluxPrecision::Seconds,
            "m value=1 1700000000",
            expect![[r#"
                __name__="m" 1700000000000 1
                string fields skipped: 0
            "#]],
        );
        at(
            InfluxPrecision::Milliseconds,
            "m value=1 1700000000001",
            expect![[r#"
                __name__="m" 1700000000001 1
                string fields skipped: 0
            "#]],
        );
        at(
            InfluxPrecision::Microseconds,
            "m value=1 1700000000001999",
            expect![[r#"
                __name__="m" 1700000000001 1
                string fields skipped: 0
            "#]],
        );
        at(
            InfluxPrecision::Nanoseconds,
            "m value=1 1700000000001999999",
            expect![[r#"
                __name__="m" 1700000000001 1
                string fields skipped: 0
            "#]],
        );
        at(
            InfluxPrecision::Seconds,
            "m value=1 9223372036854775",
            expect![[r#"
                BadRequest line 1, column 3: field `value`: timestamp 9223372036854775000 ms is outside the accepted window [1697321600000, 1700000600000] (now - timestamp_past_ms_max, now + timestamp_future_ms_max); check the sender's clock and that timestamps are in milliseconds
                {"column":3,"line":1}
            "#]],
        );
        at(
            InfluxPrecision::Nanoseconds,
            "m value=1 1.7e18",
            expect![[r#"
                BadRequest line 1, column 11: timestamp `1.7e18` is not an integer number of nanoseconds that fits in 64 bits
                {"column":11,"line":1}
            "#]],
        );
        at(
            InfluxPrecision::Nanoseconds,
            "m value=1 -1",
            expect![[r#"
                BadRequest line 1, column 3: field `value`: timestamp -1 ms is outside the accepted window [1697321600000, 1700000600000] (now - timestamp_past_ms_max, now + timestamp_future_ms_max); check the sender's clock and that timestamps are in milliseconds
                {"column":3,"line":1}
            "#]],
        );
        expect![[r#"Ok(Nanoseconds) Ok(Microseconds) Ok(Milliseconds) Ok(Seconds) Err("precision `h` is not one of ns, us, ms, s")"#]].assert_eq(&format!(
            "{:?} {:?} {:?} {:?} {:?}",
            InfluxPrecision::from_query("ns"),
            InfluxPrecision::from_query("u"),
            InfluxPrecision::from_query("ms"),
            InfluxPrecision::from_query("s"),
            InfluxPrecision::from_query("h").map_err(|e| e.message),
        ));
        assert_eq!(InfluxPrecision::default(), InfluxPrecision::Nanoseconds);
    }

    fn check_err(body: &str, expect: Expect) {
        let e = parse_influx_line(
            body.as_bytes(),
            NOW,
            InfluxPrecision::Nanoseconds,
            &Limits::default(),
        )
        .unwrap_err();
        expect.assert_eq(&format!("{:?} {}", e.kind, e.message));
    }

    #[test]
    fn errors_name_line_and_column() {
        check_err("ok value=1\ncpu", expect!["BadRequest line 2, column 4: expected a blank and then fields (`name=value`) after the measurement and tags"]);
        check_err("cpu ", expect!["BadRequest line 1, column 5: expected a blank and then fields (`name=value`) after the measurement and tags"]);
        check_err(
            ",host=a value=1",
            expect!["BadRequest line 1, column 1: expected a measurement name"],
        );
        check_err(
            "cpu,host value=1",
            expect!["BadRequest line 1, column 9: expected `=` after tag key `host`"],
        );
        check_err(
            "cpu,host= value=1",
            expect!["BadRequest line 1, column 10: tag `host` has no value"],
        );
        check_err(
            "cpu,=a value=1",
            expect!["BadRequest line 1, column 5: expected a tag key after `,`"],
        );
        check_err(
            "cpu value",
            expect!["BadRequest line 1, column 10: expected `=` after field key `value`"],
        );
        check_err(
            "cpu =1",
            expect!["BadRequest line 1, column 5: expected a field key"],
        );
        check_err(
            "cpu value=1,",
            expect!["BadRequest line 1, column 13: expected a field key"],
        );
        check_err("cpu value=abc", expect!["BadRequest line 1, column 11: field value `abc` is not a float, an integer (`1i`), an unsigned integer (`1u`), a boolean or a double-quoted string"]);
        check_err("cpu value=NaN", expect!["BadRequest line 1, column 11: field value `NaN` is not a float, an integer (`1i`), an unsigned integer (`1u`), a boolean or a double-quoted string"]);
        check_err("cpu value=inf", expect!["BadRequest line 1, column 11: field value `inf` is not a float, an integer (`1i`), an unsigned integer (`1u`), a boolean or a double-quoted string"]);
        check_err("cpu value=1.5i", expect!["BadRequest line 1, column 11: field value `1.5i` is not a float, an integer (`1i`), an unsigned integer (`1u`), a boolean or a double-quoted string"]);
        check_err("cpu value=-1u", expect!["BadRequest line 1, column 11: field value `-1u` is not a float, an integer (`1i`), an unsigned integer (`1u`), a boolean or a double-quoted string"]);
        check_err(
            "cpu value=\"open",
            expect![[r#"BadRequest line 1, column 11: string field value is not closed by `"`"#]],
        );
        check_err(
            "cpu value=1 123 456",
            expect!["BadRequest line 1, column 17: unexpected text after the timestamp"],
        );
        check_err(
            "cpu value=1\"x\"",
            expect![[
                r#"BadRequest line 1, column 11: field value `1"x"` is not a float, an integer (`1i`), an unsigned integer (`1u`), a boolean or a double-quoted string"#
            ]],
        );
        check_err("cpu,__meta=x value=1", expect!["BadRequest line 1, column 5: label name `__meta` is reserved: names starting with `__` are Assay's own; rename it"]);
        check_err(
            "cpu,a=1,a=2 value=1",
            expect!["BadRequest line 1, column 9: label `a` is given twice in one series"],
        );
        check_err(
            "cpu,a-b=1,a_b=2 value=1",
            expect!["BadRequest line 1, column 11: label `a_b` is given twice in one series"],
        );
        check_err("cpu value=1,value=2", expect!["BadRequest line 1, column 13: field `value`: the same series at the same timestamp was already given by sample 1; send one value per series and timestamp"]);
        check_err("cpu value=1\ncpu value=2", expect!["BadRequest line 2, column 5: field `value`: the same series at the same timestamp was already given by sample 1; send one value per series and timestamp"]);
        check_err("é,ü=1 s=\"a\nb\",v=1 12", expect!["BadRequest line 2, column 4: field `v`: timestamp 0 ms is outside the accepted window [1697321600000, 1700000600000] (now - timestamp_past_ms_max, now + timestamp_future_ms_max); check the sender's clock and that timestamps are in milliseconds"]);
    }

    #[test]
    fn limits_at_the_edge() {
        let limits = Limits {
            samples_per_batch_max: 2,
            labels_per_series_max: 1,
            ..Limits::default()
        };
        let ns = InfluxPrecision::Nanoseconds;
        check_with(
            "a,x=1 v=1,w=2",
            ns,
            &limits,
            expect![[r#"
            __name__="a_v",x="1" 1700000000000 1
            __name__="a_w",x="1" 1700000000000 2
            string fields skipped: 0
        "#]],
        );
        check_with(
            "a v=1,w=2,u=3",
            ns,
            &limits,
            expect![[r#"
            PayloadTooLarge line 1, column 11: field `u`: more than samples_per_batch_max = 2 samples; split the upload
            {"column":11,"line":1}
        "#]],
        );
        check_with(
            "a,x=1,y=2 v=1",
            ns,
            &limits,
            expect![[r#"
            BadRequest line 1, column 7: series has more than labels_per_series_max = 1 labels; drop some
            {"column":7,"line":1}
        "#]],
        );
        check_with(
            "a value=1 1700000600000000001",
            ns,
            &limits,
            expect![[r#"
                __name__="a" 1700000600000 1
                string fields skipped: 0
            "#]],
        );
        check_with(
            "",
            ns,
            &limits,
            expect![[r#"
            string fields skipped: 0
        "#]],
        );
    }

    #[test]
    fn sanitizing_names() {
        expect!["disk_io_time _9lives _ber_x net_bytes_recv"].assert_eq(&format!(
            "{} {} {} {}",
            sanitize("disk.io-time"),
            sanitize("9lives"),
            sanitize("über:x"),
            metric_name("net", "bytes_recv"),
        ));
    }
}

#[cfg(test)]
mod round_trip {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_700_000_000_000;

    /// Escapes `specials` with a backslash, as a line protocol writer does.
    fn escape(s: &str, specials: &str) -> String {
        s.chars()
            .flat_map(|c| {
                let escaped = specials.contains(c);
                escaped
                    .then_some('\\')
                    .into_iter()
                    .chain(std::iter::once(c))
            })
            .collect()
    }

    #[derive(Clone, Debug)]
    enum Field {
        Float(f64),
        Int(i64),
        Bool(bool),
        Text(String),
    }

    fn field() -> impl Strategy<Value = Field> {
        prop_oneof![
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Field::Float),
            any::<i64>().prop_map(Field::Int),
            any::<bool>().prop_map(Field::Bool),
            "[a-z \"\\\\,=\n]{0,8}".prop_map(Field::Text),
        ]
    }

    /// Measurement, tags and fields of one line, unescaped.
    type Line = (String, Vec<(String, String)>, Vec<(String, Field)>);

    /// Keys get a unique index so that sanitizing cannot make two of them collide.
    fn line() -> impl Strategy<Value = Line> {
        let text = "[a-zA-Z0-9 ,=_.é-]{0,6}";
        (
            "[a-z][a-zA-Z0-9 ,=_.é-]{0,6}",
            prop::collection::vec((text, "[a-zA-Z0-9 ,=_.é-]{1,6}"), 0..4),
            prop::collection::vec((text, field()), 1..4),
        )
            .prop_map(|(m, tags, fields)| {
                let tags = tags
                    .into_iter()
                    .enumerate()
                    .map(|(i, (k, v))| (format!("k{i}{k}"), v))
                    .collect();
                let fields = fields
                    .into_iter()
                    .enumerate()
                    .map(|(i, (k, f))| (format!("f{i}{k}"), f))
                    .collect();
                (m, tags, fields)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

        /// What a writer escapes, the parser reads back; names come out sanitized.
        #[test]
        fn escaped_lines_read_back((measurement, tags, fields) in line(), ts_ms in NOW - 1000..NOW) {
            let mut body = escape(&measurement, ", ");
            for (k, v) in &tags {
                body += &format!(",{}={}", escape(k, ",= "), escape(v, ",= "));
            }
            let rendered: Vec<String> = fields
                .iter()
                .map(|(k, f)| {
                    let v = match f {
                        Field::Float(x) => format!("{x:?}"),
                        Field::Int(n) => format!("{n}i"),
                        Field::Bool(b) => b.to_string(),
                        Field::Text(s) => format!("\"{}\"", escape(s, "\"\\")),
                    };
                    format!("{}={v}", escape(k, ",= "))
                })
                .collect();
            body += &format!(" {} {}\n", rendered.join(","), ts_ms * 1_000_000);

            let parsed = parse_influx_line(body.as_bytes(), NOW, InfluxPrecision::Nanoseconds, &Limits::default())
                .map_err(|e| TestCaseError::fail(format!("{body:?}: {}", e.message)))?;
            let mut labels: Vec<(String, String)> =
                tags.iter().map(|(k, v)| (sanitize(k), v.clone())).collect();
            labels.push(("__name__".into(), String::new()));
            let mut want = Vec::new();
            let mut strings = 0;
            for (k, f) in &fields {
                let value = match f {
                    Field::Float(x) => *x,
                    Field::Int(n) => *n as f64,
                    Field::Bool(b) => f64::from(u8::from(*b)),
                    Field::Text(_) => {
                        strings += 1;
                        continue;
                    }
                };
                let mut l = labels.clone();
                l.last_mut().unwrap().1 = metric_name(&measurement, k);
                l.sort();
                want.push((l, ts_ms, value.to_bits()));
            }
            let got: Vec<_> = parsed
                .batch
                .iter()
                .map(|(l, ts, v)| (l.to_vec(), ts, v.to_bits()))
                .collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(parsed.string_fields_skipped, strings);
        }
    }
}

//! Request parameters of the Prometheus-style API: repeated keys (`match[]`), times as
//! RFC 3339 or Unix seconds, durations as `5m` / `1h30m` or float seconds.

/// Query-string and form parameters, in order, repeats kept.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a query string and, for form posts, the body too.
    pub fn parse(query: Option<&str>, form_body: Option<&[u8]>) -> Params {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(q) = query {
            pairs.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        if let Some(b) = form_body {
            pairs.extend(form_urlencoded::parse(b).into_owned());
        }
        Params(pairs)
    }

    /// The last value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A required parameter.
    pub fn required(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("parameter `{name}` is required"))
    }

    /// A time parameter in ms, or `default` when absent.
    pub fn time_ms(&self, name: &str, default: i64) -> Result<i64, String> {
        match self.get(name).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => parse_time_ms(v).map_err(|e| format!("parameter `{name}`: {e}")),
        }
    }

    /// A required unsigned integer parameter.
    pub fn u64_required(&self, name: &str) -> Result<u64, String> {
        self.u64(name)?
            .ok_or_else(|| format!("parameter `{name}` is required"))
    }

    /// An unsigned integer parameter.
    pub fn u64(&self, name: &str) -> Result<Option<u64>, String> {
        self.get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("parameter `{name}`: `{v}` is not a non-negative integer"))
            })
            .transpose()
    }
}

/// Parses a Prometheus API time: Unix seconds (float) or RFC 3339.
pub fn parse_time_ms(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs.abs() > 9.2e15 {
            return Err(format!("time `{s}` is out of range"));
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    parse_rfc3339_ms(s).ok_or_else(|| {
        format!("`{s}` is neither Unix seconds nor an RFC 3339 time like 2026-01-02T15:04:05Z")
    })
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &s[start..i];
        if frac.is_empty() {
            return None;
        }
        let padded = format!("{:0<3}", &frac[..frac.len().min(3)]);
        millis = padded.parse().ok()?;
    }
    let offset_min = match &s[i..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (oh * 60 + om)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses a step or duration: float seconds or a Prometheus duration (`1h30m`, `15s`, `250ms`).
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs <= 0.0 || secs > 9.2e12 {
            return Err(format!(
                "duration `{s}` must be a positive number of seconds"
            ));
        }
        return Ok((secs * 1000.0).round().max(1.0) as i64);
    }
    let bad = || format!("`{s}` is not a duration like 15s, 5m, 1h30m or a number of seconds");
    let mut total: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    if total == 0 {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let cases = [
            ("1700000000", Ok(1_700_000_000_000)),
            ("1700000000.5", Ok(1_700_000_000_500)),
            ("2023-11-14T22:13:20Z", Ok(1_700_000_000_000)),
            ("2023-11-14T22:13:20.25Z", Ok(1_700_000_000_250)),
            ("2023-11-15T00:13:20+02:00", Ok(1_700_000_000_000)),
            ("1970-01-01T00:00:00Z", Ok(0)),
            ("2023-13-14T22:13:20Z", Err(())),
            ("yesterday", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_time_ms(input).map_err(|_| ()), want, "{input}");
        }
    }

    #[test]
    fn durations() {
        let cases = [
            ("15s", Ok(15_000)),
            ("1h30m", Ok(5_400_000)),
            ("250ms", Ok(250)),
            ("0.5", Ok(500)),
            ("5", Ok(5000)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration_ms(input), want, "{input}");
        }
        for bad in ["", "5x", "m", "-1", "0s", "0"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repeated_keys() {
        let p = Params::parse(
            Some("match[]=up&match[]=x%7Ba%3D%22b%22%7D&start=1"),
            Some(b"end=2"),
        );
        assert_eq!(p.all("match[]"), vec!["up", "x{a=\"b\"}"]);
        assert_eq!(p.get("end"), Some("2"));
    }
}

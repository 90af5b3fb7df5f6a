//! Prometheus durations: `1h30m`, `30s`, `500ms`, `2d`, units in decreasing order.

/// Units Prometheus accepts, largest first, with their length in ms.
const UNITS: [(&str, i64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a Prometheus duration into ms; `0` is accepted, as Prometheus does.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a duration: use e.g. 30s, 1m, 1h30m");
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut total: i64 = 0;
    // Index into UNITS of the next unit allowed: each unit once, in decreasing order.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        // `ms` before `m`: the longer suffix must win.
        let (i, unit_ms, len) = UNITS
            .iter()
            .enumerate()
            .filter(|(_, (u, _))| rest.starts_with(u))
            .map(|(i, (u, ms))| (i, *ms, u.len()))
            .max_by_key(|&(_, _, len)| len)
            .ok_or_else(bad)?;
        if i < next_unit {
            return Err(bad());
        }
        next_unit = i + 1;
        rest = &rest[len..];
        total = n
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// Formats ms as the shortest Prometheus duration (`90000` → `1m30s`).
pub fn format_duration_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (u, unit_ms) in UNITS {
        if rest >= unit_ms {
            out.push_str(&format!("{}{u}", rest / unit_ms));
            rest %= unit_ms;
        }
    }
    out
}

//! Reading a node's own `/metrics`, to report server-side counters next to client figures.

use crate::http::{Conn, Target};
use anyhow::{bail, Result};
use std::collections::BTreeMap;

/// Unlabelled samples of a Prometheus text exposition, by metric name (labelled ones are
/// kept with their label block as part of the key).
pub type Scrape = BTreeMap<String, f64>;

/// Fetches and parses `/metrics`.
pub async fn scrape(target: &Target) -> Result<Scrape> {
    let mut conn = Conn::connect(target).await?;
    let r = conn.get("/metrics").await?;
    if r.status != 200 {
        bail!("GET /metrics answered {}", r.status);
    }
    Ok(parse(&String::from_utf8_lossy(&r.body)))
}

/// Parses `name value` lines, skipping comments and anything unparsable.
pub fn parse(text: &str) -> Scrape {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// `after[name] - before[name]`, zero when missing.
pub fn delta(before: &Scrape, after: &Scrape, name: &str) -> f64 {
    after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exposition_lines_and_deltas() {
        let a = parse("# HELP x y\n# TYPE x counter\nx 3\nh_bucket{le=\"0.5\"} 2\nbad\n");
        let b = parse("x 10\n");
        assert_eq!(a.get("h_bucket{le=\"0.5\"}"), Some(&2.0));
        assert_eq!(a.len(), 2);
        assert_eq!(delta(&a, &b, "x"), 7.0);
        assert_eq!(delta(&a, &b, "missing"), 0.0);
    }
}

//! Query files: one PromQL query per line; `#` starts a comment line, `## <name>` names the
//! category of the queries below it, blank lines are ignored.

use anyhow::{Context, Result};
use std::path::Path;

/// One query of a corpus file.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub query: String,
    /// The last `## ` heading above it, or "uncategorised".
    pub category: String,
    /// 1-based line in its file.
    pub line: usize,
}

/// Parses corpus text.
pub fn parse(text: &str) -> Vec<Entry> {
    let mut category = "uncategorised".to_string();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(c) = line.strip_prefix("## ") {
            category = c.trim().to_string();
        } else if !line.is_empty() && !line.starts_with('#') {
            out.push(Entry {
                query: line.to_string(),
                category: category.clone(),
                line: i + 1,
            });
        }
    }
    out
}

/// Reads and parses a corpus file.
pub fn load(path: &Path) -> Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading corpus {}", path.display()))?;
    Ok(parse(&text))
}

/// Whether a query's instant-vector result has a defined order: Prometheus keeps the order
/// of a top-level `sort`/`sort_desc` (every other vector is compared as a set).
pub fn is_ordered(query: &str) -> bool {
    let q: String = query.chars().filter(|c| !c.is_whitespace()).collect();
    q.starts_with("sort(") || q.starts_with("sort_desc(")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_comments_and_order() {
        let c = parse("# intro\nup\n\n## aggregation\n  sum(up)  \n# note\ncount(up)\n");
        let got: Vec<(&str, &str, usize)> = c
            .iter()
            .map(|e| (e.query.as_str(), e.category.as_str(), e.line))
            .collect();
        assert_eq!(
            got,
            [
                ("up", "uncategorised", 2),
                ("sum(up)", "aggregation", 5),
                ("count(up)", "aggregation", 7)
            ]
        );
        assert!(is_ordered("sort_desc (rate(x[5m]))"));
        assert!(is_ordered(" sort(x)"));
        assert!(!is_ordered("sum(sort(x))"));
        assert!(!is_ordered("topk(3, x)"));
    }
}

//! Label matchers, as in Prometheus selectors.

use regex::{Regex, RegexBuilder};

use crate::promql::QueryError;

/// Compiled size cap of one matcher regex, so a hostile pattern cannot take the memory.
pub const MATCHER_REGEX_BYTES_MAX: usize = 1024 * 1024;

/// How a matcher compares a label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`, fully anchored
    RegexMatch,
    /// `!~`, fully anchored
    RegexNoMatch,
}

/// One label matcher; a series lacking the label is matched as if its value were "".
#[derive(Clone, Debug)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    /// Builds a matcher; a regex is anchored at both ends as Prometheus does.
    pub fn new(op: MatchOp, name: &str, value: &str) -> Result<Matcher, QueryError> {
        let regex = match op {
            MatchOp::Equal | MatchOp::NotEqual => None,
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => Some(compile_anchored(value)?),
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// The label name this matcher tests.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The comparison.
    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The value or regex source, as written.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// True when a label value (`""` for an absent label) passes.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => self.value == value,
            (MatchOp::NotEqual, _) => self.value != value,
            (MatchOp::RegexMatch, Some(re)) => re.is_match(value),
            (MatchOp::RegexNoMatch, Some(re)) => !re.is_match(value),
            // `new` always compiles a regex for the regex ops.
            (MatchOp::RegexMatch | MatchOp::RegexNoMatch, None) => false,
        }
    }
}

fn compile_anchored(source: &str) -> Result<Regex, QueryError> {
    // `(?s)`: in Prometheus `.` also matches a newline.
    RegexBuilder::new(&format!("^(?s:{source})$"))
        .size_limit(MATCHER_REGEX_BYTES_MAX)
        .build()
        .map_err(|e| QueryError::bad_data(format!("invalid regular expression {source:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes_are_fully_anchored() {
        let m = Matcher::new(MatchOp::RegexMatch, "job", "api|web").unwrap();
        assert!(m.matches("api"));
        assert!(!m.matches("api2"));
        assert!(!m.matches("xweb"));
        let m = Matcher::new(MatchOp::RegexNoMatch, "job", "a.*").unwrap();
        assert!(!m.matches("a\nb"));
        assert!(m.matches("ba"));
        let err = Matcher::new(MatchOp::RegexMatch, "job", "(").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid regular expression \"(\""),
            "{err}"
        );
    }
}

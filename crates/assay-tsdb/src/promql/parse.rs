//! Parsing with `promql-parser`, plus what it lacks: error positions and limits.
//!
//! `promql-parser` reports syntax errors without a position ("invalid promql query"). To
//! name one, a failed query is parsed once more, actions off, by an LR parser built at run
//! time from `promql.y`: a verbatim copy of the grammar of the pinned `promql-parser`
//! version (Apache-2.0), so both parsers accept the same token sequences. The table is
//! built once per process, on the first failing query.

use std::sync::OnceLock;

use cfgrammar::yacc::{YaccGrammar, YaccKind};
use lrpar::{LexParseError, Lexeme, RTParserBuilder, RecoveryKind};
use lrtable::StateTable;
use promql_parser::label::{MatchOp as ParserOp, Matcher as ParserMatcher, Matchers};
use promql_parser::parser::{Expr, VectorSelector};

use super::{QueryError, QUERY_BYTES_MAX, QUERY_EXPR_DEPTH_MAX};
use crate::{MatchOp, Matcher};

/// Parses a query, enforcing the size and depth limits.
pub(super) fn query(text: &str) -> Result<Expr, QueryError> {
    if text.len() > QUERY_BYTES_MAX {
        return Err(QueryError::bad_data(format!(
            "query is {} bytes, more than the limit of {QUERY_BYTES_MAX}; split it or shorten it",
            text.len()
        )));
    }
    if text.trim().is_empty() {
        return Err(QueryError::bad_data(
            "1:1: parse error: no expression found in input",
        ));
    }
    let expr = promql_parser::parser::parse(text).map_err(|e| parse_error(text, &e))?;
    if depth_exceeds(&expr, QUERY_EXPR_DEPTH_MAX) {
        return Err(QueryError::bad_data(format!(
            "query nests deeper than {QUERY_EXPR_DEPTH_MAX} expressions; flatten it"
        )));
    }
    Ok(expr)
}

/// Parses `metric{matchers}` into one AND-list of matchers (name included).
pub(super) fn selector(text: &str) -> Result<Vec<Matcher>, QueryError> {
    let expr = query(text)?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(QueryError::bad_data(format!(
            "{text:?} is not a series selector like metric{{label=\"value\"}}"
        )));
    };
    if vs.offset.is_some() || vs.at.is_some() {
        return Err(QueryError::bad_data(format!(
            "series selector {text:?} must not carry offset or @"
        )));
    }
    let mut sets = selector_matchers(&vs)?;
    if sets.len() != 1 {
        return Err(QueryError::unsupported(
            "`or` inside a series selector parameter",
        ));
    }
    Ok(sets.remove(0))
}

/// The selector's matchers as OR-ed AND-lists (one list unless it uses `or`).
pub(super) fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let mut base = Vec::new();
    if let Some(name) = &vs.name {
        base.push(Matcher::new(
            MatchOp::Equal,
            assay_ledger::METRIC_NAME_LABEL,
            name,
        )?);
    }
    let Matchers {
        matchers,
        or_matchers,
    } = &vs.matchers;
    let mut sets = Vec::new();
    if or_matchers.is_empty() {
        sets.push(convert_all(&base, matchers)?);
    } else {
        for alternative in or_matchers {
            sets.push(convert_all(&base, alternative)?);
        }
    }
    for set in &sets {
        // Prometheus refuses selectors that would match every series.
        if set.iter().all(|m| m.matches("")) {
            return Err(QueryError::bad_data(
                "vector selector must contain at least one non-empty matcher",
            ));
        }
    }
    Ok(sets)
}

fn convert_all(base: &[Matcher], ms: &[ParserMatcher]) -> Result<Vec<Matcher>, QueryError> {
    let mut out = base.to_vec();
    for m in ms {
        let op = match &m.op {
            ParserOp::Equal => MatchOp::Equal,
            ParserOp::NotEqual => MatchOp::NotEqual,
            ParserOp::Re(_) => MatchOp::RegexMatch,
            ParserOp::NotRe(_) => MatchOp::RegexNoMatch,
        };
        out.push(Matcher::new(op, &m.name, &m.value)?);
    }
    Ok(out)
}

fn depth_exceeds(e: &Expr, budget: usize) -> bool {
    if budget == 0 {
        return true;
    }
    let b = budget - 1;
    match e {
        Expr::Aggregate(a) => {
            depth_exceeds(&a.expr, b) || a.param.as_ref().is_some_and(|p| depth_exceeds(p, b))
        }
        Expr::Unary(u) => depth_exceeds(&u.expr, b),
        Expr::Binary(x) => depth_exceeds(&x.lhs, b) || depth_exceeds(&x.rhs, b),
        Expr::Paren(p) => depth_exceeds(&p.expr, b),
        Expr::Subquery(s) => depth_exceeds(&s.expr, b),
        Expr::Call(c) => c.args.args.iter().any(|a| depth_exceeds(a, b)),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => false,
    }
}

/// Turns a `promql-parser` message into a `bad_data` error with `line:column:` when the
/// offending input can be located.
fn parse_error(text: &str, message: &str) -> QueryError {
    let located = match promql_parser::parser::lexer(text) {
        Err(lex_message) => lex_error_offset(text, &lex_message).map(|at| (at, lex_message)),
        Ok(lexer) => syntax_error(&lexer, text),
    };
    match located {
        Some((at, what)) => {
            let (line, col) = line_col(text, at);
            QueryError::bad_data(format!("{line}:{col}: parse error: {what}"))
        }
        None => QueryError::bad_data(format!("parse error: {message}")),
    }
}

/// The lexer type `promql_parser::parser::lexer` returns.
type PromqlLexer<'a> = lrlex::LRNonStreamingLexer<'a, 'a, lrlex::DefaultLexerTypes<u16>>;

/// The first syntax error's byte offset and a description of the token found there.
fn syntax_error(lexer: &PromqlLexer<'_>, text: &str) -> Option<(usize, String)> {
    let (grm, table) = grammar()?;
    #[allow(deprecated)] // `parse_noaction` is the no-action entry point of lrpar 0.14.
    let errors = RTParserBuilder::new(grm, table)
        .recoverer(RecoveryKind::None)
        .parse_noaction(lexer);
    errors.into_iter().find_map(|e| match e {
        LexParseError::ParseError(p) => {
            let span = p.lexeme().span();
            let found = text.get(span.start()..span.end()).unwrap_or("");
            let what = if found.is_empty() {
                "unexpected end of input".to_string()
            } else {
                format!("unexpected {found:?}")
            };
            Some((span.start(), what))
        }
        LexParseError::LexError(_) => None,
    })
}

type Tables = (YaccGrammar<u16>, StateTable<u16>);

fn grammar() -> Option<&'static Tables> {
    static TABLES: OnceLock<Option<Tables>> = OnceLock::new();
    TABLES
        .get_or_init(|| {
            let grm = YaccGrammar::new_with_storaget(YaccKind::Grmtools, include_str!("promql.y"))
                .ok()?;
            let (_, table) = lrtable::from_yacc(&grm, lrtable::Minimiser::Pager).ok()?;
            Some((grm, table))
        })
        .as_ref()
}

/// Byte offset of a lexer error: where the shortest prefix failing the same way ends.
/// Bounded to a short query prefix since each probe re-lexes the prefix.
fn lex_error_offset(text: &str, message: &str) -> Option<usize> {
    const PROBE_BYTES_MAX: usize = 2048;
    let ends = text.char_indices().map(|(i, c)| i + c.len_utf8());
    for end in ends.take_while(|&e| e <= PROBE_BYTES_MAX) {
        if let Err(m) = promql_parser::parser::lexer(&text[..end]) {
            if m == message {
                let last = text[..end].char_indices().last().map_or(0, |(i, _)| i);
                return Some(last);
            }
        }
    }
    None
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

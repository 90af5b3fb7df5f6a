//! PromQL conformance harness: loads one generated dataset into Prometheus (backfilled with
//! promtool) and into Assay (text import), runs a query corpus against both as instant and
//! range queries, and compares the answers. See `tests/conformance/README.md`.

mod compare;
mod corpus;
mod data;
mod servers;

use anyhow::{bail, Context, Result};
use clap::Parser;
use compare::{Answer, Tolerance};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Samples per import request to Assay (its default batch limit is 100,000).
const IMPORT_CHUNK_SAMPLES_MAX: usize = 20_000;
/// Per-request timeout for queries and imports.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Range-query step, ms.
const RANGE_STEP_MS: i64 = 60_000;

#[derive(Parser, Debug)]
#[command(
    about = "Compare Assay's PromQL answers with Prometheus' on the same data",
    // A flag given twice takes its last value, so run.sh's defaults can be overridden.
    args_override_self = true
)]
struct Args {
    /// The Prometheus server binary.
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus: PathBuf,
    /// promtool, for the backfill.
    #[arg(long, default_value = "/usr/bin/promtool")]
    promtool: PathBuf,
    /// The assay binary.
    #[arg(long)]
    assay: PathBuf,
    /// The query corpus.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/queries.txt"))]
    corpus: PathBuf,
    /// Queries known to differ for a documented reason (run and reported apart).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/known-differences.txt"))]
    known_differences: PathBuf,
    /// Queries that must pass (CI gate): any of them failing fails the run.
    #[arg(long)]
    expected_pass: Option<PathBuf>,
    /// Write the queries that passed to this file (to refresh the expected-pass list).
    #[arg(long)]
    write_expected_pass: Option<PathBuf>,
    /// Minimum share of corpus queries that must pass, percent.
    #[arg(long, default_value_t = 100.0)]
    min_pass_rate: f64,
    /// Run only queries containing this substring.
    #[arg(long)]
    filter: Option<String>,
    /// One instant time instead of three (plus the range query).
    #[arg(long)]
    reduced: bool,
    /// Write a JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Relative tolerance for sample values.
    #[arg(long, default_value_t = 1e-6)]
    rel_tol: f64,
    /// Absolute tolerance for sample values (near zero).
    #[arg(long, default_value_t = 1e-9)]
    abs_tol: f64,
    /// Dataset seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Hours of data, ending 10 minutes before now (Assay accepts up to 31 days back).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=720))]
    hours: u32,
    /// Working directory (data, logs, pid files); a temporary one is used and removed otherwise.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Print passing queries too.
    #[arg(long, short)]
    verbose: bool,
}

/// Where a query is evaluated.
#[derive(Clone, Debug)]
enum Eval {
    Instant {
        name: &'static str,
        t_ms: i64,
    },
    Range {
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    },
}

impl Eval {
    fn name(&self) -> &'static str {
        match self {
            Eval::Instant { name, .. } => name,
            Eval::Range { .. } => "range",
        }
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        let secs = |ms: i64| format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
        match self {
            Eval::Instant { t_ms, .. } => vec![("time", secs(*t_ms))],
            Eval::Range {
                start_ms,
                end_ms,
                step_ms,
            } => vec![
                ("start", secs(*start_ms)),
                ("end", secs(*end_ms)),
                ("step", format!("{}", step_ms / 1000)),
            ],
        }
    }

    fn path(&self) -> &'static str {
        match self {
            Eval::Instant { .. } => "/api/v1/query",
            Eval::Range { .. } => "/api/v1/query_range",
        }
    }
}

/// Evaluation times: whole minutes plus [`data::EVAL_FRACTION_MS`], inside and just after the
/// data (the last within the 5 m lookback of the final samples).
fn evals(ds: &data::Dataset, reduced: bool) -> Vec<Eval> {
    let f = data::EVAL_FRACTION_MS;
    let min = 60_000;
    let mut v = vec![Eval::Instant {
        name: "instant@mid",
        t_ms: ds.start_ms + (ds.end_ms - ds.start_ms) / 2 / min * min + 7 * min + f,
    }];
    if !reduced {
        v.push(Eval::Instant {
            name: "instant@early",
            t_ms: ds.start_ms + 61 * min + f,
        });
        v.push(Eval::Instant {
            name: "instant@after-end",
            t_ms: ds.end_ms + 3 * min + f,
        });
    }
    v.push(Eval::Range {
        start_ms: ds.start_ms + 20 * min + f,
        end_ms: ds.end_ms + 7 * min + f,
        step_ms: RANGE_STEP_MS,
    });
    v
}

/// Runs one query on one server; transport failures become an `Answer::Error` of kind
/// `transport` (so a crashed server shows up as failures, not as a harness abort).
fn fetch(agent: &ureq::Agent, base: &str, eval: &Eval, query: &str) -> Answer {
    let mut req = agent
        .get(&format!("{base}{}", eval.path()))
        .query("query", query);
    for (k, v) in eval.params() {
        req = req.query(k, &v);
    }
    let body = match req.call() {
        Ok(r) => r.into_string(),
        Err(ureq::Error::Status(code, r)) => match r.into_string() {
            Ok(s) if s.trim_start().starts_with('{') => Ok(s),
            other => {
                return Answer::Error {
                    kind: format!("http {code}"),
                    message: other.unwrap_or_default(),
                }
            }
        },
        Err(e) => {
            return Answer::Error {
                kind: "transport".into(),
                message: e.to_string(),
            }
        }
    };
    let parsed = body
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_str(&b).map_err(|e| e.to_string()))
        .and_then(|v| compare::parse_answer(&v));
    parsed.unwrap_or_else(|message| Answer::Error {
        kind: "unparsable".into(),
        message,
    })
}

/// One query's verdict.
struct Outcome {
    entry: corpus::Entry,
    /// `(eval name, difference)` for every evaluation that differed.
    failures: Vec<(&'static str, String)>,
    /// Why the first differing evaluation differed, coarsely (see [`reason`]).
    reason: Option<String>,
}

/// A coarse failure class for the summary: Assay's error message when only Assay failed
/// (it names the unsupported feature), else the kind of difference.
fn reason(want: &Answer, got: &Answer) -> String {
    match (want, got) {
        (Answer::Error { kind, .. }, Answer::Error { message, .. }) => {
            format!("error type differs from prometheus' {kind}; assay: {message}")
        }
        (_, Answer::Error { message, .. }) => format!("assay errors: {message}"),
        (Answer::Error { .. }, _) => "prometheus errors, assay answers".into(),
        _ => "answers differ (labels, values or timestamps)".into(),
    }
}

impl Outcome {
    fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

struct Run<'a> {
    agent: &'a ureq::Agent,
    prometheus: &'a str,
    assay: &'a str,
    evals: &'a [Eval],
    tol: Tolerance,
}

impl Run<'_> {
    fn query(&self, entry: &corpus::Entry) -> Outcome {
        let mut failures = Vec::new();
        let mut first_reason = None;
        for eval in self.evals {
            let want = fetch(self.agent, self.prometheus, eval, &entry.query);
            let got = fetch(self.agent, self.assay, eval, &entry.query);
            let ordered = matches!(eval, Eval::Instant { .. }) && corpus::is_ordered(&entry.query);
            if let Err(d) = compare::compare(&want, &got, ordered, self.tol) {
                failures.push((eval.name(), d));
                first_reason.get_or_insert_with(|| reason(&want, &got));
            }
        }
        Outcome {
            entry: entry.clone(),
            failures,
            reason: first_reason,
        }
    }

    fn corpus(&self, entries: &[corpus::Entry], verbose: bool) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let o = self.query(e);
            print_outcome(&o, verbose);
            out.push(o);
        }
        out
    }
}

fn print_outcome(o: &Outcome, verbose: bool) {
    if o.passed() {
        if verbose {
            println!("ok    {}", o.entry.query);
        }
        return;
    }
    println!("FAIL  {}   (line {})", o.entry.query, o.entry.line);
    // The same difference at every evaluation is printed once.
    let mut seen = BTreeSet::new();
    for (eval, d) in &o.failures {
        if seen.insert(d) {
            println!("        {eval}: {d}");
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Both servers must hold every generated sample (checks the loading, not PromQL): the
/// raw samples of a range selector over all the data are counted here, since functions
/// drop `__name__` and would make series collide.
fn check_loaded(run: &Run, ds: &data::Dataset) -> Result<()> {
    let minutes = (ds.end_ms - ds.start_ms) / 60_000 + 5;
    let q = format!("{{__name__=~\".+\"}}[{minutes}m]");
    let eval = Eval::Instant {
        name: "load-check",
        t_ms: ds.end_ms + data::EVAL_FRACTION_MS,
    };
    let want = ds.sample_count();
    for (name, base) in [("prometheus", run.prometheus), ("assay", run.assay)] {
        let got = match fetch(run.agent, base, &eval, &q) {
            Answer::Matrix(m) => m.iter().map(|(_, points)| points.len()).sum::<usize>(),
            other => bail!("{name} answered `{q}` with {other:?}"),
        };
        if got != want {
            bail!("{name} holds {got} samples, {want} were generated (`{q}`)");
        }
    }
    Ok(())
}

fn read_query_list(path: &Path) -> Result<BTreeSet<String>> {
    Ok(corpus::load(path)?.into_iter().map(|e| e.query).collect())
}

fn write_query_list(path: &Path, outcomes: &[Outcome]) -> Result<()> {
    let mut text = String::from(
        "# Queries of queries.txt that pass today; CI fails when one of them stops passing.\n\
         # Regenerate: tests/conformance/run.sh --write-expected-pass tests/conformance/expected-pass.txt\n",
    );
    for o in outcomes.iter().filter(|o| o.passed()) {
        text.push_str(&o.entry.query);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Failing queries per [`reason`], most frequent first.
fn by_reason(outcomes: &[Outcome]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for o in outcomes {
        if let Some(r) = &o.reason {
            *counts.entry(r).or_default() += 1;
        }
    }
    let mut v: Vec<(String, usize)> = counts
        .into_iter()
        .map(|(r, n)| (r.to_string(), n))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Pass counts per category, in corpus order of first appearance.
fn by_category(outcomes: &[Outcome]) -> Vec<(String, usize, usize)> {
    let mut order: Vec<String> = Vec::new();
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for o in outcomes {
        let c = &o.entry.category;
        if !counts.contains_key(c) {
            order.push(c.clone());
        }
        let e = counts.entry(c.clone()).or_default();
        e.0 += o.passed() as usize;
        e.1 += 1;
    }
    order
        .into_iter()
        .map(|c| {
            let (p, t) = counts[&c];
            (c, p, t)
        })
        .collect()
}

fn pct(n: usize, m: usize) -> f64 {
    if m == 0 {
        100.0
    } else {
        100.0 * n as f64 / m as f64
    }
}

fn outcome_json(o: &Outcome) -> serde_json::Value {
    json!({
        "query": o.entry.query,
        "category": o.entry.category,
        "line": o.entry.line,
        "passed": o.passed(),
        "reason": o.reason,
        "failures": o.failures.iter().map(|(e, d)| json!({"eval": e, "diff": d})).collect::<Vec<_>>(),
    })
}

struct Verdict {
    passed: usize,
    total: usize,
    regressions: Vec<String>,
    ok: bool,
}

fn verdict(outcomes: &[Outcome], expected: Option<&BTreeSet<String>>, min_rate: f64) -> Verdict {
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    let total = outcomes.len();
    let regressions: Vec<String> = match expected {
        None => vec![],
        Some(exp) => outcomes
            .iter()
            .filter(|o| !o.passed() && exp.contains(&o.entry.query))
            .map(|o| o.entry.query.clone())
            .collect(),
    };
    let ok = regressions.is_empty() && pct(passed, total) + 1e-9 >= min_rate;
    Verdict {
        passed,
        total,
        regressions,
        ok,
    }
}

fn main() {
    match real_main() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("conformance harness error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Generates the dataset and starts both servers holding it.
fn start_and_load(
    args: &Args,
    work: &Path,
    agent: &ureq::Agent,
) -> Result<(data::Dataset, servers::Server, servers::Server)> {
    let ds = data::generate(args.seed, now_ms() - 10 * 60_000, args.hours);
    println!(
        "dataset: {} series, {} samples, {} .. {} (ms); work dir {}",
        ds.series.len(),
        ds.sample_count(),
        ds.start_ms,
        ds.end_ms,
        work.display()
    );
    let om = data::openmetrics(&ds);
    let prom = servers::start_prometheus(&args.prometheus, &args.promtool, work, &om, agent)?;
    let assay = servers::start_assay(&args.assay, work, agent)?;
    let chunks = data::prometheus_text_chunks(&ds, IMPORT_CHUNK_SAMPLES_MAX);
    servers::load_assay(&assay, agent, &chunks)?;
    Ok((ds, prom, assay))
}

fn real_main() -> Result<bool> {
    let args = Args::parse();
    let started = Instant::now();
    let tmp;
    let work: PathBuf = match &args.work_dir {
        Some(w) => {
            std::fs::create_dir_all(w)?;
            w.clone()
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("assay-conformance-")
                .tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let filter = |e: &corpus::Entry| args.filter.as_ref().is_none_or(|f| e.query.contains(f));
    let entries: Vec<_> = corpus::load(&args.corpus)?
        .into_iter()
        .filter(filter)
        .collect();
    let known: Vec<_> = corpus::load(&args.known_differences)?
        .into_iter()
        .filter(filter)
        .collect();
    let expected = args
        .expected_pass
        .as_deref()
        .map(read_query_list)
        .transpose()?;
    let agent = ureq::AgentBuilder::new().timeout(REQUEST_TIMEOUT).build();
    let (ds, prom, assay) = start_and_load(&args, &work, &agent)?;
    println!(
        "loaded: prometheus {} , assay {} ({:.1?})",
        prom.base_url,
        assay.base_url,
        started.elapsed()
    );
    let evals = evals(&ds, args.reduced);
    let run = Run {
        agent: &agent,
        prometheus: &prom.base_url,
        assay: &assay.base_url,
        evals: &evals,
        tol: Tolerance {
            rel: args.rel_tol,
            abs: args.abs_tol,
        },
    };
    check_loaded(&run, &ds)?;

    let outcomes = run.corpus(&entries, args.verbose);
    println!("\n== known differences (not counted) ==");
    let known_outcomes = run.corpus(&known, true);
    drop(assay);
    drop(prom);

    report(
        &args,
        &outcomes,
        &known_outcomes,
        expected.as_ref(),
        started,
    )
}

fn report(
    args: &Args,
    outcomes: &[Outcome],
    known: &[Outcome],
    expected: Option<&BTreeSet<String>>,
    started: Instant,
) -> Result<bool> {
    let v = verdict(outcomes, expected, args.min_pass_rate);
    let cats = by_category(outcomes);
    println!("\n== by category ==");
    for (c, p, t) in &cats {
        println!("{p:>4} / {t:<4} {c}");
    }
    let reasons = by_reason(outcomes);
    println!("\n== failure reasons (queries) ==");
    for (r, n) in &reasons {
        println!("{n:>4}  {r}");
    }
    let known_same = known.iter().filter(|o| o.passed()).count();
    println!(
        "known differences: {} of {} still differ",
        known.len() - known_same,
        known.len()
    );
    if let Some(exp) = expected {
        let present: BTreeSet<&String> = outcomes.iter().map(|o| &o.entry.query).collect();
        let missing = exp.iter().filter(|q| !present.contains(q)).count();
        if missing > 0 && args.filter.is_none() {
            println!("warning: {missing} expected-pass queries are not in the corpus");
        }
        for q in &v.regressions {
            println!("REGRESSION (listed in expected-pass): {q}");
        }
    }
    let elapsed = started.elapsed();
    println!(
        "\npassed {} / {} ({:.1}%) in {:.1?}; {}",
        v.passed,
        v.total,
        pct(v.passed, v.total),
        elapsed,
        if v.ok { "OK" } else { "FAILED" }
    );
    if let Some(path) = &args.write_expected_pass {
        write_query_list(path, outcomes)?;
    }
    if let Some(path) = &args.json {
        let j = json!({
            "passed": v.passed,
            "total": v.total,
            "pass_rate_percent": pct(v.passed, v.total),
            "ok": v.ok,
            "regressions": v.regressions,
            "wall_seconds": elapsed.as_secs_f64(),
            "reasons": reasons.iter().map(|(r, n)| json!({"reason": r, "queries": n})).collect::<Vec<_>>(),
            "categories": cats.iter().map(|(c, p, t)| json!({"category": c, "passed": p, "total": t})).collect::<Vec<_>>(),
            "queries": outcomes.iter().map(outcome_json).collect::<Vec<_>>(),
            "known_differences": known.iter().map(outcome_json).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(v.ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(query: &str, passed: bool) -> Outcome {
        Outcome {
            entry: corpus::Entry {
                query: query.into(),
                category: "c".into(),
                line: 1,
            },
            failures: if passed {
                vec![]
            } else {
                vec![("range", "differs".into())]
            },
            reason: None,
        }
    }

    #[test]
    fn gate_fails_on_a_regression_or_a_low_pass_rate() {
        let outcomes = [outcome("a", true), outcome("b", false), outcome("c", true)];
        let expected: BTreeSet<String> = ["a".to_string(), "c".to_string()].into();
        let v = verdict(&outcomes, Some(&expected), 0.0);
        assert!(v.ok && v.regressions.is_empty() && v.passed == 2 && v.total == 3);
        let expected: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
        let v = verdict(&outcomes, Some(&expected), 0.0);
        assert!(!v.ok);
        assert_eq!(v.regressions, ["b"]);
        assert!(verdict(&outcomes, None, 66.0).ok);
        assert!(!verdict(&outcomes, None, 67.0).ok);
    }
}

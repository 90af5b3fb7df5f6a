//! The rule engine: schedule over block times, and evaluation through a table evaluator.

use assay_ledger::{Labels, SampleBatch};
use assay_rules::engine::CATCH_UP_EVALUATIONS_MAX;
use assay_rules::{parse_rule_file, Evaluate, RuleEngine, RuleSample};
use expect_test::{expect, Expect};
use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr, LabelModifier};

/// A PromQL subset over a table: selectors with `=` matchers (5m lookback), `sum`/`count`
/// with `by`, numbers, `*` by a number. Series named `fail` fail the query. Every call is
/// logged, with how many samples `recorded` held.
#[derive(Default)]
struct Table {
    samples: Vec<(Labels, i64, f64)>,
    calls: Vec<String>,
}

impl Table {
    fn with(samples: &[(&str, i64, f64)]) -> Table {
        let samples = samples
            .iter()
            .map(|(series, t, v)| (labels(series), *t, *v))
            .collect();
        Table {
            samples,
            calls: Vec::new(),
        }
    }

    fn eval(&self, e: &Expr, t: i64, recorded: &SampleBatch) -> Result<Vec<RuleSample>, String> {
        match e {
            Expr::NumberLiteral(n) => Ok(vec![RuleSample {
                labels: vec![],
                value: n.val,
            }]),
            Expr::Paren(p) => self.eval(&p.expr, t, recorded),
            Expr::VectorSelector(vs) => {
                if vs.name.as_deref() == Some("fail") {
                    return Err("storage says no".into());
                }
                let mut newest: Vec<(Labels, i64, f64)> = Vec::new();
                let stored = self.samples.iter().map(|(l, t, v)| (l, *t, *v));
                for (l, ts, v) in stored.chain(recorded.iter()) {
                    let ok = vs
                        .name
                        .as_deref()
                        .is_none_or(|n| l.metric_name() == Some(n))
                        && vs.matchers.matchers.iter().all(|m| {
                            m.op == MatchOp::Equal && l.get(&m.name).unwrap_or("") == m.value
                        });
                    if !ok || ts > t || ts <= t - 300_000 {
                        continue;
                    }
                    match newest.iter_mut().find(|(nl, ..)| nl == l) {
                        Some(n) if n.1 <= ts => *n = (l.clone(), ts, v),
                        Some(_) => {}
                        None => newest.push((l.clone(), ts, v)),
                    }
                }
                Ok(newest
                    .into_iter()
                    .map(|(l, _, v)| RuleSample {
                        labels: l.to_vec(),
                        value: v,
                    })
                    .collect())
            }
            Expr::Aggregate(a) => {
                let by: Vec<String> = match &a.modifier {
                    None => vec![],
                    Some(LabelModifier::Include(l)) => l.labels.clone(),
                    Some(_) => return Err("without is not in the table evaluator".into()),
                };
                let op = a.op.to_string();
                let mut groups: Vec<(Vec<(String, String)>, f64)> = Vec::new();
                for s in self.eval(&a.expr, t, recorded)? {
                    let key: Vec<(String, String)> = s
                        .labels
                        .iter()
                        .filter(|(n, _)| by.contains(n))
                        .cloned()
                        .collect();
                    let inc = if op == "count" { 1.0 } else { s.value };
                    match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some(g) => g.1 += inc,
                        None => groups.push((key, inc)),
                    }
                }
                Ok(groups
                    .into_iter()
                    .map(|(labels, value)| RuleSample { labels, value })
                    .collect())
            }
            Expr::Binary(b) if b.op.to_string() == "*" => {
                let Expr::NumberLiteral(n) = &*b.rhs else {
                    return Err("only vector * number".into());
                };
                let mut v = self.eval(&b.lhs, t, recorded)?;
                for s in &mut v {
                    s.labels.retain(|(n, _)| n != "__name__");
                    s.value *= n.val;
                }
                Ok(v)
            }
            other => Err(format!("unsupported: {other}")),
        }
    }
}

impl Evaluate for Table {
    fn instant(
        &mut self,
        expr: &str,
        t_ms: i64,
        recorded: &SampleBatch,
    ) -> Result<Vec<RuleSample>, String> {
        self.calls
            .push(format!("{expr} @{t_ms} recorded={}", recorded.len()));
        let e = promql_parser::parser::parse(expr)?;
        self.eval(&e, t_ms, recorded)
    }
}

/// `name{a="1",b="2"}` → labels.
fn labels(series: &str) -> Labels {
    let (name, rest) = series.split_once('{').unwrap_or((series, "}"));
    let mut pairs = vec![("__name__".to_string(), name.to_string())];
    for kv in rest
        .trim_end_matches('}')
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv.split_once('=').unwrap();
        pairs.push((k.to_string(), v.trim_matches('"').to_string()));
    }
    Labels::new(pairs).unwrap()
}

fn engine(yaml: &str) -> RuleEngine {
    RuleEngine::new(parse_rule_file("rules.yml", yaml).unwrap().groups)
}

/// Block times in, due evaluations out, one line per block.
fn check_schedule(yaml: &str, blocks: &[i64], expect: Expect) {
    let mut e = engine(yaml);
    let mut out = String::new();
    for &b in blocks {
        let due: Vec<String> = e
            .on_block(b)
            .iter()
            .map(|d| format!("{}@{}", e.groups()[d.group].name, d.t_ms))
            .collect();
        out += &format!("block {b}: {}\n", due.join(" "));
    }
    for (g, s) in e.groups().iter().zip(e.schedule()) {
        out += &format!(
            "{}: next={:?} evaluations={} missed={}\n",
            g.name, s.next_ms, s.evaluations, s.missed
        );
    }
    expect.assert_eq(&out);
}

const TWO_GROUPS: &str = "
groups:
  - {name: fast, interval: 10s, rules: [{record: a, expr: '1'}]}
  - {name: slow, interval: 1m, rules: [{record: b, expr: '2'}]}
";

#[test]
fn schedule_aligns_to_absolute_multiples() {
    check_schedule(
        TWO_GROUPS,
        &[
            61_500, 65_000, 70_000, 70_000, 69_000, 79_999, 80_001, 125_000,
        ],
        expect![[r#"
            block 61500: fast@60000 slow@60000
            block 65000: 
            block 70000: fast@70000
            block 70000: 
            block 69000: 
            block 79999: 
            block 80001: fast@80000
            block 125000: fast@90000 fast@100000 fast@110000 fast@120000 slow@120000
            fast: next=Some(130000) evaluations=7 missed=0
            slow: next=Some(180000) evaluations=2 missed=0
        "#]],
    );
}

#[test]
fn schedule_catches_up_then_skips() {
    // 30 intervals of silence: the newest CATCH_UP_EVALUATIONS_MAX are made due.
    assert_eq!(CATCH_UP_EVALUATIONS_MAX, 10);
    check_schedule(
        TWO_GROUPS,
        &[0, 300_000, 300_001],
        expect![[r#"
            block 0: fast@0 slow@0
            block 300000: slow@60000 slow@120000 slow@180000 fast@210000 fast@220000 fast@230000 fast@240000 slow@240000 fast@250000 fast@260000 fast@270000 fast@280000 fast@290000 fast@300000 slow@300000
            block 300001: 
            fast: next=Some(310000) evaluations=11 missed=20
            slow: next=Some(360000) evaluations=6 missed=0
        "#]],
    );
    // Negative block times (before 1970) align the same way.
    check_schedule(
        TWO_GROUPS,
        &[-15_000, -5_000],
        expect![[r#"
            block -15000: slow@-60000 fast@-20000
            block -5000: fast@-10000
            fast: next=Some(0) evaluations=2 missed=0
            slow: next=Some(0) evaluations=1 missed=0
        "#]],
    );
}

/// Runs `blocks` through a fresh engine and table; prints recorded samples and failures.
fn check_run(yaml: &str, table: &[(&str, i64, f64)], blocks: &[i64], expect: Expect) {
    let mut e = engine(yaml);
    let mut ev = Table::with(table);
    let mut out = String::new();
    for &b in blocks {
        let run = e.run_block(b, &mut ev);
        out += &format!("block {b}\n");
        for (l, t, v) in run.batch.iter() {
            out += &format!("  {:?} @{t} = {v}\n", l.pairs());
        }
        for f in &run.failures {
            out += &format!(
                "  failed: group {} rule {}: {}\n",
                f.group, f.rule, f.message
            );
        }
    }
    out += "calls:\n";
    for c in &ev.calls {
        out += &format!("  {c}\n");
    }
    expect.assert_eq(&out);
}

#[test]
fn later_rules_see_earlier_results() {
    check_run(
        "
groups:
  - name: g
    interval: 1m
    rules:
      - record: job:req:sum
        expr: sum by (job) (req)
      - record: job:req:sum_x2
        expr: job:req:sum * 2
        labels: {unit: double}
      - record: total
        expr: count(job:req:sum)
      - record: independent
        expr: sum(req)
      - record: any_name
        expr: count({job='api'})
      - alert: NotEvaluated
        expr: up == 0
",
        &[
            ("req{job=api,i=1}", 59_000, 3.0),
            ("req{job=api,i=2}", 59_000, 4.0),
            ("req{job=web,i=1}", 30_000, 10.0),
            ("req{job=web,i=1}", 61_000, 99.0),
        ],
        &[60_500],
        expect![[r#"
            block 60500
              [("__name__", "job:req:sum"), ("job", "api")] @60000 = 7
              [("__name__", "job:req:sum"), ("job", "web")] @60000 = 10
              [("__name__", "job:req:sum_x2"), ("job", "api"), ("unit", "double")] @60000 = 14
              [("__name__", "job:req:sum_x2"), ("job", "web"), ("unit", "double")] @60000 = 20
              [("__name__", "total")] @60000 = 2
              [("__name__", "independent")] @60000 = 17
              [("__name__", "any_name")] @60000 = 4
            calls:
              sum by (job) (req) @60000 recorded=0
              job:req:sum * 2 @60000 recorded=2
              count(job:req:sum) @60000 recorded=4
              sum(req) @60000 recorded=0
              count({job='api'}) @60000 recorded=6
        "#]],
    );
}

#[test]
fn failures_and_label_rules() {
    check_run(
        "
groups:
  - name: g
    interval: 1m
    query_offset: 30s
    limit: 2
    rules:
      - record: broken
        expr: fail
      - record: too_many
        expr: req
      - record: collide
        expr: req{job='api'} * 1
        labels: {i: same}
      - record: relabel
        expr: req{job='web'}
        labels: {i: '', job: renamed, extra: x}
",
        &[
            ("req{job=api,i=1}", 20_000, 1.0),
            ("req{job=api,i=2}", 20_000, 2.0),
            ("req{job=web,i=1}", 20_000, 5.0),
        ],
        &[60_000],
        expect![[r#"
            block 60000
              [("__name__", "relabel"), ("extra", "x"), ("job", "renamed")] @30000 = 5
              failed: group 0 rule 0: storage says no
              failed: group 0 rule 1: 3 series exceed the limit of 2: narrow the expression or raise the group's limit
              failed: group 0 rule 2: two results have the label set [("__name__", "collide"), ("i", "same"), ("job", "api")] after applying the rule's labels
            calls:
              fail @30000 recorded=0
              req @30000 recorded=0
              req{job='api'} * 1 @30000 recorded=0
              req{job='web'} @30000 recorded=0
        "#]],
    );
}

#[test]
fn same_blocks_same_output() {
    let yaml = "
groups:
  - {name: fast, interval: 10s, rules: [{record: s, expr: sum by (job) (req)}, {record: c, expr: count(s)}]}
  - {name: slow, interval: 1m, rules: [{record: t, expr: sum(req) * 3}]}
";
    let table: Vec<(String, i64, f64)> = (0..200)
        .map(|i| {
            (
                format!("req{{job=j{},i={}}}", i % 7, i % 13),
                i * 1_700,
                i as f64 * 0.1,
            )
        })
        .collect();
    let table: Vec<(&str, i64, f64)> = table.iter().map(|(s, t, v)| (s.as_str(), *t, *v)).collect();
    let blocks = [
        1_000, 9_000, 10_001, 33_000, 95_000, 95_500, 340_000, 341_000,
    ];
    let run = || {
        let mut e = engine(yaml);
        let mut ev = Table::with(&table);
        let mut batches = Vec::new();
        for b in blocks {
            batches.push(e.run_block(b, &mut ev));
        }
        (batches, e.digest())
    };
    let (a, da) = run();
    let (b, db) = run();
    assert_eq!(a, b);
    assert_eq!(da, db);
    let samples: usize = a.iter().map(|o| o.batch.len()).sum();
    assert!(samples > 50, "the run records something: {samples}");
    // A different block sequence gives a different schedule state.
    let mut e = engine(yaml);
    e.run_block(1_000, &mut Table::with(&table));
    assert_ne!(e.digest(), da);
    // Resuming from the schedule continues exactly where the first engine was.
    let mut resumed = RuleEngine::resume(
        e.groups().to_vec(),
        e.schedule().to_vec(),
        e.last_block_ms(),
    );
    let mut cont = engine(yaml);
    cont.run_block(1_000, &mut Table::with(&table));
    assert_eq!(resumed.on_block(95_000), cont.on_block(95_000));
    assert_eq!(resumed.digest(), cont.digest());
}

#[test]
fn extreme_block_times() {
    check_schedule(
        TWO_GROUPS,
        &[i64::MIN, i64::MIN + 1, i64::MAX - 1, i64::MAX, 60_000],
        expect![[r#"
            block -9223372036854775808: 
            block -9223372036854775807: 
            block 9223372036854775806: 
            block 9223372036854775807: 
            block 60000: fast@60000 slow@60000
            fast: next=Some(70000) evaluations=1 missed=0
            slow: next=Some(120000) evaluations=1 missed=0
        "#]],
    );
}

#[test]
fn after_block_never_repeats_an_evaluation() {
    let groups = || parse_rule_file("f", TWO_GROUPS).unwrap().groups;
    // A node that applied blocks up to 61,500 and restarts: 60,000 was due at that block.
    let mut restarted = RuleEngine::after_block(groups(), 61_500);
    let mut continuous = RuleEngine::new(groups());
    continuous.on_block(61_500);
    for t in [65_000, 70_000, 125_000] {
        assert_eq!(restarted.on_block(t), continuous.on_block(t), "block {t}");
    }
    assert_eq!(restarted.schedule()[0].next_ms, Some(130_000));
    assert_eq!(restarted.schedule()[0].evaluations, 7 - 1);
}

#[test]
fn a_late_sample_names_the_evaluations_that_could_have_seen_it() {
    let mut e = engine(TWO_GROUPS);
    for b in [0, 60_000, 125_000] {
        e.on_block(b);
    }
    let show = |due: Vec<assay_rules::Due>| -> String {
        due.iter()
            .map(|d| format!("{}@{}", e.groups()[d.group].name, d.t_ms))
            .collect::<Vec<_>>()
            .join(" ")
    };
    // Made so far: fast 0, 60000, 70000 … 120000; slow 0, 60000, 120000.
    expect![[r#"fast@110000 fast@120000 slow@120000"#]]
        .assert_eq(&show(e.evaluations_since(105_000, 0)));
    expect![[r#"fast@120000 slow@120000"#]].assert_eq(&show(e.evaluations_since(120_000, 0)));
    expect![[r#""#]].assert_eq(&show(e.evaluations_since(120_001, 0)));
    // The window (and the start of this process) bounds how far back corrections go.
    expect![[r#"fast@100000 fast@110000 fast@120000 slow@120000"#]]
        .assert_eq(&show(e.evaluations_since(0, 95_000)));
    // At most RECHECK_EVALUATIONS_MAX per group, the newest.
    let mut busy = engine("groups: [{name: g, interval: 1s, rules: [{record: a, expr: '1'}]}]");
    for b in (0..200).map(|s| s * 1000) {
        busy.on_block(b);
    }
    let due = busy.evaluations_since(0, i64::MIN);
    assert_eq!(
        due.len() as u64,
        assay_rules::engine::RECHECK_EVALUATIONS_MAX
    );
    assert_eq!((due[0].t_ms, due[59].t_ms), (140_000, 199_000));
    // Before any block nothing was made.
    assert!(engine(TWO_GROUPS).evaluations_since(0, 0).is_empty());
}

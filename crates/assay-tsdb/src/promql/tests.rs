//! Data-driven PromQL tests in the style of Prometheus' promqltest: `load` a few series,
//! then `check(query, at, expect)` with the result inline.

use assay_ledger::{Labels, SampleBatch};
use expect_test::{expect, Expect};

use super::*;

const M: i64 = 60_000;

/// `load <step>` helper: each line is `selector values`, values as in promqltest:
/// `a+bxN` (N+1 values from a by b), `a-bxN`, a number, `_` (no sample), `stale`.
fn load(step_ms: i64, spec: &str) -> Tsdb {
    let mut batch = SampleBatch::new();
    for line in spec.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let split = line
            .rfind('}')
            .map_or_else(|| line.find(' ').unwrap(), |i| i + 1);
        let (sel, values) = line.split_at(split);
        let pairs = parse_selector(sel.trim())
            .unwrap()
            .iter()
            .map(|m| (m.name().to_string(), m.value().to_string()))
            .collect();
        let labels = Labels::new(pairs).unwrap();
        let mut i = 0i64;
        for token in values.split_whitespace() {
            for v in expand(token) {
                if let Some(v) = v {
                    batch.push(labels.clone(), i * step_ms, v);
                }
                i += 1;
            }
        }
    }
    let mut db = Tsdb::new();
    db.apply_batch(&batch);
    db
}

fn expand(token: &str) -> Vec<Option<f64>> {
    match token {
        "_" => return vec![None],
        "stale" => return vec![Some(f64::from_bits(0x7ff0_0000_0000_0002))],
        _ => {}
    }
    let Some((series, n)) = token.split_once('x') else {
        return vec![Some(token.parse().unwrap())];
    };
    let at = series[1..].find(['+', '-']).unwrap() + 1;
    let (start, delta) = series.split_at(at);
    let (start, delta): (f64, f64) = (start.parse().unwrap(), delta.parse().unwrap());
    (0..=n.parse::<i64>().unwrap())
        .map(|k| Some(start + delta * k as f64))
        .collect()
}

fn render(r: Result<Value, QueryError>) -> String {
    let labels = |l: &ResultLabels| {
        let inner: Vec<String> = l.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
        format!("{{{}}}", inner.join(", "))
    };
    match r {
        Err(e) => format!("error({}): {}", e.kind.as_str(), e.message),
        Ok(Value::Scalar { v, .. }) => format!("scalar {}", format_value(v)),
        Ok(Value::String { v, .. }) => format!("string {v:?}"),
        Ok(Value::Vector(s)) if s.is_empty() => "empty vector".to_string(),
        Ok(Value::Vector(s)) => s
            .iter()
            .map(|s| format!("{} {}\n", labels(&s.labels), format_value(s.v)))
            .collect(),
        Ok(Value::Matrix(m)) => m
            .iter()
            .map(|s| {
                let pts: Vec<String> = s
                    .points
                    .iter()
                    .map(|(t, v)| format!("{}@{}s", format_value(*v), t / 1000))
                    .collect();
                format!("{} {}\n", labels(&s.labels), pts.join(" "))
            })
            .collect(),
    }
}

fn check(db: &Tsdb, query: &str, at_ms: i64, expect: Expect) {
    expect.assert_eq(&render(instant_query(db, query, at_ms)));
}

fn requests() -> Tsdb {
    load(
        5 * M,
        r#"
        http_requests_total{path="/foo", job="api"} 0+10x10
        http_requests_total{path="/bar", job="api"} 0+18x5 0+18x5
        http_requests_total{path="/dings", job="web"} 10+10x10
        http_requests_total{path="/bumms", job="web"} 1+10x10
        temperature{room="a"} 20 21 19 _ _ _ 25
        temperature{room="b"} 10 stale
        "#,
    )
}

#[test]
fn selectors_and_matchers() {
    let db = requests();
    check(
        &db,
        "temperature",
        10 * M,
        expect![[r#"
        {__name__="temperature", room="a"} 19
    "#]],
    );
    // Lookback is 5m, left-open: at 15m the sample from 10m has just gone.
    check(
        &db,
        "temperature",
        14 * M,
        expect![[r#"
        {__name__="temperature", room="a"} 19
    "#]],
    );
    check(&db, "temperature", 15 * M, expect!["empty vector"]);
    // A stale marker ends room b at once.
    check(
        &db,
        r#"temperature{room="b"}"#,
        5 * M,
        expect!["empty vector"],
    );
    check(
        &db,
        r#"temperature{room="b"}"#,
        4 * M,
        expect![[r#"
        {__name__="temperature", room="b"} 10
    "#]],
    );
    check(
        &db,
        r#"http_requests_total{path=~"/b.*"}"#,
        50 * M,
        expect![[r#"
        {__name__="http_requests_total", job="api", path="/bar"} 72
        {__name__="http_requests_total", job="web", path="/bumms"} 101
    "#]],
    );
    // Regexes are anchored: "/b" alone matches nothing.
    check(
        &db,
        r#"http_requests_total{path=~"/b"}"#,
        50 * M,
        expect!["empty vector"],
    );
    check(
        &db,
        r#"http_requests_total{path!~"/b.*", job!="web"}"#,
        50 * M,
        expect![[r#"
        {__name__="http_requests_total", job="api", path="/foo"} 100
    "#]],
    );
    check(
        &db,
        r#"{__name__=~"temp.*", room!=""}"#,
        0,
        expect![[r#"
        {__name__="temperature", room="a"} 20
        {__name__="temperature", room="b"} 10
    "#]],
    );
    check(
        &db,
        r#"{path="/foo" or room="a"}"#,
        0,
        expect![[r#"
        {__name__="http_requests_total", job="api", path="/foo"} 0
        {__name__="temperature", room="a"} 20
    "#]],
    );
    check(&db, "nothing_here", 0, expect!["empty vector"]);
}

#[test]
fn offset_and_at() {
    let db = requests();
    check(
        &db,
        r#"http_requests_total{path="/foo"} offset 10m"#,
        50 * M,
        expect![[r#"
        {__name__="http_requests_total", job="api", path="/foo"} 80
    "#]],
    );
    check(
        &db,
        r#"http_requests_total{path="/foo"} @ 600"#,
        50 * M,
        expect![[r#"
        {__name__="http_requests_total", job="api", path="/foo"} 20
    "#]],
    );
    check(
        &db,
        r#"http_requests_total{path="/foo"} @ 1200 offset -5m"#,
        0,
        expect![[r#"
        {__name__="http_requests_total", job="api", path="/foo"} 50
    "#]],
    );
    check(
        &db,
        r#"http_requests_total{path="/foo"} @ end()"#,
        25 * M,
        expect![[r#"
        {__name__="http_requests_total", job="api", path="/foo"} 50
    "#]],
    );
}

#[test]
fn range_vectors_are_left_open() {
    let db = requests();
    check(
        &db,
        r#"http_requests_total{path="/foo"}[15m]"#,
        50 * M,
        expect![[r#"
        {__name__="http_requests_total", job="api", path="/foo"} 80@2400s 90@2700s 100@3000s
    "#]],
    );
}

#[test]
fn rate_and_increase_extrapolate_and_handle_counter_resets() {
    let db = requests();
    // The values of Prometheus' own functions.test for the same data.
    check(
        &db,
        "increase(http_requests_total[50m])",
        50 * M,
        expect![[r#"
        {job="api", path="/bar"} 160
        {job="api", path="/foo"} 100
        {job="web", path="/bumms"} 100
        {job="web", path="/dings"} 100
    "#]],
    );
    check(
        &db,
        r#"rate(http_requests_total{job="api"}[50m])"#,
        50 * M,
        expect![[r#"
        {job="api", path="/bar"} 0.05333333333333334
        {job="api", path="/foo"} 0.03333333333333334
    "#]],
    );
    // Window ends between samples: extrapolate half an interval at the end.
    check(
        &db,
        r#"increase(http_requests_total{path="/foo"}[12m])"#,
        50 * M,
        expect![[r#"
        {job="api", path="/foo"} 24
    "#]],
    );
    // Fewer than two samples: no result.
    check(
        &db,
        r#"rate(http_requests_total{path="/foo"}[5m])"#,
        50 * M,
        expect!["empty vector"],
    );
    check(
        &db,
        r#"delta(temperature[30m])"#,
        30 * M,
        expect![[r#"
        {room="a"} 4.8
    "#]],
    );
    check(
        &db,
        r#"irate(http_requests_total{path="/bar"}[20m])"#,
        30 * M,
        expect![[r#"
        {job="api", path="/bar"} 0
    "#]],
    );
    check(
        &db,
        r#"irate(http_requests_total{path="/bar"}[20m])"#,
        35 * M,
        expect![[r#"
        {job="api", path="/bar"} 0.06
    "#]],
    );
}

#[test]
fn over_time_and_math_functions() {
    let db = requests();
    let q = |f: &str| format!(r#"{f}(temperature{{room="a"}}[31m])"#);
    check(
        &db,
        &q("sum_over_time"),
        30 * M,
        expect![[r#"
        {room="a"} 85
    "#]],
    );
    check(
        &db,
        &q("avg_over_time"),
        30 * M,
        expect![[r#"
        {room="a"} 21.25
    "#]],
    );
    check(
        &db,
        &q("min_over_time"),
        30 * M,
        expect![[r#"
        {room="a"} 19
    "#]],
    );
    check(
        &db,
        &q("max_over_time"),
        30 * M,
        expect![[r#"
        {room="a"} 25
    "#]],
    );
    check(
        &db,
        &q("count_over_time"),
        30 * M,
        expect![[r#"
        {room="a"} 4
    "#]],
    );
    check(
        &db,
        &q("last_over_time"),
        30 * M,
        expect![[r#"
        {__name__="temperature", room="a"} 25
    "#]],
    );
    check(
        &db,
        r#"abs(-temperature{room="a"})"#,
        0,
        expect![[r#"
        {room="a"} 20
    "#]],
    );
    check(&db, "time()", 90_500, expect!["scalar 90.5"]);
    check(
        &db,
        "vector(3)",
        0,
        expect![[r#"
        {} 3
    "#]],
    );
    check(
        &db,
        r#"scalar(temperature{room="a"})"#,
        0,
        expect!["scalar 20"],
    );
    check(&db, "scalar(temperature)", 0, expect!["scalar NaN"]);
}

#[test]
fn aggregations_by_and_without() {
    let db = requests();
    check(
        &db,
        "sum(http_requests_total)",
        50 * M,
        expect![[r#"
        {} 383
    "#]],
    );
    check(
        &db,
        "sum by (job) (http_requests_total)",
        50 * M,
        expect![[r#"
        {job="api"} 172
        {job="web"} 211
    "#]],
    );
    check(
        &db,
        "avg without (path) (http_requests_total)",
        50 * M,
        expect![[r#"
        {job="api"} 86
        {job="web"} 105.5
    "#]],
    );
    check(
        &db,
        "max by (job) (http_requests_total)",
        50 * M,
        expect![[r#"
        {job="api"} 100
        {job="web"} 110
    "#]],
    );
    check(
        &db,
        "min(http_requests_total)",
        50 * M,
        expect![[r#"
        {} 72
    "#]],
    );
    check(
        &db,
        "count by (__name__) ({__name__=~\".+\"})",
        0,
        expect![[r#"
        {__name__="http_requests_total"} 4
        {__name__="temperature"} 2
    "#]],
    );
    check(
        &db,
        "group by (job) (http_requests_total)",
        0,
        expect![[r#"
        {job="api"} 1
        {job="web"} 1
    "#]],
    );
    check(&db, "sum(nothing)", 0, expect!["empty vector"]);
}

#[test]
fn arithmetic_and_comparisons() {
    let db = requests();
    check(&db, "1 + 2 * 3 ^ 2 % 5 - -1", 0, expect!["scalar 5"]);
    check(&db, "(1 + 2) / 0", 0, expect!["scalar +Inf"]);
    check(&db, "2 > bool 1", 0, expect!["scalar 1"]);
    check(&db, "0 / 0 == bool 0 / 0", 0, expect!["scalar 0"]);
    check(
        &db,
        r#"temperature{room="a"} * 2"#,
        0,
        expect![[r#"
        {room="a"} 40
    "#]],
    );
    check(
        &db,
        r#"100 - temperature"#,
        0,
        expect![[r#"
        {room="a"} 80
        {room="b"} 90
    "#]],
    );
    // A filtering comparison keeps the vector's value and its name, whichever side.
    check(
        &db,
        "temperature > 15",
        0,
        expect![[r#"
        {__name__="temperature", room="a"} 20
    "#]],
    );
    check(
        &db,
        "15 > temperature",
        0,
        expect![[r#"
        {__name__="temperature", room="b"} 10
    "#]],
    );
    check(
        &db,
        "temperature >= bool 15",
        0,
        expect![[r#"
        {room="a"} 1
        {room="b"} 0
    "#]],
    );
    check(
        &db,
        "temperature != 10",
        0,
        expect![[r#"
        {__name__="temperature", room="a"} 20
    "#]],
    );
    check(
        &db,
        "temperature == 10 or temperature < 11 and temperature <= 10",
        0,
        expect![[r#"
        {__name__="temperature", room="b"} 10
    "#]],
    );
}

#[test]
fn vector_matching() {
    let db = load(
        M,
        r#"
        errors{job="api", code="500"} 5
        errors{job="web", code="500"} 1
        requests{job="api"} 50
        requests{job="web"} 10
        requests{job="db"} 3
        other{job="db"} 1
        "#,
    );
    check(
        &db,
        "errors / on(job) requests",
        0,
        expect![[r#"
        {job="api"} 0.1
        {job="web"} 0.1
    "#]],
    );
    check(
        &db,
        "errors / ignoring(code) requests",
        0,
        expect![[r#"
        {job="api"} 0.1
        {job="web"} 0.1
    "#]],
    );
    // Default matching uses all labels but __name__: "code" differs, nothing matches.
    check(&db, "errors / requests", 0, expect!["empty vector"]);
    check(
        &db,
        "requests > on(job) sum by (job) (errors)",
        0,
        expect![[r#"
        {job="api"} 50
        {job="web"} 10
    "#]],
    );
    check(
        &db,
        "requests == bool ignoring(code) errors * 10",
        0,
        expect![[r#"
        {job="api"} 1
        {job="web"} 1
    "#]],
    );
    check(
        &db,
        "requests % 7 ^ 1",
        0,
        expect![[r#"
        {job="api"} 1
        {job="db"} 3
        {job="web"} 3
    "#]],
    );
    check(
        &db,
        "requests unless on(job) errors",
        0,
        expect![[r#"
        {__name__="requests", job="db"} 3
    "#]],
    );
    check(
        &db,
        "requests and on(job) errors",
        0,
        expect![[r#"
        {__name__="requests", job="api"} 50
        {__name__="requests", job="web"} 10
    "#]],
    );
    check(
        &db,
        "sum(errors) atan2 sum(requests)",
        0,
        expect![[r#"
        {} 0.09495170634275632
    "#]],
    );
    check(
        &db,
        "requests / on() errors",
        0,
        expect![[
            r#"error(execution): found duplicate series for the match group {} on the right hand-side of the operation: [{__name__="errors", code="500", job="web"}, {__name__="errors", code="500", job="api"}];many-to-many matching not allowed: matching labels must be unique on one side"#
        ]],
    );
    check(
        &db,
        "sum(errors) / on() requests",
        0,
        expect![[
            r#"error(execution): found duplicate series for the match group {} on the right hand-side of the operation: [{__name__="requests", job="db"}, {__name__="requests", job="api"}];many-to-many matching not allowed: matching labels must be unique on one side"#
        ]],
    );
    check(&db, "requests / on() sum(errors)", 0, expect!["error(execution): multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"]);
    check(
        &db,
        "-{__name__=~\"errors|requests\", job=\"api\", code=\"\"} ",
        0,
        expect![[r#"
        {job="api"} -50
    "#]],
    );
    // Dropping the name makes two series collide: an error, as in Prometheus.
    check(
        &db,
        "-{__name__=~\"requests|other\"}",
        0,
        expect![[r#"error(execution): vector cannot contain metrics with the same labelset"#]],
    );
}

#[test]
fn literals_and_errors() {
    let db = requests();
    check(&db, r#""hello""#, 0, expect![[r#"string "hello""#]]);
    check(&db, "(((4)))", 0, expect!["scalar 4"]);
    check(
        &db,
        "1 +",
        0,
        expect!["error(bad_data): 1:4: parse error: unexpected end of input"],
    );
    check(
        &db,
        "foo bar",
        0,
        expect![[r#"error(bad_data): 1:5: parse error: unexpected "bar""#]],
    );
    check(
        &db,
        "sum(foo) by (a)\n  without (b)",
        0,
        expect![[r#"error(bad_data): 2:3: parse error: unexpected "without""#]],
    );
    check(
        &db,
        "foo$",
        0,
        expect!["error(bad_data): 1:4: parse error: unexpected character: '$'"],
    );
    check(
        &db,
        "sum(rate(foo[5m])",
        0,
        expect!["error(bad_data): 1:4: parse error: unclosed left parenthesis"],
    );
    check(&db, "rate(foo)", 0, expect!["error(bad_data): parse error: expected type matrix in call to function 'rate', got vector"]);
    check(
        &db,
        r#"{a=~"("}"#,
        0,
        expect!["error(bad_data): parse error: illegal regex for ("],
    );
    check(&db, r#"{a=""}"#, 0, expect!["error(bad_data): parse error: vector selector must contain at least one non-empty matcher"]);
    check(
        &db,
        "",
        0,
        expect!["error(bad_data): 1:1: parse error: no expression found in input"],
    );
    // Unsupported features name themselves.
    check(
        &db,
        "limit_ratio(0.5, temperature)",
        0,
        expect![
            "error(bad_data): aggregation `limit_ratio` is not supported by Assay's PromQL engine yet"
        ],
    );
    check(
        &db,
        "info(temperature)",
        0,
        expect!["error(bad_data): function `info` is not supported by Assay's PromQL engine yet"],
    );
}

#[test]
fn limits_are_enforced_at_the_edge() {
    let db = requests();
    let long = format!("{}1", "1+".repeat((QUERY_BYTES_MAX - 1) / 2));
    assert!(long.len() <= QUERY_BYTES_MAX);
    assert!(instant_query(&db, &long, 0).is_err_and(|e| e.message.contains("nests deeper")));
    let too_long = " ".repeat(QUERY_BYTES_MAX) + "1";
    let e = instant_query(&db, &too_long, 0).unwrap_err();
    assert_eq!(e.kind, QueryErrorKind::BadData);
    assert!(e.message.contains("more than the limit"), "{e}");
    let nested = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
    assert!(instant_query(&db, &nested(QUERY_EXPR_DEPTH_MAX - 1), 0).is_ok());
    assert!(instant_query(&db, &nested(QUERY_EXPR_DEPTH_MAX), 0).is_err());

    let points = |n: i64| range_query(&db, "1", 0, (n - 1) * 1000, 1000);
    assert!(points(RANGE_QUERY_POINTS_MAX).is_ok());
    let e = points(RANGE_QUERY_POINTS_MAX + 1).unwrap_err();
    assert_eq!(e.kind, QueryErrorKind::Execution);
    expect!["exceeded maximum resolution of 11000 points per timeseries (11001 asked). Try decreasing the query resolution (?step=XX)"].assert_eq(&e.message);
}

#[test]
fn series_and_sample_limits() {
    assert_eq!(
        eval::Limits::default(),
        eval::Limits {
            series_touched_max: QUERY_SERIES_TOUCHED_MAX,
            samples_loaded_max: QUERY_SAMPLES_LOADED_MAX,
            subquery_steps_max: QUERY_SUBQUERY_STEPS_MAX,
            step_table_cells_max: steps::STEP_TABLE_CELLS_MAX,
        }
    );
    // The same code paths with small limits, so the edges are cheap to reach.
    let limits = eval::Limits {
        series_touched_max: 3,
        samples_loaded_max: 12,
        subquery_steps_max: 5,
        ..eval::Limits::default()
    };
    let db = requests(); // 4 request series, 11-12 samples each
    let instant = |q: &str| {
        let expr = parse::query(q).unwrap();
        eval::Evaluator::new(&db, 0, 0)
            .with_limits(limits)
            .instant(&expr, 50 * M)
            .map(|_| ())
    };
    assert!(instant(r#"http_requests_total{path!="/foo"}"#).is_ok());
    let e = instant("http_requests_total").unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            QueryErrorKind::Execution,
            "query selects more than 3 series; narrow its selectors"
        )
    );
    // Selections count once per query, summed over selectors.
    assert!(instant(r#"temperature + temperature{room="a"}"#).is_ok());
    assert!(instant(r#"temperature + temperature{room="a"} + temperature{room="b"}"#).is_err());
    // Samples: the /foo window (-5m, 50m] holds all 11 samples, a 55m window on /bar 12.
    assert!(instant(r#"count_over_time(http_requests_total{path="/foo"}[55m])"#).is_ok());
    assert!(instant(r#"count_over_time(http_requests_total{path="/bar"}[60m] @ 3300)"#).is_ok());
    let e = instant(r#"count_over_time(http_requests_total{path="/foo"}[55m]) + http_requests_total{path="/foo"} + http_requests_total{path="/foo"}"#).unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            QueryErrorKind::Execution,
            "query loads more than 12 samples; shorten its range or select fewer series"
        )
    );
}

#[test]
fn range_query_evaluates_each_step() {
    let db = requests();
    let r = |q: &str| render(range_query(&db, q, 0, 20 * M, 5 * M));
    expect![[r#"
        {__name__="temperature", room="a"} 20@0s 21@300s 19@600s
        {__name__="temperature", room="b"} 10@0s
    "#]]
    .assert_eq(&r("temperature"));
    expect![[r#"
        {} 0@0s 300@300s 600@600s 900@900s 1200@1200s
    "#]]
    .assert_eq(&r("time()"));
    expect![[r#"
        {path="/foo"} 0.016666666666666666@300s 0.03333333333333333@600s 0.03333333333333333@900s 0.03333333333333333@1200s
    "#]]
    .assert_eq(&r(r#"sum by (path) (rate(http_requests_total{path="/foo"}[10m]))"#));
    expect![[r#"error(bad_data): invalid expression type "range vector" for range query, must be Scalar or instant Vector"#]]
        .assert_eq(&r("temperature[5m]"));
    expect!["error(bad_data): zero or negative query resolution step widths are not accepted. Try a positive integer"]
        .assert_eq(&render(range_query(&db, "1", 0, 1, 0)));
    expect!["error(bad_data): end timestamp must not be before start time"]
        .assert_eq(&render(range_query(&db, "1", 1, 0, 1)));
}

#[test]
fn prometheus_json_shapes() {
    let db = requests();
    let data =
        |q: &str, at: i64| to_prometheus_data(&instant_query(&db, q, at).unwrap()).to_string();
    expect![[r#"{"result":[{"metric":{"__name__":"temperature","room":"a"},"value":[1.5,"20"]}],"resultType":"vector"}"#]]
        .assert_eq(&data(r#"temperature{room="a"}"#, 1_500));
    expect![[r#"{"result":[600,"NaN"],"resultType":"scalar"}"#]].assert_eq(&data("0/0", 600_000));
    expect![[r#"{"result":[0,"+Inf"],"resultType":"scalar"}"#]].assert_eq(&data("1/0", 0));
    expect![[r#"{"result":[0,"-Inf"],"resultType":"scalar"}"#]].assert_eq(&data("-1/0", 0));
    expect![[r#"{"result":[0,"x"],"resultType":"string"}"#]].assert_eq(&data(r#""x""#, 0));
    expect![[r#"{"result":[{"metric":{"room":"a"},"values":[[0,"20"],[300,"21"]]}],"resultType":"matrix"}"#]]
        .assert_eq(&to_prometheus_data(&range_query(&db, r#"temperature{room="a"} + 0"#, 0, 5 * M, 5 * M).unwrap()).to_string());
    // The text the API sends: timestamps as Prometheus writes them (805.140, -1.500).
    expect![[r#"{"resultType":"vector","result":[{"metric":{"__name__":"temperature","room":"a"},"value":[1.500,"20"]}]}"#]]
        .assert_eq(&prometheus_data_json(&instant_query(&db, r#"temperature{room="a"}"#, 1_500).unwrap()));
    expect![[r#"{"resultType":"scalar","result":[805.140,"1"]}"#]].assert_eq(
        &prometheus_data_json(&instant_query(&db, "1", 805_140).unwrap()),
    );
    expect![[r#"{"resultType":"string","result":[-1.005,"a\"b"]}"#]].assert_eq(
        &prometheus_data_json(&instant_query(&db, r#""a\"b""#, -1_005).unwrap()),
    );
    let formatted: Vec<String> = [1e21, 1e-7, -0.0, 0.1 + 0.2, 1.5]
        .map(format_value)
        .to_vec();
    expect![[r#"["1000000000000000000000", "0.0000001", "-0", "0.30000000000000004", "1.5"]"#]]
        .assert_eq(&format!("{formatted:?}"));
}

#[test]
fn parse_selector_for_api_parameters() {
    let show = |s: &str| match parse_selector(s) {
        Ok(ms) => ms
            .iter()
            .map(|m| format!("{}{:?}{}", m.name(), m.op(), m.value()))
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => format!("error({}): {}", e.kind.as_str(), e.message),
    };
    expect!["__name__Equalup jobRegexMatcha|b xNotEqual"]
        .assert_eq(&show(r#"up{job=~"a|b", x!=""}"#));
    expect![[
        r#"error(bad_data): "rate(up[5m])" is not a series selector like metric{label="value"}"#
    ]]
    .assert_eq(&show("rate(up[5m])"));
    expect![[r#"error(bad_data): series selector "up offset 5m" must not carry offset or @"#]]
        .assert_eq(&show("up offset 5m"));
}

/// Prometheus' aggregators.test data: eight request counters over two jobs and groups.
fn http_requests() -> Tsdb {
    load(
        5 * M,
        r#"
        http_requests{job="api-server", instance="0", group="production"} 0+10x10
        http_requests{job="api-server", instance="1", group="production"} 0+20x10
        http_requests{job="api-server", instance="0", group="canary"} 0+30x10
        http_requests{job="api-server", instance="1", group="canary"} 0+40x10
        http_requests{job="app-server", instance="0", group="production"} 0+50x10
        http_requests{job="app-server", instance="1", group="production"} 0+60x10
        http_requests{job="app-server", instance="0", group="canary"} 0+70x10
        http_requests{job="app-server", instance="1", group="canary"} 0+80x10
        nan_requests{instance="2"} NaN
        nan_requests{instance="3"} 5
        foo 3+0x10
        "#,
    )
}

#[test]
fn stddev_stdvar_and_group() {
    let db = http_requests();
    check(
        &db,
        "stddev(http_requests)",
        50 * M,
        expect![[r#"
        {} 229.128784747792
    "#]],
    );
    check(
        &db,
        "stddev by (instance) (http_requests)",
        50 * M,
        expect![[r#"
        {instance="0"} 223.60679774997897
        {instance="1"} 223.60679774997897
    "#]],
    );
    check(
        &db,
        "stdvar(http_requests)",
        50 * M,
        expect![[r#"
        {} 52499.99999999999
    "#]],
    );
    check(
        &db,
        "stdvar by (instance) (http_requests)",
        50 * M,
        expect![[r#"
        {instance="0"} 50000
        {instance="1"} 50000
    "#]],
    );
    // One element: 0, or NaN when it is not finite; NaN anywhere makes NaN.
    check(
        &db,
        "stddev(foo)",
        0,
        expect![[r#"
        {} 0
    "#]],
    );
    check(
        &db,
        "stdvar(foo / 0)",
        0,
        expect![[r#"
        {} NaN
    "#]],
    );
    check(
        &db,
        "stddev(nan_requests)",
        0,
        expect![[r#"
        {} NaN
    "#]],
    );
    check(
        &db,
        "group without (instance) (http_requests)",
        0,
        expect![[r#"
        {group="canary", job="api-server"} 1
        {group="canary", job="app-server"} 1
        {group="production", job="api-server"} 1
        {group="production", job="app-server"} 1
    "#]],
    );
}

#[test]
fn topk_and_bottomk_keep_labels_and_order() {
    let db = http_requests();
    check(
        &db,
        "topk(3, http_requests)",
        50 * M,
        expect![[r#"
        {__name__="http_requests", group="canary", instance="1", job="app-server"} 800
        {__name__="http_requests", group="canary", instance="0", job="app-server"} 700
        {__name__="http_requests", group="production", instance="1", job="app-server"} 600
    "#]],
    );
    check(
        &db,
        "bottomk(3, http_requests)",
        50 * M,
        expect![[r#"
        {__name__="http_requests", group="production", instance="0", job="api-server"} 100
        {__name__="http_requests", group="production", instance="1", job="api-server"} 200
        {__name__="http_requests", group="canary", instance="0", job="api-server"} 300
    "#]],
    );
    check(
        &db,
        "topk by (group) (1, http_requests)",
        50 * M,
        expect![[r#"
        {__name__="http_requests", group="canary", instance="1", job="app-server"} 800
        {__name__="http_requests", group="production", instance="1", job="app-server"} 600
    "#]],
    );
    check(
        &db,
        r#"bottomk(9999999999, http_requests{job="app-server",group="canary"})"#,
        50 * M,
        expect![[r#"
        {__name__="http_requests", group="canary", instance="0", job="app-server"} 700
        {__name__="http_requests", group="canary", instance="1", job="app-server"} 800
    "#]],
    );
    check(
        &db,
        "topk(scalar(foo), http_requests)",
        50 * M,
        expect![[r#"
        {__name__="http_requests", group="canary", instance="1", job="app-server"} 800
        {__name__="http_requests", group="canary", instance="0", job="app-server"} 700
        {__name__="http_requests", group="production", instance="1", job="app-server"} 600
    "#]],
    );
    // NaN is below every number: last for topk and for bottomk alike.
    check(
        &db,
        "topk(2, nan_requests)",
        0,
        expect![[r#"
        {__name__="nan_requests", instance="3"} 5
        {__name__="nan_requests", instance="2"} NaN
    "#]],
    );
    check(
        &db,
        "bottomk(1, nan_requests)",
        0,
        expect![[r#"
        {__name__="nan_requests", instance="3"} 5
    "#]],
    );
    check(
        &db,
        "topk(1, nan_requests)",
        0,
        expect![[r#"
        {__name__="nan_requests", instance="3"} 5
    "#]],
    );
    // limitk: the first k series of each group, by labels.
    check(
        &db,
        "limitk by (group) (1, http_requests)",
        50 * M,
        expect![[r#"
        {__name__="http_requests", group="canary", instance="0", job="api-server"} 300
        {__name__="http_requests", group="production", instance="0", job="api-server"} 100
    "#]],
    );
    check(
        &db,
        "limitk(NaN, http_requests)",
        0,
        expect!["error(execution): Scalar value NaN overflows int64"],
    );
    // Several NaNs: still below every number, and no panic sorting them.
    let nans = load(
        M,
        "n{i=\"1\"} NaN\nn{i=\"2\"} 1\nn{i=\"3\"} NaN\nn{i=\"4\"} NaN",
    );
    check(
        &nans,
        "topk(3, n)",
        0,
        expect![[r#"
        {__name__="n", i="2"} 1
        {__name__="n", i="3"} NaN
        {__name__="n", i="1"} NaN
    "#]],
    );
    check(
        &nans,
        "bottomk(4, n)",
        0,
        expect![[r#"
        {__name__="n", i="2"} 1
        {__name__="n", i="4"} NaN
        {__name__="n", i="3"} NaN
        {__name__="n", i="1"} NaN
    "#]],
    );
    check(&db, "topk(0, http_requests)", 0, expect!["empty vector"]);
    check(&db, "topk(-1, http_requests)", 0, expect!["empty vector"]);
    check(
        &db,
        "topk(NaN, http_requests)",
        0,
        expect!["error(execution): Scalar value NaN overflows int64"],
    );
    check(
        &db,
        "topk(1e20, http_requests)",
        0,
        expect!["error(execution): Scalar value 100000000000000000000 overflows int64"],
    );
    // Nested, the order no longer matters: sorted by labels.
    check(
        &db,
        "sum by (job) (topk(1, http_requests))",
        50 * M,
        expect![[r#"
        {job="app-server"} 800
    "#]],
    );
    let r = render(range_query(&db, "topk(1, http_requests)", 0, 10 * M, 5 * M));
    expect![[r#"
        {__name__="http_requests", group="canary", instance="0", job="api-server"} 0@0s
        {__name__="http_requests", group="canary", instance="1", job="app-server"} 80@300s 160@600s
    "#]]
    .assert_eq(&r);
}

#[test]
fn quantile_and_count_values() {
    let db = load(
        10_000,
        r#"
        data{test="two samples",point="a"} 0
        data{test="two samples",point="b"} 1
        data{test="three samples",point="a"} 0
        data{test="three samples",point="b"} 1
        data{test="three samples",point="c"} 2
        data{test="uneven samples",point="a"} 0
        data{test="uneven samples",point="b"} 1
        data{test="uneven samples",point="c"} 4
        foo .8
        "#,
    );
    check(
        &db,
        "quantile without (point) (0.8, data)",
        M,
        expect![[r#"
        {test="three samples"} 1.6
        {test="two samples"} 0.8
        {test="uneven samples"} 2.8000000000000003
    "#]],
    );
    check(
        &db,
        "quantile without (point) (scalar(foo), data)",
        M,
        expect![[r#"
        {test="three samples"} 1.6
        {test="two samples"} 0.8
        {test="uneven samples"} 2.8000000000000003
    "#]],
    );
    // φ below 0 gives -Inf, above 1 +Inf, NaN gives NaN.
    check(
        &db,
        r#"quantile(-1, data{test="two samples"})"#,
        M,
        expect![[r#"
        {} -Inf
    "#]],
    );
    check(
        &db,
        r#"quantile(1.5, data{test="two samples"})"#,
        M,
        expect![[r#"
        {} +Inf
    "#]],
    );
    check(
        &db,
        r#"quantile(NaN, data{test="two samples"})"#,
        M,
        expect![[r#"
        {} NaN
    "#]],
    );
    check(
        &db,
        r#"quantile(0, data)"#,
        M,
        expect![[r#"
        {} 0
    "#]],
    );

    let db = load(
        5 * M,
        r#"
        version{job="api-server", instance="0", group="production"} 6
        version{job="api-server", instance="1", group="production"} 6
        version{job="api-server", instance="2", group="production"} 6
        version{job="api-server", instance="0", group="canary"} 8
        version{job="api-server", instance="1", group="canary"} 8
        version{job="app-server", instance="0", group="production"} 6
        version{job="app-server", instance="1", group="production"} 6
        version{job="app-server", instance="0", group="canary"} 7
        version{job="app-server", instance="1", group="canary"} 7
        odd{x="a"} NaN
        odd{x="b"} 1e21
        odd{x="c"} 0.5
        "#,
    );
    check(
        &db,
        r#"count_values("version", version)"#,
        0,
        expect![[r#"
        {version="6"} 5
        {version="7"} 2
        {version="8"} 2
    "#]],
    );
    check(
        &db,
        r#"count_values without (instance) ("version", version)"#,
        0,
        expect![[r#"
        {group="canary", job="api-server", version="8"} 2
        {group="canary", job="app-server", version="7"} 2
        {group="production", job="api-server", version="6"} 3
        {group="production", job="app-server", version="6"} 2
    "#]],
    );
    // The value label overwrites a label of the same name.
    check(
        &db,
        r#"count_values without (instance) ("job", version)"#,
        0,
        expect![[r#"
        {group="canary", job="7"} 2
        {group="canary", job="8"} 2
        {group="production", job="6"} 5
    "#]],
    );
    check(
        &db,
        r#"count_values by (job, group) ("job", version)"#,
        0,
        expect![[r#"
        {group="canary", job="7"} 2
        {group="canary", job="8"} 2
        {group="production", job="6"} 5
    "#]],
    );
    // Values print as Go's FormatFloat(v, 'f', -1).
    check(
        &db,
        r#"count_values("v", odd)"#,
        0,
        expect![[r#"
        {v="0.5"} 1
        {v="1000000000000000000000"} 1
        {v="NaN"} 1
    "#]],
    );
    check(
        &db,
        r#"count_values("", odd)"#,
        0,
        expect![[r#"error(execution): invalid label name """#]],
    );
}

#[test]
fn avg_and_sum_of_extreme_values() {
    let db = load(
        10_000,
        r#"
        data{test="ten",point="a"} 8
        data{test="ten",point="b"} 10
        data{test="ten",point="c"} 12
        data{test="inf",point="a"} 0
        data{test="inf",point="b"} Inf
        data{test="inf",point="d"} Inf
        data{test="inf",point="c"} 0
        data{test="inf3",point="b"} Inf
        data{test="inf3",point="d"} -Inf
        data{test="nan",point="a"} -Inf
        data{test="nan",point="b"} 0
        data{test="nan",point="c"} Inf
        data{test="big",point="a"} 9.988465674311579e+307
        data{test="big",point="b"} 9.988465674311579e+307
        data{test="big",point="c"} 9.988465674311579e+307
        data{test="big",point="d"} 9.988465674311579e+307
        data{test="bigzero",point="a"} -9.988465674311579e+307
        data{test="bigzero",point="b"} -9.988465674311579e+307
        data{test="bigzero",point="c"} 9.988465674311579e+307
        data{test="bigzero",point="d"} 9.988465674311579e+307
        data{test="kahan",point="a"} 2
        data{test="kahan",point="b"} 8
        data{test="kahan",point="c"} 1e+100
        data{test="kahan",point="d"} -1e100
        "#,
    );
    check(
        &db,
        "avg by (test) (data)",
        M,
        expect![[r#"
        {test="big"} 99884656743115800000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        {test="bigzero"} 0
        {test="inf"} +Inf
        {test="inf3"} NaN
        {test="kahan"} 2.5
        {test="nan"} NaN
        {test="ten"} 10
    "#]],
    );
    check(
        &db,
        r#"sum(data{test="kahan"})"#,
        M,
        expect![[r#"
        {} 10
    "#]],
    );
}

#[test]
fn group_left_and_group_right() {
    let db = load(
        5 * M,
        r#"
        node_var{instance="abc",job="node"} 2
        node_role{instance="abc",job="node",role="prometheus"} 1
        node_cpu{instance="abc",job="node",mode="idle"} 3
        node_cpu{instance="abc",job="node",mode="user"} 1
        node_cpu{instance="def",job="node",mode="idle"} 8
        node_cpu{instance="def",job="node",mode="user"} 2
        node_cpu2{instance="abc",job="node",mode="idle"} 4
        random{foo="bar"} 1
        threshold{instance="abc",job="node",target="a@b.com"} 0
        "#,
    );
    let at = M;
    check(
        &db,
        "node_role * on (instance) group_right (role) node_var",
        at,
        expect![[r#"
        {instance="abc", job="node", role="prometheus"} 2
    "#]],
    );
    check(
        &db,
        "node_var * on (instance) group_left (role) node_role",
        at,
        expect![[r#"
        {instance="abc", job="node", role="prometheus"} 2
    "#]],
    );
    check(
        &db,
        "node_var * ignoring (role) group_left (role) node_role",
        at,
        expect![[r#"
        {instance="abc", job="node", role="prometheus"} 2
    "#]],
    );
    check(
        &db,
        "node_cpu * ignoring (role, mode) group_left (role) node_role",
        at,
        expect![[r#"
        {instance="abc", job="node", mode="idle", role="prometheus"} 3
        {instance="abc", job="node", mode="user", role="prometheus"} 1
    "#]],
    );
    check(
        &db,
        "node_cpu / on (instance) group_left sum by (instance,job)(node_cpu)",
        at,
        expect![[r#"
        {instance="abc", job="node", mode="idle"} 0.75
        {instance="abc", job="node", mode="user"} 0.25
        {instance="def", job="node", mode="idle"} 0.8
        {instance="def", job="node", mode="user"} 0.2
    "#]],
    );
    check(
        &db,
        "sum by (mode, job)(node_cpu) / on (job) group_left sum by (job)(node_cpu)",
        at,
        expect![[r#"
        {job="node", mode="idle"} 0.7857142857142857
        {job="node", mode="user"} 0.21428571428571427
    "#]],
    );
    // A group_left label missing on the "one" side is removed.
    check(
        &db,
        "node_cpu / ignoring (mode) group_left(dummy) sum without (mode)(node_cpu)",
        at,
        expect![[r#"
        {instance="abc", job="node", mode="idle"} 0.75
        {instance="abc", job="node", mode="user"} 0.25
        {instance="def", job="node", mode="idle"} 0.8
        {instance="def", job="node", mode="user"} 0.2
    "#]],
    );
    check(
        &db,
        "node_cpu + on(dummy) group_left(foo) random*0",
        at,
        expect![[r#"
        {foo="bar", instance="abc", job="node", mode="idle"} 3
        {foo="bar", instance="abc", job="node", mode="user"} 1
        {foo="bar", instance="def", job="node", mode="idle"} 8
        {foo="bar", instance="def", job="node", mode="user"} 2
    "#]],
    );
    // Comparisons filter and keep the "many" side's name.
    check(
        &db,
        "node_cpu > on(job, instance) group_left(target) threshold",
        at,
        expect![[r#"
        {__name__="node_cpu", instance="abc", job="node", mode="idle", target="a@b.com"} 3
        {__name__="node_cpu", instance="abc", job="node", mode="user", target="a@b.com"} 1
    "#]],
    );
    check(&db, "node_cpu > on(job, instance) group_left(target) (threshold or on (job, instance) (sum by (job, instance)(node_cpu) * 0 + 1))", at, expect![[r#"
        {__name__="node_cpu", instance="abc", job="node", mode="idle", target="a@b.com"} 3
        {__name__="node_cpu", instance="abc", job="node", mode="user", target="a@b.com"} 1
        {__name__="node_cpu", instance="def", job="node", mode="idle"} 8
        {__name__="node_cpu", instance="def", job="node", mode="user"} 2
    "#]]);
    // group_right with a comparison returns the left ("one") side's value.
    check(
        &db,
        "node_var < on (instance) group_right node_cpu",
        at,
        expect![[r#"
        {__name__="node_cpu", instance="abc", job="node", mode="idle"} 2
    "#]],
    );
    check(
        &db,
        "node_var <= bool on (instance) group_right node_cpu",
        at,
        expect![[r#"
        {instance="abc", job="node", mode="idle"} 1
        {instance="abc", job="node", mode="user"} 0
    "#]],
    );
    // Errors: duplicates on the "one" side, and results that collide.
    check(
        &db,
        "node_cpu * on (job) group_left node_cpu",
        at,
        expect![[
            r#"error(execution): found duplicate series for the match group {job="node"} on the right hand-side of the operation: [{__name__="node_cpu", instance="abc", job="node", mode="user"}, {__name__="node_cpu", instance="abc", job="node", mode="idle"}];many-to-many matching not allowed: matching labels must be unique on one side"#
        ]],
    );
    check(
        &db,
        "node_var * on (job) group_right node_cpu",
        at,
        expect![[r#"
        {instance="abc", job="node", mode="idle"} 6
        {instance="abc", job="node", mode="user"} 2
        {instance="def", job="node", mode="idle"} 16
        {instance="def", job="node", mode="user"} 4
    "#]],
    );
    check(
        &db,
        "node_cpu * on (job) group_right node_var",
        at,
        expect![[
            r#"error(execution): found duplicate series for the match group {job="node"} on the left hand-side of the operation: [{__name__="node_cpu", instance="abc", job="node", mode="user"}, {__name__="node_cpu", instance="abc", job="node", mode="idle"}];many-to-many matching not allowed: matching labels must be unique on one side"#
        ]],
    );
    check(
        &db,
        "sum by (instance) (node_cpu) * on () group_left node_var",
        at,
        expect![[r#"
        {instance="abc"} 8
        {instance="def"} 20
    "#]],
    );
    check(
        &db,
        "(node_cpu * 0) * on (job) group_left sum by (job) (node_var)",
        at,
        expect![[r#"
        {instance="abc", job="node", mode="idle"} 0
        {instance="abc", job="node", mode="user"} 0
        {instance="def", job="node", mode="idle"} 0
        {instance="def", job="node", mode="user"} 0
    "#]],
    );
    check(&db, r#"{__name__=~"node_cpu.*", mode="idle", instance="abc"} * on (job) group_left node_var"#, at, expect!["error(execution): multiple matches for labels: grouping labels must ensure unique matches"]);
    check(&db, "node_cpu * on (job) node_var", at, expect!["error(execution): multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"]);
    // Filtering before the duplicate check: only kept matches count.
    check(&db, "node_cpu > on (job) node_var", at, expect!["error(execution): multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"]);
    check(
        &db,
        "node_cpu > on (job) node_var + 5",
        at,
        expect![[r#"
        {job="node"} 8
    "#]],
    );
    // An empty side matches nothing, however the other side looks.
    check(&db, "node_cpu * on () missing", at, expect!["empty vector"]);
}

#[test]
fn binary_operators_follow_prometheus() {
    let db = http_requests();
    check(
        &db,
        "SUM(http_requests) BY (job) % 2 ^ 3 ^ 2",
        50 * M,
        expect![[r#"
        {job="api-server"} 488
        {job="app-server"} 40
    "#]],
    );
    check(
        &db,
        "-10^3 * - SUM(http_requests) BY (job) ^ -1",
        50 * M,
        expect![[r#"
        {job="api-server"} 1
        {job="app-server"} 0.38461538461538464
    "#]],
    );
    check(&db, "2/-2^---1*3+2", 50 * M, expect!["scalar -10"]);
    check(
        &db,
        r#"0 * http_requests{group="canary", instance="0", job="api-server"} % 0"#,
        50 * M,
        expect![[r#"
        {group="canary", instance="0", job="api-server"} NaN
    "#]],
    );
    check(
        &db,
        r#"(http_requests{group="canary"} + 1) or on(instance) (http_requests or foo)"#,
        50 * M,
        expect![[r#"
        {__name__="foo"} 3
        {group="canary", instance="0", job="api-server"} 301
        {group="canary", instance="0", job="app-server"} 701
        {group="canary", instance="1", job="api-server"} 401
        {group="canary", instance="1", job="app-server"} 801
    "#]],
    );
    check(
        &db,
        r#"http_requests{group="canary"} unless on(job) http_requests{instance="0"}"#,
        50 * M,
        expect!["empty vector"],
    );
    check(
        &db,
        r#"http_requests AND ON (dummy) vector(1)"#,
        0,
        expect![[r#"
        {__name__="http_requests", group="canary", instance="0", job="api-server"} 0
        {__name__="http_requests", group="canary", instance="0", job="app-server"} 0
        {__name__="http_requests", group="canary", instance="1", job="api-server"} 0
        {__name__="http_requests", group="canary", instance="1", job="app-server"} 0
        {__name__="http_requests", group="production", instance="0", job="api-server"} 0
        {__name__="http_requests", group="production", instance="0", job="app-server"} 0
        {__name__="http_requests", group="production", instance="1", job="api-server"} 0
        {__name__="http_requests", group="production", instance="1", job="app-server"} 0
    "#]],
    );
    check(&db, "nan_requests atan2 foo", 0, expect!["empty vector"]);
    check(&db, "10 atan2 NaN", 0, expect!["scalar NaN"]);
    check(
        &db,
        "nan_requests == bool NaN",
        0,
        expect![[r#"
        {instance="2"} 0
        {instance="3"} 0
    "#]],
    );
    check(
        &db,
        "nan_requests != 5",
        0,
        expect![[r#"
        {__name__="nan_requests", instance="2"} NaN
    "#]],
    );
}

#[test]
fn resets_changes_and_counter_functions() {
    let db = load(
        5 * M,
        r#"
        http_requests{path="/foo"} 1 2 3 0 1 0 0 1 2 0
        http_requests{path="/bar"} 1 2 3 4 5 1 2 3 4 5
        http_requests{path="/biz"} 0 0 0 0 0 1 1 1 1 1
        x{a="b"} NaN NaN NaN
        x{a="c"} 0 NaN 0
        "#,
    );
    check(
        &db,
        "resets(http_requests[5m])",
        50 * M,
        expect!["empty vector"],
    );
    check(
        &db,
        "resets(http_requests[20m])",
        50 * M,
        expect![[r#"
        {path="/bar"} 0
        {path="/biz"} 0
        {path="/foo"} 1
    "#]],
    );
    check(
        &db,
        "resets(http_requests[50m])",
        50 * M,
        expect![[r#"
        {path="/bar"} 1
        {path="/biz"} 0
        {path="/foo"} 3
    "#]],
    );
    check(
        &db,
        "changes(http_requests[6m])",
        50 * M,
        expect![[r#"
        {path="/bar"} 0
        {path="/biz"} 0
        {path="/foo"} 0
    "#]],
    );
    check(
        &db,
        "changes((http_requests[50m]))",
        50 * M,
        expect![[r#"
        {path="/bar"} 8
        {path="/biz"} 1
        {path="/foo"} 7
    "#]],
    );
    // NaN to NaN is no change, NaN to a number is.
    check(
        &db,
        "changes(x[20m])",
        15 * M,
        expect![[r#"
        {a="b"} 0
        {a="c"} 2
    "#]],
    );

    let db = load(
        5 * M,
        r#"
        http_requests_total{path="/foo"} 0+10x10
        http_requests_total{path="/bar"} 0+18x5 0+18x5
        http_requests_total{path="/dings"} 10+10x10
        http_requests_total{path="/bumms"} 1+10x10
        reset_total 0 1 2 3 2 3 4
        testcounter_reset_middle_total 0+27x4 0+27x5
        testcounter_reset_end_total 0+10x9 0 10
        calculate_rate_offset_total{x="a"} 0+10x10
        calculate_rate_offset_total{x="b"} 0+20x10
        gauge{path="/foo"} 0 50 100 150 200
        gauge{path="/bar"} 200 150 100 50 0
        "#,
    );
    // The zero point cuts the extrapolation at the start of the range.
    check(
        &db,
        "increase(http_requests_total[100m])",
        50 * M,
        expect![[r#"
        {path="/bar"} 162
        {path="/bumms"} 101
        {path="/dings"} 105
        {path="/foo"} 100
    "#]],
    );
    check(
        &db,
        "increase(reset_total[30m])",
        30 * M,
        expect![[r#"
        {} 7
    "#]],
    );
    check(
        &db,
        "rate(testcounter_reset_middle_total[50m])",
        50 * M,
        expect![[r#"
        {} 0.08
    "#]],
    );
    check(
        &db,
        "rate(testcounter_reset_end_total[5m])",
        50 * M,
        expect!["empty vector"],
    );
    check(
        &db,
        "rate(testcounter_reset_end_total[6m])",
        50 * M,
        expect![[r#"
        {} 0
    "#]],
    );
    check(
        &db,
        "rate(calculate_rate_offset_total[10m] offset 5m)",
        50 * M,
        expect![[r#"
        {x="a"} 0.03333333333333333
        {x="b"} 0.06666666666666667
    "#]],
    );
    check(
        &db,
        "delta(gauge[20m])",
        20 * M,
        expect![[r#"
        {path="/bar"} -200
        {path="/foo"} 200
    "#]],
    );
    check(
        &db,
        "idelta(gauge[20m])",
        20 * M,
        expect![[r#"
        {path="/bar"} -50
        {path="/foo"} 50
    "#]],
    );

    let db = load(
        4 * M,
        r#"
        testcounter_zero_cutoff_total{start="0m"} 0+240x10
        testcounter_zero_cutoff_total{start="1m"} 60+240x10
        testcounter_zero_cutoff_total{start="2m"} 120+240x10
        testcounter_zero_cutoff_total{start="3m"} 180+240x10
        "#,
    );
    check(
        &db,
        "rate(testcounter_zero_cutoff_total[20m])",
        10 * M,
        expect![[r#"
        {start="0m"} 0.5
        {start="1m"} 0.55
        {start="2m"} 0.6
        {start="3m"} 0.6
    "#]],
    );
}

#[test]
fn irate_idelta_deriv_and_predict_linear() {
    let db = load(
        5 * M,
        r#"
        http_requests_total{path="/foo"} 0+10x10
        http_requests_total{path="/bar"} 0+10x5 0+10x5
        http_requests_nan 1 NaN NaN 5 11
        testcounter_reset_middle_total 0+10x4 0+10x5
        http_requests_inf -Inf 0+80x10 Inf
        "#,
    );
    check(
        &db,
        "irate(http_requests_total[50m])",
        50 * M,
        expect![[r#"
        {path="/bar"} 0.03333333333333333
        {path="/foo"} 0.03333333333333333
    "#]],
    );
    check(
        &db,
        "irate(http_requests_total[50m])",
        30 * M,
        expect![[r#"
        {path="/bar"} 0
        {path="/foo"} 0.03333333333333333
    "#]],
    );
    expect![[r#"
        {} NaN@300s NaN@600s NaN@900s 0.02@1200s
    "#]]
    .assert_eq(&render(range_query(
        &db,
        "irate(http_requests_nan[15m1s])",
        0,
        20 * M,
        5 * M,
    )));
    expect![[r#"
        {} NaN@300s NaN@600s NaN@900s 6@1200s
    "#]]
    .assert_eq(&render(range_query(
        &db,
        "idelta(http_requests_nan[15m1s])",
        0,
        20 * M,
        5 * M,
    )));
    check(
        &db,
        "deriv(testcounter_reset_middle_total[100m])",
        50 * M,
        expect![[r#"
        {} 0.010606060606060607
    "#]],
    );
    check(
        &db,
        r#"deriv(http_requests_total{path="/foo"}[50m])"#,
        50 * M,
        expect![[r#"
        {path="/foo"} 0.03333333333333333
    "#]],
    );
    check(
        &db,
        "deriv(http_requests_inf[100m])",
        100 * M,
        expect![[r#"
        {} NaN
    "#]],
    );
    check(
        &db,
        "predict_linear(testcounter_reset_middle_total[50m], 3600)",
        50 * M,
        expect![[r#"
        {} 70
    "#]],
    );
    check(
        &db,
        "predict_linear(testcounter_reset_middle_total[50m], 1h)",
        50 * M,
        expect![[r#"
        {} 70
    "#]],
    );
    // The intercept is at the evaluation time, not at the `@` time.
    check(
        &db,
        "predict_linear(testcounter_reset_middle_total[55m] @ 3000, 3600)",
        50 * M,
        expect![[r#"
        {} 76.81818181818181
    "#]],
    );
    check(
        &db,
        "predict_linear(testcounter_reset_middle_total[55m] @ 3000, 3600)",
        10 * M,
        expect![[r#"
        {} 51.36363636363637
    "#]],
    );
    check(
        &db,
        "predict_linear(http_requests_inf[100m], 6000)",
        100 * M,
        expect![[r#"
        {} NaN
    "#]],
    );
    // A constant series has slope 0.
    check(
        &db,
        r#"deriv(http_requests_total{path="/foo"}[1m] offset 1m)"#,
        50 * M,
        expect!["empty vector"],
    );
}

#[test]
fn over_time_functions() {
    let db = load(
        10_000,
        r#"
        data{type="numbers"} 2 0 3
        data{type="some_nan"} 2 0 NaN
        data{type="some_nan2"} 2 NaN 1
        data{type="some_nan3"} NaN 0 1
        data{type="only_nan"} NaN NaN NaN
        data_sparse{type="sparse_numbers"} _ 5 2 _ 4 _
        "#,
    );
    check(
        &db,
        "min_over_time(data[2m])",
        M,
        expect![[r#"
        {type="numbers"} 0
        {type="only_nan"} NaN
        {type="some_nan"} 0
        {type="some_nan2"} 1
        {type="some_nan3"} 0
    "#]],
    );
    check(
        &db,
        "max_over_time(data[2m])",
        M,
        expect![[r#"
        {type="numbers"} 3
        {type="only_nan"} NaN
        {type="some_nan"} 2
        {type="some_nan2"} 2
        {type="some_nan3"} 1
    "#]],
    );
    check(
        &db,
        r#"last_over_time({__name__=~"data(_sparse)?"}[2m])"#,
        M,
        expect![[r#"
        {__name__="data", type="numbers"} 3
        {__name__="data", type="only_nan"} NaN
        {__name__="data", type="some_nan"} NaN
        {__name__="data", type="some_nan2"} 1
        {__name__="data", type="some_nan3"} 1
        {__name__="data_sparse", type="sparse_numbers"} 4
    "#]],
    );
    check(
        &db,
        r#"first_over_time({__name__=~"data(_sparse)?"}[2m])"#,
        M,
        expect![[r#"
        {__name__="data", type="numbers"} 2
        {__name__="data", type="only_nan"} NaN
        {__name__="data", type="some_nan"} 2
        {__name__="data", type="some_nan2"} 2
        {__name__="data", type="some_nan3"} NaN
        {__name__="data_sparse", type="sparse_numbers"} 5
    "#]],
    );
    check(
        &db,
        "count_over_time(data_sparse[2m])",
        M,
        expect![[r#"
        {type="sparse_numbers"} 3
    "#]],
    );
    check(
        &db,
        "present_over_time(data_sparse[2m])",
        M,
        expect![[r#"
        {type="sparse_numbers"} 1
    "#]],
    );

    let db = load(
        10_000,
        r#"
        metric 0 8 8 2 3
        constant 1.5990505637277868 1.5990505637277868 1.5990505637277868
        mad 4 6 2 1 999 1 2
        big 1 1e100 1 -1e100
        ovf 9.988465674311579e+307 9.988465674311579e+307
        infs 1 2 3 Inf -Inf
        "#,
    );
    check(
        &db,
        "stdvar_over_time(metric[2m])",
        M,
        expect![[r#"
        {} 10.559999999999999
    "#]],
    );
    check(
        &db,
        "stddev_over_time((metric[2m]))",
        M,
        expect![[r#"
        {} 3.249615361854384
    "#]],
    );
    check(
        &db,
        "stdvar_over_time(constant[1m])",
        55_000,
        expect![[r#"
        {} 0
    "#]],
    );
    check(
        &db,
        "mad_over_time(mad[70s])",
        70_000,
        expect![[r#"
        {} 1
    "#]],
    );
    // A NaN makes the median absolute deviation NaN.
    check(
        &db,
        "mad_over_time((infs * 0)[1m:10s])",
        55_000,
        expect![[r#"
        {} NaN
    "#]],
    );
    // Kahan summation keeps the small values next to huge ones.
    check(
        &db,
        "sum_over_time(big[2m])",
        M,
        expect![[r#"
        {} 2
    "#]],
    );
    check(
        &db,
        "avg_over_time(big[2m])",
        M,
        expect![[r#"
        {} 0.5
    "#]],
    );
    // The sum overflows, the mean does not.
    check(
        &db,
        "avg_over_time(ovf[1m])",
        55_000,
        expect![[r#"
        {} 99884656743115800000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    "#]],
    );
    check(
        &db,
        "sum_over_time(ovf[1m]) / count_over_time(ovf[1m])",
        55_000,
        expect![[r#"
        {} +Inf
    "#]],
    );
    check(
        &db,
        "avg_over_time(infs[1m])",
        55_000,
        expect![[r#"
        {} NaN
    "#]],
    );
    check(
        &db,
        "avg_over_time(metric[10s])",
        55_000,
        expect!["empty vector"],
    );

    let db = load(
        10_000,
        r#"
        data{test="two samples"} 0 1
        data{test="three samples"} 0 1 2
        data{test="uneven samples"} 0 1 4
        "#,
    );
    check(
        &db,
        "quantile_over_time(0.75, data[2m])",
        M,
        expect![[r#"
        {test="three samples"} 1.5
        {test="two samples"} 0.75
        {test="uneven samples"} 2.5
    "#]],
    );
    check(
        &db,
        "quantile_over_time(-1, data[2m])",
        M,
        expect![[r#"
        {test="three samples"} -Inf
        {test="two samples"} -Inf
        {test="uneven samples"} -Inf
    "#]],
    );
    check(
        &db,
        "(quantile_over_time(2, (data[2m])))",
        M,
        expect![[r#"
        {test="three samples"} +Inf
        {test="two samples"} +Inf
        {test="uneven samples"} +Inf
    "#]],
    );
}

#[test]
fn double_exponential_smoothing_checks_its_factors() {
    let db = load(
        10_000,
        r#"
        http_requests{job="api-server", instance="0"} 0+10x1000 100+30x1000
        http_requests{job="api-server", instance="1"} 0+20x1000 200+30x1000
        falling{instance="0"} 8000-10x1000
        falling{instance="1"} 0-40x1000 0+40x1000
        "#,
    );
    check(
        &db,
        "double_exponential_smoothing(http_requests[1m], 0.01, 0.1)",
        8_000_000,
        expect![[r#"
        {instance="0", job="api-server"} 8000
        {instance="1", job="api-server"} 16000
    "#]],
    );
    check(
        &db,
        "double_exponential_smoothing(falling[1m], 0.01, 0.1)",
        8_000_000,
        expect![[r#"
        {instance="0"} 0
        {instance="1"} -32000
    "#]],
    );
    check(
        &db,
        "double_exponential_smoothing(falling[1m], 1, 0.1)",
        8_000_000,
        expect!["error(execution): invalid smoothing factor. Expected: 0 < sf < 1, got: 1.000000"],
    );
    check(
        &db,
        "double_exponential_smoothing(falling[1m], 0.5, 0)",
        8_000_000,
        expect!["error(execution): invalid trend factor. Expected: 0 < tf < 1, got: 0.000000"],
    );
    check(
        &db,
        "double_exponential_smoothing(nothing[1m], 1, 0.1)",
        8_000_000,
        expect!["empty vector"],
    );
}

#[test]
fn label_replace_and_label_join() {
    let db = load(
        5 * M,
        r#"
        testmetric{src="source-value-10",dst="original-destination-value"} 0
        testmetric{src="source-value-20",dst="original-destination-value"} 1
        joined{src="a",src1="b",src2="c",dst="original-destination-value"} 0
        joined{src="d",src1="e",src2="f",dst="original-destination-value"} 1
        dup{label="a", this="a"} 1.0
        dup{label="b", this="a"} 1.0
        "#,
    );
    let lr = |args: &str| format!("label_replace(testmetric, {args})");
    check(
        &db,
        &lr(r#""dst", "destination-value-$1", "src", "source-value-(.*)""#),
        0,
        expect![[r#"
        {__name__="testmetric", dst="destination-value-10", src="source-value-10"} 0
        {__name__="testmetric", dst="destination-value-20", src="source-value-20"} 1
    "#]],
    );
    // The regex is anchored: no sub-string match.
    check(
        &db,
        &lr(r#""dst", "destination-value-$1", "src", "value-(.*)""#),
        0,
        expect![[r#"
        {__name__="testmetric", dst="original-destination-value", src="source-value-10"} 0
        {__name__="testmetric", dst="original-destination-value", src="source-value-20"} 1
    "#]],
    );
    check(
        &db,
        &lr(r#""dst", "$1-value-${2}", "src", "(.*)-value-(?P<n>.*)""#),
        0,
        expect![[r#"
        {__name__="testmetric", dst="source-value-10", src="source-value-10"} 0
        {__name__="testmetric", dst="source-value-20", src="source-value-20"} 1
    "#]],
    );
    // A missing source is the empty string: it can still match.
    check(
        &db,
        &lr(r#""dst", "value-$1", "nonexistent-src", "(.*)""#),
        0,
        expect![[r#"
        {__name__="testmetric", dst="value-", src="source-value-10"} 0
        {__name__="testmetric", dst="value-", src="source-value-20"} 1
    "#]],
    );
    check(
        &db,
        &lr(r#""dst", "value-$1", "nonexistent-src", "source-value-(.*)""#),
        0,
        expect![[r#"
        {__name__="testmetric", dst="original-destination-value", src="source-value-10"} 0
        {__name__="testmetric", dst="original-destination-value", src="source-value-20"} 1
    "#]],
    );
    // An empty result removes the label.
    check(
        &db,
        &lr(r#""dst", "", "dst", ".*""#),
        0,
        expect![[r#"
        {__name__="testmetric", src="source-value-10"} 0
        {__name__="testmetric", src="source-value-20"} 1
    "#]],
    );
    check(
        &db,
        &lr(r#""__name__", "renamed", "", """#),
        0,
        expect![[r#"
        {__name__="renamed", dst="original-destination-value", src="source-value-10"} 0
        {__name__="renamed", dst="original-destination-value", src="source-value-20"} 1
    "#]],
    );
    check(
        &db,
        &lr(r#""dst", "value-$1", "src", "(.*""#),
        0,
        expect!["error(execution): invalid regular expression in label_replace(): (.*"],
    );
    check(
        &db,
        &lr(r#""", "", "src", "(.*)""#),
        0,
        expect!["error(execution): invalid destination label name in label_replace(): "],
    );
    // Names Assay could not store (Prometheus 3 would accept any UTF-8; 2 refuses these).
    check(
        &db,
        &lr(r#""1invalid", "x", "src", ".*""#),
        0,
        expect!["error(execution): invalid destination label name in label_replace(): 1invalid"],
    );
    check(
        &db,
        &lr(r#""src", "", "", """#),
        0,
        expect![[r#"error(execution): vector cannot contain metrics with the same labelset"#]],
    );

    check(
        &db,
        r#"label_join(joined, "dst", "-", "src", "src1", "src2")"#,
        0,
        expect![[r#"
        {__name__="joined", dst="a-b-c", src="a", src1="b", src2="c"} 0
        {__name__="joined", dst="d-e-f", src="d", src1="e", src2="f"} 1
    "#]],
    );
    check(
        &db,
        r#"label_join(joined, "dst", "-", "src", "src3", "src1")"#,
        0,
        expect![[r#"
        {__name__="joined", dst="a--b", src="a", src1="b", src2="c"} 0
        {__name__="joined", dst="d--e", src="d", src1="e", src2="f"} 1
    "#]],
    );
    check(
        &db,
        r#"label_join(joined, "dst", ", ")"#,
        0,
        expect![[r#"
        {__name__="joined", src="a", src1="b", src2="c"} 0
        {__name__="joined", src="d", src1="e", src2="f"} 1
    "#]],
    );
    check(
        &db,
        r#"label_join(dup, "label", "", "this")"#,
        0,
        expect![[r#"error(execution): vector cannot contain metrics with the same labelset"#]],
    );
    check(
        &db,
        r#"label_join(dup, "x", "", "")"#,
        0,
        expect!["error(execution): invalid source label name in label_join(): "],
    );
}

#[test]
fn sort_functions_keep_their_order() {
    let db = load(
        5 * M,
        r#"
        http_requests{job="api-server", instance="0", group="production"} 0+10x10
        http_requests{job="api-server", instance="1", group="production"} 0+20x10
        http_requests{job="api-server", instance="0", group="canary"} 0+30x10
        http_requests{job="api-server", instance="2", group="canary"} NaN NaN NaN NaN NaN NaN NaN NaN NaN NaN NaN
        http_requests{job="app-server", instance="0", group="production"} 0+50x10
        http_requests{job="app-server", instance="1", group="canary"} 0+80x10
        cpu_time_total{cpu="0"} 1
        cpu_time_total{cpu="1"} 1
        cpu_time_total{cpu="10"} 1
        cpu_time_total{cpu="2"} 1
        cpu_time_total{cpu="100"} 1
        node_uname_info{instance="4m600", release="1.2.3"} 1
        node_uname_info{instance="4m5", release="1.11.3"} 1
        node_uname_info{instance="4m1000", release="1.111.3"} 1
        "#,
    );
    check(
        &db,
        "sort(http_requests)",
        50 * M,
        expect![[r#"
        {__name__="http_requests", group="production", instance="0", job="api-server"} 100
        {__name__="http_requests", group="production", instance="1", job="api-server"} 200
        {__name__="http_requests", group="canary", instance="0", job="api-server"} 300
        {__name__="http_requests", group="production", instance="0", job="app-server"} 500
        {__name__="http_requests", group="canary", instance="1", job="app-server"} 800
        {__name__="http_requests", group="canary", instance="2", job="api-server"} NaN
    "#]],
    );
    check(
        &db,
        "(sort_desc(http_requests))",
        50 * M,
        expect![[r#"
        {__name__="http_requests", group="canary", instance="1", job="app-server"} 800
        {__name__="http_requests", group="production", instance="0", job="app-server"} 500
        {__name__="http_requests", group="canary", instance="0", job="api-server"} 300
        {__name__="http_requests", group="production", instance="1", job="api-server"} 200
        {__name__="http_requests", group="production", instance="0", job="api-server"} 100
        {__name__="http_requests", group="canary", instance="2", job="api-server"} NaN
    "#]],
    );
    check(
        &db,
        r#"sort_by_label(http_requests, "instance", "group")"#,
        50 * M,
        expect![[r#"
        {__name__="http_requests", group="canary", instance="0", job="api-server"} 300
        {__name__="http_requests", group="production", instance="0", job="api-server"} 100
        {__name__="http_requests", group="production", instance="0", job="app-server"} 500
        {__name__="http_requests", group="canary", instance="1", job="app-server"} 800
        {__name__="http_requests", group="production", instance="1", job="api-server"} 200
        {__name__="http_requests", group="canary", instance="2", job="api-server"} NaN
    "#]],
    );
    check(
        &db,
        r#"sort_by_label_desc(http_requests, "instance")"#,
        50 * M,
        expect![[r#"
        {__name__="http_requests", group="canary", instance="2", job="api-server"} NaN
        {__name__="http_requests", group="production", instance="1", job="api-server"} 200
        {__name__="http_requests", group="canary", instance="1", job="app-server"} 800
        {__name__="http_requests", group="production", instance="0", job="app-server"} 500
        {__name__="http_requests", group="production", instance="0", job="api-server"} 100
        {__name__="http_requests", group="canary", instance="0", job="api-server"} 300
    "#]],
    );
    // Natural order: digits compare as numbers.
    check(
        &db,
        r#"sort_by_label(cpu_time_total, "cpu")"#,
        0,
        expect![[r#"
        {__name__="cpu_time_total", cpu="0"} 1
        {__name__="cpu_time_total", cpu="1"} 1
        {__name__="cpu_time_total", cpu="2"} 1
        {__name__="cpu_time_total", cpu="10"} 1
        {__name__="cpu_time_total", cpu="100"} 1
    "#]],
    );
    check(
        &db,
        r#"sort_by_label(node_uname_info, "instance")"#,
        0,
        expect![[r#"
        {__name__="node_uname_info", instance="4m5", release="1.11.3"} 1
        {__name__="node_uname_info", instance="4m600", release="1.2.3"} 1
        {__name__="node_uname_info", instance="4m1000", release="1.111.3"} 1
    "#]],
    );
    check(
        &db,
        r#"sort_by_label(node_uname_info, "release")"#,
        0,
        expect![[r#"
        {__name__="node_uname_info", instance="4m600", release="1.2.3"} 1
        {__name__="node_uname_info", instance="4m5", release="1.11.3"} 1
        {__name__="node_uname_info", instance="4m1000", release="1.111.3"} 1
    "#]],
    );
    // Only the outermost function decides the order; range queries sort by labels.
    check(
        &db,
        "sort_desc(http_requests) + 0",
        50 * M,
        expect![[r#"
        {group="canary", instance="0", job="api-server"} 300
        {group="canary", instance="1", job="app-server"} 800
        {group="canary", instance="2", job="api-server"} NaN
        {group="production", instance="0", job="api-server"} 100
        {group="production", instance="0", job="app-server"} 500
        {group="production", instance="1", job="api-server"} 200
    "#]],
    );
    expect![[r#"
        {__name__="cpu_time_total", cpu="0"} 1@0s
        {__name__="cpu_time_total", cpu="1"} 1@0s
        {__name__="cpu_time_total", cpu="10"} 1@0s
        {__name__="cpu_time_total", cpu="100"} 1@0s
        {__name__="cpu_time_total", cpu="2"} 1@0s
    "#]]
    .assert_eq(&render(range_query(
        &db,
        r#"sort_by_label(cpu_time_total, "cpu")"#,
        0,
        0,
        1000,
    )));
}

#[test]
fn math_clamp_and_rounding() {
    let db = load(
        5 * M,
        r#"
        data{type="positive"} 2.5
        data{type="whole"} 2
        data{type="negative"} -2.5
        data{type="zero"} 0
        data{type="nzero"} -0
        data{type="inf"} +Inf
        data{type="ninf"} -Inf
        data{type="nan"} NaN
        exp_root_log{l="x"} 10
        exp_root_log{l="y"} 20
        test_clamp{src="clamp-a"} -50
        test_clamp{src="clamp-b"} 0
        test_clamp{src="clamp-c"} 100
        r{i="0"} 0.5
        r{i="1"} 1
        "#,
    );
    check(
        &db,
        "round(data)",
        0,
        expect![[r#"
        {type="inf"} +Inf
        {type="nan"} NaN
        {type="negative"} -2
        {type="ninf"} -Inf
        {type="nzero"} 0
        {type="positive"} 3
        {type="whole"} 2
        {type="zero"} 0
    "#]],
    );
    check(
        &db,
        "ceil(data) + floor(data) * 10",
        0,
        expect![[r#"
        {type="inf"} +Inf
        {type="nan"} NaN
        {type="negative"} -32
        {type="ninf"} -Inf
        {type="nzero"} -0
        {type="positive"} 23
        {type="whole"} 22
        {type="zero"} 0
    "#]],
    );
    check(
        &db,
        "sgn(data)",
        0,
        expect![[r#"
        {type="inf"} 1
        {type="nan"} NaN
        {type="negative"} -1
        {type="ninf"} -1
        {type="nzero"} -0
        {type="positive"} 1
        {type="whole"} 1
        {type="zero"} 0
    "#]],
    );
    check(
        &db,
        "round(r * 0.0005 + 5.2, 0.1)",
        0,
        expect![[r#"
        {i="0"} 5.2
        {i="1"} 5.2
    "#]],
    );
    check(
        &db,
        "round(r * 0.045 * 200, 5)",
        0,
        expect![[r#"
        {i="0"} 5
        {i="1"} 10
    "#]],
    );
    check(
        &db,
        "exp(exp_root_log - 20)",
        M,
        expect![[r#"
        {l="x"} 0.000045399929762484854
        {l="y"} 1
    "#]],
    );
    check(
        &db,
        "ln(exp_root_log - 10)",
        M,
        expect![[r#"
        {l="x"} -Inf
        {l="y"} 2.302585092994046
    "#]],
    );
    check(
        &db,
        "log2(exp_root_log) + log10(exp_root_log) * 1000 + sqrt(exp_root_log) * 1e6",
        M,
        expect![[r#"
        {l="x"} 3163280.9820964746
        {l="y"} 4473441.306923339
    "#]],
    );
    check(
        &db,
        "clamp(test_clamp, -25, 75)",
        0,
        expect![[r#"
        {src="clamp-a"} -25
        {src="clamp-b"} 0
        {src="clamp-c"} 75
    "#]],
    );
    check(
        &db,
        "clamp_max(clamp_min(test_clamp, -20), 70)",
        0,
        expect![[r#"
        {src="clamp-a"} -20
        {src="clamp-b"} 0
        {src="clamp-c"} 70
    "#]],
    );
    check(
        &db,
        "clamp(test_clamp, 0, NaN)",
        0,
        expect![[r#"
        {src="clamp-a"} NaN
        {src="clamp-b"} NaN
        {src="clamp-c"} NaN
    "#]],
    );
    check(&db, "clamp(test_clamp, 5, -5)", 0, expect!["empty vector"]);
    check(
        &db,
        "deg(pi() * vector(1)) + rad(vector(180)) * 0",
        0,
        expect![[r#"
        {} 180
    "#]],
    );
    check(
        &db,
        r#"sin(vector(0.5)) + cos(vector(0.5)) + tan(vector(0.5)) + asin(vector(0.5)) + acos(vector(0.5)) + atan(vector(0.5))"#,
        0,
        expect![[r#"
        {} 3.937754526134069
    "#]],
    );
    check(
        &db,
        r#"sinh(vector(0.5)) + cosh(vector(0.5)) + tanh(vector(0.5)) + asinh(vector(0.5)) + acosh(vector(1.5)) + atanh(vector(0.5))"#,
        0,
        expect![[r#"
        {} 4.103780047473003
    "#]],
    );
}

#[test]
fn time_functions() {
    let db = load(
        10_000,
        r#"
        metric 1 1
        "#,
    );
    check(
        &db,
        "timestamp(metric)",
        5_000,
        expect![[r#"
        {} 0
    "#]],
    );
    check(
        &db,
        "timestamp(((metric)))",
        15_000,
        expect![[r#"
        {} 10
    "#]],
    );
    check(
        &db,
        "timestamp(metric offset 10s)",
        25_000,
        expect![[r#"
        {} 10
    "#]],
    );
    // Of anything but a selector: the evaluation time.
    check(
        &db,
        "timestamp(metric + 1)",
        15_000,
        expect![[r#"
        {} 15
    "#]],
    );
    check(
        &db,
        "vector(time())",
        3_600_000,
        expect![[r#"
        {} 3600
    "#]],
    );
    let at0 = |q: &str| render(instant_query(&db, q, 0));
    expect![[r#"
        {} 1970
    "#]]
    .assert_eq(&at0("year()"));
    expect![[r#"
        {} 4
    "#]]
    .assert_eq(&at0("day_of_week()"));
    let of = |f: &str, secs: i64| at0(&format!("{f}(vector({secs}))"));
    let got: Vec<String> = [
        ("year", 1136239445),
        ("month", 1136239445),
        ("day_of_month", 1136239445),
        ("day_of_year", 1136239445),
        ("day_of_week", 1136239445),
        ("hour", 1136239445),
        ("minute", 1136239445),
        ("year", 1230767999),
        ("year", 1230768000),
        ("day_of_month", 1456790399),
        ("month", 1456790400),
        ("day_of_year", 1483191420),
        ("day_of_year", 1672493820),
        ("days_in_month", 1454284800),
        ("days_in_month", 1485907200),
        ("year", -1),
        ("day_of_week", -86400),
    ]
    .iter()
    .map(|&(f, s)| of(f, s).trim().to_string())
    .collect();
    expect![[r#"["{} 2006", "{} 1", "{} 2", "{} 2", "{} 1", "{} 22", "{} 4", "{} 2008", "{} 2009", "{} 29", "{} 3", "{} 366", "{} 365", "{} 29", "{} 28", "{} 1969", "{} 3"]"#]]
    .assert_eq(&format!("{got:?}"));
    // Date functions drop the name and keep the other labels.
    let db = load(M, "ts{a=\"1\"} 1136239445.9");
    check(
        &db,
        "hour(ts)",
        0,
        expect![[r#"
        {a="1"} 22
    "#]],
    );
}

#[test]
fn absent_derives_labels_from_equality_matchers() {
    let db = load(
        M,
        r#"
        http_requests_total{path="/foo",instance="127.0.0.1",job="httpd"} 1+1x10
        httpd_log_lines_total{instance="127.0.0.1",job="node"} 1
        ssl_certificate_expiry_seconds{job="ingress"} NaN NaN NaN NaN NaN
        "#,
    );
    check(
        &db,
        "absent(nonexistent)",
        50 * M,
        expect![[r#"
        {} 1
    "#]],
    );
    check(
        &db,
        r#"absent(nonexistent{job="testjob", instance="testinstance", method=~".x"})"#,
        50 * M,
        expect![[r#"
        {instance="testinstance", job="testjob"} 1
    "#]],
    );
    check(
        &db,
        r#"absent(nonexistent{job="testjob",job="testjob2",foo="bar"})"#,
        50 * M,
        expect![[r#"
        {foo="bar"} 1
    "#]],
    );
    check(
        &db,
        r#"absent(nonexistent{job="testjob",job=~"testjob2",foo="bar"})"#,
        50 * M,
        expect![[r#"
        {foo="bar"} 1
    "#]],
    );
    check(
        &db,
        r#"absent(sum(nonexistent{job="testjob"}))"#,
        50 * M,
        expect![[r#"
        {} 1
    "#]],
    );
    check(
        &db,
        r#"absent(http_requests_total)"#,
        5 * M,
        expect!["empty vector"],
    );
    check(
        &db,
        r#"absent(nonexistent > 1)"#,
        5 * M,
        expect![[r#"
        {} 1
    "#]],
    );
    check(
        &db,
        "absent_over_time(http_requests_total[5m])",
        5 * M,
        expect!["empty vector"],
    );
    check(
        &db,
        "absent_over_time(http_requests_total[5m])",
        15 * M,
        expect![[r#"
        {} 1
    "#]],
    );
    check(
        &db,
        "absent_over_time(httpd_log_lines_total[30s])",
        M,
        expect![[r#"
        {} 1
    "#]],
    );
    check(
        &db,
        r#"absent_over_time(nonexistent{handler="/foo", handler="/bar", instance="127.0.0.1"}[5m])"#,
        M,
        expect![[r#"
        {instance="127.0.0.1"} 1
    "#]],
    );
    check(
        &db,
        r#"absent_over_time({instance="127.0.0.1"}[5m:5s])"#,
        30 * M,
        expect![[r#"
        {} 1
    "#]],
    );
    check(
        &db,
        "absent_over_time(rate(http_requests_total[5m])[5m:1m])",
        5 * M,
        expect!["empty vector"],
    );
    // NaN samples are present.
    check(
        &db,
        r#"absent_over_time({job="ingress"}[4m])"#,
        5 * M,
        expect!["empty vector"],
    );
    check(
        &db,
        r#"absent_over_time({job="ingress"}[4m])"#,
        10 * M,
        expect![[r#"
        {job="ingress"} 1
    "#]],
    );
}

#[test]
fn histogram_quantile_over_classic_buckets() {
    let db = load(
        5 * M,
        r#"
        testhistogram_bucket{le="0.1", start="positive"} 0+5x10
        testhistogram_bucket{le=".2", start="positive"} 0+7x10
        testhistogram_bucket{le="1e0", start="positive"} 0+11x10
        testhistogram_bucket{le="+Inf", start="positive"} 0+12x10
        testhistogram_bucket{le="-.2", start="negative"} 0+1x10
        testhistogram_bucket{le="-0.1", start="negative"} 0+2x10
        testhistogram_bucket{le="0.3", start="negative"} 0+2x10
        testhistogram_bucket{le="+Inf", start="negative"} 0+3x10
        testhistogram2_bucket{le="0"} 0+0x10
        testhistogram2_bucket{le="2"} 0+1x10
        testhistogram2_bucket{le="4"} 0+2x10
        testhistogram2_bucket{le="6"} 0+3x10
        testhistogram2_bucket{le="+Inf"} 0+3x10
        request_duration_seconds_bucket{job="job1", instance="ins1", le="0.1"} 0+1x10
        request_duration_seconds_bucket{job="job1", instance="ins1", le="0.2"} 0+3x10
        request_duration_seconds_bucket{job="job1", instance="ins1", le="+Inf"} 0+4x10
        request_duration_seconds_bucket{job="job1", instance="ins2", le="0.1"} 0+2x10
        request_duration_seconds_bucket{job="job1", instance="ins2", le="0.2"} 0+5x10
        request_duration_seconds_bucket{job="job1", instance="ins2", le="+Inf"} 0+6x10
        request_duration_seconds_bucket{job="job2", instance="ins1", le="0.1"} 0+3x10
        request_duration_seconds_bucket{job="job2", instance="ins1", le="0.2"} 0+4x10
        request_duration_seconds_bucket{job="job2", instance="ins1", le="+Inf"} 0+6x10
        request_duration_seconds_bucket{job="job2", instance="ins2", le="0.1"} 0+4x10
        request_duration_seconds_bucket{job="job2", instance="ins2", le="0.2"} 0+7x10
        request_duration_seconds_bucket{job="job2", instance="ins2", le="+Inf"} 0+9x10
        request_duration_seconds2_bucket{job="job1", instance="ins1", le="0.1"} 0+1x10
        request_duration_seconds2_bucket{job="job1", instance="ins1", le="+Inf"} 0+4x10
        mixed_bucket{job="job1", instance="ins1", le="0.1"} 0+1x10
        mixed_bucket{job="job1", instance="ins1", le="0.2"} 0+1x10
        mixed_bucket{job="job1", instance="ins1", le="2e-1"} 0+1x10
        mixed_bucket{job="job1", instance="ins1", le="2.0e-1"} 0+1x10
        mixed_bucket{job="job1", instance="ins1", le="+Inf"} 0+4x10
        mixed_bucket{job="job1", instance="ins2", le="+inf"} 0+0x10
        mixed_bucket{job="job1", instance="ins2", le="+Inf"} 0+0x10
        nonmonotonic_bucket{le="0.1"} 0+2x10
        nonmonotonic_bucket{le="1"} 0+1x10
        nonmonotonic_bucket{le="10"} 0+5x10
        nonmonotonic_bucket{le="100"} 0+4x10
        nonmonotonic_bucket{le="1000"} 0+9x10
        nonmonotonic_bucket{le="+Inf"} 0+8x10
        no_inf_bucket{le="1"} 1
        no_inf_bucket{le="2"} 3
        bad_le_bucket{le="x"} 1
        bad_le_bucket{le="+Inf"} 1
        nan_le_bucket{le="NaN"} 1
        nan_le_bucket{le="1"} 1
        nan_le_bucket{le="NaN", x="1"} 1
        nan_le_bucket{le="-0", x="1"} 1
        nan_le_bucket{le="0", x="1"} 2
        nan_le_bucket{le="+Inf"} 1
        "#,
    );
    let at = 50 * M;
    let q = |phi: &str| format!("histogram_quantile({phi}, testhistogram_bucket)");
    check(
        &db,
        &q("0"),
        at,
        expect![[r#"
        {start="negative"} -0.2
        {start="positive"} 0
    "#]],
    );
    check(
        &db,
        &q("0.2"),
        at,
        expect![[r#"
        {start="negative"} -0.2
        {start="positive"} 0.048
    "#]],
    );
    check(
        &db,
        &q("0.5"),
        at,
        expect![[r#"
        {start="negative"} -0.15000000000000002
        {start="positive"} 0.15000000000000002
    "#]],
    );
    check(
        &db,
        &q("0.8"),
        at,
        expect![[r#"
        {start="negative"} 0.3
        {start="positive"} 0.72
    "#]],
    );
    check(
        &db,
        &q("1"),
        at,
        expect![[r#"
        {start="negative"} 0.3
        {start="positive"} 1
    "#]],
    );
    check(
        &db,
        &q("-0.1"),
        at,
        expect![[r#"
        {start="negative"} -Inf
        {start="positive"} -Inf
    "#]],
    );
    check(
        &db,
        &q("1.01"),
        at,
        expect![[r#"
        {start="negative"} +Inf
        {start="positive"} +Inf
    "#]],
    );
    check(
        &db,
        &q("NaN"),
        at,
        expect![[r#"
        {start="negative"} NaN
        {start="positive"} NaN
    "#]],
    );
    check(
        &db,
        "histogram_quantile(0.8, rate(testhistogram_bucket[10m]))",
        at,
        expect![[r#"
        {start="negative"} 0.3
        {start="positive"} 0.72
    "#]],
    );
    check(
        &db,
        "histogram_quantile(5./6., testhistogram2_bucket)",
        7 * M,
        expect![[r#"
        {} 5
    "#]],
    );
    check(
        &db,
        "histogram_quantile(0.5, rate(testhistogram2_bucket[15m]))",
        47 * M,
        expect![[r#"
        {} 3
    "#]],
    );
    check(
        &db,
        "histogram_quantile(0.5, sum(rate(request_duration_seconds_bucket[10m])) by (le))",
        at,
        expect![[r#"
        {} 0.1277777777777778
    "#]],
    );
    check(
        &db,
        "histogram_quantile(0.3, sum(rate(request_duration_seconds_bucket[10m])) by (le, job))",
        at,
        expect![[r#"
        {job="job1"} 0.1
        {job="job2"} 0.06428571428571428
    "#]],
    );
    check(
        &db,
        "histogram_quantile(0.5, rate(request_duration_seconds_bucket[10m]))",
        at,
        expect![[r#"
        {instance="ins1", job="job1"} 0.15000000000000002
        {instance="ins1", job="job2"} 0.1
        {instance="ins2", job="job1"} 0.13333333333333336
        {instance="ins2", job="job2"} 0.11666666666666667
    "#]],
    );
    // Equal bounds written differently are merged.
    check(
        &db,
        "histogram_quantile(0.5, rate(mixed_bucket[10m]))",
        at,
        expect![[r#"
        {instance="ins1", job="job1"} 0.15000000000000002
        {instance="ins2", job="job1"} NaN
    "#]],
    );
    check(
        &db,
        "histogram_quantile(0.75, rate(mixed_bucket[10m]))",
        at,
        expect![[r#"
        {instance="ins1", job="job1"} 0.2
        {instance="ins2", job="job1"} NaN
    "#]],
    );
    // Decreasing counts are raised to the previous bucket's.
    check(
        &db,
        "histogram_quantile(0.01, nonmonotonic_bucket)",
        at,
        expect![[r#"
        {} 0.0045
    "#]],
    );
    check(
        &db,
        "histogram_quantile(0.5, nonmonotonic_bucket)",
        at,
        expect![[r#"
        {} 8.5
    "#]],
    );
    check(
        &db,
        "histogram_quantile(0.99, nonmonotonic_bucket)",
        at,
        expect![[r#"
        {} 979.7499999999999
    "#]],
    );
    // Without a +Inf bucket there is no quantile; a bad `le` is skipped.
    check(
        &db,
        "histogram_quantile(0.5, no_inf_bucket)",
        0,
        expect![[r#"
        {} NaN
    "#]],
    );
    check(
        &db,
        "histogram_quantile(0.5, bad_le_bucket)",
        0,
        expect![[r#"
        {} NaN
    "#]],
    );
    check(&db, "histogram_quantile(0.5, {__name__=~\"request_duration_seconds\\\\d*_bucket\", job=\"job1\", instance=\"ins1\"})", at, expect![[r#"error(execution): vector cannot contain metrics with the same labelset"#]]);
    // A NaN bound sorts after +Inf: no quantile, and no panic.
    check(
        &db,
        "histogram_quantile(0.5, nan_le_bucket)",
        0,
        expect![[r#"
            {} NaN
            {x="1"} NaN
        "#]],
    );
    check(
        &db,
        "histogram_quantile(0.5, nothing)",
        at,
        expect!["empty vector"],
    );
    // Native histogram functions see no native histograms: nothing.
    check(
        &db,
        "histogram_count(testhistogram_bucket)",
        at,
        expect!["empty vector"],
    );
}

#[test]
fn subqueries_align_steps_to_absolute_time() {
    let db = load(10_000, "metric 1 2");
    check(
        &db,
        "sum_over_time(metric[50s:10s])",
        10_000,
        expect![[r#"
        {} 3
    "#]],
    );
    check(
        &db,
        "sum_over_time(metric[50s:5s])",
        10_000,
        expect![[r#"
        {} 4
    "#]],
    );
    check(
        &db,
        "sum_over_time(metric[50s:10s])",
        5 * M,
        expect![[r#"
        {} 10
    "#]],
    );
    // The series goes stale 5m after its last sample.
    check(
        &db,
        "sum_over_time(metric[60s:10s])",
        5 * M + 59_000,
        expect![[r#"
        {} 2
    "#]],
    );
    check(
        &db,
        "rate(metric[20s:10s])",
        10_000,
        expect![[r#"
        {} 0.1
    "#]],
    );
    check(
        &db,
        "rate(metric[20s:5s])",
        20_000,
        expect![[r#"
        {} 0.06666666666666667
    "#]],
    );
    // The subquery itself is a range vector, its points at the aligned steps.
    check(
        &db,
        "metric[30s:10s]",
        25_000,
        expect![[r#"
        {__name__="metric"} 1@0s 2@10s 2@20s
    "#]],
    );
    // Without a step: 1m, Prometheus' default evaluation interval.
    check(
        &db,
        "count_over_time(metric[5m:])",
        5 * M,
        expect![[r#"
        {} 5
    "#]],
    );

    let db = load(
        10_000,
        r#"
        metric1 0+1x1000
        metric2 0+2x1000
        metric3 0+3x1000
        "#,
    );
    check(
        &db,
        "sum_over_time(metric1[30s:10s])",
        1_000_000,
        expect![[r#"
        {} 297
    "#]],
    );
    check(
        &db,
        "sum_over_time(metric1[30s:5s])",
        1_000_000,
        expect![[r#"
        {} 591
    "#]],
    );
    for offset in ["10s", "9s", "7s", "5s", "3s"] {
        let q = format!("sum_over_time(metric1[30s:10s] offset {offset})");
        expect![[r#"
            {} 297
        "#]]
        .assert_eq(&render(instant_query(&db, &q, 1_010_000)));
    }
    check(
        &db,
        "sum_over_time((metric1)[30s:10s] @ 1000)",
        5_000_000,
        expect![[r#"
        {} 297
    "#]],
    );
    check(
        &db,
        "rate(sum_over_time(metric1[30s:10s])[50s:10s])",
        1_000_000,
        expect![[r#"
        {} 0.30000000000000004
    "#]],
    );
    check(
        &db,
        "rate(sum_over_time((metric1+metric2+metric3)[30s:10s])[30s:10s])",
        1_000_000,
        expect![[r#"
        {} 1.8
    "#]],
    );

    let db = load(
        10_000,
        r#"
        http_requests{job="api-server", instance="1", group="production"} 0+20x1000 200+30x1000
        http_requests{job="api-server", instance="0", group="production"} 0+10x1000 100+30x1000
        http_requests{job="api-server", instance="0", group="canary"} 0+30x1000 300+80x1000
        http_requests{job="api-server", instance="1", group="canary"} 0+40x2000
        "#,
    );
    check(
        &db,
        r#"rate(http_requests{group=~"pro.*"}[1m:10s])"#,
        8_000_000,
        expect![[r#"
        {group="production", instance="0", job="api-server"} 1
        {group="production", instance="1", job="api-server"} 2
    "#]],
    );
    check(
        &db,
        "avg_over_time(rate(http_requests[1m])[1m:1s])",
        20_000_000,
        expect![[r#"
        {group="canary", instance="0", job="api-server"} 8
        {group="canary", instance="1", job="api-server"} 4
        {group="production", instance="0", job="api-server"} 3
        {group="production", instance="1", job="api-server"} 3
    "#]],
    );
    // A range query runs the subquery at every step.
    expect![[r#"
        {group="production", instance="0", job="api-server"} 1@7990s 1@8000s
    "#]]
    .assert_eq(&render(range_query(
        &db,
        r#"rate(http_requests{group="production", instance="0"}[1m:10s])"#,
        7_990_000,
        8_000_000,
        10_000,
    )));
}

#[test]
fn subquery_fibonacci_rates() {
    let db = load(
        7_000,
        "metric 1 1 2 3 5 8 13 21 34 55 89 144 233 377 610 987 1597 2584 4181 6765 10946 17711 28657 46368 75025 121393 196418 317811 514229 832040 1346269 2178309 3524578 5702887 9227465 14930352 24157817 39088169 63245986 102334155 165580141 267914296 433494437 701408733 1134903170 1836311903 2971215073 4807526976",
    );
    check(
        &db,
        "rate(metric[1m])",
        80_000,
        expect![[r#"
        {} 2.517857142857143
    "#]],
    );
    check(
        &db,
        "rate(metric[1m:10s])",
        80_000,
        expect![[r#"
        {} 2.4
    "#]],
    );
    check(
        &db,
        "min_over_time(metric[10s:10s])",
        20_000,
        expect![[r#"
        {} 2
    "#]],
    );
}

#[test]
fn subquery_steps_are_limited() {
    let db = load(10_000, "metric 1 2");
    let limits = eval::Limits {
        subquery_steps_max: 5,
        ..eval::Limits::default()
    };
    let run = |q: &str| {
        let expr = parse::query(q).unwrap();
        eval::Evaluator::new(&db, 0, 0)
            .with_limits(limits)
            .instant(&expr, 60_000)
            .map(|_| ())
    };
    assert!(run("count_over_time(metric[50s:10s])").is_ok());
    // A range query evaluates each inner step once: (-50s, 60s] holds 11 of them.
    let range = |max: u64| {
        let expr = parse::query("count_over_time(metric[50s:10s])").unwrap();
        let limits = eval::Limits {
            subquery_steps_max: max,
            ..limits
        };
        eval::Evaluator::new(&db, 0, 60_000)
            .with_limits(limits)
            .range(&expr, 0, 60_000, 10_000)
            .map(|_| ())
    };
    assert!(range(11).is_ok());
    assert!(range(10).is_err());
    let e = run("count_over_time(metric[60s:10s])").unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            QueryErrorKind::Execution,
            "query evaluates more than 5 subquery steps; use a larger subquery step or a shorter range"
        )
    );
}

#[test]
fn stale_markers_end_series_in_every_window() {
    let db = load(
        M,
        r#"
        metric{a="1"} 1 2 stale 4
        metric{a="2"} 10 stale
        "#,
    );
    // Range functions skip the marker itself.
    check(
        &db,
        "count_over_time(metric[5m])",
        3 * M,
        expect![[r#"
        {a="1"} 3
        {a="2"} 1
    "#]],
    );
    check(
        &db,
        "last_over_time(metric[5m])",
        2 * M,
        expect![[r#"
        {__name__="metric", a="1"} 2
        {__name__="metric", a="2"} 10
    "#]],
    );
    // A subquery sees the series disappear at the marker and come back after it.
    check(
        &db,
        "metric[4m:1m]",
        4 * M,
        expect![[r#"
        {__name__="metric", a="1"} 2@60s 4@180s 4@240s
    "#]],
    );
    let r = render(range_query(&db, "metric", 0, 4 * M, M));
    expect![[r#"
        {__name__="metric", a="1"} 1@0s 2@60s 4@180s 4@240s
        {__name__="metric", a="2"} 10@0s
    "#]]
    .assert_eq(&r);
    check(
        &db,
        "+metric",
        0,
        expect![[r#"
        {__name__="metric", a="1"} 1
        {__name__="metric", a="2"} 10
    "#]],
    );
}

#[test]
fn subqueries_with_offset_and_at_in_range_queries() {
    let db = load(10_000, "metric1 0+1x1000");
    let r = |q: &str| render(range_query(&db, q, 100_000, 130_000, 10_000));
    expect![[r#"
        {} 27@100s 30@110s 33@120s 36@130s
    "#]]
    .assert_eq(&r("sum_over_time(metric1[30s:10s])"));
    expect![[r#"
        {} 24@100s 27@110s 30@120s 33@130s
    "#]]
    .assert_eq(&r("sum_over_time(metric1[30s:10s] offset 10s)"));
    expect![[r#"
        {} 27@100s 27@110s 27@120s 27@130s
    "#]]
    .assert_eq(&r("sum_over_time(metric1[30s:10s] @ start())"));
    expect![[r#"
        {} 36@100s 36@110s 36@120s 36@130s
    "#]]
    .assert_eq(&r("sum_over_time(metric1[30s:10s] @ end())"));
    expect![[r#"
        {} 0.1020979020979021@100s 0.1020979020979021@110s 0.1020979020979021@120s 0.1020979020979021@130s
    "#]]
    .assert_eq(&r("deriv(metric1[1m:5s])"));
}

#[test]
fn avg_over_time_of_extreme_values() {
    let db = load(
        5_000,
        r#"
        m1 1e10 1e-6 1e-6 1e-6 1e-6 1e-6
        m3 1.78264e50 0.76342771 1.9592258 7.69805412 458.90154
        m5 1.78264E+50 0.76342771 1.9592258 2.258E+220 7.69805412 458.90154
        m7 -1.78264E+50 0.76342771 1.9592258 -2.258E+220 7.69805412 -458.90154
        m9 -1.78264E+215 0.76342771 1.9592258 2.258E+220 7.69805412 1.78264E+215 -458.90154
        m10 -1.78264E+219 0.76342771 1.9592258 2.3757689E+217 -2.3757689E+217 2.258E+220 7.69805412 1.78264E+219 -458.90154
        m11 -2.258E+220 -1.78264E+219 0.76342771 1.9592258 2.3757689E+217 -2.3757689E+217 2.258E+220 7.69805412 1.78264E+219 -458.90154
        i5 Inf 0 Inf
        i5c Inf Inf Inf -Inf
        i6b -Inf 0 -Inf
        big 9.988465674311579e+307 9.988465674311579e+307 9.988465674311579e+307
        "#,
    );
    let got: Vec<String> = [
        "m1", "m3", "m5", "m7", "m9", "m10", "m11", "i5", "i5c", "i6b", "big",
    ]
    .iter()
    .map(|m| {
        render(instant_query(
            &db,
            &format!("avg_over_time({m}[1m])"),
            55_000,
        ))
    })
    .map(|r| r.trim().to_string())
    .collect();
    expect![[r#"
        [
            "{} 1666666666.6666675",
            "{} 35652800000000000000000000000000000000000000000000",
            "{} 3763333333333333500000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            "{} -3763333333333333500000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            "{} 3225714285714286000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            "{} 2508888888888888800000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            "{} 0",
            "{} +Inf",
            "{} NaN",
            "{} -Inf",
            "{} 99884656743115800000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        ]
    "#]].assert_debug_eq(&got);
    // The aggregation follows the same algorithm.
    let db = load(
        M,
        r#"
        x{i="1"} -1.78264E+219
        x{i="2"} 2.258E+220
        x{i="3"} 1.78264E+219
        x{i="4"} 7.69805412
        "#,
    );
    check(
        &db,
        "avg(x)",
        0,
        expect![[r#"
        {} 5645000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    "#]],
    );
}

#[test]
fn histogram_fraction_over_classic_buckets() {
    let db = load(
        5 * M,
        r#"
        testhistogram2_bucket{le="0"} 0+0x10
        testhistogram2_bucket{le="2"} 0+1x10
        testhistogram2_bucket{le="4"} 0+2x10
        testhistogram2_bucket{le="6"} 0+3x10
        testhistogram2_bucket{le="+Inf"} 0+3x10
        testhistogram3_bucket{le="0", start="positive"} 0+0x10
        testhistogram3_bucket{le="0.1", start="positive"} 0+5x10
        testhistogram3_bucket{le=".2", start="positive"} 0+7x10
        testhistogram3_bucket{le="1e0", start="positive"} 0+11x10
        testhistogram3_bucket{le="+Inf", start="positive"} 0+11x10
        testhistogram3_bucket{le="-.25", start="negative"} 0+0x10
        testhistogram3_bucket{le="-.2", start="negative"} 0+1x10
        testhistogram3_bucket{le="-0.1", start="negative"} 0+2x10
        testhistogram3_bucket{le="0.3", start="negative"} 0+2x10
        testhistogram3_bucket{le="+Inf", start="negative"} 0+2x10
        "#,
    );
    let at = 50 * M;
    let f = |q: &str| render(instant_query(&db, q, at));
    expect![[r#"
        {} 0.6666666666666666
    "#]]
    .assert_eq(&f("histogram_fraction(0, 4, testhistogram2_bucket)"));
    expect![[r#"
        {} 1
    "#]]
    .assert_eq(&f("histogram_fraction(0, 6, testhistogram2_bucket)"));
    expect![[r#"
        {} 0.5833333333333334
    "#]]
    .assert_eq(&f("histogram_fraction(0, 3.5, testhistogram2_bucket)"));
    expect![[r#"
        {start="negative"} 0
        {start="positive"} 0.6363636363636364
    "#]]
    .assert_eq(&f("histogram_fraction(0, 0.2, testhistogram3_bucket)"));
    expect![[r#"
        {start="negative"} 0
        {start="positive"} 0.6363636363636364
    "#]]
    .assert_eq(&f(
        "histogram_fraction(0, 0.2, rate(testhistogram3_bucket[10m]))",
    ));
    expect![[r#"
        {} 0
    "#]]
    .assert_eq(&f("histogram_fraction(4, 4, testhistogram2_bucket)"));
    expect![[r#"
        {} NaN
    "#]]
    .assert_eq(&f("histogram_fraction(NaN, 4, testhistogram2_bucket)"));
}

#[test]
fn odd_inputs_return_values_or_errors_never_panics() {
    let db = load(
        M,
        r#"
        x{a="1", le=""} 1 2 3
        x{a="2", le="1"} NaN Inf -Inf
        "#,
    );
    let queries = [
        "topk(1e300, x)",
        "bottomk(-1e300, x)",
        "quantile(0.5, x)",
        "histogram_quantile(0.5, x)",
        "histogram_fraction(-Inf, Inf, x)",
        "round(x, 0)",
        "round(x, -1)",
        "clamp(x, NaN, NaN)",
        r#"label_replace(x, "b", "$99${1}$$", "a", "(.*)")"#,
        r#"label_join(x, "b", "-", "a", "a", "le")"#,
        "predict_linear(x[5m], Inf)",
        "day_of_week(x * 1e300)",
        "year(-x)",
        r#"count_values("v", x)"#,
        r#"count_values("a", x)"#,
        "x[5s:1ms]",
        "rate(x[1ms:1ms])",
        "rate(x[292000000y]) + delta(x[292000000y] @ -1e9) + deriv(x[292000000y])",
        "max_over_time(x[1h:7s] offset -1h)",
        "sum_over_time(x[5m:1m] @ 1e12)",
        "x @ -1e12",
        "sort_by_label(x, \"\", \"le\")",
        "double_exponential_smoothing(x[5m], NaN, NaN)",
        "quantile_over_time(NaN, x[5m])",
        "absent_over_time(x[1ms])",
        "x and on() x or x unless ignoring(a) x",
        "x / on(a) group_left(le) x",
        "x == bool on(a) group_right x",
        "timestamp(x @ 0)",
        "scalar(x) * vector(1)",
        "changes(x[5m:30s]) + resets(x[5m:30s])",
    ];
    for q in queries {
        for at in [0, 2 * M, 10 * M, i64::MAX, i64::MIN] {
            let _ = instant_query(&db, q, at);
        }
        let _ = range_query(&db, q, 0, 10 * M, 30_000);
        let _ = range_query(&db, q, i64::MAX - 10 * M, i64::MAX, 60_000);
        let _ = range_query(&db, q, i64::MIN, i64::MIN + 10 * M, 60_000);
    }
    let got: Vec<String> = queries[..15]
        .iter()
        .map(|q| {
            render(instant_query(&db, q, 2 * M))
                .trim()
                .replace('\n', "; ")
        })
        .collect();
    expect![[r#"
        [
            "error(execution): Scalar value 1e+300 overflows int64",
            "error(execution): Scalar value -1e+300 overflows int64",
            "{} -Inf",
            "{a=\"2\"} NaN",
            "{a=\"2\"} NaN",
            "{a=\"1\"} NaN; {a=\"2\", le=\"1\"} NaN",
            "{a=\"1\"} 3; {a=\"2\", le=\"1\"} -Inf",
            "{a=\"1\"} NaN; {a=\"2\", le=\"1\"} NaN",
            "{__name__=\"x\", a=\"1\", b=\"1$\"} 3; {__name__=\"x\", a=\"2\", b=\"2$\", le=\"1\"} -Inf",
            "{__name__=\"x\", a=\"1\", b=\"1-1-\"} 3; {__name__=\"x\", a=\"2\", b=\"2-2-1\", le=\"1\"} -Inf",
            "{a=\"1\"} +Inf; {a=\"2\", le=\"1\"} NaN",
            "{a=\"1\"} 0; {a=\"2\", le=\"1\"} 0",
            "{a=\"1\"} 1969; {a=\"2\", le=\"1\"} -292277022657",
            "{v=\"-Inf\"} 1; {v=\"3\"} 1",
            "{a=\"-Inf\"} 1; {a=\"3\"} 1",
        ]
    "#]].assert_debug_eq(&got);
}

#[test]
fn ts_of_over_time_functions() {
    let db = load(
        10_053,
        r#"
        metric 1 2 3 0 5 6 2 1 4
        ties 1 1 1
        sparse{a="1"} _ _ 1 2 3 _ _
        "#,
    );
    check(
        &db,
        "ts_of_min_over_time(metric[90s])",
        90_000,
        expect![[r#"
        {} 30.159
    "#]],
    );
    check(
        &db,
        "ts_of_max_over_time(metric[90s])",
        90_000,
        expect![[r#"
        {} 50.265
    "#]],
    );
    check(
        &db,
        "ts_of_max_over_time(ties[90s])",
        90_000,
        expect![[r#"
        {} 20.106
    "#]],
    );
    check(
        &db,
        "ts_of_first_over_time(sparse[90s])",
        95_000,
        expect![[r#"
        {a="1"} 20.106
    "#]],
    );
    check(
        &db,
        "ts_of_last_over_time(sparse[90s])",
        95_000,
        expect![[r#"
        {a="1"} 40.212
    "#]],
    );
    check(
        &db,
        "ts_of_first_over_time(sparse[90s])",
        15_000,
        expect!["empty vector"],
    );
}

#[test]
fn at_modifier_in_selectors_and_subqueries() {
    let db = load(
        10_000,
        r#"
        metric{job="1"} 0+1x1000
        metric{job="2"} 0+2x1000
        "#,
    );
    let cases = [
        ("metric @ 100 offset 50s", 10_000),
        ("metric offset -50 @ 0", 10_000),
        ("---metric @ 100", 10_000),
        (
            r#"sum_over_time(metric{job="1"}[100s] @ 100 offset 50s)"#,
            25_000,
        ),
        (r#"metric{job="1"} @ 50 + metric{job="1"} @ 100"#, 25_000),
        (
            r#"rate(metric{job="1"}[100s] @ 100) + label_replace(rate(metric{job="2"}[123s] @ 200), "job", "1", "", "")"#,
            25_000,
        ),
        (r#"sum_over_time(metric{job="1"}[100s:1s] @ 100)"#, 25_000),
        (
            r#"sum_over_time(metric{job="1"}[100s:1s] offset 20s @ 100)"#,
            25_000,
        ),
        (
            r#"sum_over_time(sum_over_time(metric{job="1"}[100s] @ 100)[100s:25s] @ 50)"#,
            100_000,
        ),
        (
            r#"sum_over_time(sum_over_time(sum_over_time(metric{job="1"}[100s] @ 100)[100s:25s] @ 50)[3s:1s] @ 3000)"#,
            0,
        ),
        (
            r#"sum_over_time(sum_over_time(sum_over_time(metric{job="1"}[10s])[100s:25s] @ 50)[3s:1s] @ 200)"#,
            0,
        ),
        (
            r#"sum_over_time(sum_over_time(sum_over_time(metric{job="1"}[10s])[100s:25s] @ 200)[3s:1s] @ 50)"#,
            0,
        ),
        (
            r#"sum_over_time(sum_over_time(sum_over_time(metric{job="1"}[20s])[20s:10s] offset 10s)[100s:25s] @ 1000)"#,
            0,
        ),
        ("minute(metric @ 1500)", 10_000),
        (r#"timestamp(timestamp(metric{job="1"} @ 10))"#, 15 * M),
        ("sum_over_time(minute(metric @ 1500)[100s:10s])", 0),
        ("sum_over_time(minute()[50m:1m] @ 6000 offset 5m)", 0),
        (
            "sum_over_time(vector(time())[100s:1s] @ 3000 offset 600s)",
            0,
        ),
        (
            r#"sum_over_time(timestamp(metric{job="1"} @ 10)[100s:10s] @ 3000)"#,
            0,
        ),
        (
            r#"sum_over_time(timestamp(timestamp(metric{job="1"} @ 999))[10s:1s] @ 10)"#,
            0,
        ),
    ];
    let got: Vec<String> = cases
        .iter()
        .map(|&(q, at)| render(instant_query(&db, q, at)).trim().replace('\n', "; "))
        .collect();
    // The values of Prometheus' at_modifier.test for the same queries.
    expect![[r#"
        [
            "{__name__=\"metric\", job=\"1\"} 5; {__name__=\"metric\", job=\"2\"} 10",
            "{__name__=\"metric\", job=\"1\"} 5; {__name__=\"metric\", job=\"2\"} 10",
            "{job=\"1\"} -10; {job=\"2\"} -20",
            "{job=\"1\"} 15",
            "{job=\"1\"} 15",
            "{job=\"1\"} 0.30000000000000004",
            "{job=\"1\"} 460",
            "{job=\"1\"} 288",
            "{job=\"1\"} 220",
            "{job=\"1\"} 660",
            "{job=\"1\"} 21",
            "{job=\"1\"} 192",
            "{job=\"1\"} 1504",
            "{job=\"1\"} 2; {job=\"2\"} 5",
            "{job=\"1\"} 900",
            "{job=\"1\"} 20; {job=\"2\"} 50",
            "{} 1365",
            "{} 235050",
            "{job=\"1\"} 100",
            "{job=\"1\"} 55",
        ]
    "#]]
    .assert_debug_eq(&got);
}

#[test]
fn query_context_functions() {
    let db = load(1000, "metric 1 2 3 4 5");
    let r =
        |q: &str, start: i64, end: i64, step: i64| render(range_query(&db, q, start, end, step));
    // The values of Prometheus' functions.test.
    expect![[r#"
        {} 5@0s 5@5s 5@10s
    "#]]
    .assert_eq(&r("step()", 0, 10_000, 5_000));
    expect![[r#"
        {} 40@10s 40@20s 40@30s 40@40s 40@50s
    "#]]
    .assert_eq(&r("range()", 10_000, 50_000, 10_000));
    expect![[r#"
        {} 100@100s 100@110s 100@120s 100@130s
    "#]]
    .assert_eq(&r("start()", 100_000, 130_000, 10_000));
    expect![[r#"
        {} 10@10s 10@15s 10@20s
    "#]]
    .assert_eq(&r("end() - start()", 10_000, 20_000, 5_000));
    expect![[r#"
        {} 3@0s 4@1s 5@2s
    "#]]
    .assert_eq(&r("metric + range()", 0, 2_000, 1_000));
    check(&db, "step()", 0, expect!["scalar 0"]);
    check(&db, "end()", 50_000, expect!["scalar 50"]);
    check(
        &db,
        "min_of(3, 5) + max_of(-2, -5) * 10",
        0,
        expect!["scalar -17"],
    );
    check(&db, "min_of(NaN, 3)", 0, expect!["scalar NaN"]);
    check(&db, "start_timestamp(metric)", 0, expect!["empty vector"]);
}

/// A range query is its instant queries at each step: subqueries' inner results, cached
/// across steps, must not change that.
#[test]
fn range_query_steps_equal_instant_queries_with_subqueries() {
    let db = load(
        15_000,
        "c{job=\"a\"} 0+7x600
         g{job=\"a\"} 1+0.5x200 50-0.25x400",
    );
    for q in [
        "increase(c[1h:5m])",
        "max_over_time(max_over_time(g[5m:1m])[15m:5m])",
        "sum_over_time(c[20m:1m] offset 3m)",
        "rate(c[10m:30s])",
    ] {
        // Start off the subquery grid, as a dashboard's range usually is.
        let (start, end, step) = (65 * M + 250, 150 * M + 250, M);
        let Ok(Value::Matrix(range)) = range_query(&db, q, start, end, step) else {
            panic!("{q}: not a matrix");
        };
        for s in &range {
            for &(t, v) in &s.points {
                let Ok(Value::Vector(inst)) = instant_query(&db, q, t) else {
                    panic!("{q} at {t}: not a vector");
                };
                let one = inst
                    .iter()
                    .find(|e| e.labels == s.labels)
                    .expect("same series");
                assert_eq!(
                    one.v.to_bits(),
                    v.to_bits(),
                    "{q} at {t}: range {v}, instant {}",
                    one.v
                );
            }
        }
    }
}

/// Series for comparing the two range evaluations: counters with resets, gauges with NaN
/// and infinities, scrape jitter, a stale marker, series starting and ending mid-range,
/// and a second metric whose series collide with the first's once names drop.
fn varied() -> Tsdb {
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let mut batch = SampleBatch::new();
    let mut noise = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        noise ^= noise << 13;
        noise ^= noise >> 7;
        noise ^= noise << 17;
        noise % 1000
    };
    for i in 0..4 {
        for (name, job) in [("c", "a"), ("g", "b"), ("other", "a")] {
            let labels = Labels::new(vec![
                ("__name__".to_string(), name.to_string()),
                ("i".to_string(), i.to_string()),
                ("job".to_string(), job.to_string()),
            ])
            .unwrap();
            let mut v = 0.0;
            for k in 0..480i64 {
                let t = k * 15_000 + (next() as i64 % 40);
                // Series 2 lives from 30m to 70m; series 3 goes stale at 50m, back at 60m.
                if i == 2 && !(120..280).contains(&k) || i == 3 && (201..240).contains(&k) {
                    continue;
                }
                v = match name {
                    _ if i == 3 && k == 200 => stale,
                    "c" | "other" if k % 97 == 96 => 0.0,
                    "c" | "other" => v + (next() % 10) as f64,
                    _ if k % 53 == 0 => f64::NAN,
                    _ if k == 77 => f64::INFINITY,
                    _ => (next() % 100) as f64 - 20.0,
                };
                batch.push(labels.clone(), t, v);
            }
        }
    }
    let mut db = Tsdb::new();
    db.apply_batch(&batch);
    db
}

/// A matrix with its values as bits (NaN compares equal to itself).
type MatrixBits = Vec<(ResultLabels, Vec<(i64, u64)>)>;

/// A range result as [`MatrixBits`] and the samples it loaded.
fn range_bits(
    db: &Tsdb,
    q: &str,
    (start, end, step): (i64, i64, i64),
    tables: bool,
) -> (Result<MatrixBits, QueryError>, u64) {
    range_bits_within(db, q, (start, end, step), tables, eval::Limits::default())
}

fn range_bits_within(
    db: &Tsdb,
    q: &str,
    (start, end, step): (i64, i64, i64),
    tables: bool,
    limits: eval::Limits,
) -> (Result<MatrixBits, QueryError>, u64) {
    let expr = parse::query(q).unwrap();
    let mut ev = eval::Evaluator::new(db, start, end).with_limits(limits);
    if !tables {
        ev = ev.without_tables();
    }
    let r = ev.range(&expr, start, end, step).map(|v| match v {
        Value::Matrix(series) => series
            .into_iter()
            .map(|s| {
                (
                    s.labels,
                    s.points.iter().map(|&(t, v)| (t, v.to_bits())).collect(),
                )
            })
            .collect(),
        other => panic!("{q}: {other:?}"),
    });
    (r, ev.samples_loaded())
}

/// Range queries read selectors and range functions from per-series tables: the result
/// and the samples loaded must be those of the step-by-step evaluation, for every shape.
#[test]
fn range_query_tables_equal_step_by_step_evaluation() {
    let db = varied();
    let queries = [
        "c",
        "g",
        "c offset 7m",
        "g offset -2m",
        "c @ 1800",
        "c @ start()",
        "g @ end() offset 1m",
        "rate(c[5m])",
        "increase(c[10m] offset 3m)",
        "rate(c[5m] @ 3000)",
        "irate(c[1m])",
        "delta(g[5m])",
        "idelta(g[2m])",
        "deriv(g[10m])",
        "predict_linear(g[10m], 300)",
        "predict_linear(c[10m] offset 1m, -60)",
        "changes(g[5m])",
        "resets(c[15m])",
        "sum_over_time(g[5m])",
        "avg_over_time(g[10m])",
        "min_over_time(g[3m])",
        "max_over_time(g[3m] @ 2400)",
        "count_over_time(c[1m])",
        "last_over_time(c[5m])",
        "first_over_time(g[5m])",
        "ts_of_max_over_time(g[5m])",
        "ts_of_last_over_time(c[5m])",
        "present_over_time(c[30s])",
        "quantile_over_time(0.9, g[10m])",
        "quantile_over_time((0.5), (g[10m]))",
        "stddev_over_time(g[5m])",
        "stdvar_over_time(g[5m])",
        "mad_over_time(g[5m])",
        "absent_over_time(c{i=\"2\"}[1m])",
        "absent(c{i=\"2\"})",
        "sum by (job) (rate(c[5m]))",
        "histogram_quantile(0.9, sum by (i) (rate({__name__=~\"c|other\"}[5m])))",
        "topk(2, g)",
        "count by (job) (c)",
        "avg without (i) (g)",
        "min by (job) (rate(c[5m]))",
        "stddev(g)",
        "stdvar by (i) (avg_over_time(g[5m]))",
        "group by (job) (c)",
        "max without () ((g))",
        "sum by (i) (g offset 1m)",
        "sum(rate({__name__=~\"c|other\"}[5m]))",
        "sum by (__name__) ({__name__=~\"c|other\"})",
        "sum(rate(c[5m])) / sum(rate(c[5m] offset 5m))",
        "timestamp(c)",
        "rate(c[5m:1m])",
        "max_over_time(rate(c[2m])[10m:1m])",
        "g > 50",
        "-g",
        "rate({__name__=~\"c|other\"}[5m])",
        "last_over_time({__name__=~\"c|other\"}[5m])",
        "quantile_over_time(scalar(g{i=\"0\"}) / 100, g[5m])",
        "double_exponential_smoothing(g[10m], 0.5, 0.5)",
        "label_replace(rate(c[5m]), \"x\", \"$1\", \"i\", \"(.*)\")",
        "c and on (i) g > 10",
    ];
    let ranges = [
        (0, 120 * M, M),
        (10 * M + 250, 90 * M + 250, 37_000),
        (45 * M, 45 * M, 15_000),
        (-30 * M, 20 * M, 5 * M),
    ];
    let mut failed = Vec::new();
    for q in queries {
        for range in ranges {
            let (tabled, tabled_loaded) = range_bits(&db, q, range, true);
            match &tabled {
                Ok(series) if series.is_empty() => failed.push(format!("{q} {range:?}: empty")),
                Ok(_) => {}
                Err(e) => failed.push(format!("{q} {range:?}: {e}")),
            }
            let (stepped, stepped_loaded) = range_bits(&db, q, range, false);
            // A failing step ends the per-step evaluation early; tables were built whole.
            if stepped.is_ok() {
                assert_eq!(tabled_loaded, stepped_loaded, "{q} over {range:?}: samples");
            }
            assert_eq!(tabled, stepped, "{q} over {range:?}");
        }
    }
    // The cases that are not a plain non-empty result, to see what the loop covers.
    expect![[r#"
        c @ start() (0, 7200000, 60000): empty
        c @ start() (-1800000, 1200000, 300000): empty
        absent_over_time(c{i="2"}[1m]) (2700000, 2700000, 15000): empty
        absent(c{i="2"}) (2700000, 2700000, 15000): empty
        histogram_quantile(0.9, sum by (i) (rate({__name__=~"c|other"}[5m]))) (0, 7200000, 60000): vector cannot contain metrics with the same labelset
        histogram_quantile(0.9, sum by (i) (rate({__name__=~"c|other"}[5m]))) (600250, 5400250, 37000): vector cannot contain metrics with the same labelset
        histogram_quantile(0.9, sum by (i) (rate({__name__=~"c|other"}[5m]))) (2700000, 2700000, 15000): vector cannot contain metrics with the same labelset
        histogram_quantile(0.9, sum by (i) (rate({__name__=~"c|other"}[5m]))) (-1800000, 1200000, 300000): vector cannot contain metrics with the same labelset
        sum(rate({__name__=~"c|other"}[5m])) (0, 7200000, 60000): vector cannot contain metrics with the same labelset
        sum(rate({__name__=~"c|other"}[5m])) (600250, 5400250, 37000): vector cannot contain metrics with the same labelset
        sum(rate({__name__=~"c|other"}[5m])) (2700000, 2700000, 15000): vector cannot contain metrics with the same labelset
        sum(rate({__name__=~"c|other"}[5m])) (-1800000, 1200000, 300000): vector cannot contain metrics with the same labelset
        g > 50 (2700000, 2700000, 15000): empty
        rate({__name__=~"c|other"}[5m]) (0, 7200000, 60000): vector cannot contain metrics with the same labelset
        rate({__name__=~"c|other"}[5m]) (600250, 5400250, 37000): vector cannot contain metrics with the same labelset
        rate({__name__=~"c|other"}[5m]) (2700000, 2700000, 15000): vector cannot contain metrics with the same labelset
        rate({__name__=~"c|other"}[5m]) (-1800000, 1200000, 300000): vector cannot contain metrics with the same labelset"#]].assert_eq(&failed.join("\n"));
}

/// The tables do not change what a range query returns at a step: its instant query.
#[test]
fn range_query_steps_equal_instant_queries() {
    let db = varied();
    for q in [
        "rate(c[5m])",
        "g",
        "avg_over_time(g[10m] offset 1m)",
        "sum by (job) (increase(c[3m]))",
        "last_over_time(c[1m] @ 1200)",
    ] {
        let (start, end, step) = (20 * M + 250, 80 * M + 250, 7 * M);
        let Ok(Value::Matrix(range)) = range_query(&db, q, start, end, step) else {
            panic!("{q}: not a matrix");
        };
        let mut t = start;
        while t <= end {
            let Ok(Value::Vector(inst)) = instant_query(&db, q, t) else {
                panic!("{q} at {t}: not a vector");
            };
            let at_t: Vec<(&ResultLabels, u64)> = range
                .iter()
                .filter_map(|s| {
                    let p = s.points.iter().find(|p| p.0 == t)?;
                    Some((&s.labels, p.1.to_bits()))
                })
                .collect();
            let inst: Vec<(&ResultLabels, u64)> =
                inst.iter().map(|e| (&e.labels, e.v.to_bits())).collect();
            assert_eq!(at_t, inst, "{q} at {t}");
            t += step;
        }
    }
}

/// Tables beyond the cells limit leave their nodes to the per-step evaluation: the first
/// table of `rate(c) / g` (4 series × 121 steps) fits in 500 cells, the second not.
#[test]
fn step_tables_over_the_cells_limit_fall_back_to_steps() {
    let db = varied();
    let limits = eval::Limits {
        step_table_cells_max: 500,
        ..eval::Limits::default()
    };
    for q in ["rate(c[5m]) / on (i) g", "sum(g)", "avg_over_time(c[5m])"] {
        let range = (0, 120 * M, M);
        let (small, small_loaded) = range_bits_within(&db, q, range, true, limits);
        let (stepped, stepped_loaded) = range_bits(&db, q, range, false);
        assert!(stepped.as_ref().is_ok_and(|s| !s.is_empty()), "{q}");
        assert_eq!((small, small_loaded), (stepped, stepped_loaded), "{q}");
    }
}

#[test]
fn a_past_deadline_is_a_timeout_and_no_deadline_is_none() {
    let db = requests();
    let past = QueryOptions {
        deadline: Some(std::time::Instant::now()),
    };
    for r in [
        instant_query_with(&db, "sum(rate(http_requests_total[5m]))", 600_000, past),
        range_query_with(&db, "http_requests_total", 0, 600_000, 60_000, past),
    ] {
        let e = r.unwrap_err();
        assert_eq!(
            (e.kind, e.kind.as_str()),
            (QueryErrorKind::Timeout, "timeout")
        );
        assert_eq!(e.message, "query timed out in expression evaluation");
    }
    // Loading nothing never looks at the clock; no deadline never times out.
    assert!(instant_query_with(&db, "1 + 1", 0, past).is_ok());
    assert!(instant_query_with(
        &db,
        "sum(http_requests_total)",
        600_000,
        QueryOptions::default()
    )
    .is_ok());
}

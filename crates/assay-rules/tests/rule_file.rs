//! Rule files: each case is YAML in, the parsed groups or every error message out.

use assay_rules::{parse_duration_ms, parse_rule_file, Rule};
use expect_test::{expect, Expect};

fn check(yaml: &str, expect: Expect) {
    let actual = match parse_rule_file("rules.yml", yaml) {
        Ok(f) => {
            let mut s = String::new();
            for g in &f.groups {
                s += &format!(
                    "group {} interval={}ms offset={}ms limit={}\n",
                    g.name, g.interval_ms, g.query_offset_ms, g.limit
                );
                for r in &g.rules {
                    match r {
                        Rule::Record {
                            record,
                            expr,
                            labels,
                        } => s += &format!("  record {record} = {expr} {labels:?}\n"),
                        Rule::Alert {
                            alert,
                            for_ms,
                            annotations,
                            ..
                        } => s += &format!("  alert {alert} for={for_ms}ms {annotations:?}\n"),
                    }
                }
            }
            s
        }
        Err(e) => format!("{e}\n"),
    };
    expect.assert_eq(&actual);
}

#[test]
fn valid_file() {
    check(
        r#"
groups:
  - name: api
    interval: 30s
    rules:
      - record: job:http_requests:rate5m
        expr: sum by (job) (rate(http_requests_total[5m]))
      - record: job:http_requests:rate5m
        expr: sum by (job) (rate(http_requests_total{canary="1"}[5m]))
        labels: {canary: "1", team: web}
      - alert: HighErrors
        expr: job:http_requests:rate5m > 10
        for: 10m
        annotations: {summary: "{{ $labels.job }} is failing"}
  - name: slow
    interval: 1h30m
    query_offset: 1m
    limit: 100
    rules:
      - record: x
        expr: "1"
"#,
        expect![[r#"
            group api interval=30000ms offset=0ms limit=0
              record job:http_requests:rate5m = sum by (job) (rate(http_requests_total[5m])) []
              record job:http_requests:rate5m = sum by (job) (rate(http_requests_total{canary="1"}[5m])) [("canary", "1"), ("team", "web")]
              alert HighErrors for=600000ms [("summary", "{{ $labels.job }} is failing")]
            group slow interval=5400000ms offset=60000ms limit=100
              record x = 1 []
        "#]],
    );
}

#[test]
fn default_interval() {
    check(
        "groups: [{name: a, rules: [{record: a, expr: up}]}]",
        expect![[r#"
            group a interval=60000ms offset=0ms limit=0
              record a = up []
        "#]],
    );
}

#[test]
fn yaml_errors_have_lines() {
    check(
        "groups:\n  - name: a\n    rules:\n      - record: a\n        expr: [up\n",
        expect![[r#"
            rules.yml:5: not a valid rule file: groups[0].rules[0].expr: invalid type: sequence, expected a string
        "#]],
    );
    check(
        "groups:\n  - name: a\n    evaluation_interval: 1m\n",
        expect![[r#"
            rules.yml:3: not a valid rule file: groups[0]: unknown field `evaluation_interval`, expected one of `name`, `interval`, `query_offset`, `limit`, `rules`
        "#]],
    );
    check(
        "group: []\n",
        expect![[r#"
            rules.yml:1: not a valid rule file: unknown field `group`, expected `groups`
        "#]],
    );
}

#[test]
fn rule_errors_name_group_rule_and_line() {
    check(
        r#"
groups:
  - name: g
    rules:
      - record: "bad name"
        expr: up
      - record: ok
        expr: sum(
      - record: ok2
        expr: rate(up[5m])[10m:1m]
      - record: ok3
        expr: up
        labels: {"0bad": x, __name__: y}
      - record: ok4
        expr: up
        for: 5m
      - expr: up
      - record: a
        alert: b
        expr: up
      - record: ok5
      - record: ok6
        expr: up[5m]
"#,
        expect![[r#"
            rules.yml:5: group "g", rule 0: invalid recording rule name "bad name": must match [a-zA-Z_:][a-zA-Z0-9_:]*
            rules.yml:7: group "g", rule 1: could not parse expr: unclosed left parenthesis
            rules.yml:9: group "g", rule 2: expr is a matrix: a recording rule needs an instant vector or a scalar
            rules.yml:11: group "g", rule 3: invalid label name "0bad": must match [a-zA-Z_][a-zA-Z0-9_]*
            rules.yml:11: group "g", rule 3: label `__name__` cannot be set: the metric name is `record`
            rules.yml:14: group "g", rule 4: invalid field `for` in a recording rule: remove it
            rules.yml:17: group "g", rule 5: one of `record` or `alert` must be set
            rules.yml:18: group "g", rule 6: only one of `record` and `alert` may be set
            rules.yml:21: group "g", rule 7: field `expr` must be set
            rules.yml:22: group "g", rule 8: expr is a matrix: a recording rule needs an instant vector or a scalar
        "#]],
    );
}

#[test]
fn group_errors() {
    check(
        r#"
groups:
  - name: a
    interval: 1x
    rules: []
  - name: a
    interval: 500ms
  - interval: 1m
  - name: d
    query_offset: 1
  - name: e
    rules:
      - record: r
        expr: up
        labels: {x: "1"}
      - record: r
        expr: up > 1
        labels: {x: "1"}
"#,
        expect![[r##"
            rules.yml: group "a": interval: "1x" is not a duration: use e.g. 30s, 1m, 1h30m
            rules.yml: group "a": interval "500ms" is out of range: use 1s to 1d
            rules.yml: group "#2": group name must not be empty
            rules.yml: group "d": query_offset: "1" is not a duration: use e.g. 30s, 1m, 1h30m
            rules.yml:16: group "e", rule 1: duplicate rule: an earlier rule of the group has the name "r" and the same labels; rename one or give them distinct labels
        "##]],
    );
    // A repeated name is reported once both groups are otherwise valid.
    check(
        "groups: [{name: a}, {name: a}]",
        expect![[r#"
            rules.yml: group "a": group name is repeated in the file: group names must be unique
        "#]],
    );
}

#[test]
fn bounds() {
    let rules: String = (0..=assay_rules::rule_file::RULES_PER_GROUP_MAX)
        .map(|i| format!("      - record: r{i}\n        expr: up\n"))
        .collect();
    check(
        &format!("groups:\n  - name: big\n    rules:\n{rules}"),
        expect![[r#"
            rules.yml: group "big": 1001 rules, more than the 1000 allowed: split the group
        "#]],
    );
    let groups: String = (0..=assay_rules::rule_file::GROUPS_PER_FILE_MAX)
        .map(|i| format!("  - name: g{i}\n"))
        .collect();
    check(
        &format!("groups:\n{groups}"),
        expect![[r#"
            rules.yml: 257 groups, more than the 256 allowed: split the file
        "#]],
    );
    let long = "up+".repeat(assay_rules::rule_file::RULE_EXPR_BYTES_MAX / 3) + "up";
    check(
        &format!("groups: [{{name: a, rules: [{{record: a, expr: '{long}'}}]}}]"),
        expect![[r#"
            rules.yml: group "a", rule 0: expr is 16385 bytes, more than the 16384 allowed
        "#]],
    );
    // Exactly at the bound is fine.
    let at = "1+".repeat(assay_rules::rule_file::RULE_EXPR_BYTES_MAX / 2 - 1) + "10";
    assert_eq!(at.len(), assay_rules::rule_file::RULE_EXPR_BYTES_MAX);
    parse_rule_file(
        "f",
        &format!("groups: [{{name: a, rules: [{{record: a, expr: '{at}'}}]}}]"),
    )
    .unwrap();
}

#[test]
fn durations() {
    let cases = [
        "0",
        "30s",
        "1m",
        "1h30m",
        "1d",
        "2w",
        "1y",
        "500ms",
        "1m500ms",
        "",
        "1",
        "m",
        "1s1m",
        "1m1m",
        "-1s",
        "1.5s",
        "99999999999999y",
    ];
    let got: String = cases
        .iter()
        .map(|c| match parse_duration_ms(c) {
            Ok(ms) => format!("{c:?} = {ms}\n"),
            Err(_) => format!("{c:?} invalid\n"),
        })
        .collect();
    expect![[r#"
        "0" = 0
        "30s" = 30000
        "1m" = 60000
        "1h30m" = 5400000
        "1d" = 86400000
        "2w" = 1209600000
        "1y" = 31536000000
        "500ms" = 500
        "1m500ms" = 60500
        "" invalid
        "1" invalid
        "m" invalid
        "1s1m" invalid
        "1m1m" invalid
        "-1s" invalid
        "1.5s" invalid
        "99999999999999y" invalid
    "#]]
    .assert_eq(&got);
}

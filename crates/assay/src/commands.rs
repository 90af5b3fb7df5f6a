//! One function per subcommand.

use crate::client::{encode, Client};
use crate::{
    Cli, Command, NodeArgs, ProofArgs, PushArgs, QueryArgs, QueryRangeArgs, ServeArgs, ServerArgs,
    VerifyArgs,
};
use anyhow::{anyhow, bail, Context as _};
use assay_ledger::merkle::{leaf_hash, verify_inclusion, Hash};
use assay_ledger::note::{open_checkpoint, Verifier};
use assay_node::config::NodeConfig;
use base64::Engine as _;
use serde_json::{json, Value};

/// An error that carries the process exit code.
#[derive(Debug)]
pub struct Exit(pub i32);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Exit {}

fn fail(code: i32, msg: String) -> anyhow::Error {
    anyhow!(Exit(code)).context(msg)
}

/// Runs the command; the exit code on success.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let json = cli.json;
    match cli.command {
        Command::Serve(a) => serve(a, json),
        Command::Push(a) => push(a, json),
        Command::Query(a) => query(a, json),
        Command::QueryRange(a) => query_range(a, json),
        Command::Verify(a) => verify(a, json),
        Command::Proof(a) => proof(a, json),
        Command::Checkpoint(a) => checkpoint(a, json),
        Command::Rebuild(a) => rebuild(a, json),
        Command::CheckRules(a) => check_rules(a, json),
    }
}

fn load_config(node: &NodeArgs) -> anyhow::Result<NodeConfig> {
    let mut config = match &node.config {
        Some(path) => NodeConfig::load(path).map_err(|e| fail(2, e.to_string()))?,
        None => NodeConfig::default(),
    };
    if let Some(d) = &node.data_dir {
        config.data_dir = d.clone();
    }
    Ok(config)
}

fn print(json: bool, value: &Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

fn serve(args: ServeArgs, json: bool) -> anyhow::Result<i32> {
    let mut config = load_config(&args.node)?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let node = assay_node::Node::open(config.clone()).map_err(|e| fail(3, e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| fail(3, format!("cannot listen on {}: {e}", config.listen)))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let shutdown = shutdown_signal()?;
        let url = format!("http://{addr}");
        let (size, height) = {
            let l = node.shared().ledger.read().expect("ledger lock");
            (l.size(), l.height())
        };
        let info = json!({"url": url, "data_dir": config.data_dir, "entries": size, "height": height});
        print(json, &info, || {
            format!("Assay is serving on {url}  (data dir {}, {size} entries in {height} blocks; Ctrl-C stops)", config.data_dir.display())
        });
        node.serve(listener, shutdown).await.map_err(|e| fail(3, e.to_string()))?;
        Ok(0)
    })
}

/// Installs the SIGINT and SIGTERM handlers now (a signal that arrives after this returns
/// is a clean stop) and resolves when one arrives. Installing them lazily, on the first
/// poll, left a window after the URL was printed in which SIGTERM killed the process.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down: finishing in-flight requests");
    })
}

fn push(args: PushArgs, json: bool) -> anyhow::Result<i32> {
    let client = Client::new(&args.server.server);
    let body = match &args.file {
        Some(path) if path.as_os_str() == "-" => {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
                .context("reading standard input")?;
            b
        }
        Some(path) => {
            std::fs::read(path).map_err(|e| fail(3, format!("reading {}: {e}", path.display())))?
        }
        None => {
            let name = args
                .name
                .clone()
                .expect("clap requires a name without --file");
            let raw = args
                .value
                .clone()
                .expect("clap requires a value without --file");
            let value: f64 = raw
                .parse()
                .map_err(|_| fail(2, format!("value `{raw}` is not a number")))?;
            let mut labels = serde_json::Map::new();
            for l in &args.labels {
                let (k, v) = l
                    .split_once('=')
                    .ok_or_else(|| fail(2, format!("label `{l}` is not KEY=VALUE")))?;
                labels.insert(k.to_string(), json!(v));
            }
            let value = if value.is_finite() {
                json!(value)
            } else {
                json!(raw)
            };
            let mut sample = json!({"name": name, "labels": labels, "value": value});
            if let Some(t) = args.timestamp_ms {
                sample["timestamp_ms"] = json!(t);
            }
            serde_json::to_vec(&json!({"samples": [sample]})).expect("JSON encodes")
        }
    };
    let r = client.post_json("/v1/push", "application/json", &body)?;
    print(json, &r, || {
        format!(
            "stored {} sample(s) as entry {} in block {} (leaf hash {})",
            r["samples"],
            r["index"],
            r["height"],
            r["leaf_hash"].as_str().unwrap_or("?")
        )
    });
    Ok(0)
}

fn query(args: QueryArgs, json: bool) -> anyhow::Result<i32> {
    let client = Client::new(&args.server.server);
    let mut path = format!("/api/v1/query?query={}", encode(&args.query));
    if let Some(at) = &args.at {
        path.push_str(&format!("&time={}", encode(at)));
    }
    let r = client.get_json(&path)?;
    print(json, &r, || render_result(&r["data"]));
    Ok(0)
}

fn query_range(args: QueryRangeArgs, json: bool) -> anyhow::Result<i32> {
    let client = Client::new(&args.server.server);
    let path = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step={}",
        encode(&args.query),
        encode(&args.start),
        encode(&args.end),
        encode(&args.step)
    );
    let r = client.get_json(&path)?;
    print(json, &r, || render_result(&r["data"]));
    Ok(0)
}

fn render_labels(metric: &Value) -> String {
    let Some(m) = metric.as_object() else {
        return "{}".into();
    };
    let name = m.get("__name__").and_then(Value::as_str).unwrap_or("");
    let rest: Vec<String> = m
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

fn render_point(p: &Value) -> String {
    format!("{} @{}", p[1].as_str().unwrap_or("?"), p[0])
}

/// Prometheus `data` as lines for people.
fn render_result(data: &Value) -> String {
    let empty = vec![];
    match data["resultType"].as_str() {
        Some("vector") => {
            let rows = data["result"].as_array().unwrap_or(&empty);
            if rows.is_empty() {
                return "(no series)".into();
            }
            rows.iter()
                .map(|s| {
                    format!(
                        "{} => {}",
                        render_labels(&s["metric"]),
                        render_point(&s["value"])
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        Some("matrix") => {
            let rows = data["result"].as_array().unwrap_or(&empty);
            if rows.is_empty() {
                return "(no series)".into();
            }
            rows.iter()
                .map(|s| {
                    let points: Vec<String> = s["values"]
                        .as_array()
                        .unwrap_or(&empty)
                        .iter()
                        .map(render_point)
                        .collect();
                    format!(
                        "{} =>\n  {}",
                        render_labels(&s["metric"]),
                        points.join("\n  ")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        Some("scalar") | Some("string") => render_point(&data["result"]),
        _ => data.to_string(),
    }
}

fn parse_key(text: &str) -> anyhow::Result<Verifier> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| fail(2, format!("reading key file {path}: {e}")))?,
        None => text.to_string(),
    };
    Verifier::from_key_text(text.trim()).map_err(|e| fail(2, format!("--key: {e}")))
}

fn verify(args: VerifyArgs, json: bool) -> anyhow::Result<i32> {
    let key = args.key.as_deref().map(parse_key).transpose()?;
    match assay_node::audit(&args.data_dir, key) {
        Ok(r) => {
            let torn = r.torn.as_ref().map(|t| json!({"segment": t.segment, "offset": t.offset, "bytes": t.bytes, "entries": t.entries, "reason": t.reason}));
            let v = json!({
                "ok": r.torn.is_none(), "segments": r.segments, "bytes": r.bytes, "entries": r.entries, "blocks": r.blocks,
                "root": hex::encode(r.root), "key": r.key, "persisted_checkpoint_size": r.persisted_size, "torn_tail": torn,
                "entries_with_references": r.entries_with_references,
            });
            print(json, &v, || {
                let mut s = format!(
                    "ledger intact: {} entries in {} blocks, {} segment(s), {} bytes; every checksum, leaf hash, block link, root and signature checked, and the series references of {} entries resolved\nroot {}\nkey  {}",
                    r.entries, r.blocks, r.segments, r.bytes, r.entries_with_references, hex::encode(r.root), r.key
                );
                if let Some(t) = &r.torn {
                    s.push_str(&format!(
                        "\nunfinished last block: {} bytes ({} entries) at {} offset {} ({}) — written when the node crashed, never acknowledged; the next start truncates it",
                        t.bytes, t.entries, t.segment, t.offset, t.reason
                    ));
                }
                s
            });
            Ok(if r.torn.is_some() { 1 } else { 0 })
        }
        Err(assay_node::AuditError::Scan(assay_ledger::scan::ScanError::Corrupt(c))) => {
            let v = json!({"ok": false, "segment": c.segment, "offset": c.offset, "entry": c.entry, "block": c.block, "error": c.what});
            print(json, &v, || format!("ledger DAMAGED: {c}"));
            Ok(1)
        }
        Err(assay_node::AuditError::Reference { index, message }) => {
            let v = json!({"ok": false, "entry": index, "error": message});
            print(json, &v, || {
                format!("ledger DAMAGED: entry {index}: series reference: {message}")
            });
            Ok(1)
        }
        Err(e) => Err(fail(3, e.to_string())),
    }
}

fn b64_hash(s: &Value) -> anyhow::Result<Hash> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s.as_str().unwrap_or(""))
        .context("proof hash is not base64")?;
    raw.try_into()
        .map_err(|_| anyhow!("proof hash is not 32 bytes"))
}

/// An entry fetched from a node with its inclusion proof checked.
struct Proven {
    entry: Vec<u8>,
    leaf: Hash,
    proof_hashes: usize,
    verdict: Result<(), String>,
}

fn proof(args: ProofArgs, json: bool) -> anyhow::Result<i32> {
    let client = Client::new(&args.server.server);
    let (verifier, key_source) = match &args.key {
        Some(k) => (parse_key(k)?, "given"),
        None => {
            let text =
                String::from_utf8(client.get("/v1/ledger/key")?).context("key is not UTF-8")?;
            (
                Verifier::from_key_text(text.trim())
                    .map_err(|e| fail(1, format!("server key: {e}")))?,
                "fetched from the server",
            )
        }
    };
    let note = String::from_utf8(client.get("/v1/ledger/checkpoint")?)
        .context("checkpoint is not UTF-8")?;
    let cp = open_checkpoint(&note, &verifier)
        .map_err(|e| fail(1, format!("checkpoint signature does not verify: {e}")))?;
    if args.index >= cp.size {
        bail!(fail(
            4,
            format!(
                "entry {} is not in the latest checkpoint (tree size {})",
                args.index, cp.size
            )
        ));
    }
    let prove = |index: u64| -> anyhow::Result<Proven> {
        let entry = client.get(&format!("/v1/ledger/entries/{index}"))?;
        let leaf = leaf_hash(&entry);
        let p = client.get_json(&format!(
            "/v1/ledger/proof/inclusion?index={index}&tree_size={}",
            cp.size
        ))?;
        let hashes: Vec<Hash> = p["hashes"]
            .as_array()
            .unwrap_or(&vec![])
            .iter()
            .map(b64_hash)
            .collect::<Result<_, _>>()?;
        let verdict = verify_inclusion(&leaf, index, cp.size, &hashes, &cp.root)
            .map_err(|e| format!("entry {index}: {e}"));
        Ok(Proven {
            entry,
            leaf,
            proof_hashes: hashes.len(),
            verdict,
        })
    };
    let Proven {
        entry,
        leaf,
        proof_hashes,
        mut verdict,
    } = prove(args.index)?;
    // Series given by reference (entry kind 0x04) mean the series listed inline by earlier
    // entries: the resolver reads those through `prove`, so each is fetched and proven
    // against the same checkpoint.
    let referenced = std::cell::RefCell::new(std::collections::BTreeMap::new());
    let fetch_error = std::cell::RefCell::new(None);
    let read = |index: u64| match prove(index) {
        Ok(p) => {
            referenced.borrow_mut().insert(index, p.verdict);
            Ok(p.entry)
        }
        Err(e) => {
            let message = e.to_string();
            fetch_error.borrow_mut().get_or_insert(e);
            Err(message)
        }
    };
    let decoded = assay_ledger::SeriesResolver::default().decode(&read, args.index, &entry);
    if let Some(e) = fetch_error.into_inner() {
        return Err(e);
    }
    let referenced = referenced.into_inner();
    for v in referenced.values() {
        verdict = verdict.and(v.clone());
    }
    let samples = match &decoded {
        Ok(e) => Some(e.batch().len()),
        Err(e) => {
            verdict = verdict.and(Err(format!("entry {}: {e}", args.index)));
            None
        }
    };
    let references: Vec<u64> = referenced.keys().copied().collect();
    let v = json!({
        "ok": verdict.is_ok(), "index": args.index, "leaf_hash": hex::encode(leaf), "samples": samples,
        "origin": cp.origin, "tree_size": cp.size, "root": base64::engine::general_purpose::STANDARD.encode(cp.root),
        "proof_hashes": proof_hashes, "key": verifier.to_key_text(), "key_source": key_source,
        "references": references,
        "error": verdict.as_ref().err(),
    });
    print(json, &v, || {
        match &verdict {
        Ok(()) => format!(
            "entry {} ({} samples, leaf {}) is included in checkpoint {} size {}: proof of {} hashes verified with key {} ({key_source}){}",
            args.index,
            samples.map_or("?".into(), |n| n.to_string()),
            hex::encode(leaf),
            cp.origin,
            cp.size,
            proof_hashes,
            verifier.to_key_text(),
            if references.is_empty() {
                String::new()
            } else {
                format!(
                    "; its series given by reference are those of entries {references:?}, proven in the same checkpoint"
                )
            }
        ),
        Err(e) => format!("proof FAILED for entry {}: {e}", args.index),
    }
    });
    Ok(if verdict.is_ok() { 0 } else { 1 })
}

fn checkpoint(args: ServerArgs, json: bool) -> anyhow::Result<i32> {
    let client = Client::new(&args.server);
    let note = String::from_utf8(client.get("/v1/ledger/checkpoint")?)
        .context("checkpoint is not UTF-8")?;
    let key = String::from_utf8(client.get("/v1/ledger/key")?).context("key is not UTF-8")?;
    if json {
        let lines: Vec<&str> = note.lines().collect();
        let v = json!({"note": note, "origin": lines.first(), "tree_size": lines.get(1).and_then(|s| s.parse::<u64>().ok()), "root": lines.get(2), "key": key.trim()});
        println!("{v}");
    } else {
        print!("{note}");
    }
    Ok(0)
}

/// Exit 0 when every file is valid, 1 when one is not (as promtool), 3 when one is unreadable.
fn check_rules(args: crate::CheckRulesArgs, json: bool) -> anyhow::Result<i32> {
    let mut results = Vec::new();
    let mut code = 0;
    for path in &args.files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(3, format!("reading rule file {name}: {e}")))?;
        match assay_rules::parse_rule_file(&name, &text) {
            Ok(file) => {
                let rules: usize = file.groups.iter().map(|g| g.rules.len()).sum();
                results.push(
                    json!({"file": name, "ok": true, "groups": file.groups.len(), "rules": rules}),
                );
            }
            Err(errors) => {
                code = 1;
                let problems: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
                results.push(json!({"file": name, "ok": false, "errors": problems}));
            }
        }
    }
    let v = json!({"files": results});
    print(json, &v, || {
        results
            .iter()
            .map(|r| match r["ok"].as_bool() {
                Some(true) => format!(
                    "{}: ok, {} groups, {} rules",
                    r["file"].as_str().unwrap_or(""),
                    r["groups"],
                    r["rules"]
                ),
                _ => {
                    let errs: Vec<&str> = r["errors"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e.as_str())
                        .collect();
                    format!(
                        "{}: invalid\n  {}",
                        r["file"].as_str().unwrap_or(""),
                        errs.join("\n  ")
                    )
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(code)
}

fn rebuild(args: NodeArgs, json: bool) -> anyhow::Result<i32> {
    let config = load_config(&args)?;
    let r = assay_node::rebuild(&config).map_err(|e| fail(3, e.to_string()))?;
    let v = json!({"blocks": r.blocks, "entries": r.entries, "series": r.series, "samples": r.samples, "digest": hex::encode(r.digest)});
    print(json, &v, || {
        format!(
            "views rebuilt from the ledger: {} blocks, {} entries, {} series, {} samples; state digest {}",
            r.blocks,
            r.entries,
            r.series,
            r.samples,
            hex::encode(r.digest)
        )
    });
    Ok(0)
}

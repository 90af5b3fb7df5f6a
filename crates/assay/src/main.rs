//! The `assay` command: parses the command line and wires the crates together.
//!
//! Exit codes: 0 success; 1 a check failed (verify found damage, a proof did not
//! verify); 2 bad usage; 3 the server or the data directory could not be used;
//! 4 the server rejected the request (4xx).

mod client;
mod commands;

// glibc malloc/free was a fifth of ingest CPU in the profile (BENCHMARKS.md); mimalloc
// handles the many small label strings of a batch with much less overhead. Built without
// transparent huge pages (feature `no_thp`): with them, the first touch of each 2 MiB of
// fresh heap zeroed the whole huge page, ~6 % of ingest CPU in the kernel's clear_page.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Assay: tamper-evident KPI monitoring. Every write lands in a signed Merkle ledger.
#[derive(Parser, Debug)]
#[command(name = "assay", version, about, long_about = None)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a node: ledger, API and views on a local data directory.
    Serve(ServeArgs),
    /// Push one sample, or a JSON batch with --file.
    Push(PushArgs),
    /// Run an instant PromQL query.
    Query(QueryArgs),
    /// Run a PromQL range query.
    QueryRange(QueryRangeArgs),
    /// Audit a stopped node's data directory offline: checksums, hashes, roots, signatures.
    Verify(VerifyArgs),
    /// Fetch an entry's inclusion proof and check it against the signed checkpoint.
    Proof(ProofArgs),
    /// Print the latest signed checkpoint.
    Checkpoint(ServerArgs),
    /// Drop the views and replay the whole ledger into them (node stopped).
    Rebuild(NodeArgs),
    /// Check Prometheus rule files as the node will load them (as `promtool check rules`).
    CheckRules(CheckRulesArgs),
}

/// Where the node keeps its data and how it is configured.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Data directory (ledger, key, snapshots) [default: ./assay-data, or data_dir in the config].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// TOML configuration file; every key is optional.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Address to listen on [default: 127.0.0.1:9470, or listen in the config].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

#[derive(Args, Debug)]
pub struct CheckRulesArgs {
    /// Rule files (YAML); every problem of every file is reported.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// The node to talk to.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Base URL of the node.
    #[arg(long, env = "ASSAY_SERVER", default_value = "http://127.0.0.1:9470")]
    server: String,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Metric name, e.g. cpu_load.
    #[arg(required_unless_present = "file")]
    name: Option<String>,
    /// Sample value.
    #[arg(required_unless_present = "file", allow_hyphen_values = true)]
    value: Option<String>,
    /// A label, as key=value; repeat for more.
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Sample time, ms since the Unix epoch [default: the server's clock].
    #[arg(long)]
    timestamp_ms: Option<i64>,
    /// Push a JSON batch file (the /v1/push body) instead; `-` reads standard input.
    #[arg(long, conflicts_with_all = ["name", "value", "labels", "timestamp_ms"])]
    file: Option<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The PromQL expression.
    query: String,
    /// Evaluation time: Unix seconds or RFC 3339 [default: now].
    #[arg(long)]
    at: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct QueryRangeArgs {
    /// The PromQL expression.
    query: String,
    /// Start: Unix seconds or RFC 3339.
    #[arg(long)]
    start: String,
    /// End: Unix seconds or RFC 3339.
    #[arg(long)]
    end: String,
    /// Resolution: a duration (15s, 1m) or seconds.
    #[arg(long)]
    step: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The data directory of a stopped node.
    #[arg(long, default_value = "./assay-data")]
    data_dir: PathBuf,
    /// Verifier key to trust (`name+id+base64`, or @FILE) [default: the data dir's own key].
    #[arg(long)]
    key: Option<String>,
}

#[derive(Args, Debug)]
pub struct ProofArgs {
    /// Leaf index of the entry (the `index` a push returned).
    #[arg(long)]
    index: u64,
    /// Verifier key to trust (`name+id+base64`, or @FILE) [default: fetched from the server, which proves less].
    #[arg(long)]
    key: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

fn main() {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("ASSAY_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.downcast_ref::<commands::Exit>().map_or(3, |x| x.0)
        }
    };
    std::process::exit(code);
}

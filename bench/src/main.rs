//! `assay-bench`: load generators and benchmark drivers for Assay.
//!
//! Each subcommand prints a human summary and, with `--json`, one JSON line on stdout
//! (last), which `bench/run.sh` collects into the table of BENCHMARKS.md.

// The node runs on mimalloc; `pipeline` measures its code paths, so it uses the same.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod body;
mod disk;
mod http;
mod ingest;
mod latency;
mod node;
mod pack;
mod pipeline;
mod proof;
mod queries;
mod remote_write;
mod series;
mod stats;
mod store_bytes;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "assay-bench", about = "Benchmark drivers for Assay")]
struct Cli {
    /// Also print one JSON line with the figures.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Closed-loop durable ingest throughput (POST /v1/push).
    Ingest {
        /// Node URL, e.g. http://127.0.0.1:9470.
        #[arg(long)]
        url: String,
        /// Samples per request.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Concurrent clients, one connection each.
        #[arg(long, default_value_t = 4)]
        clients: u32,
        /// Length of the timed window (10s, 500ms, 2m).
        #[arg(long, default_value = "10s", value_parser = stats::parse_duration)]
        duration: Duration,
        /// Distinct series in total, split evenly over clients (at least --batch per
        /// client, so a request never repeats a series).
        #[arg(long, default_value_t = 100_000)]
        series: u64,
        /// Untimed passes over all series before the timed window (0: the window includes
        /// series creation).
        #[arg(long, default_value_t = 1)]
        warmup_rounds: u64,
        /// Generator runtime threads (1 keeps the generator off the server's second core
        /// as much as possible).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Open-loop push at a target rate; push start → queryable latency.
    Latency {
        /// Node URL.
        #[arg(long)]
        url: String,
        /// Target samples per second.
        #[arg(long, default_value_t = 100_000)]
        rate: u64,
        /// Samples per push (one of them is the marker).
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Length of the schedule.
        #[arg(long, default_value = "10s", value_parser = stats::parse_duration)]
        duration: Duration,
        /// Distinct data series cycled through.
        #[arg(long, default_value_t = 10_000)]
        series: u64,
        /// Query visibility after every n-th push.
        #[arg(long, default_value_t = 2)]
        sample_every: u64,
        /// Connections in the pool.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Generator runtime threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Merkle tree build, inclusion/consistency proof generation and verification.
    Proof {
        /// Leaves of the synthetic tree (leaf i = SHA-256 of i, big-endian).
        #[arg(long, default_value_t = 1_000_000)]
        leaves: u64,
        /// Random inclusion proofs measured.
        #[arg(long, default_value_t = 10_000)]
        inclusion_samples: usize,
        /// Random consistency proofs measured.
        #[arg(long, default_value_t = 10_000)]
        consistency_samples: usize,
    },
    /// Prometheus remote write 1.0 load (any receiver): pre-encoded, in time order per series.
    RemoteWrite {
        /// Receiver URL, e.g. http://127.0.0.1:9470.
        #[arg(long)]
        url: String,
        /// Request path (Assay, VictoriaMetrics and Prometheus: /api/v1/write).
        #[arg(long, default_value = "/api/v1/write")]
        path: String,
        /// Concurrent connections; series are split over them.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Samples per request.
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        /// Active series (100 per instance, node_exporter-like).
        #[arg(long, default_value_t = 10_000)]
        series: u64,
        /// Scrape rounds: samples per series.
        #[arg(long, default_value_t = 20)]
        rounds: u64,
        /// Sample time between rounds.
        #[arg(long, default_value = "15s", value_parser = stats::parse_duration)]
        interval: Duration,
        /// Timestamp of round 0, ms since the epoch (default: the last round lands 1 min
        /// before now).
        #[arg(long)]
        start_ms: Option<i64>,
        /// The receiver's pid: report its CPU seconds and peak RSS.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Rounds a connection may run ahead of the slowest (Prometheus refuses samples
        /// an hour behind its newest).
        #[arg(long, default_value_t = 20)]
        max_lead_rounds: u64,
        /// Generator runtime threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Latency of ten dashboard queries over /api/v1/query_range (any Prometheus API).
    Queries {
        /// Server URL.
        #[arg(long)]
        url: String,
        /// Range start, ms since the epoch.
        #[arg(long)]
        start_ms: i64,
        /// Range end, ms since the epoch.
        #[arg(long)]
        end_ms: i64,
        /// Step, seconds.
        #[arg(long, default_value_t = 60)]
        step: u64,
        /// Timed repetitions per query.
        #[arg(long, default_value_t = 7)]
        reps: usize,
    },
    /// Bytes of DIR/ledger per committed sample.
    Disk {
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Samples committed (otherwise read from the node's /metrics via --url).
        #[arg(long)]
        samples: Option<u64>,
        /// Node URL, to read assay_samples_committed_total.
        #[arg(long)]
        url: Option<String>,
    },
    /// Per-sample CPU of parse, encode, leaf hash and apply, in process (no network, no disk).
    Pipeline {
        /// Samples per body.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Bodies pushed through.
        #[arg(long, default_value_t = 100)]
        rounds: u64,
        /// Distinct series (batches cycle through them; default: one new series per sample).
        #[arg(long, default_value_t = 1_000_000)]
        series: u64,
        /// Remote-write bodies of the node_exporter-like fleet (as `remote-write` sends them,
        /// one connection) instead of JSON; `--rounds` are then scrape rounds.
        #[arg(long)]
        remote_write: bool,
    },
    /// Ledger packing on the remote-write fleet, in process: bytes per sample raw and
    /// packed, pack and unpack speed.
    Pack {
        /// Active series.
        #[arg(long, default_value_t = 10_000)]
        series: u64,
        /// Samples per series.
        #[arg(long, default_value_t = 1500)]
        rounds: u64,
        /// Samples per request (one ledger entry).
        #[arg(long, default_value_t = 5000)]
        batch: usize,
        /// Connections whose requests interleave in blocks.
        #[arg(long, default_value_t = 4)]
        connections: u64,
        /// Sample time between rounds.
        #[arg(long, default_value = "15s", value_parser = stats::parse_duration)]
        interval: Duration,
        /// Ledger segment size limit, bytes.
        #[arg(long, default_value_t = 64 << 20)]
        segment_bytes: u64,
        /// Raw bytes per pack frame.
        #[arg(long, default_value_t = 8 << 20)]
        frame_bytes: usize,
        /// zstd level.
        #[arg(long, default_value_t = 3)]
        level: i32,
        /// Scratch directory for the ledger.
        #[arg(long, default_value = "/tmp")]
        dir: PathBuf,
        /// Write every series inline in every entry (as before series references) instead
        /// of by reference to its first inline appearance, as the node writes them.
        #[arg(long)]
        inline: bool,
    },
    /// Bytes per sample of the fleet's data: column codec, Gorilla chunks, the view.
    StoreBytes {
        /// Series of the fleet.
        #[arg(long, default_value_t = 10_000)]
        series: u64,
        /// Samples per series.
        #[arg(long, default_value_t = 240)]
        samples: u64,
        /// Scrape interval, ms.
        #[arg(long, default_value_t = 15_000)]
        interval_ms: i64,
    },
    /// Time N appends+fdatasync in DIR: the floor under durable ingest.
    FsyncProbe {
        /// Directory on the disk to probe (a scratch file is created and removed).
        #[arg(long)]
        dir: PathBuf,
        /// Number of fsyncs.
        #[arg(long, default_value_t = 1000)]
        count: u32,
        /// Bytes appended before each fsync.
        #[arg(long, default_value_t = 4096)]
        bytes: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let (human, json) = match cli.command {
        Command::Ingest {
            url,
            batch,
            clients,
            duration,
            series,
            warmup_rounds,
            threads,
        } => runtime(threads)?.block_on(ingest::run(ingest::IngestParams {
            target: http::Target::parse(&url)?,
            batch,
            clients,
            duration,
            series,
            warmup_rounds,
        }))?,
        Command::Latency {
            url,
            rate,
            batch,
            duration,
            series,
            sample_every,
            connections,
            threads,
        } => runtime(threads)?.block_on(latency::run(latency::LatencyParams {
            target: http::Target::parse(&url)?,
            rate,
            batch,
            duration,
            series,
            sample_every,
            connections,
        }))?,
        Command::RemoteWrite {
            url,
            path,
            connections,
            batch,
            series,
            rounds,
            interval,
            start_ms,
            server_pid,
            max_lead_rounds,
            threads,
        } => runtime(threads)?.block_on(remote_write::run(remote_write::RemoteWriteParams {
            target: http::Target::parse(&url)?,
            path,
            connections,
            batch,
            series,
            rounds,
            interval_ms: interval.as_millis() as i64,
            start_ms,
            server_pid,
            max_lead_rounds,
        }))?,
        Command::Queries {
            url,
            start_ms,
            end_ms,
            step,
            reps,
        } => runtime(1)?.block_on(queries::run(queries::QueriesParams {
            target: http::Target::parse(&url)?,
            start_ms,
            end_ms,
            step_s: step,
            reps,
        }))?,
        Command::Proof {
            leaves,
            inclusion_samples,
            consistency_samples,
        } => proof::run(&proof::ProofParams {
            leaves,
            inclusion_samples,
            consistency_samples,
        })?,
        Command::Disk {
            data_dir,
            samples,
            url,
        } => {
            let target = url.as_deref().map(http::Target::parse).transpose()?;
            runtime(1)?.block_on(disk::run(&data_dir, samples, target))?
        }
        Command::StoreBytes {
            series,
            samples,
            interval_ms,
        } => store_bytes::run(&store_bytes::StoreBytesParams {
            series,
            samples,
            interval_ms,
        })?,
        Command::FsyncProbe { dir, count, bytes } => disk::fsync_probe(&dir, count, bytes)?,
        Command::Pack {
            series,
            rounds,
            batch,
            connections,
            interval,
            segment_bytes,
            frame_bytes,
            level,
            dir,
            inline,
        } => pack::run(&pack::PackParams {
            series,
            rounds,
            batch,
            connections,
            interval_ms: interval.as_millis() as i64,
            segment_bytes,
            options: assay_ledger::pack::PackOptions { frame_bytes, level },
            dir,
            inline,
        })?,
        Command::Pipeline {
            batch,
            rounds,
            series,
            remote_write,
        } => pipeline::run(&pipeline::PipelineParams {
            batch,
            rounds,
            series,
            remote_write,
        })?,
    };
    println!("{human}");
    if cli.json {
        println!("{json}");
    }
    Ok(())
}

/// A current-thread runtime for 1 thread (the generator then uses at most one core),
/// else a multi-thread one.
fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    Ok(rt)
}

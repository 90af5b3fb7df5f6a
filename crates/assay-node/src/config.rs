//! The node's configuration: one TOML file, every key optional, defaults that work.
//!
//! ```toml
//! data_dir = "./assay-data"
//! listen = "127.0.0.1:9470"
//! origin = ""                       # checkpoint origin / key name; "" = assay.local/<key id>
//! rule_files = []                   # Prometheus rule files (recording rules), paths
//!                                   # relative to the working directory
//!
//! [limits]
//! body_bytes_max = 33554432         # request body, bytes (413 above)
//! samples_per_batch_max = 100000
//! labels_per_series_max = 40
//! label_name_bytes_max = 256
//! label_value_bytes_max = 4096
//! timestamp_future_ms_max = 600000  # 10 minutes
//! timestamp_past_ms_max = 2678400000 # 31 days
//! junit_testcases_max = 200000
//!
//! [ingest]
//! series_cache_bytes = 134217728    # remote write: validated labels of recently seen series,
//!                                   # keyed by their raw bytes (a hit skips decoding and
//!                                   # checks); ~400 B per series of node_exporter's shape,
//!                                   # so raise it above ~300 k active series
//!
//! [tsdb]
//! out_of_order_window_ms = 3600000  # a sample up to 1 h older than its series' newest is
//!                                   # accepted; older ones are refused (400), as Prometheus
//!                                   # refuses out-of-order samples
//! snapshot_every_ms = 300000        # views snapshot while running (restart replays only
//!                                   # the ledger after it); each pass first moves sealed
//!                                   # chunks older than the out-of-order window to
//!                                   # memory-mapped files (views/chunks); 0 = only at a
//!                                   # clean stop, and samples stay in memory
//! retention_ms = 2678400000         # the view drops samples older than 31 days (checked
//!                                   # once a minute of block time); the ledger keeps all
//! retention_bytes = 0               # and the oldest beyond this many bytes (0 = no limit)
//! query_timeout_ms = 120000         # a query fails with `timeout` after 2 min (as Prometheus);
//!                                   # the API's `timeout` parameter may shorten it
//!
//! [ledger]
//! segment_bytes_max = 67108864     # a new segment file starts past this size
//! pack_segments = true              # store full segments packed: labels once per segment,
//!                                   # samples as columns, zstd (entries and proofs unchanged);
//!                                   # a clean stop ends the current segment (≥ 1 MiB) and packs it
//! pack_frame_bytes = 8388608        # a read of an old entry decodes this much raw segment
//! pack_level = 3                    # zstd level
//! block_entries_max = 4096
//! block_bytes_max = 67108864
//! queue_batches_max = 8192          # batches waiting for a block (503 when full)
//!                                   # Commit delay: there is no linger; the next block is cut as
//!                                   # soon as the previous one is durable, so a request waits at
//!                                   # most one full block's write+fsync (bounded by the two limits
//!                                   # above) plus its own block's.
//! checkpoint_persist_ms = 1000      # how often the checkpoint file is rewritten
//! ```

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything a node needs to start.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Where the ledger, the key and view snapshots live.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Checkpoint origin and key name; empty means `assay.local/<key id>` chosen at first start.
    pub origin: String,
    /// Prometheus rule files whose recording rules the node evaluates (see `crate::rules`).
    pub rule_files: Vec<PathBuf>,
    /// Input limits.
    pub limits: assay_ingest::Limits,
    /// Ingest settings.
    pub ingest: IngestSettings,
    /// Time-series view settings.
    pub tsdb: TsdbSettings,
    /// Ledger and sequencer limits.
    pub ledger: LedgerSettings,
}

/// How writes are parsed.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// Bound on remote write's series cache (raw label bytes → validated labels), bytes
    /// accounted over both generations; also bounds it to one entry per 256 bytes.
    pub series_cache_bytes: usize,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            series_cache_bytes: 2 * assay_ingest::SERIES_CACHE_BYTES_MAX,
        }
    }
}

impl IngestSettings {
    /// The series cache these settings describe, for results validated under `limits`.
    pub fn series_cache(&self, limits: &assay_ingest::Limits) -> assay_ingest::SeriesCache {
        // Two generations share the bound.
        let per_generation = self.series_cache_bytes / 2;
        assay_ingest::SeriesCache::with_bounds(limits, per_generation / 256, per_generation)
    }
}

/// How the time-series view admits samples.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TsdbSettings {
    /// How much older than its series' newest sample a sample may be, ms (0: strictly in
    /// order). Edge agents replaying a spool need a window; exact duplicates always pass.
    pub out_of_order_window_ms: i64,
    /// How often a live node snapshots the views (when blocks were committed since), ms;
    /// a restart loads the snapshot and replays only the ledger after it. Each pass first
    /// moves sealed chunks older than the out-of-order window to memory-mapped chunk files
    /// (at most 256 MiB per pass), which bounds the heap. 0 = only at a clean stop (and no
    /// chunk files). Encoding holds the views lock, so commits wait for it.
    pub snapshot_every_ms: u64,
    /// Samples older than this before the newest block's time leave the view, ms (0: keep
    /// all). The ledger keeps everything; `assay rebuild` applies the same rule.
    pub retention_ms: i64,
    /// The oldest samples leave the view beyond this many bytes of compressed samples
    /// (0: no limit).
    pub retention_bytes: usize,
    /// A query (API `query`, `query_range`) fails with `timeout` after this long, ms; a
    /// request's `timeout` parameter may only shorten it. A query holds the views' read lock,
    /// which commits wait for, so this also bounds how long a query can hold up ingest.
    pub query_timeout_ms: u64,
}

impl TsdbSettings {
    /// The view's retention.
    pub fn retention(&self) -> assay_tsdb::Retention {
        assay_tsdb::Retention {
            time_ms: self.retention_ms,
            bytes: self.retention_bytes,
        }
    }
}

impl Default for TsdbSettings {
    fn default() -> Self {
        TsdbSettings {
            out_of_order_window_ms: 60 * 60 * 1000,
            snapshot_every_ms: 5 * 60 * 1000,
            retention_ms: 31 * 24 * 60 * 60 * 1000,
            retention_bytes: 0,
            query_timeout_ms: 120_000,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("./assay-data"),
            listen: "127.0.0.1:9470".parse().expect("valid default address"),
            origin: String::new(),
            rule_files: Vec::new(),
            limits: assay_ingest::Limits::default(),
            ingest: IngestSettings::default(),
            tsdb: TsdbSettings::default(),
            ledger: LedgerSettings::default(),
        }
    }
}

/// Ledger files, block size and the sequencer's queue.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerSettings {
    /// A new segment file starts past this size, bytes.
    pub segment_bytes_max: u64,
    /// Entries (accepted requests) per block.
    pub block_entries_max: usize,
    /// Bytes per block.
    pub block_bytes_max: usize,
    /// Requests waiting for the next block; beyond it clients get 503 and retry.
    pub queue_batches_max: usize,
    /// Interval between rewrites of the persisted checkpoint, ms.
    pub checkpoint_persist_ms: u64,
    /// Store full segments packed (`assay_ledger::pack`).
    pub pack_segments: bool,
    /// Raw bytes per frame of a pack (what a read of an old entry decodes).
    pub pack_frame_bytes: usize,
    /// zstd level of packs.
    pub pack_level: i32,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        let d = assay_ledger::LedgerConfig::default();
        let p = assay_ledger::pack::PackOptions::default();
        LedgerSettings {
            segment_bytes_max: d.segment_bytes_max,
            block_entries_max: d.block_entries_max,
            block_bytes_max: d.block_bytes_max,
            queue_batches_max: 8192,
            checkpoint_persist_ms: 1000,
            pack_segments: true,
            pack_frame_bytes: p.frame_bytes,
            pack_level: p.level,
        }
    }
}

impl LedgerSettings {
    /// How the node packs full segments.
    pub fn pack_options(&self) -> assay_ledger::pack::PackOptions {
        assay_ledger::pack::PackOptions {
            frame_bytes: self.pack_frame_bytes,
            level: self.pack_level,
        }
    }

    /// The ledger's view of these settings.
    pub fn ledger(&self) -> assay_ledger::LedgerConfig {
        assay_ledger::LedgerConfig {
            segment_bytes_max: self.segment_bytes_max,
            block_entries_max: self.block_entries_max,
            block_bytes_max: self.block_bytes_max,
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where (line, column, key), from the TOML parser.
        message: String,
    },
}

impl NodeConfig {
    /// Reads a TOML file; missing keys take their defaults, unknown keys are errors.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        NodeConfig::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.into(),
            message,
        })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<NodeConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Directory of the ledger's segment files.
    pub fn ledger_dir(&self) -> PathBuf {
        self.data_dir.join("ledger")
    }

    /// The node's signing key file.
    pub fn key_file(&self) -> PathBuf {
        self.data_dir.join("node.key")
    }

    /// Directory of view snapshots.
    pub fn views_dir(&self) -> PathBuf {
        self.data_dir.join("views")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults_and_unknown_keys_fail() {
        let c = NodeConfig::parse("").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9470");
        let c = NodeConfig::parse("[ledger]\nblock_entries_max = 7\n").unwrap();
        assert_eq!(c.ledger.block_entries_max, 7);
        let e = NodeConfig::parse("[ledger]\nblock_entries = 7\n").unwrap_err();
        assert!(e.contains("unknown field `block_entries`"), "{e}");
        let e = NodeConfig::parse("listen = 5\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn the_series_cache_bound_is_shared_by_both_generations() {
        let c = NodeConfig::parse("[ingest]\nseries_cache_bytes = 1048576\n").unwrap();
        assert_eq!(c.ingest.series_cache_bytes, 1 << 20);
        let limits = assay_ingest::Limits::default();
        let cache = c.ingest.series_cache(&limits);
        // Per generation: half the bytes, and one entry per 256 of them.
        assert_eq!(cache.bounds(), ((1 << 20) / 256, 1 << 20));
        let d = NodeConfig::parse("").unwrap().ingest.series_cache(&limits);
        assert_eq!(
            d.bounds(),
            (2 * assay_ingest::SERIES_CACHE_ENTRIES_MAX, 128 << 20)
        );
    }
}

//! Assay's ledger: the only source of truth.
//!
//! Start reading at [`entry::Entry`] (what is stored), [`merkle::MerkleTree`] (how it is
//! proven) and [`note`] (how checkpoints are signed).
//!
//! Invariants: an entry's bytes never change once appended; the leaf hash is
//! SHA-256(0x00 ‖ entry bytes); every checkpoint is an RFC 6962 root over all entries
//! up to its size, signed as a C2SP signed note.

pub mod entry;
pub mod merkle;
pub mod note;
pub mod pack;
pub mod resolve;

pub use entry::{
    Entry, EntryError, Labels, MetricMetadata, MetricType, Sample, SampleBatch, SeriesIndex,
    SeriesRef, METRIC_NAME_LABEL,
};
pub mod ledger;
pub mod scan;
pub mod segment;
pub mod storage;

pub use ledger::{Ledger, LedgerConfig, LedgerError, ScannedEntries, SignedCheckpoint};
pub use resolve::SeriesResolver;

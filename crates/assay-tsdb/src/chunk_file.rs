//! Sealed chunks on disk: append-once files that the view memory-maps, so old samples cost
//! page cache (which the kernel evicts) instead of heap.
//!
//! A chunk file is `"ASCHUNK2"` followed by sealed chunks' bytes (each starting with its
//! encoding byte, see `chunk.rs`) back to back; it is written
//! whole, fsync'd, and never changed. Chunks refer to it by `(file id, offset, length)` and
//! a snapshot records those references with a CRC-32 of each chunk, checked when the
//! snapshot is loaded. Which chunks live on disk is a matter of memory, not of state: the
//! digest and every query answer are the same either way.
//!
//! The node decides when to move chunks ([`crate::Tsdb::chunks_to_offload`],
//! [`crate::Tsdb::install_offloaded`]) and deletes files no snapshot refers to any more
//! ([`remove_unreferenced`]).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// First bytes of every chunk file.
/// (`ASCHUNK1` files held untagged XOR chunks; snapshots that referred to them are version 4,
/// which this build refuses, so such files are never opened.)
pub const CHUNK_FILE_MAGIC: &[u8; 8] = b"ASCHUNK2";

/// A memory-mapped chunk file.
pub struct ChunkFile {
    id: u64,
    map: memmap2::Mmap,
}

impl std::fmt::Debug for ChunkFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkFile({}, {} bytes)", self.id, self.map.len())
    }
}

/// The file name of chunk file `id`.
pub fn chunk_file_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.chunks"))
}

impl ChunkFile {
    /// Maps an existing chunk file, checking its magic.
    pub fn open(dir: &Path, id: u64) -> std::io::Result<ChunkFile> {
        let file = std::fs::File::open(chunk_file_path(dir, id))?;
        // SAFETY: chunk files are written whole and fsync'd before any reference to them
        // exists, and nothing writes them afterwards (the node's data-dir lock keeps other
        // processes out), so the mapping never changes under us.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        if map.len() < CHUNK_FILE_MAGIC.len() || &map[..CHUNK_FILE_MAGIC.len()] != CHUNK_FILE_MAGIC
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("chunk file {id} does not start with the chunk file magic"),
            ));
        }
        Ok(ChunkFile { id, map })
    }

    /// The file's id (its name).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// `len` bytes at `offset`, if the file holds them.
    pub(crate) fn get(&self, offset: usize, len: usize) -> Option<&[u8]> {
        self.map.get(offset..offset.checked_add(len)?)
    }
}

/// Builds one chunk file.
pub struct ChunkFileWriter {
    id: u64,
    buf: Vec<u8>,
}

impl ChunkFileWriter {
    /// A new file `id` (not yet on disk).
    pub fn new(id: u64) -> ChunkFileWriter {
        ChunkFileWriter {
            id,
            buf: CHUNK_FILE_MAGIC.to_vec(),
        }
    }

    /// Appends a chunk's bytes; returns their offset.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(bytes);
        at
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when no chunk was pushed.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == CHUNK_FILE_MAGIC.len()
    }

    /// Writes the file durably (temp file, fsync, rename, fsync of the directory) and maps it.
    pub fn finish(self, dir: &Path) -> std::io::Result<Arc<ChunkFile>> {
        std::fs::create_dir_all(dir)?;
        let path = chunk_file_path(dir, self.id);
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&self.buf)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(Arc::new(ChunkFile::open(dir, self.id)?))
    }
}

/// Ids of the chunk files in `dir`, ascending (temp files and other names ignored).
pub fn chunk_file_ids(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name.strip_suffix(".chunks").and_then(|s| s.parse().ok()) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Deletes the chunk files in `dir` that `keep` does not name (and leftover temp files);
/// returns how many were removed. Call it only after a snapshot naming `keep` is durable.
pub fn remove_unreferenced(dir: &Path, keep: &BTreeSet<u64>) -> std::io::Result<usize> {
    let mut removed = 0;
    for id in chunk_file_ids(dir)? {
        if !keep.contains(&id) {
            std::fs::remove_file(chunk_file_path(dir, id))?;
            removed += 1;
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(removed)
}

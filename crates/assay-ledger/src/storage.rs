//! Where the ledger's bytes live: a flat directory of named files.
//!
//! The ledger talks to its files only through [`Storage`], so a test can run it on
//! [`SimStorage`], a simulated disk that loses unsynced writes, tears the last write and
//! fails at a chosen step, driven by a seed. [`FsStorage`] is the real directory.
//!
//! Contract (what the ledger relies on, and what the simulation models):
//! - `append` may be lost or torn by a crash until `sync` returns for that file;
//! - `create`, `truncate` and `write_atomic` are durable when they return (they sync the
//!   file and the directory);
//! - after any error the caller must treat the storage as failed (no retry: a failed
//!   fsync leaves the page cache in an unknown state).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A directory of named files with append, sync and atomic replace.
pub trait Storage: Send {
    /// Names of all files, sorted.
    fn list(&self) -> io::Result<Vec<String>>;
    /// The whole file.
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// `len` bytes at `offset`.
    fn read_at(&self, name: &str, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// The first `len` bytes of a file no one appends to or truncates any more (a sealed
    /// segment), mapped where the storage can: packing reads whole 64 MiB segments, and a
    /// copy into fresh memory cost as much CPU as a tenth of ingest (the kernel zeroing
    /// the pages, then the copy).
    fn read_sealed(&self, name: &str, len: usize) -> io::Result<FileBytes> {
        self.read_at(name, 0, len).map(FileBytes::Read)
    }
    /// Creates an empty file, durably; fails if it exists.
    fn create(&mut self, name: &str) -> io::Result<()>;
    /// Appends bytes; not durable until [`Storage::sync`].
    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Makes every append to `name` durable.
    fn sync(&mut self, name: &str) -> io::Result<()>;
    /// Cuts the file to `len` bytes, durably.
    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()>;
    /// Replaces the whole file atomically and durably (readers see old or new bytes).
    fn write_atomic(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Deletes a file, durably.
    fn remove(&mut self, name: &str) -> io::Result<()>;
    /// A handle that writes staged files without this storage (see [`Stager`]).
    fn stager(&self) -> Box<dyn Stager>;
    /// Replaces `name` by the copy [`Stager::stage`] wrote, atomically and durably.
    fn commit_staged(&mut self, name: &str) -> io::Result<()>;
    /// Lets go of a file a [`Stager`] will remove (closes what this storage holds open).
    fn release(&mut self, name: &str);
}

/// Writes whole files durably under a name the ledger ignores, without the [`Storage`] it
/// came from, so a caller can do the slow part of replacing a file (writing and syncing
/// megabytes) without holding the ledger's lock; [`Storage::commit_staged`] then only
/// renames. Installing a pack under the lock took 35–50 ms, during which no block could
/// be written.
pub trait Stager: Send {
    /// Writes `bytes` as the staged copy of `name`, durably.
    fn stage(&self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Deletes a file the storage released ([`Storage::release`]), durably.
    fn remove(&self, name: &str) -> io::Result<()>;
}

/// The name a staged copy of `name` has until it is committed (the ledger ignores it, and a
/// crash may leave it behind).
fn staged_name(name: &str) -> String {
    format!("{name}.tmp")
}

/// [`Stager`] of an [`FsStorage`]: its directory.
struct FsStager {
    dir: PathBuf,
}

impl Stager for FsStager {
    fn stage(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut f = File::create(self.dir.join(staged_name(name)))?;
        f.write_all(bytes)?;
        f.sync_all()
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        remove_synced(&self.dir, name)
    }
}

/// Makes the directory's entries (creations, renames, removals) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Deletes `dir/name`, durably.
fn remove_synced(dir: &Path, name: &str) -> io::Result<()> {
    std::fs::remove_file(dir.join(name))?;
    sync_dir(dir)
}

/// A file's bytes, read into memory or mapped from the file.
pub enum FileBytes {
    /// Read into memory.
    Read(Vec<u8>),
    /// Mapped read-only from a file that no longer changes.
    Mapped(memmap2::Mmap),
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self {
            FileBytes::Read(_) => "read",
            FileBytes::Mapped(_) => "mapped",
        };
        write!(f, "FileBytes({} bytes, {how})", self.len())
    }
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Read(v) => v,
            FileBytes::Mapped(m) => m,
        }
    }
}

/// A real directory on disk.
pub struct FsStorage {
    dir: PathBuf,
    open: BTreeMap<String, File>,
    readers: Mutex<BTreeMap<String, Arc<File>>>,
}

impl FsStorage {
    /// Opens (creating if needed) the directory.
    pub fn open(dir: &Path) -> io::Result<FsStorage> {
        std::fs::create_dir_all(dir)?;
        Ok(FsStorage {
            dir: dir.to_path_buf(),
            open: BTreeMap::new(),
            readers: Mutex::new(BTreeMap::new()),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn sync_dir(&self) -> io::Result<()> {
        sync_dir(&self.dir)
    }

    fn handle(&mut self, name: &str) -> io::Result<&mut File> {
        if !self.open.contains_key(name) {
            let f = OpenOptions::new().append(true).open(self.dir.join(name))?;
            self.open.insert(name.to_string(), f);
        }
        Ok(self.open.get_mut(name).expect("inserted above"))
    }
}

impl Storage for FsStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            if e.file_type()?.is_file() {
                if let Some(n) = e.file_name().to_str() {
                    names.push(n.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.dir.join(name))
    }

    fn read_sealed(&self, name: &str, len: usize) -> io::Result<FileBytes> {
        let f = File::open(self.dir.join(name))?;
        let file_len = f.metadata()?.len();
        if file_len < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name} holds {file_len} bytes, {len} expected"),
            ));
        }
        if len == 0 {
            return Ok(FileBytes::Read(Vec::new()));
        }
        // SAFETY: the caller promises the file is sealed: the ledger never appends to,
        // truncates or rewrites a sealed segment, only removes it (the mapping stays valid
        // after an unlink), so the mapped bytes cannot change under the reader.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&f)? };
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(FileBytes::Mapped(map))
    }

    fn read_at(&self, name: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let f = {
            let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            match readers.get(name) {
                Some(f) => f.clone(),
                None => {
                    let f = Arc::new(File::open(self.dir.join(name))?);
                    readers.insert(name.to_string(), f.clone());
                    f
                }
            }
        };
        let mut buf = vec![0; len];
        f.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn create(&mut self, name: &str) -> io::Result<()> {
        let f = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(self.dir.join(name))?;
        f.sync_all()?;
        self.sync_dir()?;
        self.open.insert(name.to_string(), f);
        Ok(())
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.handle(name)?.write_all(bytes)
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        self.handle(name)?.sync_data()
    }

    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()> {
        let f = self.handle(name)?;
        f.set_len(len)?;
        f.sync_all()
    }

    fn write_atomic(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.stager().stage(name, bytes)?;
        self.commit_staged(name)
    }

    fn stager(&self) -> Box<dyn Stager> {
        Box::new(FsStager {
            dir: self.dir.clone(),
        })
    }

    fn commit_staged(&mut self, name: &str) -> io::Result<()> {
        std::fs::rename(self.dir.join(staged_name(name)), self.dir.join(name))?;
        self.release(name);
        self.sync_dir()
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.release(name);
        remove_synced(&self.dir, name)
    }

    fn release(&mut self, name: &str) {
        self.open.remove(name);
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

/// A small deterministic PRNG (SplitMix64) for simulations: same seed, same run.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "SimRng::below(0)");
        self.next_u64() % n
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

#[derive(Clone, Debug, Default)]
struct SimFile {
    /// What a reader sees now: the durable prefix, then unsynced appends.
    current: Vec<u8>,
    /// How much of `current` survives a crash for sure.
    durable: usize,
}

#[derive(Debug, Default)]
struct SimDisk {
    files: BTreeMap<String, SimFile>,
    ops: u64,
    fail_at_op: Option<u64>,
}

/// A simulated disk: loses unsynced appends on [`SimStorage::crash`], may tear them
/// (keep a prefix, zero or scramble part of it), and fails every operation from a
/// chosen step on, as a process crash would. Clones share one disk, so a test keeps a
/// handle while the ledger owns another.
#[derive(Clone, Debug, Default)]
pub struct SimStorage {
    disk: Arc<Mutex<SimDisk>>,
}

fn crashed() -> io::Error {
    io::Error::other("simulated crash")
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, name.to_string())
}

impl SimDisk {
    fn step(&mut self) -> io::Result<()> {
        let op = self.ops;
        self.ops += 1;
        match self.fail_at_op {
            Some(f) if op >= f => Err(crashed()),
            _ => Ok(()),
        }
    }

    fn file(&mut self, name: &str) -> io::Result<&mut SimFile> {
        self.files.get_mut(name).ok_or_else(|| not_found(name))
    }
}

impl SimStorage {
    /// An empty disk.
    pub fn new() -> SimStorage {
        SimStorage::default()
    }

    fn disk(&self) -> std::sync::MutexGuard<'_, SimDisk> {
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One step: the whole file `name`, durable.
    fn put_durable(&self, name: String, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.disk();
        disk.step()?;
        disk.files.insert(
            name,
            SimFile {
                durable: bytes.len(),
                current: bytes.to_vec(),
            },
        );
        Ok(())
    }

    /// From operation number `op` on (counting from 0), every call fails.
    pub fn fail_at(&self, op: Option<u64>) {
        self.disk().fail_at_op = op;
    }

    /// Operations performed so far.
    pub fn ops(&self) -> u64 {
        self.disk().ops
    }

    /// The disk as a restarted machine finds it: per file, the durable bytes plus either
    /// all the unsynced ones (a quarter of crashes) or a random prefix of them, of which a
    /// random stretch may be zeroed or scrambled (pages written out of order). The new disk
    /// shares nothing with this one.
    pub fn crash(&self, rng: &mut SimRng) -> SimStorage {
        let disk = self.disk();
        let mut files = BTreeMap::new();
        for (name, f) in &disk.files {
            let mut bytes = f.current[..f.durable].to_vec();
            let pending = &f.current[f.durable..];
            if !pending.is_empty() {
                // A quarter of crashes come after the kernel wrote everything back (so a
                // block cut before its fsync returned can be found whole); the rest keep a
                // random prefix, a third of those with a damaged stretch.
                let all = rng.chance(1, 4);
                let keep = if all {
                    pending.len()
                } else {
                    rng.below(pending.len() as u64 + 1) as usize
                };
                let mut kept = pending[..keep].to_vec();
                if !all && keep > 0 && rng.chance(1, 3) {
                    let start = rng.below(keep as u64) as usize;
                    let end = start + rng.below((keep - start) as u64 + 1) as usize;
                    let zero = rng.chance(1, 2);
                    for b in &mut kept[start..end] {
                        *b = if zero { 0 } else { rng.next_u64() as u8 };
                    }
                }
                bytes.extend_from_slice(&kept);
            }
            files.insert(
                name.clone(),
                SimFile {
                    durable: bytes.len(),
                    current: bytes,
                },
            );
        }
        SimStorage {
            disk: Arc::new(Mutex::new(SimDisk {
                files,
                ops: 0,
                fail_at_op: None,
            })),
        }
    }

    /// Flips one bit of a file, as bit rot would (for corruption tests).
    pub fn flip_bit(&self, name: &str, byte: usize, bit: u8) {
        let mut disk = self.disk();
        let f = disk.files.get_mut(name).expect("flip_bit: no such file");
        f.current[byte] ^= 1 << bit;
    }

    /// Size of a file as a reader sees it now.
    pub fn len(&self, name: &str) -> Option<usize> {
        self.disk().files.get(name).map(|f| f.current.len())
    }
}

impl Storage for SimStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.disk().files.keys().cloned().collect())
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        Ok(self
            .disk()
            .files
            .get(name)
            .ok_or_else(|| not_found(name))?
            .current
            .clone())
    }

    fn read_at(&self, name: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let disk = self.disk();
        let f = disk.files.get(name).ok_or_else(|| not_found(name))?;
        let start = offset as usize;
        f.current
            .get(start..start + len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past end"))
    }

    fn create(&mut self, name: &str) -> io::Result<()> {
        let mut disk = self.disk();
        disk.step()?;
        if disk.files.contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                name.to_string(),
            ));
        }
        disk.files.insert(name.to_string(), SimFile::default());
        Ok(())
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.disk();
        let op = disk.ops;
        let fail = disk.step().is_err();
        let f = disk.file(name)?;
        if fail {
            // A write cut by the crash may have reached the page cache in part.
            let cut = (op as usize).wrapping_mul(2_654_435_761) % (bytes.len() + 1);
            f.current.extend_from_slice(&bytes[..cut]);
            return Err(crashed());
        }
        f.current.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        let mut disk = self.disk();
        disk.step()?;
        let f = disk.file(name)?;
        f.durable = f.current.len();
        Ok(())
    }

    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()> {
        let mut disk = self.disk();
        disk.step()?;
        let f = disk.file(name)?;
        f.current.truncate(len as usize);
        f.durable = f.current.len();
        Ok(())
    }

    fn write_atomic(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        // One step, not a stage and a commit: the crash simulations' seeds count on it.
        self.put_durable(name.to_string(), bytes)
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        Stager::remove(self, name)
    }

    fn stager(&self) -> Box<dyn Stager> {
        Box::new(SimStorage {
            disk: self.disk.clone(),
        })
    }

    fn commit_staged(&mut self, name: &str) -> io::Result<()> {
        let mut disk = self.disk();
        disk.step()?;
        let staged = disk
            .files
            .remove(&staged_name(name))
            .ok_or_else(|| not_found(name))?;
        disk.files.insert(name.to_string(), staged);
        Ok(())
    }

    fn release(&mut self, _name: &str) {}
}

impl Stager for SimStorage {
    fn remove(&self, name: &str) -> io::Result<()> {
        let mut disk = self.disk();
        disk.step()?;
        disk.files.remove(name).ok_or_else(|| not_found(name))?;
        Ok(())
    }

    fn stage(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.put_durable(staged_name(name), bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_file_maps_to_the_bytes_read_and_a_short_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FsStorage::open(dir.path()).unwrap();
        s.create("0.seg").unwrap();
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        s.append("0.seg", &bytes).unwrap();
        s.sync("0.seg").unwrap();
        let mapped = s.read_sealed("0.seg", 99_000).unwrap();
        assert!(matches!(mapped, FileBytes::Mapped(_)), "{mapped:?}");
        assert_eq!(&mapped[..], &s.read_at("0.seg", 0, 99_000).unwrap()[..]);
        assert_eq!(s.read_sealed("0.seg", 0).unwrap().len(), 0);
        let err = s.read_sealed("0.seg", 100_001).unwrap_err();
        assert_eq!(err.to_string(), "0.seg holds 100000 bytes, 100001 expected");
        // The mapping outlives the file's removal (installing a pack removes the raw file).
        s.remove("0.seg").unwrap();
        assert_eq!(mapped[98_999], bytes[98_999]);
    }
}

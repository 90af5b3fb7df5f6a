//! `proof`: Merkle tree build, inclusion and consistency proof generation and verification.
//!
//! The tree is synthetic: leaf `i` is SHA-256 of `i` as 8 big-endian bytes, so a 10^8-leaf
//! tree needs no ledger on disk. Each operation is timed on its own (Instant overhead is
//! ~20 ns against µs-scale operations) at random indices from a fixed seed.

use crate::stats::{peak_rss_bytes, round3, Rng, Summary, Unit};
use anyhow::{bail, Context, Result};
use assay_ledger::merkle::{verify_consistency, verify_inclusion, Hash, MerkleTree};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// Largest tree this benchmark builds (~64 bytes of memory per leaf: 10^9 is 64 GB).
pub const LEAVES_MAX: u64 = 1_000_000_000;
/// Seed of the random indices, fixed so runs are comparable.
const SEED: u64 = 0x5eed_a55a_7000_0001;

/// Parameters of one proof run.
#[derive(Clone, Debug)]
pub struct ProofParams {
    /// Leaves in the tree.
    pub leaves: u64,
    /// Random inclusion proofs generated and verified.
    pub inclusion_samples: usize,
    /// Random consistency proofs generated and verified.
    pub consistency_samples: usize,
}

/// The synthetic leaf hash of index `i`.
pub fn synthetic_leaf(i: u64) -> Hash {
    Sha256::digest(i.to_be_bytes()).into()
}

/// Runs the measurements and returns (human summary, JSON line).
pub fn run(p: &ProofParams) -> Result<(String, serde_json::Value)> {
    if p.leaves < 2 || p.leaves > LEAVES_MAX {
        bail!(
            "--leaves {} is out of range: use 2..={LEAVES_MAX}",
            p.leaves
        );
    }
    let t = Instant::now();
    let tree = MerkleTree::from_leaves((0..p.leaves).map(synthetic_leaf));
    let build = t.elapsed();
    let t = Instant::now();
    let root = tree.root();
    let root_time = t.elapsed();
    let mut rng = Rng::new(SEED);
    let n = p.leaves;

    let (mut gen, mut ver, mut lens) = (Vec::new(), Vec::new(), 0usize);
    for _ in 0..p.inclusion_samples {
        let i = rng.below(n);
        let t = Instant::now();
        let proof = tree.inclusion_proof(i, n).context("inclusion proof")?;
        gen.push(t.elapsed());
        let leaf = synthetic_leaf(i);
        let t = Instant::now();
        let ok = verify_inclusion(&leaf, i, n, &proof, &root);
        ver.push(t.elapsed());
        ok.with_context(|| format!("inclusion proof of leaf {i} did not verify"))?;
        lens += proof.len();
    }
    let inc_gen = Summary::of(&mut gen);
    let inc_ver = Summary::of(&mut ver);
    let inc_len = lens as f64 / p.inclusion_samples.max(1) as f64;

    let (mut cgen, mut cver, mut root_old): (Vec<Duration>, Vec<Duration>, Vec<Duration>) =
        Default::default();
    for _ in 0..p.consistency_samples {
        let old = 1 + rng.below(n - 1);
        let t = Instant::now();
        let proof = tree
            .consistency_proof(old, n)
            .context("consistency proof")?;
        cgen.push(t.elapsed());
        let t = Instant::now();
        let old_root = tree.root_at(old)?;
        root_old.push(t.elapsed());
        let t = Instant::now();
        let ok = verify_consistency(old, n, &old_root, &root, &proof);
        cver.push(t.elapsed());
        ok.with_context(|| format!("consistency proof {old}→{n} did not verify"))?;
    }
    let con_gen = Summary::of(&mut cgen);
    let con_ver = Summary::of(&mut cver);
    let root_at = Summary::of(&mut root_old);
    let memory = tree.memory_bytes();
    let rss = peak_rss_bytes().unwrap_or(0);

    let human = format!(
        "proof leaves={n}: build {:.3} s ({:.0} ns/leaf), root {:.1} µs, memory {:.1} MB \
         ({:.1} B/leaf), peak RSS {:.1} MB\n  inclusion gen    {}\n  inclusion verify {} \
         (mean {:.1} hashes)\n  consistency gen    {}\n  consistency verify {}\n  root_at(old) {}",
        build.as_secs_f64(),
        build.as_secs_f64() * 1e9 / n as f64,
        root_time.as_secs_f64() * 1e6,
        memory as f64 / 1e6,
        memory as f64 / n as f64,
        rss as f64 / 1e6,
        inc_gen.human(Unit::Micros),
        inc_ver.human(Unit::Micros),
        inc_len,
        con_gen.human(Unit::Micros),
        con_ver.human(Unit::Micros),
        root_at.human(Unit::Micros),
    );
    let json = json!({
        "bench": "proof",
        "leaves": n,
        "build_s": round3(build.as_secs_f64()),
        "build_ns_per_leaf": round3(build.as_secs_f64() * 1e9 / n as f64),
        "root_us": round3(root_time.as_secs_f64() * 1e6),
        "memory_bytes": memory,
        "memory_bytes_per_leaf": round3(memory as f64 / n as f64),
        "peak_rss_bytes": rss,
        "inclusion_gen": inc_gen.json(Unit::Micros),
        "inclusion_verify": inc_ver.json(Unit::Micros),
        "inclusion_proof_hashes_mean": round3(inc_len),
        "consistency_gen": con_gen.json(Unit::Micros),
        "consistency_verify": con_ver.json(Unit::Micros),
        "root_at_old": root_at.json(Unit::Micros),
    });
    Ok((human, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_tree_proofs_verify_and_leaf_limits_hold() {
        let p = ProofParams {
            leaves: 1000,
            inclusion_samples: 50,
            consistency_samples: 50,
        };
        let (_, j) = run(&p).unwrap();
        assert_eq!(j["inclusion_verify"]["count"], 50);
        assert_eq!(j["consistency_verify"]["count"], 50);
        // ceil(log2(1000)) = 10 hashes at most, 9 for the last leaves' short paths.
        let len = j["inclusion_proof_hashes_mean"].as_f64().unwrap();
        assert!((9.0..=10.0).contains(&len), "{len}");
        assert!(run(&ProofParams {
            leaves: 1,
            ..p.clone()
        })
        .is_err());
        assert!(run(&ProofParams {
            leaves: LEAVES_MAX + 1,
            ..p
        })
        .is_err());
    }

    #[test]
    fn synthetic_leaves_are_sha256_of_the_big_endian_index() {
        assert_eq!(
            hex_prefix(&synthetic_leaf(0)),
            hex_prefix(&Sha256::digest([0u8; 8]).into())
        );
        assert_ne!(synthetic_leaf(0), synthetic_leaf(1));
    }

    fn hex_prefix(h: &Hash) -> String {
        h[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

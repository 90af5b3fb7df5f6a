//! RFC 6962 / RFC 9162 §2.1 Merkle tree over SHA-256: hashing, an append-only in-memory tree,
//! and generation and verification of inclusion and consistency proofs.
//!
//! Start at [`MerkleTree`]. It keeps every complete, aligned subtree hash: level `k` holds the
//! hashes of the blocks of `2^k` leaves `[i·2^k, (i+1)·2^k)`. Every node of the RFC tree of any
//! size `n ≤ size()` is either such a block or a right-edge node made of O(log n) of them, so
//! roots and proofs for any past size need no leaf rehashing. Memory is ~64 bytes per leaf
//! (≈ 2n hashes); [`MerkleTree::memory_bytes`] reports it.
//!
//! Proofs are lists of hashes, leaf side first, exactly as RFC 9162 §2.1.3.1 and §2.1.4.1
//! generate them (the consistency proof omits the old root when the old size is a power of
//! two). Verification never allocates: it checks the proof length first (the length is a
//! function of index and sizes), which bounds the work on hostile input.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, interior node hash or tree root.
pub type Hash = [u8; 32];

/// Domain-separation prefix of leaf hashes (RFC 6962 §2.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of interior node hashes (RFC 6962 §2.1).
const NODE_PREFIX: u8 = 0x01;

/// Hash of one log entry: SHA-256(0x00 ‖ entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(entry);
    h.finalize().into()
}

/// Hash of an interior node: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root of the empty tree: SHA-256 of no bytes.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Why a proof could not be produced or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// A leaf index is not below the tree size it is proven against.
    #[error(
        "leaf index {index} is out of range for a tree of size {size}: valid indices are 0..{size}"
    )]
    IndexOutOfRange { index: u64, size: u64 },
    /// A requested tree size is larger than the tree holds.
    #[error("tree size {size} is beyond this tree's {tree_size} leaves: ask for a size at most {tree_size}")]
    SizeBeyondTree { size: u64, tree_size: u64 },
    /// A consistency proof was asked between sizes in the wrong order.
    #[error("old tree size {old} is larger than new tree size {new}: a log only grows, swap them or fix the sizes")]
    SizesOutOfOrder { old: u64, new: u64 },
    /// An inclusion proof has the wrong number of hashes for its index and size.
    #[error("inclusion proof for leaf {index} in a tree of size {size} has {got} hashes, it must have {want}")]
    InclusionProofLength {
        index: u64,
        size: u64,
        got: usize,
        want: usize,
    },
    /// A consistency proof has the wrong number of hashes for its sizes.
    #[error(
        "consistency proof from size {old} to size {new} has {got} hashes, it must have {want}"
    )]
    ConsistencyProofLength {
        old: u64,
        new: u64,
        got: usize,
        want: usize,
    },
    /// An inclusion proof leads to another root than the expected one.
    #[error("inclusion proof leads to root {} but the expected root is {}: the leaf, index, proof or root is wrong", hex::encode(.computed), hex::encode(.expected))]
    RootMismatch { computed: Hash, expected: Hash },
    /// A consistency proof does not reproduce the old root.
    #[error("consistency proof rebuilds old root {} but the old root given is {}", hex::encode(.computed), hex::encode(.expected))]
    OldRootMismatch { computed: Hash, expected: Hash },
    /// A consistency proof does not reproduce the new root.
    #[error("consistency proof rebuilds new root {} but the new root given is {}", hex::encode(.computed), hex::encode(.expected))]
    NewRootMismatch { computed: Hash, expected: Hash },
    /// Two roots claimed for the same tree size differ.
    #[error("two different roots for the same tree size {size} ({} and {}): the log forked or a root is wrong", hex::encode(.old_root), hex::encode(.new_root))]
    SameSizeRootsDiffer {
        size: u64,
        old_root: Hash,
        new_root: Hash,
    },
    /// A non-empty old tree claimed for size 0, which only has the empty root.
    #[error("old root {} is not the empty tree's root, but the old size is 0", hex::encode(.old_root))]
    EmptyRootMismatch { old_root: Hash },
}

/// Append-only Merkle tree keeping every complete aligned subtree hash in memory.
#[derive(Clone, Default)]
pub struct MerkleTree {
    /// `levels[k][i]` = hash of leaves `[i << k, (i + 1) << k)`; `levels[0]` are the leaf hashes.
    /// Invariant: `levels[k].len() == size >> k` for every stored k; `levels` may extend past
    /// the top with empty, pre-reserved levels (see [`MerkleTree::reserve`]).
    levels: Vec<Vec<Hash>>,
}

impl std::fmt::Debug for MerkleTree {
    // Printing the levels of a 10^8-leaf tree would be gigabytes: show the shape only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MerkleTree {{ size: {}, root: {} }}",
            self.size(),
            hex::encode(self.root())
        )
    }
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        MerkleTree { levels: Vec::new() }
    }

    /// An empty tree with room reserved for `leaves` leaves on every level.
    pub fn with_capacity(leaves: u64) -> Self {
        let mut tree = MerkleTree::new();
        tree.reserve(leaves);
        tree
    }

    /// Builds a tree from leaf hashes in order (reserves from the iterator's size hint).
    pub fn from_leaves<I: IntoIterator<Item = Hash>>(leaves: I) -> Self {
        let iter = leaves.into_iter();
        let mut tree = MerkleTree::with_capacity(iter.size_hint().0 as u64);
        for leaf in iter {
            tree.push(leaf);
        }
        tree
    }

    /// Reserves room for `additional` more leaves on every level, so a tree filled up to
    /// that size never reallocates (a level-0 reallocation at 10^8 leaves copies 3.2 GB).
    pub fn reserve(&mut self, additional: u64) {
        let total = self.size().saturating_add(additional);
        let mut k = 0;
        while total >> k > 0 {
            if k == self.levels.len() {
                self.levels.push(Vec::new());
            }
            let want = usize::try_from(total >> k).unwrap_or(usize::MAX);
            let level = &mut self.levels[k];
            level.reserve(want.saturating_sub(level.len()));
            k += 1;
        }
    }

    /// Appends one leaf hash; amortized O(1) hashing (each completed block is hashed once).
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut k = 0;
        loop {
            if k == self.levels.len() {
                self.levels.push(Vec::new());
            }
            let level = &mut self.levels[k];
            level.push(hash);
            let n = level.len();
            if n % 2 == 1 {
                break;
            }
            hash = node_hash(&level[n - 2], &level[n - 1]);
            k += 1;
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Root of the whole tree ([`empty_root`] when empty).
    pub fn root(&self) -> Hash {
        self.subtree_hash(0, self.size())
    }

    /// Root of the tree made of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        Ok(self.subtree_hash(0, size))
    }

    /// Hash of leaf `index`, if the tree has it.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        let i = usize::try_from(index).ok()?;
        self.levels.first()?.get(i).copied()
    }

    /// Inclusion proof (audit path) of leaf `index` in the tree of the first `size` leaves,
    /// leaf side first (RFC 9162 §2.1.3.1).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        // Walk from the root down to the leaf; each step contributes the sibling subtree.
        let mut path = Vec::with_capacity(64);
        let (mut lo, mut hi) = (0u64, size);
        while hi - lo > 1 {
            let k = split_point(hi - lo);
            if index < lo + k {
                path.push(self.subtree_hash(lo + k, hi));
                hi = lo + k;
            } else {
                path.push(self.subtree_hash(lo, lo + k));
                lo += k;
            }
        }
        path.reverse();
        debug_assert_eq!(path.len(), inclusion_proof_len(index, size));
        Ok(path)
    }

    /// Consistency proof that the tree of size `old` is a prefix of the tree of size `new`,
    /// leaf side first (RFC 9162 §2.1.4.1). Empty when `old` is 0 or equals `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(new)?;
        if old > new {
            return Err(ProofError::SizesOutOfOrder { old, new });
        }
        if old == 0 || old == new {
            return Ok(Vec::new());
        }
        // SUBPROOF(m, D[lo:hi], b), unrolled: each step appends one hash after the proof of
        // the subtree it descends into, so collect top-down and reverse at the end.
        let mut proof = Vec::with_capacity(65);
        let (mut lo, mut hi, mut m, mut whole) = (0u64, new, old, true);
        while m != hi - lo {
            let k = split_point(hi - lo);
            if m <= k {
                proof.push(self.subtree_hash(lo + k, hi));
                hi = lo + k;
            } else {
                proof.push(self.subtree_hash(lo, lo + k));
                lo += k;
                m -= k;
                whole = false;
            }
        }
        if !whole {
            proof.push(self.subtree_hash(lo, hi));
        }
        proof.reverse();
        debug_assert_eq!(Ok(proof.len()), consistency_proof_len(old, new));
        Ok(proof)
    }

    /// Drops every leaf at index `size` and beyond (crash recovery); no-op if already smaller.
    /// Keeps the allocated capacity, since the log usually grows back past `size`.
    pub fn truncate(&mut self, size: u64) {
        for (k, level) in self.levels.iter_mut().enumerate() {
            level.truncate(usize::try_from(size >> k).unwrap_or(usize::MAX));
        }
    }

    /// Heap bytes held by the stored hashes (capacity, not just length).
    pub fn memory_bytes(&self) -> usize {
        let hashes: usize = self.levels.iter().map(Vec::capacity).sum();
        hashes * std::mem::size_of::<Hash>()
            + self.levels.capacity() * std::mem::size_of::<Vec<Hash>>()
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        let tree_size = self.size();
        if size > tree_size {
            return Err(ProofError::SizeBeyondTree { size, tree_size });
        }
        Ok(())
    }

    /// MTH(D[lo:hi]) for a node of an RFC tree: `lo` is a multiple of the largest power of two
    /// not above `hi - lo` (true for every node, since nodes start at their parent's split).
    /// Folds the node's aligned blocks right to left; no allocation, O(log(hi - lo)) hashes.
    fn subtree_hash(&self, lo: u64, hi: u64) -> Hash {
        debug_assert!(lo <= hi && hi <= self.size());
        let width = hi - lo;
        if width == 0 {
            return empty_root();
        }
        debug_assert_eq!(
            lo & (prev_pow2(width) - 1),
            0,
            "node [{lo}, {hi}) is misaligned"
        );
        let mut bits = width;
        let mut end = hi;
        let mut acc: Option<Hash> = None;
        while bits != 0 {
            let k = bits.trailing_zeros();
            bits &= bits - 1;
            let start = end - (1u64 << k);
            let block = self.levels[k as usize][(start >> k) as usize];
            acc = Some(match acc {
                None => block,
                Some(right) => node_hash(&block, &right),
            });
            end = start;
        }
        acc.unwrap_or_else(empty_root)
    }
}

/// Largest power of two not above `n` (n > 0).
fn prev_pow2(n: u64) -> u64 {
    1u64 << (63 - n.leading_zeros())
}

/// RFC 6962 split: the largest power of two strictly below `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    prev_pow2(n - 1)
}

/// Splits an inclusion proof of `index` in a tree of `size` leaves into its `inner` part
/// (siblings below the point where the path joins the right edge) and its `border` part
/// (left siblings along the right edge). `index < size` is required.
fn inclusion_decomposition(index: u64, size: u64) -> (u32, u32) {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    // inner is 64 for leaf 0 of a tree of more than 2^63 leaves: a plain shift would overflow.
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner, border)
}

/// Number of hashes in the inclusion proof of `index` in a tree of `size` leaves.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let (inner, border) = inclusion_decomposition(index, size);
    (inner + border) as usize
}

/// Number of hashes in the consistency proof from `old` to `new` leaves.
fn consistency_proof_len(old: u64, new: u64) -> Result<usize, ProofError> {
    if old > new {
        return Err(ProofError::SizesOutOfOrder { old, new });
    }
    if old == 0 || old == new {
        return Ok(0);
    }
    let (inner, border) = inclusion_decomposition(old - 1, new);
    let shift = old.trailing_zeros();
    let seed = usize::from(!old.is_power_of_two());
    Ok(seed + (inner - shift + border) as usize)
}

/// Hashes `seed` up through `proof`, taking each hash as left or right sibling by the
/// matching bit of `index` (bit set: the path node is a right child).
fn chain_inner(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, h) in proof.iter().enumerate() {
        seed = if (index >> i) & 1 == 0 {
            node_hash(&seed, h)
        } else {
            node_hash(h, &seed)
        };
    }
    seed
}

/// Like [`chain_inner`] but only through the left siblings: rebuilds the old tree's node,
/// which has no right siblings inside the old tree.
fn chain_inner_right(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, h) in proof.iter().enumerate() {
        if (index >> i) & 1 == 1 {
            seed = node_hash(h, &seed);
        }
    }
    seed
}

/// Hashes `seed` up the right edge: every border sibling is a left sibling.
fn chain_border_right(mut seed: Hash, proof: &[Hash]) -> Hash {
    for h in proof {
        seed = node_hash(h, &seed);
    }
    seed
}

/// Checks that `leaf` (a leaf hash) is at `index` in the tree of `size` leaves with `root`
/// (RFC 9162 §2.1.3.2, in the equivalent inner/border form that checks the length first).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (inner, _) = inclusion_decomposition(index, size);
    let want = inclusion_proof_len(index, size);
    if proof.len() != want {
        return Err(ProofError::InclusionProofLength {
            index,
            size,
            got: proof.len(),
            want,
        });
    }
    let (inner_part, border_part) = proof.split_at(inner as usize);
    let computed = chain_border_right(chain_inner(*leaf, inner_part, index), border_part);
    if computed != *root {
        return Err(ProofError::RootMismatch {
            computed,
            expected: *root,
        });
    }
    Ok(())
}

/// Checks that the tree of size `old` with `old_root` is a prefix of the tree of size `new`
/// with `new_root` (RFC 9162 §2.1.4.2, in the equivalent inner/border form).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    let want = consistency_proof_len(old, new)?;
    if proof.len() != want {
        return Err(ProofError::ConsistencyProofLength {
            old,
            new,
            got: proof.len(),
            want,
        });
    }
    if old == new {
        if old_root != new_root {
            return Err(ProofError::SameSizeRootsDiffer {
                size: old,
                old_root: *old_root,
                new_root: *new_root,
            });
        }
        return Ok(());
    }
    if old == 0 {
        // Every tree extends the empty one; only the claimed empty root can be wrong.
        if *old_root != empty_root() {
            return Err(ProofError::EmptyRootMismatch {
                old_root: *old_root,
            });
        }
        return Ok(());
    }
    // The proof is the suffix (from level `shift` up) of the inclusion proof of leaf old-1
    // in the new tree, seeded with the largest complete subtree ending at old-1: that subtree
    // is the old root itself when `old` is a power of two, else the proof's first hash.
    let (inner, _) = inclusion_decomposition(old - 1, new);
    let shift = old.trailing_zeros();
    let (seed, rest) = if old.is_power_of_two() {
        (*old_root, proof)
    } else {
        (proof[0], &proof[1..])
    };
    let (inner_part, border_part) = rest.split_at((inner - shift) as usize);
    let mask = (old - 1) >> shift;
    let computed_old = chain_border_right(chain_inner_right(seed, inner_part, mask), border_part);
    if computed_old != *old_root {
        return Err(ProofError::OldRootMismatch {
            computed: computed_old,
            expected: *old_root,
        });
    }
    let computed_new = chain_border_right(chain_inner(seed, inner_part, mask), border_part);
    if computed_new != *new_root {
        return Err(ProofError::NewRootMismatch {
            computed: computed_new,
            expected: *new_root,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};
    use serde_json::Value;

    const VECTORS: &str = include_str!("../tests/data/tlog-vectors.json");

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).expect("vector file is JSON")
    }

    fn hash_hex(v: &Value) -> Hash {
        let bytes = hex::decode(v.as_str().expect("hex string")).expect("hex");
        bytes.try_into().expect("32-byte hash")
    }

    fn hashes_hex(v: &Value) -> Vec<Hash> {
        v.as_array().expect("array").iter().map(hash_hex).collect()
    }

    fn vector_tree() -> MerkleTree {
        let leaves = vectors()["leaves_hex"].as_array().unwrap().clone();
        MerkleTree::from_leaves(
            leaves
                .iter()
                .map(|l| leaf_hash(&hex::decode(l.as_str().unwrap()).unwrap())),
        )
    }

    /// splitmix64: a tiny seeded generator so property tests replay exactly.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn flip_bit(&mut self, h: &Hash) -> Hash {
            let mut out = *h;
            let bit = self.below(256) as usize;
            out[bit / 8] ^= 1 << (bit % 8);
            out
        }
    }

    fn synthetic_leaf(i: u64) -> Hash {
        leaf_hash(&i.to_le_bytes())
    }

    fn synthetic_tree(n: u64) -> MerkleTree {
        MerkleTree::from_leaves((0..n).map(synthetic_leaf))
    }

    // Reference implementations written straight from the RFC 9162 text, recursively and
    // with no shared code, to check the stored-subtree implementation against.
    fn ref_mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&ref_mth(&leaves[..k]), &ref_mth(&leaves[k..]))
            }
        }
    }

    fn ref_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = split_point(n as u64) as usize;
        let (mut p, sibling) = if m < k {
            (ref_path(m, &leaves[..k]), ref_mth(&leaves[k..]))
        } else {
            (ref_path(m - k, &leaves[k..]), ref_mth(&leaves[..k]))
        };
        p.push(sibling);
        p
    }

    fn ref_subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if b { Vec::new() } else { vec![ref_mth(leaves)] };
        }
        let k = split_point(n as u64) as usize;
        let (mut p, h) = if m <= k {
            (ref_subproof(m, &leaves[..k], b), ref_mth(&leaves[k..]))
        } else {
            (
                ref_subproof(m - k, &leaves[k..], false),
                ref_mth(&leaves[..k]),
            )
        };
        p.push(h);
        p
    }

    /// RFC 9162 §2.1.3.2, step by step.
    fn rfc_verify_inclusion(
        leaf: &Hash,
        index: u64,
        size: u64,
        path: &[Hash],
        root: &Hash,
    ) -> bool {
        if index >= size {
            return false;
        }
        let (mut f, mut s, mut r) = (index, size - 1, *leaf);
        for p in path {
            if s == 0 {
                return false;
            }
            if f & 1 == 1 || f == s {
                r = node_hash(p, &r);
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            } else {
                r = node_hash(&r, p);
            }
            f >>= 1;
            s >>= 1;
        }
        s == 0 && r == *root
    }

    /// RFC 9162 §2.1.4.2, step by step (defined for 0 < first < second).
    fn rfc_verify_consistency(
        first: u64,
        second: u64,
        fh: &Hash,
        sh: &Hash,
        path: &[Hash],
    ) -> bool {
        let mut path = path.to_vec();
        if path.is_empty() {
            return false;
        }
        if first.is_power_of_two() {
            path.insert(0, *fh);
        }
        let (mut f, mut s) = (first - 1, second - 1);
        while f & 1 == 1 {
            f >>= 1;
            s >>= 1;
        }
        let (mut fr, mut sr) = (path[0], path[0]);
        for c in &path[1..] {
            if s == 0 {
                return false;
            }
            if f & 1 == 1 || f == s {
                fr = node_hash(c, &fr);
                sr = node_hash(c, &sr);
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            } else {
                sr = node_hash(&sr, c);
            }
            f >>= 1;
            s >>= 1;
        }
        fr == *fh && sr == *sh && s == 0
    }

    #[test]
    fn vector_roots_every_size() {
        let v = vectors();
        assert_eq!(empty_root(), hash_hex(&v["empty_root_hex"]));
        assert_eq!(MerkleTree::new().root(), empty_root());
        let tree = vector_tree();
        assert_eq!(tree.size(), 8);
        let roots = v["roots_hex"].as_object().unwrap();
        assert_eq!(roots.len(), 8);
        let mut fresh = MerkleTree::new();
        for (size, root) in roots {
            let size: u64 = size.parse().unwrap();
            let want = hash_hex(root);
            assert_eq!(tree.root_at(size), Ok(want), "root_at({size})");
            while fresh.size() < size {
                fresh.push(tree.leaf(fresh.size()).unwrap());
            }
            assert_eq!(fresh.root(), want, "fresh tree of {size}");
        }
        assert_eq!(tree.root_at(0), Ok(empty_root()));
    }

    #[test]
    fn vector_inclusion_proofs() {
        let v = vectors();
        let tree = vector_tree();
        let cases = v["inclusion"].as_array().unwrap();
        assert!(cases.len() >= 20, "vector file lost its inclusion cases");
        for case in cases {
            let index = case["index"].as_u64().unwrap();
            let size = case["tree_size"].as_u64().unwrap();
            let want = hashes_hex(&case["path_hex"]);
            assert_eq!(
                tree.inclusion_proof(index, size).as_ref(),
                Ok(&want),
                "leaf {index} of {size}"
            );
            let root = tree.root_at(size).unwrap();
            let leaf = tree.leaf(index).unwrap();
            assert_eq!(verify_inclusion(&leaf, index, size, &want, &root), Ok(()));
        }
    }

    #[test]
    fn vector_consistency_proofs() {
        let v = vectors();
        let tree = vector_tree();
        let cases = v["consistency"].as_array().unwrap();
        assert!(cases.len() >= 15, "vector file lost its consistency cases");
        for case in cases {
            let old = case["from"].as_u64().unwrap();
            let new = case["to"].as_u64().unwrap();
            let want = hashes_hex(&case["proof_hex"]);
            assert_eq!(
                tree.consistency_proof(old, new).as_ref(),
                Ok(&want),
                "{old} -> {new}"
            );
            let (old_root, new_root) = (tree.root_at(old).unwrap(), tree.root_at(new).unwrap());
            assert_eq!(
                verify_consistency(old, new, &old_root, &new_root, &want),
                Ok(())
            );
        }
    }

    #[test]
    fn proofs_match_rfc_reference_exhaustively_small() {
        let leaves: Vec<Hash> = (0..40).map(synthetic_leaf).collect();
        let tree = MerkleTree::from_leaves(leaves.iter().copied());
        for n in 0..=leaves.len() {
            assert_eq!(
                tree.root_at(n as u64),
                Ok(ref_mth(&leaves[..n])),
                "root {n}"
            );
            for m in 0..n {
                let got = tree.inclusion_proof(m as u64, n as u64).unwrap();
                assert_eq!(got, ref_path(m, &leaves[..n]), "path {m} of {n}");
            }
            for m in 1..n {
                let got = tree.consistency_proof(m as u64, n as u64).unwrap();
                assert_eq!(
                    got,
                    ref_subproof(m, &leaves[..n], true),
                    "consistency {m} -> {n}"
                );
            }
        }
    }

    #[test]
    fn property_random_sizes_proofs_verify_and_tamper_fails() {
        let mut rng = Rng(0x5eed_0001);
        for _ in 0..6 {
            let n = 1 + rng.below(300);
            let tree = synthetic_tree(n);
            let mut fresh = MerkleTree::new();
            for k in 0..=n {
                assert_eq!(tree.root_at(k), Ok(fresh.root()), "root_at({k}) of {n}");
                fresh.push(synthetic_leaf(k));
            }
            for _ in 0..150 {
                let size = 1 + rng.below(n);
                let index = rng.below(size);
                check_inclusion_tamper(&tree, index, size, &mut rng);
                let new = rng.below(n + 1);
                let old = rng.below(new + 1);
                check_consistency_tamper(&tree, old, new, &mut rng);
            }
        }
    }

    fn check_inclusion_tamper(tree: &MerkleTree, index: u64, size: u64, rng: &mut Rng) {
        let proof = tree.inclusion_proof(index, size).unwrap();
        let root = tree.root_at(size).unwrap();
        let leaf = tree.leaf(index).unwrap();
        let ctx = format!("leaf {index} of {size}");
        assert_eq!(
            verify_inclusion(&leaf, index, size, &proof, &root),
            Ok(()),
            "{ctx}"
        );
        assert!(
            rfc_verify_inclusion(&leaf, index, size, &proof, &root),
            "{ctx}"
        );
        let bad_leaf = rng.flip_bit(&leaf);
        assert!(
            verify_inclusion(&bad_leaf, index, size, &proof, &root).is_err(),
            "{ctx}"
        );
        let bad_root = rng.flip_bit(&root);
        assert!(
            verify_inclusion(&leaf, index, size, &proof, &bad_root).is_err(),
            "{ctx}"
        );
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i] = rng.flip_bit(&bad[i]);
            assert!(
                verify_inclusion(&leaf, index, size, &bad, &root).is_err(),
                "{ctx} hash {i}"
            );
            assert!(
                !rfc_verify_inclusion(&leaf, index, size, &bad, &root),
                "{ctx} hash {i}"
            );
        }
        // Wrong lengths fail in both our check and the RFC's own algorithm.
        let mut longer = proof.clone();
        longer.push(root);
        for bad in [&proof[..proof.len().saturating_sub(1)], &longer[..]] {
            if bad.len() == proof.len() {
                continue;
            }
            assert!(
                verify_inclusion(&leaf, index, size, bad, &root).is_err(),
                "{ctx}"
            );
            assert!(
                !rfc_verify_inclusion(&leaf, index, size, bad, &root),
                "{ctx}"
            );
        }
    }

    fn check_consistency_tamper(tree: &MerkleTree, old: u64, new: u64, rng: &mut Rng) {
        let proof = tree.consistency_proof(old, new).unwrap();
        let (old_root, new_root) = (tree.root_at(old).unwrap(), tree.root_at(new).unwrap());
        let ctx = format!("consistency {old} -> {new}");
        assert_eq!(
            verify_consistency(old, new, &old_root, &new_root, &proof),
            Ok(()),
            "{ctx}"
        );
        let strict = 0 < old && old < new;
        if strict {
            assert!(
                rfc_verify_consistency(old, new, &old_root, &new_root, &proof),
                "{ctx}"
            );
        }
        let bad_old = rng.flip_bit(&old_root);
        assert!(
            verify_consistency(old, new, &bad_old, &new_root, &proof).is_err(),
            "{ctx}"
        );
        if old > 0 {
            // From the empty tree every new root is consistent: nothing to tamper with.
            let bad_new = rng.flip_bit(&new_root);
            assert!(
                verify_consistency(old, new, &old_root, &bad_new, &proof).is_err(),
                "{ctx}"
            );
        }
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i] = rng.flip_bit(&bad[i]);
            assert!(
                verify_consistency(old, new, &old_root, &new_root, &bad).is_err(),
                "{ctx} {i}"
            );
            assert!(
                !rfc_verify_consistency(old, new, &old_root, &new_root, &bad),
                "{ctx} {i}"
            );
        }
        let mut longer = proof.clone();
        longer.push(new_root);
        assert!(
            verify_consistency(old, new, &old_root, &new_root, &longer).is_err(),
            "{ctx}"
        );
        if strict {
            assert!(
                !rfc_verify_consistency(old, new, &old_root, &new_root, &longer),
                "{ctx}"
            );
            let shorter = &proof[..proof.len() - 1];
            assert!(verify_consistency(old, new, &old_root, &new_root, shorter).is_err());
            assert!(
                !rfc_verify_consistency(old, new, &old_root, &new_root, shorter),
                "{ctx}"
            );
        }
    }

    #[test]
    fn truncate_then_regrow_matches_fresh_tree() {
        let mut tree = synthetic_tree(300);
        let full_root = tree.root();
        tree.truncate(137);
        assert_eq!(tree.size(), 137);
        assert_eq!(tree.root(), synthetic_tree(137).root());
        assert_eq!(tree.leaf(137), None);
        assert!(tree.inclusion_proof(136, 138).is_err());
        tree.truncate(500); // larger than the tree: nothing to drop
        assert_eq!(tree.size(), 137);
        for i in 137..300 {
            tree.push(synthetic_leaf(i));
        }
        assert_eq!(tree.root(), full_root);
        tree.truncate(0);
        assert_eq!((tree.size(), tree.root()), (0, empty_root()));
    }

    #[test]
    fn capacity_constructors_and_memory() {
        let n = 1000;
        let pushed = synthetic_tree(n);
        let mut reserved = MerkleTree::with_capacity(n);
        let before = reserved.memory_bytes();
        // Levels hold n + n/2 + n/4 + … ≥ 2n - 10 hashes once reserved.
        assert!(
            before >= (2 * n as usize - 10) * 32,
            "reserved only {before} bytes"
        );
        for i in 0..n {
            reserved.push(synthetic_leaf(i));
        }
        assert_eq!(reserved.memory_bytes(), before, "reserved tree reallocated");
        assert_eq!(reserved.root(), pushed.root());
        assert_eq!(reserved.leaf(n - 1), Some(synthetic_leaf(n - 1)));
        assert_eq!(reserved.leaf(n), None);
        expect!["MerkleTree { size: 3, root: 60bcae7f87810b5af37bb60eebb0e9adea015f2ce41a7ac84852c4bfc87d8920 }"].assert_eq(&format!("{:?}", synthetic_tree(3)));
    }

    #[test]
    fn proof_lengths_at_u64_edges_do_not_overflow() {
        let h = [7u8; 32];
        for (index, size, want) in [(0, 1, 0), (u64::MAX - 1, u64::MAX, 63), (0, u64::MAX, 64)] {
            let got = verify_inclusion(&h, index, size, &[], &h);
            if want == 0 {
                assert_eq!(got, Ok(()));
            } else {
                assert_eq!(
                    got,
                    Err(ProofError::InclusionProofLength {
                        index,
                        size,
                        got: 0,
                        want
                    })
                );
            }
        }
        for (old, new) in [(u64::MAX - 1, u64::MAX), (1 << 63, u64::MAX), (1, u64::MAX)] {
            let err = verify_consistency(old, new, &h, &h, &[]).unwrap_err();
            assert!(
                matches!(err, ProofError::ConsistencyProofLength { got: 0, .. }),
                "{err}"
            );
        }
    }

    fn check_error(result: Result<impl std::fmt::Debug, ProofError>, expect: Expect) {
        match result {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => expect.assert_eq(&e.to_string()),
        }
    }

    #[test]
    fn error_messages() {
        let tree = vector_tree();
        let root = tree.root();
        let leaf = tree.leaf(2).unwrap();
        let proof = tree.inclusion_proof(2, 8).unwrap();
        check_error(
            tree.inclusion_proof(8, 8),
            expect!["leaf index 8 is out of range for a tree of size 8: valid indices are 0..8"],
        );
        check_error(
            tree.inclusion_proof(0, 9),
            expect!["tree size 9 is beyond this tree's 8 leaves: ask for a size at most 8"],
        );
        check_error(
            tree.root_at(9),
            expect!["tree size 9 is beyond this tree's 8 leaves: ask for a size at most 8"],
        );
        check_error(
            tree.consistency_proof(5, 3),
            expect!["old tree size 5 is larger than new tree size 3: a log only grows, swap them or fix the sizes"],
        );
        check_error(
            verify_inclusion(&leaf, 2, 8, &proof[..2], &root),
            expect!["inclusion proof for leaf 2 in a tree of size 8 has 2 hashes, it must have 3"],
        );
        check_error(
            verify_inclusion(&leaf, 3, 8, &proof, &root),
            expect!["inclusion proof leads to root e741a13d82e3e8821367fe881be80aa5d7e41226a27c4b210931d41993ad592b but the expected root is 5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328: the leaf, index, proof or root is wrong"],
        );
        let cproof = tree.consistency_proof(3, 8).unwrap();
        let old_root = tree.root_at(3).unwrap();
        check_error(
            verify_consistency(3, 8, &old_root, &root, &[]),
            expect!["consistency proof from size 3 to size 8 has 0 hashes, it must have 4"],
        );
        check_error(
            verify_consistency(3, 8, &root, &root, &cproof),
            expect!["consistency proof rebuilds old root aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77 but the old root given is 5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
        );
        check_error(
            verify_consistency(3, 8, &old_root, &old_root, &cproof),
            expect!["consistency proof rebuilds new root 5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328 but the new root given is aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"],
        );
        check_error(
            verify_consistency(8, 8, &old_root, &root, &[]),
            expect!["two different roots for the same tree size 8 (aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77 and 5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328): the log forked or a root is wrong"],
        );
        check_error(
            verify_consistency(0, 8, &old_root, &root, &[]),
            expect!["old root aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77 is not the empty tree's root, but the old size is 0"],
        );
        check_error(
            verify_consistency(0, 8, &empty_root(), &root, &cproof),
            expect!["consistency proof from size 0 to size 8 has 4 hashes, it must have 0"],
        );
    }
}

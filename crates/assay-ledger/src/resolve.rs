//! Decoding entries whose series are given by reference ([`SeriesRef`], entry kind 0x04):
//! a reference is resolved by reading the entry it names from the ledger.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::entry::{Entry, Labels, SeriesRef};

/// Resolved references kept at most; past it the memory starts afresh (and entries are
/// read again as references need them).
const RESOLVED_MAX: usize = 4 << 20;

/// Decodes entries of one ledger, resolving series references by reading the entries
/// they name; remembers every inline series of each entry read, so replaying a ledger
/// reads each referenced entry about once.
#[derive(Default)]
pub struct SeriesResolver {
    known: FxHashMap<SeriesRef, Labels>,
    /// Entries whose inline series are all in `known`.
    entries_read: FxHashSet<u64>,
}

impl SeriesResolver {
    /// The entry at leaf index `index` (its `bytes`), references resolved through `read`
    /// (entry bytes by index: `Ledger::entry`, or `ScannedEntries::entry` for a ledger only
    /// scanned). A reference must name an inline series of an earlier entry; the error says
    /// which rule failed.
    pub fn decode(
        &mut self,
        read: &dyn Fn(u64) -> Result<Vec<u8>, String>,
        index: u64,
        bytes: &[u8],
    ) -> Result<Entry, String> {
        if self.known.len() > RESOLVED_MAX {
            self.known.clear();
            self.entries_read.clear();
        }
        let mut failure: Option<String> = None;
        let (known, done) = (&mut self.known, &mut self.entries_read);
        let decoded = Entry::decode_resolved(bytes, &mut |r: SeriesRef| {
            if r.entry >= index {
                failure = Some(format!(
                    "entry {index} refers to entry {}, which is not before it",
                    r.entry
                ));
                return None;
            }
            if !known.contains_key(&r) && done.insert(r.entry) {
                let target =
                    read(r.entry).and_then(|b| Entry::inline_series(&b).map_err(|e| e.to_string()));
                match target {
                    Ok(series) => known.extend(series.into_iter().map(|(position, l)| {
                        (
                            SeriesRef {
                                entry: r.entry,
                                position,
                            },
                            l,
                        )
                    })),
                    Err(e) => {
                        failure = Some(format!(
                            "entry {index} refers to entry {}, which cannot be read: {e}",
                            r.entry
                        ));
                        return None;
                    }
                }
            }
            let found = known.get(&r).cloned();
            if found.is_none() {
                failure = Some(format!(
                    "entry {index} refers to series {} of entry {}, which does not list \
                     it inline",
                    r.position, r.entry
                ));
            }
            found
        });
        decoded.map_err(|e| failure.unwrap_or_else(|| e.to_string()))
    }
}

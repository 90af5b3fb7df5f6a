//! LEB128 varints and a bounds-checked reader.

use crate::ColumnError;

/// Appends `v` as an unsigned LEB128 varint (shortest form).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes [`put_varint`] writes for `v`.
pub(crate) fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Zig-zag: small magnitudes of either sign become small unsigned numbers.
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends `v` zig-zagged as a varint.
pub(crate) fn put_zz(out: &mut Vec<u8>, v: i64) {
    put_varint(out, zigzag(v));
}

/// Reads fields from a byte slice; every read names what it reads for the error.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, ColumnError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or(ColumnError::Truncated { what, at: self.at })?;
        self.at += 1;
        Ok(b)
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ColumnError> {
        let at = self.at;
        let end = at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(ColumnError::Truncated { what, at })?;
        self.at = end;
        Ok(&self.bytes[at..end])
    }

    pub(crate) fn u64le(&mut self, what: &'static str) -> Result<u64, ColumnError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    #[inline]
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, ColumnError> {
        let at = self.at;
        // Most codes of a column take one byte (a regular scrape's delta-of-delta is 0).
        if let Some(&b) = self.bytes.get(at) {
            if b < 0x80 {
                self.at = at + 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_long(what, at)
    }

    /// [`Reader::varint`] of two bytes or more (or none: the error).
    fn varint_long(&mut self, what: &'static str, at: usize) -> Result<u64, ColumnError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self
                .u8(what)
                .map_err(|_| ColumnError::Truncated { what, at })?;
            let low = (b & 0x7f) as u64;
            if shift == 63 && low > 1 {
                return Err(ColumnError::Varint { what, at });
            }
            v |= low << shift;
            if b & 0x80 == 0 {
                // A zero last byte after the first pads the varint: not the shortest form.
                if b == 0 && shift > 0 {
                    return Err(ColumnError::Varint { what, at });
                }
                return Ok(v);
            }
        }
        Err(ColumnError::Varint { what, at })
    }

    #[inline]
    pub(crate) fn zz(&mut self, what: &'static str) -> Result<i64, ColumnError> {
        self.varint(what).map(unzigzag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_roundtrip_and_reject_padding_and_overflow() {
        for v in [0, 1, 127, 128, 300, u64::MAX / 3, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut r = Reader::new(&out);
            assert_eq!(r.varint("v"), Ok(v));
            assert_eq!(r.remaining(), 0);
        }
        for v in [0, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        let padded = Reader::new(&[0x80, 0x00]).varint("v");
        assert_eq!(padded, Err(ColumnError::Varint { what: "v", at: 0 }));
        let long = [0xff; 9].iter().copied().chain([0x02]).collect::<Vec<u8>>();
        assert!(matches!(
            Reader::new(&long).varint("v"),
            Err(ColumnError::Varint { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x80]).varint("v"),
            Err(ColumnError::Truncated { at: 0, .. })
        ));
    }
}

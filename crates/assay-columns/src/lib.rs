//! Column codecs for samples: a column of timestamps or of float values in, bytes out.
//!
//! Pure functions, no I/O. Two users: the time-series store's sealed chunks (which keep the
//! bytes as they are, so the `*_packed` encoders bit-pack when that is smaller) and the
//! ledger's storage codec (which compresses the bytes with zstd afterwards, so the plain
//! encoders keep byte-aligned varints that zstd crushes). One decoder per column kind reads
//! every layout either encoder writes.
//!
//! * Timestamps ([`encode_timestamps`]): first value, first delta, then delta-of-delta, as
//!   zig-zag LEB128 varints; wrapping arithmetic, so any `i64` sequence round-trips.
//!   Regular scrapes cost one byte (a 0) per sample.
//! * Values ([`encode_values`]): lossless to the bit. Each value becomes a decimal
//!   `mantissa × 10^exponent` (fewest fractional digits that give the value back); the column
//!   gets one common exponent, and the mantissas (all below 2^53) are stored as deltas or
//!   delta-of-deltas, whichever is smaller. NaNs (any payload, Prometheus' stale marker
//!   included), ±Inf, -0.0, subnormals and any value whose decimal does not decode to the
//!   exact same bits go to an exception list (position, raw bits).
//!
//! Decoders never panic: malformed input yields a [`ColumnError`] naming what and the byte
//! offset. They allocate at most `count` items (the caller bounds `count`).
//!
//! Format (all integers zig-zag or plain LEB128 varints in their shortest form):
//!
//! ```text
//! timestamps := ints(count)                                  (nothing when count = 0)
//! values     := exponent:zz exceptions:varint (gap:varint bits:u64le){exceptions}
//!               ints(count - exceptions)                     (nothing when count = 0)
//! ints(n)    := mode:u8 first:zz body                        (nothing when n = 0)
//!   mode & 3 = 0 constant: body is empty (all n equal first)
//!            = 1 delta:    body codes the n-1 deltas
//!            = 2 delta-of-delta: body := first_delta:zz, then codes the n-2 dods
//!   mode & 4 = 0: the codes are zz varints
//!            = 4: packed := min:zz gcd:varint width:u8 bits   (code = min + gcd × u, u in
//!                 `width` bits each, least significant bit first)
//! ```
//!
//! An exception's `gap` is its position minus the previous exception's position plus one
//! (the first: its position). A decimal value is `mantissa / 10^-e` for `e < 0`, else
//! `mantissa × 10^e`, with |mantissa| < 2^53 and |e| ≤ 22: both factors are exact doubles, so
//! one correctly rounded IEEE operation gives the value (Clinger's fast path).

mod decimal;
mod ints;
mod varint;

pub use decimal::{decode_values, encode_values, encode_values_packed};
pub use ints::{decode_timestamps, encode_timestamps, encode_timestamps_packed};

/// Why bytes are not a column this crate wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    /// The input ended inside `what`.
    #[error("column truncated: {what} at byte {at} runs past the end of the input")]
    Truncated { what: &'static str, at: usize },
    /// A varint is longer than its shortest form or overflows 64 bits.
    #[error("column malformed: {what} at byte {at} is not a minimal 64-bit varint")]
    Varint { what: &'static str, at: usize },
    /// A field holds a value no encoder writes.
    #[error("column malformed: {what} at byte {at} is out of range")]
    Invalid { what: &'static str, at: usize },
}

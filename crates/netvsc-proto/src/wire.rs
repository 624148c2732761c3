//! Crate-private byte helpers: zero-filled prefix reads of wire structs and bounded (offset, length) regions.

use crate::error::{ProtoError, Result, need, room};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Copy a `T` out of `bytes`, requiring at least `min_len` bytes; bytes of `T` beyond the input are zero.
/// Lets a peer send a short form of a struct (e.g. 28-byte NVSP replies) without reading past the input.
pub(crate) fn read_prefix<T: FromBytes + IntoBytes>(
    what: &'static str,
    bytes: &[u8],
    min_len: usize,
) -> Result<T> {
    need(what, bytes.len(), min_len)?;
    let mut v = T::new_zeroed();
    let dst = v.as_mut_bytes();
    let n = dst.len().min(bytes.len());
    dst[..n].copy_from_slice(&bytes[..n]);
    Ok(v)
}

/// Write `v` at `off` in `out`.
pub(crate) fn write_at<T: IntoBytes + Immutable>(
    what: &'static str,
    out: &mut [u8],
    off: usize,
    v: &T,
) -> Result<()> {
    let b = v.as_bytes();
    let end = off + b.len();
    room(what, out.len(), end)?;
    out[off..end].copy_from_slice(b);
    Ok(())
}

/// Copy `src` to `off` in `out`.
pub(crate) fn copy_at(what: &'static str, out: &mut [u8], off: usize, src: &[u8]) -> Result<()> {
    let end = off + src.len();
    room(what, out.len(), end)?;
    out[off..end].copy_from_slice(src);
    Ok(())
}

/// Little-endian u32 at `off` (caller has checked the length).
pub(crate) fn u32_at(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]])
}

/// A peer-supplied region described by an offset/length pair.
pub(crate) struct Region {
    pub what: &'static str,
    /// Name of the offset field and its byte position (for errors).
    pub field: &'static str,
    pub field_at: usize,
    /// The region starts at `base + offset`.
    pub base: usize,
    pub offset: u32,
    pub len: u32,
    /// The region must lie within `[lo, hi)`.
    pub lo: usize,
    pub hi: usize,
}

impl Region {
    /// Validate and return the byte range (in the message's coordinates). An empty region is always accepted and
    /// maps to `hi..hi` when its offset is out of range (peers put 0 or junk there when the length is 0).
    pub(crate) fn check(&self) -> Result<core::ops::Range<usize>> {
        let start = self.base as u64 + u64::from(self.offset);
        let end = start + u64::from(self.len);
        if self.len == 0 {
            let s = if start >= self.lo as u64 && start <= self.hi as u64 {
                start as usize
            } else {
                self.hi
            };
            return Ok(s..s);
        }
        if start < self.lo as u64 || end > self.hi as u64 {
            return Err(ProtoError::OutOfRange {
                what: self.what,
                field: self.field,
                offset: self.field_at,
                value: u64::from(self.offset),
                limit: self.hi as u64,
            });
        }
        Ok(start as usize..end as usize)
    }
}

/// Declare a `#[repr(C)]` wire struct with zerocopy derives and a compile-time size assert.
macro_rules! wire {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? } = $size:expr) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }
        const _: () = assert!(core::mem::size_of::<$name>() == $size);
    };
}
pub(crate) use wire;

//! Typed parse/build errors. Every variant names the message (`what`), the field, the offending value and the
//! byte offset where it sits, so a caller can log a hostile or broken peer message precisely and drop it.

/// Error returned by every parse and build function of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The input ends before a fixed-size part of the message.
    #[error("{what}: truncated: need {needed} bytes, have {have}")]
    Truncated {
        what: &'static str,
        needed: usize,
        have: usize,
    },
    /// An offset/length pair points outside the message (or overlaps its fixed header).
    #[error(
        "{what}: {field} at byte {offset} = {value:#x} points outside the message (limit {limit})"
    )]
    OutOfRange {
        what: &'static str,
        field: &'static str,
        offset: usize,
        value: u64,
        limit: u64,
    },
    /// A field holds a value the format does not allow (bad alignment, wrong object type, zero size, ...).
    #[error("{what}: {field} at byte {offset} = {value:#x} is invalid: {reason}")]
    Invalid {
        what: &'static str,
        field: &'static str,
        offset: usize,
        value: u64,
        reason: &'static str,
    },
    /// The output buffer handed to a builder is too small.
    #[error("{what}: output buffer too small: need {needed} bytes, have {have}")]
    BufferTooSmall {
        what: &'static str,
        needed: usize,
        have: usize,
    },
}

/// Result alias used throughout the crate.
pub type Result<T> = core::result::Result<T, ProtoError>;

/// Check that `have >= needed` for a parse.
pub(crate) fn need(what: &'static str, have: usize, needed: usize) -> Result<()> {
    if have < needed {
        Err(ProtoError::Truncated { what, needed, have })
    } else {
        Ok(())
    }
}

/// Check that an output buffer holds `needed` bytes.
pub(crate) fn room(what: &'static str, have: usize, needed: usize) -> Result<()> {
    if have < needed {
        Err(ProtoError::BufferTooSmall { what, needed, have })
    } else {
        Ok(())
    }
}

//! Typed errors of the ring. A peer can make a read or write fail with [`Corruption`] but can never
//! make it panic: every value it controls is copied out, then checked against the rules below.

/// Which peer-controlled value broke the ring rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorruptField {
    /// The producer's write index is past the data area or not 8-byte aligned.
    WriteIndex,
    /// The consumer's read index is past the data area or not 8-byte aligned.
    ReadIndex,
    /// Fewer bytes are published than a descriptor plus trailer (24).
    Truncated,
    /// The descriptor's type is not one netvsc uses (6, 7, 9, 11).
    PacketType,
    /// `offset8` is below 2: the header would be shorter than the descriptor.
    HeaderTooShort,
    /// `offset8` is above `len8`: the header would end after the packet.
    HeaderBeyondPacket,
    /// `len8 * 8 + 8` is more than the bytes the producer published.
    PacketBeyondData,
    /// `flags` has a bit other than bit 0 (completion requested).
    Flags,
    /// A transfer-page or GPA-direct packet whose header cannot hold its 8-byte sub-header.
    KindHeaderTooShort,
    /// A range count whose ranges do not fit in the header (`offset8 * 8`).
    RangeCount,
    /// A GPA-direct packet with no ranges.
    GpaRangeCountZero,
}

impl CorruptField {
    /// Short name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WriteIndex => "write index",
            Self::ReadIndex => "read index",
            Self::Truncated => "bytes available (less than a descriptor)",
            Self::PacketType => "descriptor type",
            Self::HeaderTooShort => "descriptor offset8 (< 2)",
            Self::HeaderBeyondPacket => "descriptor offset8 (> len8)",
            Self::PacketBeyondData => "descriptor len8 (beyond published data)",
            Self::Flags => "descriptor flags",
            Self::KindHeaderTooShort => "packet header length (no room for sub-header)",
            Self::RangeCount => "range count (ranges exceed the header)",
            Self::GpaRangeCountZero => "GPA-direct range count (zero)",
        }
    }
}

impl std::fmt::Display for CorruptField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A peer value that breaks the ring rules: what it was, its value and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("corrupt ring: {what} = {value:#x} (packet at data offset {offset:#x})")]
pub struct Corruption {
    /// The field.
    pub what: CorruptField,
    /// Data-area offset of the packet concerned; for an index, the cursor it was checked against.
    pub offset: u32,
    /// The offending value as read.
    pub value: u64,
}

impl Corruption {
    pub(crate) fn new(what: CorruptField, offset: u32, value: u64) -> Self {
        Self {
            what,
            offset,
            value,
        }
    }
}

/// Why [`RingReader::read`](crate::RingReader::read) returned no packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// No packet is published.
    #[error("ring is empty")]
    Empty,
    /// The peer broke the ring rules; the channel should be torn down.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
}

/// Why [`RingWriter::try_write`](crate::RingWriter::try_write) did not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Not enough free space now; `needed` is the packet's ring size including its trailer.
    #[error("ring full: {needed} bytes needed")]
    Full {
        /// Bytes the packet takes in the ring (padded packet + 8-byte trailer).
        needed: u32,
    },
    /// The packet can never fit: `len` (header + payload) exceeds `max`.
    #[error("packet of {len} bytes exceeds the ring's maximum of {max}")]
    TooLarge {
        /// Header + payload length (saturated to u32).
        len: u32,
        /// Largest header + payload length this ring accepts.
        max: u32,
    },
    /// The peer broke the ring rules (its read index).
    #[error(transparent)]
    Corrupt(#[from] Corruption),
}

/// Why [`Ring::new`](crate::Ring::new) refused a memory window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The window is not a 4096-byte header plus a non-zero multiple of 4096 data bytes below 2^32.
    #[error(
        "ring of {len} bytes: need 4096 header bytes plus a non-zero multiple of 4096 below 2^32"
    )]
    BadSize {
        /// Length of the window given.
        len: usize,
    },
    /// The header words cannot be reached atomically (misaligned window).
    #[error("ring header is not accessible: {0}")]
    Mem(#[from] crate::shared::MemError),
}

//! Packet layouts: the 16-byte descriptor, the transfer-page and GPA-direct sub-headers and their
//! ranges, the builders a writer takes ([`OutgoingPacket`]) and the views a reader hands out
//! ([`IncomingPacket`]). A packet is header + payload padded to 8, then an 8-byte trailer.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Descriptor type: in-band data.
pub const TYPE_INBAND: u16 = 6;
/// Descriptor type: data in transfer pages (host→guest receive).
pub const TYPE_TRANSFER_PAGES: u16 = 7;
/// Descriptor type: data described by guest page numbers (guest→host send).
pub const TYPE_GPA_DIRECT: u16 = 9;
/// Descriptor type: completion of an earlier packet.
pub const TYPE_COMPLETION: u16 = 11;
/// Descriptor flag bit 0: the sender wants a completion.
pub const FLAG_COMPLETION_REQUESTED: u16 = 1;
/// Bytes of the descriptor.
pub const DESCRIPTOR_SIZE: usize = 16;
/// Bytes of the trailer that follows every packet.
pub const TRAILER_SIZE: usize = 8;
/// Descriptor + transfer-page or GPA-direct sub-header.
pub const KIND_HEADER_SIZE: usize = 24;

/// The descriptor at the start of every packet.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct PacketDescriptor {
    /// Packet type (6, 7, 9, 11 for netvsc).
    pub packet_type: u16,
    /// Header length / 8; the payload starts at `offset8 * 8`.
    pub offset8: u16,
    /// Packet length / 8 (header + payload + padding, without the trailer).
    pub len8: u16,
    /// Bit 0: completion requested.
    pub flags: u16,
    /// Transaction id, echoed by the completion.
    pub trans_id: u64,
}
const _: () = assert!(size_of::<PacketDescriptor>() == DESCRIPTOR_SIZE);

/// Sub-header of a transfer-page packet (type 7), followed by `count` [`TransferRange`]s.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TransferPageHeader {
    /// Transfer page set (receive buffer) id.
    pub set_id: u16,
    /// Non-zero when the sender owns the page set.
    pub sender_owns: u8,
    /// Reserved.
    pub reserved: u8,
    /// Number of ranges.
    pub count: u32,
}
const _: () = assert!(size_of::<TransferPageHeader>() == 8);

/// Sub-header of a GPA-direct packet (type 9), followed by `count` [`GpaRange`]s.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct GpaDirectHeader {
    /// Reserved.
    pub reserved: u32,
    /// Number of ranges.
    pub count: u32,
}
const _: () = assert!(size_of::<GpaDirectHeader>() == 8);

/// A byte range inside a transfer page set.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TransferRange {
    /// Length in bytes.
    pub byte_count: u32,
    /// Offset from the start of the page set.
    pub byte_offset: u32,
}
const _: () = assert!(size_of::<TransferRange>() == 8);

/// A byte range inside one 4 KiB guest page.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GpaRange {
    /// Length in bytes.
    pub len: u32,
    /// Offset within the page.
    pub offset: u32,
    /// Page frame number (4 KiB frames).
    pub pfn: u64,
}
const _: () = assert!(size_of::<GpaRange>() == 16);

/// What an outgoing packet is.
#[derive(Debug, Clone, Copy)]
pub enum OutgoingKind<'a> {
    /// Type 6: the payload is the data.
    InBand,
    /// Type 11: completion; `trans_id` must echo the request.
    Completion,
    /// Type 7: data lives in a transfer page set at `ranges`.
    TransferPages {
        /// Page set id.
        set_id: u16,
        /// Ranges into the page set.
        ranges: &'a [TransferRange],
    },
    /// Type 9: data lives in guest pages.
    GpaDirect {
        /// One range per 4 KiB page.
        ranges: &'a [GpaRange],
    },
}

impl OutgoingKind<'_> {
    /// Descriptor type value.
    pub fn packet_type(&self) -> u16 {
        match self {
            Self::InBand => TYPE_INBAND,
            Self::Completion => TYPE_COMPLETION,
            Self::TransferPages { .. } => TYPE_TRANSFER_PAGES,
            Self::GpaDirect { .. } => TYPE_GPA_DIRECT,
        }
    }

    /// Header length in bytes (descriptor + sub-header + ranges).
    pub fn header_len(&self) -> u64 {
        match self {
            Self::InBand | Self::Completion => DESCRIPTOR_SIZE as u64,
            Self::TransferPages { ranges, .. } => KIND_HEADER_SIZE as u64 + 8 * ranges.len() as u64,
            Self::GpaDirect { ranges } => KIND_HEADER_SIZE as u64 + 16 * ranges.len() as u64,
        }
    }
}

/// A packet to write: header fields plus a payload gathered from several slices.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingPacket<'a> {
    /// Packet kind and its sub-header.
    pub kind: OutgoingKind<'a>,
    /// Transaction id.
    pub trans_id: u64,
    /// Set flag bit 0.
    pub completion_requested: bool,
    /// Payload pieces, written back to back and padded to 8.
    pub payload: &'a [&'a [u8]],
}

impl OutgoingPacket<'_> {
    /// Payload length (sum of the pieces).
    pub fn payload_len(&self) -> u64 {
        self.payload.iter().map(|p| p.len() as u64).sum()
    }

    /// Header + payload length, unpadded.
    pub fn len(&self) -> u64 {
        self.kind.header_len() + self.payload_len()
    }

    /// Always false: a packet has at least its descriptor.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes this packet takes in the ring (padded, plus trailer); see [`ring_size`].
    pub fn ring_size(&self) -> u64 {
        ring_size(self.kind.header_len(), self.payload_len())
    }
}

/// Bytes a packet with `header_len` header bytes and `payload_len` payload bytes takes in a ring:
/// `round_up(header_len + payload_len, 8) + 8`.
pub const fn ring_size(header_len: u64, payload_len: u64) -> u64 {
    (header_len + payload_len).div_ceil(8) * 8 + TRAILER_SIZE as u64
}

/// A packet read from the ring; borrows the caller's scratch buffer.
#[derive(Debug, Clone, Copy)]
pub struct IncomingPacket<'b> {
    /// Transaction id.
    pub trans_id: u64,
    /// Flag bit 0 was set.
    pub completion_requested: bool,
    /// Type-specific view.
    pub kind: PacketKind<'b>,
}

/// Type-specific view of an incoming packet. Payloads run to the end of the packet, so they
/// include up to 7 bytes of padding: upper layers carry their own lengths.
#[derive(Debug, Clone, Copy)]
pub enum PacketKind<'b> {
    /// Type 6.
    InBand {
        /// Data.
        payload: &'b [u8],
    },
    /// Type 11.
    Completion {
        /// Completion message (may be empty).
        payload: &'b [u8],
    },
    /// Type 7.
    TransferPages {
        /// Page set id.
        set_id: u16,
        /// Ranges into the page set.
        ranges: TransferRanges<'b>,
        /// Message after the ranges.
        payload: &'b [u8],
    },
    /// Type 9.
    GpaDirect {
        /// Page ranges.
        ranges: GpaRanges<'b>,
        /// Message after the ranges.
        payload: &'b [u8],
    },
}

impl PacketKind<'_> {
    /// Descriptor type value.
    pub fn packet_type(&self) -> u16 {
        match self {
            Self::InBand { .. } => TYPE_INBAND,
            Self::Completion { .. } => TYPE_COMPLETION,
            Self::TransferPages { .. } => TYPE_TRANSFER_PAGES,
            Self::GpaDirect { .. } => TYPE_GPA_DIRECT,
        }
    }

    /// The payload of any kind.
    pub fn payload(&self) -> &[u8] {
        match self {
            Self::InBand { payload }
            | Self::Completion { payload }
            | Self::TransferPages { payload, .. }
            | Self::GpaDirect { payload, .. } => payload,
        }
    }
}

macro_rules! range_iter {
    ($name:ident, $item:ty, $size:expr) => {
        /// Iterator over ranges copied out of the ring (already bounded by the header length).
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'b> {
            bytes: &'b [u8],
        }

        impl<'b> $name<'b> {
            /// Ranges in `bytes` (a trailing partial range is ignored).
            pub fn new(bytes: &'b [u8]) -> Self {
                let whole = bytes.len() / $size * $size;
                Self {
                    bytes: &bytes[..whole],
                }
            }
        }

        impl Iterator for $name<'_> {
            type Item = $item;
            fn next(&mut self) -> Option<$item> {
                let (item, rest) = <$item>::read_from_prefix(self.bytes).ok()?;
                self.bytes = rest;
                Some(item)
            }
            fn size_hint(&self) -> (usize, Option<usize>) {
                let n = self.bytes.len() / $size;
                (n, Some(n))
            }
        }

        impl ExactSizeIterator for $name<'_> {}
    };
}

range_iter!(TransferRanges, TransferRange, 8);
range_iter!(GpaRanges, GpaRange, 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_size_pads_and_adds_trailer() {
        assert_eq!(ring_size(16, 0), 24);
        assert_eq!(ring_size(16, 1), 32);
        assert_eq!(ring_size(16, 8), 32);
        assert_eq!(ring_size(24 + 16, 9), 64);
        let ranges = [GpaRange::default(); 3];
        let pkt = OutgoingPacket {
            kind: OutgoingKind::GpaDirect { ranges: &ranges },
            trans_id: 0,
            completion_requested: true,
            payload: &[&[1, 2, 3], &[4]],
        };
        assert_eq!(pkt.len(), 24 + 48 + 4);
        assert_eq!(pkt.ring_size(), 80 + 8);
    }

    #[test]
    fn range_iterators_decode_little_endian_bytes() {
        let bytes = [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 9];
        let v: Vec<_> = TransferRanges::new(&bytes).collect();
        assert_eq!(
            v,
            [
                TransferRange {
                    byte_count: 1,
                    byte_offset: 2
                },
                TransferRange {
                    byte_count: 3,
                    byte_offset: 4
                }
            ]
        );
        let g: Vec<_> = GpaRanges::new(&bytes[..16]).collect();
        assert_eq!(
            g,
            [GpaRange {
                len: 1,
                offset: 2,
                pfn: 4 << 32 | 3
            }]
        );
        assert_eq!(GpaRanges::new(&bytes[..15]).len(), 0);
    }
}

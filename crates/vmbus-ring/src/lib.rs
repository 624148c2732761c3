//! The VMBus ring buffer over memory shared with an untrusted peer.
//!
//! A ring is one 4 KiB header page (indices, interrupt mask, pending-send size, feature bits)
//! followed by a data area of 8-byte-aligned packets, each with a trailing u64 whose upper half is
//! the packet's start offset. All peer memory is reached through [`SharedMem`], which only copies.
//!
//! Rules: the producer writes only while `free > packet + trailer`, so equal indices mean empty;
//! writers and readers advance private cursors and publish a batch with one index store
//! ([`RingWriter::commit`], [`RingReader::commit`]), which return whether to signal the peer.
//! Every index the peer stores and every descriptor it writes is copied out and validated first;
//! a bad value yields [`Corruption`], never a panic. Wire layouts assume a little-endian host.
#![allow(unsafe_code)]

#[cfg(target_endian = "big")]
compile_error!("vmbus-ring maps little-endian wire structs directly");

pub mod error;
pub mod packet;
pub mod reader;
pub mod ring;
pub mod shared;
pub mod writer;

pub use error::{CorruptField, Corruption, ReadError, RingError, WriteError};
pub use packet::{
    GpaRange, GpaRanges, IncomingPacket, OutgoingKind, OutgoingPacket, PacketKind, TransferRange,
    TransferRanges, ring_size,
};
pub use reader::RingReader;
pub use ring::Ring;
pub use shared::{HeapMem, MemError, MemoryOwner, SharedMem};
pub use writer::RingWriter;

//! The VMBus ring buffer over memory shared with an untrusted peer.
//!
//! A ring is one 4 KiB header page (indices, interrupt mask, pending-send size, feature bits)
//! followed by a data area of 8-byte-aligned packets, each with a trailing u64 whose upper half is
//! the packet's start offset. All peer memory is reached through [`SharedMem`], which only copies.
#![allow(unsafe_code)]

pub mod shared;

pub use shared::{HeapMem, MemError, MemoryOwner, SharedMem};

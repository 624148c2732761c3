//! NDIS structures carried in RNDIS OID payloads: the 4-byte object header that versions every structure, the
//! offload capability/parameter blocks (revisions 1/2/3) and the RSS capability/parameter blocks.

mod offload;
mod rss;

pub use offload::*;
pub use rss::*;

use crate::error::{ProtoError, Result};
use crate::wire::read_prefix;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// NDIS object header: type, revision, size (of the whole structure, for that revision).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct NdisObjectHeader {
    pub object_type: u8,
    pub revision: u8,
    pub size: u16,
}
const _: () = assert!(core::mem::size_of::<NdisObjectHeader>() == 4);

impl NdisObjectHeader {
    pub const fn new(object_type: u8, revision: u8, size: u16) -> Self {
        Self {
            object_type,
            revision,
            size,
        }
    }

    /// Read a header and check its type, that `size` ≥ `min_size` and that `size` ≤ the input length.
    pub(crate) fn parse_expect(
        what: &'static str,
        bytes: &[u8],
        object_type: u8,
        min_size: usize,
    ) -> Result<Self> {
        let h: Self = read_prefix(what, bytes, 4)?;
        if h.object_type != object_type {
            return Err(ProtoError::Invalid {
                what,
                field: "header.type",
                offset: 0,
                value: h.object_type.into(),
                reason: "unexpected NDIS object type",
            });
        }
        if (h.size as usize) < min_size {
            return Err(ProtoError::Invalid {
                what,
                field: "header.size",
                offset: 2,
                value: h.size.into(),
                reason: "smaller than the revision's size",
            });
        }
        if h.size as usize > bytes.len() {
            return Err(ProtoError::Truncated {
                what,
                needed: h.size as usize,
                have: bytes.len(),
            });
        }
        Ok(h)
    }
}

/// NDIS object types used here.
pub mod object_type {
    pub const DEFAULT: u8 = 0x80;
    pub const RSS_CAPABILITIES: u8 = 0x88;
    pub const RSS_PARAMETERS: u8 = 0x89;
    pub const OFFLOAD: u8 = 0xA7;
    pub const OFFLOAD_ENCAPSULATION: u8 = 0xA8;
}

/// NDIS medium (INITIALIZE_CMPLT `medium`, OID_GEN_MEDIA_SUPPORTED/IN_USE).
pub const MEDIUM_802_3: u32 = 0;
/// OID_GEN_HARDWARE_STATUS "ready".
pub const HARDWARE_STATUS_READY: u32 = 0;
/// OID_GEN_MEDIA_CONNECT_STATUS values.
pub const MEDIA_STATE_CONNECTED: u32 = 0;
pub const MEDIA_STATE_DISCONNECTED: u32 = 1;
/// OID_GEN_MAC_OPTIONS bits.
pub mod mac_options {
    pub const COPY_LOOKAHEAD_DATA: u32 = 0x1;
    pub const RECEIVE_SERIALIZED: u32 = 0x2;
    pub const TRANSFERS_NOT_PEND: u32 = 0x4;
    pub const NO_LOOPBACK: u32 = 0x8;
    pub const FULL_DUPLEX: u32 = 0x10;
    pub const EOTX_INDICATION: u32 = 0x20;
    pub const EIGHTOTWOONEQ_TAG: u32 = 0x40;
    pub const EIGHTOTWOONEP_PRIORITY: u32 = 0x80;
}

#[cfg(test)]
mod tests;

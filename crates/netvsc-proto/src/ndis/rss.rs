//! Receive-side scaling: NDIS_RECEIVE_SCALE_CAPABILITIES (type 0x88 rev 2, 18 meaningful bytes) answered to
//! OID_GEN_RECEIVE_SCALE_CAPABILITIES, and NDIS_RECEIVE_SCALE_PARAMETERS (type 0x89 rev 2, 40-byte fixed part)
//! followed by the indirection table and the hash key at offsets counted from the start of the structure. Linux
//! and DPDK put the table first (40) then the key (552); FreeBSD puts the key first — parse goes by the offsets.

use super::{NdisObjectHeader, object_type};
use crate::error::{ProtoError, Result, room};
use crate::wire::{Region, copy_at, read_prefix, u32_at, wire, write_at};

/// Meaningful size of the RSS capabilities (through `num_indirection_entries`).
pub const RSS_CAPS_SIZE: u16 = 18;
/// Size of the fixed part of the RSS parameters.
pub const RSS_PARAMS_SIZE: u16 = 40;
/// Revision used by guests for both structures.
pub const RSS_REVISION_2: u8 = 2;
/// Maximum indirection table entries (NDIS).
pub const RSS_MAX_TABLE_ENTRIES: usize = 128;
/// Standard Toeplitz key length.
pub const RSS_KEY_LEN: usize = 40;

wire! {
    /// NDIS_RECEIVE_SCALE_CAPABILITIES (20 bytes in memory; the header says 18).
    pub struct NdisRssCaps {
        pub header: NdisObjectHeader,
        pub capabilities: u32,
        pub num_int_msg: u32,
        pub num_recv_queues: u32,
        pub num_indirection_entries: u16,
        pub pad: u16,
    } = 20
}
wire! {
    /// NDIS_RECEIVE_SCALE_PARAMETERS fixed part (natural alignment, explicit padding).
    pub struct NdisRssParams {
        pub header: NdisObjectHeader,
        pub flags: u16,
        pub base_cpu: u16,
        pub hash_info: u32,
        pub indirection_size: u16,
        pub pad0: u16,
        pub indirection_offset: u32,
        pub hashkey_size: u16,
        pub pad1: u16,
        pub hashkey_offset: u32,
        pub cpu_mask_offset: u32,
        pub num_cpu_masks: u32,
        pub cpu_mask_entry_size: u32,
    } = 40
}

/// RSS capability flags (`capabilities`).
pub mod rss_caps {
    pub const MESSAGE_SIGNALED_INTERRUPTS: u32 = 0x0100_0000;
    pub const CLASSIFICATION_AT_ISR: u32 = 0x0200_0000;
    pub const CLASSIFICATION_AT_DPC: u32 = 0x0400_0000;
    pub const USING_MSI_X: u32 = 0x0800_0000;
    pub const RSS_AVAILABLE_ON_PORTS: u32 = 0x1000_0000;
    pub const SUPPORTS_MSI_X: u32 = 0x2000_0000;
    pub const HASH_TYPE_TCP_IPV4: u32 = 0x100;
    pub const HASH_TYPE_TCP_IPV6: u32 = 0x200;
    pub const HASH_TYPE_TCP_IPV6_EX: u32 = 0x400;
    pub const HASH_TYPE_UDP_IPV4: u32 = 0x800;
    pub const HASH_TYPE_UDP_IPV6: u32 = 0x1000;
    pub const HASH_TYPE_UDP_IPV6_EX: u32 = 0x2000;
    /// Hash function Toeplitz.
    pub const TOEPLITZ: u32 = 0x1;
}
/// RSS parameter flags (`flags`).
pub mod rss_flags {
    pub const BASE_CPU_UNCHANGED: u16 = 0x1;
    pub const HASH_INFO_UNCHANGED: u16 = 0x2;
    pub const ITABLE_UNCHANGED: u16 = 0x4;
    pub const HASH_KEY_UNCHANGED: u16 = 0x8;
    pub const DISABLE_RSS: u16 = 0x10;
}
/// Hash info bits: function in the low byte, types above (also the HASH_INFO PPI payload).
pub mod hash_info {
    pub const FUNCTION_TOEPLITZ: u32 = 0x1;
    pub const FUNCTION_MASK: u32 = 0xFF;
    pub const IPV4: u32 = 0x100;
    pub const TCP_IPV4: u32 = 0x200;
    pub const IPV6: u32 = 0x400;
    pub const IPV6_EX: u32 = 0x800;
    pub const TCP_IPV6: u32 = 0x1000;
    pub const TCP_IPV6_EX: u32 = 0x2000;
    /// Non-standard (FreeBSD), hosts ≥ WS2016.
    pub const UDP_IPV4: u32 = 0x4000;
    pub const UDP_IPV6: u32 = 0x8000;
    pub const UDP_IPV6_EX: u32 = 0x10000;
    pub const TYPE_MASK: u32 = 0x00FF_FF00;
}

impl NdisRssCaps {
    /// The header a guest sends as query input.
    pub const QUERY_HEADER: NdisObjectHeader =
        NdisObjectHeader::new(object_type::RSS_CAPABILITIES, RSS_REVISION_2, RSS_CAPS_SIZE);

    pub fn parse(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "NDIS_RECEIVE_SCALE_CAPABILITIES";
        NdisObjectHeader::parse_expect(
            WHAT,
            bytes,
            object_type::RSS_CAPABILITIES,
            RSS_CAPS_SIZE as usize,
        )?;
        read_prefix(WHAT, bytes, RSS_CAPS_SIZE as usize)
    }

    /// Write the 20-byte struct (header type 0x88, rev 2, size 18); returns 20.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let mut v = *self;
        v.header = Self::QUERY_HEADER;
        write_at("NDIS_RECEIVE_SCALE_CAPABILITIES", out, 0, &v)?;
        Ok(core::mem::size_of::<Self>())
    }
}

/// Where table and key go when building RSS parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RssLayout {
    /// Table at 40, key after it (Linux, DPDK).
    TableThenKey,
    /// Key at 40, table after it (FreeBSD).
    KeyThenTable,
}

/// Parsed RSS parameters: the fixed part plus bounded views of the table and the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssParams<'a> {
    pub params: NdisRssParams,
    /// Raw table bytes (`indirection_size`, a multiple of 4).
    pub table: &'a [u8],
    pub key: &'a [u8],
}

impl<'a> RssParams<'a> {
    /// Parse the parameter block; table and key must lie inside `bytes` after the 40-byte fixed part.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        const WHAT: &str = "NDIS_RECEIVE_SCALE_PARAMETERS";
        NdisObjectHeader::parse_expect(
            WHAT,
            bytes,
            object_type::RSS_PARAMETERS,
            RSS_PARAMS_SIZE as usize,
        )?;
        let params: NdisRssParams = read_prefix(WHAT, bytes, RSS_PARAMS_SIZE as usize)?;
        if !params.indirection_size.is_multiple_of(4)
            || params.indirection_size as usize > RSS_MAX_TABLE_ENTRIES * 4
        {
            return Err(ProtoError::Invalid {
                what: WHAT,
                field: "indirection_size",
                offset: 12,
                value: params.indirection_size.into(),
                reason: "must be a multiple of 4 and at most 512",
            });
        }
        let region = |field, field_at, offset, len| Region {
            what: WHAT,
            field,
            field_at,
            base: 0,
            offset,
            len,
            lo: RSS_PARAMS_SIZE as usize,
            hi: bytes.len(),
        };
        let t = region(
            "indirection_offset",
            16,
            params.indirection_offset,
            params.indirection_size.into(),
        )
        .check()?;
        let k = region(
            "hashkey_offset",
            24,
            params.hashkey_offset,
            params.hashkey_size.into(),
        )
        .check()?;
        Ok(Self {
            params,
            table: &bytes[t],
            key: &bytes[k],
        })
    }

    /// Number of table entries.
    pub fn table_len(&self) -> usize {
        self.table.len() / 4
    }

    /// Table entry `i` (channel index), if in range.
    pub fn table_entry(&self, i: usize) -> Option<u32> {
        (i < self.table_len()).then(|| u32_at(self.table, 4 * i))
    }

    /// The table entries in order.
    pub fn table_entries(&self) -> impl Iterator<Item = u32> + 'a {
        let t = self.table;
        (0..t.len() / 4).map(move |i| u32_at(t, 4 * i))
    }

    /// Build a parameter block: fixed part (`flags`, `base_cpu`, `hash_info`) + table + key in `layout`; returns
    /// the total length (40 + 4 × table.len() + key.len()).
    pub fn emit(
        out: &mut [u8],
        flags: u16,
        base_cpu: u16,
        hash_info: u32,
        table: &[u32],
        key: &[u8],
        layout: RssLayout,
    ) -> Result<usize> {
        const WHAT: &str = "NDIS_RECEIVE_SCALE_PARAMETERS";
        if table.len() > RSS_MAX_TABLE_ENTRIES || key.len() > u16::MAX as usize {
            return Err(ProtoError::Invalid {
                what: WHAT,
                field: "indirection_size",
                offset: 12,
                value: table.len() as u64,
                reason: "at most 128 entries",
            });
        }
        let tsize = table.len() * 4;
        let fixed = RSS_PARAMS_SIZE as usize;
        let total = fixed + tsize + key.len();
        room(WHAT, out.len(), total)?;
        let (toff, koff) = match layout {
            RssLayout::TableThenKey => (fixed, fixed + tsize),
            RssLayout::KeyThenTable => (fixed + key.len(), fixed),
        };
        let p = NdisRssParams {
            header: NdisObjectHeader::new(
                object_type::RSS_PARAMETERS,
                RSS_REVISION_2,
                RSS_PARAMS_SIZE,
            ),
            flags,
            base_cpu,
            hash_info,
            indirection_size: tsize as u16,
            indirection_offset: toff as u32,
            hashkey_size: key.len() as u16,
            hashkey_offset: koff as u32,
            ..Default::default()
        };
        write_at(WHAT, out, 0, &p)?;
        for (i, e) in table.iter().enumerate() {
            write_at(WHAT, out, toff + 4 * i, e)?;
        }
        copy_at(WHAT, out, koff, key)?;
        Ok(total)
    }
}

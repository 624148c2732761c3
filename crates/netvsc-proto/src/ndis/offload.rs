//! NDIS_OFFLOAD (hardware offload capabilities, object type 0xA7; rev 1/2/3 = 112/144/156 bytes) and
//! NDIS_OFFLOAD_PARAMETERS (object type 0x80; rev 1/2/3 = 20/22/28 bytes). Both are natural-alignment structs;
//! a shorter revision is the prefix of the longer one, so parse zero-fills the fields a revision lacks.

use super::{NdisObjectHeader, object_type};
use crate::error::{ProtoError, Result, room};
use crate::wire::{read_prefix, wire};
use zerocopy::IntoBytes;

/// Sizes of NDIS_OFFLOAD per revision (index = revision - 1).
pub const OFFLOAD_SIZES: [u16; 3] = [112, 144, 156];
/// Sizes of NDIS_OFFLOAD_PARAMETERS per revision (index = revision - 1).
pub const OFFLOAD_PARAMS_SIZES: [u16; 3] = [20, 22, 28];

wire! {
    /// Checksum offload capabilities (bits in [`csum`]).
    pub struct CsumOffload {
        pub ip4_txenc: u32, pub ip4_txcsum: u32, pub ip4_rxenc: u32, pub ip4_rxcsum: u32,
        pub ip6_txenc: u32, pub ip6_txcsum: u32, pub ip6_rxenc: u32, pub ip6_rxcsum: u32,
    } = 32
}
wire! {
    /// LSOv1 capabilities.
    pub struct LsoV1Offload { pub encap: u32, pub maxsize: u32, pub minsegs: u32, pub opts: u32 } = 16
}
wire! {
    /// IPsec v1 capabilities (unused by guests).
    pub struct IpsecV1Offload {
        pub encap: u32, pub ah_esp: u32, pub xport_tun: u32, pub ip4_opts: u32, pub flags: u32,
        pub ip4_ah: u32, pub ip4_esp: u32,
    } = 28
}
wire! {
    /// LSOv2 capabilities: encapsulation ([`encap`]), max size and min segment count per IP version, IPv6 options.
    pub struct LsoV2Offload {
        pub ip4_encap: u32, pub ip4_maxsz: u32, pub ip4_minsg: u32,
        pub ip6_encap: u32, pub ip6_maxsz: u32, pub ip6_minsg: u32, pub ip6_opts: u32,
    } = 28
}
wire! {
    /// IPsec v2 capabilities (rev ≥ 2; unused by guests).
    pub struct IpsecV2Offload {
        pub encap: u32, pub ip6: u8, pub ip4opt: u8, pub ip6ext: u8, pub ah: u8, pub esp: u8, pub ah_esp: u8,
        pub xport: u8, pub tun: u8, pub xport_tun: u8, pub lso: u8, pub extseq: u8, pub pad: u8,
        pub udp_esp: u32, pub auth: u32, pub crypto: u32, pub sa_caps: u32,
    } = 32
}
wire! {
    /// Receive segment coalescing capabilities (rev 3).
    pub struct RscOffload { pub ip4: u8, pub ip6: u8, pub pad: [u8; 2] } = 4
}
wire! {
    /// GRE encapsulation offload (rev 3).
    pub struct EncapGreOffload { pub flags: u32, pub maxhdr: u32 } = 8
}
wire! {
    /// NDIS_OFFLOAD: answer to OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES / CURRENT_CONFIG.
    pub struct NdisOffload {
        pub header: NdisObjectHeader,
        pub csum: CsumOffload,
        pub lsov1: LsoV1Offload,
        pub ipsecv1: IpsecV1Offload,
        pub lsov2: LsoV2Offload,
        pub flags: u32,
        pub ipsecv2: IpsecV2Offload,
        pub rsc: RscOffload,
        pub encap_gre: EncapGreOffload,
    } = 156
}
wire! {
    /// NDIS_OFFLOAD_PARAMETERS: set with OID_TCP_OFFLOAD_PARAMETERS (values in [`offload_param`]).
    pub struct NdisOffloadParams {
        pub header: NdisObjectHeader,
        pub ip_v4_csum: u8, pub tcp_ip_v4_csum: u8, pub udp_ip_v4_csum: u8, pub tcp_ip_v6_csum: u8,
        pub udp_ip_v6_csum: u8, pub lso_v1: u8, pub ipsec_v1: u8, pub lso_v2_ipv4: u8, pub lso_v2_ipv6: u8,
        pub tcp_connection_ipv4: u8, pub tcp_connection_ipv6: u8, pub pad0: u8,
        pub flags: u32,
        pub ipsec_v2: u8, pub ipsec_v2_ipv4: u8,
        pub rsc_ipv4: u8, pub rsc_ipv6: u8, pub encap_task_offload: u8, pub encap_types: u8, pub pad1: [u8; 2],
    } = 28
}

/// Checksum capability bits (tx and rx use the same values).
pub mod csum {
    pub const IP4OPT: u32 = 0x001;
    pub const TCP4OPT: u32 = 0x004;
    pub const TCP4: u32 = 0x010;
    pub const UDP4: u32 = 0x040;
    pub const IP4: u32 = 0x100;
    pub const ALL4: u32 = IP4OPT | TCP4OPT | TCP4 | UDP4 | IP4;
    pub const IP6EXT: u32 = 0x001;
    pub const TCP6OPT: u32 = 0x004;
    pub const TCP6: u32 = 0x010;
    pub const UDP6: u32 = 0x040;
    pub const ALL6: u32 = IP6EXT | TCP6OPT | TCP6 | UDP6;
}
/// Offload encapsulation values.
pub mod encap {
    pub const NONE: u32 = 0x0;
    pub const NULL: u32 = 0x1;
    pub const E8023: u32 = 0x2;
    pub const E8023PQ: u32 = 0x4;
    pub const E8023PQ_OOB: u32 = 0x8;
    pub const RFC1483: u32 = 0x10;
}
/// LSOv2 `ip6_opts` bits.
pub mod lsov2_opts {
    pub const IP6EXT: u32 = 0x1;
    pub const TCP6OPT: u32 = 0x4;
}
/// NDIS_OFFLOAD_PARAMETERS values.
pub mod offload_param {
    pub const NO_CHANGE: u8 = 0;
    // Checksum fields.
    pub const TX_RX_DISABLED: u8 = 1;
    pub const TX_ENABLED_RX_DISABLED: u8 = 2;
    pub const RX_ENABLED_TX_DISABLED: u8 = 3;
    pub const TX_RX_ENABLED: u8 = 4;
    // LSO / RSC fields.
    pub const DISABLED: u8 = 1;
    pub const ENABLED: u8 = 2;
}

fn revision_size(what: &'static str, sizes: &[u16; 3], revision: u8) -> Result<u16> {
    match revision {
        1..=3 => Ok(sizes[revision as usize - 1]),
        r => Err(ProtoError::Invalid {
            what,
            field: "revision",
            offset: 1,
            value: r.into(),
            reason: "must be 1, 2 or 3",
        }),
    }
}

impl NdisOffload {
    /// The header a guest sends as the query input for a revision.
    pub fn query_header(revision: u8) -> Result<NdisObjectHeader> {
        let size = revision_size("NDIS_OFFLOAD", &OFFLOAD_SIZES, revision)?;
        Ok(NdisObjectHeader::new(object_type::OFFLOAD, revision, size))
    }

    /// Parse (type 0xA7, size ≥ 112 and ≤ input); fields beyond `size` are zero.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "NDIS_OFFLOAD";
        let h = NdisObjectHeader::parse_expect(
            WHAT,
            bytes,
            object_type::OFFLOAD,
            OFFLOAD_SIZES[0] as usize,
        )?;
        read_prefix(WHAT, &bytes[..h.size as usize], OFFLOAD_SIZES[0] as usize)
    }

    /// Write the structure for `revision` (header rewritten accordingly); returns its size.
    pub fn emit(&self, out: &mut [u8], revision: u8) -> Result<usize> {
        const WHAT: &str = "NDIS_OFFLOAD";
        let size = revision_size(WHAT, &OFFLOAD_SIZES, revision)? as usize;
        room(WHAT, out.len(), size)?;
        let mut v = *self;
        v.header = NdisObjectHeader::new(object_type::OFFLOAD, revision, size as u16);
        out[..size].copy_from_slice(&v.as_bytes()[..size]);
        Ok(size)
    }
}

impl NdisOffloadParams {
    /// Parse (type 0x80, size ≥ 20 and ≤ input); fields beyond `size` are zero.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "NDIS_OFFLOAD_PARAMETERS";
        let h = NdisObjectHeader::parse_expect(
            WHAT,
            bytes,
            object_type::DEFAULT,
            OFFLOAD_PARAMS_SIZES[0] as usize,
        )?;
        read_prefix(
            WHAT,
            &bytes[..h.size as usize],
            OFFLOAD_PARAMS_SIZES[0] as usize,
        )
    }

    /// Write the structure for `revision`; returns its size.
    pub fn emit(&self, out: &mut [u8], revision: u8) -> Result<usize> {
        const WHAT: &str = "NDIS_OFFLOAD_PARAMETERS";
        let size = revision_size(WHAT, &OFFLOAD_PARAMS_SIZES, revision)? as usize;
        room(WHAT, out.len(), size)?;
        let mut v = *self;
        v.header = NdisObjectHeader::new(object_type::DEFAULT, revision, size as u16);
        out[..size].copy_from_slice(&v.as_bytes()[..size]);
        Ok(size)
    }
}

//! Per-packet info (PPI): typed values that ride in front of the frame in an RNDIS PACKET. Each entry is
//! `{size (incl. the 12-byte header, 4-aligned), type (bit 31 = internal), offset = 12}` + payload; the payloads
//! below are `u32` bit layouts wrapped in newtypes with named getters/builders (protocol.md §5).

/// Hash-info bits (NBL_HASH_INFO payload) are the NDIS hash type/function bits.
pub use crate::ndis::hash_info;
use crate::wire::wire;

wire! {
    /// PPI entry header.
    pub struct PpiHeader { pub size: u32, pub ppi_type: u32, pub ppi_offset: u32 } = 12
}
/// Size of a PPI entry header.
pub const PPI_HEADER_LEN: usize = 12;
/// Size of a PPI carrying one `u32`.
pub const PPI_U32_LEN: usize = 16;

/// The "internal" flag in the PPI type.
pub const INTERNAL: u32 = 1 << 31;
pub const TCPIP_CHKSUM: u32 = 0;
pub const IPSEC: u32 = 1;
pub const TCP_LARGESEND: u32 = 2;
pub const CLASSIFICATION_HANDLE: u32 = 3;
pub const NDIS_RESERVED: u32 = 4;
pub const SG_LIST: u32 = 5;
pub const IEEE_8021Q: u32 = 6;
pub const ORIGINAL_PKTINFO: u32 = 7;
pub const PACKET_CANCEL_ID: u32 = 8;
/// RSS hash value (same slot as PACKET_CANCEL_ID).
pub const NBL_HASH_VALUE: u32 = PACKET_CANCEL_ID;
pub const ORIGINAL_NET_BUFLIST: u32 = 9;
/// RSS hash info (same slot as ORIGINAL_NET_BUFLIST).
pub const NBL_HASH_INFO: u32 = ORIGINAL_NET_BUFLIST;
pub const CACHED_NET_BUFLIST: u32 = 10;
pub const SHORT_PKT_PADINFO: u32 = 11;
/// RSC packet-id info: type 1 with the internal bit.
pub const RNDIS_PKTINFO_ID: u32 = 1 | INTERNAL;

/// TX checksum request (TCPIP_CHKSUM on transmit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxChecksumInfo(pub u32);

impl TxChecksumInfo {
    pub const IS_IPV4: u32 = 1 << 0;
    pub const IS_IPV6: u32 = 1 << 1;
    pub const TCP_CSUM: u32 = 1 << 2;
    pub const UDP_CSUM: u32 = 1 << 3;
    pub const IP_HDR_CSUM: u32 = 1 << 4;

    pub fn is_ipv4(self) -> bool {
        self.0 & Self::IS_IPV4 != 0
    }
    pub fn is_ipv6(self) -> bool {
        self.0 & Self::IS_IPV6 != 0
    }
    pub fn tcp_csum(self) -> bool {
        self.0 & Self::TCP_CSUM != 0
    }
    pub fn udp_csum(self) -> bool {
        self.0 & Self::UDP_CSUM != 0
    }
    pub fn ip_hdr_csum(self) -> bool {
        self.0 & Self::IP_HDR_CSUM != 0
    }
    /// Offset of the TCP/UDP header from the start of the frame (bits 16–25).
    pub fn tcp_header_offset(self) -> u16 {
        ((self.0 >> 16) & 0x3FF) as u16
    }
    /// Build: flags from the consts above, transport header offset (truncated to 10 bits).
    pub fn new(flags: u32, tcp_header_offset: u16) -> Self {
        Self((flags & 0x1F) | ((u32::from(tcp_header_offset) & 0x3FF) << 16))
    }
}

/// RX checksum result (TCPIP_CHKSUM on receive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RxChecksumInfo(pub u32);

impl RxChecksumInfo {
    pub const TCP_FAILED: u32 = 1 << 0;
    pub const UDP_FAILED: u32 = 1 << 1;
    pub const IP_FAILED: u32 = 1 << 2;
    pub const TCP_OK: u32 = 1 << 3;
    pub const UDP_OK: u32 = 1 << 4;
    pub const IP_OK: u32 = 1 << 5;
    pub const LOOPBACK: u32 = 1 << 6;
    pub const TCP_VALUE_INVALID: u32 = 1 << 7;
    pub const IP_VALUE_INVALID: u32 = 1 << 8;

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
    pub fn tcp_failed(self) -> bool {
        self.has(Self::TCP_FAILED)
    }
    pub fn udp_failed(self) -> bool {
        self.has(Self::UDP_FAILED)
    }
    pub fn ip_failed(self) -> bool {
        self.has(Self::IP_FAILED)
    }
    pub fn tcp_ok(self) -> bool {
        self.has(Self::TCP_OK)
    }
    pub fn udp_ok(self) -> bool {
        self.has(Self::UDP_OK)
    }
    pub fn ip_ok(self) -> bool {
        self.has(Self::IP_OK)
    }
}

/// LSOv2 transmit request (TCP_LARGESEND).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LsoV2Info(pub u32);

impl LsoV2Info {
    /// `type` value for LSOv2 (bit 30).
    pub const TYPE_LSOV2: u32 = 1;
    /// Build: MSS (20 bits), TCP header offset (10 bits), IPv6 flag; type = LSOv2.
    pub fn new(mss: u32, tcp_header_offset: u16, ipv6: bool) -> Self {
        Self(
            (mss & 0xF_FFFF)
                | ((u32::from(tcp_header_offset) & 0x3FF) << 20)
                | (1 << 30)
                | (u32::from(ipv6) << 31),
        )
    }
    pub fn mss(self) -> u32 {
        self.0 & 0xF_FFFF
    }
    pub fn tcp_header_offset(self) -> u16 {
        ((self.0 >> 20) & 0x3FF) as u16
    }
    /// Bit 30: 1 = LSOv2 (0 = LSOv1).
    pub fn lso_type(self) -> u32 {
        (self.0 >> 30) & 1
    }
    /// Bit 31: 0 = IPv4, 1 = IPv6.
    pub fn is_ipv6(self) -> bool {
        self.0 >> 31 != 0
    }
}

/// IEEE 802.1Q info (priority, CFI/DEI, VLAN id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VlanInfo(pub u32);

impl VlanInfo {
    pub fn new(priority: u8, cfi: bool, vlan_id: u16) -> Self {
        Self(u32::from(priority & 7) | (u32::from(cfi) << 3) | ((u32::from(vlan_id) & 0xFFF) << 4))
    }
    pub fn priority(self) -> u8 {
        (self.0 & 7) as u8
    }
    pub fn cfi(self) -> bool {
        self.0 & 8 != 0
    }
    pub fn vlan_id(self) -> u16 {
        ((self.0 >> 4) & 0xFFF) as u16
    }
    /// The 16-bit TCI as in an 802.1Q tag (PCP b13–15, DEI b12, VID b0–11).
    pub fn tci(self) -> u16 {
        (u16::from(self.priority()) << 13) | (u16::from(self.cfi()) << 12) | self.vlan_id()
    }
    pub fn from_tci(tci: u16) -> Self {
        Self::new((tci >> 13) as u8, tci & 0x1000 != 0, tci & 0xFFF)
    }
}

/// RNDIS_PKTINFO_ID payload: version, flags, packet id (RSC fragments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PktInfoId {
    pub version: u8,
    pub flags: u8,
    pub pkt_id: u16,
}

impl PktInfoId {
    pub const VERSION: u8 = 1;
    pub const SUBALLOC: u8 = 0x1;
    pub const FIRST_FRAG: u8 = 0x2;
    pub const LAST_FRAG: u8 = 0x4;

    pub fn from_bytes(b: [u8; 4]) -> Self {
        Self {
            version: b[0],
            flags: b[1],
            pkt_id: u16::from_le_bytes([b[2], b[3]]),
        }
    }
    pub fn to_bytes(self) -> [u8; 4] {
        let id = self.pkt_id.to_le_bytes();
        [self.version, self.flags, id[0], id[1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_csum_bits() {
        let v = TxChecksumInfo::new(TxChecksumInfo::IS_IPV4 | TxChecksumInfo::TCP_CSUM, 34);
        assert_eq!(v.0, 0x0022_0005);
        assert!(v.is_ipv4() && v.tcp_csum() && !v.is_ipv6() && !v.udp_csum() && !v.ip_hdr_csum());
        assert_eq!(v.tcp_header_offset(), 34);
        assert_eq!(TxChecksumInfo(0x03FF_0000).tcp_header_offset(), 0x3FF);
    }

    #[test]
    fn rx_csum_bits() {
        let v = RxChecksumInfo(0x38);
        assert!(
            v.tcp_ok()
                && v.udp_ok()
                && v.ip_ok()
                && !v.tcp_failed()
                && !v.udp_failed()
                && !v.ip_failed()
        );
        let f = RxChecksumInfo(0x7);
        assert!(f.tcp_failed() && f.udp_failed() && f.ip_failed());
    }

    #[test]
    fn lsov2_bits() {
        let v = LsoV2Info::new(1448, 54, true);
        // 1448 = 0x5a8; 54 << 20 = 0x0360_0000; bit 30 and bit 31 set.
        assert_eq!(v.0, 0x5a8 | 0x0360_0000 | 0x4000_0000 | 0x8000_0000);
        assert_eq!(
            (v.mss(), v.tcp_header_offset(), v.lso_type(), v.is_ipv6()),
            (1448, 54, 1, true)
        );
        assert!(!LsoV2Info::new(536, 34, false).is_ipv6());
    }

    #[test]
    fn vlan_bits() {
        let v = VlanInfo::new(5, true, 100);
        assert_eq!(v.0, 5 | 8 | (100 << 4));
        assert_eq!((v.priority(), v.cfi(), v.vlan_id()), (5, true, 100));
        assert_eq!(v.tci(), 0xB064);
        assert_eq!(VlanInfo::from_tci(0xB064), v);
    }

    #[test]
    fn pktinfo_id_bytes() {
        let p = PktInfoId {
            version: 1,
            flags: PktInfoId::FIRST_FRAG | PktInfoId::LAST_FRAG,
            pkt_id: 0x1234,
        };
        assert_eq!(p.to_bytes(), [1, 6, 0x34, 0x12]);
        assert_eq!(PktInfoId::from_bytes([1, 6, 0x34, 0x12]), p);
    }
}

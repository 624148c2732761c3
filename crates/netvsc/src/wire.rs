//! The few NVSP / RNDIS / NDIS / PPI layouts the guest builds and parses, as byte offsets
//! (protocol.md §3–§5). A private shim: `netvsc-proto` had not landed when this was written; every
//! parse here bounds its offsets against the copied bytes, so a hostile host cannot make it panic.

/// NVSP message types.
pub mod nvsp {
    pub const INIT: u32 = 1;
    pub const INIT_COMPLETE: u32 = 2;
    pub const NDIS_VER: u32 = 100;
    pub const RECV_BUF: u32 = 101;
    pub const RECV_BUF_COMPLETE: u32 = 102;
    pub const REVOKE_RECV_BUF: u32 = 103;
    pub const SEND_BUF: u32 = 104;
    pub const SEND_BUF_COMPLETE: u32 = 105;
    pub const REVOKE_SEND_BUF: u32 = 106;
    pub const RNDIS_PKT: u32 = 107;
    pub const RNDIS_PKT_COMPLETE: u32 = 108;
    pub const NDIS_CONFIG: u32 = 125;
    pub const VF_ASSOCIATION: u32 = 128;
    pub const SWITCH_DATA_PATH: u32 = 129;
    pub const SUBCHANNEL: u32 = 133;
    pub const INDIRECTION_TABLE: u32 = 134;
    pub const STATUS_SUCCESS: u32 = 1;
    pub const STATUS_FAIL: u32 = 2;
    /// Versions tried in order (DPDK's list).
    pub const VERSIONS: [u32; 6] = [0x60001, 0x60000, 0x50000, 0x40000, 0x30002, 0x2];
    pub const V2: u32 = 0x30002;
    pub const V4: u32 = 0x40000;
    pub const V5: u32 = 0x50000;
    pub const RECV_BUF_ID: u16 = 0xCAFE;
    pub const SEND_BUF_ID: u16 = 0xFACE;
    pub const CAP_SRIOV: u64 = 0x4;
    pub const CAP_8021Q: u64 = 0x8;
    /// Request size every guest pads to.
    pub const REQ_LEN: usize = 40;
    /// Section index meaning "no send section".
    pub const NO_SECTION: u32 = u32::MAX;
}

/// RNDIS message types, statuses and OIDs.
pub mod rndis {
    pub const PACKET: u32 = 1;
    pub const INITIALIZE: u32 = 2;
    pub const HALT: u32 = 3;
    pub const QUERY: u32 = 4;
    pub const SET: u32 = 5;
    pub const INDICATE_STATUS: u32 = 7;
    pub const KEEPALIVE: u32 = 8;
    pub const COMPLETION_BIT: u32 = 0x8000_0000;
    pub const STATUS_SUCCESS: u32 = 0;
    pub const MEDIA_CONNECT: u32 = 0x4001_000B;
    pub const MEDIA_DISCONNECT: u32 = 0x4001_000C;
    pub const LINK_SPEED_CHANGE: u32 = 0x4001_0013;
    pub const OID_MAX_FRAME_SIZE: u32 = 0x0001_0106;
    pub const OID_LINK_SPEED: u32 = 0x0001_0107;
    pub const OID_PACKET_FILTER: u32 = 0x0001_010E;
    pub const OID_MEDIA_STATUS: u32 = 0x0001_0114;
    pub const OID_RSS_CAPS: u32 = 0x0001_0203;
    pub const OID_RSS_PARAMS: u32 = 0x0001_0204;
    pub const OID_MAC: u32 = 0x0101_0101;
    pub const OID_OFFLOAD_PARAMS: u32 = 0xFC01_020C;
    pub const OID_OFFLOAD_CAPS: u32 = 0xFC01_020D;
    /// PACKET header length.
    pub const PACKET_HDR: usize = 44;
    /// Max transfer size we announce in INITIALIZE.
    pub const MAX_XFER: u32 = 0x4000;
}

/// PPI types and bit layouts.
pub mod ppi {
    pub const CSUM: u32 = 0;
    pub const LSO: u32 = 2;
    pub const VLAN: u32 = 6;
    pub const HASH_VALUE: u32 = 8;
    pub const HASH_INFO: u32 = 9;
    /// Header + u32 payload.
    pub const ENTRY: usize = 16;
    pub const TX_IPV4: u32 = 1;
    pub const TX_IPV6: u32 = 2;
    pub const TX_TCP: u32 = 4;
    pub const TX_UDP: u32 = 8;
    pub const TX_IP_HDR: u32 = 0x10;
    pub const RX_TCP_FAIL: u32 = 1;
    pub const RX_UDP_FAIL: u32 = 2;
    pub const RX_IP_FAIL: u32 = 4;
    pub const RX_TCP_OK: u32 = 8;
    pub const RX_UDP_OK: u32 = 0x10;
    pub const RX_IP_OK: u32 = 0x20;

    /// Tx checksum request word: flags plus transport offset in bits 16–25.
    pub fn tx_csum(flags: u32, l4_offset: u32) -> u32 {
        flags | ((l4_offset & 0x3ff) << 16)
    }

    /// LSOv2 word: mss b0–19, transport offset b20–29, type b30, IPv6 b31.
    pub fn lso_v2(mss: u32, l4_offset: u32, ipv6: bool) -> u32 {
        (mss & 0xf_ffff) | ((l4_offset & 0x3ff) << 20) | (1 << 30) | (u32::from(ipv6) << 31)
    }

    /// 802.1Q word from a TCI: prio b0–2, CFI b3, VID b4–15.
    pub fn vlan_from_tci(tci: u16) -> u32 {
        let tci = u32::from(tci);
        ((tci >> 13) & 7) | (((tci >> 12) & 1) << 3) | ((tci & 0xfff) << 4)
    }

    /// TCI from an 802.1Q PPI word.
    pub fn tci_from_vlan(v: u32) -> u16 {
        (((v & 7) << 13) | (((v >> 3) & 1) << 12) | ((v >> 4) & 0xfff)) as u16
    }
}

/// Little-endian u32 at `off` in `b`, `None` when out of range.
pub fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Little-endian u16 at `off`.
pub fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

/// Store a little-endian u32 (caller sized the buffer).
pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Store a little-endian u16.
pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

/// A 40-byte NVSP request with `words` at 4, 8, 12, ...
pub fn nvsp_req(msg_type: u32, words: &[u32]) -> [u8; nvsp::REQ_LEN] {
    let mut b = [0u8; nvsp::REQ_LEN];
    put_u32(&mut b, 0, msg_type);
    for (i, w) in words.iter().enumerate() {
        put_u32(&mut b, 4 + 4 * i, *w);
    }
    b
}

/// NDIS_CONFIG: mtu @4, reserved @8, caps u64 @12 (unaligned).
pub fn nvsp_ndis_config(mtu: u32, caps: u64) -> [u8; nvsp::REQ_LEN] {
    let mut b = nvsp_req(nvsp::NDIS_CONFIG, &[mtu]);
    b[12..20].copy_from_slice(&caps.to_le_bytes());
    b
}

/// Write one PPI entry at `off`; returns the bytes written.
pub fn put_ppi(b: &mut [u8], off: usize, ppi_type: u32, value: u32) -> usize {
    put_u32(b, off, ppi::ENTRY as u32);
    put_u32(b, off + 4, ppi_type);
    put_u32(b, off + 8, 12);
    put_u32(b, off + 12, value);
    ppi::ENTRY
}

/// Write a PACKET header for a frame of `frame_len` bytes following `ppi_len` bytes of PPIs.
pub fn put_packet_header(b: &mut [u8], ppi_len: usize, frame_len: usize) {
    let msg_len = rndis::PACKET_HDR + ppi_len + frame_len;
    b[..rndis::PACKET_HDR].fill(0);
    put_u32(b, 0, rndis::PACKET);
    put_u32(b, 4, msg_len as u32);
    put_u32(b, 8, (36 + ppi_len) as u32);
    put_u32(b, 12, frame_len as u32);
    put_u32(b, 28, if ppi_len == 0 { 0 } else { 36 });
    put_u32(b, 32, ppi_len as u32);
}

/// Receive metadata carried by PPIs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxPpi {
    /// 802.1Q PPI word, if present.
    pub vlan: Option<u32>,
    /// Rx checksum word, if present.
    pub csum: Option<u32>,
    /// RSS hash value, if present.
    pub hash: Option<u32>,
    /// RSS hash type, if present.
    pub hash_info: Option<u32>,
}

/// Walk a PPI region (already copied out). At most 32 entries are looked at; every entry must be
/// ≥ 12 bytes, 4-aligned and inside the region, or the walk stops with an error.
pub fn parse_ppis(region: &[u8]) -> Result<RxPpi, (&'static str, u64)> {
    let mut out = RxPpi::default();
    let mut off = 0usize;
    for _ in 0..32 {
        if off >= region.len() {
            return Ok(out);
        }
        let size = u32_at(region, off).ok_or(("ppi size", off as u64))? as usize;
        let ty = u32_at(region, off + 4).ok_or(("ppi type", off as u64))?;
        let data_off = u32_at(region, off + 8).ok_or(("ppi offset", off as u64))? as usize;
        if size < 12 || !size.is_multiple_of(4) || size > region.len() - off {
            return Err(("ppi size", size as u64));
        }
        if data_off < 12 || data_off > size {
            return Err(("ppi data offset", data_off as u64));
        }
        let value = u32_at(&region[off..off + size], data_off);
        match (ty, value) {
            (ppi::VLAN, Some(v)) => out.vlan = Some(v),
            (ppi::CSUM, Some(v)) => out.csum = Some(v),
            (ppi::HASH_VALUE, Some(v)) => out.hash = Some(v),
            (ppi::HASH_INFO, Some(v)) => out.hash_info = Some(v),
            _ => {}
        }
        off += size;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_header_matches_protocol_vector() {
        // protocol.md §9: PACKET header for a 60-byte frame, no PPI.
        let mut b = [0xa5u8; 44];
        put_packet_header(&mut b, 0, 60);
        let want = [1u8, 0, 0, 0, 0x68, 0, 0, 0, 0x24, 0, 0, 0, 0x3c, 0, 0, 0];
        assert_eq!(&b[..16], &want);
        assert!(b[16..].iter().all(|&x| x == 0));
    }

    #[test]
    fn ppi_round_trip_and_bits() {
        let mut b = [0u8; 64];
        let mut off = put_ppi(&mut b, 0, ppi::VLAN, ppi::vlan_from_tci(0xb123));
        off += put_ppi(&mut b, off, ppi::HASH_VALUE, 0xdead_beef);
        off += put_ppi(&mut b, off, ppi::CSUM, ppi::RX_TCP_OK | ppi::RX_IP_OK);
        let p = parse_ppis(&b[..off]).unwrap();
        assert_eq!(p.vlan.map(ppi::tci_from_vlan), Some(0xb123));
        // prio 5, CFI 1, VID 0x123
        assert_eq!(p.vlan, Some(5 | 8 | (0x123 << 4)));
        assert_eq!(p.hash, Some(0xdead_beef));
        assert_eq!(p.csum, Some(0x28));
        assert_eq!(ppi::lso_v2(1448, 34, false), 1448 | (34 << 20) | (1 << 30));
        assert_eq!(ppi::lso_v2(1, 54, true) >> 31, 1);
        assert_eq!(ppi::tx_csum(ppi::TX_IPV4 | ppi::TX_TCP, 34), 5 | (34 << 16));
    }

    #[test]
    fn hostile_ppis_error_not_panic() {
        let mut b = [0u8; 32];
        put_u32(&mut b, 0, 8); // too small
        assert!(parse_ppis(&b).is_err());
        put_u32(&mut b, 0, 64); // past the end
        assert!(parse_ppis(&b).is_err());
        put_u32(&mut b, 0, 16);
        put_u32(&mut b, 8, 40); // data offset past entry
        assert!(parse_ppis(&b[..16]).is_err());
        assert!(parse_ppis(&b[..5]).is_err());
        assert_eq!(parse_ppis(&[]), Ok(RxPpi::default()));
    }

    #[test]
    fn nvsp_requests() {
        let b = nvsp_req(nvsp::INIT, &[0x60001, 0x60001]);
        assert_eq!(&b[..12], &[1, 0, 0, 0, 1, 0, 6, 0, 1, 0, 6, 0]);
        assert!(b[12..].iter().all(|&x| x == 0));
        let c = nvsp_ndis_config(1514, nvsp::CAP_8021Q | nvsp::CAP_SRIOV);
        assert_eq!(u32_at(&c, 4), Some(1514));
        assert_eq!(c[12], 0xc);
    }
}

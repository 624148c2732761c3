//! NDIS objects the guest exchanges over RNDIS OIDs: the hardware offload capabilities it reads
//! (NDIS_OFFLOAD rev 1/2/3), the offload parameters it sets, RSS capabilities and the RSS parameter
//! block (Toeplitz, 40-byte key, 128-entry table, laid out table-then-key like Linux and DPDK).

use crate::wire;

/// The standard Microsoft Toeplitz key.
pub const DEFAULT_RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];
/// Entries in the RSS indirection table.
pub const RSS_TABLE: usize = 128;
/// Size of the RSS parameter block: 40-byte header part, 512-byte table, 40-byte key.
pub const RSS_PARAMS_LEN: usize = 40 + 4 * RSS_TABLE + 40;
/// Hash info: Toeplitz | IPv4 | TCP/IPv4 | IPv6 | IPv6_EX | TCP/IPv6 | TCP/IPv6_EX.
pub const RSS_HASH: u32 = 0x1 | 0x100 | 0x200 | 0x400 | 0x800 | 0x1000 | 0x2000;

/// Offload capabilities the host reported, reduced to what the driver uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffloadCaps {
    /// IPv4 tx checksum bits (IP4 0x100, TCP 0x10, UDP 0x40, options 0x1/0x4).
    pub ip4_tx_csum: u32,
    /// IPv6 tx checksum bits.
    pub ip6_tx_csum: u32,
    /// IPv4 rx checksum bits.
    pub ip4_rx_csum: u32,
    /// IPv6 rx checksum bits.
    pub ip6_rx_csum: u32,
    /// LSOv2 IPv4 possible (802.3 encapsulation bit), and its max size.
    pub lso4_max: Option<u32>,
    /// LSOv2 IPv6 possible, and its max size.
    pub lso6_max: Option<u32>,
}

/// Which offloads to turn on (those the host also supports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offloads {
    /// Tx and rx checksum.
    pub checksum: bool,
    /// TCP segmentation.
    pub tso: bool,
}

impl Default for Offloads {
    fn default() -> Self {
        Offloads {
            checksum: true,
            tso: true,
        }
    }
}

/// NDIS_OFFLOAD query input: header {0xA7, rev, size} padded to `size` (rev 3/156 at NVSP ≥ 5,
/// rev 2/144 at 4, rev 1/112 below).
pub fn offload_caps_query(nvsp_version: u32) -> ([u8; 156], usize) {
    let (rev, size) = match nvsp_version {
        v if v >= wire::nvsp::V5 => (3u8, 156usize),
        v if v >= wire::nvsp::V4 => (2, 144),
        _ => (1, 112),
    };
    let mut b = [0u8; 156];
    b[0] = 0xA7;
    b[1] = rev;
    wire::put_u16(&mut b, 2, size as u16);
    (b, size)
}

/// Parse an NDIS_OFFLOAD reply (at least the rev-1 112 bytes are needed).
pub fn parse_offload_caps(b: &[u8]) -> Option<OffloadCaps> {
    if b.len() < 112 || b[0] != 0xA7 {
        return None;
    }
    let w = |o| wire::u32_at(b, o).unwrap_or(0);
    let lso = |encap: u32, max: u32| (encap & 0x2 != 0 && max > 0).then_some(max);
    Some(OffloadCaps {
        ip4_tx_csum: w(8),
        ip4_rx_csum: w(16),
        ip6_tx_csum: w(24),
        ip6_rx_csum: w(32),
        lso4_max: lso(w(80), w(84)),
        lso6_max: lso(w(92), w(96)),
    })
}

/// NDIS_OFFLOAD_PARAMETERS: rev 3 / 28 bytes at NDIS 6.30, else rev 2 / 22 bytes. Checksum fields
/// are 4 ("tx and rx") where supported — DPDK sends 3 (rx only) by OR-ing 2 with 3 (dpdk §10) —
/// and LSOv2 2 ("on"); UDP checksum only at NDIS 6.30 like Linux.
pub fn offload_params(caps: &OffloadCaps, want: Offloads, ndis630: bool) -> ([u8; 28], usize) {
    let (rev, size) = if ndis630 { (3u8, 28usize) } else { (2, 22) };
    let mut b = [0u8; 28];
    b[0] = 0x80;
    b[1] = rev;
    wire::put_u16(&mut b, 2, size as u16);
    let both = |has: bool| if want.checksum && has { 4u8 } else { 1 };
    b[4] = both(caps.ip4_tx_csum & 0x100 != 0);
    b[5] = both(caps.ip4_tx_csum & 0x10 != 0);
    b[6] = if ndis630 {
        both(caps.ip4_tx_csum & 0x40 != 0)
    } else {
        1
    };
    b[7] = both(caps.ip6_tx_csum & 0x10 != 0);
    b[8] = if ndis630 {
        both(caps.ip6_tx_csum & 0x40 != 0)
    } else {
        1
    };
    b[11] = if want.tso && caps.lso4_max.is_some() {
        2
    } else {
        1
    };
    b[12] = if want.tso && caps.lso6_max.is_some() {
        2
    } else {
        1
    };
    (b, size)
}

/// RSS capabilities query input: header {0x88, rev 2, size 18}.
pub fn rss_caps_query() -> [u8; 18] {
    let mut b = [0u8; 18];
    b[0] = 0x88;
    b[1] = 2;
    wire::put_u16(&mut b, 2, 18);
    b
}

/// (receive queues, indirection entries) from an RSS capabilities reply.
pub fn parse_rss_caps(b: &[u8]) -> Option<(u32, u16)> {
    Some((
        wire::u32_at(b, 12)?,
        wire::u16_at(b, 16).unwrap_or(RSS_TABLE as u16),
    ))
}

/// The RSS parameter block (592 bytes): table at 40, key at 552.
pub fn rss_params(key: &[u8; 40], table: &[u16; RSS_TABLE], disable: bool) -> [u8; RSS_PARAMS_LEN] {
    let mut b = [0u8; RSS_PARAMS_LEN];
    b[0] = 0x89;
    b[1] = 2;
    wire::put_u16(&mut b, 2, 40);
    wire::put_u16(&mut b, 4, if disable { 0x10 } else { 0 });
    wire::put_u32(&mut b, 8, RSS_HASH);
    wire::put_u16(&mut b, 12, (4 * RSS_TABLE) as u16);
    wire::put_u32(&mut b, 16, 40);
    wire::put_u16(&mut b, 20, 40);
    wire::put_u32(&mut b, 24, 40 + 4 * RSS_TABLE as u32);
    for (i, q) in table.iter().enumerate() {
        wire::put_u32(&mut b, 40 + 4 * i, u32::from(*q));
    }
    b[552..].copy_from_slice(key);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_params_use_four_for_both_directions() {
        let caps = OffloadCaps {
            ip4_tx_csum: 0x100 | 0x10 | 0x40,
            ip6_tx_csum: 0x10 | 0x40,
            lso4_max: Some(62780),
            ..OffloadCaps::default()
        };
        let (b, n) = offload_params(&caps, Offloads::default(), true);
        assert_eq!(
            (n, b[0], b[1], wire::u16_at(&b, 2)),
            (28, 0x80, 3, Some(28))
        );
        assert_eq!(&b[4..9], &[4, 4, 4, 4, 4]);
        assert_eq!((b[11], b[12]), (2, 1));
        let (b, n) = offload_params(&caps, Offloads::default(), false);
        assert_eq!((n, b[1], b[6], b[8]), (22, 2, 1, 1));
        let (b, _) = offload_params(
            &caps,
            Offloads {
                checksum: false,
                tso: false,
            },
            true,
        );
        assert_eq!(&b[4..13], &[1, 1, 1, 1, 1, 0, 0, 1, 1]);
    }

    #[test]
    fn rss_block_layout() {
        let mut t = [0u16; RSS_TABLE];
        for (i, e) in t.iter_mut().enumerate() {
            *e = (i % 4) as u16;
        }
        let b = rss_params(&DEFAULT_RSS_KEY, &t, false);
        assert_eq!(b.len(), 592);
        assert_eq!(wire::u32_at(&b, 8), Some(0x3f01));
        assert_eq!(wire::u32_at(&b, 16), Some(40));
        assert_eq!(wire::u32_at(&b, 24), Some(552));
        assert_eq!(wire::u32_at(&b, 40 + 4 * 5), Some(1));
        assert_eq!(&b[552..], &DEFAULT_RSS_KEY);
        assert_eq!(
            wire::u16_at(&rss_params(&DEFAULT_RSS_KEY, &t, true), 4),
            Some(0x10)
        );
    }

    #[test]
    fn caps_query_revisions() {
        assert_eq!(offload_caps_query(0x60001).1, 156);
        assert_eq!(offload_caps_query(0x40000).1, 144);
        assert_eq!(offload_caps_query(0x30002).1, 112);
        assert!(parse_offload_caps(&[0xA7; 50]).is_none());
    }
}

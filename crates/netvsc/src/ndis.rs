//! NDIS objects the guest exchanges over RNDIS OIDs: the hardware offload capabilities it reads
//! (NDIS_OFFLOAD rev 1/2/3), the offload parameters it sets, RSS capabilities and the RSS parameter
//! block (Toeplitz, 40-byte key, 128-entry table, laid out table-then-key like Linux and DPDK).

use netvsc_proto::ndis::{
    NdisOffload, NdisOffloadParams, NdisRssCaps, RSS_KEY_LEN, RSS_MAX_TABLE_ENTRIES,
    RSS_PARAMS_SIZE, RssLayout, RssParams, csum, encap, hash_info, offload_param, rss_flags,
};
use netvsc_proto::{nvsp, toeplitz};

/// The standard Microsoft Toeplitz key.
pub const DEFAULT_RSS_KEY: [u8; 40] = toeplitz::STANDARD_KEY;
/// Entries in the RSS indirection table.
pub const RSS_TABLE: usize = RSS_MAX_TABLE_ENTRIES;
/// Size of the RSS parameter block: 40-byte header part, 512-byte table, 40-byte key.
pub const RSS_PARAMS_LEN: usize = RSS_PARAMS_SIZE as usize + 4 * RSS_TABLE + RSS_KEY_LEN;
/// Hash info: Toeplitz | IPv4 | TCP/IPv4 | IPv6 | IPv6_EX | TCP/IPv6 | TCP/IPv6_EX.
pub const RSS_HASH: u32 = hash_info::FUNCTION_TOEPLITZ | hash_types::ALL;

/// RSS hash types (NDIS hash-information bits; the Toeplitz function bit is added by the driver). DPDK's PMD
/// offers the same six; NDIS's UDP types are not standard on Hyper-V hosts.
pub mod hash_types {
    use netvsc_proto::ndis::hash_info;

    /// IPv4 addresses.
    pub const IPV4: u32 = hash_info::IPV4;
    /// IPv4 addresses and TCP ports.
    pub const TCP_IPV4: u32 = hash_info::TCP_IPV4;
    /// IPv6 addresses.
    pub const IPV6: u32 = hash_info::IPV6;
    /// IPv6 addresses with extension headers.
    pub const IPV6_EX: u32 = hash_info::IPV6_EX;
    /// IPv6 addresses and TCP ports.
    pub const TCP_IPV6: u32 = hash_info::TCP_IPV6;
    /// IPv6 with extension headers and TCP ports.
    pub const TCP_IPV6_EX: u32 = hash_info::TCP_IPV6_EX;
    /// Every type above (the default).
    pub const ALL: u32 = IPV4 | TCP_IPV4 | IPV6 | IPV6_EX | TCP_IPV6 | TCP_IPV6_EX;
}

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
    let rev = match nvsp_version {
        v if v >= nvsp::VERSION_5 => 3,
        v if v >= nvsp::VERSION_4 => 2,
        _ => 1,
    };
    let mut b = [0u8; 156];
    // Revisions 1–3 all fit the 156-byte buffer, so this cannot fail.
    let size = NdisOffload::default().emit(&mut b, rev).unwrap_or(0);
    (b, size)
}

/// Parse an NDIS_OFFLOAD reply (object type 0xA7, at least the rev-1 112 bytes).
pub fn parse_offload_caps(b: &[u8]) -> Option<OffloadCaps> {
    let o = NdisOffload::parse(b).ok()?;
    let lso =
        |encap_bits: u32, max: u32| (encap_bits & encap::E8023 != 0 && max > 0).then_some(max);
    Some(OffloadCaps {
        ip4_tx_csum: o.csum.ip4_txcsum,
        ip4_rx_csum: o.csum.ip4_rxcsum,
        ip6_tx_csum: o.csum.ip6_txcsum,
        ip6_rx_csum: o.csum.ip6_rxcsum,
        lso4_max: lso(o.lsov2.ip4_encap, o.lsov2.ip4_maxsz),
        lso6_max: lso(o.lsov2.ip6_encap, o.lsov2.ip6_maxsz),
    })
}

/// NDIS_OFFLOAD_PARAMETERS: rev 3 / 28 bytes at NDIS 6.30, else rev 2 / 22 bytes. Checksum fields
/// are 4 ("tx and rx") where supported — DPDK sends 3 (rx only) by OR-ing 2 with 3 (dpdk §10) —
/// and LSOv2 2 ("on"); UDP checksum only at NDIS 6.30 like Linux.
pub fn offload_params(caps: &OffloadCaps, want: Offloads, ndis630: bool) -> ([u8; 28], usize) {
    use offload_param::{DISABLED, ENABLED, TX_RX_DISABLED, TX_RX_ENABLED};
    let both = |has: bool| {
        if want.checksum && has {
            TX_RX_ENABLED
        } else {
            TX_RX_DISABLED
        }
    };
    let lso = |has: bool| if want.tso && has { ENABLED } else { DISABLED };
    let p = NdisOffloadParams {
        ip_v4_csum: both(caps.ip4_tx_csum & csum::IP4 != 0),
        tcp_ip_v4_csum: both(caps.ip4_tx_csum & csum::TCP4 != 0),
        udp_ip_v4_csum: if ndis630 {
            both(caps.ip4_tx_csum & csum::UDP4 != 0)
        } else {
            TX_RX_DISABLED
        },
        tcp_ip_v6_csum: both(caps.ip6_tx_csum & csum::TCP6 != 0),
        udp_ip_v6_csum: if ndis630 {
            both(caps.ip6_tx_csum & csum::UDP6 != 0)
        } else {
            TX_RX_DISABLED
        },
        lso_v2_ipv4: lso(caps.lso4_max.is_some()),
        lso_v2_ipv6: lso(caps.lso6_max.is_some()),
        ..NdisOffloadParams::default()
    };
    let mut b = [0u8; 28];
    // Revision 2 (22 bytes) and 3 (28 bytes) both fit, so this cannot fail.
    let size = p.emit(&mut b, if ndis630 { 3 } else { 2 }).unwrap_or(0);
    (b, size)
}

/// RSS capabilities query input: header {0x88, rev 2, size 18}.
pub fn rss_caps_query() -> [u8; 18] {
    let mut full = [0u8; 20];
    // The 20-byte buffer holds the whole structure, so this cannot fail.
    let _ = NdisRssCaps::default().emit(&mut full);
    let mut b = [0u8; 18];
    b.copy_from_slice(&full[..18]);
    b
}

/// (receive queues, indirection entries) from an RSS capabilities reply.
pub fn parse_rss_caps(b: &[u8]) -> Option<(u32, u16)> {
    let c = NdisRssCaps::parse(b).ok()?;
    Some((c.num_recv_queues, c.num_indirection_entries))
}

/// The RSS parameter block (592 bytes): table at 40, key at 552; `types` are [`hash_types`] bits.
pub fn rss_params(
    key: &[u8; 40],
    table: &[u16; RSS_TABLE],
    types: u32,
    disable: bool,
) -> [u8; RSS_PARAMS_LEN] {
    let mut b = [0u8; RSS_PARAMS_LEN];
    let entries: [u32; RSS_TABLE] = std::array::from_fn(|i| u32::from(table[i]));
    let flags = if disable { rss_flags::DISABLE_RSS } else { 0 };
    // 128 entries and a 40-byte key fill exactly RSS_PARAMS_LEN, so this cannot fail.
    let _ = RssParams::emit(
        &mut b,
        flags,
        0,
        hash_info::FUNCTION_TOEPLITZ | (types & hash_types::ALL),
        &entries,
        key,
        RssLayout::TableThenKey,
    );
    b
}

const _: () = assert!(RSS_PARAMS_LEN == 592);

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
        let h = NdisOffloadParams::parse(&b[..n]).unwrap().header;
        assert_eq!((n, b[0], b[1], h.size), (28, 0x80, 3, 28));
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
        let b = rss_params(&DEFAULT_RSS_KEY, &t, hash_types::ALL, false);
        assert_eq!(b.len(), 592);
        let p = RssParams::parse(&b).unwrap();
        assert_eq!(p.params.hash_info, 0x3f01);
        assert_eq!(p.params.indirection_offset, 40);
        assert_eq!(p.params.hashkey_offset, 552);
        assert_eq!(p.table_entry(5), Some(1));
        assert_eq!(&b[552..], &DEFAULT_RSS_KEY);
        let off = rss_params(&DEFAULT_RSS_KEY, &t, hash_types::ALL, true);
        assert_eq!(RssParams::parse(&off).unwrap().params.flags, 0x10);
    }

    #[test]
    fn offload_and_rss_caps_read_from_host_objects() {
        // A host's NDIS_OFFLOAD rev 3 built by the wire crate, read back by the driver.
        let mut o = NdisOffload::default();
        o.csum.ip4_txcsum = csum::IP4 | csum::TCP4;
        o.csum.ip4_rxcsum = csum::UDP4;
        o.csum.ip6_txcsum = csum::TCP6;
        o.csum.ip6_rxcsum = csum::UDP6;
        o.lsov2.ip4_encap = encap::E8023;
        o.lsov2.ip4_maxsz = 62780;
        o.lsov2.ip6_encap = encap::NULL;
        o.lsov2.ip6_maxsz = 62780;
        let mut b = [0u8; 156];
        let n = o.emit(&mut b, 3).unwrap();
        let caps = parse_offload_caps(&b[..n]).unwrap();
        assert_eq!(
            caps,
            OffloadCaps {
                ip4_tx_csum: 0x110,
                ip4_rx_csum: 0x40,
                ip6_tx_csum: 0x10,
                ip6_rx_csum: 0x40,
                lso4_max: Some(62780),
                lso6_max: None,
            }
        );
        assert!(
            parse_offload_caps(&b[..n - 50]).is_none(),
            "size past the reply"
        );
        let c = NdisRssCaps {
            num_recv_queues: 8,
            num_indirection_entries: 128,
            ..NdisRssCaps::default()
        };
        let mut b = [0u8; 20];
        c.emit(&mut b).unwrap();
        assert_eq!(parse_rss_caps(&b), Some((8, 128)));
        assert_eq!(&rss_caps_query()[..4], &[0x88, 2, 18, 0]);
        assert_eq!(parse_rss_caps(&b[..10]), None);
    }

    #[test]
    fn caps_query_revisions() {
        assert_eq!(offload_caps_query(0x60001).1, 156);
        assert_eq!(offload_caps_query(0x40000).1, 144);
        assert_eq!(offload_caps_query(0x30002).1, 112);
        assert!(parse_offload_caps(&[0xA7; 50]).is_none());
    }
}

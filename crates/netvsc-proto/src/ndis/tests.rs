//! NDIS tests: field offsets of the offload/RSS structures (protocol.md §4.5–§4.7), revision sizes, both RSS
//! parameter layouts, and bounds on every peer-supplied size/offset.

use super::*;
use crate::error::ProtoError;
use crate::toeplitz::STANDARD_KEY;

fn le(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn sample_offload() -> NdisOffload {
    let mut o = NdisOffload::default();
    o.csum.ip4_txenc = encap::E8023;
    o.csum.ip4_txcsum = csum::TCP4 | csum::TCP4OPT | csum::UDP4 | csum::IP4;
    o.csum.ip6_rxcsum = csum::TCP6 | csum::UDP6 | csum::IP6EXT;
    o.lsov2.ip4_encap = encap::E8023;
    o.lsov2.ip4_maxsz = 62_780;
    o.lsov2.ip6_minsg = 2;
    o.lsov2.ip6_opts = lsov2_opts::IP6EXT | lsov2_opts::TCP6OPT;
    o.flags = 0x55;
    o.ipsecv2.sa_caps = 0x77;
    o.rsc = RscOffload {
        ip4: 1,
        ip6: 1,
        pad: [0; 2],
    };
    o.encap_gre = EncapGreOffload {
        flags: 0x12,
        maxhdr: 0x34,
    };
    o
}

#[test]
fn offload_field_offsets_and_revisions() {
    let o = sample_offload();
    let mut b = [0xa5u8; 160];
    assert_eq!(o.emit(&mut b, 3).unwrap(), 156);
    assert_eq!(&b[..4], &[0xA7, 3, 156, 0]);
    assert_eq!((le(&b, 4), le(&b, 8), le(&b, 32)), (2, 0x154, 0x51));
    assert_eq!(
        (
            le(&b, 80),
            le(&b, 84),
            le(&b, 100),
            le(&b, 104),
            le(&b, 108)
        ),
        (2, 62_780, 2, 5, 0x55)
    );
    assert_eq!(
        (le(&b, 140), b[144], b[145], le(&b, 148), le(&b, 152)),
        (0x77, 1, 1, 0x12, 0x34)
    );
    assert_eq!(
        NdisOffload::parse(&b).unwrap(),
        NdisOffload {
            header: NdisObjectHeader::new(0xA7, 3, 156),
            ..o
        }
    );
    // Rev 1: 112 bytes; parse zero-fills ipsecv2/rsc/gre.
    let mut b1 = [0xa5u8; 160];
    assert_eq!(o.emit(&mut b1, 1).unwrap(), 112);
    assert_eq!(&b1[..4], &[0xA7, 1, 112, 0]);
    let p = NdisOffload::parse(&b1[..112]).unwrap();
    assert_eq!(
        (p.lsov2, p.flags, p.rsc, p.encap_gre, p.ipsecv2),
        (
            o.lsov2,
            0x55,
            RscOffload::default(),
            EncapGreOffload::default(),
            IpsecV2Offload::default()
        )
    );
    assert_eq!(o.emit(&mut b1, 2).unwrap(), 144);
    assert_eq!(
        NdisOffload::query_header(2).unwrap(),
        NdisObjectHeader::new(0xA7, 2, 144)
    );
    assert!(matches!(
        NdisOffload::query_header(4),
        Err(ProtoError::Invalid {
            field: "revision",
            ..
        })
    ));
}

#[test]
fn offload_parse_bounds() {
    let mut b = [0u8; 156];
    sample_offload().emit(&mut b, 3).unwrap();
    assert!(matches!(
        NdisOffload::parse(&b[..150]),
        Err(ProtoError::Truncated {
            needed: 156,
            have: 150,
            ..
        })
    ));
    let mut bad = b;
    bad[0] = 0x80;
    assert!(matches!(
        NdisOffload::parse(&bad),
        Err(ProtoError::Invalid {
            field: "header.type",
            value: 0x80,
            ..
        })
    ));
    bad = b;
    bad[2] = 100;
    assert!(matches!(
        NdisOffload::parse(&bad),
        Err(ProtoError::Invalid {
            field: "header.size",
            value: 100,
            ..
        })
    ));
    assert!(matches!(
        NdisOffload::parse(&b[..3]),
        Err(ProtoError::Truncated { .. })
    ));
    assert!(matches!(
        sample_offload().emit(&mut [0u8; 111], 1),
        Err(ProtoError::BufferTooSmall { needed: 112, .. })
    ));
}

#[test]
fn offload_params_offsets() {
    let p = NdisOffloadParams {
        ip_v4_csum: offload_param::TX_RX_DISABLED,
        tcp_ip_v4_csum: offload_param::TX_RX_ENABLED,
        udp_ip_v6_csum: offload_param::RX_ENABLED_TX_DISABLED,
        lso_v2_ipv4: offload_param::ENABLED,
        lso_v2_ipv6: offload_param::DISABLED,
        tcp_connection_ipv6: 9,
        flags: 0xABCD,
        ipsec_v2_ipv4: 7,
        rsc_ipv4: offload_param::ENABLED,
        encap_types: 3,
        ..Default::default()
    };
    let mut b = [0xa5u8; 28];
    assert_eq!(p.emit(&mut b, 3).unwrap(), 28);
    assert_eq!(&b[..4], &[0x80, 3, 28, 0]);
    assert_eq!((b[4], b[5], b[8], b[11], b[12], b[14]), (1, 4, 3, 2, 1, 9));
    assert_eq!((le(&b, 16), b[21], b[22], b[25]), (0xABCD, 7, 2, 3));
    assert_eq!(
        NdisOffloadParams::parse(&b).unwrap(),
        NdisOffloadParams {
            header: NdisObjectHeader::new(0x80, 3, 28),
            ..p
        }
    );
    // Rev 2 (22 bytes, what Linux sends for NVSP ≤ 4): rsc/encap absent → zero.
    assert_eq!(p.emit(&mut b, 2).unwrap(), 22);
    let q = NdisOffloadParams::parse(&b[..22]).unwrap();
    assert_eq!(
        (q.ipsec_v2_ipv4, q.rsc_ipv4, q.encap_types, q.flags),
        (7, 0, 0, 0xABCD)
    );
    assert_eq!(p.emit(&mut b, 1).unwrap(), 20);
    assert!(matches!(
        NdisOffloadParams::parse(&b[..19]),
        Err(ProtoError::Truncated { .. })
    ));
}

#[test]
fn rss_caps_layout() {
    let c = NdisRssCaps {
        capabilities: rss_caps::HASH_TYPE_TCP_IPV4
            | rss_caps::HASH_TYPE_TCP_IPV6
            | rss_caps::TOEPLITZ,
        num_int_msg: 1,
        num_recv_queues: 8,
        num_indirection_entries: 128,
        ..Default::default()
    };
    let mut b = [0xa5u8; 20];
    assert_eq!(c.emit(&mut b).unwrap(), 20);
    assert_eq!(&b[..4], &[0x88, 2, 18, 0]);
    assert_eq!(
        (
            le(&b, 4),
            le(&b, 8),
            le(&b, 12),
            u16::from_le_bytes([b[16], b[17]])
        ),
        (0x301, 1, 8, 128)
    );
    // The 18 meaningful bytes are enough to parse.
    let p = NdisRssCaps::parse(&b[..18]).unwrap();
    assert_eq!((p.num_recv_queues, p.num_indirection_entries), (8, 128));
    assert!(matches!(
        NdisRssCaps::parse(&b[..17]),
        Err(ProtoError::Truncated { .. })
    ));
    assert_eq!(NdisRssCaps::QUERY_HEADER.as_bytes(), &[0x88, 2, 18, 0]);
}

use zerocopy::IntoBytes;

#[test]
fn rss_params_linux_layout() {
    let table: Vec<u32> = (0..128).map(|i| i % 4).collect();
    let hash = hash_info::FUNCTION_TOEPLITZ
        | hash_info::IPV4
        | hash_info::TCP_IPV4
        | hash_info::IPV6
        | hash_info::TCP_IPV6;
    let mut b = vec![0xa5u8; 600];
    let n = RssParams::emit(
        &mut b,
        0,
        0,
        hash,
        &table,
        &STANDARD_KEY,
        RssLayout::TableThenKey,
    )
    .unwrap();
    assert_eq!(n, 592); // Linux "extlen 592"
    assert_eq!(&b[..4], &[0x89, 2, 40, 0]);
    assert_eq!(
        (le(&b, 8), u16::from_le_bytes([b[12], b[13]]), le(&b, 16)),
        (hash, 512, 40)
    );
    assert_eq!((u16::from_le_bytes([b[20], b[21]]), le(&b, 24)), (40, 552));
    assert_eq!((le(&b, 40), le(&b, 44), le(&b, 40 + 4 * 127)), (0, 1, 3));
    assert_eq!(&b[552..592], &STANDARD_KEY[..]);
    let p = RssParams::parse(&b[..n]).unwrap();
    assert_eq!((p.table_len(), p.key), (128, &STANDARD_KEY[..]));
    assert!(p.table_entries().eq(table.iter().copied()));
    assert_eq!((p.table_entry(5), p.table_entry(128)), (Some(1), None));
}

#[test]
fn rss_params_freebsd_layout() {
    let table = [0u32, 1, 2, 3, 4, 5, 6, 7];
    let mut b = vec![0u8; 200];
    let n = RssParams::emit(
        &mut b,
        0,
        0,
        hash_info::FUNCTION_TOEPLITZ,
        &table,
        &STANDARD_KEY,
        RssLayout::KeyThenTable,
    )
    .unwrap();
    assert_eq!(n, 40 + 40 + 32);
    assert_eq!((le(&b, 24), le(&b, 16)), (40, 80));
    assert_eq!(&b[40..80], &STANDARD_KEY[..]);
    assert_eq!(le(&b, 80 + 4 * 7), 7);
    let p = RssParams::parse(&b[..n]).unwrap();
    assert!(p.table_entries().eq(table.iter().copied()));
    assert_eq!(p.key, &STANDARD_KEY[..]);
}

#[test]
fn rss_params_disable_without_table_or_key() {
    let mut b = [0u8; 40];
    assert_eq!(
        RssParams::emit(
            &mut b,
            rss_flags::DISABLE_RSS,
            0,
            0,
            &[],
            &[],
            RssLayout::TableThenKey
        )
        .unwrap(),
        40
    );
    let p = RssParams::parse(&b).unwrap();
    assert_eq!(
        (p.params.flags, p.table_len(), p.key.len()),
        (rss_flags::DISABLE_RSS, 0, 0)
    );
}

#[test]
fn rss_params_bounds() {
    let mut b = vec![0u8; 592];
    let table = [0u32; 128];
    RssParams::emit(
        &mut b,
        0,
        0,
        1,
        &table,
        &STANDARD_KEY,
        RssLayout::TableThenKey,
    )
    .unwrap();
    // Key beyond the input.
    assert!(matches!(
        RssParams::parse(&b[..591]),
        Err(ProtoError::OutOfRange {
            field: "hashkey_offset",
            ..
        })
    ));
    // Table pointing into the fixed part.
    let mut c = b.clone();
    c[16..20].copy_from_slice(&8u32.to_le_bytes());
    assert!(matches!(
        RssParams::parse(&c),
        Err(ProtoError::OutOfRange {
            field: "indirection_offset",
            value: 8,
            ..
        })
    ));
    // Huge offsets do not overflow.
    c = b.clone();
    c[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        RssParams::parse(&c),
        Err(ProtoError::OutOfRange { .. })
    ));
    // Table size not a multiple of 4, or over 128 entries.
    c = b.clone();
    c[12..14].copy_from_slice(&510u16.to_le_bytes());
    assert!(matches!(
        RssParams::parse(&c),
        Err(ProtoError::Invalid {
            field: "indirection_size",
            ..
        })
    ));
    c[12..14].copy_from_slice(&516u16.to_le_bytes());
    assert!(matches!(
        RssParams::parse(&c),
        Err(ProtoError::Invalid {
            field: "indirection_size",
            ..
        })
    ));
    // Wrong object type.
    c = b.clone();
    c[0] = 0x88;
    assert!(matches!(
        RssParams::parse(&c),
        Err(ProtoError::Invalid {
            field: "header.type",
            ..
        })
    ));
    assert!(
        RssParams::emit(
            &mut [0u8; 100],
            0,
            0,
            1,
            &table,
            &STANDARD_KEY,
            RssLayout::TableThenKey
        )
        .is_err()
    );
    assert!(
        RssParams::emit(
            &mut vec![0u8; 1200],
            0,
            0,
            1,
            &[0; 129],
            &[],
            RssLayout::TableThenKey
        )
        .is_err()
    );
}

//! OID QUERY and SET on the host. Unknown OIDs answer NOT_SUPPORTED; a SET whose buffer is shorter
//! than the OID's structure answers INVALID_LENGTH; every OID seen is recorded in order.

use super::{Device, lock};
use netvsc_proto::ndis::{
    self, CsumOffload, LsoV2Offload, NdisObjectHeader, NdisOffload, NdisOffloadParams, NdisRssCaps,
    RssParams, csum, encap, hash_info, lsov2_opts, object_type, rss_caps, rss_flags,
};
use netvsc_proto::rndis::{CONFIG_PARAM_TYPE_STRING, ConfigParameter, status as st_};
use netvsc_proto::{ProtoError, nvsp, oid as o};
use zerocopy::IntoBytes;

const SUPPORTED: &[u32] = &[
    o::GEN_SUPPORTED_LIST,
    o::GEN_HARDWARE_STATUS,
    o::GEN_MEDIA_SUPPORTED,
    o::GEN_MEDIA_IN_USE,
    o::GEN_MAXIMUM_FRAME_SIZE,
    o::GEN_LINK_SPEED,
    o::GEN_TRANSMIT_BLOCK_SIZE,
    o::GEN_RECEIVE_BLOCK_SIZE,
    o::GEN_VENDOR_ID,
    o::GEN_VENDOR_DESCRIPTION,
    o::GEN_CURRENT_PACKET_FILTER,
    o::GEN_MAXIMUM_TOTAL_SIZE,
    o::GEN_MAC_OPTIONS,
    o::GEN_MEDIA_CONNECT_STATUS,
    o::GEN_MAXIMUM_SEND_PACKETS,
    o::GEN_XMIT_OK,
    o::GEN_RCV_OK,
    o::GEN_FRIENDLY_NAME,
    o::GEN_RECEIVE_SCALE_CAPABILITIES,
    o::GEN_RECEIVE_SCALE_PARAMETERS,
    o::GEN_RNDIS_CONFIG_PARAMETER,
    o::GEN_NETWORK_LAYER_ADDRESSES,
    o::E802_3_PERMANENT_ADDRESS,
    o::E802_3_CURRENT_ADDRESS,
    o::E802_3_MULTICAST_LIST,
    o::E802_3_MAXIMUM_LIST_SIZE,
    o::OFFLOAD_ENCAPSULATION,
    o::E802_3_RCV_ERROR_ALIGNMENT,
    o::E802_3_XMIT_ONE_COLLISION,
    o::E802_3_XMIT_MORE_COLLISIONS,
    o::TCP_OFFLOAD_CURRENT_CONFIG,
    o::TCP_OFFLOAD_PARAMETERS,
    o::TCP_OFFLOAD_HARDWARE_CAPABILITIES,
];

fn u32v(v: u32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// NDIS_OFFLOAD (hardware caps / current config) of the revision the NVSP version implies.
fn offload_caps(version: u32) -> Vec<u8> {
    let rev = if version >= nvsp::VERSION_5 {
        3
    } else if version >= nvsp::VERSION_4 {
        2
    } else {
        1
    };
    let caps = NdisOffload {
        csum: CsumOffload {
            ip4_txenc: encap::E8023,
            ip4_txcsum: csum::ALL4,
            ip4_rxenc: encap::E8023,
            ip4_rxcsum: csum::ALL4,
            ip6_txenc: encap::E8023,
            ip6_txcsum: csum::ALL6,
            ip6_rxenc: encap::E8023,
            ip6_rxcsum: csum::ALL6,
        },
        lsov2: LsoV2Offload {
            ip4_encap: encap::E8023,
            ip4_maxsz: LSO_MAX_SIZE,
            ip4_minsg: 2,
            ip6_encap: encap::E8023,
            ip6_maxsz: LSO_MAX_SIZE,
            ip6_minsg: 2,
            ip6_opts: lsov2_opts::IP6EXT | lsov2_opts::TCP6OPT,
        },
        ..NdisOffload::default()
    };
    let mut b = vec![0u8; core::mem::size_of::<NdisOffload>()];
    let n = caps.emit(&mut b, rev).unwrap_or(0);
    b.truncate(n);
    b
}

/// Largest LSOv2 send the host accepts (OpenVMM).
const LSO_MAX_SIZE: u32 = 62780;

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// Answer a QUERY: (status, info buffer).
pub(crate) fn query(dev: &Device, oid: u32, _input: &[u8]) -> (u32, Vec<u8>) {
    let mut st = lock(&dev.state);
    super::state::record(&mut st.oids_queried, oid);
    let mtu = st.frame_mtu;
    let data = match oid {
        o::GEN_SUPPORTED_LIST => SUPPORTED.iter().flat_map(|v| v.to_le_bytes()).collect(),
        o::GEN_HARDWARE_STATUS
        | o::GEN_MEDIA_SUPPORTED
        | o::GEN_MEDIA_IN_USE
        | o::GEN_MAC_OPTIONS => u32v(0),
        o::GEN_MAXIMUM_FRAME_SIZE => u32v(mtu - 14),
        o::GEN_LINK_SPEED => u32v(st.link_speed),
        o::GEN_TRANSMIT_BLOCK_SIZE | o::GEN_RECEIVE_BLOCK_SIZE | o::GEN_MAXIMUM_TOTAL_SIZE => {
            u32v(mtu)
        }
        o::GEN_VENDOR_ID => u32v(0x00FF_FFFF),
        o::GEN_VENDOR_DESCRIPTION => b"hv-emu synthetic NIC\0".to_vec(),
        o::GEN_CURRENT_PACKET_FILTER => u32v(st.filter),
        o::GEN_MEDIA_CONNECT_STATUS => u32v(if st.link_up { 0 } else { 1 }),
        o::GEN_MAXIMUM_SEND_PACKETS => u32v(super::rndis::MAX_PACKETS_PER_MESSAGE),
        o::GEN_XMIT_OK | o::GEN_RCV_OK => {
            drop(st);
            let chans = dev.channels();
            let c = |ch: &super::Channel| {
                let ctr = if oid == o::GEN_XMIT_OK {
                    &ch.counters.g2h_frames
                } else {
                    &ch.counters.h2g_frames
                };
                ctr.load(std::sync::atomic::Ordering::Relaxed)
            };
            return (
                st_::SUCCESS,
                chans
                    .iter()
                    .map(|ch| c(ch))
                    .sum::<u64>()
                    .to_le_bytes()
                    .to_vec(),
            );
        }
        o::GEN_FRIENDLY_NAME => utf16z("hv-emu synthetic NIC"),
        o::E802_3_PERMANENT_ADDRESS => dev.cfg.mac.to_vec(),
        o::E802_3_CURRENT_ADDRESS => st.current_mac.to_vec(),
        o::E802_3_MULTICAST_LIST => Vec::new(),
        o::E802_3_MAXIMUM_LIST_SIZE => u32v(32),
        o::E802_3_RCV_ERROR_ALIGNMENT
        | o::E802_3_XMIT_ONE_COLLISION
        | o::E802_3_XMIT_MORE_COLLISIONS => u32v(0),
        o::TCP_OFFLOAD_HARDWARE_CAPABILITIES | o::TCP_OFFLOAD_CURRENT_CONFIG => {
            offload_caps(st.version)
        }
        o::OFFLOAD_ENCAPSULATION => {
            // NDIS_OFFLOAD_ENCAPSULATION rev 1: IPv4 and IPv6 enabled, 802.3, 14-byte header.
            let mut b = NdisObjectHeader::new(object_type::OFFLOAD_ENCAPSULATION, 1, 28)
                .as_bytes()
                .to_vec();
            for v in [1u32, encap::E8023, 14, 1, encap::E8023, 14] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            b
        }
        o::GEN_RECEIVE_SCALE_CAPABILITIES => {
            // A 128-entry table even for one queue: DPDK misbehaves on 0 (OpenVMM).
            let caps = NdisRssCaps {
                capabilities: rss_caps::USING_MSI_X
                    | rss_caps::HASH_TYPE_TCP_IPV4
                    | rss_caps::HASH_TYPE_TCP_IPV6
                    | rss_caps::HASH_TYPE_TCP_IPV6_EX
                    | rss_caps::TOEPLITZ,
                num_int_msg: u32::from(dev.cfg.max_queues),
                num_recv_queues: u32::from(dev.cfg.max_queues),
                num_indirection_entries: ndis::RSS_MAX_TABLE_ENTRIES as u16,
                ..NdisRssCaps::default()
            };
            // The answer is the 18-byte revision-2 object (the header's size), not the padded struct:
            // DPDK 22.11 rejects a 20-byte answer and falls back to one queue.
            let mut b = vec![0u8; core::mem::size_of::<NdisRssCaps>()];
            let _ = caps.emit(&mut b);
            b.truncate(usize::from(ndis::RSS_CAPS_SIZE));
            b
        }
        _ => return (st_::NOT_SUPPORTED, Vec::new()),
    };
    (st_::SUCCESS, data)
}

/// Apply a SET: returns the RNDIS status.
pub(crate) fn set(dev: &Device, oid: u32, input: &[u8]) -> u32 {
    let mut st = lock(&dev.state);
    super::state::record(&mut st.oids_set, oid);
    match oid {
        o::GEN_CURRENT_PACKET_FILTER => {
            let Some(f) = input
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            else {
                return st_::INVALID_LENGTH;
            };
            st.filter = f;
            super::state::record(&mut st.filters, f);
            st.filter_changes += 1;
            st_::SUCCESS
        }
        o::TCP_OFFLOAD_PARAMETERS => {
            let q = match NdisOffloadParams::parse(input) {
                Ok(q) => q,
                Err(e) => return invalid(e),
            };
            let p = &mut st.offload;
            p.sets += 1;
            p.revision = q.header.revision;
            p.ipv4_checksum = q.ip_v4_csum;
            p.tcp_ipv4_checksum = q.tcp_ip_v4_csum;
            p.udp_ipv4_checksum = q.udp_ip_v4_csum;
            p.tcp_ipv6_checksum = q.tcp_ip_v6_csum;
            p.udp_ipv6_checksum = q.udp_ip_v6_csum;
            p.lso_v1 = q.lso_v1;
            p.lso_v2_ipv4 = q.lso_v2_ipv4;
            p.lso_v2_ipv6 = q.lso_v2_ipv6;
            p.rsc_ipv4 = q.rsc_ipv4;
            p.rsc_ipv6 = q.rsc_ipv6;
            st_::SUCCESS
        }
        o::OFFLOAD_ENCAPSULATION => {
            if input.len() < 28 {
                return st_::INVALID_LENGTH;
            }
            st.offload.encapsulation_sets += 1;
            st_::SUCCESS
        }
        o::GEN_RECEIVE_SCALE_PARAMETERS => set_rss(&mut st.rss, input, dev.cfg.max_queues),
        o::GEN_RNDIS_CONFIG_PARAMETER => match config_parameter(input) {
            Some(p) => {
                st.offload.config_parameters.push(p);
                st_::SUCCESS
            }
            None => st_::INVALID_DATA,
        },
        o::E802_3_MULTICAST_LIST => {
            if !input.len().is_multiple_of(6) {
                return st_::INVALID_LENGTH;
            }
            st_::SUCCESS
        }
        o::GEN_NETWORK_LAYER_ADDRESSES => st_::SUCCESS,
        _ => st_::NOT_SUPPORTED,
    }
}

/// The RNDIS status for a payload that does not parse: too short, or malformed.
fn invalid(e: ProtoError) -> u32 {
    match e {
        ProtoError::Truncated { .. } => st_::INVALID_LENGTH,
        _ => st_::INVALID_DATA,
    }
}

/// OID_GEN_RECEIVE_SCALE_PARAMETERS as OpenVMM's host checks it: DISABLE (or no hash function) turns RSS off;
/// otherwise the key must be 40 bytes, the table non-empty with every entry below the host's queue count (a short
/// table is repeated to 128 entries). A refused block changes nothing. The UNCHANGED flags keep that part.
fn set_rss(rss: &mut super::RssState, b: &[u8], max_queues: u16) -> u32 {
    let p = match RssParams::parse(b) {
        Ok(p) => p,
        Err(e) => return invalid(e),
    };
    let flags = p.params.flags;
    rss.sets += 1;
    let hash = if flags & rss_flags::HASH_INFO_UNCHANGED == 0 {
        p.params.hash_info
    } else {
        rss.hash_info
    };
    if flags & rss_flags::DISABLE_RSS != 0 || hash & hash_info::FUNCTION_MASK == 0 {
        rss.enabled = false;
        rss.hash_info = hash;
        return st_::SUCCESS;
    }
    let key = if flags & rss_flags::HASH_KEY_UNCHANGED == 0 {
        if p.key.len() != ndis::RSS_KEY_LEN {
            return st_::INVALID_DATA;
        }
        p.key.to_vec()
    } else {
        rss.key.clone()
    };
    let table = if flags & rss_flags::ITABLE_UNCHANGED == 0 {
        let n = p.table_len();
        if n == 0 || p.table_entries().any(|q| q >= u32::from(max_queues)) {
            return st_::INVALID_DATA;
        }
        (0..ndis::RSS_MAX_TABLE_ENTRIES)
            .map(|i| p.table_entry(i % n).unwrap_or(0))
            .collect()
    } else {
        rss.table.clone()
    };
    rss.key = key;
    rss.table = table;
    rss.hash_info = hash;
    rss.enabled = hash & hash_info::TYPE_MASK != 0;
    st_::SUCCESS
}

/// Decode an RNDIS_CONFIG_PARAMETER_INFO as "name=value" (strings are UTF-16, integers a u32).
fn config_parameter(b: &[u8]) -> Option<String> {
    let p = ConfigParameter::parse(b).ok()?;
    let utf16 = |s: &[u8]| {
        let units: Vec<u16> = s
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
            .trim_end_matches('\0')
            .to_string()
    };
    let name = utf16(p.name);
    let value = if p.param_type == CONFIG_PARAM_TYPE_STRING {
        utf16(p.value)
    } else {
        let v = p.value.get(..4)?;
        u32::from_le_bytes([v[0], v[1], v[2], v[3]]).to_string()
    };
    Some(format!("{name}={value}"))
}

//! OID QUERY and SET on the host. Unknown OIDs answer NOT_SUPPORTED; a SET whose buffer is shorter
//! than the OID's structure answers INVALID_LENGTH; every OID seen is recorded in order.

use super::{Device, lock};
use crate::wire::{hash, nvsp, oid as o, put_u16, put_u32, rndis as r, u16_at, u32_at};

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
    o::P802_3_PERMANENT_ADDRESS,
    o::P802_3_CURRENT_ADDRESS,
    o::P802_3_MULTICAST_LIST,
    o::P802_3_MAXIMUM_LIST_SIZE,
    o::OFFLOAD_ENCAPSULATION,
    o::P802_3_RCV_ERROR_ALIGNMENT,
    o::P802_3_XMIT_ONE_COLLISION,
    o::P802_3_XMIT_MORE_COLLISIONS,
    o::TCP_OFFLOAD_CURRENT_CONFIG,
    o::TCP_OFFLOAD_PARAMETERS,
    o::TCP_OFFLOAD_HARDWARE_CAPABILITIES,
];

fn u32v(v: u32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// NDIS_OFFLOAD (hardware caps / current config) of the revision the NVSP version implies.
fn offload_caps(version: u32) -> Vec<u8> {
    let (rev, size) = if version >= nvsp::V5 {
        (3u8, 156usize)
    } else if version >= nvsp::V4 {
        (2, 144)
    } else {
        (1, 112)
    };
    let mut b = vec![0u8; size];
    b[0] = 0xA7;
    b[1] = rev;
    put_u16(&mut b, 2, size as u16);
    let v4 = 0x1 | 0x4 | 0x10 | 0x40 | 0x100; // IP4OPT TCP4OPT TCP4 UDP4 IP4
    let v6 = 0x1 | 0x4 | 0x10 | 0x40; // IP6EXT TCP6OPT TCP6 UDP6
    for (i, v) in [2, v4, 2, v4, 2, v6, 2, v6].into_iter().enumerate() {
        put_u32(&mut b, 4 + 4 * i, v);
    }
    // LSOv2: ip4 encap/maxsz/minsegs, ip6 encap/maxsz/minsegs/opts.
    for (i, v) in [2, 62780, 2, 2, 62780, 2, 0x5].into_iter().enumerate() {
        put_u32(&mut b, 80 + 4 * i, v);
    }
    b
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// Answer a QUERY: (status, info buffer).
pub(crate) fn query(dev: &Device, oid: u32, _input: &[u8]) -> (u32, Vec<u8>) {
    let mut st = lock(&dev.state);
    st.oids_queried.push(oid);
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
        o::GEN_MAXIMUM_SEND_PACKETS => u32v(r::MAX_PACKETS_PER_MESSAGE),
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
                r::STATUS_SUCCESS,
                chans
                    .iter()
                    .map(|ch| c(ch))
                    .sum::<u64>()
                    .to_le_bytes()
                    .to_vec(),
            );
        }
        o::GEN_FRIENDLY_NAME => utf16z("hv-emu synthetic NIC"),
        o::P802_3_PERMANENT_ADDRESS => dev.cfg.mac.to_vec(),
        o::P802_3_CURRENT_ADDRESS => st.current_mac.to_vec(),
        o::P802_3_MULTICAST_LIST => Vec::new(),
        o::P802_3_MAXIMUM_LIST_SIZE => u32v(32),
        o::P802_3_RCV_ERROR_ALIGNMENT
        | o::P802_3_XMIT_ONE_COLLISION
        | o::P802_3_XMIT_MORE_COLLISIONS => u32v(0),
        o::TCP_OFFLOAD_HARDWARE_CAPABILITIES | o::TCP_OFFLOAD_CURRENT_CONFIG => {
            offload_caps(st.version)
        }
        o::OFFLOAD_ENCAPSULATION => {
            let mut b = vec![0u8; 28];
            b[0] = 0xA8;
            b[1] = 1;
            put_u16(&mut b, 2, 28);
            for (i, v) in [1, 2, 14, 1, 2, 14].into_iter().enumerate() {
                put_u32(&mut b, 4 + 4 * i, v);
            }
            b
        }
        o::GEN_RECEIVE_SCALE_CAPABILITIES => {
            // A 128-entry table even for one queue: DPDK misbehaves on 0 (OpenVMM).
            let mut b = vec![0u8; 20];
            b[0] = 0x88;
            b[1] = 2;
            put_u16(&mut b, 2, 18);
            put_u32(
                &mut b,
                4,
                0x0800_0000 | 0x100 | 0x200 | 0x400 | hash::FUNCTION_TOEPLITZ,
            );
            put_u32(&mut b, 8, u32::from(dev.cfg.max_queues));
            put_u32(&mut b, 12, u32::from(dev.cfg.max_queues));
            put_u16(&mut b, 16, 128);
            b
        }
        _ => return (r::STATUS_NOT_SUPPORTED, Vec::new()),
    };
    (r::STATUS_SUCCESS, data)
}

/// Apply a SET: returns the RNDIS status.
pub(crate) fn set(dev: &Device, oid: u32, input: &[u8]) -> u32 {
    let mut st = lock(&dev.state);
    st.oids_set.push(oid);
    match oid {
        o::GEN_CURRENT_PACKET_FILTER => {
            let Some(f) = u32_at(input, 0) else {
                return r::STATUS_INVALID_LENGTH;
            };
            st.filter = f;
            st.filters.push(f);
            r::STATUS_SUCCESS
        }
        o::TCP_OFFLOAD_PARAMETERS => {
            if input.len() < 20 {
                return r::STATUS_INVALID_LENGTH;
            }
            if input[0] != 0x80 {
                return r::STATUS_INVALID_DATA;
            }
            let p = &mut st.offload;
            p.sets += 1;
            p.revision = input[1];
            p.ipv4_checksum = input[4];
            p.tcp_ipv4_checksum = input[5];
            p.udp_ipv4_checksum = input[6];
            p.tcp_ipv6_checksum = input[7];
            p.udp_ipv6_checksum = input[8];
            p.lso_v1 = input[9];
            p.lso_v2_ipv4 = input[11];
            p.lso_v2_ipv6 = input[12];
            if input.len() >= 24 {
                p.rsc_ipv4 = input[22];
                p.rsc_ipv6 = input[23];
            }
            r::STATUS_SUCCESS
        }
        o::OFFLOAD_ENCAPSULATION => {
            if input.len() < 28 {
                return r::STATUS_INVALID_LENGTH;
            }
            st.offload.encapsulation_sets += 1;
            r::STATUS_SUCCESS
        }
        o::GEN_RECEIVE_SCALE_PARAMETERS => set_rss(&mut st.rss, input),
        o::GEN_RNDIS_CONFIG_PARAMETER => match config_parameter(input) {
            Some(p) => {
                st.offload.config_parameters.push(p);
                r::STATUS_SUCCESS
            }
            None => r::STATUS_INVALID_DATA,
        },
        o::P802_3_MULTICAST_LIST => {
            if !input.len().is_multiple_of(6) {
                return r::STATUS_INVALID_LENGTH;
            }
            r::STATUS_SUCCESS
        }
        o::GEN_NETWORK_LAYER_ADDRESSES => r::STATUS_SUCCESS,
        _ => r::STATUS_NOT_SUPPORTED,
    }
}

fn set_rss(rss: &mut super::RssState, b: &[u8]) -> u32 {
    if b.len() < 40 {
        return r::STATUS_INVALID_LENGTH;
    }
    if b[0] != 0x89 {
        return r::STATUS_INVALID_DATA;
    }
    let flags = u16_at(b, 4).unwrap_or(0);
    let hash_info = u32_at(b, 8).unwrap_or(0);
    let (tsize, toff) = (
        u16_at(b, 12).unwrap_or(0) as usize,
        u32_at(b, 16).unwrap_or(0) as usize,
    );
    let (ksize, koff) = (
        u16_at(b, 20).unwrap_or(0) as usize,
        u32_at(b, 24).unwrap_or(0) as usize,
    );
    rss.sets += 1;
    if flags & 0x10 != 0 {
        rss.enabled = false;
        return r::STATUS_SUCCESS;
    }
    if flags & 0x4 == 0 && tsize > 0 {
        if tsize % 4 != 0 || tsize / 4 > 128 || toff.checked_add(tsize).is_none_or(|e| e > b.len())
        {
            return r::STATUS_INVALID_DATA;
        }
        let entries: Vec<u32> = (0..tsize / 4)
            .map(|i| u32_at(b, toff + 4 * i).unwrap_or(0))
            .collect();
        rss.table = (0..128).map(|i| entries[i % entries.len()]).collect();
    }
    if flags & 0x8 == 0 && ksize > 0 {
        if ksize != 40 || koff.checked_add(ksize).is_none_or(|e| e > b.len()) {
            return r::STATUS_INVALID_DATA;
        }
        rss.key = b[koff..koff + ksize].to_vec();
    }
    if flags & 0x2 == 0 {
        rss.hash_info = hash_info;
    }
    rss.enabled = rss.hash_info & hash::TYPE_MASK != 0;
    r::STATUS_SUCCESS
}

/// Decode an RNDIS_CONFIG_PARAMETER_INFO: "name=value" (strings are UTF-16, offsets from its start).
fn config_parameter(b: &[u8]) -> Option<String> {
    let (noff, nlen, ty, voff, vlen) = (
        u32_at(b, 0)?,
        u32_at(b, 4)?,
        u32_at(b, 8)?,
        u32_at(b, 12)?,
        u32_at(b, 16)?,
    );
    let utf16 = |off: u32, len: u32| -> Option<String> {
        let s = b.get(off as usize..(off as usize).checked_add(len as usize)?)?;
        let units: Vec<u16> = s
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        Some(
            String::from_utf16_lossy(&units)
                .trim_end_matches('\0')
                .to_string(),
        )
    };
    let name = utf16(noff, nlen)?;
    let value = if ty == 2 {
        utf16(voff, vlen)?
    } else {
        u32_at(b, voff as usize)?.to_string()
    };
    Some(format!("{name}={value}"))
}

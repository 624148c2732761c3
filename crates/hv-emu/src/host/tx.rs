//! Guest→host data: walk the RNDIS messages of one send (bounded by its size), apply each
//! PACKET's PPIs (802.1Q tag inserted, checksums filled, LSOv2 segmented) and hand the frames to
//! the backend. A frame longer than the MTU + 14 that is not an LSO packet is dropped and counted. Control messages found on the way go to the RNDIS control handler. The backend is
//! locked once for a run of PACKETs, not once per frame.

use super::nvsp::Ctx;
use super::{Channel, Device, frame, lock, rndis};
use crate::backend::Backend;
use crate::stats::add;
use netvsc_proto::ppi::{self, LsoV2Info, TxChecksumInfo, VlanInfo};
use netvsc_proto::rndis::{PpiIter, RndisHeader, RndisPacket, msg_type};
use std::sync::atomic::Ordering;
use zerocopy::FromBytes;

/// What the PPIs of one PACKET asked for.
#[derive(Debug, Default, Clone, Copy)]
struct TxInfo {
    vlan: Option<u16>,
    csum: TxChecksumInfo,
    lso_mss: Option<u32>,
}

/// Process every RNDIS message in `data`. Returns false if any was malformed.
pub(crate) fn process_rndis(dev: &Device, ch: &Channel, ctx: &mut Ctx, data: &[u8]) -> bool {
    let mut off = 0usize;
    let mut count = 0u64;
    let mut ok = true;
    let mut backend = None;
    while let Ok((hdr, _)) = RndisHeader::read_from_prefix(&data[off..]) {
        let len = hdr.msg_len as usize;
        if len < 8 || len > data.len() - off {
            dev.proto_error("rndisBadLength");
            ok = false;
            break;
        }
        let msg = &data[off..off + len];
        count += 1;
        if hdr.msg_type == msg_type::PACKET {
            let b = backend.get_or_insert_with(|| lock(&dev.backend));
            if !tx_packet(dev, ch, ctx, msg, &mut ***b) {
                add(&ch.counters.tx_dropped, 1);
                ok = false;
            }
        } else {
            backend = None;
            rndis::handle_control(dev, hdr.msg_type, msg);
        }
        off += len;
    }
    if count == 0 {
        dev.proto_error("rndisEmpty");
        ok = false;
    }
    add(&ch.counters.rndis_sections, 1);
    add(&ch.counters.rndis_messages, count);
    ch.counters
        .rndis_max_per_section
        .fetch_max(count, Ordering::Relaxed);
    ok
}

fn parse_ppis(dev: &Device, ppis: PpiIter<'_>) -> Option<TxInfo> {
    let mut info = TxInfo::default();
    for p in ppis {
        let value = match p {
            Ok(p) if p.data.len() >= 4 => (
                p.ppi_type,
                u32::from_le_bytes([p.data[0], p.data[1], p.data[2], p.data[3]]),
            ),
            _ => {
                dev.proto_error("ppiBadLength");
                return None;
            }
        };
        match value {
            (ppi::IEEE_8021Q, v) => info.vlan = Some(VlanInfo(v).tci()),
            (ppi::TCPIP_CHKSUM, v) => info.csum = TxChecksumInfo(v),
            (ppi::TCP_LARGESEND, v) => info.lso_mss = Some(LsoV2Info(v).mss()),
            _ => {}
        }
    }
    Some(info)
}

/// Longest frame a guest may send unsegmented: MTU + 14, plus 4 for an 802.1Q/802.1ad tag written in the frame.
fn frame_limit(dev: &Device, frame: &[u8]) -> usize {
    let mtu = dev.frame_mtu.load(Ordering::Relaxed) as usize;
    match frame.get(12..14) {
        Some([0x81, 0x00]) | Some([0x88, 0xa8]) => mtu + 4,
        _ => mtu,
    }
}

fn tx_packet(
    dev: &Device,
    ch: &Channel,
    ctx: &mut Ctx,
    msg: &[u8],
    backend: &mut dyn Backend,
) -> bool {
    let pkt = match RndisPacket::parse(msg) {
        Ok(p) if p.data.len() >= frame::ETH_LEN => p,
        Err(netvsc_proto::ProtoError::OutOfRange {
            field: "ppi_offset",
            ..
        }) => {
            dev.proto_error("packetBadPpiOffset");
            return false;
        }
        Ok(_) | Err(_) => {
            dev.proto_error("packetBadDataOffset");
            return false;
        }
    };
    let Some(info) = parse_ppis(dev, pkt.ppis()) else {
        return false;
    };
    let (payload, dlen) = (pkt.data, pkt.data.len());
    add(&ch.counters.g2h_frames, 1);
    add(&ch.counters.g2h_bytes, dlen as u64);
    if dev.cfg.mtu_check && info.lso_mss.is_none() && dlen > frame_limit(dev, payload) {
        // The switch drops it; the send itself is fine (completed SUCCESS, not a malformed message).
        add(&ch.counters.drop_tx_too_large, 1);
        return true;
    }
    let Ctx {
        frame: fbuf,
        seg,
        tagged,
        ..
    } = ctx;
    let mut out = |f: &[u8], tagged: &mut Vec<u8>| match info.vlan {
        Some(tci) => {
            tagged.clear();
            frame::push_tagged(f, tci, tagged);
            backend.transmit(tagged);
        }
        None => backend.transmit(f),
    };
    let fill_ip = info.csum.ip_hdr_csum() && info.csum.is_ipv4();
    let fill_l4 = info.csum.tcp_csum() || info.csum.udp_csum();
    if info.lso_mss.is_none() && !fill_ip && !fill_l4 {
        // Nothing to change in the frame: hand it over without a private copy.
        out(payload, tagged);
        return true;
    }
    fbuf.clear();
    fbuf.extend_from_slice(payload);
    if let Some(mss) = info.lso_mss {
        match frame::segment_tcp(fbuf, mss as usize, seg, |s| out(s, tagged)) {
            Ok(n) => add(&ch.counters.lso_segments, n as u64),
            Err(_) => {
                dev.proto_error("lsoBadFrame");
                return false;
            }
        }
        return true;
    }
    if fill_ip {
        frame::fill_ipv4_checksum(fbuf);
    }
    if fill_l4 {
        frame::fill_l4_checksum(fbuf);
    }
    out(fbuf, tagged);
    true
}

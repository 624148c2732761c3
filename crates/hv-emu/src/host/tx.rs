//! Guest→host data: walk the RNDIS messages of one send (bounded by its size), apply each
//! PACKET's PPIs (802.1Q tag inserted, checksums filled, LSOv2 segmented) and hand the frames to
//! the backend. Control messages found on the way go to the RNDIS control handler.

use super::nvsp::Ctx;
use super::{Channel, Device, frame, lock, rndis};
use crate::stats::add;
use crate::wire::{ppi, rndis as r, u32_at};
use std::sync::atomic::Ordering;

/// What the PPIs of one PACKET asked for.
#[derive(Debug, Default, Clone, Copy)]
struct TxInfo {
    vlan: Option<u16>,
    csum: u32,
    lso_mss: Option<u32>,
}

/// Process every RNDIS message in `data`. Returns false if any was malformed.
pub(crate) fn process_rndis(dev: &Device, ch: &Channel, ctx: &mut Ctx, data: &[u8]) -> bool {
    let mut off = 0usize;
    let mut count = 0u64;
    let mut ok = true;
    while data.len() - off >= 8 {
        let (Some(ty), Some(len)) = (u32_at(data, off), u32_at(data, off + 4)) else {
            break;
        };
        let len = len as usize;
        if len < 8 || len > data.len() - off {
            dev.proto_error("rndisBadLength");
            ok = false;
            break;
        }
        let msg = &data[off..off + len];
        count += 1;
        if ty == r::PACKET {
            if !tx_packet(dev, ch, ctx, msg) {
                add(&ch.counters.tx_dropped, 1);
                ok = false;
            }
        } else {
            rndis::handle_control(dev, ty, msg);
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

fn parse_ppis(dev: &Device, ppis: &[u8]) -> Option<TxInfo> {
    let mut info = TxInfo::default();
    let mut off = 0;
    while ppis.len() - off >= ppi::HEADER_LEN {
        let (size, ty, poff) = (
            u32_at(ppis, off)? as usize,
            u32_at(ppis, off + 4)?,
            u32_at(ppis, off + 8)? as usize,
        );
        if size < ppi::HEADER_LEN
            || size > ppis.len() - off
            || poff < ppi::HEADER_LEN
            || poff + 4 > size
        {
            dev.proto_error("ppiBadLength");
            return None;
        }
        let value = u32_at(ppis, off + poff)?;
        match ty {
            ppi::IEEE_8021Q => info.vlan = Some((value & 0xFFFF) as u16),
            ppi::CHECKSUM => info.csum = value,
            ppi::LSO => info.lso_mss = Some(value & 0xF_FFFF),
            _ => {}
        }
        off += size;
    }
    Some(info)
}

fn tx_packet(dev: &Device, ch: &Channel, ctx: &mut Ctx, msg: &[u8]) -> bool {
    if msg.len() < r::PACKET_HEADER_LEN {
        dev.proto_error("packetTooShort");
        return false;
    }
    let field = |o| u32_at(msg, o).unwrap_or(0) as usize;
    let (doff, dlen, ppi_off, ppi_len) = (field(8), field(12), field(28), field(32));
    let Some(data_end) = (8usize).checked_add(doff).and_then(|s| s.checked_add(dlen)) else {
        dev.proto_error("packetBadDataOffset");
        return false;
    };
    if doff < 36 || data_end > msg.len() || dlen < frame::ETH_LEN {
        dev.proto_error("packetBadDataOffset");
        return false;
    }
    let info = if ppi_len == 0 {
        TxInfo::default()
    } else {
        let Some(ppi_end) = (8usize)
            .checked_add(ppi_off)
            .and_then(|s| s.checked_add(ppi_len))
        else {
            dev.proto_error("packetBadPpiOffset");
            return false;
        };
        if ppi_off < 36 || ppi_end > msg.len() {
            dev.proto_error("packetBadPpiOffset");
            return false;
        }
        match parse_ppis(dev, &msg[8 + ppi_off..ppi_end]) {
            Some(i) => i,
            None => return false,
        }
    };
    let payload = &msg[8 + doff..data_end];
    add(&ch.counters.g2h_frames, 1);
    add(&ch.counters.g2h_bytes, dlen as u64);
    let Ctx {
        frame: fbuf,
        seg,
        tagged,
        ..
    } = ctx;
    fbuf.clear();
    fbuf.extend_from_slice(payload);
    let mut backend = lock(&dev.backend);
    let mut out = |f: &[u8], tagged: &mut Vec<u8>| match info.vlan {
        Some(tci) => {
            tagged.clear();
            frame::push_tagged(f, tci, tagged);
            backend.transmit(tagged);
        }
        None => backend.transmit(f),
    };
    if let Some(mss) = info.lso_mss {
        match frame::segment_tcp(fbuf, mss as usize, seg, |s| out(s, tagged)) {
            Ok(n) => add(&ch.counters.lso_segments, n as u64),
            Err(_) => {
                drop(backend);
                dev.proto_error("lsoBadFrame");
                return false;
            }
        }
        return true;
    }
    if info.csum & ppi::TX_IP_HDR_CSUM != 0 && info.csum & ppi::TX_IS_IPV4 != 0 {
        frame::fill_ipv4_checksum(fbuf);
    }
    if info.csum & (ppi::TX_TCP_CSUM | ppi::TX_UDP_CSUM) != 0 {
        frame::fill_l4_checksum(fbuf);
    }
    out(fbuf, tagged);
    true
}

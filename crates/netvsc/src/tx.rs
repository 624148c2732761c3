//! Transmit. Frames up to `tx_copybreak` are copied into a send-buffer section, several RNDIS
//! PACKET messages per section (bounded by the host's packets-per-message, section size and
//! alignment); the open section is announced with one NVSP 107 when it fills or the burst ends.
//! Larger frames are copied with their RNDIS header into a per-queue DMA slot and sent GPA-direct,
//! one range per 4 KiB page. Sections and slots return on the host's completion, which is also
//! when packets and bytes are counted. No free section/slot or a full ring stops the burst.

use std::sync::atomic::Ordering::Relaxed;

use vmbus_ring::{GpaRange, OutgoingKind, OutgoingPacket, SharedMem};

use crate::queue::{Mode, QueueCore, TAG_GPA, TAG_SECTION};
use crate::shared::AggLimits;
use crate::stats::QueueStats;
use crate::tx_region::RegionState;
use netvsc_proto::nvsp::{self, NvspMessage, SendRndisPkt};
use netvsc_proto::ppi::{self, LsoV2Info, PPI_U32_LEN, TxChecksumInfo, VlanInfo};
use netvsc_proto::rndis::{PACKET_HEADER_LEN, PacketWriter};

/// Room for the PACKET header and up to four PPIs.
pub const TX_HDR_MAX: usize = PACKET_HEADER_LEN + 4 * PPI_U32_LEN;
/// Largest frame accepted (a 64 KiB TSO payload plus headers).
pub const TX_FRAME_MAX: usize = 65536 + 18 + 256;
/// Most GPA ranges in one packet (MAX_PAGE_BUFFER_COUNT).
pub(crate) const GPA_MAX: usize = 32;

/// Transport protocol of a checksum request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum L4Proto {
    /// No transport checksum.
    #[default]
    None,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// Offload the host should perform on a frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TxOffload {
    /// Nothing.
    #[default]
    None,
    /// Fill in checksums.
    Checksum {
        /// IPv6 (else IPv4).
        ipv6: bool,
        /// Compute the IPv4 header checksum.
        ip_hdr: bool,
        /// Transport checksum to compute.
        l4: L4Proto,
        /// Ethernet header length (14, or 18 with a tag in the frame).
        l2_len: u16,
        /// IP header length.
        l3_len: u16,
    },
    /// TCP segmentation (LSOv2) at `mss`.
    Tso {
        /// IPv6 (else IPv4).
        ipv6: bool,
        /// Segment payload size.
        mss: u32,
        /// Ethernet header length.
        l2_len: u16,
        /// IP header length.
        l3_len: u16,
    },
}

/// Per-frame metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxMeta {
    /// Insert this 802.1Q TCI (sent as a PPI; the frame itself stays untagged).
    pub vlan_tci: Option<u16>,
    /// Checksum / segmentation request.
    pub offload: TxOffload,
}

/// One frame to send, gathered from segments.
#[derive(Debug, Clone, Copy)]
pub struct TxPacket<'a> {
    /// Frame bytes, back to back.
    pub segs: &'a [&'a [u8]],
    /// Metadata.
    pub meta: TxMeta,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Acct {
    pub pkts: u32,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy)]
struct Agg {
    idx: u32,
    used: u32,
    last_off: u32,
    pkts: u32,
    bytes: u64,
}

/// Per-queue DMA memory for GPA-direct frames: a window and the PFN of each 4 KiB page.
pub(crate) struct DmaArea {
    pub mem: SharedMem,
    pub pfns: Vec<u64>,
    /// Keeps the allocation alive (the uio layer's owner).
    pub _owner: Box<dyn std::any::Any + Send>,
}

pub(crate) struct TxState {
    send_buf: SharedMem,
    section_size: u32,
    sec_base: u32,
    free_secs: Vec<u32>,
    sec_acct: Vec<Acct>,
    agg: Option<Agg>,
    stuck: bool,
    limits: AggLimits,
    copybreak: u32,
    dma: DmaArea,
    slot_size: usize,
    free_slots: Vec<u32>,
    slot_acct: Vec<Acct>,
    pub(crate) gpa: Vec<GpaRange>,
    in_flight: u32,
    /// How the device gives DMA addresses to the host (a tx region allocated later follows it).
    pub(crate) iova: vmbus_uio::IovaMode,
    /// The zero-copy transmit region, once the queue's owner created one.
    pub(crate) region: Option<RegionState>,
}

/// What happened to one packet.
pub(crate) enum Outcome {
    Taken,
    Invalid,
    Backpressure,
}

/// DMA slot size for frames up to [`TX_FRAME_MAX`] plus their header.
pub(crate) const SLOT_SIZE: usize = (TX_FRAME_MAX + TX_HDR_MAX).div_ceil(4096) * 4096;
// A full slot must fit one GPA-direct packet's page ranges.
const _: () = assert!(SLOT_SIZE / 4096 < GPA_MAX);

impl TxState {
    /// Sections `sec_base .. sec_base + sec_count` of the send buffer belong to this queue alone.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        send_buf: SharedMem,
        section_size: u32,
        sec_base: u32,
        sec_count: u32,
        limits: AggLimits,
        copybreak: u32,
        dma: DmaArea,
    ) -> TxState {
        let slots = dma.mem.len() / SLOT_SIZE;
        TxState {
            send_buf,
            section_size,
            sec_base,
            free_secs: (sec_base..sec_base + sec_count).rev().collect(),
            sec_acct: vec![Acct::default(); sec_count as usize],
            agg: None,
            stuck: false,
            limits,
            copybreak: if sec_count == 0 { 0 } else { copybreak },
            dma,
            slot_size: SLOT_SIZE,
            free_slots: (0..slots as u32).rev().collect(),
            slot_acct: vec![Acct::default(); slots],
            gpa: Vec::with_capacity(GPA_MAX),
            in_flight: 0,
            iova: vmbus_uio::IovaMode::Va,
            region: None,
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
            + self.agg.map_or(0, |a| a.pkts)
            + self.region.as_ref().map_or(0, RegionState::in_flight)
    }

    /// Whether the open section still waits to be announced after a full ring.
    pub(crate) fn stuck(&self) -> bool {
        self.stuck
    }

    /// Frames at or below this many bytes are copied into a send section.
    pub(crate) fn copybreak(&self) -> u32 {
        self.copybreak
    }

    /// Settle a section's completion; false when it was not in flight (unknown, duplicate or forged).
    pub fn complete_section(&mut self, idx: u32, ok: bool, stats: &QueueStats) -> bool {
        let Some(local) = idx.checked_sub(self.sec_base) else {
            return false;
        };
        let Some(acct) = self.sec_acct.get_mut(local as usize) else {
            return false;
        };
        if acct.pkts == 0 {
            return false; // not in flight: a duplicate or forged completion
        }
        let a = std::mem::take(acct);
        settle(a, ok, stats);
        self.in_flight -= a.pkts;
        self.free_secs.push(idx);
        true
    }

    /// Settle a GPA slot's completion; false when it was not in flight.
    pub fn complete_slot(&mut self, slot: u32, ok: bool, stats: &QueueStats) -> bool {
        let Some(acct) = self.slot_acct.get_mut(slot as usize) else {
            return false;
        };
        if acct.pkts == 0 {
            return false;
        }
        let a = std::mem::take(acct);
        settle(a, ok, stats);
        self.in_flight -= a.pkts;
        self.free_slots.push(slot);
        true
    }
}

pub(crate) fn settle(a: Acct, ok: bool, stats: &QueueStats) {
    if ok {
        stats.tx.packets.fetch_add(u64::from(a.pkts), Relaxed);
        stats.tx.bytes.fetch_add(a.bytes, Relaxed);
    } else {
        stats.tx.errors.fetch_add(u64::from(a.pkts), Relaxed);
    }
}

/// Round `v` up to a power-of-two `align`.
pub fn align_up(v: u32, align: u32) -> u32 {
    (v + align - 1) & !(align - 1)
}

/// Build the PACKET header and PPIs for a frame; returns the header length (0 only if they did
/// not fit, which the at most three PPIs written here never do in `TX_HDR_MAX`).
pub fn build_header(
    buf: &mut [u8; TX_HDR_MAX],
    meta: &TxMeta,
    queue: u16,
    frame_len: usize,
    stripped: bool,
) -> usize {
    write_header(buf, meta, queue, frame_len, stripped).unwrap_or(0)
}

fn write_header(
    buf: &mut [u8; TX_HDR_MAX],
    meta: &TxMeta,
    queue: u16,
    frame_len: usize,
    stripped: bool,
) -> Result<usize, netvsc_proto::ProtoError> {
    let mut w = PacketWriter::new(buf)?;
    w.add_ppi_u32(ppi::NBL_HASH_VALUE, u32::from(queue))?;
    if let Some(tci) = meta.vlan_tci {
        w.add_ppi_u32(ppi::IEEE_8021Q, VlanInfo::from_tci(tci).0)?;
    }
    // The tag was taken out of the frame: lengths the caller gave include it.
    let l2 = |l2_len: u16| l2_len.saturating_sub(if stripped && l2_len >= 18 { 4 } else { 0 });
    match meta.offload {
        TxOffload::None => {}
        TxOffload::Tso {
            ipv6,
            mss,
            l2_len,
            l3_len,
        } => {
            let l4_off = l2(l2_len).wrapping_add(l3_len);
            w.add_ppi_u32(ppi::TCP_LARGESEND, LsoV2Info::new(mss, l4_off, ipv6).0)?;
        }
        TxOffload::Checksum {
            ipv6,
            ip_hdr,
            l4,
            l2_len,
            l3_len,
        } => {
            let mut flags = if ipv6 {
                TxChecksumInfo::IS_IPV6
            } else {
                TxChecksumInfo::IS_IPV4
            };
            if ip_hdr && !ipv6 {
                flags |= TxChecksumInfo::IP_HDR_CSUM;
            }
            flags |= match l4 {
                L4Proto::None => 0,
                L4Proto::Tcp => TxChecksumInfo::TCP_CSUM,
                L4Proto::Udp => TxChecksumInfo::UDP_CSUM,
            };
            let l4_off = l2(l2_len).wrapping_add(l3_len);
            w.add_ppi_u32(ppi::TCPIP_CHKSUM, TxChecksumInfo::new(flags, l4_off).0)?;
        }
    }
    let hdr_len = w.data_start();
    w.finish_header(frame_len)?;
    Ok(hdr_len)
}

/// First 16 bytes of a gathered frame and its total length.
fn head_of(segs: &[&[u8]]) -> ([u8; 16], usize) {
    let mut head = [0u8; 16];
    let mut n = 0;
    let mut total = 0;
    for s in segs {
        total += s.len();
        let take = (16 - n).min(s.len());
        head[n..n + take].copy_from_slice(&s[..take]);
        n += take;
    }
    (head, total)
}

/// Copy the segments to `dst` at `at`, leaving out bytes 12..16 (the 802.1Q tag) when `strip`.
fn copy_frame(dst: &SharedMem, mut at: usize, segs: &[&[u8]], strip: bool) -> bool {
    let mut logical = 0usize;
    for seg in segs {
        let (s, e) = (logical, logical + seg.len());
        logical = e;
        let pieces: [&[u8]; 2] = if strip && s < 16 && e > 12 {
            let before = &seg[..12usize.saturating_sub(s).min(seg.len())];
            let after = &seg[(16usize.max(s) - s).min(seg.len())..];
            [before, after]
        } else {
            [seg, &[]]
        };
        for p in pieces {
            if !p.is_empty() {
                if dst.write(at, p).is_err() {
                    return false;
                }
                at += p.len();
            }
        }
    }
    true
}

/// Send a burst on `core`'s channel; returns how many packets were taken.
pub(crate) fn tx_burst(core: &mut QueueCore, pkts: &[TxPacket<'_>]) -> usize {
    core.poll(Mode::Drain, crate::queue::POLL_BUDGET_PACKETS);
    if core.tx.stuck && !flush_agg(core) {
        core.chan.flush();
        return 0;
    }
    let mut taken = 0;
    for p in pkts {
        match send_one(core, p) {
            Outcome::Taken => taken += 1,
            Outcome::Invalid => {
                core.stats.tx.errors.fetch_add(1, Relaxed);
                taken += 1;
            }
            Outcome::Backpressure => break,
        }
    }
    flush_agg(core);
    core.chan.flush();
    taken
}

pub(crate) fn send_one(core: &mut QueueCore, p: &TxPacket<'_>) -> Outcome {
    let (head, total) = head_of(p.segs);
    let mut meta = p.meta;
    let tagged = total >= 18 && head[12] == 0x81 && head[13] == 0x00;
    let strip = tagged && meta.vlan_tci.is_none();
    if strip {
        meta.vlan_tci = Some(u16::from_be_bytes([head[14], head[15]]));
    }
    let frame_len = total - if strip { 4 } else { 0 };
    if !(14..=TX_FRAME_MAX).contains(&frame_len) {
        return Outcome::Invalid;
    }
    let mut hdr = [0u8; TX_HDR_MAX];
    let hdr_len = build_header(&mut hdr, &meta, core.id, frame_len, strip);
    if hdr_len == 0 {
        return Outcome::Invalid;
    }
    let size = (hdr_len + frame_len) as u32;
    let tx = &mut core.tx;
    let limits = tx.limits;
    if frame_len <= tx.copybreak as usize && size <= limits.max_bytes {
        let full = tx.agg.is_some_and(|a| {
            let pad = align_up(a.used, limits.align) - a.used;
            a.pkts >= limits.max_pkts || a.used + pad + size > limits.max_bytes
        });
        if full && !flush_agg(core) {
            return Outcome::Backpressure;
        }
        let tx = &mut core.tx;
        let mut a = match tx.agg {
            Some(a) => a,
            None => match tx.free_secs.pop() {
                Some(idx) => Agg {
                    idx,
                    used: 0,
                    last_off: 0,
                    pkts: 0,
                    bytes: 0,
                },
                None => {
                    core.stats.tx.channel_full.fetch_add(1, Relaxed);
                    return Outcome::Backpressure;
                }
            },
        };
        let base = a.idx as usize * tx.section_size as usize;
        let start = if a.pkts == 0 {
            0
        } else {
            align_up(a.used, limits.align)
        };
        if start > a.used {
            // Pad the previous message and grow its length to cover the padding (it ran from
            // `last_off` to `used`; it now runs to `start`, so no need to read it back).
            let pad = (start - a.used) as usize;
            let prev_len_at = base + a.last_off as usize + 4;
            let ok = tx.send_buf.fill(base + a.used as usize, pad, 0).is_ok()
                && tx
                    .send_buf
                    .store_u32(prev_len_at, start - a.last_off)
                    .is_ok();
            if !ok {
                return Outcome::Invalid;
            }
        }
        let at = base + start as usize;
        if tx.send_buf.write(at, &hdr[..hdr_len]).is_err()
            || !copy_frame(&tx.send_buf, at + hdr_len, p.segs, strip)
        {
            return Outcome::Invalid;
        }
        a.last_off = start;
        a.used = start + size;
        a.pkts += 1;
        a.bytes += frame_len as u64;
        tx.agg = Some(a);
        core.stats.tx.count_class(frame_len, &head);
        if a.pkts >= limits.max_pkts {
            flush_agg(core);
        }
        return Outcome::Taken;
    }
    if !flush_agg(core) {
        return Outcome::Backpressure;
    }
    let tx = &mut core.tx;
    let Some(slot) = tx.free_slots.pop() else {
        core.stats.tx.ring_full.fetch_add(1, Relaxed);
        return Outcome::Backpressure;
    };
    let base = slot as usize * tx.slot_size;
    if tx.dma.mem.write(base, &hdr[..hdr_len]).is_err()
        || !copy_frame(&tx.dma.mem, base + hdr_len, p.segs, strip)
    {
        tx.free_slots.push(slot);
        return Outcome::Invalid;
    }
    tx.gpa.clear();
    let mut off = base;
    let end = base + size as usize;
    while off < end {
        let page_end = (off / 4096 + 1) * 4096;
        let len = page_end.min(end) - off;
        let Some(&pfn) = tx.dma.pfns.get(off / 4096) else {
            tx.free_slots.push(slot);
            return Outcome::Invalid;
        };
        if tx.gpa.len() == GPA_MAX {
            tx.free_slots.push(slot);
            return Outcome::Invalid;
        }
        tx.gpa.push(GpaRange {
            len: len as u32,
            offset: (off % 4096) as u32,
            pfn,
        });
        off += len;
    }
    let msg = data_announce(nvsp::SECTION_INDEX_NONE, 0);
    let pkt = OutgoingPacket {
        kind: OutgoingKind::GpaDirect { ranges: &tx.gpa },
        trans_id: TAG_GPA | u64::from(slot),
        completion_requested: true,
        payload: &[&msg[..16]],
    };
    if core.chan.send(&pkt).is_err() {
        core.tx.free_slots.push(slot);
        core.stats.tx.channel_full.fetch_add(1, Relaxed);
        return Outcome::Backpressure;
    }
    let tx = &mut core.tx;
    tx.slot_acct[slot as usize] = Acct {
        pkts: 1,
        bytes: frame_len as u64,
    };
    tx.in_flight += 1;
    core.stats.tx.count_class(frame_len, &head);
    Outcome::Taken
}

/// NVSP SEND_RNDIS_PKT on the data channel: a send section and the bytes used in it, or
/// `SECTION_INDEX_NONE` for a GPA-direct packet (the first 16 bytes are sent).
pub(crate) fn data_announce(section: u32, used: u32) -> [u8; nvsp::MESSAGE_LEN] {
    NvspMessage::SendRndisPkt(SendRndisPkt {
        channel_type: nvsp::CHANNEL_TYPE_DATA,
        send_buf_section_index: section,
        send_buf_section_size: used,
    })
    .to_bytes()
}

/// Announce the open section to the host. False (and the section kept) when the ring is full.
pub(crate) fn flush_agg(core: &mut QueueCore) -> bool {
    let Some(a) = core.tx.agg else {
        return true;
    };
    let msg = data_announce(a.idx, a.used);
    let pkt = OutgoingPacket {
        kind: OutgoingKind::InBand,
        trans_id: TAG_SECTION | u64::from(a.idx),
        completion_requested: true,
        payload: &[&msg[..16]],
    };
    if core.chan.send(&pkt).is_err() {
        core.tx.stuck = true;
        core.stats.tx.channel_full.fetch_add(1, Relaxed);
        return false;
    }
    let tx = &mut core.tx;
    if let Some(acct) =
        (a.idx.checked_sub(tx.sec_base)).and_then(|l| tx.sec_acct.get_mut(l as usize))
    {
        *acct = Acct {
            pkts: a.pkts,
            bytes: a.bytes,
        };
    }
    tx.in_flight += a.pkts;
    tx.agg = None;
    tx.stuck = false;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use netvsc_proto::rndis::{Ppi, PpiIter, RndisPacket};

    #[test]
    fn header_ppis_in_dpdk_order() {
        let mut b = [0u8; TX_HDR_MAX];
        let meta = TxMeta {
            vlan_tci: Some(0x2064),
            offload: TxOffload::Tso {
                ipv6: false,
                mss: 1448,
                l2_len: 14,
                l3_len: 20,
            },
        };
        let n = build_header(&mut b, &meta, 3, 9000, false);
        assert_eq!(n, 44 + 48);
        let msg_len = u32::from_le_bytes(b[4..8].try_into().unwrap());
        assert_eq!(msg_len, 44 + 48 + 9000);
        let l = RndisPacket::layout(&b, msg_len as usize).unwrap();
        assert_eq!(l.header.data_offset, 36 + 48, "data offset after PPIs");
        assert_eq!(l.header.ppi_offset, 36);
        assert_eq!((l.ppi.clone(), l.data.len()), (44..n, 9000));
        let ppis: Vec<_> = PpiIter::new(&b[l.ppi]).map(|p| p.unwrap()).collect();
        assert_eq!(ppis.len(), 3);
        let word = |p: &Ppi<'_>| u32::from_le_bytes(p.data.try_into().unwrap());
        assert_eq!(ppis[0].ppi_type, ppi::NBL_HASH_VALUE);
        assert_eq!(word(&ppis[0]), 3, "hash PPI carries the queue id");
        assert_eq!(ppis[1].ppi_type, ppi::IEEE_8021Q);
        assert_eq!(VlanInfo(word(&ppis[1])).tci(), 0x2064);
        assert_eq!(ppis[2].ppi_type, ppi::TCP_LARGESEND);
        let lso = LsoV2Info(word(&ppis[2]));
        assert_eq!(
            (lso.mss(), lso.tcp_header_offset(), lso.is_ipv6()),
            (1448, 34, false)
        );
    }

    #[test]
    fn checksum_ppi_with_stripped_tag() {
        let mut b = [0u8; TX_HDR_MAX];
        let meta = TxMeta {
            vlan_tci: Some(5),
            offload: TxOffload::Checksum {
                ipv6: false,
                ip_hdr: true,
                l4: L4Proto::Udp,
                l2_len: 18,
                l3_len: 20,
            },
        };
        let n = build_header(&mut b, &meta, 0, 100, true);
        let word = u32::from_le_bytes(b[n - 4..n].try_into().unwrap());
        assert_eq!(
            word,
            (1 | 8 | 0x10) | (34 << 16),
            "offset counts the untagged frame"
        );
    }

    #[test]
    fn alignment_math() {
        assert_eq!(align_up(0, 8), 0);
        assert_eq!(align_up(1, 8), 8);
        assert_eq!(align_up(152, 8), 152);
        assert_eq!(align_up(153, 4), 156);
    }

    #[test]
    fn tag_is_cut_out_of_segments() {
        let mem = SharedMem::alloc(64);
        let frame: Vec<u8> = (0u8..30).collect();
        // Split across the tag in awkward places.
        let segs: [&[u8]; 3] = [&frame[..13], &frame[13..15], &frame[15..]];
        assert!(copy_frame(&mem, 0, &segs, true));
        let mut out = [0u8; 26];
        mem.read(0, &mut out).unwrap();
        let want: Vec<u8> = (0u8..12).chain(16..30).collect();
        assert_eq!(&out[..], &want[..]);
    }
}

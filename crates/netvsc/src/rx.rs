//! Receive: the host delivers transfer-page packets whose ranges each hold one RNDIS message in
//! the shared receive buffer. The current packet's ranges sit in a cursor that rx bursts consume
//! across calls; the packet is completed (NVSP 108) once its ranges are consumed and every
//! zero-copy view into it has been released. Frames at most `rx_copybreak` long (or all frames when
//! zero-copy is off) are copied into the caller's reusable buffers; nothing allocates per packet.

use std::sync::atomic::Ordering::Relaxed;

use crate::queue::{Mode, QueueCore};
use crate::shared::Shared;
use netvsc_proto::ppi::{self, RxChecksumInfo, VlanInfo};
use netvsc_proto::rndis::{PACKET_HEADER_LEN, PpiIter, RndisPacket};

/// Largest PPI region looked at (the host sends 3–4 entries of 16 bytes).
const PPI_MAX: usize = 256;

/// Checksum verdict from the host's rx checksum PPI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Csum {
    /// No information.
    #[default]
    Unknown,
    /// Verified good.
    Good,
    /// Verified bad.
    Bad,
}

/// Metadata of one received frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxMeta {
    /// Frame length.
    pub len: u32,
    /// 802.1Q TCI the host stripped, if any.
    pub vlan_tci: Option<u16>,
    /// IPv4 header checksum verdict.
    pub ip_csum: Csum,
    /// TCP/UDP checksum verdict.
    pub l4_csum: Csum,
    /// RSS hash, if the host sent one.
    pub rss_hash: Option<u32>,
    /// RSS hash type bits (hash info PPI), 0 if absent.
    pub hash_type: u32,
    /// Queue it arrived on.
    pub queue: u16,
}

/// A zero-copy view of a frame still in the receive buffer. Release it with
/// [`QueuePair::release`](crate::QueuePair::release); until then the host cannot reuse the buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct RxView {
    /// Offset of the frame in the receive buffer.
    pub offset: u32,
    /// Frame length.
    pub len: u32,
    slot: u32,
    generation: u32,
}

/// One received frame: copied into `data` or, for zero-copy, described by `view`.
#[derive(Debug, Default)]
pub struct RxPacket {
    /// Copied frame (empty for a view). Its capacity is reused from burst to burst.
    pub data: Vec<u8>,
    /// The zero-copy view, when the frame was not copied.
    pub view: Option<RxView>,
    /// Metadata.
    pub meta: RxMeta,
}

impl RxPacket {
    /// A packet whose buffer already holds `cap` bytes, so copying never allocates.
    pub fn with_capacity(cap: usize) -> RxPacket {
        RxPacket {
            data: Vec::with_capacity(cap),
            view: None,
            meta: RxMeta::default(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Hold {
    trans_id: u64,
    refs: u32,
    open: bool,
    generation: u32,
}

/// Per-queue receive state.
pub(crate) struct RxState {
    active: bool,
    trans_id: u64,
    ranges: Vec<(u32, u32)>,
    next: usize,
    hold: Option<u32>,
    holds: Vec<Hold>,
    free: Vec<u32>,
    outstanding: u32,
    max_outstanding: u32,
    /// Rx transfers read by a background poll or a control waiter, kept in order for the queue's owner.
    backlog: Backlog,
    /// Copy every frame, whatever `rx_extmbuf_enable` says (a hand-over drain: no view may outlive the session).
    pub copy_only: bool,
}

/// Set-aside rx transfers in preallocated rings: a transfer record (transaction id, first range, range count)
/// per transfer and its ranges in a ring of ranges. Both hold as many entries as the receive buffer has
/// sub-allocations, the most an honest host can have outstanding, so stashing never allocates and never drops
/// what the host could send.
struct Backlog {
    xfers: Box<[(u64, u32, u32)]>,
    x_head: usize,
    x_len: usize,
    ranges: Box<[(u32, u32)]>,
    r_head: usize,
    r_len: usize,
}

impl Backlog {
    fn new(cap: usize) -> Backlog {
        let cap = cap.max(1);
        Backlog {
            xfers: vec![(0, 0, 0); cap].into_boxed_slice(),
            x_head: 0,
            x_len: 0,
            ranges: vec![(0, 0); cap].into_boxed_slice(),
            r_head: 0,
            r_len: 0,
        }
    }

    fn push(&mut self, trans_id: u64, ranges: impl ExactSizeIterator<Item = (u32, u32)>) -> bool {
        let n = ranges.len();
        if self.x_len == self.xfers.len() || self.r_len + n > self.ranges.len() {
            return false;
        }
        let cap = self.ranges.len();
        let start = (self.r_head + self.r_len) % cap;
        for (i, r) in ranges.take(n).enumerate() {
            self.ranges[(start + i) % cap] = r;
        }
        self.r_len += n;
        let at = (self.x_head + self.x_len) % self.xfers.len();
        self.xfers[at] = (trans_id, start as u32, n as u32);
        self.x_len += 1;
        true
    }
}

impl RxState {
    /// `max_outstanding` = receive sections / 2 (DPDK's cap on external buffers); `backlog` = the receive
    /// buffer's sub-allocation count (the most transfers and ranges the host can have outstanding).
    pub fn new(max_outstanding: u32, backlog: u32) -> RxState {
        let n = max_outstanding as usize + 1;
        RxState {
            active: false,
            trans_id: 0,
            ranges: Vec::with_capacity(crate::queue::MAX_XFER_RANGES + 1),
            next: 0,
            hold: None,
            holds: vec![
                Hold {
                    trans_id: 0,
                    refs: 0,
                    open: false,
                    generation: 0
                };
                n
            ],
            free: (0..n as u32).rev().collect(),
            outstanding: 0,
            max_outstanding,
            backlog: Backlog::new(backlog as usize),
            copy_only: false,
        }
    }

    pub fn cursor_busy(&self) -> bool {
        self.active
    }

    /// Copy a packet's ranges into the cursor (the caller bounded their number).
    pub fn load(&mut self, trans_id: u64, ranges: impl Iterator<Item = (u32, u32)>) {
        self.ranges.clear();
        self.ranges.extend(ranges);
        self.active = true;
        self.trans_id = trans_id;
        self.next = 0;
        self.hold = None;
    }

    pub fn has_backlog(&self) -> bool {
        self.backlog.x_len > 0
    }

    /// No room for one more transfer.
    pub fn backlog_full(&self) -> bool {
        let b = &self.backlog;
        b.x_len == b.xfers.len() || b.r_len == b.ranges.len()
    }

    /// Set a transfer aside for the queue's owner (background polls, drains and control waits) in the
    /// preallocated backlog. False when it is full, which only a host exceeding its own sub-allocations reaches.
    pub fn stash(
        &mut self,
        trans_id: u64,
        ranges: impl ExactSizeIterator<Item = (u32, u32)>,
    ) -> bool {
        self.backlog.push(trans_id, ranges)
    }

    /// Move the oldest set-aside transfer into the idle cursor.
    pub fn unstash(&mut self) -> bool {
        let b = &mut self.backlog;
        if b.x_len == 0 {
            return false;
        }
        let (trans_id, start, n) = b.xfers[b.x_head];
        b.x_head = (b.x_head + 1) % b.xfers.len();
        b.x_len -= 1;
        let cap = b.ranges.len();
        self.ranges.clear();
        for i in 0..n as usize {
            self.ranges.push(b.ranges[(start as usize + i) % cap]);
        }
        b.r_head = (start as usize + n as usize) % cap;
        b.r_len -= n as usize;
        self.active = true;
        self.trans_id = trans_id;
        self.next = 0;
        self.hold = None;
        true
    }

    pub fn next_range(&mut self) -> Option<(u32, u32)> {
        let r = self.ranges.get(self.next).copied();
        self.next += usize::from(r.is_some());
        r
    }

    pub fn remaining(&self) -> usize {
        self.ranges.len().saturating_sub(self.next)
    }

    /// Close the cursor; the transaction id to complete now, or `None` if views still hold it.
    pub fn close_cursor(&mut self) -> Option<u64> {
        if !self.active {
            return None;
        }
        self.active = false;
        match self.hold.take() {
            None => Some(self.trans_id),
            Some(h) => {
                let hold = &mut self.holds[h as usize];
                hold.open = false;
                if hold.refs == 0 {
                    self.free_hold(h);
                    Some(self.trans_id)
                } else {
                    None
                }
            }
        }
    }

    fn free_hold(&mut self, h: u32) {
        self.holds[h as usize].generation = self.holds[h as usize].generation.wrapping_add(1);
        self.free.push(h);
    }

    /// A view of `offset..offset+len` held against the cursor's packet, if under the cap.
    fn new_view(&mut self, offset: u32, len: u32) -> Option<RxView> {
        if self.outstanding >= self.max_outstanding {
            return None;
        }
        let h = match self.hold {
            Some(h) => h,
            None => {
                let h = self.free.pop()?;
                self.holds[h as usize] = Hold {
                    trans_id: self.trans_id,
                    refs: 0,
                    open: true,
                    generation: self.holds[h as usize].generation,
                };
                self.hold = Some(h);
                h
            }
        };
        let hold = &mut self.holds[h as usize];
        hold.refs += 1;
        self.outstanding += 1;
        Some(RxView {
            offset,
            len,
            slot: h,
            generation: hold.generation,
        })
    }

    /// Return a view; the transaction id to complete if it was the last one of a closed packet.
    pub fn release(&mut self, view: RxView) -> Option<u64> {
        let hold = self.holds.get_mut(view.slot as usize)?;
        if hold.generation != view.generation || hold.refs == 0 {
            return None;
        }
        hold.refs -= 1;
        self.outstanding -= 1;
        if hold.refs == 0 && !hold.open {
            let trans_id = hold.trans_id;
            self.free_hold(view.slot);
            return Some(trans_id);
        }
        None
    }

    pub fn outstanding(&self) -> u32 {
        self.outstanding
    }
}

/// Fill `out` with received frames: frames handed over by a queue-count change first, then the host's.
pub(crate) fn rx_burst(core: &mut QueueCore, out: &mut [RxPacket]) -> usize {
    let mut n = 0;
    if !core.carry.is_empty() {
        n = take_carried(core, out);
    }
    // One call reads at most 2× the burst in packets (and 64 KiB of ring), so a flooding host cannot hold it.
    let mut budget = crate::queue::Budget::packets(out.len() * crate::queue::BURST_BUDGET_FACTOR);
    while n < out.len() {
        if core.rx.cursor_busy() {
            if let Some((off, len)) = core.rx.next_range()
                && core.handle_message(off, len, Some(&mut out[n]))
            {
                n += 1;
            }
            if core.rx.remaining() == 0 {
                core.finish_cursor();
            }
            continue;
        }
        if core.rx.unstash() {
            continue;
        }
        if budget.spent() {
            break;
        }
        if core.poll_budget(Mode::Burst, &mut budget) == 0 && !core.rx.cursor_busy() {
            break;
        }
    }
    core.flush_completions();
    // Packets and bytes once per burst; the per-frame classes are counted in `take_frame`.
    if n > 0 {
        let bytes: u64 = out[..n].iter().map(|p| u64::from(p.meta.len)).sum();
        core.stats.rx.packets.fetch_add(n as u64, Relaxed);
        core.stats.rx.bytes.fetch_add(bytes, Relaxed);
    }
    n
}

/// Move handed-over frames into `out` (copied into the caller's buffers, which keep their capacity).
fn take_carried(core: &mut QueueCore, out: &mut [RxPacket]) -> usize {
    let mut n = 0;
    while n < out.len() {
        let Some(c) = core.carry.pop_front() else {
            break;
        };
        let p = &mut out[n];
        p.view = None;
        p.data.clear();
        p.data.extend_from_slice(&c.data);
        p.meta = RxMeta {
            queue: core.id,
            ..c.meta
        };
        n += 1;
    }
    n
}

/// Copy out every frame a queue still holds — its cursor, the transfers set aside, then (with `read_ring`) whatever
/// is left in its ring — for a hand-over across a re-initialisation. Called after the host revoked the receive
/// buffer, so nothing more arrives. Every transfer taken is completed all the same (the host then knows the guest
/// has those frames, and counts only the rest as abandoned), unless this queue's own guest→host ring is the broken
/// one. Frames are copied whatever their size (no view outlives the session); their classes are counted here,
/// their packets when a burst returns them.
pub(crate) fn drain_for_handover(
    core: &mut QueueCore,
    read_ring: bool,
) -> std::collections::VecDeque<RxPacket> {
    let mut got = std::collections::VecDeque::new();
    core.rx.copy_only = true;
    loop {
        if core.rx.cursor_busy() {
            while let Some((off, len)) = core.rx.next_range() {
                let mut p = RxPacket::default();
                if core.handle_message(off, len, Some(&mut p)) {
                    got.push_back(p);
                }
            }
            if let Some(id) = core.rx.close_cursor() {
                core.completions.push(id);
            }
            continue;
        }
        if core.rx.unstash() {
            continue;
        }
        if !read_ring
            || core.fault.is_some()
            || core.poll(Mode::Burst, crate::queue::POLL_BUDGET_PACKETS) == 0
                && !core.rx.cursor_busy()
        {
            break;
        }
    }
    core.rx.copy_only = false;
    if !core.fault.as_ref().is_some_and(|f| f.tx) {
        core.flush_completions();
    }
    got
}

/// Turn the RNDIS PACKET at `off` (message length `msg_len`, already bounded by its range) into
/// `pkt`. Every offset is checked against the message; a bad one counts an rx error.
pub(crate) fn take_frame(
    core: &mut QueueCore,
    off: usize,
    msg_len: usize,
    pkt: &mut RxPacket,
) -> bool {
    // Borrowed, not cloned: an Arc clone is two atomic updates on a line every queue shares.
    let shared: &Shared = &core.shared;
    let stats = &core.stats.rx;
    let bad = || {
        stats.errors.fetch_add(1, Relaxed);
        false
    };
    let mut h = [0u8; PACKET_HEADER_LEN];
    if msg_len < h.len() || shared.recv_buf.read(off, &mut h).is_err() {
        return bad();
    }
    // Only the header is copied; the frame stays in the receive buffer until it is taken.
    let Ok(layout) = RndisPacket::layout(&h, msg_len) else {
        return bad();
    };
    let (frame_at, data_len) = (layout.data.start, layout.data.len());
    if data_len == 0 {
        return bad();
    }
    let mut meta = RxMeta {
        len: data_len as u32,
        queue: core.id,
        ..RxMeta::default()
    };
    let ppi_len = layout.ppi.len();
    if ppi_len > 0 {
        if ppi_len > PPI_MAX {
            return bad();
        }
        let mut region = [0u8; PPI_MAX];
        if shared
            .recv_buf
            .read(off + layout.ppi.start, &mut region[..ppi_len])
            .is_err()
        {
            return bad();
        }
        let (mut hash, mut hash_info) = (None, None);
        for entry in PpiIter::new(&region[..ppi_len]) {
            let Ok(entry) = entry else {
                return bad();
            };
            let Some(v) = entry
                .data
                .first_chunk::<4>()
                .map(|b| u32::from_le_bytes(*b))
            else {
                continue;
            };
            match entry.ppi_type {
                ppi::IEEE_8021Q => meta.vlan_tci = Some(VlanInfo(v).tci()),
                ppi::TCPIP_CHKSUM => {
                    let c = RxChecksumInfo(v);
                    meta.ip_csum = verdict(c.ip_ok(), c.ip_failed());
                    meta.l4_csum =
                        verdict(c.tcp_ok() || c.udp_ok(), c.tcp_failed() || c.udp_failed());
                }
                ppi::NBL_HASH_VALUE => hash = Some(v),
                ppi::NBL_HASH_INFO => hash_info = Some(v),
                _ => {}
            }
        }
        meta.rss_hash = hash;
        meta.hash_type = if hash.is_some() {
            hash_info.unwrap_or(0)
        } else {
            0
        };
    }
    let frame = off + frame_at;
    // Destination MAC for the multicast/broadcast counters: read for a view, taken from the copy.
    let mut dst_mac = [0u8; 6];
    let mac_len = data_len.min(6);
    pkt.view = None;
    let zero_copy = shared.args.rx_extmbuf_enable
        && !core.rx.copy_only
        && data_len > shared.args.rx_copybreak as usize;
    let view = if zero_copy {
        core.rx.new_view(frame as u32, data_len as u32)
    } else {
        None
    };
    match view {
        Some(v) => {
            let _ = shared.recv_buf.read(frame, &mut dst_mac[..mac_len]);
            pkt.data.clear();
            pkt.view = Some(v);
        }
        None => {
            // Resize what the last burst left: only growth is zero-filled before the copy.
            pkt.data.resize(data_len, 0);
            if shared.recv_buf.read(frame, &mut pkt.data).is_err() {
                return bad();
            }
            dst_mac[..mac_len].copy_from_slice(&pkt.data[..mac_len]);
        }
    }
    pkt.meta = meta;
    core.stats.rx.count_class(data_len, &dst_mac);
    true
}

fn verdict(ok: bool, fail: bool) -> Csum {
    if fail {
        Csum::Bad
    } else if ok {
        Csum::Good
    } else {
        Csum::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_hold_completion_until_released() {
        let mut rx = RxState::new(4, 8);
        rx.load(77, [(0, 100), (100, 100)].into_iter());
        assert_eq!(rx.next_range(), Some((0, 100)));
        let a = rx.new_view(0, 100).unwrap();
        assert_eq!(rx.next_range(), Some((100, 100)));
        let b = rx.new_view(100, 100).unwrap();
        assert_eq!(rx.next_range(), None);
        assert_eq!(rx.close_cursor(), None, "views outstanding");
        assert_eq!(rx.release(a), None);
        assert_eq!(rx.outstanding(), 1);
        let stale = RxView {
            offset: 0,
            len: 0,
            slot: b.slot,
            generation: b.generation + 1,
        };
        assert_eq!(rx.release(stale), None, "stale view ignored");
        assert_eq!(rx.release(b), Some(77));
        assert_eq!(rx.outstanding(), 0);
    }

    #[test]
    fn cap_on_outstanding_views() {
        let mut rx = RxState::new(2, 8);
        rx.load(1, [(0, 1), (1, 1), (2, 1)].into_iter());
        assert!(rx.new_view(0, 1).is_some());
        assert!(rx.new_view(1, 1).is_some());
        assert!(
            rx.new_view(2, 1).is_none(),
            "third view exceeds sections/2 cap → copy"
        );
        assert!(rx.stash(2, [(5, 1)].into_iter()));
        assert!(rx.has_backlog());
    }

    #[test]
    fn backlog_keeps_order_across_wraparound_and_refuses_past_capacity() {
        let mut rx = RxState::new(2, 5);
        // Ranges 2 + 2 fit, a third transfer of 2 does not (5 ranges).
        assert!(rx.stash(1, [(0, 1), (1, 1)].into_iter()));
        assert!(rx.stash(2, [(2, 1), (3, 1)].into_iter()));
        assert!(
            !rx.stash(3, [(4, 1), (5, 1)].into_iter()),
            "past the sub-allocation count"
        );
        assert!(rx.unstash());
        assert_eq!(rx.next_range(), Some((0, 1)));
        assert_eq!(rx.close_cursor(), Some(1));
        // Wraps around the end of the range ring.
        assert!(rx.stash(3, [(4, 1), (5, 1), (6, 1)].into_iter()));
        assert!(rx.backlog_full());
        assert!(rx.unstash());
        assert_eq!(rx.close_cursor(), Some(2));
        assert!(rx.unstash());
        let got: Vec<_> = std::iter::from_fn(|| rx.next_range()).collect();
        assert_eq!(got, [(4, 1), (5, 1), (6, 1)]);
        assert_eq!(rx.close_cursor(), Some(3));
    }

    #[test]
    fn no_view_completes_on_close() {
        let mut rx = RxState::new(2, 8);
        rx.load(5, [(0, 1)].into_iter());
        assert_eq!(rx.close_cursor(), Some(5));
        assert!(rx.stash(6, [(1, 1)].into_iter()));
        assert!(rx.unstash());
        assert_eq!(rx.next_range(), Some((1, 1)));
        assert_eq!(rx.close_cursor(), Some(6));
        assert_eq!(rx.close_cursor(), None);
    }
}

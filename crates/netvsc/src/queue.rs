//! A queue pair = one VMBus channel (the primary for queue 0, a subchannel otherwise) with its tx
//! and rx state. [`QueuePair`] is `Send` and meant to be owned and polled by one thread; its state
//! sits behind a per-queue mutex that only the control path (queue 0) ever contends for.
//!
//! Incoming packets are demultiplexed by kind and transaction id: completions of our sends (tx
//! sections, GPA slots, control requests), transfer-page packets (rx frames, RNDIS control
//! completions, status indications) and in-band notes (VF association, host data-path switch).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};

use vmbus_ring::{Corruption, OutgoingKind, OutgoingPacket, PacketKind, ReadError};

use crate::channel::Channel;
use crate::error::{Error, Result};
use crate::link::{self, ErrorCode, Event};
use crate::rx::{RxPacket, RxState, RxView};
use crate::shared::Shared;
use crate::stats::QueueStats;
use crate::tx::{TxPacket, TxState};
use crate::tx_region::{TxDesc, TxRegion, TxRegionConfig};
use netvsc_proto::nvsp::{self, NvspMessage, SendRndisPktComplete};
use netvsc_proto::rndis::{self, RndisHeader, RndisMessage, msg_type};

/// Transaction-id tag of an aggregated send section (low 32 bits = section index).
pub(crate) const TAG_SECTION: u64 = 1 << 63;
/// Transaction-id tag of a GPA-direct slot (low 32 bits = slot).
pub(crate) const TAG_GPA: u64 = 1 << 62;
/// Transaction-id tag of a control request awaiting an NVSP reply (low bits = sequence).
pub(crate) const TAG_CTL: u64 = 1 << 61;
/// Transaction-id tag of a zero-copy send from the tx region (low 32 bits = buffer index).
pub(crate) const TAG_REGION: u64 = 1 << 60;
/// Largest RNDIS control reply kept (DPDK keeps 256 bytes; RSS caps and offload caps fit).
pub(crate) const CTL_REPLY_MAX: usize = 512;
/// Most ranges accepted in one transfer-page packet (375 per NDIS ≥ 6, 562 with RSC).
pub(crate) const MAX_XFER_RANGES: usize = 562;

/// Most packets one rx burst reads from the ring, per frame slot the caller offers (2× the burst).
pub const BURST_BUDGET_FACTOR: usize = 2;
/// Most packets one background call (`poll_control`, `poll_completions`, a tx burst's drain) reads.
pub const POLL_BUDGET_PACKETS: usize = 256;
/// Most ring bytes (descriptors, headers and payloads) one call reads, whichever bound comes first.
pub const POLL_BUDGET_BYTES: usize = 64 * 1024;

/// What one call may still read from the ring.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub packets: usize,
    pub bytes: usize,
}

impl Budget {
    pub fn packets(packets: usize) -> Budget {
        Budget {
            packets,
            bytes: POLL_BUDGET_BYTES,
        }
    }

    pub fn spent(&self) -> bool {
        self.packets == 0 || self.bytes == 0
    }
}

/// A corrupt ring seen on a queue: which rule the host broke and at which data-area offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingFault {
    /// The field or rule (`vmbus_ring::CorruptField`'s text).
    pub what: &'static str,
    /// Data-area offset of the packet concerned (for an index, the cursor it was checked against).
    pub offset: u32,
    /// `true` for the guest→host ring (seen while writing), `false` for host→guest.
    pub tx: bool,
}

/// How a poll treats rx data it meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Load rx frames into the cursor for an rx burst; stop reading when it is busy.
    Burst,
    /// Read through rx transfers to the completions and indications queued behind them (tx bursts, completion
    /// reaping, background control polling): load a transfer into the idle cursor, else set it aside, uncompleted,
    /// for the queue's owner in the preallocated backlog (as large as the host's sub-allocation count). Never
    /// stops at a busy cursor, so a queue that only transmits keeps getting its send sections back and link
    /// indications are not held up by frames nobody reads.
    Drain,
    /// A control waiter is draining queue 0: like [`Mode::Drain`], but frames never enter the cursor.
    Control,
}

/// The control path's mailbox on queue 0.
pub(crate) struct CtlSlot {
    pub nvsp_want: u64,
    pub nvsp_reply: Option<([u8; 64], usize)>,
    pub rndis_want: u32,
    pub rndis_reply: Option<([u8; CTL_REPLY_MAX], usize)>,
}

pub(crate) struct QueueCore {
    pub id: u16,
    pub chan: Channel,
    pub shared: Arc<Shared>,
    pub stats: Arc<QueueStats>,
    pub tx: TxState,
    pub rx: RxState,
    pub ctl: CtlSlot,
    /// Transfer-page transaction ids to complete, flushed once per poll.
    pub completions: Vec<u64>,
    /// Ring corruption seen: the channel is dead until the device recovers.
    pub fault: Option<RingFault>,
    /// This queue's VF queue, while a VF is paired (installed and removed by the VF manager).
    pub vf: Option<crate::vf::path::Lane>,
    /// Set during bring-up only: host waits give up once it is cancelled.
    pub cancel: Option<crate::config::Cancel>,
    /// Frames handed over by a queue-count change ([`crate::Device::set_queues`]): copied out of the old session's
    /// rings before it closed, returned by the next bursts before anything newer.
    pub carry: std::collections::VecDeque<RxPacket>,
    /// Set on a queue that a queue-count change removed: the new number of queues. Bursts take nothing.
    pub retired: Option<u16>,
}

impl QueueCore {
    pub fn new(id: u16, chan: Channel, shared: Arc<Shared>, tx: TxState, rx: RxState) -> QueueCore {
        QueueCore {
            id,
            chan,
            shared,
            stats: Arc::new(QueueStats::default()),
            tx,
            rx,
            ctl: CtlSlot {
                nvsp_want: 0,
                nvsp_reply: None,
                rndis_want: 0,
                rndis_reply: None,
            },
            completions: Vec::with_capacity(1024),
            fault: None,
            vf: None,
            cancel: None,
            carry: std::collections::VecDeque::new(),
            retired: None,
        }
    }

    /// Read up to `limit` packets (and at most [`POLL_BUDGET_BYTES`]) from the host→guest ring and dispatch them.
    /// Returns how many were read. In [`Mode::Burst`] reading stops once an rx transfer is loaded in the cursor.
    pub fn poll(&mut self, mode: Mode, limit: usize) -> usize {
        let mut budget = Budget::packets(limit);
        self.poll_budget(mode, &mut budget)
    }

    /// [`QueueCore::poll`] against a budget shared by several polls of one call.
    pub fn poll_budget(&mut self, mode: Mode, budget: &mut Budget) -> usize {
        let mut n = 0;
        let mut scratch = std::mem::take(&mut self.chan.scratch);
        while self.fault.is_none() {
            if budget.spent() {
                self.stats.hv.budget_stops.fetch_add(1, Relaxed);
                break;
            }
            if mode == Mode::Burst && (self.rx.cursor_busy() || self.rx.has_backlog()) {
                break;
            }
            if mode != Mode::Burst && self.rx.backlog_full() {
                // Only a host past its own sub-allocations gets here: leave its packets in the ring.
                break;
            }
            let pkt = match self.chan.reader.read(&mut scratch) {
                Ok(p) => p,
                Err(ReadError::Empty) => break,
                Err(ReadError::Corrupt(c)) => {
                    // A corrupt ring cannot be resynchronised; stop using it (never panic), say so.
                    self.set_fault(c, false);
                    break;
                }
            };
            n += 1;
            budget.packets -= 1;
            let bytes = match &pkt.kind {
                PacketKind::Completion { payload } | PacketKind::InBand { payload } => {
                    16 + payload.len()
                }
                PacketKind::TransferPages {
                    ranges, payload, ..
                } => 24 + 8 * ranges.len() + payload.len(),
                PacketKind::GpaDirect { payload, .. } => 24 + payload.len(),
            };
            budget.bytes = budget.bytes.saturating_sub(bytes + 8);
            match pkt.kind {
                PacketKind::Completion { payload } => self.on_completion(pkt.trans_id, payload),
                PacketKind::TransferPages {
                    set_id,
                    ranges,
                    payload,
                } => {
                    let ranges = ranges.map(|r| (r.byte_offset, r.byte_count));
                    self.on_transfer(pkt.trans_id, set_id, ranges, payload, mode);
                }
                PacketKind::InBand { payload } => {
                    self.on_inband(pkt.trans_id, pkt.completion_requested, payload)
                }
                PacketKind::GpaDirect { .. } => {
                    self.stats.rx.errors.fetch_add(1, Relaxed);
                    self.stats.hv.unknown_inband.fetch_add(1, Relaxed);
                }
            }
        }
        self.chan.scratch = scratch;
        if n > 0 {
            self.chan.commit_read();
        }
        self.flush_completions();
        n
    }

    /// Record the first corruption of this queue's rings: counted, an [`Event::Error`], and the queue refuses
    /// bursts until the device recovers.
    pub(crate) fn set_fault(&mut self, c: Corruption, tx: bool) {
        if self.fault.is_some() {
            return;
        }
        let what = c.what.as_str();
        self.fault = Some(RingFault {
            what,
            offset: c.offset,
            tx,
        });
        self.stats.rx.errors.fetch_add(1, Relaxed);
        self.stats.hv.ring_errors.fetch_add(1, Relaxed);
        self.shared.faulted.store(true, Relaxed);
        self.shared.push_event(Event::Error {
            code: ErrorCode::Ring,
            queue: self.id,
            what,
            offset: c.offset,
        });
    }

    /// Whether the queue's owner may read its ring now: the session is open, the ring sound, the queue live.
    fn ring_readable(&self) -> bool {
        !self.shared.closed() && self.fault.is_none() && self.retired.is_none()
    }

    /// A write met a corrupt guest→host ring (its read index): fault the queue.
    pub(crate) fn check_write_fault(&mut self) {
        if let Some(c) = self.chan.write_fault.take() {
            self.set_fault(c, true);
        }
    }

    fn on_completion(&mut self, trans_id: u64, payload: &[u8]) {
        let ok = matches!(
            NvspMessage::parse(payload),
            Ok(NvspMessage::SendRndisPktComplete(c)) if c.status == nvsp::status::SUCCESS
        );
        let idx = (trans_id & 0xffff_ffff) as u32;
        let known = if trans_id & TAG_SECTION != 0 {
            self.tx.complete_section(idx, ok, &self.stats)
        } else if trans_id & TAG_GPA != 0 {
            self.tx.complete_slot(idx, ok, &self.stats)
        } else if trans_id & TAG_REGION != 0 && trans_id & TAG_CTL == 0 {
            let stats = &self.stats;
            self.tx
                .region
                .as_mut()
                .is_some_and(|r| r.complete(idx, ok, stats))
        } else if trans_id & TAG_CTL != 0 && trans_id == self.ctl.nvsp_want {
            if payload.len() > 64 {
                self.stats.hv.oversize_messages.fetch_add(1, Relaxed);
            }
            let mut buf = [0u8; 64];
            let len = payload.len().min(64);
            buf[..len].copy_from_slice(&payload[..len]);
            self.ctl.nvsp_reply = Some((buf, len));
            true
        } else {
            // trans id 0: completion of an RNDIS control send; nothing to free.
            trans_id == 0
        };
        if !known {
            self.stats.hv.unknown_completions.fetch_add(1, Relaxed);
        }
    }

    fn on_transfer(
        &mut self,
        trans_id: u64,
        set_id: u16,
        ranges: impl ExactSizeIterator<Item = (u32, u32)> + Clone,
        payload: &[u8],
        mode: Mode,
    ) {
        let announce = match NvspMessage::parse(payload) {
            Ok(NvspMessage::SendRndisPkt(p)) => Some(p),
            Err(netvsc_proto::ProtoError::Truncated { .. }) => {
                self.stats.hv.short_messages.fetch_add(1, Relaxed);
                None
            }
            _ => {
                self.stats.hv.unknown_inband.fetch_add(1, Relaxed);
                None
            }
        };
        if ranges.len() > MAX_XFER_RANGES {
            self.stats.hv.oversize_messages.fetch_add(1, Relaxed);
        }
        let valid =
            set_id == nvsp::RECV_BUF_ID && announce.is_some() && ranges.len() <= MAX_XFER_RANGES;
        let Some(announce) = announce.filter(|_| valid) else {
            // Complete anyway so the host gets its buffers back; count it.
            self.stats.rx.errors.fetch_add(1, Relaxed);
            self.completions.push(trans_id);
            return;
        };
        let control = announce.channel_type == nvsp::CHANNEL_TYPE_CONTROL;
        if !control && self.shared.started() {
            if mode != Mode::Control && !self.rx.cursor_busy() && !self.rx.has_backlog() {
                self.rx.load(trans_id, ranges);
                return;
            }
            // A control waiter or a drain met rx data: keep it, uncompleted, for the queue's owner. The backlog
            // holds what the host can have outstanding; only a host past its own sub-allocations overflows it.
            if self.rx.stash(trans_id, ranges.clone()) {
                return;
            }
        }
        // Control replies, indications, and frames while stopped (or from a host past its sub-allocations):
        // handle every message now, dropping frames.
        for (off, len) in ranges {
            self.handle_message(off, len, None);
        }
        self.completions.push(trans_id);
    }

    /// Handle one RNDIS message at `off..off+len` of the receive buffer. With `out`, a PACKET
    /// becomes an rx frame there (returns true); without, it is dropped as missed.
    pub(crate) fn handle_message(
        &mut self,
        off: u32,
        len: u32,
        out: Option<&mut RxPacket>,
    ) -> bool {
        let (off, len) = (off as usize, len as usize);
        // The whole range must lie in the receive buffer before any of it is used.
        let inside = off
            .checked_add(len)
            .is_some_and(|end| end <= self.shared.recv_buf.len());
        let head = (len >= rndis::HEADER_LEN && inside)
            .then(|| self.shared.recv_buf.read_obj::<RndisHeader>(off).ok())
            .flatten();
        let Some(head) = head else {
            self.stats.rx.errors.fetch_add(1, Relaxed);
            let c = if !inside {
                &self.stats.hv.oversize_messages
            } else {
                &self.stats.hv.short_messages
            };
            c.fetch_add(1, Relaxed);
            return false;
        };
        if head.msg_len as usize > len {
            // The message claims more than its range: used only up to the range.
            self.stats.hv.oversize_messages.fetch_add(1, Relaxed);
        } else if (head.msg_len as usize) < rndis::HEADER_LEN {
            self.stats.hv.short_messages.fetch_add(1, Relaxed);
        }
        let msg_len = (head.msg_len as usize).min(len);
        if head.msg_type == msg_type::PACKET {
            return match out {
                Some(pkt) => crate::rx::take_frame(self, off, msg_len, pkt),
                None => {
                    self.stats.rx_missed.fetch_add(1, Relaxed);
                    false
                }
            };
        }
        // Control completions and status indications: copy out (bounded), then parse.
        let mut msg = [0u8; CTL_REPLY_MAX];
        let n = msg_len.min(CTL_REPLY_MAX);
        if msg_len > CTL_REPLY_MAX {
            self.stats.hv.oversize_messages.fetch_add(1, Relaxed);
        }
        if self.shared.recv_buf.read(off, &mut msg[..n]).is_err() {
            return false;
        }
        match RndisMessage::parse(&msg[..n]) {
            Ok(RndisMessage::IndicateStatus { status, buf }) => {
                if !link::indicate_status(&self.shared, status.status, buf) {
                    self.stats.hv.bad_indications.fetch_add(1, Relaxed);
                }
            }
            Ok(
                m @ (RndisMessage::InitializeComplete(_)
                | RndisMessage::QueryComplete { .. }
                | RndisMessage::SetComplete(_)
                | RndisMessage::KeepaliveComplete(_)),
            ) if self.ctl.rndis_want != 0 && m.req_id() == Some(self.ctl.rndis_want) => {
                self.ctl.rndis_reply = Some((msg, n));
            }
            Ok(
                RndisMessage::InitializeComplete(_)
                | RndisMessage::QueryComplete { .. }
                | RndisMessage::SetComplete(_)
                | RndisMessage::KeepaliveComplete(_),
            ) => {
                // A completion nobody waits for (stale or forged request id).
                self.stats.hv.unknown_completions.fetch_add(1, Relaxed);
            }
            _ if head.msg_type == msg_type::INDICATE_STATUS => {
                self.stats.hv.bad_indications.fetch_add(1, Relaxed);
            }
            _ => {
                self.stats.hv.unknown_inband.fetch_add(1, Relaxed);
            }
        }
        false
    }

    /// The cursor's ranges are all handled: complete the transfer now, or when its views return.
    pub(crate) fn finish_cursor(&mut self) {
        if let Some(trans_id) = self.rx.close_cursor() {
            self.completions.push(trans_id);
        }
    }

    fn on_inband(&mut self, trans_id: u64, completion_requested: bool, payload: &[u8]) {
        match NvspMessage::parse(payload) {
            Ok(NvspMessage::VfAssociation(v)) => {
                let (allocated, serial) = (v.allocated != 0, v.serial);
                let version = self.shared.nvsp_version.load(Relaxed);
                if version != 0 && version < nvsp::VERSION_4 {
                    // Hosts only send it from NVSP 4 on; ignore it, count it, say so.
                    self.shared.vf.assoc_ignored.fetch_add(1, Relaxed);
                    self.shared.push_event(Event::VfError {
                        serial,
                        failure: crate::vf::VfFailure::OldProtocol {
                            nvsp_version: version,
                        },
                        iface: None,
                        at_ns: crate::vf::now_ns(),
                    });
                } else {
                    self.shared.vf_allocated.store(allocated, Relaxed);
                    self.shared.vf_serial.store(serial, Relaxed);
                    self.shared
                        .push_event(Event::VfAssociation { allocated, serial });
                    if let Some(tx) = self.shared.vf_cmd.get() {
                        let _ = tx.send(crate::vf::manager::Cmd::Assoc { allocated, serial });
                    }
                }
            }
            Ok(NvspMessage::SwitchDataPath(d)) => {
                let to_vf = d.active_datapath == nvsp::DATAPATH_VF;
                self.shared.host_switched_datapath.fetch_add(1, Relaxed);
                self.shared.push_event(Event::HostDataPath { to_vf });
                if let Some(tx) = self.shared.vf_cmd.get() {
                    let _ = tx.send(crate::vf::manager::Cmd::HostSwitch { to_vf });
                }
            }
            // Send indirection table (134): validated and kept for `Device::send_table` (DPDK logs and drops it).
            Ok(NvspMessage::SendIndirectionTable(_)) => {
                let version = self.shared.nvsp_version.load(Relaxed);
                let kept = nvsp::IndirectionTable::parse(payload, version)
                    .is_ok_and(|t| self.shared.accept_send_table(&t.entries));
                if !kept {
                    self.stats.hv.bad_send_tables.fetch_add(1, Relaxed);
                }
            }
            Ok(_) => {
                self.stats.hv.unknown_inband.fetch_add(1, Relaxed);
            }
            Err(netvsc_proto::ProtoError::Truncated { .. }) => {
                self.stats.hv.short_messages.fetch_add(1, Relaxed);
            }
            Err(_) => {
                self.stats.hv.unknown_inband.fetch_add(1, Relaxed);
            }
        }
        if completion_requested {
            let pkt = OutgoingPacket {
                kind: OutgoingKind::Completion,
                trans_id,
                completion_requested: false,
                payload: &[],
            };
            let _ = self.chan.send(&pkt);
            self.chan.flush();
        }
    }

    /// Send queued rx completions (NVSP 108 SUCCESS); what does not fit waits for the next poll.
    pub(crate) fn flush_completions(&mut self) {
        if self.completions.is_empty() {
            return;
        }
        let msg = NvspMessage::SendRndisPktComplete(SendRndisPktComplete {
            status: nvsp::status::SUCCESS,
        })
        .to_bytes();
        let mut sent = 0;
        for &trans_id in &self.completions {
            let pkt = OutgoingPacket {
                kind: OutgoingKind::Completion,
                trans_id,
                completion_requested: false,
                payload: &[&msg[..8]],
            };
            if self.chan.send(&pkt).is_err() {
                break;
            }
            sent += 1;
        }
        self.completions.drain(..sent);
        self.chan.flush();
        self.check_write_fault();
    }
}

/// One queue pair, owned by the thread that polls it.
pub struct QueuePair {
    pub(crate) id: u16,
    pub(crate) core: Arc<Mutex<QueueCore>>,
    pub(crate) stats: Arc<QueueStats>,
    /// The device's capture switch (a running-service capture mirrors every burst while it is on).
    pub(crate) tap: Arc<crate::capture::Tap>,
}

impl std::fmt::Debug for QueuePair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuePair").field("id", &self.id).finish()
    }
}

pub(crate) fn lock(core: &Mutex<QueueCore>) -> MutexGuard<'_, QueueCore> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

/// Mirror the frames a tx burst took into the capture (segments gathered into the capture's buffer).
fn record_tx(tap: &crate::capture::Tap, pkts: &[TxPacket<'_>]) {
    tap.record_with(pkts.len(), crate::capture::Direction::Outbound, |i, buf| {
        let p = pkts.get(i)?;
        let mut len = 0;
        for s in p.segs {
            len += s.len();
            let room = 65535usize.saturating_sub(buf.len());
            buf.extend_from_slice(&s[..s.len().min(room)]);
        }
        Some(len)
    });
}

/// Mirror the frames a zero-copy tx burst took into the capture, read out of their tx region buffers.
fn record_region(tap: &crate::capture::Tap, region: &crate::tx_region::TxRegion, descs: &[TxDesc]) {
    let size = region.buf_size() as usize;
    tap.record_with(
        descs.len(),
        crate::capture::Direction::Outbound,
        |i, buf| {
            let d = descs.get(i)?;
            let n = (d.len as usize).min(65535);
            buf.resize(n, 0);
            if region
                .mem()
                .read(d.buf as usize * size, &mut buf[..n])
                .is_err()
            {
                buf.clear();
            }
            Some(d.len as usize)
        },
    );
}

/// Mirror the frames an rx burst returned into the capture: copies as they are, zero-copy views read out of the
/// receive buffer.
fn record_rx(tap: &crate::capture::Tap, recv: &vmbus_ring::SharedMem, pkts: &[RxPacket]) {
    tap.record_with(pkts.len(), crate::capture::Direction::Inbound, |i, buf| {
        let p = pkts.get(i)?;
        match &p.view {
            Some(v) => {
                let n = (v.len as usize).min(65535);
                buf.resize(n, 0);
                if recv.read(v.offset as usize, &mut buf[..n]).is_err() {
                    buf.clear();
                }
                Some(v.len as usize)
            }
            None => {
                let n = p.data.len().min(65535);
                buf.extend_from_slice(&p.data[..n]);
                Some(p.data.len())
            }
        }
    });
}

/// Lock a queue for a control operation (RNDIS/NVSP requests, the VF manager's data-path switch). The mutex is not
/// fair: a thread bursting at full rate re-takes it before a waiting control thread wakes, so bursts step aside
/// (return 0) while a control operation waits — one relaxed load per burst.
pub(crate) fn control_lock<'a>(
    core: &'a Mutex<QueueCore>,
    shared: &Shared,
) -> MutexGuard<'a, QueueCore> {
    shared.control_waiting.fetch_add(1, Relaxed);
    let g = lock(core);
    shared.control_waiting.fetch_sub(1, Relaxed);
    g
}

impl QueuePair {
    /// Queue index (= subchannel id; 0 is the primary channel).
    pub fn id(&self) -> u16 {
        self.id
    }

    /// This queue's counters.
    pub fn stats(&self) -> &QueueStats {
        &self.stats
    }

    /// Send a burst; returns how many packets were taken (the rest met backpressure: retry them). A queue
    /// whose ring is corrupt takes nothing: 0, with the reason in [`QueuePair::error`].
    pub fn tx_burst(&mut self, pkts: &[TxPacket<'_>]) -> usize {
        let Ok(mut core) = self.core.try_lock() else {
            return 0;
        };
        // Step aside for a control operation waiting on this lock (see `control_lock`).
        if core.shared.closed()
            || core.fault.is_some()
            || core.retired.is_some()
            || core.shared.control_waiting.load(Relaxed) != 0
        {
            return 0;
        }
        let n = if core.vf.as_ref().is_some_and(|l| l.tx) {
            crate::vf::path::tx_burst(&mut core, pkts)
        } else {
            let n = crate::tx::tx_burst(&mut core, pkts);
            core.check_write_fault();
            n
        };
        drop(core);
        if n > 0 && self.tap.is_on() {
            record_tx(&self.tap, &pkts[..n]);
        }
        n
    }

    /// Receive up to `out.len()` frames; returns how many were filled. One call reads at most
    /// [`BURST_BUDGET_FACTOR`] × `out.len()` packets and [`POLL_BUDGET_BYTES`] from the ring. A queue whose ring
    /// is corrupt returns 0, with the reason in [`QueuePair::error`].
    pub fn rx_burst(&mut self, out: &mut [RxPacket]) -> usize {
        let Ok(mut core) = self.core.try_lock() else {
            return 0;
        };
        // Step aside for a control operation waiting on this lock (see `control_lock`).
        if core.shared.closed()
            || core.fault.is_some()
            || core.retired.is_some()
            || core.shared.control_waiting.load(Relaxed) != 0
        {
            return 0;
        }
        // Synthetic first (multicast, broadcast and pre-switch flows arrive there), then the VF.
        let mut n = crate::rx::rx_burst(&mut core, out);
        if core.vf.is_some() && n < out.len() {
            n += crate::vf::path::rx_fill(&mut core, &mut out[n..]);
        }
        if n > 0 && self.tap.is_on() {
            record_rx(&self.tap, &core.shared.recv_buf, &out[..n]);
        }
        n
    }

    /// Reap tx completions without sending (DPDK's tx_done_cleanup); returns packets read (at most
    /// [`POLL_BUDGET_PACKETS`] and [`POLL_BUDGET_BYTES`] per call).
    pub fn poll_completions(&mut self) -> usize {
        let Ok(mut core) = self.core.try_lock() else {
            return 0;
        };
        // A closed session's ring (a recovery or queue change in progress: the host may be resetting it for the
        // next session), a corrupt one or a retired queue is never read.
        if core.shared.control_waiting.load(Relaxed) != 0 || !core.ring_readable() {
            return 0;
        }
        let n = core.poll(Mode::Drain, POLL_BUDGET_PACKETS);
        core.check_write_fault();
        n
    }

    /// Set when a queue-count change ([`crate::Device::set_queues`]) removed this queue: the device's new queue
    /// count. The queue then takes nothing (bursts return 0) and stays so; drop the handle (it keeps the old
    /// session's rings mapped). `None` for a live queue, or when the control path holds the queue right now.
    pub fn retired(&self) -> Option<u16> {
        self.core.try_lock().ok().and_then(|c| c.retired)
    }

    /// Why this queue refuses bursts: its ring is corrupt (until the device recovers). `None` when healthy, or
    /// when the control path holds the queue right now (it never blocks: ask again after the next 0 burst).
    pub fn error(&self) -> Option<RingFault> {
        self.core.try_lock().ok().and_then(|c| c.fault)
    }

    /// Copy a zero-copy view's bytes out of the receive buffer.
    pub fn read_view(&self, view: &RxView, dst: &mut [u8]) -> Result<()> {
        let n = dst.len().min(view.len as usize);
        lock(&self.core)
            .shared
            .recv_buf
            .read(view.offset as usize, &mut dst[..n])
            .map_err(Error::mem("read rx view"))
    }

    /// Give a zero-copy view back; the host's buffer is completed once all views of its transfer
    /// packet are back. Releasing a view twice or one of another queue is ignored.
    pub fn release(&mut self, view: RxView) {
        let mut core = lock(&self.core);
        if let Some(trans_id) = core.rx.release(view) {
            core.completions.push(trans_id);
            core.flush_completions();
        }
    }

    /// Create this queue's zero-copy tx region (DMA memory of `cfg.bufs` buffers of `cfg.buf_size` bytes), or return
    /// the one it has when `cfg` is the same; another geometry is refused ([`crate::TxRegionError::Exists`]).
    pub fn create_tx_region(&mut self, cfg: TxRegionConfig) -> Result<TxRegion> {
        crate::tx_region::create(&mut lock(&self.core), cfg)
    }

    /// This queue's tx region, once created.
    pub fn tx_region(&self) -> Option<TxRegion> {
        lock(&self.core)
            .tx
            .region
            .as_ref()
            .map(|r| r.region.clone())
    }

    /// Send frames written into the tx region: `descs[i]` names buffer, length and metadata. Frames above
    /// `tx_copybreak` go GPA-direct from their buffer, smaller ones are copied. Returns how many were taken; each
    /// taken buffer is the driver's until [`QueuePair::tx_reclaim`] returns it, the others stay the caller's (retry
    /// them). A descriptor with a bad index or length, or naming a buffer the driver holds, refuses the whole burst
    /// ([`crate::TxRegionError`]); a queue that is closed, faulted or held by control takes nothing (`Ok(0)`).
    pub fn tx_burst_zero_copy(&mut self, descs: &[TxDesc]) -> Result<usize> {
        let Ok(mut core) = self.core.try_lock() else {
            return Ok(0);
        };
        if core.shared.closed()
            || core.fault.is_some()
            || core.shared.control_waiting.load(Relaxed) != 0
        {
            return Ok(0);
        }
        let n = crate::tx_region::tx_burst(&mut core, descs)?;
        core.check_write_fault();
        let region = if n > 0 && self.tap.is_on() {
            core.tx.region.as_ref().map(|r| r.region.clone())
        } else {
            None
        };
        drop(core);
        if let Some(r) = region {
            record_region(&self.tap, &r, &descs[..n]);
        }
        Ok(n)
    }

    /// Hand back up to `out.len()` tx region buffers the driver is done with (host-completed, copied, or abandoned
    /// by a recovery), each exactly once, oldest first; returns how many. Reads completions from the ring first only
    /// when none is ready and some are in flight (a burst already read what had arrived: no second ring read).
    pub fn tx_reclaim(&mut self, out: &mut [u32]) -> usize {
        let Ok(mut core) = self.core.try_lock() else {
            return 0;
        };
        let short = core
            .tx
            .region
            .as_ref()
            .is_some_and(|r| r.done_len() == 0 && r.in_flight() > 0);
        if short && core.shared.control_waiting.load(Relaxed) == 0 && core.ring_readable() {
            core.poll(Mode::Drain, POLL_BUDGET_PACKETS);
            core.check_write_fault();
        }
        core.tx.region.as_mut().map_or(0, |r| r.reclaim(out))
    }

    /// Tx packets whose section or slot the host has not completed yet.
    pub fn tx_in_flight(&self) -> u32 {
        lock(&self.core).tx.in_flight()
    }

    /// Zero-copy views not yet released.
    pub fn rx_views_outstanding(&self) -> u32 {
        lock(&self.core).rx.outstanding()
    }
}

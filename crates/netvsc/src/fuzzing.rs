//! The driver's real receive path without a device, for fuzzing (feature `fuzzing`) and unit tests.
//!
//! [`RxHarness`] builds one queue exactly as bring-up does (a [`QueueCore`] over a ring pair, a receive buffer,
//! the rx cursor and view holds) but over private memory, and plays the host: it writes transfer-page packets into
//! the host→guest ring and reads the driver's completions back. An rx burst then runs the same code a device runs
//! (`poll` → `on_transfer` → `handle_message` → `take_frame`); nothing here re-implements it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use vmbus_ring::{
    OutgoingKind, OutgoingPacket, PacketKind, Ring, RingReader, RingWriter, SharedMem,
    TransferRange,
};

use crate::channel::Channel;
use crate::devargs::Devargs;
use crate::queue::{Mode, QueueCore, QueuePair};
use crate::rx::{RxPacket, RxState};
use crate::shared::{AggLimits, Shared};
use crate::stats::QueueStats;
use crate::tx::{DmaArea, TxState};
use netvsc_proto::nvsp::{self, NvspMessage, SendRndisPkt};

/// Data-area size of each ring direction.
const RING_DATA: usize = 16 * 1024;
/// Frames one [`RxHarness::rx_burst`] asks for.
pub const BURST: usize = 32;

/// One queue of a device that exists only in memory, with the harness as its host.
pub struct RxHarness {
    queue: QueuePair,
    /// The host's writer on the host→guest ring.
    host_tx: RingWriter,
    /// The host's reader on the guest→host ring (the driver's completions).
    host_rx: RingReader,
    scratch: Vec<u8>,
    out: Vec<RxPacket>,
    /// Transfer-page completions the host has read back.
    pub completions: u64,
}

impl std::fmt::Debug for RxHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxHarness")
            .field("completions", &self.completions)
            .finish()
    }
}

/// The NVSP SEND_RNDIS_PKT announcement a host puts in front of a data transfer.
pub fn data_announce() -> [u8; nvsp::MESSAGE_LEN] {
    NvspMessage::SendRndisPkt(SendRndisPkt {
        channel_type: nvsp::CHANNEL_TYPE_DATA,
        send_buf_section_index: u32::MAX,
        send_buf_section_size: 0,
    })
    .to_bytes()
}

impl RxHarness {
    /// A started queue whose receive buffer holds `recv_buf` (at least one byte is allocated), with up to
    /// `max_views` zero-copy views outstanding.
    pub fn new(recv_buf: &[u8], args: Devargs, max_views: u32) -> RxHarness {
        // Transfers set aside for the owner: as many as a small host could have outstanding.
        const FUZZ_BACKLOG: u32 = 64;
        let recv = SharedMem::alloc(recv_buf.len().max(1));
        // In bounds by construction.
        let _ = recv.write(0, recv_buf);
        let half = vmbus_ring::ring::HEADER_SIZE + RING_DATA;
        let rings = SharedMem::alloc(2 * half);
        let ring = |off| {
            Ring::new(rings.subrange(off, half).expect("ring half in bounds"))
                .expect("ring size is valid")
        };
        let signaller = vmbus_uio::Signaller::in_memory(1, None).expect("in-memory signaller");
        let chan = Channel::new(&rings, signaller, "fuzz rings").expect("channel over valid rings");
        let agg = AggLimits {
            max_pkts: 1,
            max_bytes: 0,
            align: 8,
        };
        let shared = Arc::new(Shared::new(recv, agg, args));
        shared.started.store(true, Relaxed);
        // No GPA-direct slot (the harness only receives): one page, fewer than a slot's worth.
        let dma = DmaArea {
            mem: SharedMem::alloc(4096),
            pfns: vec![0],
            _owner: Box::new(()),
        };
        let tx = TxState::new(SharedMem::alloc(4096), 0, 0, 0, agg, 0, dma);
        let core = QueueCore::new(
            0,
            chan,
            shared.clone(),
            tx,
            RxState::new(max_views, FUZZ_BACKLOG),
        );
        let stats: Arc<QueueStats> = core.stats.clone();
        RxHarness {
            queue: QueuePair {
                id: 0,
                core: Arc::new(Mutex::new(core)),
                stats,
                tap: Arc::default(),
            },
            host_tx: RingWriter::new(ring(half)),
            host_rx: RingReader::new(ring(0)),
            scratch: Vec::new(),
            out: (0..BURST).map(|_| RxPacket::default()).collect(),
            completions: 0,
        }
    }

    /// The queue under test.
    pub fn queue(&mut self) -> &mut QueuePair {
        &mut self.queue
    }

    /// As the host: write one transfer-page packet (set `set_id`, `ranges` as (offset, length), NVSP `payload`)
    /// and publish it. False when the ring has no room (or the packet can never fit).
    pub fn host_send(
        &mut self,
        trans_id: u64,
        set_id: u16,
        ranges: &[(u32, u32)],
        payload: &[u8],
    ) -> bool {
        let ranges: Vec<TransferRange> = ranges
            .iter()
            .map(|&(byte_offset, byte_count)| TransferRange {
                byte_count,
                byte_offset,
            })
            .collect();
        let pkt = OutgoingPacket {
            kind: OutgoingKind::TransferPages {
                set_id,
                ranges: &ranges,
            },
            trans_id,
            completion_requested: true,
            payload: &[payload],
        };
        let ok = self.host_tx.try_write(&pkt).is_ok();
        self.host_tx.commit();
        ok
    }

    /// One rx burst of up to [`BURST`] frames through the real path; the frames it returned. Zero-copy views are
    /// read through the queue (as an application would) and released.
    pub fn rx_burst(&mut self) -> usize {
        let n = self.queue.rx_burst(&mut self.out);
        let mut copy = [0u8; 64];
        for pkt in &mut self.out[..n] {
            assert!(pkt.meta.len as usize >= 1, "an rx frame is never empty");
            if let Some(view) = pkt.view.take() {
                // A view always lies inside the receive buffer: reading it must succeed.
                self.queue
                    .read_view(&view, &mut copy)
                    .expect("a view lies inside the receive buffer");
                self.queue.release(view);
            } else {
                assert_eq!(pkt.data.len(), pkt.meta.len as usize);
            }
        }
        self.reap();
        n
    }

    /// A drain poll (as tx bursts and completion reaping run), then the host reads completions.
    pub fn drain(&mut self) -> usize {
        let n = crate::queue::lock(&self.queue.core).poll(Mode::Drain, 4096);
        self.reap();
        n
    }

    /// A control-waiter poll (rx frames acknowledged and dropped).
    pub fn control(&mut self) -> usize {
        let n = crate::queue::lock(&self.queue.core).poll(Mode::Control, 4096);
        self.reap();
        n
    }

    /// As the host: read the driver's completions out of the guest→host ring.
    fn reap(&mut self) {
        while let Ok(p) = self.host_rx.read(&mut self.scratch) {
            if matches!(p.kind, PacketKind::Completion { .. }) {
                self.completions += 1;
            }
        }
        self.host_rx.commit();
    }

    /// The queue's rx counters: (packets, errors, missed).
    pub fn counters(&self) -> (u64, u64, u64) {
        let s = &self.queue.stats;
        (
            s.rx.packets.load(Relaxed),
            s.rx.errors.load(Relaxed),
            s.rx_missed.load(Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netvsc_proto::rndis::emit_packet;

    fn buf_with_frames(frames: &[&[u8]]) -> (Vec<u8>, Vec<(u32, u32)>) {
        let mut buf = vec![0u8; 8192];
        let mut ranges = Vec::new();
        let mut at = 0usize;
        for f in frames {
            let n = emit_packet(&mut buf[at..], &[], f).unwrap();
            ranges.push((at as u32, n as u32));
            at += n.next_multiple_of(8);
        }
        (buf, ranges)
    }

    #[test]
    fn frames_arrive_and_transfer_is_completed() {
        let (buf, ranges) = buf_with_frames(&[&[1u8; 60], &[2u8; 300]]);
        let mut h = RxHarness::new(&buf, Devargs::default(), 4);
        assert!(h.host_send(7, nvsp::RECV_BUF_ID, &ranges, &data_announce()));
        assert_eq!(h.rx_burst(), 2);
        assert_eq!(h.out[0].data, vec![1u8; 60]);
        assert_eq!(h.out[1].data, vec![2u8; 300]);
        assert_eq!(h.completions, 1);
        assert_eq!(h.counters(), (2, 0, 0));
    }

    #[test]
    fn ranges_outside_the_receive_buffer_are_errors() {
        let (buf, mut ranges) = buf_with_frames(&[&[1u8; 60]]);
        ranges.push((u32::MAX - 4, 100));
        ranges.push((8000, 4000));
        ranges.push((0, 0));
        let mut h = RxHarness::new(&buf, Devargs::default(), 4);
        assert!(h.host_send(9, nvsp::RECV_BUF_ID, &ranges, &data_announce()));
        assert_eq!(h.rx_burst(), 1);
        assert_eq!(h.counters(), (1, 3, 0));
        assert_eq!(h.completions, 1, "the transfer is still given back");
    }

    #[test]
    fn zero_copy_views_and_drops() {
        let args = Devargs {
            rx_extmbuf_enable: true,
            rx_copybreak: 64,
            ..Devargs::default()
        };
        let (buf, ranges) = buf_with_frames(&[&[3u8; 200], &[4u8; 20]]);
        let mut h = RxHarness::new(&buf, args, 1);
        assert!(h.host_send(1, nvsp::RECV_BUF_ID, &ranges, &data_announce()));
        assert_eq!(h.rx_burst(), 2);
        assert_eq!(h.completions, 1, "completed once the view came back");
        assert!(h.host_send(2, nvsp::RECV_BUF_ID, &ranges, &data_announce()));
        h.control();
        assert_eq!(
            h.rx_burst(),
            2,
            "a control waiter sets frames aside for the owner"
        );
        assert!(h.host_send(3, 1, &ranges, &data_announce()));
        h.drain();
        assert_eq!(h.completions, 3);
        assert_eq!(h.counters(), (4, 1, 0), "a foreign set id is an error");
    }
}

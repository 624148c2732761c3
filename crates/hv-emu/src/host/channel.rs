//! One VMBus channel of the NIC: its host→guest writer (shared by the worker and the rx pump),
//! its counters, and the worker loop that waits for the guest's signal and drains its ring.
//!
//! Trigger = the channel's monitor-page pending bit or its int-page relid bit (monitored), or a new
//! irq-control write with its relid bit set (unmonitored, see `take_trigger`); each is cleared when seen. The worker masks the ring while draining and re-checks after
//! unmasking, as a host does; completions that do not fit are queued and retried on the next signal.

use super::{Device, lock, nvsp};
use crate::stats::{ChannelCounters, add};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};
use vmbus_ring::{
    OutgoingKind, OutgoingPacket, ReadError, Ring, RingReader, RingWriter, SharedMem, WriteError,
};

/// Where a channel lives.
#[derive(Debug, Clone)]
pub struct ChannelSpec {
    pub relid: u32,
    pub subchannel_id: u16,
    pub monitor_id: Option<u8>,
    /// Both rings: guest→host in the first half, host→guest in the second.
    pub rings: SharedMem,
}

/// A message waiting for ring space.
struct Deferred {
    completion: bool,
    trans_id: u64,
    msg: [u8; super::nvsp::MAX_HOST_MESSAGE],
    len: usize,
}

pub(crate) struct Out {
    pub(crate) writer: RingWriter,
    deferred: VecDeque<Deferred>,
}

/// What only the worker thread touches.
pub(crate) struct WorkerSide {
    reader: RingReader,
    g2h: Ring,
    /// irq-control writes seen when the channel opened: later ones are signals (see `take_trigger`).
    irq_writes: u64,
}

/// An open channel.
pub struct Channel {
    pub index: u16,
    pub relid: u32,
    pub subchannel_id: u16,
    pub monitor_id: Option<u8>,
    pub(crate) out: Mutex<Out>,
    /// Set while `out` holds deferred messages, so a busy-polling worker need not take the lock to know.
    has_deferred: AtomicBool,
    pub(crate) counters: ChannelCounters,
    /// Ring resets asked for ([`Channel::reset_rings`]) and done by the worker on its side.
    resets_asked: AtomicU32,
    resets_done: AtomicU32,
}

impl Channel {
    pub(crate) fn open(
        index: u16,
        spec: ChannelSpec,
        irq_writes: u64,
    ) -> Result<(Channel, WorkerSide), String> {
        let half = spec.rings.len() / 2;
        let g2h_mem = spec.rings.subrange(0, half).map_err(|e| e.to_string())?;
        let h2g_mem = spec.rings.subrange(half, half).map_err(|e| e.to_string())?;
        let g2h = Ring::new(g2h_mem)
            .map_err(|e| format!("guest→host ring of relid {}: {e}", spec.relid))?;
        let h2g = Ring::new(h2g_mem)
            .map_err(|e| format!("host→guest ring of relid {}: {e}", spec.relid))?;
        let ch = Channel {
            index,
            relid: spec.relid,
            subchannel_id: spec.subchannel_id,
            monitor_id: spec.monitor_id,
            out: Mutex::new(Out {
                writer: RingWriter::new(h2g),
                deferred: VecDeque::new(),
            }),
            has_deferred: AtomicBool::new(false),
            counters: ChannelCounters::default(),
            resets_asked: AtomicU32::new(0),
            resets_done: AtomicU32::new(0),
        };
        Ok((
            ch,
            WorkerSide {
                reader: RingReader::new(g2h.clone()),
                g2h,
                irq_writes,
            },
        ))
    }

    /// Empty both rings for a new session, as the guest kernel's channel open does: the host→guest side here
    /// (messages waiting for room are dropped with it), the guest→host side by the worker, waited for (bounded)
    /// so the guest never writes into a ring about to be reset. Called from another channel's worker.
    pub(crate) fn reset_rings(&self) {
        {
            let mut out = lock(&self.out);
            let ring = out.writer.ring().clone();
            ring.set_write_index(0);
            ring.set_read_index(0);
            ring.set_pending_send_size(0);
            out.writer = RingWriter::new(ring);
            out.deferred.clear();
            self.has_deferred.store(false, Ordering::Release);
        }
        let asked = self.resets_asked.fetch_add(1, Ordering::AcqRel) + 1;
        let until = Instant::now() + Duration::from_millis(500);
        while self.resets_done.load(Ordering::Acquire) != asked && Instant::now() < until {
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// The worker's half of [`Channel::reset_rings`].
    fn reset_worker_side(&self, w: &mut WorkerSide) {
        let asked = self.resets_asked.load(Ordering::Acquire);
        if self.resets_done.load(Ordering::Relaxed) == asked {
            return;
        }
        w.g2h.set_write_index(0);
        w.g2h.set_read_index(0);
        w.g2h.set_interrupt_mask(false);
        w.reader = RingReader::new(w.g2h.clone());
        self.resets_done.store(asked, Ordering::Release);
    }

    /// Write one packet and commit; signal the guest when the ring rules say so.
    pub(crate) fn write_now(
        &self,
        dev: &Device,
        out: &mut Out,
        pkt: &OutgoingPacket<'_>,
    ) -> Result<(), WriteError> {
        out.writer.try_write(pkt)?;
        if out.writer.commit() {
            add(&self.counters.signals_to_guest, 1);
            dev.signal.signal(self.relid);
        }
        Ok(())
    }

    fn send(&self, dev: &Device, completion: bool, trans_id: u64, req: bool, msg: &[u8]) -> bool {
        let mut out = lock(&self.out);
        let kind = if completion {
            OutgoingKind::Completion
        } else {
            OutgoingKind::InBand
        };
        if out.deferred.is_empty() {
            let pkt = OutgoingPacket {
                kind,
                trans_id,
                completion_requested: req,
                payload: &[msg],
            };
            match self.write_now(dev, &mut out, &pkt) {
                Ok(()) => {
                    add(&self.counters.completions_sent, u64::from(completion));
                    return true;
                }
                Err(WriteError::Full { needed }) => {
                    let _ = out.writer.request_space(needed);
                }
                Err(_) => {
                    dev.proto_error("hostRingCorrupt");
                    return false;
                }
            }
        }
        // Keep order: queue behind what is already waiting (a completion is never dropped).
        let mut d = Deferred {
            completion,
            trans_id,
            msg: [0; super::nvsp::MAX_HOST_MESSAGE],
            len: msg.len().min(super::nvsp::MAX_HOST_MESSAGE),
        };
        d.msg[..d.len].copy_from_slice(&msg[..d.len]);
        out.deferred.push_back(d);
        self.has_deferred.store(true, Ordering::Release);
        add(&self.counters.completions_deferred, 1);
        false
    }

    /// Send a completion (type 11) carrying `msg`.
    pub(crate) fn send_completion(&self, dev: &Device, trans_id: u64, msg: &[u8]) -> bool {
        self.send(dev, true, trans_id, false, msg)
    }

    /// Send an in-band (type 6) message.
    pub(crate) fn send_inband(
        &self,
        dev: &Device,
        trans_id: u64,
        completion_requested: bool,
        msg: &[u8],
    ) -> bool {
        self.send(dev, false, trans_id, completion_requested, msg)
    }

    /// Whether messages wait for ring space.
    pub(crate) fn has_deferred(&self) -> bool {
        self.has_deferred.load(Ordering::Acquire)
    }

    /// Retry queued messages; true when none remain.
    pub(crate) fn flush_deferred(&self, dev: &Device) -> bool {
        let mut out = lock(&self.out);
        let Out { writer, deferred } = &mut *out;
        while let Some(d) = deferred.front() {
            let kind = if d.completion {
                OutgoingKind::Completion
            } else {
                OutgoingKind::InBand
            };
            let pkt = OutgoingPacket {
                kind,
                trans_id: d.trans_id,
                completion_requested: false,
                payload: &[&d.msg[..d.len]],
            };
            if writer.try_write(&pkt).is_err() {
                break;
            }
            deferred.pop_front();
        }
        if out.writer.commit() {
            add(&self.counters.signals_to_guest, 1);
            dev.signal.signal(self.relid);
        }
        if out.deferred.is_empty() {
            out.writer.clear_space_request();
            self.has_deferred.store(false, Ordering::Release);
            true
        } else {
            false
        }
    }

    /// Look at (and clear) this channel's trigger bits. Monitored: its monitor-page pending bit (the host scans
    /// the page every `latency`) or its int-page relid bit (Linux sets both). Unmonitored: only a signal — an
    /// irq-control write, which the kernel's uio_hv_generic turns into `vmbus_setevent` on the primary channel —
    /// makes the host look: it then serves the primary and every channel whose relid bit is set. A relid bit set
    /// without a signal waits for the next one.
    fn take_trigger(&self, dev: &Device, last_irq_writes: &mut u64) -> bool {
        let off = 2048 + 4 * (self.relid as usize / 32);
        let bit = 1u32 << (self.relid % 32);
        let take_relid_bit = || dev.mem.int_page.fetch_and_u32(off, !bit).unwrap_or(0) & bit != 0;
        match (dev.cfg.monitored, self.monitor_id) {
            (true, Some(m)) => {
                let moff = 8 + 8 * usize::from(m / 32);
                let mbit = 1u32 << (m % 32);
                let monitor =
                    dev.mem.monitor_page.fetch_and_u32(moff, !mbit).unwrap_or(0) & mbit != 0;
                // Both taken: a guest that set both is served once.
                take_relid_bit() | monitor
            }
            _ => {
                let w = dev.signal.irq_writes();
                if w == *last_irq_writes {
                    return false;
                }
                *last_irq_writes = w;
                take_relid_bit() | (self.index == 0)
            }
        }
    }

    /// Scan interval: the monitor-page latency of this channel's monitor id (100 ns units; the emulator fills every
    /// slot with the host default, 100 µs, until the guest writes its own), or 100 µs without a monitor. A guest's 0
    /// asks for no wait: the worker then only yields between scans.
    fn latency(&self, dev: &Device) -> Duration {
        let units = self
            .monitor_id
            .and_then(|m| {
                let off = 576 + 2 * usize::from(m);
                let mut b = [0u8; 2];
                dev.mem
                    .monitor_page
                    .read(off, &mut b)
                    .ok()
                    .map(|_| u16::from_le_bytes(b))
            })
            .unwrap_or(DEFAULT_LATENCY_UNITS);
        Duration::from_nanos(u64::from(units) * 100)
    }
}

/// The worker loop of one channel.
pub(crate) fn run_worker(dev: &Device, ch: &Channel, mut w: WorkerSide) {
    let mut scratch = Vec::with_capacity(4096);
    let mut ctx = nvsp::Ctx::new();
    let mut last_irq = w.irq_writes;
    // A first look at the ring: whatever the guest wrote before this thread ran is served.
    let mut first = true;
    let mut pending_deferred = false;
    let mut idle = 0u32;
    while !dev.stopped() {
        ch.reset_worker_side(&mut w);
        let triggered = ch.take_trigger(dev, &mut last_irq) || std::mem::take(&mut first);
        if triggered {
            add(&ch.counters.triggers, 1);
        }
        if triggered || pending_deferred || ch.has_deferred.load(Ordering::Acquire) {
            pending_deferred = !ch.flush_deferred(dev);
        }
        let busy = dev.cfg.busy_poll;
        let read = if triggered || busy {
            // Busy time for the bench's host busy fraction: only drains that read something count.
            let t0 = Instant::now();
            let n = drain(dev, ch, &mut w, &mut scratch, &mut ctx);
            if n > 0 {
                add(&ch.counters.worker_busy_ns, t0.elapsed().as_nanos() as u64);
                if !busy {
                    dev.wake_pump();
                }
            }
            n
        } else {
            0
        };
        if busy {
            // Keep the CPU while there is work; when idle, spin and give it up only now and then: a
            // yield on every turn hands the core to any other runnable task for a whole time slice.
            idle = if read > 0 || triggered { 0 } else { idle + 1 };
            if idle > 0 && idle.is_multiple_of(IDLE_SPINS_PER_YIELD) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        } else {
            match ch.latency(dev) {
                Duration::ZERO => std::thread::yield_now(),
                d => std::thread::sleep(d),
            }
        }
    }
}

/// The host's scan latency before the guest sets one (100 µs, in 100 ns units; DPDK's reference says the same).
pub(crate) const DEFAULT_LATENCY_UNITS: u16 = 1000;

/// Idle turns a busy-polling worker spins between yields.
const IDLE_SPINS_PER_YIELD: u32 = 64;

fn drain(
    dev: &Device,
    ch: &Channel,
    w: &mut WorkerSide,
    scratch: &mut Vec<u8>,
    ctx: &mut nvsp::Ctx,
) -> u32 {
    w.g2h.set_interrupt_mask(true);
    let mut corrupt = false;
    let mut total = 0u32;
    loop {
        let mut n = 0u32;
        loop {
            match w.reader.read(scratch) {
                Ok(pkt) => {
                    n += 1;
                    if !dev.cfg.silent {
                        nvsp::handle_packet(dev, ch, ctx, &pkt);
                    }
                }
                Err(ReadError::Empty) => break,
                Err(ReadError::Corrupt(_)) => {
                    // Stop reading this ring until the guest signals again.
                    dev.proto_error("ringCorrupt");
                    corrupt = true;
                    break;
                }
            }
            if n.is_multiple_of(64) && w.reader.commit() {
                add(&ch.counters.signals_to_guest, 1);
                dev.signal.signal(ch.relid);
            }
        }
        if w.reader.commit() {
            add(&ch.counters.signals_to_guest, 1);
            dev.signal.signal(ch.relid);
        }
        total = total.saturating_add(n);
        w.g2h.set_interrupt_mask(false);
        if corrupt || w.reader.bytes_available() == 0 || dev.stopped() {
            break;
        }
        w.g2h.set_interrupt_mask(true);
    }
    total
}

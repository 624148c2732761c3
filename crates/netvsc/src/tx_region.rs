//! Zero-copy transmit. A queue's owner creates one region of DMA memory split into equal buffers, writes frames
//! into them and sends them by descriptor (buffer, length, metadata). A frame above `tx_copybreak` goes GPA-direct
//! from its buffer — the RNDIS header in the buffer's own 128-byte header slot, then the frame's pages — as DPDK's
//! `hn_xmit_sg` sends an mbuf; a smaller one is copied into a send section as [`crate::tx`] does.
//!
//! Ownership: a buffer is the application's until it is submitted, the driver's until the host completes it (a
//! copied frame: at once), then waits in a completion ring until [`crate::QueuePair::tx_reclaim`] hands its index
//! back, exactly once. Submitting a buffer the driver still holds is refused ([`TxRegionError::Busy`]).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use vmbus_ring::{GpaRange, OutgoingKind, OutgoingPacket, SharedMem};
use vmbus_uio::{DmaMemory, IovaMode};

use crate::error::{Error, Result};
use crate::queue::{Mode, POLL_BUDGET_PACKETS, QueueCore, TAG_REGION};
use crate::stats::QueueStats;
use crate::tx::{self, Acct, GPA_MAX, Outcome, TX_FRAME_MAX, TX_HDR_MAX, TxMeta, TxPacket};
use netvsc_proto::nvsp;

/// Smallest buffer size of a region.
pub const TX_REGION_BUF_MIN: u32 = 2048;
/// Largest buffer size of a region (holds a [`TX_FRAME_MAX`] TSO frame).
pub const TX_REGION_BUF_MAX: u32 = 128 * 1024;
/// Most buffers in one region.
pub const TX_REGION_BUFS_MAX: u32 = 65536;
/// Largest region.
pub const TX_REGION_BYTES_MAX: u64 = 1 << 30;
/// Bytes of a buffer's RNDIS header slot (a divisor of 4096, so a header never straddles a page).
const HDR_SLOT: usize = 128;
const _: () = assert!(TX_HDR_MAX <= HDR_SLOT && 4096 % HDR_SLOT == 0);

/// Geometry of a tx region: `bufs` buffers of `buf_size` bytes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxRegionConfig {
    /// Bytes per buffer: a power of two in [`TX_REGION_BUF_MIN`]..=[`TX_REGION_BUF_MAX`]; a frame may use all of it.
    pub buf_size: u32,
    /// Buffers: 1..=[`TX_REGION_BUFS_MAX`], at most [`TX_REGION_BYTES_MAX`] in all.
    pub bufs: u32,
}

impl Default for TxRegionConfig {
    /// 1024 buffers of 2 KiB (2 MiB): room for standard frames, 32 bursts of 32 in flight.
    fn default() -> Self {
        TxRegionConfig {
            buf_size: 2048,
            bufs: 1024,
        }
    }
}

impl TxRegionConfig {
    /// Check the geometry.
    pub fn validate(&self) -> std::result::Result<(), TxRegionError> {
        let TxRegionConfig { buf_size, bufs } = *self;
        if !buf_size.is_power_of_two()
            || !(TX_REGION_BUF_MIN..=TX_REGION_BUF_MAX).contains(&buf_size)
        {
            return Err(TxRegionError::BufSize { buf_size });
        }
        if !(1..=TX_REGION_BUFS_MAX).contains(&bufs)
            || u64::from(bufs) * u64::from(buf_size) > TX_REGION_BYTES_MAX
        {
            return Err(TxRegionError::BufCount { bufs, buf_size });
        }
        Ok(())
    }

    /// Longest frame a buffer takes.
    pub fn max_frame(&self) -> u32 {
        self.buf_size.min(TX_FRAME_MAX as u32)
    }
}

/// One frame to send from the region: `len` bytes at the start of buffer `buf`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxDesc {
    /// Buffer index.
    pub buf: u32,
    /// Frame length (14 ..= the region's [`TxRegionConfig::max_frame`]).
    pub len: u32,
    /// VLAN / checksum / TSO requests, as for [`TxPacket`].
    pub meta: TxMeta,
}

/// Why a buffer could not be submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyReason {
    /// The host has not completed its last send.
    InFlight,
    /// Completed, but not yet handed back by `tx_reclaim`.
    Unreclaimed,
    /// Named twice in one burst.
    Repeated,
}

impl std::fmt::Display for BusyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BusyReason::InFlight => "is in flight (the host has not completed it)",
            BusyReason::Unreclaimed => "is completed but not reclaimed yet",
            BusyReason::Repeated => "appears twice in this burst",
        })
    }
}

/// A refused tx region request or descriptor. A refused burst sends nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxRegionError {
    /// The queue has no region yet.
    #[error("queue {queue} has no tx region: create one first")]
    NoRegion {
        /// Queue index.
        queue: u16,
    },
    /// The buffer size is not allowed.
    #[error(
        "tx region buffer size {buf_size} is not a power of two in {TX_REGION_BUF_MIN}..={TX_REGION_BUF_MAX}"
    )]
    BufSize {
        /// Size asked for.
        buf_size: u32,
    },
    /// The buffer count is not allowed.
    #[error(
        "tx region of {bufs} buffers of {buf_size} bytes: the count must be in 1..={TX_REGION_BUFS_MAX} and the region at most 1 GiB"
    )]
    BufCount {
        /// Count asked for.
        bufs: u32,
        /// Buffer size asked for.
        buf_size: u32,
    },
    /// The queue already has a region of another geometry.
    #[error("queue {queue} already has a tx region of {bufs} buffers of {buf_size} bytes")]
    Exists {
        /// Queue index.
        queue: u16,
        /// Its buffer count.
        bufs: u32,
        /// Its buffer size.
        buf_size: u32,
    },
    /// A descriptor names a buffer past the region.
    #[error("tx descriptor {at}: buffer {buf} is outside the region's {bufs} buffers")]
    BadIndex {
        /// Position in the burst.
        at: usize,
        /// Buffer index given.
        buf: u32,
        /// Buffers in the region.
        bufs: u32,
    },
    /// A descriptor's length does not fit a frame in a buffer.
    #[error("tx descriptor {at}: length {len} of buffer {buf} is outside 14..={max}")]
    BadLength {
        /// Position in the burst.
        at: usize,
        /// Buffer index.
        buf: u32,
        /// Length given.
        len: u32,
        /// Longest frame a buffer takes.
        max: u32,
    },
    /// A descriptor names a buffer the driver still holds.
    #[error(
        "tx descriptor {at}: buffer {buf} {why}; a buffer can be sent again once tx_reclaim has returned it"
    )]
    Busy {
        /// Position in the burst.
        at: usize,
        /// Buffer index.
        buf: u32,
        /// Why it is not the application's.
        why: BusyReason,
    },
}

/// The application's handle on a queue's tx region: the memory it writes frames into.
#[derive(Clone)]
pub struct TxRegion {
    inner: Arc<RegionMem>,
}

struct RegionMem {
    dma: DmaMemory,
    mem: SharedMem,
    pfns: Vec<u64>,
    cfg: TxRegionConfig,
}

impl std::fmt::Debug for TxRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxRegion")
            .field("buf_size", &self.inner.cfg.buf_size)
            .field("bufs", &self.inner.cfg.bufs)
            .finish()
    }
}

impl TxRegion {
    fn alloc(cfg: TxRegionConfig, iova: IovaMode) -> Result<TxRegion> {
        let len = cfg.buf_size as usize * cfg.bufs as usize;
        let dma = DmaMemory::alloc_remappable(len, iova)?;
        let pfns = (0..len.div_ceil(4096))
            .map(|p| {
                dma.try_pfn(p * 4096).ok_or(Error::Config {
                    what: "tx region pfn",
                    value: p as u64,
                })
            })
            .collect::<Result<Vec<u64>>>()?;
        let mem = dma.mem.subrange(0, len).map_err(Error::mem("tx region"))?;
        Ok(TxRegion {
            inner: Arc::new(RegionMem {
                dma,
                mem,
                pfns,
                cfg,
            }),
        })
    }

    /// Its geometry.
    pub fn config(&self) -> TxRegionConfig {
        self.inner.cfg
    }

    /// Bytes per buffer.
    pub fn buf_size(&self) -> u32 {
        self.inner.cfg.buf_size
    }

    /// Number of buffers.
    pub fn bufs(&self) -> u32 {
        self.inner.cfg.bufs
    }

    /// Bytes in all (buffer `i` starts at `i × buf_size`).
    pub fn len(&self) -> usize {
        self.inner.mem.len()
    }

    /// Never: a region has at least one buffer.
    pub fn is_empty(&self) -> bool {
        self.inner.mem.is_empty()
    }

    /// The whole region (the mapping the host is given the pages of).
    pub fn mem(&self) -> &SharedMem {
        &self.inner.mem
    }

    /// A window over buffer `buf`, to write a frame into.
    pub fn buffer(&self, buf: u32) -> Result<SharedMem> {
        let size = self.inner.cfg.buf_size as usize;
        if buf >= self.inner.cfg.bufs {
            return Err(Error::Invalid {
                what: "tx region buffer",
                value: u64::from(buf),
            });
        }
        self.inner
            .mem
            .subrange(buf as usize * size, size)
            .map_err(Error::mem("tx region buffer"))
    }

    /// A fresh mapping of the whole region at a new address (what the Node addon hands to JS as an ArrayBuffer):
    /// writes through it land in the pages the host reads. It stays valid after the region is dropped.
    pub fn map_view(&self) -> Result<SharedMem> {
        self.inner
            .dma
            .remap()?
            .subrange(0, self.len())
            .map_err(Error::mem("tx region view"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// The application's.
    Free,
    /// Named by the burst being sent.
    Pending,
    /// Sent GPA-direct; `bytes` counted on completion.
    InFlight { bytes: u32 },
    /// Done, in the completion ring.
    Done,
}

/// The driver's side of a region: buffer states, header slots, the completion ring.
pub(crate) struct RegionState {
    pub region: TxRegion,
    hdr: SharedMem,
    hdr_pfns: Vec<u64>,
    _hdr_owner: DmaMemory,
    state: Vec<St>,
    done: Vec<u32>,
    done_head: usize,
    done_len: usize,
    in_flight: u32,
    /// Frames copied out of the region (copy path, VF path), `max_frame` bytes.
    scratch: Vec<u8>,
}

impl RegionState {
    fn new(region: TxRegion, iova: IovaMode) -> Result<RegionState> {
        let cfg = region.config();
        let hdr_len = cfg.bufs as usize * HDR_SLOT;
        let hdr_dma = DmaMemory::alloc(hdr_len, iova)?;
        let hdr_pfns = (0..hdr_len.div_ceil(4096))
            .map(|p| {
                hdr_dma.try_pfn(p * 4096).ok_or(Error::Config {
                    what: "tx header slot pfn",
                    value: p as u64,
                })
            })
            .collect::<Result<Vec<u64>>>()?;
        let hdr = hdr_dma
            .mem
            .subrange(0, hdr_len)
            .map_err(Error::mem("tx header slots"))?;
        Ok(RegionState {
            region,
            hdr,
            hdr_pfns,
            _hdr_owner: hdr_dma,
            state: vec![St::Free; cfg.bufs as usize],
            done: vec![0; cfg.bufs as usize],
            done_head: 0,
            done_len: 0,
            in_flight: 0,
            scratch: vec![0; cfg.max_frame() as usize],
        })
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Completed buffers waiting for `reclaim`.
    pub fn done_len(&self) -> usize {
        self.done_len
    }

    /// Check every descriptor and mark its buffer pending; on a refusal nothing stays marked.
    fn claim(&mut self, descs: &[TxDesc]) -> std::result::Result<(), TxRegionError> {
        let cfg = self.region.config();
        let max = cfg.max_frame();
        for (at, d) in descs.iter().enumerate() {
            let refused = match self.state.get(d.buf as usize) {
                None => Some(TxRegionError::BadIndex {
                    at,
                    buf: d.buf,
                    bufs: cfg.bufs,
                }),
                Some(_) if !(14..=max).contains(&d.len) => Some(TxRegionError::BadLength {
                    at,
                    buf: d.buf,
                    len: d.len,
                    max,
                }),
                Some(St::Free) => None,
                Some(st) => Some(TxRegionError::Busy {
                    at,
                    buf: d.buf,
                    why: match st {
                        St::Pending => BusyReason::Repeated,
                        St::InFlight { .. } => BusyReason::InFlight,
                        _ => BusyReason::Unreclaimed,
                    },
                }),
            };
            if let Some(e) = refused {
                self.unclaim(&descs[..at]);
                return Err(e);
            }
            self.state[d.buf as usize] = St::Pending;
        }
        Ok(())
    }

    /// Give descriptors that were not sent back to the application.
    fn unclaim(&mut self, descs: &[TxDesc]) {
        for d in descs {
            if let Some(s @ St::Pending) = self.state.get_mut(d.buf as usize) {
                *s = St::Free;
            }
        }
    }

    /// The driver is done with `buf` (copied, sent through the VF, refused as invalid): into the completion ring.
    fn finish(&mut self, buf: u32) {
        self.state[buf as usize] = St::Done;
        let tail = (self.done_head + self.done_len) % self.done.len();
        self.done[tail] = buf;
        self.done_len += 1;
    }

    /// The host completed `buf`'s send; false when it was not in flight (unknown, duplicate or forged).
    pub fn complete(&mut self, buf: u32, ok: bool, stats: &QueueStats) -> bool {
        let Some(&St::InFlight { bytes }) = self.state.get(buf as usize) else {
            return false;
        };
        tx::settle(
            Acct {
                pkts: 1,
                bytes: u64::from(bytes),
            },
            ok,
            stats,
        );
        self.in_flight -= 1;
        self.finish(buf);
        true
    }

    /// Hand back up to `out.len()` completed buffer indices, oldest first.
    pub fn reclaim(&mut self, out: &mut [u32]) -> usize {
        let n = out.len().min(self.done_len);
        for slot in &mut out[..n] {
            let buf = self.done[self.done_head];
            self.done_head = (self.done_head + 1) % self.done.len();
            self.state[buf as usize] = St::Free;
            *slot = buf;
        }
        self.done_len -= n;
        n
    }

    /// The channels were torn down (recovery): sends in flight will never be completed, so their buffers go to the
    /// completion ring (the device counts them as unsettled, never as sent).
    pub fn abandon_in_flight(&mut self) {
        for buf in 0..self.state.len() {
            if matches!(self.state[buf], St::InFlight { .. }) {
                self.finish(buf as u32);
            }
        }
        self.in_flight = 0;
    }
}

/// Create queue `core`'s region, or return the one it has when `cfg` matches it.
pub(crate) fn create(core: &mut QueueCore, cfg: TxRegionConfig) -> Result<TxRegion> {
    cfg.validate()?;
    if let Some(r) = &core.tx.region {
        let have = r.region.config();
        if have == cfg {
            return Ok(r.region.clone());
        }
        return Err(TxRegionError::Exists {
            queue: core.id,
            bufs: have.bufs,
            buf_size: have.buf_size,
        }
        .into());
    }
    let region = TxRegion::alloc(cfg, core.tx.iova)?;
    core.tx.region = Some(RegionState::new(region.clone(), core.tx.iova)?);
    Ok(region)
}

/// Send the frames `descs` name; returns how many were taken (the rest met backpressure and are the application's
/// again). A descriptor that breaks a rule refuses the whole burst before anything is sent.
pub(crate) fn tx_burst(
    core: &mut QueueCore,
    descs: &[TxDesc],
) -> std::result::Result<usize, TxRegionError> {
    let queue = core.id;
    let Some(reg) = core.tx.region.as_mut() else {
        return Err(TxRegionError::NoRegion { queue });
    };
    reg.claim(descs)?;
    let taken = if core.vf.as_ref().is_some_and(|l| l.tx) {
        via_vf(core, descs)
    } else {
        synthetic(core, descs)
    };
    if let Some(reg) = core.tx.region.as_mut() {
        reg.unclaim(&descs[taken..]);
    }
    Ok(taken)
}

fn synthetic(core: &mut QueueCore, descs: &[TxDesc]) -> usize {
    core.poll(Mode::Drain, POLL_BUDGET_PACKETS);
    if core.tx.stuck() && !tx::flush_agg(core) {
        core.chan.flush();
        return 0;
    }
    let mut taken = 0;
    for d in descs {
        match send_one(core, d) {
            Outcome::Taken => taken += 1,
            Outcome::Invalid => {
                core.stats.tx.errors.fetch_add(1, Relaxed);
                if let Some(reg) = core.tx.region.as_mut() {
                    reg.finish(d.buf);
                }
                taken += 1;
            }
            Outcome::Backpressure => break,
        }
    }
    tx::flush_agg(core);
    core.chan.flush();
    taken
}

/// Copy `d`'s frame out of the region into the scratch buffer and run `f` on it (copy path, VF path).
fn with_copy<R>(
    core: &mut QueueCore,
    d: &TxDesc,
    f: impl FnOnce(&mut QueueCore, &[u8]) -> R,
) -> Option<R> {
    let reg = core.tx.region.as_mut()?;
    let mut scratch = std::mem::take(&mut reg.scratch);
    let len = d.len as usize;
    let base = d.buf as usize * reg.region.buf_size() as usize;
    let read = scratch
        .get_mut(..len)
        .is_some_and(|dst| reg.region.mem().read(base, dst).is_ok());
    let r = read.then(|| f(core, &scratch[..len]));
    if let Some(reg) = core.tx.region.as_mut() {
        reg.scratch = scratch;
    }
    r
}

fn send_one(core: &mut QueueCore, d: &TxDesc) -> Outcome {
    let Some(reg) = core.tx.region.as_ref() else {
        return Outcome::Invalid;
    };
    let len = d.len as usize;
    let base = d.buf as usize * reg.region.buf_size() as usize;
    let mut head = [0u8; 16];
    if reg
        .region
        .mem()
        .read(base, &mut head[..len.min(16)])
        .is_err()
    {
        return Outcome::Invalid;
    }
    let mut meta = d.meta;
    let strip = len >= 18 && head[12] == 0x81 && head[13] == 0x00 && meta.vlan_tci.is_none();
    if strip {
        meta.vlan_tci = Some(u16::from_be_bytes([head[14], head[15]]));
    }
    let frame_len = len - if strip { 4 } else { 0 };
    if frame_len <= core.tx.copybreak() as usize {
        // Small: copied into a send section like any other frame; the buffer is free again at once.
        let out = with_copy(core, d, |core, frame| {
            let segs: [&[u8]; 1] = [frame];
            tx::send_one(
                core,
                &TxPacket {
                    segs: &segs,
                    meta: d.meta,
                },
            )
        })
        .unwrap_or(Outcome::Invalid);
        if let (Outcome::Taken, Some(reg)) = (&out, core.tx.region.as_mut()) {
            reg.finish(d.buf);
        }
        return out;
    }
    // The open section goes first, so frames leave in order.
    if !tx::flush_agg(core) {
        return Outcome::Backpressure;
    }
    let mut hdr = [0u8; TX_HDR_MAX];
    let hdr_len = tx::build_header(&mut hdr, &meta, core.id, frame_len, strip);
    if hdr_len == 0 {
        return Outcome::Invalid;
    }
    let tx = &mut core.tx;
    let Some(reg) = tx.region.as_mut() else {
        return Outcome::Invalid;
    };
    let hoff = d.buf as usize * HDR_SLOT;
    let Some(&hpfn) = reg.hdr_pfns.get(hoff / 4096) else {
        return Outcome::Invalid;
    };
    if reg.hdr.write(hoff, &hdr[..hdr_len]).is_err() {
        return Outcome::Invalid;
    }
    tx.gpa.clear();
    tx.gpa.push(GpaRange {
        len: hdr_len as u32,
        offset: (hoff % 4096) as u32,
        pfn: hpfn,
    });
    let pfns = &reg.region.inner.pfns;
    // A tag in the frame becomes the 802.1Q PPI: its 4 bytes are left out of the ranges, nothing is copied.
    let ranged = if strip {
        page_ranges(&mut tx.gpa, pfns, base, base + 12)
            && page_ranges(&mut tx.gpa, pfns, base + 16, base + len)
    } else {
        page_ranges(&mut tx.gpa, pfns, base, base + len)
    };
    if !ranged {
        return Outcome::Invalid;
    }
    let msg = tx::data_announce(nvsp::SECTION_INDEX_NONE, 0);
    let pkt = OutgoingPacket {
        kind: OutgoingKind::GpaDirect { ranges: &tx.gpa },
        trans_id: TAG_REGION | u64::from(d.buf),
        completion_requested: true,
        payload: &[&msg[..16]],
    };
    if core.chan.send(&pkt).is_err() {
        core.stats.tx.channel_full.fetch_add(1, Relaxed);
        return Outcome::Backpressure;
    }
    if let Some(reg) = core.tx.region.as_mut() {
        reg.state[d.buf as usize] = St::InFlight {
            bytes: frame_len as u32,
        };
        reg.in_flight += 1;
    }
    core.stats.tx.count_class(frame_len, &head);
    Outcome::Taken
}

/// Ranges of `start..end` of the region, one per 4 KiB page; false past the region or [`GPA_MAX`] ranges.
fn page_ranges(gpa: &mut Vec<GpaRange>, pfns: &[u64], start: usize, end: usize) -> bool {
    let mut off = start;
    while off < end {
        let len = ((off / 4096 + 1) * 4096).min(end) - off;
        let Some(&pfn) = pfns.get(off / 4096) else {
            return false;
        };
        if gpa.len() == GPA_MAX {
            return false;
        }
        gpa.push(GpaRange {
            len: len as u32,
            offset: (off % 4096) as u32,
            pfn,
        });
        off += len;
    }
    true
}

/// While the VF carries tx: each frame is copied out and goes the VF's way (or synthetic, for what the VF cannot
/// take); its buffer is done once the frame is handed on.
fn via_vf(core: &mut QueueCore, descs: &[TxDesc]) -> usize {
    let mut taken = 0;
    for d in descs {
        let n = with_copy(core, d, |core, frame| {
            let segs: [&[u8]; 1] = [frame];
            crate::vf::path::tx_burst(
                core,
                &[TxPacket {
                    segs: &segs,
                    meta: d.meta,
                }],
            )
        })
        .unwrap_or(0);
        if n == 0 {
            break;
        }
        if let Some(reg) = core.tx.region.as_mut() {
            reg.finish(d.buf);
        }
        taken += 1;
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(bufs: u32) -> RegionState {
        let cfg = TxRegionConfig {
            buf_size: 2048,
            bufs,
        };
        RegionState::new(TxRegion::alloc(cfg, IovaMode::Va).unwrap(), IovaMode::Va).unwrap()
    }

    fn desc(buf: u32, len: u32) -> TxDesc {
        TxDesc {
            buf,
            len,
            meta: TxMeta::default(),
        }
    }

    #[test]
    fn geometry_is_checked() {
        let ok = |buf_size, bufs| TxRegionConfig { buf_size, bufs }.validate();
        assert_eq!(ok(2048, 1), Ok(()));
        assert_eq!(ok(131072, 8192), Ok(()));
        assert_eq!(ok(3000, 4), Err(TxRegionError::BufSize { buf_size: 3000 }));
        assert_eq!(ok(1024, 4), Err(TxRegionError::BufSize { buf_size: 1024 }));
        assert_eq!(
            ok(2048, 0),
            Err(TxRegionError::BufCount {
                bufs: 0,
                buf_size: 2048
            })
        );
        assert_eq!(
            ok(131072, 8193),
            Err(TxRegionError::BufCount {
                bufs: 8193,
                buf_size: 131072
            }),
            "over 1 GiB"
        );
        assert_eq!(
            TxRegionConfig {
                buf_size: 131072,
                bufs: 1
            }
            .max_frame(),
            TX_FRAME_MAX as u32
        );
    }

    #[test]
    fn a_refused_burst_leaves_nothing_claimed() {
        let mut r = state(4);
        let e = r
            .claim(&[desc(0, 60), desc(1, 60), desc(1, 60)])
            .unwrap_err();
        assert_eq!(
            e,
            TxRegionError::Busy {
                at: 2,
                buf: 1,
                why: BusyReason::Repeated
            }
        );
        assert!(r.state.iter().all(|s| *s == St::Free));
        assert_eq!(
            r.claim(&[desc(0, 60), desc(4, 60)]).unwrap_err(),
            TxRegionError::BadIndex {
                at: 1,
                buf: 4,
                bufs: 4
            }
        );
        assert_eq!(
            r.claim(&[desc(2, 13)]).unwrap_err(),
            TxRegionError::BadLength {
                at: 0,
                buf: 2,
                len: 13,
                max: 2048
            }
        );
        assert_eq!(
            r.claim(&[desc(2, 2049)]).unwrap_err(),
            TxRegionError::BadLength {
                at: 0,
                buf: 2,
                len: 2049,
                max: 2048
            }
        );
        assert!(r.state.iter().all(|s| *s == St::Free));
    }

    #[test]
    fn buffers_come_back_once_in_completion_order() {
        let stats = QueueStats::default();
        let mut r = state(4);
        r.claim(&[desc(2, 100), desc(3, 200)]).unwrap();
        for (b, bytes) in [(2u32, 100u32), (3, 200)] {
            r.state[b as usize] = St::InFlight { bytes };
            r.in_flight += 1;
        }
        assert_eq!(
            r.claim(&[desc(3, 100)]).unwrap_err(),
            TxRegionError::Busy {
                at: 0,
                buf: 3,
                why: BusyReason::InFlight
            }
        );
        assert!(!r.complete(1, true, &stats), "not in flight");
        assert!(r.complete(3, true, &stats));
        assert!(!r.complete(3, true, &stats), "a duplicate completion");
        assert_eq!(
            r.claim(&[desc(3, 100)]).unwrap_err(),
            TxRegionError::Busy {
                at: 0,
                buf: 3,
                why: BusyReason::Unreclaimed
            }
        );
        assert!(r.complete(2, true, &stats));
        let mut out = [9u32; 8];
        assert_eq!(r.reclaim(&mut out[..1]), 1);
        assert_eq!(out[0], 3);
        assert_eq!(r.reclaim(&mut out), 1);
        assert_eq!(out[0], 2);
        assert_eq!(r.reclaim(&mut out), 0);
        assert_eq!(r.in_flight(), 0);
        assert_eq!(stats.tx.packets.load(Relaxed), 2);
        assert_eq!(stats.tx.bytes.load(Relaxed), 300);
        r.claim(&[desc(3, 100), desc(2, 100)]).unwrap();
    }

    #[test]
    fn ranges_follow_pages_and_skip_a_stripped_tag() {
        let pfns = [10u64, 20, 30];
        let mut g = Vec::new();
        assert!(page_ranges(&mut g, &pfns, 2048, 2048 + 3000));
        assert_eq!(
            g.iter()
                .map(|r| (r.pfn, r.offset, r.len))
                .collect::<Vec<_>>(),
            vec![(10, 2048, 2048), (20, 0, 952)]
        );
        g.clear();
        assert!(page_ranges(&mut g, &pfns, 4096, 4096 + 12));
        assert!(page_ranges(&mut g, &pfns, 4096 + 16, 4096 + 100));
        assert_eq!(
            g.iter()
                .map(|r| (r.pfn, r.offset, r.len))
                .collect::<Vec<_>>(),
            vec![(20, 0, 12), (20, 16, 84)]
        );
        assert!(!page_ranges(&mut g, &pfns, 8192, 12289), "past the region");
    }
}

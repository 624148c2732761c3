//! `NativeQueue`: one queue pair owned by one JS thread. Bursts take caller-owned typed arrays as slices (no
//! napi reference, no JS allocation per call or per packet): frames back to back in `buf`, their lengths in
//! `lens`, `META_WORDS` metadata words each in `meta`. Received frames that do not fit the caller's buffer wait
//! in the queue's own preallocated packets for the next call. With `rx_extmbuf_enable=1`, `rxBurstZeroCopy`
//! returns descriptors into the receive buffer, which `recvRegion()` exposes as one external ArrayBuffer (a
//! separate mapping per call, so V8 never sees the same address twice); `release` gives them back. Zero-copy tx:
//! `txRegion()` exposes the queue's tx region the same way (a fresh mapping of its DMA memory per call), and
//! `txBurstZeroCopy` sends frames written there by buffer index; `txReclaim` hands completed indices back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use napi::CleanupEnvHook;
use napi::Env;
use napi::bindgen_prelude::{ArrayBuffer, Uint8ArraySlice, Uint32ArraySlice};
use napi_derive::napi;
use netvsc::{QueuePair, RxPacket, RxView, TxDesc, TxMeta, TxPacket, TxRegionConfig};

use crate::errors::{Code, Result, error, from_driver, from_uio};
use crate::meta::{self, META_WORDS};
use crate::nic::{DeviceCore, closed};
use crate::regions;
use crate::registry::Claim;

// Slices: the typed arrays passed to a burst are borrowed for the duration of the call only. JS cannot run
// (and so cannot touch them) until the call returns, and no other thread of this env holds them. Two things could
// still make the `&mut` slices a burst forms unsound, and `check_disjoint` refuses both before any slice is formed
// (from raw addresses read through shared references, which may alias freely):
// - two arguments that view the same bytes (views of one ArrayBuffer, or one array passed twice): two `&mut`
//   slices over one byte, or a `&mut` and a `&` over one byte, are undefined behaviour;
// - an argument that views a `recvRegion()` mapping: that memory is shared with the host, which writes it
//   concurrently, and the driver itself writes and reads it through the same pages while the burst holds the slice;
// - an argument that views a `txRegion()` mapping: the host reads those pages at any time while sends are in flight
//   (an in-process host through another address of them), so a `&mut` slice there races with it; frames written
//   there are sent with `txBurstZeroCopy`, which never forms a slice of the region.
// `regions` lists the address ranges of every live `recvRegion()` and `txRegion()` mapping in the process (added
// when one is made, removed by its finalizer; read without a lock), so a view of a region made for another queue or
// thread is refused as well.

/// Hand `mem` (a fresh mapping nobody else has given V8) to JS as an external ArrayBuffer; its range stays in
/// `regions` until the finalizer drops the mapping.
fn expose<'env>(
    env: &'env Env,
    mem: vmbus_ring::SharedMem,
    kind: regions::Kind,
) -> Result<ArrayBuffer<'env>> {
    let (ptr, len) = (mem.as_ptr(), mem.len());
    let range = (ptr as usize, ptr as usize + len);
    if !regions::add(range.0, range.1, kind) {
        return Err(error(
            Code::InvalidArg,
            format!(
                "{} live region mappings already (recvRegion()/txRegion() views): keep one per queue and thread",
                regions::SLOTS
            ),
        ));
    }
    // SAFETY: `ptr..ptr+len` is a live shared mapping owned by `mem`; `mem` moves into the finalize hint, so the
    // mapping outlives the ArrayBuffer. The mapping is fresh (never handed to V8 before), so no other backing
    // store has this address. Its range stays in `regions` until the finalizer unmaps it, so no burst can take
    // a view of it as a slice.
    let ab = unsafe {
        ArrayBuffer::from_external(env, ptr, len, mem, move |_, mem| {
            regions::remove(range.0, range.1);
            drop(mem);
        })
    };
    ab.map_err(|e| {
        regions::remove(range.0, range.1);
        error(
            Code::Napi,
            format!("cannot expose the {kind:?} region: {e}"),
        )
    })
}

/// The byte range a slice covers (empty slices cover nothing).
fn span<T>(s: &[T]) -> (usize, usize) {
    let start = s.as_ptr() as usize;
    (start, start + std::mem::size_of_val(s))
}

/// Refuse arguments that overlap each other or view a region mapping: one pass over at most four ranges and the
/// (few) live regions, no allocation, no lock.
fn check_disjoint(call: &str, args: &[(&str, (usize, usize))]) -> Result<()> {
    let live = |r: &(usize, usize)| r.1 > r.0;
    for (i, (a, ra)) in args.iter().enumerate() {
        if !live(ra) {
            continue;
        }
        for (b, rb) in &args[i + 1..] {
            if live(rb) && ra.0 < rb.1 && rb.0 < ra.1 {
                return Err(error(
                    Code::InvalidArg,
                    format!(
                        "{call}: `{a}` and `{b}` overlap (views of the same memory); pass separate arrays"
                    ),
                ));
            }
        }
    }
    for (a, ra) in args {
        if !live(ra) {
            continue;
        }
        if let Some(kind) = regions::overlapping(*ra) {
            let what = if kind == regions::Kind::Tx {
                "the transmit region (txRegion()), which the host reads while sends are in flight; frames there \
                 go with txBurstZeroCopy"
            } else {
                "the receive region (recvRegion()), which the host and driver write"
            };
            return Err(error(
                Code::InvalidArg,
                format!("{call}: `{a}` views {what}; pass a separate array"),
            ));
        }
    }
    Ok(())
}

/// Most frames one rx call handles.
const RX_MAX: usize = 256;
/// Frames handed to the driver per tx call into it (on the stack).
const TX_CHUNK: usize = 64;
/// Descriptor words per zero-copy packet: offset, len, token, flags (bit 0: in the receive region).
pub const DESC_WORDS: usize = 4;

/// A claimed queue.
#[napi]
pub struct NativeQueue {
    qp: Option<QueuePair>,
    core: Arc<DeviceCore>,
    claim: Arc<Claim>,
    hook: Option<CleanupEnvHook<Arc<Claim>>>,
    index: u32,
    rx: Vec<RxPacket>,
    pend_start: usize,
    pend_end: usize,
    views: Vec<Option<RxView>>,
    free: Vec<u32>,
    /// Set once a queue-count change removed this queue (the device's new queue count): the claim is given back
    /// and every call but `close` fails with `ERR_NETVSC_QUEUE_REMOVED` (frames already copied out still come).
    removed: std::cell::Cell<Option<u16>>,
    /// Descriptors of the zero-copy tx burst being sent (kept: no allocation per burst once grown).
    zc: Vec<TxDesc>,
}

impl NativeQueue {
    /// Claim queue `index` of `core` for the calling env; an env cleanup hook releases it if the env (a worker)
    /// goes away first.
    pub fn claim(env: &Env, core: Arc<DeviceCore>, index: u32) -> Result<NativeQueue> {
        let idx = u16::try_from(index).map_err(|_| {
            error(
                Code::InvalidArg,
                format!("queue index {index} out of range"),
            )
        })?;
        let uuid = core.uuid.clone();
        let qp = core.with(|d| {
            let n = d.info().queues;
            d.queues().into_iter().nth(usize::from(idx)).ok_or_else(|| {
                error(
                    Code::NotOpen,
                    format!("device {uuid} has {n} queues; no queue {idx}"),
                )
            })
        })?;
        let claim = Claim::take(&core.key, idx)?;
        let hook = env
            .add_env_cleanup_hook(claim.clone(), |c| c.release())
            .map_err(|e| error(Code::Napi, format!("cannot add the env cleanup hook: {e}")))?;
        let max_frame = *core.max_frame.lock().unwrap_or_else(|p| p.into_inner());
        Ok(NativeQueue {
            qp: Some(qp),
            core,
            claim,
            hook: Some(hook),
            index,
            rx: (0..RX_MAX)
                .map(|_| RxPacket::with_capacity(max_frame))
                .collect(),
            pend_start: 0,
            pend_end: 0,
            views: Vec::new(),
            free: Vec::new(),
            removed: std::cell::Cell::new(None),
            zc: Vec::with_capacity(256),
        })
    }

    /// Whether a queue-count change removed this queue; on first sight the claim is given back (so the index
    /// can be claimed again if the queue count grows back).
    fn check_removed(&self) -> Option<u16> {
        if self.removed.get().is_none()
            && let Some(n) = self.qp.as_ref().and_then(QueuePair::retired)
        {
            self.removed.set(Some(n));
            self.claim.release();
        }
        self.removed.get()
    }

    fn removed_error(&self, queues: u16) -> napi::Error<Code> {
        error(
            Code::QueueRemoved,
            format!(
                "queue {} of {} was removed: the device has {queues} queue(s) now (setQueues); close this queue",
                self.index, self.core.uuid
            ),
        )
    }

    /// One zero-copy burst of `descs` (the queue pair mirrors it into a running capture itself).
    fn zero_copy(&mut self, descs: &[TxDesc]) -> Result<u32> {
        let qp = self.qp()?;
        let done = qp.tx_burst_zero_copy(descs).map_err(from_driver)?;
        if done == 0
            && !descs.is_empty()
            && let Some(f) = qp.error()
        {
            return Err(ring_error(qp.id(), f));
        }
        Ok(done as u32)
    }

    fn qp(&mut self) -> Result<&mut QueuePair> {
        if let Some(n) = self.check_removed() {
            return Err(self.removed_error(n));
        }
        let uuid = &self.core.uuid;
        match self.qp.as_mut() {
            Some(q) if !self.claim.is_released() => Ok(q),
            _ => Err(error(
                Code::Closed,
                format!("queue {} of {uuid} is closed", self.index),
            )),
        }
    }
}

fn check_meta(meta: &[u32], n: usize, what: &str) -> Result<()> {
    if meta.len() < n * META_WORDS {
        return Err(error(
            Code::InvalidArg,
            format!(
                "{what} needs {} words for {n} packets ({META_WORDS} each), got {}",
                n * META_WORDS,
                meta.len()
            ),
        ));
    }
    Ok(())
}

#[napi]
impl NativeQueue {
    #[napi(getter)]
    pub fn index(&self) -> u32 {
        self.index
    }

    #[napi(getter)]
    pub fn is_closed(&self) -> bool {
        self.check_removed();
        self.qp.is_none() || self.claim.is_released() || self.core.is_closed()
    }

    /// The device's queue count if a queue-count change removed this queue (its claim is then given back),
    /// else null.
    #[napi(getter)]
    pub fn removed(&self) -> Option<u32> {
        self.check_removed().map(u32::from)
    }

    /// Receive frames into `buf` back to back; `lens[i]` and `meta[4i..4i+4]` describe frame i. Returns the count.
    #[napi]
    pub fn rx_burst(
        &mut self,
        mut buf: Uint8ArraySlice<'_>,
        mut lens: Uint32ArraySlice<'_>,
        mut meta: Uint32ArraySlice<'_>,
    ) -> Result<u32> {
        check_disjoint(
            "rxBurst",
            &[
                ("buf", span(&buf)),
                ("lens", span(&lens)),
                ("meta", span(&meta)),
            ],
        )?;
        // SAFETY: JS is blocked for the duration of the call, so nothing else touches the arrays; `check_disjoint`
        // just proved the three ranges pairwise disjoint and outside every receive-region mapping the host or the
        // driver could write, so these are the only references to their bytes (see "Slices" above).
        let (buf, lens, meta) = unsafe { (buf.as_mut(), lens.as_mut(), meta.as_mut()) };
        let max = lens.len().min(meta.len() / META_WORDS).min(RX_MAX);
        let pending = self.pend_start < self.pend_end;
        let removed = self.check_removed();
        if let (Some(q), false) = (removed, pending) {
            return Err(self.removed_error(q));
        }
        let mut qp = self.qp.take().ok_or_else(|| closed(&self.core.uuid))?;
        if self.claim.is_released() && removed.is_none() {
            self.qp = Some(qp);
            return self.qp().map(|_| 0);
        }
        if !pending && max > 0 {
            self.pend_start = 0;
            self.pend_end = qp.rx_burst(&mut self.rx[..max]);
            if self.pend_end == 0 {
                let e = qp.error().map(|f| ring_error(qp.id(), f));
                self.qp = Some(qp);
                if let Some(e) = e {
                    return Err(e);
                }
                if let Some(q) = self.check_removed() {
                    return Err(self.removed_error(q));
                }
                qp = self.qp.take().ok_or_else(|| closed(&self.core.uuid))?;
            }
        }
        let (mut n, mut off) = (0usize, 0usize);
        let mut err = None;
        while self.pend_start < self.pend_end && n < max {
            let p = &mut self.rx[self.pend_start];
            let len = p.meta.len as usize;
            if off + len > buf.len() {
                if n == 0 {
                    err = Some(error(
                        Code::InvalidArg,
                        format!(
                            "a {len}-byte frame does not fit the {}-byte buffer",
                            buf.len()
                        ),
                    ));
                }
                break;
            }
            let dst = &mut buf[off..off + len];
            match p.view.take() {
                Some(view) => {
                    let r = qp.read_view(&view, dst);
                    qp.release(view);
                    if let Err(e) = r {
                        err = Some(from_driver(e));
                        self.pend_start += 1;
                        break;
                    }
                }
                None => dst.copy_from_slice(&p.data[..len]),
            }
            lens[n] = len as u32;
            meta::write_rx(&mut meta[n * META_WORDS..(n + 1) * META_WORDS], &p.meta);
            off += len;
            n += 1;
            self.pend_start += 1;
        }
        self.qp = Some(qp);
        match err {
            Some(e) => Err(e),
            None => Ok(n as u32),
        }
    }

    /// Zero-copy receive: for frame i, `descs[4i..4i+4]` = offset, length, token, flags. Flags bit 0 set: the
    /// frame is in the receive region (`recvRegion()`) at offset and must be given back with `release`; clear:
    /// it was short enough to be copied into `buf` at offset. `meta` as for `rxBurst`. Returns the count.
    #[napi]
    pub fn rx_burst_zero_copy(
        &mut self,
        mut descs: Uint32ArraySlice<'_>,
        mut meta: Uint32ArraySlice<'_>,
        mut buf: Uint8ArraySlice<'_>,
    ) -> Result<u32> {
        check_disjoint(
            "rxBurstZeroCopy",
            &[
                ("descs", span(&descs)),
                ("meta", span(&meta)),
                ("buf", span(&buf)),
            ],
        )?;
        // SAFETY: as in `rx_burst`: JS is blocked, and `check_disjoint` proved the three ranges pairwise disjoint
        // and outside every receive-region mapping, so these `&mut` slices alias nothing.
        let (descs, meta, buf) = unsafe { (descs.as_mut(), meta.as_mut(), buf.as_mut()) };
        let max = (descs.len() / DESC_WORDS)
            .min(meta.len() / META_WORDS)
            .min(RX_MAX);
        let pending = self.pend_start < self.pend_end;
        if let (Some(q), false) = (self.check_removed(), pending) {
            return Err(self.removed_error(q));
        }
        let mut qp = self.qp.take().ok_or_else(|| closed(&self.core.uuid))?;
        if !pending && max > 0 {
            self.pend_start = 0;
            self.pend_end = qp.rx_burst(&mut self.rx[..max]);
            if self.pend_end == 0 {
                let e = qp.error().map(|f| ring_error(qp.id(), f));
                self.qp = Some(qp);
                if let Some(e) = e {
                    return Err(e);
                }
                if let Some(q) = self.check_removed() {
                    return Err(self.removed_error(q));
                }
                qp = self.qp.take().ok_or_else(|| closed(&self.core.uuid))?;
            }
        }
        let (mut n, mut off) = (0usize, 0usize);
        while self.pend_start < self.pend_end && n < max {
            let p = &mut self.rx[self.pend_start];
            let len = p.meta.len as usize;
            let d = &mut descs[n * DESC_WORDS..(n + 1) * DESC_WORDS];
            match p.view.take() {
                Some(view) => {
                    d[0] = view.offset;
                    d[1] = view.len;
                    d[3] = 1;
                    d[2] = match self.free.pop() {
                        Some(t) => {
                            self.views[t as usize] = Some(view);
                            t
                        }
                        None => {
                            self.views.push(Some(view));
                            (self.views.len() - 1) as u32
                        }
                    };
                }
                None => {
                    if off + len > buf.len() {
                        if n == 0 && buf.len() < len {
                            self.qp = Some(qp);
                            return Err(error(
                                Code::InvalidArg,
                                format!(
                                    "a {len}-byte copied frame does not fit the {}-byte buffer",
                                    buf.len()
                                ),
                            ));
                        }
                        break;
                    }
                    buf[off..off + len].copy_from_slice(&p.data[..len]);
                    d[0] = off as u32;
                    d[1] = len as u32;
                    d[2] = 0;
                    d[3] = 0;
                    off += len;
                }
            }
            meta::write_rx(&mut meta[n * META_WORDS..(n + 1) * META_WORDS], &p.meta);
            n += 1;
            self.pend_start += 1;
        }
        self.qp = Some(qp);
        Ok(n as u32)
    }

    /// Give back the first `n` zero-copy descriptors of `descs` (copied ones are skipped). Returns how many views
    /// were released; unknown or already released tokens are ignored.
    #[napi]
    pub fn release(&mut self, descs: &[u32], n: u32) -> Result<u32> {
        let n = (n as usize).min(descs.len() / DESC_WORDS);
        let qp = self.qp.as_mut().ok_or_else(|| closed(&self.core.uuid))?;
        let mut released = 0;
        for d in descs[..n * DESC_WORDS].chunks_exact(DESC_WORDS) {
            if d[3] & 1 == 0 {
                continue;
            }
            if let Some(view) = self.views.get_mut(d[2] as usize).and_then(Option::take) {
                qp.release(view);
                self.free.push(d[2]);
                released += 1;
            }
        }
        Ok(released)
    }

    /// Zero-copy views handed out and not released yet.
    #[napi(getter)]
    pub fn views_outstanding(&self) -> u32 {
        self.qp.as_ref().map_or(0, QueuePair::rx_views_outstanding)
    }

    /// The device's receive buffer as an external ArrayBuffer (its own mapping, kept until both the buffer is
    /// collected and the device is unmapped). Call once per thread and keep it.
    #[napi]
    pub fn recv_region<'env>(&self, env: &'env Env) -> Result<ArrayBuffer<'env>> {
        let info = vmbus_uio::find_device(&self.core.root, &self.core.uuid).map_err(from_uio)?;
        let uio = vmbus_uio::UioDevice::open(&self.core.root, &info).map_err(from_uio)?;
        let mem = uio.recv_buf().clone();
        drop(uio);
        expose(env, mem, regions::Kind::Recv)
    }

    /// The queue's zero-copy tx region as an external ArrayBuffer (a fresh mapping of its DMA memory per call;
    /// buffer i at `i × bufSize`). The first call creates the region (`bufSize` default 2048, `count` default
    /// 1024); later calls return views of it, and asking for another geometry fails. Call once per thread and keep it.
    #[napi]
    pub fn tx_region<'env>(
        &mut self,
        env: &'env Env,
        buf_size: Option<u32>,
        count: Option<u32>,
    ) -> Result<ArrayBuffer<'env>> {
        let qp = self.qp()?;
        let have = qp.tx_region();
        let region = match (have, buf_size, count) {
            (Some(r), None, None) => r,
            (have, b, c) => {
                let base = have.map_or_else(TxRegionConfig::default, |r| r.config());
                let cfg = TxRegionConfig {
                    buf_size: b.unwrap_or(base.buf_size),
                    bufs: c.unwrap_or(base.bufs),
                };
                qp.create_tx_region(cfg).map_err(from_driver)?
            }
        };
        let view = region.map_view().map_err(from_driver)?;
        expose(env, view, regions::Kind::Tx)
    }

    /// `[bufSize, count]` of the queue's tx region, or null before `txRegion()` created one.
    #[napi]
    pub fn tx_region_geometry(&self) -> Option<Vec<u32>> {
        let r = self.qp.as_ref()?.tx_region()?;
        Some(vec![r.buf_size(), r.bufs()])
    }

    /// Send the first `n` frames written into the tx region: frame i is `lens[i]` bytes at the start of buffer
    /// `bufIdx[i]`, with `meta[4i..4i+4]` when `meta` is given. Returns how many were taken (the rest met
    /// backpressure: still yours, retry them); a taken buffer is the driver's until `txReclaim` returns it. A bad
    /// index or length (`ERR_NETVSC_INVALID_ARG`) or a buffer the driver holds (`ERR_NETVSC_TX_BUFFER_BUSY`)
    /// refuses the whole burst: nothing is sent.
    #[napi]
    pub fn tx_burst_zero_copy(
        &mut self,
        buf_idx: &[u32],
        lens: &[u32],
        n: u32,
        meta: Option<&[u32]>,
    ) -> Result<u32> {
        check_disjoint(
            "txBurstZeroCopy",
            &[
                ("bufIdx", span(buf_idx)),
                ("lens", span(lens)),
                ("meta", meta.map_or((0, 0), span)),
            ],
        )?;
        let n = n as usize;
        if n > buf_idx.len() || n > lens.len() {
            return Err(error(
                Code::InvalidArg,
                format!(
                    "n = {n} but bufIdx has {} entries and lens {}",
                    buf_idx.len(),
                    lens.len()
                ),
            ));
        }
        if let Some(m) = meta {
            check_meta(m, n, "meta")?;
        }
        let mut zc = std::mem::take(&mut self.zc);
        zc.clear();
        zc.extend((0..n).map(|i| TxDesc {
            buf: buf_idx[i],
            len: lens[i],
            meta: meta.map_or_else(TxMeta::default, |m| {
                meta::read_tx(&m[i * META_WORDS..(i + 1) * META_WORDS])
            }),
        }));
        let r = self.zero_copy(&zc);
        self.zc = zc;
        r
    }

    /// Write up to `out.length` tx region buffer indices the driver is done with into `out` (each submitted buffer
    /// comes back exactly once, oldest first); returns how many. Reads completions from the ring when none is ready.
    #[napi]
    pub fn tx_reclaim(&mut self, mut out: Uint32ArraySlice<'_>) -> Result<u32> {
        check_disjoint("txReclaim", &[("out", span(&out))])?;
        // SAFETY: JS is blocked for the call and `check_disjoint` proved `out` outside every region mapping, so this
        // is the only reference to its bytes.
        let out = unsafe { out.as_mut() };
        Ok(self.qp()?.tx_reclaim(out) as u32)
    }

    /// Send the first `n` frames of `buf` (lengths in `lens`, requests in `meta`). Returns how many the driver took;
    /// the rest met backpressure (retry them).
    #[napi]
    pub fn tx_burst(&mut self, buf: &[u8], lens: &[u32], meta: &[u32], n: u32) -> Result<u32> {
        // Shared slices may alias each other, but not memory the host writes while we read it (a receive region).
        check_disjoint(
            "txBurst",
            &[
                ("buf", span(buf)),
                ("lens", span(lens)),
                ("meta", span(meta)),
            ],
        )?;
        let n = n as usize;
        if n > lens.len() {
            return Err(error(
                Code::InvalidArg,
                format!("n = {n} but lens has {} entries", lens.len()),
            ));
        }
        check_meta(meta, n, "meta")?;
        let qp = self.qp()?;
        let empty: &[u8] = &[];
        let mut segs: [[&[u8]; 1]; TX_CHUNK] = [[empty]; TX_CHUNK];
        let mut metas = [TxMeta::default(); TX_CHUNK];
        let (mut done, mut off) = (0usize, 0usize);
        while done < n {
            let m = (n - done).min(TX_CHUNK);
            let mut o = off;
            for i in 0..m {
                let len = lens[done + i] as usize;
                let Some(frame) = buf.get(o..o + len) else {
                    return Err(error(
                        Code::InvalidArg,
                        format!(
                            "frame {} ({len} bytes at {o}) runs past the {}-byte buffer",
                            done + i,
                            buf.len()
                        ),
                    ));
                };
                segs[i] = [frame];
                let w = (done + i) * META_WORDS;
                metas[i] = meta::read_tx(&meta[w..w + META_WORDS]);
                o += len;
            }
            let pkts: [TxPacket<'_>; TX_CHUNK] = std::array::from_fn(|i| TxPacket {
                segs: &segs[i],
                meta: metas[i],
            });
            let took = qp.tx_burst(&pkts[..m]);
            done += took;
            if took < m {
                if done == 0
                    && let Some(f) = qp.error()
                {
                    return Err(ring_error(qp.id(), f));
                }
                break;
            }
            off = o;
        }
        if done == 0
            && n > 0
            && let Some(q) = self.check_removed()
        {
            return Err(self.removed_error(q));
        }
        Ok(done as u32)
    }

    /// Benchmark reference: the zero-copy tx workload in the Rust core for `ms` milliseconds — bursts of `burst`
    /// copies of `frame` (written once into every buffer of the tx region, which this creates with `count` buffers
    /// of `bufSize` if the queue has none), resubmitting buffers as `tx_reclaim` returns them. Returns frames taken.
    #[napi]
    pub fn rust_tx_zero_copy_loop(
        &mut self,
        frame: &[u8],
        burst: u32,
        ms: u32,
        buf_size: Option<u32>,
        count: Option<u32>,
    ) -> Result<f64> {
        let qp = self.qp()?;
        let region = match qp.tx_region() {
            Some(r) => r,
            None => qp
                .create_tx_region(TxRegionConfig {
                    buf_size: buf_size.unwrap_or(2048),
                    bufs: count.unwrap_or(1024),
                })
                .map_err(from_driver)?,
        };
        for b in 0..region.bufs() {
            region
                .buffer(b)
                .and_then(|w| {
                    w.write(0, frame).map_err(|_| netvsc::Error::Invalid {
                        what: "frame longer than a tx region buffer",
                        value: frame.len() as u64,
                    })
                })
                .map_err(from_driver)?;
        }
        let burst = (burst as usize).clamp(1, TX_CHUNK);
        let mut descs = [TxDesc::default(); TX_CHUNK];
        let mut back = [0u32; TX_CHUNK];
        // Every buffer back from an earlier call (in flight or unreclaimed) before they are all free again here.
        settle_region(qp, &mut back);
        let mut free: Vec<u32> = (0..region.bufs()).rev().collect();
        let (mut k, mut total) = (0usize, 0u64);
        let until = Instant::now() + Duration::from_millis(u64::from(ms));
        'run: loop {
            for _ in 0..64 {
                while k < burst
                    && let Some(b) = free.pop()
                {
                    descs[k] = TxDesc {
                        buf: b,
                        len: frame.len() as u32,
                        meta: TxMeta::default(),
                    };
                    k += 1;
                }
                let took = qp.tx_burst_zero_copy(&descs[..k]).map_err(from_driver)?;
                descs.copy_within(took..k, 0);
                k -= took;
                total += took as u64;
                let r = qp.tx_reclaim(&mut back);
                free.extend_from_slice(&back[..r]);
            }
            if Instant::now() >= until {
                break 'run;
            }
        }
        settle_region(qp, &mut back);
        Ok(total as f64)
    }

    /// Reap tx completions without sending; returns packets read from the ring.
    #[napi]
    pub fn poll_completions(&mut self) -> Result<u32> {
        Ok(self.qp()?.poll_completions() as u32)
    }

    /// Tx packets the host has not completed yet.
    #[napi(getter)]
    pub fn tx_in_flight(&self) -> u32 {
        self.qp.as_ref().map_or(0, QueuePair::tx_in_flight)
    }

    /// Benchmark reference: the same tx workload as a JS loop over `txBurst`, run by the Rust core for `ms`
    /// milliseconds with bursts of `burst` copies of `frame`. Returns frames taken.
    #[napi]
    pub fn rust_tx_loop(&mut self, frame: &[u8], burst: u32, ms: u32) -> Result<f64> {
        let qp = self.qp()?;
        let segs: [&[u8]; 1] = [frame];
        let burst = (burst as usize).clamp(1, TX_CHUNK);
        let pkts: [TxPacket<'_>; TX_CHUNK] = std::array::from_fn(|_| TxPacket {
            segs: &segs,
            meta: TxMeta::default(),
        });
        let until = Instant::now() + Duration::from_millis(u64::from(ms));
        let mut total = 0u64;
        // The clock is read every 64 bursts: read per burst it was a fifth of the guest's profile when bursts
        // came back empty (vDSO clock_gettime, perf on a 2-core machine).
        'run: loop {
            for _ in 0..64 {
                total += qp.tx_burst(&pkts[..burst]) as u64;
            }
            if Instant::now() >= until {
                break 'run;
            }
        }
        Ok(total as f64)
    }

    /// Benchmark reference: rx bursts of `burst` frames for `ms` milliseconds in the Rust core. Returns frames.
    #[napi]
    pub fn rust_rx_loop(&mut self, burst: u32, ms: u32) -> Result<f64> {
        let burst = (burst as usize).clamp(1, RX_MAX);
        let mut qp = self.qp.take().ok_or_else(|| closed(&self.core.uuid))?;
        let until = Instant::now() + Duration::from_millis(u64::from(ms));
        let mut total = 0u64;
        // The clock every 64 bursts, as in `rust_tx_loop`.
        while Instant::now() < until {
            for _ in 0..64 {
                let got = qp.rx_burst(&mut self.rx[..burst]);
                for p in &mut self.rx[..got] {
                    if let Some(v) = p.view.take() {
                        qp.release(v);
                    }
                }
                total += got as u64;
            }
        }
        self.pend_start = 0;
        self.pend_end = 0;
        self.qp = Some(qp);
        Ok(total as f64)
    }

    /// Benchmark reference (latency): `count` round trips of `frame` through a host that reflects it (loopback
    /// backend), one frame in flight, timed in the Rust core from the `tx_burst` to the `rx_burst` that returns
    /// it. Each carries its sequence number in bytes 14..22 (`frame` must be at least 22 bytes), so a late frame
    /// from an earlier, timed-out round trip is skipped rather than taken for the current one. Returns each round
    /// trip in ns, -1 for a frame not back within `timeout_ms`.
    #[napi]
    pub fn rust_ping_pong(
        &mut self,
        frame: &[u8],
        count: u32,
        timeout_ms: u32,
    ) -> Result<Vec<f64>> {
        if frame.len() < 22 {
            return Err(error(
                Code::InvalidArg,
                format!("ping frame of {} bytes: at least 22 needed", frame.len()),
            ));
        }
        let mut qp = self.qp.take().ok_or_else(|| closed(&self.core.uuid))?;
        let mut f = frame.to_vec();
        let timeout = Duration::from_millis(u64::from(timeout_ms.max(1)));
        let mut out = Vec::with_capacity(count as usize);
        for seq in 0..u64::from(count) {
            f[14..22].copy_from_slice(&seq.to_le_bytes());
            let segs: [&[u8]; 1] = [&f];
            let pkt = [TxPacket {
                segs: &segs,
                meta: TxMeta::default(),
            }];
            let t0 = Instant::now();
            let deadline = t0 + timeout;
            let mut sent = qp.tx_burst(&pkt) == 1;
            while !sent && Instant::now() < deadline {
                sent = qp.tx_burst(&pkt) == 1;
            }
            let mut back = false;
            while sent && !back {
                let n = qp.rx_burst(&mut self.rx[..1]);
                if n > 0 {
                    let p = &mut self.rx[0];
                    back = match p.view.take() {
                        Some(v) => {
                            qp.release(v);
                            true
                        }
                        None => p.data.get(14..22) == Some(&f[14..22]),
                    };
                } else if Instant::now() >= deadline {
                    break;
                }
            }
            out.push(if back {
                t0.elapsed().as_nanos() as f64
            } else {
                -1.0
            });
        }
        self.pend_start = 0;
        self.pend_end = 0;
        self.qp = Some(qp);
        Ok(out)
    }

    /// Give the queue back (idempotent): releases the claim (another thread may open it) and drops the handle.
    #[napi]
    pub fn close(&mut self, env: Env) {
        if let Some(qp) = self.qp.as_mut() {
            for slot in &mut self.views {
                if let Some(v) = slot.take() {
                    qp.release(v);
                }
            }
        }
        self.qp = None;
        // Free the per-queue packet storage now (hundreds of KB): V8 does not see it, so waiting for the
        // finalizer could keep many closed queues' storage alive.
        self.rx = Vec::new();
        self.views = Vec::new();
        self.free = Vec::new();
        self.zc = Vec::new();
        self.pend_start = 0;
        self.pend_end = 0;
        self.claim.release();
        if let Some(h) = self.hook.take() {
            let _ = env.remove_env_cleanup_hook(h);
        }
    }
}

impl Drop for NativeQueue {
    fn drop(&mut self) {
        self.claim.release();
        // The last handle of a closed device's queue frees its buffers.
        vmbus_uio::heap::release_free_heap_soon();
    }
}

/// Open queue `index` of the device `uuid` (opened under `root` in this process, by any thread) for the calling
/// thread — how a worker gets its queue.
#[napi]
pub fn open_queue(env: Env, uuid: String, index: u32, root: Option<String>) -> Result<NativeQueue> {
    let core = crate::nic::find_open(root, &uuid)?;
    NativeQueue::claim(&env, core, index)
}

/// Reclaim every tx region buffer (waiting up to 1 s for the host's completions).
fn settle_region(qp: &mut QueuePair, back: &mut [u32]) {
    let until = Instant::now() + Duration::from_secs(1);
    while qp.tx_reclaim(back) > 0 || (qp.tx_in_flight() > 0 && Instant::now() < until) {}
}

/// `ERR_NETVSC_RING` for a burst on a queue whose ring is corrupt.
fn ring_error(queue: u16, f: netvsc::RingFault) -> napi::Error<Code> {
    error(
        Code::Ring,
        format!(
            "queue {queue}: {} ring is corrupt: {} (packet at data offset {:#x}); the device recovers or must be closed",
            if f.tx { "guest→host" } else { "host→guest" },
            f.what,
            f.offset
        ),
    )
}

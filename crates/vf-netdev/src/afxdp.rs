//! AF_XDP queues.
//!
//! One XSKMAP sized to the queue count and the hand-written redirect program from [`crate::bpf`], attached with a
//! bpf_link (driver mode first, then generic/SKB mode), shared by the queues through an `Arc`: the program is
//! detached when the Port and its last queue are gone (or the process dies). Per queue: a UMEM of
//! `2 × ring_frames` chunks of `frame_size` bytes (first half rx, second half tx), fill/completion/rx/tx rings
//! mapped at the offsets XDP_MMAP_OFFSETS gives, and a socket bound to the netdev queue with XDP_ZEROCOPY, else
//! XDP_COPY (both with XDP_USE_NEED_WAKEUP), then inserted into the XSKMAP at its queue id. Any setup error
//! releases everything (no program stays attached) so the caller can fall back to AF_PACKET.
//!
//! Ring indexes are loaded with acquire and published with release ordering; every descriptor address/length and
//! every completion address is validated against the UMEM (and the right half of it) before use. Checksum requests
//! are completed in software before the frame is queued; GSO requests are refused (tx_burst stops at the frame).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::bpf;
use crate::health::Health;
use crate::port::{PortConfig, VfQueueStats, VfRx, VfTx, fill_csum};
use crate::ring::{Mem, RingError, check_umem_desc, ring_avail};
use crate::sys::{Mmap, cvt, getsockopt, setsockopt, socket};
use crate::{Mode, NetdevError, Result, io_err};

const AF_XDP: libc::c_int = 44;
const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_TX_RING: libc::c_int = 3;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_STATISTICS: libc::c_int = 7;
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const XDP_RING_NEED_WAKEUP: u32 = 1;
const PGOFF_RX: i64 = 0;
const PGOFF_TX: i64 = 0x8000_0000;
const PGOFF_FILL: i64 = 0x1_0000_0000;
const PGOFF_COMP: i64 = 0x1_8000_0000;
const DESC_LEN: usize = 16;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RingOff {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct MmapOffsets {
    rx: RingOff,
    tx: RingOff,
    fr: RingOff,
    cr: RingOff,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct XdpStats {
    rx_dropped: u64,
    rx_invalid_descs: u64,
    tx_invalid_descs: u64,
    rx_ring_full: u64,
    rx_fill_ring_empty_descs: u64,
    tx_ring_empty_descs: u64,
}

#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

/// The attached program and its map; dropping the last reference closes the link fd, which detaches it.
pub(crate) struct XdpProg {
    _link: OwnedFd,
    _prog: OwnedFd,
    _map: OwnedFd,
}

/// One mapped ring: producer/consumer/flags words and `size` descriptors of `esz` bytes.
struct Ring {
    map: Mmap,
    prod: usize,
    cons: usize,
    flags: usize,
    desc: usize,
    size: u32,
    esz: usize,
    /// Our private copy of the index we own (producer for fill/tx, consumer for rx/completion).
    cached: u32,
}

impl Ring {
    fn map(
        fd: &OwnedFd,
        off: &RingOff,
        size: u32,
        esz: usize,
        pgoff: i64,
        name: &str,
    ) -> Result<Ring> {
        let len = off.desc as usize + size as usize * esz;
        let map = Mmap::map(Some(fd.as_raw_fd()), len, pgoff, true)
            .map_err(|e| io_err(name, "mmap xdp ring", e))?;
        let r = Ring {
            map,
            prod: off.producer as usize,
            cons: off.consumer as usize,
            flags: off.flags as usize,
            desc: off.desc as usize,
            size,
            esz,
            cached: 0,
        };
        // The offsets come from the kernel: check them against the mapping once.
        let m = r.mem();
        for o in [r.prod, r.cons, r.flags] {
            m.load_u32(o).map_err(ring_err)?;
        }
        if !r.desc.is_multiple_of(8) {
            return Err(ring_err(RingError {
                what: "ring desc offset",
                value: r.desc as u64,
                limit: 8,
            }));
        }
        Ok(r)
    }
    fn mem(&self) -> Mem {
        self.map.mem()
    }
    fn slot(&self, idx: u32) -> usize {
        self.desc + (idx & (self.size - 1)) as usize * self.esz
    }
    fn need_wakeup(&self) -> bool {
        self.mem()
            .load_u32_acquire(self.flags)
            .map(|f| f & XDP_RING_NEED_WAKEUP != 0)
            .unwrap_or(true)
    }
}

fn ring_err(e: RingError) -> NetdevError {
    NetdevError::Invalid(e.to_string())
}

pub(crate) struct XdpQueue {
    fd: OwnedFd,
    rx: Ring,
    tx: Ring,
    fill: Ring,
    comp: Ring,
    umem: Mmap,
    frame_size: u32,
    /// UMEM offset where the tx half starts.
    tx_base: u64,
    free_tx: Vec<u64>,
    /// tx descriptors queued but not yet completed.
    outstanding: u32,
    need_wakeup: bool,
    last: XdpStats,
    health: Health,
    _prog: Arc<XdpProg>,
}

struct Pending {
    fd: OwnedFd,
    rx: Ring,
    tx: Ring,
    fill: Ring,
    comp: Ring,
    umem: Mmap,
}

fn setup_socket(name: &str, cfg: &PortConfig) -> Result<Pending> {
    let fd = socket(AF_XDP, libc::SOCK_RAW, 0).map_err(|e| io_err(name, "socket(AF_XDP)", e))?;
    let raw = fd.as_raw_fd();
    let n = cfg.ring_frames;
    let fs = cfg.frame_size as usize;
    let umem =
        Mmap::map(None, 2 * n as usize * fs, 0, true).map_err(|e| io_err(name, "mmap umem", e))?;
    let reg = UmemReg {
        addr: umem.ptr as u64,
        len: umem.len as u64,
        chunk_size: fs as u32,
        ..Default::default()
    };
    setsockopt(raw, SOL_XDP, XDP_UMEM_REG, &reg).map_err(|e| io_err(name, "XDP_UMEM_REG", e))?;
    for (opt, what) in [
        (XDP_UMEM_FILL_RING, "XDP_UMEM_FILL_RING"),
        (XDP_UMEM_COMPLETION_RING, "XDP_UMEM_COMPLETION_RING"),
        (XDP_RX_RING, "XDP_RX_RING"),
        (XDP_TX_RING, "XDP_TX_RING"),
    ] {
        setsockopt(raw, SOL_XDP, opt, &n).map_err(|e| io_err(name, what, e))?;
    }
    let mut off = MmapOffsets::default();
    getsockopt(raw, SOL_XDP, XDP_MMAP_OFFSETS, &mut off)
        .map_err(|e| io_err(name, "XDP_MMAP_OFFSETS", e))?;
    let rx = Ring::map(&fd, &off.rx, n, DESC_LEN, PGOFF_RX, name)?;
    let tx = Ring::map(&fd, &off.tx, n, DESC_LEN, PGOFF_TX, name)?;
    let mut fill = Ring::map(&fd, &off.fr, n, 8, PGOFF_FILL, name)?;
    let comp = Ring::map(&fd, &off.cr, n, 8, PGOFF_COMP, name)?;
    // Give the kernel every rx chunk.
    let m = fill.mem();
    for i in 0..n {
        m.store_u64(fill.slot(i), i as u64 * fs as u64)
            .map_err(ring_err)?;
    }
    fill.cached = n;
    m.store_u32_release(fill.prod, n).map_err(ring_err)?;
    Ok(Pending {
        fd,
        rx,
        tx,
        fill,
        comp,
        umem,
    })
}

/// How long a bind waits for the kernel to release a queue a closed socket held: the previous socket's buffer
/// pool (and with it the queue's binding) is torn down from a workqueue, so a bind right after a close can see
/// EBUSY for a moment.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

fn bind(p: &Pending, ifindex: u32, queue: u32, flags: u16) -> std::io::Result<()> {
    let sa = SockaddrXdp {
        family: AF_XDP as u16,
        flags,
        ifindex,
        queue_id: queue,
        shared_umem_fd: 0,
    };
    let start = std::time::Instant::now();
    loop {
        // SAFETY: sa is a valid sockaddr_xdp and its size is passed.
        let r = cvt(unsafe {
            libc::bind(
                p.fd.as_raw_fd(),
                (&sa as *const SockaddrXdp).cast(),
                size_of::<SockaddrXdp>() as libc::socklen_t,
            )
        });
        match r {
            Ok(_) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < BUSY_WAIT => {
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Opens `n` AF_XDP queues (zero-copy if the driver allows, else copy).
pub(crate) fn open(
    ifindex: u32,
    name: &str,
    n: u32,
    mtu: u32,
    cfg: &PortConfig,
) -> Result<(Mode, Vec<XdpQueue>)> {
    // The kernel puts XDP_PACKET_HEADROOM (256) in front of every received frame in its chunk.
    if (cfg.frame_size as usize) < mtu as usize + 18 + 256 {
        return Err(NetdevError::Unsupported {
            what: "af_xdp",
            detail: format!(
                "{name}: frame_size {} cannot hold mtu {mtu} + 18 + 256 bytes of XDP headroom",
                cfg.frame_size
            ),
        });
    }
    let unsup = |what: &'static str, e: std::io::Error| NetdevError::Unsupported {
        what,
        detail: format!("{name}: {e}"),
    };
    let map = bpf::xskmap_create(n).map_err(|e| unsup("xskmap", e))?;
    let prog = bpf::prog_load(&map).map_err(|e| unsup("xdp program load", e))?;
    let mut pend = Vec::with_capacity(n as usize);
    let mut zc = true;
    for q in 0..n {
        let p = setup_socket(name, cfg)?;
        let base = XDP_USE_NEED_WAKEUP;
        if zc && bind(&p, ifindex, q, base | XDP_ZEROCOPY).is_err() {
            zc = false;
        }
        if !zc {
            // A failed zero-copy bind leaves the socket unbound: bind again in copy mode (a fresh socket if the
            // kernel refuses a second bind on this one).
            if bind(&p, ifindex, q, base | XDP_COPY).is_err() {
                let p2 = setup_socket(name, cfg)?;
                bind(&p2, ifindex, q, base | XDP_COPY).map_err(|e| unsup("af_xdp bind", e))?;
                pend.push(p2);
                continue;
            }
        }
        pend.push(p);
    }
    for (q, p) in pend.iter().enumerate() {
        bpf::xskmap_set(&map, q as u32, p.fd.as_raw_fd()).map_err(|e| unsup("xskmap update", e))?;
    }
    let link = bpf::link_create(&prog, ifindex, bpf::XDP_FLAGS_DRV_MODE)
        .or_else(|_| bpf::link_create(&prog, ifindex, bpf::XDP_FLAGS_SKB_MODE))
        .map_err(|e| unsup("xdp attach", e))?;
    let shared = Arc::new(XdpProg {
        _link: link,
        _prog: prog,
        _map: map,
    });
    let mode = if zc {
        Mode::AfXdpZeroCopy
    } else {
        Mode::AfXdpCopy
    };
    let mut qs = Vec::with_capacity(pend.len());
    for p in pend {
        let n = cfg.ring_frames;
        let tx_base = n as u64 * cfg.frame_size as u64;
        let mut free_tx = Vec::with_capacity(n as usize);
        for i in (0..n as u64).rev() {
            free_tx.push(tx_base + i * cfg.frame_size as u64);
        }
        qs.push(XdpQueue {
            fd: p.fd,
            rx: p.rx,
            tx: p.tx,
            fill: p.fill,
            comp: p.comp,
            umem: p.umem,
            frame_size: cfg.frame_size,
            tx_base,
            free_tx,
            outstanding: 0,
            need_wakeup: true,
            last: XdpStats::default(),
            health: Health::new(ifindex, name, cfg.fail_when_stopped)?,
            _prog: shared.clone(),
        });
    }
    Ok((mode, qs))
}

impl XdpQueue {
    fn housekeeping(&mut self, st: &VfQueueStats) -> Result<()> {
        if self.health.tick()? {
            let mut s = XdpStats::default();
            if getsockopt(self.fd.as_raw_fd(), SOL_XDP, XDP_STATISTICS, &mut s).is_ok() {
                let drops = (s.rx_dropped + s.rx_ring_full)
                    .saturating_sub(self.last.rx_dropped + self.last.rx_ring_full);
                if drops > 0 {
                    st.rx_dropped.fetch_add(drops, Relaxed);
                }
                let terr = s
                    .tx_invalid_descs
                    .saturating_sub(self.last.tx_invalid_descs);
                if terr > 0 {
                    st.tx_errors.fetch_add(terr, Relaxed);
                }
                self.last = s;
            }
            let mut err = 0i32;
            if getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                &mut err,
            )
            .is_ok()
                && err != 0
            {
                self.health
                    .on_error(&std::io::Error::from_raw_os_error(err))?;
            }
            self.health.probe()?;
        }
        Ok(())
    }

    fn kick_rx(&mut self) -> Result<()> {
        if self.need_wakeup && !self.fill.need_wakeup() {
            return Ok(());
        }
        // SAFETY: a zero-length recvfrom only wakes the driver; no buffer is written.
        let r = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        self.kicked(r, &[libc::EAGAIN, libc::EBUSY, libc::EINTR])
    }

    /// The result of a wakeup call: errors other than the transient ones `ok` lists go to the health check
    /// (which fails the queue if the netdev is gone; a netdev that is only down keeps its frames queued).
    fn kicked(&mut self, r: isize, ok: &[i32]) -> Result<()> {
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if !e.raw_os_error().is_some_and(|c| ok.contains(&c)) {
                self.health.on_error(&e)?;
            }
        }
        Ok(())
    }

    pub fn rx_burst(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8], VfRx),
        st: &VfQueueStats,
    ) -> Result<usize> {
        self.housekeeping(st)?;
        let rxm = self.rx.mem();
        let um = self.umem.mem();
        let fm = self.fill.mem();
        let prod = rxm.load_u32_acquire(self.rx.prod).map_err(ring_err)?;
        let avail = ring_avail(prod, self.rx.cached, self.rx.size).map_err(ring_err)?;
        let take = (avail as usize).min(max) as u32;
        if take == 0 {
            return Ok(0);
        }
        // Room in the fill ring for the chunks we hand back.
        let fcons = fm.load_u32_acquire(self.fill.cons).map_err(ring_err)?;
        let fill_used = ring_avail(self.fill.cached, fcons, self.fill.size).map_err(ring_err)?;
        let room = self.fill.size - fill_used;
        let take = take.min(room);
        let (mut n, mut bytes) = (0u32, 0u64);
        let mut res = Ok(());
        let mut skip = 0u32;
        while n < take {
            let slot = self.rx.slot(self.rx.cached.wrapping_add(n));
            let addr = rxm.load_u64(slot).map_err(ring_err)?;
            let len = rxm.load_u32(slot + 8).map_err(ring_err)?;
            let off = match check_umem_desc(addr, len, self.tx_base as usize, self.frame_size) {
                Ok(o) => o,
                Err(e) => {
                    // Consume the bad descriptor (its chunk is not returned to the fill ring) and report it.
                    res = Err(ring_err(e));
                    skip = 1;
                    break;
                }
            };
            // SAFETY: the kernel produced this descriptor (acquire above) and does not touch the chunk again until
            // we return it through the fill ring, after `f` is done with the slice.
            let data = unsafe { um.slice(off, len as usize) }.map_err(ring_err)?;
            f(
                data,
                VfRx {
                    vlan_tci: None,
                    csum_ok: false,
                },
            );
            bytes += len as u64;
            let chunk = addr - addr % self.frame_size as u64;
            fm.store_u64(self.fill.slot(self.fill.cached), chunk)
                .map_err(ring_err)?;
            self.fill.cached = self.fill.cached.wrapping_add(1);
            n += 1;
        }
        self.rx.cached = self.rx.cached.wrapping_add(n + skip);
        rxm.store_u32_release(self.rx.cons, self.rx.cached)
            .map_err(ring_err)?;
        fm.store_u32_release(self.fill.prod, self.fill.cached)
            .map_err(ring_err)?;
        if n > 0 {
            st.rx_packets.fetch_add(n as u64, Relaxed);
            st.rx_bytes.fetch_add(bytes, Relaxed);
        }
        self.kick_rx()?;
        res.map(|()| n as usize)
    }

    fn reap(&mut self) -> Result<usize> {
        let cm = self.comp.mem();
        let prod = cm.load_u32_acquire(self.comp.prod).map_err(ring_err)?;
        let avail = ring_avail(prod, self.comp.cached, self.comp.size).map_err(ring_err)?;
        let mut res = Ok(());
        let mut n = 0;
        while n < avail {
            let addr = cm
                .load_u64(self.comp.slot(self.comp.cached.wrapping_add(n)))
                .map_err(ring_err)?;
            let ok = addr >= self.tx_base
                && check_umem_desc(addr, 0, self.umem.len, self.frame_size).is_ok()
                && self.free_tx.len() < self.free_tx.capacity();
            if !ok {
                res = Err(ring_err(RingError {
                    what: "completion address",
                    value: addr,
                    limit: self.umem.len as u64,
                }));
                n += 1;
                break;
            }
            self.free_tx.push(addr - addr % self.frame_size as u64);
            n += 1;
        }
        self.comp.cached = self.comp.cached.wrapping_add(n);
        self.outstanding = self.outstanding.saturating_sub(n);
        cm.store_u32_release(self.comp.cons, self.comp.cached)
            .map_err(ring_err)?;
        res.map(|()| n as usize)
    }

    fn kick_tx(&mut self) -> Result<()> {
        if self.need_wakeup && !self.tx.need_wakeup() {
            return Ok(());
        }
        // SAFETY: a zero-length sendto only tells the kernel to process the tx ring.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        self.kicked(r, &[libc::EAGAIN, libc::EBUSY, libc::ENOBUFS, libc::EINTR])
    }

    pub fn tx_burst(&mut self, frames: &[VfTx<'_>], st: &VfQueueStats) -> Result<usize> {
        self.health.dead_err()?;
        if self.free_tx.len() < frames.len() {
            self.reap()?;
        }
        let tm = self.tx.mem();
        let um = self.umem.mem();
        let tcons = tm.load_u32_acquire(self.tx.cons).map_err(ring_err)?;
        let used = ring_avail(self.tx.cached, tcons, self.tx.size).map_err(ring_err)?;
        let mut room = self.tx.size - used;
        let (mut taken, mut queued, mut bytes, mut errs) = (0usize, 0u32, 0u64, 0u64);
        for f in frames {
            if f.gso.is_some() {
                break;
            }
            let len: usize = f.segs.iter().map(|s| s.len()).sum();
            if len > self.frame_size as usize || len < 14 {
                errs += 1;
                taken += 1;
                continue;
            }
            if room == 0 {
                break;
            }
            let Some(addr) = self.free_tx.pop() else {
                break;
            };
            // SAFETY: `addr` is a free tx chunk (not in any ring), so we alone access it until it is queued below.
            let buf = unsafe { um.slice_mut(addr as usize, len) }.map_err(ring_err)?;
            let mut o = 0;
            for s in f.segs {
                buf[o..o + s.len()].copy_from_slice(s);
                o += s.len();
            }
            if let Some((start, off)) = f.csum
                && fill_csum(buf, start, off).is_err()
            {
                self.free_tx.push(addr);
                errs += 1;
                taken += 1;
                continue;
            }
            let slot = self.tx.slot(self.tx.cached);
            tm.store_u64(slot, addr).map_err(ring_err)?;
            tm.store_u32(slot + 8, len as u32).map_err(ring_err)?;
            tm.store_u32(slot + 12, 0).map_err(ring_err)?;
            self.tx.cached = self.tx.cached.wrapping_add(1);
            room -= 1;
            queued += 1;
            taken += 1;
            bytes += len as u64;
        }
        if queued > 0 {
            tm.store_u32_release(self.tx.prod, self.tx.cached)
                .map_err(ring_err)?;
            self.outstanding += queued;
            self.kick_tx()?;
            st.tx_packets.fetch_add(queued as u64, Relaxed);
            st.tx_bytes.fetch_add(bytes, Relaxed);
        }
        if errs > 0 {
            st.tx_errors.fetch_add(errs, Relaxed);
        }
        Ok(taken)
    }

    pub fn poll_tx(&mut self, st: &VfQueueStats) -> Result<usize> {
        self.housekeeping(st)?;
        let n = self.reap()?;
        if self.outstanding > 0 {
            self.kick_tx()?;
        }
        Ok(n)
    }
}

//! AF_PACKET queues.
//!
//! Per queue, rx is a TPACKET_V3 mmap ring (blocks of 16 frames, 1 ms retire timeout, PACKET_IGNORE_OUTGOING so
//! a queue does not see transmitted frames); several queues share the netdev's traffic through one PACKET_FANOUT
//! group (FANOUT_HASH, a kernel-chosen unique id per Port). The VLAN tag the kernel strips comes from the
//! tpacket3 header (tp_vlan_tci, TP_STATUS_VLAN_VALID) and `csum_ok` from TP_STATUS_CSUM_VALID /
//! TP_STATUS_CSUMNOTREADY; kernel ring drops (PACKET_STATISTICS tp_drops) are added to `rx_dropped`.
//!
//! Tx is a second socket per queue, bound with protocol 0 (so it never receives) and PACKET_VNET_HDR, sending
//! batches of up to 64 frames with `sendmmsg(2)` from preallocated iovecs. Chosen over a TPACKET tx ring because
//! the frames are the caller's scattered slices: sendmmsg gathers them without copying into a ring, and checksum
//! and GSO requests travel in the virtio_net_hdr the kernel already understands.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;

use crate::health::Health;
use crate::port::{GsoKind, PortConfig, VfQueueStats, VfRx, VfTx};
use crate::ring::{Mem, TP_BLK_STATUS, TP_STATUS_USER, parse_block, parse_tp3};
use crate::sys::{Mmap, cvt, setsockopt, socket};
use crate::{NetdevError, Result, io_err};

const ETH_P_ALL: u16 = 0x0003;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

const VNET_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;

/// Frames per sendmmsg batch and iovecs per frame (one for the vnet header).
const TX_BATCH: usize = 64;
const TX_IOV: usize = 16;

pub(crate) fn bind_packet(fd: &OwnedFd, ifindex: u32, proto: u16) -> std::io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll and its size is passed.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Tx state: a vnet-header socket and preallocated sendmmsg scratch.
pub(crate) struct PacketTx {
    fd: OwnedFd,
    hdrs: Vec<[u8; VNET_HDR_LEN]>,
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    gather: Vec<u8>,
}

// SAFETY: the raw pointers in `iov`/`msgs` are only written and used inside one tx_burst call (they point at the
// caller's frames and our own `hdrs`/`gather`, never kept across calls), so moving the struct between threads is
// fine.
unsafe impl Send for PacketTx {}

impl PacketTx {
    pub fn new(ifindex: u32, name: &str) -> Result<PacketTx> {
        let fd = socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, 0)
            .map_err(|e| io_err(name, "socket(AF_PACKET tx)", e))?;
        setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_VNET_HDR, &1i32)
            .map_err(|e| io_err(name, "PACKET_VNET_HDR", e))?;
        bind_packet(&fd, ifindex, 0).map_err(|e| io_err(name, "bind tx", e))?;
        // SAFETY: iovec/mmsghdr are plain data; zero (null pointers, zero lengths) is valid until filled.
        let zero_iov: libc::iovec = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Ok(PacketTx {
            fd,
            hdrs: vec![[0; VNET_HDR_LEN]; TX_BATCH],
            iov: vec![zero_iov; TX_BATCH * TX_IOV],
            msgs: vec![zero_msg; TX_BATCH],
            gather: Vec::with_capacity(65536 + VNET_HDR_LEN),
        })
    }

    /// Builds the virtio_net_hdr for a frame; None if the request is malformed.
    fn vnet_hdr(f: &VfTx<'_>, len: usize) -> Option<[u8; VNET_HDR_LEN]> {
        let mut h = [0u8; VNET_HDR_LEN];
        if let Some((start, off)) = f.csum {
            if start as usize + off as usize + 2 > len {
                return None;
            }
            h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
            h[6..8].copy_from_slice(&start.to_le_bytes());
            h[8..10].copy_from_slice(&off.to_le_bytes());
        }
        if let Some(g) = f.gso {
            if f.csum.is_none() || g.mss == 0 || g.hdr_len as usize > len {
                return None;
            }
            h[1] = match g.kind {
                GsoKind::Tcp4 => VIRTIO_NET_HDR_GSO_TCPV4,
                GsoKind::Tcp6 => VIRTIO_NET_HDR_GSO_TCPV6,
                GsoKind::Udp4 | GsoKind::Udp6 => VIRTIO_NET_HDR_GSO_UDP_L4,
            };
            h[2..4].copy_from_slice(&g.hdr_len.to_le_bytes());
            h[4..6].copy_from_slice(&g.mss.to_le_bytes());
        }
        Some(h)
    }

    pub fn tx_burst(
        &mut self,
        frames: &[VfTx<'_>],
        st: &VfQueueStats,
        health: &mut Health,
    ) -> Result<usize> {
        health.dead_err()?;
        let mut done = 0usize;
        let (mut pkts, mut bytes, mut errs) = (0u64, 0u64, 0u64);
        let res = 'outer: loop {
            if done >= frames.len() {
                break Ok(());
            }
            // Fill one batch.
            let mut n = 0usize;
            let mut lens = [0usize; TX_BATCH];
            while n < TX_BATCH && done + n < frames.len() {
                let f = &frames[done + n];
                let len: usize = f.segs.iter().map(|s| s.len()).sum();
                let Some(h) = Self::vnet_hdr(f, len) else {
                    if n == 0 {
                        // Malformed request: count it and drop it.
                        errs += 1;
                        done += 1;
                        continue;
                    }
                    break;
                };
                if f.segs.len() + 1 > TX_IOV {
                    if n > 0 {
                        break;
                    }
                    // Too many pieces for the iovec slot: gather this frame alone.
                    self.gather.clear();
                    self.gather.extend_from_slice(&h);
                    for s in f.segs {
                        self.gather.extend_from_slice(s);
                    }
                    self.iov[0] = libc::iovec {
                        iov_base: self.gather.as_mut_ptr().cast(),
                        iov_len: self.gather.len(),
                    };
                    self.set_msg(0, 1);
                    lens[0] = len;
                    n = 1;
                    break;
                }
                self.hdrs[n] = h;
                let base = n * TX_IOV;
                self.iov[base] = libc::iovec {
                    iov_base: self.hdrs[n].as_mut_ptr().cast(),
                    iov_len: VNET_HDR_LEN,
                };
                for (k, s) in f.segs.iter().enumerate() {
                    self.iov[base + 1 + k] = libc::iovec {
                        iov_base: s.as_ptr() as *mut _,
                        iov_len: s.len(),
                    };
                }
                self.set_msg(n, f.segs.len() + 1);
                lens[n] = len;
                n += 1;
            }
            if n == 0 {
                continue;
            }
            // SAFETY: msgs[..n] point at iovecs in self.iov, which point at self.hdrs / self.gather and the
            // caller's frame slices, all alive for the call.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    self.msgs.as_mut_ptr(),
                    n as u32,
                    // c_int on glibc, c_uint on musl.
                    libc::MSG_DONTWAIT as _,
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => break Ok(()),
                    Some(libc::EINVAL) | Some(libc::EMSGSIZE) | Some(libc::EFAULT) => {
                        // This one frame is bad (e.g. larger than the MTU, or a gso request the kernel refuses).
                        errs += 1;
                        done += 1;
                    }
                    _ => {
                        if let Err(x) = health.on_error(&e) {
                            // Frames already sent in this call were taken: report them, not the error (the
                            // caller would send them again elsewhere); the queue is marked dead, so the next
                            // call returns the error.
                            break 'outer if done > 0 { Ok(()) } else { Err(x) };
                        }
                        errs += 1;
                        done += 1;
                    }
                }
                continue;
            }
            let sent = r as usize;
            pkts += sent as u64;
            bytes += lens[..sent].iter().sum::<usize>() as u64;
            done += sent;
            if sent < n {
                // Either the queue is full or the next frame fails; the next loop round finds out which.
                continue;
            }
        };
        if pkts > 0 {
            st.tx_packets.fetch_add(pkts, Relaxed);
            st.tx_bytes.fetch_add(bytes, Relaxed);
        }
        if errs > 0 {
            st.tx_errors.fetch_add(errs, Relaxed);
        }
        res.map(|()| done)
    }

    fn set_msg(&mut self, n: usize, iovlen: usize) {
        let m = &mut self.msgs[n];
        m.msg_hdr.msg_name = std::ptr::null_mut();
        m.msg_hdr.msg_namelen = 0;
        m.msg_hdr.msg_iov = self.iov[n * TX_IOV..].as_mut_ptr();
        m.msg_hdr.msg_iovlen = iovlen as _;
        m.msg_hdr.msg_control = std::ptr::null_mut();
        m.msg_hdr.msg_controllen = 0;
        m.msg_hdr.msg_flags = 0;
        m.msg_len = 0;
    }
}

const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_FANOUT: libc::c_int = 18;
const TPACKET_V3: i32 = 2;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_CSUM_VALID: u32 = 1 << 7;
/// Block retire timeout: a partly filled block is handed to us after this long.
const RETIRE_MS: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketStatsV3 {
    packets: u32,
    drops: u32,
    freeze_q_cnt: u32,
}

/// A TPACKET_V3 rx ring on its own socket.
struct RxRing {
    fd: OwnedFd,
    map: Mmap,
    block_size: usize,
    block_nr: usize,
    /// The block we are reading (or waiting for).
    blk: usize,
    /// Packets left in the current block and the next one's offset (valid while `held`).
    left: u32,
    next: usize,
    /// True while we hold the current block (TP_STATUS_USER seen, not yet returned).
    held: bool,
}

fn rx_ring(ifindex: u32, name: &str, cfg: &PortConfig) -> Result<RxRing> {
    let fd = socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, 0)
        .map_err(|e| io_err(name, "socket(AF_PACKET)", e))?;
    let raw = fd.as_raw_fd();
    setsockopt(raw, libc::SOL_PACKET, PACKET_VERSION, &TPACKET_V3)
        .map_err(|e| io_err(name, "PACKET_VERSION", e))?;
    setsockopt(raw, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32)
        .map_err(|e| io_err(name, "PACKET_IGNORE_OUTGOING", e))?;
    let frame_size = cfg.frame_size as usize;
    let total = cfg.ring_frames as usize * frame_size;
    // Blocks of 16 frames (at least 64 KiB, a page multiple), at least 4 blocks.
    let block_size = (frame_size * 16).max(1 << 16);
    let block_nr = (total / block_size).max(4);
    let req = TpacketReq3 {
        block_size: block_size as u32,
        block_nr: block_nr as u32,
        frame_size: frame_size as u32,
        frame_nr: (block_size / frame_size * block_nr) as u32,
        retire_blk_tov: RETIRE_MS,
        sizeof_priv: 0,
        feature_req_word: 0,
    };
    setsockopt(raw, libc::SOL_PACKET, PACKET_RX_RING, &req)
        .map_err(|e| io_err(name, "PACKET_RX_RING", e))?;
    let map = Mmap::map(Some(raw), block_size * block_nr, 0, true)
        .map_err(|e| io_err(name, "mmap rx ring", e))?;
    bind_packet(&fd, ifindex, ETH_P_ALL).map_err(|e| io_err(name, "bind", e))?;
    Ok(RxRing {
        fd,
        map,
        block_size,
        block_nr,
        blk: 0,
        left: 0,
        next: 0,
        held: false,
    })
}

fn join_fanout(fd: &OwnedFd, id: u16, name: &str) -> Result<u16> {
    let flags = if id == 0 {
        PACKET_FANOUT_FLAG_UNIQUEID
    } else {
        0
    };
    let arg: u32 = id as u32 | ((PACKET_FANOUT_HASH | flags) << 16);
    setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_FANOUT, &arg)
        .map_err(|e| io_err(name, "PACKET_FANOUT", e))?;
    if id != 0 {
        return Ok(id);
    }
    let mut got = 0u32;
    crate::sys::getsockopt(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_FANOUT, &mut got)
        .map_err(|e| io_err(name, "PACKET_FANOUT (get)", e))?;
    Ok(got as u16)
}

fn ring_err(e: crate::ring::RingError) -> NetdevError {
    NetdevError::Invalid(e.to_string())
}

impl RxRing {
    /// Hands the current block back to the kernel and moves to the next.
    fn release(&mut self, mem: &Mem) -> Result<()> {
        mem.store_u32_release(self.blk * self.block_size + TP_BLK_STATUS, 0)
            .map_err(ring_err)?;
        self.held = false;
        self.left = 0;
        self.blk = (self.blk + 1) % self.block_nr;
        Ok(())
    }

    fn burst(
        &mut self,
        max: usize,
        f: &mut impl FnMut(&[u8], VfRx),
        st: &VfQueueStats,
    ) -> Result<usize> {
        let mem = self.map.mem();
        let bs = self.block_size;
        let (mut n, mut bytes, mut dropped) = (0usize, 0u64, 0u64);
        while n < max {
            let boff = self.blk * bs;
            if !self.held {
                let status = mem
                    .load_u32_acquire(boff + TP_BLK_STATUS)
                    .map_err(ring_err)?;
                if status & TP_STATUS_USER == 0 {
                    break;
                }
                let h = match parse_block(&mem, boff, bs) {
                    Ok(h) => h,
                    Err(e) => {
                        self.release(&mem)?;
                        return Err(ring_err(e));
                    }
                };
                self.held = true;
                self.left = h.num_pkts;
                self.next = h.first as usize;
                if self.left == 0 {
                    self.release(&mem)?;
                    continue;
                }
            }
            let p = match parse_tp3(&mem, boff, bs, self.next) {
                Ok(p) => p,
                Err(e) => {
                    // Corrupt block: give it back (the rest of it is lost) and report.
                    self.release(&mem)?;
                    return Err(ring_err(e));
                }
            };
            if p.snaplen < p.len {
                // Truncated (larger than a frame, e.g. a GRO aggregate): not deliverable.
                dropped += 1;
            } else {
                // SAFETY: we hold this block (TP_STATUS_USER seen with acquire); the kernel does not write it
                // until we store TP_STATUS_KERNEL, which happens after `f` returns.
                let data = unsafe { mem.slice(boff + p.data as usize, p.snaplen as usize) }
                    .map_err(ring_err)?;
                let rx = VfRx {
                    vlan_tci: (p.status & TP_STATUS_VLAN_VALID != 0).then_some(p.vlan_tci as u16),
                    csum_ok: p.status & (TP_STATUS_CSUM_VALID | TP_STATUS_CSUMNOTREADY) != 0,
                };
                f(data, rx);
                n += 1;
                bytes += data.len() as u64;
            }
            self.left -= 1;
            if self.left == 0 || p.next == 0 {
                self.release(&mem)?;
            } else {
                self.next = p.next as usize;
            }
        }
        if n > 0 {
            st.rx_packets.fetch_add(n as u64, Relaxed);
            st.rx_bytes.fetch_add(bytes, Relaxed);
        }
        if dropped > 0 {
            st.rx_dropped.fetch_add(dropped, Relaxed);
        }
        Ok(n)
    }

    /// Adds the kernel's ring drops (PACKET_STATISTICS resets on read) and returns the socket error, if any.
    fn housekeeping(&self, st: &VfQueueStats) -> Option<std::io::Error> {
        let mut s = TpacketStatsV3::default();
        if crate::sys::getsockopt(
            self.fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_STATISTICS,
            &mut s,
        )
        .is_ok()
            && s.drops > 0
        {
            st.rx_dropped.fetch_add(s.drops as u64, Relaxed);
        }
        let mut err = 0i32;
        match crate::sys::getsockopt(
            self.fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut err,
        ) {
            Ok(_) if err != 0 => Some(std::io::Error::from_raw_os_error(err)),
            Ok(_) => None,
            Err(e) => Some(e),
        }
    }
}

pub(crate) struct PacketQueue {
    rx: RxRing,
    tx: PacketTx,
    health: Health,
}

pub(crate) fn open(ifindex: u32, name: &str, n: u32, cfg: &PortConfig) -> Result<Vec<PacketQueue>> {
    let mut qs = Vec::with_capacity(n as usize);
    let mut group = 0u16;
    for _ in 0..n {
        let rx = rx_ring(ifindex, name, cfg)?;
        if n > 1 {
            group = join_fanout(&rx.fd, group, name)?;
        }
        qs.push(PacketQueue {
            rx,
            tx: PacketTx::new(ifindex, name)?,
            health: Health::new(ifindex, name, cfg.fail_when_stopped)?,
        });
    }
    Ok(qs)
}

impl PacketQueue {
    fn housekeeping(&mut self, st: &VfQueueStats) -> Result<()> {
        if self.health.tick()? {
            if let Some(e) = self.rx.housekeeping(st) {
                self.health.on_error(&e)?;
            }
            self.health.probe()?;
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
        self.rx.burst(max, &mut f, st)
    }

    pub fn tx_burst(&mut self, frames: &[VfTx<'_>], st: &VfQueueStats) -> Result<usize> {
        self.tx.tx_burst(frames, st, &mut self.health)
    }

    pub fn poll_tx(&mut self, st: &VfQueueStats) -> Result<usize> {
        self.housekeeping(st)?;
        Ok(0)
    }
}

//! AF_PACKET queues.
//!
//! Skeleton: a plain nonblocking SOCK_RAW rx socket per queue (PACKET_IGNORE_OUTGOING) and a separate tx socket
//! with PACKET_VNET_HDR, sending batches with `sendmmsg(2)`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;

use crate::health::Health;
use crate::port::{GsoKind, PortConfig, VfQueueStats, VfRx, VfTx};
use crate::sys::{cvt, setsockopt, socket};
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
                    libc::MSG_DONTWAIT,
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
                            break 'outer Err(x);
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

pub(crate) struct PacketQueue {
    rx: OwnedFd,
    buf: Vec<u8>,
    tx: PacketTx,
    health: Health,
}

pub(crate) fn open(ifindex: u32, name: &str, n: u32, cfg: &PortConfig) -> Result<Vec<PacketQueue>> {
    let _ = n;
    let rx = socket(
        libc::AF_PACKET,
        libc::SOCK_RAW | libc::SOCK_NONBLOCK,
        ETH_P_ALL.to_be() as i32,
    )
    .map_err(|e| io_err(name, "socket(AF_PACKET)", e))?;
    setsockopt(
        rx.as_raw_fd(),
        libc::SOL_PACKET,
        PACKET_IGNORE_OUTGOING,
        &1i32,
    )
    .map_err(|e| io_err(name, "PACKET_IGNORE_OUTGOING", e))?;
    bind_packet(&rx, ifindex, ETH_P_ALL).map_err(|e| io_err(name, "bind", e))?;
    Ok(vec![PacketQueue {
        rx,
        buf: vec![0u8; cfg.frame_size as usize],
        tx: PacketTx::new(ifindex, name)?,
        health: Health::new(ifindex, name)?,
    }])
}

impl PacketQueue {
    pub fn rx_burst(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8], VfRx),
        st: &VfQueueStats,
    ) -> Result<usize> {
        self.health.dead_err()?;
        if self.health.due() {
            self.health.probe()?;
        }
        let (mut n, mut bytes) = (0usize, 0u64);
        while n < max {
            // SAFETY: buf is writable for buf.len() bytes.
            let r = unsafe {
                libc::recv(
                    self.rx.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => break,
                    _ => {
                        self.health.on_error(&e)?;
                        break;
                    }
                }
            }
            let len = (r as usize).min(self.buf.len());
            f(
                &self.buf[..len],
                VfRx {
                    vlan_tci: None,
                    csum_ok: false,
                },
            );
            n += 1;
            bytes += len as u64;
        }
        if n > 0 {
            st.rx_packets.fetch_add(n as u64, Relaxed);
            st.rx_bytes.fetch_add(bytes, Relaxed);
        }
        Ok(n)
    }

    pub fn tx_burst(&mut self, frames: &[VfTx<'_>], st: &VfQueueStats) -> Result<usize> {
        self.tx.tx_burst(frames, st, &mut self.health)
    }

    pub fn poll_tx(&mut self, _st: &VfQueueStats) -> Result<usize> {
        self.health.dead_err()?;
        if self.health.due() {
            self.health.probe()?;
        }
        Ok(0)
    }
}

#[allow(dead_code)]
fn _unused() -> NetdevError {
    NetdevError::Invalid(String::new())
}

//! The data path: a [`Port`] opens queues on a netdev over AF_XDP (zero-copy or copy) or AF_PACKET; each
//! [`VfQueue`] is `Send` and driven by one thread (rx_burst / tx_burst / poll_tx).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::{NetdevError, Result, afpacket, afxdp, discover};

/// How a port's queues reach the netdev.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// AF_XDP bound with XDP_ZEROCOPY.
    AfXdpZeroCopy,
    /// AF_XDP bound with XDP_COPY.
    AfXdpCopy,
    /// AF_PACKET (TPACKET_V3 rx ring, PACKET_VNET_HDR tx).
    AfPacket,
}

impl Mode {
    /// "af_xdp" for both XDP forms, "af_packet".
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::AfXdpZeroCopy | Mode::AfXdpCopy => "af_xdp",
            Mode::AfPacket => "af_packet",
        }
    }
    /// True for AF_XDP zero-copy.
    pub fn zero_copy(&self) -> bool {
        matches!(self, Mode::AfXdpZeroCopy)
    }
}

/// Which mode [`Port::open`] tries.
#[derive(Clone, Copy, Debug)]
pub enum Prefer {
    /// XDP zero-copy, then XDP copy, then AF_PACKET.
    Auto,
    /// XDP zero-copy, then XDP copy; an error if neither works.
    AfXdp,
    /// AF_PACKET only.
    AfPacket,
}

/// Port configuration.
#[derive(Clone, Debug)]
pub struct PortConfig {
    /// Queues wanted (capped by the netdev's channels).
    pub queues: u32,
    /// Mode preference.
    pub prefer: Prefer,
    /// Frames per ring (rx and tx), a power of two (default 2048).
    pub ring_frames: u32,
    /// Frame buffer size (default 4096); must hold MTU + 14 + 4.
    pub frame_size: u32,
    /// A netdev that was running and stops (closed, carrier lost) fails the queues at once, as a vanished one does
    /// (a failover wants this; a switch port that outlives its peer's down/up does not). Default off.
    pub fail_when_stopped: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            queues: 1,
            prefer: Prefer::Auto,
            ring_frames: 2048,
            frame_size: 4096,
            fail_when_stopped: false,
        }
    }
}

/// Per-frame receive metadata. AF_PACKET fills both fields; AF_XDP sees frames before the stack, so a VLAN tag
/// stays in the frame (`vlan_tci` None) and `csum_ok` is false.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VfRx {
    /// The 802.1Q TCI the kernel stripped, if any.
    pub vlan_tci: Option<u16>,
    /// The kernel vouches for the L4 checksum (validated, or a locally generated frame not yet checksummed).
    pub csum_ok: bool,
}

/// One frame to transmit.
#[derive(Clone, Copy, Debug)]
pub struct VfTx<'a> {
    /// The frame is the concatenation of these.
    pub segs: &'a [&'a [u8]],
    /// Fill the L4 checksum: (start of the checksummed area, offset of the checksum field from start). As with
    /// virtio NEEDS_CSUM / CHECKSUM_PARTIAL, the field must already hold the folded pseudo-header sum.
    pub csum: Option<(u16, u16)>,
    /// Segment into `mss`-sized packets (AF_PACKET only; requires `csum`).
    pub gso: Option<Gso>,
}

/// Segmentation request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    /// Protocol.
    pub kind: GsoKind,
    /// Payload bytes per segment.
    pub mss: u16,
    /// Bytes of headers (Ethernet + IP + L4) in front of the payload.
    pub hdr_len: u16,
}

/// Segmentation protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoKind {
    Tcp4,
    Tcp6,
    Udp4,
    Udp6,
}

/// Per-queue counters (Relaxed, added once per burst) readable from any thread.
#[derive(Debug, Default)]
pub struct VfQueueStats {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Kernel ring drops (PACKET_STATISTICS tp_drops / XDP_STATISTICS).
    pub rx_dropped: AtomicU64,
    pub tx_errors: AtomicU64,
}

pub(crate) enum QueueImpl {
    Packet(Box<afpacket::PacketQueue>),
    Xdp(Box<afxdp::XdpQueue>),
}

// Each queue is driven from its own thread.
const _: () = {
    const fn is_send<T: Send>() {}
    is_send::<VfQueue>();
    is_send::<Port>();
};

/// One queue of a [`Port`].
pub struct VfQueue {
    id: u32,
    stats: Arc<VfQueueStats>,
    inner: QueueImpl,
}

impl VfQueue {
    /// The queue id (0-based; the netdev rx queue for AF_XDP).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Calls `f` for up to `max` received frames (borrowed from the ring, valid during the call), returns the count.
    /// No allocation. Err only when the socket is dead (netdev gone: ENXIO/ENODEV/ENETDOWN...) — the caller fails over.
    pub fn rx_burst(&mut self, max: usize, f: impl FnMut(&[u8], VfRx)) -> Result<usize> {
        match &mut self.inner {
            QueueImpl::Packet(q) => q.rx_burst(max, f, &self.stats),
            QueueImpl::Xdp(q) => q.rx_burst(max, f, &self.stats),
        }
    }

    /// Queues up to `frames.len()` frames; returns how many were taken (the ring may be full).
    /// AF_PACKET uses PACKET_VNET_HDR (csum + gso by the kernel); AF_XDP fills csum in software and refuses a frame
    /// with `gso` (stops there, so the caller can send it elsewhere) — `tx_supports_gso()` says which.
    pub fn tx_burst(&mut self, frames: &[VfTx<'_>]) -> Result<usize> {
        match &mut self.inner {
            QueueImpl::Packet(q) => q.tx_burst(frames, &self.stats),
            QueueImpl::Xdp(q) => q.tx_burst(frames, &self.stats),
        }
    }

    /// Whether `tx_burst` accepts `gso` frames.
    pub fn tx_supports_gso(&self) -> bool {
        matches!(self.inner, QueueImpl::Packet(_))
    }

    /// Reaps tx completions / kicks the kernel (AF_XDP sendto wakeup, completion ring); cheap when idle.
    pub fn poll_tx(&mut self) -> Result<usize> {
        match &mut self.inner {
            QueueImpl::Packet(q) => q.poll_tx(&self.stats),
            QueueImpl::Xdp(q) => q.poll_tx(&self.stats),
        }
    }

    /// The queue's counters.
    pub fn stats(&self) -> Arc<VfQueueStats> {
        self.stats.clone()
    }
}

/// An open port: its queues and, for AF_XDP, the XDP program (detached when the last queue and the port are gone).
pub struct Port {
    mode: Mode,
    count: u32,
    queues: Vec<VfQueue>,
}

impl Port {
    /// Opens `min(cfg.queues, netdev channels)` queues on the netdev. Never leaves an XDP program attached on error.
    pub fn open(ifindex: u32, cfg: &PortConfig) -> Result<Port> {
        let info = discover::by_index(ifindex)?;
        if cfg.queues == 0 {
            return Err(NetdevError::Invalid("queues must be > 0".into()));
        }
        if !cfg.ring_frames.is_power_of_two() || cfg.ring_frames < 8 {
            return Err(NetdevError::Invalid(format!(
                "ring_frames {} must be a power of two >= 8",
                cfg.ring_frames
            )));
        }
        if !cfg.frame_size.is_power_of_two() || cfg.frame_size < 2048 || cfg.frame_size > 65536 {
            return Err(NetdevError::Invalid(format!(
                "frame_size {} must be a power of two in 2048..=65536",
                cfg.frame_size
            )));
        }
        if (cfg.frame_size as usize) < info.mtu as usize + 18 {
            return Err(NetdevError::Invalid(format!(
                "frame_size {} too small for mtu {}",
                cfg.frame_size, info.mtu
            )));
        }
        let n = cfg.queues.min(info.channels.max(1));
        let xdp_err = match cfg.prefer {
            Prefer::AfPacket => None,
            Prefer::Auto | Prefer::AfXdp => {
                match afxdp::open(ifindex, &info.name, n, info.mtu, cfg) {
                    Ok((mode, qs)) => {
                        return Ok(Port::assemble(
                            mode,
                            qs.into_iter().map(|q| QueueImpl::Xdp(Box::new(q))),
                        ));
                    }
                    Err(e) => Some(e),
                }
            }
        };
        if let (Prefer::AfXdp, Some(e)) = (cfg.prefer, xdp_err) {
            return Err(e);
        }
        let qs = afpacket::open(ifindex, &info.name, n, cfg)?;
        Ok(Port::assemble(
            Mode::AfPacket,
            qs.into_iter().map(|q| QueueImpl::Packet(Box::new(q))),
        ))
    }

    fn assemble(mode: Mode, qs: impl Iterator<Item = QueueImpl>) -> Port {
        let queues: Vec<VfQueue> = qs
            .enumerate()
            .map(|(i, inner)| VfQueue {
                id: i as u32,
                stats: Arc::new(VfQueueStats::default()),
                inner,
            })
            .collect();
        Port {
            mode,
            count: queues.len() as u32,
            queues,
        }
    }

    /// The mode the queues run in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// How many queues were opened.
    pub fn queue_count(&self) -> u32 {
        self.count
    }

    /// Moves the queues out (one per synthetic queue owner); each is Send.
    pub fn take_queues(&mut self) -> Vec<VfQueue> {
        std::mem::take(&mut self.queues)
    }
}

/// Ones-complement sum of `data` added to `sum` (not folded).
pub(crate) fn csum_add(mut sum: u64, data: &[u8]) -> u64 {
    let mut c = data.chunks_exact(2);
    for w in &mut c {
        sum += u16::from_be_bytes([w[0], w[1]]) as u64;
    }
    if let [b] = c.remainder() {
        sum += (*b as u64) << 8;
    }
    sum
}

pub(crate) fn csum_fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Software CHECKSUM_PARTIAL completion: sums `frame[start..]` (whose checksum field holds the pseudo-header sum)
/// and stores the complement at `start + offset`.
pub(crate) fn fill_csum(frame: &mut [u8], start: u16, offset: u16) -> Result<()> {
    let (s, o) = (start as usize, start as usize + offset as usize);
    if o + 2 > frame.len() {
        return Err(NetdevError::Invalid(format!(
            "csum start {start} offset {offset} beyond frame {}",
            frame.len()
        )));
    }
    let c = !csum_fold(csum_add(0, &frame[s..]));
    // A UDP checksum of 0 means "none"; send 0xffff instead (same value in ones-complement).
    let c = if c == 0 { 0xffff } else { c };
    frame[o..o + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

//! Transparent VF failover (accelerated networking without PCI binding, in the manner of DPDK's `hn_vf.c`).
//!
//! The host offers a VF with an NVSP VF-association note (read on queue 0). The VF stays a kernel netdev; a
//! manager thread per device ([`manager`]) pairs it (PCI slot = serial, else permanent/current MAC = ours),
//! opens a `vf_netdev::Port` on it, mirrors promiscuous/all-multicast/multicast list/MTU, sets it up and, once
//! it runs and the port is started, asks the host for the VF data path (NVSP SWITCH_DATA_PATH, completion
//! requested). Each queue pair then holds the VF queue of the same index in its [`path::Lane`] (inside the
//! queue's existing mutex, so the burst path takes no extra lock or atomic): tx goes to the VF, rx drains the
//! synthetic channel first and fills the rest from the VF. Link down, netdev removal, revoke, a host-initiated
//! switch or a dead VF queue switch the data path back to synthetic first, then close the VF.

pub(crate) mod backend;
pub(crate) mod manager;
pub(crate) mod path;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vf_netdev::VfQueueStats;
pub use vf_netdev::{Mode as VfMode, Prefer as VfPrefer};

/// VF pairing and data-path settings.
#[derive(Debug, Clone)]
pub struct VfConfig {
    /// Run the VF manager (pair and switch to an offered VF). Off: associations are only reported.
    pub enabled: bool,
    /// Root of the sysfs tree netdevs are listed under (`/` on a real guest; a fake tree in tests).
    pub sysfs_root: PathBuf,
    /// Pairing retry period while no netdev matches yet (DPDK 26.07: 1 s).
    pub retry_period: Duration,
    /// Pairing attempts before giving up (DPDK 26.07: 120).
    pub retries: u32,
    /// Data-path kind to open on the VF.
    pub prefer: VfPrefer,
    /// Ring size per VF queue.
    pub ring_frames: u32,
    /// Pause between finding the netdev and opening it: a window in which tests remove the netdev. Zero
    /// outside tests.
    #[doc(hidden)]
    pub open_pause: Duration,
}

impl Default for VfConfig {
    fn default() -> Self {
        VfConfig {
            enabled: true,
            sysfs_root: PathBuf::from("/"),
            retry_period: Duration::from_secs(1),
            retries: 120,
            prefer: VfPrefer::Auto,
            ring_frames: 2048,
            open_pause: Duration::ZERO,
        }
    }
}

/// Where the VF failover state machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfState {
    /// The host offered a VF (association with allocated = 1); pairing runs.
    Offered,
    /// A netdev was paired and its port opened; the data path is still synthetic.
    Paired,
    /// The host was asked for, and acknowledged, the VF data path.
    Switched,
    /// The VF went away (link down, netdev removed, queue error, host switch, port stopped): back to synthetic.
    Removed,
    /// The host withdrew the VF (association with allocated = 0).
    Revoked,
}

impl VfState {
    /// Lower-case name (`offered`, `paired`, `switched`, `removed`, `revoked`).
    pub fn as_str(&self) -> &'static str {
        match self {
            VfState::Offered => "offered",
            VfState::Paired => "paired",
            VfState::Switched => "switched",
            VfState::Removed => "removed",
            VfState::Revoked => "revoked",
        }
    }
}

/// Why a VF state change happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfReason {
    /// Normal progress (offer, pairing, switch).
    None,
    /// The VF netdev lost carrier or was set down.
    LinkDown,
    /// The VF netdev was unregistered.
    NetdevRemoved,
    /// A VF queue failed in a burst (socket dead).
    QueueError,
    /// The host itself switched the data path back to synthetic.
    HostSwitched,
    /// The port was stopped or closed.
    Stopped,
    /// The host withdrew the VF.
    Revoked,
    /// A new association replaced the old one.
    Replaced,
}

impl VfReason {
    /// Lower-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            VfReason::None => "none",
            VfReason::LinkDown => "link_down",
            VfReason::NetdevRemoved => "netdev_removed",
            VfReason::QueueError => "queue_error",
            VfReason::HostSwitched => "host_switched",
            VfReason::Stopped => "stopped",
            VfReason::Revoked => "revoked",
            VfReason::Replaced => "replaced",
        }
    }
}

/// A VF operation that failed; the synthetic path keeps working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfFailure {
    /// No netdev matched the serial or MAC after every retry.
    PairingGaveUp {
        /// Attempts made.
        attempts: u32,
    },
    /// The host completed SWITCH_DATA_PATH(VF) with an error status.
    SwitchRefused {
        /// Status from the completion.
        status: u32,
    },
    /// The host did not complete SWITCH_DATA_PATH in time (or the ring failed).
    SwitchFailed,
    /// The netdev vanished while it was being opened.
    Vanished,
    /// Opening the port or configuring the netdev failed.
    OpenFailed,
    /// An association arrived below NVSP 4 and was ignored.
    OldProtocol {
        /// Negotiated NVSP version.
        nvsp_version: u32,
    },
}

impl VfFailure {
    /// Lower-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            VfFailure::PairingGaveUp { .. } => "pairing_gave_up",
            VfFailure::SwitchRefused { .. } => "switch_refused",
            VfFailure::SwitchFailed => "switch_failed",
            VfFailure::Vanished => "vanished",
            VfFailure::OpenFailed => "open_failed",
            VfFailure::OldProtocol { .. } => "old_protocol",
        }
    }
}

/// An interface name in a fixed buffer (IFNAMSIZ), so [`crate::Event`] stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IfName {
    buf: [u8; 16],
    len: u8,
}

impl IfName {
    /// The name, truncated to 16 bytes at a character boundary.
    pub fn new(s: &str) -> IfName {
        let mut end = s.len().min(16);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut buf = [0u8; 16];
        buf[..end].copy_from_slice(&s.as_bytes()[..end]);
        IfName {
            buf,
            len: end as u8,
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

impl std::fmt::Debug for IfName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl std::fmt::Display for IfName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`crate::Device::vf_info`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfInfo {
    /// Last state reached.
    pub state: VfState,
    /// Serial from the host's association.
    pub serial: u32,
    /// Paired netdev (current name), if any.
    pub iface: Option<String>,
    /// Its ifindex (0 when none).
    pub ifindex: u32,
    /// Data-path kind of the open port.
    pub mode: Option<VfMode>,
    /// VF queues in use (0 when none).
    pub queues: u32,
    /// The host was switched to the VF data path.
    pub switched: bool,
}

/// A handle on a device's VF counters that needs no access to the device (cheap to clone, any thread).
#[derive(Clone)]
pub struct VfStats(pub(crate) Arc<VfShared>);

impl std::fmt::Debug for VfStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("VfStats").field(&self.totals()).finish()
    }
}

impl VfStats {
    /// The VF's counters summed over every VF port the device had.
    pub fn totals(&self) -> VfCounters {
        self.0.counters().0
    }

    /// The `vf_`-prefixed xstats ([`crate::Device::xstats`] appends the same list).
    pub fn xstats(&self) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        self.0.xstats(&mut v);
        v
    }
}

/// Nanoseconds since the Unix epoch (event timestamps).
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Counters of the six VF queue fields, summed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VfCounters {
    /// Frames received from the VF.
    pub rx_packets: u64,
    /// Bytes received from the VF.
    pub rx_bytes: u64,
    /// Frames sent through the VF.
    pub tx_packets: u64,
    /// Bytes sent through the VF.
    pub tx_bytes: u64,
    /// Frames the kernel dropped on the VF's rx rings.
    pub rx_dropped: u64,
    /// Frames the VF failed to send.
    pub tx_errors: u64,
}

impl VfCounters {
    fn of(s: &VfQueueStats) -> VfCounters {
        VfCounters {
            rx_packets: s.rx_packets.load(Relaxed),
            rx_bytes: s.rx_bytes.load(Relaxed),
            tx_packets: s.tx_packets.load(Relaxed),
            tx_bytes: s.tx_bytes.load(Relaxed),
            rx_dropped: s.rx_dropped.load(Relaxed),
            tx_errors: s.tx_errors.load(Relaxed),
        }
    }

    fn add(&mut self, o: &VfCounters) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.rx_dropped += o.rx_dropped;
        self.tx_errors += o.tx_errors;
    }

    fn sub_sat(&mut self, o: &VfCounters) {
        self.rx_packets = self.rx_packets.saturating_sub(o.rx_packets);
        self.rx_bytes = self.rx_bytes.saturating_sub(o.rx_bytes);
        self.tx_packets = self.tx_packets.saturating_sub(o.tx_packets);
        self.tx_bytes = self.tx_bytes.saturating_sub(o.tx_bytes);
        self.rx_dropped = self.rx_dropped.saturating_sub(o.rx_dropped);
        self.tx_errors = self.tx_errors.saturating_sub(o.tx_errors);
    }
}

#[derive(Default)]
struct StatsSet {
    live: Vec<Arc<VfQueueStats>>,
    /// Counts of ports already closed.
    retired: VfCounters,
    /// What `live` held at the last reset (subtracted).
    base: VfCounters,
}

/// VF state every part of the device can read: info for `vf_info()`, counters for stats/xstats.
pub(crate) struct VfShared {
    info: Mutex<Option<VfInfo>>,
    stats: Mutex<StatsSet>,
    pub switches: AtomicU64,
    pub pair_attempts: AtomicU64,
    pub lost_frames: AtomicU64,
    pub assoc_ignored: AtomicU64,
}

impl Default for VfShared {
    fn default() -> Self {
        VfShared {
            info: Mutex::new(None),
            stats: Mutex::new(StatsSet::default()),
            switches: AtomicU64::new(0),
            pair_attempts: AtomicU64::new(0),
            lost_frames: AtomicU64::new(0),
            assoc_ignored: AtomicU64::new(0),
        }
    }
}

impl VfShared {
    pub fn info(&self) -> Option<VfInfo> {
        self.info.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_info(&self, info: Option<VfInfo>) {
        *self.info.lock().unwrap_or_else(|p| p.into_inner()) = info;
    }

    pub fn update_info(&self, f: impl FnOnce(&mut VfInfo)) {
        if let Some(i) = self.info.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            f(i);
        }
    }

    /// A port's queues opened: their counters join the totals.
    pub fn attach_stats(&self, live: Vec<Arc<VfQueueStats>>) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        s.live = live;
    }

    /// The port closed: fold its counters into the retired sum.
    pub fn retire_stats(&self) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let mut sum = VfCounters::default();
        for q in &s.live {
            sum.add(&VfCounters::of(q));
        }
        sum.sub_sat(&s.base);
        let retired = &mut s.retired;
        retired.add(&sum);
        s.base = VfCounters::default();
        s.live.clear();
    }

    /// Totals over every VF port this device had, and per live queue.
    pub fn counters(&self) -> (VfCounters, Vec<VfCounters>) {
        let s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let per: Vec<VfCounters> = s.live.iter().map(|q| VfCounters::of(q)).collect();
        let mut live = VfCounters::default();
        per.iter().for_each(|c| live.add(c));
        live.sub_sat(&s.base);
        let mut total = s.retired;
        total.add(&live);
        (total, per)
    }

    pub fn reset(&self) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let mut live = VfCounters::default();
        for q in &s.live {
            live.add(&VfCounters::of(q));
        }
        s.base = live;
        s.retired = VfCounters::default();
        self.switches.store(0, Relaxed);
        self.pair_attempts.store(0, Relaxed);
        self.lost_frames.store(0, Relaxed);
        self.assoc_ignored.store(0, Relaxed);
    }

    /// `vf_`-prefixed xstats.
    pub fn xstats(&self, out: &mut Vec<(String, u64)>) {
        let (t, per) = self.counters();
        for (name, v) in [
            ("vf_rx_good_packets", t.rx_packets),
            ("vf_tx_good_packets", t.tx_packets),
            ("vf_rx_good_bytes", t.rx_bytes),
            ("vf_tx_good_bytes", t.tx_bytes),
            ("vf_rx_missed_errors", t.rx_dropped),
            ("vf_tx_errors", t.tx_errors),
        ] {
            out.push((name.to_string(), v));
        }
        for (i, c) in per.iter().enumerate() {
            out.push((format!("vf_rx_q{i}_packets"), c.rx_packets));
            out.push((format!("vf_rx_q{i}_bytes"), c.rx_bytes));
            out.push((format!("vf_tx_q{i}_packets"), c.tx_packets));
            out.push((format!("vf_tx_q{i}_bytes"), c.tx_bytes));
        }
        for (name, c) in [
            ("vf_switches", &self.switches),
            ("vf_pair_attempts", &self.pair_attempts),
            ("vf_lost_frames", &self.lost_frames),
            ("vf_assoc_ignored", &self.assoc_ignored),
        ] {
            out.push((name.to_string(), c.load(Relaxed)));
        }
    }
}

//! What the caller chooses when opening a device.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vmbus_uio::IovaMode;

use crate::devargs::Devargs;
use crate::ndis::{Offloads, RSS_TABLE};

/// Smallest MTU (without the Ethernet header): frames of 1514 bytes, the least a Hyper-V host takes in
/// NDIS_CONFIG (OpenVMM `MIN_MTU`; a smaller one falls back to 1514 there, so the host would not honour it).
pub const MTU_MIN: u32 = 1500;
/// Largest MTU: frames of 9216 bytes (OpenVMM `MAX_MTU`).
pub const MTU_MAX: u32 = 9202;

/// Refuse an MTU outside [`MTU_MIN`]..=[`MTU_MAX`].
pub(crate) fn check_mtu(mtu: u32) -> crate::Result<()> {
    if (MTU_MIN..=MTU_MAX).contains(&mtu) {
        Ok(())
    } else {
        Err(crate::Error::MtuOutOfRange {
            mtu,
            min: MTU_MIN,
            max: MTU_MAX,
        })
    }
}

/// How long to wait for the host at each step. The defaults outlast a busy Azure host, seen to take up to 15 s
/// to answer (DPDK commit d564751748); Linux's hv_netvsc waits without a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// NVSP replies, 60 s (DPDK polls without bound; we use the RNDIS figure).
    pub nvsp: Duration,
    /// RNDIS replies, 60 s (DPDK: 60 s, raised from 5 s after busy Azure hosts took 15 s).
    pub rndis: Duration,
    /// Subchannel ring files appearing (DPDK: 1000 × 10 ms).
    pub subchannels: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            nvsp: Duration::from_secs(60),
            rndis: Duration::from_secs(60),
            subchannels: Duration::from_secs(10),
        }
    }
}

impl Timeouts {
    /// All three set to `d` (tests).
    pub fn all(d: Duration) -> Timeouts {
        Timeouts {
            nvsp: d,
            rndis: d,
            subchannels: d,
        }
    }
}

/// Cancels a bring-up in progress from another thread: the next host wait returns
/// [`Error::Cancelled`](crate::Error::Cancelled) and `Device::open` tears the half-open device down as on a
/// timeout. Only bring-up looks at it; control calls on an open device are not cancelled.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A token not yet cancelled.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Ask the bring-up holding this token to stop at its next wait.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether `cancel` was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Device configuration.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Queue pairs wanted; clamped to min(host RSS queues, 64), and to 1 below NVSP v5.
    pub queues: u16,
    /// MTU (without the Ethernet header), [`MTU_MIN`]..=[`MTU_MAX`].
    pub mtu: u32,
    /// DPDK device arguments.
    pub devargs: Devargs,
    /// RSS key; the standard Microsoft key when `None`.
    pub rss_key: Option<[u8; 40]>,
    /// RSS indirection table (queue per bucket); round-robin when `None`.
    pub rss_table: Option<[u16; RSS_TABLE]>,
    /// RSS hash types ([`crate::ndis::hash_types`] bits); all six when `None`.
    pub rss_hash_types: Option<u32>,
    /// Offloads to enable where the host supports them.
    pub offloads: Offloads,
    /// Host wait limits.
    pub timeouts: Timeouts,
    /// How DMA addresses are given to the host.
    pub iova: IovaMode,
    /// GPA-direct slots per queue (each holds one frame up to 64 KiB until completion).
    pub tx_gpa_slots: u32,
    /// VF (accelerated networking) pairing and failover.
    pub vf: crate::vf::VfConfig,
    /// Cancels the bring-up (`Device::open`) from another thread.
    pub cancel: Option<Cancel>,
    /// Re-initialise the device after a ring error ([`crate::Device::maintain`]); off: the failed queue stays
    /// failed until close.
    pub recover: bool,
    /// Publish the telemetry page (`<root>/run/netvsc/<uuid>.telemetry`) from [`crate::Device::maintain`] and serve
    /// the capture requests other processes write into it.
    pub telemetry: bool,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            queues: 1,
            mtu: 1500,
            devargs: Devargs::default(),
            rss_key: None,
            rss_table: None,
            rss_hash_types: None,
            offloads: Offloads::default(),
            timeouts: Timeouts::default(),
            iova: IovaMode::Va,
            tx_gpa_slots: 32,
            vf: crate::vf::VfConfig::default(),
            cancel: None,
            recover: true,
            telemetry: true,
        }
    }
}

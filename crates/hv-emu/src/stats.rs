//! Counters kept by the host and the JSON document [`EmuStats`] built from them.
//!
//! Hot-path counters are relaxed atomics per channel; protocol errors are counted by kind in a
//! small map (they are rare). `EmuStats` serialises with camelCase names.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($name:ident { $($field:ident),* $(,)? }) => {
        /// Relaxed atomic counters.
        #[derive(Debug, Default)]
        pub struct $name { $(pub $field: AtomicU64,)* }
    };
}
pub(crate) use counters;

counters!(ChannelCounters {
    g2h_frames,
    g2h_bytes,
    h2g_frames,
    h2g_bytes,
    h2g_packets,
    drop_no_rx_buffer,
    drop_ring_full,
    drop_filtered,
    drop_not_ready,
    drop_too_large,
    drop_link_down,
    drop_filter_none,
    drop_tx_too_large,
    tx_dropped,
    lso_segments,
    rndis_sections,
    rndis_messages,
    rndis_max_per_section,
    triggers,
    signals_to_guest,
    completions_sent,
    completions_deferred,
    rx_completions,
    worker_busy_ns,
});

/// Add `n` to a counter.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Device-wide counters.
#[derive(Debug, Default)]
pub struct Counters {
    proto: Mutex<BTreeMap<&'static str, u64>>,
    pub control_dropped: AtomicU64,
    pub control_sent: AtomicU64,
    /// Replies a slow host held back (`host::SlowHost`).
    pub delayed_replies: AtomicU64,
    /// Nanoseconds the receive thread spent in rounds that moved frames (the rest it polled empty or slept).
    pub rx_busy_ns: AtomicU64,
}

impl Counters {
    /// Count one protocol error of `kind`.
    pub fn proto_error(&self, kind: &'static str) {
        *self
            .proto
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_default() += 1;
    }

    /// Protocol errors by kind.
    pub fn proto_errors(&self) -> BTreeMap<String, u64> {
        self.proto
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect()
    }
}

/// Frames dropped, by reason.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Drops {
    pub no_rx_buffer: u64,
    /// Frames for the guest that found no room in the ring (short of its headroom).
    pub ring_full: u64,
    pub filtered: u64,
    pub not_ready: u64,
    /// Frames for the guest longer than the MTU + 14 (untagged), or than a sub-allocation without the MTU check.
    pub too_large: u64,
    pub link_down: u64,
    /// Frames for the guest while its packet filter was NONE (0).
    pub filter_none: u64,
    /// Frames from the guest longer than the MTU + 14 (not LSO): the switch drops them.
    pub tx_too_large: u64,
    pub tx_malformed: u64,
    /// Frames the backend itself dropped because its queue was full (the loopback's bounded reflect queue). The
    /// backend is device-wide, so this is counted in the totals only; every channel reports 0.
    pub backend_overflow: u64,
    /// Frames the guest sent that the backend could not pass on (a TAP write refused: interface down, queue full).
    /// Device-wide like `backend_overflow`.
    pub backend_tx_error: u64,
}

impl Drops {
    fn from(c: &ChannelCounters) -> Drops {
        Drops {
            no_rx_buffer: get(&c.drop_no_rx_buffer),
            ring_full: get(&c.drop_ring_full),
            filtered: get(&c.drop_filtered),
            not_ready: get(&c.drop_not_ready),
            too_large: get(&c.drop_too_large),
            link_down: get(&c.drop_link_down),
            filter_none: get(&c.drop_filter_none),
            tx_too_large: get(&c.drop_tx_too_large),
            tx_malformed: get(&c.tx_dropped),
            backend_overflow: 0,
            backend_tx_error: 0,
        }
    }

    /// All drops, whatever the reason.
    pub fn total(&self) -> u64 {
        self.no_rx_buffer
            + self.ring_full
            + self.filtered
            + self.not_ready
            + self.too_large
            + self.link_down
            + self.filter_none
            + self.tx_too_large
            + self.tx_malformed
            + self.backend_overflow
            + self.backend_tx_error
    }

    fn add(&mut self, o: &Drops) {
        self.no_rx_buffer += o.no_rx_buffer;
        self.ring_full += o.ring_full;
        self.filtered += o.filtered;
        self.not_ready += o.not_ready;
        self.too_large += o.too_large;
        self.link_down += o.link_down;
        self.filter_none += o.filter_none;
        self.tx_too_large += o.tx_too_large;
        self.tx_malformed += o.tx_malformed;
        self.backend_overflow += o.backend_overflow;
        self.backend_tx_error += o.backend_tx_error;
    }
}

/// RNDIS messages per guest send (section or GPA-direct packet).
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PerSection {
    pub sections: u64,
    pub messages: u64,
    pub max: u64,
    pub avg: f64,
}

/// One open channel.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelStats {
    pub index: u16,
    pub relid: u32,
    pub subchannel_id: u16,
    pub monitor_id: Option<u8>,
    pub guest_to_host_frames: u64,
    pub guest_to_host_bytes: u64,
    pub host_to_guest_frames: u64,
    pub host_to_guest_bytes: u64,
    pub host_to_guest_packets: u64,
    pub lso_segments: u64,
    pub drops: Drops,
    pub rndis_per_section: PerSection,
    pub triggers: u64,
    pub signals_to_guest: u64,
    pub completions_sent: u64,
    pub completions_deferred: u64,
    pub rx_completions: u64,
    /// Nanoseconds this channel's worker spent in drains that read packets (busy fraction = delta / wall time).
    pub worker_busy_ns: u64,
}

impl ChannelStats {
    /// Snapshot of a channel's counters.
    pub fn from_counters(
        index: u16,
        relid: u32,
        subchannel_id: u16,
        monitor_id: Option<u8>,
        c: &ChannelCounters,
    ) -> Self {
        let sections = get(&c.rndis_sections);
        let messages = get(&c.rndis_messages);
        ChannelStats {
            index,
            relid,
            subchannel_id,
            monitor_id,
            guest_to_host_frames: get(&c.g2h_frames),
            guest_to_host_bytes: get(&c.g2h_bytes),
            host_to_guest_frames: get(&c.h2g_frames),
            host_to_guest_bytes: get(&c.h2g_bytes),
            host_to_guest_packets: get(&c.h2g_packets),
            lso_segments: get(&c.lso_segments),
            drops: Drops::from(c),
            rndis_per_section: PerSection {
                sections,
                messages,
                max: get(&c.rndis_max_per_section),
                avg: if sections == 0 {
                    0.0
                } else {
                    messages as f64 / sections as f64
                },
            },
            triggers: get(&c.triggers),
            signals_to_guest: get(&c.signals_to_guest),
            completions_sent: get(&c.completions_sent),
            completions_deferred: get(&c.completions_deferred),
            rx_completions: get(&c.rx_completions),
            worker_busy_ns: get(&c.worker_busy_ns),
        }
    }
}

/// Sums over all channels.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub guest_to_host_frames: u64,
    pub guest_to_host_bytes: u64,
    pub host_to_guest_frames: u64,
    pub host_to_guest_bytes: u64,
    /// Of `host_to_guest_frames`, those the guest still held (in its ring, or in receive sub-allocations it had
    /// not completed) when its session ended — buffer revoked, a new INIT or a new buffer, as a close or a
    /// recovery does: they went with the old rings. Device-wide, so in the totals only.
    pub host_to_guest_abandoned: u64,
    pub drops: Drops,
}

impl Totals {
    /// Sum `channels`, plus the drops of the (device-wide) backend: its overflow and its refused transmits.
    pub fn sum_with_backend(
        channels: &[ChannelStats],
        backend_dropped: u64,
        backend_tx_errors: u64,
    ) -> Totals {
        let mut t = Totals::sum(channels);
        t.drops.backend_overflow += backend_dropped;
        t.drops.backend_tx_error += backend_tx_errors;
        t
    }

    /// Sum `channels`.
    pub fn sum(channels: &[ChannelStats]) -> Totals {
        let mut t = Totals::default();
        for c in channels {
            t.guest_to_host_frames += c.guest_to_host_frames;
            t.guest_to_host_bytes += c.guest_to_host_bytes;
            t.host_to_guest_frames += c.host_to_guest_frames;
            t.host_to_guest_bytes += c.host_to_guest_bytes;
            t.drops.add(&c.drops);
        }
        t
    }
}

/// NDIS version the guest announced.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct NdisVersion {
    pub major: u32,
    pub minor: u32,
}

/// OIDs seen, in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Oids {
    /// Queried OIDs as `0x%08x`.
    pub queried: Vec<String>,
    /// Set OIDs as `0x%08x`.
    pub set: Vec<String>,
}

/// The emulator's stats document.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmuStats {
    pub nvsp_version: Option<u32>,
    pub ndis_version: Option<NdisVersion>,
    pub ndis_config: Option<NdisConfig>,
    pub rndis_initialized: bool,
    pub packet_filter: u32,
    /// The newest `host::HISTORY` packet filters set, oldest first.
    pub packet_filters: Vec<u32>,
    /// Packet filter sets in all.
    pub packet_filter_changes: u64,
    pub oids: Oids,
    pub offload: crate::host::OffloadState,
    pub rss: crate::host::RssState,
    pub recv_buffer: Option<crate::host::RecvBufInfo>,
    pub recv_outstanding: usize,
    pub send_sections: Option<u32>,
    pub link_up: bool,
    pub link_speed: u32,
    pub subchannels: u16,
    pub data_path: Vec<u32>,
    pub channels: Vec<ChannelStats>,
    pub totals: Totals,
    pub protocol_errors: BTreeMap<String, u64>,
    pub control_messages_sent: u64,
    pub control_messages_dropped: u64,
    /// NVSP/RNDIS replies a slow host held back.
    pub delayed_replies: u64,
    /// Nanoseconds the receive thread spent in rounds that moved frames.
    pub rx_busy_ns: u64,
    pub backend: serde_json::Value,
    /// The VF (accelerated networking), when configured.
    pub vf: Option<crate::vf::VfStats>,
    /// Rates over about the last second (`None` until the emulator has sampled its counters once).
    pub rates: Option<crate::monitor::Rates>,
    /// The periodically rewritten stats file, when configured.
    pub stats_file: Option<crate::monitor::StatsFileState>,
}

/// NDIS_CONFIG as the guest sent it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct NdisConfig {
    pub mtu: u32,
    pub capabilities: u64,
}

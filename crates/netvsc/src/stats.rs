//! Per-queue counters with DPDK's netvsc xstats names (`tx_q<N>_good_packets`, `rx_q<N>_ring full`, ...).
//!
//! Each queue's counters are written only by the thread that owns the queue (relaxed atomics, so
//! another thread can read them at any time). Tx packets and bytes are counted on completion, as DPDK does;
//! rx packets and bytes once per burst.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// DPDK's per-queue stat names, in DPDK's order (`hn_stat_strings`).
pub const STAT_NAMES: [&str; 15] = [
    "good_packets",
    "good_bytes",
    "errors",
    "ring full",
    "channel full",
    "multicast_packets",
    "broadcast_packets",
    "undersize_packets",
    "size_64_packets",
    "size_65_127_packets",
    "size_128_255_packets",
    "size_256_511_packets",
    "size_512_1023_packets",
    "size_1024_1518_packets",
    "size_1519_max_packets",
];

/// Counters of one direction of one queue.
#[derive(Debug, Default)]
pub struct DirStats {
    /// Packets delivered (rx) or completed by the host (tx).
    pub packets: AtomicU64,
    /// Bytes of those packets.
    pub bytes: AtomicU64,
    /// Packets that failed (bad rx message, host-reported tx failure).
    pub errors: AtomicU64,
    /// Times no descriptor / staging slot was free (backpressure, not loss on tx).
    pub ring_full: AtomicU64,
    /// Times the VMBus ring or the send sections were full (backpressure, not loss on tx).
    pub channel_full: AtomicU64,
    /// Multicast destination frames.
    pub multicast: AtomicU64,
    /// Broadcast destination frames.
    pub broadcast: AtomicU64,
    /// Size buckets: <64, 64, 65–127, 128–255, 256–511, 512–1023, 1024–1518, ≥1519.
    pub size_bins: [AtomicU64; 8],
}

/// Size bucket index of a frame of `len` bytes (DPDK's `hn_update_packet_stats`).
pub fn size_bin(len: usize) -> usize {
    match len {
        0..=63 => 0,
        64 => 1,
        65..=1023 => (usize::BITS - len.leading_zeros()) as usize - 5,
        1024..=1518 => 6,
        _ => 7,
    }
}

impl DirStats {
    /// Count one good frame whose first bytes are `head` (destination MAC at 0..6).
    pub fn count_frame(&self, len: usize, head: &[u8]) {
        self.packets.fetch_add(1, Relaxed);
        self.bytes.fetch_add(len as u64, Relaxed);
        self.count_class(len, head);
    }

    /// Count multicast/broadcast and the size bucket only.
    pub fn count_class(&self, len: usize, head: &[u8]) {
        if let Some(dst) = head.get(..6) {
            if dst == [0xff; 6] {
                self.broadcast.fetch_add(1, Relaxed);
            } else if dst[0] & 1 == 1 {
                self.multicast.fetch_add(1, Relaxed);
            }
        }
        self.size_bins[size_bin(len)].fetch_add(1, Relaxed);
    }

    /// Every counter, in [`STAT_NAMES`] order.
    fn counters(&self) -> impl Iterator<Item = &AtomicU64> {
        [
            &self.packets,
            &self.bytes,
            &self.errors,
            &self.ring_full,
            &self.channel_full,
            &self.multicast,
            &self.broadcast,
        ]
        .into_iter()
        .chain(self.size_bins.iter())
    }

    /// Values in [`STAT_NAMES`] order.
    pub fn values(&self) -> [u64; 15] {
        let mut v = [0u64; 15];
        for (slot, c) in v.iter_mut().zip(self.counters()) {
            *slot = c.load(Relaxed);
        }
        v
    }

    /// Zero every counter.
    pub fn reset(&self) {
        self.counters().for_each(|c| c.store(0, Relaxed));
    }
}

/// Both directions of one queue plus rx drops DPDK reports as `imissed`.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Transmit side.
    pub tx: DirStats,
    /// Receive side.
    pub rx: DirStats,
    /// Rx frames dropped because the port was stopped, or because a host past its own receive sub-allocations
    /// overflowed the backlog of set-aside transfers.
    pub rx_missed: AtomicU64,
    /// What the host sent that broke a rule or was ignored.
    pub hv: HvStats,
}

impl QueueStats {
    /// Zero everything.
    pub fn reset(&self) {
        self.tx.reset();
        self.rx.reset();
        self.rx_missed.store(0, Relaxed);
        self.hv.reset();
    }
}

/// Per-queue counters of host input the driver ignored or refused (no DPDK equivalent: `hv_` names).
#[derive(Debug, Default)]
pub struct HvStats {
    /// Corrupt ring indices or descriptors (either direction); the queue then fails until recovery.
    pub ring_errors: AtomicU64,
    /// Completions whose transaction id matches nothing in flight (NVSP and RNDIS request ids).
    pub unknown_completions: AtomicU64,
    /// In-band NVSP messages, transfer announcements and RNDIS messages of an unknown or unexpected type.
    pub unknown_inband: AtomicU64,
    /// RNDIS status indications that do not parse or carry an unusable status.
    pub bad_indications: AtomicU64,
    /// Messages shorter than their header or their type's minimum.
    pub short_messages: AtomicU64,
    /// Messages or ranges longer than their container or the driver's bounds (range counts, RNDIS lengths).
    pub oversize_messages: AtomicU64,
    /// Calls that stopped at their per-call budget with ring data possibly left.
    pub budget_stops: AtomicU64,
    /// Send indirection tables refused: not 16 entries, table outside the message, an entry naming no queue.
    pub bad_send_tables: AtomicU64,
}

/// Names of [`HvStats`] in xstats, in [`HvStats::values`] order.
pub const HV_STAT_NAMES: [&str; 8] = [
    "hv_ring_errors",
    "hv_unknown_completions",
    "hv_unknown_inband",
    "hv_bad_indications",
    "hv_short_messages",
    "hv_oversize_messages",
    "hv_budget_stops",
    "hv_bad_send_tables",
];

impl HvStats {
    /// Values in [`HV_STAT_NAMES`] order.
    pub fn values(&self) -> [u64; 8] {
        [
            self.ring_errors.load(Relaxed),
            self.unknown_completions.load(Relaxed),
            self.unknown_inband.load(Relaxed),
            self.bad_indications.load(Relaxed),
            self.short_messages.load(Relaxed),
            self.oversize_messages.load(Relaxed),
            self.budget_stops.load(Relaxed),
            self.bad_send_tables.load(Relaxed),
        ]
    }

    fn reset(&self) {
        for c in [
            &self.ring_errors,
            &self.unknown_completions,
            &self.unknown_inband,
            &self.bad_indications,
            &self.short_messages,
            &self.oversize_messages,
            &self.budget_stops,
            &self.bad_send_tables,
        ] {
            c.store(0, Relaxed);
        }
    }
}

/// Device-wide `hv_` xstats: every [`HvStats`] counter summed over the queues, then `hv_recoveries`.
pub fn hv_xstats(queues: &[&QueueStats], recoveries: u64) -> Vec<(String, u64)> {
    let mut sum = [0u64; 8];
    for q in queues {
        for (s, v) in sum.iter_mut().zip(q.hv.values()) {
            *s += v;
        }
    }
    let mut out: Vec<(String, u64)> = HV_STAT_NAMES
        .iter()
        .zip(sum)
        .map(|(n, v)| (n.to_string(), v))
        .collect();
    out.push(("hv_recoveries".to_string(), recoveries));
    out
}

/// Port totals (DPDK's basic stats).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Rx packets.
    pub ipackets: u64,
    /// Tx packets (completed).
    pub opackets: u64,
    /// Rx bytes.
    pub ibytes: u64,
    /// Tx bytes (completed).
    pub obytes: u64,
    /// Rx drops.
    pub imissed: u64,
    /// Rx errors.
    pub ierrors: u64,
    /// Tx errors.
    pub oerrors: u64,
}

/// Totals over a set of queues.
pub fn totals<'a>(queues: impl IntoIterator<Item = &'a QueueStats>) -> Totals {
    let mut t = Totals::default();
    for q in queues {
        t.ipackets += q.rx.packets.load(Relaxed);
        t.ibytes += q.rx.bytes.load(Relaxed);
        t.ierrors += q.rx.errors.load(Relaxed);
        t.imissed += q.rx_missed.load(Relaxed);
        t.opackets += q.tx.packets.load(Relaxed);
        t.obytes += q.tx.bytes.load(Relaxed);
        t.oerrors += q.tx.errors.load(Relaxed);
    }
    t
}

/// Every counter of a device, readable without the device (no lock, no host round trip): its live queues, the
/// queues a queue-count change removed (still part of the port totals), and the VF. Take a new handle after a
/// re-initialisation ([`crate::Device::stats_handle`]).
#[derive(Debug, Clone)]
pub struct StatsHandle {
    pub(crate) queues: Vec<std::sync::Arc<QueueStats>>,
    pub(crate) retired: Vec<std::sync::Arc<QueueStats>>,
    pub(crate) vf: crate::vf::VfStats,
}

impl StatsHandle {
    /// The live queues' counters, by queue index.
    pub fn queues(&self) -> &[std::sync::Arc<QueueStats>] {
        &self.queues
    }

    /// Counters of queues removed by queue-count changes (oldest first).
    pub fn retired(&self) -> &[std::sync::Arc<QueueStats>] {
        &self.retired
    }

    /// The VF's counters.
    pub fn vf(&self) -> &crate::vf::VfStats {
        &self.vf
    }

    /// Port totals: every queue the device has had, plus the VF's packets and bytes (the application never sees
    /// the VF).
    pub fn totals(&self) -> Totals {
        let mut t = totals(self.queues.iter().chain(&self.retired).map(|a| a.as_ref()));
        let v = self.vf.totals();
        t.ipackets += v.rx_packets;
        t.ibytes += v.rx_bytes;
        t.opackets += v.tx_packets;
        t.obytes += v.tx_bytes;
        t.imissed += v.rx_dropped;
        t.oerrors += v.tx_errors;
        t
    }
}

/// xstats as DPDK lists them: every tx queue's 15 counters, then every rx queue's.
pub fn xstats<'a>(queues: &[&'a QueueStats]) -> Vec<(String, u64)> {
    let mut out = Vec::with_capacity(queues.len() * 30);
    for (dir, pick) in [
        (
            "tx",
            (|q: &'a QueueStats| &q.tx) as fn(&'a QueueStats) -> &'a DirStats,
        ),
        ("rx", |q: &'a QueueStats| &q.rx),
    ] {
        for (n, q) in queues.iter().enumerate() {
            for (name, v) in STAT_NAMES.iter().zip(pick(q).values()) {
                out.push((format!("{dir}_q{n}_{name}"), v));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_match_dpdk_boundaries() {
        let cases = [
            (0, 0),
            (63, 0),
            (64, 1),
            (65, 2),
            (127, 2),
            (128, 3),
            (255, 3),
            (256, 4),
            (511, 4),
            (512, 5),
            (1023, 5),
            (1024, 6),
            (1518, 6),
            (1519, 7),
            (65536, 7),
        ];
        for (len, bin) in cases {
            assert_eq!(size_bin(len), bin, "len {len}");
        }
    }

    #[test]
    fn names_are_dpdks() {
        let a = QueueStats::default();
        let b = QueueStats::default();
        b.tx.count_frame(64, &[0xff; 6]);
        b.rx.count_frame(1500, &[0x01, 0, 0x5e, 0, 0, 1]);
        let x = xstats(&[&a, &b]);
        assert_eq!(x.len(), 60);
        assert_eq!(x[0].0, "tx_q0_good_packets");
        assert_eq!(x[3].0, "tx_q0_ring full");
        assert_eq!(x[4].0, "tx_q0_channel full");
        assert_eq!(x[14].0, "tx_q0_size_1519_max_packets");
        assert_eq!(x[15], ("tx_q1_good_packets".to_string(), 1));
        assert_eq!(x[15 + 6], ("tx_q1_broadcast_packets".to_string(), 1));
        assert_eq!(x[15 + 8], ("tx_q1_size_64_packets".to_string(), 1));
        assert_eq!(x[30].0, "rx_q0_good_packets");
        assert_eq!(x[45 + 1], ("rx_q1_good_bytes".to_string(), 1500));
        assert_eq!(x[45 + 5], ("rx_q1_multicast_packets".to_string(), 1));
        assert_eq!(x[45 + 13], ("rx_q1_size_1024_1518_packets".to_string(), 1));
        let t = totals([&a, &b]);
        assert_eq!(
            (t.opackets, t.obytes, t.ipackets, t.ibytes),
            (1, 64, 1, 1500)
        );
        b.reset();
        assert!(xstats(&[&b]).iter().all(|(_, v)| *v == 0));
    }
}

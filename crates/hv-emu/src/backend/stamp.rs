//! Stamps in generated frames and the checker that reads them back on the far side of a loop.
//!
//! A stamp is a magic number, the flow's frame counter and the generation time (u32 ticks of 100 ns, wrapping
//! every 429 s). TCP frames carry it in header fields a forwarder leaves alone — urgent pointer (no URG flag) =
//! [`STAMP_MAGIC`], sequence number = counter, acknowledgment number = time — so frames of any size have one; UDP
//! frames carry the same 10 bytes (magic, counter, time; big-endian) at the start of their payload. The flow is the
//! IPv4 identification. Stamping touches 5 words, so the L4 checksum is redone from a base sum (the checksum of the
//! frame with the stamp fields zero) plus those words, not over the frame.
//!
//! [`SeqChecker`] keeps, per flow, the next expected counter and a 64-bit window of the counters before it: a gap is
//! counted lost, a counter arriving late fills its gap (lost − 1, reordered + 1), one already seen is a duplicate.

use crate::host::frame;
use serde::Serialize;

/// The stamp's marker (TCP urgent pointer / first two UDP payload bytes).
pub const STAMP_MAGIC: u16 = 0x4876;
/// Bytes of UDP payload a stamp takes.
pub const UDP_STAMP_LEN: usize = 10;
/// Nanoseconds per stamp time tick.
pub const TICK_NS: u64 = 100;

/// A stamp read from a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The IPv4 identification: the generator's flow index (low 16 bits).
    pub flow: u16,
    /// The flow's frame counter (low 32 bits).
    pub seq: u32,
    /// Generation time in ticks of [`TICK_NS`].
    pub ticks: u32,
}

/// Where a template's stamp goes and its checksum base.
#[derive(Debug, Clone, Copy)]
pub struct StampSlot {
    /// Offset of the L4 header in the buffer stamped.
    l4: usize,
    tcp: bool,
    /// One's-complement sum (folded, not complemented) of everything the L4 checksum covers, stamp fields zero.
    base: u16,
}

fn words(tcp: bool, seq: u32, ticks: u32) -> [(usize, u16); 5] {
    let (s, t) = (seq.to_be_bytes(), ticks.to_be_bytes());
    let w = |b: [u8; 4], hi: bool| {
        if hi {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[2], b[3]])
        }
    };
    if tcp {
        // seq at L4 + 4, ack at L4 + 8, urgent pointer at L4 + 18.
        [
            (4, w(s, true)),
            (6, w(s, false)),
            (8, w(t, true)),
            (10, w(t, false)),
            (18, STAMP_MAGIC),
        ]
    } else {
        [
            (8, STAMP_MAGIC),
            (10, w(s, true)),
            (12, w(s, false)),
            (14, w(t, true)),
            (16, w(t, false)),
        ]
    }
}

impl StampSlot {
    /// Prepare untagged IPv4 TCP/UDP frame `f` for stamping: zero the stamp fields and fill its L4 checksum. `None`
    /// when it is not such a frame or a UDP payload is shorter than [`UDP_STAMP_LEN`].
    pub fn prepare(f: &mut [u8]) -> Option<StampSlot> {
        let lay = frame::layout(f)?;
        if lay.ipv6 {
            return None;
        }
        let tcp = match lay.proto {
            6 if lay.end >= lay.l4 + 20 => true,
            17 if lay.end >= lay.l4 + 8 + UDP_STAMP_LEN => false,
            _ => return None,
        };
        for (off, _) in words(tcp, 0, 0) {
            f[lay.l4 + off..lay.l4 + off + 2].fill(0);
        }
        if !frame::fill_l4_checksum(f) {
            return None;
        }
        let at = lay.l4 + if tcp { 16 } else { 6 };
        let csum = u16::from_be_bytes([f[at], f[at + 1]]);
        Some(StampSlot {
            l4: lay.l4,
            tcp,
            base: !csum,
        })
    }

    /// The same slot in a copy of the frame with an 802.1Q tag inserted (4 bytes further on).
    pub fn tagged(self) -> StampSlot {
        StampSlot {
            l4: self.l4 + 4,
            ..self
        }
    }

    /// Write stamp (`seq`, `ticks`) into `f` (the frame this slot was prepared on, or its tagged copy) and redo the
    /// L4 checksum from the base. Out-of-range offsets are ignored (the frame is then left as it was).
    pub fn write(&self, f: &mut [u8], seq: u32, ticks: u32) {
        let csum_at = self.l4 + if self.tcp { 16 } else { 6 };
        let end = self.l4 + if self.tcp { 20 } else { 8 + UDP_STAMP_LEN };
        if f.len() < end {
            return;
        }
        let mut acc = u32::from(self.base);
        for (off, w) in words(self.tcp, seq, ticks) {
            f[self.l4 + off..self.l4 + off + 2].copy_from_slice(&w.to_be_bytes());
            acc += u32::from(w);
        }
        let mut c = frame::fold(acc);
        if !self.tcp && c == 0 {
            c = 0xFFFF;
        }
        f[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// The stamp of an IPv4 TCP/UDP frame (802.1Q-tagged or not), if it has one.
pub fn read_stamp(f: &[u8]) -> Option<Stamp> {
    let l3 = match f.get(12..14)? {
        [0x81, 0x00] if f.get(16..18)? == [0x08, 0x00] => 18,
        [0x08, 0x00] => 14,
        _ => return None,
    };
    let ip = f.get(l3..l3 + 20)?;
    if ip[0] >> 4 != 4 {
        return None;
    }
    let l4 = l3 + usize::from(ip[0] & 0xF) * 4;
    let flow = u16::from_be_bytes([ip[4], ip[5]]);
    let be16 = |o: usize| {
        Some(u16::from_be_bytes(
            f.get(l4 + o..l4 + o + 2)?.try_into().ok()?,
        ))
    };
    let be32 = |o: usize| {
        Some(u32::from_be_bytes(
            f.get(l4 + o..l4 + o + 4)?.try_into().ok()?,
        ))
    };
    match ip[9] {
        6 if be16(18)? == STAMP_MAGIC => Some(Stamp {
            flow,
            seq: be32(4)?,
            ticks: be32(8)?,
        }),
        17 if be16(8)? == STAMP_MAGIC => Some(Stamp {
            flow,
            seq: be32(10)?,
            ticks: be32(14)?,
        }),
        _ => None,
    }
}

/// Per flow: the next counter expected and which of the 64 before it arrived (bit i = counter `next - 1 - i`);
/// `rebase`: the next frame sets `next` (after a reset, when the generator's counters are already running).
#[derive(Debug, Clone, Copy, Default)]
struct FlowSeq {
    next: u64,
    window: u64,
    rebase: bool,
}

/// What the checker found (the `checker` object of the generator's stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckerStats {
    /// Stamped frames of known flows that came back.
    pub received: u64,
    /// Counters skipped and not (yet) seen: frames lost on the way, or still in flight behind a later one.
    pub lost: u64,
    /// Frames that came back after a later frame of their flow.
    pub reordered: u64,
    /// Frames whose counter had already been seen (within the 64-frame window).
    pub duplicates: u64,
    /// Frames without a stamp of ours (another source, an unknown flow, or a counter before the flow's start).
    pub foreign: u64,
    /// Generation to return, nanoseconds (resolution 100 ns); `None` before the first frame.
    pub latency_min_ns: Option<u64>,
    pub latency_avg_ns: Option<f64>,
    pub latency_max_ns: Option<u64>,
}

/// Checks returning stamped frames: loss, reordering, duplicates and latency. State is preallocated (16 bytes per
/// flow); checking a frame allocates nothing.
#[derive(Debug)]
pub struct SeqChecker {
    flows: Vec<FlowSeq>,
    received: u64,
    gaps: u64,
    filled: u64,
    reordered: u64,
    duplicates: u64,
    foreign: u64,
    lat_min: u64,
    lat_max: u64,
    lat_sum: u128,
}

/// What one frame was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next counter of its flow, or a later one (`skipped` counters in between are lost so far).
    InOrder { skipped: u64 },
    /// A counter the flow had already passed; it fills a gap.
    Late,
    /// Already seen.
    Duplicate,
    /// Not a stamp of ours.
    Foreign,
}

impl SeqChecker {
    /// A checker for flows `0..flows`.
    pub fn new(flows: u32) -> Self {
        SeqChecker {
            flows: vec![FlowSeq::default(); flows.max(1) as usize],
            received: 0,
            gaps: 0,
            filled: 0,
            reordered: 0,
            duplicates: 0,
            foreign: 0,
            lat_min: u64::MAX,
            lat_max: 0,
            lat_sum: 0,
        }
    }

    /// Check frame `f`, arriving at time `now_ticks` (the generator's clock, [`TICK_NS`] units).
    pub fn check(&mut self, f: &[u8], now_ticks: u32) -> Verdict {
        match read_stamp(f) {
            Some(s) => self.check_stamp(s, now_ticks),
            None => {
                self.foreign += 1;
                Verdict::Foreign
            }
        }
    }

    /// Check a stamp already read.
    pub fn check_stamp(&mut self, s: Stamp, now_ticks: u32) -> Verdict {
        let Some(st) = self.flows.get_mut(usize::from(s.flow)) else {
            self.foreign += 1;
            return Verdict::Foreign;
        };
        if st.rebase {
            *st = FlowSeq {
                next: u64::from(s.seq),
                window: 0,
                rebase: false,
            };
        }
        // Extend the 32-bit counter to the one nearest to what the flow expects.
        let delta = i64::from(s.seq.wrapping_sub(st.next as u32) as i32);
        let Some(seq) = st.next.checked_add_signed(delta) else {
            self.foreign += 1;
            return Verdict::Foreign;
        };
        let verdict = if seq >= st.next {
            let skipped = seq - st.next;
            st.window = if skipped + 1 >= 64 {
                1
            } else {
                (st.window << (skipped + 1)) | 1
            };
            st.next = seq + 1;
            self.gaps += skipped;
            Verdict::InOrder { skipped }
        } else {
            let back = st.next - 1 - seq;
            if back < 64 && st.window & (1 << back) != 0 {
                self.duplicates += 1;
                return Verdict::Duplicate;
            }
            if back < 64 {
                st.window |= 1 << back;
            }
            self.filled += 1;
            self.reordered += 1;
            Verdict::Late
        };
        self.received += 1;
        let lat = u64::from(now_ticks.wrapping_sub(s.ticks)) * TICK_NS;
        self.lat_min = self.lat_min.min(lat);
        self.lat_max = self.lat_max.max(lat);
        self.lat_sum += u128::from(lat);
        verdict
    }

    /// Totals so far.
    pub fn stats(&self) -> CheckerStats {
        let any = self.received > 0;
        CheckerStats {
            received: self.received,
            lost: self.gaps.saturating_sub(self.filled),
            reordered: self.reordered,
            duplicates: self.duplicates,
            foreign: self.foreign,
            latency_min_ns: any.then_some(self.lat_min),
            latency_avg_ns: any.then(|| self.lat_sum as f64 / self.received as f64),
            latency_max_ns: any.then_some(self.lat_max),
        }
    }

    /// Forget everything (a new measurement; flows' counters keep running on the generator side, so the first frame
    /// of each flow afterwards sets its base instead of counting the counters before it as lost).
    pub fn reset(&mut self) {
        let n = self.flows.len() as u32;
        *self = SeqChecker::new(n);
        for f in &mut self.flows {
            f.rebase = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::flows::{FlowPattern, build_frame};

    fn stamped(flow: u32, tcp: bool, len: usize, seq: u32, ticks: u32, tag: bool) -> Vec<u8> {
        let mut t = FlowPattern::default().tuple(flow);
        t.tcp = tcp;
        let mut f = build_frame([2; 6], flow, &t, len);
        let slot = StampSlot::prepare(&mut f).expect("stampable");
        if tag {
            let mut g = Vec::new();
            frame::push_tagged(&f, 0x0123, &mut g);
            slot.tagged().write(&mut g, seq, ticks);
            return g;
        }
        slot.write(&mut f, seq, ticks);
        f
    }

    #[test]
    fn stamps_round_trip_with_valid_checksums() {
        for (tcp, len) in [
            (true, 54),
            (true, 60),
            (true, 1514),
            (false, 60),
            (false, 61),
            (false, 9014),
        ] {
            for seq in [0u32, 1, 0xFFFF, 0x8000_0001, u32::MAX] {
                let f = stamped(7, tcp, len, seq, seq.rotate_left(7), false);
                assert_eq!(
                    read_stamp(&f),
                    Some(Stamp {
                        flow: 7,
                        seq,
                        ticks: seq.rotate_left(7)
                    }),
                    "tcp {tcp} len {len}"
                );
                let mut check = f.clone();
                assert!(frame::fill_l4_checksum(&mut check));
                assert_eq!(
                    check, f,
                    "incremental checksum == full checksum (tcp {tcp}, len {len}, seq {seq})"
                );
                assert_eq!(frame::verify(&f).unwrap().1, Some((tcp, true)));
                let g = stamped(7, tcp, len, seq, 5, true);
                assert_eq!(
                    read_stamp(&g).map(|s| (s.seq, s.ticks)),
                    Some((seq, 5)),
                    "tagged"
                );
            }
        }
        let mut short_udp = build_frame([2; 6], 1, &FlowPattern::default().tuple(1), 42 + 9);
        assert!(StampSlot::prepare(&mut short_udp).is_none());
        assert_eq!(read_stamp(&[0u8; 20]), None);
    }

    #[test]
    fn checker_counts_loss_reorder_duplicates_and_latency() {
        let mut c = SeqChecker::new(2);
        let frame = |flow, seq| stamped(flow, flow == 0, 100, seq, 1000, false);
        // Flow 0: 0 1 3 2 4 4 7 (5, 6 never come); flow 1: 0 1 2.
        for seq in [0, 1, 3, 2, 4] {
            c.check(&frame(0, seq), 1010);
        }
        assert_eq!(c.check(&frame(0, 4), 1010), Verdict::Duplicate);
        assert_eq!(c.check(&frame(0, 7), 1010), Verdict::InOrder { skipped: 2 });
        for seq in 0..3 {
            assert_eq!(
                c.check(&frame(1, seq), 1030),
                Verdict::InOrder { skipped: 0 }
            );
        }
        assert_eq!(c.check(&[0u8; 64], 0), Verdict::Foreign);
        assert_eq!(
            c.check(&frame(5, 0), 0),
            Verdict::Foreign,
            "flow 5 does not exist"
        );
        let s = c.stats();
        assert_eq!(
            (s.received, s.lost, s.reordered, s.duplicates, s.foreign),
            (9, 2, 1, 1, 2)
        );
        assert_eq!(
            (s.latency_min_ns, s.latency_max_ns),
            (Some(1000), Some(3000))
        );
        let avg = s.latency_avg_ns.unwrap();
        assert!((avg - (6.0 * 1000.0 + 3.0 * 3000.0) / 9.0).abs() < 1e-6);
    }

    #[test]
    fn counters_wrap_and_far_gaps_clear_the_window() {
        let mut c = SeqChecker::new(1);
        let s = |seq| Stamp {
            flow: 0,
            seq,
            ticks: 0,
        };
        c.check_stamp(s(0), 0);
        assert_eq!(c.check_stamp(s(200), 0), Verdict::InOrder { skipped: 199 });
        assert_eq!(
            c.check_stamp(s(100), 0),
            Verdict::Late,
            "beyond the window: late, not duplicate"
        );
        assert_eq!(c.stats().lost, 198);
        // Around the 32-bit wrap the counter keeps counting up.
        let mut w = SeqChecker::new(1);
        w.flows[0].next = u64::from(u32::MAX) - 1;
        assert_eq!(
            w.check_stamp(s(u32::MAX - 1), 0),
            Verdict::InOrder { skipped: 0 }
        );
        assert_eq!(
            w.check_stamp(s(u32::MAX), 0),
            Verdict::InOrder { skipped: 0 }
        );
        assert_eq!(w.check_stamp(s(0), 0), Verdict::InOrder { skipped: 0 });
        assert_eq!(w.check_stamp(s(u32::MAX), 0), Verdict::Duplicate);
        assert_eq!(w.stats().lost, 0);
        // After a reset the first frame of a flow is its new base.
        w.reset();
        assert_eq!(w.check_stamp(s(50), 0), Verdict::InOrder { skipped: 0 });
        assert_eq!(w.check_stamp(s(52), 0), Verdict::InOrder { skipped: 1 });
        assert_eq!((w.stats().received, w.stats().lost), (2, 1));
    }
}

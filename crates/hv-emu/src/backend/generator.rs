//! The generator backend: receive traffic at a set rate (or as fast as the guest takes it).
//!
//! Frames are pre-built per (flow, size) with valid IPv4 and TCP/UDP checksums, so generating is a
//! copy; flows alternate TCP and UDP with distinct addresses and ports so RSS spreads them.
//! Every `multicast_every`-th / `broadcast_every`-th frame goes to a group / broadcast address.
//! With `sequenced`, frame n's L4 payload is rewritten per frame (into a reused buffer, checksum refilled) to carry
//! n and a pattern derived from it ([`fill_sequenced`]), so a receiver checks every byte with [`check_sequenced`].

use super::Backend;
use super::sink::l4_payload_offset;
use crate::host::frame;
use std::time::Instant;

/// What the generator produces.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Frames per second; `None` = as many as the host asks for.
    pub rate_pps: Option<u64>,
    /// Frame sizes (Ethernet header included, no FCS; at least 60), used round robin.
    pub frame_sizes: Vec<usize>,
    /// Tag every frame with this 802.1Q TCI.
    pub vlan: Option<u16>,
    /// Every n-th frame is multicast (0 = never).
    pub multicast_every: u32,
    /// Every n-th frame is broadcast (0 = never).
    pub broadcast_every: u32,
    /// Number of distinct flows (even: TCP, odd: UDP).
    pub flows: u32,
    /// Destination MAC of directed frames (the NIC's address).
    pub dst_mac: [u8; 6],
    /// Stop after this many frames.
    pub limit: Option<u64>,
    /// Write each frame's sequence number (0, 1, ...) and its pattern into the L4 payload.
    pub sequenced: bool,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            rate_pps: Some(1000),
            frame_sizes: vec![64],
            vlan: None,
            multicast_every: 0,
            broadcast_every: 0,
            flows: 1,
            dst_mac: [0x00, 0x15, 0x5d, 0x00, 0x00, 0x01],
            limit: None,
            sequenced: false,
        }
    }
}

/// Generates receive traffic.
#[derive(Debug)]
pub struct Generator {
    cfg: GeneratorConfig,
    /// Untagged frames per (flow, size), never empty.
    plain: Vec<Vec<u8>>,
    /// The same with the 802.1Q tag when `cfg.vlan` is set (else empty).
    tagged: Vec<Vec<u8>>,
    /// Where each plain template's L4 payload starts.
    payload_at: Vec<usize>,
    scratch: Vec<u8>,
    tag_scratch: Vec<u8>,
    start: Option<Instant>,
    generated: u64,
    bytes: u64,
    multicast: u64,
    broadcast: u64,
}

/// Source MAC of generated frames.
pub const GENERATOR_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// Build one directed frame of `len` bytes for flow `i`.
pub fn build_flow_frame(dst: [u8; 6], flow: u32, len: usize) -> Vec<u8> {
    let tcp = flow.is_multiple_of(2);
    let l4_hdr = if tcp { 20 } else { 8 };
    let len = len.max(14 + 20 + l4_hdr);
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&GENERATOR_MAC);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    f[18..20].copy_from_slice(&(flow as u16).to_be_bytes());
    f[22] = 64;
    f[23] = if tcp { 6 } else { 17 };
    f[26..30].copy_from_slice(&[10, 1, (flow >> 8) as u8, flow as u8]);
    f[30..34].copy_from_slice(&[10, 0, 0, 1]);
    f[34..36].copy_from_slice(&(10000u16.wrapping_add(flow as u16)).to_be_bytes());
    f[36..38].copy_from_slice(&(if tcp { 80u16 } else { 5000 }).to_be_bytes());
    if tcp {
        f[38..42].copy_from_slice(&(flow.wrapping_mul(7919)).to_be_bytes());
        f[46] = 0x50;
        f[47] = 0x18;
        f[48..50].copy_from_slice(&0xFFFFu16.to_be_bytes());
    } else {
        f[38..40].copy_from_slice(&((len - 34) as u16).to_be_bytes());
    }
    for (i, b) in f[34 + l4_hdr..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(flow as u8);
    }
    frame::fill_ipv4_checksum(&mut f);
    frame::fill_l4_checksum(&mut f);
    f
}

impl Generator {
    /// A generator for `cfg`.
    pub fn new(cfg: GeneratorConfig) -> Self {
        let sizes = if cfg.frame_sizes.is_empty() {
            vec![64]
        } else {
            cfg.frame_sizes.clone()
        };
        let mut plain = Vec::new();
        let mut tagged = Vec::new();
        let mut payload_at = Vec::new();
        for flow in 0..cfg.flows.max(1) {
            for &len in &sizes {
                let f = build_flow_frame(cfg.dst_mac, flow, len);
                if let Some(tci) = cfg.vlan {
                    let mut t = Vec::with_capacity(f.len() + 4);
                    frame::push_tagged(&f, tci, &mut t);
                    tagged.push(t);
                }
                payload_at.push(l4_payload_offset(&f).unwrap_or(f.len()));
                plain.push(f);
            }
        }
        let max = plain.iter().map(Vec::len).max().unwrap_or(0);
        Generator {
            cfg,
            plain,
            tagged,
            payload_at,
            scratch: Vec::with_capacity(max),
            tag_scratch: Vec::with_capacity(max + 4),
            start: None,
            generated: 0,
            bytes: 0,
            multicast: 0,
            broadcast: 0,
        }
    }

    /// Frames generated so far.
    pub fn generated(&self) -> u64 {
        self.generated
    }
}

impl Backend for Generator {
    fn name(&self) -> &'static str {
        "generator"
    }
    fn transmit(&mut self, _frame: &[u8]) {}
    fn receive(&mut self, now: Instant, budget: usize, deliver: &mut dyn FnMut(&[u8])) -> usize {
        let start = *self.start.get_or_insert(now);
        let mut allowed = budget as u64;
        if let Some(pps) = self.cfg.rate_pps {
            let due =
                (now.duration_since(start).as_nanos() * u128::from(pps) / 1_000_000_000) as u64;
            allowed = allowed.min(due.saturating_sub(self.generated));
        }
        if let Some(limit) = self.cfg.limit {
            allowed = allowed.min(limit.saturating_sub(self.generated));
        }
        for _ in 0..allowed {
            let seq = self.generated;
            let n = seq + 1;
            let i = (seq % self.plain.len() as u64) as usize;
            let bcast = self.cfg.broadcast_every != 0
                && n.is_multiple_of(u64::from(self.cfg.broadcast_every));
            let mcast = !bcast
                && self.cfg.multicast_every != 0
                && n.is_multiple_of(u64::from(self.cfg.multicast_every));
            let len = if bcast || mcast || self.cfg.sequenced {
                self.scratch.clear();
                self.scratch.extend_from_slice(&self.plain[i]);
                if self.cfg.sequenced {
                    fill_sequenced(&mut self.scratch[self.payload_at[i]..], seq);
                    frame::fill_l4_checksum(&mut self.scratch);
                }
                if bcast {
                    self.scratch[..6].copy_from_slice(&[0xFF; 6]);
                    self.broadcast += 1;
                } else if mcast {
                    self.scratch[..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
                    self.multicast += 1;
                }
                match self.cfg.vlan {
                    Some(tci) => {
                        self.tag_scratch.clear();
                        frame::push_tagged(&self.scratch, tci, &mut self.tag_scratch);
                        deliver(&self.tag_scratch);
                        self.tag_scratch.len()
                    }
                    None => {
                        deliver(&self.scratch);
                        self.scratch.len()
                    }
                }
            } else {
                let t = self.tagged.get(i).unwrap_or(&self.plain[i]);
                deliver(t);
                t.len()
            };
            self.bytes += len as u64;
            self.generated = n;
        }
        allowed as usize
    }
    fn stable_frames(&self) -> bool {
        // Only the pre-built frames go out as they are; sequenced, multicast and broadcast frames use scratch.
        !self.cfg.sequenced && self.cfg.multicast_every == 0 && self.cfg.broadcast_every == 0
    }
    fn stats(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "generator", "generated": self.generated, "bytes": self.bytes,
            "multicast": self.multicast, "broadcast": self.broadcast, "sequenced": self.cfg.sequenced,
        })
    }
}

/// Added per payload word so that words of one frame differ (odd: distinct for every index).
const STRIDE: u64 = 0x9E37_79B9_7F4A_7C15;

/// Word `i` of frame `seq`'s pattern: a SplitMix64 mix of `seq` plus `i` strides.
pub fn sequence_word(seq: u64, i: u64) -> u64 {
    let mut z = seq.wrapping_add(STRIDE);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).wrapping_add(i.wrapping_mul(STRIDE))
}

/// Write frame `seq`'s payload: the little-endian byte stream `seq`, `sequence_word(seq, 0)`,
/// `sequence_word(seq, 1)`, ... cut at `payload.len()` (shorter than 8 bytes: `seq`'s low bytes only).
pub fn fill_sequenced(payload: &mut [u8], seq: u64) {
    let head = payload.len().min(8);
    payload[..head].copy_from_slice(&seq.to_le_bytes()[..head]);
    let Some(rest) = payload.get_mut(8..) else {
        return;
    };
    let (words, tail) = rest.as_chunks_mut::<8>();
    let mut w = sequence_word(seq, 0);
    for chunk in words {
        *chunk = w.to_le_bytes();
        w = w.wrapping_add(STRIDE);
    }
    let n = tail.len();
    tail.copy_from_slice(&w.to_le_bytes()[..n]);
}

/// A payload that is not what [`fill_sequenced`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// Fewer than 8 bytes: no room for the sequence number.
    #[error("payload of {len} bytes is too short to carry a sequence number")]
    TooShort {
        /// Payload length.
        len: usize,
    },
    /// A byte differs from frame `seq`'s pattern.
    #[error("payload byte {offset} differs from frame {seq}'s pattern")]
    Mismatch {
        /// Sequence number read from the payload.
        seq: u64,
        /// First differing byte.
        offset: usize,
    },
}

/// Check every byte of a payload written by [`fill_sequenced`] and return its sequence number.
pub fn check_sequenced(payload: &[u8]) -> Result<u64, SequenceError> {
    let Some((seq, rest)) = payload.split_first_chunk::<8>() else {
        return Err(SequenceError::TooShort { len: payload.len() });
    };
    let seq = u64::from_le_bytes(*seq);
    let (words, tail) = rest.as_chunks::<8>();
    let mut w = sequence_word(seq, 0);
    for (k, chunk) in words.iter().enumerate() {
        if *chunk != w.to_le_bytes() {
            let byte = chunk
                .iter()
                .zip(w.to_le_bytes())
                .take_while(|(a, b)| *a == b)
                .count();
            return Err(SequenceError::Mismatch {
                seq,
                offset: 8 + 8 * k + byte,
            });
        }
        w = w.wrapping_add(STRIDE);
    }
    let expect = w.to_le_bytes();
    if let Some(byte) = tail.iter().zip(expect).position(|(a, b)| *a != b) {
        return Err(SequenceError::Mismatch {
            seq,
            offset: 8 + 8 * words.len() + byte,
        });
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequenced_payload_round_trips_and_every_byte_is_checked() {
        for len in [8usize, 9, 15, 16, 17, 100, 1460] {
            let mut p = vec![0u8; len];
            fill_sequenced(&mut p, 77);
            assert_eq!(check_sequenced(&p), Ok(77));
            for i in 8..len {
                let mut q = p.clone();
                q[i] ^= 0x10;
                assert_eq!(
                    check_sequenced(&q),
                    Err(SequenceError::Mismatch { seq: 77, offset: i }),
                    "len {len}"
                );
            }
            // Another frame's payload (or a changed sequence number) does not pass as this one.
            let mut other = vec![0u8; len];
            fill_sequenced(&mut other, 78);
            other[..8].copy_from_slice(&77u64.to_le_bytes());
            if len > 8 {
                assert!(check_sequenced(&other).is_err());
            }
        }
        assert_eq!(
            check_sequenced(&[1, 2, 3]),
            Err(SequenceError::TooShort { len: 3 })
        );
        let mut short = [0u8; 5];
        fill_sequenced(&mut short, 0x0102_0304_0506);
        assert_eq!(short, [6, 5, 4, 3, 2]);
    }

    #[test]
    fn sequenced_frames_carry_their_number_and_valid_checksums() {
        let cfg = GeneratorConfig {
            rate_pps: None,
            frame_sizes: vec![64, 1514],
            flows: 2,
            limit: Some(8),
            sequenced: true,
            broadcast_every: 3,
            ..GeneratorConfig::default()
        };
        let mut g = Generator::new(cfg);
        let mut seen = Vec::new();
        let n = g.receive(Instant::now(), 100, &mut |f| {
            let off = l4_payload_offset(f).expect("tcp/udp frame");
            let seq = check_sequenced(&f[off..]).expect("pattern intact");
            let (ip, l4) = frame::verify(f).expect("ip frame");
            assert_eq!(
                (ip, l4.map(|(_, ok)| ok)),
                (Some(true), Some(true)),
                "frame {seq}"
            );
            seen.push((seq, f.len(), f[0]));
        });
        assert_eq!(n, 8);
        assert_eq!(g.generated(), 8);
        let sizes = [64, 1514, 64, 1514];
        for (k, (seq, len, dst0)) in seen.iter().enumerate() {
            assert_eq!(*seq, k as u64);
            assert_eq!(*len, sizes[k % 4]);
            assert_eq!(*dst0 == 0xFF, (k + 1) % 3 == 0, "broadcast every third");
        }
    }
}

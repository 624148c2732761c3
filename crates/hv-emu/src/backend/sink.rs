//! The sink backend: counts what the guest sends, folds every frame into running 64-bit digests and
//! drops it; delivers nothing. The digests prove content at any scale without storing a frame: a test
//! recomputes them over what it sent with [`hash_bytes`], [`frame_hash`] and [`Digest`].
//!
//! Digest definition (all little-endian, wrapping arithmetic):
//! - `hash_bytes(b)`: four independent lanes take 32-byte blocks (one 8-byte word each, an xxHash64-style
//!   multiply–rotate–multiply round), then are merged with the length; the remaining whole words and a zero-padded
//!   tail word go through the same round one by one; a final avalanche mixes every bit.
//! - Each frame splits at its L4 payload ([`l4_payload_offset`]: untagged IPv4/IPv6 TCP or UDP; the frame's end
//!   for anything else): `frame_hash = mix(hash_bytes(head), hash_bytes(payload))`, so every byte counts once.
//! - `digest` = [`Digest`] over every frame's `frame_hash`, in arrival order; `payloadDigest` = [`Digest`] over
//!   every frame's `hash_bytes(payload)` only (checks TCP segmentation: segment headers are the host's, payloads
//!   the guest's). A [`Digest`] step is `d' = avalanche(d · P ⊕ h)`, so reordering frames changes it.

use super::Backend;
use crate::host::frame;
use std::time::Instant;

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;

#[inline(always)]
fn round(acc: u64, word: u64) -> u64 {
    acc.wrapping_add(word.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

#[inline(always)]
fn avalanche(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// 64-bit hash of `data` (see the module docs). Not cryptographic: it detects corruption, not tampering.
pub fn hash_bytes(data: &[u8]) -> u64 {
    let mut lanes = [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)];
    let (blocks, rest) = data.as_chunks::<32>();
    for b in blocks {
        let (words, _) = b.as_chunks::<8>();
        for (lane, w) in lanes.iter_mut().zip(words) {
            *lane = round(*lane, u64::from_le_bytes(*w));
        }
    }
    let mut h = lanes[0]
        .rotate_left(1)
        .wrapping_add(lanes[1].rotate_left(7))
        .wrapping_add(lanes[2].rotate_left(12))
        .wrapping_add(lanes[3].rotate_left(18))
        .wrapping_add(data.len() as u64);
    let (words, tail) = rest.as_chunks::<8>();
    for w in words {
        h = round(h ^ P4, u64::from_le_bytes(*w));
    }
    if !tail.is_empty() {
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        h = round(h ^ P3, u64::from_le_bytes(last));
    }
    avalanche(h)
}

/// Offset of the TCP/UDP payload of an untagged IPv4/IPv6 frame (no IPv6 extension headers); `None` for other
/// frames or when the L4 header does not fit.
pub fn l4_payload_offset(f: &[u8]) -> Option<usize> {
    let lay = frame::layout(f)?;
    let hdr = match lay.proto {
        6 => Some(usize::from(f.get(lay.l4 + 12)? >> 4) * 4).filter(|&h| h >= 20)?,
        17 => 8,
        _ => return None,
    };
    let off = lay.l4 + hdr;
    (off <= f.len()).then_some(off)
}

fn split(f: &[u8]) -> (&[u8], &[u8]) {
    f.split_at(l4_payload_offset(f).unwrap_or(f.len()))
}

fn combine(head: u64, payload: u64) -> u64 {
    avalanche(head.wrapping_mul(P1) ^ payload.rotate_left(29))
}

/// The hash a frame contributes to the sink's `digest`: its head and L4 payload hashed separately and mixed.
pub fn frame_hash(f: &[u8]) -> u64 {
    let (head, payload) = split(f);
    combine(hash_bytes(head), hash_bytes(payload))
}

/// An order-sensitive running digest of per-frame hashes; starts at 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest(u64);

impl Digest {
    /// Fold in the next frame's hash.
    pub fn push(&mut self, hash: u64) {
        self.0 = avalanche(self.0.wrapping_mul(P1) ^ hash);
    }

    /// The current value.
    pub fn value(self) -> u64 {
        self.0
    }
}

/// Count-and-drop backend.
#[derive(Debug, Default)]
pub struct Sink {
    frames: u64,
    bytes: u64,
    payload_bytes: u64,
    digest: Digest,
    payload_digest: Digest,
}

impl Sink {
    /// Digest of every frame received so far.
    pub fn digest(&self) -> u64 {
        self.digest.value()
    }

    /// Digest of every frame's L4 payload received so far.
    pub fn payload_digest(&self) -> u64 {
        self.payload_digest.value()
    }
}

impl Backend for Sink {
    fn name(&self) -> &'static str {
        "sink"
    }
    fn transmit(&mut self, f: &[u8]) {
        self.frames += 1;
        self.bytes += f.len() as u64;
        let (head, payload) = split(f);
        let ph = hash_bytes(payload);
        self.payload_bytes += payload.len() as u64;
        self.payload_digest.push(ph);
        self.digest.push(combine(hash_bytes(head), ph));
    }
    fn never_receives(&self) -> bool {
        true
    }
    fn receive(&mut self, _now: Instant, _budget: usize, _deliver: &mut dyn FnMut(&[u8])) -> usize {
        0
    }
    fn stats(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "sink", "frames": self.frames, "bytes": self.bytes, "payloadBytes": self.payload_bytes,
            "digest": format!("0x{:016x}", self.digest()),
            "payloadDigest": format!("0x{:016x}", self.payload_digest()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(len: usize, fill: u8) -> Vec<u8> {
        let mut f = vec![fill; len];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
        f[23] = 17;
        f
    }

    #[test]
    fn every_byte_and_length_changes_the_hash() {
        let base: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        for len in [0usize, 1, 7, 8, 9, 31, 32, 33, 64, 300] {
            let h = hash_bytes(&base[..len]);
            for i in 0..len {
                for bit in [0u8, 3, 7] {
                    let mut b = base[..len].to_vec();
                    b[i] ^= 1 << bit;
                    assert_ne!(hash_bytes(&b), h, "len {len} byte {i} bit {bit}");
                }
            }
            if len > 0 {
                assert_ne!(hash_bytes(&base[..len - 1]), h, "len {len} vs shorter");
            }
        }
        // Zero padding of the tail word is not the same as real zero bytes.
        assert_ne!(hash_bytes(&[1, 0]), hash_bytes(&[1]));
    }

    #[test]
    fn digest_is_order_sensitive_and_sink_matches_recomputation() {
        let a = udp(64, 1);
        let b = udp(1514, 2);
        let mut ab = Digest::default();
        ab.push(frame_hash(&a));
        ab.push(frame_hash(&b));
        let mut ba = Digest::default();
        ba.push(frame_hash(&b));
        ba.push(frame_hash(&a));
        assert_ne!(ab, ba);
        let mut s = Sink::default();
        s.transmit(&a);
        s.transmit(&b);
        assert_eq!(s.digest(), ab.value());
        let mut pd = Digest::default();
        pd.push(hash_bytes(&a[42..]));
        pd.push(hash_bytes(&b[42..]));
        assert_eq!(s.payload_digest(), pd.value());
        let st = s.stats();
        assert_eq!(st["digest"], format!("0x{:016x}", ab.value()));
        assert_eq!(st["payloadBytes"], (64 - 42) + (1514 - 42));
    }

    #[test]
    fn payload_split_by_protocol() {
        let mut tcp = udp(100, 0);
        tcp[23] = 6;
        tcp[34 + 12] = 0x80; // 32-byte TCP header
        assert_eq!(l4_payload_offset(&tcp), Some(34 + 32));
        assert_eq!(l4_payload_offset(&udp(100, 0)), Some(42));
        let mut arp = udp(60, 0);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(l4_payload_offset(&arp), None);
        let mut short = udp(60, 0);
        short[23] = 6;
        short[34 + 12] = 0x80; // a 32-byte header overruns a 60-byte frame
        assert_eq!(l4_payload_offset(&short), None);
        short[34 + 12] = 0x40; // a 16-byte TCP header is invalid
        assert_eq!(l4_payload_offset(&short), None);
        assert_eq!(l4_payload_offset(&[0u8; 5]), None);
    }
}

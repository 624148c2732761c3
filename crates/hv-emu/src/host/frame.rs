//! Ethernet/IP/TCP/UDP work the host does on frames: checksums, VLAN tags, TCP segmentation
//! (LSOv2), receive checksum validation and the RSS hash input (hashed with `netvsc_proto::toeplitz`).
//!
//! All functions bound every offset against the frame they were given; a frame they cannot make
//! sense of is reported as `None`/`false`, never a panic.

use netvsc_proto::ndis::hash_info as hash;

/// Ethernet header length without a VLAN tag.
pub const ETH_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn set_be16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

/// One's-complement sum of `data` (16-bit big-endian words) added to `acc`, not complemented. Eight bytes are
/// summed per step as two 32-bit words in a 64-bit accumulator and folded back with end-around carries, which
/// gives the same result modulo 0xFFFF as adding 16-bit words one by one (2^16 ≡ 1).
pub fn sum16(acc: u32, data: &[u8]) -> u32 {
    let mut s = u64::from(acc);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        s += (w >> 32) + (w & 0xFFFF_FFFF);
    }
    let mut pairs = chunks.remainder().chunks_exact(2);
    for p in &mut pairs {
        s += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        s += u64::from(*last) << 8;
    }
    while s > 0xFFFF_FFFF {
        s = (s & 0xFFFF_FFFF) + (s >> 32);
    }
    s as u32
}

/// Fold a 32-bit sum and complement it.
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    !(acc as u16)
}

/// Where the L3/L4 parts of an untagged Ethernet frame are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub l3: usize,
    pub ipv6: bool,
    pub proto: u8,
    pub l4: usize,
    /// End of the IP datagram (≤ frame length; trailing padding is excluded).
    pub end: usize,
}

/// Parse the IPv4/IPv6 header of an untagged frame (no IPv6 extension headers).
pub fn layout(f: &[u8]) -> Option<Layout> {
    let l3 = ETH_LEN;
    match be16(f, 12)? {
        ETHERTYPE_IPV4 => {
            let vihl = *f.get(l3)?;
            let ihl = usize::from(vihl & 0xF) * 4;
            if vihl >> 4 != 4 || ihl < 20 {
                return None;
            }
            let total = usize::from(be16(f, l3 + 2)?);
            let end = if total == 0 {
                f.len()
            } else {
                (l3 + total).min(f.len())
            };
            if l3 + ihl > end {
                return None;
            }
            Some(Layout {
                l3,
                ipv6: false,
                proto: *f.get(l3 + 9)?,
                l4: l3 + ihl,
                end,
            })
        }
        ETHERTYPE_IPV6 => {
            if f.get(l3)? >> 4 != 6 || f.len() < l3 + 40 {
                return None;
            }
            let plen = usize::from(be16(f, l3 + 4)?);
            let end = if plen == 0 {
                f.len()
            } else {
                (l3 + 40 + plen).min(f.len())
            };
            Some(Layout {
                l3,
                ipv6: true,
                proto: f[l3 + 6],
                l4: l3 + 40,
                end,
            })
        }
        _ => None,
    }
}

fn pseudo_sum(f: &[u8], lay: &Layout, l4_len: usize) -> u32 {
    let mut acc = 0u32;
    if lay.ipv6 {
        acc = sum16(acc, &f[lay.l3 + 8..lay.l3 + 40]);
    } else {
        acc = sum16(acc, &f[lay.l3 + 12..lay.l3 + 20]);
    }
    acc = acc.wrapping_add(u32::from(lay.proto));
    acc.wrapping_add(l4_len as u32)
}

/// Fill in the IPv4 header checksum. Returns false when the frame is not IPv4.
pub fn fill_ipv4_checksum(f: &mut [u8]) -> bool {
    let Some(lay) = layout(f) else { return false };
    if lay.ipv6 {
        return false;
    }
    f[lay.l3 + 10] = 0;
    f[lay.l3 + 11] = 0;
    let c = fold(sum16(0, &f[lay.l3..lay.l4]));
    set_be16(f, lay.l3 + 10, c);
    true
}

/// Fill in the TCP or UDP checksum over the pseudo-header. Returns false if not TCP/UDP.
pub fn fill_l4_checksum(f: &mut [u8]) -> bool {
    let Some(lay) = layout(f) else { return false };
    let off = match lay.proto {
        PROTO_TCP => 16,
        PROTO_UDP => 6,
        _ => return false,
    };
    if lay.l4 + off + 2 > lay.end || lay.end <= lay.l4 {
        return false;
    }
    let l4_len = lay.end - lay.l4;
    f[lay.l4 + off] = 0;
    f[lay.l4 + off + 1] = 0;
    let mut c = fold(sum16(pseudo_sum(f, &lay, l4_len), &f[lay.l4..lay.end]));
    if lay.proto == PROTO_UDP && c == 0 {
        c = 0xFFFF;
    }
    set_be16(f, lay.l4 + off, c);
    true
}

/// Receive-side checksum verdicts of a frame.
pub type Verdict = (Option<bool>, Option<(bool, bool)>);

/// Receive-side checksum verdicts: (IPv4 header ok, `Some((is_tcp, ok))` for TCP/UDP).
pub fn verify(f: &[u8]) -> Option<Verdict> {
    Some(verdict(f, &layout(f)?))
}

/// [`verify`] of a frame whose [`layout`] is known.
pub(crate) fn verdict(f: &[u8], lay: &Layout) -> Verdict {
    let ip = if lay.ipv6 {
        None
    } else {
        Some(fold(sum16(0, &f[lay.l3..lay.l4])) == 0)
    };
    let l4 = match lay.proto {
        // A verdict once the whole L4 header is there (a header-only UDP datagram has a checksum too).
        PROTO_TCP | PROTO_UDP
            if lay.end >= lay.l4 + if lay.proto == PROTO_TCP { 20 } else { 8 } =>
        {
            let is_tcp = lay.proto == PROTO_TCP;
            let stored_zero = !is_tcp && be16(f, lay.l4 + 6) == Some(0) && !lay.ipv6;
            let ok = stored_zero
                || fold(sum16(
                    pseudo_sum(f, lay, lay.end - lay.l4),
                    &f[lay.l4..lay.end],
                )) == 0;
            Some((is_tcp, ok))
        }
        _ => None,
    };
    (ip, l4)
}

/// If `f` carries an 802.1Q tag, return its TCI and write the untagged frame into `out`.
pub fn strip_vlan(f: &[u8], out: &mut Vec<u8>) -> Option<u16> {
    if f.len() < ETH_LEN + 4 || be16(f, 12)? != ETHERTYPE_VLAN {
        return None;
    }
    let tci = be16(f, 14)?;
    out.clear();
    out.extend_from_slice(&f[..12]);
    out.extend_from_slice(&f[16..]);
    Some(tci)
}

/// Append `f` to `out` with an 802.1Q tag carrying `tci` inserted after the MAC addresses.
pub fn push_tagged(f: &[u8], tci: u16, out: &mut Vec<u8>) {
    let split = f.len().min(12);
    out.extend_from_slice(&f[..split]);
    out.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
    out.extend_from_slice(&tci.to_be_bytes());
    out.extend_from_slice(&f[split..]);
}

/// Why a large send could not be segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LsoError {
    NotTcp,
    BadHeader,
    BadMss,
}

/// Segment a TCP frame at `mss` bytes of payload (LSOv2): every segment gets its own IP length,
/// IPv4 id (+1 per segment) and header checksum, TCP sequence number, flags (FIN/PSH only on the
/// last, CWR only on the first) and a full TCP checksum. Calls `emit` once per segment.
pub fn segment_tcp(
    f: &[u8],
    mss: usize,
    scratch: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, LsoError> {
    let lay = layout(f).ok_or(LsoError::BadHeader)?;
    if lay.proto != PROTO_TCP {
        return Err(LsoError::NotTcp);
    }
    let thl = usize::from(f.get(lay.l4 + 12).ok_or(LsoError::BadHeader)? >> 4) * 4;
    let hdr_end = lay.l4 + thl;
    if thl < 20 || hdr_end > f.len() {
        return Err(LsoError::BadHeader);
    }
    if mss == 0 {
        return Err(LsoError::BadMss);
    }
    // The guest zeroes IPv4 total length / IPv6 payload length: the payload runs to the frame end.
    let payload = &f[hdr_end..];
    let seq0 = u32::from_be_bytes(f[lay.l4 + 4..lay.l4 + 8].try_into().expect("4 bytes"));
    let id0 = if lay.ipv6 {
        0
    } else {
        be16(f, lay.l3 + 4).unwrap_or(0)
    };
    let flags0 = f[lay.l4 + 13];
    let count = payload.len().div_ceil(mss).max(1);
    for i in 0..count {
        let start = i * mss;
        let chunk = &payload[start.min(payload.len())..(start + mss).min(payload.len())];
        scratch.clear();
        scratch.extend_from_slice(&f[..hdr_end]);
        scratch.extend_from_slice(chunk);
        let seg = scratch.as_mut_slice();
        if lay.ipv6 {
            set_be16(seg, lay.l3 + 4, (seg.len() - lay.l3 - 40) as u16);
        } else {
            set_be16(seg, lay.l3 + 2, (seg.len() - lay.l3) as u16);
            set_be16(seg, lay.l3 + 4, id0.wrapping_add(i as u16));
        }
        seg[lay.l4 + 4..lay.l4 + 8].copy_from_slice(&seq0.wrapping_add(start as u32).to_be_bytes());
        let mut flags = flags0;
        if i + 1 < count {
            flags &= !(0x01 | 0x08); // FIN, PSH only on the last segment
        }
        if i > 0 {
            flags &= !0x80; // CWR only on the first
        }
        seg[lay.l4 + 13] = flags;
        if !lay.ipv6 {
            fill_ipv4_checksum(seg);
        }
        fill_l4_checksum(seg);
        emit(seg);
    }
    Ok(count)
}

/// The RSS input of a frame and the hash type it selects under `hash_info`'s enabled types.
pub fn rss_input(f: &[u8], hash_info: u32, buf: &mut [u8; 36]) -> Option<(usize, u32)> {
    rss_input_at(f, &layout(f)?, hash_info, buf)
}

/// [`rss_input`] of a frame whose [`layout`] is known.
pub(crate) fn rss_input_at(
    f: &[u8],
    lay: &Layout,
    hash_info: u32,
    buf: &mut [u8; 36],
) -> Option<(usize, u32)> {
    let ports = be16(f, lay.l4).zip(be16(f, lay.l4 + 2));
    let (addr_off, addr_len) = if lay.ipv6 {
        (lay.l3 + 8, 32)
    } else {
        (lay.l3 + 12, 8)
    };
    buf[..addr_len].copy_from_slice(f.get(addr_off..addr_off + addr_len)?);
    let (l4_type, l3_type) = if lay.ipv6 {
        (
            if lay.proto == PROTO_TCP {
                hash::TCP_IPV6
            } else {
                0
            },
            hash::IPV6,
        )
    } else {
        let t = match lay.proto {
            PROTO_TCP => hash::TCP_IPV4,
            PROTO_UDP => hash::UDP_IPV4,
            _ => 0,
        };
        (t, hash::IPV4)
    };
    if l4_type != 0 && hash_info & l4_type != 0 {
        let (sp, dp) = ports?;
        buf[addr_len..addr_len + 2].copy_from_slice(&sp.to_be_bytes());
        buf[addr_len + 2..addr_len + 4].copy_from_slice(&dp.to_be_bytes());
        return Some((addr_len + 4, l4_type));
    }
    if hash_info & l3_type != 0 {
        return Some((addr_len, l3_type));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// etherparse, as an independent implementation: frames it builds (with its checksums) must verify here, the
    /// checksums filled in here must equal its, and every LSO segment must parse and verify under its rules.
    mod against_etherparse {
        use super::super::*;
        use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

        const SRC: [u8; 6] = [2, 0, 0, 0, 0, 1];
        const DST: [u8; 6] = [0, 0x15, 0x5d, 0, 0, 1];

        fn frames() -> Vec<(&'static str, Vec<u8>)> {
            let mut out = Vec::new();
            for len in [0usize, 1, 7, 64, 1400] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
                let b4 =
                    || PacketBuilder::ethernet2(SRC, DST).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64);
                let b6 = || {
                    PacketBuilder::ethernet2(SRC, DST).ipv6(
                        [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                        [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                        64,
                    )
                };
                let mut f = Vec::new();
                b4().tcp(1000, 80, 7, 512).write(&mut f, &payload).unwrap();
                out.push(("tcp4", std::mem::take(&mut f)));
                b4().udp(1000, 53).write(&mut f, &payload).unwrap();
                out.push(("udp4", std::mem::take(&mut f)));
                b6().tcp(1000, 80, 7, 512).write(&mut f, &payload).unwrap();
                out.push(("tcp6", std::mem::take(&mut f)));
                b6().udp(1000, 53).write(&mut f, &payload).unwrap();
                out.push(("udp6", std::mem::take(&mut f)));
            }
            out
        }

        #[test]
        fn its_frames_verify_and_our_checksums_equal_its() {
            for (what, f) in frames() {
                let (ip, l4) = verify(&f).unwrap_or_else(|| panic!("{what}: no layout"));
                assert_ne!(ip, Some(false), "{what}: IPv4 header checksum");
                assert_eq!(l4.map(|(_, ok)| ok), Some(true), "{what}: L4 checksum");
                let lay = layout(&f).unwrap();
                let mut ours = f.clone();
                let off = if lay.proto == PROTO_TCP { 16 } else { 6 };
                ours[lay.l4 + off..lay.l4 + off + 2].fill(0);
                if !lay.ipv6 {
                    ours[lay.l3 + 10..lay.l3 + 12].fill(0);
                    assert!(fill_ipv4_checksum(&mut ours));
                }
                assert!(fill_l4_checksum(&mut ours));
                assert_eq!(ours, f, "{what}: the checksums we fill in are etherparse's");
            }
        }

        #[test]
        fn every_lso_segment_parses_and_checks_out() {
            for (what, f) in frames()
                .into_iter()
                .filter(|(w, f)| w.starts_with("tcp") && f.len() > 1000)
            {
                let mut scratch = Vec::new();
                let mut segments = Vec::new();
                let n = segment_tcp(&f, 536, &mut scratch, |s| segments.push(s.to_vec())).unwrap();
                assert_eq!(n, segments.len());
                let mut payload = Vec::new();
                for s in &segments {
                    let p =
                        SlicedPacket::from_ethernet(s).unwrap_or_else(|e| panic!("{what}: {e}"));
                    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
                        panic!("{what}: not TCP")
                    };
                    let want = match &p.net {
                        Some(etherparse::NetSlice::Ipv4(ip)) => {
                            assert!(
                                ip.header().to_header().calc_header_checksum()
                                    == ip.header().header_checksum()
                            );
                            tcp.calc_checksum_ipv4(ip.header().source(), ip.header().destination())
                        }
                        Some(etherparse::NetSlice::Ipv6(ip)) => {
                            tcp.calc_checksum_ipv6(ip.header().source(), ip.header().destination())
                        }
                        _ => panic!("{what}: no IP"),
                    }
                    .unwrap();
                    assert_eq!(tcp.checksum(), want, "{what}: segment TCP checksum");
                    assert!(tcp.payload().len() <= 536);
                    payload.extend_from_slice(tcp.payload());
                }
                let whole = SlicedPacket::from_ethernet(&f).unwrap();
                let Some(TransportSlice::Tcp(tcp)) = &whole.transport else {
                    unreachable!()
                };
                assert_eq!(
                    payload,
                    tcp.payload(),
                    "{what}: the segments carry the payload in order"
                );
            }
        }
    }

    fn tcp4(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        f[12] = 0x08;
        f[14] = 0x45;
        let tot = (20 + 20 + payload) as u16;
        f[16..18].copy_from_slice(&tot.to_be_bytes());
        f[18..20].copy_from_slice(&0x1234u16.to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&1000u16.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[38..42].copy_from_slice(&100u32.to_be_bytes());
        f[46] = 0x50;
        f[47] = 0x19; // FIN|PSH|ACK
        for (i, b) in f[54..].iter_mut().enumerate() {
            *b = i as u8;
        }
        f
    }

    #[test]
    fn rss_input_of_the_microsoft_verification_flow_hashes_to_its_vector() {
        // RSS verification suite: 66.9.149.187:2794 → 161.142.100.80:1766, IPv4 with TCP.
        let mut f = tcp4(0);
        f[26..30].copy_from_slice(&[66, 9, 149, 187]);
        f[30..34].copy_from_slice(&[161, 142, 100, 80]);
        f[34..36].copy_from_slice(&2794u16.to_be_bytes());
        f[36..38].copy_from_slice(&1766u16.to_be_bytes());
        let key = &netvsc_proto::toeplitz::STANDARD_KEY;
        let mut buf = [0u8; 36];
        let (len, ty) = rss_input(&f, hash::TCP_IPV4 | hash::IPV4, &mut buf).unwrap();
        assert_eq!((len, ty), (12, hash::TCP_IPV4));
        assert_eq!(netvsc_proto::toeplitz::hash(key, &buf[..len]), 0x51cc_c178);
        let (len, ty) = rss_input(&f, hash::IPV4, &mut buf).unwrap();
        assert_eq!((len, ty), (8, hash::IPV4));
        assert_eq!(netvsc_proto::toeplitz::hash(key, &buf[..len]), 0x323e_8fc2);
    }

    #[test]
    fn wide_sum_matches_the_16_bit_definition() {
        let data: Vec<u8> = (0..3001u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in (0..64).chain([1499, 1500, 3000, 3001]) {
            for acc in [0u32, 0x1234, 0xFFFF, 0x0003_FFFE] {
                let mut reference = acc;
                for c in data[..len].chunks(2) {
                    let w = u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
                    reference += w;
                }
                assert_eq!(
                    fold(sum16(acc, &data[..len])),
                    fold(reference),
                    "len {len} acc {acc:#x}"
                );
            }
        }
        assert_eq!(
            fold(sum16(0, &[0xFF; 4096])),
            0,
            "all ones sums to negative zero"
        );
    }

    #[test]
    fn checksums_verify_after_fill() {
        let mut f = tcp4(100);
        assert!(fill_ipv4_checksum(&mut f));
        assert!(fill_l4_checksum(&mut f));
        assert_eq!(verify(&f), Some((Some(true), Some((true, true)))));
        f[60] ^= 1;
        assert_eq!(verify(&f), Some((Some(true), Some((true, false)))));
    }

    #[test]
    fn segmentation_splits_payload_and_fixes_headers() {
        let mut f = tcp4(2500);
        f[16] = 0;
        f[17] = 0;
        let mut segs = Vec::new();
        let mut scratch = Vec::new();
        let n = segment_tcp(&f, 1000, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(n, 3);
        let mut payload = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(verify(s), Some((Some(true), Some((true, true)))));
            let seq = u32::from_be_bytes(s[38..42].try_into().unwrap());
            assert_eq!(seq, 100 + 1000 * i as u32);
            assert_eq!(u16::from_be_bytes([s[18], s[19]]), 0x1234 + i as u16);
            assert_eq!(s[47] & 0x09 != 0, i == 2);
            payload.extend_from_slice(&s[54..]);
        }
        assert_eq!(payload, f[54..]);
    }

    #[test]
    fn vlan_strip_and_push_round_trip() {
        let f = tcp4(10);
        let mut tagged = Vec::new();
        push_tagged(&f, 0x2064, &mut tagged);
        let mut back = Vec::new();
        assert_eq!(strip_vlan(&tagged, &mut back), Some(0x2064));
        assert_eq!(back, f);
        assert_eq!(strip_vlan(&f, &mut back), None);
    }
}

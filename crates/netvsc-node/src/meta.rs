//! Per-packet metadata words shared with JS (`META_WORDS` u32 per packet, layout mirrored in src/meta.ts):
//! - word 0: VLAN — bit 31 set when a tag is present, bits 0..15 the 802.1Q TCI.
//! - word 1: rx: checksum verdicts, bits 0..1 IP and 2..3 L4 (0 unknown, 1 good, 2 bad).
//!   tx: offload request — bit 0 IPv4 header checksum, bit 1 TCP, bit 2 UDP, bit 3 IPv6,
//!   bits 8..15 L2 header length, bits 16..23 L3 header length (0 = 14 / 20 or 40).
//! - word 2: rx: RSS hash (valid when word 3 bit 31 is set); tx: unused.
//! - word 3: rx: bit 31 hash present, bits 0..30 hash type; tx: TSO MSS (non-zero asks for segmentation).

use netvsc::{Csum, L4Proto, RxMeta, TxMeta, TxOffload};

/// Words per packet.
pub const META_WORDS: usize = 4;
/// Word 0 / word 3 flag bit.
pub const PRESENT: u32 = 1 << 31;

pub const TX_IP_CSUM: u32 = 1;
pub const TX_TCP_CSUM: u32 = 2;
pub const TX_UDP_CSUM: u32 = 4;
pub const TX_IPV6: u32 = 8;

fn verdict(c: Csum) -> u32 {
    match c {
        Csum::Unknown => 0,
        Csum::Good => 1,
        Csum::Bad => 2,
    }
}

/// Write `m` into `out` (exactly `META_WORDS` long).
pub fn write_rx(out: &mut [u32], m: &RxMeta) {
    out[0] = m.vlan_tci.map_or(0, |t| PRESENT | u32::from(t));
    out[1] = verdict(m.ip_csum) | (verdict(m.l4_csum) << 2);
    out[2] = m.rss_hash.unwrap_or(0);
    out[3] = if m.rss_hash.is_some() {
        PRESENT | (m.hash_type & !PRESENT)
    } else {
        0
    };
}

/// Read a tx request from `w` (exactly `META_WORDS` long).
pub fn read_tx(w: &[u32]) -> TxMeta {
    let vlan_tci = (w[0] & PRESENT != 0).then_some(w[0] as u16);
    let flags = w[1];
    let ipv6 = flags & TX_IPV6 != 0;
    let l2 = match (flags >> 8) & 0xff {
        0 => 14,
        n => n as u16,
    };
    let l3 = match (flags >> 16) & 0xff {
        0 if ipv6 => 40,
        0 => 20,
        n => n as u16,
    };
    let offload = if w[3] != 0 {
        TxOffload::Tso {
            ipv6,
            mss: w[3],
            l2_len: l2,
            l3_len: l3,
        }
    } else if flags & (TX_IP_CSUM | TX_TCP_CSUM | TX_UDP_CSUM) != 0 {
        let l4 = if flags & TX_TCP_CSUM != 0 {
            L4Proto::Tcp
        } else if flags & TX_UDP_CSUM != 0 {
            L4Proto::Udp
        } else {
            L4Proto::None
        };
        TxOffload::Checksum {
            ipv6,
            ip_hdr: flags & TX_IP_CSUM != 0,
            l4,
            l2_len: l2,
            l3_len: l3,
        }
    } else {
        TxOffload::None
    };
    TxMeta { vlan_tci, offload }
}

//! Toeplitz hash as used by Windows RSS: for every set bit i of the input (MSB first), XOR in the 32-bit window
//! of the key starting at bit i. Inputs are the tuple `src addr, dst addr[, src port, dst port]` in network order.
//! A 40-byte key covers inputs up to 36 bytes (the IPv6 4-tuple); key bits past the end count as zero.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The standard Microsoft RSS key (also Linux netvsc's default).
pub const STANDARD_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Toeplitz hash of `input` with `key`.
pub fn hash(key: &[u8], input: &[u8]) -> u32 {
    let key_byte = |i: usize| key.get(i).copied().unwrap_or(0);
    // `window` holds key bits [pos, pos + 64); its top 32 bits are the current 32-bit window.
    let mut window = u64::from_be_bytes([
        key_byte(0),
        key_byte(1),
        key_byte(2),
        key_byte(3),
        key_byte(4),
        key_byte(5),
        key_byte(6),
        key_byte(7),
    ]);
    let mut result = 0u32;
    for (i, &byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                result ^= (window >> 32) as u32;
            }
            window <<= 1;
        }
        // After 8 shifts the low byte is empty: refill it with key byte i + 8.
        window |= u64::from(key_byte(i + 8));
    }
    result
}

/// IPv4 2-tuple hash (hash type IPV4).
pub fn hash_ipv4(key: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&src.octets());
    b[4..].copy_from_slice(&dst.octets());
    hash(key, &b)
}

/// IPv4 4-tuple hash (TCP_IPV4 / UDP_IPV4).
pub fn hash_ipv4_ports(key: &[u8], src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u32 {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&src.octets());
    b[4..8].copy_from_slice(&dst.octets());
    b[8..10].copy_from_slice(&sport.to_be_bytes());
    b[10..].copy_from_slice(&dport.to_be_bytes());
    hash(key, &b)
}

/// IPv6 2-tuple hash (hash type IPV6).
pub fn hash_ipv6(key: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> u32 {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(&src.octets());
    b[16..].copy_from_slice(&dst.octets());
    hash(key, &b)
}

/// IPv6 4-tuple hash (TCP_IPV6 / UDP_IPV6).
pub fn hash_ipv6_ports(key: &[u8], src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> u32 {
    let mut b = [0u8; 36];
    b[..16].copy_from_slice(&src.octets());
    b[16..32].copy_from_slice(&dst.octets());
    b[32..34].copy_from_slice(&sport.to_be_bytes());
    b[34..].copy_from_slice(&dport.to_be_bytes());
    hash(key, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Microsoft "Verifying the RSS Hash Calculation" vectors: (dst, dst port, src, src port, IP-only, with TCP).
    const V4: &[(&str, u16, &str, u16, u32, u32)] = &[
        (
            "161.142.100.80",
            1766,
            "66.9.149.187",
            2794,
            0x323e8fc2,
            0x51ccc178,
        ),
        (
            "65.69.140.83",
            4739,
            "199.92.111.2",
            14230,
            0xd718262a,
            0xc626b0ea,
        ),
        (
            "12.22.207.184",
            38024,
            "24.19.198.95",
            12898,
            0xd2d0a5de,
            0x5c2b394a,
        ),
        (
            "209.142.163.6",
            2217,
            "38.27.205.30",
            48228,
            0x82989176,
            0xafc7327f,
        ),
        (
            "202.188.127.2",
            1303,
            "153.39.163.191",
            44251,
            0x5d1809c5,
            0x10e828a2,
        ),
    ];
    const V6: &[(&str, u16, &str, u16, u32, u32)] = &[
        (
            "3ffe:2501:200:3::1",
            1766,
            "3ffe:2501:200:1fff::7",
            2794,
            0x2cc18cd5,
            0x40207d3d,
        ),
        (
            "ff02::1",
            4739,
            "3ffe:501:8::260:97ff:fe40:efab",
            14230,
            0x0f0c461c,
            0xdde51bbf,
        ),
        (
            "fe80::200:f8ff:fe21:67cf",
            38024,
            "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
            44251,
            0x4b61e985,
            0x02d1feef,
        ),
    ];

    #[test]
    fn microsoft_ipv4_vectors() {
        for &(d, dp, s, sp, ip, tcp) in V4 {
            let (s, d): (Ipv4Addr, Ipv4Addr) = (s.parse().unwrap(), d.parse().unwrap());
            assert_eq!(hash_ipv4(&STANDARD_KEY, s, d), ip, "{s} -> {d}");
            assert_eq!(
                hash_ipv4_ports(&STANDARD_KEY, s, d, sp, dp),
                tcp,
                "{s}:{sp} -> {d}:{dp}"
            );
        }
    }

    #[test]
    fn microsoft_ipv6_vectors() {
        for &(d, dp, s, sp, ip, tcp) in V6 {
            let (s, d): (Ipv6Addr, Ipv6Addr) = (s.parse().unwrap(), d.parse().unwrap());
            assert_eq!(hash_ipv6(&STANDARD_KEY, s, d), ip, "{s} -> {d}");
            assert_eq!(
                hash_ipv6_ports(&STANDARD_KEY, s, d, sp, dp),
                tcp,
                "{s}:{sp} -> {d}:{dp}"
            );
        }
    }

    #[test]
    fn bitwise_definition_agrees() {
        // Independent, slow formulation: result ^= key bits [i, i+32) for every set input bit i.
        fn slow(key: &[u8], input: &[u8]) -> u32 {
            let bit = |n: usize| key.get(n / 8).map_or(0, |b| (b >> (7 - n % 8)) & 1);
            let mut r = 0u32;
            for i in 0..input.len() * 8 {
                if input[i / 8] >> (7 - i % 8) & 1 == 1 {
                    r ^= (0..32).fold(0u32, |acc, j| (acc << 1) | u32::from(bit(i + j)));
                }
            }
            r
        }
        let input: Vec<u8> = (0u8..40).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        for n in [0, 1, 7, 12, 36, 40] {
            assert_eq!(
                hash(&STANDARD_KEY, &input[..n]),
                slow(&STANDARD_KEY, &input[..n]),
                "len {n}"
            );
        }
    }
}

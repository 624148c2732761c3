//! The generator's flows: flow i's 5-tuple comes from a [`FlowPattern`] in which every field counts up from its
//! start by i and wraps after its span (source/destination IPv4 ranges, port ranges, TCP/UDP/alternating), and
//! [`build_frame`] pre-builds a frame for it with valid IPv4 and TCP/UDP checksums. The IPv4 identification field
//! holds the flow index, which the sequence checker on the far side of a loop reads back.

use crate::host::frame;

/// Which L4 protocol the flows use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowProto {
    /// Even flows TCP, odd flows UDP (both RSS hash types exercised).
    #[default]
    Mixed,
    Tcp,
    Udp,
}

impl FlowProto {
    /// `tcp`, `udp` or `mixed`.
    pub fn parse(s: &str) -> Result<FlowProto, String> {
        match s {
            "tcp" => Ok(FlowProto::Tcp),
            "udp" => Ok(FlowProto::Udp),
            "mixed" => Ok(FlowProto::Mixed),
            other => Err(format!(
                "bad protocol '{}' (tcp, udp or mixed)",
                clip(other)
            )),
        }
    }

    fn is_tcp(self, flow: u32) -> bool {
        match self {
            FlowProto::Mixed => flow.is_multiple_of(2),
            FlowProto::Tcp => true,
            FlowProto::Udp => false,
        }
    }
}

/// A range of IPv4 addresses: `first`, `first + 1`, … (`count` of them, 1..=2^32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Range {
    pub first: u32,
    pub count: u64,
}

impl Ipv4Range {
    /// One address.
    pub const fn single(a: [u8; 4]) -> Self {
        Ipv4Range {
            first: u32::from_be_bytes(a),
            count: 1,
        }
    }

    /// `A.B.C.D` or `A.B.C.D-E.F.G.H` (inclusive, the second not below the first).
    pub fn parse(s: &str) -> Result<Ipv4Range, String> {
        let addr = |t: &str| {
            t.trim()
                .parse::<std::net::Ipv4Addr>()
                .map(u32::from)
                .map_err(|_| format!("bad IPv4 address '{}'", clip(t)))
        };
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (addr(a)?, addr(b)?),
            None => {
                let a = addr(s)?;
                (a, a)
            }
        };
        if b < a {
            return Err(format!("IPv4 range '{}' ends before it starts", clip(s)));
        }
        Ok(Ipv4Range {
            first: a,
            count: u64::from(b - a) + 1,
        })
    }

    /// Address of flow `i`.
    pub fn at(&self, i: u32) -> [u8; 4] {
        let off = (u64::from(i) % self.count.max(1)) as u32;
        self.first.wrapping_add(off).to_be_bytes()
    }
}

/// A range of ports: `first`, `first + 1`, … (`count` of them, 1..=65536, not past 65535).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub count: u32,
}

impl PortRange {
    /// One port.
    pub const fn single(p: u16) -> Self {
        PortRange { first: p, count: 1 }
    }

    /// `P` or `P-Q` (inclusive).
    pub fn parse(s: &str) -> Result<PortRange, String> {
        let port = |t: &str| {
            t.trim()
                .parse::<u16>()
                .map_err(|_| format!("bad port '{}' (0..65535)", clip(t)))
        };
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let a = port(s)?;
                (a, a)
            }
        };
        if b < a {
            return Err(format!("port range '{}' ends before it starts", clip(s)));
        }
        Ok(PortRange {
            first: a,
            count: u32::from(b - a) + 1,
        })
    }

    /// Port of flow `i`.
    pub fn at(&self, i: u32) -> u16 {
        let off = i % self.count.max(1);
        (u32::from(self.first) + off) as u16
    }
}

/// How flow i's 5-tuple is made: each field is `start + i mod span`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowPattern {
    pub proto: FlowProto,
    pub src_ip: Ipv4Range,
    pub dst_ip: Ipv4Range,
    pub src_port: PortRange,
    /// `None`: 80 for TCP flows, 5000 for UDP flows.
    pub dst_port: Option<PortRange>,
}

impl Default for FlowPattern {
    /// 10.1.0.0/16 → 10.0.0.1, source ports from 10000, TCP to 80 and UDP to 5000, alternating.
    fn default() -> Self {
        FlowPattern {
            proto: FlowProto::Mixed,
            src_ip: Ipv4Range {
                first: u32::from_be_bytes([10, 1, 0, 0]),
                count: 65536,
            },
            dst_ip: Ipv4Range::single([10, 0, 0, 1]),
            src_port: PortRange {
                first: 10000,
                count: 65536 - 10000,
            },
            dst_port: None,
        }
    }
}

/// The 5-tuple of one flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowTuple {
    pub tcp: bool,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
}

impl FlowPattern {
    /// Flow `i`'s 5-tuple.
    pub fn tuple(&self, i: u32) -> FlowTuple {
        let tcp = self.proto.is_tcp(i);
        FlowTuple {
            tcp,
            src: self.src_ip.at(i),
            dst: self.dst_ip.at(i),
            sport: self.src_port.at(i),
            dport: match self.dst_port {
                Some(r) => r.at(i),
                None if tcp => 80,
                None => 5000,
            },
        }
    }
}

/// Source MAC of generated frames.
pub const GENERATOR_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// Build one untagged IPv4 frame of `len` bytes (at least its headers) for flow `flow` with 5-tuple `t`; the IPv4
/// identification is the flow index (low 16 bits), checksums valid.
pub fn build_frame(dst: [u8; 6], flow: u32, t: &FlowTuple, len: usize) -> Vec<u8> {
    let l4_hdr = if t.tcp { 20 } else { 8 };
    let len = len.max(14 + 20 + l4_hdr);
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&GENERATOR_MAC);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((len - 14).min(65535) as u16).to_be_bytes());
    f[18..20].copy_from_slice(&(flow as u16).to_be_bytes());
    f[22] = 64;
    f[23] = if t.tcp { 6 } else { 17 };
    f[26..30].copy_from_slice(&t.src);
    f[30..34].copy_from_slice(&t.dst);
    f[34..36].copy_from_slice(&t.sport.to_be_bytes());
    f[36..38].copy_from_slice(&t.dport.to_be_bytes());
    if t.tcp {
        f[38..42].copy_from_slice(&(flow.wrapping_mul(7919)).to_be_bytes());
        f[46] = 0x50;
        f[47] = 0x18;
        f[48..50].copy_from_slice(&0xFFFFu16.to_be_bytes());
    } else {
        f[38..40].copy_from_slice(&((len - 34).min(65535) as u16).to_be_bytes());
    }
    for (i, b) in f[34 + l4_hdr..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(flow as u8);
    }
    frame::fill_ipv4_checksum(&mut f);
    frame::fill_l4_checksum(&mut f);
    f
}

/// Build one directed frame of `len` bytes for flow `flow` of the default pattern.
pub fn build_flow_frame(dst: [u8; 6], flow: u32, len: usize) -> Vec<u8> {
    build_frame(dst, flow, &FlowPattern::default().tuple(flow), len)
}

/// The classic simple IMIX, 7:4:1 of 64/570/1518-byte frames on the wire (FCS included), as the host hands frames
/// over (no FCS: 60/566/1514 bytes), interleaved in one 12-frame cycle.
pub const IMIX: [usize; 12] = [60, 566, 60, 60, 566, 60, 1514, 60, 566, 60, 60, 566];

/// `imix`, or sizes separated by commas, each within `min..=max`.
pub fn parse_sizes(s: &str, min: usize, max: usize) -> Result<Vec<usize>, String> {
    if s.trim() == "imix" {
        return Ok(IMIX.to_vec());
    }
    s.split(',')
        .map(|t| match t.trim().parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "bad frame size '{}' (want {min}..{max}, a comma-separated list, or imix)",
                clip(t)
            )),
        })
        .collect()
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(32).collect();
    if s.chars().count() > 32 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pattern_matches_the_historic_flows() {
        let p = FlowPattern::default();
        let t = p.tuple(0x0102);
        assert_eq!(t.src, [10, 1, 1, 2]);
        assert_eq!(t.dst, [10, 0, 0, 1]);
        assert_eq!(t.sport, 10000 + 0x0102);
        assert_eq!((t.tcp, t.dport), (true, 80));
        assert_eq!((p.tuple(3).tcp, p.tuple(3).dport), (false, 5000));
    }

    #[test]
    fn ranges_wrap_after_their_span() {
        let p = FlowPattern {
            proto: FlowProto::Udp,
            src_ip: Ipv4Range::parse("192.168.0.254-192.168.1.1").unwrap(),
            dst_ip: Ipv4Range::parse("10.9.9.9").unwrap(),
            src_port: PortRange::parse("65534-65535").unwrap(),
            dst_port: Some(PortRange::parse("7-9").unwrap()),
        };
        let srcs: Vec<[u8; 4]> = (0..5).map(|i| p.tuple(i).src).collect();
        assert_eq!(
            srcs,
            [
                [192, 168, 0, 254],
                [192, 168, 0, 255],
                [192, 168, 1, 0],
                [192, 168, 1, 1],
                [192, 168, 0, 254]
            ]
        );
        let ports: Vec<(u16, u16)> = (0..4)
            .map(|i| (p.tuple(i).sport, p.tuple(i).dport))
            .collect();
        assert_eq!(ports, [(65534, 7), (65535, 8), (65534, 9), (65535, 7)]);
        assert!((0..4).all(|i| !p.tuple(i).tcp));
        let f = build_frame([2; 6], 5, &p.tuple(5), 100);
        assert_eq!(&f[26..30], &[192, 168, 0, 255]);
        assert_eq!(
            &f[18..20],
            &[0, 5],
            "the flow index is the IPv4 identification"
        );
        assert_eq!(frame::verify(&f), Some((Some(true), Some((false, true)))));
    }

    #[test]
    fn parse_errors_say_what() {
        assert!(
            Ipv4Range::parse("10.0.0.5-10.0.0.1")
                .unwrap_err()
                .contains("ends before")
        );
        assert!(Ipv4Range::parse("10.0.0").unwrap_err().contains("bad IPv4"));
        assert!(PortRange::parse("70000").unwrap_err().contains("bad port"));
        assert_eq!(
            Ipv4Range::parse("0.0.0.0-255.255.255.255").unwrap().count,
            1 << 32
        );
        assert_eq!(FlowProto::parse("tcp"), Ok(FlowProto::Tcp));
        assert!(FlowProto::parse("sctp").is_err());
        assert_eq!(parse_sizes("64, 128", 60, 9018), Ok(vec![64, 128]));
        assert_eq!(parse_sizes("imix", 60, 9018).unwrap().len(), 12);
        assert!(parse_sizes("64,20", 60, 9018).unwrap_err().contains("'20'"));
    }

    #[test]
    fn imix_is_seven_four_one() {
        let count = |n| IMIX.iter().filter(|&&s| s == n).count();
        assert_eq!((count(60), count(566), count(1514)), (7, 4, 1));
    }
}

//! The data path in each mode, seen from the other end of a veth: rx order and bytes, tx bytes and the peer's
//! kernel counters, checksum completion, GSO segmentation, multi-queue spreading.
#![allow(unsafe_code)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{Raw, frame_len, mac, test_frame};
use vf_netdev::*;

fn open(ifindex: u32, prefer: Prefer, queues: u32) -> Option<Port> {
    match Port::open(
        ifindex,
        &PortConfig {
            queues,
            prefer,
            ..Default::default()
        },
    ) {
        Ok(p) => Some(p),
        Err(e) if matches!(prefer, Prefer::AfXdp) => {
            common::skip(&format!("AF_XDP unavailable: {e}"));
            None
        }
        Err(e) => panic!("Port::open: {e}"),
    }
}

fn expect_mode(port: &Port, prefer: Prefer) {
    match prefer {
        Prefer::AfPacket => assert_eq!(port.mode(), Mode::AfPacket),
        Prefer::AfXdp => assert!(matches!(port.mode(), Mode::AfXdpCopy | Mode::AfXdpZeroCopy)),
        Prefer::Auto => {}
    }
    eprintln!("mode {:?} ({})", port.mode(), port.mode().as_str());
}

const N: u32 = 10_000;

/// 10,000 mixed-size frames from the peer arrive in order, byte-exact.
fn rx_in_order(prefer: Prefer, tag: &str) {
    if !common::enter_netns() {
        return;
    }
    let p = common::veth(&format!("r{tag}a"), &format!("r{tag}b"), 1);
    let Some(mut port) = open(p.a, prefer, 1) else {
        return;
    };
    expect_mode(&port, prefer);
    let mut q = port.take_queues().pop().unwrap();
    let got = Arc::new(AtomicU32::new(0));
    let g2 = got.clone();
    let b = p.b;
    let sender = std::thread::spawn(move || {
        let raw = Raw::open(b);
        for seq in 0..N {
            while seq.wrapping_sub(g2.load(Ordering::Relaxed)) > 512 {
                std::thread::yield_now();
            }
            raw.send(&test_frame(seq, frame_len(seq), mac(1), mac(2)));
        }
    });
    let mut next = 0u32;
    let mut bad = None;
    let end = Instant::now() + Duration::from_secs(30);
    while next < N && Instant::now() < end {
        q.rx_burst(64, |d, _rx| {
            if bad.is_none() && d != test_frame(next, frame_len(next), mac(1), mac(2)).as_slice() {
                bad = Some((next, d.len()));
            }
            next += 1;
        })
        .unwrap();
        got.store(next, Ordering::Relaxed);
    }
    sender.join().unwrap();
    assert_eq!(bad, None, "first mismatch (expected seq, got len)");
    assert_eq!(next, N);
    let st = q.stats();
    assert_eq!(st.rx_packets.load(Ordering::Relaxed), N as u64);
    assert_eq!(st.rx_dropped.load(Ordering::Relaxed), 0);
}

/// Frames sent through tx_burst arrive at the peer byte-exact; the peer's kernel rx counters agree.
fn tx_byte_exact(prefer: Prefer, tag: &str) {
    if !common::enter_netns() {
        return;
    }
    let p = common::veth(&format!("t{tag}a"), &format!("t{tag}b"), 1);
    let Some(mut port) = open(p.a, prefer, 1) else {
        return;
    };
    expect_mode(&port, prefer);
    let mut q = port.take_queues().pop().unwrap();
    let raw = Raw::open(p.b);
    let peer = Netdev::open(p.b).unwrap();
    let before = peer.kernel_stats().unwrap();
    let total = 2000u32;
    let mut buf = vec![0u8; 4096];
    let mut seq = 0u32;
    let mut rseq = 0u32;
    let mut bytes = 0u64;
    let end = Instant::now() + Duration::from_secs(30);
    while rseq < total && Instant::now() < end {
        let frames: Vec<Vec<u8>> = (seq..(seq + 32).min(total))
            .map(|s| test_frame(s, frame_len(s), mac(2), mac(1)))
            .collect();
        let parts: Vec<[&[u8]; 2]> = frames.iter().map(|f| [&f[..14], &f[14..]]).collect();
        let tx: Vec<VfTx> = parts
            .iter()
            .map(|p| VfTx {
                segs: p,
                csum: None,
                gso: None,
            })
            .collect();
        let n = q.tx_burst(&tx).unwrap();
        seq += n as u32;
        q.poll_tx().unwrap();
        while rseq < seq {
            let Some(len) = raw.recv(&mut buf, Duration::from_secs(2)) else {
                panic!("frame {rseq} not received")
            };
            assert_eq!(
                &buf[..len],
                test_frame(rseq, frame_len(rseq), mac(2), mac(1)).as_slice(),
                "frame {rseq}"
            );
            bytes += len as u64;
            rseq += 1;
        }
    }
    assert_eq!(rseq, total);
    let after = peer.kernel_stats().unwrap();
    assert_eq!(after.rx_packets - before.rx_packets, total as u64);
    assert_eq!(after.rx_bytes - before.rx_bytes, bytes);
    let st = q.stats();
    assert_eq!(st.tx_packets.load(Ordering::Relaxed), total as u64);
    assert_eq!(st.tx_bytes.load(Ordering::Relaxed), bytes);
    assert_eq!(st.tx_errors.load(Ordering::Relaxed), 0);
}

fn csum16(data: &[u8], mut sum: u32) -> u32 {
    for c in data.chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    sum
}
fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Ethernet + IPv4 + L4 (`proto` 6 or 17) with the L4 checksum field seeded with the pseudo-header sum.
fn ip4_frame(proto: u8, payload: &[u8], seed_len: usize) -> (Vec<u8>, u16) {
    let l4h = if proto == 6 { 20 } else { 8 };
    let mut f = vec![0u8; 14 + 20 + l4h];
    f[..6].copy_from_slice(&mac(2));
    f[6..12].copy_from_slice(&mac(1));
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4h + payload.len()) as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let c = !fold(csum16(ip, 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let l4 = &mut f[34..];
    l4[0..2].copy_from_slice(&4000u16.to_be_bytes());
    l4[2..4].copy_from_slice(&5000u16.to_be_bytes());
    let off = if proto == 6 {
        l4[4..8].copy_from_slice(&1000u32.to_be_bytes());
        l4[12] = 5 << 4;
        l4[13] = 0x18;
        l4[14..16].copy_from_slice(&65535u16.to_be_bytes());
        16
    } else {
        l4[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        6
    };
    // Pseudo header: saddr, daddr, proto, L4 length.
    let mut ph = Vec::new();
    ph.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 0, proto]);
    ph.extend_from_slice(&(seed_len as u16).to_be_bytes());
    let seed = fold(csum16(&ph, 0));
    l4[off..off + 2].copy_from_slice(&seed.to_be_bytes());
    f.extend_from_slice(payload);
    (f, off as u16)
}

/// Verifies the L4 checksum of a received IPv4 frame.
fn l4_ok(f: &[u8]) -> bool {
    let proto = f[23];
    let l4 = &f[34..];
    let mut ph = Vec::new();
    ph.extend_from_slice(&f[26..34]);
    ph.extend_from_slice(&[0, proto]);
    ph.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    fold(csum16(l4, csum16(&ph, 0))) == 0xffff
}

/// Sets a legacy ethtool on/off value (STXCSUM = 0x17).
fn ethtool_set(name: &str, cmd: u32, val: u32) {
    // SAFETY: plain socket.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    let mut v = [cmd, val];
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    ifr[16..24].copy_from_slice(&(v.as_mut_ptr() as usize).to_ne_bytes());
    // SAFETY: ifreq with a pointer to a live ethtool_value.
    let r = unsafe { libc::ioctl(s, libc::SIOCETHTOOL, ifr.as_mut_ptr()) };
    // SAFETY: our fd.
    unsafe { libc::close(s) };
    assert_eq!(
        r,
        0,
        "ethtool {cmd:#x} on {name}: {}",
        std::io::Error::last_os_error()
    );
}

/// A csum request gives a correct UDP and TCP checksum at the peer; (AF_PACKET) a gso request for a 9000-byte
/// TCP payload arrives as MSS-sized segments.
fn csum_and_gso(prefer: Prefer, tag: &str) {
    if !common::enter_netns() {
        return;
    }
    let p = common::veth(&format!("c{tag}a"), &format!("c{tag}b"), 1);
    // veth would pass CHECKSUM_PARTIAL through untouched: with tx checksumming off on our end the kernel has to
    // complete the checksum (and segment in software) from our virtio header before the frame leaves.
    ethtool_set(&p.a_name, 0x17, 0);
    let Some(mut port) = open(p.a, prefer, 1) else {
        return;
    };
    expect_mode(&port, prefer);
    let mut q = port.take_queues().pop().unwrap();
    let raw = Raw::open(p.b);
    let mut buf = vec![0u8; 65536];
    for proto in [17u8, 6] {
        let payload: Vec<u8> = (0..777u32).map(|i| (i * 7 + 3) as u8).collect();
        let l4len = if proto == 6 { 20 } else { 8 } + payload.len();
        let (f, off) = ip4_frame(proto, &payload, l4len);
        let segs: [&[u8]; 1] = [&f];
        assert_eq!(
            q.tx_burst(&[VfTx {
                segs: &segs,
                csum: Some((34, off)),
                gso: None
            }])
            .unwrap(),
            1
        );
        q.poll_tx().unwrap();
        let n = raw
            .recv(&mut buf, Duration::from_secs(2))
            .expect("csum frame");
        assert_eq!(n, f.len());
        assert!(
            l4_ok(&buf[..n]),
            "proto {proto}: bad checksum {:02x?}",
            &buf[34..54]
        );
        assert_eq!(&buf[..34], &f[..34]);
        assert_eq!(&buf[34 + off as usize + 2..n], &f[34 + off as usize + 2..]);
    }
    // GSO.
    let payload: Vec<u8> = (0..9000u32).map(|i| (i % 251) as u8).collect();
    let (f, off) = ip4_frame(6, &payload, 20 + payload.len());
    let segs: [&[u8]; 1] = [&f];
    let gso = Gso {
        kind: GsoKind::Tcp4,
        mss: 1448,
        hdr_len: 54,
    };
    let r = q
        .tx_burst(&[VfTx {
            segs: &segs,
            csum: Some((34, off)),
            gso: Some(gso),
        }])
        .unwrap();
    if !q.tx_supports_gso() {
        assert_eq!(r, 0, "AF_XDP must refuse gso");
        return;
    }
    assert_eq!(r, 1);
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    while got.len() < payload.len() {
        let n = raw
            .recv(&mut buf, Duration::from_secs(2))
            .expect("gso segment");
        assert!(l4_ok(&buf[..n]), "segment checksum");
        sizes.push(n - 54);
        got.extend_from_slice(&buf[54..n]);
    }
    assert_eq!(got, payload);
    assert!(
        sizes[..sizes.len() - 1].iter().all(|&s| s == 1448),
        "{sizes:?}"
    );
    assert_eq!(sizes.len(), 9000usize.div_ceil(1448));
}

fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity on the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A 2-queue Port on a 2-queue veth receives on both queues and loses nothing.
fn two_queues(prefer: Prefer, tag: &str) {
    if !common::enter_netns() {
        return;
    }
    let p = common::veth(&format!("m{tag}a"), &format!("m{tag}b"), 2);
    let Some(mut port) = open(p.a, prefer, 2) else {
        return;
    };
    expect_mode(&port, prefer);
    assert_eq!(port.queue_count(), 2);
    let mut qs = port.take_queues();
    let total = 4000u32;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let b = p.b;
    let got = Arc::new(AtomicU32::new(0));
    let g2 = got.clone();
    let sender = std::thread::spawn(move || {
        let raw = Raw::open(b);
        for seq in 0..total {
            // AF_PACKET picks the tx queue (= peer rx queue) by CPU: alternate CPUs; vary the UDP port for the
            // fanout hash.
            if seq % 100 == 0 && cpus > 1 {
                pin((seq / 100) as usize % 2);
            }
            while seq.wrapping_sub(g2.load(Ordering::Relaxed)) > 256 {
                std::thread::yield_now();
            }
            let mut payload = seq.to_be_bytes().to_vec();
            payload.resize(100, 0xab);
            let (mut f, _) = ip4_frame(17, &payload, 108);
            f[..6].copy_from_slice(&mac(1));
            f[6..12].copy_from_slice(&mac(2));
            f[34..36].copy_from_slice(&(1000 + (seq % 64) as u16).to_be_bytes());
            raw.send(&f);
        }
    });
    let mut seen = vec![false; total as usize];
    let mut per_q = [0u32; 2];
    let end = Instant::now() + Duration::from_secs(30);
    let mut count = 0u32;
    let mut dups = 0u32;
    while count < total && Instant::now() < end {
        for (i, q) in qs.iter_mut().enumerate() {
            q.rx_burst(64, |d, _| {
                if d.len() >= 46 && d[12..14] == [8, 0] && d[23] == 17 {
                    let s = u32::from_be_bytes([d[42], d[43], d[44], d[45]]) as usize;
                    if s < seen.len() && !seen[s] {
                        seen[s] = true;
                        per_q[i] += 1;
                        count += 1;
                    } else if s < seen.len() {
                        dups += 1;
                    }
                }
            })
            .unwrap();
        }
        got.store(count, Ordering::Relaxed);
    }
    sender.join().unwrap();
    assert_eq!(count, total, "lost {}", total - count);
    // Each frame reaches one socket of the fanout group, once.
    assert_eq!(dups, 0, "frames received twice (per queue {per_q:?})");
    if cpus > 1 {
        assert!(per_q[0] > 0 && per_q[1] > 0, "per queue {per_q:?}");
    } else {
        common::skip("one CPU: cannot spread the peer's tx queues");
    }
    eprintln!("per queue {per_q:?}");
}

#[test]
fn af_packet_rx_in_order() {
    rx_in_order(Prefer::AfPacket, "p");
}
#[test]
fn af_packet_tx_byte_exact() {
    tx_byte_exact(Prefer::AfPacket, "p");
}
#[test]
fn af_packet_csum_and_gso() {
    csum_and_gso(Prefer::AfPacket, "p");
}
#[test]
fn af_packet_two_queues() {
    two_queues(Prefer::AfPacket, "p");
}
#[test]
fn af_xdp_rx_in_order() {
    rx_in_order(Prefer::AfXdp, "x");
}
#[test]
fn af_xdp_tx_byte_exact() {
    tx_byte_exact(Prefer::AfXdp, "x");
}
#[test]
fn af_xdp_csum_and_gso_refused() {
    csum_and_gso(Prefer::AfXdp, "x");
}
#[test]
fn af_xdp_two_queues() {
    two_queues(Prefer::AfXdp, "x");
}

/// VLAN and checksum metadata: on AF_PACKET the kernel strips the tag and reports it in `vlan_tci`, and a frame
/// the peer sent with a checksum request (CHECKSUM_PARTIAL through the veth) is `csum_ok`; AF_XDP sees the tagged
/// frame as it is and reports neither.
fn rx_metadata(prefer: Prefer, tag: &str) {
    if !common::enter_netns() {
        return;
    }
    let p = common::veth(&format!("v{tag}a"), &format!("v{tag}b"), 1);
    let Some(mut port) = open(p.a, prefer, 1) else {
        return;
    };
    expect_mode(&port, prefer);
    let mut q = port.take_queues().pop().unwrap();
    let raw = Raw::open(p.b);
    let plain = test_frame(7, 200, mac(1), mac(2));
    let mut tagged = plain[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x20, 0x05]);
    tagged.extend_from_slice(&plain[12..]);
    raw.send(&tagged);
    let mut got: Vec<(Vec<u8>, VfRx)> = Vec::new();
    let end = Instant::now() + Duration::from_secs(2);
    while got.is_empty() && Instant::now() < end {
        q.rx_burst(8, |d, rx| got.push((d.to_vec(), rx))).unwrap();
    }
    assert_eq!(got.len(), 1);
    if port.mode() == Mode::AfPacket {
        assert_eq!(got[0].0, plain);
        assert_eq!(got[0].1.vlan_tci, Some(0x2005));
        assert!(!got[0].1.csum_ok);
    } else {
        assert_eq!(got[0].0, tagged);
        assert_eq!(
            got[0].1,
            VfRx {
                vlan_tci: None,
                csum_ok: false
            }
        );
    }
    // A checksum-offloaded UDP frame from the peer's own AF_PACKET queue.
    let mut peer = Port::open(
        p.b,
        &PortConfig {
            prefer: Prefer::AfPacket,
            ..Default::default()
        },
    )
    .unwrap();
    let mut pq = peer.take_queues().pop().unwrap();
    let (mut f, off) = ip4_frame(17, &[1, 2, 3, 4, 5, 6, 7, 8, 9], 17);
    f[..6].copy_from_slice(&mac(1));
    f[6..12].copy_from_slice(&mac(2));
    let segs: [&[u8]; 1] = [&f];
    assert_eq!(
        pq.tx_burst(&[VfTx {
            segs: &segs,
            csum: Some((34, off)),
            gso: None
        }])
        .unwrap(),
        1
    );
    got.clear();
    let end = Instant::now() + Duration::from_secs(2);
    while got.is_empty() && Instant::now() < end {
        q.rx_burst(8, |d, rx| got.push((d.to_vec(), rx))).unwrap();
    }
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.vlan_tci, None);
    if port.mode() == Mode::AfPacket {
        assert!(
            got[0].1.csum_ok,
            "CHECKSUM_PARTIAL frame not reported csum_ok"
        );
    }
}

#[test]
fn af_packet_rx_metadata() {
    rx_metadata(Prefer::AfPacket, "p");
}
#[test]
fn af_xdp_rx_metadata() {
    rx_metadata(Prefer::AfXdp, "x");
}

/// Frames the kernel could not put in a full ring are counted in `rx_dropped`; nothing goes missing uncounted.
fn rx_drops_counted(prefer: Prefer, tag: &str) {
    if !common::enter_netns() {
        return;
    }
    let p = common::veth(&format!("o{tag}a"), &format!("o{tag}b"), 1);
    let cfg = PortConfig {
        queues: 1,
        prefer,
        ring_frames: 16,
        frame_size: 4096,
        ..PortConfig::default()
    };
    let mut port = match Port::open(p.a, &cfg) {
        Ok(p) => p,
        Err(e) => return common::skip(&format!("{prefer:?} unavailable: {e}")),
    };
    expect_mode(&port, prefer);
    let mut q = port.take_queues().pop().unwrap();
    let raw = Raw::open(p.b);
    let sent = 3000u64;
    for s in 0..sent as u32 {
        raw.send(&test_frame(s, 1000, mac(1), mac(2)));
    }
    let mut got = 0u64;
    let end = Instant::now() + Duration::from_millis(300);
    while Instant::now() < end {
        got += q.rx_burst(64, |_, _| {}).unwrap() as u64;
    }
    let st = q.stats();
    let dropped = st.rx_dropped.load(Ordering::Relaxed);
    eprintln!("{prefer:?}: received {got}, dropped {dropped}");
    assert_eq!(st.rx_packets.load(Ordering::Relaxed), got);
    assert!(dropped > 0);
    if port.mode() == Mode::AfPacket {
        assert_eq!(got + dropped, sent);
    } else {
        // veth's own NAPI ring may also drop under load (counted by veth, not by the socket).
        assert!(got + dropped <= sent);
    }
}

#[test]
fn af_packet_rx_drops_counted() {
    rx_drops_counted(Prefer::AfPacket, "p");
}
#[test]
fn af_xdp_rx_drops_counted() {
    rx_drops_counted(Prefer::AfXdp, "x");
}

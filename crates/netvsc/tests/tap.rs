//! The driver on the emulator's TAP backend, with a real Linux netdev on the other side (root only).
//!
//! Guest → Linux: UDP frames the driver sends must reach a kernel UDP socket on the TAP's address
//! (so the kernel parsed and accepted them), be counted by the netdev, and, when `dumpcap` is
//! installed, be captured byte for byte. Linux → guest: datagrams a kernel socket sends to the
//! guest's address (a permanent neighbour entry) must come out of `rx_burst` intact, with the
//! host's, the driver's and the netdev's counters agreeing.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hv_emu::backend::BackendConfig;
use netvsc::{Csum, RxPacket, TxMeta, TxPacket};

/// Payload lengths of the guest → Linux datagrams: a runt padded to 60 bytes up to a full 1514 frame.
const TX_PAYLOADS: [usize; 8] = [6, 18, 64, 200, 512, 1000, 1400, 1472];
/// Payload lengths of the Linux → guest datagrams.
const RX_PAYLOADS: [usize; 8] = [1, 17, 100, 256, 700, 1024, 1300, 1472];
const GUEST_PORT: u16 = 40_001;
const LINUX_PORT: u16 = 40_002;

/// Why this machine cannot run the test, if it cannot.
fn skip_reason() -> Option<String> {
    // /proc/self belongs to the effective uid: no libc call needed to learn it.
    match std::fs::metadata("/proc/self") {
        Ok(m) if m.uid() == 0 => {}
        Ok(m) => return Some(format!("not root (euid {})", m.uid())),
        Err(e) => return Some(format!("/proc/self: {e}")),
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("iproute2 `ip` not runnable".into()),
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A counter of the netdev (`/sys/class/net/<if>/statistics/<what>`).
fn netdev_stat(ifname: &str, what: &str) -> u64 {
    let p = format!("/sys/class/net/{ifname}/statistics/{what}");
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    s.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{p}: {s:?}: {e}"))
}

fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

/// Ones'-complement sum of `b` folded to 16 bits, starting from `acc`.
fn csum_add(mut acc: u32, b: &[u8]) -> u32 {
    for c in b.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// The UDP checksum over the IPv4 pseudo header and `udp` (header + payload); 0 is sent as 0xffff.
fn udp_csum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut acc = csum_add(0, &src.octets());
    acc = csum_add(acc, &dst.octets());
    acc = csum_add(acc, &[0, 17]);
    acc = csum_add(acc, &(udp.len() as u16).to_be_bytes());
    let c = !(csum_add(acc, udp) as u16);
    if c == 0 { 0xffff } else { c }
}

/// An Ethernet/IPv4/UDP frame with correct checksums, padded to the 60-byte minimum.
#[allow(clippy::too_many_arguments)]
fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    id: u16,
    payload: &[u8],
) -> Vec<u8> {
    let ip_len = 20 + 8 + payload.len();
    let mut f = Vec::with_capacity((14 + ip_len).max(60));
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut iph = [0u8; 20];
    iph[0] = 0x45;
    iph[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    iph[4..6].copy_from_slice(&id.to_be_bytes());
    iph[6] = 0x40; // DF
    iph[8] = 64;
    iph[9] = 17;
    iph[12..16].copy_from_slice(&src.octets());
    iph[16..20].copy_from_slice(&dst.octets());
    let c = !(csum_add(0, &iph) as u16);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&iph);
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let c = udp_csum(src, dst, &udp);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&udp);
    f.resize(f.len().max(60), 0);
    f
}

/// Payload `k` of a direction: its index, its length and a pattern no other payload shares.
fn payload(dir: u8, k: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| match i {
            0 => dir,
            1 => k as u8,
            _ => (i as u8).wrapping_mul(31).wrapping_add(k as u8 * 7 + dir),
        })
        .collect()
}

/// `dumpcap` writing every frame from `src` on `ifname` to a pcap file, once it has said it is
/// capturing; `None` when dumpcap is not installed.
fn start_capture(ifname: &str, src: [u8; 6], file: &Path) -> Option<Child> {
    let filter = format!("ether src {}", fmt_mac(src));
    let spawned = Command::new("dumpcap")
        .args([
            "-i",
            ifname,
            "-f",
            &filter,
            "-P",
            "-q",
            "-a",
            "duration:15",
            "-w",
        ])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            std::io::Write::write_fmt(
                &mut std::io::stderr(),
                format_args!("SKIP capture check: dumpcap: {e}\n"),
            )
            .ok();
            return None;
        }
    };
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            let st = child.wait().unwrap();
            panic!("dumpcap exited ({st}) before capturing: {said}");
        }
        said.push_str(&line);
        if line.starts_with("Capturing on") {
            break;
        }
    }
    // Keep draining stderr so dumpcap never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    Some(child)
}

/// The complete frames so far of a classic little-endian pcap file with Ethernet link type (a
/// record still being written is left out).
fn read_pcap(file: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(file).unwrap_or_default();
    if b.len() < 24 {
        return Vec::new();
    }
    assert_eq!(&b[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "pcap magic");
    assert_eq!(
        u32::from_le_bytes(b[20..24].try_into().unwrap()),
        1,
        "link type Ethernet"
    );
    let mut frames = Vec::new();
    let mut off = 24;
    while off + 16 <= b.len() {
        let incl = u32::from_le_bytes(b[off + 8..off + 12].try_into().unwrap()) as usize;
        let orig = u32::from_le_bytes(b[off + 12..off + 16].try_into().unwrap()) as usize;
        assert_eq!(incl, orig, "capture truncated a frame");
        let Some(data) = b.get(off + 16..off + 16 + incl) else {
            break;
        };
        frames.push(data.to_vec());
        off += 16 + incl;
    }
    frames
}

/// EtherType of the guest's capture probes (IEEE local experimental): never delivered to a socket.
const PROBE_TYPE: u16 = 0x88b5;

fn is_probe(f: &[u8]) -> bool {
    f.len() >= 14 && u16_at(f, 12) == PROBE_TYPE
}

/// Send probe frames from the guest until the capture file holds one: dumpcap says
/// "Capturing on" before its socket sees traffic.
fn wait_capture_ready(q: &mut netvsc::QueuePair, probe: &[u8], file: &Path) {
    let segs: [&[u8]; 1] = [probe];
    let pkt = [TxPacket {
        segs: &segs,
        meta: TxMeta::default(),
    }];
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        send_all(q, &pkt);
        drain_tx(q);
        std::thread::sleep(Duration::from_millis(50));
        if read_pcap(file).iter().any(|f| is_probe(f)) {
            return;
        }
        assert!(Instant::now() < until, "dumpcap never captured a probe");
    }
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// The Linux side's addresses: a /30 in 198.18.0.0/15 (benchmarking range) chosen by pid.
fn addresses() -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (std::process::id() % 32_768) * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

#[test]
fn frames_cross_a_real_tap_both_ways() {
    if let Some(why) = skip_reason() {
        std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("SKIP: {why}\n")).ok();
        return;
    }
    let t0 = Instant::now();
    let ifname = format!("hvt{}", std::process::id());
    // Root without CAP_NET_ADMIN (some containers) cannot create the interface.
    match hv_emu::backend::Tap::open(&ifname) {
        Ok(tap) => drop(tap),
        Err(e) => {
            std::io::Write::write_fmt(
                &mut std::io::stderr(),
                format_args!("SKIP: cannot create TAP {ifname}: {e}\n"),
            )
            .ok();
            return;
        }
    }
    let (linux_ip, guest_ip) = addresses();
    let rig = rig(BackendConfig::Tap {
        name: ifname.clone(),
    });
    let sys = PathBuf::from(format!("/sys/class/net/{ifname}"));
    assert!(sys.exists(), "opening the backend created {ifname}");
    let guest_mac = rig.emu.config().mac;
    let linux_mac = parse_mac(&std::fs::read_to_string(sys.join("address")).unwrap());

    // Quiet link: no IPv6 autoconfiguration traffic; the guest reachable without ARP.
    let v6 = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    if Path::new(&v6).exists() {
        std::fs::write(&v6, "1").unwrap();
    }
    ip(&["addr", "add", &format!("{linux_ip}/30"), "dev", &ifname]);
    ip(&["link", "set", &ifname, "up"]);
    let (gip, gmac) = (guest_ip.to_string(), fmt_mac(guest_mac));
    ip(&[
        "neigh",
        "replace",
        &gip,
        "lladdr",
        &gmac,
        "dev",
        &ifname,
        "nud",
        "permanent",
    ]);

    let mut dev = rig.open(quick()).unwrap();
    assert_eq!(dev.mac(), guest_mac, "driver reads the host's MAC");
    dev.start().unwrap();
    let mut queues = dev.queues();

    // ---- guest → Linux ----
    let sock = UdpSocket::bind(SocketAddrV4::new(linux_ip, LINUX_PORT)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let sent: Vec<Vec<u8>> = TX_PAYLOADS
        .iter()
        .enumerate()
        .map(|(k, &len)| {
            let p = payload(1, k, len);
            udp_frame(
                linux_mac, guest_mac, guest_ip, linux_ip, GUEST_PORT, LINUX_PORT, k as u16, &p,
            )
        })
        .collect();
    let sent_bytes: u64 = sent.iter().map(|f| f.len() as u64).sum();
    let pcap = rig.path().join("tap-tx.pcap");
    let capture = start_capture(&ifname, guest_mac, &pcap);
    if capture.is_some() {
        let mut probe = vec![0u8; 60];
        probe[..6].copy_from_slice(&linux_mac);
        probe[6..12].copy_from_slice(&guest_mac);
        probe[12..14].copy_from_slice(&PROBE_TYPE.to_be_bytes());
        wait_capture_ready(&mut queues[0], &probe, &pcap);
    }
    let (o0, s0) = (dev.stats(), rig.emu.stats());
    let rx_packets0 = netdev_stat(&ifname, "rx_packets");
    let rx_bytes0 = netdev_stat(&ifname, "rx_bytes");
    send_frames(&mut queues[0], &sent);
    drain_tx(&mut queues[0]);

    let mut buf = [0u8; 2048];
    for (k, &len) in TX_PAYLOADS.iter().enumerate() {
        let (n, from) = sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("kernel socket got datagram {k} of {}: {e}", sent.len()));
        assert_eq!(
            from,
            SocketAddrV4::new(guest_ip, GUEST_PORT).into(),
            "datagram {k} source"
        );
        assert_eq!(&buf[..n], payload(1, k, len), "datagram {k} payload");
    }
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(sock.recv_from(&mut buf).is_err(), "no extra datagram");
    let t = dev.stats();
    assert_eq!(
        (t.opackets - o0.opackets, t.obytes - o0.obytes, t.oerrors),
        (sent.len() as u64, sent_bytes, 0)
    );
    let s = rig.emu.stats();
    let g2h = s.totals.guest_to_host_frames - s0.totals.guest_to_host_frames;
    assert_eq!(g2h, sent.len() as u64);
    assert_eq!(
        s.totals.guest_to_host_bytes - s0.totals.guest_to_host_bytes,
        sent_bytes
    );
    assert_eq!(s.backend["kind"], "tap");
    let backend_tx = |s: &hv_emu::EmuStats| s.backend["tx"].as_u64().unwrap();
    assert_eq!(
        backend_tx(&s) - backend_tx(&s0),
        sent.len() as u64,
        "backend wrote every frame"
    );
    assert_eq!(s.backend["txErrors"], 0);
    assert_eq!(
        netdev_stat(&ifname, "rx_packets") - rx_packets0,
        sent.len() as u64,
        "netdev received every frame"
    );
    assert_eq!(netdev_stat(&ifname, "rx_bytes") - rx_bytes0, sent_bytes);
    if let Some(mut child) = capture {
        let real = |all: Vec<Vec<u8>>| -> Vec<Vec<u8>> {
            all.into_iter().filter(|f| !is_probe(f)).collect()
        };
        let complete = wait_for(5, || real(read_pcap(&pcap)).len() >= sent.len());
        child.kill().unwrap();
        child.wait().unwrap();
        let got = real(read_pcap(&pcap));
        assert!(complete, "{} of {} frames captured", got.len(), sent.len());
        assert_eq!(got.len(), sent.len(), "frames captured on {ifname}");
        for (k, (g, w)) in got.iter().zip(&sent).enumerate() {
            assert_eq!(g, w, "captured frame {k} differs from what the driver sent");
        }
        eprintln!("guest → Linux: {} frames captured byte for byte", got.len());
    }

    // ---- Linux → guest ----
    let h2g0 = s.totals.host_to_guest_frames;
    let backend_rx0 = s.backend["rx"].as_u64().unwrap();
    let tx_packets0 = netdev_stat(&ifname, "tx_packets");
    let out_sock = UdpSocket::bind(SocketAddrV4::new(linux_ip, 0)).unwrap();
    let out_port = out_sock.local_addr().unwrap().port();
    for (k, &len) in RX_PAYLOADS.iter().enumerate() {
        let n = out_sock
            .send_to(&payload(2, k, len), SocketAddrV4::new(guest_ip, GUEST_PORT))
            .unwrap();
        assert_eq!(n, len);
    }
    let mut out: Vec<RxPacket> = (0..32).map(|_| RxPacket::with_capacity(2048)).collect();
    let mut frames: Vec<(Vec<u8>, netvsc::RxMeta)> = Vec::new();
    let mut matched = 0;
    let mut viewed = vec![0u8; 2048];
    let is_ours = |f: &[u8]| {
        f.len() >= 42
            && u16_at(f, 12) == 0x0800
            && f[23] == 17
            && f[26..30] == linux_ip.octets()
            && u16_at(f, 36) == GUEST_PORT
    };
    let collected = wait_for(5, || {
        for q in queues.iter_mut() {
            let n = q.rx_burst(&mut out);
            for p in &mut out[..n] {
                let data = match p.view.take() {
                    Some(v) => {
                        let len = (v.len as usize).min(viewed.len());
                        q.read_view(&v, &mut viewed[..len]).unwrap();
                        q.release(v);
                        viewed[..len].to_vec()
                    }
                    None => p.data.clone(),
                };
                matched += usize::from(is_ours(&data));
                frames.push((data, p.meta));
            }
        }
        matched >= RX_PAYLOADS.len()
    });
    assert!(
        collected,
        "{matched} of {} datagrams reached rx_burst ({} frames in all)",
        RX_PAYLOADS.len(),
        frames.len()
    );
    let ours: Vec<&(Vec<u8>, netvsc::RxMeta)> = frames.iter().filter(|(f, _)| is_ours(f)).collect();
    for (k, ((f, meta), &len)) in ours.iter().zip(&RX_PAYLOADS).enumerate() {
        let want = payload(2, k, len);
        assert_eq!(f.len(), 42 + len, "frame {k} length (the TAP does not pad)");
        assert_eq!(meta.len as usize, f.len(), "frame {k} metadata length");
        assert_eq!(f[..6], guest_mac, "frame {k} to the guest's MAC");
        assert_eq!(f[6..12], linux_mac, "frame {k} from the TAP's MAC");
        assert_eq!(u16_at(f, 16) as usize, 28 + len, "frame {k} IP length");
        assert_eq!(csum_add(0, &f[14..34]), 0xffff, "frame {k} IP checksum");
        assert_eq!(f[30..34], guest_ip.octets(), "frame {k} IP destination");
        assert_eq!(u16_at(f, 34), out_port, "frame {k} source port");
        assert_eq!(u16_at(f, 38) as usize, 8 + len, "frame {k} UDP length");
        let udp = &f[34..42 + len];
        let mut zeroed = udp.to_vec();
        zeroed[6..8].fill(0);
        assert_eq!(
            u16_at(f, 40),
            udp_csum(linux_ip, guest_ip, &zeroed),
            "frame {k} UDP checksum"
        );
        assert_eq!(&f[42..42 + len], want.as_slice(), "frame {k} payload");
        assert_eq!(
            (meta.ip_csum, meta.l4_csum),
            (Csum::Good, Csum::Good),
            "frame {k} checksum verdicts"
        );
    }
    // Counters settle: every frame the kernel handed the TAP was read by the backend, delivered
    // by the host and counted by the driver.
    let settled = wait_for(3, || {
        for q in queues.iter_mut() {
            let n = q.rx_burst(&mut out);
            for p in &mut out[..n] {
                if let Some(v) = p.view.take() {
                    q.release(v);
                }
            }
        }
        let s = rig.emu.stats();
        let d = dev.stats();
        let h2g = s.totals.host_to_guest_frames;
        s.backend["rx"].as_u64().unwrap() - backend_rx0
            == netdev_stat(&ifname, "tx_packets") - tx_packets0
            && h2g == d.ipackets + d.imissed + d.ierrors
    });
    let s = rig.emu.stats();
    let d = dev.stats();
    assert!(
        settled,
        "counters never agreed: host {:?}, driver {d:?}, backend {}",
        s.totals, s.backend
    );
    assert_eq!((d.imissed, d.ierrors), (0, 0), "driver dropped nothing");
    assert_eq!(
        s.totals.host_to_guest_frames, d.ipackets,
        "host delivered == driver ipackets"
    );
    assert!(
        s.totals.host_to_guest_frames - h2g0 >= RX_PAYLOADS.len() as u64,
        "host delivered the datagrams"
    );
    assert_eq!(
        s.backend["rx"].as_u64().unwrap() - backend_rx0,
        netdev_stat(&ifname, "tx_packets") - tx_packets0,
        "backend read every frame the netdev sent"
    );
    eprintln!(
        "Linux → guest: {} datagrams verified ({} frames in all, host {} delivered, driver ipackets {})",
        ours.len(),
        frames.len(),
        s.totals.host_to_guest_frames,
        d.ipackets
    );

    drop(queues);
    dev.close().unwrap();
    drop(rig);
    assert!(
        wait_for(2, || !sys.exists()),
        "{ifname} removed when the emulator closed the TAP"
    );
    eprintln!("tap test took {:.2} s", t0.elapsed().as_secs_f64());
}

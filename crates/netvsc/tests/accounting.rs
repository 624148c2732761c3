//! Every frame accounted for, per backend: what the driver sent (or the backend produced) equals what was delivered
//! plus the drops by reason, exactly, from the emulator's and the driver's counters — sink, loopback (with its
//! overflow), generator (with link-down and no-buffer drops), the pcap mirror (records = both directions), and a
//! TAP (root: writes refused while it is down are `backendTxError`; what the kernel sends reaches the driver or a
//! drop reason).

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::*;
use hv_emu::EmuStats;
use hv_emu::backend::{BackendConfig, GeneratorConfig};
use hv_emu::stats::Drops;
use netvsc::{RxPacket, TxMeta, TxPacket};

/// Host drops on the receive path (host → guest).
fn rx_drops(d: &Drops) -> u64 {
    d.no_rx_buffer + d.ring_full + d.filtered + d.not_ready + d.too_large + d.link_down
}

/// Send `n` frames of `len` bytes to `dst` on `q` in bursts of 32 (waiting on backpressure), then drain.
fn send_n(q: &mut netvsc::QueuePair, n: usize, len: usize, dst: [u8; 6]) {
    let frames: Vec<Vec<u8>> = (0..32)
        .map(|k| ip_frame(len, dst, k % 2 == 0, k as u8))
        .collect();
    let segs: Vec<[&[u8]; 1]> = frames.iter().map(|f| [&f[..]]).collect();
    let pkts: Vec<TxPacket<'_>> = segs
        .iter()
        .map(|s| TxPacket {
            segs: s,
            meta: TxMeta::default(),
        })
        .collect();
    let mut left = n;
    while left > 0 {
        let k = left.min(32);
        send_all(q, &pkts[..k]);
        left -= k;
    }
    drain_tx(q);
}

/// Receive until nothing arrived for `quiet`; returns the frames received.
fn drain_rx(q: &mut netvsc::QueuePair, quiet: Duration) -> u64 {
    receive(q, quiet, Duration::from_secs(60))
}

/// Receive until nothing arrived for `quiet` or `most` passed; returns the frames received.
fn receive(q: &mut netvsc::QueuePair, quiet: Duration, most: Duration) -> u64 {
    let mut out: Vec<RxPacket> = (0..32).map(|_| RxPacket::with_capacity(1600)).collect();
    let mut got = 0;
    let start = std::time::Instant::now();
    let mut idle = start;
    while idle.elapsed() < quiet && start.elapsed() < most {
        let n = q.rx_burst(&mut out);
        for p in &mut out[..n] {
            if let Some(v) = p.view.take() {
                q.release(v);
            }
        }
        got += n as u64;
        if n > 0 {
            idle = std::time::Instant::now();
        } else {
            std::thread::yield_now();
        }
    }
    got
}

/// Wait until two looks at the host's stats 50 ms apart agree (nothing in flight).
fn settled(rig: &Rig) -> EmuStats {
    let key = |s: &EmuStats| {
        (
            s.totals.guest_to_host_frames,
            s.totals.host_to_guest_frames,
            s.totals.drops,
            s.backend.clone(),
        )
    };
    let mut last = rig.emu.stats();
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(50));
        let now = rig.emu.stats();
        if key(&now) == key(&last) {
            return now;
        }
        last = now;
    }
    panic!("the host's counters never settled: {:?}", last.totals);
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

#[test]
fn sink_sent_equals_received_plus_drops() {
    let rig = rig(BackendConfig::Sink);
    let mut dev = rig.open(quick()).unwrap();
    dev.start().unwrap();
    let mut q = dev.queues().remove(0);
    send_n(&mut q, 5000, 64, PEER_MAC);
    send_n(&mut q, 1000, 1514, PEER_MAC);
    let s = settled(&rig);
    let d = dev.stats();
    let b = &s.backend;
    let drops = s.totals.drops;
    eprintln!(
        "sink: driver sent {}, host {} -> sink {} + drops {drops:?}",
        d.opackets,
        s.totals.guest_to_host_frames,
        n(b, "frames")
    );
    assert_eq!(d.opackets, 6000);
    assert_eq!(d.oerrors, 0);
    assert_eq!(
        s.totals.guest_to_host_frames, d.opackets,
        "the host took every frame the driver completed"
    );
    assert_eq!(
        d.opackets,
        n(b, "frames") + drops.tx_malformed + drops.backend_tx_error + drops.backend_overflow,
        "sent = sink frames + tx drops by reason"
    );
    assert_eq!(drops.total(), 0);
    dev.close().unwrap();
}

#[test]
fn loopback_sent_equals_received_plus_drops_overflow_included() {
    // A 2 MiB receive buffer (~1,100 sub-allocations) and a 4,096-frame reflect queue: 30,000 frames sent without
    // receiving must overflow one or the other.
    let rig = rig_with(|c| {
        c.backend = BackendConfig::Loopback;
        c.recv_size = 2 << 20;
    });
    let mut dev = rig.open(quick()).unwrap();
    dev.start().unwrap();
    let mut q = dev.queues().remove(0);
    let mac = dev.mac();
    send_n(&mut q, 30_000, 64, mac);
    let got = drain_rx(&mut q, Duration::from_millis(500));
    let s = settled(&rig);
    let d = dev.stats();
    let b = &s.backend;
    let drops = s.totals.drops;
    eprintln!(
        "loopback: driver sent {}, reflected {} + overflow {}; delivered {} + host rx drops {}; driver received {got} \
         + missed {} ({drops:?})",
        d.opackets,
        n(b, "reflected"),
        n(b, "overflow"),
        s.totals.host_to_guest_frames,
        rx_drops(&drops),
        d.imissed
    );
    assert_eq!(d.opackets, 30_000);
    assert_eq!(s.totals.guest_to_host_frames, d.opackets);
    assert_eq!(n(b, "queued"), 0, "nothing left in the reflect queue");
    assert_eq!(
        s.totals.guest_to_host_frames,
        n(b, "reflected") + drops.backend_overflow,
        "taken = reflected + overflow"
    );
    assert_eq!(
        n(b, "reflected"),
        s.totals.host_to_guest_frames + rx_drops(&drops),
        "reflected = delivered + rx drops"
    );
    assert_eq!(
        s.totals.host_to_guest_frames,
        d.ipackets + d.imissed + d.ierrors,
        "delivered = driver received + missed"
    );
    assert_eq!(d.ipackets, got);
    assert_eq!(
        d.opackets,
        d.ipackets + d.imissed + d.ierrors + drops.total(),
        "sent = received + every drop"
    );
    assert!(
        drops.backend_overflow + drops.no_rx_buffer > 0,
        "the test overflowed something: {drops:?}"
    );
    dev.close().unwrap();
}

#[test]
fn generator_generated_equals_delivered_plus_drops() {
    const LIMIT: u64 = 60_000;
    let rig = rig_with(|c| {
        c.recv_size = 2 << 20;
        c.backend = BackendConfig::Generator(GeneratorConfig {
            rate_pps: Some(100_000),
            frame_sizes: vec![64, 700],
            flows: 8,
            limit: Some(LIMIT),
            dst_mac: c.mac,
            ..GeneratorConfig::default()
        });
    });
    let mut dev = rig.open(quick()).unwrap();
    dev.start().unwrap();
    let mut q = dev.queues().remove(0);
    // Received for a while, then a stall (no receive: no-buffer drops), the link down for a while (link-down
    // drops), then received to the end.
    let mut got = receive(
        &mut q,
        Duration::from_millis(100),
        Duration::from_millis(100),
    );
    std::thread::sleep(Duration::from_millis(150));
    rig.emu.set_link(false);
    std::thread::sleep(Duration::from_millis(100));
    rig.emu.set_link(true);
    while rig.emu.generator_stats().unwrap()["state"] != "done" {
        got += drain_rx(&mut q, Duration::from_millis(20));
    }
    got += drain_rx(&mut q, Duration::from_millis(300));
    let s = settled(&rig);
    let d = dev.stats();
    let drops = s.totals.drops;
    let generated = n(&s.backend, "generated");
    eprintln!(
        "generator: generated {generated} = delivered {} + host drops {} ({drops:?}); driver received {got} + missed {}",
        s.totals.host_to_guest_frames,
        drops.total(),
        d.imissed
    );
    assert_eq!(generated, LIMIT);
    assert_eq!(
        generated,
        s.totals.host_to_guest_frames + drops.total(),
        "generated = delivered + drops by reason"
    );
    assert_eq!(drops.total(), rx_drops(&drops), "only receive-path reasons");
    assert_eq!(
        s.totals.host_to_guest_frames,
        d.ipackets + d.imissed + d.ierrors
    );
    assert_eq!(d.ipackets, got);
    assert!(
        drops.link_down > 0,
        "frames generated while the link was down are counted: {drops:?}"
    );
    dev.close().unwrap();
}

/// Count the pcapng enhanced packet blocks of `file` by direction flag (1 inbound, 2 outbound).
fn pcap_directions(file: &std::path::Path) -> (u64, u64) {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    let mut r = PcapNgReader::new(std::fs::File::open(file).unwrap()).unwrap();
    let (mut inbound, mut outbound) = (0, 0);
    while let Some(block) = r.next_block() {
        if let Block::EnhancedPacket(p) = block.unwrap() {
            match p.options.iter().find_map(|o| match o {
                EnhancedPacketOption::Flags(f) => Some(f & 3),
                _ => None,
            }) {
                Some(1) => inbound += 1,
                Some(2) => outbound += 1,
                other => panic!("packet without a direction flag: {other:?}"),
            }
        }
    }
    (inbound, outbound)
}

#[test]
fn pcap_mirror_records_every_frame_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mirror.pcapng");
    let rig = rig_with(|c| {
        c.backend = BackendConfig::Loopback;
        c.pcap = Some(file.clone());
    });
    let mut dev = rig.open(quick()).unwrap();
    dev.start().unwrap();
    let mut q = dev.queues().remove(0);
    let mac = dev.mac();
    send_n(&mut q, 3000, 128, mac);
    let got = drain_rx(&mut q, Duration::from_millis(300));
    let s = settled(&rig);
    let d = dev.stats();
    dev.close().unwrap();
    rig.emu.stop();
    let (inbound, outbound) = pcap_directions(&file);
    let b = &s.backend;
    eprintln!(
        "pcap: {outbound} outbound records (sent {}), {inbound} inbound (reflected {}), received {got}",
        d.opackets,
        n(b, "reflected")
    );
    assert_eq!(
        outbound, s.totals.guest_to_host_frames,
        "one outbound record per frame the guest sent"
    );
    assert_eq!(
        inbound,
        n(b, "reflected"),
        "one inbound record per frame offered to the guest"
    );
    assert_eq!(n(b, "pcapRecords"), inbound + outbound);
    assert_eq!(n(b, "pcapErrors"), 0);
    assert_eq!(
        inbound,
        s.totals.host_to_guest_frames + rx_drops(&s.totals.drops)
    );
    assert_eq!(
        s.totals.host_to_guest_frames,
        d.ipackets + d.imissed + d.ierrors
    );
}

fn tap_skip_reason() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self") {
        Ok(m) if m.uid() == 0 => {}
        Ok(m) => return Some(format!("not root (euid {})", m.uid())),
        Err(e) => return Some(format!("/proc/self: {e}")),
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
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

fn netdev_stat(ifname: &str, what: &str) -> u64 {
    let p = format!("/sys/class/net/{ifname}/statistics/{what}");
    std::fs::read_to_string(&p).unwrap().trim().parse().unwrap()
}

#[test]
fn tap_sent_and_received_are_accounted_for() {
    if let Some(why) = tap_skip_reason() {
        eprintln!("SKIP: {why}");
        return;
    }
    let ifname = format!("hva{}", std::process::id() % 100_000);
    if let Err(e) = hv_emu::backend::Tap::open(&ifname) {
        eprintln!("SKIP: cannot create TAP {ifname}: {e}");
        return;
    }
    let rig = rig(BackendConfig::Tap {
        name: ifname.clone(),
    });
    let v6 = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    if std::path::Path::new(&v6).exists() {
        std::fs::write(&v6, "1").unwrap();
    }
    let base = u32::from(Ipv4Addr::new(198, 19, 0, 0)) + (std::process::id() % 16_384) * 4;
    let (linux_ip, guest_ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
    ip(&["addr", "add", &format!("{linux_ip}/30"), "dev", &ifname]);
    let mut dev = rig.open(quick()).unwrap();
    dev.start().unwrap();
    let mut q = dev.queues().remove(0);
    // While the interface is down the kernel refuses the TAP's writes: those frames are backendTxError drops.
    send_n(&mut q, 200, 100, PEER_MAC);
    let down = settled(&rig);
    ip(&["link", "set", &ifname, "up"]);
    let gmac = rig.emu.config().mac.map(|b| format!("{b:02x}")).join(":");
    ip(&[
        "neigh",
        "replace",
        &guest_ip.to_string(),
        "lladdr",
        &gmac,
        "dev",
        &ifname,
        "nud",
        "permanent",
    ]);
    let kernel_rx0 = netdev_stat(&ifname, "rx_packets") + netdev_stat(&ifname, "rx_dropped");
    send_n(&mut q, 300, 100, PEER_MAC);
    // Linux → guest: datagrams to the guest's address leave through the TAP.
    let sock = UdpSocket::bind(SocketAddrV4::new(linux_ip, 0)).unwrap();
    for k in 0..100u8 {
        sock.send_to(&[k; 64], SocketAddrV4::new(guest_ip, 40_000))
            .unwrap();
    }
    let got = drain_rx(&mut q, Duration::from_millis(500));
    let s = settled(&rig);
    let d = dev.stats();
    let b = &s.backend;
    let kernel_rx =
        netdev_stat(&ifname, "rx_packets") + netdev_stat(&ifname, "rx_dropped") - kernel_rx0;
    eprintln!(
        "tap: sent {} = written {} + refused {} (down: {}); kernel counted {kernel_rx} of the written after up; \
         read {} = delivered {} + rx drops {}; driver received {got}",
        d.opackets,
        n(b, "tx"),
        s.totals.drops.backend_tx_error,
        down.totals.drops.backend_tx_error,
        n(b, "rx"),
        s.totals.host_to_guest_frames,
        rx_drops(&s.totals.drops)
    );
    assert_eq!(d.opackets, 500);
    assert_eq!(s.totals.guest_to_host_frames, d.opackets);
    assert_eq!(
        down.totals.drops.backend_tx_error, 200,
        "every write to the down interface refused and counted"
    );
    assert_eq!(
        d.opackets,
        n(b, "tx") + s.totals.drops.backend_tx_error,
        "sent = written + refused"
    );
    assert_eq!(n(b, "txErrors"), s.totals.drops.backend_tx_error);
    assert_eq!(
        kernel_rx, 300,
        "the kernel saw every frame written after the interface came up"
    );
    assert!(n(b, "rx") >= 100, "the datagrams came through the TAP");
    assert_eq!(
        n(b, "rx"),
        s.totals.host_to_guest_frames + rx_drops(&s.totals.drops),
        "read = delivered + drops"
    );
    assert_eq!(
        s.totals.host_to_guest_frames,
        d.ipackets + d.imissed + d.ierrors
    );
    assert_eq!(d.ipackets, got);
    dev.close().unwrap();
}

//! Interop suite: Debian's unmodified DPDK 22.11 `dpdk-testpmd` (net_netvsc PMD) runs on the emulator, driven
//! through its interactive prompt, and its counters are reconciled exactly with the host's (`Emulator::stats`).
//! The tests run one at a time (testpmd busy-polls a core). Needs root, dpdk-testpmd and stdbuf; otherwise each
//! test prints `SKIP:` and passes.

mod support;

use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use hv_emu::backend::{CaptureHandle, build_flow_frame};
use hv_emu::host::frame::push_tagged;
use hv_emu::{BackendConfig, EmuStats, Emulator, EmulatorConfig, GeneratorConfig};
use support::testpmd::{Testpmd, skip_reason};
use support::wait_for;

const UUID: &str = "7d2c55e1-0b3f-4a6e-9d81-2c4b6a8e0f13";
const MAC: [u8; 6] = [0x00, 0x15, 0x5d, 0x2a, 0x3b, 0x4c];
const MAC_TEXT: &str = "00:15:5D:2A:3B:4C";
const LSC_EVENT: &str = "Port 0: link state change event";
// NDIS packet-filter bits (protocol.md): directed, multicast, all-multicast, broadcast, promiscuous.
const F_DIRECTED: u32 = 0x1;
const F_ALL_MULTICAST: u32 = 0x4;
const F_BROADCAST: u32 = 0x8;
const F_PROMISCUOUS: u32 = 0x20;
// NDIS RSS hash types (protocol.md).
const HASH_IPV4: u32 = 0x100;
const HASH_TCP_IPV4: u32 = 0x200;
const HASH_IPV6: u32 = 0x400;
const HASH_TCP_IPV6: u32 = 0x1000;

/// One testpmd at a time: it busy-polls lcore 1 and the machine has two cores.
fn serial() -> Option<MutexGuard<'static, ()>> {
    static LOCK: Mutex<()> = Mutex::new(());
    if let Some(why) = skip_reason() {
        std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("SKIP: {why}\n")).ok();
        return None;
    }
    Some(LOCK.lock().unwrap_or_else(|p| p.into_inner()))
}

fn config(backend: BackendConfig) -> EmulatorConfig {
    EmulatorConfig {
        uuid: UUID.into(),
        mac: MAC,
        backend,
        ..EmulatorConfig::new("/nonexistent")
    }
}

/// Wait until `f(stats)` has not changed for 300 ms (the host has drained everything the guest posted).
fn settle<T: PartialEq + Copy>(emu: &Emulator, f: impl Fn(&EmuStats) -> T) -> T {
    let mut last = f(&emu.stats());
    let mut stable = 0;
    wait_for(Duration::from_secs(20), || {
        std::thread::sleep(Duration::from_millis(50));
        let now = f(&emu.stats());
        if now == last {
            stable += 1;
        } else {
            stable = 0;
            last = now;
        }
        (stable >= 6).then_some(())
    })
    .expect("emulator counters settle");
    last
}

fn backend_u64(s: &EmuStats, key: &str) -> u64 {
    s.backend[key].as_u64().unwrap_or(0)
}

fn drops_total(s: &EmuStats) -> u64 {
    let d = &s.totals.drops;
    d.no_rx_buffer + d.ring_full + d.filtered + d.not_ready + d.too_large + d.link_down
}

fn xstat(x: &[(String, u64)], name: &str) -> u64 {
    x.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no xstat {name} in {x:?}"))
}

fn channel_of(s: &EmuStats, queue: u16) -> &hv_emu::stats::ChannelStats {
    s.channels
        .iter()
        .find(|c| c.subchannel_id == queue)
        .unwrap_or_else(|| panic!("no channel for queue {queue}: {:?}", s.channels))
}

/// Check 1: probe — the PMD prints the emulator's MAC, sees link up at the emulator's speed and queue limit, and
/// negotiated NVSP 6.1 / NDIS 6.30 with the OIDs dpdk-interop.md lists.
#[test]
fn probe_shows_emulator_mac_link_and_negotiation() {
    let Some(_serial) = serial() else { return };
    let cfg = EmulatorConfig {
        max_queues: 4,
        link_speed: 250_000_000, // 25 Gb/s in 100 bps units
        ..config(BackendConfig::Sink)
    };
    let mut t = Testpmd::start("probe", cfg, &[]);
    let boot = t.transcript();
    assert!(boot.contains(&format!("Port 0: {MAC_TEXT}")), "{boot}");
    assert!(
        !boot.contains("invalid comp"),
        "an RNDIS answer was rejected:\n{boot}"
    );
    let info = t.cmd("show port info 0");
    for needle in [
        format!("MAC address: {MAC_TEXT}"),
        "Driver name: net_netvsc".into(),
        "Link status: up".into(),
        "Link speed: 25 Gbps".into(),
        "Max possible RX queues: 4".into(),
        "Max possible TX queues: 4".into(),
        "Redirection table size: 128".into(),
        "Promiscuous mode: enabled".into(),
    ] {
        assert!(info.contains(&needle), "{needle:?} missing from:\n{info}");
    }
    let s = t.emu.stats();
    assert_eq!(
        s.nvsp_version,
        Some(0x60001),
        "NVSP 6.1 (the PMD's first try)"
    );
    let ndis = s.ndis_version.expect("NDIS version announced");
    assert_eq!((ndis.major, ndis.minor), (6, 30));
    assert!(s.rndis_initialized);
    assert!(s.protocol_errors.is_empty(), "{:?}", s.protocol_errors);
    assert_eq!(s.ndis_config.map(|c| c.mtu), Some(1514));
    for oid in [
        "0x01010101",
        "0x00010203",
        "0xfc01020d",
        "0x00010114",
        "0x00010107",
    ] {
        assert!(
            s.oids.queried.iter().any(|o| o == oid),
            "query {oid}: {:?}",
            s.oids
        );
    }
    for oid in ["0xfc01020c", "0x0001010e"] {
        assert!(
            s.oids.set.iter().any(|o| o == oid),
            "set {oid}: {:?}",
            s.oids
        );
    }
    assert!(
        !s.oids.set.iter().any(|o| o == "0x00010204"),
        "no RSS parameters with one queue"
    );
    // 0 at attach, directed|multicast|broadcast at start, then testpmd's default promiscuous mode.
    assert_eq!(s.packet_filters, vec![0, 0xD, 0x9, 0x9, F_PROMISCUOUS]);
    assert_eq!(s.packet_filter, F_PROMISCUOUS);
    assert_eq!(s.subchannels, 0);
    eprintln!(
        "probe: NVSP 0x{:x}, NDIS 6.30, OIDs {:?}",
        s.nvsp_version.unwrap(),
        s.oids
    );
    t.quit();
}

/// Check 2: txonly — every frame testpmd counts reached the emulator's sink, at the configured size.
#[test]
fn txonly_counts_match_the_sink_exactly() {
    let Some(_serial) = serial() else { return };
    let mut t = Testpmd::start("txonly", config(BackendConfig::Sink), &[]);
    t.cmd("set fwd txonly");
    for size in [64u64, 1514] {
        t.cmd(&format!("set txpkts {size}"));
        let before = t.port_stats();
        let emu_before = t.emu.stats();
        t.cmd("start");
        std::thread::sleep(Duration::from_millis(600));
        t.cmd("stop");
        settle(&t.emu, |s| backend_u64(s, "frames"));
        // dpdk-interop.md defect 2: TX is counted on completion; drain the completions still in the ring.
        let cleanup = t.cmd("port cleanup 0 txq 0 0");
        assert!(cleanup.contains("Cleanup port 0 Tx queue 0"), "{cleanup}");
        let after = t.port_stats();
        let s = t.emu.stats();
        let frames = backend_u64(&s, "frames") - backend_u64(&emu_before, "frames");
        let bytes = backend_u64(&s, "bytes") - backend_u64(&emu_before, "bytes");
        let tp = after.tx_packets - before.tx_packets;
        eprintln!("txonly {size} B: testpmd {tp} = emulator {frames}");
        assert!(frames > 1000, "too little traffic: {frames}");
        assert_eq!(tp, frames, "testpmd TX-packets vs emulator sink frames");
        assert_eq!(after.tx_bytes - before.tx_bytes, bytes, "TX-bytes");
        assert_eq!(bytes, frames * size, "every frame is {size} bytes");
        assert_eq!(after.tx_errors, 0);
        assert_eq!(s.totals.drops.tx_malformed, 0);
    }
    assert!(t.emu.stats().protocol_errors.is_empty());
    t.quit();
}

/// Check 3: rxonly with the generator — testpmd receives exactly what the host delivered, and delivered plus
/// counted drops is everything generated.
#[test]
fn rxonly_counts_match_generator_minus_drops() {
    let Some(_serial) = serial() else { return };
    const LIMIT: u64 = 400_000;
    let generator = GeneratorConfig {
        rate_pps: Some(200_000),
        frame_sizes: vec![64, 128, 1514],
        flows: 4,
        dst_mac: MAC,
        limit: Some(LIMIT),
        ..GeneratorConfig::default()
    };
    // 22.11 acks but does not count frames that arrive while the port is still starting (control exchanges poll
    // the primary channel before dev_started is set): hold the link down — the host drops and counts those
    // frames — until forwarding runs.
    let mut t = Testpmd::start_with(
        "rxonly",
        config(BackendConfig::Generator(generator)),
        &[],
        |emu| emu.set_link(false),
    );
    t.cmd("set fwd rxonly");
    t.cmd("start");
    t.emu.set_link(true);
    // Done when everything was generated and the PMD has returned every receive buffer.
    wait_for(Duration::from_secs(30), || {
        let s = t.emu.stats();
        (backend_u64(&s, "generated") == LIMIT && s.recv_outstanding == 0).then_some(())
    })
    .unwrap_or_else(|| panic!("generator did not finish: {}", t.emu.stats_json()));
    let delivered = settle(&t.emu, |s| s.totals.host_to_guest_frames);
    t.cmd("stop");
    let ps = t.port_stats();
    let x = t.xstats();
    let s = t.emu.stats();
    let drops = drops_total(&s);
    // The PMD counts a frame (RX-packets) before handing it to its per-queue software ring; when that ring is full
    // it frees the frame and also counts "rx_q0_ring full". A missing mbuf is counted apart (rx_nombuf).
    let pmd_ring_full = xstat(&x, "rx_q0_ring full");
    let pmd_nombuf = xstat(&x, "rx_mbuf_allocation_errors");
    eprintln!(
        "rxonly: generated {LIMIT}: emulator delivered {delivered} + dropped {drops} ({:?}); testpmd RX-packets {} \
         (of which PMD ring-full {pmd_ring_full}) + no-mbuf {pmd_nombuf}",
        s.totals.drops, ps.rx_packets
    );
    assert_eq!(
        delivered + drops,
        LIMIT,
        "every generated frame delivered or counted"
    );
    assert_eq!(
        ps.rx_packets + pmd_nombuf,
        delivered,
        "testpmd RX-packets (+ no-mbuf) == host deliveries"
    );
    // Frames dropped while the gate (link down) was shut, plus — when the guest falls behind, as it does on a loaded
    // machine — frames the host had no free receive section or ring space for. Nothing else may be dropped.
    let d = &s.totals.drops;
    assert_eq!(
        d.link_down + d.no_rx_buffer + d.ring_full,
        drops,
        "host drops are only gated or guest-behind ones: {d:?}"
    );
    assert_eq!(xstat(&x, "rx_q0_good_packets"), ps.rx_packets);
    assert!(
        delivered > 10_000,
        "enough frames arrive after the gate: {delivered}"
    );
    t.quit();
}

/// Check 4: `--rxq=N --txq=N`: subchannels open and every queue carries traffic both ways (io forwarding of
/// generator flows); per-queue xstats equal the emulator's per-channel counts.
fn multiqueue(queues: u16) {
    let Some(_serial) = serial() else { return };
    const LIMIT: u64 = 300_000;
    let generator = GeneratorConfig {
        rate_pps: Some(150_000),
        frame_sizes: vec![64],
        flows: 16,
        dst_mac: MAC,
        limit: Some(LIMIT),
        ..GeneratorConfig::default()
    };
    let q = format!("--rxq={queues}");
    let tq = format!("--txq={queues}");
    // Link held down until forwarding runs (see the rxonly test).
    let mut t = Testpmd::start_with(
        &format!("mq{queues}"),
        config(BackendConfig::Generator(generator)),
        &[&q, &tq],
        |emu| emu.set_link(false),
    );
    let s = t.emu.stats();
    assert_eq!(s.subchannels, queues - 1, "subchannels allocated");
    assert_eq!(s.channels.len(), usize::from(queues), "channels open");
    assert!(s.rss.enabled, "RSS parameters set: {:?}", s.oids);
    t.cmd("set fwd io");
    t.cmd("start");
    t.emu.set_link(true);
    wait_for(Duration::from_secs(30), || {
        let s = t.emu.stats();
        (backend_u64(&s, "generated") == LIMIT && s.recv_outstanding == 0).then_some(())
    })
    .unwrap_or_else(|| panic!("generator did not finish: {}", t.emu.stats_json()));
    settle(&t.emu, |s| {
        (s.totals.host_to_guest_frames, s.totals.guest_to_host_frames)
    });
    t.cmd("stop");
    settle(&t.emu, |s| s.totals.guest_to_host_frames);
    for i in 0..queues {
        t.cmd(&format!("port cleanup 0 txq {i} 0"));
    }
    let x = t.xstats();
    let s = t.emu.stats();
    for i in 0..queues {
        let c = channel_of(&s, i);
        let rx = xstat(&x, &format!("rx_q{i}_good_packets"));
        let rx_full = xstat(&x, &format!("rx_q{i}_ring full")); // included in rx (counted, then freed)
        let tx = xstat(&x, &format!("tx_q{i}_good_packets"));
        eprintln!(
            "{queues} queues, queue {i}: rx testpmd {rx} (PMD ring-full {rx_full}) = emulator {}, \
             tx testpmd {tx} = emulator {}",
            c.host_to_guest_frames, c.guest_to_host_frames
        );
        assert!(rx > 0 && tx > 0, "queue {i} carried no traffic");
        assert_eq!(rx, c.host_to_guest_frames, "rx queue {i}");
        assert_eq!(tx, c.guest_to_host_frames, "tx queue {i}");
    }
    assert_eq!(s.totals.host_to_guest_frames + drops_total(&s), LIMIT);
    // io forwarding is a loop: every frame testpmd sent back is a stamped frame of the generator, checked on return
    // (a flow stays on one queue both ways, so nothing is reordered; frames dropped on the way are gaps).
    let c = &s.backend["checker"];
    eprintln!("{queues} queues, io loop as the generator's checker saw it: {c}");
    assert_eq!(
        c["received"].as_u64(),
        Some(s.totals.guest_to_host_frames),
        "every returned frame carries our stamp"
    );
    assert_eq!(c["foreign"], 0);
    assert_eq!(c["duplicates"], 0);
    assert_eq!(c["reordered"], 0);
    assert!(
        c["lost"].as_u64().unwrap() <= LIMIT - s.totals.guest_to_host_frames,
        "no more lost than never came back"
    );
    t.quit();
}

#[test]
fn two_queues_carry_traffic_on_every_queue() {
    multiqueue(2);
}

#[test]
fn four_queues_carry_traffic_on_every_queue() {
    multiqueue(4);
}

/// Check 5: promiscuous / all-multicast switches reach the host's packet filter, and the host filters by it.
#[test]
fn promisc_and_allmulti_set_the_host_filter() {
    let Some(_serial) = serial() else { return };
    let cap = CaptureHandle::default();
    let mut t = Testpmd::start("filter", config(BackendConfig::Capture(cap.clone())), &[]);
    t.cmd("set fwd rxonly");
    t.cmd("start");
    let mcast = {
        let mut f = build_flow_frame(MAC, 1, 64);
        f[..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0x00, 0x00, 0x07]);
        f
    };
    let other = {
        let mut f = build_flow_frame(MAC, 2, 64);
        f[..6].copy_from_slice(&[0x00, 0x15, 0x5d, 0x99, 0x99, 0x99]);
        f
    };
    // (command, expected filter, is the multicast frame received?, is a frame for another MAC received?)
    let steps = [
        (
            "set promisc all off",
            F_DIRECTED | F_BROADCAST,
            false,
            false,
        ),
        (
            "set allmulti all on",
            F_DIRECTED | F_BROADCAST | F_ALL_MULTICAST,
            true,
            false,
        ),
        ("set promisc all on", F_PROMISCUOUS, true, true),
        (
            "set promisc all off",
            F_DIRECTED | F_BROADCAST | F_ALL_MULTICAST,
            true,
            false,
        ),
        (
            "set allmulti all off",
            F_DIRECTED | F_BROADCAST,
            false,
            false,
        ),
    ];
    for (cmd, filter, mc_ok, other_ok) in steps {
        t.cmd(cmd);
        let s = t.emu.stats();
        assert_eq!(
            s.packet_filter, filter,
            "after {cmd:?}: filter 0x{:x}, history {:?}",
            s.packet_filter, s.packet_filters
        );
        assert_eq!(s.packet_filters.last(), Some(&filter));
        for (frame, ok) in [(&mcast, mc_ok), (&other, other_ok)] {
            let before = t.port_stats().rx_packets;
            let filtered = t.emu.stats().totals.drops.filtered;
            cap.inject(frame);
            let s2 = settle(&t.emu, |s| {
                (s.totals.host_to_guest_frames, s.totals.drops.filtered)
            });
            let got = wait_for(Duration::from_secs(2), || {
                let n = t.port_stats().rx_packets;
                (n > before).then_some(n)
            });
            if ok {
                assert_eq!(
                    got,
                    Some(before + 1),
                    "{cmd:?}: frame to {:02x?} received",
                    &frame[..6]
                );
            } else {
                assert_eq!(
                    got,
                    None,
                    "{cmd:?}: frame to {:02x?} must be filtered",
                    &frame[..6]
                );
                assert_eq!(s2.1, filtered + 1, "host counted the filtered frame");
            }
        }
    }
    eprintln!("filters: {:?}", t.emu.stats().packet_filters);
    t.quit();
}

/// Check 6: link down then up from the host: testpmd reports both link state change events, and a link query
/// afterwards returns the host's media state.
#[test]
fn link_down_and_up_events_reach_testpmd() {
    let Some(_serial) = serial() else { return };
    let mut t = Testpmd::start("link", config(BackendConfig::Sink), &[]);
    // The PMD reads the primary channel (and so sees INDICATE_STATUS) only while polling: keep a stream running.
    t.cmd("set fwd rxonly");
    t.cmd("start");
    let queries = |t: &Testpmd| {
        t.emu
            .stats()
            .oids
            .queried
            .iter()
            .filter(|o| *o == "0x00010114")
            .count()
    };
    for (up, n) in [(false, 1), (true, 2)] {
        let before = queries(&t);
        t.emu.set_link(up);
        assert!(
            t.wait_output(LSC_EVENT, n, Duration::from_secs(10)),
            "event {n} missing:\n{}",
            t.transcript()
        );
        assert_eq!(t.emu.stats().link_up, up);
        // 22.11 only fires the callback: with LSC interrupts on, `show port info` returns the cached (old) state
        // and asks the host nothing (dpdk-interop.md).
        let stale = if up {
            "Link status: down"
        } else {
            "Link status: up"
        };
        let info = t.cmd("show port info 0");
        assert!(
            info.contains(stale),
            "22.11 keeps the cached link ({stale:?}):\n{info}"
        );
        assert_eq!(queries(&t), before, "no link query for a cached read");
        // A real link query (port start → link update → OID_GEN_MEDIA_CONNECT_STATUS) returns the host's state.
        t.cmd("stop");
        t.cmd("port stop 0");
        t.cmd("port start 0");
        let info = t.cmd("show port info 0");
        let want = if up {
            "Link status: up"
        } else {
            "Link status: down"
        };
        assert!(
            info.contains(want),
            "{want:?} missing after a link query:\n{info}"
        );
        assert!(queries(&t) > before, "the link query reached the host");
        t.cmd("start");
    }
    t.cmd("stop");
    t.quit();
}

/// Check 7a: 802.1Q-tagged frames arrive stripped into the PPI; with VLAN strip on, testpmd shows the TCI on
/// untagged 64-byte frames.
#[test]
fn vlan_tag_is_stripped_into_the_ppi() {
    let Some(_serial) = serial() else { return };
    let cap = CaptureHandle::default();
    // 22.11's PMD has no VLAN offload op (`vlan set strip on 0` fails with -95): enable strip at configure time.
    let mut t = Testpmd::start(
        "vlan",
        config(BackendConfig::Capture(cap.clone())),
        &["--enable-hw-vlan-strip"],
    );
    t.cmd("set verbose 1");
    t.cmd("set fwd rxonly");
    t.cmd("start");
    const TCI: u16 = 0x2123; // priority 1, VLAN 0x123
    let mut tagged = Vec::new();
    push_tagged(&build_flow_frame(MAC, 0, 64), TCI, &mut tagged);
    assert_eq!(tagged.len(), 68);
    for _ in 0..4 {
        cap.inject(&tagged);
    }
    assert!(
        t.wait_output("VLAN tci=0x2123", 4, Duration::from_secs(10)),
        "testpmd did not show the stripped TCI:\n{}",
        t.transcript()
    );
    let text = t.transcript();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("VLAN tci=")).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for l in &lines {
        assert!(
            l.contains("type=0x0800") && l.contains("length=64"),
            "untagged 64-byte frame: {l}"
        );
    }
    let flags: Vec<&str> = text.lines().filter(|l| l.contains("ol_flags:")).collect();
    assert!(
        flags
            .iter()
            .all(|l| l.contains("RTE_MBUF_F_RX_VLAN_STRIPPED")),
        "{flags:?}"
    );
    let s = t.emu.stats();
    assert_eq!(s.totals.host_to_guest_frames, 4);
    assert_eq!(
        s.totals.host_to_guest_bytes,
        4 * 64,
        "the host delivered the untagged frame"
    );
    t.cmd("stop");
    t.quit();
}

/// Check 7b: `port config all rss ip|tcp` and `port config 0 rss reta …` reach the host's RSS parameters, and the
/// flows land on the queues the table names (predicted here with our own Toeplitz over the host's key).
#[test]
fn rss_hash_types_and_reta_reach_the_host_and_place_flows() {
    let Some(_serial) = serial() else { return };
    let cap = CaptureHandle::default();
    let mut t = Testpmd::start(
        "rss",
        config(BackendConfig::Capture(cap.clone())),
        &["--rxq=2", "--txq=2"],
    );
    t.cmd("port config all rss tcp");
    let s = t.emu.stats();
    eprintln!("rss tcp: hash_info 0x{:x}", s.rss.hash_info);
    assert_ne!(s.rss.hash_info & HASH_TCP_IPV4, 0);
    assert_ne!(s.rss.hash_info & HASH_TCP_IPV6, 0);
    assert_eq!(s.rss.hash_info & (HASH_IPV4 | HASH_IPV6), 0);
    t.cmd("port config all rss ip");
    let s = t.emu.stats();
    eprintln!("rss ip: hash_info 0x{:x}", s.rss.hash_info);
    assert_ne!(s.rss.hash_info & HASH_IPV4, 0);
    assert_ne!(s.rss.hash_info & HASH_IPV6, 0);
    assert_eq!(s.rss.hash_info & (HASH_TCP_IPV4 | HASH_TCP_IPV6), 0);
    // An irregular table, 12 entries per command (testpmd's list token holds at most 127 characters).
    let table: Vec<u32> = (0..128u32)
        .map(|i| u32::from((i * 7 + i / 5) % 3 == 0))
        .collect();
    for first in (0..128u32).step_by(12) {
        let entries: Vec<String> = (first..(first + 12).min(128))
            .map(|i| format!("({i},{})", table[i as usize]))
            .collect();
        let out = t.cmd(&format!("port config 0 rss reta {}", entries.join(",")));
        assert!(out.contains("The reta size of port 0 is 128"), "{out}");
    }
    let s = t.emu.stats();
    assert!(s.rss.enabled);
    assert_eq!(s.rss.table, table, "the host holds the table testpmd set");
    let key = s.rss.key.clone();
    // Inject 16 flows × 8 frames and predict each flow's queue from the table.
    t.cmd("set fwd rxonly");
    t.cmd("start");
    let mut expected = [0u64; 2];
    const PER_FLOW: u64 = 8;
    for flow in 0..16u32 {
        let f = build_flow_frame(MAC, flow, 64);
        let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
        let dst = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
        let h = netvsc_proto::toeplitz::hash_ipv4(&key, src, dst);
        expected[table[(h & 127) as usize] as usize] += PER_FLOW;
        for _ in 0..PER_FLOW {
            cap.inject(&f);
        }
    }
    wait_for(Duration::from_secs(10), || {
        let s = t.emu.stats();
        (s.totals.host_to_guest_frames == 16 * PER_FLOW && s.recv_outstanding == 0).then_some(())
    })
    .unwrap_or_else(|| panic!("not all delivered: {}", t.emu.stats_json()));
    t.cmd("stop");
    let x = t.xstats();
    let s = t.emu.stats();
    for q in 0..2u16 {
        let rx = xstat(&x, &format!("rx_q{q}_good_packets"));
        eprintln!(
            "rss reta: queue {q}: predicted {}, emulator {}, testpmd {rx}",
            expected[q as usize],
            channel_of(&s, q).host_to_guest_frames
        );
        assert_eq!(channel_of(&s, q).host_to_guest_frames, expected[q as usize]);
        assert_eq!(rx, expected[q as usize]);
    }
    assert!(
        expected.iter().all(|&n| n > 0),
        "the flows use both queues: {expected:?}"
    );
    t.quit();
}

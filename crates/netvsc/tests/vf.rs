//! VF failover against the in-process emulator and a veth standing in for the VF (root only; otherwise every
//! test prints `SKIP:` and passes). Each test re-runs itself under `unshare --net --mount` with a fresh sysfs,
//! so its netdevs live in a private network namespace (no unsafe code needed in this crate) and nothing leaves it.
//!
//! The guest end of the veth carries the synthetic MAC (the VF), its peer plays the wire: a plain AF_PACKET
//! port (vf-netdev) counts what the driver transmitted through the VF and injects what it should receive.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use hv_emu::backend::{BackendConfig, CaptureHandle};
use hv_emu::vf::VfConfig as EmuVfConfig;
use netvsc::{
    Device, DeviceConfig, Event, RxPacket, TxMeta, TxPacket, VfConfig, VfFailure, VfPrefer,
    VfReason, VfState,
};
use vf_netdev::{Netdev, Port, PortConfig, Prefer, VethSpec, VfTx};

const ENV: &str = "NETVSC_VF_IN_NETNS";
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
const SERIAL: u32 = 17;

fn skip_reason() -> Option<String> {
    match std::fs::metadata("/proc/self") {
        Ok(m) if m.uid() == 0 => {}
        Ok(m) => return Some(format!("not root (euid {})", m.uid())),
        Err(e) => return Some(format!("/proc/self: {e}")),
    }
    match Command::new("unshare").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("util-linux `unshare` not runnable".into()),
    }
}

/// Run `body` in a private network (and mount) namespace: re-executes this test binary for `test` only.
fn in_netns(test: &str, body: impl FnOnce()) {
    if std::env::var_os(ENV).is_some() {
        body();
        return;
    }
    if let Some(r) = skip_reason() {
        println!("SKIP: {test}: {r}");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--",
            "sh",
            "-c",
            "mount -t sysfs sysfs /sys && exec \"$0\" \"$@\"",
        ])
        .arg(&exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ENV, "1")
        .output()
        .unwrap();
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    print!("{so}");
    eprint!("{se}");
    assert!(out.status.success(), "{test} failed in its namespace");
    assert!(
        so.contains("1 passed"),
        "{test} did not run in its namespace"
    );
}

struct Wire {
    port: Port,
    q: vf_netdev::VfQueue,
}

/// A veth: `vf` (the VF, with `mac`) and `peer` (the wire, up, with an AF_PACKET port).
fn veth(vf: &str, peer: &str, mac: [u8; 6]) -> (u32, Wire) {
    let (g, h) = vf_netdev::create_veth(&VethSpec {
        guest: vf,
        host: peer,
        guest_mac: Some(mac),
        host_mac: Some(PEER_MAC),
        queues: 1,
        guest_netns_fd: None,
    })
    .unwrap();
    let _ = vf_netdev::disable_ipv6(vf);
    let _ = vf_netdev::disable_ipv6(peer);
    Netdev::open(h).unwrap().set_up(true).unwrap();
    let mut port = Port::open(
        h,
        &PortConfig {
            prefer: Prefer::AfPacket,
            ..PortConfig::default()
        },
    )
    .unwrap();
    let q = port.take_queues().pop().unwrap();
    (g, Wire { port, q })
}

impl Wire {
    /// Frames of our test ethertype received (waits `ms` for stragglers).
    fn count(&mut self, ms: u64) -> u64 {
        let until = Instant::now() + Duration::from_millis(ms);
        let mut n = 0;
        loop {
            let _ = self.q.rx_burst(64, |f, _| {
                if f.len() >= 14 && f[12..14] == ETHERTYPE {
                    n += 1;
                }
            });
            if Instant::now() >= until {
                return n;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn send(&mut self, frames: &[Vec<u8>]) {
        let segs: Vec<[&[u8]; 1]> = frames.iter().map(|f| [f.as_slice()]).collect();
        let tx: Vec<VfTx<'_>> = segs
            .iter()
            .map(|s| VfTx {
                segs: s,
                csum: None,
                gso: None,
            })
            .collect();
        let mut sent = 0;
        while sent < tx.len() {
            sent += self.q.tx_burst(&tx[sent..]).unwrap();
            let _ = self.q.poll_tx();
        }
        let _ = &self.port;
    }
}

fn frame(dst: [u8; 6], src: [u8; 6], seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&ETHERTYPE);
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    f
}

fn vf_cfg(period_ms: u64, retries: u32) -> DeviceConfig {
    DeviceConfig {
        vf: VfConfig {
            retry_period: Duration::from_millis(period_ms),
            retries,
            prefer: VfPrefer::AfPacket,
            ..VfConfig::default()
        },
        ..quick()
    }
}

/// Every event so far.
fn events(dev: &Device, log: &mut Vec<Event>) {
    while let Some(e) = dev.next_event() {
        log.push(e);
    }
}

fn vf_states(log: &[Event]) -> Vec<(VfState, VfReason)> {
    log.iter()
        .filter_map(|e| match e {
            Event::Vf { state, reason, .. } => Some((*state, *reason)),
            _ => None,
        })
        .collect()
}

fn switched(dev: &Device) -> bool {
    dev.vf_info().is_some_and(|i| i.switched)
}

fn send_n(q: &mut netvsc::QueuePair, mac: [u8; 6], n: u32, base: u32) {
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| frame(PEER_MAC, mac, base + i, 128))
        .collect();
    send_frames(q, &frames);
}

fn rx_count(q: &mut netvsc::QueuePair, want: u64, secs: u64) -> u64 {
    let mut out: Vec<RxPacket> = (0..32).map(|_| RxPacket::with_capacity(2048)).collect();
    let mut got = 0;
    wait_for(secs, || {
        let n = q.rx_burst(&mut out);
        got += out[..n]
            .iter()
            .filter(|p| p.data.len() >= 14 && p.data[12..14] == ETHERTYPE)
            .count() as u64;
        got >= want
    });
    got
}

#[test]
fn vf_pairs_by_mac_switches_and_carries_traffic_both_ways() {
    in_netns(
        "vf_pairs_by_mac_switches_and_carries_traffic_both_ways",
        || traffic_both_ways(VfPrefer::AfPacket, "af_packet"),
    );
}

#[test]
fn vf_af_xdp_carries_traffic_both_ways() {
    in_netns("vf_af_xdp_carries_traffic_both_ways", || {
        traffic_both_ways(VfPrefer::AfXdp, "af_xdp")
    });
}

fn traffic_both_ways(prefer: VfPrefer, mode: &str) {
    let rig = rig(BackendConfig::Sink);
    let mac = rig.emu.config().mac;
    let mut other = mac;
    other[5] ^= 0x40;
    // A netdev with another MAC is never paired, even listed first.
    let (_, mut decoy) = veth("vfx0", "vfxp0", other);
    let (vf_idx, mut wire) = veth("vf0", "vfp0", mac);
    let mut cfg = vf_cfg(20, 100);
    cfg.vf.prefer = prefer;
    let mut dev = rig.open(cfg).unwrap();
    dev.start().unwrap();
    let mut q = dev.queues().remove(0);
    assert!(rig.emu.send_vf_association(true, SERIAL));
    assert!(
        wait_for(5, || switched(&dev)),
        "never switched: {:?}",
        dev.vf_info()
    );
    let info = dev.vf_info().unwrap();
    println!("vf info: {info:?}");
    assert_eq!(info.iface.as_deref(), Some("vf0"));
    assert_eq!(info.ifindex, vf_idx);
    assert_eq!(info.serial, SERIAL);
    assert_eq!(info.state, VfState::Switched);
    assert_eq!(info.mode.map(|m| m.as_str()), Some(mode));
    assert_eq!(
        rig.emu.stats().data_path,
        vec![1],
        "host saw SWITCH_DATA_PATH(VF)"
    );

    // Tx through the VF reaches the wire; none of it reaches the synthetic host.
    let host_before = rig.emu.stats().totals.guest_to_host_frames;
    send_n(&mut q, mac, 200, 0);
    let at_wire = wire.count(300);
    assert_eq!(at_wire, 200, "frames at the veth peer");
    assert_eq!(rig.emu.stats().totals.guest_to_host_frames, host_before);
    assert_eq!(decoy.count(50), 0, "the decoy saw nothing");

    // Rx from the wire comes out of the same rx_burst.
    let frames: Vec<Vec<u8>> = (0..100).map(|i| frame(mac, PEER_MAC, i, 200)).collect();
    wire.send(&frames);
    assert_eq!(rx_count(&mut q, 100, 5), 100);

    let st = dev.stats();
    assert!(st.opackets >= 200 && st.ipackets >= 100, "{st:?}");
    let x: std::collections::HashMap<String, u64> = dev.xstats().into_iter().collect();
    assert_eq!(x["vf_tx_good_packets"], 200);
    assert_eq!(x["vf_rx_good_packets"], 100);
    assert_eq!(x["vf_switches"], 1);
    assert!(x["vf_pair_attempts"] >= 1);
    let mut log = Vec::new();
    events(&dev, &mut log);
    assert_eq!(
        vf_states(&log),
        [
            (VfState::Offered, VfReason::None),
            (VfState::Paired, VfReason::None),
            (VfState::Switched, VfReason::None)
        ]
    );
    assert!(log.contains(&Event::VfAssociation {
        allocated: true,
        serial: SERIAL
    }));
    // Close: synthetic first.
    drop(q);
    dev.close().unwrap();
    assert_eq!(rig.emu.stats().data_path, vec![1, 0]);
}

#[test]
fn vf_pairing_retried_until_the_netdev_appears_3s_late() {
    in_netns(
        "vf_pairing_retried_until_the_netdev_appears_3s_late",
        || {
            let rig = rig(BackendConfig::Sink);
            let mac = rig.emu.config().mac;
            let mut dev = rig.open(vf_cfg(100, 100)).unwrap();
            dev.start().unwrap();
            assert!(rig.emu.send_vf_association(true, SERIAL));
            let t0 = Instant::now();
            // The synthetic path keeps passing traffic meanwhile.
            let mut q = dev.queues().remove(0);
            send_n(&mut q, mac, 50, 0);
            drain_tx(&mut q);
            std::thread::sleep(Duration::from_secs(3));
            assert!(!switched(&dev));
            let (_, mut wire) = veth("vf0", "vfp0", mac);
            assert!(wait_for(5, || switched(&dev)), "{:?}", dev.vf_info());
            let attempts = dev
                .xstats()
                .into_iter()
                .find(|(k, _)| k == "vf_pair_attempts")
                .unwrap()
                .1;
            println!(
                "paired {:?} after the offer, {attempts} attempts",
                t0.elapsed()
            );
            // Retried all along (30 at 100 ms on a quiet machine; a loaded one runs the timer late, so only a
            // loose floor: far more than the first try and a few early ones).
            assert!(attempts >= 10, "{attempts}");
            send_n(&mut q, mac, 10, 0);
            assert_eq!(wire.count(300), 10);
            assert!(rig.emu.stats().totals.guest_to_host_frames >= 50);
        },
    );
}

#[test]
fn vf_renamed_while_pairing_pairs_under_its_new_name() {
    in_netns("vf_renamed_while_pairing_pairs_under_its_new_name", || {
        let rig = rig(BackendConfig::Sink);
        let mac = rig.emu.config().mac;
        let mut other = mac;
        other[5] ^= 0x11;
        // It shows up under a temporary name and the wrong MAC, then udev-style renames it and the MAC settles.
        let (_, _wire) = veth("tmpvf", "vfp0", other);
        let mut dev = rig.open(vf_cfg(50, 100)).unwrap();
        dev.start().unwrap();
        assert!(rig.emu.send_vf_association(true, SERIAL));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!switched(&dev), "another MAC must not pair");
        vf_netdev::rename_link("tmpvf", "enP17s1").unwrap();
        vf_netdev::set_mac("enP17s1", mac).unwrap();
        assert!(wait_for(5, || switched(&dev)), "{:?}", dev.vf_info());
        assert_eq!(dev.vf_info().unwrap().iface.as_deref(), Some("enP17s1"));
    });
}

#[test]
fn vf_hot_remove_fails_over_to_synthetic_and_back() {
    in_netns("vf_hot_remove_fails_over_to_synthetic_and_back", || {
        hot_remove(VfPrefer::AfPacket)
    });
}

#[test]
fn vf_af_xdp_hot_remove_fails_over_to_synthetic_and_back() {
    in_netns(
        "vf_af_xdp_hot_remove_fails_over_to_synthetic_and_back",
        || hot_remove(VfPrefer::AfXdp),
    );
}

fn hot_remove(prefer: VfPrefer) {
    {
        let rig = rig(BackendConfig::Sink);
        let mac = rig.emu.config().mac;
        let (_, mut wire) = veth("vf0", "vfp0", mac);
        let mut cfg = vf_cfg(50, 100);
        cfg.vf.prefer = prefer;
        let mut dev = rig.open(cfg).unwrap();
        dev.start().unwrap();
        assert!(rig.emu.send_vf_association(true, SERIAL));
        assert!(wait_for(5, || switched(&dev)));
        let mut q = dev.queues().remove(0);
        let host_before = rig.emu.stats().totals.guest_to_host_frames;
        let stop = Arc::new(AtomicBool::new(false));
        // The wire counts on its own thread until its end goes away with the VF.
        let counter = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let r = wire.q.rx_burst(64, |f, _| {
                        if f.len() >= 14 && f[12..14] == ETHERTYPE {
                            n += 1;
                        }
                    });
                    match r {
                        Err(_) => break,
                        // Idle: give the core back (the machine may have fewer cores than busy threads).
                        Ok(0) => std::thread::sleep(Duration::from_micros(20)),
                        Ok(_) => {}
                    }
                }
                // Frames the peer's socket ring overflowed on are the wire's loss, not the failover's.
                (n, wire.q.stats().rx_dropped.load(Ordering::Relaxed))
            })
        };
        // The application keeps transmitting on its own thread while the VF is deleted.
        let sent = Arc::new(AtomicU64::new(0));
        let app = {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut seq = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let frames: Vec<Vec<u8>> =
                        (0..8).map(|i| frame(PEER_MAC, mac, seq + i, 128)).collect();
                    let segs: Vec<[&[u8]; 1]> = frames.iter().map(|f| [f.as_slice()]).collect();
                    let pkts: Vec<TxPacket<'_>> = segs
                        .iter()
                        .map(|s| TxPacket {
                            segs: s,
                            meta: TxMeta::default(),
                        })
                        .collect();
                    // Full rate: the next burst as soon as this one is taken.
                    let n = q.tx_burst(&pkts);
                    seq += n as u32;
                    sent.fetch_add(n as u64, Ordering::Relaxed);
                    if n == 0 {
                        std::thread::yield_now();
                    }
                }
                drain_tx(&mut q);
                q
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        let mut w = vf_netdev::LinkWatcher::new().unwrap();
        let mut changes = Vec::with_capacity(64);
        let _ = w.poll(&mut changes);
        changes.clear();
        // The deletion runs on its own thread: the kernel announces the netdev going down within about a
        // millisecond, but `delete_link` returns only after unregistering finishes (RCU barriers, tens of ms).
        // The clock starts when the deletion is requested.
        let t0 = Instant::now();
        let deleter = std::thread::spawn(move || {
            vf_netdev::delete_link("vf0").unwrap();
            t0.elapsed()
        });
        let (mut first_change, mut seen) = (None, None);
        while t0.elapsed() < Duration::from_secs(5) && seen.is_none() {
            if first_change.is_none() && w.poll(&mut changes).unwrap_or(0) > 0 {
                first_change = Some(t0.elapsed());
            }
            if rig.emu.stats().data_path.last() == Some(&0) {
                seen = Some(t0.elapsed());
            }
            // 0.1 ms resolution is enough and leaves the cores to the threads being measured.
            std::thread::sleep(Duration::from_micros(100));
        }
        let seen = seen.expect("host never saw SWITCH_DATA_PATH(synthetic)");
        let deleted = deleter.join().unwrap();
        if first_change.is_none() {
            let _ = w.wait(&mut changes, Duration::from_millis(100));
            first_change = Some(t0.elapsed());
        }
        let first_change = first_change.unwrap();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let mut q = app.join().unwrap();
        let (at_wire, wire_dropped) = counter.join().unwrap();
        let total = sent.load(Ordering::Relaxed);
        let host = rig.emu.stats().totals.guest_to_host_frames - host_before;
        let lost = total as i64 - at_wire as i64 - wire_dropped as i64 - host as i64;
        let x: std::collections::HashMap<String, u64> = dev.xstats().into_iter().collect();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "hot-remove {prefer:?} (clock from the deletion request): first netlink change at {:.3} ms, host saw \
             SWITCH_DATA_PATH(synthetic) at {:.3} ms ({:.3} ms after the first change), delete_link returned \
             at {:.3} ms; frames sent {total}, \
             at the wire {at_wire} (+{wire_dropped} its socket dropped), at the synthetic host {host}, lost {lost} \
             (driver vf_lost_frames {}), vf_tx_good_packets {}",
            ms(first_change),
            ms(seen),
            ms(seen.saturating_sub(first_change)),
            ms(deleted),
            x["vf_lost_frames"],
            x["vf_tx_good_packets"],
        );
        assert_eq!(rig.emu.stats().data_path, vec![1, 0]);
        // No timing assert (the figure is printed above). The loss is bounded by what was queued past the driver
        // when the netdev went: the VF queue's ring, plus the veth peer's receive backlog on each CPU (where
        // veth hands frames over; the kernel frees that backlog with the netdev, uncounted).
        let backlog: i64 = std::fs::read_to_string("/proc/sys/net/core/netdev_max_backlog")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1000);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
        let bound = VfConfig::default().ring_frames as i64 + backlog * cpus;
        assert!(
            (0..=bound).contains(&lost),
            "frames lost across the hot-remove ({lost}) exceed the VF ring + backlogs ({bound})"
        );
        assert!(
            host > 0,
            "synthetic path carries the traffic after the failover"
        );
        let info = dev.vf_info().unwrap();
        assert_eq!((info.state, info.switched), (VfState::Removed, false));
        let mut log = Vec::new();
        events(&dev, &mut log);
        assert!(
            vf_states(&log).iter().any(|(s, _)| *s == VfState::Removed),
            "{log:?}"
        );

        // The VF comes back (hot-add): paired and switched again.
        let (_, mut wire) = veth("vf0", "vfp0", mac);
        assert!(wait_for(5, || switched(&dev)), "{:?}", dev.vf_info());
        std::thread::sleep(Duration::from_millis(100));
        events(&dev, &mut log);
        assert_eq!(rig.emu.stats().data_path, vec![1, 0, 1], "{log:?}");
        send_n(&mut q, mac, 20, 0);
        assert_eq!(wire.count(300), 20);
    }
}

#[test]
fn vf_link_down_revoke_and_stop_go_synthetic_first() {
    in_netns("vf_link_down_revoke_and_stop_go_synthetic_first", || {
        let rig = rig(BackendConfig::Sink);
        let mac = rig.emu.config().mac;
        let (_, _wire) = veth("vf0", "vfp0", mac);
        let mut dev = rig.open(vf_cfg(50, 100)).unwrap();
        dev.start().unwrap();
        assert!(rig.emu.send_vf_association(true, SERIAL));
        assert!(wait_for(5, || switched(&dev)));
        // Carrier loss (the peer goes down) and back.
        let peer = Netdev::open(vf_netdev::by_name("vfp0").unwrap().ifindex).unwrap();
        peer.set_up(false).unwrap();
        assert!(wait_for(5, || !switched(&dev)));
        assert_eq!(rig.emu.stats().data_path, vec![1, 0]);
        peer.set_up(true).unwrap();
        assert!(wait_for(5, || switched(&dev)), "{:?}", dev.vf_info());
        assert_eq!(rig.emu.stats().data_path, vec![1, 0, 1]);
        // Stop: synthetic first; start: back.
        dev.stop().unwrap();
        assert_eq!(rig.emu.stats().data_path, vec![1, 0, 1, 0]);
        dev.start().unwrap();
        assert!(wait_for(5, || switched(&dev)));
        // Revoke.
        assert!(rig.emu.send_vf_association(false, SERIAL));
        assert!(wait_for(5, || dev
            .vf_info()
            .is_some_and(|i| i.state == VfState::Revoked)));
        assert_eq!(rig.emu.stats().data_path, vec![1, 0, 1, 0, 1, 0]);
        let mut log = Vec::new();
        events(&dev, &mut log);
        let s = vf_states(&log);
        assert!(s.contains(&(VfState::Removed, VfReason::LinkDown)), "{s:?}");
        assert!(s.contains(&(VfState::Removed, VfReason::Stopped)), "{s:?}");
        assert_eq!(s.last(), Some(&(VfState::Revoked, VfReason::Revoked)));
    });
}

#[test]
fn vf_that_never_appears_gives_up_and_synthetic_keeps_working() {
    in_netns(
        "vf_that_never_appears_gives_up_and_synthetic_keeps_working",
        || {
            let rig = rig(BackendConfig::Sink);
            let mac = rig.emu.config().mac;
            let mut dev = rig.open(vf_cfg(20, 5)).unwrap();
            dev.start().unwrap();
            assert!(rig.emu.send_vf_association(true, SERIAL));
            let mut log = Vec::new();
            assert!(wait_for(5, || {
                events(&dev, &mut log);
                log.iter().any(|e| matches!(e, Event::VfError { .. }))
            }));
            let failure = log.iter().find_map(|e| match e {
                Event::VfError {
                    failure, serial, ..
                } => Some((*failure, *serial)),
                _ => None,
            });
            assert_eq!(
                failure,
                Some((VfFailure::PairingGaveUp { attempts: 5 }, SERIAL))
            );
            let mut q = dev.queues().remove(0);
            send_n(&mut q, mac, 30, 0);
            drain_tx(&mut q);
            assert_eq!(rig.emu.stats().totals.guest_to_host_frames, 30);
            assert!(rig.emu.stats().data_path.is_empty());
        },
    );
}

// ---- With the emulator's own VF (hv-emu `EmulatorConfig::vf`: a veth whose guest end is the VF netdev, the
// offer after a delay, SWITCH_DATA_PATH honoured, unicast for our MAC diverted through the veth).

const EMU_VF: &str = "evf0";
const EMU_SERIAL: u32 = 5;

fn emu_vf_rig(cap: &CaptureHandle, delay_ms: u64) -> Rig {
    let cap = cap.clone();
    rig_with(move |c| {
        c.backend = BackendConfig::Capture(cap);
        c.vf = Some(EmuVfConfig {
            delay_ms,
            serial: EMU_SERIAL,
            ..EmuVfConfig::new(EMU_VF)
        });
    })
}

fn ours(frames: &[Vec<u8>], src: [u8; 6]) -> usize {
    frames
        .iter()
        .filter(|f| f.len() >= 14 && f[6..12] == src && f[12..14] == ETHERTYPE)
        .count()
}

#[test]
fn vf_emulator_offer_after_delay_switch_and_unicast_both_ways() {
    in_netns(
        "vf_emulator_offer_after_delay_switch_and_unicast_both_ways",
        || {
            let cap = CaptureHandle::default();
            let rig = emu_vf_rig(&cap, 300);
            let mac = rig.emu.config().mac;
            let t0 = Instant::now();
            let mut dev = rig.open(vf_cfg(20, 100)).unwrap();
            dev.start().unwrap();
            let mut q = dev.queues().remove(0);
            assert!(
                wait_for(10, || switched(&dev)),
                "{:?} {:?}",
                dev.vf_info(),
                rig.emu.vf_state()
            );
            println!(
                "offered, paired and switched {:?} after open (offer delay 300 ms)",
                t0.elapsed()
            );
            let info = dev.vf_info().unwrap();
            assert_eq!(
                (info.serial, info.iface.as_deref()),
                (EMU_SERIAL, Some(EMU_VF))
            );
            let vs = rig.emu.vf_state().unwrap();
            assert!(vs.datapath_vf, "{vs:?}");
            assert_eq!(vs.switches.to_vf, 1);

            // Host → guest unicast goes through the VF; broadcast stays on the synthetic ring; both come out of rx_burst.
            // (The emulator's rx pump applies the switch from its next loop: frames it already holds still go synthetic,
            // as on a real host, which is why rx polls both paths.)
            std::thread::sleep(Duration::from_millis(20));
            for i in 0..50 {
                cap.inject(&frame(mac, PEER_MAC, i, 200));
            }
            cap.inject(&frame([0xff; 6], PEER_MAC, 99, 200));
            assert_eq!(rx_count(&mut q, 51, 5), 51);
            let vs = rig.emu.vf_state().unwrap();
            assert_eq!(vs.vf_host_to_guest_frames, 50, "{vs:?}");
            // Guest → host through the VF.
            send_n(&mut q, mac, 40, 0);
            assert!(
                wait_for(5, || ours(&cap.sent(), mac) == 40),
                "{}",
                ours(&cap.sent(), mac)
            );
            let vs = rig.emu.vf_state().unwrap();
            assert!(vs.vf_guest_to_host_frames >= 40, "{vs:?}");
            let x: std::collections::HashMap<String, u64> = dev.xstats().into_iter().collect();
            assert_eq!((x["vf_rx_good_packets"], x["vf_tx_good_packets"]), (50, 40));
            drop(q);
            dev.close().unwrap();
            assert_eq!(rig.emu.vf_state().unwrap().switches.to_synthetic, 1);
        },
    );
}

#[test]
fn vf_emulator_remove_add_switch_back_and_revoke() {
    in_netns("vf_emulator_remove_add_switch_back_and_revoke", || {
        let cap = CaptureHandle::default();
        let rig = emu_vf_rig(&cap, 0);
        let mac = rig.emu.config().mac;
        let mut dev = rig.open(vf_cfg(20, 100)).unwrap();
        dev.start().unwrap();
        let mut q = dev.queues().remove(0);
        assert!(wait_for(10, || switched(&dev)), "{:?}", rig.emu.vf_state());

        // Hot-remove under the emulator: the driver goes back to synthetic and traffic flows there.
        let t0 = Instant::now();
        rig.emu.vf_remove().unwrap();
        let removed = t0.elapsed();
        let host_switched = wait_for(5, || {
            let s = rig.emu.vf_state().unwrap().switches;
            s.to_synthetic + s.ignored == 1
        });
        let mut log = Vec::new();
        events(&dev, &mut log);
        assert!(host_switched, "{:?}\n{log:?}", rig.emu.vf_state());
        println!(
            "emulator hot-remove: vf_remove returned after {:.3} ms, host counted the switch to synthetic at {:.3} ms \
             ({:?})",
            removed.as_secs_f64() * 1e3,
            t0.elapsed().as_secs_f64() * 1e3,
            rig.emu.vf_state().unwrap().switches,
        );
        assert!(!switched(&dev));
        let before = ours(&cap.sent(), mac);
        send_n(&mut q, mac, 20, 0);
        drain_tx(&mut q);
        assert_eq!(
            ours(&cap.sent(), mac) - before,
            20,
            "synthetic carries tx after the removal"
        );

        // Hot-add: re-offered, paired and switched again.
        rig.emu.vf_add().unwrap();
        assert!(wait_for(10, || switched(&dev)), "{:?}", rig.emu.vf_state());
        assert_eq!(rig.emu.vf_state().unwrap().switches.to_vf, 2);

        // The host switches back itself: the driver closes the VF, stays synthetic, answers the completion.
        rig.emu.vf_switch_back().unwrap();
        assert!(wait_for(5, || !switched(&dev)));
        let mut log = Vec::new();
        events(&dev, &mut log);
        assert!(
            vf_states(&log).contains(&(VfState::Removed, VfReason::HostSwitched)),
            "{log:?}"
        );
        assert!(log.contains(&Event::HostDataPath { to_vf: false }));

        // Revoke.
        rig.emu.vf_revoke().unwrap();
        assert!(wait_for(5, || dev
            .vf_info()
            .is_some_and(|i| i.state == VfState::Revoked)));
        let before = ours(&cap.sent(), mac);
        send_n(&mut q, mac, 10, 0);
        drain_tx(&mut q);
        assert_eq!(ours(&cap.sent(), mac) - before, 10);
    });
}

/// Every frame the wire received within `ms` whose source is `src`, with the kernel's checksum verdict
/// (`csum_ok`: verified, or still CHECKSUM_PARTIAL — a veth hands the peer the unfinished packet).
fn wire_frames(wire: &mut Wire, src: [u8; 6], ms: u64) -> Vec<(Vec<u8>, bool)> {
    let until = Instant::now() + Duration::from_millis(ms);
    let mut v = Vec::new();
    while Instant::now() < until {
        let _ = wire.q.rx_burst(64, |f, m| {
            if f.len() >= 14 && f[6..12] == src {
                v.push((f.to_vec(), m.csum_ok));
            }
        });
        std::thread::sleep(Duration::from_millis(1));
    }
    v
}

/// The UDP/TCP checksum of an IPv4 frame verifies (pseudo header + segment sum to 0xffff).
fn l4_ok(f: &[u8]) -> bool {
    let ihl = usize::from(f[14] & 15) * 4;
    let tot = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let seg = &f[14 + ihl..14 + tot];
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&f[26..34]);
    add(&[0, f[23]]);
    add(&(seg.len() as u16).to_be_bytes());
    add(seg);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

fn ipv4_fix(f: &mut [u8]) {
    f[24..26].copy_from_slice(&[0, 0]);
    let mut sum: u32 = 0;
    for c in f[14..34].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

fn offloads_on(prefer: VfPrefer) {
    let gso = matches!(prefer, VfPrefer::AfPacket);
    let rig = rig(BackendConfig::Sink);
    let mac = rig.emu.config().mac;
    let (_, mut wire) = veth("vf0", "vfp0", mac);
    let mut cfg = vf_cfg(20, 100);
    cfg.vf.prefer = prefer;
    let mut dev = rig.open(cfg).unwrap();
    dev.start().unwrap();
    assert!(rig.emu.send_vf_association(true, SERIAL));
    assert!(wait_for(5, || switched(&dev)), "{:?}", dev.vf_info());
    let mut q = dev.queues().remove(0);
    // From us to the peer (the helper builds frames the other way round), the L4 checksum field seeded with the
    // pseudo-header sum as DPDK's checksum/TSO offloads require (virtio NEEDS_CSUM semantics).
    let fix = |mut f: Vec<u8>| {
        f[..6].copy_from_slice(&PEER_MAC);
        f[6..12].copy_from_slice(&mac);
        ipv4_fix(&mut f);
        let tcp = f[23] == 6;
        let l4_len = f.len() - 34;
        let mut sum: u32 = 0;
        for c in f[26..34].chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        sum += u32::from(f[23]);
        // TSO: the pseudo header without the length (each segment gets its own).
        if !tcp {
            sum += l4_len as u32;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let at = if tcp { 34 + 16 } else { 34 + 6 };
        f[at..at + 2].copy_from_slice(&(sum as u16).to_be_bytes());
        f
    };
    let udp = fix(ip_frame(600, PEER_MAC, false, 1));
    let tso = fix(ip_frame(14 + 20 + 20 + 4000, PEER_MAC, true, 2));
    let plain = fix(ip_frame(300, PEER_MAC, false, 3));
    let (s1, s2, s3) = ([udp.as_slice()], [tso.as_slice()], [plain.as_slice()]);
    let csum = TxMeta {
        vlan_tci: None,
        offload: netvsc::TxOffload::Checksum {
            ipv6: false,
            ip_hdr: true,
            l4: netvsc::L4Proto::Udp,
            l2_len: 14,
            l3_len: 20,
        },
    };
    let seg = TxMeta {
        vlan_tci: None,
        offload: netvsc::TxOffload::Tso {
            ipv6: false,
            mss: 1000,
            l2_len: 14,
            l3_len: 20,
        },
    };
    let vlan = TxMeta {
        vlan_tci: Some(7),
        ..TxMeta::default()
    };
    let host0 = rig.emu.stats().totals.guest_to_host_frames;
    let pkts = [
        TxPacket {
            segs: &s1,
            meta: csum,
        },
        TxPacket {
            segs: &s2,
            meta: seg,
        },
        TxPacket {
            segs: &s3,
            meta: vlan,
        },
    ];
    send_all(&mut q, &pkts);
    drain_tx(&mut q);
    let got = wire_frames(&mut wire, mac, 300);
    let host = rig.emu.stats().totals.guest_to_host_frames - host0;
    println!(
        "{prefer:?}: at the wire (len, csum_ok) {:?}, at the synthetic host {host}",
        got.iter().map(|(f, ok)| (f.len(), *ok)).collect::<Vec<_>>()
    );
    let c = got
        .iter()
        .find(|(f, _)| f.len() == 600)
        .expect("the checksum frame reaches the peer");
    if gso {
        // AF_PACKET hands csum/gso to the kernel (virtio-net header); over a veth the peer gets the packet still
        // marked CHECKSUM_PARTIAL and unsegmented, as a NIC would before finishing it.
        assert!(c.1, "checksum offload requested from the kernel");
        let t = got
            .iter()
            .find(|(f, _)| f.len() == tso.len())
            .expect("the TSO frame went to the VF as one GSO packet");
        assert!(t.1);
        assert_eq!(got.len(), 2);
        assert_eq!(host, 1, "only the VLAN-insert frame goes synthetic");
    } else {
        // AF_XDP fills the checksum in software; it has no GSO, so the TSO frame goes synthetic with the
        // VLAN-insert frame.
        assert!(l4_ok(&c.0), "UDP checksum filled in");
        assert_eq!(got.len(), 1, "only the checksum frame reaches the peer");
        assert_eq!(host, 2, "TSO and VLAN frames go synthetic");
    }
    drop(q);
    dev.close().unwrap();
}

#[test]
fn vf_af_packet_offloads_go_to_the_kernel_vlan_insert_goes_synthetic() {
    in_netns(
        "vf_af_packet_offloads_go_to_the_kernel_vlan_insert_goes_synthetic",
        || offloads_on(VfPrefer::AfPacket),
    );
}

#[test]
fn vf_af_xdp_fills_checksums_and_sends_tso_synthetic() {
    in_netns("vf_af_xdp_fills_checksums_and_sends_tso_synthetic", || {
        offloads_on(VfPrefer::AfXdp)
    });
}

#[test]
fn vf_queues_are_min_of_synthetic_and_vf_channels_and_each_queue_transmits() {
    in_netns(
        "vf_queues_are_min_of_synthetic_and_vf_channels_and_each_queue_transmits",
        || {
            let rig = rig_with(|c| {
                c.backend = BackendConfig::Sink;
                c.max_queues = 4;
            });
            let mac = rig.emu.config().mac;
            // A VF with 2 channels under a 4-queue synthetic device: 2 VF queues.
            let (g, h) = vf_netdev::create_veth(&VethSpec {
                guest: "vf0",
                host: "vfp0",
                guest_mac: Some(mac),
                host_mac: Some(PEER_MAC),
                queues: 2,
                guest_netns_fd: None,
            })
            .unwrap();
            let _ = (
                vf_netdev::disable_ipv6("vf0"),
                vf_netdev::disable_ipv6("vfp0"),
            );
            Netdev::open(h).unwrap().set_up(true).unwrap();
            // One wire socket: this test counts what the driver's VF queues send. (With two sockets in one
            // PACKET_FANOUT group, two runs out of about thirty under load saw every frame in both sockets.)
            let mut port = Port::open(
                h,
                &PortConfig {
                    prefer: Prefer::AfPacket,
                    queues: 1,
                    ..PortConfig::default()
                },
            )
            .unwrap();
            let mut wire_qs = port.take_queues();
            let mut cfg = vf_cfg(20, 100);
            cfg.queues = 4;
            let mut dev = rig.open(cfg).unwrap();
            assert_eq!(dev.info().queues, 4);
            dev.start().unwrap();
            assert!(rig.emu.send_vf_association(true, SERIAL));
            assert!(wait_for(5, || switched(&dev)), "{:?}", dev.vf_info());
            let info = dev.vf_info().unwrap();
            assert_eq!((info.ifindex, info.queues), (g, 2));
            let mut qs = dev.queues();
            let host0 = rig.emu.stats().totals.guest_to_host_frames;
            for (i, q) in qs.iter_mut().enumerate() {
                send_n(q, mac, 10, 100 * i as u32);
                drain_tx(q);
            }
            // Queues 0 and 1 transmit through the VF, 2 and 3 (no VF queue) on their synthetic channels.
            // (wire queue, sequence number) of each frame seen: tells a duplicate from an extra frame if the
            // count is off.
            let mut seen: Vec<(usize, u32)> = Vec::with_capacity(64);
            let until = Instant::now() + Duration::from_millis(300);
            while Instant::now() < until {
                for (k, wq) in wire_qs.iter_mut().enumerate() {
                    let _ = wq.rx_burst(64, |f, _| {
                        if f.len() >= 18 && f[12..14] == ETHERTYPE {
                            seen.push((k, u32::from_be_bytes([f[14], f[15], f[16], f[17]])));
                        }
                    });
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let host = rig.emu.stats().totals.guest_to_host_frames - host0;
            let at_wire = seen.len();
            println!(
                "4 queues, 2 VF queues: {at_wire} frames at the wire, {host} at the synthetic host"
            );
            let x: std::collections::HashMap<String, u64> = dev.xstats().into_iter().collect();
            assert_eq!(
                (at_wire, host),
                (20, 20),
                "(wire queue, seq) seen: {seen:?}; driver vf_tx q0/q1 {:?}/{:?}",
                x.get("vf_tx_q0_packets"),
                x.get("vf_tx_q1_packets")
            );
            assert_eq!((x["vf_tx_q0_packets"], x["vf_tx_q1_packets"]), (10, 10));
        },
    );
}

// ---- Bad input: an association below NVSP 4, a refused switch, a netdev that vanishes while it is opened.

fn vf_failures(log: &[Event]) -> Vec<VfFailure> {
    log.iter()
        .filter_map(|e| match e {
            Event::VfError { failure, .. } => Some(*failure),
            _ => None,
        })
        .collect()
}

#[test]
fn vf_association_below_nvsp4_gives_a_typed_event_and_synthetic_keeps_working() {
    in_netns(
        "vf_association_below_nvsp4_gives_a_typed_event_and_synthetic_keeps_working",
        || {
            // The host speaks NVSP 2 only (0x30002), yet sends a VF association: no host does, so it is ignored.
            let rig = rig_with(|c| {
                c.backend = BackendConfig::Sink;
                c.accept_versions = Some(vec![0x0003_0002]);
            });
            let mac = rig.emu.config().mac;
            let (_, _wire) = veth("vf0", "vfp0", mac);
            let mut dev = rig.open(vf_cfg(20, 100)).unwrap();
            dev.start().unwrap();
            assert_eq!(rig.emu.stats().nvsp_version, Some(0x0003_0002));
            let rep = rig
                .emu
                .inject_fault(hv_emu::host::FaultKind::VfAssocEarly, 1)
                .unwrap();
            let mut q = dev.queues().remove(0);
            let mut out: Vec<RxPacket> = (0..8).map(|_| RxPacket::with_capacity(2048)).collect();
            let mut log = Vec::new();
            assert!(
                wait_for(5, || {
                    // Queue 0's owner polls: in-band notes are read there.
                    q.rx_burst(&mut out);
                    events(&dev, &mut log);
                    !vf_failures(&log).is_empty()
                }),
                "{rep:?} {log:?}"
            );
            assert_eq!(
                vf_failures(&log),
                [VfFailure::OldProtocol {
                    nvsp_version: 0x0003_0002
                }]
            );
            let x: std::collections::HashMap<String, u64> = dev.xstats().into_iter().collect();
            assert_eq!(x["vf_assoc_ignored"], 1);
            // Nothing paired although a netdev with the MAC exists; the host never saw a switch.
            std::thread::sleep(Duration::from_millis(200));
            assert!(!switched(&dev));
            assert!(rig.emu.stats().data_path.is_empty());
            send_n(&mut q, mac, 25, 0);
            drain_tx(&mut q);
            assert_eq!(rig.emu.stats().totals.guest_to_host_frames, 25);
        },
    );
}

#[test]
fn vf_switch_refused_by_the_host_gives_a_typed_event_and_stays_synthetic() {
    in_netns(
        "vf_switch_refused_by_the_host_gives_a_typed_event_and_stays_synthetic",
        || {
            let cap = CaptureHandle::default();
            // The offer comes 500 ms after bring-up; the host refuses switches from before it.
            let rig = emu_vf_rig(&cap, 500);
            let mac = rig.emu.config().mac;
            let mut dev = rig.open(vf_cfg(20, 100)).unwrap();
            dev.start().unwrap();
            rig.emu
                .inject_fault(hv_emu::host::FaultKind::RefuseSwitch, 1)
                .unwrap();
            let mut q = dev.queues().remove(0);
            let mut log = Vec::new();
            assert!(
                wait_for(10, || {
                    events(&dev, &mut log);
                    !vf_failures(&log).is_empty()
                }),
                "{log:?} {:?}",
                rig.emu.vf_state()
            );
            assert_eq!(
                vf_failures(&log),
                [VfFailure::SwitchRefused { status: 2 }],
                "{log:?}"
            );
            assert!(!switched(&dev));
            let vs = rig.emu.vf_state().unwrap();
            assert!(!vs.datapath_vf, "{vs:?}");
            assert_eq!(vs.switches.to_vf, 0, "{vs:?}");
            assert!(rig.emu.stats().data_path.is_empty());
            // Traffic stays on the synthetic path, both ways.
            send_n(&mut q, mac, 30, 0);
            assert!(wait_for(5, || ours(&cap.sent(), mac) == 30));
            for i in 0..20 {
                cap.inject(&frame(mac, PEER_MAC, i, 200));
            }
            assert_eq!(rx_count(&mut q, 20, 5), 20);
            let x: std::collections::HashMap<String, u64> = dev.xstats().into_iter().collect();
            assert_eq!(x["vf_tx_good_packets"], 0);
            // The host stops refusing and offers again: the driver pairs and switches.
            rig.emu
                .inject_fault(hv_emu::host::FaultKind::Clear, 1)
                .unwrap();
            rig.emu.vf_offer().unwrap();
            assert!(
                wait_for(10, || switched(&dev)),
                "{:?} {:?}",
                dev.vf_info(),
                rig.emu.vf_state()
            );
            assert_eq!(rig.emu.vf_state().unwrap().switches.to_vf, 1);
            drop(q);
            dev.close().unwrap();
        },
    );
}

#[test]
fn vf_netdev_deleted_at_any_point_after_the_offer_ends_typed() {
    in_netns(
        "vf_netdev_deleted_at_any_point_after_the_offer_ends_typed",
        || {
            let rig = rig(BackendConfig::Sink);
            let mac = rig.emu.config().mac;
            let mut dev = rig.open(vf_cfg(5, 4)).unwrap();
            dev.start().unwrap();
            let mut q = dev.queues().remove(0);
            let mut log = Vec::new();
            let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
            let mut sent = 0u32;
            // Delete the netdev at delays from 0 to 6 ms after the offer: early ones beat the pairing, late
            // ones come after the switch, the ones between land while the driver opens the VF.
            for step in 0..25u64 {
                let (_, _wire) = veth("vf0", "vfp0", mac);
                log.clear();
                assert!(rig.emu.send_vf_association(true, SERIAL));
                std::thread::sleep(Duration::from_micros(step * 250));
                vf_netdev::delete_link("vf0").unwrap();
                // Every attempt ends typed: removed after pairing, a VF error, or still offered (retrying).
                assert!(
                    wait_for(5, || {
                        events(&dev, &mut log);
                        !switched(&dev) && dev.vf_info().is_some_and(|i| i.state != VfState::Paired)
                    }),
                    "step {step}: {:?} {log:?}",
                    dev.vf_info()
                );
                let what = match (vf_failures(&log).last(), vf_states(&log).last()) {
                    (Some(f), _) => format!("error:{}", f.as_str()),
                    (None, Some((s, r))) => format!("{s:?}/{r:?}"),
                    (None, None) => "no event yet (retrying)".into(),
                };
                *outcomes.entry(what).or_default() += 1;
                // The synthetic path carries traffic after every attempt.
                send_n(&mut q, mac, 10, sent);
                drain_tx(&mut q);
                sent += 10;
                assert!(
                    wait_for(5, || rig.emu.stats().totals.guest_to_host_frames
                        >= u64::from(sent)),
                    "step {step}"
                );
            }
            println!(
                "netdev deleted 0..6 ms after the offer, outcomes over 25 attempts: {outcomes:?}"
            );
            // The last switch the host saw (if any) was back to synthetic.
            assert_ne!(rig.emu.stats().data_path.last(), Some(&1));
            let x: std::collections::HashMap<String, u64> = dev.xstats().into_iter().collect();
            println!(
                "vf_pair_attempts {} vf_switches {}",
                x["vf_pair_attempts"], x["vf_switches"]
            );
        },
    );
}

#[test]
fn vf_netdev_vanishing_while_it_is_opened_gives_vanished_and_synthetic_keeps_working() {
    in_netns(
        "vf_netdev_vanishing_while_it_is_opened_gives_vanished_and_synthetic_keeps_working",
        || {
            let rig = rig(BackendConfig::Sink);
            let mac = rig.emu.config().mac;
            let mut cfg = vf_cfg(20, 3);
            // The manager finds the netdev, then waits 300 ms before opening it: the netdev goes in that window.
            cfg.vf.open_pause = Duration::from_millis(300);
            let mut dev = rig.open(cfg).unwrap();
            dev.start().unwrap();
            let mut q = dev.queues().remove(0);
            let (_, _wire) = veth("vf0", "vfp0", mac);
            assert!(rig.emu.send_vf_association(true, SERIAL));
            std::thread::sleep(Duration::from_millis(100));
            vf_netdev::delete_link("vf0").unwrap();
            let mut log = Vec::new();
            assert!(
                wait_for(5, || {
                    events(&dev, &mut log);
                    vf_failures(&log).contains(&VfFailure::PairingGaveUp { attempts: 3 })
                }),
                "{log:?}"
            );
            let f = vf_failures(&log);
            assert_eq!(f[0], VfFailure::Vanished, "{log:?}");
            assert!(!vf_states(&log).iter().any(|(s, _)| *s == VfState::Paired));
            assert!(rig.emu.stats().data_path.is_empty());
            send_n(&mut q, mac, 15, 0);
            drain_tx(&mut q);
            assert_eq!(rig.emu.stats().totals.guest_to_host_frames, 15);
            // The netdev comes back and the host offers again: paired (after the pause) and switched.
            let (_, mut wire) = veth("vf0", "vfp0", mac);
            assert!(rig.emu.send_vf_association(true, SERIAL));
            assert!(wait_for(5, || switched(&dev)), "{:?}", dev.vf_info());
            assert_eq!(rig.emu.stats().data_path, vec![1]);
            send_n(&mut q, mac, 20, 100);
            assert_eq!(wire.count(300), 20);
        },
    );
}

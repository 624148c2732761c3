//! Open/close cycles leave no file descriptors or mappings behind, and the device reopens.

mod common;

use common::*;
use hv_emu::backend::BackendConfig;

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Resident set in KiB, split into (outside, inside) the mappings of files under `dir` (the emulated device's
/// rings and buffers: shared memory both sides touch, bounded by the files' size — the ring indices carry on
/// across opens, so each cycle's control traffic touches the next ring pages until the ring has been walked once).
fn rss_kib(dir: &std::path::Path) -> (u64, u64) {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let dir = dir.to_string_lossy();
    let (mut out, mut inside, mut in_dir) = (0, 0, false);
    for l in smaps.lines() {
        let mut w = l.split_whitespace();
        let first = w.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // The emulated device's memory: files under its tree, or the emulator's sealed memfds the tree links to.
            in_dir = w
                .nth(4)
                .is_some_and(|p| p.starts_with(dir.as_ref()) || p.starts_with("/memfd:hv-emu-"));
        } else if first == "Rss:" {
            let kib: u64 = w.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            if in_dir {
                inside += kib;
            } else {
                out += kib;
            }
        }
    }
    (out, inside)
}

/// The tests of this file count the process's threads and fds: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn open_close_cycles_do_not_leak() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cycles = 3000;
    let rig = rig(BackendConfig::Loopback);
    let cycle = |i: usize| {
        let mut dev = rig.open(quick()).unwrap();
        if i.is_multiple_of(100) {
            // Exercise the data path now and then so reopened devices really work.
            dev.start().unwrap();
            let mac = dev.mac();
            let mut q = dev.queues().remove(0);
            let f = ip_frame(600, mac, false, i as u8);
            let segs: [&[u8]; 1] = [&f];
            send_all(
                &mut q,
                &[netvsc::TxPacket {
                    segs: &segs,
                    meta: Default::default(),
                }],
            );
            let mut out = vec![netvsc::RxPacket::with_capacity(2048)];
            assert!(wait_for(5, || q.rx_burst(&mut out) == 1), "cycle {i}");
            assert_eq!(out[0].data, f);
        }
        dev.close().unwrap();
    };
    // Warm up (lazy statics, thread-locals, allocator arenas, the emulator's per-device state).
    for i in 0..200 {
        cycle(i + 1);
    }
    let dir = rig.dir.path().to_path_buf();
    let (f0, m0, t0, (r0, s0)) = (fds(), maps(), threads(), rss_kib(&dir));
    let t = std::time::Instant::now();
    for i in 0..cycles {
        cycle(i);
    }
    let (f1, m1, t1, (r1, s1)) = (fds(), maps(), threads(), rss_kib(&dir));
    eprintln!(
        "{cycles} cycles in {:?}; fds {f0}->{f1}, maps {m0}->{m1}, threads {t0}->{t1}, rss {r0}->{r1} KiB \
         (+ device shared memory {s0}->{s1} KiB)",
        t.elapsed()
    );
    assert_eq!(f1, f0, "file descriptors leaked");
    assert!(m1 <= m0 + 2, "mappings leaked: {m0} -> {m1}");
    assert!(t1 <= t0, "threads leaked: {t0} -> {t1}");
    assert!(
        r1 < r0 + 2048,
        "RSS grew {} KiB over {cycles} cycles ({r0} -> {r1} KiB)",
        r1.saturating_sub(r0)
    );
    let tree: u64 = std::fs::read_dir(dir.join("dev/uio0.maps"))
        .unwrap()
        // The map files link to the emulator's memfds: follow the links (DirEntry::metadata does not).
        .filter_map(|e| std::fs::metadata(e.ok()?.path()).ok())
        .map(|m| m.len() / 1024)
        .sum();
    assert!(
        s1 <= tree,
        "device shared memory resident {s1} KiB > its {tree} KiB of files"
    );
    // The host saw the started cycles' filter changes (start sets one, close sets 0).
    let s = rig.emu.stats();
    assert_eq!(s.packet_filters.last(), Some(&0));
    let started = (0..cycles)
        .filter(|i: &usize| i.is_multiple_of(100))
        .count()
        + (1..=200usize).filter(|i| i.is_multiple_of(100)).count();
    assert!(
        s.packet_filter_changes >= 2 * started as u64,
        "the host saw {} filter sets for {started} started cycles",
        s.packet_filter_changes
    );
    assert!(s.packet_filters.len() <= hv_emu::host::HISTORY);
    assert!(s.oids.set.len() <= hv_emu::host::HISTORY);
    assert!(s.oids.queried.len() <= hv_emu::host::HISTORY);
}

#[test]
fn the_hosts_filter_history_is_bounded() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rig = rig(BackendConfig::Loopback);
    let mut dev = rig.open(quick()).unwrap();
    dev.start().unwrap();
    let changes = 4 * hv_emu::host::HISTORY;
    for i in 0..changes {
        dev.set_promiscuous(i.is_multiple_of(2)).unwrap();
    }
    let want = dev.packet_filter();
    let s = rig.emu.stats();
    assert_eq!(s.packet_filter, want, "the host applied the last filter");
    assert_eq!(s.packet_filters.last(), Some(&want));
    assert_eq!(
        s.packet_filters.len(),
        hv_emu::host::HISTORY,
        "the history keeps the newest entries only"
    );
    assert!(
        s.packet_filter_changes >= changes as u64,
        "the host counted {} filter sets, the driver made {changes}",
        s.packet_filter_changes
    );
    assert!(s.oids.set.len() <= hv_emu::host::HISTORY);
    dev.close().unwrap();
    assert_eq!(rig.emu.stats().packet_filters.last(), Some(&0));
}

#[test]
fn queue_handles_outliving_close_are_inert() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rig = rig(BackendConfig::Loopback);
    let mut dev = rig.open(quick()).unwrap();
    dev.start().unwrap();
    let mut q = dev.queues().remove(0);
    dev.close().unwrap();
    let f = ip_frame(100, PEER_MAC, false, 0);
    let segs: [&[u8]; 1] = [&f];
    assert_eq!(
        q.tx_burst(&[netvsc::TxPacket {
            segs: &segs,
            meta: Default::default()
        }]),
        0
    );
    let mut out = vec![netvsc::RxPacket::default()];
    assert_eq!(q.rx_burst(&mut out), 0);
}

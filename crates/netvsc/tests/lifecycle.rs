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

#[test]
fn open_close_cycles_do_not_leak() {
    let cycles = 1000;
    let rig = rig(BackendConfig::Loopback);
    // Warm up (lazy statics, thread-locals, allocator arenas).
    for _ in 0..3 {
        rig.open(quick()).unwrap().close().unwrap();
    }
    let (f0, m0) = (fds(), maps());
    let t = std::time::Instant::now();
    for i in 0..cycles {
        let mut dev = rig.open(quick()).unwrap();
        if i % 100 == 0 {
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
    }
    let (f1, m1) = (fds(), maps());
    eprintln!(
        "{cycles} cycles in {:?}; fds {f0}->{f1}, maps {m0}->{m1}",
        t.elapsed()
    );
    assert_eq!(f1, f0, "file descriptors leaked");
    assert!(m1 <= m0 + 2, "mappings leaked: {m0} -> {m1}");
    let s = rig.emu.stats();
    assert_eq!(s.packet_filters.last(), Some(&0));
}

#[test]
fn queue_handles_outliving_close_are_inert() {
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

//! No SIGBUS in emulated mode, in both directions: a peer that truncates the memory the other side maps gets EPERM
//! and traffic keeps flowing. Guest → host: truncating (or O_TRUNC-opening) the tree's map, control-page and ring
//! files fails. Host → guest: truncating the driver's DMA memory (the GPA-direct frames the emulator reads, here
//! in process, straight from memory) through `/proc/<pid>/map_files` fails.

mod common;

use std::os::unix::fs::FileExt;

use common::*;
use hv_emu::backend::BackendConfig;
use netvsc::{RxPacket, TxPacket};

/// Loop `frames` frames of `len` bytes out of queue `tx` through the emulator and back (RSS may spread them over
/// every queue); all must return byte for byte.
fn loop_traffic(
    qs: &mut [netvsc::QueuePair],
    tx: usize,
    mac: [u8; 6],
    len: usize,
    frames: usize,
    seed: u8,
) {
    let fs: Vec<Vec<u8>> = (0..frames)
        .map(|i| ip_frame(len, mac, false, seed.wrapping_add(i as u8)))
        .collect();
    let segs: Vec<[&[u8]; 1]> = fs.iter().map(|f| [f.as_slice()]).collect();
    let pkts: Vec<TxPacket<'_>> = segs
        .iter()
        .map(|s| TxPacket {
            segs: s,
            meta: Default::default(),
        })
        .collect();
    send_all(&mut qs[tx], &pkts);
    let mut out: Vec<RxPacket> = (0..32).map(|_| RxPacket::with_capacity(len)).collect();
    let mut got = Vec::new();
    assert!(
        wait_for(20, || {
            for q in qs.iter_mut() {
                let n = q.rx_burst(&mut out);
                got.extend(out[..n].iter().map(|p| p.data.clone()));
            }
            got.len() >= frames
        }),
        "{} of {frames} frames came back",
        got.len()
    );
    let mut want = fs.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    drain_tx(&mut qs[tx]);
}

#[test]
fn a_guest_cannot_shrink_the_hosts_memory_and_traffic_continues() {
    let rig = rig_with(|c| {
        c.backend = BackendConfig::Loopback;
        c.max_queues = 2;
    });
    let mut dev = rig
        .open(netvsc::DeviceConfig {
            queues: 2,
            ..quick()
        })
        .unwrap();
    dev.start().unwrap();
    let mac = dev.mac();
    let mut qs = dev.queues();
    loop_traffic(&mut qs, 0, mac, 200, 64, 1);

    let tree = rig.emu.tree();
    let maps = tree.maps_dir();
    let mut files: Vec<_> = (0..5).map(|k| maps.join(format!("map{k}"))).collect();
    files.push(maps.join("ctl"));
    for relid in std::fs::read_dir(tree.device_dir().join("channels")).unwrap() {
        files.push(relid.unwrap().path().join("ring"));
    }
    assert!(
        files.len() >= 8,
        "primary and subchannel rings present: {files:?}"
    );
    for p in &files {
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        let len = f.metadata().unwrap().len();
        for size in [0, len / 2, len + 4096] {
            let e = f.set_len(size).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EPERM), "truncate {p:?}: {e}");
        }
        let e = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(p)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "O_TRUNC {p:?}: {e}");
    }
    // Both sides are alive and both queues still carry traffic (the host reads every byte of its maps).
    loop_traffic(&mut qs, 0, mac, 1200, 64, 2);
    loop_traffic(&mut qs, 1, mac, 300, 64, 3);
    drop(qs);
    dev.close().unwrap();
}

#[test]
fn a_host_cannot_shrink_the_drivers_dma_memory_and_traffic_continues() {
    let rig = rig(BackendConfig::Loopback);
    // tx_copybreak 0: every frame goes GPA-direct from DMA memory, which the emulator reads.
    let mut cfg = quick();
    cfg.devargs.tx_copybreak = 0;
    let mut dev = rig.open(cfg).unwrap();
    dev.start().unwrap();
    let mac = dev.mac();
    let mut q = dev.queues();
    loop_traffic(&mut q, 0, mac, 1500, 32, 4);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let dma: Vec<&str> = maps
        .lines()
        .filter(|l| l.contains("/memfd:netvsc-dma"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(!dma.is_empty(), "the driver's DMA memory is sealed memfds");
    let mut reached = 0;
    for range in &dma {
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/self/map_files/{range}"))
        else {
            continue; // map_files needs CAP_SYS_ADMIN; without it no peer can reach the memory by path at all
        };
        reached += 1;
        let e = f.set_len(0).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(libc::EPERM),
            "truncate DMA {range}: {e}"
        );
        // Reading it as a host would still works.
        let mut b = [0u8; 1];
        f.read_at(&mut b, 0).unwrap();
    }
    if reached == 0 {
        eprintln!(
            "note: /proc/self/map_files not open to this process; seals checked by vmbus-uio's tests"
        );
    }
    loop_traffic(&mut q, 0, mac, 1500, 32, 5);
    drop(q);
    dev.close().unwrap();
}

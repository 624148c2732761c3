//! Throughput of one queue against the in-process emulator busy-polling on the other core:
//! tx into a sink, rx from an unlimited generator, at 64/512/1500/9000-byte frames; zero-copy tx from the tx region
//! at 1500/9000 (`txzc`).
//! `NETVSC_BENCH_SECS` sets the time per point (default 1 s); `NETVSC_BENCH_ONLY=tx:1500,txzc:1500,rx:64` runs only the
//! listed points (for profiling one of them). Prints Mpps and Gbit/s.

use std::time::{Duration, Instant};

use hv_emu::backend::{BackendConfig, GeneratorConfig};
use hv_emu::emulator::{Emulator, EmulatorConfig};
use netvsc::{Device, DeviceConfig, RxPacket, TxDesc, TxMeta, TxPacket, TxRegionConfig};

fn secs() -> Duration {
    let s = std::env::var("NETVSC_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(s)
}

fn emulator(backend: BackendConfig, mtu: u32) -> (Emulator, tempfile::TempDir) {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let dir = tempfile::tempdir_in(base).unwrap();
    let mut cfg = EmulatorConfig::new(dir.path());
    cfg.backend = backend;
    cfg.busy_poll = true;
    cfg.mtu = mtu;
    cfg.max_queues = 1;
    (Emulator::start(cfg).unwrap(), dir)
}

fn frame(size: usize, dst: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; size];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

fn report(dir: &str, size: usize, pkts: u64, elapsed: Duration) {
    let pps = pkts as f64 / elapsed.as_secs_f64();
    println!(
        "{dir} {size:>5} B: {:>7.3} Mpps {:>7.3} Gbit/s ({pkts} frames in {:.2?})",
        pps / 1e6,
        pps * size as f64 * 8.0 / 1e9,
        elapsed
    );
}

fn tx(size: usize) {
    let mtu = if size > 1514 { 9000 } else { 1500 };
    let (emu, dir) = emulator(BackendConfig::Sink, mtu);
    let dev = Device::open(
        dir.path(),
        &emu.config().uuid,
        DeviceConfig {
            mtu,
            ..DeviceConfig::default()
        },
    )
    .unwrap();
    let mut q = dev.queues().remove(0);
    let f = frame(size, [2, 0, 0, 0, 0, 2]);
    let segs: [&[u8]; 1] = [&f];
    let burst: Vec<TxPacket<'_>> = (0..32)
        .map(|_| TxPacket {
            segs: &segs,
            meta: TxMeta::default(),
        })
        .collect();
    // Read the duration once: the loop must measure the driver, not getenv.
    let dur = secs();
    let t = Instant::now();
    while t.elapsed() < dur {
        q.tx_burst(&burst);
    }
    while q.tx_in_flight() > 0 && t.elapsed() < dur * 3 {
        q.poll_completions();
    }
    let elapsed = t.elapsed();
    report("tx", size, dev.stats().opackets, elapsed);
    let host = emu.stats().totals.guest_to_host_frames;
    assert_eq!(host, dev.stats().opackets, "host and driver agree");
    dev.close().unwrap();
}

/// Zero-copy tx from the queue's tx region (frames above `tx_copybreak` GPA-direct from their buffers), with
/// `bufs` buffers, next to [`tx`]'s copying path on the same rig shape.
fn tx_zero_copy(size: usize, bufs: u32) {
    let mtu = if size > 1514 { 9000 } else { 1500 };
    let (emu, dir) = emulator(BackendConfig::Sink, mtu);
    let dev = Device::open(
        dir.path(),
        &emu.config().uuid,
        DeviceConfig {
            mtu,
            ..DeviceConfig::default()
        },
    )
    .unwrap();
    let mut q = dev.queues().remove(0);
    let buf_size = if size <= 2048 { 2048 } else { 16384 };
    let region = q
        .create_tx_region(TxRegionConfig { buf_size, bufs })
        .unwrap();
    let f = frame(size, [2, 0, 0, 0, 0, 2]);
    for b in 0..bufs {
        region.buffer(b).unwrap().write(0, &f).unwrap();
    }
    let mut free: Vec<u32> = (0..bufs).rev().collect();
    let mut descs = [TxDesc::default(); 32];
    let mut back = [0u32; 64];
    let mut k = 0;
    let dur = secs();
    let t = Instant::now();
    while t.elapsed() < dur {
        while k < 32
            && let Some(b) = free.pop()
        {
            descs[k] = TxDesc {
                buf: b,
                len: size as u32,
                meta: TxMeta::default(),
            };
            k += 1;
        }
        let took = q.tx_burst_zero_copy(&descs[..k]).unwrap();
        descs.copy_within(took..k, 0);
        k -= took;
        let r = q.tx_reclaim(&mut back);
        free.extend_from_slice(&back[..r]);
    }
    while q.tx_in_flight() > 0 && t.elapsed() < dur * 3 {
        q.tx_reclaim(&mut back);
    }
    let elapsed = t.elapsed();
    report(
        &format!("tx-zc/{bufs}"),
        size,
        dev.stats().opackets,
        elapsed,
    );
    assert_eq!(
        emu.stats().totals.guest_to_host_frames,
        dev.stats().opackets
    );
    dev.close().unwrap();
}

fn rx(size: usize) {
    let mtu = if size > 1514 { 9000 } else { 1500 };
    let generator = GeneratorConfig {
        rate_pps: None,
        frame_sizes: vec![size],
        dst_mac: EmulatorConfig::new("/").mac,
        ..GeneratorConfig::default()
    };
    let (emu, dir) = emulator(BackendConfig::Generator(generator), mtu);
    let mut dev = Device::open(
        dir.path(),
        &emu.config().uuid,
        DeviceConfig {
            mtu,
            ..DeviceConfig::default()
        },
    )
    .unwrap();
    dev.start().unwrap();
    let mut q = dev.queues().remove(0);
    let mut out: Vec<RxPacket> = (0..32).map(|_| RxPacket::with_capacity(size)).collect();
    let base = dev.stats().ipackets;
    let dur = secs();
    let t = Instant::now();
    while t.elapsed() < dur {
        q.rx_burst(&mut out);
    }
    let elapsed = t.elapsed();
    report("rx", size, dev.stats().ipackets - base, elapsed);
    let host = emu.stats();
    let ch = &host.channels[0];
    println!(
        "         host: {} frames in {} packets, {} completions; dropped {} without a free buffer, {} ring full",
        host.totals.host_to_guest_frames,
        ch.host_to_guest_packets,
        ch.rx_completions,
        host.totals.drops.no_rx_buffer,
        host.totals.drops.ring_full
    );
    dev.stop().unwrap();
    dev.close().unwrap();
}

fn main() {
    // `cargo test --benches` runs this with no measurement wanted; keep it quick there.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let only = std::env::var("NETVSC_BENCH_ONLY").unwrap_or_default();
    let wanted = |dir: &str, size: usize| {
        only.is_empty() || only.split(',').any(|p| p.trim() == format!("{dir}:{size}"))
    };
    for size in [64, 512, 1500, 9000] {
        if wanted("tx", size) {
            tx(size);
        }
    }
    // Zero-copy: the region's default depth and one as deep as the copying path's 32 GPA-direct slots.
    for size in [1500, 9000] {
        if wanted("txzc", size) {
            tx_zero_copy(size, if size <= 2048 { 1024 } else { 256 });
            tx_zero_copy(size, 32);
        }
    }
    for size in [64, 512, 1500, 9000] {
        if wanted("rx", size) {
            rx(size);
        }
    }
}

//! Shared test helpers: an in-process emulator in a temp dir and a device opened on it.
#![allow(dead_code)]

use std::time::Duration;

use hv_emu::backend::BackendConfig;
use hv_emu::emulator::{Emulator, EmulatorConfig};
use netvsc::{Device, DeviceConfig, Timeouts};

pub struct Rig {
    pub emu: Emulator,
    pub dir: tempfile::TempDir,
}

impl Rig {
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn uuid(&self) -> String {
        self.emu.config().uuid.clone()
    }

    pub fn open(&self, cfg: DeviceConfig) -> netvsc::Result<Device> {
        Device::open(self.dir.path(), &self.uuid(), cfg)
    }
}

pub fn rig_with(f: impl FnOnce(&mut EmulatorConfig)) -> Rig {
    let dir = tempfile::tempdir_in(shm()).unwrap();
    let mut cfg = EmulatorConfig::new(dir.path());
    cfg.busy_poll = false;
    f(&mut cfg);
    let emu = Emulator::start(cfg).unwrap();
    Rig { emu, dir }
}

pub fn rig(backend: BackendConfig) -> Rig {
    rig_with(|c| c.backend = backend)
}

fn shm() -> &'static str {
    if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    }
}

pub fn quick() -> DeviceConfig {
    DeviceConfig {
        timeouts: Timeouts::all(Duration::from_secs(10)),
        ..DeviceConfig::default()
    }
}

/// Wait until `f` holds or `secs` pass.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    f()
}

pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];

/// An Ethernet/IPv4/UDP (or TCP) frame of exactly `len` bytes to `dst`, payload bytes = `seed`.
pub fn ip_frame(len: usize, dst: [u8; 6], tcp: bool, seed: u8) -> Vec<u8> {
    let l4 = if tcp { 20 } else { 8 };
    assert!(len >= 14 + 20 + l4);
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&PEER_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = len - 14;
    f[14] = 0x45;
    let tot = if ip_len > 65535 { 0 } else { ip_len as u16 };
    f[16..18].copy_from_slice(&tot.to_be_bytes());
    f[22] = 64;
    f[23] = if tcp { 6 } else { 17 };
    f[26..30].copy_from_slice(&[10, 0, 0, 2]);
    f[30..34].copy_from_slice(&[10, 0, 0, 1]);
    f[34..36].copy_from_slice(&1234u16.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    if tcp {
        f[46] = 0x50;
        f[47] = 0x18;
    } else {
        f[38..40].copy_from_slice(&((len - 34).min(65535) as u16).to_be_bytes());
    }
    for (i, b) in f[34 + l4..].iter_mut().enumerate() {
        *b = seed.wrapping_add(i as u8);
    }
    f
}

/// Send `frames` on `q` until all are taken (retrying on backpressure).
pub fn send_all(q: &mut netvsc::QueuePair, frames: &[netvsc::TxPacket<'_>]) {
    let mut sent = 0;
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while sent < frames.len() {
        let n = q.tx_burst(&frames[sent..]);
        sent += n;
        if n == 0 {
            assert!(std::time::Instant::now() < until, "tx stuck at {sent}");
            std::thread::yield_now();
        }
    }
}

/// Send `frames` on `q` as they are (one segment each, no metadata), retrying on backpressure.
pub fn send_frames<F: AsRef<[u8]>>(q: &mut netvsc::QueuePair, frames: &[F]) {
    let segs: Vec<[&[u8]; 1]> = frames.iter().map(|f| [f.as_ref()]).collect();
    let pkts: Vec<netvsc::TxPacket<'_>> = segs
        .iter()
        .map(|s| netvsc::TxPacket {
            segs: s,
            meta: netvsc::TxMeta::default(),
        })
        .collect();
    send_all(q, &pkts);
}

/// Poll until every tx packet is completed.
pub fn drain_tx(q: &mut netvsc::QueuePair) {
    assert!(
        wait_for(20, || {
            q.poll_completions();
            q.tx_in_flight() == 0
        }),
        "tx completions missing: {} in flight",
        q.tx_in_flight()
    );
}

//! The small emulator rig the host tests share: a tree on tmpfs with small rings and buffers, and a little-endian
//! reader that decodes replies independently of the host's own encoder.

use hv_emu::{Emulator, EmulatorConfig};

/// Little-endian u32 at `off` of a reply, read independently of the host's encoder.
pub fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// An emulator on a fresh tree (tmpfs when available) with 256 KiB rings, a 2 MiB receive and a 1 MiB send
/// buffer; `f` adjusts the configuration first.
pub fn emu(f: impl FnOnce(&mut EmulatorConfig)) -> (tempfile::TempDir, Emulator) {
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let mut cfg = EmulatorConfig::new(dir.path().join("d"));
    cfg.ring_size = 64 * 4096;
    cfg.recv_size = 2 << 20;
    cfg.send_size = 1 << 20;
    f(&mut cfg);
    (dir, Emulator::start(cfg).unwrap())
}

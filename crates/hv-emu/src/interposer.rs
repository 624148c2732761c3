//! The LD_PRELOAD interposer that gives unmodified guests (DPDK) the kernel's `/dev/uioN` semantics over the
//! emulated tree: opens of `/dev/uioN` go to `D/dev/uioN`, mmaps at offset K × page map `D/dev/uioN.maps/mapK`, and
//! 4-byte reads/writes use the control page. The C source is `interposer/uio_interposer.c`; build.rs compiles it and
//! the bytes are embedded here, so [`install`] can drop it into any tree.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The compiled interposer.
pub static INTERPOSER_SO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libhvemu_uio.so"));

/// True when the interposer was built with the DPDK 22.11 queue-state workaround (against the DPDK headers): for a
/// guest whose `rte_version()` is 22.x or 23.03/23.07, `rte_eth_{rx,tx}_queue_info_get` then report STARTED, as DPDK
/// 23.11 commit 0727d5d0e6 makes the PMD do; 23.11 and later (and an unreadable version) pass through.
pub const HAS_DPDK_QUEUE_STATE_FIX: bool =
    matches!(env!("HV_EMU_INTERPOSER_DPDK").as_bytes(), b"1");

/// Environment variable naming the tree root D.
pub const ENV_DIR: &str = "HV_EMU_DIR";
/// Environment variable that turns on per-call logging to stderr.
pub const ENV_LOG: &str = "HV_EMU_LOG";
/// Environment variable overriding the version rule of the DPDK 22.11 queue-state workaround: `1` on, `0` off.
pub const ENV_QUEUE_STATE_FIX: &str = "HV_EMU_DPDK_QUEUE_STATE_FIX";
/// Environment variable letting net/netvsc configure a VF whose PMD has no removal interrupt (af_packet on the
/// emulator's veth): `rte_eth_dev_configure` then passes `intr_conf.rmv = 0` for such a port (same build condition
/// as the queue-state workaround).
pub const ENV_VF_RMV_FIX: &str = "HV_EMU_DPDK_VF_RMV_FIX";

/// Where [`install`] puts the library under D.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join("lib/libhvemu_uio.so")
}

/// Write the interposer to `D/lib/libhvemu_uio.so` (atomically, mode 0755) and return its path.
pub fn install(dir: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = path_in(dir);
    let lib = path.parent().expect("path_in has a parent");
    fs::create_dir_all(lib)?;
    let tmp = lib.join(format!(".libhvemu_uio.so.{}", std::process::id()));
    fs::write(&tmp, INTERPOSER_SO)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_writes_an_elf_shared_object() {
        let dir = tempfile::tempdir().unwrap();
        let p = install(dir.path()).unwrap();
        assert_eq!(p, dir.path().join("lib/libhvemu_uio.so"));
        let bytes = fs::read(&p).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF");
        assert_eq!(bytes[16], 3, "ET_DYN");
        // Reinstalling over an existing copy works.
        install(dir.path()).unwrap();
    }
}

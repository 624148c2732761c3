//! Test helper: builds a small emulated device tree (the convention of docs/contracts.md, "The
//! emulated device tree") in a temp directory, with knobs to break individual files.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

pub(crate) const NIC_CLASS_BRACED: &str = "{f8615163-df3e-46c5-913f-f2d2f965ed0e}";
pub(crate) const CTL_MAGIC: u32 = 0x4856_4355;

/// What to put in one device directory.
#[derive(Debug, Clone)]
pub(crate) struct DevSpec {
    pub uuid: String,
    pub class_id: String,
    pub device_id: String,
    pub relid: u32,
    pub monitor_id: Option<u8>,
    pub numa_node: Option<&'static str>,
    pub driver: Option<&'static str>,
    pub iface: Option<&'static str>,
    pub uio: Option<u32>,
    /// (name, size text) per map index.
    pub maps: Vec<(String, String)>,
}

impl DevSpec {
    /// A NIC bound to uio_hv_generic with small maps (rings 2 × 16 KiB, buffers 64/32 KiB).
    pub fn nic(uuid: &str, relid: u32, uio: u32) -> Self {
        Self {
            uuid: uuid.to_owned(),
            class_id: NIC_CLASS_BRACED.to_owned(),
            device_id: format!("{{{uuid}}}"),
            relid,
            monitor_id: Some(relid as u8),
            numa_node: Some("0"),
            driver: Some("uio_hv_generic"),
            iface: None,
            uio: Some(uio),
            maps: vec![
                ("txrx_rings".into(), format!("{:#018x}", 2 * 16384)),
                ("int_page".into(), format!("{:#018x}", 4096)),
                ("monitor_page".into(), format!("{:#018x}", 4096)),
                ("recv:11".into(), format!("{:#018x}", 65536)),
                ("send:12".into(), format!("{:#018x}", 32768)),
            ],
        }
    }
}

pub(crate) struct FakeTree {
    dir: TempDir,
    /// The sealed memfds behind the map and ring files (symlinks to `/proc/<pid>/fd/N`, as the emulator's tree).
    backing: std::sync::Mutex<Vec<fs::File>>,
}

impl FakeTree {
    pub fn new() -> Self {
        let tree = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            backing: std::sync::Mutex::new(Vec::new()),
        };
        fs::create_dir_all(tree.root().join("sys/bus/vmbus/drivers/uio_hv_generic")).unwrap();
        fs::create_dir_all(tree.root().join("sys/bus/vmbus/drivers/hv_netvsc")).unwrap();
        fs::create_dir_all(tree.root().join("sys/bus/vmbus/devices")).unwrap();
        fs::create_dir_all(tree.root().join("dev")).unwrap();
        tree
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The name of this tree's memfds (unique per tree, so tests running side by side can tell theirs apart).
    pub fn memfd_name(&self) -> String {
        let dir = self.dir.path().file_name().unwrap_or_default();
        format!("fake-tree-{}", dir.to_string_lossy())
    }

    /// Make `path` a symlink to a new sealed memfd of `len` bytes (replacing whatever was there), as the emulator
    /// backs its maps; the memfd lives as long as the tree.
    pub fn sealed_file(&self, path: &Path, len: u64) {
        let file = crate::memfd::sealed(&self.memfd_name(), len).unwrap();
        let _ = fs::remove_file(path);
        symlink(crate::memfd::proc_path(&file), path).unwrap();
        self.backing.lock().unwrap().push(file);
    }

    pub fn dev_dir(&self, uuid: &str) -> PathBuf {
        self.root().join("sys/bus/vmbus/devices").join(uuid)
    }

    /// Create the sysfs side of a device and, when it has a uio node, the emulated `dev` side
    /// (`dev/uioN`, `dev/uioN.maps/mapK` sized from parseable sizes, and the control page).
    pub fn add(&self, spec: &DevSpec) -> PathBuf {
        let dev = self.dev_dir(&spec.uuid);
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("class_id"), format!("{}\n", spec.class_id)).unwrap();
        fs::write(dev.join("device_id"), format!("{}\n", spec.device_id)).unwrap();
        fs::write(dev.join("id"), format!("{}\n", spec.relid)).unwrap();
        if let Some(m) = spec.monitor_id {
            fs::write(dev.join("monitor_id"), format!("{m}\n")).unwrap();
        }
        if let Some(n) = spec.numa_node {
            fs::write(dev.join("numa_node"), format!("{n}\n")).unwrap();
        }
        if let Some(driver) = spec.driver {
            symlink(format!("../../drivers/{driver}"), dev.join("driver")).unwrap();
        }
        if let Some(iface) = spec.iface {
            fs::create_dir_all(dev.join("net").join(iface)).unwrap();
        }
        if let Some(n) = spec.uio {
            let uio = dev.join(format!("uio/uio{n}"));
            fs::create_dir_all(&uio).unwrap();
            fs::write(uio.join("name"), "uio_hv_generic\n").unwrap();
            let backing = self.root().join(format!("dev/uio{n}.maps"));
            fs::create_dir_all(&backing).unwrap();
            fs::write(self.root().join(format!("dev/uio{n}")), b"").unwrap();
            for (k, (name, size)) in spec.maps.iter().enumerate() {
                let map = uio.join(format!("maps/map{k}"));
                fs::create_dir_all(&map).unwrap();
                fs::write(map.join("name"), format!("{name}\n")).unwrap();
                fs::write(map.join("size"), format!("{size}\n")).unwrap();
                let bytes = size
                    .strip_prefix("0x")
                    .map(|h| u64::from_str_radix(h, 16))
                    .unwrap_or_else(|| size.parse())
                    .unwrap_or(0);
                self.sealed_file(&backing.join(format!("map{k}")), bytes);
            }
            self.sealed_file(&backing.join("ctl"), 4096);
            overwrite(&backing.join("ctl"), &CTL_MAGIC.to_le_bytes());
        }
        dev
    }

    /// Create `channels/<relid>/` with `subchannel_id`, `monitor_id` and optionally a `ring` file.
    pub fn add_channel(
        &self,
        uuid: &str,
        relid: u32,
        sub: u16,
        monitor: Option<u8>,
        ring: Option<u64>,
    ) {
        let dir = self.dev_dir(uuid).join(format!("channels/{relid}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("subchannel_id"), format!("{sub}\n")).unwrap();
        if let Some(m) = monitor {
            fs::write(dir.join("monitor_id"), format!("{m}\n")).unwrap();
        }
        if let Some(len) = ring {
            self.sealed_file(&dir.join("ring"), len);
        }
    }
}

/// Write `bytes` at the start of `path` without truncating it (a sealed file cannot be truncated).
pub(crate) fn overwrite(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(bytes, 0)
        .unwrap();
}

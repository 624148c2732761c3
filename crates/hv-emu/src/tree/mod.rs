//! The emulated device tree: the sysfs files and uio maps `uio_hv_generic` would present for one synthetic NIC,
//! written under a directory D (see docs/contracts.md "The emulated device tree"). Each uio map is a sparse backing
//! file under `D/dev/uioN.maps/`; the host maps those files shared, and the guest maps the same files (directly via
//! vmbus-uio, or through the LD_PRELOAD interposer for unmodified programs), so both see the same memory.

mod ctl;
mod mmap;
mod sysfs;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use vmbus_ring::SharedMem;

pub use ctl::{
    CTL_EVENT_COUNT_OFF, CTL_GUEST_PID_OFF, CTL_IRQ_ENABLED_OFF, CTL_IRQ_WRITES_OFF, CTL_MAGIC,
    CTL_MAGIC_OFF, CTL_OPEN_COUNT_OFF, CTL_SIZE, ControlPage,
};
pub use mmap::MappedFile;

/// The netvsc device class GUID, as sysfs prints it (without braces).
pub const NETVSC_CLASS_ID: &str = "f8615163-df3e-46c5-913f-f2d2f965ed0e";
/// Page size of the uio maps.
pub const PAGE_SIZE: usize = 4096;
/// Names of the five uio maps, in index order (maps 3 and 4 get `:<gpadl>` appended).
pub const MAP_NAMES: [&str; 5] = ["txrx_rings", "int_page", "monitor_page", "recv", "send"];
/// The uio driver name the tree advertises (both `driver` link target and `uio/uioN/name`).
pub const UIO_DRIVER: &str = "uio_hv_generic";
/// The version string uio_hv_generic reports.
pub const UIO_VERSION: &str = "0.02.1";

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeConfig {
    /// Device instance GUID, lower-case `8-4-4-4-12` hex without braces.
    pub uuid: String,
    /// MAC address the host will report (not written to the tree; kept for the host side).
    pub mac: Option<[u8; 6]>,
    /// Primary channel relid (`id`).
    pub relid: u32,
    /// Monitor id of the primary channel; `None` = unmonitored (no `monitor_id` files are written).
    pub monitor_id: Option<u8>,
    /// uio minor number N (`/dev/uioN`).
    pub uio_number: u32,
    /// Bytes per ring direction, header page included (map 0 is twice this).
    pub ring_size: usize,
    /// Receive buffer bytes (map 3).
    pub recv_size: usize,
    /// Send buffer bytes (map 4).
    pub send_size: usize,
    /// GPADL handle of the receive buffer (map 3 name `recv:<gpadl>`).
    pub recv_gpadl: u32,
    /// GPADL handle of the send buffer (map 4 name `send:<gpadl>`).
    pub send_gpadl: u32,
    /// NUMA node (`-1` = none).
    pub numa_node: i32,
}

impl TreeConfig {
    /// A configuration with the kernel's default sizes (2 MiB rings, 31 MiB receive, 16 MiB send buffers).
    pub fn new(uuid: impl Into<String>) -> Self {
        Self {
            uuid: uuid.into(),
            mac: None,
            relid: 14,
            monitor_id: Some(2),
            uio_number: 0,
            ring_size: 2 << 20,
            recv_size: 31 << 20,
            send_size: 16 << 20,
            recv_gpadl: 0x000e_1e10,
            send_gpadl: 0x000e_1e11,
            numa_node: 0,
        }
    }

    /// Size of map 0 (both directions of the primary channel).
    pub fn rings_size(&self) -> usize {
        2 * self.ring_size
    }

    /// Sizes of maps 0..4.
    pub fn map_sizes(&self) -> [usize; 5] {
        [
            self.rings_size(),
            PAGE_SIZE,
            PAGE_SIZE,
            self.recv_size,
            self.send_size,
        ]
    }

    /// Names of maps 0..4 as uio prints them.
    pub fn map_names(&self) -> [String; 5] {
        [
            MAP_NAMES[0].to_owned(),
            MAP_NAMES[1].to_owned(),
            MAP_NAMES[2].to_owned(),
            format!("{}:{}", MAP_NAMES[3], self.recv_gpadl),
            format!("{}:{}", MAP_NAMES[4], self.send_gpadl),
        ]
    }

    fn validate(&self) -> Result<(), TreeError> {
        if !is_guid(&self.uuid) {
            return Err(TreeError::Config {
                what: "uuid",
                detail: format!("{:?} is not a lower-case GUID", self.uuid),
            });
        }
        for (what, size, min) in [
            ("ring_size", self.ring_size, 2 * PAGE_SIZE),
            ("recv_size", self.recv_size, PAGE_SIZE),
            ("send_size", self.send_size, PAGE_SIZE),
        ] {
            if size < min || size % PAGE_SIZE != 0 || u32::try_from(size).is_err() {
                return Err(TreeError::Config {
                    what,
                    detail: format!("{size} is not a multiple of {PAGE_SIZE} in [{min}, 4 GiB)"),
                });
            }
        }
        Ok(())
    }
}

/// A GUID in the canonical form the tree's paths use: lower-case 8-4-4-4-12 (parsed by the `uuid` crate).
fn is_guid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok_and(|u| u.hyphenated().to_string() == s)
}

/// Why the tree could not be built or changed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A configuration value is unusable.
    #[error("invalid tree config {what}: {detail}")]
    Config {
        /// Which field.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A filesystem operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A subchannel with this relid already exists, or it is the primary's.
    #[error("channel relid {relid} already exists")]
    DuplicateChannel {
        /// The relid.
        relid: u32,
    },
    /// A subchannel must have a non-zero subchannel id.
    #[error("subchannel id 0 is reserved for the primary channel (relid {relid})")]
    PrimarySubchannelId {
        /// The relid asked for.
        relid: u32,
    },
}

impl TreeError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// One NIC's emulated tree, with the host's mappings of every shared region.
#[derive(Debug)]
pub struct DeviceTree {
    root: PathBuf,
    config: TreeConfig,
    rings: SharedMem,
    int_page: SharedMem,
    monitor_page: SharedMem,
    recv_buf: SharedMem,
    send_buf: SharedMem,
    ctl: ControlPage,
    subchannels: Mutex<Vec<(u32, SharedMem)>>,
}

impl DeviceTree {
    /// Write the tree for `config` under `root` (created if missing) and map its backing files.
    ///
    /// Put `root` on a tmpfs (e.g. under `/dev/shm`): the buffers are large sparse files that the guest and host
    /// both touch.
    pub fn create(root: &Path, config: &TreeConfig) -> Result<Self, TreeError> {
        config.validate()?;
        let n = config.uio_number;
        let vmbus = root.join("sys/bus/vmbus");
        let dev_dir = vmbus.join("devices").join(&config.uuid);
        let uio_dir = dev_dir.join(format!("uio/uio{n}"));
        let maps_dir = root.join(format!("dev/uio{n}.maps"));
        sysfs::mkdir(&vmbus.join("drivers").join(UIO_DRIVER))?;
        sysfs::mkdir(&uio_dir.join("maps"))?;
        sysfs::mkdir(&maps_dir)?;
        sysfs::mkdir(&root.join("sys/class/uio"))?;

        // Device attributes.
        sysfs::write(&dev_dir.join("class_id"), &sysfs::guid(NETVSC_CLASS_ID))?;
        sysfs::write(&dev_dir.join("device_id"), &sysfs::guid(&config.uuid))?;
        sysfs::write(&dev_dir.join("id"), &format!("{}\n", config.relid))?;
        if let Some(m) = config.monitor_id {
            sysfs::write(&dev_dir.join("monitor_id"), &format!("{m}\n"))?;
        }
        sysfs::write(
            &dev_dir.join("numa_node"),
            &format!("{}\n", config.numa_node),
        )?;
        sysfs::symlink(
            &format!("../../drivers/{UIO_DRIVER}"),
            &dev_dir.join("driver"),
        )?;

        // The uio device and its maps.
        sysfs::write(&uio_dir.join("name"), &format!("{UIO_DRIVER}\n"))?;
        sysfs::write(&uio_dir.join("version"), &format!("{UIO_VERSION}\n"))?;
        sysfs::write(&uio_dir.join("event"), "0\n")?;
        let sizes = config.map_sizes();
        let names = config.map_names();
        for k in 0..5 {
            let map_dir = uio_dir.join(format!("maps/map{k}"));
            sysfs::mkdir(&map_dir)?;
            sysfs::write(&map_dir.join("name"), &format!("{}\n", names[k]))?;
            sysfs::write(&map_dir.join("size"), &sysfs::hex64(sizes[k] as u64))?;
            // A plausible, distinct kernel address per map; nothing reads it but humans.
            sysfs::write(
                &map_dir.join("addr"),
                &sysfs::hex64(0xffff_9000_0000_0000 + ((k as u64) << 32)),
            )?;
            sysfs::write(&map_dir.join("offset"), &sysfs::hex64(0))?;
            sysfs::sized_file(&maps_dir.join(format!("map{k}")), sizes[k] as u64)?;
        }
        sysfs::sized_file(&maps_dir.join("ctl"), CTL_SIZE as u64)?;
        sysfs::sized_file(&root.join(format!("dev/uio{n}")), 0)?;
        sysfs::symlink(
            &format!("../../bus/vmbus/devices/{}/uio/uio{n}", config.uuid),
            &root.join(format!("sys/class/uio/uio{n}")),
        )?;

        // The primary channel directory; its ring is map 0 itself (a hard link: same inode, same pages).
        let chan_dir = dev_dir.join(format!("channels/{}", config.relid));
        write_channel_attrs(&chan_dir, 0, config.monitor_id)?;
        let ring = chan_dir.join("ring");
        let _ = fs::remove_file(&ring);
        fs::hard_link(maps_dir.join("map0"), &ring)
            .map_err(|e| TreeError::io("hard-link primary ring", &ring, e))?;

        let map = |name: String| -> Result<SharedMem, TreeError> {
            let path = maps_dir.join(name);
            MappedFile::shared(&path).map_err(|e| TreeError::io("map", &path, e))
        };
        let ctl_mem = map("ctl".into())?;
        let ctl = ControlPage::new(ctl_mem)
            .map_err(|e| TreeError::io("use control page", &maps_dir, io::Error::other(e)))?;
        ctl.init().map_err(|e| {
            TreeError::io("initialise control page", &maps_dir, io::Error::other(e))
        })?;
        Ok(Self {
            root: root.to_owned(),
            config: config.clone(),
            rings: map("map0".into())?,
            int_page: map("map1".into())?,
            monitor_page: map("map2".into())?,
            recv_buf: map("map3".into())?,
            send_buf: map("map4".into())?,
            ctl,
            subchannels: Mutex::new(Vec::new()),
        })
    }

    /// Publish a subchannel: `channels/<relid>/` with its attributes first and the `ring` file (2 × ring size, first
    /// half guest→host) last, renamed into place so a polling guest never maps a half-made file. Returns the host's
    /// mapping of that ring.
    pub fn add_subchannel(
        &self,
        relid: u32,
        subchannel_id: u16,
        monitor_id: Option<u8>,
    ) -> Result<SharedMem, TreeError> {
        if subchannel_id == 0 {
            return Err(TreeError::PrimarySubchannelId { relid });
        }
        let mut subs = self.subchannels.lock().unwrap_or_else(|p| p.into_inner());
        if relid == self.config.relid || subs.iter().any(|(r, _)| *r == relid) {
            return Err(TreeError::DuplicateChannel { relid });
        }
        let dir = self.channel_dir(relid);
        write_channel_attrs(&dir, subchannel_id, monitor_id)?;
        let tmp = dir.join(".ring.tmp");
        sysfs::sized_file(&tmp, self.config.rings_size() as u64)?;
        let mem = MappedFile::shared(&tmp).map_err(|e| TreeError::io("map", &tmp, e))?;
        let ring = dir.join("ring");
        fs::rename(&tmp, &ring).map_err(|e| TreeError::io("publish ring", &ring, e))?;
        subs.push((relid, mem.clone()));
        Ok(mem)
    }

    /// The host's mapping of a subchannel ring added earlier.
    pub fn subchannel(&self, relid: u32) -> Option<SharedMem> {
        let subs = self.subchannels.lock().unwrap_or_else(|p| p.into_inner());
        subs.iter()
            .find(|(r, _)| *r == relid)
            .map(|(_, m)| m.clone())
    }

    /// Delete everything the tree (and [`crate::interposer::install`]) wrote under the root; the root itself is
    /// removed if that leaves it empty. Mappings already handed out stay valid until dropped.
    pub fn remove(self) -> Result<(), TreeError> {
        for sub in ["sys", "dev", "lib"] {
            let p = self.root.join(sub);
            match fs::remove_dir_all(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(TreeError::io("remove", &p, e)),
            }
        }
        let _ = fs::remove_dir(&self.root);
        Ok(())
    }

    /// The root directory D.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The configuration the tree was built from.
    pub fn config(&self) -> &TreeConfig {
        &self.config
    }
    /// `D/sys/bus/vmbus/devices/<uuid>`.
    pub fn device_dir(&self) -> PathBuf {
        self.root
            .join("sys/bus/vmbus/devices")
            .join(&self.config.uuid)
    }
    /// `D/sys/bus/vmbus/devices/<uuid>/channels/<relid>`.
    pub fn channel_dir(&self, relid: u32) -> PathBuf {
        self.device_dir().join(format!("channels/{relid}"))
    }
    /// `D/dev/uioN` (the path the interposer redirects `/dev/uioN` to).
    pub fn uio_dev(&self) -> PathBuf {
        self.root.join(format!("dev/uio{}", self.config.uio_number))
    }
    /// `D/dev/uioN.maps`.
    pub fn maps_dir(&self) -> PathBuf {
        self.root
            .join(format!("dev/uio{}.maps", self.config.uio_number))
    }
    /// Map 0: primary rings, guest→host first, host→guest at `ring_size`.
    pub fn rings(&self) -> &SharedMem {
        &self.rings
    }
    /// The guest→host primary ring (first half of map 0).
    pub fn tx_ring(&self) -> SharedMem {
        self.rings
            .subrange(0, self.config.ring_size)
            .expect("map 0 holds two rings")
    }
    /// The host→guest primary ring (second half of map 0).
    pub fn rx_ring(&self) -> SharedMem {
        self.rings
            .subrange(self.config.ring_size, self.config.ring_size)
            .expect("map 0 holds two rings")
    }
    /// Map 1: the interrupt page.
    pub fn int_page(&self) -> &SharedMem {
        &self.int_page
    }
    /// Map 2: the monitor page.
    pub fn monitor_page(&self) -> &SharedMem {
        &self.monitor_page
    }
    /// Map 3: the receive buffer.
    pub fn recv_buf(&self) -> &SharedMem {
        &self.recv_buf
    }
    /// Map 4: the send buffer.
    pub fn send_buf(&self) -> &SharedMem {
        &self.send_buf
    }
    /// The control page.
    pub fn ctl(&self) -> &ControlPage {
        &self.ctl
    }
}

fn write_channel_attrs(
    dir: &Path,
    subchannel_id: u16,
    monitor_id: Option<u8>,
) -> Result<(), TreeError> {
    sysfs::mkdir(dir)?;
    sysfs::write(&dir.join("subchannel_id"), &format!("{subchannel_id}\n"))?;
    if let Some(m) = monitor_id {
        sysfs::write(&dir.join("monitor_id"), &format!("{m}\n"))?;
    }
    sysfs::write(&dir.join("cpu"), "0\n")
}

#[cfg(test)]
mod tests;

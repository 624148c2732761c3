//! An opened uio device: its five maps as [`SharedMem`] windows, interrupt control, signallers and
//! subchannel rings. This is the only place where a real device and the emulator's tree differ:
//! a character device `dev/uioN` is mmapped at offset K × page size for map K; a regular file
//! means the emulator's tree, whose map K is the file `dev/uioN.maps/mapK`.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vmbus_ring::SharedMem;

use crate::discover::{DeviceInfo, read_channel};
use crate::error::UioError;
use crate::irq::{IrqControl, ctl};
use crate::mapinfo::{NicMaps, VMBUS_PAGE, validate_nic_maps};
use crate::mapping::{Mapping, page_size};
use crate::signal::Signaller;
use crate::sysfs::numbered_entries;

/// A subchannel whose ring file is ready to map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubchannelInfo {
    /// Relid of the subchannel.
    pub relid: u32,
    /// Its index (1..), which is the queue index.
    pub subchannel_id: u16,
    /// Monitor id, `None` when absent.
    pub monitor_id: Option<u8>,
    /// Size of the `ring` file (both rings).
    pub ring_size: u64,
}

/// An opened vmbus NIC behind uio_hv_generic (or the emulator's imitation of it).
#[derive(Debug)]
pub struct UioDevice {
    info: DeviceInfo,
    maps: NicMaps,
    emulated: bool,
    rings: SharedMem,
    int_page: SharedMem,
    monitor_page: SharedMem,
    recv_buf: SharedMem,
    send_buf: SharedMem,
    irq: Arc<IrqControl>,
}

fn open_rw(path: &Path) -> Result<File, UioError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| UioError::io(path, e))
}

fn to_usize(size: u64, path: &Path) -> Result<usize, UioError> {
    usize::try_from(size).map_err(|_| UioError::BadSize {
        path: path.to_owned(),
        size,
        why: "does not fit the address space",
    })
}

/// Map a whole emulated backing file, checking it is sealed against shrinking (a peer's truncate would otherwise
/// kill us with SIGBUS) and at least `len` bytes long.
fn map_file(path: &Path, len: u64) -> Result<Mapping, UioError> {
    let file = open_rw(path)?;
    crate::memfd::require_sealed(&file, path)?;
    let actual = file.metadata().map_err(|e| UioError::io(path, e))?.len();
    if actual < len {
        return Err(UioError::BadSize {
            path: path.to_owned(),
            size: actual,
            why: "backing file is shorter than the map size in sysfs",
        });
    }
    Mapping::map_fd(file.as_fd(), to_usize(len, path)?, 0, path)
}

impl UioDevice {
    /// Open the device `info` (from [`crate::discover()`]) below `root` and map its five maps.
    pub fn open(root: &Path, info: &DeviceInfo) -> Result<Self, UioError> {
        let uio = info.uio.as_ref().ok_or_else(|| UioError::NoUio {
            device: info.path.clone(),
        })?;
        let maps = validate_nic_maps(&uio.path, &uio.maps)?;
        let node = root.join(format!("dev/uio{}", uio.number));
        let meta = std::fs::metadata(&node).map_err(|e| UioError::io(&node, e))?;
        let sizes = [
            maps.rings,
            maps.int_page,
            maps.monitor_page,
            maps.recv,
            maps.send,
        ];
        let ring_half = to_usize(maps.rings / 2, &node)?;
        let (mapped, irq, emulated) = if meta.file_type().is_char_device() {
            let fd: OwnedFd = open_rw(&node)?.into();
            let page = page_size() as u64;
            let mut mapped = Vec::with_capacity(5);
            for (k, size) in sizes.into_iter().enumerate() {
                let len = to_usize(size, &node)?;
                mapped
                    .push(Mapping::map_fd(fd.as_fd(), len, k as u64 * page, &node)?.into_shared());
            }
            (mapped, IrqControl::Real { fd, path: node }, false)
        } else if meta.file_type().is_file() {
            let backing = root.join(format!("dev/uio{}.maps", uio.number));
            let mut mapped = Vec::with_capacity(5);
            for (k, size) in sizes.into_iter().enumerate() {
                mapped.push(map_file(&backing.join(format!("map{k}")), size)?.into_shared());
            }
            let ctl_path = backing.join("ctl");
            let ctl_map = Arc::new(map_file(&ctl_path, ctl::SIZE as u64)?);
            let ctl_mem = SharedMem::new(ctl_map.clone());
            let magic = ctl_mem
                .load_u32(ctl::MAGIC)
                .map_err(UioError::mem("control page"))?;
            if magic != ctl::MAGIC_VALUE {
                return Err(UioError::BadControlPage {
                    path: ctl_path,
                    found: magic,
                });
            }
            ctl_mem
                .store_u32(ctl::GUEST_PID, std::process::id())
                .map_err(UioError::mem("control page"))?;
            ctl_map.fetch_add_u32(ctl::OPEN_COUNT, 1);
            let irq = IrqControl::Emulated {
                ctl: ctl_mem,
                rings: mapped[0].clone(),
                ring_half,
            };
            (mapped, irq, true)
        } else {
            return Err(UioError::NotADevice { path: node });
        };
        let [rings, int_page, monitor_page, recv_buf, send_buf]: [SharedMem; 5] =
            mapped.try_into().expect("five maps were mapped");
        Ok(Self {
            info: info.clone(),
            maps,
            emulated,
            rings,
            int_page,
            monitor_page,
            recv_buf,
            send_buf,
            irq: Arc::new(irq),
        })
    }

    /// The device as discovered.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The validated map sizes and GPADLs.
    pub fn maps(&self) -> &NicMaps {
        &self.maps
    }

    /// True for the emulator's tree (regular-file `dev/uioN`).
    pub fn is_emulated(&self) -> bool {
        self.emulated
    }

    /// Map 0: both primary rings (guest→host first).
    pub fn rings(&self) -> &SharedMem {
        &self.rings
    }

    /// Size of one primary ring (header page + data) = map 0 / 2.
    pub fn ring_half(&self) -> usize {
        self.rings.len() / 2
    }

    /// The primary guest→host ring (first half of map 0).
    pub fn tx_ring(&self) -> SharedMem {
        self.rings
            .subrange(0, self.ring_half())
            .expect("half of map 0 lies inside it")
    }

    /// The primary host→guest ring (second half of map 0).
    pub fn rx_ring(&self) -> SharedMem {
        self.rings
            .subrange(self.ring_half(), self.ring_half())
            .expect("half of map 0 lies inside it")
    }

    /// Map 1: the interrupt (event flags) page.
    pub fn int_page(&self) -> &SharedMem {
        &self.int_page
    }

    /// Map 2: the guest→host monitor page.
    pub fn monitor_page(&self) -> &SharedMem {
        &self.monitor_page
    }

    /// Map 3: the receive buffer.
    pub fn recv_buf(&self) -> &SharedMem {
        &self.recv_buf
    }

    /// Map 4: the send (chimney) buffer.
    pub fn send_buf(&self) -> &SharedMem {
        &self.send_buf
    }

    /// GPADL of the receive buffer (from the name `recv:<gpadl>`).
    pub fn recv_gpadl(&self) -> u32 {
        self.maps.recv_gpadl
    }

    /// GPADL of the send buffer (from the name `send:<gpadl>`).
    pub fn send_gpadl(&self) -> u32 {
        self.maps.send_gpadl
    }

    /// Signaller for the primary channel.
    pub fn primary_signaller(&self) -> Result<Signaller, UioError> {
        self.signaller(self.info.relid, self.info.monitor_id)
    }

    /// Signaller for any channel of this device (subchannels share the pages and irq control).
    pub fn signaller(&self, relid: u32, monitor_id: Option<u8>) -> Result<Signaller, UioError> {
        Signaller::new(
            relid,
            monitor_id,
            self.int_page.clone(),
            self.monitor_page.clone(),
            self.irq.clone(),
        )
    }

    /// Write an int32 to the interrupt control (see [`Signaller::irq_control`]).
    pub fn irq_control(&self, value: i32) -> Result<(), UioError> {
        self.irq.write(value)
    }

    fn channels_dir(&self) -> PathBuf {
        self.info.path.join("channels")
    }

    /// Subchannels (subchannel_id ≠ 0) whose `ring` file exists, is non-empty and opens read-write,
    /// sorted by relid.
    pub fn subchannels(&self) -> Result<Vec<SubchannelInfo>, UioError> {
        let mut out = Vec::new();
        for (relid, dir) in numbered_entries(&self.channels_dir(), "")? {
            let chan = match read_channel(relid, &dir) {
                Ok(chan) => chan,
                // A directory still being populated by the kernel/emulator is not ready yet.
                Err(UioError::Missing { .. }) => continue,
                Err(err) => return Err(err),
            };
            let Some(ring_size) = chan.ring_size.filter(|s| *s > 0) else {
                continue;
            };
            if chan.subchannel_id == 0 || open_rw(&dir.join("ring")).is_err() {
                continue;
            }
            out.push(SubchannelInfo {
                relid,
                subchannel_id: chan.subchannel_id,
                monitor_id: chan.monitor_id,
                ring_size,
            });
        }
        Ok(out)
    }

    /// Map the `ring` file of channel `relid`: both rings, guest→host first. The size must be a
    /// non-zero, even number of 4 KiB pages.
    pub fn map_subchannel(&self, relid: u32) -> Result<SharedMem, UioError> {
        let dir = self.channels_dir().join(relid.to_string());
        let path = dir.join("ring");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => UioError::NoSubchannel {
                    path: dir.clone(),
                    relid,
                    why: "no ring file",
                },
                _ => UioError::io(&path, e),
            })?;
        if self.emulated {
            crate::memfd::require_sealed(&file, &path)?;
        }
        let size = file.metadata().map_err(|e| UioError::io(&path, e))?.len();
        let bad = |why| UioError::BadSize {
            path: path.clone(),
            size,
            why,
        };
        if size == 0 {
            return Err(bad("zero"));
        }
        if !size.is_multiple_of(VMBUS_PAGE) {
            return Err(bad("not a multiple of 4096"));
        }
        if !(size / VMBUS_PAGE).is_multiple_of(2) {
            return Err(bad("ring file must hold two rings of whole pages"));
        }
        Ok(Mapping::map_fd(file.as_fd(), to_usize(size, &path)?, 0, &path)?.into_shared())
    }

    /// Poll [`Self::subchannels`] until at least `count` are ready, sleeping `poll` between up to
    /// `tries` attempts (DPDK uses 10 ms × 1000).
    pub fn wait_subchannels(
        &self,
        count: usize,
        poll: Duration,
        tries: u32,
    ) -> Result<Vec<SubchannelInfo>, UioError> {
        let mut found = 0;
        for attempt in 0..tries.max(1) {
            let subs = self.subchannels()?;
            if subs.len() >= count {
                return Ok(subs);
            }
            found = subs.len();
            if attempt + 1 < tries {
                std::thread::sleep(poll);
            }
        }
        Err(UioError::SubchannelTimeout {
            device: self.info.path.clone(),
            wanted: count,
            found,
            tries,
        })
    }
}

//! Netdev discovery from sysfs (any root, so tests can use a fake tree) plus live ethtool ioctls.

use std::path::{Path, PathBuf};

use std::os::fd::AsRawFd;

use crate::sys::{IfReq, ctl_socket, ethtool, index_to_name, ioctl_ifreq};
use crate::{Mac, NetdevError, Result};

/// One netdev as seen by [`list`] / [`by_name`] / [`by_index`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetdevInfo {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub ifindex: u32,
    /// Current address (None if unreadable, e.g. mid-rename).
    pub mac: Option<Mac>,
    /// ETHTOOL_GPERMADDR (None if the driver has none, e.g. veth).
    pub perm_mac: Option<Mac>,
    /// The hv_pci slot name (= VF serial) of the netdev's PCI device, if any.
    pub pci_slot: Option<u32>,
    /// IFF_UP.
    pub up: bool,
    /// Carrier (IFF_RUNNING).
    pub running: bool,
    /// MTU.
    pub mtu: u32,
    /// `device/driver` basename, or the ethtool driver name (e.g. "veth").
    pub driver: Option<String>,
    /// rx queues: ethtool GCHANNELS (combined or rx), else the count of `queues/rx-*`.
    pub channels: u32,
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

pub(crate) fn parse_mac(s: &str) -> Option<Mac> {
    let mut m = [0u8; 6];
    let mut it = s.trim().split(':');
    for b in m.iter_mut() {
        *b = u8::from_str_radix(it.next()?, 16).ok()?;
    }
    it.next().is_none().then_some(m)
}

fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn is_live(root: &Path) -> bool {
    root == Path::new("/")
}

fn perm_mac(name: &str) -> Option<Mac> {
    const ETHTOOL_GPERMADDR: u32 = 0x20;
    // struct ethtool_perm_addr { u32 cmd; u32 size; u8 data[]; }
    let mut buf = [0u8; 8 + 32];
    buf[..4].copy_from_slice(&ETHTOOL_GPERMADDR.to_ne_bytes());
    buf[4..8].copy_from_slice(&32u32.to_ne_bytes());
    ethtool(name, &mut buf).ok()?;
    let size = u32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if size != 6 {
        return None;
    }
    let mut m = [0u8; 6];
    m.copy_from_slice(&buf[8..14]);
    (m != [0; 6]).then_some(m)
}

fn ethtool_driver(name: &str) -> Option<String> {
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    // struct ethtool_drvinfo: cmd, driver[32], version[32], fw_version[32], bus_info[32], erom_version[32],
    // reserved2[12], five u32 = 196 bytes.
    let mut buf = [0u8; 196];
    buf[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    ethtool(name, &mut buf).ok()?;
    let d = &buf[4..36];
    let n = d.iter().position(|&b| b == 0).unwrap_or(32);
    (n > 0).then(|| String::from_utf8_lossy(&d[..n]).into_owned())
}

fn ethtool_channels(name: &str) -> Option<u32> {
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    let mut buf = [0u8; 36];
    buf[..4].copy_from_slice(&ETHTOOL_GCHANNELS.to_ne_bytes());
    ethtool(name, &mut buf).ok()?;
    let w =
        |i: usize| u32::from_ne_bytes([buf[4 * i], buf[4 * i + 1], buf[4 * i + 2], buf[4 * i + 3]]);
    let (rx, combined) = (w(5), w(8));
    let c = if combined > 0 { combined } else { rx };
    (c > 0).then_some(c)
}

fn info_at(root: &Path, name: &str) -> Option<NetdevInfo> {
    let dir = root.join("sys/class/net").join(name);
    let ifindex = parse_num(&read_trim(&dir.join("ifindex"))?)? as u32;
    let flags = read_trim(&dir.join("flags"))
        .and_then(|s| parse_num(&s))
        .unwrap_or(0) as u32;
    let up = flags & libc::IFF_UP as u32 != 0;
    let carrier = read_trim(&dir.join("carrier"))
        .map(|s| s == "1")
        .unwrap_or(false);
    let driver = std::fs::read_link(dir.join("device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()));
    let queue_count = std::fs::read_dir(dir.join("queues"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(0);
    let channels = queue_count.max(1);
    Some(NetdevInfo {
        name: name.to_string(),
        ifindex,
        mac: read_trim(&dir.join("address")).and_then(|s| parse_mac(&s)),
        perm_mac: None,
        pci_slot: pci_slot_of(root, name),
        up,
        running: up && carrier,
        mtu: read_trim(&dir.join("mtu"))
            .and_then(|s| parse_num(&s))
            .unwrap_or(0) as u32,
        driver,
        channels,
    })
}

/// A live netdev from ioctls on the calling thread's network namespace (sysfs, which shows the namespace that
/// mounted it, is only used for the driver link, the PCI slot and the queue count, and only when its ifindex
/// agrees).
fn info_live(name: &str) -> Option<NetdevInfo> {
    let s = ctl_socket().ok()?;
    let fd = s.as_raw_fd();
    let mut ifr = IfReq::new(name).ok()?;
    ioctl_ifreq(fd, libc::SIOCGIFINDEX, &mut ifr).ok()?;
    let ifindex = ifr.get_i32() as u32;
    let mut ifr = IfReq::new(name).ok()?;
    ioctl_ifreq(fd, libc::SIOCGIFFLAGS, &mut ifr).ok()?;
    let flags = ifr.get_i32() as u32;
    let mut ifr = IfReq::new(name).ok()?;
    let mac = match ioctl_ifreq(fd, libc::SIOCGIFHWADDR, &mut ifr) {
        Ok(()) => {
            let mut m = [0u8; 6];
            m.copy_from_slice(&ifr.data[2..8]);
            Some(m)
        }
        Err(_) => None,
    };
    let mut ifr = IfReq::new(name).ok()?;
    ioctl_ifreq(fd, libc::SIOCGIFMTU, &mut ifr).ok()?;
    let mtu = ifr.get_i32() as u32;
    let root = Path::new("/");
    let sys = info_at(root, name).filter(|i| i.ifindex == ifindex);
    let up = flags & libc::IFF_UP as u32 != 0;
    Some(NetdevInfo {
        name: name.to_string(),
        ifindex,
        mac,
        perm_mac: perm_mac(name),
        pci_slot: sys.as_ref().and_then(|i| i.pci_slot),
        up,
        running: up && flags & libc::IFF_RUNNING as u32 != 0,
        mtu,
        driver: sys
            .as_ref()
            .and_then(|i| i.driver.clone())
            .or_else(|| ethtool_driver(name)),
        channels: ethtool_channels(name)
            .or(sys.as_ref().map(|i| i.channels))
            .unwrap_or(1)
            .max(1),
    })
}

fn live_names() -> Vec<String> {
    let mut v = Vec::new();
    // SAFETY: if_nameindex returns a heap array terminated by a zero entry, freed below.
    let p = unsafe { libc::if_nameindex() };
    if p.is_null() {
        return v;
    }
    let mut i = 0;
    loop {
        // SAFETY: p points to an array terminated by an entry with if_index 0; we stop there.
        let e = unsafe { &*p.add(i) };
        if e.if_index == 0 || e.if_name.is_null() {
            break;
        }
        // SAFETY: if_name is a NUL-terminated string owned by the array.
        v.push(
            unsafe { std::ffi::CStr::from_ptr(e.if_name) }
                .to_string_lossy()
                .into_owned(),
        );
        i += 1;
    }
    // SAFETY: p came from if_nameindex and is freed once.
    unsafe { libc::if_freenameindex(p) };
    v
}

/// Every netdev under `sysfs_root/sys/class/net` ("/" on a real machine; a fake tree in unit tests for
/// pci_slot/driver); ioctl-only fields (perm_mac) come from the live kernel and are None for fake names.
pub fn list(sysfs_root: &Path) -> Result<Vec<NetdevInfo>> {
    if is_live(sysfs_root) {
        let mut v: Vec<NetdevInfo> = live_names().iter().filter_map(|n| info_live(n)).collect();
        v.sort_by_key(|i| i.ifindex);
        return Ok(v);
    }
    let dir = sysfs_root.join("sys/class/net");
    let rd = std::fs::read_dir(&dir)
        .map_err(|e| crate::io_err(dir.display().to_string(), "read_dir", e))?;
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // A netdev that vanishes between read_dir and reading its attributes is left out.
    let mut v: Vec<NetdevInfo> = names
        .iter()
        .filter_map(|n| info_at(sysfs_root, n))
        .collect();
    v.sort_by_key(|i| i.ifindex);
    Ok(v)
}

/// One live netdev by name.
pub fn by_name(name: &str) -> Result<NetdevInfo> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(NetdevError::Invalid(format!("bad interface name {name:?}")));
    }
    info_live(name).ok_or_else(|| NetdevError::NotFound(name.to_string()))
}

/// One live netdev by index.
pub fn by_index(ifindex: u32) -> Result<NetdevInfo> {
    let name = index_to_name(ifindex)?;
    let i = by_name(&name)?;
    if i.ifindex != ifindex {
        return Err(NetdevError::NotFound(format!("#{ifindex}")));
    }
    Ok(i)
}

/// PCI slot name lookup: `root/sys/bus/pci/slots/<N>/address` equal to the netdev's PCI address without function.
pub fn pci_slot_of(sysfs_root: &Path, ifname: &str) -> Option<u32> {
    let target: PathBuf =
        std::fs::read_link(sysfs_root.join("sys/class/net").join(ifname).join("device")).ok()?;
    let addr = target.file_name()?.to_str()?.to_string();
    // "dddd:bb:dd.f" -> "dddd:bb:dd"
    let (no_fn, func) = addr.rsplit_once('.')?;
    if func.is_empty()
        || !func.bytes().all(|b| b.is_ascii_digit())
        || no_fn.matches(':').count() != 2
    {
        return None;
    }
    let slots = std::fs::read_dir(sysfs_root.join("sys/bus/pci/slots")).ok()?;
    for s in slots.flatten() {
        if let Some(a) = read_trim(&s.path().join("address"))
            && a.eq_ignore_ascii_case(no_fn)
            && let Ok(n) = s.file_name().to_string_lossy().parse::<u32>()
        {
            return Some(n);
        }
    }
    None
}

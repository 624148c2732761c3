//! Scanning `root/sys/bus/vmbus/devices` the way the DPDK vmbus bus does: per device the ids from
//! small attribute files, the bound driver from the `driver` symlink, the uio node and its map
//! table, the channel directories, and the network interface when hv_netvsc owns the device.

use std::path::{Path, PathBuf};

use crate::error::UioError;
use crate::mapinfo::{MapInfo, MapKind, read_maps};
use crate::sysfs::{
    link_basename, normalize_guid, numbered_entries, parse_dec, parse_guid, read_opt, read_req,
};

/// Class GUID of the Hyper-V synthetic NIC.
pub const NETVSC_CLASS_ID: &str = "f8615163-df3e-46c5-913f-f2d2f965ed0e";

/// Where vmbus devices live below the root.
pub const DEVICES_DIR: &str = "sys/bus/vmbus/devices";

/// One vmbus device as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Instance GUID (the directory name), lower case, no braces.
    pub uuid: String,
    /// Class GUID, lower case, no braces.
    pub class_id: String,
    /// Device GUID, lower case, no braces.
    pub device_id: String,
    /// Primary channel relid (`id`).
    pub relid: u32,
    /// Monitor id of the primary channel; `None` when `monitor_id` is absent.
    pub monitor_id: Option<u8>,
    /// NUMA node (`-1` when unknown or absent).
    pub numa_node: i32,
    /// Name of the bound driver (`uio_hv_generic`, `hv_netvsc`, ...).
    pub driver: Option<String>,
    /// Whether the class is the synthetic NIC.
    pub is_netvsc: bool,
    /// The uio node, when bound to uio_hv_generic.
    pub uio: Option<UioInfo>,
    /// Network interface name, when bound to hv_netvsc.
    pub iface: Option<String>,
    /// Channel directories (primary and subchannels), sorted by relid.
    pub channels: Vec<ChannelInfo>,
    /// The device directory.
    pub path: PathBuf,
}

/// The uio node of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UioInfo {
    /// N in `uioN`.
    pub number: u32,
    /// The map table, sorted by index.
    pub maps: Vec<MapInfo>,
    /// GPADL in the `recv:` map name.
    pub recv_gpadl: Option<u32>,
    /// GPADL in the `send:` map name.
    pub send_gpadl: Option<u32>,
    /// The `uio/uioN` directory.
    pub path: PathBuf,
}

/// One `channels/<relid>/` directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Relid (the directory name).
    pub relid: u32,
    /// 0 for the primary channel.
    pub subchannel_id: u16,
    /// Monitor id, `None` when the attribute is absent.
    pub monitor_id: Option<u8>,
    /// Size of the `ring` file, `None` when it does not exist (yet).
    pub ring_size: Option<u64>,
}

impl DeviceInfo {
    /// True when bound to uio_hv_generic with a uio node.
    pub fn is_uio_bound(&self) -> bool {
        self.driver.as_deref() == Some("uio_hv_generic") && self.uio.is_some()
    }
}

/// Every vmbus device under `root/sys/bus/vmbus/devices`, sorted by uuid. A missing devices
/// directory means no vmbus at all and yields an empty list; a device with unreadable or
/// unparsable attributes fails the scan with an error naming the file (as DPDK's scan does).
pub fn discover(root: &Path) -> Result<Vec<DeviceInfo>, UioError> {
    let dir = root.join(DEVICES_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(UioError::io(&dir, err)),
    };
    let mut devices = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| UioError::io(&dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        devices.push(read_device(&entry.path(), &name)?);
    }
    devices.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    Ok(devices)
}

/// The device whose uuid (braces and case ignored) or interface name is `key`.
pub fn find_device(root: &Path, key: &str) -> Result<DeviceInfo, UioError> {
    let bare = key.trim().trim_start_matches('{').trim_end_matches('}');
    let uuid = normalize_guid(bare);
    discover(root)?
        .into_iter()
        .find(|d| uuid.as_deref() == Some(d.uuid.as_str()) || d.iface.as_deref() == Some(key))
        .ok_or_else(|| UioError::NotFound {
            key: key.to_owned(),
            root: root.to_owned(),
        })
}

fn read_device(dev: &Path, dir_name: &str) -> Result<DeviceInfo, UioError> {
    let class_path = dev.join("class_id");
    let class_id = parse_guid(&class_path, &read_req(&class_path)?)?;
    let device_path = dev.join("device_id");
    let device_id = parse_guid(&device_path, &read_req(&device_path)?)?;
    let id_path = dev.join("id");
    let relid = parse_dec(&id_path, &read_req(&id_path)?, "a decimal relid")?;
    let monitor_id = read_monitor_id(&dev.join("monitor_id"))?;
    let numa_path = dev.join("numa_node");
    let numa_node = match read_opt(&numa_path)? {
        Some(text) => parse_dec(&numa_path, &text, "a decimal NUMA node")?,
        None => -1,
    };
    let uuid = normalize_guid(dir_name.trim_start_matches('{').trim_end_matches('}'))
        .unwrap_or_else(|| dir_name.to_owned());
    Ok(DeviceInfo {
        uuid,
        is_netvsc: class_id == NETVSC_CLASS_ID,
        class_id,
        device_id,
        relid,
        monitor_id,
        numa_node,
        driver: link_basename(&dev.join("driver"))?,
        uio: read_uio(dev)?,
        iface: read_iface(dev)?,
        channels: read_channels(dev)?,
        path: dev.to_owned(),
    })
}

fn read_monitor_id(path: &Path) -> Result<Option<u8>, UioError> {
    read_opt(path)?
        .map(|text| parse_dec(path, &text, "a decimal monitor id (0..=255)"))
        .transpose()
}

fn read_uio(dev: &Path) -> Result<Option<UioInfo>, UioError> {
    let Some((number, path)) = numbered_entries(&dev.join("uio"), "uio")?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let maps = read_maps(&path.join("maps"))?;
    let gpadl_of = |want: fn(&MapKind) -> Option<u32>| maps.iter().find_map(|m| want(&m.kind));
    Ok(Some(UioInfo {
        number,
        recv_gpadl: gpadl_of(|k| match k {
            MapKind::Recv { gpadl } => Some(*gpadl),
            _ => None,
        }),
        send_gpadl: gpadl_of(|k| match k {
            MapKind::Send { gpadl } => Some(*gpadl),
            _ => None,
        }),
        maps,
        path,
    }))
}

fn read_iface(dev: &Path) -> Result<Option<String>, UioError> {
    let net = dev.join("net");
    let entries = match std::fs::read_dir(&net) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(UioError::io(&net, err)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names.into_iter().next())
}

/// Read one `channels/<relid>/` directory.
pub(crate) fn read_channel(relid: u32, dir: &Path) -> Result<ChannelInfo, UioError> {
    let sub_path = dir.join("subchannel_id");
    let subchannel_id = parse_dec(&sub_path, &read_req(&sub_path)?, "a decimal subchannel id")?;
    let ring_size = match std::fs::metadata(dir.join("ring")) {
        Ok(meta) => Some(meta.len()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(UioError::io(dir.join("ring"), err)),
    };
    Ok(ChannelInfo {
        relid,
        subchannel_id,
        monitor_id: read_monitor_id(&dir.join("monitor_id"))?,
        ring_size,
    })
}

fn read_channels(dev: &Path) -> Result<Vec<ChannelInfo>, UioError> {
    numbered_entries(&dev.join("channels"), "")?
        .into_iter()
        .map(|(relid, dir)| read_channel(relid, &dir))
        .collect()
}

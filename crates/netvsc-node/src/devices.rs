//! `listDevices`: the vmbus devices under a root directory (`/` on a guest, the emulator's tree in tests), as
//! `vmbus_uio::discover` reads them, flattened into plain records for JS.

use std::path::PathBuf;

use napi_derive::napi;
use vmbus_uio::{ChannelInfo, DeviceInfo, MapKind};

use crate::errors::{Code, Result, error, from_uio};

/// Options of `listDevices`.
#[napi(object)]
#[derive(Debug, Default)]
pub struct ListOptions {
    /// Directory holding `sys/bus/vmbus/devices` (default `/`).
    pub root: Option<String>,
}

/// Sizes in bytes of a uio device's maps, by what they hold; `null` when the device has no such map.
#[napi(object, use_nullable = true)]
#[derive(Debug, Default)]
pub struct MapSizes {
    /// `txrx_rings`: both primary rings (guest→host then host→guest).
    pub rings: Option<f64>,
    /// `int_page`.
    pub int_page: Option<f64>,
    /// `monitor_page`.
    pub monitor_page: Option<f64>,
    /// `recv:<gpadl>`: the receive buffer.
    pub recv: Option<f64>,
    /// `send:<gpadl>`: the send buffer.
    pub send: Option<f64>,
}

/// One `channels/<relid>/` directory of a device.
#[napi(object, use_nullable = true)]
#[derive(Debug)]
pub struct ChannelEntry {
    /// Channel relid.
    pub relid: u32,
    /// 0 for the primary channel.
    pub subchannel_id: u32,
    /// Monitor id, `null` when absent.
    pub monitor_id: Option<u32>,
    /// Size in bytes of the channel's `ring` file, `null` when it does not exist (yet).
    pub ring_size: Option<f64>,
}

/// One vmbus device.
#[napi(object, use_nullable = true)]
#[derive(Debug)]
pub struct DeviceEntry {
    /// Instance GUID, lower case, no braces.
    pub uuid: String,
    /// Class GUID, lower case, no braces.
    pub class_id: String,
    /// Whether the class is the Hyper-V synthetic NIC.
    pub is_netvsc: bool,
    /// Primary channel relid.
    pub relid: u32,
    /// Monitor id of the primary channel, `null` when absent.
    pub monitor_id: Option<u32>,
    /// NUMA node, -1 when unknown.
    pub numa_node: i32,
    /// Bound driver (`uio_hv_generic`, `hv_netvsc`, ...), `null` when unbound.
    pub driver: Option<String>,
    /// Network interface, when bound to hv_netvsc.
    pub iface: Option<String>,
    /// N of `/dev/uioN`, when bound to uio_hv_generic.
    pub uio_number: Option<u32>,
    /// Map sizes, when the device has a uio node.
    pub map_sizes: Option<MapSizes>,
    /// GPADL handle of the receive buffer (from the `recv:` map name).
    pub recv_gpadl: Option<u32>,
    /// GPADL handle of the send buffer (from the `send:` map name).
    pub send_gpadl: Option<u32>,
    /// Channels whose subchannel id is not 0.
    pub subchannel_count: u32,
    /// Every channel directory, primary first (sorted by relid).
    pub channels: Vec<ChannelEntry>,
}

/// Every vmbus device under `options.root` (default `/`), sorted by uuid. An absent
/// `sys/bus/vmbus/devices` gives an empty list; a malformed tree throws with an `ERR_NETVSC_*` code.
#[napi]
pub fn list_devices(options: Option<ListOptions>) -> Result<Vec<DeviceEntry>> {
    let root = options
        .and_then(|o| o.root)
        .unwrap_or_else(|| "/".to_owned());
    if root.is_empty() {
        return Err(error(Code::InvalidArg, "options.root must not be empty"));
    }
    if root.contains('\0') {
        return Err(error(Code::InvalidArg, "options.root must not contain NUL"));
    }
    let devices = vmbus_uio::discover(&PathBuf::from(root)).map_err(from_uio)?;
    Ok(devices.into_iter().map(device_entry).collect())
}

fn device_entry(dev: DeviceInfo) -> DeviceEntry {
    let (uio_number, map_sizes, recv_gpadl, send_gpadl) = match &dev.uio {
        Some(uio) => {
            let mut sizes = MapSizes::default();
            for map in &uio.maps {
                let slot = match map.kind {
                    MapKind::TxRxRings => &mut sizes.rings,
                    MapKind::IntPage => &mut sizes.int_page,
                    MapKind::MonitorPage => &mut sizes.monitor_page,
                    MapKind::Recv { .. } => &mut sizes.recv,
                    MapKind::Send { .. } => &mut sizes.send,
                    MapKind::Other => continue,
                };
                slot.get_or_insert(map.size as f64);
            }
            (
                Some(uio.number),
                Some(sizes),
                uio.recv_gpadl,
                uio.send_gpadl,
            )
        }
        None => (None, None, None, None),
    };
    let subchannel_count = dev.channels.iter().filter(|c| c.subchannel_id != 0).count() as u32;
    DeviceEntry {
        uuid: dev.uuid,
        class_id: dev.class_id,
        is_netvsc: dev.is_netvsc,
        relid: dev.relid,
        monitor_id: dev.monitor_id.map(u32::from),
        numa_node: dev.numa_node,
        driver: dev.driver,
        iface: dev.iface,
        uio_number,
        map_sizes,
        recv_gpadl,
        send_gpadl,
        subchannel_count,
        channels: dev.channels.iter().map(channel_entry).collect(),
    }
}

fn channel_entry(ch: &ChannelInfo) -> ChannelEntry {
    ChannelEntry {
        relid: ch.relid,
        subchannel_id: u32::from(ch.subchannel_id),
        monitor_id: ch.monitor_id.map(u32::from),
        ring_size: ch.ring_size.map(|s| s as f64),
    }
}

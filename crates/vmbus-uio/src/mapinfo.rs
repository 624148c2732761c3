//! The uio map table (`uio/uioN/maps/mapK/{name,size}`) and its validation.
//!
//! uio_hv_generic exposes five maps for a NIC, in a fixed order: the primary rings, the interrupt
//! page, the monitor page, then the receive and send buffers whose names carry the GPADL handle
//! the kernel already established (`recv:<gpadl>`, `send:<gpadl>`).

use std::path::{Path, PathBuf};

use crate::error::UioError;
use crate::sysfs::{numbered_entries, parse_u64, read_req};

/// Unit in which map and ring sizes must be expressed (the VMBus page size).
pub const VMBUS_PAGE: u64 = 4096;

/// What a map holds, decided by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapKind {
    /// `txrx_rings`: guest→host ring followed by host→guest ring.
    TxRxRings,
    /// `int_page`: event flags; guest→host bits at +2048.
    IntPage,
    /// `monitor_page`: the guest→host monitor page.
    MonitorPage,
    /// `recv:<gpadl>`: receive buffer.
    Recv {
        /// GPADL handle the kernel established.
        gpadl: u32,
    },
    /// `send:<gpadl>`: send (chimney) buffer.
    Send {
        /// GPADL handle the kernel established.
        gpadl: u32,
    },
    /// Any other name.
    Other,
}

impl MapKind {
    /// Classify a map name; `Err(())` when it is `recv:`/`send:` without a decimal GPADL.
    fn from_name(name: &str) -> Result<Self, ()> {
        let gpadl = |rest: &str| -> Result<u32, ()> {
            if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            rest.parse::<u32>().map_err(|_| ())
        };
        Ok(match name {
            "txrx_rings" => Self::TxRxRings,
            "int_page" => Self::IntPage,
            "monitor_page" => Self::MonitorPage,
            _ => {
                if let Some(rest) = name.strip_prefix("recv:") {
                    Self::Recv {
                        gpadl: gpadl(rest)?,
                    }
                } else if let Some(rest) = name.strip_prefix("send:") {
                    Self::Send {
                        gpadl: gpadl(rest)?,
                    }
                } else {
                    Self::Other
                }
            }
        })
    }
}

/// One uio map as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapInfo {
    /// K in `mapK`.
    pub index: usize,
    /// The `name` attribute.
    pub name: String,
    /// The `size` attribute in bytes.
    pub size: u64,
    /// What the name says the map holds.
    pub kind: MapKind,
}

/// Read every `mapK` under `maps_dir`, sorted by K.
pub(crate) fn read_maps(maps_dir: &Path) -> Result<Vec<MapInfo>, UioError> {
    let mut maps = Vec::new();
    for (index, dir) in numbered_entries(maps_dir, "map")? {
        let name_path = dir.join("name");
        let name = read_req(&name_path)?;
        let size_path = dir.join("size");
        let size = parse_u64(&size_path, &read_req(&size_path)?)?;
        let kind = MapKind::from_name(&name).map_err(|()| UioError::BadGpadl {
            path: name_path.clone(),
            name: name.clone(),
        })?;
        maps.push(MapInfo {
            index: index as usize,
            name,
            size,
            kind,
        });
    }
    Ok(maps)
}

/// The five maps of a NIC, checked: right names in the right slots, sane sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NicMaps {
    /// Size of map 0 (both primary rings).
    pub rings: u64,
    /// Size of map 1.
    pub int_page: u64,
    /// Size of map 2.
    pub monitor_page: u64,
    /// Size of map 3.
    pub recv: u64,
    /// Size of map 4.
    pub send: u64,
    /// GPADL of the receive buffer.
    pub recv_gpadl: u32,
    /// GPADL of the send buffer.
    pub send_gpadl: u32,
}

/// Names expected at indices 0..5, for messages.
const EXPECTED: [&str; 5] = [
    "txrx_rings",
    "int_page",
    "monitor_page",
    "recv:<gpadl>",
    "send:<gpadl>",
];

/// Check `maps` (as read from `uio_dir/maps`) against the NIC layout.
pub fn validate_nic_maps(uio_dir: &Path, maps: &[MapInfo]) -> Result<NicMaps, UioError> {
    let map_dir = |k: usize| -> PathBuf { uio_dir.join("maps").join(format!("map{k}")) };
    let mut sizes = [0u64; 5];
    let mut gpadls = [0u32; 2];
    for (k, expected) in EXPECTED.iter().enumerate() {
        let map = maps
            .iter()
            .find(|m| m.index == k)
            .ok_or_else(|| UioError::MissingMap {
                device: uio_dir.to_owned(),
                index: k,
                expected,
            })?;
        let ok = match (k, &map.kind) {
            (0, MapKind::TxRxRings) | (1, MapKind::IntPage) | (2, MapKind::MonitorPage) => true,
            (3, MapKind::Recv { gpadl }) => {
                gpadls[0] = *gpadl;
                true
            }
            (4, MapKind::Send { gpadl }) => {
                gpadls[1] = *gpadl;
                true
            }
            _ => false,
        };
        if !ok {
            return Err(UioError::WrongMapName {
                path: map_dir(k).join("name"),
                index: k,
                found: map.name.clone(),
                expected,
            });
        }
        let bad = |why| UioError::BadSize {
            path: map_dir(k).join("size"),
            size: map.size,
            why,
        };
        if map.size == 0 {
            return Err(bad("zero"));
        }
        if !map.size.is_multiple_of(VMBUS_PAGE) {
            return Err(bad("not a multiple of 4096"));
        }
        if k == 0 && !(map.size / VMBUS_PAGE).is_multiple_of(2) {
            return Err(bad("ring map must hold two rings of whole pages"));
        }
        if k == 0 && map.size < 4 * VMBUS_PAGE {
            return Err(bad(
                "ring map must hold two rings of a header page plus data",
            ));
        }
        sizes[k] = map.size;
    }
    Ok(NicMaps {
        rings: sizes[0],
        int_page: sizes[1],
        monitor_page: sizes[2],
        recv: sizes[3],
        send: sizes[4],
        recv_gpadl: gpadls[0],
        send_gpadl: gpadls[1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_classify() {
        assert_eq!(MapKind::from_name("txrx_rings"), Ok(MapKind::TxRxRings));
        assert_eq!(MapKind::from_name("recv:7"), Ok(MapKind::Recv { gpadl: 7 }));
        assert_eq!(
            MapKind::from_name("send:4294967295"),
            Ok(MapKind::Send { gpadl: u32::MAX })
        );
        assert_eq!(MapKind::from_name("send:4294967296"), Err(()));
        assert_eq!(MapKind::from_name("recv:"), Err(()));
        assert_eq!(MapKind::from_name("recv:+1"), Err(()));
        assert_eq!(MapKind::from_name("recv:0x10"), Err(()));
        assert_eq!(MapKind::from_name("rings"), Ok(MapKind::Other));
    }
}

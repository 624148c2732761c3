//! The telemetry page (`netvsc::telemetry`) for JS: read any device's page, list pages, ask an owner to capture.
//! Conversion only.

use std::path::{Path, PathBuf};

use napi_derive::napi;
use netvsc::telemetry::{self as tel, TelemetryError};

use crate::errors::{Code, Result, error};

fn from_tel(e: TelemetryError) -> napi::Error<Code> {
    let code = match &e {
        TelemetryError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Code::NotOpen
        }
        TelemetryError::Io { .. } => Code::Io,
        TelemetryError::Bad { .. } => Code::Protocol,
        TelemetryError::Busy { .. } => Code::Timeout,
    };
    error(code, e.to_string())
}

/// One device's published state (counters as doubles: exact below 2^53).
#[napi(object)]
#[derive(Debug, Clone)]
pub struct NativeTelemetry {
    pub pid: u32,
    /// The owning process still runs.
    pub alive: bool,
    /// Publish time, ms since the Unix epoch.
    pub updated_ms: f64,
    pub opened_ms: f64,
    pub link_up: bool,
    pub link_speed_mbps: f64,
    pub mtu: u32,
    pub vf_state: Option<String>,
    pub vf_serial: u32,
    pub vf_switched: bool,
    pub capture_id: f64,
    pub capture_frames: f64,
    pub capture_done: f64,
    /// ipackets, opackets, ibytes, obytes, imissed, ierrors, oerrors.
    pub port: Vec<f64>,
    /// vf rx packets, rx bytes, tx packets, tx bytes, rx dropped, tx errors.
    pub vf: Vec<f64>,
    /// `queueCount` × 31 counters (15 tx, 15 rx in DPDK's order, rx missed).
    pub queues: Vec<f64>,
    pub queue_count: u32,
    /// Device-level xstats (`hv_*`, `vf_*`): names, and values in the same order.
    pub device_names: Vec<String>,
    pub device_values: Vec<f64>,
}

/// A page file.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct NativeTelemetryEntry {
    pub uuid: String,
    pub path: String,
}

/// The page of device `uuid` under `root`.
#[napi]
pub fn telemetry_path(root: String, uuid: String) -> String {
    tel::page_path(Path::new(&root), &uuid)
        .display()
        .to_string()
}

/// Every page under `root`.
#[napi]
pub fn list_telemetry(root: String) -> Vec<NativeTelemetryEntry> {
    tel::list(Path::new(&root))
        .into_iter()
        .map(|(uuid, p)| NativeTelemetryEntry {
            uuid,
            path: p.display().to_string(),
        })
        .collect()
}

/// Read a page (never touches the device).
#[napi]
pub fn read_telemetry(path: String) -> Result<NativeTelemetry> {
    let s = tel::read(Path::new(&path)).map_err(from_tel)?;
    let ms = |ns: u64| ns as f64 / 1e6;
    Ok(NativeTelemetry {
        pid: s.pid as u32,
        alive: tel::owner_alive(s.pid),
        updated_ms: ms(s.updated_ns),
        opened_ms: ms(s.opened_ns),
        link_up: s.link_up,
        link_speed_mbps: s.link_speed as f64 / 10_000.0,
        mtu: s.mtu as u32,
        vf_state: s.vf_state.map(str::to_owned),
        vf_serial: s.vf_serial as u32,
        vf_switched: s.vf_switched,
        capture_id: s.capture_id as f64,
        capture_frames: s.capture_frames as f64,
        capture_done: s.capture_done as f64,
        port: s.port.iter().map(|v| *v as f64).collect(),
        vf: s.vf.iter().map(|v| *v as f64).collect(),
        queue_count: s.queues.len() as u32,
        queues: s.queues.iter().flatten().map(|v| *v as f64).collect(),
        device_values: s.device.iter().map(|(_, v)| *v as f64).collect(),
        device_names: s.device.into_iter().map(|(n, _)| n).collect(),
    })
}

/// Ask the owner of the page at `path` to mirror its bursts into the pcapng file `pcap` (null: stop), for at
/// most `maxFrames` frames and `maxMs` ms (0: no limit). Returns the request id, as the page reports it.
#[napi]
pub fn request_capture(
    path: String,
    pcap: Option<String>,
    max_frames: f64,
    max_ms: f64,
) -> Result<f64> {
    if !(max_frames >= 0.0 && max_ms >= 0.0) {
        return Err(error(Code::InvalidArg, "capture limits must be >= 0"));
    }
    let pcap = pcap.map(PathBuf::from);
    tel::request_capture(
        Path::new(&path),
        pcap.as_deref(),
        max_frames as u64,
        max_ms as u64,
    )
    .map(|id| id as f64)
    .map_err(from_tel)
}

//! Link and VF events. The host's RNDIS status indications (media connect / disconnect, speed
//! change) and NVSP VF-association notes are turned into [`Event`]s, queued on the device, and
//! also update the cached link state that [`LinkInfo`] reports.

use std::sync::atomic::Ordering::Relaxed;

use crate::shared::Shared;
use crate::vf::{IfName, VfFailure, VfMode, VfReason, VfState};
use netvsc_proto::rndis::status;

/// Class of an [`Event::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A corrupt ring index or descriptor (`ERR_NETVSC_RING`).
    Ring,
    /// Re-initialising the device after a ring error failed; it stays closed (`ERR_NETVSC_RECOVERY`).
    Recovery,
}

impl ErrorCode {
    /// The code's name in the Node API.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Ring => "ERR_NETVSC_RING",
            ErrorCode::Recovery => "ERR_NETVSC_RECOVERY",
        }
    }
}

/// Something the host told us outside the data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Media connected.
    LinkUp,
    /// Media disconnected.
    LinkDown,
    /// New link speed in 100 bps units.
    LinkSpeed(u32),
    /// The host offered (`allocated`) or withdrew a VF with this serial.
    VfAssociation {
        /// A VF exists.
        allocated: bool,
        /// Its serial (the vPCI slot name).
        serial: u32,
    },
    /// The host itself switched the data path (`to_vf` false = back to synthetic).
    HostDataPath {
        /// New data path.
        to_vf: bool,
    },
    /// The VF failover state machine moved (see [`crate::vf`]).
    Vf {
        /// New state.
        state: VfState,
        /// Serial from the host's association.
        serial: u32,
        /// The paired netdev, if any.
        iface: Option<IfName>,
        /// Data-path kind of its port, if open.
        mode: Option<VfMode>,
        /// Why (for `Removed`: link down, removal, queue error, host switch, stop).
        reason: VfReason,
        /// Wall-clock time, ns since the Unix epoch.
        at_ns: u64,
    },
    /// A VF operation failed; the synthetic path keeps working.
    VfError {
        /// Serial from the host's association.
        serial: u32,
        /// What failed.
        failure: VfFailure,
        /// The netdev concerned, if any.
        iface: Option<IfName>,
        /// Wall-clock time, ns since the Unix epoch.
        at_ns: u64,
    },
    /// A queue's ring broke its rules (or recovery failed): bursts on it fail until [`Event::Recovered`].
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// The queue concerned.
        queue: u16,
        /// The field or rule broken (for [`ErrorCode::Recovery`], the step that failed).
        what: &'static str,
        /// Ring data-area offset of the packet concerned (0 for [`ErrorCode::Recovery`]).
        offset: u32,
    },
    /// The device was re-initialised after a ring error (channels closed, reopened, renegotiated); queue
    /// handles stay valid and the port is back in its previous started state.
    Recovered {
        /// Recoveries so far on this device.
        count: u64,
    },
}

/// Link state as last learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInfo {
    /// Media connected.
    pub up: bool,
    /// Speed in 100 bps units (10 Gbit/s = 100,000,000).
    pub speed_100bps: u32,
    /// Always full duplex on Hyper-V.
    pub full_duplex: bool,
}

impl LinkInfo {
    /// Speed in Mbit/s.
    pub fn mbps(&self) -> u32 {
        self.speed_100bps / 10_000
    }
}

/// Handle an INDICATE_STATUS (its status code and status buffer, already bounded by the parser).
/// Unknown statuses are ignored like Linux/DPDK. False when the indication is unusable (a speed change
/// without its speed).
pub(crate) fn indicate_status(shared: &Shared, code: u32, buf: &[u8]) -> bool {
    match code {
        status::MEDIA_CONNECT => {
            shared.link_up.store(true, Relaxed);
            shared.push_event(Event::LinkUp);
        }
        status::MEDIA_DISCONNECT => {
            shared.link_up.store(false, Relaxed);
            shared.push_event(Event::LinkDown);
        }
        status::LINK_SPEED_CHANGE => {
            // Payload: the new speed as a u32.
            let Some(speed) = buf.first_chunk::<4>().map(|b| u32::from_le_bytes(*b)) else {
                return false;
            };
            shared.link_speed.store(speed, Relaxed);
            shared.push_event(Event::LinkSpeed(speed));
        }
        _ => {}
    }
    true
}

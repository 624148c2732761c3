//! The accelerated-networking (SR-IOV VF) side of the emulated host: what the VF is (a veth pair — the guest end
//! plays the VF netdev, the host end stays with the emulator as its switch port), its typed errors and its stats.
//! The protocol behaviour (offer, data-path switch, rx diversion) lives in `host::vf`; the netdev work in `link`.

pub(crate) mod link;

use serde::Serialize;
use std::path::PathBuf;

/// A MAC address.
pub type Mac = [u8; 6];

/// Where the guest end of the veth pair lives.
#[derive(Debug, Clone)]
pub enum VfNetns {
    /// A network-namespace file (`/run/netns/NAME`, `/proc/PID/ns/net`).
    Path(PathBuf),
    /// An open namespace fd (owned by the caller, kept open while the emulator runs).
    Fd(i32),
}

/// The VF the emulated host offers.
#[derive(Debug, Clone)]
pub struct VfConfig {
    /// Name of the guest end (the VF netdev the guest sees), ≤ 15 bytes.
    pub iface: String,
    /// Delay between the guest being ready and the offer (OpenVMM: 1 s).
    pub delay_ms: u64,
    /// The VF's serial (the PCI slot name a real guest pairs it by).
    pub serial: u32,
    /// The VF's MAC; `None` = the synthetic NIC's MAC (as on Azure).
    pub mac: Option<Mac>,
    /// Move the guest end into this namespace (default: the emulator's).
    pub netns: Option<VfNetns>,
}

impl VfConfig {
    /// Defaults: 1000 ms delay, serial 1, the synthetic MAC, this namespace.
    pub fn new(iface: impl Into<String>) -> Self {
        VfConfig {
            iface: iface.into(),
            delay_ms: 1000,
            serial: 1,
            mac: None,
            netns: None,
        }
    }

    /// The host end's name: the guest name with `h` appended, truncated to 15 bytes (`H` when that collides).
    pub fn host_iface(&self) -> String {
        host_iface_for(&self.iface)
    }
}

/// `<name>h` within IFNAMSIZ − 1 bytes, never equal to `name`.
pub fn host_iface_for(name: &str) -> String {
    let mut base: String = name.chars().collect();
    while base.len() > 14 {
        base.pop();
    }
    let h = format!("{base}h");
    if h == name { format!("{base}H") } else { h }
}

/// Why a VF command was refused or the VF could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VfError {
    /// The emulator was started without a VF.
    #[error("no VF configured (start the emulator with a VF)")]
    NotConfigured,
    /// The VF was hot-removed (or never created).
    #[error("the VF is not present (removed)")]
    NotPresent,
    /// `add` while the VF exists.
    #[error("the VF is already present")]
    AlreadyPresent,
    /// The guest has not finished bring-up (NVSP + RNDIS initialized).
    #[error("the guest is not ready (no NVSP session with RNDIS initialized)")]
    GuestNotReady,
    /// The guest negotiated NVSP below 4, which has no VF messages.
    #[error("the guest negotiated NVSP {0:#x}: VF messages need NVSP 4 or later")]
    ProtocolTooOld(u32),
    /// The guest did not declare SR-IOV in NDIS_CONFIG.
    #[error("the guest did not declare SR-IOV (NDIS_CONFIG capability bit 2)")]
    NoSriov,
    /// `revoke` / `switch-back` with no VF offered.
    #[error("no VF is offered")]
    NotOffered,
    /// The message did not fit the primary channel's ring (it is queued on the next signal, or lost).
    #[error("the primary channel's ring refused the message")]
    SendFailed,
    /// A bad argument (e.g. a multicast MAC).
    #[error("{0}")]
    Invalid(String),
    /// Creating, changing or deleting the veth pair failed.
    #[error("netdev: {0}")]
    Netdev(String),
}

/// Counts of the VF's data-path switches.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VfSwitches {
    /// Guest SWITCH_DATA_PATH {1} honoured.
    pub to_vf: u64,
    /// Guest SWITCH_DATA_PATH {0} honoured.
    pub to_synthetic: u64,
    /// Guest SWITCH_DATA_PATH while no VF was offered (completed, no action).
    pub ignored: u64,
    /// Guest SWITCH_DATA_PATH with a value other than 0/1 (completed, no action).
    pub bad_value: u64,
    /// Host-initiated NVSP 129 {0} sent (`switch-back`).
    pub host_switch_back: u64,
}

/// Frames the VF path could not carry, by reason.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VfDrops {
    /// Backend frame for the VF while the veth was gone (removed, or its socket died).
    pub vf_gone: u64,
    /// Backend frame the host end's tx ring did not take.
    pub ring_full: u64,
    /// Frames the kernel dropped on the host end's rx ring.
    pub kernel_rx_dropped: u64,
}

/// The VF as the host sees it (`Emulator::vf_state`, and `vf` in the stats document).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VfStats {
    /// The guest end (VF netdev) name.
    pub iface: String,
    /// The host end (switch port) name.
    pub host_iface: String,
    pub serial: u32,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The veth pair exists.
    pub present: bool,
    /// The last association sent said allocated=1.
    pub offered: bool,
    /// Unicast frames for the VF's MAC leave through the veth.
    pub datapath_vf: bool,
    /// `"vf"` or `"synthetic"`.
    pub datapath: &'static str,
    /// Why no VF is offered now (`nvspBelow4`, `noSriovCapability`, `guestNotReady`, `waitingDelay`, `revoked`,
    /// `removed`), or null when offered.
    pub state: Option<&'static str>,
    /// Offer delay after the guest is ready, ms.
    pub delay_ms: u64,
    /// SEND_VF_ASSOCIATION {1} sent.
    pub offers: u64,
    /// SEND_VF_ASSOCIATION {0} sent.
    pub revokes: u64,
    /// Sessions in which the VF was never offered because of the guest (below NVSP 4, no SR-IOV bit).
    pub not_offered_below_v4: u64,
    pub not_offered_no_sriov: u64,
    pub switches: VfSwitches,
    pub removes: u64,
    pub adds: u64,
    /// Backend → veth host end → the guest's VF netdev.
    pub vf_host_to_guest_frames: u64,
    pub vf_host_to_guest_bytes: u64,
    /// The guest's VF netdev → host end → backend.
    pub vf_guest_to_host_frames: u64,
    pub vf_guest_to_host_bytes: u64,
    pub drops: VfDrops,
    /// The host end's data path (`af_packet` / `af_xdp`), null while the pair is gone.
    pub port_mode: Option<&'static str>,
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(m: &Mac) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Parse `aa:bb:cc:dd:ee:ff` (also `-` separated).
pub fn parse_mac(text: &str) -> Option<Mac> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_end_names_fit_ifnamsiz_and_differ() {
        assert_eq!(host_iface_for("vf0"), "vf0h");
        assert_eq!(host_iface_for("abcdefghijklmno"), "abcdefghijklmnh");
        assert_eq!(host_iface_for("abcdefghijklmnh"), "abcdefghijklmnH");
        assert!(host_iface_for("abcdefghijklmnopq").len() <= 15);
    }

    #[test]
    fn macs_round_trip() {
        let m = parse_mac("00:15:5D:0a:0b:0c").unwrap();
        assert_eq!(format_mac(&m), "00:15:5d:0a:0b:0c");
        assert!(parse_mac("00:15:5d:0a:0b").is_none());
        assert!(parse_mac("00:15:5d:0a:0b:zz").is_none());
    }
}

//! What the guest has negotiated and configured: NVSP/NDIS versions, buffers, RNDIS state, packet
//! filter, offloads, RSS and link. Guarded by one mutex; the data paths copy what they need.

use super::HostConfig;
use serde::Serialize;

/// The receive buffer as announced in SEND_RECV_BUF_COMPLETE.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecvBufInfo {
    pub id: u16,
    pub sub_alloc_size: u32,
    pub count: u32,
}

/// Offload parameters the guest set (raw NDIS values; 0 = no change).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OffloadState {
    pub sets: u32,
    pub revision: u8,
    pub ipv4_checksum: u8,
    pub tcp_ipv4_checksum: u8,
    pub udp_ipv4_checksum: u8,
    pub tcp_ipv6_checksum: u8,
    pub udp_ipv6_checksum: u8,
    pub lso_v1: u8,
    pub lso_v2_ipv4: u8,
    pub lso_v2_ipv6: u8,
    pub rsc_ipv4: u8,
    pub rsc_ipv6: u8,
    pub encapsulation_sets: u32,
    pub config_parameters: Vec<String>,
}

/// RSS as the guest configured it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RssState {
    pub enabled: bool,
    pub sets: u32,
    pub hash_info: u32,
    #[serde(serialize_with = "hex_bytes")]
    pub key: Vec<u8>,
    pub table: Vec<u32>,
}

fn hex_bytes<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    let mut out = String::with_capacity(v.len() * 2);
    for b in v {
        out.push_str(&format!("{b:02x}"));
    }
    s.serialize_str(&out)
}

impl Default for RssState {
    fn default() -> Self {
        RssState {
            enabled: false,
            sets: 0,
            hash_info: 0,
            key: netvsc_proto::toeplitz::STANDARD_KEY.to_vec(),
            table: vec![0; 128],
        }
    }
}

/// Everything negotiated on the primary channel.
#[derive(Debug, Clone)]
pub struct DeviceState {
    /// Negotiated NVSP version (0 = none yet).
    pub version: u32,
    pub inits: u32,
    pub ndis_config: Option<(u32, u64)>,
    pub ndis_version: Option<(u32, u32)>,
    /// Frame MTU including the 14-byte Ethernet header.
    pub frame_mtu: u32,
    pub recv: Option<RecvBufInfo>,
    pub send_sections: Option<u32>,
    pub rndis_initialized: bool,
    pub rndis_halted: bool,
    pub filter: u32,
    /// The last [`HISTORY`] packet filters set, oldest first (`filter_changes` counts all of them).
    pub filters: Vec<u32>,
    /// Packet filter sets since the device was created.
    pub filter_changes: u64,
    pub oids_queried: Vec<u32>,
    pub oids_set: Vec<u32>,
    pub offload: OffloadState,
    pub rss: RssState,
    /// The host's link (what GEN_MEDIA_CONNECT_STATUS answers).
    pub link_up: bool,
    /// The link state the guest was last told (at RNDIS INITIALIZE: the host's).
    pub link_told: bool,
    /// What the host still has to tell the guest (see `host::link`).
    pub link_pending: super::LinkPending,
    pub link_speed: u32,
    pub current_mac: [u8; 6],
    /// Subchannels of the current NVSP session (the guest's last granted SUBCHANNEL request; 0 after INIT). The
    /// channel objects themselves outlive a session (their ring files stay in the tree, like offers on a host).
    pub subchannels: u16,
    pub data_path: Vec<u32>,
    /// The VF session (see `host::vf`).
    pub vf: super::vf::VfSession,
}

/// Entries each of the emulator's histories (packet filters, OIDs set and queried, data path switches) keeps: the
/// newest ones; a guest that changes its filter forever costs the host no more memory.
pub const HISTORY: usize = 64;

/// Append `x` to a history, dropping its oldest entry once it holds [`HISTORY`].
pub fn record(v: &mut Vec<u32>, x: u32) {
    if v.len() >= HISTORY {
        let extra = v.len() + 1 - HISTORY;
        v.drain(..extra);
    }
    v.push(x);
}

impl DeviceState {
    pub fn new(cfg: &HostConfig) -> Self {
        DeviceState {
            version: 0,
            inits: 0,
            ndis_config: None,
            ndis_version: None,
            frame_mtu: cfg.mtu + 14,
            recv: None,
            send_sections: None,
            rndis_initialized: false,
            rndis_halted: false,
            filter: 0,
            filters: Vec::new(),
            filter_changes: 0,
            oids_queried: Vec::new(),
            oids_set: Vec::new(),
            offload: OffloadState::default(),
            rss: RssState::default(),
            link_up: true,
            link_told: true,
            link_pending: super::LinkPending::None,
            link_speed: cfg.link_speed,
            current_mac: cfg.mac,
            subchannels: 0,
            data_path: Vec::new(),
            vf: super::vf::VfSession::default(),
        }
    }

    /// A new INIT starts a new session: forget buffers and RNDIS state (keep link and history).
    pub fn reset_session(&mut self, cfg: &HostConfig) {
        self.version = 0;
        self.ndis_config = None;
        self.ndis_version = None;
        self.frame_mtu = cfg.mtu + 14;
        self.recv = None;
        self.send_sections = None;
        self.rndis_initialized = false;
        self.rndis_halted = false;
        self.filter = 0;
        self.rss = RssState::default();
        // A new session has only the primary until it asks again (Hyper-V closes a session's subchannels with it).
        self.subchannels = 0;
    }
}

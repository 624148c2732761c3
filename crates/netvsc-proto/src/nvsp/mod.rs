//! NVSP (Network VSP protocol): the messages carried in VMBus packet payloads between the guest's netvsc driver and
//! the host's NetVSP. Each message is a little-endian `u32` type followed by a fixed body; requests are zero-padded
//! to 40 bytes, hosts reply with 28 bytes below v6.1 and 40 bytes from v6.1 (protocol.md §3).

mod message;
mod msgs;
mod table;

pub use message::NvspMessage;
pub use msgs::*;
pub use table::{IndirectionTable, build_indirection_table};

/// Length of the zero-padded request form (`sizeof(nvsp_message)` in Linux; DPDK sends the same).
pub const MESSAGE_LEN: usize = 40;
/// Length of host replies below NVSP 6.1 (OpenVMM).
pub const HOST_REPLY_LEN_V1: usize = 28;
/// Length of host replies at NVSP 6.1.
pub const HOST_REPLY_LEN_V61: usize = 40;
/// Size of the NVSP header (the `u32` message type).
pub const HEADER_LEN: usize = 4;

/// Reply length a host uses for a negotiated version.
pub const fn host_reply_len(version: u32) -> usize {
    if version >= VERSION_61 {
        HOST_REPLY_LEN_V61
    } else {
        HOST_REPLY_LEN_V1
    }
}

/// NVSP message types (protocol.md §3.2, names as in Linux `hyperv_net.h`).
pub mod msg_type {
    pub const NONE: u32 = 0;
    pub const INIT: u32 = 1;
    pub const INIT_COMPLETE: u32 = 2;
    // Version 1.
    pub const SEND_NDIS_VER: u32 = 100;
    pub const SEND_RECV_BUF: u32 = 101;
    pub const SEND_RECV_BUF_COMPLETE: u32 = 102;
    pub const REVOKE_RECV_BUF: u32 = 103;
    pub const SEND_SEND_BUF: u32 = 104;
    pub const SEND_SEND_BUF_COMPLETE: u32 = 105;
    pub const REVOKE_SEND_BUF: u32 = 106;
    pub const SEND_RNDIS_PKT: u32 = 107;
    pub const SEND_RNDIS_PKT_COMPLETE: u32 = 108;
    // Version 2 (chimney/VMQ messages are obsolete; listed so they can be named in logs).
    pub const SEND_CHIMNEY_DELEGATED_BUF: u32 = 109;
    pub const SEND_CHIMNEY_DELEGATED_BUF_COMP: u32 = 110;
    pub const REVOKE_CHIMNEY_DELEGATED_BUF: u32 = 111;
    pub const RESUME_CHIMNEY_RX_INDICATION: u32 = 112;
    pub const TERMINATE_CHIMNEY: u32 = 113;
    pub const TERMINATE_CHIMNEY_COMP: u32 = 114;
    pub const INDICATE_CHIMNEY_EVENT: u32 = 115;
    pub const SEND_CHIMNEY_PKT: u32 = 116;
    pub const SEND_CHIMNEY_PKT_COMP: u32 = 117;
    pub const POST_CHIMNEY_RECV_REQ: u32 = 118;
    pub const POST_CHIMNEY_RECV_REQ_COMP: u32 = 119;
    pub const ALLOC_RXBUF: u32 = 120;
    pub const ALLOC_RXBUF_COMP: u32 = 121;
    pub const FREE_RXBUF: u32 = 122;
    pub const SEND_VMQ_RNDIS_PKT: u32 = 123;
    pub const SEND_VMQ_RNDIS_PKT_COMP: u32 = 124;
    pub const SEND_NDIS_CONFIG: u32 = 125;
    pub const ALLOC_CHIMNEY_HANDLE: u32 = 126;
    pub const ALLOC_CHIMNEY_HANDLE_COMP: u32 = 127;
    // Version 4.
    pub const SEND_VF_ASSOCIATION: u32 = 128;
    pub const SWITCH_DATA_PATH: u32 = 129;
    pub const UPLINK_CONNECT_STATE_DEPRECATED: u32 = 130;
    // Version 5.
    pub const OID_QUERY_EX: u32 = 131;
    pub const OID_QUERY_EX_COMP: u32 = 132;
    pub const SUBCHANNEL: u32 = 133;
    pub const SEND_INDIRECTION_TABLE: u32 = 134;
    // Version 6 (PacketDirect; unused by Linux/FreeBSD).
    pub const PD_API: u32 = 135;
    pub const PD_POST_BATCH: u32 = 136;

    /// Name of a message type, for logs.
    pub fn name(t: u32) -> Option<&'static str> {
        const NAMES: [&str; 37] = [
            "SEND_NDIS_VER",
            "SEND_RECV_BUF",
            "SEND_RECV_BUF_COMPLETE",
            "REVOKE_RECV_BUF",
            "SEND_SEND_BUF",
            "SEND_SEND_BUF_COMPLETE",
            "REVOKE_SEND_BUF",
            "SEND_RNDIS_PKT",
            "SEND_RNDIS_PKT_COMPLETE",
            "SEND_CHIMNEY_DELEGATED_BUF",
            "SEND_CHIMNEY_DELEGATED_BUF_COMP",
            "REVOKE_CHIMNEY_DELEGATED_BUF",
            "RESUME_CHIMNEY_RX_INDICATION",
            "TERMINATE_CHIMNEY",
            "TERMINATE_CHIMNEY_COMP",
            "INDICATE_CHIMNEY_EVENT",
            "SEND_CHIMNEY_PKT",
            "SEND_CHIMNEY_PKT_COMP",
            "POST_CHIMNEY_RECV_REQ",
            "POST_CHIMNEY_RECV_REQ_COMP",
            "ALLOC_RXBUF",
            "ALLOC_RXBUF_COMP",
            "FREE_RXBUF",
            "SEND_VMQ_RNDIS_PKT",
            "SEND_VMQ_RNDIS_PKT_COMP",
            "SEND_NDIS_CONFIG",
            "ALLOC_CHIMNEY_HANDLE",
            "ALLOC_CHIMNEY_HANDLE_COMP",
            "SEND_VF_ASSOCIATION",
            "SWITCH_DATA_PATH",
            "UPLINK_CONNECT_STATE_DEPRECATED",
            "OID_QUERY_EX",
            "OID_QUERY_EX_COMP",
            "SUBCHANNEL",
            "SEND_INDIRECTION_TABLE",
            "PD_API",
            "PD_POST_BATCH",
        ];
        match t {
            NONE => Some("NONE"),
            INIT => Some("INIT"),
            INIT_COMPLETE => Some("INIT_COMPLETE"),
            100..=136 => Some(NAMES[(t - 100) as usize]),
            _ => None,
        }
    }
}

/// NVSP protocol versions (protocol.md §3.1).
pub const VERSION_1: u32 = 0x0000_0002;
pub const VERSION_2: u32 = 0x0003_0002;
pub const VERSION_4: u32 = 0x0004_0000;
pub const VERSION_5: u32 = 0x0005_0000;
pub const VERSION_6: u32 = 0x0006_0000;
pub const VERSION_61: u32 = 0x0006_0001;
/// Versions a guest offers, best first (INIT carries min = max = candidate).
pub const VERSIONS: [u32; 6] = [
    VERSION_61, VERSION_6, VERSION_5, VERSION_4, VERSION_2, VERSION_1,
];

/// NDIS version a guest announces in SEND_NDIS_VER for a negotiated NVSP version: 6.1 up to NVSP 4, else 6.30.
pub const fn ndis_version_for(nvsp_version: u32) -> (u32, u32) {
    if nvsp_version <= VERSION_4 {
        (6, 1)
    } else {
        (6, 30)
    }
}

/// NVSP status codes (in completions).
pub mod status {
    pub const NONE: u32 = 0;
    pub const SUCCESS: u32 = 1;
    pub const FAILURE: u32 = 2;
    pub const PROTOCOL_TOO_NEW: u32 = 3;
    pub const PROTOCOL_TOO_OLD: u32 = 4;
    pub const INVALID_RNDIS_PKT: u32 = 5;
    pub const BUSY: u32 = 6;
    pub const PROTOCOL_UNSUPPORTED: u32 = 7;
}

/// Capability bits of SEND_NDIS_CONFIG (`u64` at byte 12).
pub mod ndis_config_caps {
    pub const VMQ: u64 = 1 << 0;
    pub const CHIMNEY: u64 = 1 << 1;
    pub const SRIOV: u64 = 1 << 2;
    pub const IEEE8021Q: u64 = 1 << 3;
    pub const CORRELATION_ID: u64 = 1 << 4;
    pub const TEAMING: u64 = 1 << 5;
    pub const VSUBNETID: u64 = 1 << 6;
    pub const RSC: u64 = 1 << 7;
}

/// SEND_RNDIS_PKT channel types.
pub const CHANNEL_TYPE_DATA: u32 = 0;
pub const CHANNEL_TYPE_CONTROL: u32 = 1;
/// SEND_RNDIS_PKT section index meaning "no send-buffer section used" (GPA mode).
pub const SECTION_INDEX_NONE: u32 = 0xFFFF_FFFF;
/// Receive-buffer id used by Linux/FreeBSD/DPDK.
pub const RECV_BUF_ID: u16 = 0xCAFE;
/// Send-buffer id used by FreeBSD/DPDK (Linux uses 0).
pub const SEND_BUF_ID: u16 = 0xFACE;
/// SUBCHANNEL operation "allocate".
pub const SUBCHANNEL_OP_ALLOCATE: u32 = 1;
/// SWITCH_DATA_PATH values.
pub const DATAPATH_SYNTHETIC: u32 = 0;
pub const DATAPATH_VF: u32 = 1;
/// Number of entries in the send indirection table (VRSS_SEND_TAB_SIZE).
pub const SEND_TABLE_SIZE: usize = 16;
/// Transaction ids OpenVMM uses for host-initiated messages that request a completion.
pub const TRANS_ID_VF_ASSOCIATION: u64 = 0x8000_0000_0000_0000;
pub const TRANS_ID_SWITCH_DATA_PATH: u64 = 0x8000_0000_0000_0001;

#[cfg(test)]
mod tests;

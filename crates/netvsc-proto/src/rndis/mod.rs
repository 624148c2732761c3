//! RNDIS: the control and data messages carried inside NVSP SEND_RNDIS_PKT (107) — in a send-buffer section, by
//! GPA ranges, or (host → guest) in receive-buffer ranges. Every message starts with `{msg_type, msg_len}`;
//! `info/status/data` offsets inside a message are relative to byte 8. Parse bounds each of them to `msg_len`.

mod config;
mod message;
mod msgs;
mod packet;

pub use config::{ConfigParameter, NETWORK_ADDRESS, emit_mac_parameter, emit_string_parameter};
pub use message::{RndisMessage, RndisMessages};
pub use msgs::*;
pub use packet::{PacketLayout, PacketWriter, Ppi, PpiIter, RndisPacket, emit_packet};

/// Size of the common header.
pub const HEADER_LEN: usize = 8;
/// Size of the PACKET header (8 + 36); `data_offset`/`ppi_offset` are relative to byte 8.
pub const PACKET_HEADER_LEN: usize = 44;
/// RNDIS version a guest requests.
pub const MAJOR_VERSION: u32 = 1;
pub const MINOR_VERSION: u32 = 0;
/// INITIALIZE_CMPLT `dev_flags`: connectionless.
pub const DF_CONNECTIONLESS: u32 = 1;

/// RNDIS message types.
pub mod msg_type {
    pub const PACKET: u32 = 0x0000_0001;
    pub const INITIALIZE: u32 = 0x0000_0002;
    pub const HALT: u32 = 0x0000_0003;
    pub const QUERY: u32 = 0x0000_0004;
    pub const SET: u32 = 0x0000_0005;
    pub const RESET: u32 = 0x0000_0006;
    pub const INDICATE_STATUS: u32 = 0x0000_0007;
    pub const KEEPALIVE: u32 = 0x0000_0008;
    pub const SET_EX: u32 = 0x0000_0009;
    pub const INITIALIZE_CMPLT: u32 = 0x8000_0002;
    pub const QUERY_CMPLT: u32 = 0x8000_0004;
    pub const SET_CMPLT: u32 = 0x8000_0005;
    pub const RESET_CMPLT: u32 = 0x8000_0006;
    pub const KEEPALIVE_CMPLT: u32 = 0x8000_0008;
    pub const SET_EX_CMPLT: u32 = 0x8000_0009;
}

/// RNDIS/NDIS status codes.
pub mod status {
    pub const SUCCESS: u32 = 0x0000_0000;
    pub const PENDING: u32 = 0x0000_0103;
    pub const NOT_RECOGNIZED: u32 = 0x0001_0001;
    pub const NOT_COPIED: u32 = 0x0001_0002;
    pub const NOT_ACCEPTED: u32 = 0x0001_0003;
    pub const CALL_ACTIVE: u32 = 0x0001_0007;
    pub const ONLINE: u32 = 0x4001_0003;
    pub const RESET_START: u32 = 0x4001_0004;
    pub const RESET_END: u32 = 0x4001_0005;
    pub const RING_STATUS: u32 = 0x4001_0006;
    pub const CLOSED: u32 = 0x4001_0007;
    pub const WAN_LINE_UP: u32 = 0x4001_0008;
    pub const WAN_LINE_DOWN: u32 = 0x4001_0009;
    pub const WAN_FRAGMENT: u32 = 0x4001_000A;
    pub const MEDIA_CONNECT: u32 = 0x4001_000B;
    pub const MEDIA_DISCONNECT: u32 = 0x4001_000C;
    pub const HARDWARE_LINE_UP: u32 = 0x4001_000D;
    pub const HARDWARE_LINE_DOWN: u32 = 0x4001_000E;
    pub const INTERFACE_UP: u32 = 0x4001_000F;
    pub const INTERFACE_DOWN: u32 = 0x4001_0010;
    pub const MEDIA_BUSY: u32 = 0x4001_0011;
    pub const MEDIA_SPECIFIC_INDICATION: u32 = 0x4001_0012;
    pub const LINK_SPEED_CHANGE: u32 = 0x4001_0013;
    pub const NETWORK_CHANGE: u32 = 0x4001_0018;
    pub const TASK_OFFLOAD_CURRENT_CONFIG: u32 = 0x4002_0006;
    pub const BUFFER_OVERFLOW: u32 = 0x8000_0005;
    pub const NOT_RESETTABLE: u32 = 0x8001_0001;
    pub const SOFT_ERRORS: u32 = 0x8001_0003;
    pub const HARD_ERRORS: u32 = 0x8001_0004;
    pub const FAILURE: u32 = 0xC000_0001;
    pub const RESOURCES: u32 = 0xC000_009A;
    pub const NOT_SUPPORTED: u32 = 0xC000_00BB;
    pub const CLOSING: u32 = 0xC001_0002;
    pub const BAD_VERSION: u32 = 0xC001_0004;
    pub const BAD_CHARACTERISTICS: u32 = 0xC001_0005;
    pub const ADAPTER_NOT_FOUND: u32 = 0xC001_0006;
    pub const OPEN_FAILED: u32 = 0xC001_0007;
    pub const DEVICE_FAILED: u32 = 0xC001_0008;
    pub const MULTICAST_FULL: u32 = 0xC001_0009;
    pub const MULTICAST_EXISTS: u32 = 0xC001_000A;
    pub const MULTICAST_NOT_FOUND: u32 = 0xC001_000B;
    pub const REQUEST_ABORTED: u32 = 0xC001_000C;
    pub const RESET_IN_PROGRESS: u32 = 0xC001_000D;
    pub const INVALID_PACKET: u32 = 0xC001_000F;
    pub const ADAPTER_NOT_READY: u32 = 0xC001_0011;
    pub const INVALID_LENGTH: u32 = 0xC001_0014;
    pub const INVALID_DATA: u32 = 0xC001_0015;
    pub const BUFFER_TOO_SHORT: u32 = 0xC001_0016;
    pub const INVALID_OID: u32 = 0xC001_0017;
    pub const ADAPTER_REMOVED: u32 = 0xC001_0018;
    pub const UNSUPPORTED_MEDIA: u32 = 0xC001_0019;
    pub const NO_CABLE: u32 = 0xC001_001F;
}

#[cfg(test)]
mod tests;

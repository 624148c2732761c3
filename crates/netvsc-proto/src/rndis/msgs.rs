//! `#[repr(C)]` RNDIS message layouts. `RndisHeader` is bytes 0..8 of every message; the other structs are the
//! fixed part after it (so byte N of the message is byte N − 8 of the struct).

use crate::wire::wire;

wire! {
    /// Common header: message type and total length (including the header and any trailing data/padding).
    pub struct RndisHeader { pub msg_type: u32, pub msg_len: u32 } = 8
}
wire! {
    /// INITIALIZE (24 bytes): 8 req_id, 12 major, 16 minor, 20 max_xfer_size.
    pub struct InitializeRequest { pub req_id: u32, pub major_version: u32, pub minor_version: u32, pub max_xfer_size: u32 } = 16
}
wire! {
    /// INITIALIZE_CMPLT (52 bytes).
    pub struct InitializeComplete {
        pub req_id: u32,
        pub status: u32,
        pub major_version: u32,
        pub minor_version: u32,
        pub dev_flags: u32,
        pub medium: u32,
        pub max_pkt_per_msg: u32,
        pub max_xfer_size: u32,
        /// log2 of the alignment of aggregated packets.
        pub pkt_alignment_factor: u32,
        pub af_list_offset: u32,
        pub af_list_size: u32,
    } = 44
}
wire! {
    /// HALT (12 bytes): 8 req_id. No completion.
    pub struct Halt { pub req_id: u32 } = 4
}
wire! {
    /// QUERY / SET (28 bytes + info): 8 req_id, 12 oid, 16 info_buflen, 20 info_buf_offset (from byte 8),
    /// 24 device_vc_handle.
    pub struct OidRequest { pub req_id: u32, pub oid: u32, pub info_buflen: u32, pub info_buf_offset: u32, pub device_vc_handle: u32 } = 20
}
wire! {
    /// QUERY_CMPLT (24 bytes + info): 8 req_id, 12 status, 16 info_buflen, 20 info_buf_offset (from byte 8).
    pub struct QueryComplete { pub req_id: u32, pub status: u32, pub info_buflen: u32, pub info_buf_offset: u32 } = 16
}
wire! {
    /// SET_CMPLT (16 bytes): 8 req_id, 12 status.
    pub struct SetComplete { pub req_id: u32, pub status: u32 } = 8
}
wire! {
    /// RESET (12 bytes): 8 reserved.
    pub struct Reset { pub reserved: u32 } = 4
}
wire! {
    /// RESET_CMPLT (16 bytes): 8 status, 12 addressing_reset.
    pub struct ResetComplete { pub status: u32, pub addressing_reset: u32 } = 8
}
wire! {
    /// INDICATE_STATUS (20 bytes + buffer): 8 status, 12 status_buflen, 16 status_buf_offset (from byte 8).
    pub struct IndicateStatus { pub status: u32, pub status_buflen: u32, pub status_buf_offset: u32 } = 12
}
wire! {
    /// KEEPALIVE (12 bytes): 8 req_id.
    pub struct Keepalive { pub req_id: u32 } = 4
}
wire! {
    /// KEEPALIVE_CMPLT (16 bytes): 8 req_id, 12 status.
    pub struct KeepaliveComplete { pub req_id: u32, pub status: u32 } = 8
}
wire! {
    /// PACKET header (44 bytes); offsets relative to byte 8.
    pub struct PacketHeader {
        pub data_offset: u32,
        pub data_len: u32,
        pub oob_offset: u32,
        pub oob_len: u32,
        pub num_oob: u32,
        pub ppi_offset: u32,
        pub ppi_len: u32,
        pub vc_handle: u32,
        pub reserved: u32,
    } = 36
}

wire! {
    /// GEN_RNDIS_CONFIG_PARAMETER payload header; offsets are from the start of this struct.
    pub struct ConfigParameterInfo {
        pub name_offset: u32,
        pub name_len: u32,
        pub param_type: u32,
        pub value_offset: u32,
        pub value_len: u32,
    } = 20
}
/// Config parameter types.
pub const CONFIG_PARAM_TYPE_INTEGER: u32 = 0;
pub const CONFIG_PARAM_TYPE_STRING: u32 = 2;

impl OidRequest {
    /// The request header for `oid` with `info` right after it: info_buf_offset 20 (counted from byte 8, so the data
    /// starts at byte 28) even when `info` is empty, because Hyper-V fails queries with offset 0.
    pub fn new(req_id: u32, oid: u32, info: &[u8]) -> Self {
        Self {
            req_id,
            oid,
            info_buflen: info.len() as u32,
            info_buf_offset: 20,
            device_vc_handle: 0,
        }
    }
}

//! `#[repr(C)]` bodies of the NVSP messages (the part after the 4-byte type). Offsets in the comments are from the
//! start of the message, i.e. they include the header, as in protocol.md §3.2.

use crate::ndis::NdisObjectHeader;
use crate::wire::wire;

wire! {
    /// INIT (1): 4 min_version, 8 max_version. Guests send min = max = the candidate.
    pub struct Init { pub min_version: u32, pub max_version: u32 } = 8
}
wire! {
    /// INIT_COMPLETE (2): 4 negotiated_version (deprecated), 8 max_mdl_chain_len, 12 status.
    pub struct InitComplete { pub negotiated_version: u32, pub max_mdl_chain_len: u32, pub status: u32 } = 12
}
wire! {
    /// SEND_NDIS_VER (100): 4 ndis_major, 8 ndis_minor.
    pub struct SendNdisVersion { pub ndis_major: u32, pub ndis_minor: u32 } = 8
}
wire! {
    /// SEND_RECV_BUF (101): 4 gpadl, 8 id (u16; 0xCAFE by convention).
    pub struct SendRecvBuf { pub gpadl: u32, pub id: u16, pub reserved: u16 } = 8
}
wire! {
    /// One receive-buffer section of SEND_RECV_BUF_COMPLETE.
    pub struct RecvBufSection { pub offset: u32, pub sub_alloc_size: u32, pub num_sub_allocs: u32, pub end_offset: u32 } = 16
}
wire! {
    /// SEND_RECV_BUF_COMPLETE (102): 4 status, 8 num_sections, 12 first section (guests require exactly one).
    pub struct SendRecvBufComplete { pub status: u32, pub num_sections: u32, pub section: RecvBufSection } = 24
}
wire! {
    /// REVOKE_RECV_BUF (103): 4 id (u16).
    pub struct RevokeRecvBuf { pub id: u16, pub reserved: u16 } = 4
}
wire! {
    /// SEND_SEND_BUF (104): 4 gpadl, 8 id (u16).
    pub struct SendSendBuf { pub gpadl: u32, pub id: u16, pub reserved: u16 } = 8
}
wire! {
    /// SEND_SEND_BUF_COMPLETE (105): 4 status, 8 section_size.
    pub struct SendSendBufComplete { pub status: u32, pub section_size: u32 } = 8
}
wire! {
    /// REVOKE_SEND_BUF (106): 4 id (u16).
    pub struct RevokeSendBuf { pub id: u16, pub reserved: u16 } = 4
}
wire! {
    /// SEND_RNDIS_PKT (107): 4 channel_type (0 data, 1 control), 8 send_buf_section_index (0xFFFFFFFF = none),
    /// 12 send_buf_section_size (bytes used).
    pub struct SendRndisPkt { pub channel_type: u32, pub send_buf_section_index: u32, pub send_buf_section_size: u32 } = 12
}
wire! {
    /// SEND_RNDIS_PKT_COMPLETE (108): 4 status.
    pub struct SendRndisPktComplete { pub status: u32 } = 4
}
wire! {
    /// SEND_NDIS_CONFIG (125): 4 mtu (incl. the 14-byte Ethernet header), 8 reserved, 12 capabilities (u64,
    /// unaligned in the message, hence a byte array; use [`SendNdisConfig::capabilities`]).
    pub struct SendNdisConfig { pub mtu: u32, pub reserved: u32, pub capabilities: [u8; 8] } = 16
}
wire! {
    /// SEND_VF_ASSOCIATION (128): 4 allocated (1/0), 8 serial.
    pub struct VfAssociation { pub allocated: u32, pub serial: u32 } = 8
}
wire! {
    /// SWITCH_DATA_PATH (129): 4 active_datapath (0 synthetic, 1 VF).
    pub struct SwitchDataPath { pub active_datapath: u32 } = 4
}
wire! {
    /// SUBCHANNEL (133), both directions share the type: as a request 4 = op (1 allocate), 8 = number requested;
    /// as the completion 4 = status, 8 = number allocated. See [`Subchannel::op`] / [`Subchannel::status`].
    pub struct Subchannel { pub op_or_status: u32, pub num_subchannels: u32 } = 8
}
wire! {
    /// SEND_INDIRECTION_TABLE (134): 4 count (16), 8 offset of the `u32` table from the start of the message.
    pub struct SendIndirectionTable { pub count: u32, pub offset: u32 } = 8
}
wire! {
    /// OID_QUERY_EX (131): 4 NDIS object header, 8 oid.
    pub struct OidQueryEx { pub header: NdisObjectHeader, pub oid: u32 } = 8
}
wire! {
    /// OID_QUERY_EX_COMP (132): 4 status, 8 bytes.
    pub struct OidQueryExComplete { pub status: u32, pub bytes: u32 } = 8
}

impl SendNdisConfig {
    pub fn new(mtu: u32, capabilities: u64) -> Self {
        Self {
            mtu,
            reserved: 0,
            capabilities: capabilities.to_le_bytes(),
        }
    }
    /// The capability bits (see [`super::ndis_config_caps`]).
    pub fn capabilities(&self) -> u64 {
        u64::from_le_bytes(self.capabilities)
    }
    pub fn set_capabilities(&mut self, caps: u64) {
        self.capabilities = caps.to_le_bytes();
    }
}

impl Subchannel {
    /// A guest request to allocate `n` subchannels.
    pub fn allocate(n: u32) -> Self {
        Self {
            op_or_status: super::SUBCHANNEL_OP_ALLOCATE,
            num_subchannels: n,
        }
    }
    /// The host's completion: `status` and the number allocated.
    pub fn complete(status: u32, allocated: u32) -> Self {
        Self {
            op_or_status: status,
            num_subchannels: allocated,
        }
    }
    /// Interpreted as a request: the operation.
    pub fn op(&self) -> u32 {
        self.op_or_status
    }
    /// Interpreted as a completion: the NVSP status.
    pub fn status(&self) -> u32 {
        self.op_or_status
    }
}

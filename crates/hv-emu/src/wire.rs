//! Little-endian field access and the protocol constants the host uses (NVSP, RNDIS, OIDs, PPIs).
//!
//! Every getter is bounds-checked and returns `None` past the end, so parsing guest bytes never
//! panics; the host keeps its own constants so it can follow a real host's choices exactly.

/// u16 at `off`, or `None` when out of bounds.
pub fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// u32 at `off`, or `None` when out of bounds.
pub fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// u64 at `off`, or `None` when out of bounds.
pub fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Store a u16 (caller sized the buffer).
pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

/// Store a u32 (caller sized the buffer).
pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Store a u64 (caller sized the buffer).
pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// NVSP message types, versions and statuses (protocol.md §3).
pub mod nvsp {
    pub const INIT: u32 = 1;
    pub const INIT_COMPLETE: u32 = 2;
    pub const SEND_NDIS_VER: u32 = 100;
    pub const SEND_RECV_BUF: u32 = 101;
    pub const SEND_RECV_BUF_COMPLETE: u32 = 102;
    pub const REVOKE_RECV_BUF: u32 = 103;
    pub const SEND_SEND_BUF: u32 = 104;
    pub const SEND_SEND_BUF_COMPLETE: u32 = 105;
    pub const REVOKE_SEND_BUF: u32 = 106;
    pub const SEND_RNDIS_PKT: u32 = 107;
    pub const SEND_RNDIS_PKT_COMPLETE: u32 = 108;
    pub const SEND_NDIS_CONFIG: u32 = 125;
    pub const SEND_VF_ASSOCIATION: u32 = 128;
    pub const SWITCH_DATA_PATH: u32 = 129;
    pub const OID_QUERY_EX: u32 = 131;
    pub const OID_QUERY_EX_COMPLETE: u32 = 132;
    pub const SUBCHANNEL: u32 = 133;
    pub const SEND_INDIRECTION_TABLE: u32 = 134;

    pub const V1: u32 = 0x2;
    pub const V2: u32 = 0x30002;
    pub const V4: u32 = 0x40000;
    pub const V5: u32 = 0x50000;
    pub const V6: u32 = 0x60000;
    pub const V61: u32 = 0x60001;
    /// The six versions a real host accepts, exactly (no range logic).
    pub const VERSIONS: [u32; 6] = [V1, V2, V4, V5, V6, V61];

    pub const STATUS_NONE: u32 = 0;
    pub const STATUS_SUCCESS: u32 = 1;
    pub const STATUS_FAIL: u32 = 2;

    pub const CHANNEL_DATA: u32 = 0;
    pub const CHANNEL_CONTROL: u32 = 1;
    pub const NO_SECTION: u32 = 0xFFFF_FFFF;
    pub const SUBCHANNEL_ALLOCATE: u32 = 1;

    /// Host message size: 28 bytes below v6.1, 40 at v6.1 (OpenVMM).
    pub fn message_len(version: u32) -> usize {
        if version >= V61 { 40 } else { 28 }
    }
    /// Largest send-buffer section a real host hands out.
    pub const SEND_SECTION_SIZE: u32 = 6144;
    pub const MAX_MDL_CHAIN_LEN: u32 = 34;
    /// Fixed transaction ids of host-initiated requests (OpenVMM).
    pub const VF_ASSOCIATION_TRANS_ID: u64 = 0x8000_0000_0000_0000;
    pub const SWITCH_DATA_PATH_TRANS_ID: u64 = 0x8000_0000_0000_0001;
}

/// RNDIS message types and statuses (protocol.md §4).
pub mod rndis {
    pub const PACKET: u32 = 1;
    pub const INITIALIZE: u32 = 2;
    pub const HALT: u32 = 3;
    pub const QUERY: u32 = 4;
    pub const SET: u32 = 5;
    pub const RESET: u32 = 6;
    pub const INDICATE_STATUS: u32 = 7;
    pub const KEEPALIVE: u32 = 8;
    pub const COMPLETION: u32 = 0x8000_0000;

    pub const STATUS_SUCCESS: u32 = 0;
    pub const STATUS_FAILURE: u32 = 0xC000_0001;
    pub const STATUS_NOT_SUPPORTED: u32 = 0xC000_00BB;
    pub const STATUS_INVALID_LENGTH: u32 = 0xC001_0014;
    pub const STATUS_INVALID_DATA: u32 = 0xC001_0015;
    pub const STATUS_MEDIA_CONNECT: u32 = 0x4001_000B;
    pub const STATUS_MEDIA_DISCONNECT: u32 = 0x4001_000C;
    pub const STATUS_LINK_SPEED_CHANGE: u32 = 0x4001_0013;

    pub const PACKET_HEADER_LEN: usize = 44;
    /// INITIALIZE_CMPLT values a real host (OpenVMM) uses.
    pub const MAX_PACKETS_PER_MESSAGE: u32 = 8;
    pub const MAX_TRANSFER_SIZE: u32 = 0xEFFF_FFFF;
    pub const PACKET_ALIGNMENT_FACTOR: u32 = 3;
}

/// Object identifiers (protocol.md §4.4 and the GEN_/802_3 basics a host answers).
pub mod oid {
    pub const GEN_SUPPORTED_LIST: u32 = 0x0001_0101;
    pub const GEN_HARDWARE_STATUS: u32 = 0x0001_0102;
    pub const GEN_MEDIA_SUPPORTED: u32 = 0x0001_0103;
    pub const GEN_MEDIA_IN_USE: u32 = 0x0001_0104;
    pub const GEN_MAXIMUM_FRAME_SIZE: u32 = 0x0001_0106;
    pub const GEN_LINK_SPEED: u32 = 0x0001_0107;
    pub const GEN_TRANSMIT_BLOCK_SIZE: u32 = 0x0001_010A;
    pub const GEN_RECEIVE_BLOCK_SIZE: u32 = 0x0001_010B;
    pub const GEN_VENDOR_ID: u32 = 0x0001_010C;
    pub const GEN_VENDOR_DESCRIPTION: u32 = 0x0001_010D;
    pub const GEN_CURRENT_PACKET_FILTER: u32 = 0x0001_010E;
    pub const GEN_MAXIMUM_TOTAL_SIZE: u32 = 0x0001_0111;
    pub const GEN_MAC_OPTIONS: u32 = 0x0001_0113;
    pub const GEN_MEDIA_CONNECT_STATUS: u32 = 0x0001_0114;
    pub const GEN_MAXIMUM_SEND_PACKETS: u32 = 0x0001_0115;
    pub const GEN_NETWORK_LAYER_ADDRESSES: u32 = 0x0001_0118;
    pub const GEN_RECEIVE_SCALE_CAPABILITIES: u32 = 0x0001_0203;
    pub const GEN_RECEIVE_SCALE_PARAMETERS: u32 = 0x0001_0204;
    pub const GEN_RNDIS_CONFIG_PARAMETER: u32 = 0x0001_021B;
    pub const GEN_XMIT_OK: u32 = 0x0002_0101;
    pub const GEN_RCV_OK: u32 = 0x0002_0102;
    pub const GEN_FRIENDLY_NAME: u32 = 0x0002_0216;
    pub const P802_3_PERMANENT_ADDRESS: u32 = 0x0101_0101;
    pub const P802_3_CURRENT_ADDRESS: u32 = 0x0101_0102;
    pub const P802_3_MULTICAST_LIST: u32 = 0x0101_0103;
    pub const P802_3_MAXIMUM_LIST_SIZE: u32 = 0x0101_0104;
    pub const OFFLOAD_ENCAPSULATION: u32 = 0x0101_010A;
    pub const P802_3_RCV_ERROR_ALIGNMENT: u32 = 0x0102_0101;
    pub const P802_3_XMIT_ONE_COLLISION: u32 = 0x0102_0102;
    pub const P802_3_XMIT_MORE_COLLISIONS: u32 = 0x0102_0103;
    pub const TCP_OFFLOAD_CURRENT_CONFIG: u32 = 0xFC01_020B;
    pub const TCP_OFFLOAD_PARAMETERS: u32 = 0xFC01_020C;
    pub const TCP_OFFLOAD_HARDWARE_CAPABILITIES: u32 = 0xFC01_020D;
}

/// Per-packet-info types and bits (protocol.md §5).
pub mod ppi {
    pub const CHECKSUM: u32 = 0;
    pub const LSO: u32 = 2;
    pub const IEEE_8021Q: u32 = 6;
    pub const HASH_VALUE: u32 = 8;
    pub const HASH_INFO: u32 = 9;
    /// Header of every PPI entry: size, type, offset.
    pub const HEADER_LEN: usize = 12;

    pub const TX_IS_IPV4: u32 = 1 << 0;
    pub const TX_IS_IPV6: u32 = 1 << 1;
    pub const TX_TCP_CSUM: u32 = 1 << 2;
    pub const TX_UDP_CSUM: u32 = 1 << 3;
    pub const TX_IP_HDR_CSUM: u32 = 1 << 4;

    pub const RX_TCP_FAIL: u32 = 1 << 0;
    pub const RX_UDP_FAIL: u32 = 1 << 1;
    pub const RX_IP_FAIL: u32 = 1 << 2;
    pub const RX_TCP_OK: u32 = 1 << 3;
    pub const RX_UDP_OK: u32 = 1 << 4;
    pub const RX_IP_OK: u32 = 1 << 5;
}

/// RSS hash-info bits (protocol.md §4.7).
pub mod hash {
    pub const FUNCTION_TOEPLITZ: u32 = 0x1;
    pub const IPV4: u32 = 0x100;
    pub const TCP_IPV4: u32 = 0x200;
    pub const IPV6: u32 = 0x400;
    pub const TCP_IPV6: u32 = 0x1000;
    pub const UDP_IPV4: u32 = 0x4000;
    pub const TYPE_MASK: u32 = 0xFF00;
    /// Standard Microsoft Toeplitz key (protocol.md §4.7).
    pub const DEFAULT_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];
}

/// Packet-filter bits (protocol.md §4.4).
pub mod filter {
    pub const DIRECTED: u32 = 0x1;
    pub const MULTICAST: u32 = 0x2;
    pub const ALL_MULTICAST: u32 = 0x4;
    pub const BROADCAST: u32 = 0x8;
    pub const PROMISCUOUS: u32 = 0x20;
}

//! The parsed NVSP message: `NvspMessage::parse` reads the type and the fixed body (zero-filling what a short
//! peer form leaves out), `emit` writes the header + body zero-padded to a chosen length (40 for requests,
//! 28/40 for host replies).

use super::msg_type as t;
use super::msgs::*;
use crate::error::{ProtoError, Result, need, room};
use crate::wire::{read_prefix, u32_at, write_at};
use zerocopy::IntoBytes;

/// One NVSP message (header + fixed body). Unknown and obsolete types are kept as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NvspMessage {
    Init(Init),
    InitComplete(InitComplete),
    SendNdisVersion(SendNdisVersion),
    SendRecvBuf(SendRecvBuf),
    SendRecvBufComplete(SendRecvBufComplete),
    RevokeRecvBuf(RevokeRecvBuf),
    SendSendBuf(SendSendBuf),
    SendSendBufComplete(SendSendBufComplete),
    RevokeSendBuf(RevokeSendBuf),
    SendRndisPkt(SendRndisPkt),
    SendRndisPktComplete(SendRndisPktComplete),
    SendNdisConfig(SendNdisConfig),
    VfAssociation(VfAssociation),
    SwitchDataPath(SwitchDataPath),
    OidQueryEx(OidQueryEx),
    OidQueryExComplete(OidQueryExComplete),
    /// Type 133, request or completion (the type is shared; the VMBus packet kind tells them apart).
    Subchannel(Subchannel),
    /// Type 134; the table itself is read with [`super::IndirectionTable::parse`].
    SendIndirectionTable(SendIndirectionTable),
    /// Any other type (obsolete chimney/VMQ/PacketDirect messages, or unknown ones).
    Other {
        msg_type: u32,
    },
}

/// Minimum meaningful message length for each body (header + fields that must be present).
fn min_len(msg_type: u32) -> usize {
    4 + match msg_type {
        t::INIT => 8,
        t::INIT_COMPLETE => 12,
        t::SEND_NDIS_VER => 8,
        t::SEND_RECV_BUF | t::SEND_SEND_BUF => 6,
        t::SEND_RECV_BUF_COMPLETE => 24,
        t::REVOKE_RECV_BUF | t::REVOKE_SEND_BUF => 2,
        t::SEND_SEND_BUF_COMPLETE => 8,
        t::SEND_RNDIS_PKT => 12,
        t::SEND_RNDIS_PKT_COMPLETE => 4,
        t::SEND_NDIS_CONFIG => 16,
        t::SEND_VF_ASSOCIATION => 8,
        t::SWITCH_DATA_PATH => 4,
        t::OID_QUERY_EX | t::OID_QUERY_EX_COMP => 8,
        t::SUBCHANNEL => 8,
        t::SEND_INDIRECTION_TABLE => 8,
        _ => 0,
    }
}

impl NvspMessage {
    /// Parse an NVSP message from a VMBus packet payload.
    pub fn parse(bytes: &[u8]) -> Result<NvspMessage> {
        need("NVSP header", bytes.len(), 4)?;
        let ty = u32_at(bytes, 0);
        let body = &bytes[4..];
        let what = super::msg_type::name(ty).unwrap_or("NVSP message");
        need(what, bytes.len(), min_len(ty))?;
        let m = min_len(ty) - 4;
        Ok(match ty {
            t::INIT => Self::Init(read_prefix(what, body, m)?),
            t::INIT_COMPLETE => Self::InitComplete(read_prefix(what, body, m)?),
            t::SEND_NDIS_VER => Self::SendNdisVersion(read_prefix(what, body, m)?),
            t::SEND_RECV_BUF => Self::SendRecvBuf(read_prefix(what, body, m)?),
            t::SEND_RECV_BUF_COMPLETE => Self::SendRecvBufComplete(read_prefix(what, body, m)?),
            t::REVOKE_RECV_BUF => Self::RevokeRecvBuf(read_prefix(what, body, m)?),
            t::SEND_SEND_BUF => Self::SendSendBuf(read_prefix(what, body, m)?),
            t::SEND_SEND_BUF_COMPLETE => Self::SendSendBufComplete(read_prefix(what, body, m)?),
            t::REVOKE_SEND_BUF => Self::RevokeSendBuf(read_prefix(what, body, m)?),
            t::SEND_RNDIS_PKT => Self::SendRndisPkt(read_prefix(what, body, m)?),
            t::SEND_RNDIS_PKT_COMPLETE => Self::SendRndisPktComplete(read_prefix(what, body, m)?),
            t::SEND_NDIS_CONFIG => Self::SendNdisConfig(read_prefix(what, body, m)?),
            t::SEND_VF_ASSOCIATION => Self::VfAssociation(read_prefix(what, body, m)?),
            t::SWITCH_DATA_PATH => Self::SwitchDataPath(read_prefix(what, body, m)?),
            t::OID_QUERY_EX => Self::OidQueryEx(read_prefix(what, body, m)?),
            t::OID_QUERY_EX_COMP => Self::OidQueryExComplete(read_prefix(what, body, m)?),
            t::SUBCHANNEL => Self::Subchannel(read_prefix(what, body, m)?),
            t::SEND_INDIRECTION_TABLE => Self::SendIndirectionTable(read_prefix(what, body, m)?),
            other => Self::Other { msg_type: other },
        })
    }

    /// The message type.
    pub fn msg_type(&self) -> u32 {
        match self {
            Self::Init(_) => t::INIT,
            Self::InitComplete(_) => t::INIT_COMPLETE,
            Self::SendNdisVersion(_) => t::SEND_NDIS_VER,
            Self::SendRecvBuf(_) => t::SEND_RECV_BUF,
            Self::SendRecvBufComplete(_) => t::SEND_RECV_BUF_COMPLETE,
            Self::RevokeRecvBuf(_) => t::REVOKE_RECV_BUF,
            Self::SendSendBuf(_) => t::SEND_SEND_BUF,
            Self::SendSendBufComplete(_) => t::SEND_SEND_BUF_COMPLETE,
            Self::RevokeSendBuf(_) => t::REVOKE_SEND_BUF,
            Self::SendRndisPkt(_) => t::SEND_RNDIS_PKT,
            Self::SendRndisPktComplete(_) => t::SEND_RNDIS_PKT_COMPLETE,
            Self::SendNdisConfig(_) => t::SEND_NDIS_CONFIG,
            Self::VfAssociation(_) => t::SEND_VF_ASSOCIATION,
            Self::SwitchDataPath(_) => t::SWITCH_DATA_PATH,
            Self::OidQueryEx(_) => t::OID_QUERY_EX,
            Self::OidQueryExComplete(_) => t::OID_QUERY_EX_COMP,
            Self::Subchannel(_) => t::SUBCHANNEL,
            Self::SendIndirectionTable(_) => t::SEND_INDIRECTION_TABLE,
            Self::Other { msg_type } => *msg_type,
        }
    }

    fn body(&self) -> &[u8] {
        match self {
            Self::Init(b) => b.as_bytes(),
            Self::InitComplete(b) => b.as_bytes(),
            Self::SendNdisVersion(b) => b.as_bytes(),
            Self::SendRecvBuf(b) => b.as_bytes(),
            Self::SendRecvBufComplete(b) => b.as_bytes(),
            Self::RevokeRecvBuf(b) => b.as_bytes(),
            Self::SendSendBuf(b) => b.as_bytes(),
            Self::SendSendBufComplete(b) => b.as_bytes(),
            Self::RevokeSendBuf(b) => b.as_bytes(),
            Self::SendRndisPkt(b) => b.as_bytes(),
            Self::SendRndisPktComplete(b) => b.as_bytes(),
            Self::SendNdisConfig(b) => b.as_bytes(),
            Self::VfAssociation(b) => b.as_bytes(),
            Self::SwitchDataPath(b) => b.as_bytes(),
            Self::OidQueryEx(b) => b.as_bytes(),
            Self::OidQueryExComplete(b) => b.as_bytes(),
            Self::Subchannel(b) => b.as_bytes(),
            Self::SendIndirectionTable(b) => b.as_bytes(),
            Self::Other { .. } => &[],
        }
    }

    /// Header + body length without padding.
    pub fn encoded_len(&self) -> usize {
        4 + self.body().len()
    }

    /// Write the message zero-padded to exactly `len` bytes (`len` ≥ [`Self::encoded_len`]); returns `len`.
    pub fn emit(&self, out: &mut [u8], len: usize) -> Result<usize> {
        let what = super::msg_type::name(self.msg_type()).unwrap_or("NVSP message");
        if len < self.encoded_len() {
            return Err(ProtoError::BufferTooSmall {
                what,
                needed: self.encoded_len(),
                have: len,
            });
        }
        room(what, out.len(), len)?;
        out[..len].fill(0);
        write_at(what, out, 0, &self.msg_type())?;
        let body = self.body();
        out[4..4 + body.len()].copy_from_slice(body);
        Ok(len)
    }

    /// Write the 40-byte zero-padded request form.
    pub fn emit_request(&self, out: &mut [u8]) -> Result<usize> {
        self.emit(out, super::MESSAGE_LEN)
    }

    /// The 40-byte form as an array (no allocation).
    pub fn to_bytes(&self) -> [u8; super::MESSAGE_LEN] {
        let mut b = [0u8; super::MESSAGE_LEN];
        // Every body fits in 36 bytes (checked by the size asserts), so this cannot fail.
        let _ = self.emit(&mut b, super::MESSAGE_LEN);
        b
    }
}

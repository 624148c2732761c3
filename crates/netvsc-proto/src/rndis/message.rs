//! The parsed RNDIS message. `parse` reads the 8-byte header, limits the message to `msg_len` (≤ input), copies
//! the fixed part out and returns bounded views of any info/status/data region. `emit` writes the canonical
//! layout (info right after the fixed part, offsets recomputed).

use super::msg_type as t;
use super::msgs::*;
use super::packet::RndisPacket;
use crate::error::{ProtoError, Result, need, room};
use crate::wire::{Region, copy_at, read_prefix, u32_at, write_at};
use zerocopy::IntoBytes;

/// One RNDIS message, borrowing its variable parts from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RndisMessage<'a> {
    Packet(RndisPacket<'a>),
    Initialize(InitializeRequest),
    InitializeComplete(InitializeComplete),
    Halt(Halt),
    Query {
        req: OidRequest,
        info: &'a [u8],
    },
    QueryComplete {
        cmplt: QueryComplete,
        info: &'a [u8],
    },
    Set {
        req: OidRequest,
        info: &'a [u8],
    },
    SetComplete(SetComplete),
    Reset(Reset),
    ResetComplete(ResetComplete),
    IndicateStatus {
        status: IndicateStatus,
        buf: &'a [u8],
    },
    Keepalive(Keepalive),
    KeepaliveComplete(KeepaliveComplete),
    /// Unknown or unsupported type (e.g. SET_EX): the bytes after the header, up to `msg_len`.
    Other {
        msg_type: u32,
        body: &'a [u8],
    },
}

fn name(ty: u32) -> &'static str {
    match ty {
        t::PACKET => "RNDIS PACKET",
        t::INITIALIZE => "RNDIS INITIALIZE",
        t::INITIALIZE_CMPLT => "RNDIS INITIALIZE_CMPLT",
        t::HALT => "RNDIS HALT",
        t::QUERY => "RNDIS QUERY",
        t::QUERY_CMPLT => "RNDIS QUERY_CMPLT",
        t::SET => "RNDIS SET",
        t::SET_CMPLT => "RNDIS SET_CMPLT",
        t::RESET => "RNDIS RESET",
        t::RESET_CMPLT => "RNDIS RESET_CMPLT",
        t::INDICATE_STATUS => "RNDIS INDICATE_STATUS",
        t::KEEPALIVE => "RNDIS KEEPALIVE",
        t::KEEPALIVE_CMPLT => "RNDIS KEEPALIVE_CMPLT",
        _ => "RNDIS message",
    }
}

/// Bounded info region: starts at 8 + `offset`, must lie in `[fixed_end, msg_len)`.
fn info<'a>(
    what: &'static str,
    msg: &'a [u8],
    field_at: usize,
    offset: u32,
    len: u32,
    fixed_end: usize,
) -> Result<&'a [u8]> {
    let r = Region {
        what,
        field: "offset",
        field_at,
        base: 8,
        offset,
        len,
        lo: fixed_end,
        hi: msg.len(),
    }
    .check()?;
    Ok(&msg[r])
}

impl<'a> RndisMessage<'a> {
    /// Parse one message from the start of `bytes` (which may hold more after `msg_len`).
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        need("RNDIS header", bytes.len(), 8)?;
        let ty = u32_at(bytes, 0);
        let len = u32_at(bytes, 4);
        let what = name(ty);
        if len < 8 {
            return Err(ProtoError::Invalid {
                what,
                field: "msg_len",
                offset: 4,
                value: len.into(),
                reason: "less than 8",
            });
        }
        need(what, bytes.len(), len as usize)?;
        let msg = &bytes[..len as usize];
        let body = &msg[8..];
        Ok(match ty {
            t::PACKET => Self::Packet(RndisPacket::parse(msg)?),
            t::INITIALIZE => Self::Initialize(read_prefix(what, body, 16)?),
            // Fields after pkt_alignment_factor (af_list) are optional: DPDK reads only the first 48 bytes.
            t::INITIALIZE_CMPLT => Self::InitializeComplete(read_prefix(what, body, 36)?),
            t::HALT => Self::Halt(read_prefix(what, body, 4)?),
            t::QUERY | t::SET => {
                let req: OidRequest = read_prefix(what, body, 20)?;
                let info = info(what, msg, 20, req.info_buf_offset, req.info_buflen, 28)?;
                if ty == t::QUERY {
                    Self::Query { req, info }
                } else {
                    Self::Set { req, info }
                }
            }
            t::QUERY_CMPLT => {
                let cmplt: QueryComplete = read_prefix(what, body, 16)?;
                let info = info(what, msg, 20, cmplt.info_buf_offset, cmplt.info_buflen, 24)?;
                Self::QueryComplete { cmplt, info }
            }
            t::SET_CMPLT => Self::SetComplete(read_prefix(what, body, 8)?),
            t::RESET => Self::Reset(read_prefix(what, body, 4)?),
            t::RESET_CMPLT => Self::ResetComplete(read_prefix(what, body, 8)?),
            t::INDICATE_STATUS => {
                let status: IndicateStatus = read_prefix(what, body, 12)?;
                let buf = info(
                    what,
                    msg,
                    16,
                    status.status_buf_offset,
                    status.status_buflen,
                    20,
                )?;
                Self::IndicateStatus { status, buf }
            }
            t::KEEPALIVE => Self::Keepalive(read_prefix(what, body, 4)?),
            t::KEEPALIVE_CMPLT => Self::KeepaliveComplete(read_prefix(what, body, 8)?),
            other => Self::Other {
                msg_type: other,
                body,
            },
        })
    }

    /// The message type.
    pub fn msg_type(&self) -> u32 {
        match self {
            Self::Packet(_) => t::PACKET,
            Self::Initialize(_) => t::INITIALIZE,
            Self::InitializeComplete(_) => t::INITIALIZE_CMPLT,
            Self::Halt(_) => t::HALT,
            Self::Query { .. } => t::QUERY,
            Self::QueryComplete { .. } => t::QUERY_CMPLT,
            Self::Set { .. } => t::SET,
            Self::SetComplete(_) => t::SET_CMPLT,
            Self::Reset(_) => t::RESET,
            Self::ResetComplete(_) => t::RESET_CMPLT,
            Self::IndicateStatus { .. } => t::INDICATE_STATUS,
            Self::Keepalive(_) => t::KEEPALIVE,
            Self::KeepaliveComplete(_) => t::KEEPALIVE_CMPLT,
            Self::Other { msg_type, .. } => *msg_type,
        }
    }

    /// The request id, for the messages that carry one.
    pub fn req_id(&self) -> Option<u32> {
        Some(match self {
            Self::Initialize(m) => m.req_id,
            Self::InitializeComplete(m) => m.req_id,
            Self::Halt(m) => m.req_id,
            Self::Query { req, .. } | Self::Set { req, .. } => req.req_id,
            Self::QueryComplete { cmplt, .. } => cmplt.req_id,
            Self::SetComplete(m) => m.req_id,
            Self::Keepalive(m) => m.req_id,
            Self::KeepaliveComplete(m) => m.req_id,
            _ => return None,
        })
    }

    /// An INITIALIZE request for RNDIS 1.0.
    pub fn initialize(req_id: u32, max_xfer_size: u32) -> Self {
        Self::Initialize(InitializeRequest {
            req_id,
            major_version: super::MAJOR_VERSION,
            minor_version: super::MINOR_VERSION,
            max_xfer_size,
        })
    }

    /// A SET_CMPLT.
    pub fn set_complete(req_id: u32, status: u32) -> Self {
        Self::SetComplete(SetComplete { req_id, status })
    }

    /// A QUERY for `oid` with `info` as input buffer (info_buf_offset = 20 even when `info` is empty: Hyper-V
    /// fails queries with offset 0).
    pub fn query(req_id: u32, oid: u32, info: &'a [u8]) -> Self {
        Self::Query {
            req: OidRequest::new(req_id, oid, info),
            info,
        }
    }

    /// A SET of `oid` to `info`.
    pub fn set(req_id: u32, oid: u32, info: &'a [u8]) -> Self {
        Self::Set {
            req: OidRequest::new(req_id, oid, info),
            info,
        }
    }

    /// A QUERY_CMPLT carrying `info`.
    pub fn query_complete(req_id: u32, status: u32, info: &'a [u8]) -> Self {
        Self::QueryComplete {
            cmplt: QueryComplete {
                req_id,
                status,
                info_buflen: info.len() as u32,
                info_buf_offset: 16,
            },
            info,
        }
    }

    /// An INDICATE_STATUS with an optional payload.
    pub fn indicate_status(status: u32, buf: &'a [u8]) -> Self {
        let off = if buf.is_empty() { 0 } else { 12 };
        Self::IndicateStatus {
            status: IndicateStatus {
                status,
                status_buflen: buf.len() as u32,
                status_buf_offset: off,
            },
            buf,
        }
    }

    /// Length `emit` writes.
    pub fn encoded_len(&self) -> usize {
        8 + match self {
            Self::Packet(p) => 36 + p.ppi.len() + p.data.len(),
            Self::Initialize(_) => 16,
            Self::InitializeComplete(_) => 44,
            Self::Halt(_) | Self::Reset(_) | Self::Keepalive(_) => 4,
            Self::Query { info, .. } | Self::Set { info, .. } => 20 + info.len(),
            Self::QueryComplete { info, .. } => 16 + info.len(),
            Self::SetComplete(_) | Self::ResetComplete(_) | Self::KeepaliveComplete(_) => 8,
            Self::IndicateStatus { buf, .. } => 12 + buf.len(),
            Self::Other { body, .. } => body.len(),
        }
    }

    /// Write the message (canonical layout: variable part right after the fixed part, offsets and lengths
    /// recomputed from the slices); returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let what = name(self.msg_type());
        let len = self.encoded_len();
        room(what, out.len(), len)?;
        let len32 = u32::try_from(len).map_err(|_| ProtoError::Invalid {
            what,
            field: "msg_len",
            offset: 4,
            value: len as u64,
            reason: "exceeds u32",
        })?;
        write_at(
            what,
            out,
            0,
            &RndisHeader {
                msg_type: self.msg_type(),
                msg_len: len32,
            },
        )?;
        let (fixed, var): (&[u8], &[u8]) = match self {
            Self::Packet(p) => return p.emit_into(out),
            Self::Initialize(m) => (m.as_bytes(), &[]),
            Self::InitializeComplete(m) => (m.as_bytes(), &[]),
            Self::Halt(m) => (m.as_bytes(), &[]),
            Self::Query { req, info } | Self::Set { req, info } => {
                let r = OidRequest {
                    info_buflen: info.len() as u32,
                    info_buf_offset: 20,
                    ..*req
                };
                write_at(what, out, 8, &r)?;
                (&[], info)
            }
            Self::QueryComplete { cmplt, info } => {
                let c = QueryComplete {
                    info_buflen: info.len() as u32,
                    info_buf_offset: 16,
                    ..*cmplt
                };
                write_at(what, out, 8, &c)?;
                (&[], info)
            }
            Self::SetComplete(m) => (m.as_bytes(), &[]),
            Self::Reset(m) => (m.as_bytes(), &[]),
            Self::ResetComplete(m) => (m.as_bytes(), &[]),
            Self::IndicateStatus { status, buf } => {
                let off = if buf.is_empty() { 0 } else { 12 };
                let s = IndicateStatus {
                    status_buflen: buf.len() as u32,
                    status_buf_offset: off,
                    ..*status
                };
                write_at(what, out, 8, &s)?;
                (&[], buf)
            }
            Self::Keepalive(m) => (m.as_bytes(), &[]),
            Self::KeepaliveComplete(m) => (m.as_bytes(), &[]),
            Self::Other { body, .. } => (body, &[]),
        };
        if fixed.is_empty() {
            copy_at(what, out, len - var.len(), var)?;
        } else {
            copy_at(what, out, 8, fixed)?;
        }
        Ok(len)
    }
}

/// Iterator over back-to-back RNDIS messages (an aggregated send-buffer section), walking by `msg_len`. Each step
/// consumes ≥ 8 bytes, so the walk is bounded by the input length; it stops after the first error or when fewer
/// than 8 bytes remain (or the next header has type 0 and length 0, i.e. zero padding).
#[derive(Debug, Clone)]
pub struct RndisMessages<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> RndisMessages<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            done: false,
        }
    }
}

impl<'a> Iterator for RndisMessages<'a> {
    type Item = Result<RndisMessage<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done
            || self.rest.len() < 8
            || (u32_at(self.rest, 0) == 0 && u32_at(self.rest, 4) == 0)
        {
            return None;
        }
        match RndisMessage::parse(self.rest) {
            Ok(m) => {
                let len = u32_at(self.rest, 4) as usize;
                self.rest = &self.rest[len..];
                Some(Ok(m))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

//! RNDIS control on the host: INITIALIZE, QUERY, SET, KEEPALIVE, HALT, and status indications.
//! Replies and indications are written into the 16 reserved receive sub-allocations and sent on
//! the primary channel as transfer-page packets with NVSP channel type 1 (control); when none is
//! free they wait in a queue (bounded like OpenVMM's 100 KiB) until the guest completes one.

use super::{Device, SlowRequest, lock, oid};
use crate::stats::add;
use netvsc_proto::nvsp::{self, NvspMessage, SendRndisPkt};
use netvsc_proto::rndis::{
    self as r, InitializeComplete, OidRequest, RndisMessage, msg_type as t, status,
};
use netvsc_proto::{ProtoError, ndis};
use vmbus_ring::{OutgoingKind, OutgoingPacket, TransferRange};
use zerocopy::FromBytes;

const CONTROL_QUEUE_LIMIT: usize = 100 * 1024;

/// INITIALIZE_CMPLT values a real host (OpenVMM) uses.
pub(crate) const MAX_PACKETS_PER_MESSAGE: u32 = 8;
const MAX_TRANSFER_SIZE: u32 = 0xEFFF_FFFF;
/// log2 of the alignment of aggregated packets (8 bytes).
const PACKET_ALIGNMENT_FACTOR: u32 = 3;

/// Build a host → guest control message.
fn build(msg: &RndisMessage<'_>) -> Vec<u8> {
    let mut m = vec![0u8; msg.encoded_len()];
    // The buffer is sized by `encoded_len`, so emitting cannot fail.
    let _ = msg.emit(&mut m);
    m
}

/// Build an INDICATE_STATUS message with an optional u32 payload.
pub(crate) fn indicate_status(status: u32, value: Option<u32>) -> Vec<u8> {
    let v = value.map(u32::to_le_bytes);
    build(&RndisMessage::indicate_status(
        status,
        v.as_ref().map_or(&[][..], |b| &b[..]),
    ))
}

impl Device {
    /// Queue a control message for the guest and try to send it.
    pub(crate) fn queue_control(&self, msg: Vec<u8>) {
        {
            let mut q = lock(&self.control_queue);
            let queued: usize = q.iter().map(Vec::len).sum();
            if queued + msg.len() > CONTROL_QUEUE_LIMIT {
                add(&self.counters.control_dropped, 1);
                return;
            }
            q.push_back(msg);
        }
        flush_control(self);
    }
}

/// Send queued control messages while reserved sub-allocations are free.
pub(crate) fn flush_control(dev: &Device) {
    let Some(ch) = dev.channel(0) else { return };
    let (info, version) = {
        let st = lock(&dev.state);
        (st.recv, st.version)
    };
    let Some(info) = info else { return };
    let mut q = lock(&dev.control_queue);
    while let Some(msg) = q.front() {
        if msg.len() > info.sub_alloc_size as usize {
            q.pop_front();
            add(&dev.counters.control_dropped, 1);
            continue;
        }
        let Some(idx) = lock(&dev.pool).alloc(0) else {
            break;
        };
        let offset = idx * info.sub_alloc_size;
        if dev.mem.recv_buf.write(offset as usize, msg).is_err() {
            lock(&dev.pool).release(idx);
            break;
        }
        lock(&dev.pool).link(&[idx]);
        let nv = rndis_pkt_header(nvsp::CHANNEL_TYPE_CONTROL);
        let ranges = [TransferRange {
            byte_count: msg.len() as u32,
            byte_offset: offset,
        }];
        let pkt = OutgoingPacket {
            kind: OutgoingKind::TransferPages {
                set_id: info.id,
                ranges: &ranges,
            },
            trans_id: u64::from(idx),
            completion_requested: true,
            payload: &[&nv[..nvsp::host_reply_len(version)]],
        };
        let mut out = lock(&ch.out);
        if ch.write_now(dev, &mut out, &pkt).is_err() {
            drop(out);
            lock(&dev.pool).release(idx);
            break;
        }
        q.pop_front();
        add(&dev.counters.control_sent, 1);
    }
}

/// The NVSP SEND_RNDIS_PKT header of a host → guest transfer-page packet (no send section).
pub(crate) fn rndis_pkt_header(channel_type: u32) -> [u8; nvsp::MESSAGE_LEN] {
    NvspMessage::SendRndisPkt(SendRndisPkt {
        channel_type,
        send_buf_section_index: nvsp::SECTION_INDEX_NONE,
        send_buf_section_size: 0,
    })
    .to_bytes()
}

/// Handle one RNDIS control message (anything but PACKET); `msg` is exactly the message.
pub(crate) fn handle_control(dev: &Device, ty: u32, msg: &[u8]) {
    let parsed = match RndisMessage::parse(msg) {
        Ok(m) => m,
        Err(e) => return control_parse_error(dev, ty, msg, e),
    };
    match parsed {
        RndisMessage::Initialize(req) => {
            {
                let mut st = lock(&dev.state);
                st.rndis_initialized = true;
                st.rndis_halted = false;
                // The guest learns the link from GEN_MEDIA_CONNECT_STATUS now; indications follow changes.
                st.link_told = st.link_up;
                st.link_pending = super::LinkPending::None;
            }
            let done = InitializeComplete {
                req_id: req.req_id,
                status: status::SUCCESS,
                major_version: r::MAJOR_VERSION,
                minor_version: r::MINOR_VERSION,
                dev_flags: r::DF_CONNECTIONLESS,
                medium: ndis::MEDIUM_802_3,
                max_pkt_per_msg: MAX_PACKETS_PER_MESSAGE,
                max_xfer_size: MAX_TRANSFER_SIZE,
                pkt_alignment_factor: PACKET_ALIGNMENT_FACTOR,
                af_list_offset: 0,
                af_list_size: 0,
            };
            dev.rndis_reply(
                SlowRequest::RndisInit,
                build(&RndisMessage::InitializeComplete(done)),
            );
        }
        RndisMessage::Halt(_) => {
            let mut st = lock(&dev.state);
            st.rndis_halted = true;
            st.rndis_initialized = false;
        }
        RndisMessage::Query { req, info } => {
            let (st, data) = oid::query(dev, req.oid, info);
            dev.rndis_reply(
                SlowRequest::Query,
                build(&RndisMessage::query_complete(req.req_id, st, &data)),
            );
        }
        RndisMessage::Set { req, info } => {
            let st = oid::set(dev, req.oid, info);
            if matches!(
                req.oid,
                netvsc_proto::oid::GEN_CURRENT_PACKET_FILTER
                    | netvsc_proto::oid::GEN_RECEIVE_SCALE_PARAMETERS
            ) {
                dev.rx_barrier();
            }
            reply_status(dev, ty, req.req_id, st);
        }
        RndisMessage::Keepalive(k) => reply_status(dev, ty, k.req_id, status::SUCCESS),
        RndisMessage::Reset(_) | RndisMessage::IndicateStatus { .. } => {
            dev.proto_error("rndisUnsupportedMessage")
        }
        _ => dev.proto_error("rndisUnknownMessage"),
    }
}

/// Count a control message that does not parse; a QUERY/SET whose info buffer lies outside the message is
/// answered INVALID_DATA (a host must complete every request it can identify).
fn control_parse_error(dev: &Device, ty: u32, msg: &[u8], e: ProtoError) {
    match ty {
        t::INITIALIZE => dev.proto_error("rndisInitTooShort"),
        t::QUERY | t::SET => match (
            e,
            msg.get(r::HEADER_LEN..).map(OidRequest::read_from_prefix),
        ) {
            (ProtoError::OutOfRange { .. }, Some(Ok((req, _)))) => {
                dev.proto_error("rndisInfoBufferOutOfBounds");
                reply_status(dev, ty, req.req_id, status::INVALID_DATA);
            }
            _ => dev.proto_error("rndisQueryTooShort"),
        },
        t::KEEPALIVE | t::HALT => dev.proto_error("rndisTooShort"),
        _ => dev.proto_error("rndisUnknownMessage"),
    }
}

/// Answer a request of type `ty` with a bare status.
fn reply_status(dev: &Device, ty: u32, req_id: u32, st: u32) {
    let (msg, kind) = match ty {
        t::KEEPALIVE => (
            RndisMessage::KeepaliveComplete(r::KeepaliveComplete { req_id, status: st }),
            SlowRequest::Keepalive,
        ),
        t::QUERY => (
            RndisMessage::query_complete(req_id, st, &[]),
            SlowRequest::Query,
        ),
        _ => (RndisMessage::set_complete(req_id, st), SlowRequest::Set),
    };
    dev.rndis_reply(kind, build(&msg));
}

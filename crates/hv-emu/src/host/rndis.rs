//! RNDIS control on the host: INITIALIZE, QUERY, SET, KEEPALIVE, HALT, and status indications.
//! Replies and indications are written into the 16 reserved receive sub-allocations and sent on
//! the primary channel as transfer-page packets with NVSP channel type 1 (control); when none is
//! free they wait in a queue (bounded like OpenVMM's 100 KiB) until the guest completes one.

use super::{Device, lock, oid};
use crate::stats::add;
use crate::wire::{nvsp, put_u32, rndis as r, u32_at};
use vmbus_ring::{OutgoingKind, OutgoingPacket, TransferRange};

const CONTROL_QUEUE_LIMIT: usize = 100 * 1024;

/// Build an INDICATE_STATUS message with an optional u32 payload.
pub(crate) fn indicate_status(status: u32, value: Option<u32>) -> Vec<u8> {
    let len = 20 + if value.is_some() { 4 } else { 0 };
    let mut m = vec![0u8; len];
    put_u32(&mut m, 0, r::INDICATE_STATUS);
    put_u32(&mut m, 4, len as u32);
    put_u32(&mut m, 8, status);
    if let Some(v) = value {
        put_u32(&mut m, 12, 4);
        put_u32(&mut m, 16, 12);
        put_u32(&mut m, 20, v);
    }
    m
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
        let mut nv = [0u8; 40];
        put_u32(&mut nv, 0, nvsp::SEND_RNDIS_PKT);
        put_u32(&mut nv, 4, nvsp::CHANNEL_CONTROL);
        put_u32(&mut nv, 8, nvsp::NO_SECTION);
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
            payload: &[&nv[..nvsp::message_len(version)]],
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

/// Handle one RNDIS control message (anything but PACKET).
pub(crate) fn handle_control(dev: &Device, ty: u32, msg: &[u8]) {
    let req_id = u32_at(msg, 8).unwrap_or(0);
    match ty {
        r::INITIALIZE => {
            if msg.len() < 24 {
                dev.proto_error("rndisInitTooShort");
                return;
            }
            {
                let mut st = lock(&dev.state);
                st.rndis_initialized = true;
                st.rndis_halted = false;
            }
            let mut m = vec![0u8; 52];
            for (i, v) in [
                r::INITIALIZE | r::COMPLETION,
                52,
                req_id,
                r::STATUS_SUCCESS,
                1,
                0,
                1, // connectionless
                0, // 802.3
                r::MAX_PACKETS_PER_MESSAGE,
                r::MAX_TRANSFER_SIZE,
                r::PACKET_ALIGNMENT_FACTOR,
            ]
            .into_iter()
            .enumerate()
            {
                put_u32(&mut m, 4 * i, v);
            }
            dev.queue_control(m);
        }
        r::HALT => {
            let mut st = lock(&dev.state);
            st.rndis_halted = true;
            st.rndis_initialized = false;
        }
        r::QUERY | r::SET => {
            let (Some(oid), Some(len), Some(off)) =
                (u32_at(msg, 12), u32_at(msg, 16), u32_at(msg, 20))
            else {
                dev.proto_error("rndisQueryTooShort");
                return;
            };
            let start = 8usize.saturating_add(off as usize);
            let input = match start.checked_add(len as usize) {
                Some(end) if len == 0 || (off >= 20 && end <= msg.len()) => {
                    &msg[start.min(msg.len())..end.min(msg.len())]
                }
                _ => {
                    dev.proto_error("rndisInfoBufferOutOfBounds");
                    reply_status(dev, ty, req_id, r::STATUS_INVALID_DATA);
                    return;
                }
            };
            if ty == r::QUERY {
                let (status, data) = oid::query(dev, oid, input);
                let mut m = vec![0u8; 24 + data.len()];
                put_u32(&mut m, 0, r::QUERY | r::COMPLETION);
                let mlen = m.len() as u32;
                put_u32(&mut m, 4, mlen);
                put_u32(&mut m, 8, req_id);
                put_u32(&mut m, 12, status);
                put_u32(&mut m, 16, data.len() as u32);
                put_u32(&mut m, 20, if data.is_empty() { 0 } else { 16 });
                m[24..].copy_from_slice(&data);
                dev.queue_control(m);
            } else {
                let status = oid::set(dev, oid, input);
                reply_status(dev, ty, req_id, status);
            }
        }
        r::KEEPALIVE => reply_status(dev, ty, req_id, r::STATUS_SUCCESS),
        r::RESET | r::INDICATE_STATUS => dev.proto_error("rndisUnsupportedMessage"),
        _ => dev.proto_error("rndisUnknownMessage"),
    }
}

fn reply_status(dev: &Device, ty: u32, req_id: u32, status: u32) {
    let mut m = vec![0u8; 16];
    put_u32(&mut m, 0, ty | r::COMPLETION);
    put_u32(&mut m, 4, 16);
    put_u32(&mut m, 8, req_id);
    put_u32(&mut m, 12, status);
    dev.queue_control(m);
}

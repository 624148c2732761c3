//! NVSP host: version negotiation, buffers, RNDIS transport, subchannels, data-path switch.
//! Answers only what a real host answers, and completes only packets that asked for it.

use super::{Channel, Device, lock, rndis, tx};
use crate::host::pool::RESERVED;
use crate::host::state::RecvBufInfo;
use crate::stats::add;
use crate::wire::{nvsp, put_u32, u16_at, u32_at, u64_at};
use vmbus_ring::{IncomingPacket, PacketKind};

/// Per-worker scratch buffers, reused for every message.
pub(crate) struct Ctx {
    pub(crate) data: Vec<u8>,
    pub(crate) frame: Vec<u8>,
    pub(crate) seg: Vec<u8>,
    pub(crate) tagged: Vec<u8>,
}

impl Ctx {
    pub(crate) fn new() -> Self {
        Ctx {
            data: Vec::with_capacity(65536),
            frame: Vec::with_capacity(65536),
            seg: Vec::with_capacity(16384),
            tagged: Vec::with_capacity(16384),
        }
    }
}

/// Largest GPA-direct RNDIS message the host accepts (a 64 KiB LSO frame plus headers).
const MAX_GPA_BYTES: usize = 128 * 1024;

pub(crate) fn handle_packet(dev: &Device, ch: &Channel, ctx: &mut Ctx, pkt: &IncomingPacket<'_>) {
    match pkt.kind {
        PacketKind::InBand { payload } => handle_message(dev, ch, ctx, pkt, payload, None),
        PacketKind::GpaDirect { ranges, payload } => {
            handle_message(dev, ch, ctx, pkt, payload, Some(ranges))
        }
        PacketKind::Completion { .. } => handle_guest_completion(dev, ch, pkt.trans_id),
        PacketKind::TransferPages { .. } => dev.proto_error("unexpectedTransferPages"),
    }
}

/// The guest completed a transfer-page packet (or a host-initiated request).
fn handle_guest_completion(dev: &Device, ch: &Channel, trans_id: u64) {
    if trans_id >= nvsp::VF_ASSOCIATION_TRANS_ID {
        return; // VF association / data-path switch: completion optional, nothing to free
    }
    let freed_control = {
        let mut pool = lock(&dev.pool);
        match pool.complete(trans_id) {
            Ok(_) => trans_id < u64::from(RESERVED),
            Err(_) => {
                drop(pool);
                dev.proto_error("unknownCompletion");
                return;
            }
        }
    };
    add(&ch.counters.rx_completions, 1);
    if freed_control {
        rndis::flush_control(dev);
    }
}

fn reply(dev: &Device, ch: &Channel, pkt: &IncomingPacket<'_>, fields: &[u32]) {
    if !pkt.completion_requested {
        return;
    }
    let version = lock(&dev.state).version;
    let mut msg = [0u8; 40];
    for (i, f) in fields.iter().enumerate() {
        put_u32(&mut msg, 4 * i, *f);
    }
    ch.send_completion(dev, pkt.trans_id, &msg[..nvsp::message_len(version)]);
}

fn empty_completion(dev: &Device, ch: &Channel, pkt: &IncomingPacket<'_>) {
    if pkt.completion_requested {
        ch.send_completion(dev, pkt.trans_id, &[]);
    }
}

fn handle_message(
    dev: &Device,
    ch: &Channel,
    ctx: &mut Ctx,
    pkt: &IncomingPacket<'_>,
    msg: &[u8],
    gpa: Option<vmbus_ring::GpaRanges<'_>>,
) {
    let Some(ty) = u32_at(msg, 0) else {
        dev.proto_error("nvspTooShort");
        return;
    };
    if gpa.is_some() && ty != nvsp::SEND_RNDIS_PKT {
        dev.proto_error("gpaDirectNotRndis");
        return;
    }
    let primary = ch.index == 0;
    match ty {
        nvsp::SEND_RNDIS_PKT => send_rndis_pkt(dev, ch, ctx, pkt, msg, gpa),
        _ if !primary => dev.proto_error("controlOnSubchannel"),
        nvsp::INIT => init(dev, ch, pkt, msg),
        _ if lock(&dev.state).version == 0 => dev.proto_error("beforeInit"),
        nvsp::SEND_NDIS_CONFIG => {
            let (Some(mtu), Some(caps)) = (u32_at(msg, 4), u64_at(msg, 12)) else {
                dev.proto_error("ndisConfigTooShort");
                return;
            };
            {
                let mut st = lock(&dev.state);
                st.ndis_config = Some((mtu, caps));
                st.frame_mtu = if (1514..=9216).contains(&mtu) {
                    mtu
                } else {
                    1514
                };
            }
            empty_completion(dev, ch, pkt);
        }
        nvsp::SEND_NDIS_VER => {
            let (Some(major), Some(minor)) = (u32_at(msg, 4), u32_at(msg, 8)) else {
                dev.proto_error("ndisVersionTooShort");
                return;
            };
            lock(&dev.state).ndis_version = Some((major, minor));
            empty_completion(dev, ch, pkt);
        }
        nvsp::SEND_RECV_BUF => send_recv_buf(dev, ch, pkt, msg),
        nvsp::SEND_SEND_BUF => {
            let Some(gpadl) = u32_at(msg, 4) else {
                dev.proto_error("sendBufTooShort");
                return;
            };
            let ok = gpadl == dev.mem.send_gpadl;
            if ok {
                lock(&dev.state).send_sections =
                    Some((dev.mem.send_buf.len() / nvsp::SEND_SECTION_SIZE as usize) as u32);
            } else {
                dev.proto_error("wrongSendGpadl");
            }
            let status = if ok {
                nvsp::STATUS_SUCCESS
            } else {
                nvsp::STATUS_FAIL
            };
            let size = if ok { nvsp::SEND_SECTION_SIZE } else { 0 };
            reply(dev, ch, pkt, &[nvsp::SEND_SEND_BUF_COMPLETE, status, size]);
        }
        nvsp::REVOKE_RECV_BUF => {
            lock(&dev.state).recv = None;
            empty_completion(dev, ch, pkt);
        }
        nvsp::REVOKE_SEND_BUF => {
            lock(&dev.state).send_sections = None;
            empty_completion(dev, ch, pkt);
        }
        nvsp::SUBCHANNEL => subchannel(dev, ch, pkt, msg),
        nvsp::SWITCH_DATA_PATH => {
            let Some(path) = u32_at(msg, 4) else {
                dev.proto_error("switchDataPathTooShort");
                return;
            };
            lock(&dev.state).data_path.push(path);
            empty_completion(dev, ch, pkt);
        }
        nvsp::OID_QUERY_EX => {
            dev.proto_error("oidQueryExUnsupported");
            reply(
                dev,
                ch,
                pkt,
                &[
                    nvsp::OID_QUERY_EX_COMPLETE,
                    crate::wire::rndis::STATUS_NOT_SUPPORTED,
                    0,
                ],
            );
        }
        _ => {
            dev.proto_error("unknownNvspType");
        }
    }
}

fn init(dev: &Device, ch: &Channel, pkt: &IncomingPacket<'_>, msg: &[u8]) {
    let (Some(min), Some(_max)) = (u32_at(msg, 4), u32_at(msg, 8)) else {
        dev.proto_error("initTooShort");
        return;
    };
    let allowed = nvsp::VERSIONS.contains(&min)
        && dev
            .cfg
            .accept_versions
            .as_ref()
            .is_none_or(|v| v.contains(&min));
    if allowed {
        let mut st = lock(&dev.state);
        st.reset_session(&dev.cfg);
        st.version = min;
        st.inits += 1;
    }
    {
        let mut pool = lock(&dev.pool);
        if allowed {
            *pool = super::pool::RecvPool::default();
        }
    }
    if !pkt.completion_requested {
        return;
    }
    let mut reply = [0u8; 40];
    put_u32(&mut reply, 0, nvsp::INIT_COMPLETE);
    put_u32(&mut reply, 4, if min == nvsp::V1 { 2 } else { 0xFFFF_FFFF });
    put_u32(&mut reply, 8, nvsp::MAX_MDL_CHAIN_LEN);
    put_u32(
        &mut reply,
        12,
        if allowed {
            nvsp::STATUS_SUCCESS
        } else {
            nvsp::STATUS_NONE
        },
    );
    let len = nvsp::message_len(if allowed { min } else { 0 });
    ch.send_completion(dev, pkt.trans_id, &reply[..len]);
}

fn send_recv_buf(dev: &Device, ch: &Channel, pkt: &IncomingPacket<'_>, msg: &[u8]) {
    let (Some(gpadl), Some(id)) = (u32_at(msg, 4), u16_at(msg, 8)) else {
        dev.proto_error("recvBufTooShort");
        return;
    };
    let mut st = lock(&dev.state);
    let fail = if gpadl != dev.mem.recv_gpadl {
        Some("wrongRecvGpadl")
    } else if st.version >= nvsp::V2 && st.ndis_config.is_none() {
        Some("recvBufBeforeNdisConfig")
    } else {
        None
    };
    let sub = 256 + st.frame_mtu + 36;
    let count = (dev.mem.recv_buf.len() / sub as usize) as u32;
    let fail = fail.or((count <= RESERVED).then_some("recvBufTooSmall"));
    if let Some(kind) = fail {
        drop(st);
        dev.proto_error(kind);
        reply(
            dev,
            ch,
            pkt,
            &[nvsp::SEND_RECV_BUF_COMPLETE, nvsp::STATUS_FAIL, 0],
        );
        return;
    }
    st.recv = Some(RecvBufInfo {
        id,
        sub_alloc_size: sub,
        count,
    });
    let queues = 1 + u32::from(st.subchannels);
    drop(st);
    *lock(&dev.pool) = super::pool::RecvPool::new(count, queues);
    reply(
        dev,
        ch,
        pkt,
        &[
            nvsp::SEND_RECV_BUF_COMPLETE,
            nvsp::STATUS_SUCCESS,
            1,
            0,
            sub,
            count,
            sub * count,
        ],
    );
    rndis::flush_control(dev);
}

fn subchannel(dev: &Device, ch: &Channel, pkt: &IncomingPacket<'_>, msg: &[u8]) {
    let (Some(op), Some(n)) = (u32_at(msg, 4), u32_at(msg, 8)) else {
        dev.proto_error("subchannelTooShort");
        return;
    };
    let (version, existing) = {
        let st = lock(&dev.state);
        (st.version, st.subchannels)
    };
    let ok = version >= nvsp::V5
        && op == nvsp::SUBCHANNEL_ALLOCATE
        && n >= 1
        && n < u32::from(dev.cfg.max_queues);
    if !ok {
        dev.proto_error("subchannelRejected");
        reply(dev, ch, pkt, &[nvsp::SUBCHANNEL, nvsp::STATUS_FAIL, 0]);
        return;
    }
    // Create missing channels while the guest waits, then answer.
    let mut opened = u32::from(existing);
    for i in u32::from(existing) + 1..=n {
        let relid = ch.relid + i;
        let monitor_id = ch.monitor_id.map(|m| m.wrapping_add(i as u8));
        let made = dev
            .factory
            .create(relid, i as u16, monitor_id)
            .and_then(|rings| {
                dev.open_channel(super::ChannelSpec {
                    relid,
                    subchannel_id: i as u16,
                    monitor_id,
                    rings,
                })
            });
        if made.is_err() {
            dev.proto_error("subchannelCreateFailed");
            break;
        }
        opened = i;
    }
    let total = opened.max(u32::from(existing)).min(n);
    {
        let mut st = lock(&dev.state);
        st.subchannels = st.subchannels.max(opened as u16);
        let queues = 1 + u32::from(st.subchannels);
        drop(st);
        lock(&dev.pool).repartition(queues);
    }
    let status = if total > 0 {
        nvsp::STATUS_SUCCESS
    } else {
        nvsp::STATUS_FAIL
    };
    reply(dev, ch, pkt, &[nvsp::SUBCHANNEL, status, total]);
    if total > 0 {
        send_indirection_table(dev, ch, total + 1);
    }
}

/// SEND_INDIRECTION_TABLE: 16 entries, entry i → channel i mod n (OpenVMM), table at offset 12.
fn send_indirection_table(dev: &Device, ch: &Channel, channels: u32) {
    let mut msg = [0u8; 12 + 64];
    put_u32(&mut msg, 0, nvsp::SEND_INDIRECTION_TABLE);
    put_u32(&mut msg, 4, 16);
    put_u32(&mut msg, 8, 12);
    for i in 0..16u32 {
        put_u32(&mut msg, 12 + 4 * i as usize, i % channels);
    }
    ch.send_inband(dev, 0, false, &msg);
}

fn send_rndis_pkt(
    dev: &Device,
    ch: &Channel,
    ctx: &mut Ctx,
    pkt: &IncomingPacket<'_>,
    msg: &[u8],
    gpa: Option<vmbus_ring::GpaRanges<'_>>,
) {
    let (Some(_channel_type), Some(index), Some(size)) =
        (u32_at(msg, 4), u32_at(msg, 8), u32_at(msg, 12))
    else {
        dev.proto_error("rndisPktTooShort");
        return;
    };
    let (version, sections) = {
        let st = lock(&dev.state);
        (st.version, st.send_sections)
    };
    if version == 0 {
        dev.proto_error("beforeInit");
        return;
    }
    let mut data = std::mem::take(&mut ctx.data);
    data.clear();
    let loaded = if index != nvsp::NO_SECTION {
        match sections {
            Some(n) if index < n && size <= nvsp::SEND_SECTION_SIZE => {
                data.resize(size as usize, 0);
                dev.mem
                    .send_buf
                    .read(index as usize * nvsp::SEND_SECTION_SIZE as usize, &mut data)
                    .is_ok()
            }
            Some(_) => {
                dev.proto_error("badSendSection");
                false
            }
            None => {
                dev.proto_error("noSendBuffer");
                false
            }
        }
    } else if let Some(ranges) = gpa {
        load_gpa(dev, ranges, &mut data)
    } else {
        dev.proto_error("rndisPktWithoutData");
        false
    };
    let status = if loaded && tx::process_rndis(dev, ch, ctx, &data) {
        nvsp::STATUS_SUCCESS
    } else {
        nvsp::STATUS_FAIL
    };
    ctx.data = data;
    reply(dev, ch, pkt, &[nvsp::SEND_RNDIS_PKT_COMPLETE, status]);
}

fn load_gpa(dev: &Device, ranges: vmbus_ring::GpaRanges<'_>, data: &mut Vec<u8>) -> bool {
    for r in ranges {
        let len = r.len as usize;
        if r.offset as usize + len > 4096 || data.len() + len > MAX_GPA_BYTES {
            dev.proto_error("badGpaRange");
            return false;
        }
        let start = data.len();
        data.resize(start + len, 0);
        if dev.gpa.read(r.pfn, r.offset, &mut data[start..]).is_err() {
            dev.proto_error("gpaReadFailed");
            return false;
        }
    }
    true
}

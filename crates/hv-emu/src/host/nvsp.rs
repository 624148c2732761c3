//! NVSP host: version negotiation, buffers, RNDIS transport, subchannels, data-path switch.
//! Answers only what a real host answers, and completes only packets that asked for it.

use super::{Channel, Device, SendTable, SlowRequest, lock, rndis, tx};
use crate::host::pool::RESERVED;
use crate::host::state::RecvBufInfo;
use crate::stats::add;
use netvsc_proto::nvsp::{
    self, InitComplete, NvspMessage, OidQueryExComplete, RecvBufSection, SendIndirectionTable,
    SendRecvBufComplete, SendRndisPkt, SendSendBufComplete, Subchannel, msg_type as t, status,
};
use std::sync::atomic::Ordering;
use vmbus_ring::{IncomingPacket, PacketKind};

/// Longest NVSP message the host sends (a legacy send indirection table: 40 + 64 bytes).
pub(crate) const MAX_HOST_MESSAGE: usize = 104;

/// Send-buffer section size this host hands out (the largest a real host uses).
pub(crate) const SEND_SECTION_SIZE: u32 = 6144;
/// INIT_COMPLETE `max_mdl_chain_len` (OpenVMM).
const MAX_MDL_CHAIN_LEN: u32 = 34;

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
    if trans_id >= nvsp::TRANS_ID_VF_ASSOCIATION {
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

/// Answer with an NVSP completion message in the reply length of the negotiated version (a slow host holds
/// the reply of a request of kind `slow` back).
fn reply(
    dev: &Device,
    ch: &Channel,
    pkt: &IncomingPacket<'_>,
    msg: NvspMessage,
    slow: Option<SlowRequest>,
) {
    if !pkt.completion_requested {
        return;
    }
    let version = lock(&dev.state).version;
    send_reply(
        ch,
        dev,
        pkt.trans_id,
        msg,
        nvsp::host_reply_len(version),
        slow,
    );
}

fn send_reply(
    ch: &Channel,
    dev: &Device,
    trans_id: u64,
    msg: NvspMessage,
    len: usize,
    slow: Option<SlowRequest>,
) {
    let mut buf = [0u8; nvsp::MESSAGE_LEN];
    if msg.emit(&mut buf, len).is_ok() {
        match slow {
            Some(kind) => dev.nvsp_reply(kind, ch, true, trans_id, &buf[..len]),
            None => {
                ch.send_completion(dev, trans_id, &buf[..len]);
            }
        }
    }
}

fn empty_completion(
    dev: &Device,
    ch: &Channel,
    pkt: &IncomingPacket<'_>,
    slow: Option<SlowRequest>,
) {
    if pkt.completion_requested {
        match slow {
            Some(kind) => dev.nvsp_reply(kind, ch, true, pkt.trans_id, &[]),
            None => {
                ch.send_completion(dev, pkt.trans_id, &[]);
            }
        }
    }
}

/// Protocol-error kind for a message of type `ty` too short for its body.
fn too_short(ty: u32) -> &'static str {
    match ty {
        t::INIT => "initTooShort",
        t::SEND_NDIS_CONFIG => "ndisConfigTooShort",
        t::SEND_NDIS_VER => "ndisVersionTooShort",
        t::SEND_RECV_BUF => "recvBufTooShort",
        t::SEND_SEND_BUF => "sendBufTooShort",
        t::SWITCH_DATA_PATH => "switchDataPathTooShort",
        t::SUBCHANNEL => "subchannelTooShort",
        t::SEND_RNDIS_PKT => "rndisPktTooShort",
        _ => "nvspTooShort",
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
    let Some(ty) = msg
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    else {
        dev.proto_error("nvspTooShort");
        return;
    };
    if gpa.is_some() && ty != t::SEND_RNDIS_PKT {
        dev.proto_error("gpaDirectNotRndis");
        return;
    }
    let primary = ch.index == 0;
    let gated = match ty {
        t::SEND_RNDIS_PKT | t::INIT => None,
        _ if !primary => Some("controlOnSubchannel"),
        _ if lock(&dev.state).version == 0 => Some("beforeInit"),
        _ => None,
    };
    if let Some(kind) = gated {
        dev.proto_error(kind);
        return;
    }
    let parsed = match NvspMessage::parse(msg) {
        Ok(m) => m,
        Err(_) => {
            dev.proto_error(too_short(ty));
            return;
        }
    };
    match parsed {
        NvspMessage::SendRndisPkt(p) => send_rndis_pkt(dev, ch, ctx, pkt, &p, gpa),
        NvspMessage::Init(i) => init(dev, ch, pkt, i.min_version),
        NvspMessage::SendNdisConfig(c) => {
            {
                let mut st = lock(&dev.state);
                st.ndis_config = Some((c.mtu, c.capabilities()));
                // As OpenVMM (and, its comment says, the vmswitch): an MTU out of bounds means the default.
                st.frame_mtu = if super::FRAME_MTU.contains(&c.mtu) {
                    c.mtu
                } else {
                    *super::FRAME_MTU.start()
                };
                dev.frame_mtu.store(st.frame_mtu, Ordering::Relaxed);
            }
            empty_completion(dev, ch, pkt, None);
        }
        NvspMessage::SendNdisVersion(v) => {
            lock(&dev.state).ndis_version = Some((v.ndis_major, v.ndis_minor));
            empty_completion(dev, ch, pkt, None);
        }
        NvspMessage::SendRecvBuf(b) => send_recv_buf(dev, ch, pkt, b.gpadl, b.id),
        NvspMessage::SendSendBuf(b) => {
            let ok = b.gpadl == dev.mem.send_gpadl;
            if ok {
                lock(&dev.state).send_sections =
                    Some((dev.mem.send_buf.len() / SEND_SECTION_SIZE as usize) as u32);
            } else {
                dev.proto_error("wrongSendGpadl");
            }
            let done = SendSendBufComplete {
                status: if ok { status::SUCCESS } else { status::FAILURE },
                section_size: if ok { SEND_SECTION_SIZE } else { 0 },
            };
            reply(
                dev,
                ch,
                pkt,
                NvspMessage::SendSendBufComplete(done),
                Some(SlowRequest::SendBuf),
            );
        }
        NvspMessage::RevokeRecvBuf(_) => {
            lock(&dev.state).recv = None;
            lock(&dev.pool).end_session();
            empty_completion(dev, ch, pkt, None);
        }
        NvspMessage::RevokeSendBuf(_) => {
            lock(&dev.state).send_sections = None;
            empty_completion(dev, ch, pkt, None);
        }
        NvspMessage::Subchannel(s) => subchannel(dev, ch, pkt, s),
        NvspMessage::SwitchDataPath(_) if dev.faults.refuse_switch.load(Ordering::Acquire) => {
            add(&dev.faults.switches_refused, 1);
            if pkt.completion_requested {
                let mut body = [0u8; 8];
                body[..4].copy_from_slice(&t::SWITCH_DATA_PATH.to_le_bytes());
                body[4..].copy_from_slice(&status::FAILURE.to_le_bytes());
                ch.send_completion(dev, pkt.trans_id, &body);
            }
        }
        NvspMessage::SwitchDataPath(p) => {
            super::state::record(&mut lock(&dev.state).data_path, p.active_datapath);
            super::vf::guest_switch(dev, p.active_datapath);
            empty_completion(dev, ch, pkt, Some(SlowRequest::SwitchDataPath));
        }
        NvspMessage::OidQueryEx(_) => {
            dev.proto_error("oidQueryExUnsupported");
            let done = OidQueryExComplete {
                status: netvsc_proto::rndis::status::NOT_SUPPORTED,
                bytes: 0,
            };
            reply(dev, ch, pkt, NvspMessage::OidQueryExComplete(done), None);
        }
        _ => dev.proto_error("unknownNvspType"),
    }
}

fn init(dev: &Device, ch: &Channel, pkt: &IncomingPacket<'_>, min: u32) {
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
        dev.frame_mtu.store(st.frame_mtu, Ordering::Relaxed);
    }
    if allowed {
        lock(&dev.pool).end_session();
    }
    if !pkt.completion_requested {
        return;
    }
    let done = InitComplete {
        negotiated_version: if min == nvsp::VERSION_1 {
            2
        } else {
            0xFFFF_FFFF
        },
        max_mdl_chain_len: MAX_MDL_CHAIN_LEN,
        status: if allowed {
            status::SUCCESS
        } else {
            status::NONE
        },
    };
    let len = nvsp::host_reply_len(if allowed { min } else { 0 });
    send_reply(
        ch,
        dev,
        pkt.trans_id,
        NvspMessage::InitComplete(done),
        len,
        Some(SlowRequest::Init),
    );
}

fn recv_buf_complete(status: u32, sub: u32, count: u32) -> NvspMessage {
    let section = RecvBufSection {
        offset: 0,
        sub_alloc_size: sub,
        num_sub_allocs: count,
        end_offset: sub * count,
    };
    NvspMessage::SendRecvBufComplete(SendRecvBufComplete {
        status,
        num_sections: u32::from(status == status::SUCCESS),
        section: if status == status::SUCCESS {
            section
        } else {
            RecvBufSection::default()
        },
    })
}

fn send_recv_buf(dev: &Device, ch: &Channel, pkt: &IncomingPacket<'_>, gpadl: u32, id: u16) {
    let mut st = lock(&dev.state);
    let fail = if gpadl != dev.mem.recv_gpadl {
        Some("wrongRecvGpadl")
    } else if st.version >= nvsp::VERSION_2 && st.ndis_config.is_none() {
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
            recv_buf_complete(status::FAILURE, 0, 0),
            Some(SlowRequest::RecvBuf),
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
    lock(&dev.pool).renew(count, queues);
    reply(
        dev,
        ch,
        pkt,
        recv_buf_complete(status::SUCCESS, sub, count),
        Some(SlowRequest::RecvBuf),
    );
    rndis::flush_control(dev);
}

fn subchannel(dev: &Device, ch: &Channel, pkt: &IncomingPacket<'_>, req: Subchannel) {
    let (op, n) = (req.op(), req.num_subchannels);
    let version = lock(&dev.state).version;
    let ok = version >= nvsp::VERSION_5
        && op == nvsp::SUBCHANNEL_OP_ALLOCATE
        && n >= 1
        && n < u32::from(dev.cfg.max_queues);
    if !ok {
        dev.proto_error("subchannelRejected");
        let done = Subchannel::complete(status::FAILURE, 0);
        reply(
            dev,
            ch,
            pkt,
            NvspMessage::Subchannel(done),
            Some(SlowRequest::Subchannel),
        );
        return;
    }
    // Channel objects from an earlier session are offered again (their ring files stay in the tree); only missing
    // ones are created, while the guest waits. Fault injection: answer as if created and offer nothing new.
    let withhold = dev.faults.withhold_subchannels.load(Ordering::Acquire);
    let existing = dev.channels().len().saturating_sub(1) as u32;
    // A subchannel offered again is a new channel to the guest: its rings start empty, as the guest kernel's
    // open leaves them. What the old session left unread (transfers of a buffer since revoked) must not reach
    // the new one.
    for c in dev.channels().iter().skip(1).take(existing.min(n) as usize) {
        c.reset_rings();
    }
    let mut offered = existing.min(n);
    for i in existing + 1..=n {
        if withhold {
            break;
        }
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
        offered = i;
    }
    let total = if withhold { n } else { offered };
    // This session's queues: the receive buffer is split between them and RSS steers among them only (OpenVMM
    // sizes both from the request of the current session).
    let queues = {
        let mut st = lock(&dev.state);
        st.subchannels = offered as u16;
        1 + u32::from(st.subchannels)
    };
    lock(&dev.pool).repartition(queues);
    let st = if total > 0 {
        status::SUCCESS
    } else {
        status::FAILURE
    };
    reply(
        dev,
        ch,
        pkt,
        NvspMessage::Subchannel(Subchannel::complete(st, total)),
        Some(SlowRequest::Subchannel),
    );
    // Every channel is open once offered here (uio_hv_generic opens subchannels as they come), which is when
    // OpenVMM sends the table: entry i → channel i mod n.
    if total > 0 && version >= nvsp::VERSION_5 {
        let mut entries = [0u32; nvsp::SEND_TABLE_SIZE];
        for (i, e) in entries.iter_mut().enumerate() {
            *e = i as u32 % (total + 1);
        }
        let layout = match dev.cfg.send_table {
            SendTable::Off => return,
            SendTable::Hyperv if version <= nvsp::VERSION_6 => TableLayout::Legacy,
            _ => TableLayout::Fixed,
        };
        let mut msg = [0u8; MAX_HOST_MESSAGE];
        if let Some(len) = indirection_table(&mut msg, &entries, layout) {
            dev.nvsp_reply(SlowRequest::Subchannel, ch, false, 0, &msg[..len]);
        }
    }
}

/// Where a SEND_INDIRECTION_TABLE puts its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableLayout {
    /// Right after the 12-byte header, offset field 12 (OpenVMM; Hyper-V at 6.1).
    Fixed,
    /// After the whole 40-byte NVSP message while the offset field says 12 (Windows hosts up to NVSP 6).
    Legacy,
}

/// Build a SEND_INDIRECTION_TABLE of `entries` into `msg`; its length.
pub(crate) fn indirection_table(
    msg: &mut [u8; MAX_HOST_MESSAGE],
    entries: &[u32; nvsp::SEND_TABLE_SIZE],
    layout: TableLayout,
) -> Option<usize> {
    let header = core::mem::size_of::<SendIndirectionTable>() as u32 + 4;
    match layout {
        TableLayout::Fixed => nvsp::build_indirection_table(msg, entries, header).ok(),
        TableLayout::Legacy => {
            let at = nvsp::MESSAGE_LEN as u32;
            let len = nvsp::build_indirection_table(msg, entries, at).ok()?;
            // The offset field (bytes 8..12) says where a fixed host would put it.
            msg.get_mut(8..12)?.copy_from_slice(&header.to_le_bytes());
            Some(len)
        }
    }
}

fn send_rndis_pkt(
    dev: &Device,
    ch: &Channel,
    ctx: &mut Ctx,
    pkt: &IncomingPacket<'_>,
    req: &SendRndisPkt,
    gpa: Option<vmbus_ring::GpaRanges<'_>>,
) {
    let (index, size) = (req.send_buf_section_index, req.send_buf_section_size);
    let (version, sections) = {
        let st = lock(&dev.state);
        (st.version, st.send_sections)
    };
    if version == 0 {
        dev.proto_error("beforeInit");
        return;
    }
    let mut data = std::mem::take(&mut ctx.data);
    let loaded = if index != nvsp::SECTION_INDEX_NONE {
        match sections {
            Some(n) if index < n && size <= SEND_SECTION_SIZE => {
                if data.len() < size as usize {
                    data.resize(size as usize, 0);
                }
                data.truncate(size as usize);
                dev.mem
                    .send_buf
                    .read(index as usize * SEND_SECTION_SIZE as usize, &mut data)
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
    let st = if loaded && tx::process_rndis(dev, ch, ctx, &data) {
        status::SUCCESS
    } else {
        status::FAILURE
    };
    ctx.data = data;
    if dev.faults.withhold_completions.load(Ordering::Acquire) && pkt.completion_requested {
        // Fault injection: the send is consumed but never completed.
        add(&dev.faults.withheld, 1);
        return;
    }
    let done = nvsp::SendRndisPktComplete { status: st };
    if ch.index == 0 && pkt.completion_requested {
        dev.faults
            .last_completion_tid
            .store(pkt.trans_id, Ordering::Relaxed);
    }
    reply(dev, ch, pkt, NvspMessage::SendRndisPktComplete(done), None);
}

/// Read a GPA-direct packet's ranges into `data` (each inside one 4 KiB page, at most [`MAX_GPA_BYTES`] in all).
fn load_gpa(dev: &Device, ranges: vmbus_ring::GpaRanges<'_>, data: &mut Vec<u8>) -> bool {
    let mut total = 0usize;
    for r in ranges {
        total += r.len as usize;
        if r.offset as usize + r.len as usize > 4096 || total > MAX_GPA_BYTES {
            dev.proto_error("badGpaRange");
            return false;
        }
    }
    // Every byte is overwritten below: only grow (zeroing) what was never used.
    if data.len() < total {
        data.resize(total, 0);
    }
    data.truncate(total);
    if dev.gpa.read_ranges(ranges, data).is_err() {
        dev.proto_error("gpaReadFailed");
        return false;
    }
    true
}

//! Bring-up of a netvsc device on its primary channel, in DPDK's order (dpdk-netvsc.md §5–§6):
//! NVSP INIT (newest version first) → NDIS_CONFIG → NDIS_VER → receive buffer → send buffer →
//! RNDIS INITIALIZE → MAC, MTU, link → offload caps/params → RSS caps → subchannels → RSS params.
//! Every reply is validated; a silent host ends in `Error::Timeout` naming the step.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vmbus_uio::{DmaMemory, UioDevice};

use crate::channel::Channel;
use crate::config::DeviceConfig;
use crate::control::{CtlPage, Ids, rndis_init_req, rndis_oid_req};
use crate::error::{Error, Result, Step};
use crate::ndis::{self, OffloadCaps, RSS_TABLE};
use crate::queue::QueueCore;
use crate::reconf::RssConfig;
use crate::rx::RxState;
use crate::shared::{AggLimits, Shared};
use crate::tx::{DmaArea, SLOT_SIZE, TxState};
use netvsc_proto::nvsp::{
    self, Init, NvspMessage, SendNdisConfig, SendNdisVersion, SendRecvBuf, SendSendBuf, Subchannel,
    ndis_config_caps,
};
use netvsc_proto::rndis::{self, RndisMessage};
use netvsc_proto::{ndis as wndis, oid};

/// What bring-up learned from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Negotiated NVSP version.
    pub nvsp_version: u32,
    /// NDIS version sent (major << 16 | minor).
    pub ndis_version: u32,
    /// Permanent MAC address.
    pub mac: [u8; 6],
    /// MTU reported by the host (max frame size OID).
    pub mtu: u32,
    /// Receive sub-allocation size and count.
    pub recv_section_size: u32,
    /// Receive sections.
    pub recv_sections: u32,
    /// Send section size.
    pub send_section_size: u32,
    /// Send sections.
    pub send_sections: u32,
    /// Tx aggregation limits.
    pub agg: AggLimits,
    /// Offload capabilities.
    pub offload_caps: OffloadCaps,
    /// Receive queues the host offers for RSS (1 when RSS is unavailable).
    pub host_queues: u32,
    /// Queue pairs in use.
    pub queues: u16,
}

pub(crate) struct Opened {
    pub info: DeviceInfo,
    pub shared: Arc<Shared>,
    pub cores: Vec<Arc<Mutex<QueueCore>>>,
    pub ctl_page: CtlPage,
    pub ids: Arc<Ids>,
    pub rss: RssConfig,
}

/// The RSS configuration `cfg` asks for over `nq` queues: its key, table and hash types, or the defaults (the
/// standard key, round robin, all six types). Enabled with more than one queue.
pub(crate) fn rss_for(cfg: &DeviceConfig, nq: u16) -> Result<RssConfig> {
    let mut table = [0u16; RSS_TABLE];
    match cfg.rss_table {
        Some(user) => {
            if let Some(bad) = user.iter().find(|q| **q >= nq) {
                return Err(Error::Config {
                    what: "rss table entry",
                    value: u64::from(*bad),
                });
            }
            table = user;
        }
        None => table
            .iter_mut()
            .enumerate()
            .for_each(|(i, e)| *e = (i % nq.max(1) as usize) as u16),
    }
    Ok(RssConfig {
        key: cfg.rss_key.unwrap_or(ndis::DEFAULT_RSS_KEY),
        table,
        hash_types: cfg.rss_hash_types.unwrap_or(ndis::hash_types::ALL) & ndis::hash_types::ALL,
        enabled: nq > 1,
    })
}

fn ctl_page(cfg: &DeviceConfig) -> Result<CtlPage> {
    let dma = DmaMemory::alloc(4096, cfg.iova)?;
    let pfn = dma.try_pfn(0).ok_or(Error::Config {
        what: "control page pfn",
        value: 0,
    })?;
    Ok(CtlPage {
        mem: dma
            .mem
            .subrange(0, 4096)
            .map_err(Error::mem("control page"))?,
        pfn,
        _owner: Box::new(dma),
    })
}

fn dma_area(cfg: &DeviceConfig) -> Result<DmaArea> {
    let len = SLOT_SIZE * cfg.tx_gpa_slots.max(1) as usize;
    let dma = DmaMemory::alloc(len, cfg.iova)?;
    let mut pfns = Vec::with_capacity(len / 4096);
    for p in 0..len / 4096 {
        pfns.push(dma.try_pfn(p * 4096).ok_or(Error::Config {
            what: "tx DMA pfn",
            value: p as u64,
        })?);
    }
    let mem = dma.mem.subrange(0, len).map_err(Error::mem("tx DMA"))?;
    Ok(DmaArea {
        mem,
        pfns,
        _owner: Box::new(dma),
    })
}

/// Send an NVSP request and parse its completion (bounded by the copied reply).
fn nvsp_call(
    core: &mut QueueCore,
    ids: &Ids,
    msg: NvspMessage,
    step: Step,
    t: Duration,
) -> Result<NvspMessage> {
    let (r, n) = core.nvsp_request(ids, &msg.to_bytes(), step, t)?;
    NvspMessage::parse(&r[..n]).map_err(|_| Error::protocol(step, "reply length", n as u64))
}

/// A completion's NVSP status must be SUCCESS.
fn status_ok(status: u32, step: Step) -> Result<()> {
    match status {
        nvsp::status::SUCCESS => Ok(()),
        s => Err(Error::Rejected { step, status: s }),
    }
}

fn wrong_reply(step: Step, m: &NvspMessage) -> Error {
    Error::protocol(step, "reply type", m.msg_type())
}

/// The `u32` an OID answered with.
fn info_u32(info: &[u8], step: Step) -> Result<u32> {
    info.first_chunk::<4>()
        .map(|b| u32::from_le_bytes(*b))
        .ok_or(Error::protocol(step, "length", info.len() as u64))
}

/// Query an OID and return its info buffer copied out.
fn query(
    core: &mut QueueCore,
    page: &CtlPage,
    ids: &Ids,
    oid: u32,
    input: &[u8],
    step: Step,
    t: Duration,
) -> Result<([u8; 512], usize)> {
    let mut req = [0u8; 1024];
    let rid = ids.next_rid();
    let n = rndis_oid_req(&mut req, rndis::msg_type::QUERY, rid, oid, input);
    let reply = core.rndis_exec(page, &req[..n], rid, step, t)?;
    if reply.status() != rndis::status::SUCCESS {
        return Err(Error::Rejected {
            step,
            status: reply.status(),
        });
    }
    let info = reply.info(step)?;
    let mut out = [0u8; 512];
    let len = info.len().min(512);
    out[..len].copy_from_slice(&info[..len]);
    Ok((out, len))
}

/// Set an OID.
pub(crate) fn set_oid(
    core: &mut QueueCore,
    page: &CtlPage,
    ids: &Ids,
    oid: u32,
    data: &[u8],
    step: Step,
    t: Duration,
) -> Result<()> {
    let mut req = [0u8; 1024];
    let rid = ids.next_rid();
    let n = rndis_oid_req(&mut req, rndis::msg_type::SET, rid, oid, data);
    let reply = core.rndis_exec(page, &req[..n], rid, step, t)?;
    match reply.status() {
        rndis::status::SUCCESS => Ok(()),
        s => Err(Error::Rejected { step, status: s }),
    }
}

/// Media state and speed.
pub(crate) fn query_link(
    core: &mut QueueCore,
    page: &CtlPage,
    ids: &Ids,
    t: Duration,
) -> Result<(bool, u32)> {
    let (m, n) = query(
        core,
        page,
        ids,
        oid::GEN_MEDIA_CONNECT_STATUS,
        &[],
        "query media state",
        t,
    )?;
    let media = info_u32(&m[..n], "query media state")?;
    let (s, n) = query(
        core,
        page,
        ids,
        oid::GEN_LINK_SPEED,
        &[],
        "query link speed",
        t,
    )?;
    let speed = info_u32(&s[..n], "query link speed")?;
    Ok((media == wndis::MEDIA_STATE_CONNECTED, speed))
}

pub(crate) fn open(uio: &UioDevice, cfg: &DeviceConfig) -> Result<Opened> {
    crate::config::check_mtu(cfg.mtu)?;
    if cfg.queues == 0 || cfg.queues > 64 {
        return Err(Error::Config {
            what: "queues",
            value: u64::from(cfg.queues),
        });
    }
    let t = cfg.timeouts;
    let ids = Arc::new(Ids::default());
    let latency = cfg.devargs.latency_100ns();
    let sig = uio.primary_signaller()?;
    let _ = sig.set_latency_100ns(latency)?;
    let primary = Channel::new(uio.rings(), sig, "map primary rings")?;
    let ctl = ctl_page(cfg)?;
    let recv_buf = uio.recv_buf().clone();
    let send_buf = uio.send_buf().clone();

    // Until the limits are known, queue 0 runs with a placeholder tx state (control needs only rx).
    let placeholder = Arc::new(Shared::new(
        recv_buf.clone(),
        AggLimits {
            max_pkts: 1,
            max_bytes: 0,
            align: 8,
        },
        cfg.devargs,
    ));
    let tx0 = TxState::new(
        send_buf.clone(),
        0,
        0,
        0,
        placeholder.agg,
        0,
        dma_area(&DeviceConfig {
            tx_gpa_slots: 1,
            ..cfg.clone()
        })?,
    );
    let mut core = QueueCore::new(0, primary, placeholder, tx0, RxState::new(0, 1));
    core.cancel = cfg.cancel.clone();

    // 1. NVSP INIT, newest version first.
    let mut version = None;
    for v in nvsp::VERSIONS {
        let init = NvspMessage::Init(Init {
            min_version: v,
            max_version: v,
        });
        match nvsp_call(&mut core, &ids, init, "NVSP INIT", t.nvsp)? {
            NvspMessage::InitComplete(c) if c.status == nvsp::status::SUCCESS => {
                version = Some(v);
                break;
            }
            NvspMessage::InitComplete(_) => {}
            m => return Err(wrong_reply("NVSP INIT", &m)),
        }
    }
    let version = version.ok_or(Error::NoVersion {
        tried: nvsp::VERSIONS.to_vec(),
    })?;
    // What the host sends from now on (a send table's layout, a VF note's validity) depends on it.
    core.shared.nvsp_version.store(version, Relaxed);

    // 2–3. NDIS_CONFIG (v2+) and NDIS_VER; neither is answered.
    if version >= nvsp::VERSION_2 {
        let mut caps = ndis_config_caps::IEEE8021Q;
        if version >= nvsp::VERSION_5 {
            caps |= ndis_config_caps::SRIOV;
        }
        let config = NvspMessage::SendNdisConfig(SendNdisConfig::new(cfg.mtu + 14, caps));
        core.nvsp_send(&config.to_bytes(), "NDIS_CONFIG", t.nvsp)?;
    }
    let (major, minor) = nvsp::ndis_version_for(version);
    let ndis630 = (major, minor) >= (6, 30);
    let ndis_ver = NvspMessage::SendNdisVersion(SendNdisVersion {
        ndis_major: major,
        ndis_minor: minor,
    });
    core.nvsp_send(&ndis_ver.to_bytes(), "NDIS_VER", t.nvsp)?;

    // 4. Receive buffer: exactly one section that fits the mapped buffer.
    let step = "RECV_BUF";
    let req = NvspMessage::SendRecvBuf(SendRecvBuf {
        gpadl: uio.recv_gpadl(),
        id: nvsp::RECV_BUF_ID,
        reserved: 0,
    });
    let c = match nvsp_call(&mut core, &ids, req, step, t.nvsp)? {
        NvspMessage::SendRecvBufComplete(c) => c,
        m => return Err(wrong_reply(step, &m)),
    };
    status_ok(c.status, step)?;
    if c.num_sections != 1 {
        return Err(Error::protocol(step, "section count", c.num_sections));
    }
    let (s_off, sub_size, sub_count, s_end) = (
        c.section.offset,
        c.section.sub_alloc_size,
        c.section.num_sub_allocs,
        c.section.end_offset,
    );
    let recv_len = recv_buf.len() as u64;
    if sub_size < 68 {
        return Err(Error::protocol(step, "sub-allocation size", sub_size));
    }
    let span = u64::from(s_off) + u64::from(sub_size) * u64::from(sub_count);
    if sub_count == 0 || span > recv_len || u64::from(s_end) > recv_len {
        return Err(Error::protocol(
            step,
            "sections exceed the receive buffer",
            span,
        ));
    }

    // 5. Send buffer: section size non-zero, 4-aligned, fits.
    let step = "SEND_BUF";
    let req = NvspMessage::SendSendBuf(SendSendBuf {
        gpadl: uio.send_gpadl(),
        id: nvsp::SEND_BUF_ID,
        reserved: 0,
    });
    let section = match nvsp_call(&mut core, &ids, req, step, t.nvsp)? {
        NvspMessage::SendSendBufComplete(c) => {
            status_ok(c.status, step)?;
            c.section_size
        }
        m => return Err(wrong_reply(step, &m)),
    };
    if section == 0 || !section.is_multiple_of(4) || section as usize > send_buf.len() {
        return Err(Error::protocol(step, "section size", section));
    }
    let send_sections = (send_buf.len() / section as usize) as u32;

    // 6. RNDIS INITIALIZE: aggregation limits.
    let step = "RNDIS INITIALIZE";
    let rid = ids.next_rid();
    let reply = core.rndis_exec(&ctl, &rndis_init_req(rid), rid, step, t.rndis)?;
    let Ok(RndisMessage::InitializeComplete(init)) = reply.parse() else {
        return Err(Error::protocol(step, "reply length", reply.len as u64));
    };
    if init.status != rndis::status::SUCCESS {
        return Err(Error::Rejected {
            step,
            status: init.status,
        });
    }
    let (max_pkts, max_xfer, factor) = (
        init.max_pkt_per_msg,
        init.max_xfer_size,
        init.pkt_alignment_factor,
    );
    if factor > 12 {
        return Err(Error::protocol(step, "alignment factor", factor));
    }
    // DPDK forces the alignment to at least 4 (a u32); we keep that floor.
    let agg = AggLimits {
        max_pkts: max_pkts.clamp(1, 64),
        max_bytes: section.min(if max_xfer == 0 { section } else { max_xfer }),
        align: (1u32 << factor).max(4),
    };

    // 7. MAC, MTU, link.
    let (m, n) = query(
        &mut core,
        &ctl,
        &ids,
        oid::E802_3_PERMANENT_ADDRESS,
        &[],
        "query MAC",
        t.rndis,
    )?;
    if n < 6 {
        return Err(Error::protocol("query MAC", "length", n as u64));
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&m[..6]);
    let (m, n) = query(
        &mut core,
        &ctl,
        &ids,
        oid::GEN_MAXIMUM_FRAME_SIZE,
        &[],
        "query MTU",
        t.rndis,
    )?;
    let host_mtu = info_u32(&m[..n], "query MTU")?;
    let (up, speed) = query_link(&mut core, &ctl, &ids, t.rndis)?;

    // 8. Offloads.
    let (q, qlen) = ndis::offload_caps_query(version);
    let (c, n) = query(
        &mut core,
        &ctl,
        &ids,
        oid::TCP_OFFLOAD_HARDWARE_CAPABILITIES,
        &q[..qlen],
        "query offload caps",
        t.rndis,
    )?;
    let caps = ndis::parse_offload_caps(&c[..n]).ok_or(Error::protocol(
        "query offload caps",
        "object",
        n as u64,
    ))?;
    let (p, plen) = ndis::offload_params(&caps, cfg.offloads, ndis630);
    set_oid(
        &mut core,
        &ctl,
        &ids,
        oid::TCP_OFFLOAD_PARAMETERS,
        &p[..plen],
        "set offload params",
        t.rndis,
    )?;

    // 9. RSS capabilities → subchannels.
    let mut host_queues = 1;
    let mut nq: u16 = 1;
    if version >= nvsp::VERSION_5 {
        let (c, n) = query(
            &mut core,
            &ctl,
            &ids,
            oid::GEN_RECEIVE_SCALE_CAPABILITIES,
            &ndis::rss_caps_query(),
            "query RSS caps",
            t.rndis,
        )?;
        let (rxq, _nind) = ndis::parse_rss_caps(&c[..n]).ok_or(Error::protocol(
            "query RSS caps",
            "length",
            n as u64,
        ))?;
        host_queues = rxq.max(1);
        nq = cfg.queues.min(host_queues.min(64) as u16);
    }
    let mut subs = Vec::new();
    if nq > 1 {
        let step = "subchannel request";
        let req = NvspMessage::Subchannel(Subchannel::allocate(u32::from(nq - 1)));
        let c = match nvsp_call(&mut core, &ids, req, step, t.nvsp)? {
            NvspMessage::Subchannel(c) => c,
            m => return Err(wrong_reply(step, &m)),
        };
        status_ok(c.status(), step)?;
        let granted = c.num_subchannels.min(u32::from(nq - 1));
        nq = granted as u16 + 1;
        // The host's send table comes once the subchannels are open; it may name only these queues.
        core.shared.queues.store(nq, Relaxed);
        if granted > 0 {
            let tries = (t.subchannels.as_millis() / 10).max(1) as u32;
            let mut found =
                uio.wait_subchannels(granted as usize, Duration::from_millis(10), tries)?;
            found.retain(|s| s.subchannel_id >= 1 && s.subchannel_id <= granted as u16);
            found.sort_by_key(|s| s.subchannel_id);
            found.dedup_by_key(|s| s.subchannel_id);
            if found.len() != granted as usize {
                return Err(Error::protocol(
                    "subchannel rings",
                    "found",
                    found.len() as u64,
                ));
            }
            subs = found;
        }
    }
    // 10. RSS over the granted queues (a single queue needs none).
    let rss = rss_for(cfg, nq)?;
    if rss.enabled {
        set_oid(
            &mut core,
            &ctl,
            &ids,
            oid::GEN_RECEIVE_SCALE_PARAMETERS,
            &ndis::rss_params(&rss.key, &rss.table, rss.hash_types, false),
            "set RSS params",
            t.rndis,
        )?;
    }

    // Queues: the send sections are split evenly, so no queue shares one.
    let recv_sections = sub_count;
    let shared = Arc::new(Shared::new(recv_buf, agg, cfg.devargs));
    shared.link_up.store(up, Relaxed);
    shared.link_speed.store(speed, Relaxed);
    shared.nvsp_version.store(version, Relaxed);
    // A VF association read during bring-up landed on the placeholder: keep it.
    let early = &core.shared;
    shared
        .vf_allocated
        .store(early.vf_allocated.load(Relaxed), Relaxed);
    shared
        .vf_serial
        .store(early.vf_serial.load(Relaxed), Relaxed);
    shared.queues.store(nq, Relaxed);
    if let Some(t) = early.send_table() {
        // Kept while the queue count was still open: it must name only the queues in use.
        if !shared.accept_send_table(&t.map(u32::from)) {
            core.stats.hv.bad_send_tables.fetch_add(1, Relaxed);
        }
    }
    while let Some(ev) = early.pop_event() {
        shared.push_event(ev);
    }
    let per_q = send_sections / u32::from(nq);
    let max_views = (recv_sections / 2 / u32::from(nq)).max(1);
    let make_tx = |q: u16| -> Result<TxState> {
        let mut tx = TxState::new(
            send_buf.clone(),
            section,
            u32::from(q) * per_q,
            per_q,
            agg,
            cfg.devargs.tx_copybreak,
            dma_area(cfg)?,
        );
        tx.iova = cfg.iova;
        Ok(tx)
    };
    core.tx = make_tx(0)?;
    core.rx = RxState::new(max_views, recv_sections);
    core.shared = shared.clone();
    core.cancel = None;
    let mut cores = vec![Arc::new(Mutex::new(core))];
    for s in &subs {
        let sig = uio.signaller(s.relid, s.monitor_id)?;
        let _ = sig.set_latency_100ns(latency)?;
        let rings = uio.map_subchannel(s.relid)?;
        let chan = Channel::new(&rings, sig, "map subchannel rings")?;
        let q = s.subchannel_id;
        cores.push(Arc::new(Mutex::new(QueueCore::new(
            q,
            chan,
            shared.clone(),
            make_tx(q)?,
            RxState::new(max_views, recv_sections),
        ))));
    }
    let info = DeviceInfo {
        nvsp_version: version,
        ndis_version: (major << 16) | minor,
        mac,
        mtu: host_mtu,
        recv_section_size: sub_size,
        recv_sections,
        send_section_size: section,
        send_sections,
        agg,
        offload_caps: caps,
        host_queues,
        queues: nq,
    };
    Ok(Opened {
        info,
        shared,
        cores,
        ctl_page: ctl,
        ids,
        rss,
    })
}

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
use crate::rx::RxState;
use crate::shared::{AggLimits, Shared};
use crate::tx::{DmaArea, SLOT_SIZE, TxState};
use crate::wire::{self, nvsp, rndis};

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
    pub ids: Ids,
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

fn status_ok(reply: &[u8], want_type: u32, status_at: usize, step: Step) -> Result<()> {
    let t = wire::u32_at(reply, 0).unwrap_or(0);
    if t != want_type {
        return Err(Error::protocol(step, "reply type", t));
    }
    match wire::u32_at(reply, status_at) {
        Some(nvsp::STATUS_SUCCESS) => Ok(()),
        Some(s) => Err(Error::Rejected { step, status: s }),
        None => Err(Error::protocol(step, "reply length", reply.len() as u64)),
    }
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
    let n = rndis_oid_req(&mut req, rndis::QUERY, rid, oid, input);
    let reply = core.rndis_exec(page, &req[..n], rid, step, t)?;
    if reply.status() != rndis::STATUS_SUCCESS {
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
    let n = rndis_oid_req(&mut req, rndis::SET, rid, oid, data);
    let reply = core.rndis_exec(page, &req[..n], rid, step, t)?;
    match reply.status() {
        rndis::STATUS_SUCCESS => Ok(()),
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
        rndis::OID_MEDIA_STATUS,
        &[],
        "query media state",
        t,
    )?;
    let media =
        wire::u32_at(&m[..n], 0).ok_or(Error::protocol("query media state", "length", n as u64))?;
    let (s, n) = query(
        core,
        page,
        ids,
        rndis::OID_LINK_SPEED,
        &[],
        "query link speed",
        t,
    )?;
    let speed =
        wire::u32_at(&s[..n], 0).ok_or(Error::protocol("query link speed", "length", n as u64))?;
    Ok((media == 0, speed))
}

pub(crate) fn open(uio: &UioDevice, cfg: &DeviceConfig) -> Result<Opened> {
    if !(68..=9202).contains(&cfg.mtu) {
        return Err(Error::Config {
            what: "mtu",
            value: u64::from(cfg.mtu),
        });
    }
    if cfg.queues == 0 || cfg.queues > 64 {
        return Err(Error::Config {
            what: "queues",
            value: u64::from(cfg.queues),
        });
    }
    let t = cfg.timeouts;
    let ids = Ids::default();
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
    let mut core = QueueCore::new(0, primary, placeholder, tx0, RxState::new(0));

    // 1. NVSP INIT, newest version first.
    let mut version = None;
    for v in nvsp::VERSIONS {
        let (r, n) = core.nvsp_request(
            &ids,
            &wire::nvsp_req(nvsp::INIT, &[v, v]),
            "NVSP INIT",
            t.nvsp,
        )?;
        let r = &r[..n];
        if wire::u32_at(r, 0) != Some(nvsp::INIT_COMPLETE) {
            return Err(Error::protocol(
                "NVSP INIT",
                "reply type",
                wire::u32_at(r, 0).unwrap_or(0),
            ));
        }
        if wire::u32_at(r, 12) == Some(nvsp::STATUS_SUCCESS) {
            version = Some(v);
            break;
        }
    }
    let version = version.ok_or(Error::NoVersion {
        tried: nvsp::VERSIONS.to_vec(),
    })?;

    // 2–3. NDIS_CONFIG (v2+) and NDIS_VER; neither is answered.
    if version >= nvsp::V2 {
        let mut caps = nvsp::CAP_8021Q;
        if version >= nvsp::V5 {
            caps |= nvsp::CAP_SRIOV;
        }
        core.nvsp_send(
            &wire::nvsp_ndis_config(cfg.mtu + 14, caps),
            "NDIS_CONFIG",
            t.nvsp,
        )?;
    }
    let ndis630 = version > nvsp::V4;
    let (major, minor) = if ndis630 { (6, 30) } else { (6, 1) };
    core.nvsp_send(
        &wire::nvsp_req(nvsp::NDIS_VER, &[major, minor]),
        "NDIS_VER",
        t.nvsp,
    )?;

    // 4. Receive buffer: exactly one section that fits the mapped buffer.
    let step = "RECV_BUF";
    let (r, n) = core.nvsp_request(
        &ids,
        &wire::nvsp_req(
            nvsp::RECV_BUF,
            &[uio.recv_gpadl(), u32::from(nvsp::RECV_BUF_ID)],
        ),
        step,
        t.nvsp,
    )?;
    let r = &r[..n];
    status_ok(r, nvsp::RECV_BUF_COMPLETE, 4, step)?;
    let nsect = wire::u32_at(r, 8).unwrap_or(0);
    if nsect != 1 {
        return Err(Error::protocol(step, "section count", nsect));
    }
    let f = |o| wire::u32_at(r, o).ok_or(Error::protocol(step, "reply length", n as u64));
    let (s_off, sub_size, sub_count, s_end) = (f(12)?, f(16)?, f(20)?, f(24)?);
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
    let (r, n) = core.nvsp_request(
        &ids,
        &wire::nvsp_req(
            nvsp::SEND_BUF,
            &[uio.send_gpadl(), u32::from(nvsp::SEND_BUF_ID)],
        ),
        step,
        t.nvsp,
    )?;
    let r = &r[..n];
    status_ok(r, nvsp::SEND_BUF_COMPLETE, 4, step)?;
    let section = wire::u32_at(r, 8).unwrap_or(0);
    if section == 0 || !section.is_multiple_of(4) || section as usize > send_buf.len() {
        return Err(Error::protocol(step, "section size", section));
    }
    let send_sections = (send_buf.len() / section as usize) as u32;

    // 6. RNDIS INITIALIZE: aggregation limits.
    let step = "RNDIS INITIALIZE";
    let rid = ids.next_rid();
    let reply = core.rndis_exec(&ctl, &rndis_init_req(rid), rid, step, t.rndis)?;
    if reply.status() != rndis::STATUS_SUCCESS {
        return Err(Error::Rejected {
            step,
            status: reply.status(),
        });
    }
    let b = reply.bytes();
    let max_pkts =
        wire::u32_at(b, 32).ok_or(Error::protocol(step, "reply length", b.len() as u64))?;
    let max_xfer = wire::u32_at(b, 36).unwrap_or(0);
    let factor = wire::u32_at(b, 40).unwrap_or(0);
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
        rndis::OID_MAC,
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
        rndis::OID_MAX_FRAME_SIZE,
        &[],
        "query MTU",
        t.rndis,
    )?;
    let host_mtu =
        wire::u32_at(&m[..n], 0).ok_or(Error::protocol("query MTU", "length", n as u64))?;
    let (up, speed) = query_link(&mut core, &ctl, &ids, t.rndis)?;

    // 8. Offloads.
    let (q, qlen) = ndis::offload_caps_query(version);
    let (c, n) = query(
        &mut core,
        &ctl,
        &ids,
        rndis::OID_OFFLOAD_CAPS,
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
        rndis::OID_OFFLOAD_PARAMS,
        &p[..plen],
        "set offload params",
        t.rndis,
    )?;

    // 9. RSS capabilities → subchannels.
    let mut host_queues = 1;
    let mut nq: u16 = 1;
    if version >= nvsp::V5 {
        let (c, n) = query(
            &mut core,
            &ctl,
            &ids,
            rndis::OID_RSS_CAPS,
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
        let (r, n) = core.nvsp_request(
            &ids,
            &wire::nvsp_req(nvsp::SUBCHANNEL, &[1, u32::from(nq - 1)]),
            step,
            t.nvsp,
        )?;
        let r = &r[..n];
        status_ok(r, nvsp::SUBCHANNEL, 4, step)?;
        let granted = wire::u32_at(r, 8).unwrap_or(0).min(u32::from(nq - 1));
        nq = granted as u16 + 1;
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
    if nq > 1 {
        let key = cfg.rss_key.unwrap_or(ndis::DEFAULT_RSS_KEY);
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
                .for_each(|(i, e)| *e = (i % nq as usize) as u16),
        }
        set_oid(
            &mut core,
            &ctl,
            &ids,
            rndis::OID_RSS_PARAMS,
            &ndis::rss_params(&key, &table, false),
            "set RSS params",
            t.rndis,
        )?;
    }

    // Queues: the send sections are split evenly, so no queue shares one.
    let recv_sections = sub_count;
    let shared = Arc::new(Shared::new(recv_buf, agg, cfg.devargs));
    shared.link_up.store(up, Relaxed);
    shared.link_speed.store(speed, Relaxed);
    let per_q = send_sections / u32::from(nq);
    let max_views = (recv_sections / 2 / u32::from(nq)).max(1);
    let make_tx = |q: u16| -> Result<TxState> {
        Ok(TxState::new(
            send_buf.clone(),
            section,
            u32::from(q) * per_q,
            per_q,
            agg,
            cfg.devargs.tx_copybreak,
            dma_area(cfg)?,
        ))
    };
    core.tx = make_tx(0)?;
    core.rx = RxState::new(max_views);
    core.shared = shared.clone();
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
            RxState::new(max_views),
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
    })
}

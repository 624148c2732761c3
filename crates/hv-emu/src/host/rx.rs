//! Host→guest data: the rx pump polls the backend, filters each frame, strips its 802.1Q tag,
//! hashes it (Toeplitz over the enabled tuple) to pick a channel, writes an RNDIS PACKET (header,
//! checksum/VLAN/hash PPIs, frame) into one of that channel's free sub-allocations, and sends the
//! batch as one transfer-page packet per channel (≤ 375 ranges; transaction id = first index).
//! No free sub-allocation or no ring space → the frame is dropped and counted, never overwritten.
//! While the guest is not ready (no buffers, RNDIS not initialized, filter 0) the backend is not polled,
//! and a round takes no more frames than there are free sub-allocations (the rest wait in the backend).
//! The channel list and device state are copied once per round into reused buffers: nothing is allocated,
//! locked (except the pool) or reference-counted per frame.

use super::pool::RecvPool;
use super::{Channel, Device, frame, lock, rndis::rndis_pkt_header};
use crate::stats::add;
use netvsc_proto::ndis::hash_info as hash;
use netvsc_proto::nvsp;
use netvsc_proto::ppi::{self, PPI_U32_LEN, RxChecksumInfo, VlanInfo};
use netvsc_proto::rndis::{PACKET_HEADER_LEN, PacketWriter};
use netvsc_proto::{filter, toeplitz};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmbus_ring::{OutgoingKind, OutgoingPacket, TransferRange};

/// Ranges per transfer-page packet (NDIS ≥ 6.0 hosts).
const MAX_RANGES: usize = 375;

/// What the pump needs from the device state, copied once per round (into reused buffers).
#[derive(Default)]
struct Snapshot {
    ready: bool,
    link_up: bool,
    filter: u32,
    mac: [u8; 6],
    version: u32,
    set_id: u16,
    sub_size: u32,
    rss: bool,
    hash_info: u32,
    key: Vec<u8>,
    table: Vec<u32>,
    /// Data path VF: unicast frames for `vf_mac` leave through the veth.
    vf_path: bool,
    vf_mac: [u8; 6],
    /// The open channels, primary first (refreshed only when their number changes).
    chans: Vec<Arc<Channel>>,
    /// Bumped whenever RSS (on/off, hash types, key, table) or the channel count changes: per-frame results
    /// remembered in [`FrameCache`] are valid for one generation.
    rss_gen: u64,
}

/// What [`deliver`] works out per frame from its headers alone (VLAN tag, checksum verdict, RSS hash and channel),
/// remembered by frame address for backends whose frames are [`Backend::stable_frames`] (the generator's
/// pre-built frames): a remembered frame costs a lookup instead of a checksum over the frame and a Toeplitz hash.
#[derive(Clone, Copy)]
struct Derived {
    csum: Option<u32>,
    hash_value: u32,
    hash_type: u32,
    chan: usize,
}

#[derive(Default)]
struct FrameCache {
    generation: u64,
    map: HashMap<(usize, usize), Derived>,
}

/// Frames remembered at most (a generator has flows x sizes of them).
const FRAME_CACHE_MAX: usize = 4096;

struct Batch {
    ranges: Vec<TransferRange>,
    indices: Vec<u32>,
    bytes: u64,
    /// Sub-allocations reserved for this channel in the current round.
    spare: Vec<u32>,
}

pub(crate) fn run_pump(dev: &Device) {
    let mut batches: Vec<Batch> = Vec::new();
    let mut untagged = Vec::with_capacity(16384);
    let mut snap = Snapshot::default();
    let mut cache = FrameCache::default();
    let mut stage = super::vf::Stage::default();
    let mut vf_tagged = Vec::new();
    let has_vf = dev.vf.is_some();
    while !dev.stopped() {
        let link = lock(&dev.backend).poll_link();
        if let Some(up) = link {
            dev.set_link(up);
        }
        if has_vf {
            // The delayed offer, and whatever the guest sent on its VF (to the backend, ready or not).
            super::vf::tick(dev, Instant::now());
            super::vf::poll_host_end(dev, &mut vf_tagged);
        }
        refresh(dev, &mut snap);
        while batches.len() < snap.chans.len() {
            batches.push(Batch {
                ranges: Vec::with_capacity(MAX_RANGES),
                indices: Vec::with_capacity(MAX_RANGES),
                bytes: 0,
                spare: Vec::with_capacity(MAX_RANGES),
            });
        }
        // Like OpenVMM, park the receive path until the guest can take frames: buffers and RNDIS
        // set up and a non-zero packet filter. The backend keeps (or drops) what it has.
        if !snap.ready || snap.filter == 0 || snap.chans.is_empty() {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        // Reserve this round's sub-allocations with one pool lock (the worker completing the guest's
        // packets takes the same lock), and take only as many frames as they hold: the backend keeps
        // the rest until buffers return. With no room at all, drain a full round and count the drops.
        let full = MAX_RANGES * snap.chans.len();
        let mut pool = lock(&dev.pool);
        for (q, b) in batches.iter_mut().enumerate().take(snap.chans.len()) {
            reserve(&mut pool, q, &mut b.spare);
        }
        drop(pool);
        let free: usize = batches.iter().map(|b| b.spare.len()).sum();
        let budget = if free == 0 { full } else { full.min(free) };
        let now = Instant::now();
        let mut backend = lock(&dev.backend);
        let stable = backend.stable_frames();
        // Nothing will ever come from the backend and no VF to serve: the pump only watches link and state.
        let idle_source = backend.never_receives() && !has_vf;
        if cache.generation != snap.rss_gen {
            cache.map.clear();
            cache.generation = snap.rss_gen;
        }
        let n = backend.receive(now, budget, &mut |f| {
            if snap.vf_path && snap.link_up && f.len() >= frame::ETH_LEN && f[..6] == snap.vf_mac {
                stage.push(f);
            } else {
                let c = if stable { Some(&mut cache.map) } else { None };
                deliver(dev, &snap, &mut batches, &mut untagged, f, c);
            }
        });
        drop(backend);
        super::vf::flush_stage(dev, &mut stage);
        for (i, b) in batches.iter_mut().enumerate() {
            flush(dev, &snap, i, b);
        }
        // Unused reservations go back (the guest's view of outstanding buffers stays exact).
        let mut pool = lock(&dev.pool);
        for b in &mut batches {
            for i in b.spare.drain(..) {
                pool.release(i);
            }
        }
        drop(pool);
        if n > 0 {
            add(&dev.counters.rx_busy_ns, now.elapsed().as_nanos() as u64);
        }
        if dev.cfg.busy_poll && idle_source {
            // perf, tx 1500 B into the sink with host threads on one core: this pump's spin and sched_yield were
            // 22% of the host's samples, taken from the channel worker that does the work.
            std::thread::sleep(Duration::from_micros(200));
        } else if dev.cfg.busy_poll {
            // A full round means more is waiting: go on without giving the core away.
            if n < budget {
                std::thread::yield_now();
            }
        } else if n < budget {
            // Woken early by a worker that just gave the backend frames (`Device::wake_pump`).
            std::thread::park_timeout(Duration::from_micros(50));
        }
    }
}

/// Reserve up to a batch of channel `q`'s free sub-allocations.
fn reserve(pool: &mut RecvPool, q: usize, spare: &mut Vec<u32>) {
    while spare.len() < MAX_RANGES {
        let Some(i) = pool.alloc(1 + q) else { break };
        spare.push(i);
    }
}

fn refresh(dev: &Device, snap: &mut Snapshot) {
    {
        let st = lock(&dev.state);
        snap.ready = st.recv.is_some() && st.rndis_initialized;
        snap.link_up = st.link_up;
        snap.filter = st.filter;
        snap.mac = st.current_mac;
        snap.version = st.version;
        snap.set_id = st.recv.map_or(0, |r| r.id);
        snap.sub_size = st.recv.map_or(0, |r| r.sub_alloc_size);
        let rss = st.rss.enabled && !st.rss.table.is_empty();
        if rss != snap.rss || st.rss.hash_info != snap.hash_info {
            snap.rss_gen += 1;
        }
        snap.rss = rss;
        snap.hash_info = st.rss.hash_info;
        snap.vf_path = st.vf.datapath_vf && st.vf.present;
        snap.vf_mac = st.vf.mac;
        if snap.rss && (snap.key != st.rss.key || snap.table != st.rss.table) {
            snap.key.clear();
            snap.key.extend_from_slice(&st.rss.key);
            snap.table.clear();
            snap.table.extend_from_slice(&st.rss.table);
            snap.rss_gen += 1;
        }
    }
    let chans = dev.channels.read().unwrap_or_else(|p| p.into_inner());
    if chans.len() != snap.chans.len() {
        snap.chans.clone_from(&chans);
        snap.rss_gen += 1;
    }
}

fn accepted(snap: &Snapshot, f: &[u8]) -> bool {
    let mut dst = [0u8; 6];
    dst.copy_from_slice(&f[..6]);
    filter::accepts(snap.filter, &dst, &snap.mac)
}

/// Checksum verdict, RSS hash and channel of untagged frame `f` (the IP headers are parsed once for both).
fn derive(snap: &Snapshot, f: &[u8]) -> Derived {
    let lay = frame::layout(f);
    let mut input = [0u8; 36];
    let rss = match &lay {
        Some(l) if snap.rss => frame::rss_input_at(f, l, snap.hash_info, &mut input),
        _ => None,
    };
    let (hash_value, hash_type, chan) = match rss {
        Some((len, ty)) => {
            let h = toeplitz::hash(&snap.key, &input[..len]);
            let entry = snap.table[h as usize % snap.table.len()] as usize;
            (h, ty, entry % snap.chans.len())
        }
        None => (0, 0, 0),
    };
    let csum = lay.as_ref().map(|l| {
        let (ip, l4) = frame::verdict(f, l);
        let mut v = 0;
        match ip {
            Some(true) => v |= RxChecksumInfo::IP_OK,
            Some(false) => v |= RxChecksumInfo::IP_FAILED,
            None => {}
        }
        match l4 {
            Some((true, true)) => v |= RxChecksumInfo::TCP_OK,
            Some((true, false)) => v |= RxChecksumInfo::TCP_FAILED,
            Some((false, true)) => v |= RxChecksumInfo::UDP_OK,
            Some((false, false)) => v |= RxChecksumInfo::UDP_FAILED,
            None => {}
        }
        v
    });
    Derived {
        csum,
        hash_value,
        hash_type,
        chan,
    }
}

fn deliver(
    dev: &Device,
    snap: &Snapshot,
    batches: &mut [Batch],
    untagged: &mut Vec<u8>,
    raw: &[u8],
    cache: Option<&mut HashMap<(usize, usize), Derived>>,
) {
    let Some(ch0) = snap.chans.first() else {
        return;
    };
    // `snap.ready` holds here: the pump does not poll the backend otherwise.
    if !snap.link_up {
        add(&ch0.counters.drop_link_down, 1);
        return;
    }
    if raw.len() < frame::ETH_LEN || !accepted(snap, raw) {
        add(&ch0.counters.drop_filtered, 1);
        return;
    }
    let vlan = frame::strip_vlan(raw, untagged);
    let f: &[u8] = if vlan.is_some() { untagged } else { raw };
    let key = (raw.as_ptr() as usize, raw.len());
    let known = cache.as_ref().and_then(|m| m.get(&key).copied());
    let d = match known {
        Some(d) => d,
        None => {
            let d = derive(snap, f);
            if let Some(m) = cache
                && m.len() < FRAME_CACHE_MAX
            {
                m.insert(key, d);
            }
            d
        }
    };
    let Derived {
        csum,
        hash_value,
        hash_type,
        chan,
    } = d;
    let ch = &snap.chans[chan];
    // RNDIS PACKET: header, PPIs (checksum, 802.1Q, hash value, hash info), frame.
    let mut hdr = [0u8; PACKET_HEADER_LEN + 4 * PPI_U32_LEN];
    let Ok(mut w) = PacketWriter::new(&mut hdr) else {
        return;
    };
    // Four 16-byte PPIs always fit `hdr`, so adding them cannot fail.
    if let Some(v) = csum {
        let _ = w.add_ppi_u32(ppi::TCPIP_CHKSUM, v);
    }
    if let Some(tci) = vlan {
        let _ = w.add_ppi_u32(ppi::IEEE_8021Q, VlanInfo::from_tci(tci).0);
    }
    if hash_type != 0 {
        let _ = w.add_ppi_u32(ppi::NBL_HASH_VALUE, hash_value);
        let _ = w.add_ppi_u32(ppi::NBL_HASH_INFO, hash_type | hash::FUNCTION_TOEPLITZ);
    }
    let hdr_len = w.data_start();
    let Ok(msg_len) = w.finish_header(f.len()) else {
        return;
    };
    if msg_len > snap.sub_size as usize {
        add(&ch.counters.drop_too_large, 1);
        return;
    }
    let b = &mut batches[chan];
    if b.spare.is_empty() {
        // RSS sent more frames here than reserved: top up (one lock for up to a batch).
        reserve(&mut lock(&dev.pool), chan, &mut b.spare);
    }
    let Some(idx) = b.spare.pop() else {
        add(&ch.counters.drop_no_rx_buffer, 1);
        return;
    };
    let offset = idx as usize * snap.sub_size as usize;
    let written = dev.mem.recv_buf.write(offset, &hdr[..hdr_len]).is_ok()
        && dev.mem.recv_buf.write(offset + hdr_len, f).is_ok();
    if !written {
        b.spare.push(idx);
        add(&ch.counters.drop_no_rx_buffer, 1);
        return;
    }
    b.ranges.push(TransferRange {
        byte_count: msg_len as u32,
        byte_offset: offset as u32,
    });
    b.indices.push(idx);
    b.bytes += f.len() as u64;
    if b.ranges.len() >= MAX_RANGES {
        flush(dev, snap, chan, b);
    }
}

fn flush(dev: &Device, snap: &Snapshot, chan: usize, b: &mut Batch) {
    if b.ranges.is_empty() {
        return;
    }
    let n = b.ranges.len() as u64;
    let Some(ch) = snap.chans.get(chan) else {
        return;
    };
    lock(&dev.pool).link(&b.indices);
    let nv = rndis_pkt_header(nvsp::CHANNEL_TYPE_DATA);
    let pkt = OutgoingPacket {
        kind: OutgoingKind::TransferPages {
            set_id: snap.set_id,
            ranges: &b.ranges,
        },
        trans_id: u64::from(b.indices[0]),
        completion_requested: true,
        payload: &[&nv[..nvsp::host_reply_len(snap.version)]],
    };
    let result = {
        let mut out = lock(&ch.out);
        ch.write_now(dev, &mut out, &pkt)
    };
    match result {
        Ok(()) => {
            add(&ch.counters.h2g_frames, n);
            add(&ch.counters.h2g_bytes, b.bytes);
            add(&ch.counters.h2g_packets, 1);
        }
        Err(_) => {
            let mut pool = lock(&dev.pool);
            for &i in &b.indices {
                pool.release(i);
            }
            drop(pool);
            add(&ch.counters.drop_ring_full, n);
        }
    }
    b.ranges.clear();
    b.indices.clear();
    b.bytes = 0;
}

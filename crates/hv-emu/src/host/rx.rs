//! Host→guest data: the rx pump polls the backend, filters each frame, strips its 802.1Q tag,
//! hashes it (Toeplitz over the enabled tuple) to pick a channel, writes an RNDIS PACKET (header,
//! checksum/VLAN/hash PPIs, frame) into one of that channel's free sub-allocations, and sends the
//! batch as one transfer-page packet per channel (≤ 375 ranges; transaction id = first index).
//! No free sub-allocation or no ring space → the frame is dropped and counted, never overwritten; data never
//! takes the last `ring_headroom` bytes of the ring, which stay for completions and control messages.
//! While the guest is not ready (no buffers, RNDIS not initialized) the backend is not polled; with packet filter
//! NONE its frames are dropped and counted (`filterNone`; with `FilterNone::Hold`, and for the generator, which
//! starts when the filter admits traffic, it is not polled either). A round takes no more frames than there are
//! free sub-allocations (the rest wait in the backend), except from a paced generator, whose due frames are all
//! offered (those without a buffer dropped and counted). Frames longer than the MTU + 14 (untagged) are dropped.
//! The channel list and device state are copied once per round into reused buffers: nothing is allocated,
//! locked (except the pool) or reference-counted per frame.

use super::pool::RecvPool;
use super::{Channel, Device, FilterNone, frame, lock, rndis::rndis_pkt_header};
use crate::stats::add;
use netvsc_proto::ndis::hash_info as hash;
use netvsc_proto::nvsp;
use netvsc_proto::ppi::{self, PPI_U32_LEN, RxChecksumInfo, VlanInfo};
use netvsc_proto::rndis::{PACKET_HEADER_LEN, PacketWriter};
use netvsc_proto::{filter, toeplitz};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use vmbus_ring::{OutgoingKind, OutgoingPacket, TransferRange};

/// Ranges per transfer-page packet (NDIS ≥ 6.0 hosts).
const MAX_RANGES: usize = 375;

/// What the pump needs from the device state, copied once per round (into reused buffers).
#[derive(Default)]
struct Snapshot {
    ready: bool,
    link_up: bool,
    /// When a delayed link indication falls due.
    link_due: Option<Instant>,
    filter: u32,
    /// Longest untagged frame delivered (MTU + 14), `None` without the MTU check.
    frame_mtu: Option<u32>,
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
    /// The backend's [`crate::backend::Backend::frame_epoch`] the entries belong to.
    epoch: u64,
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
    /// The pool generation they were reserved under (a session that ends mid-round takes them away).
    generation: u64,
}

pub(crate) fn run_pump(dev: &Device) {
    let mut batches: Vec<Batch> = Vec::new();
    let mut untagged = Vec::with_capacity(16384);
    let mut snap = Snapshot::default();
    let mut cache = FrameCache::default();
    let mut stage = super::vf::Stage::default();
    let mut vf_tagged = Vec::new();
    let has_vf = dev.vf.is_some();
    let slow = dev.cfg.slow.is_slow();
    // The generator starts its run when first polled: it waits (is not polled) while the filter is NONE.
    let generator = lock(&dev.backend).name() == "generator";
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
        // A round is marked: a filter or RSS change answered after `rx_barrier` finds the round in progress finished.
        dev.rx_in_round.store(true, Ordering::SeqCst);
        refresh(dev, &mut snap);
        let round = Instant::now();
        if snap.link_due.is_some_and(|at| round >= at) {
            dev.link_turn(round);
        }
        if slow {
            dev.send_due(round);
        }
        while batches.len() < snap.chans.len() {
            batches.push(Batch {
                ranges: Vec::with_capacity(MAX_RANGES),
                indices: Vec::with_capacity(MAX_RANGES),
                bytes: 0,
                spare: Vec::with_capacity(MAX_RANGES),
                generation: 0,
            });
        }
        // Park the receive path until the guest can take frames: buffers and RNDIS set up. The backend keeps (or
        // drops) what it has. With packet filter NONE, OpenVMM drops what the backend delivers (and counts it); the
        // generator is not polled then (its run starts when the filter admits traffic), nor is any backend with
        // `FilterNone::Hold`.
        let filter_none = snap.filter == 0;
        if !snap.ready
            || snap.chans.is_empty()
            || (filter_none && (dev.cfg.filter_none == FilterNone::Hold || generator))
        {
            end_round(dev);
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        // Reserve this round's sub-allocations with one pool lock (the worker completing the guest's
        // packets takes the same lock), and take only as many frames as they hold: the backend keeps
        // the rest until buffers return. With no room at all, drain a full round and count the drops.
        let full = MAX_RANGES * snap.chans.len();
        let mut pool = lock(&dev.pool);
        for (q, b) in batches.iter_mut().enumerate().take(snap.chans.len()) {
            b.generation = pool.generation();
            reserve(&mut pool, q, &mut b.spare);
        }
        drop(pool);
        let free: usize = batches.iter().map(|b| b.spare.len()).sum();
        let now = Instant::now();
        let mut backend = lock(&dev.backend);
        // A paced generator is a wire: what falls due is offered whatever the guest's free buffers, and what finds
        // none is dropped and counted (it never waits to be sent later in a burst).
        let budget = if free == 0 || filter_none || backend.wire_paced() {
            full
        } else {
            full.min(free)
        };
        let stable = backend.stable_frames();
        // Nothing will ever come from the backend and no VF to serve: the pump only watches link and state.
        let idle_source = backend.never_receives() && !has_vf;
        let epoch = backend.frame_epoch();
        if cache.generation != snap.rss_gen || cache.epoch != epoch {
            cache.map.clear();
            cache.generation = snap.rss_gen;
            cache.epoch = epoch;
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
                pool.release_from(b.generation, i);
            }
        }
        drop(pool);
        end_round(dev);
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

fn end_round(dev: &Device) {
    dev.rx_rounds.fetch_add(1, Ordering::SeqCst);
    dev.rx_in_round.store(false, Ordering::SeqCst);
}

/// Reserve up to a batch of channel `q`'s free sub-allocations.
fn reserve(pool: &mut RecvPool, q: usize, spare: &mut Vec<u32>) {
    while spare.len() < MAX_RANGES {
        let Some(i) = pool.alloc(1 + q) else { break };
        spare.push(i);
    }
}

fn refresh(dev: &Device, snap: &mut Snapshot) {
    let session_subchannels = {
        let st = lock(&dev.state);
        snap.ready = st.recv.is_some() && st.rndis_initialized;
        snap.link_up = st.link_up;
        snap.link_due = match st.link_pending {
            super::LinkPending::Delay { at, .. } => Some(at),
            _ => None,
        };
        snap.filter = st.filter;
        snap.frame_mtu = dev.cfg.mtu_check.then_some(st.frame_mtu);
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
        st.subchannels
    };
    // Only this session's channels take frames (the primary plus the subchannels it was granted).
    let chans = dev.channels.read().unwrap_or_else(|p| p.into_inner());
    let active = chans.len().min(1 + usize::from(session_subchannels));
    if active != snap.chans.len() {
        snap.chans.clear();
        snap.chans.extend(chans[..active].iter().cloned());
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
    if snap.filter == 0 {
        add(&ch0.counters.drop_filter_none, 1);
        return;
    }
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
    if snap.frame_mtu.is_some_and(|m| f.len() > m as usize) {
        add(&ch0.counters.drop_too_large, 1);
        return;
    }
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
        // Cannot happen (`hdr` is sized for the header and four PPIs), but a frame is never lost uncounted.
        add(&ch.counters.drop_too_large, 1);
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
        // A frame too long for an RNDIS length field.
        add(&ch.counters.drop_too_large, 1);
        return;
    };
    if msg_len > snap.sub_size as usize {
        add(&ch.counters.drop_too_large, 1);
        return;
    }
    let b = &mut batches[chan];
    if b.spare.is_empty() {
        // RSS sent more frames here than reserved: top up (one lock for up to a batch), unless the session the
        // batch was reserved under has ended.
        let mut pool = lock(&dev.pool);
        if pool.generation() == b.generation {
            reserve(&mut pool, chan, &mut b.spare);
        }
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
    if !lock(&dev.pool).link_frames(b.generation, &b.indices) {
        // The guest's session ended since these sub-allocations were reserved (revoke or a new INIT): the old
        // buffer is gone, so the frames are dropped here, counted as arriving before the guest was ready.
        add(&ch.counters.drop_not_ready, n);
        b.ranges.clear();
        b.indices.clear();
        b.bytes = 0;
        return;
    }
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
    // Completions queued for lack of room go first; data leaves `ring_headroom` bytes free.
    if ch.has_deferred() {
        ch.flush_deferred(dev);
    }
    let result = {
        let mut out = lock(&ch.out);
        let room = out.writer.available() as u64;
        if ch.has_deferred() || pkt.ring_size() + u64::from(dev.cfg.ring_headroom) > room {
            Err(())
        } else {
            ch.write_now(dev, &mut out, &pkt).map_err(drop)
        }
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
                pool.release_from(b.generation, i);
            }
            drop(pool);
            add(&ch.counters.drop_ring_full, n);
        }
    }
    b.ranges.clear();
    b.indices.clear();
    b.bytes = 0;
}

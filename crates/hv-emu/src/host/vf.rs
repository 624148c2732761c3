//! The host's VF behaviour (OpenVMM's, reduced to what a guest can observe): offer the VF `delay` after the guest
//! is ready — only at NVSP ≥ 4 with the guest's SR-IOV bit —, honour the guest's SWITCH_DATA_PATH only while a VF
//! is offered, divert unicast frames for the VF's MAC to the veth while the data path is VF (broadcast and
//! multicast stay synthetic, as on Hyper-V), hand what the guest sends on its VF to the backend, and the commands
//! (offer, revoke, hot-remove, hot-add, host-initiated switch back, MAC change).
//!
//! The session part lives in `DeviceState::vf` (the pump copies it once per round); the veth pair sits behind its
//! own mutex, taken by the pump once per round and by commands. Lock order: pair, then backend / state.

use super::{Device, frame, lock};
use crate::stats::add;
use crate::vf::link::VethPair;
use crate::vf::{Mac, VfConfig, VfDrops, VfError, VfNetns, VfStats, VfSwitches, format_mac};
use netvsc_proto::nvsp::{self, NvspMessage, SwitchDataPath, ndis_config_caps};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Per-session VF state (in `DeviceState`, reset when the guest starts a new NVSP session).
#[derive(Debug, Clone, Default)]
pub struct VfSession {
    /// A VF is configured at all.
    pub configured: bool,
    /// The veth pair exists.
    pub present: bool,
    pub offered: bool,
    pub datapath_vf: bool,
    /// Offer automatically once the guest is ready (cleared by an offer, a revoke, or a refusal).
    pub auto: bool,
    /// When the automatic offer is due (set when the guest is first seen ready).
    pub offer_at: Option<Instant>,
    /// The NVSP session (`DeviceState::inits`) this state belongs to.
    pub session: u32,
    /// Why not offered (see `VfStats::state`).
    pub why: Option<&'static str>,
    pub mac: Mac,
}

crate::stats::counters!(VfCounters {
    offers,
    revokes,
    below_v4,
    no_sriov,
    to_vf,
    to_synthetic,
    ignored,
    bad_value,
    switch_back,
    removes,
    adds,
    h2g_frames,
    h2g_bytes,
    g2h_frames,
    g2h_bytes,
    drop_gone,
    drop_ring_full,
});

/// The VF half of a device.
pub struct VfHost {
    pub(crate) iface: String,
    pub(crate) host_iface: String,
    pub(crate) serial: u32,
    pub(crate) delay: Duration,
    netns: Option<VfNetns>,
    frame_size: u32,
    pub(crate) pair: Mutex<Option<VethPair>>,
    pub(crate) counters: VfCounters,
    /// Kernel rx-ring drops of pairs already deleted.
    old_rx_dropped: AtomicU64,
}

impl VfHost {
    /// Create the veth pair for `cfg` (MAC `mac`); frames up to `frame_mtu` bytes (Ethernet header included).
    pub fn create(cfg: &VfConfig, mac: Mac, frame_mtu: u32) -> Result<VfHost, VfError> {
        let host_iface = cfg.host_iface();
        if cfg.iface.is_empty() || cfg.iface.len() > 15 || cfg.iface.contains(['/', ' ']) {
            return Err(VfError::Invalid(format!(
                "VF interface name '{}' must be 1..15 bytes without '/' or spaces",
                cfg.iface
            )));
        }
        check_unicast(&mac)?;
        let frame_size = (frame_mtu + 4 + 256).next_power_of_two().max(2048);
        let pair = VethPair::create(&cfg.iface, &host_iface, mac, cfg.netns.as_ref(), frame_size)?;
        Ok(VfHost {
            iface: cfg.iface.clone(),
            host_iface,
            serial: cfg.serial,
            delay: Duration::from_millis(cfg.delay_ms),
            netns: cfg.netns.clone(),
            frame_size,
            pair: Mutex::new(Some(pair)),
            counters: VfCounters::default(),
            old_rx_dropped: AtomicU64::new(0),
        })
    }
}

fn check_unicast(mac: &Mac) -> Result<(), VfError> {
    if mac[0] & 1 != 0 || *mac == [0; 6] {
        return Err(VfError::Invalid(format!(
            "VF MAC {} must be a non-zero unicast address",
            format_mac(mac)
        )));
    }
    Ok(())
}

fn vf_of(dev: &Device) -> Result<&VfHost, VfError> {
    dev.vf.as_ref().ok_or(VfError::NotConfigured)
}

/// A new NVSP session (re-INIT) starts the VF story over: not offered, synthetic, offer again once ready.
fn sync_session(st: &mut super::DeviceState) {
    if st.vf.session != st.inits {
        st.vf.session = st.inits;
        st.vf.offered = false;
        st.vf.datapath_vf = false;
        st.vf.offer_at = None;
        st.vf.auto = st.vf.present;
        st.vf.why = None;
    }
}

/// Whether the guest can be offered a VF now (`Err` says why not).
fn guest_accepts(st: &super::DeviceState) -> Result<(), VfError> {
    if st.version == 0 || !st.rndis_initialized {
        return Err(VfError::GuestNotReady);
    }
    if st.version < nvsp::VERSION_4 {
        return Err(VfError::ProtocolTooOld(st.version));
    }
    let sriov = st
        .ndis_config
        .is_some_and(|(_, caps)| caps & ndis_config_caps::SRIOV != 0);
    if !sriov {
        return Err(VfError::NoSriov);
    }
    Ok(())
}

/// Called by the rx pump every round: the delayed automatic offer.
pub(crate) fn tick(dev: &Device, now: Instant) {
    let Some(vf) = dev.vf.as_ref() else { return };
    let mut st = lock(&dev.state);
    sync_session(&mut st);
    if !st.vf.auto || !st.vf.present || st.vf.offered {
        return;
    }
    match guest_accepts(&st) {
        Ok(()) => {}
        Err(VfError::GuestNotReady) => {
            st.vf.why = Some("guestNotReady");
            return;
        }
        Err(VfError::ProtocolTooOld(_)) => {
            st.vf.auto = false;
            st.vf.why = Some("nvspBelow4");
            add(&vf.counters.below_v4, 1);
            return;
        }
        Err(_) => {
            st.vf.auto = false;
            st.vf.why = Some("noSriovCapability");
            add(&vf.counters.no_sriov, 1);
            return;
        }
    }
    let at = *st.vf.offer_at.get_or_insert(now + vf.delay);
    if now < at {
        st.vf.why = Some("waitingDelay");
        return;
    }
    st.vf.auto = false;
    st.vf.offered = true;
    st.vf.why = None;
    drop(st);
    if dev.send_vf_association(true, vf.serial) {
        add(&vf.counters.offers, 1);
    } else {
        let mut st = lock(&dev.state);
        st.vf.offered = false;
        st.vf.why = Some("sendFailed");
    }
}

/// The guest's SWITCH_DATA_PATH (already recorded in the history): honoured only while a VF is offered.
pub(crate) fn guest_switch(dev: &Device, datapath: u32) {
    let Some(vf) = dev.vf.as_ref() else {
        return;
    };
    let mut st = lock(&dev.state);
    sync_session(&mut st);
    if !st.vf.offered || !st.vf.present {
        add(&vf.counters.ignored, 1);
        return;
    }
    match datapath {
        nvsp::DATAPATH_VF => {
            st.vf.datapath_vf = true;
            add(&vf.counters.to_vf, 1);
        }
        nvsp::DATAPATH_SYNTHETIC => {
            st.vf.datapath_vf = false;
            add(&vf.counters.to_synthetic, 1);
        }
        _ => add(&vf.counters.bad_value, 1),
    }
}

impl Device {
    /// Offer the VF now (SEND_VF_ASSOCIATION {1, serial}).
    pub fn vf_offer(&self) -> Result<(), VfError> {
        let vf = vf_of(self)?;
        {
            let mut st = lock(&self.state);
            sync_session(&mut st);
            if !st.vf.present {
                return Err(VfError::NotPresent);
            }
            guest_accepts(&st)?;
            st.vf.auto = false;
            st.vf.offered = true;
            st.vf.why = None;
        }
        if !self.send_vf_association(true, vf.serial) {
            lock(&self.state).vf.offered = false;
            return Err(VfError::SendFailed);
        }
        add(&vf.counters.offers, 1);
        Ok(())
    }

    /// Withdraw the VF (SEND_VF_ASSOCIATION {0, serial}); frames go synthetic at once.
    pub fn vf_revoke(&self) -> Result<(), VfError> {
        let vf = vf_of(self)?;
        {
            let mut st = lock(&self.state);
            sync_session(&mut st);
            if !st.vf.offered {
                return Err(VfError::NotOffered);
            }
            st.vf.offered = false;
            st.vf.datapath_vf = false;
            st.vf.auto = false;
            st.vf.why = Some("revoked");
        }
        if !self.send_vf_association(false, vf.serial) {
            return Err(VfError::SendFailed);
        }
        add(&vf.counters.revokes, 1);
        Ok(())
    }

    /// Hot-remove: delete the veth pair (the guest's VF netdev disappears), rx goes synthetic at once, and an
    /// offered VF is then withdrawn (SEND_VF_ASSOCIATION {0}), as a host does after losing the device.
    pub fn vf_remove(&self) -> Result<(), VfError> {
        let vf = vf_of(self)?;
        let was_offered = {
            let mut st = lock(&self.state);
            sync_session(&mut st);
            if !st.vf.present {
                return Err(VfError::NotPresent);
            }
            st.vf.present = false;
            st.vf.datapath_vf = false;
            st.vf.auto = false;
            st.vf.why = Some("removed");
            std::mem::replace(&mut st.vf.offered, false)
        };
        drop_pair(vf);
        add(&vf.counters.removes, 1);
        if was_offered && self.send_vf_association(false, vf.serial) {
            add(&vf.counters.revokes, 1);
        }
        Ok(())
    }

    /// Hot-add: re-create the veth pair; the VF is offered again `delay` after (if the guest accepts VFs).
    pub fn vf_add(&self) -> Result<(), VfError> {
        let vf = vf_of(self)?;
        let mut pair = lock(&vf.pair);
        let mac = {
            let st = lock(&self.state);
            if st.vf.present || pair.is_some() {
                return Err(VfError::AlreadyPresent);
            }
            st.vf.mac
        };
        let p = VethPair::create(
            &vf.iface,
            &vf.host_iface,
            mac,
            vf.netns.as_ref(),
            vf.frame_size,
        )?;
        *pair = Some(p);
        drop(pair);
        let mut st = lock(&self.state);
        sync_session(&mut st);
        st.vf.present = true;
        st.vf.auto = true;
        st.vf.offer_at = None;
        st.vf.why = None;
        add(&vf.counters.adds, 1);
        Ok(())
    }

    /// Host-initiated switch to synthetic: NVSP 129 {0} to the guest (transaction id 2^63 + 1, completion
    /// requested, as OpenVMM); the host routes synthetic at once.
    pub fn vf_switch_back(&self) -> Result<(), VfError> {
        let vf = vf_of(self)?;
        let version = {
            let mut st = lock(&self.state);
            sync_session(&mut st);
            if !st.vf.offered {
                return Err(VfError::NotOffered);
            }
            st.vf.datapath_vf = false;
            st.version
        };
        let Some(ch) = self.channel(0) else {
            return Err(VfError::SendFailed);
        };
        let msg = NvspMessage::SwitchDataPath(SwitchDataPath {
            active_datapath: nvsp::DATAPATH_SYNTHETIC,
        })
        .to_bytes();
        let len = nvsp::host_reply_len(version);
        if !ch.send_inband(self, nvsp::TRANS_ID_SWITCH_DATA_PATH, true, &msg[..len]) {
            return Err(VfError::SendFailed);
        }
        add(&vf.counters.switch_back, 1);
        Ok(())
    }

    /// Give the VF another MAC (a VF whose MAC differs from the synthetic NIC's, or back).
    pub fn vf_set_mac(&self, mac: Mac) -> Result<(), VfError> {
        let vf = vf_of(self)?;
        check_unicast(&mac)?;
        let pair = lock(&vf.pair);
        if let Some(p) = pair.as_ref() {
            p.set_guest_mac(mac)?;
        }
        lock(&self.state).vf.mac = mac;
        Ok(())
    }

    /// Delete the veth pair now (the emulator is going away; commands may still hold the device).
    pub fn vf_release(&self) {
        if let Some(vf) = self.vf.as_ref() {
            drop_pair(vf);
            let mut st = lock(&self.state);
            st.vf.present = false;
            st.vf.datapath_vf = false;
        }
    }

    /// The VF's state and counters; `None` without a VF.
    pub fn vf_state(&self) -> Option<VfStats> {
        let vf = self.vf.as_ref()?;
        let (mode, kernel_drops) = {
            let pair = lock(&vf.pair);
            (
                pair.as_ref().map(|p| p.mode()),
                pair.as_ref().map_or(0, |p| p.rx_dropped()),
            )
        };
        let s = {
            let mut st = lock(&self.state);
            sync_session(&mut st);
            st.vf.clone()
        };
        let c = &vf.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Some(VfStats {
            iface: vf.iface.clone(),
            host_iface: vf.host_iface.clone(),
            serial: vf.serial,
            mac: format_mac(&s.mac),
            present: s.present,
            offered: s.offered,
            datapath_vf: s.datapath_vf,
            datapath: if s.datapath_vf { "vf" } else { "synthetic" },
            state: if s.offered {
                None
            } else {
                s.why.or(Some("guestNotReady"))
            },
            delay_ms: vf.delay.as_millis() as u64,
            offers: g(&c.offers),
            revokes: g(&c.revokes),
            not_offered_below_v4: g(&c.below_v4),
            not_offered_no_sriov: g(&c.no_sriov),
            switches: VfSwitches {
                to_vf: g(&c.to_vf),
                to_synthetic: g(&c.to_synthetic),
                ignored: g(&c.ignored),
                bad_value: g(&c.bad_value),
                host_switch_back: g(&c.switch_back),
            },
            removes: g(&c.removes),
            adds: g(&c.adds),
            vf_host_to_guest_frames: g(&c.h2g_frames),
            vf_host_to_guest_bytes: g(&c.h2g_bytes),
            vf_guest_to_host_frames: g(&c.g2h_frames),
            vf_guest_to_host_bytes: g(&c.g2h_bytes),
            drops: VfDrops {
                vf_gone: g(&c.drop_gone),
                ring_full: g(&c.drop_ring_full),
                kernel_rx_dropped: g(&vf.old_rx_dropped) + kernel_drops,
            },
            port_mode: mode,
        })
    }
}

/// Delete the pair (keeping its kernel drop count).
fn drop_pair(vf: &VfHost) {
    let old = lock(&vf.pair).take();
    if let Some(p) = old {
        vf.old_rx_dropped
            .fetch_add(p.rx_dropped(), Ordering::Relaxed);
        drop(p);
    }
}

/// The veth died under us (deleted from outside): forget it and route synthetic.
fn lost(dev: &Device, vf: &VfHost, pair: &mut Option<VethPair>) {
    if let Some(p) = pair.take() {
        vf.old_rx_dropped
            .fetch_add(p.rx_dropped(), Ordering::Relaxed);
    }
    let mut st = lock(&dev.state);
    st.vf.present = false;
    st.vf.datapath_vf = false;
    st.vf.why = Some("removed");
}

/// Frames for the VF collected during one pump round (copied: the backend lends them only for the callback).
#[derive(Default)]
pub(crate) struct Stage {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Stage {
    pub(crate) fn push(&mut self, f: &[u8]) {
        self.buf.extend_from_slice(f);
        self.ends.push(self.buf.len());
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// Send the staged frames out of the host end; what does not go is counted as a drop by reason.
pub(crate) fn flush_stage(dev: &Device, stage: &mut Stage) {
    if stage.is_empty() {
        return;
    }
    let Some(vf) = dev.vf.as_ref() else { return };
    let mut frames: Vec<&[u8]> = Vec::with_capacity(stage.ends.len());
    let mut start = 0;
    for &end in &stage.ends {
        frames.push(&stage.buf[start..end]);
        start = end;
    }
    let mut pair = lock(&vf.pair);
    let mut sent = 0;
    match pair.as_mut() {
        None => add(&vf.counters.drop_gone, frames.len() as u64),
        Some(p) => {
            while sent < frames.len() {
                match p.tx(&frames[sent..]) {
                    Ok(0) => break,
                    Ok(n) => sent += n,
                    Err(_) => {
                        add(&vf.counters.drop_gone, (frames.len() - sent) as u64);
                        lost(dev, vf, &mut pair);
                        sent = frames.len();
                        break;
                    }
                }
            }
            let left = frames.len().saturating_sub(sent);
            add(&vf.counters.drop_ring_full, left as u64);
            let bytes: usize = frames[..sent.min(frames.len())]
                .iter()
                .map(|f| f.len())
                .sum();
            add(&vf.counters.h2g_frames, sent as u64);
            add(&vf.counters.h2g_bytes, bytes as u64);
        }
    }
    drop(pair);
    stage.buf.clear();
    stage.ends.clear();
}

/// Hand what the guest sent on its VF (host end rx) to the backend. Returns the frame count.
pub(crate) fn poll_host_end(dev: &Device, tagged: &mut Vec<u8>) -> usize {
    let Some(vf) = dev.vf.as_ref() else { return 0 };
    let mut pair = lock(&vf.pair);
    let Some(p) = pair.as_mut() else { return 0 };
    let (mut frames, mut bytes) = (0u64, 0u64);
    let mut backend = None;
    let mut r = Ok(0);
    // Up to a few bursts per round: the socket's ring must not overflow while the pump sleeps between rounds.
    for _ in 0..16 {
        r = p.rx(|f, vlan| {
            let b = backend.get_or_insert_with(|| lock(&dev.backend));
            frames += 1;
            bytes += f.len() as u64;
            match vlan {
                Some(tci) => {
                    tagged.clear();
                    frame::push_tagged(f, tci, tagged);
                    b.transmit(tagged);
                }
                None => b.transmit(f),
            }
        });
        if !matches!(r, Ok(n) if n == crate::vf::link::RX_BURST) {
            break;
        }
    }
    drop(backend);
    add(&vf.counters.g2h_frames, frames);
    add(&vf.counters.g2h_bytes, bytes);
    if r.is_err() {
        lost(dev, vf, &mut pair);
    }
    frames as usize
}

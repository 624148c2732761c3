//! The device handle: open by UUID or kernel interface name, start/stop, controls (packet filter,
//! MTU, MAC/VLAN refusals, multicast list for a VF), link, VF data path, statistics and close.
//! Control operations run on queue 0 under its lock; close switches the data path back to
//! synthetic, clears the filter, halts RNDIS and revokes the buffers before unmapping.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vmbus_uio::{OwnerLock, UioDevice, UioError};

use crate::bringup::{self, DeviceInfo, Opened};
use crate::capture::Tap;
use crate::config::DeviceConfig;
use crate::control::{CtlPage, Ids, rndis_halt_req};
use crate::error::{Error, Result};
use crate::link::{Event, LinkInfo};
use crate::queue::{QueueCore, QueuePair, control_lock, lock};
use crate::reconf::RssConfig;
use crate::shared::Shared;
use crate::stats::{self, QueueStats, StatsHandle, Totals};
use crate::telemetry;
use crate::vf::manager::{self, Cmd, DeviceHost, Manager, Mirror};
use crate::vf::{VfInfo, backend::Kernel};
use netvsc_proto::nvsp::{self, NvspMessage, RevokeRecvBuf, RevokeSendBuf, SwitchDataPath};
use netvsc_proto::oid;

/// Packet filter bits (protocol.md §4.4).
pub mod filter {
    use netvsc_proto::filter as bits;

    /// Frames to our MAC.
    pub const DIRECTED: u32 = bits::DIRECTED;
    /// All multicast.
    pub const ALL_MULTICAST: u32 = bits::ALL_MULTICAST;
    /// Broadcast.
    pub const BROADCAST: u32 = bits::BROADCAST;
    /// Everything.
    pub const PROMISCUOUS: u32 = bits::PROMISCUOUS;
    /// DPDK's value at start: directed | all-multicast | broadcast.
    pub const START: u32 = DIRECTED | ALL_MULTICAST | BROADCAST;
    /// DPDK's value with promiscuous and all-multicast off.
    pub const NORMAL: u32 = DIRECTED | BROADCAST;
}

/// An open netvsc device.
pub struct Device {
    pub(crate) root: PathBuf,
    pub(crate) name: String,
    pub(crate) cfg: DeviceConfig,
    uio: Option<UioDevice>,
    /// This process's ownership of the device (see [`vmbus_uio::lock`]); released after the unmap.
    owner: Option<OwnerLock>,
    pub(crate) info: DeviceInfo,
    pub(crate) shared: Arc<Shared>,
    pub(crate) cores: Vec<Arc<Mutex<QueueCore>>>,
    pub(crate) ctl_page: CtlPage,
    pub(crate) ids: Arc<Ids>,
    vf: Option<manager::Handle>,
    pub(crate) promisc: bool,
    pub(crate) allmulti: bool,
    pub(crate) filter: u32,
    pub(crate) mc_list: Vec<[u8; 6]>,
    pub(crate) vf_datapath: bool,
    pub(crate) recoveries: u64,
    /// Sends still in flight when a recovery tore the channels down: the host may or may not have taken them, and
    /// their completions are gone, so they are counted here (`hv_tx_unsettled`) and never as sent.
    pub(crate) tx_unsettled: u64,
    /// RSS as the host was last told (or would be, with one queue).
    pub(crate) rss: RssConfig,
    /// What outlives re-initialisations: capture switch, telemetry page, open time, removed queues' counters.
    pub(crate) kept: Kept,
}

/// The parts of a device that live from `open` to `close` across every re-initialisation (MTU change, recovery,
/// queue-count change).
#[derive(Debug)]
pub(crate) struct Kept {
    /// The capture switch every queue handle checks once per burst.
    pub tap: Arc<Tap>,
    /// The telemetry page, when [`DeviceConfig::telemetry`] is on and the page could be created.
    pub telemetry: Option<telemetry::Owner>,
    /// When the device was first opened (ns since the Unix epoch).
    pub opened_ns: u64,
    /// Counters of queues a queue-count change removed (kept in the port totals).
    pub retired: Vec<Arc<QueueStats>>,
}

impl Kept {
    fn new(root: &Path, uuid: &str, cfg: &DeviceConfig) -> Kept {
        // Telemetry is best effort: a read-only /run must not stop the device from working.
        let telemetry = cfg
            .telemetry
            .then(|| telemetry::Publisher::create(&telemetry::page_path(root, uuid)).ok())
            .flatten()
            .map(telemetry::Owner::new);
        Kept {
            tap: Arc::default(),
            telemetry,
            opened_ns: crate::vf::now_ns(),
            retired: Vec::new(),
        }
    }

    /// An empty stand-in left behind while the real one moves to a re-opened device.
    fn placeholder() -> Kept {
        Kept {
            tap: Arc::default(),
            telemetry: None,
            opened_ns: 0,
            retired: Vec::new(),
        }
    }
}

/// Queue cells a re-open moves its new state into (so handles taken before stay valid and keep their counters).
pub(crate) struct Reuse<'a> {
    pub cells: &'a [Arc<Mutex<QueueCore>>],
    /// The re-opened device must have exactly as many queues (recovery); otherwise the first `min` cells are
    /// reused, extra new queues get new cells and the caller retires the old cells past the new count.
    pub exact: bool,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("name", &self.name)
            .field("info", &self.info)
            .finish()
    }
}

impl Device {
    /// Open the device named by instance UUID or kernel interface name under `root` (`/` on a
    /// real guest, the emulator's directory in tests) and bring it up. The port starts stopped.
    pub fn open(root: &Path, name: &str, cfg: DeviceConfig) -> Result<Device> {
        Device::open_into(root, name, cfg, None, &mut None)
    }

    /// Open; with `reuse`, the new queues' state moves into those queue cells (keeping their counters), so
    /// queue handles taken before stay valid; with `kept` holding them, the device-lifetime parts come from the
    /// device being re-initialised (taken only once bring-up succeeded, so a failed attempt can be retried).
    pub(crate) fn open_into(
        root: &Path,
        name: &str,
        cfg: DeviceConfig,
        reuse: Option<Reuse<'_>>,
        kept: &mut Option<Kept>,
    ) -> Result<Device> {
        let info = vmbus_uio::find_device(root, name)?;
        // One owner across processes: a second opener learns who holds the device.
        let owner = OwnerLock::acquire(&vmbus_uio::device_lock_path(root, &info.uuid)).map_err(
            |e| match e {
                UioError::Busy { pid, .. } => Error::DeviceBusy {
                    device: info.uuid.clone(),
                    pid,
                },
                e => Error::Uio(e),
            },
        )?;
        let own_iface = info.iface.clone();
        let uuid = info.uuid.clone();
        let uio = UioDevice::open(root, &info)?;
        let Opened {
            info,
            shared,
            mut cores,
            ctl_page,
            ids,
            rss,
        } = bringup::open(&uio, &cfg)?;
        if let Some(old) = reuse {
            if old.exact && old.cells.len() != cores.len() {
                return Err(Error::Config {
                    what: "queue count after re-initialisation",
                    value: cores.len() as u64,
                });
            }
            let keep = old.cells.len().min(cores.len());
            for (o, n) in old.cells.iter().zip(&cores).take(keep) {
                let (mut o, mut n) = (lock(o), lock(n));
                std::mem::swap(&mut *o, &mut *n);
                // The cell keeps its counters: the handles' `stats` point at them.
                std::mem::swap(&mut o.stats, &mut n.stats);
                // And its tx region (the application holds views of it): what was in flight will never complete.
                std::mem::swap(&mut o.tx.region, &mut n.tx.region);
                if let Some(r) = o.tx.region.as_mut() {
                    r.abandon_in_flight();
                }
            }
            let mut cells = old.cells[..keep].to_vec();
            cells.extend(cores.drain(keep..));
            cores = cells;
        }
        let kept = kept.take().unwrap_or_else(|| Kept::new(root, &uuid, &cfg));
        let mut dev = Device {
            root: root.to_path_buf(),
            name: name.to_string(),
            cfg,
            uio: Some(uio),
            owner: Some(owner),
            info,
            shared,
            cores,
            ctl_page,
            ids,
            vf: None,
            promisc: false,
            allmulti: true,
            filter: 0,
            mc_list: Vec::new(),
            vf_datapath: false,
            recoveries: 0,
            tx_unsettled: 0,
            rss,
            kept,
        };
        if dev.cfg.vf.enabled && dev.info.nvsp_version >= nvsp::VERSION_4 {
            dev.vf = Some(dev.spawn_vf_manager(own_iface)?);
        }
        Ok(dev)
    }

    /// Move the device-lifetime parts out (for the device that re-initialisation opens next).
    pub(crate) fn take_kept(&mut self) -> Kept {
        std::mem::replace(&mut self.kept, Kept::placeholder())
    }

    fn spawn_vf_manager(&self, own_iface: Option<String>) -> Result<manager::Handle> {
        let host = DeviceHost {
            shared: self.shared.clone(),
            cores: self.cores.clone(),
            ids: self.ids.clone(),
            mac: self.info.mac,
            own_iface,
            timeout: self.cfg.timeouts.nvsp,
        };
        let mirror = Mirror {
            promisc: self.promisc,
            allmulti: self.allmulti,
            mc_list: self.mc_list.clone(),
            mtu: self.cfg.mtu,
            started: false,
        };
        let backend = Kernel {
            sysfs_root: self.cfg.vf.sysfs_root.clone(),
        };
        let m = Manager::new(
            backend,
            host,
            self.cfg.vf.clone(),
            self.shared.clone(),
            mirror,
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = self.shared.vf_cmd.set(tx.clone());
        let short: String = self.name.chars().take(6).collect();
        let h = manager::spawn(m, tx, rx, &short).map_err(|e| Error::Ring {
            step: "start the VF manager",
            detail: e.to_string(),
        })?;
        // An association read during bring-up.
        if self.shared.vf_allocated.load(Relaxed) {
            let serial = self.shared.vf_serial.load(Relaxed);
            let _ = h.tx.send(Cmd::Assoc {
                allocated: true,
                serial,
            });
        }
        Ok(h)
    }

    fn vf_cmd(&self, cmd: Cmd) {
        if let Some(h) = &self.vf {
            let _ = h.tx.send(cmd);
        }
    }

    /// How long a stop/close waits for the VF manager (its switch back may wait for the host).
    fn vf_wait(&self) -> Duration {
        self.cfg.timeouts.nvsp + Duration::from_secs(1)
    }

    /// A handle on the VF counters usable without the device (it follows this device, not a re-open).
    pub fn vf_stats(&self) -> crate::vf::VfStats {
        crate::vf::VfStats(self.shared.vf.clone())
    }

    /// The VF failover state: `None` until the host offers a VF (or with the manager disabled).
    pub fn vf_info(&self) -> Option<VfInfo> {
        self.shared.vf.info()
    }

    /// The host's send indirection table (NVSP SEND_INDIRECTION_TABLE, sent once subchannels are open; entry
    /// `hash % 16` is the queue Linux would transmit a flow with that hash on), when it sent a valid one. The driver
    /// itself does no queue selection (the caller picks the queue, as with DPDK, which ignores the table); see
    /// [`Device::tx_queue_for_hash`].
    pub fn send_table(&self) -> Option<[u16; crate::shared::SEND_TABLE_SIZE]> {
        self.shared.send_table()
    }

    /// The queue Linux's netvsc would transmit a flow with this hash on: the send table's entry `hash % 16`, or
    /// `hash % queues` without a table.
    pub fn tx_queue_for_hash(&self, hash: u32) -> u16 {
        let n = self.cores.len().max(1) as u32;
        match self.send_table() {
            Some(t) => t[hash as usize % t.len()] % n as u16,
            None => (hash % n) as u16,
        }
    }

    /// What bring-up negotiated.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The configuration in use.
    pub fn config(&self) -> &DeviceConfig {
        &self.cfg
    }

    /// Handles to every queue pair; give each to one polling thread.
    pub fn queues(&self) -> Vec<QueuePair> {
        self.cores
            .iter()
            .map(|c| {
                let core = lock(c);
                QueuePair {
                    id: core.id,
                    core: c.clone(),
                    stats: core.stats.clone(),
                    tap: self.kept.tap.clone(),
                }
            })
            .collect()
    }

    pub(crate) fn ctl(&self) -> Result<std::sync::MutexGuard<'_, QueueCore>> {
        if self.shared.closed() {
            return Err(Error::Closed);
        }
        Ok(control_lock(&self.cores[0], &self.shared))
    }

    pub(crate) fn set_filter(&mut self, value: u32) -> Result<()> {
        let t = self.cfg.timeouts.rndis;
        let mut core = self.ctl()?;
        bringup::set_oid(
            &mut core,
            &self.ctl_page,
            &self.ids,
            oid::GEN_CURRENT_PACKET_FILTER,
            &value.to_le_bytes(),
            "set packet filter",
            t,
        )?;
        drop(core);
        self.filter = value;
        Ok(())
    }

    /// Start receiving: set the packet filter (0xD, or 0x20 when promiscuous).
    pub fn start(&mut self) -> Result<()> {
        let f = if self.promisc {
            filter::PROMISCUOUS
        } else {
            filter::START
        };
        // Started first: frames may arrive as soon as the host applies the filter.
        self.shared.started.store(true, Relaxed);
        let r = self.set_filter(f);
        if r.is_err() {
            self.shared.started.store(false, Relaxed);
        } else {
            self.vf_cmd(Cmd::Start);
        }
        r
    }

    /// Stop receiving: the data path back to synthetic and the VF closed first (DPDK da1fcd9b36), then
    /// filter 0 (the host then delivers nothing).
    pub fn stop(&mut self) -> Result<()> {
        if let Some(h) = &self.vf {
            h.call(Cmd::Stop, self.vf_wait());
        }
        self.shared.started.store(false, Relaxed);
        self.set_filter(0)
    }

    /// Whether the port is started.
    pub fn is_started(&self) -> bool {
        self.shared.started()
    }

    /// Last packet filter value set.
    pub fn packet_filter(&self) -> u32 {
        self.filter
    }

    /// Promiscuous mode (0x20 on; 0x9, plus 0x4 with all-multicast, off).
    pub fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        self.promisc = on;
        self.vf_cmd(Cmd::Promisc(on));
        if !self.is_started() {
            return Ok(());
        }
        let f = if on {
            filter::PROMISCUOUS
        } else {
            filter::NORMAL
                | if self.allmulti {
                    filter::ALL_MULTICAST
                } else {
                    0
                }
        };
        self.set_filter(f)
    }

    /// All-multicast (0xD on, 0x9 off; recorded only while promiscuous).
    pub fn set_allmulticast(&mut self, on: bool) -> Result<()> {
        self.allmulti = on;
        self.vf_cmd(Cmd::Allmulti(on));
        if !self.is_started() || self.promisc {
            return Ok(());
        }
        self.set_filter(if on { filter::START } else { filter::NORMAL })
    }

    /// The MAC address (read-only on Hyper-V).
    pub fn mac(&self) -> [u8; 6] {
        self.info.mac
    }

    /// Changing the MAC is not possible on the synthetic NIC.
    pub fn set_mac(&mut self, _mac: [u8; 6]) -> Result<()> {
        Err(Error::NotSupported("setting the MAC address"))
    }

    /// Extra MAC filters are not possible.
    pub fn add_mac(&mut self, _mac: [u8; 6]) -> Result<()> {
        Err(Error::NotSupported("adding a MAC address filter"))
    }

    /// VLAN filters are not possible (the host strips tags and reports them in metadata).
    pub fn add_vlan_filter(&mut self, _vid: u16) -> Result<()> {
        Err(Error::NotSupported("VLAN filtering"))
    }

    /// Keep a multicast list for a VF; the synthetic path has no multicast filter.
    pub fn set_multicast_list(&mut self, list: &[[u8; 6]]) -> Result<()> {
        if let Some(bad) = list.iter().find(|m| m[0] & 1 == 0) {
            return Err(Error::Invalid {
                what: "multicast address (unicast given)",
                value: u64::from(bad[0]),
            });
        }
        self.mc_list = list.to_vec();
        self.vf_cmd(Cmd::McList(self.mc_list.clone()));
        Ok(())
    }

    /// The multicast list kept for the VF.
    pub fn multicast_list(&self) -> &[[u8; 6]] {
        &self.mc_list
    }

    /// Change the MTU: a full teardown and bring-up with the new value (the port must be
    /// stopped). Queue handles taken before become stale; take new ones with [`Device::queues`].
    pub fn set_mtu(&mut self, mtu: u32) -> Result<()> {
        if self.is_started() {
            return Err(Error::Started("changing the MTU"));
        }
        crate::config::check_mtu(mtu)?;
        self.teardown();
        let cfg = DeviceConfig {
            mtu,
            ..self.cfg.clone()
        };
        let mut kept = Some(self.take_kept());
        let r = Device::open_into(&self.root.clone(), &self.name.clone(), cfg, None, &mut kept);
        if let Some(k) = kept {
            // The re-open failed: the device stays closed, but its page and capture are still its own.
            self.kept = k;
        }
        *self = r?;
        Ok(())
    }

    /// Query the link over RNDIS (media state and speed), updating the cached state.
    pub fn link(&self) -> Result<LinkInfo> {
        let t = self.cfg.timeouts.rndis;
        let mut core = self.ctl()?;
        let (up, speed) = bringup::query_link(&mut core, &self.ctl_page, &self.ids, t)?;
        self.shared.link_up.store(up, Relaxed);
        self.shared.link_speed.store(speed, Relaxed);
        Ok(LinkInfo {
            up,
            speed_100bps: speed,
            full_duplex: true,
        })
    }

    /// Link state as last learned from queries and status indications (no host round trip).
    pub fn cached_link(&self) -> LinkInfo {
        LinkInfo {
            up: self.shared.link_up.load(Relaxed),
            speed_100bps: self.shared.link_speed.load(Relaxed),
            full_duplex: true,
        }
    }

    /// Next queued event (link changes, VF association), oldest first. Indications are read by
    /// whoever polls the queue they arrive on (queue 0 for most hosts): poll, then drain events.
    pub fn next_event(&self) -> Option<Event> {
        self.shared.pop_event()
    }

    /// Drain queue 0's ring for control traffic when no thread is polling it. Rx transfers met are set
    /// aside, uncompleted, for the queue's owner (the backlog holds all the host can have outstanding), so a
    /// stalled application loses nothing the host could buffer. Reads at most [`crate::POLL_BUDGET_PACKETS`]
    /// packets and [`crate::POLL_BUDGET_BYTES`] per call.
    pub fn poll_control(&self) -> usize {
        match self.cores[0].try_lock() {
            Ok(mut core) => {
                let n = core.poll(crate::queue::Mode::Drain, crate::queue::POLL_BUDGET_PACKETS);
                core.check_write_fault();
                n
            }
            Err(_) => 0,
        }
    }

    /// Whether some queue saw a corrupt ring since the last bring-up.
    pub fn faulted(&self) -> bool {
        self.shared.faulted.load(Relaxed)
    }

    /// Background upkeep for whoever owns the device mutably (the Node addon's event thread): poll the
    /// control queue, and after a ring error ([`Event::Error`]) re-initialise the device when
    /// [`DeviceConfig::recover`] is on. Returns whether it recovered.
    pub fn maintain(&mut self) -> Result<bool> {
        if self.shared.closed() {
            return Ok(false);
        }
        self.poll_control();
        self.telemetry_tick();
        if !self.faulted() || !self.cfg.recover {
            return Ok(false);
        }
        self.recover().map(|()| true)
    }

    /// The telemetry page's periodic work, at most every [`telemetry::PUBLISH_PERIOD`]: serve a capture request
    /// written into the page (start or stop the tap), end a capture whose time is up, then publish the counters,
    /// link and VF state. Errors are ignored: telemetry never disturbs the device.
    fn telemetry_tick(&mut self) {
        let now = Instant::now();
        let tap = self.kept.tap.clone();
        let due = self.kept.telemetry.as_mut().is_some_and(|t| t.due(now));
        if !due {
            return;
        }
        // Ten times a second at most: the allocation of the names is not on any data path.
        let mut device = Vec::with_capacity(64);
        self.device_xstats(&self.queue_stats(), &mut device);
        let Some(t) = self.kept.telemetry.as_mut() else {
            return;
        };
        t.snap.device = device;
        let snap = &mut t.snap;
        if let Ok(Some(req)) = t.publisher.poll_request() {
            let _ = tap.stop();
            snap.capture_done = snap.capture_id;
            snap.capture_id = 0;
            match &req.path {
                Some(path) if tap.start(path, req.max_frames, req.max_ms).is_ok() => {
                    snap.capture_id = req.id;
                }
                _ => snap.capture_done = req.id,
            }
        }
        tap.expire();
        if snap.capture_id != 0 && !tap.is_on() {
            snap.capture_done = snap.capture_id;
            snap.capture_id = 0;
        }
        snap.capture_frames = tap.frames();
        let h = StatsHandle {
            queues: self.cores.iter().map(|c| lock(c).stats.clone()).collect(),
            retired: self.kept.retired.clone(),
            vf: crate::vf::VfStats(self.shared.vf.clone()),
        };
        snap.queues.clear();
        snap.queues.extend(h.queues.iter().map(|q| {
            let mut w = [0u64; telemetry::QUEUE_WORDS];
            for (o, v) in w
                .iter_mut()
                .zip(q.tx.values().iter().chain(q.rx.values().iter()))
            {
                *o = *v;
            }
            w[30] = q.rx_missed.load(Relaxed);
            w
        }));
        let tot = h.totals();
        snap.port = [
            tot.ipackets,
            tot.opackets,
            tot.ibytes,
            tot.obytes,
            tot.imissed,
            tot.ierrors,
            tot.oerrors,
        ];
        let vf = h.vf.totals();
        snap.vf = [
            vf.rx_packets,
            vf.rx_bytes,
            vf.tx_packets,
            vf.tx_bytes,
            vf.rx_dropped,
            vf.tx_errors,
        ];
        snap.link_up = self.shared.link_up.load(Relaxed);
        snap.link_speed = u64::from(self.shared.link_speed.load(Relaxed));
        snap.mtu = u64::from(self.info.mtu.max(self.cfg.mtu));
        snap.opened_ns = self.kept.opened_ns;
        snap.updated_ns = 0;
        match self.shared.vf.info() {
            Some(i) => {
                snap.vf_state = telemetry::VF_STATES
                    .iter()
                    .find(|s| **s == i.state.as_str())
                    .copied();
                snap.vf_serial = u64::from(i.serial);
                snap.vf_switched = i.switched;
            }
            None => {
                snap.vf_state = None;
                snap.vf_serial = 0;
                snap.vf_switched = false;
            }
        }
        let _ = t.publisher.publish(snap);
    }

    /// The telemetry page this device publishes, if any.
    pub fn telemetry_path(&self) -> Option<&Path> {
        self.kept.telemetry.as_ref().map(|t| t.publisher.path())
    }

    /// The capture switch of this device (started and stopped through the telemetry page by
    /// [`Device::maintain`], or directly; every queue handle records its bursts while it is on).
    pub fn tap(&self) -> &Arc<Tap> {
        &self.kept.tap
    }

    /// Re-initialise along the MTU-change path: close the channels (best effort: the broken ring may not
    /// answer), reopen, renegotiate, then restore the filter, multicast list and started state. Queue
    /// handles stay valid and keep their counters. Emits [`Event::Recovered`]; a failure emits an
    /// [`Event::Error`] with [`crate::ErrorCode::Recovery`] and leaves the device closed.
    pub fn recover(&mut self) -> Result<()> {
        let was_started = self.is_started();
        let (promisc, allmulti, mc_list) = (self.promisc, self.allmulti, self.mc_list.clone());
        let count = self.recoveries + 1;
        // Shorter waits: the host may never answer on a broken channel.
        let q0_sound = lock(&self.cores[0]).fault.is_none();
        let revoked = self.shutdown().is_ok() && q0_sound;
        // Hand-over, as a queue-count change does: what each queue holds (cursor, set-aside transfers and, once
        // the host has let go of the buffer, its ring unless that ring is the broken one) is copied out, its
        // transfers completed, and returned by the next bursts. Only what sat in a broken ring is lost; the host
        // counts it (its `hostToGuestAbandoned`).
        let carried: Vec<_> = self
            .cores
            .iter()
            .map(|c| crate::rx::drain_for_handover(&mut lock(c), revoked))
            .collect();
        crate::reconf::settle_rings(&self.cores);
        self.teardown();
        // Sends still in flight once no burst can start any more (the device is closed, and each queue's lock
        // waits out a burst already under way): the host may have taken them, their completions are gone.
        let unsettled = self.tx_unsettled
            + self
                .cores
                .iter()
                .map(|c| u64::from(lock(c).tx.in_flight()))
                .sum::<u64>();
        let old = self.shared.clone();
        // The host resets its end once it sees the close; until then a reopen may meet the old rings. Retry
        // until the NVSP timeout.
        let until = Instant::now() + self.cfg.timeouts.nvsp;
        let mut kept = Some(self.take_kept());
        let reopened = loop {
            let r = Device::open_into(
                &self.root.clone(),
                &self.name.clone(),
                self.cfg.clone(),
                Some(Reuse {
                    cells: &self.cores,
                    exact: true,
                }),
                &mut kept,
            );
            match r {
                Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
                r => break r,
            }
        };
        if let Some(k) = kept {
            self.kept = k;
        }
        let mut dev = match reopened {
            Ok(d) => d,
            Err(e) => {
                old.push_event(Event::Error {
                    code: crate::link::ErrorCode::Recovery,
                    queue: 0,
                    what: "reopen the device",
                    offset: 0,
                });
                return Err(e);
            }
        };
        while let Some(ev) = old.pop_event() {
            dev.shared.push_event(ev);
        }
        dev.recoveries = count;
        dev.tx_unsettled = unsettled;
        crate::reconf::hand_over(&dev, carried);
        // The old session's buffers go here; what the allocator would keep of them is returned shortly.
        *self = dev;
        vmbus_uio::heap::release_free_heap_soon();
        self.promisc = promisc;
        self.allmulti = allmulti;
        if !mc_list.is_empty() {
            self.set_multicast_list(&mc_list)?;
        }
        if was_started {
            self.start()?;
        }
        self.shared.push_event(Event::Recovered { count });
        Ok(())
    }

    /// Recoveries since open.
    pub fn recoveries(&self) -> u64 {
        self.recoveries
    }

    /// The host's last VF association note: `Some(serial)` when a VF is offered.
    pub fn vf(&self) -> Option<u32> {
        self.shared
            .vf_allocated
            .load(Relaxed)
            .then(|| self.shared.vf_serial.load(Relaxed))
    }

    /// Switch the data path to the VF (`true`) or back to synthetic (NVSP 129, v4+).
    pub fn switch_datapath(&mut self, to_vf: bool) -> Result<()> {
        if self.info.nvsp_version < nvsp::VERSION_4 {
            return Err(Error::NotSupported("switching the data path below NVSP v4"));
        }
        let t = self.cfg.timeouts.nvsp;
        let mut core = self.ctl()?;
        core.nvsp_send(
            &NvspMessage::SwitchDataPath(SwitchDataPath {
                active_datapath: if to_vf {
                    nvsp::DATAPATH_VF
                } else {
                    nvsp::DATAPATH_SYNTHETIC
                },
            })
            .to_bytes(),
            "SWITCH_DATA_PATH",
            t,
        )?;
        drop(core);
        self.vf_datapath = to_vf;
        Ok(())
    }

    /// Whether we told the host to use the VF data path.
    pub fn datapath_is_vf(&self) -> bool {
        self.vf_datapath
    }

    /// Per-queue counters (the live queues).
    pub fn queue_stats(&self) -> Vec<Arc<QueueStats>> {
        self.cores.iter().map(|c| lock(c).stats.clone()).collect()
    }

    /// Every counter of the device as a handle that needs neither the device nor a lock (live queues, queues
    /// removed by [`Device::set_queues`], the VF). Take a new one after a re-initialisation.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle {
            queues: self.queue_stats(),
            retired: self.kept.retired.clone(),
            vf: self.vf_stats(),
        }
    }

    /// Port totals over every queue the device has had (removed ones included), the VF's packets and bytes
    /// included (the application never sees the VF).
    pub fn stats(&self) -> Totals {
        self.stats_handle().totals()
    }

    /// DPDK-named extended statistics (per live queue), the `hv_` counters (summed over every queue the device
    /// has had), then the VF's with the `vf_` prefix.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        let s = self.queue_stats();
        let refs: Vec<&QueueStats> = s.iter().map(|a| a.as_ref()).collect();
        let mut x = stats::xstats(&refs);
        self.device_xstats(&s, &mut x);
        x
    }

    /// The device-level part of [`Device::xstats`] (`hv_*`, `vf_*`; also what the telemetry page carries).
    fn device_xstats(&self, live: &[Arc<QueueStats>], x: &mut Vec<(String, u64)>) {
        let all: Vec<&QueueStats> = live
            .iter()
            .map(|a| a.as_ref())
            .chain(self.kept.retired.iter().map(|a| a.as_ref()))
            .collect();
        x.extend(stats::hv_xstats(&all, self.recoveries));
        x.push(("hv_tx_unsettled".into(), self.tx_unsettled));
        self.shared.vf.xstats(x);
    }

    /// Zero all counters (removed queues' too).
    pub fn reset_stats(&self) {
        self.queue_stats().iter().for_each(|s| s.reset());
        self.kept.retired.iter().for_each(|s| s.reset());
        self.shared.vf.reset();
    }

    /// Close: synthetic data path first, filter 0, RNDIS HALT, revoke both buffers, unmap; a running capture is
    /// flushed and the telemetry page removed.
    pub fn close(mut self) -> Result<()> {
        let r = self.shutdown();
        self.teardown();
        let _ = self.kept.tap.stop();
        // Its buffers go with it (those still shared with queue handles when the last handle drops); what the
        // allocator would keep of them is returned shortly.
        drop(self);
        vmbus_uio::heap::release_free_heap_soon();
        r
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.shared.closed() {
            return Ok(());
        }
        // The VF first: data path back to synthetic, then the VF closed.
        self.stop_vf_manager();
        if lock(&self.cores[0]).fault.is_some() {
            // Queue 0's ring is corrupt: no request can be answered; closing the device tells the host.
            self.shared.started.store(false, Relaxed);
            return Ok(());
        }
        if self.vf_datapath {
            self.switch_datapath(false)?;
        }
        if self.is_started() || self.filter != 0 {
            self.stop()?;
        }
        let mut core = control_lock(&self.cores[0], &self.shared);
        self.halt_and_revoke(&mut core)?;
        // Let the host consume what we wrote before the mappings go (bounded, like DPDK's 200 ms).
        let idle = core.chan.idle_available();
        let until = Instant::now() + Duration::from_millis(200);
        while core.chan.available() < idle && Instant::now() < until {
            core.poll(crate::queue::Mode::Control, 256);
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }

    /// RNDIS HALT, then both buffers revoked: after the revoke completions the host writes nothing more into the
    /// receive buffer. `core` is queue 0, locked by the caller.
    pub(crate) fn halt_and_revoke(&self, core: &mut QueueCore) -> Result<()> {
        let t = self.cfg.timeouts;
        let rid = self.ids.next_rid();
        core.rndis_send(&self.ctl_page, &rndis_halt_req(rid), "RNDIS HALT", t.rndis)?;
        core.nvsp_send(
            &NvspMessage::RevokeRecvBuf(RevokeRecvBuf {
                id: nvsp::RECV_BUF_ID,
                reserved: 0,
            })
            .to_bytes(),
            "revoke receive buffer",
            t.nvsp,
        )?;
        core.nvsp_send(
            &NvspMessage::RevokeSendBuf(RevokeSendBuf {
                id: nvsp::SEND_BUF_ID,
                reserved: 0,
            })
            .to_bytes(),
            "revoke send buffer",
            t.nvsp,
        )
    }

    pub(crate) fn stop_vf_manager(&mut self) {
        if let Some(h) = self.vf.take() {
            let wait = self.vf_wait();
            h.shutdown(wait);
        }
    }

    pub(crate) fn teardown(&mut self) {
        self.stop_vf_manager();
        self.shared.closed.store(true, Relaxed);
        self.shared.started.store(false, Relaxed);
        self.uio = None;
        self.owner = None;
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if !self.shared.closed() {
            let _ = self.shutdown();
        }
        self.teardown();
        // A placeholder's tap is its own; the real one moved on with a re-initialisation.
        if self.kept.opened_ns != 0 {
            let _ = self.kept.tap.stop();
        }
    }
}

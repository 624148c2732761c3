//! The VF manager: one thread per device running the failover state machine
//! (idle → offered → paired → switched, and back), fed by a command channel: VF-association and host
//! data-path notes (from queue 0's ring reading), link changes (a helper thread blocks on the netlink
//! watcher and forwards them, so removal and carrier loss are seen within milliseconds even when the
//! application only calls bursts), dead VF queues (from the burst path) and the device's own controls.
//! Between commands it runs the pairing retry timer and polls queue 0's control traffic every few ms.
//!
//! NVSP goes out on queue 0 through the control path (`QueueCore::nvsp_request` under queue 0's mutex),
//! exactly as the device's own control operations do, so it never races the queue-0 owner.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{self, Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vf_netdev::{LinkChange, Mac, NetdevInfo, PortConfig};

use super::backend::{Backend, NetdevOps, PortOps, QueueOps};
use super::path::Lane;
use super::{IfName, VfConfig, VfFailure, VfInfo, VfMode, VfReason, VfState, now_ns};
use crate::control::Ids;
use crate::link::Event;
use crate::queue::{QueueCore, control_lock};
use crate::shared::Shared;
use netvsc_proto::nvsp::{self, NvspMessage, SwitchDataPath};

/// How often the manager drains queue 0's control traffic when nothing else happens.
const CONTROL_POLL: Duration = Duration::from_millis(5);
/// How long the netlink helper blocks before looking at its stop flag (bounds the close of a device with a VF).
const WATCH_WAIT: Duration = Duration::from_millis(10);

/// The netlink helper thread, started with the first VF offer (a device never offered a VF never opens a
/// netlink socket).
struct Watcher {
    tx: Sender<Cmd>,
    stop: Arc<AtomicBool>,
    name: String,
    thread: Option<JoinHandle<()>>,
}

/// What the manager is told.
pub(crate) enum Cmd {
    /// NVSP VF association (queue 0).
    Assoc {
        allocated: bool,
        serial: u32,
    },
    /// The host switched the data path itself (NVSP 129 from the host).
    HostSwitch {
        to_vf: bool,
    },
    /// A netlink link change.
    Link(LinkChange),
    /// A VF queue failed in a burst.
    QueueDead(VfReason),
    /// Device controls, mirrored onto the VF.
    Promisc(bool),
    Allmulti(bool),
    McList(Vec<Mac>),
    /// Port started: switch when ready.
    Start,
    /// Port stopping: data path to synthetic, close the VF, then acknowledge.
    Stop(Sender<()>),
    /// Device closing: as `Stop`, then exit.
    Shutdown(Sender<()>),
}

/// Why a switch request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SwitchError {
    Refused(u32),
    Failed,
}

/// The device side the manager acts on.
pub(crate) trait Host: Send + 'static {
    fn mac(&self) -> Mac;
    /// The synthetic device's own kernel interface, if it has one (never paired).
    fn own_iface(&self) -> Option<String>;
    fn queue_count(&self) -> u32;
    /// NVSP SWITCH_DATA_PATH with completion requested.
    fn switch(&self, to_vf: bool) -> Result<(), SwitchError>;
    /// Give each queue pair its VF queue (same index); tx stays synthetic.
    fn install(&self, queues: Vec<Box<dyn QueueOps>>);
    /// Transmit through the VF lanes (or stop).
    fn set_tx(&self, on: bool);
    /// Take every lane out; returns frames lost in them.
    fn remove(&self) -> u64;
    /// Drain queue 0's control traffic if no one holds it.
    fn poll_control(&self);
    fn push_event(&self, ev: Event);
}

/// The device's queues and control path.
pub(crate) struct DeviceHost {
    pub shared: Arc<Shared>,
    pub cores: Vec<Arc<Mutex<QueueCore>>>,
    pub ids: Arc<Ids>,
    pub mac: Mac,
    pub own_iface: Option<String>,
    pub timeout: Duration,
}

impl Host for DeviceHost {
    fn mac(&self) -> Mac {
        self.mac
    }

    fn own_iface(&self) -> Option<String> {
        self.own_iface.clone()
    }

    fn queue_count(&self) -> u32 {
        self.cores.len() as u32
    }

    fn switch(&self, to_vf: bool) -> Result<(), SwitchError> {
        if self.shared.closed() {
            return Err(SwitchError::Failed);
        }
        let msg = NvspMessage::SwitchDataPath(SwitchDataPath {
            active_datapath: if to_vf {
                nvsp::DATAPATH_VF
            } else {
                nvsp::DATAPATH_SYNTHETIC
            },
        })
        .to_bytes();
        let mut core = control_lock(&self.cores[0], &self.shared);
        let (reply, len) = core
            .nvsp_request(&self.ids, &msg, "SWITCH_DATA_PATH", self.timeout)
            .map_err(|_| SwitchError::Failed)?;
        // Hosts answer with an empty completion; a body with a status word other than SUCCESS is a refusal.
        if len >= 8 {
            let status = u32::from_le_bytes([reply[4], reply[5], reply[6], reply[7]]);
            if status != nvsp::status::SUCCESS {
                return Err(SwitchError::Refused(status));
            }
        }
        Ok(())
    }

    fn install(&self, queues: Vec<Box<dyn QueueOps>>) {
        for (core, q) in self.cores.iter().zip(queues) {
            control_lock(core, &self.shared).vf = Some(Lane::new(q));
        }
    }

    fn set_tx(&self, on: bool) {
        // Bursts step aside for these (control_lock): a busy transmitter must not delay a failover.
        for core in &self.cores {
            if let Some(l) = control_lock(core, &self.shared).vf.as_mut() {
                l.tx = on;
            }
        }
    }

    fn remove(&self) -> u64 {
        let mut lost = 0;
        for core in &self.cores {
            let lane = control_lock(core, &self.shared).vf.take();
            if let Some(l) = lane {
                lost += l.unaccounted();
            }
        }
        lost
    }

    fn poll_control(&self) {
        if self.shared.closed() {
            return;
        }
        // A short drain when the owner is not in a burst: enough for control notes, little rx set aside.
        if let Ok(mut core) = self.cores[0].try_lock() {
            core.poll(crate::queue::Mode::Drain, 64);
        }
    }

    fn push_event(&self, ev: Event) {
        self.shared.push_event(ev);
    }
}

/// Settings mirrored onto the VF netdev.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mirror {
    pub promisc: bool,
    pub allmulti: bool,
    pub mc_list: Vec<Mac>,
    pub mtu: u32,
    pub started: bool,
}

struct Paired {
    ifindex: u32,
    name: String,
    ctl: Box<dyn NetdevOps>,
    _port: Box<dyn PortOps>,
    mode: VfMode,
    queues: u32,
    running: bool,
    switched: bool,
    /// The host refused the switch: wait for a restart or a new association.
    refused: bool,
}

enum St {
    Idle,
    /// Pairing: `next` is the next attempt (`None`: wait for a link event or a new association).
    Offered {
        serial: u32,
        attempts: u32,
        next: Option<Instant>,
    },
    Paired {
        serial: u32,
        dev: Box<Paired>,
    },
}

/// The state machine (no thread of its own: [`spawn`] drives it; unit tests call it directly).
pub(crate) struct Manager<B: Backend, H: Host> {
    backend: B,
    host: H,
    cfg: VfConfig,
    shared: Arc<Shared>,
    st: St,
    mirror: Mirror,
    watcher: Option<Watcher>,
}

impl<B: Backend, H: Host> Manager<B, H> {
    pub fn new(backend: B, host: H, cfg: VfConfig, shared: Arc<Shared>, mirror: Mirror) -> Self {
        Manager {
            backend,
            host,
            cfg,
            shared,
            st: St::Idle,
            mirror,
            watcher: None,
        }
    }

    /// Start the netlink helper if it is configured and not running yet.
    fn watch(&mut self) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        if w.thread.is_some() {
            return;
        }
        let Some(mut src) = self.backend.watcher() else {
            return;
        };
        let (tx, stop) = (w.tx.clone(), w.stop.clone());
        w.thread = std::thread::Builder::new()
            .name(format!("netvsc-vfnl-{}", w.name))
            .spawn(move || {
                let mut out = Vec::with_capacity(64);
                while !stop.load(Ordering::Acquire) {
                    out.clear();
                    if src.wait(&mut out, WATCH_WAIT).is_err() {
                        std::thread::sleep(WATCH_WAIT);
                        continue;
                    }
                    for ch in out.drain(..) {
                        if tx.send(Cmd::Link(ch)).is_err() {
                            return;
                        }
                    }
                }
            })
            .ok();
    }

    fn stop_watch(&mut self) {
        if let Some(w) = self.watcher.as_mut() {
            w.stop.store(true, Ordering::Release);
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn event(&self, state: VfState, serial: u32, reason: VfReason, dev: Option<&Paired>) {
        let (iface, mode) = match dev {
            Some(d) => (Some(IfName::new(&d.name)), Some(d.mode)),
            None => (None, None),
        };
        self.host.push_event(Event::Vf {
            state,
            serial,
            iface,
            mode,
            reason,
            at_ns: now_ns(),
        });
        self.shared.vf.set_info(Some(VfInfo {
            state,
            serial,
            iface: dev.map(|d| d.name.clone()),
            ifindex: dev.map_or(0, |d| d.ifindex),
            mode,
            queues: dev.map_or(0, |d| d.queues),
            switched: dev.is_some_and(|d| d.switched),
        }));
    }

    fn failure(&self, serial: u32, failure: VfFailure, iface: Option<&str>) {
        self.host.push_event(Event::VfError {
            serial,
            failure,
            iface: iface.map(IfName::new),
            at_ns: now_ns(),
        });
    }

    /// The earliest time `tick` has work.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.st {
            St::Offered { next, .. } => *next,
            _ => None,
        }
    }

    /// Run timers.
    pub fn tick(&mut self, now: Instant) {
        if let St::Offered {
            next: Some(t),
            serial,
            ..
        } = self.st
            && t <= now
        {
            self.try_pair(serial, now);
        }
    }

    /// Handle one command; false when the manager should exit.
    pub fn handle(&mut self, cmd: Cmd, now: Instant) -> bool {
        match cmd {
            Cmd::Assoc { allocated, serial } => self.on_assoc(allocated, serial, now),
            Cmd::HostSwitch { to_vf } => {
                if !to_vf && self.switched() {
                    // The host is already synthetic: no switch to send, just close the VF and wait.
                    if let St::Paired { dev, .. } = &mut self.st {
                        dev.switched = false;
                    }
                    self.close(VfReason::HostSwitched, None);
                }
            }
            Cmd::Link(ch) => self.on_link(ch, now),
            Cmd::QueueDead(why) => {
                // A queue saw its netdev vanish or stop running (its liveness probe beats netlink, which tells
                // only once the kernel is done closing): synthetic at once, no query first (the kernel may hold
                // rtnl for a while yet). Stopped: wait for the link; gone: look again now; broken: retry later.
                if matches!(self.st, St::Paired { .. }) {
                    let next = match why {
                        VfReason::LinkDown => None,
                        VfReason::NetdevRemoved => Some(now),
                        _ => Some(now + self.cfg.retry_period),
                    };
                    self.close(why, next);
                }
            }
            Cmd::Promisc(on) => {
                self.mirror.promisc = on;
                self.apply(|c, _| c.set_promiscuous(on));
            }
            Cmd::Allmulti(on) => {
                self.mirror.allmulti = on;
                self.apply(|c, _| c.set_allmulticast(on));
            }
            Cmd::McList(list) => {
                self.apply(|c, _| c.set_multicast_list(&list));
                self.mirror.mc_list = list;
            }
            Cmd::Start => {
                self.mirror.started = true;
                match &mut self.st {
                    St::Paired { dev, .. } => {
                        dev.refused = false;
                        self.maybe_switch()
                    }
                    St::Offered {
                        serial, next: None, ..
                    } => {
                        let serial = *serial;
                        self.try_pair(serial, now)
                    }
                    _ => {}
                }
            }
            Cmd::Stop(ack) => {
                self.mirror.started = false;
                if matches!(self.st, St::Paired { .. }) {
                    self.close(VfReason::Stopped, None);
                }
                let _ = ack.send(());
            }
            Cmd::Shutdown(ack) => {
                self.mirror.started = false;
                if matches!(self.st, St::Paired { .. }) {
                    self.close(VfReason::Stopped, None);
                }
                self.st = St::Idle;
                let _ = ack.send(());
                return false;
            }
        }
        true
    }

    fn switched(&self) -> bool {
        matches!(&self.st, St::Paired { dev, .. } if dev.switched)
    }

    fn apply(&self, f: impl Fn(&dyn NetdevOps, &Paired) -> super::backend::BResult<()>) {
        if let St::Paired { dev, .. } = &self.st {
            let _ = f(dev.ctl.as_ref(), dev);
        }
    }

    fn on_assoc(&mut self, allocated: bool, serial: u32, now: Instant) {
        match (&mut self.st, allocated) {
            // The same VF offered again: a switch the host refused is tried once more.
            (St::Paired { serial: s, dev }, true) if *s == serial => {
                if dev.refused {
                    dev.refused = false;
                    self.maybe_switch();
                }
            }
            (
                St::Offered {
                    serial: s, next, ..
                },
                true,
            ) if *s == serial && next.is_some() => {}
            (St::Paired { .. }, true) => {
                self.close(VfReason::Replaced, None);
                self.offer(serial, now);
            }
            (_, true) => self.offer(serial, now),
            (St::Idle, false) => {}
            (_, false) => {
                let old = match &self.st {
                    St::Offered { serial, .. } | St::Paired { serial, .. } => *serial,
                    St::Idle => serial,
                };
                if matches!(self.st, St::Paired { .. }) {
                    self.close(VfReason::Revoked, None);
                }
                self.st = St::Idle;
                self.event(VfState::Revoked, old, VfReason::Revoked, None);
            }
        }
    }

    fn offer(&mut self, serial: u32, now: Instant) {
        self.watch();
        self.st = St::Offered {
            serial,
            attempts: 0,
            next: Some(now),
        };
        self.event(VfState::Offered, serial, VfReason::None, None);
        self.try_pair(serial, now);
    }

    fn on_link(&mut self, ch: LinkChange, now: Instant) {
        match &mut self.st {
            St::Paired { dev, .. } => match ch {
                LinkChange::Removed { ifindex, .. } if ifindex == dev.ifindex => {
                    self.close(VfReason::NetdevRemoved, Some(now));
                }
                LinkChange::Changed { ifindex, name, .. } if ifindex == dev.ifindex => {
                    if dev.name != name {
                        self.shared.vf.update_info(|i| i.iface = Some(name.clone()));
                        dev.name = name;
                    }
                    // The event may describe a state already gone (queued before we set the netdev up): act on
                    // the netdev's current state; one that cannot be read is down.
                    let (up, running) = self.backend.link_state(ifindex).unwrap_or((false, false));
                    let was = dev.running;
                    dev.running = up && running;
                    if was && !dev.running {
                        self.close(VfReason::LinkDown, None);
                    } else if dev.running && !dev.switched {
                        self.maybe_switch();
                    }
                }
                _ => {}
            },
            St::Offered {
                serial,
                attempts,
                next,
            } => {
                let wake = match &ch {
                    LinkChange::Added { .. } => true,
                    LinkChange::Changed { up, running, .. } => next.is_none() && *up && *running,
                    LinkChange::Removed { .. } => false,
                };
                if wake {
                    let serial = *serial;
                    if next.is_none() {
                        *attempts = 0;
                    }
                    self.try_pair(serial, now);
                    // The change that woke us may be about the netdev just paired (it runs: switch).
                    if matches!(ch, LinkChange::Changed { .. })
                        && matches!(self.st, St::Paired { .. })
                    {
                        self.on_link(ch, now);
                    }
                }
            }
            St::Idle => {}
        }
    }

    /// The netdev to pair: same PCI slot as the serial, else same MAC; never another MAC, never our own.
    fn find(&self, serial: u32) -> Result<Option<NetdevInfo>, &'static str> {
        let mac = self.host.mac();
        let own = self.host.own_iface();
        let list = self.backend.list().map_err(|_| "netdev list failed")?;
        let cands: Vec<NetdevInfo> = list
            .into_iter()
            .filter(|n| own.as_deref() != Some(n.name.as_str()))
            .filter(|n| n.driver.as_deref() != Some("hv_netvsc"))
            .collect();
        let mac_of = |n: &NetdevInfo| n.perm_mac.or(n.mac);
        let mut unreadable = false;
        for n in &cands {
            if n.pci_slot == Some(serial) {
                match mac_of(n) {
                    Some(m) if m == mac => return Ok(Some(n.clone())),
                    None => unreadable = true,
                    _ => {}
                }
            }
        }
        if let Some(n) = cands.iter().find(|n| mac_of(n) == Some(mac)) {
            return Ok(Some(n.clone()));
        }
        if unreadable || cands.iter().any(|n| n.mac.is_none()) {
            return Err("netdev MAC unreadable (renaming?)");
        }
        Ok(None)
    }

    fn try_pair(&mut self, serial: u32, now: Instant) {
        let St::Offered { attempts, .. } = self.st else {
            return;
        };
        let attempts = attempts + 1;
        self.shared.vf.pair_attempts.fetch_add(1, Relaxed);
        let found = self.find(serial).ok().flatten();
        let retry = |m: &mut Self| {
            if attempts >= m.cfg.retries.max(1) {
                m.st = St::Offered {
                    serial,
                    attempts,
                    next: None,
                };
                m.failure(serial, VfFailure::PairingGaveUp { attempts }, None);
            } else {
                m.st = St::Offered {
                    serial,
                    attempts,
                    next: Some(now + m.cfg.retry_period),
                };
            }
        };
        let Some(n) = found else {
            retry(self);
            return;
        };
        match self.open(&n) {
            Ok(dev) => {
                self.st = St::Paired { serial, dev };
                if let St::Paired { dev, .. } = &self.st {
                    self.event(VfState::Paired, serial, VfReason::None, Some(dev));
                }
                self.maybe_switch();
            }
            Err(f) => {
                self.failure(serial, f, Some(&n.name));
                retry(self);
            }
        }
    }

    fn open(&mut self, n: &NetdevInfo) -> Result<Box<Paired>, VfFailure> {
        let code = |e: super::backend::BackendError| {
            if e.gone {
                VfFailure::Vanished
            } else {
                VfFailure::OpenFailed
            }
        };
        if !self.cfg.open_pause.is_zero() {
            std::thread::sleep(self.cfg.open_pause);
        }
        let ctl = self.backend.control(n.ifindex).map_err(code)?;
        let m = &self.mirror;
        if m.mtu != 0 && m.mtu != n.mtu {
            ctl.set_mtu(m.mtu).map_err(code)?;
        }
        ctl.set_promiscuous(m.promisc).map_err(code)?;
        ctl.set_allmulticast(m.allmulti).map_err(code)?;
        ctl.set_multicast_list(&m.mc_list).map_err(code)?;
        ctl.set_up(true).map_err(code)?;
        let queues = self.host.queue_count().min(n.channels.max(1));
        let mtu = if m.mtu != 0 { m.mtu } else { n.mtu };
        let frame_size = (mtu + 14 + 4 + 256).next_power_of_two().max(2048);
        let pcfg = PortConfig {
            queues,
            prefer: self.cfg.prefer,
            ring_frames: self.cfg.ring_frames,
            frame_size,
            fail_when_stopped: true,
        };
        let mut port = self.backend.open_port(n.ifindex, &pcfg).map_err(code)?;
        let qs = port.take_queues();
        let queues = qs.len() as u32;
        self.shared
            .vf
            .attach_stats(qs.iter().map(|q| q.stats()).collect());
        self.host.install(qs);
        let name = ctl.name().unwrap_or_else(|_| n.name.clone());
        Ok(Box::new(Paired {
            ifindex: n.ifindex,
            name,
            mode: port.mode(),
            ctl,
            _port: port,
            queues,
            // A netdev that was running before we set it up still is; otherwise netlink says when.
            running: n.up && n.running,
            switched: false,
            refused: false,
        }))
    }

    fn maybe_switch(&mut self) {
        let started = self.mirror.started;
        let St::Paired { serial, dev } = &mut self.st else {
            return;
        };
        if dev.switched || dev.refused || !dev.running || !started {
            return;
        }
        let serial = *serial;
        match self.host.switch(true) {
            Ok(()) => {
                dev.switched = true;
                self.host.set_tx(true);
                self.shared.vf.switches.fetch_add(1, Relaxed);
                if let St::Paired { dev, .. } = &self.st {
                    self.event(VfState::Switched, serial, VfReason::None, Some(dev));
                }
            }
            Err(e) => {
                let name = dev.name.clone();
                let f = match e {
                    SwitchError::Refused(status) => VfFailure::SwitchRefused { status },
                    SwitchError::Failed => VfFailure::SwitchFailed,
                };
                // Stay paired on the synthetic path; a later link change or start retries.
                dev.refused = true;
                self.failure(serial, f, Some(&name));
            }
        }
    }

    /// Data path to synthetic first, then close the VF; the state becomes Offered (`next` = when to retry,
    /// `None` = wait for a link event or a new association).
    fn close(&mut self, reason: VfReason, next: Option<Instant>) {
        let St::Paired { serial, dev } = std::mem::replace(&mut self.st, St::Idle) else {
            return;
        };
        if dev.switched {
            self.host.set_tx(false);
            let _ = self.host.switch(false);
        }
        let lost = self.host.remove();
        self.shared.vf.lost_frames.fetch_add(lost, Relaxed);
        self.shared.vf.retire_stats();
        let mut d = dev;
        d.switched = false;
        self.event(VfState::Removed, serial, reason, Some(&d));
        drop(d);
        self.st = St::Offered {
            serial,
            attempts: 0,
            next,
        };
    }
}

/// The running manager of one device.
pub(crate) struct Handle {
    pub tx: Sender<Cmd>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Handle {
    /// Ask and wait (bounded) for an acknowledged command.
    pub fn call(&self, make: impl FnOnce(Sender<()>) -> Cmd, wait: Duration) {
        let (ack, done) = std::sync::mpsc::channel();
        if self.tx.send(make(ack)).is_ok() {
            let _ = done.recv_timeout(wait);
        }
    }

    /// Shut the manager down: VF closed (data path synthetic), threads joined.
    pub fn shutdown(mut self, wait: Duration) {
        self.call(Cmd::Shutdown, wait);
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Start the manager thread for a device (it starts its netlink helper with the first VF offer).
pub(crate) fn spawn<B: Backend, H: Host>(
    mut m: Manager<B, H>,
    tx: Sender<Cmd>,
    rx: Receiver<Cmd>,
    name: &str,
) -> std::io::Result<Handle> {
    let stop = Arc::new(AtomicBool::new(false));
    m.watcher = Some(Watcher {
        tx: tx.clone(),
        stop: stop.clone(),
        name: name.to_string(),
        thread: None,
    });
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("netvsc-vf-{name}"))
        .spawn(move || {
            while !stop2.load(Ordering::Acquire) {
                let now = Instant::now();
                let wait = m
                    .deadline()
                    .map_or(CONTROL_POLL, |d| d.saturating_duration_since(now))
                    .min(CONTROL_POLL);
                match rx.recv_timeout(wait) {
                    Ok(cmd) => {
                        if !m.handle(cmd, Instant::now()) {
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => m.host.poll_control(),
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                m.tick(Instant::now());
            }
            m.stop_watch();
        })?;
    Ok(Handle {
        tx,
        stop,
        threads: vec![thread],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devargs::Devargs;
    use crate::shared::AggLimits;
    use crate::vf::backend::{BResult, BackendError, Watch};
    use vf_netdev::{Mode, VfQueueStats, VfRx, VfTx};

    const MAC: Mac = [0x00, 0x15, 0x5d, 0, 0, 1];
    const OTHER: Mac = [0x00, 0x15, 0x5d, 0, 0, 2];

    #[derive(Default)]
    struct World {
        netdevs: Vec<NetdevInfo>,
        log: Vec<String>,
        open_gone: bool,
        switch_result: Option<SwitchError>,
        events: Vec<Event>,
        lanes: usize,
        tx: bool,
    }

    type W = Arc<Mutex<World>>;

    fn w(world: &W) -> std::sync::MutexGuard<'_, World> {
        world.lock().unwrap()
    }

    struct FakeBackend(W);
    struct FakeHost(W);
    struct FakeCtl(W, u32);
    struct FakePort;
    struct FakeQueue(Arc<VfQueueStats>);

    impl Backend for FakeBackend {
        fn list(&self) -> BResult<Vec<NetdevInfo>> {
            Ok(w(&self.0).netdevs.clone())
        }
        fn link_state(&self, ifindex: u32) -> BResult<(bool, bool)> {
            let g = w(&self.0);
            Ok(g.netdevs
                .iter()
                .find(|n| n.ifindex == ifindex)
                .map_or((false, false), |n| (n.up, n.running)))
        }
        fn control(&self, ifindex: u32) -> BResult<Box<dyn NetdevOps>> {
            Ok(Box::new(FakeCtl(self.0.clone(), ifindex)))
        }
        fn open_port(&self, ifindex: u32, cfg: &PortConfig) -> BResult<Box<dyn PortOps>> {
            let mut g = w(&self.0);
            if g.open_gone {
                g.netdevs.retain(|n| n.ifindex != ifindex);
                return Err(BackendError {
                    gone: true,
                    stopped: false,
                    detail: "gone".into(),
                });
            }
            g.log.push(format!("open {ifindex} q{}", cfg.queues));
            Ok(Box::new(FakePort))
        }
        fn watcher(&self) -> Option<Box<dyn Watch>> {
            None
        }
    }

    impl NetdevOps for FakeCtl {
        fn name(&self) -> BResult<String> {
            let g = w(&self.0);
            Ok(g.netdevs
                .iter()
                .find(|n| n.ifindex == self.1)
                .map_or("?".into(), |n| n.name.clone()))
        }
        fn set_up(&self, up: bool) -> BResult<()> {
            w(&self.0).log.push(format!("up {up}"));
            Ok(())
        }
        fn set_promiscuous(&self, on: bool) -> BResult<()> {
            w(&self.0).log.push(format!("promisc {on}"));
            Ok(())
        }
        fn set_allmulticast(&self, on: bool) -> BResult<()> {
            w(&self.0).log.push(format!("allmulti {on}"));
            Ok(())
        }
        fn set_mtu(&self, mtu: u32) -> BResult<()> {
            w(&self.0).log.push(format!("mtu {mtu}"));
            Ok(())
        }
        fn set_multicast_list(&self, list: &[Mac]) -> BResult<()> {
            w(&self.0).log.push(format!("mc {}", list.len()));
            Ok(())
        }
    }

    impl PortOps for FakePort {
        fn mode(&self) -> Mode {
            Mode::AfPacket
        }
        fn take_queues(&mut self) -> Vec<Box<dyn QueueOps>> {
            vec![Box::new(FakeQueue(Arc::new(VfQueueStats::default()))) as Box<dyn QueueOps>]
        }
    }

    impl QueueOps for FakeQueue {
        fn rx_burst(&mut self, _max: usize, _f: &mut dyn FnMut(&[u8], VfRx)) -> BResult<usize> {
            Ok(0)
        }
        fn tx_burst(&mut self, frames: &[VfTx<'_>]) -> BResult<usize> {
            Ok(frames.len())
        }
        fn tx_supports_gso(&self) -> bool {
            true
        }
        fn poll_tx(&mut self) -> BResult<usize> {
            Ok(0)
        }
        fn stats(&self) -> Arc<VfQueueStats> {
            self.0.clone()
        }
    }

    impl Host for FakeHost {
        fn mac(&self) -> Mac {
            MAC
        }
        fn own_iface(&self) -> Option<String> {
            Some("eth0".into())
        }
        fn queue_count(&self) -> u32 {
            4
        }
        fn switch(&self, to_vf: bool) -> Result<(), SwitchError> {
            let mut g = w(&self.0);
            g.log.push(format!("switch {to_vf}"));
            match g.switch_result {
                Some(e) if to_vf => Err(e),
                _ => Ok(()),
            }
        }
        fn install(&self, queues: Vec<Box<dyn QueueOps>>) {
            w(&self.0).lanes = queues.len();
        }
        fn set_tx(&self, on: bool) {
            w(&self.0).tx = on;
        }
        fn remove(&self) -> u64 {
            let mut g = w(&self.0);
            g.log.push("remove".into());
            g.lanes = 0;
            g.tx = false;
            3
        }
        fn poll_control(&self) {}
        fn push_event(&self, ev: Event) {
            w(&self.0).events.push(ev);
        }
    }

    fn nd(ifindex: u32, name: &str, mac: Option<Mac>, slot: Option<u32>) -> NetdevInfo {
        NetdevInfo {
            name: name.into(),
            ifindex,
            mac,
            perm_mac: None,
            pci_slot: slot,
            up: false,
            running: false,
            mtu: 1500,
            driver: Some("mlx5_core".into()),
            channels: 2,
        }
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new(
            vmbus_ring::SharedMem::alloc(4096),
            AggLimits {
                max_pkts: 1,
                max_bytes: 4096,
                align: 8,
            },
            Devargs::default(),
        ))
    }

    fn manager(world: &W, started: bool) -> (Manager<FakeBackend, FakeHost>, Arc<Shared>) {
        let sh = shared();
        let cfg = VfConfig {
            retry_period: Duration::from_millis(10),
            retries: 5,
            ..VfConfig::default()
        };
        let mirror = Mirror {
            allmulti: true,
            mtu: 1500,
            started,
            ..Mirror::default()
        };
        let m = Manager::new(
            FakeBackend(world.clone()),
            FakeHost(world.clone()),
            cfg,
            sh.clone(),
            mirror,
        );
        (m, sh)
    }

    fn states(world: &W) -> Vec<(VfState, VfReason)> {
        w(world)
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Vf { state, reason, .. } => Some((*state, *reason)),
                _ => None,
            })
            .collect()
    }

    fn failures(world: &W) -> Vec<VfFailure> {
        w(world)
            .events
            .iter()
            .filter_map(|e| match e {
                Event::VfError { failure, .. } => Some(*failure),
                _ => None,
            })
            .collect()
    }

    /// The netdev runs now (as the fake kernel reports it), and the event saying so.
    fn up(world: &W, ifindex: u32, name: &str) -> Cmd {
        for n in w(world).netdevs.iter_mut().filter(|n| n.ifindex == ifindex) {
            n.up = true;
            n.running = true;
        }
        Cmd::Link(LinkChange::Changed {
            ifindex,
            name: name.into(),
            up: true,
            running: true,
        })
    }

    fn assoc(m: &mut Manager<FakeBackend, FakeHost>, allocated: bool, serial: u32, t: Instant) {
        m.handle(Cmd::Assoc { allocated, serial }, t);
    }

    #[test]
    fn pairs_by_serial_then_mac_never_another_mac_or_our_own() {
        let world = W::default();
        w(&world).netdevs = vec![
            nd(1, "eth0", Some(MAC), None),          // our own synthetic iface
            nd(2, "wrongmac", Some(OTHER), Some(7)), // right slot, wrong MAC
            nd(3, "bymac", Some(MAC), None),
            nd(4, "byslot", Some(MAC), Some(7)),
        ];
        let (mut m, sh) = manager(&world, true);
        let t = Instant::now();
        assoc(&mut m, true, 7, t);
        let info = sh.vf.info().unwrap();
        assert_eq!(info.iface.as_deref(), Some("byslot"));
        assert_eq!(info.state, VfState::Paired);
        assert_eq!(info.queues, 1);
        // Not running yet: no switch.
        assert!(!w(&world).log.iter().any(|l| l.starts_with("switch")));
        // Without the slot match, the MAC match wins; the wrong MAC never does.
        let world2 = W::default();
        w(&world2).netdevs = vec![
            nd(2, "wrongmac", Some(OTHER), Some(7)),
            nd(3, "bymac", Some(MAC), None),
        ];
        let (mut m2, sh2) = manager(&world2, true);
        m2.handle(
            Cmd::Assoc {
                allocated: true,
                serial: 7,
            },
            t,
        );
        assert_eq!(sh2.vf.info().unwrap().iface.as_deref(), Some("bymac"));
        // The mirrored settings went to the netdev before it was set up and opened (min(4 queues, 2 channels)).
        let log = w(&world2).log.clone();
        assert_eq!(
            log,
            [
                "promisc false",
                "allmulti true",
                "mc 0",
                "up true",
                "open 3 q2"
            ]
        );
    }

    #[test]
    fn retries_then_gives_up_and_a_late_netdev_pairs() {
        let world = W::default();
        w(&world).netdevs = vec![nd(2, "other", Some(OTHER), None)];
        let (mut m, sh) = manager(&world, true);
        let mut t = Instant::now();
        assoc(&mut m, true, 9, t);
        for _ in 0..10 {
            t += Duration::from_millis(10);
            m.tick(t);
        }
        assert_eq!(sh.vf.pair_attempts.load(Relaxed), 5);
        assert_eq!(failures(&world), [VfFailure::PairingGaveUp { attempts: 5 }]);
        assert!(m.deadline().is_none());
        // It appears after all: the netlink Added event pairs it.
        w(&world).netdevs.push(nd(5, "late", Some(MAC), None));
        m.handle(
            Cmd::Link(LinkChange::Added {
                ifindex: 5,
                name: "late".into(),
            }),
            t,
        );
        assert_eq!(sh.vf.info().unwrap().state, VfState::Paired);
    }

    #[test]
    fn unreadable_mac_retries_until_the_rename_settles() {
        let world = W::default();
        w(&world).netdevs = vec![nd(5, "tmp", None, Some(3))];
        let (mut m, sh) = manager(&world, true);
        let mut t = Instant::now();
        assoc(&mut m, true, 3, t);
        assert_eq!(states(&world), [(VfState::Offered, VfReason::None)]);
        w(&world).netdevs = vec![nd(5, "enP3s3", Some(MAC), Some(3))];
        t += Duration::from_millis(10);
        m.tick(t);
        assert_eq!(sh.vf.info().unwrap().iface.as_deref(), Some("enP3s3"));
    }

    #[test]
    fn switches_when_running_and_started_then_fails_over_synthetic_first() {
        let world = W::default();
        w(&world).netdevs = vec![nd(4, "vf", Some(MAC), Some(7))];
        let (mut m, sh) = manager(&world, false);
        let t = Instant::now();
        assoc(&mut m, true, 7, t);
        m.handle(up(&world, 4, "vf"), t);
        assert!(!w(&world).tx, "not started: no switch");
        m.handle(Cmd::Start, t);
        assert!(w(&world).tx);
        let info = sh.vf.info().unwrap();
        assert!(info.switched && info.state == VfState::Switched);
        assert_eq!(sh.vf.switches.load(Relaxed), 1);
        // Carrier lost: synthetic first, then the VF closed.
        w(&world).log.clear();
        w(&world).netdevs[0].running = false;
        m.handle(
            Cmd::Link(LinkChange::Changed {
                ifindex: 4,
                name: "vf".into(),
                up: true,
                running: false,
            }),
            t,
        );
        assert_eq!(w(&world).log, ["switch false", "remove"]);
        assert_eq!(sh.vf.lost_frames.load(Relaxed), 3);
        assert_eq!(
            states(&world).last(),
            Some(&(VfState::Removed, VfReason::LinkDown))
        );
        assert!(m.deadline().is_none(), "waits for the link, no timer");
        // Carrier back: paired and switched again.
        m.handle(up(&world, 4, "vf"), t);
        assert_eq!(sh.vf.info().unwrap().state, VfState::Switched);
        assert_eq!(sh.vf.switches.load(Relaxed), 2);
    }

    #[test]
    fn removal_revoke_host_switch_and_stop() {
        let world = W::default();
        w(&world).netdevs = vec![nd(4, "vf", Some(MAC), Some(7))];
        let (mut m, sh) = manager(&world, true);
        let t = Instant::now();
        let offer_up = |m: &mut Manager<FakeBackend, FakeHost>, world: &W, ifindex| {
            assoc(m, true, 7, t);
            m.handle(up(world, ifindex, "vf"), t);
        };
        offer_up(&mut m, &world, 4);
        assert_eq!(sh.vf.info().unwrap().state, VfState::Switched);
        // Hot-remove: synthetic, closed, pairing timer running again.
        w(&world).log.clear();
        w(&world).netdevs.clear();
        m.handle(
            Cmd::Link(LinkChange::Removed {
                ifindex: 4,
                name: "vf".into(),
            }),
            t,
        );
        assert_eq!(w(&world).log, ["switch false", "remove"]);
        assert!(m.deadline().is_some());
        // It comes back.
        w(&world).netdevs = vec![nd(6, "vf", Some(MAC), Some(7))];
        m.handle(
            Cmd::Link(LinkChange::Added {
                ifindex: 6,
                name: "vf".into(),
            }),
            t,
        );
        m.handle(up(&world, 6, "vf"), t);
        assert_eq!(sh.vf.info().unwrap().ifindex, 6);
        assert!(sh.vf.info().unwrap().switched);
        // The host switches back itself: no switch sent, VF closed, wait for an event.
        w(&world).log.clear();
        m.handle(Cmd::HostSwitch { to_vf: false }, t);
        assert_eq!(w(&world).log, ["remove"]);
        assert_eq!(
            states(&world).last(),
            Some(&(VfState::Removed, VfReason::HostSwitched))
        );
        // A new association re-pairs.
        offer_up(&mut m, &world, 6);
        w(&world).netdevs[0].up = true;
        w(&world).netdevs[0].running = true;
        assert!(sh.vf.info().unwrap().switched);
        // Stop: synthetic first, then closed, then acknowledged.
        w(&world).log.clear();
        let (ack, done) = std::sync::mpsc::channel();
        m.handle(Cmd::Stop(ack), t);
        assert!(done.try_recv().is_ok());
        assert_eq!(w(&world).log, ["switch false", "remove"]);
        // Start again pairs and switches.
        m.handle(Cmd::Start, t);
        assert!(sh.vf.info().unwrap().switched);
        // Revoke.
        w(&world).log.clear();
        assoc(&mut m, false, 7, t);
        assert_eq!(w(&world).log, ["switch false", "remove"]);
        assert_eq!(
            states(&world).last(),
            Some(&(VfState::Revoked, VfReason::Revoked))
        );
        assert!(sh.vf.info().unwrap().iface.is_none());
    }

    #[test]
    fn refused_switch_and_vanishing_netdev_are_typed_events() {
        let world = W::default();
        w(&world).netdevs = vec![nd(4, "vf", Some(MAC), Some(7))];
        w(&world).switch_result = Some(SwitchError::Refused(2));
        let (mut m, sh) = manager(&world, true);
        let t = Instant::now();
        assoc(&mut m, true, 7, t);
        m.handle(up(&world, 4, "vf"), t);
        assert_eq!(failures(&world), [VfFailure::SwitchRefused { status: 2 }]);
        assert!(!w(&world).tx);
        let info = sh.vf.info().unwrap();
        assert_eq!((info.state, info.switched), (VfState::Paired, false));
        // Further link events do not hammer the host.
        m.handle(up(&world, 4, "vf"), t);
        assert_eq!(
            w(&world)
                .log
                .iter()
                .filter(|l| l.starts_with("switch"))
                .count(),
            1
        );
        // A netdev that vanishes while its port opens.
        let world2 = W::default();
        w(&world2).netdevs = vec![nd(4, "vf", Some(MAC), Some(7))];
        w(&world2).open_gone = true;
        let (mut m2, _) = manager(&world2, true);
        m2.handle(
            Cmd::Assoc {
                allocated: true,
                serial: 7,
            },
            t,
        );
        assert_eq!(failures(&world2), [VfFailure::Vanished]);
        assert!(m2.deadline().is_some(), "retrying");
    }
}

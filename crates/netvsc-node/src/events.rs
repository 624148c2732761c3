//! Device events to JS: one Rust thread per device runs the driver's upkeep (`Device::maintain`: control path,
//! telemetry page, recovery) every 2 ms, drains the driver's event queue and hands each event to ONE
//! ThreadsafeFunction with a bounded queue, called `NonBlocking`. When the queue is full the events wait in a small local backlog; past its bound, link and VF
//! events are merged (the latest state of each kind survives, in order) and the merge is counted and reported
//! on the next delivered event as `coalesced`. The TSFN is strong (it keeps the loop alive like a socket) until
//! `unref()`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use napi::Env;
use napi::Status;
use napi::bindgen_prelude::Function;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use crate::errors::{Code, Result, error};
use crate::nic::DeviceCore;

/// Tick of the event thread.
const TICK: Duration = Duration::from_millis(2);
/// Events held back while JS is busy before they are merged.
const BACKLOG_MAX: usize = 64;

/// One event: `kind` is `link`, `speed`, `vf` (association), `datapath`, `vfstate`, `vferror` or `error`.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct NativeEvent {
    pub kind: String,
    /// `link`: media connected.
    pub up: Option<bool>,
    /// `link`/`speed`: speed in Mbit/s.
    pub speed_mbps: Option<f64>,
    /// `vf`: a VF is offered (true) or withdrawn.
    pub allocated: Option<bool>,
    /// `vf`: its serial.
    pub serial: Option<u32>,
    /// `datapath`: the host switched to the VF (true) or back to synthetic.
    pub to_vf: Option<bool>,
    /// `vfstate`: `offered`, `paired`, `switched`, `removed` or `revoked`.
    pub state: Option<String>,
    /// `vfstate`/`vferror`: the VF netdev.
    pub iface: Option<String>,
    /// `vfstate`: `af_xdp` or `af_packet`.
    pub mode: Option<String>,
    /// `vfstate`: why (`none`, `link_down`, `netdev_removed`, `queue_error`, `host_switched`, `stopped`, ...).
    pub reason: Option<String>,
    /// `vferror`: `pairing_gave_up`, `switch_refused`, `switch_failed`, `vanished`, `open_failed`, `old_protocol`.
    pub failure: Option<String>,
    /// `vferror`: the host's status (switch_refused), attempts (pairing_gave_up) or NVSP version (old_protocol).
    pub detail: Option<u32>,
    /// `vfstate`/`vferror`: wall-clock time in ms since the Unix epoch (µs resolution).
    pub at: Option<f64>,
    /// `error`: what went wrong.
    pub message: Option<String>,
    /// `error`: stable `ERR_NETVSC_*` code.
    pub code: Option<String>,
    /// `error` (ring): the queue concerned.
    pub queue: Option<u32>,
    /// `error` (ring): the ring field or rule broken.
    pub what: Option<String>,
    /// `error` (ring): data-area offset of the packet concerned.
    pub offset: Option<u32>,
    /// `recovered`: recoveries so far.
    pub count: Option<f64>,
    /// Events merged away before this one because JS did not keep up.
    pub coalesced: Option<u32>,
}

pub type Tsfn = ThreadsafeFunction<NativeEvent, (), NativeEvent, Status, false, false, 64>;

/// The event thread of one device.
pub struct EventPump {
    stop: Arc<AtomicBool>,
    coalesced: Arc<AtomicU32>,
    thread: Option<JoinHandle<()>>,
    tsfn: Arc<Tsfn>,
    referenced: bool,
}

impl EventPump {
    /// The threadsafe function for `cb`, made on the JS thread (before an off-thread bring-up).
    pub fn prepare(cb: &Function<NativeEvent, ()>) -> Result<Tsfn> {
        cb.build_threadsafe_function::<NativeEvent>()
            .callee_handled::<false>()
            .max_queue_size::<64>()
            .weak::<false>()
            .build_callback(|ctx| Ok(ctx.value))
            .map_err(|e| error(Code::Napi, format!("cannot create the event function: {e}")))
    }

    pub fn start(
        _env: &Env,
        cb: &Function<NativeEvent, ()>,
        core: Arc<DeviceCore>,
    ) -> Result<EventPump> {
        Self::start_with(Self::prepare(cb)?, core)
    }

    /// Start the event thread on a prepared function (any thread).
    pub fn start_with(tsfn: Tsfn, core: Arc<DeviceCore>) -> Result<EventPump> {
        let tsfn = Arc::new(tsfn);
        let stop = Arc::new(AtomicBool::new(false));
        let coalesced = Arc::new(AtomicU32::new(0));
        let thread = {
            let (tsfn, stop, coalesced) = (tsfn.clone(), stop.clone(), coalesced.clone());
            std::thread::Builder::new()
                .name(format!(
                    "netvsc-events-{}",
                    &core.uuid[..8.min(core.uuid.len())]
                ))
                .spawn(move || run(&core, &tsfn, &stop, &coalesced))
                .map_err(|e| error(Code::Io, format!("cannot start the event thread: {e}")))?
        };
        Ok(EventPump {
            stop,
            coalesced,
            thread: Some(thread),
            tsfn,
            referenced: true,
        })
    }

    pub fn coalesced(&self) -> u32 {
        self.coalesced.load(Ordering::Relaxed)
    }

    /// Hold (true) or release (false) the event loop.
    pub fn set_ref(&mut self, env: &Env, on: bool) -> Result<()> {
        if self.referenced == on {
            return Ok(());
        }
        let raw = self.tsfn.raw();
        // SAFETY: `raw` is a live threadsafe function (we hold an Arc to it) created on this env's thread, and
        // ref/unref are called from that JS thread as Node-API requires.
        let status = unsafe {
            if on {
                napi::sys::napi_ref_threadsafe_function(env.raw(), raw)
            } else {
                napi::sys::napi_unref_threadsafe_function(env.raw(), raw)
            }
        };
        if status != napi::sys::Status::napi_ok {
            return Err(error(
                Code::Napi,
                format!("napi_(un)ref_threadsafe_function failed: status {status}"),
            ));
        }
        self.referenced = on;
        Ok(())
    }

    /// Stop the thread; `join` waits for it (never from a finalizer).
    pub fn stop(mut self, join: bool) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take()
            && join
        {
            let _ = t.join();
        }
    }
}

impl Drop for EventPump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn convert(ev: netvsc::Event, speed: u32) -> NativeEvent {
    let mbps = |s: u32| Some(f64::from(s) / 10_000.0);
    match ev {
        netvsc::Event::LinkUp => NativeEvent {
            kind: "link".into(),
            up: Some(true),
            speed_mbps: mbps(speed),
            ..Default::default()
        },
        netvsc::Event::LinkDown => NativeEvent {
            kind: "link".into(),
            up: Some(false),
            speed_mbps: mbps(speed),
            ..Default::default()
        },
        netvsc::Event::LinkSpeed(s) => NativeEvent {
            kind: "speed".into(),
            speed_mbps: mbps(s),
            ..Default::default()
        },
        netvsc::Event::VfAssociation { allocated, serial } => NativeEvent {
            kind: "vf".into(),
            allocated: Some(allocated),
            serial: Some(serial),
            ..Default::default()
        },
        netvsc::Event::HostDataPath { to_vf } => NativeEvent {
            kind: "datapath".into(),
            to_vf: Some(to_vf),
            ..Default::default()
        },
        netvsc::Event::Vf {
            state,
            serial,
            iface,
            mode,
            reason,
            at_ns,
        } => NativeEvent {
            kind: "vfstate".into(),
            state: Some(state.as_str().into()),
            serial: Some(serial),
            iface: iface.map(|n| n.as_str().into()),
            mode: mode.map(|m| m.as_str().into()),
            reason: Some(reason.as_str().into()),
            at: Some(ms(at_ns)),
            ..Default::default()
        },
        netvsc::Event::VfError {
            serial,
            failure,
            iface,
            at_ns,
        } => NativeEvent {
            kind: "vferror".into(),
            serial: Some(serial),
            iface: iface.map(|n| n.as_str().into()),
            failure: Some(failure.as_str().into()),
            detail: match failure {
                netvsc::VfFailure::PairingGaveUp { attempts } => Some(attempts),
                netvsc::VfFailure::SwitchRefused { status } => Some(status),
                netvsc::VfFailure::OldProtocol { nvsp_version } => Some(nvsp_version),
                _ => None,
            },
            at: Some(ms(at_ns)),
            ..Default::default()
        },
        netvsc::Event::Error {
            code,
            queue,
            what,
            offset,
        } => NativeEvent {
            kind: "error".into(),
            code: Some(code.as_str().into()),
            message: Some(format!(
                "queue {queue}: corrupt ring: {what} (packet at data offset {offset:#x})"
            )),
            queue: Some(u32::from(queue)),
            what: Some(what.into()),
            offset: Some(offset),
            ..Default::default()
        },
        netvsc::Event::Recovered { count } => NativeEvent {
            kind: "recovered".into(),
            count: Some(count as f64),
            ..Default::default()
        },
    }
}

/// ns since the epoch → ms (f64 keeps µs at today's magnitudes).
fn ms(ns: u64) -> f64 {
    (ns / 1_000) as f64 / 1_000.0
}

/// Keep the latest event of each kind, in the order of those latest events.
fn coalesce(backlog: &mut VecDeque<NativeEvent>) -> u32 {
    let before = backlog.len();
    let mut seen: Vec<String> = Vec::new();
    let mut kept: VecDeque<NativeEvent> = VecDeque::new();
    while let Some(ev) = backlog.pop_back() {
        if !seen.contains(&ev.kind) {
            seen.push(ev.kind.clone());
            kept.push_front(ev);
        }
    }
    *backlog = kept;
    (before - backlog.len()) as u32
}

fn run(core: &DeviceCore, tsfn: &Tsfn, stop: &AtomicBool, coalesced: &AtomicU32) {
    let mut backlog: VecDeque<NativeEvent> = VecDeque::new();
    let mut merged = 0u32;
    while !stop.load(Ordering::Acquire) {
        {
            let mut g = core.lock();
            let Some(d) = g.as_mut() else { return };
            // The driver's upkeep: polls queue 0, publishes the telemetry page (and serves its capture requests)
            // every 100 ms, and after a ring error re-initialises the device (unless `recover: false`).
            if let Ok(true) = d.maintain() {
                core.refresh_stats(d);
            }
            let speed = d.cached_link().speed_100bps;
            while let Some(ev) = d.next_event() {
                backlog.push_back(convert(ev, speed));
            }
        }
        if backlog.len() > BACKLOG_MAX {
            let n = coalesce(&mut backlog);
            merged += n;
            coalesced.fetch_add(n, Ordering::Relaxed);
        }
        while let Some(ev) = backlog.front() {
            let mut ev = ev.clone();
            if merged > 0 {
                ev.coalesced = Some(merged);
            }
            match tsfn.call(ev, ThreadsafeFunctionCallMode::NonBlocking) {
                Status::Ok => {
                    merged = 0;
                    backlog.pop_front();
                }
                Status::QueueFull => break,
                Status::Closing => return,
                _ => {
                    backlog.pop_front();
                }
            }
        }
        std::thread::sleep(TICK);
    }
}

//! The NetVSP/RNDIS host: one [`Device`] shared by a worker thread per open channel and an rx pump.
//!
//! Workers sleep `latency` (the guest's monitor-page setting), look at their channel's trigger bits,
//! and drain the guest→host ring; the rx pump polls the backend, picks each frame's channel by RSS
//! and writes it into that channel's receive sub-allocations. Everything read from the guest is
//! copied and bounded first; a malformed message is counted by kind and answered, never a panic.

pub mod frame;
pub mod pool;

mod channel;
mod fault;
mod link;
mod nvsp;
mod oid;
mod rndis;
mod rx;
mod slow;
mod state;
mod tx;
pub(crate) mod vf;

pub(crate) use channel::DEFAULT_LATENCY_UNITS;
pub use channel::{Channel, ChannelSpec};
pub use fault::{FaultKind, FaultReport, FaultState};
pub use link::LinkPending;
pub use slow::{MAX_SLOW_MS, SlowHost, SlowRequest};
pub use state::{DeviceState, HISTORY, OffloadState, RecvBufInfo, RssState};
pub use vf::{VfHost, VfSession};

use crate::backend::Backend;
use crate::stats::Counters;
use netvsc_proto::nvsp::{self as proto_nvsp, NvspMessage, VfAssociation};
use pool::RecvPool;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;
use vmbus_ring::SharedMem;

/// Lock a mutex, ignoring poisoning (a panicked worker must not take the others down).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads guest pages named by GPA-direct packets (IOVA-as-VA: address = pfn × 4096 + offset).
pub trait GpaReader: Send + Sync {
    /// Copy `dst.len()` bytes at `pfn * 4096 + offset`.
    fn read(&self, pfn: u64, offset: u32, dst: &mut [u8]) -> Result<(), String>;

    /// Copy every range of a GPA-direct packet back to back into `dst` (sized to their total by the caller).
    fn read_ranges(&self, ranges: vmbus_ring::GpaRanges<'_>, dst: &mut [u8]) -> Result<(), String> {
        let mut at = 0;
        for r in ranges {
            let end = at + r.len as usize;
            let part = dst.get_mut(at..end).ok_or("ranges exceed the buffer")?;
            self.read(r.pfn, r.offset, part)?;
            at = end;
        }
        Ok(())
    }
}

/// Creates a subchannel's rings (in the emulated tree: `channels/<relid>/ring`).
pub trait ChannelFactory: Send + Sync {
    /// Create the channel and return both its rings (guest→host first half).
    fn create(
        &self,
        relid: u32,
        subchannel_id: u16,
        monitor_id: Option<u8>,
    ) -> Result<SharedMem, String>;
}

/// Raises "interrupts" towards the guest (the uio event count).
pub trait GuestSignal: Send + Sync {
    /// Signal the guest about channel `relid`.
    fn signal(&self, relid: u32);
    /// Number of irq-control writes the guest made (unmonitored channels signal this way).
    fn irq_writes(&self) -> u64 {
        0
    }
}

/// Shared regions of one NIC.
#[derive(Clone)]
pub struct DeviceMem {
    pub int_page: SharedMem,
    pub monitor_page: SharedMem,
    pub recv_buf: SharedMem,
    pub send_buf: SharedMem,
    pub recv_gpadl: u32,
    pub send_gpadl: u32,
}

/// What the host does with frames for the guest while its packet filter is NONE (0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FilterNone {
    /// Dropped and counted (`drops.filterNone`), as OpenVMM does (Hyper-V's behaviour).
    #[default]
    Drop,
    /// Left in the backend until a filter is set (the backend keeps or drops them).
    Hold,
}

/// Whether and how the host sends NVSP SEND_INDIRECTION_TABLE once the guest's subchannels are open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SendTable {
    /// As Hyper-V: at NVSP 5 and 6 the table sits after the whole NVSP message (byte 40) while its offset
    /// field says 12 (the host bug Linux's netvsc_send_table works around); at 6.1 table and offset agree (12).
    #[default]
    Hyperv,
    /// As OpenVMM at every version ≥ 5: offset 12, the table right after the header.
    OpenVmm,
    /// Never sent.
    Off,
}

/// Frame MTUs (Ethernet header included) the host accepts in NDIS_CONFIG; anything else means 1514 (OpenVMM's
/// `MIN_MTU..=MAX_MTU`, "as in the vmswitch").
pub const FRAME_MTU: std::ops::RangeInclusive<u32> = 1514..=9216;

/// Bytes OpenVMM keeps free in the host→guest ring before it takes more rx data (`ring_spare_capacity`).
pub const RING_HEADROOM: u32 = 2048;
/// Spacing of the two halves of a quick link flap (OpenVMM's `LINK_DELAY_DURATION`).
pub const LINK_DELAY: Duration = Duration::from_secs(5);

/// Static host settings.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub mac: [u8; 6],
    /// MTU without the Ethernet header (1500).
    pub mtu: u32,
    pub max_queues: u16,
    pub busy_poll: bool,
    pub monitored: bool,
    pub accept_versions: Option<Vec<u32>>,
    pub silent: bool,
    /// Link speed in 100 bps units.
    pub link_speed: u32,
    /// Spacing of a quick flap's two indications (see `link`); zero sends them together.
    pub link_delay: Duration,
    /// Frames for a guest whose packet filter is NONE.
    pub filter_none: FilterNone,
    /// Drop (and count) frames longer than the MTU + 14 in either direction; off: rx frames are limited only by
    /// the sub-allocation size and tx frames not at all.
    pub mtu_check: bool,
    /// Bytes of the host→guest ring rx data never takes (completions and control messages may).
    pub ring_headroom: u32,
    /// The send indirection table after subchannels open.
    pub send_table: SendTable,
    /// Delays of NVSP/RNDIS replies.
    pub slow: SlowHost,
}

/// Hooks the host needs from its surroundings.
pub struct HostEnv {
    pub mem: DeviceMem,
    pub signal: Arc<dyn GuestSignal>,
    pub factory: Arc<dyn ChannelFactory>,
    pub gpa: Arc<dyn GpaReader>,
    pub backend: Box<dyn Backend>,
    /// The VF's veth pair, when the emulator offers one.
    pub vf: Option<VfHost>,
    /// The VF's initial MAC.
    pub vf_mac: [u8; 6],
}

/// One emulated synthetic NIC.
pub struct Device {
    pub(crate) cfg: HostConfig,
    pub(crate) mem: DeviceMem,
    pub(crate) signal: Arc<dyn GuestSignal>,
    pub(crate) factory: Arc<dyn ChannelFactory>,
    pub(crate) gpa: Arc<dyn GpaReader>,
    pub(crate) state: Mutex<DeviceState>,
    pub(crate) pool: Mutex<RecvPool>,
    pub(crate) channels: RwLock<Vec<Arc<Channel>>>,
    pub(crate) backend: Mutex<Box<dyn Backend>>,
    pub(crate) counters: Counters,
    /// RNDIS control messages waiting for a free reserved sub-allocation.
    pub(crate) control_queue: Mutex<VecDeque<Vec<u8>>>,
    /// Replies a slow host holds back (see `slow`).
    pub(crate) delayed: Mutex<slow::Delayed>,
    /// The frame MTU in force (MTU + 14: NDIS_CONFIG's, bounded), read per guest send.
    pub(crate) frame_mtu: AtomicU32,
    /// Fault injection switches and records (see `fault`).
    pub(crate) faults: FaultState,
    pub(crate) stop: AtomicBool,
    /// The VF half, when configured.
    pub(crate) vf: Option<VfHost>,
    /// Set by the rx pump for one round (state snapshot to the last transfer written); see [`Device::rx_barrier`].
    pub(crate) rx_in_round: AtomicBool,
    /// Rounds the rx pump finished.
    pub(crate) rx_rounds: std::sync::atomic::AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The rx pump's thread, unparked when a worker handed frames to the backend (see [`Device::wake_pump`]).
    pump: std::sync::OnceLock<std::thread::Thread>,
    me: Weak<Device>,
}

impl Device {
    /// Start the host on the primary channel `primary` and spawn its worker and the rx pump.
    pub fn start(
        cfg: HostConfig,
        env: HostEnv,
        primary: ChannelSpec,
    ) -> Result<Arc<Device>, String> {
        let mut state = DeviceState::new(&cfg);
        let frame_mtu = AtomicU32::new(state.frame_mtu);
        if env.vf.is_some() {
            state.vf.configured = true;
            state.vf.present = true;
            state.vf.auto = true;
            state.vf.mac = env.vf_mac;
        }
        let dev = Arc::new_cyclic(|me| Device {
            cfg,
            mem: env.mem,
            signal: env.signal,
            factory: env.factory,
            gpa: env.gpa,
            state: Mutex::new(state),
            pool: Mutex::new(RecvPool::default()),
            channels: RwLock::new(Vec::new()),
            backend: Mutex::new(env.backend),
            counters: Counters::default(),
            control_queue: Mutex::new(VecDeque::new()),
            delayed: Mutex::new(slow::Delayed::default()),
            frame_mtu,
            faults: FaultState::default(),
            stop: AtomicBool::new(false),
            vf: env.vf,
            rx_in_round: AtomicBool::new(false),
            rx_rounds: std::sync::atomic::AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
            pump: std::sync::OnceLock::new(),
            me: me.clone(),
        });
        dev.open_channel(primary)?;
        let d = dev.clone();
        let h = std::thread::Builder::new()
            .name("hv-emu-rx".into())
            .spawn(move || rx::run_pump(&d))
            .map_err(|e| format!("spawn rx pump: {e}"))?;
        let _ = dev.pump.set(h.thread().clone());
        lock(&dev.threads).push(h);
        Ok(dev)
    }

    /// Without busy-polling the rx pump waits up to 50 µs between turns: cut that wait short when a worker has just
    /// handed the backend frames it may reflect (loopback), so a round trip does not pay it.
    pub(crate) fn wake_pump(&self) {
        if let Some(t) = self.pump.get() {
            t.unpark();
        }
    }

    /// Open a channel and start its worker thread.
    pub(crate) fn open_channel(&self, spec: ChannelSpec) -> Result<Arc<Channel>, String> {
        let me = self.me.upgrade().ok_or("device is gone")?;
        let index = self
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len() as u16;
        let (ch, worker) = Channel::open(index, spec, self.signal.irq_writes())?;
        let ch = Arc::new(ch);
        self.channels
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(ch.clone());
        let d = me;
        let c = ch.clone();
        let h = std::thread::Builder::new()
            .name(format!("hv-emu-ch{index}"))
            .spawn(move || channel::run_worker(&d, &c, worker))
            .map_err(|e| format!("spawn worker: {e}"))?;
        lock(&self.threads).push(h);
        Ok(ch)
    }

    /// The open channels, primary first.
    pub fn channels(&self) -> Vec<Arc<Channel>> {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn channel(&self, index: usize) -> Option<Arc<Channel>> {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(index)
            .cloned()
    }

    /// Stop every thread and flush the backend.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let handles: Vec<_> = lock(&self.threads).drain(..).collect();
        for h in handles {
            let _ = h.join();
        }
        lock(&self.backend).flush();
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Wait for the rx pump's round in progress: every frame it accepted under the state before this call is then
    /// in its ring. A packet filter or RSS change is answered after this, so no frame passes the old filter or
    /// table once the guest has the reply. OpenVMM's primary-channel worker behaves so (it applies the filter in
    /// the task that delivers its frames, before the completion); its subchannel workers get the filter from the
    /// coordinator a moment later, a window the emulator does not reproduce.
    pub(crate) fn rx_barrier(&self) {
        if !self.rx_in_round.load(Ordering::SeqCst) {
            return;
        }
        let done = self.rx_rounds.load(Ordering::SeqCst);
        while self.rx_in_round.load(Ordering::SeqCst)
            && self.rx_rounds.load(Ordering::SeqCst) == done
            && !self.stopped()
        {
            std::thread::sleep(std::time::Duration::from_micros(20));
        }
    }

    /// Count a protocol error of `kind`.
    pub(crate) fn proto_error(&self, kind: &'static str) {
        self.counters.proto_error(kind);
    }

    /// Change the link speed (100 bps units) and tell the guest.
    pub fn set_link_speed(&self, speed: u32) {
        let ready = {
            let mut st = lock(&self.state);
            st.link_speed = speed;
            st.rndis_initialized
        };
        if ready {
            self.queue_control(rndis::indicate_status(
                netvsc_proto::rndis::status::LINK_SPEED_CHANGE,
                Some(speed),
            ));
        }
    }

    /// Send NVSP SEND_INDIRECTION_TABLE (v5+) on the primary channel now.
    pub fn send_indirection_table(&self, entries: &[u32; 16], legacy: bool) -> bool {
        if lock(&self.state).version < proto_nvsp::VERSION_5 {
            return false;
        }
        let Some(ch) = self.channel(0) else {
            return false;
        };
        let layout = if legacy {
            nvsp::TableLayout::Legacy
        } else {
            nvsp::TableLayout::Fixed
        };
        let mut msg = [0u8; nvsp::MAX_HOST_MESSAGE];
        match nvsp::indirection_table(&mut msg, entries, layout) {
            Some(len) => ch.send_inband(self, 0, false, &msg[..len]),
            None => false,
        }
    }

    /// Send NVSP SEND_VF_ASSOCIATION (v4+) on the primary channel.
    pub fn send_vf_association(&self, allocated: bool, serial: u32) -> bool {
        let version = lock(&self.state).version;
        if version < proto_nvsp::VERSION_4 {
            return false;
        }
        let Some(ch) = self.channel(0) else {
            return false;
        };
        let msg = NvspMessage::VfAssociation(VfAssociation {
            allocated: u32::from(allocated),
            serial,
        })
        .to_bytes();
        let len = proto_nvsp::host_reply_len(version);
        ch.send_inband(self, proto_nvsp::TRANS_ID_VF_ASSOCIATION, true, &msg[..len])
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

//! The emulator API: build the device tree, start the host on it, change the link, read stats.
//!
//! `Emulator::start` writes the tree (helper modules in `tree/`), maps its regions and starts the
//! NetVSP host: one worker thread per open channel (subchannel workers appear when the guest asks
//! for them) and an rx pump polling the backend. `stats()` is the host's view for tests and tools.

use crate::backend::{BackendConfig, BackendError, Generator, PcapMirror};
use crate::commands::{Controls, GenError};
use crate::ctl::{ControlServer, Registry};
use crate::guest_mem::GuestMemory;
use crate::host::{
    self, ChannelFactory, ChannelSpec, Device, DeviceMem, FaultKind, FaultReport, FilterNone,
    GpaReader, GuestSignal, HostConfig, HostEnv, SendTable, SlowHost, lock,
};
use crate::monitor::Monitor;
use crate::stats::{ChannelStats, EmuStats, NdisConfig, NdisVersion, Oids, Totals};
use crate::tree::{ControlPage, DeviceTree, TreeConfig, TreeError};
use crate::vf::{Mac, VfConfig, VfError, VfStats};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What to emulate.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Root directory D of the emulated tree (a tmpfs such as /dev/shm is fastest).
    pub dir: PathBuf,
    /// Device instance GUID (lower-case, no braces).
    pub uuid: String,
    pub mac: [u8; 6],
    /// MTU without the Ethernet header.
    pub mtu: u32,
    /// Channels the host offers (primary + subchannels).
    pub max_queues: u16,
    /// Bytes per ring direction including the header page.
    pub ring_size: usize,
    pub recv_size: usize,
    pub send_size: usize,
    pub relid: u32,
    pub monitor_id: u8,
    pub uio_number: u32,
    pub backend: BackendConfig,
    /// Mirror both directions into this pcapng file.
    pub pcap: Option<PathBuf>,
    /// Workers spin instead of sleeping `latency` between scans.
    pub busy_poll: bool,
    /// Channels have monitor ids (guests signal through the monitor page). Off: channels are offered without a
    /// monitor (no `monitor_id` in sysfs, as the kernel hides it); the guest signals the host by writing to the
    /// uio fd (the kernel's `vmbus_setevent`), which the host then needs: the int-page bit alone wakes nobody.
    pub monitored: bool,
    /// Hyper-V behaviours (issue 12), each switchable; the defaults are what Hyper-V does:
    /// the two halves of a quick link flap this far apart (OpenVMM: 5 s); zero sends them together.
    pub link_delay: std::time::Duration,
    /// Frames for a guest whose packet filter is NONE: dropped and counted (default) or left in the backend.
    pub filter_none: FilterNone,
    /// Frames longer than the MTU + 14 are dropped and counted in both directions (default on).
    pub mtu_check: bool,
    /// Bytes of the host→guest ring rx data leaves free for completions and control (default 2048, OpenVMM's).
    pub ring_headroom: u32,
    /// The send indirection table after subchannels open (default: as Hyper-V).
    pub send_table: SendTable,
    /// Delays of NVSP/RNDIS replies (default: none).
    pub slow_host: SlowHost,
    /// Restrict the accepted NVSP versions (tests); `None` = the six a real host accepts.
    pub accept_versions: Option<Vec<u32>>,
    /// Never answer anything (timeout tests).
    pub silent: bool,
    /// Initial link speed in 100 bps units (10 Gb/s = 100,000,000).
    pub link_speed: u32,
    /// Offer an accelerated-networking VF (a veth pair; root / CAP_NET_ADMIN).
    pub vf: Option<VfConfig>,
    /// Rewrite this file with the stats document every second (atomically: a temporary file renamed over it) and
    /// once more when the emulator stops.
    pub stats_json: Option<PathBuf>,
}

impl EmulatorConfig {
    /// Defaults like a uio_hv_generic NIC on Hyper-V: 2 MiB rings, 31 MiB/16 MiB buffers, MTU 1500.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EmulatorConfig {
            dir: dir.into(),
            uuid: "f9e8d7c6-b5a4-4392-8170-6f5e4d3c2b1a".into(),
            mac: [0x00, 0x15, 0x5d, 0x00, 0x00, 0x01],
            mtu: 1500,
            max_queues: 8,
            ring_size: 2 << 20,
            recv_size: 31 << 20,
            send_size: 16 << 20,
            relid: 14,
            monitor_id: 2,
            uio_number: 0,
            backend: BackendConfig::Sink,
            pcap: None,
            busy_poll: false,
            monitored: true,
            link_delay: host::LINK_DELAY,
            filter_none: FilterNone::Drop,
            mtu_check: true,
            ring_headroom: host::RING_HEADROOM,
            send_table: SendTable::Hyperv,
            slow_host: SlowHost::default(),
            accept_versions: None,
            silent: false,
            link_speed: 100_000_000,
            vf: None,
            stats_json: None,
        }
    }
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("device tree: {0}")]
    Tree(#[from] TreeError),
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    #[error("host: {0}")]
    Host(String),
    #[error("VF: {0}")]
    Vf(#[from] VfError),
    /// A host thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// A live emulator (another process, or another `Emulator` here) serves this directory.
    #[error("{dir}: already served by the emulator in pid {pid}")]
    Busy {
        /// The directory asked for.
        dir: PathBuf,
        /// The serving emulator's pid (0 if it could not be read).
        pid: u32,
    },
    /// The directory's lock could not be taken.
    #[error("lock {dir}: {source}")]
    Lock {
        /// The directory asked for.
        dir: PathBuf,
        /// Why.
        source: vmbus_uio::UioError,
    },
}

/// The lock a serving emulator holds on its directory: `D/run/hv-emu.lock`, holding its pid.
pub fn emulator_lock_path(dir: &std::path::Path) -> PathBuf {
    dir.join("run/hv-emu.lock")
}

struct TreeSignal(ControlPage);

impl GuestSignal for TreeSignal {
    fn signal(&self, _relid: u32) {
        self.0.post_event();
    }
    fn irq_writes(&self) -> u64 {
        self.0.irq_writes()
    }
}

struct TreeFactory(Arc<DeviceTree>);

impl ChannelFactory for TreeFactory {
    fn create(
        &self,
        relid: u32,
        subchannel_id: u16,
        monitor_id: Option<u8>,
    ) -> Result<vmbus_ring::SharedMem, String> {
        self.0
            .add_subchannel(relid, subchannel_id, monitor_id)
            .map_err(|e| e.to_string())
    }
}

/// Reads the guest's memory: the process that last opened `/dev/uioN` (ctl guest_pid), or this one.
struct PidMemory {
    ctl: ControlPage,
    cached: Mutex<Option<(u32, Arc<GuestMemory>)>>,
}

impl PidMemory {
    /// The guest's memory: the last opener of `/dev/uioN`, or this process (cached per pid).
    fn memory(&self) -> Arc<GuestMemory> {
        let pid = match self.ctl.guest_pid() {
            0 => std::process::id(),
            p => p,
        };
        let mut c = lock(&self.cached);
        match &*c {
            Some((p, m)) if *p == pid => m.clone(),
            _ => {
                let m = Arc::new(GuestMemory::process(pid));
                *c = Some((pid, m.clone()));
                m
            }
        }
    }
}

impl GpaReader for PidMemory {
    fn read(&self, pfn: u64, offset: u32, dst: &mut [u8]) -> Result<(), String> {
        self.memory()
            .read(pfn, offset, dst.len() as u32, dst)
            .map_err(|e| e.to_string())
    }

    fn read_ranges(&self, ranges: vmbus_ring::GpaRanges<'_>, dst: &mut [u8]) -> Result<(), String> {
        self.memory()
            .read_ranges(ranges, dst)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// A running emulated NIC.
pub struct Emulator {
    tree: Arc<DeviceTree>,
    device: Arc<Device>,
    config: EmulatorConfig,
    registry: Arc<Registry>,
    controls: Arc<Controls>,
    /// Held while this emulator serves `config.dir` (dropped last, after the host threads stop).
    _lock: vmbus_uio::OwnerLock,
}

impl Emulator {
    /// Create the tree under `config.dir` and start the host.
    pub fn start(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        // Refuse a directory a live emulator serves before touching its tree; the lock dies with its process.
        let lock = vmbus_uio::OwnerLock::acquire(&emulator_lock_path(&config.dir)).map_err(
            |e| match e {
                vmbus_uio::UioError::Busy { pid, .. } => EmulatorError::Busy {
                    dir: config.dir.clone(),
                    pid,
                },
                source => EmulatorError::Lock {
                    dir: config.dir.clone(),
                    source,
                },
            },
        )?;
        let mut tc = TreeConfig::new(config.uuid.clone());
        tc.mac = Some(config.mac);
        tc.relid = config.relid;
        tc.monitor_id = config.monitored.then_some(config.monitor_id);
        tc.uio_number = config.uio_number;
        tc.ring_size = config.ring_size;
        tc.recv_size = config.recv_size;
        tc.send_size = config.send_size;
        let tree = Arc::new(DeviceTree::create(&config.dir, &tc)?);
        let mut backend = config.backend.build()?;
        if let Some(path) = &config.pcap {
            backend =
                Box::new(
                    PcapMirror::new(backend, path).map_err(|source| BackendError::Pcap {
                        path: path.clone(),
                        source,
                    })?,
                );
        }
        // Every channel's latency slot starts at the host default, so a guest's own 0 means "no wait".
        for m in 0..128 {
            let units = host::DEFAULT_LATENCY_UNITS.to_le_bytes();
            let _ = tree.monitor_page().write(576 + 2 * m, &units);
        }
        let mem = DeviceMem {
            int_page: tree.int_page().clone(),
            monitor_page: tree.monitor_page().clone(),
            recv_buf: tree.recv_buf().clone(),
            send_buf: tree.send_buf().clone(),
            recv_gpadl: tc.recv_gpadl,
            send_gpadl: tc.send_gpadl,
        };
        let vf_mac = config.vf.as_ref().and_then(|v| v.mac).unwrap_or(config.mac);
        let vf = match &config.vf {
            Some(v) => Some(host::VfHost::create(v, vf_mac, config.mtu + 14)?),
            None => None,
        };
        let env = HostEnv {
            mem,
            signal: Arc::new(TreeSignal(tree.ctl().clone())),
            factory: Arc::new(TreeFactory(tree.clone())),
            gpa: Arc::new(PidMemory {
                ctl: tree.ctl().clone(),
                cached: Mutex::new(None),
            }),
            backend,
            vf,
            vf_mac,
        };
        let hc = HostConfig {
            mac: config.mac,
            mtu: config.mtu,
            max_queues: config.max_queues.max(1),
            busy_poll: config.busy_poll,
            monitored: config.monitored,
            accept_versions: config.accept_versions.clone(),
            silent: config.silent,
            link_speed: config.link_speed,
            link_delay: config.link_delay,
            filter_none: config.filter_none,
            mtu_check: config.mtu_check,
            ring_headroom: config.ring_headroom,
            send_table: config.send_table,
            slow: config.slow_host.clone(),
        };
        let primary = ChannelSpec {
            relid: config.relid,
            subchannel_id: 0,
            monitor_id: tc.monitor_id,
            rings: tree.rings().clone(),
        };
        let device = Device::start(hc, env, primary).map_err(EmulatorError::Host)?;
        let d = device.clone();
        let monitor = Monitor::start(device.clone(), config.stats_json.clone(), move |m| {
            to_json(&crate::commands::full_stats(&d, m))
        });
        let monitor = match monitor {
            Ok(m) => m,
            Err(e) => {
                device.stop();
                return Err(EmulatorError::Thread(e));
            }
        };
        let controls = Controls::new(device.clone(), monitor);
        let registry = Arc::new(Registry::default());
        crate::commands::register(&registry, &controls);
        Ok(Emulator {
            tree,
            device,
            config,
            registry,
            controls,
            _lock: lock,
        })
    }

    /// The control socket's commands (add more with [`Registry::register`]).
    pub fn control_registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Serve the control socket at `path` (e.g. `DIR/ctl.sock`) until the returned server is dropped.
    pub fn serve_control(&self, path: &Path) -> std::io::Result<ControlServer> {
        ControlServer::start(path, self.registry.clone())
    }

    /// Offer the VF now (SEND_VF_ASSOCIATION {1, serial}); refused before the guest is ready, below NVSP 4,
    /// without the guest's SR-IOV bit, or with the VF removed.
    pub fn vf_offer(&self) -> Result<(), VfError> {
        self.device.vf_offer()
    }

    /// Withdraw the VF (SEND_VF_ASSOCIATION {0}); the host's rx goes synthetic at once.
    pub fn vf_revoke(&self) -> Result<(), VfError> {
        self.device.vf_revoke()
    }

    /// Hot-remove the VF: delete the veth pair (under traffic is fine); rx goes synthetic at once.
    pub fn vf_remove(&self) -> Result<(), VfError> {
        self.device.vf_remove()
    }

    /// Hot-add the VF again: re-create the pair; offered again after the configured delay.
    pub fn vf_add(&self) -> Result<(), VfError> {
        self.device.vf_add()
    }

    /// Host-initiated switch to synthetic (NVSP 129 {0}, transaction id 2^63 + 1, completion requested).
    pub fn vf_switch_back(&self) -> Result<(), VfError> {
        self.device.vf_switch_back()
    }

    /// Change the VF's MAC (the guest end's address and what the host diverts to it).
    pub fn vf_set_mac(&self, mac: Mac) -> Result<(), VfError> {
        self.device.vf_set_mac(mac)
    }

    /// The VF's state and counters (`None` without a VF).
    pub fn vf_state(&self) -> Option<VfStats> {
        self.device.vf_state()
    }

    /// `vf_state()` as JSON (camelCase).
    pub fn vf_state_json(&self) -> Option<String> {
        self.vf_state()
            .map(|s| serde_json::to_string(&s).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")))
    }

    /// The device tree (paths, mappings).
    pub fn tree(&self) -> &DeviceTree {
        &self.tree
    }

    /// The configuration this emulator runs.
    pub fn config(&self) -> &EmulatorConfig {
        &self.config
    }

    /// Stop all host threads, flush the backend (pcap) and write the stats file a last time. The tree stays on
    /// disk. Idempotent.
    pub fn stop(&self) {
        let first = !self.device.stopped();
        self.device.stop();
        self.controls.monitor.stop();
        if first {
            self.controls.monitor.write(&self.stats_json());
        }
    }

    /// Link up/down: updates GEN_MEDIA_CONNECT_STATUS at once and tells the guest (RNDIS INDICATE_STATUS) as
    /// Hyper-V does: a change at once; setting the current state tells nothing.
    pub fn set_link(&self, up: bool) {
        self.controls.set_link(up);
    }

    /// Link down now, up again after `ms` (1..=600,000) unless another link change comes first.
    pub fn link_flap(&self, ms: u64) -> Result<(), String> {
        self.controls.link_flap(ms)
    }

    /// Link notifications arriving together, as a backend reports a quick flap (`&[false, true]`): they coalesce.
    /// If the result equals what the guest was last told, it hears the opposite now and the result
    /// `link_delay` later (OpenVMM's rule for Linux guests, which ignore changes in quick succession).
    pub fn notify_link(&self, states: &[bool]) {
        self.device.notify_link(states);
    }

    /// Send NVSP SEND_INDIRECTION_TABLE with these 16 entries now (in-band, no completion), the table after the
    /// 12-byte header or, `legacy`, after the whole 40-byte message with the offset field saying 12. False before
    /// NVSP 5 or when it could not be written.
    pub fn send_indirection_table(&self, entries: &[u32; 16], legacy: bool) -> bool {
        self.device.send_indirection_table(entries, legacy)
    }

    /// Link speed in 100 bps units: updates GEN_LINK_SPEED and sends LINK_SPEED_CHANGE.
    pub fn set_link_speed(&self, speed: u32) {
        self.device.set_link_speed(speed);
    }

    /// Link speed in Mbit/s (1..=400,000), as `speed MBPS` on the control socket.
    pub fn set_link_speed_mbps(&self, mbps: u64) -> Result<(), String> {
        self.controls.set_speed_mbps(mbps)
    }

    /// Run `f` on the generator backend (start, stop, rate, sizes, checker); `GenError::NotGenerator` otherwise.
    pub fn with_generator<R>(&self, f: impl FnOnce(&mut Generator) -> R) -> Result<R, GenError> {
        self.controls.with_generator(f)
    }

    /// Start a new generator run (as `gen start`).
    pub fn gen_start(&self) -> Result<(), GenError> {
        self.with_generator(Generator::start)
    }

    /// Stop the generator (as `gen stop`).
    pub fn gen_stop(&self) -> Result<(), GenError> {
        self.with_generator(Generator::stop)
    }

    /// Generator rate in frames/s, 0 = as many as the host asks for (as `gen rate N`).
    pub fn gen_set_rate(&self, pps: u64) -> Result<(), GenError> {
        self.with_generator(|g| g.set_rate(Some(pps)))
    }

    /// Generator frame sizes, used in turn (as `gen size B,B` / `gen imix` with [`crate::backend::IMIX`]).
    pub fn gen_set_sizes(&self, sizes: Vec<usize>) -> Result<(), GenError> {
        self.with_generator(|g| g.set_sizes(sizes))?
            .map_err(GenError::Invalid)
    }

    /// The generator's counters, settings and checker results (the `backend` object of the stats).
    pub fn generator_stats(&self) -> Result<serde_json::Value, GenError> {
        self.controls.generator_stats()
    }

    /// Offer (or withdraw) a VF: NVSP SEND_VF_ASSOCIATION (v4+). False if not sent.
    pub fn send_vf_association(&self, allocated: bool, serial: u32) -> bool {
        self.device.send_vf_association(allocated, serial)
    }

    /// Inject a fault on the primary channel, its values drawn from `seed` (the same seed gives the same
    /// indices, offsets and ids). See [`FaultKind`].
    pub fn inject_fault(&self, kind: FaultKind, seed: u64) -> Result<FaultReport, String> {
        self.device.inject_fault(kind, seed)
    }

    /// Completions the `withhold-completions` fault dropped so far.
    pub fn completions_withheld(&self) -> u64 {
        self.device
            .faults()
            .withheld
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The host's counters and negotiated state, with rates over about the last second.
    pub fn stats(&self) -> EmuStats {
        self.controls.stats()
    }

    /// `stats()` as JSON.
    pub fn stats_json(&self) -> String {
        to_json(&self.stats())
    }
}

fn to_json(s: &EmuStats) -> String {
    serde_json::to_string_pretty(s).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
        // The control socket's handlers may keep the device alive a little longer: the pair goes now.
        self.device.vf_release();
    }
}

/// Build the stats document of a device (without rates: [`Emulator::stats`] adds them).
pub fn stats_of(dev: &Device) -> EmuStats {
    let st = lock(&dev.state).clone();
    let channels: Vec<ChannelStats> = dev
        .channels()
        .iter()
        .map(|c| {
            ChannelStats::from_counters(
                c.index,
                c.relid,
                c.subchannel_id,
                c.monitor_id,
                &c.counters,
            )
        })
        .collect();
    let hex = |v: &[u32]| v.iter().map(|o| format!("0x{o:08x}")).collect();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    // One lock at a time: a guard taken inside the struct literal below would live until the end of the statement,
    // and holding `pool` while waiting for `backend` deadlocks against the rx pump (backend, then pool).
    let (recv_outstanding, abandoned) = {
        let pool = lock(&dev.pool);
        (pool.outstanding(), pool.abandoned())
    };
    let (backend, backend_dropped, backend_tx_errors) = {
        let b = lock(&dev.backend);
        (b.stats(), b.dropped(), b.tx_errors())
    };
    EmuStats {
        nvsp_version: (st.version != 0).then_some(st.version),
        ndis_version: st
            .ndis_version
            .map(|(major, minor)| NdisVersion { major, minor }),
        ndis_config: st
            .ndis_config
            .map(|(mtu, capabilities)| NdisConfig { mtu, capabilities }),
        rndis_initialized: st.rndis_initialized,
        packet_filter: st.filter,
        packet_filters: st.filters.clone(),
        packet_filter_changes: st.filter_changes,
        oids: Oids {
            queried: hex(&st.oids_queried),
            set: hex(&st.oids_set),
        },
        offload: st.offload.clone(),
        rss: st.rss.clone(),
        recv_buffer: st.recv,
        recv_outstanding,
        send_sections: st.send_sections,
        link_up: st.link_up,
        link_speed: st.link_speed,
        subchannels: st.subchannels,
        data_path: st.data_path.clone(),
        totals: {
            let mut t = Totals::sum_with_backend(&channels, backend_dropped, backend_tx_errors);
            t.host_to_guest_abandoned = abandoned;
            t
        },
        channels,
        protocol_errors: dev.counters.proto_errors(),
        control_messages_sent: load(&dev.counters.control_sent),
        control_messages_dropped: load(&dev.counters.control_dropped),
        delayed_replies: load(&dev.counters.delayed_replies),
        rx_busy_ns: load(&dev.counters.rx_busy_ns),
        backend,
        vf: dev.vf_state(),
        rates: None,
        stats_file: None,
    }
}

pub use host::HostConfig as HostSettings;

//! The emulator API: build the device tree, start the host on it, change the link, read stats.
//!
//! `Emulator::start` writes the tree (helper modules in `tree/`), maps its regions and starts the
//! NetVSP host: one worker thread per open channel (subchannel workers appear when the guest asks
//! for them) and an rx pump polling the backend. `stats()` is the host's view for tests and tools.

use crate::backend::{BackendConfig, BackendError, PcapMirror};
use crate::guest_mem::GuestMemory;
use crate::host::{
    self, ChannelFactory, ChannelSpec, Device, DeviceMem, GpaReader, GuestSignal, HostConfig,
    HostEnv, lock,
};
use crate::stats::{ChannelStats, EmuStats, NdisConfig, NdisVersion, Oids, Totals};
use crate::tree::{ControlPage, DeviceTree, TreeConfig, TreeError};
use std::path::PathBuf;
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
    /// Mirror both directions into this pcap file.
    pub pcap: Option<PathBuf>,
    /// Workers spin instead of sleeping `latency` between scans.
    pub busy_poll: bool,
    /// Channels have monitor ids (guests signal through the monitor page).
    pub monitored: bool,
    /// Restrict the accepted NVSP versions (tests); `None` = the six a real host accepts.
    pub accept_versions: Option<Vec<u32>>,
    /// Never answer anything (timeout tests).
    pub silent: bool,
    /// Initial link speed in 100 bps units (10 Gb/s = 100,000,000).
    pub link_speed: u32,
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
            accept_versions: None,
            silent: false,
            link_speed: 100_000_000,
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
        let mem = DeviceMem {
            int_page: tree.int_page().clone(),
            monitor_page: tree.monitor_page().clone(),
            recv_buf: tree.recv_buf().clone(),
            send_buf: tree.send_buf().clone(),
            recv_gpadl: tc.recv_gpadl,
            send_gpadl: tc.send_gpadl,
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
        };
        let primary = ChannelSpec {
            relid: config.relid,
            subchannel_id: 0,
            monitor_id: tc.monitor_id,
            rings: tree.rings().clone(),
        };
        let device = Device::start(hc, env, primary).map_err(EmulatorError::Host)?;
        Ok(Emulator {
            tree,
            device,
            config,
            _lock: lock,
        })
    }

    /// The device tree (paths, mappings).
    pub fn tree(&self) -> &DeviceTree {
        &self.tree
    }

    /// The configuration this emulator runs.
    pub fn config(&self) -> &EmulatorConfig {
        &self.config
    }

    /// Stop all host threads and flush the backend (pcap). The tree stays on disk.
    pub fn stop(&self) {
        self.device.stop();
    }

    /// Link up/down: updates GEN_MEDIA_CONNECT_STATUS and sends INDICATE_STATUS to the guest.
    pub fn set_link(&self, up: bool) {
        self.device.set_link(up);
    }

    /// Link speed in 100 bps units: updates GEN_LINK_SPEED and sends LINK_SPEED_CHANGE.
    pub fn set_link_speed(&self, speed: u32) {
        self.device.set_link_speed(speed);
    }

    /// Offer (or withdraw) a VF: NVSP SEND_VF_ASSOCIATION (v4+). False if not sent.
    pub fn send_vf_association(&self, allocated: bool, serial: u32) -> bool {
        self.device.send_vf_association(allocated, serial)
    }

    /// The host's counters and negotiated state.
    pub fn stats(&self) -> EmuStats {
        stats_of(&self.device)
    }

    /// `stats()` as JSON.
    pub fn stats_json(&self) -> String {
        serde_json::to_string_pretty(&self.stats())
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.device.stop();
    }
}

/// Build the stats document of a device.
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
    let recv_outstanding = lock(&dev.pool).outstanding();
    let backend = lock(&dev.backend).stats();
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
        totals: Totals::sum(&channels),
        channels,
        protocol_errors: dev.counters.proto_errors(),
        control_messages_sent: load(&dev.counters.control_sent),
        control_messages_dropped: load(&dev.counters.control_dropped),
        backend,
    }
}

pub use host::HostConfig as HostSettings;

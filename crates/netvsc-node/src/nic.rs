//! `NativeDevice`: an open netvsc device (`netvsc::Device`) for JS. Control operations lock the device; the data
//! path goes through `NativeQueue`s claimed from it. Events come from a per-device Rust thread (see `events`).
//! `close()` is explicit and idempotent (joins the event thread, runs the driver's teardown); the GC fallback
//! only signals and hands the driver handle to a detached thread, so a finalizer never blocks on the host.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use napi::Env;
use napi::bindgen_prelude::{Float64ArraySlice, Function};
use napi_derive::napi;
use netvsc::stats::STAT_NAMES;
use netvsc::{Devargs, DeviceConfig, IovaMode, Offloads, Timeouts};

use crate::errors::{Code, Result, error, from_driver, from_uio};
use crate::events::{EventPump, NativeEvent};
use crate::queue::NativeQueue;
use crate::registry;

/// Counters per queue in `queueStatsInto`: 15 tx (DPDK order), 15 rx, rx missed.
pub const QUEUE_STAT_WORDS: usize = 31;

/// Which offloads to turn on where the host supports them (both default on).
#[napi(object)]
#[derive(Debug, Default, Clone)]
pub struct OffloadOptions {
    pub checksum: Option<bool>,
    pub tso: Option<bool>,
}

/// RSS settings: 40-byte key, 128-entry indirection table (queue per bucket), hash types (`ipv4`, `tcp_ipv4`,
/// `ipv6`, `ipv6_ex`, `tcp_ipv6`, `tcp_ipv6_ex`; empty: RSS off). Absent parts are kept.
#[napi(object)]
#[derive(Debug, Default, Clone)]
pub struct RssOptions {
    pub key: Option<Vec<u8>>,
    pub table: Option<Vec<u32>>,
    pub hash_types: Option<Vec<String>>,
}

/// RSS as configured on the device.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct NativeRss {
    pub key: Vec<u8>,
    pub table: Vec<u32>,
    pub hash_types: Vec<String>,
    /// Whether the host hashes (off: everything arrives on queue 0).
    pub enabled: bool,
}

/// Options of `NativeDevice.open` (the facade validates them first).
#[napi(object)]
#[derive(Debug, Default, Clone)]
pub struct OpenOptions {
    /// Directory holding `sys/bus/vmbus` and `dev/uioN` (default `/`).
    pub root: Option<String>,
    /// DPDK devargs string (`latency=50,rx_copybreak=256,...`).
    pub devargs: Option<String>,
    /// Queue pairs wanted (clamped by the host).
    pub queues: Option<u32>,
    pub mtu: Option<u32>,
    pub offloads: Option<OffloadOptions>,
    pub rss: Option<RssOptions>,
    /// Host wait limit for every control step, in ms (default 60000).
    pub timeout_ms: Option<u32>,
    /// `'va'` (default) or `'pa'`.
    pub iova: Option<String>,
    /// VF (accelerated networking) failover.
    pub vf: Option<VfFailoverOptions>,
    /// Re-initialise the device after a ring error (default true); false: the failed queue keeps throwing
    /// `ERR_NETVSC_RING` until close.
    pub recover: Option<bool>,
}

/// VF failover settings.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct VfFailoverOptions {
    /// Pair and switch to an offered VF (default true).
    pub enabled: Option<bool>,
    /// Pairing retry period in ms (default 1000).
    pub retry_ms: Option<u32>,
    /// Pairing attempts before giving up (default 120).
    pub retries: Option<u32>,
    /// `'auto'` (default), `'af_xdp'` or `'af_packet'`.
    pub prefer: Option<String>,
    /// Root of the sysfs tree netdevs are listed under (default `/`).
    pub sysfs_root: Option<String>,
}

/// One named counter.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct NativeXstat {
    pub name: String,
    pub value: f64,
}

/// The VF failover state.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct NativeVfInfo {
    /// `offered`, `paired`, `switched`, `removed` or `revoked`.
    pub state: String,
    pub serial: u32,
    pub iface: Option<String>,
    pub ifindex: u32,
    /// `af_xdp` or `af_packet`.
    pub mode: Option<String>,
    pub zero_copy: bool,
    pub queues: u32,
    pub switched: bool,
}

/// Offload capabilities the host reported.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct OffloadCapsInfo {
    pub ip4_tx_csum: u32,
    pub ip6_tx_csum: u32,
    pub ip4_rx_csum: u32,
    pub ip6_rx_csum: u32,
    pub lso4_max: Option<u32>,
    pub lso6_max: Option<u32>,
}

/// Devargs in effect.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct DevargsInfo {
    pub latency: u32,
    pub rx_copybreak: u32,
    pub tx_copybreak: u32,
    pub rx_extmbuf_enable: bool,
    pub numa_aware: bool,
}

/// What bring-up negotiated.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct NativeDeviceInfo {
    pub uuid: String,
    pub mac: String,
    pub mtu: u32,
    pub nvsp_version: u32,
    pub ndis_version: String,
    pub queues: u32,
    pub host_queues: u32,
    pub recv_section_size: u32,
    pub recv_sections: u32,
    pub send_section_size: u32,
    pub send_sections: u32,
    pub agg_max_packets: u32,
    pub agg_max_bytes: u32,
    pub agg_align: u32,
    pub offload_caps: OffloadCapsInfo,
    pub devargs: DevargsInfo,
}

/// Link state.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct NativeLink {
    pub up: bool,
    /// Speed in Mbit/s.
    pub speed_mbps: f64,
    pub full_duplex: bool,
}

/// State of one device shared by its `NativeDevice`, its queues (in any worker) and its event thread.
pub struct DeviceCore {
    pub key: String,
    pub uuid: String,
    pub root: PathBuf,
    pub dev: Mutex<Option<netvsc::Device>>,
    /// Every counter of the device (live queues, removed queues, VF), readable without the device lock; replaced
    /// after each re-initialisation (MTU, queue count, recovery).
    pub stats: Mutex<netvsc::StatsHandle>,
    pub max_frame: Mutex<usize>,
    closed: AtomicBool,
}

impl DeviceCore {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn lock(&self) -> MutexGuard<'_, Option<netvsc::Device>> {
        self.dev.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on the open device, or fail with `ERR_NETVSC_CLOSED`.
    pub fn with<T>(&self, f: impl FnOnce(&mut netvsc::Device) -> Result<T>) -> Result<T> {
        let mut g = self.lock();
        match g.as_mut() {
            Some(d) => f(d),
            None => Err(closed(&self.uuid)),
        }
    }

    fn take(&self) -> Option<netvsc::Device> {
        self.closed.store(true, Ordering::Release);
        self.lock().take()
    }

    pub fn stats_snapshot(&self) -> netvsc::StatsHandle {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Take the device's counter handle again (after a re-initialisation replaced queues or the VF state).
    pub fn refresh_stats(&self, d: &netvsc::Device) {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = d.stats_handle();
    }
}

pub fn closed(uuid: &str) -> napi::Error<Code> {
    error(Code::Closed, format!("device {uuid} is closed"))
}

fn config(opts: &OpenOptions) -> Result<DeviceConfig> {
    let mut cfg = DeviceConfig::default();
    if let Some(d) = &opts.devargs {
        cfg.devargs = Devargs::parse(d).map_err(from_driver)?;
    }
    if let Some(q) = opts.queues {
        if !(1..=64).contains(&q) {
            return Err(error(
                Code::InvalidArg,
                format!("queues must be 1..64, got {q}"),
            ));
        }
        cfg.queues = q as u16;
    }
    if let Some(m) = opts.mtu {
        cfg.mtu = m;
    }
    if let Some(r) = opts.recover {
        cfg.recover = r;
    }
    if let Some(o) = &opts.offloads {
        cfg.offloads = Offloads {
            checksum: o.checksum.unwrap_or(true),
            tso: o.tso.unwrap_or(true),
        };
    }
    if let Some(r) = &opts.rss {
        if let Some(k) = &r.key {
            cfg.rss_key = Some(rss_key(k, "rss.key")?);
        }
        if let Some(t) = &r.table {
            cfg.rss_table = Some(rss_table(t, "rss.table")?);
        }
        if let Some(h) = &r.hash_types {
            cfg.rss_hash_types = Some(hash_types(h)?);
        }
    }
    if let Some(ms) = opts.timeout_ms {
        cfg.timeouts = Timeouts::all(Duration::from_millis(u64::from(ms.max(1))));
    }
    if let Some(v) = &opts.vf {
        if let Some(e) = v.enabled {
            cfg.vf.enabled = e;
        }
        if let Some(ms) = v.retry_ms {
            cfg.vf.retry_period = Duration::from_millis(u64::from(ms.max(1)));
        }
        if let Some(n) = v.retries {
            cfg.vf.retries = n.max(1);
        }
        if let Some(r) = &v.sysfs_root {
            cfg.vf.sysfs_root = r.into();
        }
        cfg.vf.prefer = match v.prefer.as_deref() {
            None | Some("auto") => netvsc::VfPrefer::Auto,
            Some("af_xdp") => netvsc::VfPrefer::AfXdp,
            Some("af_packet") => netvsc::VfPrefer::AfPacket,
            Some(other) => {
                return Err(error(
                    Code::InvalidArg,
                    format!("vf.prefer must be 'auto', 'af_xdp' or 'af_packet', got '{other}'"),
                ));
            }
        };
    }
    match opts.iova.as_deref() {
        None | Some("va") => cfg.iova = IovaMode::Va,
        Some("pa") => cfg.iova = IovaMode::Pa,
        Some(other) => {
            return Err(error(
                Code::InvalidArg,
                format!("iova must be 'va' or 'pa', got '{other}'"),
            ));
        }
    }
    Ok(cfg)
}

/// Why an async operation failed: the `ERR_NETVSC_*` code and the message.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct NativeFailure {
    pub code: String,
    pub message: String,
}

type Settled<T> = napi::bindgen_prelude::Either<T, NativeFailure>;

fn settle<T>(r: Result<T>) -> Settled<T> {
    match r {
        Ok(v) => napi::bindgen_prelude::Either::A(v),
        Err(e) => napi::bindgen_prelude::Either::B(NativeFailure {
            code: e.status.as_ref().to_owned(),
            message: e.reason.clone(),
        }),
    }
}

/// Cancels an `openAsync` in progress (the facade calls `cancel()` when its AbortSignal fires).
#[napi]
pub struct NativeCancel {
    token: netvsc::Cancel,
}

#[napi]
impl NativeCancel {
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> NativeCancel {
        NativeCancel {
            token: netvsc::Cancel::new(),
        }
    }

    #[napi]
    pub fn cancel(&self) {
        self.token.cancel();
    }
}

/// Find and bring up the device (blocking), and register it in this process.
fn bring_up(
    name: &str,
    opts: &OpenOptions,
    cancel: Option<netvsc::Cancel>,
) -> Result<Arc<DeviceCore>> {
    let root = PathBuf::from(opts.root.clone().unwrap_or_else(|| "/".into()));
    let mut cfg = config(opts)?;
    cfg.cancel = cancel;
    let found = vmbus_uio::find_device(&root, name).map_err(from_uio)?;
    let key = registry::device_key(&root, &found.uuid);
    if registry::find_device(&key).is_some() {
        return Err(error(
            Code::QueueBusy,
            format!("device {} is already open in this process", found.uuid),
        ));
    }
    let dev = netvsc::Device::open(&root, &found.uuid, cfg).map_err(from_driver)?;
    let max_frame = dev.info().mtu.max(dev.config().mtu) as usize + 18;
    let stats = dev.stats_handle();
    let core = Arc::new(DeviceCore {
        key: key.clone(),
        uuid: found.uuid.clone(),
        root,
        dev: Mutex::new(Some(dev)),
        stats: Mutex::new(stats),
        max_frame: Mutex::new(max_frame),
        closed: AtomicBool::new(false),
    });
    registry::add_device(&key, &core)?;
    Ok(core)
}

/// Run a control operation on its own thread; the promise settles with its value or a `NativeFailure`.
fn run_async<'e, T, F>(
    env: &'e Env,
    core: &Arc<DeviceCore>,
    op: F,
) -> Result<napi::bindgen_prelude::Object<'e>>
where
    T: napi::bindgen_prelude::ToNapiValue + Send + 'static,
    F: FnOnce(&DeviceCore, &mut netvsc::Device) -> Result<T> + Send + 'static,
{
    let core = core.clone();
    let (deferred, promise) = env
        .create_deferred()
        .map_err(|e| error(Code::Napi, format!("cannot create a promise: {e}")))?;
    std::thread::Builder::new()
        .name("netvsc-ctl".into())
        .spawn(move || {
            let r = core.with(|d| op(&core, d));
            deferred.resolve(move |_env| Ok(settle(r)));
        })
        .map_err(|e| error(Code::Io, format!("cannot start the control thread: {e}")))?;
    Ok(promise)
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An open netvsc device.
#[napi]
pub struct NativeDevice {
    core: Arc<DeviceCore>,
    events: Option<EventPump>,
}

#[napi]
impl NativeDevice {
    /// Open the device named by uuid or interface under `options.root` and bring it up (stopped), blocking the
    /// calling thread for the whole bring-up (`openSync`). `onEvent` receives link/vf/error events.
    #[napi(factory, catch_unwind)]
    pub fn open(
        env: Env,
        name: String,
        options: Option<OpenOptions>,
        on_event: Option<Function<NativeEvent, ()>>,
    ) -> Result<NativeDevice> {
        let core = bring_up(&name, &options.unwrap_or_default(), None)?;
        let events = match on_event {
            Some(cb) => Some(EventPump::start(&env, &cb, core.clone())?),
            None => None,
        };
        Ok(NativeDevice { core, events })
    }

    /// `open` off the event loop: the bring-up runs on its own thread and the promise settles on the JS thread
    /// with the device, or with `{ code, message }` on failure (the facade throws it as a `NetvscError`).
    /// `cancel` aborts the bring-up at its next host wait (the half-open device is torn down as on a timeout).
    #[napi(ts_return_type = "Promise<NativeDevice | NativeFailure>")]
    pub fn open_async<'e>(
        env: &'e Env,
        name: String,
        options: Option<OpenOptions>,
        on_event: Option<Function<NativeEvent, ()>>,
        cancel: Option<&NativeCancel>,
    ) -> Result<napi::bindgen_prelude::Object<'e>> {
        let tsfn = on_event.as_ref().map(EventPump::prepare).transpose()?;
        let token = cancel.map(|c| c.token.clone());
        let opts = options.unwrap_or_default();
        let (deferred, promise) = env
            .create_deferred()
            .map_err(|e| error(Code::Napi, format!("cannot create a promise: {e}")))?;
        std::thread::Builder::new()
            .name("netvsc-open".into())
            .spawn(move || {
                let r = bring_up(&name, &opts, token).and_then(|core| {
                    let events = tsfn
                        .map(|t| EventPump::start_with(t, core.clone()))
                        .transpose()?;
                    Ok(NativeDevice { core, events })
                });
                deferred.resolve(move |_env| Ok(settle(r)));
            })
            .map_err(|e| error(Code::Io, format!("cannot start the bring-up thread: {e}")))?;
        Ok(promise)
    }

    #[napi(getter)]
    pub fn uuid(&self) -> String {
        self.core.uuid.clone()
    }

    /// The telemetry page this process publishes for the device (null if it could not be created).
    #[napi(getter)]
    pub fn telemetry_path(&self) -> Option<String> {
        self.core
            .lock()
            .as_ref()
            .and_then(|d| d.telemetry_path().map(|p| p.display().to_string()))
    }

    /// Root directory the device was opened under.
    #[napi(getter)]
    pub fn root(&self) -> String {
        self.core.root.display().to_string()
    }

    #[napi(getter)]
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    /// Events dropped or merged because the JS queue was full.
    #[napi(getter)]
    pub fn events_coalesced(&self) -> u32 {
        self.events.as_ref().map_or(0, EventPump::coalesced)
    }

    #[napi]
    pub fn info(&self) -> Result<NativeDeviceInfo> {
        let uuid = self.core.uuid.clone();
        self.core.with(|d| {
            let i = d.info();
            let a = d.config().devargs;
            let c = i.offload_caps;
            Ok(NativeDeviceInfo {
                uuid,
                mac: mac_string(i.mac),
                mtu: i.mtu,
                nvsp_version: i.nvsp_version,
                ndis_version: format!("{}.{}", i.ndis_version >> 16, i.ndis_version & 0xffff),
                queues: u32::from(i.queues),
                host_queues: i.host_queues,
                recv_section_size: i.recv_section_size,
                recv_sections: i.recv_sections,
                send_section_size: i.send_section_size,
                send_sections: i.send_sections,
                agg_max_packets: i.agg.max_pkts,
                agg_max_bytes: i.agg.max_bytes,
                agg_align: i.agg.align,
                offload_caps: OffloadCapsInfo {
                    ip4_tx_csum: c.ip4_tx_csum,
                    ip6_tx_csum: c.ip6_tx_csum,
                    ip4_rx_csum: c.ip4_rx_csum,
                    ip6_rx_csum: c.ip6_rx_csum,
                    lso4_max: c.lso4_max,
                    lso6_max: c.lso6_max,
                },
                devargs: DevargsInfo {
                    latency: a.latency_us,
                    rx_copybreak: a.rx_copybreak,
                    tx_copybreak: a.tx_copybreak,
                    rx_extmbuf_enable: a.rx_extmbuf_enable,
                    numa_aware: a.numa_aware,
                },
            })
        })
    }

    /// Start receiving (sets the packet filter).
    #[napi]
    pub fn start(&self) -> Result<()> {
        self.core.with(|d| d.start().map_err(from_driver))
    }

    /// Stop receiving (filter 0).
    #[napi]
    pub fn stop(&self) -> Result<()> {
        self.core.with(|d| d.stop().map_err(from_driver))
    }

    #[napi(getter)]
    pub fn is_started(&self) -> bool {
        self.core.lock().as_ref().is_some_and(|d| d.is_started())
    }

    /// Last packet filter value set (NDIS bits).
    #[napi(getter)]
    pub fn packet_filter(&self) -> Result<u32> {
        self.core.with(|d| Ok(d.packet_filter()))
    }

    #[napi]
    pub fn set_promiscuous(&self, on: bool) -> Result<()> {
        self.core
            .with(|d| d.set_promiscuous(on).map_err(from_driver))
    }

    #[napi]
    pub fn set_all_multicast(&self, on: bool) -> Result<()> {
        self.core
            .with(|d| d.set_allmulticast(on).map_err(from_driver))
    }

    /// `setPromiscuous` off the event loop.
    #[napi(ts_return_type = "Promise<undefined | NativeFailure>")]
    pub fn set_promiscuous_async<'e>(
        &self,
        env: &'e Env,
        on: bool,
    ) -> Result<napi::bindgen_prelude::Object<'e>> {
        run_async(env, &self.core, move |_, d| {
            d.set_promiscuous(on).map_err(from_driver)
        })
    }

    /// `setAllMulticast` off the event loop.
    #[napi(ts_return_type = "Promise<undefined | NativeFailure>")]
    pub fn set_all_multicast_async<'e>(
        &self,
        env: &'e Env,
        on: bool,
    ) -> Result<napi::bindgen_prelude::Object<'e>> {
        run_async(env, &self.core, move |_, d| {
            d.set_allmulticast(on).map_err(from_driver)
        })
    }

    /// `link` off the event loop.
    #[napi(ts_return_type = "Promise<NativeLink | NativeFailure>")]
    pub fn link_async<'e>(&self, env: &'e Env) -> Result<napi::bindgen_prelude::Object<'e>> {
        run_async(env, &self.core, |_, d| {
            d.link().map(link).map_err(from_driver)
        })
    }

    /// `setMtu` off the event loop.
    #[napi(ts_return_type = "Promise<undefined | NativeFailure>")]
    pub fn set_mtu_async<'e>(
        &self,
        env: &'e Env,
        mtu: u32,
    ) -> Result<napi::bindgen_prelude::Object<'e>> {
        run_async(env, &self.core, move |core, d| change_mtu(core, d, mtu))
    }

    /// `switchDatapath` off the event loop.
    #[napi(ts_return_type = "Promise<undefined | NativeFailure>")]
    pub fn switch_datapath_async<'e>(
        &self,
        env: &'e Env,
        to_vf: bool,
    ) -> Result<napi::bindgen_prelude::Object<'e>> {
        run_async(env, &self.core, move |_, d| {
            d.switch_datapath(to_vf).map_err(from_driver)
        })
    }

    /// Change the number of queue pairs off the event loop (a lossless re-initialisation; see
    /// `netvsc::Device::set_queues`). Settles with the queue count in use.
    #[napi(ts_return_type = "Promise<number | NativeFailure>")]
    pub fn set_queues_async<'e>(
        &self,
        env: &'e Env,
        queues: u32,
    ) -> Result<napi::bindgen_prelude::Object<'e>> {
        run_async(env, &self.core, move |core, d| {
            change_queues(core, d, queues)
        })
    }

    /// Change RSS key / table / hash types off the event loop (one OID set; channels stay open).
    #[napi(ts_return_type = "Promise<NativeRss | NativeFailure>")]
    pub fn set_rss_async<'e>(
        &self,
        env: &'e Env,
        rss: RssOptions,
    ) -> Result<napi::bindgen_prelude::Object<'e>> {
        let update = netvsc::RssUpdate {
            key: rss
                .key
                .as_deref()
                .map(|k| rss_key(k, "rss.key"))
                .transpose()?,
            table: rss
                .table
                .as_deref()
                .map(|t| rss_table(t, "rss.table"))
                .transpose()?,
            hash_types: rss.hash_types.as_deref().map(hash_types).transpose()?,
        };
        run_async(env, &self.core, move |_, d| {
            d.set_rss(update).map_err(from_driver)?;
            Ok(rss_info(d.rss()))
        })
    }

    /// RSS as configured now.
    #[napi]
    pub fn rss(&self) -> Result<NativeRss> {
        self.core.with(|d| Ok(rss_info(d.rss())))
    }

    /// `start` off the event loop.
    #[napi(ts_return_type = "Promise<undefined | NativeFailure>")]
    pub fn start_async<'e>(&self, env: &'e Env) -> Result<napi::bindgen_prelude::Object<'e>> {
        run_async(env, &self.core, |_, d| d.start().map_err(from_driver))
    }

    /// `stop` off the event loop.
    #[napi(ts_return_type = "Promise<undefined | NativeFailure>")]
    pub fn stop_async<'e>(&self, env: &'e Env) -> Result<napi::bindgen_prelude::Object<'e>> {
        run_async(env, &self.core, |_, d| d.stop().map_err(from_driver))
    }

    /// Query the link from the host.
    #[napi]
    pub fn link(&self) -> Result<NativeLink> {
        self.core.with(|d| d.link().map(link).map_err(from_driver))
    }

    /// Link as last learned (no host round trip).
    #[napi]
    pub fn cached_link(&self) -> Result<NativeLink> {
        self.core.with(|d| Ok(link(d.cached_link())))
    }

    /// Change the MTU (port stopped). Queues opened before become stale: close and reopen them.
    #[napi]
    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        self.core.with(|d| change_mtu(&self.core, d, mtu))
    }

    /// The host's send indirection table (16 queue indices, entry `hash % 16`), when it sent a valid one.
    #[napi]
    pub fn send_table(&self) -> Result<Option<Vec<u32>>> {
        self.core.with(|d| {
            Ok(d.send_table()
                .map(|t| t.iter().map(|&q| u32::from(q)).collect()))
        })
    }

    /// The VF serial the host offered, if any.
    #[napi]
    pub fn vf(&self) -> Result<Option<u32>> {
        self.core.with(|d| Ok(d.vf()))
    }

    /// The VF failover state, or null before any VF was offered.
    #[napi]
    pub fn vf_info(&self) -> Result<Option<NativeVfInfo>> {
        self.core.with(|d| {
            Ok(d.vf_info().map(|i| NativeVfInfo {
                state: i.state.as_str().into(),
                serial: i.serial,
                iface: i.iface,
                ifindex: i.ifindex,
                mode: i.mode.map(|m| m.as_str().into()),
                zero_copy: i.mode.is_some_and(|m| m.zero_copy()),
                queues: i.queues,
                switched: i.switched,
            }))
        })
    }

    /// Switch the data path to the VF (true) or back to synthetic.
    #[napi]
    pub fn switch_datapath(&self, to_vf: bool) -> Result<()> {
        self.core
            .with(|d| d.switch_datapath(to_vf).map_err(from_driver))
    }

    /// Port totals into `out`: ipackets, opackets, ibytes, obytes, imissed, ierrors, oerrors.
    #[napi]
    pub fn stats_into(&self, mut out: Float64ArraySlice<'_>) -> Result<()> {
        // SAFETY: JS is blocked during the call; the array is only borrowed for it.
        let out = unsafe { out.as_mut() };
        if out.len() < 7 {
            return Err(error(
                Code::InvalidArg,
                format!("stats array needs 7 slots, got {}", out.len()),
            ));
        }
        // Every queue the device has had and the VF's traffic (the application never sees the VF).
        let t = self.core.stats_snapshot().totals();
        let v = [
            t.ipackets, t.opackets, t.ibytes, t.obytes, t.imissed, t.ierrors, t.oerrors,
        ];
        for (o, x) in out.iter_mut().zip(v) {
            *o = x as f64;
        }
        Ok(())
    }

    /// Number of queues whose counters `queueStatsInto` writes.
    #[napi(getter)]
    pub fn queue_count(&self) -> u32 {
        self.core.stats_snapshot().queues().len() as u32
    }

    /// Per-queue counters into `out` (31 per queue: 15 tx and 15 rx in DPDK's order, then rx missed).
    /// Returns the number of queues written.
    #[napi]
    pub fn queue_stats_into(&self, mut out: Float64ArraySlice<'_>) -> u32 {
        // SAFETY: JS is blocked during the call; the array is only borrowed for it.
        let out = unsafe { out.as_mut() };
        let stats = self.core.stats_snapshot();
        let mut n = 0;
        for (q, chunk) in stats
            .queues()
            .iter()
            .zip(out.chunks_exact_mut(QUEUE_STAT_WORDS))
        {
            let tx = q.tx.values();
            let rx = q.rx.values();
            for (o, v) in chunk.iter_mut().zip(tx.iter().chain(rx.iter())) {
                *o = *v as f64;
            }
            chunk[30] = q.rx_missed.load(Ordering::Relaxed) as f64;
            n += 1;
        }
        n
    }

    /// The VF's counters with the `vf_` prefix (totals, per VF queue, switches, pairing attempts, lost frames).
    #[napi]
    pub fn vf_xstats(&self) -> Vec<NativeXstat> {
        self.core
            .stats_snapshot()
            .vf()
            .xstats()
            .into_iter()
            .map(|(name, v)| NativeXstat {
                name,
                value: v as f64,
            })
            .collect()
    }

    /// The device's `hv_`-prefixed counters (ignored host input, budget stops, ring errors, recoveries, sends
    /// unsettled by a recovery).
    #[napi]
    pub fn hv_xstats(&self) -> Result<Vec<NativeXstat>> {
        self.core.with(|d| {
            Ok(d.xstats()
                .into_iter()
                .filter(|(name, _)| name.starts_with("hv_"))
                .map(|(name, v)| NativeXstat {
                    name,
                    value: v as f64,
                })
                .collect())
        })
    }

    /// DPDK's per-queue stat names (`good_packets`, `ring full`, ...).
    #[napi]
    pub fn stat_names(&self) -> Vec<String> {
        STAT_NAMES.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Zero every counter.
    #[napi]
    pub fn reset_stats(&self) -> Result<()> {
        self.core.with(|d| {
            d.reset_stats();
            Ok(())
        })
    }

    /// Claim queue `index` for this thread.
    #[napi]
    pub fn queue(&self, env: Env, index: u32) -> Result<NativeQueue> {
        NativeQueue::claim(&env, self.core.clone(), index)
    }

    /// Let the process exit while the device is open (the event thread no longer holds the loop).
    #[napi]
    pub fn unref(&mut self, env: Env) -> Result<()> {
        match &mut self.events {
            Some(p) => p.set_ref(&env, false),
            None => Ok(()),
        }
    }

    /// Undo `unref()`.
    #[napi(js_name = "ref")]
    pub fn refer(&mut self, env: Env) -> Result<()> {
        match &mut self.events {
            Some(p) => p.set_ref(&env, true),
            None => Ok(()),
        }
    }

    /// Close: stop and join the event thread, then the driver's teardown (synthetic data path, filter 0, RNDIS
    /// HALT, buffers revoked, unmapped). Idempotent; queues still held see `ERR_NETVSC_CLOSED`/0-packet bursts.
    #[napi(catch_unwind)]
    pub fn close(&mut self) -> Result<()> {
        if let Some(p) = self.events.take() {
            p.stop(true);
        }
        let dev = self.core.take();
        registry::remove_device(&self.core.key, &self.core);
        match dev {
            Some(d) => d.close().map_err(from_driver),
            None => Ok(()),
        }
    }
}

impl Drop for NativeDevice {
    fn drop(&mut self) {
        // Finalized by the collector: what this handle kept alive is freed now and by the finalizers around it.
        vmbus_uio::heap::release_free_heap_soon();
        if let Some(p) = self.events.take() {
            p.stop(false);
        }
        registry::remove_device(&self.core.key, &self.core);
        if let Some(d) = self.core.take() {
            // Collected while open: the teardown talks to the host, so it runs off the JS thread.
            let _ = std::thread::Builder::new()
                .name("netvsc-drop".into())
                .spawn(move || drop(d));
        }
    }
}

fn change_mtu(core: &DeviceCore, d: &mut netvsc::Device, mtu: u32) -> Result<()> {
    d.set_mtu(mtu).map_err(from_driver)?;
    core.refresh_stats(d);
    *core.max_frame.lock().unwrap_or_else(|p| p.into_inner()) = d.info().mtu.max(mtu) as usize + 18;
    Ok(())
}

fn change_queues(core: &DeviceCore, d: &mut netvsc::Device, n: u32) -> Result<u32> {
    let n = u16::try_from(n)
        .ok()
        .filter(|n| (1..=64).contains(n))
        .ok_or_else(|| error(Code::InvalidArg, format!("queues must be 1..64, got {n}")))?;
    let r = d.set_queues(n).map_err(from_driver);
    // Refreshed either way: a failed change may still have re-initialised the device.
    core.refresh_stats(d);
    r.map(|()| u32::from(d.info().queues))
}

/// `rss.hashTypes` names and their bits (DPDK's six).
const HASH_TYPE_NAMES: [(&str, u32); 6] = [
    ("ipv4", netvsc::ndis::hash_types::IPV4),
    ("tcp_ipv4", netvsc::ndis::hash_types::TCP_IPV4),
    ("ipv6", netvsc::ndis::hash_types::IPV6),
    ("ipv6_ex", netvsc::ndis::hash_types::IPV6_EX),
    ("tcp_ipv6", netvsc::ndis::hash_types::TCP_IPV6),
    ("tcp_ipv6_ex", netvsc::ndis::hash_types::TCP_IPV6_EX),
];

fn rss_key(k: &[u8], what: &str) -> Result<[u8; 40]> {
    k.try_into().map_err(|_| {
        error(
            Code::InvalidArg,
            format!("{what} must be 40 bytes, got {}", k.len()),
        )
    })
}

fn rss_table(t: &[u32], what: &str) -> Result<[u16; netvsc::ndis::RSS_TABLE]> {
    if t.len() != netvsc::ndis::RSS_TABLE {
        return Err(error(
            Code::InvalidArg,
            format!("{what} must have 128 entries, got {}", t.len()),
        ));
    }
    let mut table = [0u16; netvsc::ndis::RSS_TABLE];
    for (slot, &q) in table.iter_mut().zip(t) {
        *slot = u16::try_from(q).map_err(|_| {
            error(
                Code::InvalidArg,
                format!("{what} entry {q} is not a queue index"),
            )
        })?;
    }
    Ok(table)
}

fn hash_types(names: &[String]) -> Result<u32> {
    names.iter().try_fold(0u32, |acc, n| {
        HASH_TYPE_NAMES
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, bit)| acc | bit)
            .ok_or_else(|| {
                error(
                    Code::InvalidArg,
                    format!(
                        "rss.hashTypes: unknown type '{n}' (one of {})",
                        HASH_TYPE_NAMES.map(|(n, _)| n).join(", ")
                    ),
                )
            })
    })
}

fn rss_info(r: netvsc::RssConfig) -> NativeRss {
    NativeRss {
        key: r.key.to_vec(),
        table: r.table.iter().map(|&q| u32::from(q)).collect(),
        hash_types: HASH_TYPE_NAMES
            .iter()
            .filter(|(_, bit)| r.hash_types & bit != 0)
            .map(|(n, _)| (*n).to_owned())
            .collect(),
        enabled: r.enabled,
    }
}

fn link(l: netvsc::LinkInfo) -> NativeLink {
    NativeLink {
        up: l.up,
        speed_mbps: f64::from(l.speed_100bps) / 10_000.0,
        full_duplex: l.full_duplex,
    }
}

/// Find the device `uuid` under `root` opened in this process (by any thread).
pub fn find_open(root: Option<String>, uuid: &str) -> Result<Arc<DeviceCore>> {
    let root = PathBuf::from(root.unwrap_or_else(|| "/".into()));
    let key = registry::device_key(&root, uuid);
    registry::find_device(&key).ok_or_else(|| {
        error(
            Code::NotOpen,
            format!("device {uuid} under {} is not open in this process (open it on the main thread first)", root.display()),
        )
    })
}

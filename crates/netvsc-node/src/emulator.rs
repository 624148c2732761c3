//! `NativeEmulator`: the in-process Hyper-V host emulator (`hv_emu::Emulator`) for JS — start it on a directory,
//! change the link, offer a VF, read its stats JSON; with the `capture` backend also read what the guest sent and
//! inject frames. `runGuest` runs an unmodified program against a tree through hv-emu's runner (root only).

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;

use hv_emu::backend::{
    BackendConfig, CaptureHandle, FlowProto, GeneratorConfig, IMIX, Ipv4Range, MAX_FLOWS,
    PortRange, parse_sizes,
};
use hv_emu::commands::GenError;
use hv_emu::ctl::ControlServer;
use hv_emu::emulator::{Emulator, EmulatorConfig};
use hv_emu::host::{FilterNone, SendTable, SlowHost};
use hv_emu::vf::{VfConfig, VfError, VfNetns};
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

use crate::errors::{Code, Result, error, with_causes};

/// Receive traffic of the `generator` backend.
#[napi(object)]
#[derive(Debug, Default, Clone)]
pub struct GeneratorOptions {
    /// Frames per second (default 1000); 0 = as many as the host's receive thread asks for (what finds no guest
    /// buffer is a `noRxBuffer` drop). Paced by a token bucket with a 2 ms burst: no catch-up after a pause.
    pub rate_pps: Option<f64>,
    /// Frame sizes (Ethernet header included, no FCS, 60..65535; default [64]), used in turn once every flow had one.
    pub frame_sizes: Option<Vec<u32>>,
    /// Tag every frame with this 802.1Q TCI.
    pub vlan: Option<u32>,
    /// Distinct flows (spread by RSS).
    pub flows: Option<u32>,
    /// End a run after this many frames.
    pub limit: Option<f64>,
    pub multicast_every: Option<u32>,
    pub broadcast_every: Option<u32>,
    /// Write each frame's sequence number (0, 1, …; little-endian, first 8 L4 payload bytes) and its pattern.
    pub sequenced: Option<bool>,
    /// Sizes 7:4:1 of 64/570/1518 bytes on the wire (60/566/1514 without FCS) instead of `frameSizes`.
    pub imix: Option<bool>,
    /// Stop a run after this many milliseconds (from its first frame).
    pub duration_ms: Option<f64>,
    /// `tcp`, `udp` or `mixed` (default: even flows TCP, odd flows UDP).
    pub proto: Option<String>,
    /// Source IPv4 addresses `A.B.C.D[-E.F.G.H]`, flow i takes `first + i mod count` (default 10.1.0.0-10.1.255.255).
    pub src_ip: Option<String>,
    /// Destination IPv4 addresses (default 10.0.0.1).
    pub dst_ip: Option<String>,
    /// Source ports `P[-Q]` (default 10000-65535).
    pub src_port: Option<String>,
    /// Destination ports (default 80 for TCP flows, 5000 for UDP flows).
    pub dst_port: Option<String>,
    /// Stamp each frame with its flow's counter and the time, checked when the guest sends it back (default true).
    pub stamp: Option<bool>,
    /// Start stopped (`genStart()` or `gen start` starts it).
    pub paused: Option<bool>,
}

/// The accelerated-networking VF the emulator offers (a veth pair; root).
#[napi(object)]
#[derive(Debug, Default, Clone)]
pub struct VfOptions {
    /// Name of the guest end (the VF netdev), ≤ 15 bytes; the host end is `<iface>h`.
    pub iface: String,
    /// Offer delay after the guest is ready, ms (default 1000).
    pub delay_ms: Option<f64>,
    /// VF serial (default 1).
    pub serial: Option<u32>,
    /// The VF's MAC (default: the synthetic MAC).
    pub mac: Option<String>,
    /// Network-namespace file to put the guest end in (default: this namespace).
    pub netns: Option<String>,
}

/// Options of `NativeEmulator.start`.
#[napi(object)]
#[derive(Debug, Default, Clone)]
pub struct EmulatorOptions {
    /// Directory D of the emulated tree.
    pub dir: String,
    pub uuid: Option<String>,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    /// Channels offered (primary + subchannels).
    pub max_queues: Option<u32>,
    /// `sink` (default), `loopback`, `generator`, `tap`, `capture`.
    pub backend: Option<String>,
    /// TAP interface name for `tap`.
    pub tap_name: Option<String>,
    pub generator: Option<GeneratorOptions>,
    /// Mirror both directions into this pcapng file.
    pub pcap: Option<String>,
    /// Host workers spin instead of sleeping.
    pub busy_poll: Option<bool>,
    /// The host reads the guest's packets and answers none of them (bring-up timeout tests).
    pub silent: Option<bool>,
    /// Initial link speed in Mbit/s.
    pub link_speed_mbps: Option<f64>,
    /// Bytes per ring direction (header page included).
    pub ring_size: Option<u32>,
    pub recv_size: Option<u32>,
    pub send_size: Option<u32>,
    pub uio_number: Option<u32>,
    /// Offer a VF.
    pub vf: Option<VfOptions>,
    /// Rewrite this file with the stats JSON every second (atomically) and when the emulator stops.
    pub stats_json: Option<String>,
    /// Hyper-V behaviours (issue 12), each defaulting to what Hyper-V does: the two halves of a quick link flap
    /// this many ms apart (default 5000; 0 = together).
    pub link_delay_ms: Option<f64>,
    /// Frames for a guest whose packet filter is NONE: `drop` (default; counted as filterNone) or `hold`.
    pub filter_none: Option<String>,
    /// Drop and count frames over the MTU + 14 both ways (default true).
    pub mtu_check: Option<bool>,
    /// Bytes of the host→guest ring rx data leaves free for completions and control (default 2048).
    pub ring_headroom: Option<u32>,
    /// The send indirection table: `hyperv` (default), `openvmm`, `off`.
    pub send_table: Option<String>,
    /// Channels offered with a monitor id (default true); false: the guest signals through the uio fd.
    pub monitored: Option<bool>,
    /// Reply delays, `MS[,KIND=MS...]` (KIND: init, recv-buf, send-buf, subchannel, switch-data-path,
    /// rndis-init, query, set, keepalive).
    pub slow_host: Option<String>,
}

/// Parse `aa:bb:cc:dd:ee:ff` (also `-` separated).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

fn invalid(what: &str, value: impl std::fmt::Display) -> napi::Error<Code> {
    error(
        Code::InvalidArg,
        format!("emulator option {what}: bad value {value}"),
    )
}

fn config(o: &EmulatorOptions) -> Result<(EmulatorConfig, Option<CaptureHandle>)> {
    if o.dir.is_empty() {
        return Err(invalid("dir", "''"));
    }
    let mut c = EmulatorConfig::new(PathBuf::from(&o.dir));
    if let Some(u) = &o.uuid {
        c.uuid = u.to_ascii_lowercase();
    }
    if let Some(m) = &o.mac {
        c.mac = parse_mac(m).ok_or_else(|| invalid("mac", m))?;
    }
    if let Some(m) = o.mtu {
        c.mtu = m;
    }
    if let Some(q) = o.max_queues {
        if !(1..=64).contains(&q) {
            return Err(invalid("maxQueues", q));
        }
        c.max_queues = q as u16;
    }
    if let Some(b) = o.busy_poll {
        c.busy_poll = b;
    }
    if let Some(s) = o.silent {
        c.silent = s;
    }
    if let Some(s) = o.link_speed_mbps {
        c.link_speed = (s * 10_000.0) as u32;
    }
    if let Some(s) = o.ring_size {
        c.ring_size = s as usize;
    }
    if let Some(s) = o.recv_size {
        c.recv_size = s as usize;
    }
    if let Some(s) = o.send_size {
        c.send_size = s as usize;
    }
    if let Some(n) = o.uio_number {
        c.uio_number = n;
    }
    c.pcap = o.pcap.as_ref().map(PathBuf::from);
    c.stats_json = o.stats_json.as_ref().map(PathBuf::from);
    hyperv_options(o, &mut c)?;
    if let Some(v) = &o.vf {
        let mut vc = VfConfig::new(v.iface.clone());
        if let Some(d) = v.delay_ms {
            if !(0.0..=3_600_000.0).contains(&d) {
                return Err(invalid("vf.delayMs", d));
            }
            vc.delay_ms = d as u64;
        }
        if let Some(s) = v.serial {
            vc.serial = s;
        }
        if let Some(m) = &v.mac {
            vc.mac = Some(parse_mac(m).ok_or_else(|| invalid("vf.mac", m))?);
        }
        vc.netns = v.netns.as_ref().map(|p| VfNetns::Path(PathBuf::from(p)));
        c.vf = Some(vc);
    }
    let mut capture = None;
    c.backend = match o.backend.as_deref().unwrap_or("sink") {
        "sink" => BackendConfig::Sink,
        "loopback" => BackendConfig::Loopback,
        "tap" => BackendConfig::Tap {
            name: o.tap_name.clone().unwrap_or_else(|| "hvemu0".into()),
        },
        "capture" => {
            let h = CaptureHandle::default();
            capture = Some(h.clone());
            BackendConfig::Capture(h)
        }
        "generator" => {
            let g = o.generator.clone().unwrap_or_default();
            let mut gc = GeneratorConfig {
                dst_mac: c.mac,
                ..GeneratorConfig::default()
            };
            gc.sequenced = g.sequenced.unwrap_or(false);
            gc.stamp = g.stamp.unwrap_or(true);
            gc.paused = g.paused.unwrap_or(false);
            if let Some(p) = &g.proto {
                gc.pattern.proto =
                    FlowProto::parse(p).map_err(|e| invalid("generator.proto", e))?;
            }
            if let Some(r) = &g.src_ip {
                gc.pattern.src_ip =
                    Ipv4Range::parse(r).map_err(|e| invalid("generator.srcIp", e))?;
            }
            if let Some(r) = &g.dst_ip {
                gc.pattern.dst_ip =
                    Ipv4Range::parse(r).map_err(|e| invalid("generator.dstIp", e))?;
            }
            if let Some(r) = &g.src_port {
                gc.pattern.src_port =
                    PortRange::parse(r).map_err(|e| invalid("generator.srcPort", e))?;
            }
            if let Some(r) = &g.dst_port {
                gc.pattern.dst_port =
                    Some(PortRange::parse(r).map_err(|e| invalid("generator.dstPort", e))?);
            }
            if let Some(d) = g.duration_ms {
                if !(d > 0.0 && d <= 1e12) {
                    return Err(invalid("generator.durationMs", d));
                }
                gc.duration = Some(std::time::Duration::from_secs_f64(d / 1000.0));
            }
            gc.rate_pps = match g.rate_pps {
                None => gc.rate_pps,
                Some(r) if r <= 0.0 => None,
                Some(r) => Some(r as u64),
            };
            if let Some(s) = g.frame_sizes {
                if s.is_empty() || s.iter().any(|&n| n < 60) {
                    return Err(invalid(
                        "generator.frameSizes",
                        format!("{s:?} (each ≥ 60)"),
                    ));
                }
                gc.frame_sizes = s.into_iter().map(|n| n as usize).collect();
            }
            if g.imix == Some(true) {
                gc.frame_sizes = IMIX.to_vec();
            }
            gc.vlan = g.vlan.map(|v| v as u16);
            if let Some(f) = g.flows {
                if !(1..=MAX_FLOWS).contains(&f) {
                    return Err(invalid("generator.flows", format!("{f} (1..={MAX_FLOWS})")));
                }
                gc.flows = f;
            }
            if let Some(v) = g.vlan
                && v > 0xFFFF
            {
                return Err(invalid("generator.vlan", format!("{v} (a 16-bit TCI)")));
            }
            if let Some(l) = g.limit
                && !(l >= 1.0 && l <= u64::MAX as f64)
            {
                return Err(invalid("generator.limit", l));
            }
            gc.limit = g.limit.map(|l| l as u64);
            gc.multicast_every = g.multicast_every.unwrap_or(0);
            gc.broadcast_every = g.broadcast_every.unwrap_or(0);
            BackendConfig::Generator(gc)
        }
        other => {
            return Err(invalid(
                "backend",
                format!("'{other}' (sink|loopback|generator|tap|capture)"),
            ));
        }
    };
    Ok((c, capture))
}

/// The Hyper-V behaviour switches of `o` onto `c`.
fn hyperv_options(o: &EmulatorOptions, c: &mut EmulatorConfig) -> Result<()> {
    if let Some(ms) = o.link_delay_ms {
        if !(0.0..=600_000.0).contains(&ms) || ms.fract() != 0.0 {
            return Err(invalid("linkDelayMs", ms));
        }
        c.link_delay = std::time::Duration::from_millis(ms as u64);
    }
    if let Some(f) = &o.filter_none {
        c.filter_none = match f.as_str() {
            "drop" => FilterNone::Drop,
            "hold" => FilterNone::Hold,
            other => return Err(invalid("filterNone", format!("'{other}' (drop|hold)"))),
        };
    }
    if let Some(m) = o.mtu_check {
        c.mtu_check = m;
    }
    if let Some(h) = o.ring_headroom {
        if h as usize >= c.ring_size.saturating_sub(4096) {
            return Err(invalid(
                "ringHeadroom",
                format!("{h} (below the ring's data size)"),
            ));
        }
        c.ring_headroom = h;
    }
    if let Some(t) = &o.send_table {
        c.send_table = match t.as_str() {
            "hyperv" => SendTable::Hyperv,
            "openvmm" => SendTable::OpenVmm,
            "off" => SendTable::Off,
            other => {
                return Err(invalid(
                    "sendTable",
                    format!("'{other}' (hyperv|openvmm|off)"),
                ));
            }
        };
    }
    if let Some(m) = o.monitored {
        c.monitored = m;
    }
    if let Some(s) = &o.slow_host {
        c.slow_host = SlowHost::parse(s).map_err(|e| invalid("slowHost", e))?;
    }
    Ok(())
}

/// A running emulated NIC.
#[napi]
pub struct NativeEmulator {
    emu: Option<Emulator>,
    uuid: String,
    dir: String,
    capture: Option<CaptureHandle>,
    control: Option<ControlServer>,
}

fn vf_error(e: VfError) -> napi::Error<Code> {
    let code = match e {
        VfError::Invalid(_) => Code::InvalidArg,
        _ => Code::Emulator,
    };
    error(code, format!("VF: {e}"))
}

fn gen_error(e: GenError) -> napi::Error<Code> {
    let code = match e {
        GenError::NotGenerator(_) => Code::Emulator,
        GenError::Invalid(_) => Code::InvalidArg,
    };
    error(code, format!("generator: {e}"))
}

#[napi]
impl NativeEmulator {
    /// Write the device tree under `options.dir` and start the host.
    #[napi(factory, catch_unwind)]
    pub fn start(options: EmulatorOptions) -> Result<NativeEmulator> {
        let (cfg, capture) = config(&options)?;
        let uuid = cfg.uuid.clone();
        let emu = Emulator::start(cfg).map_err(|e| {
            let code = match e {
                hv_emu::emulator::EmulatorError::Busy { .. } => Code::DeviceBusy,
                _ => Code::Emulator,
            };
            with_causes(code, &e)
        })?;
        Ok(NativeEmulator {
            emu: Some(emu),
            uuid,
            dir: options.dir,
            capture,
            control: None,
        })
    }

    fn emu(&self) -> Result<&Emulator> {
        self.emu
            .as_ref()
            .ok_or_else(|| error(Code::Closed, format!("emulator {} is stopped", self.uuid)))
    }

    #[napi(getter)]
    pub fn uuid(&self) -> String {
        self.uuid.clone()
    }

    #[napi(getter)]
    pub fn dir(&self) -> String {
        self.dir.clone()
    }

    #[napi(getter)]
    pub fn is_running(&self) -> bool {
        self.emu.is_some()
    }

    /// Inject faults (`kinds` comma-separated, e.g. `torn-index,flood`; see `hv_emu::host::FaultKind`), kind i
    /// with seed `seed + i` (default 1). Returns the reports as JSON (an array).
    #[napi]
    pub fn inject_fault(&self, kinds: String, seed: Option<f64>) -> Result<String> {
        let emu = self.emu()?;
        let seed = seed.unwrap_or(1.0);
        if !(seed >= 0.0 && seed <= u64::MAX as f64) {
            return Err(error(
                Code::InvalidArg,
                format!("fault seed must be a non-negative integer, got {seed}"),
            ));
        }
        let mut reports = Vec::new();
        for (i, k) in kinds.split(',').enumerate() {
            let kind = hv_emu::host::FaultKind::parse(k).map_err(|e| error(Code::InvalidArg, e))?;
            let r = emu
                .inject_fault(kind, (seed as u64).wrapping_add(i as u64))
                .map_err(|e| error(Code::InvalidArg, format!("fault {}: {e}", kind.name())))?;
            reports.push(r);
        }
        serde_json::to_string(&reports).map_err(|e| error(Code::Napi, e.to_string()))
    }

    /// Completions the `withhold-completions` fault has dropped.
    #[napi(getter)]
    pub fn completions_withheld(&self) -> Result<f64> {
        Ok(self.emu()?.completions_withheld() as f64)
    }

    /// Link up/down (the guest gets an RNDIS status indication).
    #[napi]
    pub fn set_link(&self, up: bool) -> Result<()> {
        self.emu()?.set_link(up);
        Ok(())
    }

    /// Link notifications arriving together (a quick flap: `[false, true]`); they coalesce as on Hyper-V.
    #[napi]
    pub fn notify_link(&self, states: Vec<bool>) -> Result<()> {
        self.emu()?.notify_link(&states);
        Ok(())
    }

    /// Link speed in Mbit/s (the guest gets LINK_SPEED_CHANGE).
    #[napi]
    pub fn set_link_speed(&self, mbps: f64) -> Result<()> {
        self.emu()?.set_link_speed((mbps * 10_000.0) as u32);
        Ok(())
    }

    /// Offer (or withdraw) a VF; false when the negotiated NVSP version cannot carry it.
    #[napi]
    pub fn send_vf_association(&self, allocated: bool, serial: u32) -> Result<bool> {
        Ok(self.emu()?.send_vf_association(allocated, serial))
    }

    /// Offer the VF now (refused before the guest is ready, below NVSP 4, without its SR-IOV bit, or removed).
    #[napi]
    pub fn vf_offer(&self) -> Result<()> {
        self.emu()?.vf_offer().map_err(vf_error)
    }

    /// Withdraw the VF (SEND_VF_ASSOCIATION allocated=0); rx goes synthetic at once.
    #[napi]
    pub fn vf_revoke(&self) -> Result<()> {
        self.emu()?.vf_revoke().map_err(vf_error)
    }

    /// Hot-remove the VF: delete its veth pair.
    #[napi]
    pub fn vf_remove(&self) -> Result<()> {
        self.emu()?.vf_remove().map_err(vf_error)
    }

    /// Hot-add the VF: re-create the pair; offered again after the delay.
    #[napi]
    pub fn vf_add(&self) -> Result<()> {
        self.emu()?.vf_add().map_err(vf_error)
    }

    /// Host-initiated switch to synthetic (NVSP 129 {0}).
    #[napi]
    pub fn vf_switch_back(&self) -> Result<()> {
        self.emu()?.vf_switch_back().map_err(vf_error)
    }

    /// Give the VF another MAC (`aa:bb:cc:dd:ee:ff`).
    #[napi]
    pub fn vf_set_mac(&self, mac: String) -> Result<()> {
        let m = parse_mac(&mac).ok_or_else(|| invalid("mac", &mac))?;
        self.emu()?.vf_set_mac(m).map_err(vf_error)
    }

    /// The VF's state and counters as JSON, or null without a VF.
    #[napi]
    pub fn vf_state_json(&self) -> Result<Option<String>> {
        Ok(self.emu()?.vf_state_json())
    }

    /// Run a control-socket command in this process (`cmd`, `args` as `netvsc ctl DIR cmd args…` sends them); the
    /// reply as JSON (`{"ok":true,…}` or `{"ok":false,"error":…}`).
    #[napi]
    pub fn control(&self, cmd: String, args: Vec<String>) -> Result<String> {
        Ok(self.emu()?.control_registry().call(&cmd, &args).to_string())
    }

    /// Link down now, up again after `ms` (unless another link change comes first).
    #[napi]
    pub fn link_flap(&self, ms: f64) -> Result<()> {
        if !(1.0..=600_000.0).contains(&ms) {
            return Err(invalid("link flap ms", ms));
        }
        self.emu()?
            .link_flap(ms as u64)
            .map_err(|e| error(Code::InvalidArg, e))
    }

    /// Start a new generator run.
    #[napi]
    pub fn gen_start(&self) -> Result<()> {
        self.emu()?.gen_start().map_err(gen_error)
    }

    /// Stop the generator.
    #[napi]
    pub fn gen_stop(&self) -> Result<()> {
        self.emu()?.gen_stop().map_err(gen_error)
    }

    /// Generator rate in frames/s, 0 = as fast as the guest takes them.
    #[napi]
    pub fn gen_rate(&self, pps: f64) -> Result<()> {
        if !(0.0..=1e9).contains(&pps) {
            return Err(invalid("generator rate", pps));
        }
        self.emu()?.gen_set_rate(pps as u64).map_err(gen_error)
    }

    /// Generator frame sizes: `imix` or `B,B,…` (60..9018).
    #[napi]
    pub fn gen_sizes(&self, spec: String) -> Result<()> {
        let sizes = parse_sizes(&spec, 60, 9018).map_err(|e| error(Code::InvalidArg, e))?;
        self.emu()?.gen_set_sizes(sizes).map_err(gen_error)
    }

    /// The generator's settings, counters and checker results as JSON.
    #[napi]
    pub fn generator_stats_json(&self) -> Result<String> {
        let v = self.emu()?.generator_stats().map_err(gen_error)?;
        Ok(v.to_string())
    }

    /// Serve the control socket at `path` (one JSON line per request and reply) until `stop()`.
    #[napi]
    pub fn serve_control(&mut self, path: String) -> Result<()> {
        // The old server goes first: dropping it unlinks its path, which may be this one.
        self.control = None;
        let server = self
            .emu()?
            .serve_control(std::path::Path::new(&path))
            .map_err(|e| error(Code::Io, format!("control socket {path}: {e}")))?;
        self.control = Some(server);
        Ok(())
    }

    /// The host's counters and negotiated state as JSON (camelCase).
    #[napi]
    pub fn stats_json(&self) -> Result<String> {
        Ok(self.emu()?.stats_json())
    }

    /// `capture` backend: every frame the guest sent so far.
    #[napi]
    pub fn captured(&self) -> Result<Vec<Buffer>> {
        let h = self
            .capture
            .as_ref()
            .ok_or_else(|| error(Code::InvalidArg, "captured() needs backend 'capture'"))?;
        Ok(h.sent().into_iter().map(Buffer::from).collect())
    }

    /// `capture` backend: deliver `frame` to the guest.
    #[napi]
    pub fn inject(&self, frame: &[u8]) -> Result<()> {
        let h = self
            .capture
            .as_ref()
            .ok_or_else(|| error(Code::InvalidArg, "inject() needs backend 'capture'"))?;
        h.inject(frame);
        Ok(())
    }

    /// Stop the host threads and flush the pcap (idempotent). The tree stays on disk.
    #[napi]
    pub fn stop(&mut self) {
        self.control = None;
        if let Some(e) = self.emu.take() {
            e.stop();
        }
    }
}

/// `null` when this process can run guests under the emulator, else why not.
#[napi]
pub fn can_run_guests() -> Option<String> {
    hv_emu::runner::can_run_guests().err()
}

/// Run `argv` against the tree at `dir` (private mount namespace + uio interposer; root only) and wait for it.
/// Returns its exit status (128 + signal when killed).
#[napi]
pub fn run_guest(dir: String, argv: Vec<String>) -> Result<i32> {
    if argv.is_empty() {
        return Err(error(Code::InvalidArg, "runGuest needs a command"));
    }
    let mut cmd = hv_emu::runner::GuestCommand::new(std::path::Path::new(&dir), &argv);
    // Node marks fds 0-2 close-on-exec, so plain inheritance would start the guest without stdin/stdout/stderr
    // (testpmd's prompt and output vanish, `echo` fails with EBADF): hand it duplicates, which the spawn dup2s
    // onto 0-2 without the flag.
    cmd.command_mut()
        .stdin(std_handle(std::io::stdin().as_fd()))
        .stdout(std_handle(std::io::stdout().as_fd()))
        .stderr(std_handle(std::io::stderr().as_fd()));
    let mut child = cmd.spawn().map_err(|e| with_causes(Code::Runner, &e))?;
    let status = child
        .wait()
        .map_err(|e| error(Code::Runner, format!("waiting for {}: {e}", argv[0])))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// A duplicate of this process's standard handle `fd` for a child; `/dev/null` when `fd` is not open.
fn std_handle(fd: BorrowedFd<'_>) -> Stdio {
    fd.try_clone_to_owned()
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

//! The generator backend: receive traffic at a set rate (a token bucket with a small burst, [`super::pace`]) or as
//! fast as the guest takes it, for a count or a duration, over flows from a 5-tuple pattern ([`super::flows`]) in
//! a list of sizes or IMIX, optionally 802.1Q-tagged.
//!
//! Frames are pre-built per (flow, size); each frame sent gets its flow's counter and the time stamped in place
//! ([`super::stamp`]), so the generator, which is also where the guest's transmitted frames go, checks what comes
//! back through a loop for loss, reordering and latency. A run starts when the host first asks for frames (the
//! guest's buffers, RNDIS and packet filter are up) and ends at its count or duration or on [`Generator::stop`].
//! With `sequenced`, frame n's payload instead carries n and a pattern ([`super::sequenced`]) checked byte for byte.

use super::Backend;
use super::flows::{FlowPattern, build_frame};
use super::pace::Bucket;
use super::sequenced::fill_sequenced;
use super::sink::l4_payload_offset;
use super::stamp::{SeqChecker, StampSlot, TICK_NS};
use crate::host::frame;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Most template bytes (flows × distinct sizes) a generator builds.
pub const MAX_TEMPLATE_BYTES: usize = 128 << 20;
/// Most flows (the flow index travels in the 16-bit IPv4 identification).
pub const MAX_FLOWS: u32 = 65536;

/// What the generator produces.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Frames per second; `None` = as many as the host asks for.
    pub rate_pps: Option<u64>,
    /// Frame sizes (Ethernet header included, no FCS; 60..=65535), used in turn after every flow had one.
    pub frame_sizes: Vec<usize>,
    /// Tag every frame with this 802.1Q TCI.
    pub vlan: Option<u16>,
    /// Every n-th frame is multicast (0 = never).
    pub multicast_every: u32,
    /// Every n-th frame is broadcast (0 = never).
    pub broadcast_every: u32,
    /// Number of distinct flows, 1..=65536 (frame n belongs to flow n mod flows).
    pub flows: u32,
    /// How each flow's 5-tuple is made.
    pub pattern: FlowPattern,
    /// Destination MAC of directed frames (the NIC's address).
    pub dst_mac: [u8; 6],
    /// Stop a run after this many frames.
    pub limit: Option<u64>,
    /// Stop a run after this long (from its first frame).
    pub duration: Option<Duration>,
    /// Write each frame's sequence number (0, 1, ...) and its pattern into the L4 payload (no stamp then).
    pub sequenced: bool,
    /// Stamp every frame with its flow's counter and the time (checked when frames come back).
    pub stamp: bool,
    /// Start stopped: nothing is generated until [`Generator::start`].
    pub paused: bool,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            rate_pps: Some(1000),
            frame_sizes: vec![64],
            vlan: None,
            multicast_every: 0,
            broadcast_every: 0,
            flows: 1,
            pattern: FlowPattern::default(),
            dst_mac: [0x00, 0x15, 0x5d, 0x00, 0x00, 0x01],
            limit: None,
            duration: None,
            sequenced: false,
            stamp: true,
            paused: false,
        }
    }
}

/// One pre-built frame.
#[derive(Debug)]
struct Template {
    plain: Vec<u8>,
    /// `plain` with the 802.1Q tag when the generator tags (else empty).
    tagged: Vec<u8>,
    /// Where the stamp goes in `plain` (`None`: the frame cannot carry one).
    slot: Option<StampSlot>,
    /// Where `plain`'s L4 payload starts.
    payload_at: usize,
}

/// The current run.
#[derive(Debug, Default, Clone, Copy)]
struct Run {
    started: Option<Instant>,
    last: Option<Instant>,
    generated: u64,
    bytes: u64,
    /// Ended by its count or duration.
    done: bool,
}

/// Generates receive traffic and checks what the guest sends back.
#[derive(Debug)]
pub struct Generator {
    cfg: GeneratorConfig,
    /// Per (distinct size, flow): index `size * flows + flow`.
    templates: Vec<Template>,
    /// Distinct-size index of each step of the size cycle.
    cycle: Vec<usize>,
    scratch: Vec<u8>,
    tag_scratch: Vec<u8>,
    running: bool,
    bucket: Option<Bucket>,
    run: Run,
    runs: u64,
    flow_seq: Vec<u32>,
    checker: SeqChecker,
    epoch: Instant,
    frame_epoch: u64,
    generated: u64,
    bytes: u64,
    multicast: u64,
    broadcast: u64,
    unstamped: u64,
    returned: u64,
}

fn build_templates(cfg: &GeneratorConfig) -> Result<(Vec<Template>, Vec<usize>), String> {
    if cfg.frame_sizes.is_empty() {
        return Err("no frame sizes".into());
    }
    if let Some(&bad) = cfg
        .frame_sizes
        .iter()
        .find(|&&n| !(60..=65535).contains(&n))
    {
        return Err(format!("frame size {bad} outside 60..65535"));
    }
    if !(1..=MAX_FLOWS).contains(&cfg.flows) {
        return Err(format!("{} flows (want 1..={MAX_FLOWS})", cfg.flows));
    }
    let mut distinct: Vec<usize> = Vec::new();
    let cycle = cfg
        .frame_sizes
        .iter()
        .map(|s| match distinct.iter().position(|d| d == s) {
            Some(i) => i,
            None => {
                distinct.push(*s);
                distinct.len() - 1
            }
        })
        .collect();
    let per_flow: usize = distinct.iter().sum::<usize>() * if cfg.vlan.is_some() { 2 } else { 1 };
    let total = per_flow.saturating_mul(cfg.flows as usize);
    if total > MAX_TEMPLATE_BYTES {
        return Err(format!(
            "{} flows x sizes {:?} need {} MiB of frames (at most {} MiB): use fewer flows or sizes",
            cfg.flows,
            distinct,
            total >> 20,
            MAX_TEMPLATE_BYTES >> 20
        ));
    }
    let mut templates = Vec::with_capacity(distinct.len() * cfg.flows as usize);
    for &len in &distinct {
        for flow in 0..cfg.flows {
            let mut plain = build_frame(cfg.dst_mac, flow, &cfg.pattern.tuple(flow), len);
            let slot = if cfg.stamp && !cfg.sequenced {
                StampSlot::prepare(&mut plain)
            } else {
                None
            };
            let mut tagged = Vec::new();
            if let Some(tci) = cfg.vlan {
                frame::push_tagged(&plain, tci, &mut tagged);
            }
            let payload_at = l4_payload_offset(&plain).unwrap_or(plain.len());
            templates.push(Template {
                plain,
                tagged,
                slot,
                payload_at,
            });
        }
    }
    Ok((templates, cycle))
}

impl Generator {
    /// A generator for `cfg`; refused when its sizes, flows or template memory are out of bounds.
    pub fn new(cfg: GeneratorConfig) -> Result<Self, String> {
        let (templates, cycle) = build_templates(&cfg)?;
        let max = templates.iter().map(|t| t.plain.len()).max().unwrap_or(0);
        Ok(Generator {
            bucket: cfg.rate_pps.map(Bucket::new),
            running: !cfg.paused,
            flow_seq: vec![0; cfg.flows as usize],
            checker: SeqChecker::new(cfg.flows),
            templates,
            cycle,
            scratch: Vec::with_capacity(max),
            tag_scratch: Vec::with_capacity(max + 4),
            run: Run::default(),
            runs: 0,
            epoch: Instant::now(),
            frame_epoch: 0,
            generated: 0,
            bytes: 0,
            multicast: 0,
            broadcast: 0,
            unstamped: 0,
            returned: 0,
            cfg,
        })
    }

    /// Frames generated so far (all runs).
    pub fn generated(&self) -> u64 {
        self.generated
    }

    /// The configuration (with any runtime changes).
    pub fn config(&self) -> &GeneratorConfig {
        &self.cfg
    }

    /// Start a new run now (count and duration from its first frame); a running generator starts over too.
    pub fn start(&mut self) {
        self.running = true;
        self.run = Run::default();
        if let Some(b) = &mut self.bucket {
            b.reset();
        }
    }

    /// Stop generating (the run ends; the checker keeps counting frames that come back).
    pub fn stop(&mut self) {
        self.running = false;
        self.run.done = false;
        if let Some(b) = &mut self.bucket {
            b.reset();
        }
    }

    /// Frames per second from now on (`None`: as fast as the host asks).
    pub fn set_rate(&mut self, pps: Option<u64>) {
        self.cfg.rate_pps = pps.filter(|&p| p > 0);
        self.bucket = self.cfg.rate_pps.map(Bucket::new);
    }

    /// New frame sizes (a list used in turn, e.g. [`super::flows::IMIX`]); the frames are rebuilt.
    pub fn set_sizes(&mut self, sizes: Vec<usize>) -> Result<(), String> {
        let mut cfg = self.cfg.clone();
        cfg.frame_sizes = sizes;
        let (templates, cycle) = build_templates(&cfg)?;
        let max = templates.iter().map(|t| t.plain.len()).max().unwrap_or(0);
        self.templates = templates;
        self.cycle = cycle;
        self.scratch.reserve(max);
        self.tag_scratch.reserve(max + 4);
        self.cfg = cfg;
        self.frame_epoch += 1;
        Ok(())
    }

    /// Forget the checker's counts (a new measurement).
    pub fn reset_checker(&mut self) {
        self.checker.reset();
    }

    /// The checker's counts so far.
    pub fn checker(&self) -> super::stamp::CheckerStats {
        self.checker.stats()
    }

    /// `waiting` (running, but the host has not asked for frames yet), `running`, `stopped` or `done`.
    pub fn state(&self) -> &'static str {
        match (self.running, self.run.started.is_some(), self.run.done) {
            (_, _, true) => "done",
            (false, _, _) => "stopped",
            (true, false, _) => "waiting",
            (true, true, _) => "running",
        }
    }

    fn ticks(&self, now: Instant) -> u32 {
        (now.saturating_duration_since(self.epoch).as_nanos() / u128::from(TICK_NS)) as u32
    }

    fn finish(&mut self) {
        self.run.done = true;
        self.running = false;
        self.runs += 1;
    }

    /// Emit frame number `self.generated` (stamp time `ticks`) and return its length.
    fn emit(&mut self, ticks: u32, deliver: &mut dyn FnMut(&[u8])) -> usize {
        let n = self.generated;
        let flows = u64::from(self.cfg.flows);
        let flow = (n % flows) as usize;
        let size = self.cycle[((n / flows) % self.cycle.len() as u64) as usize];
        let seq = self.flow_seq[flow];
        self.flow_seq[flow] = seq.wrapping_add(1);
        let c = &self.cfg;
        let bcast = c.broadcast_every != 0 && (n + 1).is_multiple_of(u64::from(c.broadcast_every));
        let mcast = !bcast
            && c.multicast_every != 0
            && (n + 1).is_multiple_of(u64::from(c.multicast_every));
        let t = &mut self.templates[size * c.flows as usize + flow];
        if t.slot.is_none() && c.stamp && !c.sequenced {
            self.unstamped += 1;
        }
        if !(bcast || mcast || c.sequenced) {
            // The pre-built frame, stamped in place (its headers and address stay the same).
            let tagged = c.vlan.is_some();
            let buf = if tagged { &mut t.tagged } else { &mut t.plain };
            if let Some(slot) = t.slot {
                let slot = if tagged { slot.tagged() } else { slot };
                slot.write(buf, seq, ticks);
            }
            deliver(buf);
            return buf.len();
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&t.plain);
        if c.sequenced {
            fill_sequenced(&mut self.scratch[t.payload_at..], n);
            frame::fill_l4_checksum(&mut self.scratch);
        } else if let Some(slot) = t.slot {
            slot.write(&mut self.scratch, seq, ticks);
        }
        if bcast {
            self.scratch[..6].copy_from_slice(&[0xFF; 6]);
            self.broadcast += 1;
        } else if mcast {
            self.scratch[..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
            self.multicast += 1;
        }
        match c.vlan {
            Some(tci) => {
                self.tag_scratch.clear();
                frame::push_tagged(&self.scratch, tci, &mut self.tag_scratch);
                deliver(&self.tag_scratch);
                self.tag_scratch.len()
            }
            None => {
                deliver(&self.scratch);
                self.scratch.len()
            }
        }
    }

    /// Frames per second the current run achieved (its frames over the time from its first to its last round).
    fn measured_pps(&self) -> Option<f64> {
        let (start, last) = (self.run.started?, self.run.last?);
        let secs = last.saturating_duration_since(start).as_secs_f64();
        (secs > 0.0).then(|| self.run.generated as f64 / secs)
    }
}

impl Backend for Generator {
    fn name(&self) -> &'static str {
        "generator"
    }
    fn transmit(&mut self, frame: &[u8]) {
        self.returned += 1;
        if self.cfg.stamp && !self.cfg.sequenced {
            let now = self.ticks(Instant::now());
            self.checker.check(frame, now);
        }
    }
    fn receive(&mut self, now: Instant, budget: usize, deliver: &mut dyn FnMut(&[u8])) -> usize {
        if !self.running {
            return 0;
        }
        // The host asks only once the guest can take frames: that is when a run starts.
        let started = *self.run.started.get_or_insert(now);
        if let Some(d) = self.cfg.duration
            && now.saturating_duration_since(started) >= d
        {
            self.finish();
            return 0;
        }
        let mut allowed = budget as u64;
        if let Some(b) = &mut self.bucket {
            allowed = allowed.min(b.refill(now));
        }
        if let Some(limit) = self.cfg.limit {
            allowed = allowed.min(limit.saturating_sub(self.run.generated));
        }
        let ticks = self.ticks(now);
        let mut bytes = 0u64;
        for _ in 0..allowed {
            bytes += self.emit(ticks, deliver) as u64;
            self.generated += 1;
        }
        if let Some(b) = &mut self.bucket {
            b.take(allowed);
        }
        self.bytes += bytes;
        self.run.generated += allowed;
        self.run.bytes += bytes;
        if allowed > 0 {
            self.run.last = Some(now);
        }
        if self.cfg.limit.is_some_and(|l| self.run.generated >= l) {
            self.finish();
        }
        allowed as usize
    }
    fn stable_frames(&self) -> bool {
        // Pre-built frames keep their address and headers (the stamp changes only fields no per-frame result depends
        // on, and keeps the checksum valid); sequenced, multicast and broadcast frames use scratch.
        !self.cfg.sequenced && self.cfg.multicast_every == 0 && self.cfg.broadcast_every == 0
    }
    fn frame_epoch(&self) -> u64 {
        self.frame_epoch
    }
    fn wire_paced(&self) -> bool {
        self.bucket.is_some()
    }
    fn produced(&self) -> u64 {
        self.generated
    }
    fn generator(&mut self) -> Option<&mut Generator> {
        Some(self)
    }
    fn stats(&self) -> Value {
        let c = &self.cfg;
        let p = &c.pattern;
        let ip = |r: &super::flows::Ipv4Range| {
            let last = r.first.wrapping_add((r.count - 1) as u32);
            format!(
                "{}-{}",
                std::net::Ipv4Addr::from(r.first),
                std::net::Ipv4Addr::from(last)
            )
        };
        let port = |r: &super::flows::PortRange| {
            format!("{}-{}", r.first, u32::from(r.first) + r.count - 1)
        };
        json!({
            "kind": "generator",
            "state": self.state(),
            "ratePps": c.rate_pps,
            "burst": self.bucket.as_ref().map(Bucket::cap),
            "frameSizes": c.frame_sizes,
            "flows": c.flows,
            "pattern": {
                "proto": format!("{:?}", p.proto).to_lowercase(),
                "srcIp": ip(&p.src_ip), "dstIp": ip(&p.dst_ip),
                "srcPort": port(&p.src_port), "dstPort": p.dst_port.as_ref().map(port),
            },
            "vlan": c.vlan,
            "limit": c.limit,
            "durationMs": c.duration.map(|d| d.as_millis() as u64),
            "generated": self.generated,
            "bytes": self.bytes,
            "run": {
                "generated": self.run.generated,
                "bytes": self.run.bytes,
                "elapsedMs": self.run.started.zip(self.run.last)
                    .map(|(s, l)| l.saturating_duration_since(s).as_secs_f64() * 1000.0),
                "measuredPps": self.measured_pps(),
            },
            "runsCompleted": self.runs,
            "multicast": self.multicast,
            "broadcast": self.broadcast,
            "sequenced": c.sequenced,
            "stamped": c.stamp && !c.sequenced,
            "unstamped": self.unstamped,
            "returned": self.returned,
            "checker": self.checker.stats(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::sequenced::check_sequenced;
    use super::super::stamp::read_stamp;
    use super::*;

    fn gen_with(cfg: GeneratorConfig) -> Generator {
        Generator::new(cfg).expect("valid config")
    }

    #[test]
    fn sequenced_frames_carry_their_number_and_valid_checksums() {
        let mut g = gen_with(GeneratorConfig {
            rate_pps: None,
            frame_sizes: vec![64, 1514],
            flows: 2,
            limit: Some(8),
            sequenced: true,
            broadcast_every: 3,
            ..GeneratorConfig::default()
        });
        let mut seen = Vec::new();
        let n = g.receive(Instant::now(), 100, &mut |f| {
            let off = l4_payload_offset(f).expect("tcp/udp frame");
            let seq = check_sequenced(&f[off..]).expect("pattern intact");
            let (ip, l4) = frame::verify(f).expect("ip frame");
            assert_eq!(
                (ip, l4.map(|(_, ok)| ok)),
                (Some(true), Some(true)),
                "frame {seq}"
            );
            seen.push((seq, f.len(), f[0]));
        });
        assert_eq!(n, 8);
        assert_eq!(g.generated(), 8);
        assert_eq!(g.state(), "done");
        // Flows change fastest: flow 0 and 1 at 64 B, then both at 1514 B.
        let sizes = [64, 64, 1514, 1514];
        for (k, (seq, len, dst0)) in seen.iter().enumerate() {
            assert_eq!(*seq, k as u64);
            assert_eq!(*len, sizes[k % 4]);
            assert_eq!(*dst0 == 0xFF, (k + 1) % 3 == 0, "broadcast every third");
        }
    }

    #[test]
    fn stamped_frames_count_per_flow_and_come_back_checked() {
        let mut g = gen_with(GeneratorConfig {
            rate_pps: None,
            frame_sizes: super::super::flows::IMIX.to_vec(),
            flows: 3,
            vlan: Some(0x0064),
            limit: Some(120),
            ..GeneratorConfig::default()
        });
        let mut frames = Vec::new();
        g.receive(Instant::now(), 1000, &mut |f| frames.push(f.to_vec()));
        assert_eq!(frames.len(), 120);
        for (n, f) in frames.iter().enumerate() {
            assert_eq!(&f[12..16], &[0x81, 0x00, 0x00, 0x64], "802.1Q tag 100");
            let s = read_stamp(f).expect("stamped");
            assert_eq!((u32::from(s.flow), s.seq), ((n % 3) as u32, (n / 3) as u32));
            let mut untagged = Vec::new();
            frame::strip_vlan(f, &mut untagged);
            assert_eq!(
                frame::verify(&untagged).unwrap().1.map(|v| v.1),
                Some(true),
                "checksum valid"
            );
            let imix = super::super::flows::IMIX[(n / 3) % 12];
            assert_eq!(untagged.len(), imix);
        }
        // Send back all but frame 10, and frame 20 after 23 (both flow 2).
        for (n, f) in frames.iter().enumerate() {
            match n {
                10 | 20 => {}
                23 => {
                    g.transmit(f);
                    g.transmit(&frames[20]);
                }
                _ => g.transmit(f),
            }
        }
        let c = g.checker();
        assert_eq!(
            (c.received, c.lost, c.reordered, c.duplicates, c.foreign),
            (119, 1, 1, 0, 0)
        );
        assert!(c.latency_max_ns.is_some());
    }

    #[test]
    fn rate_is_paced_and_a_pause_is_not_caught_up() {
        let mut g = gen_with(GeneratorConfig {
            rate_pps: Some(10_000),
            ..GeneratorConfig::default()
        });
        let t0 = Instant::now();
        let step = |g: &mut Generator, at: Duration| g.receive(t0 + at, 100_000, &mut |_| {});
        // 1 s in 100 µs rounds: 10,000 frames.
        let mut sent = 0;
        for i in 0..=10_000u32 {
            sent += step(&mut g, Duration::from_micros(100) * i);
        }
        assert_eq!(sent, 10_000);
        // No round for 500 ms, then 50 ms of rounds: at most 50 ms of traffic plus the burst.
        let resume = Duration::from_millis(1500);
        let mut after = 0;
        for i in 0..=500u32 {
            after += step(&mut g, resume + Duration::from_micros(100) * i);
        }
        let cap = super::super::pace::burst_for(10_000) as usize;
        assert!(
            after <= 500 + cap,
            "{after} frames in the 50 ms after a pause"
        );
        assert!(after >= 500, "{after}");
    }

    #[test]
    fn count_duration_stop_start_and_runtime_changes() {
        let mut g = gen_with(GeneratorConfig {
            rate_pps: None,
            duration: Some(Duration::from_millis(10)),
            ..GeneratorConfig::default()
        });
        let t0 = Instant::now();
        assert_eq!(g.state(), "waiting");
        assert_eq!(g.receive(t0, 32, &mut |_| {}), 32);
        assert_eq!(
            g.receive(t0 + Duration::from_millis(9), 32, &mut |_| {}),
            32
        );
        assert_eq!(
            g.receive(t0 + Duration::from_millis(10), 32, &mut |_| {}),
            0
        );
        assert_eq!(g.state(), "done");
        g.start();
        assert_eq!(g.state(), "waiting");
        assert_eq!(
            g.receive(t0 + Duration::from_millis(20), 32, &mut |_| {}),
            32
        );
        g.stop();
        assert_eq!(
            g.receive(t0 + Duration::from_millis(21), 32, &mut |_| {}),
            0
        );
        g.set_sizes(vec![100, 200]).unwrap();
        assert!(g.set_sizes(vec![10]).is_err());
        g.set_rate(Some(1000));
        assert!(g.wire_paced());
        g.start();
        let mut lens = Vec::new();
        g.receive(t0 + Duration::from_millis(30), 32, &mut |f| {
            lens.push(f.len())
        });
        g.receive(t0 + Duration::from_millis(34), 32, &mut |f| {
            lens.push(f.len())
        });
        assert_eq!(
            lens,
            [100, 200, 100, 200],
            "4 ms at 1000 pps, the new sizes"
        );
        assert!(
            Generator::new(GeneratorConfig {
                flows: 0,
                ..GeneratorConfig::default()
            })
            .is_err()
        );
        assert!(
            Generator::new(GeneratorConfig {
                flows: 65536,
                frame_sizes: vec![9000],
                ..GeneratorConfig::default()
            })
            .unwrap_err()
            .contains("MiB")
        );
        let paused = gen_with(GeneratorConfig {
            paused: true,
            ..GeneratorConfig::default()
        });
        assert_eq!(paused.state(), "stopped");
    }
}

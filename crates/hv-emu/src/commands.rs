//! The runtime controls the emulator API and its control socket share: [`Controls`] (link, speed, generator, stats
//! with rates) and the built-in socket commands registered on a [`Registry`] — `vf`, `link up|down|flap [MS]`,
//! `speed MBPS`, `gen start|stop|rate N|size S[,S..]|imix|status|reset`, `fault`, `stats [rates]` — each a thin
//! parse of its arguments over the same method the API calls.

use crate::backend::{Generator, parse_sizes};
use crate::ctl::Registry;
use crate::host::{Device, FaultKind, lock};
use crate::monitor::Monitor;
use crate::stats::EmuStats;
use crate::vf::VfError;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Largest link speed `speed` accepts, Mbit/s (the OID carries 100 bps units in a u32).
pub const MAX_SPEED_MBPS: u64 = 400_000;
/// Longest `link flap` down time, ms.
pub const MAX_FLAP_MS: u64 = 600_000;
/// `link flap` down time when none is given, ms.
pub const DEFAULT_FLAP_MS: u64 = 100;
/// Frame sizes `gen size` accepts.
pub const GEN_SIZES: std::ops::RangeInclusive<usize> = 60..=9018;

/// A generator command could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenError {
    /// The emulator's backend is not the generator.
    #[error("the backend is '{0}', not the generator")]
    NotGenerator(&'static str),
    /// A bad value (sizes out of range, too many template bytes).
    #[error("{0}")]
    Invalid(String),
}

/// Runtime controls of one emulated NIC.
pub struct Controls {
    pub(crate) dev: Arc<Device>,
    pub(crate) monitor: Arc<Monitor>,
    /// Bumped by every link command: a pending flap brings the link up only if nothing changed it since.
    link_seq: Arc<AtomicU64>,
}

/// The stats document with rates and the stats file's state.
pub fn full_stats(dev: &Device, monitor: &Monitor) -> EmuStats {
    let mut s = crate::emulator::stats_of(dev);
    s.rates = monitor.rates(dev);
    s.stats_file = monitor.file_state();
    s
}

impl Controls {
    pub(crate) fn new(dev: Arc<Device>, monitor: Arc<Monitor>) -> Arc<Controls> {
        Arc::new(Controls {
            dev,
            monitor,
            link_seq: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Link up/down now (cancels a pending flap's return).
    pub fn set_link(&self, up: bool) {
        self.link_seq.fetch_add(1, Ordering::SeqCst);
        self.dev.set_link(up);
    }

    /// Link down now and up again after `ms` (unless another link command comes first).
    pub fn link_flap(&self, ms: u64) -> Result<(), String> {
        if !(1..=MAX_FLAP_MS).contains(&ms) {
            return Err(format!("flap time {ms} ms outside 1..{MAX_FLAP_MS}"));
        }
        let seq = self.link_seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.dev.set_link(false);
        let dev = self.dev.clone();
        let link_seq = self.link_seq.clone();
        std::thread::Builder::new()
            .name("hv-emu-flap".into())
            .spawn(move || {
                std::thread::sleep(Duration::from_millis(ms));
                if !dev.stopped() && link_seq.load(Ordering::SeqCst) == seq {
                    dev.set_link(true);
                }
            })
            .map_err(|e| format!("cannot start the flap timer: {e}"))?;
        Ok(())
    }

    /// Link speed in Mbit/s (GEN_LINK_SPEED and a LINK_SPEED_CHANGE indication).
    pub fn set_speed_mbps(&self, mbps: u64) -> Result<(), String> {
        if !(1..=MAX_SPEED_MBPS).contains(&mbps) {
            return Err(format!("speed {mbps} Mbit/s outside 1..{MAX_SPEED_MBPS}"));
        }
        self.dev.set_link_speed((mbps * 10_000) as u32);
        Ok(())
    }

    /// Run `f` on the generator.
    pub fn with_generator<R>(&self, f: impl FnOnce(&mut Generator) -> R) -> Result<R, GenError> {
        let mut b = lock(&self.dev.backend);
        let name = b.name();
        b.generator().map(f).ok_or(GenError::NotGenerator(name))
    }

    /// The generator's stats object.
    pub fn generator_stats(&self) -> Result<Value, GenError> {
        let b = lock(&self.dev.backend);
        let v = b.stats();
        if v["kind"] == "generator" {
            Ok(v)
        } else {
            Err(GenError::NotGenerator(b.name()))
        }
    }

    /// The stats document with rates.
    pub fn stats(&self) -> EmuStats {
        full_stats(&self.dev, &self.monitor)
    }
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

fn number(what: &str, s: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("bad {what} '{}' (want a whole number)", clip(s)))
}

/// Register the built-in commands on `reg`.
pub(crate) fn register(reg: &Registry, c: &Arc<Controls>) {
    let d = c.dev.clone();
    reg.register(
        "vf",
        "vf offer|revoke|remove|add|switch-back|mac XX:XX:XX:XX:XX:XX|state",
        move |args| vf_command(&d, args),
    );
    let k = c.clone();
    reg.register(
        "link",
        "link up|down|flap [MS] (flap: down, then up after MS ms, default 100)",
        move |args| link_command(&k, args),
    );
    let k = c.clone();
    reg.register(
        "speed",
        "speed MBPS (the link speed the host reports, 1..400000 Mbit/s)",
        move |args| match args {
            [m] => {
                let mbps = number("speed", m)?;
                k.set_speed_mbps(mbps)?;
                Ok(json!({ "linkSpeedMbps": mbps }))
            }
            _ => Err("usage: speed MBPS".into()),
        },
    );
    let k = c.clone();
    reg.register(
        "gen",
        "gen start|stop|rate PPS (0 = unlimited)|size B[,B...]|imix|status|reset (generator backend)",
        move |args| gen_command(&k, args),
    );
    let d = c.dev.clone();
    reg.register(
        "fault",
        "fault KIND[,KIND...] [SEED] (KIND: torn-index, oversized-index, ...; 'fault list' names them)",
        move |args| fault_command(&d, args),
    );
    let k = c.clone();
    reg.register(
        "stats",
        "stats [rates] (the stats document, or only its rates: pps and bit/s per direction and queue over the last second)",
        move |args| {
            let s = k.stats();
            match args {
                [] => serde_json::to_value(s)
                    .map(|v| json!({ "stats": v }))
                    .map_err(|e| e.to_string()),
                [r] if r == "rates" => Ok(json!({ "rates": s.rates })),
                _ => Err("usage: stats [rates]".into()),
            }
        },
    );
}

fn link_command(c: &Controls, args: &[String]) -> Result<Value, String> {
    let usage = "usage: link up|down|flap [MS]";
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["up"] => c.set_link(true),
        ["down"] => c.set_link(false),
        ["flap"] | ["flap", _] => {
            let ms = match args.get(1) {
                Some(m) => number("flap time", m)?,
                None => DEFAULT_FLAP_MS,
            };
            c.link_flap(ms)?;
            return Ok(json!({ "linkUp": false, "upAfterMs": ms }));
        }
        _ => return Err(usage.into()),
    }
    Ok(json!({ "linkUp": args[0] == "up" }))
}

fn gen_command(c: &Controls, args: &[String]) -> Result<Value, String> {
    let usage = "usage: gen start|stop|rate PPS|size B[,B...]|imix|status|reset";
    let r = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["start"] => c.with_generator(Generator::start),
        ["stop"] => c.with_generator(Generator::stop),
        ["reset"] => c.with_generator(Generator::reset_checker),
        ["status"] => Ok(()),
        ["rate", r] => {
            let pps = match r {
                "unlimited" => 0,
                _ => number("rate", r)?,
            };
            c.with_generator(|g| g.set_rate(Some(pps)))
        }
        ["size", s] | ["sizes", s] => {
            let sizes = parse_sizes(s, *GEN_SIZES.start(), *GEN_SIZES.end())?;
            c.with_generator(|g| g.set_sizes(sizes))
                .and_then(|r| r.map_err(GenError::Invalid))
        }
        ["imix"] => c
            .with_generator(|g| g.set_sizes(crate::backend::IMIX.to_vec()))
            .and_then(|r| r.map_err(GenError::Invalid)),
        _ => return Err(usage.into()),
    };
    r.map_err(|e| e.to_string())?;
    let g = c.generator_stats().map_err(|e| e.to_string())?;
    Ok(json!({ "generator": g }))
}

/// `fault KIND[,KIND...] [SEED]`: inject each kind in turn (seed default 1; kind i uses seed + i).
fn fault_command(d: &Device, args: &[String]) -> Result<Value, String> {
    let usage = "usage: fault KIND[,KIND...] [SEED] | fault list";
    match args {
        [k] if k == "list" => {
            let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
            Ok(json!({ "faults": names }))
        }
        [kinds] | [kinds, _] => {
            let seed = match args.get(1) {
                Some(s) => s
                    .parse::<u64>()
                    .map_err(|_| format!("bad seed '{}' ({usage})", clip(s)))?,
                None => 1,
            };
            let mut reports = Vec::new();
            for (i, k) in kinds.split(',').enumerate() {
                let kind = FaultKind::parse(k)?;
                reports.push(d.inject_fault(kind, seed.wrapping_add(i as u64))?);
            }
            serde_json::to_value(reports)
                .map(|v| json!({ "injected": v }))
                .map_err(|e| e.to_string())
        }
        _ => Err(usage.into()),
    }
}

fn vf_command(d: &Device, args: &[String]) -> Result<Value, String> {
    let usage = "usage: vf offer|revoke|remove|add|switch-back|mac XX:XX:XX:XX:XX:XX|state";
    let r = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["offer"] => d.vf_offer(),
        ["revoke"] => d.vf_revoke(),
        ["remove"] => d.vf_remove(),
        ["add"] => d.vf_add(),
        ["switch-back"] => d.vf_switch_back(),
        ["mac", m] => match crate::vf::parse_mac(m) {
            Some(mac) => d.vf_set_mac(mac),
            None => return Err(format!("bad MAC '{m}' (want aa:bb:cc:dd:ee:ff)")),
        },
        ["state"] => Ok(()),
        _ => return Err(usage.into()),
    };
    r.map_err(|e| e.to_string())?;
    let state = d
        .vf_state()
        .ok_or_else(|| VfError::NotConfigured.to_string())?;
    serde_json::to_value(state)
        .map(|v| json!({ "vf": v }))
        .map_err(|e| e.to_string())
}

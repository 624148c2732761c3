//! The emulator's monitor thread: every 100 ms it samples the channel counters (a few relaxed loads per channel)
//! and the backend's totals into a ring covering the last second, from which `stats` derives rates (frames/s and
//! bit/s per direction, per queue, drops/s, frames/s offered by the backend); and, when a stats file is configured,
//! it rewrites that file every second (written beside it, then renamed over it, so a reader never sees half a
//! document) and once more when the emulator stops.

use crate::host::{Device, lock};
use serde::Serialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How often the stats file is rewritten.
pub const WRITE_EVERY: Duration = Duration::from_secs(1);
/// The window rates are computed over (the newest sample at least this old, else the oldest there is).
pub const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Default)]
struct ChannelSample {
    g2h_frames: u64,
    g2h_bytes: u64,
    h2g_frames: u64,
    h2g_bytes: u64,
}

#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    channels: Vec<ChannelSample>,
    drops: u64,
    produced: u64,
}

fn sample(dev: &Device) -> Sample {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let mut drops = 0;
    let channels = dev
        .channels()
        .iter()
        .map(|c| {
            let k = &c.counters;
            drops += load(&k.drop_no_rx_buffer)
                + load(&k.drop_ring_full)
                + load(&k.drop_filtered)
                + load(&k.drop_not_ready)
                + load(&k.drop_too_large)
                + load(&k.drop_link_down)
                + load(&k.tx_dropped);
            ChannelSample {
                g2h_frames: load(&k.g2h_frames),
                g2h_bytes: load(&k.g2h_bytes),
                h2g_frames: load(&k.h2g_frames),
                h2g_bytes: load(&k.h2g_bytes),
            }
        })
        .collect();
    let (produced, backend_drops) = {
        let b = lock(&dev.backend);
        (b.produced(), b.dropped() + b.tx_errors())
    };
    Sample {
        at: Instant::now(),
        channels,
        drops: drops + backend_drops,
        produced,
    }
}

/// Frames and bits per second in one direction.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Rate {
    pub pps: f64,
    /// Frame bits per second (Ethernet header and payload; no preamble, FCS or gap).
    pub bps: f64,
}

impl Rate {
    fn between(frames: u64, bytes: u64, secs: f64) -> Rate {
        Rate {
            pps: frames as f64 / secs,
            bps: bytes as f64 * 8.0 / secs,
        }
    }
}

/// One channel's rates.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChannelRates {
    pub index: u16,
    pub guest_to_host: Rate,
    pub host_to_guest: Rate,
}

/// Rates over the last `window_ms`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rates {
    pub window_ms: f64,
    pub guest_to_host: Rate,
    pub host_to_guest: Rate,
    /// Frames dropped per second, every reason.
    pub drops_pps: f64,
    /// Frames per second the backend offered (generated, reflected, read from the TAP).
    pub offered_pps: f64,
    pub channels: Vec<ChannelRates>,
}

fn rates_between(old: &Sample, new: &Sample) -> Option<Rates> {
    let secs = new.at.saturating_duration_since(old.at).as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    let mut channels = Vec::with_capacity(new.channels.len());
    let (mut g, mut h) = (ChannelSample::default(), ChannelSample::default());
    for (i, n) in new.channels.iter().enumerate() {
        // A channel opened within the window counts from zero.
        let o = old.channels.get(i).copied().unwrap_or_default();
        let d = ChannelSample {
            g2h_frames: n.g2h_frames.saturating_sub(o.g2h_frames),
            g2h_bytes: n.g2h_bytes.saturating_sub(o.g2h_bytes),
            h2g_frames: n.h2g_frames.saturating_sub(o.h2g_frames),
            h2g_bytes: n.h2g_bytes.saturating_sub(o.h2g_bytes),
        };
        g.g2h_frames += d.g2h_frames;
        g.g2h_bytes += d.g2h_bytes;
        h.h2g_frames += d.h2g_frames;
        h.h2g_bytes += d.h2g_bytes;
        channels.push(ChannelRates {
            index: i as u16,
            guest_to_host: Rate::between(d.g2h_frames, d.g2h_bytes, secs),
            host_to_guest: Rate::between(d.h2g_frames, d.h2g_bytes, secs),
        });
    }
    Some(Rates {
        window_ms: secs * 1000.0,
        guest_to_host: Rate::between(g.g2h_frames, g.g2h_bytes, secs),
        host_to_guest: Rate::between(h.h2g_frames, h.h2g_bytes, secs),
        drops_pps: new.drops.saturating_sub(old.drops) as f64 / secs,
        offered_pps: new.produced.saturating_sub(old.produced) as f64 / secs,
        channels,
    })
}

/// The periodically written stats file.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StatsFileState {
    pub path: PathBuf,
    pub writes: u64,
    /// The last write's error, if it failed.
    pub error: Option<String>,
}

/// Samples counters, serves rates, rewrites the stats file.
pub struct Monitor {
    ring: Mutex<VecDeque<Sample>>,
    file: Option<Mutex<StatsFileState>>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Monitor {
    /// Start sampling `dev`; `stats_file`: rewrite this file every second with `render()`'s document.
    pub fn start(
        dev: Arc<Device>,
        stats_file: Option<PathBuf>,
        render: impl Fn(&Monitor) -> String + Send + 'static,
    ) -> std::io::Result<Arc<Monitor>> {
        let m = Arc::new(Monitor {
            ring: Mutex::new(VecDeque::with_capacity(12)),
            file: stats_file.map(|path| {
                Mutex::new(StatsFileState {
                    path,
                    writes: 0,
                    error: None,
                })
            }),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let me = m.clone();
        let t = std::thread::Builder::new()
            .name("hv-emu-monitor".into())
            .spawn(move || {
                let mut last_write = Instant::now();
                while !me.stop.load(Ordering::Relaxed) && !dev.stopped() {
                    std::thread::sleep(SAMPLE_EVERY);
                    me.push(sample(&dev));
                    if me.file.is_some() && last_write.elapsed() >= WRITE_EVERY {
                        last_write = Instant::now();
                        me.write(&render(&me));
                    }
                }
            })?;
        *lock(&m.thread) = Some(t);
        Ok(m)
    }

    fn push(&self, s: Sample) {
        let mut r = lock(&self.ring);
        // Keep what covers the window: drop the oldest while the one after it is already a window old.
        while r.len() >= 2 && s.at.saturating_duration_since(r[1].at) >= WINDOW {
            r.pop_front();
        }
        r.push_back(s);
    }

    /// Rates from the sample about a second old to now.
    pub fn rates(&self, dev: &Device) -> Option<Rates> {
        let now = sample(dev);
        let r = lock(&self.ring);
        let old = r
            .iter()
            .rev()
            .find(|s| now.at.saturating_duration_since(s.at) >= WINDOW)
            .or(r.front())?;
        rates_between(old, &now)
    }

    /// The stats file's state (`None` without one).
    pub fn file_state(&self) -> Option<StatsFileState> {
        self.file.as_ref().map(|f| lock(f).clone())
    }

    /// Write `doc` to the stats file: into a temporary file beside it, then renamed over it.
    pub fn write(&self, doc: &str) {
        let Some(f) = &self.file else { return };
        let mut st = lock(f);
        match write_atomically(&st.path, doc) {
            Ok(()) => {
                st.writes += 1;
                st.error = None;
            }
            Err(e) => st.error = Some(format!("{}: {e}", st.path.display())),
        }
    }

    /// Stop the thread (the caller writes the final document).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

/// Write `doc` (plus a newline) to `path` through a temporary file in the same directory and a rename.
pub fn write_atomically(path: &Path, doc: &str) -> std::io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "stats.json".into());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(doc.as_bytes())?;
        f.write_all(b"\n")?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_deltas_over_the_window() {
        let t0 = Instant::now();
        let ch = |f, b| ChannelSample {
            g2h_frames: f,
            g2h_bytes: b,
            h2g_frames: 2 * f,
            h2g_bytes: 2 * b,
        };
        let old = Sample {
            at: t0,
            channels: vec![ch(100, 6400)],
            drops: 5,
            produced: 0,
        };
        let new = Sample {
            at: t0 + Duration::from_millis(500),
            channels: vec![ch(600, 38_400), ch(50, 3200)],
            drops: 15,
            produced: 1000,
        };
        let r = rates_between(&old, &new).unwrap();
        assert_eq!(r.window_ms, 500.0);
        assert_eq!(
            r.channels[0].guest_to_host,
            Rate {
                pps: 1000.0,
                bps: 512_000.0
            }
        );
        assert_eq!(
            r.channels[1].host_to_guest,
            Rate {
                pps: 200.0,
                bps: 102_400.0
            }
        );
        assert_eq!(r.guest_to_host.pps, 1100.0);
        assert_eq!(r.host_to_guest.pps, 2200.0);
        assert_eq!((r.drops_pps, r.offered_pps), (20.0, 2000.0));
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        write_atomically(&p, "{\"a\":1}").unwrap();
        write_atomically(&p, "{\"a\":2}").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":2}\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        assert!(write_atomically(&dir.path().join("no/such/dir.json"), "{}").is_err());
    }
}

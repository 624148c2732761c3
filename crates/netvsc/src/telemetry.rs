//! Telemetry of a running device for other processes (what DPDK's telemetry socket and dpdk-proc-info give):
//! the owning process publishes its counters, per-queue counters, link and VF state into a small file on a
//! tmpfs (`<root>/run/netvsc/<uuid>.telemetry`; `/run` is tmpfs on a real guest, the emulator's directory in
//! tests) at a bounded rate (`Device::maintain`, every 100 ms; never per packet). Any process reads it with
//! [`read`] without opening the device or touching its rings.
//!
//! Layout (little-endian `u64` words; `PAGE` = 4096 bytes):
//! - page 0, owner-written: `magic`, `version`, `seq` (seqlock: odd while a publish is in progress), `pid`,
//!   `updated_ns` (Unix time), `opened_ns`, `queues`, `link_up`, `link_speed` (100 bps units), `mtu`,
//!   `vf_state` (0 none, else 1 + index in [`VF_STATES`]), `vf_serial`, `vf_switched`, `capture_id` (the request
//!   being served, 0 none), `capture_frames`, `capture_done` (the last request finished), then at word 16 the port
//!   totals (`PORT_NAMES`) and at word 24 the VF totals (`VF_NAMES`); at word 32 the count n (≤ [`DEVICE_MAX`]) of
//!   device-level xstats (`hv_*`, `vf_*`: what `Device::xstats` adds to the per-queue counters), their values from
//!   word 33, their names NUL-terminated from byte 2048.
//! - page 1, reader-written: the capture request (`id` ≠ 0 and ≠ the last one served: start; the path empty:
//!   stop), `max_frames`, `max_ms`, `path_len`, the pcapng path from byte 32. The owner polls it at its tick.
//! - from page 2: `queues` × [`QUEUE_WORDS`] words (15 tx, 15 rx counters in DPDK's order, rx missed).
//!
//! The seqlock over `pwrite`/`pread` needs no shared mapping (so no unsafe here): each syscall orders the page
//! cache accesses; the reader copies the file, re-reads `seq` and retries when it moved or was odd.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `NVSCTEL1`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"NVSCTEL1");
/// Layout version.
pub const VERSION: u64 = 1;
const PAGE: usize = 4096;
/// Queues a page describes at most.
pub const MAX_QUEUES: usize = 64;
/// Counters per queue: 15 tx, 15 rx (`stats::STAT_NAMES` order), rx missed.
pub const QUEUE_WORDS: usize = 31;
const REQ_OFF: u64 = PAGE as u64;
const QUEUE_OFF: usize = 2 * PAGE;
/// Size of the file.
pub const FILE_SIZE: usize = QUEUE_OFF + MAX_QUEUES * QUEUE_WORDS * 8;
const MAX_PATH: usize = PAGE - 32;
/// Device-level xstats a page carries at most.
pub const DEVICE_MAX: usize = 128;
const DEVICE_WORD: usize = 32;
const NAMES_OFF: usize = 2048;
/// The port totals, in page order.
pub const PORT_NAMES: [&str; 7] = [
    "ipackets", "opackets", "ibytes", "obytes", "imissed", "ierrors", "oerrors",
];
/// The VF totals, in page order.
pub const VF_NAMES: [&str; 6] = [
    "vf_rx_packets",
    "vf_rx_bytes",
    "vf_tx_packets",
    "vf_tx_bytes",
    "vf_rx_dropped",
    "vf_tx_errors",
];
/// VF states, as `vf_state - 1`.
pub const VF_STATES: [&str; 5] = ["offered", "paired", "switched", "removed", "revoked"];

/// Failures reading or writing a telemetry page.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The file could not be created, read or written.
    #[error("telemetry {path}: {source}")]
    Io {
        /// The page file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a telemetry page of this version, or holds impossible values.
    #[error("telemetry {path}: {what} = {value:#x}")]
    Bad {
        /// The page file.
        path: PathBuf,
        /// The field that was wrong.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// A publish was always in progress while we looked.
    #[error("telemetry {path}: the owner kept it busy for {tries} reads")]
    Busy {
        /// The page file.
        path: PathBuf,
        /// Reads tried.
        tries: u32,
    },
}

/// Where the page of device `uuid` under `root` lives.
pub fn page_path(root: &Path, uuid: &str) -> PathBuf {
    root.join("run/netvsc")
        .join(format!("{}.telemetry", uuid.to_ascii_lowercase()))
}

/// The directory holding every device's page under `root`.
pub fn page_dir(root: &Path) -> PathBuf {
    root.join("run/netvsc")
}

/// What the owner publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The owning process.
    pub pid: u64,
    /// When it was published (ns since the Unix epoch).
    pub updated_ns: u64,
    /// When the device was opened (ns since the Unix epoch).
    pub opened_ns: u64,
    /// Link up.
    pub link_up: bool,
    /// Link speed in 100 bps units.
    pub link_speed: u64,
    /// MTU in use.
    pub mtu: u64,
    /// VF state (`VF_STATES`), `None` before an offer.
    pub vf_state: Option<&'static str>,
    /// VF serial (0 none).
    pub vf_serial: u64,
    /// Data path on the VF.
    pub vf_switched: bool,
    /// The capture request being served (0 none).
    pub capture_id: u64,
    /// Frames it wrote so far.
    pub capture_frames: u64,
    /// The last capture request that finished.
    pub capture_done: u64,
    /// Port totals (`PORT_NAMES`), VF traffic included.
    pub port: [u64; 7],
    /// VF totals (`VF_NAMES`).
    pub vf: [u64; 6],
    /// Per-queue counters.
    pub queues: Vec<[u64; QUEUE_WORDS]>,
    /// Device-level xstats (`hv_*`, `vf_*`), names and values.
    pub device: Vec<(String, u64)>,
}

/// A capture asked for through the request page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRequest {
    /// Non-zero id chosen by the requester.
    pub id: u64,
    /// Stop after this many frames (0: no limit).
    pub max_frames: u64,
    /// Stop after this many ms (0: no limit).
    pub max_ms: u64,
    /// The pcapng file to write; `None` asks to stop the capture.
    pub path: Option<PathBuf>,
}

/// How often the owner publishes (from [`crate::Device::maintain`]).
pub const PUBLISH_PERIOD: Duration = Duration::from_millis(100);

/// The owner's side of a device's page as the driver runs it: the publisher, the snapshot it reuses, and when
/// it last published. [`crate::Device::maintain`] calls [`Owner::due`] and then fills and publishes.
#[derive(Debug)]
pub(crate) struct Owner {
    pub publisher: Publisher,
    pub snap: Snapshot,
    last: Option<Instant>,
}

impl Owner {
    pub fn new(publisher: Publisher) -> Owner {
        Owner {
            publisher,
            snap: Snapshot::default(),
            last: None,
        }
    }

    /// Whether a publish is due (the first call always is); marks it done.
    pub fn due(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < PUBLISH_PERIOD)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// The owner's side: creates the page, publishes snapshots, polls capture requests, removes the page on drop.
#[derive(Debug)]
pub struct Publisher {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    seq: u64,
    last_request: u64,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn put(buf: &mut [u8], word: usize, v: u64) {
    buf[word * 8..word * 8 + 8].copy_from_slice(&v.to_le_bytes());
}

fn get(buf: &[u8], word: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[word * 8..word * 8 + 8]);
    u64::from_le_bytes(b)
}

impl Publisher {
    /// Create (or take over) the page at `path`.
    pub fn create(path: &Path) -> Result<Publisher, TelemetryError> {
        let io = |source| TelemetryError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io)?;
        file.set_len(FILE_SIZE as u64).map_err(io)?;
        let mut p = Publisher {
            path: path.to_path_buf(),
            file,
            buf: vec![0u8; FILE_SIZE],
            seq: 0,
            last_request: 0,
        };
        p.publish(&Snapshot {
            pid: u64::from(std::process::id()),
            opened_ns: now_ns(),
            ..Snapshot::default()
        })?;
        Ok(p)
    }

    /// The page file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `s` (seqlock: `seq` odd, the data, `seq` even). Allocates nothing.
    pub fn publish(&mut self, s: &Snapshot) -> Result<(), TelemetryError> {
        let io = |source| TelemetryError::Io {
            path: self.path.clone(),
            source,
        };
        let nq = s.queues.len().min(MAX_QUEUES);
        self.seq = self.seq.wrapping_add(1) | 1;
        self.file
            .write_all_at(&self.seq.to_le_bytes(), 16)
            .map_err(io)?;
        let b = &mut self.buf;
        put(b, 0, MAGIC);
        put(b, 1, VERSION);
        put(b, 2, self.seq);
        let head = [
            if s.pid == 0 {
                u64::from(std::process::id())
            } else {
                s.pid
            },
            if s.updated_ns == 0 {
                now_ns()
            } else {
                s.updated_ns
            },
            s.opened_ns,
            nq as u64,
            u64::from(s.link_up),
            s.link_speed,
            s.mtu,
            s.vf_state
                .and_then(|n| VF_STATES.iter().position(|x| *x == n))
                .map_or(0, |i| i as u64 + 1),
            s.vf_serial,
            u64::from(s.vf_switched),
            s.capture_id,
            s.capture_frames,
            s.capture_done,
        ];
        for (i, v) in head.into_iter().enumerate() {
            put(b, 3 + i, v);
        }
        for (i, v) in s.port.iter().enumerate() {
            put(b, 16 + i, *v);
        }
        for (i, v) in s.vf.iter().enumerate() {
            put(b, 24 + i, *v);
        }
        // Device xstats: as many as fit both the value words and the names area.
        let mut at = NAMES_OFF;
        let mut nd = 0;
        for (name, v) in s.device.iter().take(DEVICE_MAX) {
            let n = name.as_bytes();
            if n.contains(&0) || at + n.len() + 1 > PAGE {
                break;
            }
            b[at..at + n.len()].copy_from_slice(n);
            b[at + n.len()] = 0;
            at += n.len() + 1;
            put(b, DEVICE_WORD + 1 + nd, *v);
            nd += 1;
        }
        b[at..PAGE].fill(0);
        put(b, DEVICE_WORD, nd as u64);
        for (q, words) in s.queues.iter().take(nq).enumerate() {
            for (i, v) in words.iter().enumerate() {
                put(b, QUEUE_OFF / 8 + q * QUEUE_WORDS + i, *v);
            }
        }
        // Words 0..2 and 3.. of page 0 (seq, at word 2, stays odd until the end), then the queues.
        self.file.write_all_at(&b[..16], 0).map_err(io)?;
        self.file.write_all_at(&b[24..PAGE], 24).map_err(io)?;
        let qend = QUEUE_OFF + nq * QUEUE_WORDS * 8;
        self.file
            .write_all_at(&b[QUEUE_OFF..qend], QUEUE_OFF as u64)
            .map_err(io)?;
        self.seq = self.seq.wrapping_add(1);
        self.file
            .write_all_at(&self.seq.to_le_bytes(), 16)
            .map_err(io)?;
        Ok(())
    }

    /// A new capture request, if one arrived since the last call (one 4 KiB read).
    pub fn poll_request(&mut self) -> Result<Option<CaptureRequest>, TelemetryError> {
        let mut page = [0u8; PAGE];
        self.file
            .read_exact_at(&mut page, REQ_OFF)
            .map_err(|source| TelemetryError::Io {
                path: self.path.clone(),
                source,
            })?;
        let id = get(&page, 0);
        if id == 0 || id == self.last_request {
            return Ok(None);
        }
        self.last_request = id;
        // Peer content: the length is clamped to the page, the path must be UTF-8-free bytes without NUL.
        let len = (get(&page, 3) as usize).min(MAX_PATH);
        let raw = &page[32..32 + len];
        let path = if raw.is_empty() || raw.contains(&0) {
            None
        } else {
            use std::os::unix::ffi::OsStrExt;
            Some(PathBuf::from(std::ffi::OsStr::from_bytes(raw)))
        };
        Ok(Some(CaptureRequest {
            id,
            max_frames: get(&page, 1),
            max_ms: get(&page, 2),
            path,
        }))
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Ask the owner of the page at `path` to start (`pcap` = `Some`) or stop a capture. Returns the request id.
pub fn request_capture(
    path: &Path,
    pcap: Option<&Path>,
    max_frames: u64,
    max_ms: u64,
) -> Result<u64, TelemetryError> {
    use std::os::unix::ffi::OsStrExt;
    let io = |source| TelemetryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = pcap.map_or(&[][..], |p| p.as_os_str().as_bytes());
    if raw.len() > MAX_PATH {
        return Err(TelemetryError::Bad {
            path: path.to_path_buf(),
            what: "capture path length",
            value: raw.len() as u64,
        });
    }
    let file = OpenOptions::new().write(true).open(path).map_err(io)?;
    let id = now_ns() | 1;
    let mut page = [0u8; 32];
    put(&mut page, 1, max_frames);
    put(&mut page, 2, max_ms);
    put(&mut page, 3, raw.len() as u64);
    // The path and limits first, the id last: the owner acts on a new id only.
    file.write_all_at(raw, REQ_OFF + 32).map_err(io)?;
    file.write_all_at(&page[8..32], REQ_OFF + 8).map_err(io)?;
    file.write_all_at(&id.to_le_bytes(), REQ_OFF).map_err(io)?;
    Ok(id)
}

/// Read the page at `path` (retrying while a publish is in progress).
pub fn read(path: &Path) -> Result<Snapshot, TelemetryError> {
    let io = |source| TelemetryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bad = |what, value| TelemetryError::Bad {
        path: path.to_path_buf(),
        what,
        value,
    };
    let file = File::open(path).map_err(io)?;
    let mut buf = vec![0u8; FILE_SIZE];
    const TRIES: u32 = 200;
    for _ in 0..TRIES {
        let n = file.read_at(&mut buf, 0).map_err(io)?;
        if n < QUEUE_OFF {
            return Err(bad("file size", n as u64));
        }
        if get(&buf, 0) != MAGIC {
            return Err(bad("magic", get(&buf, 0)));
        }
        if get(&buf, 1) != VERSION {
            return Err(bad("version", get(&buf, 1)));
        }
        let seq = get(&buf, 2);
        let mut again = [0u8; 8];
        file.read_exact_at(&mut again, 16).map_err(io)?;
        if seq & 1 == 1 || u64::from_le_bytes(again) != seq {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let nq = get(&buf, 6);
        if nq as usize > MAX_QUEUES || QUEUE_OFF + nq as usize * QUEUE_WORDS * 8 > n {
            return Err(bad("queues", nq));
        }
        let vf_state = match get(&buf, 10) {
            0 => None,
            v => Some(
                *VF_STATES
                    .get(v as usize - 1)
                    .ok_or_else(|| bad("vf_state", v))?,
            ),
        };
        let nd = get(&buf, DEVICE_WORD);
        if nd as usize > DEVICE_MAX {
            return Err(bad("device xstats", nd));
        }
        let mut device = Vec::with_capacity(nd as usize);
        let mut names = buf[NAMES_OFF..PAGE].split(|b| *b == 0);
        for i in 0..nd as usize {
            let name = names
                .next()
                .and_then(|n| std::str::from_utf8(n).ok())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad("device xstat name", i as u64))?;
            device.push((name.to_string(), get(&buf, DEVICE_WORD + 1 + i)));
        }
        let queues = (0..nq as usize)
            .map(|q| std::array::from_fn(|i| get(&buf, QUEUE_OFF / 8 + q * QUEUE_WORDS + i)))
            .collect();
        return Ok(Snapshot {
            pid: get(&buf, 3),
            updated_ns: get(&buf, 4),
            opened_ns: get(&buf, 5),
            link_up: get(&buf, 7) != 0,
            link_speed: get(&buf, 8),
            mtu: get(&buf, 9),
            vf_state,
            vf_serial: get(&buf, 11),
            vf_switched: get(&buf, 12) != 0,
            capture_id: get(&buf, 13),
            capture_frames: get(&buf, 14),
            capture_done: get(&buf, 15),
            port: std::array::from_fn(|i| get(&buf, 16 + i)),
            vf: std::array::from_fn(|i| get(&buf, 24 + i)),
            queues,
            device,
        });
    }
    Err(TelemetryError::Busy {
        path: path.to_path_buf(),
        tries: TRIES,
    })
}

/// Whether process `pid` still runs (a page left by a crashed owner is stale).
pub fn owner_alive(pid: u64) -> bool {
    pid != 0 && Path::new("/proc").join(pid.to_string()).exists()
}

/// Every page under `root`'s telemetry directory: (uuid, path).
pub fn list(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(page_dir(root))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let name = p
                .file_name()?
                .to_str()?
                .strip_suffix(".telemetry")?
                .to_owned();
            Some((name, p))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_then_read_round_trips_and_a_request_is_seen_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = page_path(dir.path(), "ABCD");
        let mut p = Publisher::create(&path).unwrap();
        let s = Snapshot {
            pid: 7,
            updated_ns: 11,
            opened_ns: 5,
            link_up: true,
            link_speed: 100_000_000,
            mtu: 1500,
            vf_state: Some("switched"),
            vf_serial: 3,
            vf_switched: true,
            capture_id: 0,
            capture_frames: 0,
            capture_done: 0,
            port: [1, 2, 3, 4, 5, 6, 7],
            vf: [8, 9, 10, 11, 12, 13],
            queues: vec![[1; QUEUE_WORDS], [2; QUEUE_WORDS]],
            device: vec![("hv_recoveries".into(), 2), ("vf_switches".into(), 5)],
        };
        p.publish(&s).unwrap();
        assert_eq!(read(&path).unwrap(), s);
        assert_eq!(p.poll_request().unwrap(), None);
        let pcap = dir.path().join("x.pcapng");
        let id = request_capture(&path, Some(&pcap), 10, 0).unwrap();
        let r = p.poll_request().unwrap().unwrap();
        assert_eq!(
            (r.id, r.max_frames, r.path.as_deref()),
            (id, 10, Some(pcap.as_path()))
        );
        assert_eq!(p.poll_request().unwrap(), None, "a request is served once");
        // A later publish leaves the request page alone.
        p.publish(&s).unwrap();
        assert_eq!(p.poll_request().unwrap(), None);
        assert_eq!(list(dir.path()), vec![("abcd".to_owned(), path.clone())]);
        drop(p);
        assert!(!path.exists(), "the owner removes its page");
    }

    #[test]
    fn garbage_is_a_typed_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.telemetry");
        std::fs::write(&path, vec![0xffu8; FILE_SIZE]).unwrap();
        assert!(matches!(
            read(&path),
            Err(TelemetryError::Bad { what: "magic", .. })
        ));
        let mut b = vec![0u8; FILE_SIZE];
        put(&mut b, 0, MAGIC);
        put(&mut b, 1, VERSION);
        put(&mut b, 6, 1000);
        std::fs::write(&path, &b).unwrap();
        assert!(matches!(
            read(&path),
            Err(TelemetryError::Bad { what: "queues", .. })
        ));
        put(&mut b, 6, 0);
        put(&mut b, 10, 99);
        std::fs::write(&path, &b).unwrap();
        assert!(matches!(
            read(&path),
            Err(TelemetryError::Bad {
                what: "vf_state",
                ..
            })
        ));
    }
}

//! Mirroring a running device's bursts into a pcapng file (what dpdk-pdump does), asked for by another
//! process through the telemetry page ([`crate::telemetry::request_capture`]). The owner's control tick starts
//! and stops it; the burst path pays one atomic load per burst while no capture runs ([`Tap::is_on`]).
//! Each record has a direction flag (`epb_flags` 1 inbound / 2 outbound) and a nanosecond timestamp
//! (`if_tsresol` 9), written with the `pcap-file` crate.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pcap_file::DataLink;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};

const SNAPLEN: usize = 65535;

/// Which way a frame went, seen from this driver (pcapng `epb_flags` bits 0-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received.
    Inbound = 1,
    /// Sent.
    Outbound = 2,
}

/// A capture could not be started or written.
#[derive(Debug, thiserror::Error)]
#[error("capture {path}: {detail}")]
pub struct CaptureError {
    /// The pcapng file.
    pub path: PathBuf,
    /// What failed.
    pub detail: String,
}

struct Sink {
    path: PathBuf,
    out: PcapNgWriter<BufWriter<File>>,
    max_frames: u64,
    until: Option<Instant>,
    /// One frame gathered from its segments or read out of the receive buffer (sized once, at start).
    scratch: Vec<u8>,
}

/// The capture switch shared by the control tick and every queue of a device.
#[derive(Default)]
pub struct Tap {
    on: AtomicBool,
    frames: AtomicU64,
    sink: Mutex<Option<Sink>>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("on", &self.is_on())
            .field("frames", &self.frames())
            .finish()
    }
}

impl Tap {
    /// Whether a capture runs: the one check a burst makes.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Frames the current (or last) capture wrote.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Sink>> {
        self.sink.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start writing `path` (replacing a running capture); stops by itself after `max_frames` frames or `max_ms`
    /// (0: no limit).
    pub fn start(&self, path: &Path, max_frames: u64, max_ms: u64) -> Result<(), CaptureError> {
        let err = |detail: String| CaptureError {
            path: path.to_path_buf(),
            detail,
        };
        let file = File::create(path).map_err(|e| err(e.to_string()))?;
        let mut out = PcapNgWriter::new(BufWriter::new(file)).map_err(|e| err(e.to_string()))?;
        out.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: SNAPLEN as u32,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Borrowed("netvsc")),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        })
        .map_err(|e| err(e.to_string()))?;
        let mut g = self.lock();
        self.frames.store(0, Ordering::Relaxed);
        *g = Some(Sink {
            path: path.to_path_buf(),
            out,
            max_frames,
            until: (max_ms > 0).then(|| Instant::now() + Duration::from_millis(max_ms)),
            scratch: Vec::with_capacity(SNAPLEN),
        });
        self.on.store(true, Ordering::Release);
        Ok(())
    }

    /// Stop and flush the capture (idempotent). Returns the frames it wrote.
    pub fn stop(&self) -> Result<u64, CaptureError> {
        let mut g = self.lock();
        self.on.store(false, Ordering::Release);
        match g.take() {
            Some(mut s) => {
                s.out.get_mut().flush().map_err(|e| CaptureError {
                    path: s.path.clone(),
                    detail: e.to_string(),
                })?;
                Ok(self.frames())
            }
            None => Ok(self.frames()),
        }
    }

    /// Stop the capture if its time is up (the control tick calls this). True if it stopped now.
    pub fn expire(&self) -> bool {
        let due = self
            .lock()
            .as_ref()
            .is_some_and(|s| s.until.is_some_and(|u| Instant::now() >= u));
        due && self.stop().is_ok()
    }

    /// Record the frames of one burst (only called when [`Tap::is_on`]). A write error stops the capture.
    pub fn record<'a>(&self, frames: impl Iterator<Item = &'a [u8]>, dir: Direction) {
        let mut frames = frames;
        self.record_with(usize::MAX, dir, |_, out| match frames.next() {
            Some(f) => {
                out.extend_from_slice(&f[..f.len().min(SNAPLEN)]);
                Some(f.len())
            }
            None => None,
        });
    }

    /// Record up to `count` frames of one burst that are not contiguous slices (a frame in segments, a zero-copy
    /// view in the receive buffer): `fill(i, buf)` appends frame `i`'s first bytes (at most 65535) to the emptied
    /// buffer and returns its full length, or `None` when the burst has no more frames. One lock per burst; the
    /// buffer is the capture's own, allocated when it started.
    pub fn record_with(
        &self,
        count: usize,
        dir: Direction,
        mut fill: impl FnMut(usize, &mut Vec<u8>) -> Option<usize>,
    ) {
        let mut g = self.lock();
        let Some(s) = g.as_mut() else { return };
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut failed = false;
        let mut scratch = std::mem::take(&mut s.scratch);
        for i in 0..count {
            if s.max_frames > 0 && self.frames() >= s.max_frames {
                break;
            }
            scratch.clear();
            let Some(len) = fill(i, &mut scratch) else {
                break;
            };
            scratch.truncate(SNAPLEN);
            let epb = EnhancedPacketBlock {
                interface_id: 0,
                timestamp: ts,
                original_len: len as u32,
                data: Cow::Borrowed(&scratch[..]),
                options: vec![EnhancedPacketOption::Flags(dir as u32)],
            };
            if s.out.write_pcapng_block(epb).is_err() {
                failed = true;
                break;
            }
            self.frames.fetch_add(1, Ordering::Relaxed);
        }
        s.scratch = scratch;
        let full = s.max_frames > 0 && self.frames() >= s.max_frames;
        if failed || full {
            let _ = s.out.get_mut().flush();
            *g = None;
            self.on.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_limit_stops_and_the_file_is_pcapng_with_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pcapng");
        let tap = Tap::default();
        assert!(!tap.is_on());
        tap.start(&path, 3, 0).unwrap();
        tap.record(
            [&[1u8; 60][..], &[2u8; 60][..]].into_iter(),
            Direction::Outbound,
        );
        tap.record(
            [&[3u8; 70][..], &[4u8; 70][..]].into_iter(),
            Direction::Inbound,
        );
        assert!(!tap.is_on(), "stopped at 3 frames");
        assert_eq!(tap.frames(), 3);
        let data = std::fs::read(&path).unwrap();
        let mut r = pcap_file::pcapng::PcapNgReader::new(&data[..]).unwrap();
        let mut flags = vec![];
        while let Some(b) = r.next_block() {
            if let pcap_file::pcapng::Block::EnhancedPacket(p) = b.unwrap() {
                for o in &p.options {
                    if let EnhancedPacketOption::Flags(f) = o {
                        flags.push(*f);
                    }
                }
            }
        }
        assert_eq!(flags, vec![2, 2, 1]);
    }
}

//! A classic pcap file (LINKTYPE_ETHERNET) and a backend wrapper that mirrors both directions
//! into it: frames the guest sent (after offloads) and frames offered to the guest.

use super::Backend;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Writes classic pcap records.
#[derive(Debug)]
pub struct PcapWriter {
    out: BufWriter<File>,
    records: u64,
}

impl PcapWriter {
    /// Create `path` and write the global header (v2.4, snaplen 65535, Ethernet).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let mut out = BufWriter::new(File::create(path)?);
        let mut hdr = [0u8; 24];
        hdr[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        hdr[4..6].copy_from_slice(&2u16.to_le_bytes());
        hdr[6..8].copy_from_slice(&4u16.to_le_bytes());
        hdr[16..20].copy_from_slice(&65535u32.to_le_bytes());
        hdr[20..24].copy_from_slice(&1u32.to_le_bytes());
        out.write_all(&hdr)?;
        Ok(PcapWriter { out, records: 0 })
    }

    /// Append one frame stamped with the current time.
    pub fn record(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let caplen = frame.len().min(65535);
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&(now.as_secs() as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&now.subsec_micros().to_le_bytes());
        rec[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
        rec[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out.write_all(&rec)?;
        self.out.write_all(&frame[..caplen])?;
        self.records += 1;
        Ok(())
    }

    /// Push buffered records to the file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Mirrors every frame through an inner backend into a pcap file.
pub struct PcapMirror {
    inner: Box<dyn Backend>,
    pcap: PcapWriter,
    errors: u64,
}

impl PcapMirror {
    /// Wrap `inner`, writing to `path`.
    pub fn new(inner: Box<dyn Backend>, path: &Path) -> std::io::Result<Self> {
        Ok(PcapMirror {
            inner,
            pcap: PcapWriter::create(path)?,
            errors: 0,
        })
    }
}

impl Backend for PcapMirror {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn transmit(&mut self, frame: &[u8]) {
        if self.pcap.record(frame).is_err() {
            self.errors += 1;
        }
        self.inner.transmit(frame);
    }
    fn receive(&mut self, now: Instant, budget: usize, deliver: &mut dyn FnMut(&[u8])) -> usize {
        let pcap = &mut self.pcap;
        let errors = &mut self.errors;
        self.inner.receive(now, budget, &mut |f| {
            if pcap.record(f).is_err() {
                *errors += 1;
            }
            deliver(f);
        })
    }
    fn poll_link(&mut self) -> Option<bool> {
        self.inner.poll_link()
    }
    fn dropped(&self) -> u64 {
        self.inner.dropped()
    }
    fn stats(&self) -> serde_json::Value {
        let mut v = self.inner.stats();
        if let Some(o) = v.as_object_mut() {
            o.insert("pcapRecords".into(), self.pcap.records.into());
            o.insert("pcapErrors".into(), self.errors.into());
        }
        v
    }
    fn flush(&mut self) {
        if self.pcap.flush().is_err() {
            self.errors += 1;
        }
        self.inner.flush();
    }
}

impl Drop for PcapMirror {
    fn drop(&mut self) {
        let _ = self.pcap.flush();
    }
}

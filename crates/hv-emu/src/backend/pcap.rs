//! A pcapng file (one Ethernet interface, nanosecond timestamps, a direction flag on every packet) written with the
//! `pcap-file` crate, and a backend wrapper that mirrors both directions into it: frames the guest sent (after
//! offloads) and frames offered to the guest.

use super::Backend;
use pcap_file::DataLink;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Longest part of a frame recorded (the interface's snaplen).
const SNAPLEN: usize = 65535;

/// Which way a recorded frame went, seen from the guest (pcapng `epb_flags` bits 0-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Host to guest: the guest receives it.
    Inbound = 1,
    /// Guest to host: the guest sent it.
    Outbound = 2,
}

fn io_err(e: pcap_file::PcapError) -> std::io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

/// Writes pcapng packets.
pub struct PcapWriter {
    out: PcapNgWriter<BufWriter<File>>,
    records: u64,
}

impl std::fmt::Debug for PcapWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapWriter")
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl PcapWriter {
    /// Create `path` and write the section header and the one interface (Ethernet, snaplen 65535, ns timestamps).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let mut out = PcapNgWriter::new(BufWriter::new(File::create(path)?)).map_err(io_err)?;
        let interface = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: SNAPLEN as u32,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Borrowed("hv-emu")),
                // pcap-file writes every timestamp in nanoseconds; readers need to be told.
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        out.write_pcapng_block(interface).map_err(io_err)?;
        Ok(PcapWriter { out, records: 0 })
    }

    /// Append one frame stamped with the current time.
    pub fn record(&mut self, frame: &[u8], direction: Direction) -> std::io::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let packet = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: now,
            original_len: frame.len() as u32,
            data: Cow::Borrowed(&frame[..frame.len().min(SNAPLEN)]),
            options: vec![EnhancedPacketOption::Flags(direction as u32)],
        };
        self.out.write_pcapng_block(packet).map_err(io_err)?;
        self.records += 1;
        Ok(())
    }

    /// Push buffered records to the file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.get_mut().flush()
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
        if self.pcap.record(frame, Direction::Outbound).is_err() {
            self.errors += 1;
        }
        self.inner.transmit(frame);
    }
    fn receive(&mut self, now: Instant, budget: usize, deliver: &mut dyn FnMut(&[u8])) -> usize {
        let pcap = &mut self.pcap;
        let errors = &mut self.errors;
        self.inner.receive(now, budget, &mut |f| {
            if pcap.record(f, Direction::Inbound).is_err() {
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
    fn tx_errors(&self) -> u64 {
        self.inner.tx_errors()
    }
    fn produced(&self) -> u64 {
        self.inner.produced()
    }
    fn stable_frames(&self) -> bool {
        self.inner.stable_frames()
    }
    fn frame_epoch(&self) -> u64 {
        self.inner.frame_epoch()
    }
    fn wire_paced(&self) -> bool {
        self.inner.wire_paced()
    }
    fn never_receives(&self) -> bool {
        self.inner.never_receives()
    }
    fn generator(&mut self) -> Option<&mut super::Generator> {
        self.inner.generator()
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

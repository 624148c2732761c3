//! Where the emulated NIC's frames go and come from.
//!
//! The host hands every frame the guest sends to [`Backend::transmit`] (after applying VLAN,
//! checksum and segmentation offloads) and polls [`Backend::receive`] for frames to deliver to the
//! guest; it picks each frame's channel itself (RSS). A backend may also report link changes.

mod capture;
pub mod flows;
mod generator;
mod loopback;
pub mod pace;
mod pcap;
mod sequenced;
mod sink;
pub mod stamp;
mod tap;

pub use capture::{Capture, CaptureHandle};
pub use flows::{
    FlowPattern, FlowProto, GENERATOR_MAC, IMIX, Ipv4Range, PortRange, build_flow_frame,
    build_frame, parse_sizes,
};
pub use generator::{Generator, GeneratorConfig, MAX_FLOWS};
pub use loopback::Loopback;
pub use pcap::{Direction, PcapMirror, PcapWriter};
pub use sequenced::{SequenceError, check_sequenced, fill_sequenced, sequence_word};
pub use sink::{Digest, Sink, frame_hash, hash_bytes, l4_payload_offset};
pub use stamp::{CheckerStats, SeqChecker, Stamp, StampSlot, read_stamp};
pub use tap::Tap;

use std::time::Instant;

/// A frame source/sink behind the emulated NIC.
pub trait Backend: Send {
    /// Short name for stats.
    fn name(&self) -> &'static str;
    /// A frame the guest sent (untagged or tagged as the guest asked, offloads applied).
    fn transmit(&mut self, frame: &[u8]);
    /// Offer up to `budget` frames for the guest to `deliver`; returns how many were offered.
    fn receive(&mut self, now: Instant, budget: usize, deliver: &mut dyn FnMut(&[u8])) -> usize;
    /// A link change the backend observed (`Some(up)`), polled by the host.
    fn poll_link(&mut self) -> Option<bool> {
        None
    }
    /// Frames the backend dropped itself (a full queue), counted in the stats' drops as `backendOverflow`.
    fn dropped(&self) -> u64 {
        0
    }
    /// Frames the guest sent that the backend could not pass on (a TAP write refused), counted in the stats' drops
    /// as `backendTxError`.
    fn tx_errors(&self) -> u64 {
        0
    }
    /// Frames the backend has offered to the host so far (generated, reflected, read from the TAP).
    fn produced(&self) -> u64 {
        0
    }
    /// Backend counters for the stats document.
    fn stats(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Push buffered output (pcap) to disk.
    fn flush(&mut self) {}
    /// Every frame `receive` offers is one of a fixed set that keeps its address and headers (and a valid checksum)
    /// until [`Backend::frame_epoch`] changes (pre-built frames), so the host may remember per-frame results
    /// (checksum verdict, RSS placement) by address. Default: no.
    fn stable_frames(&self) -> bool {
        false
    }
    /// Changes whenever the stable frames are rebuilt (the host forgets what it remembered about them).
    fn frame_epoch(&self) -> u64 {
        0
    }
    /// Frames fall due by the clock and do not wait for the guest (a paced generator, like a wire): the host asks
    /// for a whole round whatever the guest's free buffers, and counts what finds none as a drop. Default: no (the
    /// backend keeps what the host does not take).
    fn wire_paced(&self) -> bool {
        false
    }
    /// The generator behind this backend, for runtime control (`gen start|stop|rate|size`).
    fn generator(&mut self) -> Option<&mut Generator> {
        None
    }
    /// `receive` never offers a frame (the sink): a busy-polling host need not spin its receive pump for it.
    fn never_receives(&self) -> bool {
        false
    }
}

/// Which backend the emulator builds.
#[derive(Debug, Clone, Default)]
pub enum BackendConfig {
    /// Count and drop every transmitted frame; never receive.
    #[default]
    Sink,
    /// Reflect each transmitted frame back to the guest.
    Loopback,
    /// Generate receive traffic.
    Generator(GeneratorConfig),
    /// A Linux TAP interface (root only).
    Tap { name: String },
    /// Record transmitted frames and deliver injected ones (tests).
    Capture(CaptureHandle),
}

/// A backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Opening or configuring the TAP device failed.
    #[error("tap device {name}: {source}")]
    Tap {
        /// Interface name asked for.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The generator's configuration is out of bounds.
    #[error("generator: {0}")]
    Generator(String),
    /// The pcap file could not be created.
    #[error("pcap file {path}: {source}")]
    Pcap {
        /// File path.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl BackendConfig {
    /// Build the backend this configuration names.
    pub fn build(&self) -> Result<Box<dyn Backend>, BackendError> {
        Ok(match self {
            BackendConfig::Sink => Box::new(Sink::default()),
            BackendConfig::Loopback => Box::new(Loopback::new(4096)),
            BackendConfig::Generator(cfg) => {
                Box::new(Generator::new(cfg.clone()).map_err(BackendError::Generator)?)
            }
            BackendConfig::Capture(h) => Box::new(Capture(h.clone())),
            BackendConfig::Tap { name } => {
                Box::new(Tap::open(name).map_err(|source| BackendError::Tap {
                    name: name.clone(),
                    source,
                })?)
            }
        })
    }
}

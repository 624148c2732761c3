//! The Hyper-V host emulator: presents the sysfs tree and uio maps `uio_hv_generic` would, and plays the host side
//! of VMBus, NVSP and RNDIS over them, so our driver and unmodified DPDK can run with no Hyper-V present.
#![allow(unsafe_code)]

pub mod backend;
pub mod commands;
pub mod ctl;
pub mod emulator;
pub mod guest_mem;
pub mod host;
pub mod interposer;
pub mod monitor;
pub mod runner;
pub mod stats;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tree;
pub mod vf;

pub use backend::{Backend, BackendConfig, GeneratorConfig};
pub use emulator::{Emulator, EmulatorConfig, EmulatorError};
pub use stats::EmuStats;
pub use vf::{VfConfig, VfError, VfNetns, VfStats};

//! The Hyper-V host emulator: presents the sysfs tree and uio maps `uio_hv_generic` would, and plays the host side
//! of VMBus, NVSP and RNDIS over them, so our driver and unmodified DPDK can run with no Hyper-V present.
#![allow(unsafe_code)]

pub mod guest_mem;
pub mod interposer;
pub mod runner;
pub mod tree;

//! A user-space poll-mode driver for the Hyper-V synthetic NIC (netvsc), in the manner of DPDK's
//! `net_netvsc`: NVSP/RNDIS bring-up over a uio_hv_generic device, then tx/rx bursts on one VMBus
//! channel per queue with send-section aggregation, GPA-direct large frames and zero-copy rx views.
#![forbid(unsafe_code)]

pub mod devargs;
pub mod error;
pub mod stats;

pub use devargs::Devargs;
pub use error::{Error, Result};

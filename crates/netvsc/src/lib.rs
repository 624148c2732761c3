//! A user-space poll-mode driver for the Hyper-V synthetic NIC (netvsc), in the manner of DPDK's
//! `net_netvsc`: NVSP/RNDIS bring-up over a uio_hv_generic device, then tx/rx bursts on one VMBus
//! channel per queue with send-section aggregation, GPA-direct large frames and zero-copy rx views.
#![forbid(unsafe_code)]

mod bringup;
pub mod capture;
mod channel;
pub mod config;
mod control;
pub mod devargs;
pub mod device;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod link;
pub mod ndis;
mod queue;
pub mod reconf;
pub mod rx;
mod shared;
pub mod stats;
pub mod telemetry;
pub mod tx;
pub mod tx_region;
pub mod vf;

pub use bringup::DeviceInfo;
pub use config::{Cancel, DeviceConfig, MTU_MAX, MTU_MIN, Timeouts};
pub use devargs::Devargs;
pub use device::Device;
pub use error::{Error, Result};
pub use link::{ErrorCode, Event, LinkInfo};
pub use ndis::{OffloadCaps, Offloads};
pub use queue::{
    BURST_BUDGET_FACTOR, POLL_BUDGET_BYTES, POLL_BUDGET_PACKETS, QueuePair, RingFault,
};
pub use reconf::{RssConfig, RssUpdate};
pub use rx::{Csum, RxMeta, RxPacket, RxView};
pub use shared::{AggLimits, SEND_TABLE_SIZE};
pub use stats::StatsHandle;
pub use tx::{L4Proto, TxMeta, TxOffload, TxPacket};
pub use tx_region::{BusyReason, TxDesc, TxRegion, TxRegionConfig, TxRegionError};
pub use vf::{
    IfName, VfConfig, VfCounters, VfFailure, VfInfo, VfMode, VfPrefer, VfReason, VfState, VfStats,
};
pub use vmbus_uio::IovaMode;

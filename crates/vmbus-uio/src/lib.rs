//! A vmbus device as `uio_hv_generic` presents it, below a configurable root (`/` on a real guest,
//! the emulator's directory in tests): sysfs discovery, the uio maps, subchannel rings,
//! guest→host signalling and DMA memory with its I/O addresses.
//!
//! Real and emulated devices differ only in how [`UioDevice::open`] maps memory. `unsafe` is
//! confined to `mapping` (mmap/munmap/mlock, one control-page atomic, memfd seals), `irq` (the 4-byte
//! write to the uio fd), `lock` (fcntl OFD locks) and `page_size`; all memory is then reached through [`SharedMem`].
//!
//! [`SharedMem`]: vmbus_ring::SharedMem
#![allow(unsafe_code)]

pub mod device;
pub mod discover;
pub mod dma;
pub mod error;
pub mod heap;
pub mod irq;
pub mod lock;
pub mod mapinfo;
mod mapping;
pub mod memfd;
pub mod pagemap;
pub mod signal;
mod sysfs;

pub use device::{SubchannelInfo, UioDevice};
pub use discover::{ChannelInfo, DeviceInfo, NETVSC_CLASS_ID, UioInfo, discover, find_device};
pub use dma::{DmaMemory, IovaMode};
pub use error::UioError;
pub use lock::{OwnerLock, device_lock_path};
pub use mapinfo::{MapInfo, MapKind, NicMaps, validate_nic_maps};
pub use mapping::page_size;
pub use signal::Signaller;

#[cfg(test)]
mod device_tests;
#[cfg(test)]
mod discover_tests;
#[cfg(test)]
mod fake_tree;

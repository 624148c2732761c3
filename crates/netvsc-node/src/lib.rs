//! Node-API binding for netvsc. Thin conversions only: every export calls into the Rust crates and maps their
//! results to plain JS records (`#[napi(object)]`, absent values as `null`) and their errors to `Error`s whose
//! `code` is a stable `ERR_NETVSC_*` string (see `errors`).
#![allow(unsafe_code)]
// Exports are reached only through napi's generated registration, which `cfg(test)` builds leave out, so a
// `--all-targets` lint of the (never run) test harness would call every export dead.
#![cfg_attr(test, allow(dead_code))]

mod devices;
mod emulator;
mod errors;
mod events;
mod meta;
mod nic;
mod queue;
mod regions;
mod registry;
mod telemetry;

use napi_derive::napi;

pub use devices::{ChannelEntry, DeviceEntry, ListOptions, MapSizes, list_devices};

/// Version of the native addon (the crate version), so JS can check it loaded the addon it expects.
#[napi]
pub fn native_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Layout constants shared with the facade (src/meta.ts checks them at load).
#[napi(object)]
#[derive(Debug)]
pub struct NativeLayout {
    /// Metadata words per packet.
    pub meta_words: u32,
    /// Descriptor words per zero-copy packet.
    pub desc_words: u32,
    /// Counters per queue in `queueStatsInto`.
    pub queue_stat_words: u32,
}

/// The burst/stats array layouts this addon uses.
#[napi]
pub fn native_layout() -> NativeLayout {
    NativeLayout {
        meta_words: meta::META_WORDS as u32,
        desc_words: queue::DESC_WORDS as u32,
        queue_stat_words: nic::QUEUE_STAT_WORDS as u32,
    }
}

/// Devargs as the Rust driver parses them (`parseDevargs` in src/devargs.ts must agree on every input; the
/// shared table and the property test in `__test__/devargs.spec.ts` hold both to it). Errors are
/// `ERR_NETVSC_DEVARGS` with the driver's message.
#[napi]
pub fn parse_devargs_native(text: String) -> errors::Result<nic::DevargsInfo> {
    let d = netvsc::Devargs::parse(&text).map_err(errors::from_driver)?;
    Ok(nic::DevargsInfo {
        latency: d.latency_us,
        rx_copybreak: d.rx_copybreak,
        tx_copybreak: d.tx_copybreak,
        rx_extmbuf_enable: d.rx_extmbuf_enable,
        numa_aware: d.numa_aware,
    })
}

/// Queues claimed in this process (all threads), for tests of the registry.
#[napi]
pub fn claimed_queue_count() -> u32 {
    registry::claimed_count() as u32
}

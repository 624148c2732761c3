//! Node-API binding for netvsc. Thin conversions only: every export calls into the Rust crates and maps their
//! results to plain JS records (`#[napi(object)]`, absent values as `null`) and their errors to `Error`s whose
//! `code` is a stable `ERR_NETVSC_*` string (see `errors`).
#![allow(unsafe_code)]

mod devices;
mod errors;

use napi_derive::napi;

pub use devices::{ChannelEntry, DeviceEntry, ListOptions, MapSizes, list_devices};

/// Version of the native addon (the crate version), so JS can check it loaded the addon it expects.
#[napi]
pub fn native_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

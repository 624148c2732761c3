//! Wire formats of the Hyper-V synthetic NIC: NVSP messages, RNDIS messages, OIDs, NDIS offload/RSS structures,
//! per-packet info, packet-filter bits and the Toeplitz hash. No I/O and no unsafe code.
//!
//! Parsing contract: every `parse` takes untrusted bytes, copies fixed parts out by value (zero-filling optional
//! tails), bounds every peer-supplied offset/length against the message and returns a typed [`ProtoError`] —
//! it never panics and never reads outside its input. Builders write into caller buffers (no allocation) and
//! return the number of bytes written; `parse(emit(x)) == x` for every message.
//!
//! ```
//! use netvsc_proto::nvsp::{self, NvspMessage, Init};
//! let msg = NvspMessage::Init(Init { min_version: nvsp::VERSION_61, max_version: nvsp::VERSION_61 });
//! let bytes = msg.to_bytes();
//! assert_eq!(bytes.len(), 40);
//! assert_eq!(NvspMessage::parse(&bytes).unwrap(), msg);
//! ```
#![forbid(unsafe_code)]

#[cfg(target_endian = "big")]
compile_error!("netvsc-proto maps little-endian wire structs onto native integers");

pub mod error;
pub mod filter;
pub mod ndis;
pub mod nvsp;
pub mod oid;
pub mod ppi;
pub mod rndis;
pub mod toeplitz;
mod wire;

pub use error::{ProtoError, Result};

//! Typed errors of the driver. Every failure names the bring-up step or operation it came from,
//! and what the host (or the caller) supplied, so a log line is enough to locate the fault.

use std::time::Duration;

/// A step of bring-up, control or teardown, named in errors.
pub type Step = &'static str;

/// Everything the driver can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device could not be found or mapped by the uio layer.
    #[error(transparent)]
    Uio(#[from] vmbus_uio::UioError),
    /// A ring could not be built over the mapped memory or a write failed hard.
    #[error("ring ({step}): {detail}")]
    Ring {
        /// Operation that used the ring.
        step: Step,
        /// What the ring layer reported.
        detail: String,
    },
    /// Shared memory access outside a mapped window (a bad offset from the host).
    #[error("shared memory ({step}): {source}")]
    Mem {
        /// Operation that made the access.
        step: Step,
        /// Bounds error.
        source: vmbus_ring::MemError,
    },
    /// The host never answered within the configured time.
    #[error("timed out after {waited:?} waiting for the host during {step}")]
    Timeout {
        /// Step that was waiting.
        step: Step,
        /// How long we waited.
        waited: Duration,
    },
    /// The bring-up was cancelled (`DeviceConfig::cancel`) while waiting for the host.
    #[error("bring-up cancelled during {step}")]
    Cancelled {
        /// Step that was waiting.
        step: Step,
    },
    /// The host answered with a failure status.
    #[error("host rejected {step}: status {status:#x}")]
    Rejected {
        /// Step the host rejected.
        step: Step,
        /// Status value it returned (NVSP or NDIS).
        status: u32,
    },
    /// No NVSP version in the candidate list was accepted.
    #[error("host accepted none of the NVSP versions {tried:x?}")]
    NoVersion {
        /// Versions offered, in order.
        tried: Vec<u32>,
    },
    /// The host sent something malformed or out of range.
    #[error("malformed reply during {step}: {what} = {value:#x}")]
    Protocol {
        /// Step in progress.
        step: Step,
        /// Field or check that failed.
        what: &'static str,
        /// Offending value.
        value: u64,
    },
    /// A devargs string could not be parsed.
    #[error("devargs: key `{key}` value `{value}`: {kind}")]
    Devarg {
        /// Key as written (trimmed; clipped to 32 characters with `…`).
        key: String,
        /// Value as written (trimmed; clipped to 32 characters with `…`).
        value: String,
        /// What was wrong.
        kind: crate::devargs::DevargKind,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {what} = {value}")]
    Config {
        /// Which setting.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// An MTU outside what a Hyper-V host accepts (frames of 1514..=9216 bytes).
    #[error("MTU {mtu} outside {min}..={max} (Hyper-V takes frames of 1514..=9216 bytes)")]
    MtuOutOfRange {
        /// The MTU asked for.
        mtu: u32,
        /// Smallest MTU accepted.
        min: u32,
        /// Largest MTU accepted.
        max: u32,
    },
    /// The operation exists on other NICs but Hyper-V's synthetic NIC cannot do it.
    #[error("{0} is not supported by Hyper-V")]
    NotSupported(&'static str),
    /// The operation needs the port stopped.
    #[error("{0} is not allowed while the port is started")]
    Started(&'static str),
    /// Another live process has the device open (its owner lock is held).
    #[error("device {device} is in use by pid {pid}")]
    DeviceBusy {
        /// The device's uuid.
        device: String,
        /// The owner's pid (0 if it could not be read).
        pid: u32,
    },
    /// The device was closed; the handle is stale.
    #[error("device is closed")]
    Closed,
    /// Zero-copy views are still held; the operation would leave them pointing into a revoked buffer.
    #[error("queue {queue} holds {count} zero-copy views; release them before {what}")]
    ViewsOutstanding {
        /// The queue holding them.
        queue: u16,
        /// How many.
        count: u32,
        /// The operation refused.
        what: &'static str,
    },
    /// A zero-copy tx region request or descriptor was refused.
    #[error(transparent)]
    TxRegion(#[from] crate::tx_region::TxRegionError),
    /// The caller passed a bad packet or argument.
    #[error("invalid argument: {what} = {value}")]
    Invalid {
        /// Which argument.
        what: &'static str,
        /// Its value.
        value: u64,
    },
}

/// Shorthand result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn mem(step: Step) -> impl FnOnce(vmbus_ring::MemError) -> Error {
        move |source| Error::Mem { step, source }
    }

    pub(crate) fn protocol(step: Step, what: &'static str, value: impl Into<u64>) -> Error {
        Error::Protocol {
            step,
            what,
            value: value.into(),
        }
    }
}

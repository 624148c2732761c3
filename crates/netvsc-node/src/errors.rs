//! Stable error codes: a napi `Error` whose status is a [`Code`] surfaces in JS as an `Error` with
//! `err.code` set to the code's string and `err.message` to the Rust error's text (with its causes).

use napi::Status;
use vmbus_uio::UioError;

/// Every `code` the addon can put on a thrown `Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// An argument from JS was malformed.
    InvalidArg,
    /// A file or directory of the device tree could not be read.
    Io,
    /// A required sysfs attribute is absent.
    SysfsMissing,
    /// A sysfs attribute (or map name) could not be parsed.
    SysfsParse,
    /// The uio map table does not have the NIC layout.
    BadMaps,
    /// No device matches the uuid or interface asked for.
    DeviceNotFound,
    /// The device is not bound to uio_hv_generic.
    NotUioBound,
    /// Any other failure of the uio layer (mmap, signalling, DMA memory).
    Uio,
    /// A failure inside Node-API itself (conversion of arguments or results).
    Napi,
    /// The device or queue was closed; the handle is stale.
    Closed,
    /// The host did not answer in time.
    Timeout,
    /// The operation was aborted by the caller (an AbortSignal during `open`).
    Aborted,
    /// The host answered with a failure status.
    HostRejected,
    /// The host sent something malformed (or no acceptable NVSP version).
    Protocol,
    /// A devargs string was malformed (the message names the key and the value).
    Devargs,
    /// A configuration value is out of range.
    Config,
    /// The synthetic NIC cannot do this (MAC change, VLAN filter, ...).
    NotSupported,
    /// The operation needs the port stopped.
    Started,
    /// The queue is already open (in this thread, another worker, or another device handle).
    QueueBusy,
    /// Another live process owns the device, or serves the emulator directory (the message names its pid).
    DeviceBusy,
    /// No open device with this uuid in this process, or no such queue on it.
    NotOpen,
    /// A ring or shared-memory failure in the driver.
    Ring,
    /// The queue was removed by a queue-count change (`setQueues`).
    QueueRemoved,
    /// Zero-copy views are still held (release them first).
    ViewsOutstanding,
    /// A zero-copy tx descriptor names a buffer the driver still holds (in flight or not yet reclaimed).
    TxBufferBusy,
    /// The host emulator could not start (tree, backend, host).
    Emulator,
    /// A guest program could not be run against the emulator.
    Runner,
}

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        match self {
            Code::InvalidArg => "ERR_NETVSC_INVALID_ARG",
            Code::Io => "ERR_NETVSC_IO",
            Code::SysfsMissing => "ERR_NETVSC_SYSFS_MISSING",
            Code::SysfsParse => "ERR_NETVSC_SYSFS_PARSE",
            Code::BadMaps => "ERR_NETVSC_BAD_MAPS",
            Code::DeviceNotFound => "ERR_NETVSC_DEVICE_NOT_FOUND",
            Code::NotUioBound => "ERR_NETVSC_NOT_UIO_BOUND",
            Code::Uio => "ERR_NETVSC_UIO",
            Code::Napi => "ERR_NETVSC_NAPI",
            Code::Closed => "ERR_NETVSC_CLOSED",
            Code::Timeout => "ERR_NETVSC_TIMEOUT",
            Code::Aborted => "ERR_NETVSC_ABORTED",
            Code::HostRejected => "ERR_NETVSC_HOST_REJECTED",
            Code::Protocol => "ERR_NETVSC_PROTOCOL",
            Code::Devargs => "ERR_NETVSC_DEVARGS",
            Code::Config => "ERR_NETVSC_CONFIG",
            Code::NotSupported => "ERR_NETVSC_NOT_SUPPORTED",
            Code::Started => "ERR_NETVSC_STARTED",
            Code::QueueBusy => "ERR_NETVSC_QUEUE_BUSY",
            Code::DeviceBusy => "ERR_NETVSC_DEVICE_BUSY",
            Code::NotOpen => "ERR_NETVSC_NOT_OPEN",
            Code::Ring => "ERR_NETVSC_RING",
            Code::QueueRemoved => "ERR_NETVSC_QUEUE_REMOVED",
            Code::ViewsOutstanding => "ERR_NETVSC_VIEWS_OUTSTANDING",
            Code::TxBufferBusy => "ERR_NETVSC_TX_BUFFER_BUSY",
            Code::Emulator => "ERR_NETVSC_EMULATOR",
            Code::Runner => "ERR_NETVSC_RUNNER",
        }
    }
}

impl From<Status> for Code {
    fn from(_: Status) -> Self {
        Code::Napi
    }
}

/// Result type of every export.
pub type Result<T> = napi::Result<T, Code>;

/// An error with `code` and `message`.
pub fn error(code: Code, message: impl Into<String>) -> napi::Error<Code> {
    napi::Error::new(code, message.into())
}

/// The code a uio-layer error maps to.
pub fn uio_code(err: &UioError) -> Code {
    match err {
        UioError::Io { .. } => Code::Io,
        UioError::Missing { .. } => Code::SysfsMissing,
        UioError::Parse { .. } | UioError::BadGpadl { .. } => Code::SysfsParse,
        UioError::MissingMap { .. } | UioError::WrongMapName { .. } | UioError::BadSize { .. } => {
            Code::BadMaps
        }
        UioError::NotFound { .. } => Code::DeviceNotFound,
        UioError::NoUio { .. } => Code::NotUioBound,
        UioError::Invalid(_) => Code::InvalidArg,
        UioError::Busy { .. } => Code::DeviceBusy,
        _ => Code::Uio,
    }
}

/// Convert a uio-layer error, keeping its whole cause chain in the message.
pub fn from_uio(err: UioError) -> napi::Error<Code> {
    let code = uio_code(&err);
    with_causes(code, &err)
}

/// The code a driver error maps to.
pub fn driver_code(err: &netvsc::Error) -> Code {
    use netvsc::Error as E;
    match err {
        E::Uio(u) => uio_code(u),
        E::Ring { .. } | E::Mem { .. } => Code::Ring,
        E::Timeout { .. } => Code::Timeout,
        E::Cancelled { .. } => Code::Aborted,
        E::Rejected { .. } => Code::HostRejected,
        E::NoVersion { .. } | E::Protocol { .. } => Code::Protocol,
        E::Devarg { .. } => Code::Devargs,
        E::DeviceBusy { .. } => Code::DeviceBusy,
        E::Config { .. } => Code::Config,
        E::NotSupported(_) => Code::NotSupported,
        E::Started(_) => Code::Started,
        E::Closed => Code::Closed,
        E::Invalid { .. } | E::MtuOutOfRange { .. } => Code::InvalidArg,
        E::ViewsOutstanding { .. } => Code::ViewsOutstanding,
        E::TxRegion(netvsc::TxRegionError::Busy { .. }) => Code::TxBufferBusy,
        E::TxRegion(_) => Code::InvalidArg,
        #[allow(unreachable_patterns)]
        _ => Code::Protocol,
    }
}

/// Convert a driver error, keeping its cause chain in the message.
pub fn from_driver(err: netvsc::Error) -> napi::Error<Code> {
    with_causes(driver_code(&err), &err)
}

/// `err`'s text followed by every distinct cause, `: `-separated.
pub fn with_causes(code: Code, err: &(dyn std::error::Error + 'static)) -> napi::Error<Code> {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    error(code, message)
}

//! Stable error codes: a napi `Error` whose status is a [`Code`] surfaces in JS as an `Error` with
//! `err.code` set to the code's string and `err.message` to the Rust error's text (with its causes).

use std::error::Error as _;

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
        _ => Code::Uio,
    }
}

/// Convert a uio-layer error, keeping its whole cause chain in the message.
pub fn from_uio(err: UioError) -> napi::Error<Code> {
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
    error(uio_code(&err), message)
}

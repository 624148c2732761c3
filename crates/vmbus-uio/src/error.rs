//! Errors of the uio layer: every variant names the file (or device) concerned and what was wrong
//! with it, so a failed scan or mapping can be diagnosed from the message alone.

use std::path::PathBuf;

use vmbus_ring::MemError;

/// Something in the sysfs tree, the uio device or a mapping was missing or not as expected.
#[derive(Debug, thiserror::Error)]
pub enum UioError {
    /// A file or directory could not be read (missing, permission, I/O error).
    #[error("{path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A required sysfs attribute is absent.
    #[error("{path}: required attribute is missing")]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// An attribute's text could not be parsed.
    #[error("{path}: cannot parse {value:?} as {expected}")]
    Parse {
        /// The file whose contents are bad.
        path: PathBuf,
        /// What was read (trimmed).
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The device has no uio node (not bound to uio_hv_generic).
    #[error("{device}: no uio device (is it bound to uio_hv_generic?)")]
    NoUio {
        /// The device directory.
        device: PathBuf,
    },
    /// A map the driver needs is absent.
    #[error("{device}: uio map {index} ({expected}) is missing")]
    MissingMap {
        /// The device's uio directory.
        device: PathBuf,
        /// Index of the missing map.
        index: usize,
        /// Name it should have had.
        expected: &'static str,
    },
    /// A map has an unexpected name.
    #[error("{path}: map {index} is named {found:?}, expected {expected}")]
    WrongMapName {
        /// The map's `name` file.
        path: PathBuf,
        /// Index of the map.
        index: usize,
        /// The name found.
        found: String,
        /// The name expected.
        expected: &'static str,
    },
    /// A map (or ring file) has a size that cannot be right.
    #[error("{path}: size {size:#x} is invalid: {why}")]
    BadSize {
        /// The `size` file (or the ring file).
        path: PathBuf,
        /// The size read.
        size: u64,
        /// Why it is wrong.
        why: &'static str,
    },
    /// A `recv:`/`send:` map name carries no valid GPADL handle.
    #[error("{path}: map name {name:?} does not end in a decimal GPADL handle")]
    BadGpadl {
        /// The map's `name` file.
        path: PathBuf,
        /// The name read.
        name: String,
    },
    /// No device matches the uuid or interface name asked for.
    #[error("no vmbus device matches {key:?} under {root}")]
    NotFound {
        /// The uuid or interface asked for.
        key: String,
        /// The root searched.
        root: PathBuf,
    },
    /// `dev/uioN` is neither a character device nor a regular file.
    #[error("{path}: neither a character device nor an emulated (regular) file")]
    NotADevice {
        /// The node.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("{call} on {path}: {source}")]
    Sys {
        /// The call (mmap, write, mlock, ...).
        call: &'static str,
        /// What it was applied to.
        path: PathBuf,
        /// errno.
        #[source]
        source: std::io::Error,
    },
    /// The emulator's control page does not carry the expected magic.
    #[error("{path}: control page magic is {found:#010x}, expected 0x48564355")]
    BadControlPage {
        /// The ctl file.
        path: PathBuf,
        /// The magic read.
        found: u32,
    },
    /// A subchannel relid is not listed (or its ring is not ready).
    #[error("{path}: subchannel {relid} is not available: {why}")]
    NoSubchannel {
        /// The channel directory.
        path: PathBuf,
        /// The relid asked for.
        relid: u32,
        /// Why.
        why: &'static str,
    },
    /// Fewer subchannels appeared than were waited for.
    #[error("{device}: {found} of {wanted} subchannels appeared after {tries} polls")]
    SubchannelTimeout {
        /// The device directory.
        device: PathBuf,
        /// How many were wanted.
        wanted: usize,
        /// How many appeared.
        found: usize,
        /// Polls made.
        tries: u32,
    },
    /// A monitor id outside the 128 trigger bits of the monitor page.
    #[error("monitor id {0} is outside the monitor page (0..=127, or 255 for none)")]
    MonitorIdOutOfRange(u8),
    /// A latency that does not fit the u16 slot (DPDK ignores such values).
    #[error("latency of {nanos} ns is too large: must be below 6553.5 us")]
    LatencyTooLarge {
        /// The latency asked for, in ns.
        nanos: u128,
    },
    /// Physical addresses are hidden from this process.
    #[error("{path}: physical addresses unavailable (need CAP_SYS_ADMIN)")]
    PhysUnavailable {
        /// The pagemap file.
        path: PathBuf,
    },
    /// A page is not present in memory (or swapped out), so it has no physical address.
    #[error("{path}: page at {va:#x} is {state}")]
    PageNotPresent {
        /// The pagemap file.
        path: PathBuf,
        /// The virtual address.
        va: u64,
        /// "not present" or "swapped out".
        state: &'static str,
    },
    /// An access to a mapping failed its bounds or alignment check.
    #[error("{what}: {source}")]
    Mem {
        /// Which mapping.
        what: &'static str,
        /// The check that failed.
        #[source]
        source: MemError,
    },
    /// Another live process owns the device (or the emulator directory): its lock is held.
    #[error("{path}: in use by pid {pid}")]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// The owner's pid (0 if it could not be read).
        pid: u32,
    },
    /// An emulated backing file could be shrunk under us (a peer's truncate would kill this process with SIGBUS).
    #[error(
        "{path}: backing file is not sealed against shrinking (seals {seals:#x}); refusing to map it"
    )]
    NotSealed {
        /// The map file.
        path: PathBuf,
        /// The seals it has (`F_GET_SEALS`; -1 for a file that cannot be sealed).
        seals: i32,
    },
    /// An invalid argument from the caller.
    #[error("{0}")]
    Invalid(String),
}

impl UioError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(call: &'static str, path: impl Into<PathBuf>) -> Self {
        Self::Sys {
            call,
            path: path.into(),
            source: std::io::Error::last_os_error(),
        }
    }

    pub(crate) fn mem(what: &'static str) -> impl FnOnce(MemError) -> Self {
        move |source| Self::Mem { what, source }
    }
}

//! Linux netdevs from user space, with no knowledge of netvsc, VMBus or the emulator: discovery ([`list`],
//! [`by_name`], [`by_index`], [`pci_slot_of`]), control ([`Netdev`]), veth pairs and link edits over rtnetlink
//! ([`create_veth`], [`delete_link`], [`rename_link`], [`set_mac`], [`disable_ipv6`]), a link watcher
//! ([`LinkWatcher`]) and a multi-queue data path ([`Port`] / [`VfQueue`]) over AF_XDP or AF_PACKET.
//!
//! Unsafe code is allowed in this crate because it maps kernel rings and issues raw syscalls (ioctl, bpf, mmap);
//! every unsafe block carries a `// SAFETY:` line, and every index/length/address read from a kernel-shared ring is
//! validated (see [`ring`]) before it is used.
#![allow(unsafe_code)]

mod afpacket;
mod afxdp;
mod bpf;
mod control;
mod discover;
mod health;
mod nl;
mod port;
pub mod ring;
mod sys;
mod veth;
mod watch;

pub use control::{KernelStats, Netdev};
pub use discover::{NetdevInfo, by_index, by_name, list, pci_slot_of};
pub use port::{Gso, GsoKind, Mode, Port, PortConfig, Prefer, VfQueue, VfQueueStats, VfRx, VfTx};
pub use veth::{VethSpec, create_veth, delete_link, disable_ipv6, rename_link, set_mac};
pub use watch::{LinkChange, LinkWatcher};

/// An Ethernet MAC address.
pub type Mac = [u8; 6];

/// Every error this crate returns.
#[derive(thiserror::Error, Debug)]
pub enum NetdevError {
    /// A system call on a netdev failed.
    #[error("netdev {name}: {op}: {source}")]
    Io {
        /// The netdev's name (or index, when the name is unknown).
        name: String,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No such netdev.
    #[error("netdev {0}: not found")]
    NotFound(String),
    /// A netlink request failed or a reply could not be parsed.
    #[error("netlink: {0}")]
    Netlink(String),
    /// The kernel or the device lacks a facility.
    #[error("{what}: {detail}")]
    Unsupported {
        /// The facility.
        what: &'static str,
        /// Why it is unavailable.
        detail: String,
    },
    /// A bad argument, or a bad value read from the kernel.
    #[error("{0}")]
    Invalid(String),
}

/// This crate's result type.
pub type Result<T> = std::result::Result<T, NetdevError>;

pub(crate) fn io_err(
    name: impl Into<String>,
    op: &'static str,
    source: std::io::Error,
) -> NetdevError {
    NetdevError::Io {
        name: name.into(),
        op,
        source,
    }
}

//! The seam between the VF state machine and the kernel: netdev discovery, netdev control, the link watcher
//! and the VF data path. [`Kernel`] is the real one (crate `vf-netdev`); unit tests plug in fakes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vf_netdev::{LinkChange, Mac, Mode, NetdevInfo, PortConfig, VfQueueStats, VfRx, VfTx};

/// A failure of the kernel side, flattened to what the state machine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackendError {
    /// The netdev is gone (it cannot come back under this ifindex).
    pub gone: bool,
    /// The netdev stopped running (closed, or lost carrier) after it had been running.
    pub stopped: bool,
    pub detail: String,
}

impl From<vf_netdev::NetdevError> for BackendError {
    fn from(e: vf_netdev::NetdevError) -> Self {
        let gone = match &e {
            vf_netdev::NetdevError::NotFound(_) => true,
            vf_netdev::NetdevError::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::ENODEV) | Some(libc::ENXIO) | Some(libc::ENOENT)
            ),
            _ => false,
        };
        let stopped = matches!(&e, vf_netdev::NetdevError::Io { source, .. }
            if source.raw_os_error() == Some(libc::ENETDOWN));
        BackendError {
            gone,
            stopped,
            detail: e.to_string(),
        }
    }
}

pub(crate) type BResult<T> = std::result::Result<T, BackendError>;

/// Discovery, control and ports.
pub(crate) trait Backend: Send + 'static {
    fn list(&self) -> BResult<Vec<NetdevInfo>>;
    /// Current (up, running) of a netdev: link events can be stale by the time they are read.
    fn link_state(&self, ifindex: u32) -> BResult<(bool, bool)>;
    fn control(&self, ifindex: u32) -> BResult<Box<dyn NetdevOps>>;
    fn open_port(&self, ifindex: u32, cfg: &PortConfig) -> BResult<Box<dyn PortOps>>;
    /// A link-change source, if netlink is available.
    fn watcher(&self) -> Option<Box<dyn Watch>>;
}

/// Control of one netdev.
pub(crate) trait NetdevOps: Send {
    fn name(&self) -> BResult<String>;
    fn set_up(&self, up: bool) -> BResult<()>;
    fn set_promiscuous(&self, on: bool) -> BResult<()>;
    fn set_allmulticast(&self, on: bool) -> BResult<()>;
    fn set_mtu(&self, mtu: u32) -> BResult<()>;
    fn set_multicast_list(&self, list: &[Mac]) -> BResult<()>;
}

/// An open port.
pub(crate) trait PortOps: Send {
    fn mode(&self) -> Mode;
    fn take_queues(&mut self) -> Vec<Box<dyn QueueOps>>;
}

/// One VF queue, owned by a queue pair.
pub(crate) trait QueueOps: Send {
    fn rx_burst(&mut self, max: usize, f: &mut dyn FnMut(&[u8], VfRx)) -> BResult<usize>;
    fn tx_burst(&mut self, frames: &[VfTx<'_>]) -> BResult<usize>;
    fn tx_supports_gso(&self) -> bool;
    fn poll_tx(&mut self) -> BResult<usize>;
    fn stats(&self) -> Arc<VfQueueStats>;
}

/// Link changes.
pub(crate) trait Watch: Send {
    fn wait(&mut self, out: &mut Vec<LinkChange>, timeout: Duration) -> BResult<usize>;
}

/// The real kernel, through `vf-netdev`.
pub(crate) struct Kernel {
    pub sysfs_root: PathBuf,
}

impl Backend for Kernel {
    fn list(&self) -> BResult<Vec<NetdevInfo>> {
        Ok(vf_netdev::list(&self.sysfs_root)?)
    }

    fn link_state(&self, ifindex: u32) -> BResult<(bool, bool)> {
        let i = vf_netdev::by_index(ifindex)?;
        Ok((i.up, i.running))
    }

    fn control(&self, ifindex: u32) -> BResult<Box<dyn NetdevOps>> {
        Ok(Box::new(vf_netdev::Netdev::open(ifindex)?))
    }

    fn open_port(&self, ifindex: u32, cfg: &PortConfig) -> BResult<Box<dyn PortOps>> {
        Ok(Box::new(vf_netdev::Port::open(ifindex, cfg)?))
    }

    fn watcher(&self) -> Option<Box<dyn Watch>> {
        vf_netdev::LinkWatcher::new()
            .ok()
            .map(|w| Box::new(w) as Box<dyn Watch>)
    }
}

impl NetdevOps for vf_netdev::Netdev {
    fn name(&self) -> BResult<String> {
        Ok(vf_netdev::Netdev::name(self)?)
    }
    fn set_up(&self, up: bool) -> BResult<()> {
        Ok(vf_netdev::Netdev::set_up(self, up)?)
    }
    fn set_promiscuous(&self, on: bool) -> BResult<()> {
        Ok(vf_netdev::Netdev::set_promiscuous(self, on)?)
    }
    fn set_allmulticast(&self, on: bool) -> BResult<()> {
        Ok(vf_netdev::Netdev::set_allmulticast(self, on)?)
    }
    fn set_mtu(&self, mtu: u32) -> BResult<()> {
        Ok(vf_netdev::Netdev::set_mtu(self, mtu)?)
    }
    fn set_multicast_list(&self, list: &[Mac]) -> BResult<()> {
        Ok(vf_netdev::Netdev::set_multicast_list(self, list)?)
    }
}

impl PortOps for vf_netdev::Port {
    fn mode(&self) -> Mode {
        vf_netdev::Port::mode(self)
    }
    fn take_queues(&mut self) -> Vec<Box<dyn QueueOps>> {
        vf_netdev::Port::take_queues(self)
            .into_iter()
            .map(|q| Box::new(q) as Box<dyn QueueOps>)
            .collect()
    }
}

impl QueueOps for vf_netdev::VfQueue {
    fn rx_burst(&mut self, max: usize, f: &mut dyn FnMut(&[u8], VfRx)) -> BResult<usize> {
        Ok(vf_netdev::VfQueue::rx_burst(self, max, f)?)
    }
    fn tx_burst(&mut self, frames: &[VfTx<'_>]) -> BResult<usize> {
        Ok(vf_netdev::VfQueue::tx_burst(self, frames)?)
    }
    fn tx_supports_gso(&self) -> bool {
        vf_netdev::VfQueue::tx_supports_gso(self)
    }
    fn poll_tx(&mut self) -> BResult<usize> {
        Ok(vf_netdev::VfQueue::poll_tx(self)?)
    }
    fn stats(&self) -> Arc<VfQueueStats> {
        vf_netdev::VfQueue::stats(self)
    }
}

impl Watch for vf_netdev::LinkWatcher {
    fn wait(&mut self, out: &mut Vec<LinkChange>, timeout: Duration) -> BResult<usize> {
        Ok(vf_netdev::LinkWatcher::wait(self, out, timeout)?)
    }
}

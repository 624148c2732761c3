//! The VF's veth pair through `vf-netdev`: create it (guest end down with the VF MAC, host end up and promiscuous,
//! IPv6 off on both so the kernel sends nothing of its own), open one AF_PACKET queue on the host end, and delete
//! the pair on drop. Everything netdev-specific the host needs is here, so `host::vf` stays protocol only.

use super::{Mac, VfError, VfNetns};
use std::os::fd::AsRawFd;
use vf_netdev::{self as nd, Netdev, Port, PortConfig, Prefer, VethSpec, VfQueue, VfTx};

/// Frames taken from the host end per poll.
pub(crate) const RX_BURST: usize = 64;

fn err(e: impl std::fmt::Display) -> VfError {
    VfError::Netdev(e.to_string())
}

/// A live veth pair and the host end's queue.
pub(crate) struct VethPair {
    pub(crate) guest: String,
    pub(crate) host: String,
    queue: VfQueue,
    mode: &'static str,
}

impl VethPair {
    /// Create the pair and open the host end. On error nothing is left behind.
    pub(crate) fn create(
        guest: &str,
        host: &str,
        mac: Mac,
        netns: Option<&VfNetns>,
        frame_size: u32,
    ) -> Result<VethPair, VfError> {
        // A namespace given by path is opened here and closed once the guest end is in it.
        let ns_file = match netns {
            Some(VfNetns::Path(p)) => Some(
                std::fs::File::open(p)
                    .map_err(|e| VfError::Netdev(format!("netns {}: {e}", p.display())))?,
            ),
            _ => None,
        };
        let ns_fd = match (netns, &ns_file) {
            (Some(VfNetns::Fd(fd)), _) => Some(*fd),
            (_, Some(f)) => Some(f.as_raw_fd()),
            _ => None,
        };
        let spec = VethSpec {
            guest,
            host,
            guest_mac: Some(mac),
            host_mac: None,
            queues: 1,
            guest_netns_fd: ns_fd,
        };
        let (_, host_ifindex) = nd::create_veth(&spec).map_err(err)?;
        let undo = |e: VfError| {
            let _ = nd::delete_link(host);
            e
        };
        match ns_fd {
            None => nd::disable_ipv6(guest).map_err(err).map_err(undo)?,
            Some(fd) => disable_ipv6_in(fd, guest).map_err(undo)?,
        }
        nd::disable_ipv6(host).map_err(err).map_err(undo)?;
        let dev = Netdev::open(host_ifindex).map_err(err).map_err(undo)?;
        dev.set_promiscuous(true).map_err(err).map_err(undo)?;
        dev.set_up(true).map_err(err).map_err(undo)?;
        let cfg = PortConfig {
            queues: 1,
            prefer: Prefer::AfPacket,
            ring_frames: 8192,
            frame_size,
            fail_when_stopped: false,
        };
        let mut port = Port::open(host_ifindex, &cfg).map_err(err).map_err(undo)?;
        let mode = port.mode().as_str();
        let queue = port
            .take_queues()
            .into_iter()
            .next()
            .ok_or_else(|| VfError::Netdev(format!("{host}: no queue opened")))
            .map_err(undo)?;
        drop(port);
        Ok(VethPair {
            guest: guest.to_string(),
            host: host.to_string(),
            queue,
            mode,
        })
    }

    pub(crate) fn mode(&self) -> &'static str {
        self.mode
    }

    /// Change the guest end's MAC (the VF's).
    pub(crate) fn set_guest_mac(&self, mac: Mac) -> Result<(), VfError> {
        nd::set_mac(&self.guest, mac).map_err(err)
    }

    /// Frames the guest sent on its VF: `f(frame, vlan_tci)` for each; Err when the socket is dead.
    pub(crate) fn rx(&mut self, mut f: impl FnMut(&[u8], Option<u16>)) -> Result<usize, VfError> {
        self.queue
            .rx_burst(RX_BURST, |frame, meta| f(frame, meta.vlan_tci))
            .map_err(err)
    }

    /// Send `frames` out of the host end (to the guest's VF); returns how many the ring took.
    pub(crate) fn tx(&mut self, frames: &[&[u8]]) -> Result<usize, VfError> {
        let segs: Vec<[&[u8]; 1]> = frames.iter().map(|f| [*f]).collect();
        let txs: Vec<VfTx<'_>> = segs
            .iter()
            .map(|s| VfTx {
                segs: &s[..],
                csum: None,
                gso: None,
            })
            .collect();
        let n = self.queue.tx_burst(&txs).map_err(err)?;
        let _ = self.queue.poll_tx();
        Ok(n)
    }

    /// Kernel drops on the host end's rx ring so far.
    pub(crate) fn rx_dropped(&self) -> u64 {
        self.queue
            .stats()
            .rx_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// `disable_ipv6` for `name` inside the namespace `ns_fd` (`/proc/sys/net` shows the caller's namespace): on a
/// short-lived thread that joins it.
fn disable_ipv6_in(ns_fd: i32, name: &str) -> Result<(), VfError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a namespace fd the caller keeps open; it only moves this short-lived thread.
            if unsafe { libc::setns(ns_fd, libc::CLONE_NEWNET) } != 0 {
                return Err(VfError::Netdev(format!(
                    "setns into the VF's namespace: {}",
                    std::io::Error::last_os_error()
                )));
            }
            nd::disable_ipv6(name).map_err(err)
        })
        .join()
        .unwrap_or_else(|_| Err(VfError::Netdev("setns thread panicked".into())))
    })
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting one end deletes both; the guest end may already be gone (hot-removed from outside).
        let _ = nd::delete_link(&self.host);
    }
}

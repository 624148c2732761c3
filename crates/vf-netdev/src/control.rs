//! Netdev control through ioctls on an AF_INET datagram socket.

use std::os::fd::AsRawFd;
use std::sync::Mutex;

use crate::sys::{IfReq, ctl_socket, index_to_name, ioctl_ifreq};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};

use crate::{Mac, NetdevError, Result, io_err, nl};

/// A handle on one netdev, by ifindex (the name is looked up again on every call, so renames are followed).
#[derive(Debug)]
pub struct Netdev {
    ifindex: u32,
    mcast: Mutex<Vec<Mac>>,
}

/// The kernel's counters for a netdev.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
}

impl Netdev {
    /// Opens the netdev with this index (NotFound if none).
    pub fn open(ifindex: u32) -> Result<Netdev> {
        index_to_name(ifindex)?;
        Ok(Netdev {
            ifindex,
            mcast: Mutex::new(Vec::new()),
        })
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Current name by ifindex.
    pub fn name(&self) -> Result<String> {
        index_to_name(self.ifindex)
    }

    fn with_ifr<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(i32, &mut IfReq) -> std::io::Result<T>,
    ) -> Result<T> {
        let name = self.name()?;
        let s = ctl_socket().map_err(|e| io_err(&name, "socket", e))?;
        let mut ifr = IfReq::new(&name)?;
        f(s.as_raw_fd(), &mut ifr).map_err(|e| match e.raw_os_error() {
            Some(libc::ENODEV) | Some(libc::ENXIO) => NetdevError::NotFound(name.clone()),
            _ => io_err(&name, op, e),
        })
    }

    fn set_flag(&self, flag: i32, on: bool, op: &'static str) -> Result<()> {
        self.with_ifr(op, |fd, ifr| {
            ioctl_ifreq(fd, libc::SIOCGIFFLAGS, ifr)?;
            let cur = ifr.get_i32() & 0xffff;
            let new = if on { cur | flag } else { cur & !flag };
            if new != cur {
                ifr.set_i32(new);
                ioctl_ifreq(fd, libc::SIOCSIFFLAGS, ifr)?;
            }
            Ok(())
        })
    }

    /// IFF_UP on or off.
    pub fn set_up(&self, up: bool) -> Result<()> {
        self.set_flag(libc::IFF_UP, up, "set up")
    }

    /// IFF_PROMISC on or off.
    pub fn set_promiscuous(&self, on: bool) -> Result<()> {
        self.set_flag(libc::IFF_PROMISC, on, "set promiscuous")
    }

    /// IFF_ALLMULTI on or off.
    pub fn set_allmulticast(&self, on: bool) -> Result<()> {
        self.set_flag(libc::IFF_ALLMULTI, on, "set allmulticast")
    }

    /// Sets the MTU.
    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        let mtu = i32::try_from(mtu).map_err(|_| NetdevError::Invalid(format!("mtu {mtu}")))?;
        self.with_ifr("set mtu", |fd, ifr| {
            ifr.set_i32(mtu);
            ioctl_ifreq(fd, libc::SIOCSIFMTU, ifr)
        })
    }

    /// Makes the multicast addresses this handle added equal `list` (adds the new, removes the ones not listed).
    pub fn set_multicast_list(&self, list: &[Mac]) -> Result<()> {
        let mut cur = self.mcast.lock().unwrap_or_else(|p| p.into_inner());
        let mcast_op = |req: libc::c_ulong, op: &'static str, m: &Mac| {
            self.with_ifr(op, |fd, ifr| {
                // ifr_hwaddr: struct sockaddr { sa_family_t (u16) = AF_UNSPEC; sa_data[14] }
                ifr.data = [0; 24];
                ifr.data[2..8].copy_from_slice(m);
                ioctl_ifreq(fd, req, ifr)
            })
        };
        for m in cur.clone().iter().filter(|m| !list.contains(m)) {
            match mcast_op(libc::SIOCDELMULTI, "SIOCDELMULTI", m) {
                Ok(()) | Err(NetdevError::Io { .. }) => cur.retain(|x| x != m),
                Err(e) => return Err(e),
            }
        }
        for m in list {
            if !cur.contains(m) {
                mcast_op(libc::SIOCADDMULTI, "SIOCADDMULTI", m)?;
                cur.push(*m);
            }
        }
        Ok(())
    }

    /// The kernel counters (IFLA_STATS64 over rtnetlink, so the calling thread's network namespace is used).
    pub fn kernel_stats(&self) -> Result<KernelStats> {
        let mut m = LinkMessage::default();
        m.header.index = self.ifindex;
        let r = nl::request(RouteNetlinkMessage::GetLink(m), 0)?;
        for msg in r {
            if let RouteNetlinkMessage::NewLink(l) = msg {
                for a in l.attributes {
                    if let LinkAttribute::Stats64(s) = a {
                        return Ok(KernelStats {
                            rx_packets: s.rx_packets,
                            tx_packets: s.tx_packets,
                            rx_bytes: s.rx_bytes,
                            tx_bytes: s.tx_bytes,
                            rx_dropped: s.rx_dropped,
                            tx_dropped: s.tx_dropped,
                            rx_errors: s.rx_errors,
                            tx_errors: s.tx_errors,
                        });
                    }
                }
            }
        }
        Err(NetdevError::Netlink(format!(
            "link #{}: no IFLA_STATS64",
            self.ifindex
        )))
    }
}

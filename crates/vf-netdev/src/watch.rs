//! Link watcher: an rtnetlink socket joined to RTNLGRP_LINK, non-blocking.
//!
//! RTM_NEWLINK for an ifindex not seen before is [`LinkChange::Added`], for a known one [`LinkChange::Changed`]
//! (up/running from the header flags, the name from IFLA_IFNAME, so a rename shows up as a Changed with the new
//! name); RTM_DELLINK is [`LinkChange::Removed`]. The links present when the watcher is created are known from an
//! initial dump. If the socket overruns (ENOBUFS), the watcher re-dumps and reports the difference.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use netlink_packet_core::{NLM_F_DUMP, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::{NetdevError, Result, nl};

/// One link event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkChange {
    /// A link appeared.
    Added { ifindex: u32, name: String },
    /// A known link changed (flags, carrier, name, ...).
    Changed {
        ifindex: u32,
        name: String,
        up: bool,
        running: bool,
    },
    /// A link went away.
    Removed { ifindex: u32, name: String },
}

/// Watches link additions, changes and removals in the calling thread's network namespace.
pub struct LinkWatcher {
    sock: Socket,
    known: HashMap<u32, String>,
    pending: VecDeque<LinkChange>,
    buf: Vec<u8>,
}

const RTMGRP_LINK: u32 = 1;

fn link_name(l: &LinkMessage) -> String {
    l.attributes
        .iter()
        .find_map(|a| {
            if let LinkAttribute::IfName(n) = a {
                Some(n.clone())
            } else {
                None
            }
        })
        .unwrap_or_default()
}

fn dump_links() -> Result<HashMap<u32, String>> {
    let r = nl::request(
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        NLM_F_DUMP,
    )?;
    Ok(r.into_iter()
        .filter_map(|m| {
            if let RouteNetlinkMessage::NewLink(l) = m {
                Some((l.header.index, link_name(&l)))
            } else {
                None
            }
        })
        .collect())
}

impl LinkWatcher {
    /// Joins RTNLGRP_LINK and records the links present now.
    pub fn new() -> Result<LinkWatcher> {
        let nerr = |w: &str, e: std::io::Error| NetdevError::Netlink(format!("{w}: {e}"));
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| nerr("socket", e))?;
        sock.bind(&SocketAddr::new(0, RTMGRP_LINK))
            .map_err(|e| nerr("bind", e))?;
        sock.set_non_blocking(true)
            .map_err(|e| nerr("nonblock", e))?;
        let _ = sock.set_rx_buf_sz(1 << 20);
        let known = dump_links()?;
        Ok(LinkWatcher {
            sock,
            known,
            pending: VecDeque::new(),
            buf: vec![0u8; 1 << 16],
        })
    }

    /// The socket, for poll(2).
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn resync(&mut self) -> Result<()> {
        let now = dump_links()?;
        for (i, n) in &self.known {
            if !now.contains_key(i) {
                self.pending.push_back(LinkChange::Removed {
                    ifindex: *i,
                    name: n.clone(),
                });
            }
        }
        for (i, n) in &now {
            if !self.known.contains_key(i) {
                self.pending.push_back(LinkChange::Added {
                    ifindex: *i,
                    name: n.clone(),
                });
            }
        }
        self.known = now;
        Ok(())
    }

    fn read_socket(&mut self) -> Result<()> {
        loop {
            let n = {
                let mut slice = &mut self.buf[..];
                match self.sock.recv(&mut slice, libc::MSG_DONTWAIT) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        self.resync()?;
                        continue;
                    }
                    Err(e) => return Err(NetdevError::Netlink(format!("recv: {e}"))),
                }
            };
            let n = n.min(self.buf.len());
            let (known, pending) = (&mut self.known, &mut self.pending);
            nl::parse_all(&self.buf[..n], |m| {
                let NetlinkPayload::InnerMessage(msg) = m.payload else {
                    return;
                };
                match msg {
                    RouteNetlinkMessage::NewLink(l) => {
                        let ifindex = l.header.index;
                        let name = link_name(&l);
                        if known.insert(ifindex, name.clone()).is_none() {
                            pending.push_back(LinkChange::Added { ifindex, name });
                        } else {
                            let up = l.header.flags.contains(LinkFlags::Up);
                            let running = l.header.flags.contains(LinkFlags::Running);
                            pending.push_back(LinkChange::Changed {
                                ifindex,
                                name,
                                up,
                                running,
                            });
                        }
                    }
                    RouteNetlinkMessage::DelLink(l) => {
                        let ifindex = l.header.index;
                        let name = known.remove(&ifindex).unwrap_or_else(|| link_name(&l));
                        pending.push_back(LinkChange::Removed { ifindex, name });
                    }
                    _ => {}
                }
            })?;
        }
    }

    /// Non-blocking: everything pending, up to `out`'s spare capacity (no allocation when `out` has room; when
    /// `out` has no spare capacity at all, everything pending is appended). Returns how many were appended.
    pub fn poll(&mut self, out: &mut Vec<LinkChange>) -> Result<usize> {
        self.read_socket()?;
        let room = match out.capacity() - out.len() {
            0 => usize::MAX,
            r => r,
        };
        let mut n = 0;
        while n < room {
            let Some(c) = self.pending.pop_front() else {
                break;
            };
            out.push(c);
            n += 1;
        }
        Ok(n)
    }

    /// Blocks up to `timeout` for at least one change.
    pub fn wait(&mut self, out: &mut Vec<LinkChange>, timeout: Duration) -> Result<usize> {
        let end = Instant::now() + timeout;
        loop {
            let n = self.poll(out)?;
            let left = end.saturating_duration_since(Instant::now());
            if n > 0 || left.is_zero() {
                return Ok(n);
            }
            let mut pfd = libc::pollfd {
                fd: self.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut pfd, 1, ms) };
        }
    }
}

//! Liveness of a queue's netdev: a cheap periodic check so a deleted netdev turns into an error promptly. With
//! `fail_when_stopped`, every millisecond of bursts, one SIOCGIFFLAGS: the kernel clears IFF_RUNNING the moment it starts closing a netdev
//! (netlink tells only once the close is done, milliseconds to seconds later), so a netdev that was running and
//! stops running, or vanishes, fails its queues at once; the slower counters are refreshed every 5 ms.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::sys::{IfReq, ctl_socket, errno_is_gone, index_to_name_fd, ioctl_ifreq};
use crate::{NetdevError, Result, io_err};

const CHECK_EVERY: Duration = Duration::from_millis(5);
const PROBE_EVERY: Duration = Duration::from_millis(1);

pub(crate) struct Health {
    ctl: OwnedFd,
    pub ifindex: u32,
    pub name: String,
    next: Instant,
    probe_next: Instant,
    /// Not running after having run is fatal (else only a vanished netdev is).
    fail_when_stopped: bool,
    /// The netdev was seen running.
    was_running: bool,
    dead: Option<i32>,
}

impl Health {
    pub fn new(ifindex: u32, name: &str, fail_when_stopped: bool) -> Result<Health> {
        let ctl = ctl_socket().map_err(|e| io_err(name, "socket", e))?;
        Ok(Health {
            ctl,
            ifindex,
            name: name.to_string(),
            next: Instant::now() + CHECK_EVERY,
            probe_next: Instant::now(),
            fail_when_stopped,
            was_running: false,
            dead: None,
        })
    }

    /// Err once the netdev is known gone.
    pub fn dead_err(&self) -> Result<()> {
        match self.dead {
            None => Ok(()),
            Some(e) => Err(io_err(
                &self.name,
                if e == libc::ENETDOWN {
                    "netdev stopped running"
                } else {
                    "netdev gone"
                },
                std::io::Error::from_raw_os_error(e),
            )),
        }
    }

    /// Whether the netdev (by ifindex) still exists; marks the queue dead if not.
    pub fn probe(&mut self) -> Result<()> {
        self.dead_err()?;
        match index_to_name_fd(self.ctl.as_raw_fd(), self.ifindex) {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENODEV) | Some(libc::ENXIO)) => {
                self.dead = Some(libc::ENODEV);
                self.dead_err()
            }
            Err(_) => Ok(()),
        }
    }

    /// Call once per burst: the liveness probe when due (Err once the netdev stopped running or vanished);
    /// Ok(true) when the periodic counters check is due (then call `probe` and any stats refresh).
    pub fn tick(&mut self) -> Result<bool> {
        self.dead_err()?;
        let now = Instant::now();
        if self.fail_when_stopped && now >= self.probe_next {
            self.probe_next = now + PROBE_EVERY;
            self.running()?;
        }
        if now >= self.next {
            self.next = now + CHECK_EVERY;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// One SIOCGIFFLAGS by name; a name the kernel no longer knows is looked up again by index (renamed: go on
    /// with the new name; gone: dead).
    fn running(&mut self) -> Result<()> {
        let Ok(mut ifr) = IfReq::new(&self.name) else {
            return self.probe();
        };
        match ioctl_ifreq(self.ctl.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) {
            Ok(()) => {
                let flags = ifr.get_i32() & 0xffff;
                let running = flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0;
                if running {
                    self.was_running = true;
                } else if self.was_running {
                    self.dead = Some(libc::ENETDOWN);
                }
                self.dead_err()
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENODEV) | Some(libc::ENXIO)) => {
                self.probe()?;
                if let Ok(name) = index_to_name_fd(self.ctl.as_raw_fd(), self.ifindex) {
                    self.name = name;
                }
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }

    /// Maps a socket error: a netdev-gone errno with the netdev really gone is fatal; otherwise transient.
    pub fn on_error(&mut self, e: &std::io::Error) -> Result<()> {
        if errno_is_gone(e) {
            self.probe()?;
            if e.raw_os_error() == Some(libc::EBADF) {
                return Err(NetdevError::Invalid(format!("{}: bad socket", self.name)));
            }
        }
        Ok(())
    }
}

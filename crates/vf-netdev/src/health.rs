//! Liveness of a queue's netdev: a cheap periodic check so a deleted netdev turns into an error promptly.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::sys::{ctl_socket, errno_is_gone, index_to_name_fd};
use crate::{NetdevError, Result, io_err};

const CHECK_EVERY: Duration = Duration::from_millis(5);

pub(crate) struct Health {
    ctl: OwnedFd,
    pub ifindex: u32,
    pub name: String,
    next: Instant,
    dead: Option<i32>,
}

impl Health {
    pub fn new(ifindex: u32, name: &str) -> Result<Health> {
        let ctl = ctl_socket().map_err(|e| io_err(name, "socket", e))?;
        Ok(Health {
            ctl,
            ifindex,
            name: name.to_string(),
            next: Instant::now() + CHECK_EVERY,
            dead: None,
        })
    }

    /// Err once the netdev is known gone.
    pub fn dead_err(&self) -> Result<()> {
        match self.dead {
            None => Ok(()),
            Some(e) => Err(io_err(
                &self.name,
                "netdev gone",
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

    /// True when a periodic check is due (then call `probe` and any stats refresh).
    pub fn due(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.next {
            self.next = now + CHECK_EVERY;
            true
        } else {
            false
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

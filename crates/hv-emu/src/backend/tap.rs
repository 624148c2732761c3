//! The TAP backend: a Linux TAP interface opened through `/dev/net/tun` (TUNSETIFF with
//! IFF_TAP | IFF_NO_PI, non-blocking). Needs CAP_NET_ADMIN; callers report a skip otherwise.

use super::Backend;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::time::Instant;

// TUNSETIFF is `_IOW('T', 202, int)` in <linux/if_tun.h>; nix computes the request number and wraps the call
// (errno to an error); read-write, as the kernel writes the chosen name back. The flags come from libc.
nix::ioctl_readwrite_bad!(
    tun_set_iff,
    nix::request_code_write!(b'T', 202, std::mem::size_of::<libc::c_int>()),
    IfReq
);

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (`ifr_flags`) at the start of the 24-byte union.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const _: () = assert!(std::mem::size_of::<IfReq>() == 40);

/// A TAP interface.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    buf: Vec<u8>,
    tx_errors: u64,
    tx: u64,
    rx: u64,
}

impl Tap {
    /// Open (or create) the TAP interface `name`.
    pub fn open(name: &str) -> std::io::Result<Self> {
        if name.is_empty() || name.len() >= 16 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "interface name must be 1..15 bytes",
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")?;
        let mut req = IfReq {
            name: [0; 16],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes back a `struct ifreq`, which `IfReq` lays out (40 bytes, checked below),
        // on a file descriptor we own for the duration of the call.
        unsafe { tun_set_iff(file.as_raw_fd(), &mut req) }?;
        Ok(Tap {
            file,
            name: name.to_string(),
            buf: vec![0; 65536],
            tx_errors: 0,
            tx: 0,
            rx: 0,
        })
    }
}

impl Backend for Tap {
    fn name(&self) -> &'static str {
        "tap"
    }
    fn transmit(&mut self, frame: &[u8]) {
        match self.file.write(frame) {
            Ok(n) if n == frame.len() => self.tx += 1,
            _ => self.tx_errors += 1,
        }
    }
    fn receive(&mut self, _now: Instant, budget: usize, deliver: &mut dyn FnMut(&[u8])) -> usize {
        let mut n = 0;
        while n < budget {
            match self.file.read(&mut self.buf) {
                Ok(len) if len > 0 => {
                    deliver(&self.buf[..len]);
                    n += 1;
                }
                _ => break,
            }
        }
        self.rx += n as u64;
        n
    }
    fn tx_errors(&self) -> u64 {
        self.tx_errors
    }
    fn produced(&self) -> u64 {
        self.rx
    }
    fn stats(&self) -> serde_json::Value {
        serde_json::json!({ "kind": "tap", "name": self.name, "tx": self.tx, "rx": self.rx, "txErrors": self.tx_errors })
    }
}

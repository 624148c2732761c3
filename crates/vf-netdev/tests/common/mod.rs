//! Shared helpers for the root-only integration tests: SKIP reporting, a private network namespace per test,
//! veth pairs and a plain AF_PACKET peer socket.
#![allow(dead_code, unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use vf_netdev::{Mac, Netdev, VethSpec, create_veth, disable_ipv6};

/// Prints a visible SKIP line (straight to the stderr fd, so the test harness does not capture it).
pub fn skip(why: &str) {
    std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("SKIP: {why}\n")).ok();
}

/// Moves the calling thread into a fresh network namespace with `lo` up. Returns false (after printing SKIP)
/// when not root or unshare fails.
pub fn enter_netns() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("not root");
        return false;
    }
    // SAFETY: unshare affects only the calling thread's namespace membership.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        skip(&format!(
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        ));
        return false;
    }
    // sysfs shows the network namespace of whoever mounted it: give this thread its own mount namespace and a
    // fresh sysfs so /sys/class/net matches the new network namespace (best effort; see `sysfs_ok`).
    // SAFETY: unshare/mount affect only this thread's (new) mount namespace.
    unsafe {
        let ok = libc::unshare(libc::CLONE_NEWNS) == 0
            && libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) == 0
            && libc::mount(
                c"sysfs".as_ptr(),
                c"/sys".as_ptr(),
                c"sysfs".as_ptr(),
                0,
                std::ptr::null(),
            ) == 0;
        SYSFS_OK.with(|c| c.set(ok));
    }
    if let Some(i) = vf_netdev::by_name("lo").ok().map(|i| i.ifindex) {
        let _ = Netdev::open(i).and_then(|n| n.set_up(true));
    }
    true
}

thread_local! { static SYSFS_OK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) }; }

/// Whether /sys shows this thread's network namespace.
pub fn sysfs_ok() -> bool {
    SYSFS_OK.with(|c| c.get())
}

pub struct Pair {
    pub a: u32,
    pub b: u32,
    pub a_name: String,
    pub b_name: String,
}

pub fn mac(last: u8) -> Mac {
    [0x02, 0, 0, 0, 0x10, last]
}

/// A veth pair `a`/`b` with `queues` queues, both up, IPv6 off.
pub fn veth(a: &str, b: &str, queues: u32) -> Pair {
    let (ai, bi) = create_veth(&VethSpec {
        guest: a,
        host: b,
        guest_mac: Some(mac(1)),
        host_mac: Some(mac(2)),
        queues,
        guest_netns_fd: None,
    })
    .expect("create_veth");
    disable_ipv6(a).unwrap();
    disable_ipv6(b).unwrap();
    Netdev::open(ai).unwrap().set_up(true).unwrap();
    Netdev::open(bi).unwrap().set_up(true).unwrap();
    wait_running(a);
    wait_running(b);
    Pair {
        a: ai,
        b: bi,
        a_name: a.into(),
        b_name: b.into(),
    }
}

pub fn wait_running(name: &str) {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if vf_netdev::by_name(name).map(|i| i.running).unwrap_or(false) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("{name} not running");
}

/// A plain AF_PACKET socket bound to one netdev (the "other side").
pub struct Raw {
    pub fd: OwnedFd,
}

impl Raw {
    pub fn open(ifindex: u32) -> Raw {
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                0x0003u16.to_be() as i32,
            )
        };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: fresh fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: zeroed sockaddr_ll is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = 0x0003u16.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: valid address and length.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
        let one = 1i32;
        // SAFETY: int option; ignore outgoing so we only see what arrives.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                23,
                (&one as *const i32).cast(),
                4,
            )
        };
        let big = 8 << 20;
        // SAFETY: int option.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&big as *const i32).cast(),
                4,
            )
        };
        // SAFETY: int option.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                (&big as *const i32).cast(),
                4,
            )
        };
        Raw { fd }
    }

    /// Sends one frame, retrying while the queue is full.
    pub fn send(&self, frame: &[u8]) {
        loop {
            // SAFETY: frame is readable for its length.
            let r =
                unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if r >= 0 {
                assert_eq!(r as usize, frame.len());
                return;
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOBUFS) || e.raw_os_error() == Some(libc::EAGAIN) {
                std::thread::sleep(Duration::from_micros(50));
                continue;
            }
            panic!("send: {e}");
        }
    }

    /// Receives one frame within `timeout`.
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> Option<usize> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        if r <= 0 {
            return None;
        }
        // SAFETY: buf writable.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        (n >= 0).then_some(n as usize)
    }
}

/// A test frame: dst/src MAC, an experimental ethertype 0x88b5, a sequence number, then a pattern.
pub fn test_frame(seq: u32, len: usize, dst: Mac, src: Mac) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (seq as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
    f
}

pub fn frame_len(seq: u32) -> usize {
    60 + (seq as usize * 7919) % (1514 - 60 + 1)
}

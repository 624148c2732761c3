//! Small syscall helpers: interface name/index, ifreq ioctls, ethtool, socket options.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::{NetdevError, Result, io_err};

/// `struct ifreq`: 16-byte name plus a 24-byte union (x86_64/aarch64 layout).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct IfReq {
    pub name: [u8; 16],
    pub data: [u8; 24],
}

impl IfReq {
    pub fn new(name: &str) -> Result<IfReq> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() >= 16 || b.contains(&0) {
            return Err(NetdevError::Invalid(format!("bad interface name {name:?}")));
        }
        let mut r = IfReq {
            name: [0; 16],
            data: [0; 24],
        };
        r.name[..b.len()].copy_from_slice(b);
        Ok(r)
    }
    pub fn set_i32(&mut self, v: i32) {
        self.data[..4].copy_from_slice(&v.to_ne_bytes());
    }
    pub fn get_i32(&self) -> i32 {
        i32::from_ne_bytes([self.data[0], self.data[1], self.data[2], self.data[3]])
    }
    pub fn set_ptr(&mut self, p: *mut libc::c_void) {
        let v = p as usize;
        self.data[..size_of::<usize>()].copy_from_slice(&v.to_ne_bytes());
    }
}

pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub(crate) fn socket(
    domain: libc::c_int,
    ty: libc::c_int,
    proto: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the returned fd (if any) is owned by us alone.
    let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An AF_INET datagram socket for interface ioctls (in the calling thread's network namespace).
pub(crate) fn ctl_socket() -> io::Result<OwnedFd> {
    socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
}

pub(crate) fn ioctl_ifreq(fd: RawFd, req: libc::c_ulong, ifr: &mut IfReq) -> io::Result<()> {
    // SAFETY: every ifreq ioctl used here reads/writes at most the 40-byte IfReq we pass (or the buffer its
    // data pointer names, which the caller keeps alive for the call).
    cvt(unsafe { libc::ioctl(fd, req as _, ifr as *mut IfReq) })?;
    Ok(())
}

pub(crate) fn name_to_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Current name of `ifindex` using `fd` (any socket that accepts SIOCGIFNAME).
pub(crate) fn index_to_name_fd(fd: RawFd, ifindex: u32) -> io::Result<String> {
    let mut ifr = IfReq {
        name: [0; 16],
        data: [0; 24],
    };
    ifr.set_i32(ifindex as i32);
    ioctl_ifreq(fd, libc::SIOCGIFNAME, &mut ifr)?;
    let n = ifr.name.iter().position(|&b| b == 0).unwrap_or(16);
    Ok(String::from_utf8_lossy(&ifr.name[..n]).into_owned())
}

pub(crate) fn index_to_name(ifindex: u32) -> Result<String> {
    let s = ctl_socket().map_err(|e| io_err(format!("#{ifindex}"), "socket", e))?;
    index_to_name_fd(s.as_raw_fd(), ifindex).map_err(|e| match e.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::ENXIO) => NetdevError::NotFound(format!("#{ifindex}")),
        _ => io_err(format!("#{ifindex}"), "SIOCGIFNAME", e),
    })
}

/// SIOCETHTOOL with `buf` as the command structure (first u32 = command).
pub(crate) fn ethtool(name: &str, buf: &mut [u8]) -> io::Result<()> {
    let s = ctl_socket()?;
    let mut ifr =
        IfReq::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    ifr.set_ptr(buf.as_mut_ptr().cast());
    ioctl_ifreq(s.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr)
}

pub(crate) fn setsockopt<T>(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: &T,
) -> io::Result<()> {
    // SAFETY: v points to size_of::<T>() readable bytes for the duration of the call.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

#[allow(dead_code)]
pub(crate) fn getsockopt<T: Copy>(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: &mut T,
) -> io::Result<usize> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: v points to size_of::<T>() writable bytes; len tells the kernel so; T is plain data (Copy).
    cvt(unsafe { libc::getsockopt(fd, level, opt, (v as *mut T).cast(), &mut len) })?;
    Ok(len as usize)
}

pub(crate) fn errno_is_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENXIO) | Some(libc::ENODEV) | Some(libc::ENETDOWN) | Some(libc::EBADF)
    )
}

/// An owned shared mapping (munmapped on drop).
pub(crate) struct Mmap {
    pub ptr: *mut u8,
    pub len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; concurrent access is governed by the ring protocols.
unsafe impl Send for Mmap {}

impl Mmap {
    /// mmap(2) of `len` bytes of `fd` at `offset` (MAP_SHARED), or anonymous memory when `fd` is None.
    pub fn map(fd: Option<RawFd>, len: usize, offset: i64, populate: bool) -> io::Result<Mmap> {
        let mut flags = libc::MAP_SHARED;
        if fd.is_none() {
            flags |= libc::MAP_ANONYMOUS;
        }
        if populate {
            flags |= libc::MAP_POPULATE;
        }
        // SAFETY: a fresh mapping chosen by the kernel; nothing else is at that address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd.unwrap_or(-1),
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap { ptr: p.cast(), len })
    }

    pub fn mem(&self) -> crate::ring::Mem {
        // SAFETY: the mapping is page aligned and lives as long as self; users keep self alive (same struct).
        unsafe { crate::ring::Mem::new(self.ptr, self.len) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from a successful mmap and are unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

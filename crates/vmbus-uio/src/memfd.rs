//! Sealed shared memory: memory shared with another process must not be shrinkable by that process, or a
//! `ftruncate` there turns our next access into SIGBUS. A `memfd` sealed with `F_SEAL_SHRINK | F_SEAL_GROW |
//! F_SEAL_SEAL` keeps its size for its whole life, whoever opens it (`/proc/<pid>/fd/N`,
//! `/proc/<pid>/map_files/...`): `ftruncate` fails with `EPERM`. The emulator's tree backs every uio map and
//! subchannel ring with one (the map files are symlinks to the emulator's fds), the guest refuses to map an emulated
//! file that is not sealed against shrinking ([`require_sealed`]), and DMA memory is one too.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use crate::error::UioError;

/// The seals every shared region carries.
pub const SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// A new memfd of `len` bytes (zero filled, close-on-exec), sealed with [`SEALS`]. `name` shows in
/// `/proc/<pid>/maps` as `/memfd:<name>`.
pub fn sealed(name: &str, len: u64) -> Result<File, UioError> {
    let what = Path::new("memfd");
    let cname = CString::new(name.replace('\0', "?"))
        .map_err(|_| UioError::Invalid(format!("memfd name {name:?}")))?;
    // SAFETY: memfd_create reads the NUL-terminated name for the duration of the call; the result is checked.
    let fd =
        unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(UioError::sys("memfd_create", what));
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns; the File closes it.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(len)
        .map_err(|e| UioError::io(format!("memfd:{name}"), e))?;
    // SAFETY: F_ADD_SEALS takes an int argument; the fd is ours.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } != 0 {
        return Err(UioError::sys("fcntl(F_ADD_SEALS)", what));
    }
    Ok(file)
}

/// The seals of `file` (`F_GET_SEALS`), or -1 when it cannot carry seals (not a memfd/tmpfs file).
pub fn seals(file: &File) -> libc::c_int {
    // SAFETY: F_GET_SEALS takes no argument; the fd is ours.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) }
}

/// Refuse (with [`UioError::NotSealed`]) a file that a peer could shrink under our mapping.
pub fn require_sealed(file: &File, path: &Path) -> Result<(), UioError> {
    let s = seals(file);
    if s < 0 || s & libc::F_SEAL_SHRINK == 0 {
        return Err(UioError::NotSealed {
            path: path.to_owned(),
            seals: s,
        });
    }
    Ok(())
}

/// The path another process opens to reach `file`: `/proc/<our pid>/fd/<fd>`.
pub fn proc_path(file: &File) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        file.as_raw_fd()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_memfd_cannot_change_size_through_any_path() {
        let f = sealed("test", 8192).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 8192);
        assert_eq!(seals(&f), SEALS);
        let e = f.set_len(0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        assert_eq!(
            f.set_len(1 << 20).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        // Another open file description (what a peer gets through /proc) is bound by the same seals.
        let other = File::options().write(true).open(proc_path(&f)).unwrap();
        assert_eq!(
            other.set_len(4096).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        require_sealed(&other, Path::new("x")).unwrap();
    }

    #[test]
    fn an_ordinary_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("map0");
        std::fs::write(&p, [0u8; 4096]).unwrap();
        let f = File::open(&p).unwrap();
        match require_sealed(&f, &p) {
            Err(UioError::NotSealed { seals, .. }) => {
                assert!(seals < 0 || seals & libc::F_SEAL_SHRINK == 0)
            }
            other => panic!("{other:?}"),
        }
    }
}

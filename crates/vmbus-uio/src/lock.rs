//! One owner per device across processes: an open-file-description lock (`F_OFD_SETLK`, whole file, exclusive)
//! on a lock file that holds the owner's pid. The kernel drops the lock when the owner's file description closes —
//! including when the process dies, however it dies — so a crashed owner never blocks the next one; a stale pid
//! left in the file is simply overwritten. Observers that only read counters never take it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::UioError;

/// The lock file of device `uuid` below `root`: `root/run/netvsc/<uuid>.lock` (`/run/netvsc/...` on a real
/// guest, inside the emulator's directory otherwise).
pub fn device_lock_path(root: &Path, uuid: &str) -> PathBuf {
    root.join("run/netvsc").join(format!("{uuid}.lock"))
}

/// A held owner lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct OwnerLock {
    file: File,
    path: PathBuf,
}

fn flock(kind: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        // Must be 0 for OFD locks.
        l_pid: 0,
    }
}

/// The pid the holder wrote, waiting briefly for a holder that has locked but not yet written it; 0 if none
/// appears (the lock is still held, only its pid is unknown).
fn holder_pid(file: &File) -> u32 {
    let until = Instant::now() + Duration::from_millis(200);
    loop {
        let mut buf = [0u8; 16];
        let n = file.read_at(&mut buf, 0).unwrap_or(0);
        let text = std::str::from_utf8(&buf[..n]).unwrap_or("");
        if let Some(pid) = text.strip_suffix('\n').and_then(|t| t.parse::<u32>().ok()) {
            return pid;
        }
        if Instant::now() >= until {
            return 0;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn open(path: &Path) -> Result<File, UioError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| UioError::io(dir, e))?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map_err(|e| UioError::io(path, e))
}

impl OwnerLock {
    /// Take the lock at `path` (created, with its directory, if missing) and write this process's pid into it.
    /// Held by a live process → [`UioError::Busy`] naming that process's pid.
    pub fn acquire(path: &Path) -> Result<OwnerLock, UioError> {
        let file = open(path)?;
        let fl = flock(libc::F_WRLCK);
        // SAFETY: fcntl reads the flock struct we pass by reference for the duration of the call; the fd is ours.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
        if r != 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EACCES) => UioError::Busy {
                    path: path.to_owned(),
                    pid: holder_pid(&file),
                },
                _ => UioError::Sys {
                    call: "fcntl(F_OFD_SETLK)",
                    path: path.to_owned(),
                    source: e,
                },
            });
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.write_all_at(pid.as_bytes(), 0))
            .map_err(|e| UioError::io(path, e))?;
        Ok(OwnerLock {
            file,
            path: path.to_owned(),
        })
    }

    /// Who holds the lock at `path`, without taking it: `Some(pid)` (0 = unknown) or `None` when free or absent.
    pub fn holder(path: &Path) -> Result<Option<u32>, UioError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(UioError::io(path, e)),
        };
        // A write lock would conflict with any holder; F_OFD_GETLK reports it (for a read-only fd too).
        let mut fl = flock(libc::F_WRLCK);
        // SAFETY: fcntl fills the flock struct we pass by mutable reference; the fd is ours.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
        if r != 0 {
            return Err(UioError::sys("fcntl(F_OFD_GETLK)", path));
        }
        Ok((fl.l_type != libc::F_UNLCK as libc::c_short).then(|| holder_pid(&file)))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OwnerLock {
    fn drop(&mut self) {
        // Leave no pid behind for observers; the lock itself goes with the file description.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_description_is_refused_with_the_pid_then_free_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = device_lock_path(dir.path(), "u");
        assert_eq!(OwnerLock::holder(&path).unwrap(), None);
        let held = OwnerLock::acquire(&path).unwrap();
        let me = std::process::id();
        assert_eq!(OwnerLock::holder(&path).unwrap(), Some(me));
        match OwnerLock::acquire(&path) {
            Err(UioError::Busy { pid, .. }) => assert_eq!(pid, me),
            other => panic!("{other:?}"),
        }
        drop(held);
        assert_eq!(OwnerLock::holder(&path).unwrap(), None);
        let again = OwnerLock::acquire(&path).unwrap();
        assert_eq!(again.path(), path);
    }

    #[test]
    fn a_stale_pid_without_a_lock_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        std::fs::write(&path, "999999\n").unwrap();
        assert_eq!(OwnerLock::holder(&path).unwrap(), None);
        let _held = OwnerLock::acquire(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
    }
}

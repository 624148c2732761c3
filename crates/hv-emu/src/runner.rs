//! Runs an unmodified guest program (e.g. `dpdk-testpmd`) against an emulated tree: the child gets a private mount
//! namespace in which `D/sys/bus/vmbus` is bind-mounted at `/sys/bus/vmbus` (over a fresh tmpfs on `/sys/bus`) and
//! `D/sys/class/uio` at `/sys/class/uio`, plus `LD_PRELOAD` of the uio interposer and `HV_EMU_DIR=D`. Needs root.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::interposer;

/// Why a guest could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// Installing the interposer into the tree failed.
    #[error("cannot install the uio interposer under {dir}: {source}")]
    Install {
        /// The tree root.
        dir: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The tree root cannot be resolved.
    #[error("cannot resolve the tree root {dir}: {source}")]
    Tree {
        /// The tree root.
        dir: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A path contained a NUL byte.
    #[error("path {0} contains a NUL byte")]
    BadPath(PathBuf),
    /// fork/exec (or the namespace set-up in the child) failed.
    #[error("cannot start guest {program:?} (namespace set-up or exec): {source}")]
    Spawn {
        /// The program.
        program: OsString,
        /// The OS error.
        source: io::Error,
    },
}

/// Whether this process can run guests (root, and mount namespaces usable); `Err` says why not.
pub fn can_run_guests() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "not running as root (a private mount namespace with bind mounts needs CAP_SYS_ADMIN)"
                .into(),
        );
    }
    let mut cmd = Command::new("/bin/true");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let probe = MountPlan::probe();
    // SAFETY: the closure only makes async-signal-safe syscalls on strings allocated before the fork.
    unsafe {
        cmd.pre_exec(move || probe.apply());
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("probe child exited with {s}")),
        Err(e) => Err(format!(
            "cannot unshare a mount namespace and mount a tmpfs on /sys/bus: {e}"
        )),
    }
}

/// A guest program to run against the tree rooted at D.
#[derive(Debug)]
pub struct GuestCommand {
    dir: PathBuf,
    cmd: Command,
    program: OsString,
}

impl GuestCommand {
    /// `argv[0]` is the program (looked up in PATH), the rest its arguments.
    pub fn new<S: AsRef<OsStr>>(dir: &Path, argv: &[S]) -> Self {
        let program = argv
            .first()
            .map(|s| s.as_ref().to_owned())
            .unwrap_or_default();
        let mut cmd = Command::new(&program);
        cmd.args(argv.iter().skip(1));
        Self {
            dir: dir.to_owned(),
            cmd,
            program,
        }
    }

    /// Set an environment variable for the guest.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.cmd.env(key, value);
        self
    }

    /// Configure stdin/stdout/stderr or anything else on the underlying command.
    pub fn command_mut(&mut self) -> &mut Command {
        &mut self.cmd
    }

    /// Install the interposer, then fork/exec the guest inside its private mount namespace.
    pub fn spawn(&mut self) -> Result<Child, RunnerError> {
        let so = interposer::install(&self.dir).map_err(|source| RunnerError::Install {
            dir: self.dir.clone(),
            source,
        })?;
        let plan = MountPlan::for_tree(&self.dir)?;
        let preload = match std::env::var_os("LD_PRELOAD") {
            Some(old) if !old.is_empty() => {
                let mut v = so.clone().into_os_string();
                v.push(":");
                v.push(old);
                v
            }
            _ => so.into_os_string(),
        };
        self.cmd
            .env("LD_PRELOAD", preload)
            .env(interposer::ENV_DIR, &self.dir);
        // SAFETY: the closure only makes async-signal-safe syscalls (unshare, mount, mkdir) on strings allocated
        // before the fork, and allocates nothing.
        unsafe {
            self.cmd.pre_exec(move || plan.apply());
        }
        self.cmd.spawn().map_err(|source| RunnerError::Spawn {
            program: self.program.clone(),
            source,
        })
    }
}

/// The mounts to make in the child, with every string prepared before fork.
struct MountPlan {
    root: CString,
    sys_bus: CString,
    sys_bus_vmbus: CString,
    sys_class: CString,
    sys_class_uio: CString,
    tmpfs: CString,
    tmpfs_opts: CString,
    /// Bind sources; `None` for the probe (namespace + tmpfs only).
    vmbus_src: Option<CString>,
    uio_src: Option<CString>,
    /// `/sys/class/uio` is missing on the host (uio not loaded): cover `/sys/class` with a tmpfs too.
    class_tmpfs: bool,
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("literal without NUL")
}

fn cpath(p: &Path) -> Result<CString, RunnerError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| RunnerError::BadPath(p.to_owned()))
}

impl MountPlan {
    fn probe() -> Self {
        Self {
            root: cstr("/"),
            sys_bus: cstr("/sys/bus"),
            sys_bus_vmbus: cstr("/sys/bus/vmbus"),
            sys_class: cstr("/sys/class"),
            sys_class_uio: cstr("/sys/class/uio"),
            tmpfs: cstr("tmpfs"),
            tmpfs_opts: cstr("mode=0755"),
            vmbus_src: None,
            uio_src: None,
            class_tmpfs: false,
        }
    }

    fn for_tree(dir: &Path) -> Result<Self, RunnerError> {
        let dir = std::fs::canonicalize(dir).map_err(|source| RunnerError::Tree {
            dir: dir.to_owned(),
            source,
        })?;
        Ok(Self {
            vmbus_src: Some(cpath(&dir.join("sys/bus/vmbus"))?),
            uio_src: Some(cpath(&dir.join("sys/class/uio"))?),
            class_tmpfs: !Path::new("/sys/class/uio").is_dir(),
            ..Self::probe()
        })
    }

    /// Runs in the forked child before exec: no allocation, only syscalls. The `nix` wrappers take the prepared
    /// `CStr`s as they are (a `CStr` path is passed through, not copied) and turn -1/errno into an error.
    fn apply(&self) -> io::Result<()> {
        use nix::mount::{MsFlags, mount};
        let none = None::<&CStr>;
        let dir_mode = nix::sys::stat::Mode::from_bits_truncate(0o755);
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
        mount(
            none,
            self.root.as_c_str(),
            none,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            none,
        )?;
        let tmpfs = Some(self.tmpfs.as_c_str());
        let tmpfs_opts = Some(self.tmpfs_opts.as_c_str());
        mount(
            tmpfs,
            self.sys_bus.as_c_str(),
            tmpfs,
            MsFlags::empty(),
            tmpfs_opts,
        )?;
        let Some(vmbus) = &self.vmbus_src else {
            return Ok(());
        };
        nix::unistd::mkdir(self.sys_bus_vmbus.as_c_str(), dir_mode)?;
        let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
        mount(
            Some(vmbus.as_c_str()),
            self.sys_bus_vmbus.as_c_str(),
            none,
            bind,
            none,
        )?;
        if let Some(uio) = &self.uio_src {
            if self.class_tmpfs {
                mount(
                    tmpfs,
                    self.sys_class.as_c_str(),
                    tmpfs,
                    MsFlags::empty(),
                    tmpfs_opts,
                )?;
                nix::unistd::mkdir(self.sys_class_uio.as_c_str(), dir_mode)?;
            }
            mount(
                Some(uio.as_c_str()),
                self.sys_class_uio.as_c_str(),
                none,
                bind,
                none,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{DeviceTree, TreeConfig};

    const UUID: &str = "11112222-3333-4444-5555-666677778888";

    #[test]
    fn guest_sees_the_tree_at_sys_paths() {
        if let Err(why) = can_run_guests() {
            std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("SKIP: {why}\n")).ok();
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let cfg = TreeConfig {
            ring_size: 4 * 4096,
            recv_size: 4096,
            send_size: 4096,
            ..TreeConfig::new(UUID)
        };
        let _tree = DeviceTree::create(dir.path(), &cfg).unwrap();
        let script = format!(
            "cat /sys/bus/vmbus/devices/{UUID}/id; readlink -f /sys/bus/vmbus/devices/{UUID}/driver; \
             cat /sys/class/uio/uio0/name; ls /sys/bus; echo \"$HV_EMU_DIR\"; echo \"$LD_PRELOAD\""
        );
        let mut cmd = GuestCommand::new(dir.path(), &["sh", "-c", &script]);
        cmd.command_mut().stdout(Stdio::piped());
        let out = cmd.spawn().unwrap().wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "14");
        assert_eq!(lines[1], "/sys/bus/vmbus/drivers/uio_hv_generic");
        assert_eq!(lines[2], "uio_hv_generic");
        assert_eq!(lines[3], "vmbus", "only the emulated bus is visible");
        assert_eq!(lines[4], dir.path().to_str().unwrap());
        assert_eq!(
            lines[5],
            dir.path().join("lib/libhvemu_uio.so").to_str().unwrap()
        );
        // The parent's namespace is untouched.
        assert!(!Path::new(&format!("/sys/bus/vmbus/devices/{UUID}")).exists());
    }
}

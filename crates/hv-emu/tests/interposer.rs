//! The LD_PRELOAD interposer observed from both sides: a small C guest opens `/dev/uio0` (a path that does not exist
//! here), maps offsets 0..4 pages, writes and reads the fd; the host checks its own mappings of the same files and the
//! control page. Needs only a C compiler, not root.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use hv_emu::interposer;
use hv_emu::tree::{DeviceTree, TreeConfig};
use support::{ShmDir, which};

const UUID: &str = "00000000-1111-2222-3333-444444444444";

#[test]
fn guest_uses_dev_uio_through_the_interposer() {
    let Some(cc) = which("cc").or_else(|| which("gcc")) else {
        skip!("no C compiler")
    };
    let dir = ShmDir::new("interp");
    let root = dir.path().join("emu");
    let cfg = TreeConfig {
        ring_size: 8 * 4096,
        recv_size: 16 * 4096,
        send_size: 12 * 4096,
        ..TreeConfig::new(UUID)
    };
    let tree = DeviceTree::create(&root, &cfg).unwrap();
    let so = interposer::install(&root).unwrap();
    let exe = dir.path().join("uio_guest");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/uio_guest.c");
    let st = Command::new(cc)
        .args(["-O1", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .unwrap();
    assert!(st.success(), "compiling {src}");

    // Host-side state the guest should observe or change.
    let maps = [
        tree.rings(),
        tree.int_page(),
        tree.monitor_page(),
        tree.recv_buf(),
        tree.send_buf(),
    ];
    for (k, m) in maps.iter().enumerate() {
        m.store_u32(16, 0x50 + k as u32).unwrap();
    }
    tree.rx_ring().store_u32(8, 1).unwrap(); // interrupt_mask of the host→guest ring
    let sizes = cfg.map_sizes().map(|s| s.to_string());

    let mut child = KillOnDrop(
        Command::new(&exe)
            .args(&sizes)
            .env("LD_PRELOAD", &so)
            .env(interposer::ENV_DIR, &root)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut child.0;
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert_ne!(
            out.read_line(&mut line).unwrap(),
            0,
            "guest ended early: {lines:?}"
        );
        let line = line.trim_end().to_owned();
        let ready = line == "ready";
        lines.push(line);
        if ready {
            break;
        }
    }
    // Before the event: the guest's writes are visible in our mappings and the control page.
    for (k, m) in maps.iter().enumerate() {
        assert_eq!(
            lines[k],
            format!("map{k} host={:x}", 0x50 + k),
            "guest saw our marker in map{k}"
        );
        assert_eq!(
            m.load_u32(20).unwrap(),
            0xa0 + k as u32,
            "guest's marker in map{k}"
        );
        assert_eq!(
            m.load_u32(m.len() - 4).unwrap(),
            0xe0 + k as u32,
            "last word of map{k}"
        );
    }
    eprintln!("guest said: {lines:#?}");
    assert_eq!(lines[5], format!("mmap5 failed {}", libc::EINVAL));
    assert_eq!(lines[6], format!("mmap1-too-big failed {}", libc::EINVAL));
    assert_eq!(lines[7], "write0 4");
    assert_eq!(lines[8], "write1 4");
    assert_eq!(lines[9], format!("write3 -1 {}", libc::EINVAL));
    assert_eq!(lines[10], format!("read-nonblock -1 {}", libc::EAGAIN));
    let ctl = tree.ctl();
    assert_eq!(ctl.open_count(), 1);
    assert_eq!(ctl.guest_pid(), child.id());
    assert_eq!(ctl.irq_writes(), 2);
    assert_eq!(ctl.irq_enabled(), 1);
    assert_eq!(
        tree.rx_ring().load_u32(8).unwrap(),
        0,
        "write(1) cleared the host→guest interrupt_mask"
    );

    // The blocked read (on a dup of the fd) returns once we post an event.
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(ctl.post_event(), 1);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    let rest: Vec<&str> = rest.lines().collect();
    assert_eq!(rest[0], "read 4 event 1");
    assert_eq!(
        rest[1],
        format!("mmap-after-close failed {}", libc::EBADF),
        "closed fds are forgotten"
    );
}

/// Kills the guest if an assertion fails first, so a blocked guest never outlives the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn without_hv_emu_dir_nothing_is_redirected() {
    let dir = ShmDir::new("interp-off");
    let so = interposer::install(dir.path()).unwrap();
    let out = Command::new("cat")
        .arg("/dev/uio0")
        .env("LD_PRELOAD", &so)
        .env_remove(interposer::ENV_DIR)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "there is no /dev/uio0 on this machine"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such file"));
}

/// The DPDK 22.11 queue-state workaround only works if our unversioned definitions win over librte_ethdev's
/// versioned ones (`@DPDK_23`): ask the dynamic linker where testpmd's references bind.
#[test]
fn queue_state_wrappers_bind_ahead_of_librte_ethdev() {
    if !interposer::HAS_DPDK_QUEUE_STATE_FIX {
        skip!("interposer built without DPDK headers");
    }
    let Some(testpmd) = which("dpdk-testpmd") else {
        skip!("dpdk-testpmd is not installed")
    };
    let dir = ShmDir::new("bind");
    let so = interposer::install(dir.path()).unwrap();
    let prefix = dir.unique_name();
    let out = Command::new(testpmd)
        .args([
            "--no-huge",
            "-m",
            "64",
            "--no-pci",
            "--file-prefix",
            &prefix,
            "--",
            "--help",
        ])
        .env("LD_PRELOAD", &so)
        .env("LD_BIND_NOW", "1")
        .env("LD_DEBUG", "bindings")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    let log = String::from_utf8_lossy(&out.stderr);
    for sym in ["rte_eth_rx_queue_info_get", "rte_eth_tx_queue_info_get"] {
        let line = log
            .lines()
            .find(|l| l.contains("dpdk-testpmd [0] to") && l.contains(&format!("`{sym}'")))
            .unwrap_or_else(|| panic!("no binding of {sym} reported"));
        assert!(
            line.contains("libhvemu_uio.so"),
            "{sym} bound elsewhere: {line}"
        );
    }
}

/// Include flags for the DPDK headers (what build.rs compiles the interposer's wrappers with).
fn dpdk_cflags() -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(["--cflags-only-I", "libdpdk"])
        .output()
        .ok()
        .filter(|o| o.status.success());
    let mut flags: Vec<String> = match out {
        Some(o) => String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        None => vec![
            "-I/usr/include/dpdk".into(),
            "-I/usr/include/x86_64-linux-gnu/dpdk".into(),
        ],
    };
    flags.extend(["-include".into(), "rte_config.h".into()]);
    flags
}

/// The 22.11 queue-state workaround follows the guest's DPDK version (`rte_version()`, read at run time): on for
/// 22.x and 23.03/23.07 (the PMD never reports its queues started), off for 23.11 and later (fixed there, commit
/// 0727d5d0e6) and for a version it cannot read; `HV_EMU_DPDK_QUEUE_STATE_FIX=1`/`=0` overrides. A stand-in for
/// librte_eal/librte_ethdev (tests/support/fake_ethdev.c) reports every queue STOPPED and a version from the
/// environment; the program prints the state the interposer handed back.
#[test]
fn queue_state_workaround_follows_the_dpdk_version() {
    if !interposer::HAS_DPDK_QUEUE_STATE_FIX {
        skip!("interposer built without DPDK headers");
    }
    let Some(cc) = which("cc").or_else(|| which("gcc")) else {
        skip!("no C compiler")
    };
    let dir = ShmDir::new("qstate");
    let so = interposer::install(dir.path()).unwrap();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/fake_ethdev.c");
    let lib = dir.path().join("libfake_ethdev.so");
    let exe = dir.path().join("fake_queue_info");
    let flags = dpdk_cflags();
    let st = Command::new(&cc)
        .args(["-shared", "-fPIC", "-DFAKE_LIB", "-o"])
        .arg(&lib)
        .arg(src)
        .args(&flags)
        .status()
        .unwrap();
    assert!(st.success(), "compiling {src} as the stand-in library");
    let st = Command::new(&cc)
        .arg("-o")
        .arg(&exe)
        .arg(src)
        .args(&flags)
        .arg(format!("-L{}", dir.path().display()))
        .arg(format!("-Wl,-rpath,{}", dir.path().display()))
        .arg("-lfake_ethdev")
        .status()
        .unwrap();
    assert!(st.success(), "compiling {src} as the program");
    let run = |version: &str, force: Option<&str>| {
        let mut cmd = Command::new(&exe);
        cmd.env("LD_PRELOAD", &so)
            .env("FAKE_RTE_VERSION", version)
            .env("HV_EMU_LOG", "1")
            .env_remove(interposer::ENV_QUEUE_STATE_FIX);
        if let Some(f) = force {
            cmd.env(interposer::ENV_QUEUE_STATE_FIX, f);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{version}: {out:?}");
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        (String::from_utf8_lossy(&out.stdout).trim().to_string(), log)
    };
    const STARTED: &str = "rx=1 tx=1";
    const STOPPED: &str = "rx=0 tx=0";
    for (version, force, want) in [
        ("DPDK 22.11.11", None, STARTED),
        ("DPDK 22.11.0-rc1", None, STARTED),
        ("DPDK 22.07.0", None, STARTED),
        ("DPDK 23.07.0", None, STARTED),
        ("DPDK 23.11.0", None, STOPPED),
        ("DPDK 24.11.2", None, STOPPED),
        ("DPDK 25.11.0", None, STOPPED),
        ("DPDK 21.11.9", None, STOPPED),
        ("none", None, STOPPED),
        ("garbage", None, STOPPED),
        ("DPDK 22.11.11", Some("0"), STOPPED),
        ("DPDK 24.11.2", Some("1"), STARTED),
        ("DPDK 22.11.11", Some("yes"), STARTED),
    ] {
        let (got, log) = run(version, force);
        eprintln!("{version} {force:?}: {got}");
        assert_eq!(
            got, want,
            "{version} with the variable {force:?}; log:\n{log}"
        );
        let note = log
            .lines()
            .find(|l| l.contains("queue-state workaround"))
            .unwrap_or_else(|| panic!("no decision logged: {log}"));
        assert!(
            note.contains(if want == STARTED {
                "workaround on"
            } else {
                "workaround off"
            }),
            "{note}"
        );
    }
}

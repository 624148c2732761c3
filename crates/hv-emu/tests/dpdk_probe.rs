//! Unmodified DPDK 22.11 (`dpdk-testpmd`) against the emulated tree: proves the tree satisfies the vmbus bus scan,
//! the interposer gives `/dev/uio0` the kernel's mmap semantics, and the runner's namespace shows the tree at the
//! sysfs paths — observed from the host side as the PMD's first NVSP INIT in our guest→host ring.
//! Needs root and dpdk-testpmd; otherwise prints `SKIP:` and passes. `HV_EMU_STRACE=<file>` wraps testpmd in
//! strace for investigation.

mod support;

use std::fs;
use std::process::Stdio;
use std::time::Duration;

use hv_emu::runner::{GuestCommand, can_run_guests};
use hv_emu::tree::{DeviceTree, TreeConfig};
use support::{ShmDir, wait_for, which};
use vmbus_ring::{PacketKind, Ring, RingReader};

const UUID: &str = "5a3c9a57-6e2d-4b8f-9c41-0d2f7e1b3a60";
const NVSP_TYPE_INIT: u32 = 1;
const NVSP_VERSION_61: u32 = 0x60001;

/// What the host saw of one testpmd probe; `None` when the test must be skipped.
struct Probe {
    tree: DeviceTree,
    _dir: ShmDir,
}

/// Run testpmd against a fresh tree until its first NVSP INIT lands, check everything common to every
/// configuration (open, five mmaps, the INIT packet itself), and hand back the tree for signalling checks.
fn probe(monitor_id: Option<u8>) -> Option<Probe> {
    if let Err(why) = can_run_guests() {
        std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("SKIP: {why}\n")).ok();
        return None;
    }
    let Some(testpmd) = which("dpdk-testpmd") else {
        std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!("SKIP: dpdk-testpmd is not installed\n"),
        )
        .ok();
        return None;
    };
    let dir = ShmDir::new("probe");
    let root = dir.path().join("emu");
    let cfg = TreeConfig {
        relid: 14,
        monitor_id,
        uio_number: 0,
        ..TreeConfig::new(UUID)
    };
    let tree = DeviceTree::create(&root, &cfg).unwrap();
    // Masked host→guest ring, as the kernel leaves it: an enabling irq write must clear it.
    tree.rx_ring().store_u32(8, 1).unwrap();
    if monitor_id.is_none() {
        // The kernel hides `monitor_id` of an unmonitored channel (vmbus_drv.c vmbus_dev_attr_is_visible), and
        // DPDK 22.11's vmbus_scan_one then fails the whole bus scan (25.11, commit 8e4a1b88e1, takes a missing
        // file as "no monitor"). To see what 22.11 does once past the scan, show it the "no monitor" value 255.
        fs::write(tree.device_dir().join("monitor_id"), "255\n").unwrap();
    }
    let prefix = dir.unique_name();
    let log_path = dir.path().join("testpmd.log");
    let log = fs::File::create(&log_path).unwrap();

    let testpmd = testpmd.to_string_lossy().into_owned();
    let mut argv: Vec<String> = Vec::new();
    let strace = std::env::var("HV_EMU_STRACE").ok();
    if let Some(out) = &strace {
        argv.extend(
            [
                "strace",
                "-f",
                "-o",
                out,
                "-e",
                "trace=%file,%desc,mmap,munmap",
            ]
            .map(String::from),
        );
    }
    argv.extend(
        [
            testpmd.as_str(),
            "--no-huge",
            "-m",
            "1024",
            "--no-pci",
            "-l",
            "0-1",
            "--file-prefix",
            &prefix,
            "--log-level",
            "*:debug",
            "--",
            "-i",
            "--total-num-mbufs=16384",
        ]
        .map(String::from),
    );
    let mut cmd = GuestCommand::new(&root, &argv);
    cmd.env("HV_EMU_LOG", "1");
    cmd.command_mut()
        .stdin(Stdio::piped())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut child = cmd.spawn().unwrap();

    // The PMD's first act after mapping is NVSP INIT on the primary channel: wait for the guest→host write index.
    let tx = tree.tx_ring();
    let wrote = wait_for(Duration::from_secs(30), || {
        (tx.load_u32(0).unwrap() != 0).then_some(())
    });
    let exited = child.try_wait().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let _ = fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    let log_text = fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        wrote.is_some(),
        "no NVSP INIT within 30 s (testpmd exit: {exited:?}); testpmd output:\n{}",
        tail(&log_text, 80)
    );
    eprintln!("testpmd output (tail):\n{}", tail(&log_text, 40));

    // The device was found and opened by the PMD's process.
    let ctl = tree.ctl();
    assert!(ctl.open_count() >= 1, "open_count {}", ctl.open_count());
    if strace.is_none() {
        assert_eq!(ctl.guest_pid(), child.id(), "the opener is testpmd");
    }
    assert!(
        log_text.contains("open /dev/uio0"),
        "interposer saw no open of /dev/uio0"
    );
    for k in 0..5 {
        assert!(
            log_text.contains(&format!("mmap uio0 map{k} ")),
            "map{k} was never mmapped"
        );
    }

    // Raw descriptor bytes first (independent of the ring crate): in-band, 16-byte header, 40-byte body.
    let rindex = tx.load_u32(4).unwrap() as usize;
    let mut desc = [0u8; 16];
    tx.read(4096 + rindex, &mut desc).unwrap();
    let field = |o: usize| u16::from_le_bytes([desc[o], desc[o + 1]]);
    assert_eq!(field(0), 6, "type INBAND");
    assert_eq!(field(2), 2, "offset8: 16-byte header");
    assert_eq!(field(4), 7, "len8: 16 + 40 bytes");
    assert_eq!(field(6) & 1, 1, "completion requested");
    assert_eq!(
        tx.load_u32(0).unwrap() as usize,
        rindex + 56 + 8,
        "one packet + trailer"
    );

    // Then through the ring reader.
    let mut reader = RingReader::new(Ring::new(tx).unwrap());
    let mut scratch = Vec::new();
    let pkt = reader.read(&mut scratch).unwrap();
    assert!(pkt.completion_requested);
    let PacketKind::InBand { payload } = pkt.kind else {
        panic!("expected in-band, got {:?}", pkt.kind)
    };
    assert_eq!(payload.len(), 40);
    let word = |o: usize| u32::from_le_bytes(payload[o..o + 4].try_into().unwrap());
    assert_eq!(word(0), NVSP_TYPE_INIT);
    assert_eq!(word(4), NVSP_VERSION_61, "min version");
    assert_eq!(word(8), NVSP_VERSION_61, "max version");

    eprintln!(
        "host view: monitor pending=0x{:x}, int_page[2048]=0x{:x}, rx interrupt_mask={}, ctl irq_writes={} \
         irq_enabled={} opens={}",
        tree.monitor_page().load_u32(8).unwrap(),
        tree.int_page().load_u32(2048).unwrap(),
        tree.rx_ring().load_u32(8).unwrap(),
        ctl.irq_writes(),
        ctl.irq_enabled(),
        ctl.open_count()
    );
    for (name, page) in [("monitor", tree.monitor_page()), ("int", tree.int_page())] {
        let words: Vec<String> = (0..1024)
            .filter_map(|i| {
                let v = page.load_u32(4 * i).unwrap();
                (v != 0).then(|| format!("{:#x}={v:#x}", 4 * i))
            })
            .collect();
        eprintln!("host view: non-zero {name} page words: {words:?}");
    }
    Some(Probe { tree, _dir: dir })
}

#[test]
fn testpmd_probes_maps_and_sends_nvsp_init() {
    let Some(Probe { tree, _dir }) = probe(Some(2)) else {
        return;
    };
    // Monitored channel: the PMD signals only through the monitor page (monitor id 2 → trigger group 0, bit 2),
    // never through the int page or the uio fd.
    assert_ne!(
        tree.monitor_page().load_u32(8).unwrap() & (1 << 2),
        0,
        "monitor trigger bit for monitor id 2"
    );
    assert_eq!(
        tree.int_page()
            .load_u32(2048 /* word 14 / 32 = 0 */)
            .unwrap(),
        0
    );
    assert_eq!(tree.ctl().irq_writes(), 0);
    // At probe it also set this channel's latency slot (u16 at 576 + 2 × monitor id) to 500 × 100 ns.
    let mut latency = [0u8; 2];
    tree.monitor_page().read(576 + 2 * 2, &mut latency).unwrap();
    assert_eq!(u16::from_le_bytes(latency), 500);
    tree.remove().unwrap();
}

/// DPDK 22.11 has no signalling path for unmonitored channels (DPDK 25.11 has: commit fb4bff96be sets the int-page
/// bit and writes the uio fd): with a "no monitor" value 255 it still ORs bit 255 % 32 into trigger group 255 / 32 = 7 — offset 8 + 8 × 7 =
/// 0x40, past the four real groups — refuses to set a latency ("invalid monitor trigger 7"), and neither sets the
/// int-page bit nor writes the uio fd. A host must therefore give 22.11 a monitored channel.
#[test]
fn testpmd_22_11_cannot_signal_an_unmonitored_channel() {
    let Some(Probe { tree, _dir }) = probe(None) else {
        return;
    };
    assert_eq!(
        tree.monitor_page().load_u32(0x40).unwrap(),
        1 << 31,
        "bit 31 of 'trigger group 7'"
    );
    assert_eq!(tree.monitor_page().load_u32(8).unwrap(), 0);
    assert_eq!(
        tree.int_page().load_u32(2048).unwrap(),
        0,
        "no int page bit"
    );
    assert_eq!(tree.ctl().irq_writes(), 0, "no irq write");
    assert_eq!(
        tree.rx_ring().load_u32(8).unwrap(),
        1,
        "host→guest interrupt_mask untouched"
    );
    tree.remove().unwrap();
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

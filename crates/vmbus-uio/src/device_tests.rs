//! Opening emulated (and char-device) trees built by [`crate::fake_tree`]: every effect is checked
//! in the backing files, i.e. from the other side of the mapping.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::device::UioDevice;
use crate::discover::{DeviceInfo, find_device};
use crate::error::UioError;
use crate::fake_tree::{DevSpec, FakeTree, overwrite};
use crate::irq::ctl;

const U: &str = "5b2c8f10-1111-4222-8333-444455556666";

fn tree_with_nic(monitor: Option<u8>) -> (FakeTree, DeviceInfo) {
    let tree = FakeTree::new();
    let mut spec = DevSpec::nic(U, 14, 2);
    spec.monitor_id = monitor;
    tree.add(&spec);
    tree.add_channel(U, 14, 0, monitor, Some(2 * 16384));
    let info = find_device(tree.root(), U).unwrap();
    (tree, info)
}

fn backing(tree: &FakeTree, name: &str) -> PathBuf {
    tree.root().join("dev/uio2.maps").join(name)
}

fn read_u32(path: &Path, off: u64) -> u32 {
    let mut b = [0u8; 4];
    fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut b, off)
        .unwrap();
    u32::from_le_bytes(b)
}

fn read_u64(path: &Path, off: u64) -> u64 {
    let mut b = [0u8; 8];
    fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut b, off)
        .unwrap();
    u64::from_le_bytes(b)
}

/// Indices of the set bits of a byte buffer, counting bit 0 of byte 0 as 0 (little-endian order).
fn set_bits(bytes: &[u8]) -> Vec<usize> {
    (0..bytes.len() * 8)
        .filter(|i| bytes[i / 8] & (1 << (i % 8)) != 0)
        .collect()
}

#[test]
fn emulated_maps_share_memory_with_backing_files() {
    let (tree, info) = tree_with_nic(Some(3));
    let dev = UioDevice::open(tree.root(), &info).unwrap();
    assert!(dev.is_emulated());
    assert_eq!(dev.rings().len(), 32768);
    assert_eq!(dev.ring_half(), 16384);
    assert_eq!(dev.int_page().len(), 4096);
    assert_eq!(dev.monitor_page().len(), 4096);
    assert_eq!(dev.recv_buf().len(), 65536);
    assert_eq!(dev.send_buf().len(), 32768);
    assert_eq!((dev.recv_gpadl(), dev.send_gpadl()), (11, 12));
    assert_eq!(dev.tx_ring().as_ptr(), dev.rings().as_ptr());
    assert_eq!(dev.rx_ring().len(), 16384);
    dev.rx_ring().store_u32(4, 0x77).unwrap(); // host→guest read_index

    // Guest writes → file contents.
    dev.rings().write(16384 + 4096, b"host-to-guest").unwrap();
    dev.send_buf().write(32760, b"lastword").unwrap();
    let map0 = fs::read(backing(&tree, "map0")).unwrap();
    assert_eq!(&map0[16384 + 4096..16384 + 4096 + 13], b"host-to-guest");
    assert_eq!(&map0[16384 + 4..16384 + 8], &0x77u32.to_le_bytes());
    let map4 = fs::read(backing(&tree, "map4")).unwrap();
    assert_eq!(&map4[32760..], b"lastword");
    // File writes (the host side) → guest reads.
    let recv = fs::OpenOptions::new()
        .write(true)
        .open(backing(&tree, "map3"))
        .unwrap();
    recv.write_all_at(b"rndis", 65536 - 5).unwrap();
    let mut got = [0u8; 5];
    dev.recv_buf().read(65536 - 5, &mut got).unwrap();
    assert_eq!(&got, b"rndis");
    // Out of range accesses are refused, not performed.
    assert!(dev.recv_buf().read(65536 - 4, &mut got).is_err());

    // The control page records the opener.
    let ctl_path = backing(&tree, "ctl");
    assert_eq!(
        read_u32(&ctl_path, ctl::GUEST_PID as u64),
        std::process::id()
    );
    assert_eq!(read_u32(&ctl_path, ctl::OPEN_COUNT as u64), 1);
    let _second = UioDevice::open(tree.root(), &info).unwrap();
    assert_eq!(read_u32(&ctl_path, ctl::OPEN_COUNT as u64), 2);
    assert_eq!(read_u32(&ctl_path, ctl::MAGIC as u64), ctl::MAGIC_VALUE);
}

#[test]
fn irq_control_updates_ctl_page_and_clears_inbound_mask() {
    let (tree, info) = tree_with_nic(Some(3));
    let dev = UioDevice::open(tree.root(), &info).unwrap();
    let map0 = backing(&tree, "map0");
    let ctl_path = backing(&tree, "ctl");
    // The host→guest ring header starts at ring_half; interrupt_mask is its third u32.
    let file = fs::OpenOptions::new().write(true).open(&map0).unwrap();
    file.write_all_at(&1u32.to_le_bytes(), 16384 + 8).unwrap();
    file.write_all_at(&1u32.to_le_bytes(), 8).unwrap(); // guest→host mask: not ours to touch

    dev.irq_control(0).unwrap();
    assert_eq!(read_u32(&ctl_path, ctl::IRQ_ENABLED as u64), 0);
    assert_eq!(read_u64(&ctl_path, ctl::IRQ_WRITES as u64), 1);
    assert_eq!(read_u32(&map0, 16384 + 8), 1, "disabling leaves the mask");

    dev.primary_signaller().unwrap().irq_control(7).unwrap();
    assert_eq!(read_u32(&ctl_path, ctl::IRQ_ENABLED as u64), 7);
    assert_eq!(read_u64(&ctl_path, ctl::IRQ_WRITES as u64), 2);
    assert_eq!(
        read_u32(&map0, 16384 + 8),
        0,
        "enabling clears the inbound mask"
    );
    assert_eq!(read_u32(&map0, 8), 1);

    dev.irq_control(-1).unwrap();
    assert_eq!(read_u32(&ctl_path, ctl::IRQ_ENABLED as u64), u32::MAX);
    assert_eq!(read_u64(&ctl_path, ctl::IRQ_WRITES as u64), 3);
    assert_eq!(
        read_u64(&ctl_path, ctl::EVENT_COUNT as u64),
        0,
        "event count is the host's"
    );
}

#[test]
fn signal_sets_exactly_the_documented_bits() {
    let (tree, info) = tree_with_nic(Some(3));
    let dev = UioDevice::open(tree.root(), &info).unwrap();
    let (int_path, mon_path, ctl_path) = (
        backing(&tree, "map1"),
        backing(&tree, "map2"),
        backing(&tree, "ctl"),
    );
    let zero = |p: &Path| overwrite(p, &[0u8; 4096]);
    for relid in [0u32, 31, 32, 63] {
        for monitor in [Some(0u8), Some(31), Some(32), Some(127), None, Some(255)] {
            zero(&int_path);
            zero(&mon_path);
            let writes_before = read_u64(&ctl_path, ctl::IRQ_WRITES as u64);
            let s = dev.signaller(relid, monitor).unwrap();
            s.signal().unwrap();
            s.signal().unwrap(); // idempotent: an OR, not a toggle
            let int = fs::read(&int_path).unwrap();
            let mon = fs::read(&mon_path).unwrap();
            // Interrupt page: only bit `relid` of the bitmap starting at byte 2048.
            assert_eq!(
                set_bits(&int),
                vec![2048 * 8 + relid as usize],
                "relid {relid}"
            );
            let writes = read_u64(&ctl_path, ctl::IRQ_WRITES as u64) - writes_before;
            match monitor.filter(|m| *m != 255) {
                Some(m) => {
                    // trigger_group[m / 32].pending is the u32 at 8 + 8 * (m / 32).
                    let bit = (8 + 8 * (m as usize / 32)) * 8 + m as usize % 32;
                    assert_eq!(set_bits(&mon), vec![bit], "monitor {m}");
                    assert_eq!(writes, 0, "monitored channels make no irq write");
                }
                None => {
                    assert!(set_bits(&mon).is_empty());
                    assert_eq!(writes, 2, "one irq_control(1) per signal");
                    assert_eq!(read_u32(&ctl_path, ctl::IRQ_ENABLED as u64), 1);
                }
            }
        }
    }
    assert!(matches!(
        dev.signaller(0, Some(128)),
        Err(UioError::MonitorIdOutOfRange(128))
    ));
    assert!(matches!(
        dev.signaller(16384, None),
        Err(UioError::Invalid(_))
    ));
    // The primary signaller uses the device's relid and monitor id.
    zero(&int_path);
    zero(&mon_path);
    dev.primary_signaller().unwrap().signal().unwrap();
    assert_eq!(set_bits(&fs::read(&int_path).unwrap()), vec![2048 * 8 + 14]);
    assert_eq!(set_bits(&fs::read(&mon_path).unwrap()), vec![8 * 8 + 3]);
}

#[test]
fn latency_is_written_in_100ns_units_at_its_slot() {
    let (tree, info) = tree_with_nic(Some(3));
    let dev = UioDevice::open(tree.root(), &info).unwrap();
    let mon_path = backing(&tree, "map2");
    for (m, dur, units) in [
        (0u8, Duration::from_micros(50), 500u16),
        (31, Duration::from_nanos(199), 1),
        (32, Duration::from_nanos(6_553_499), 65534),
        (127, Duration::ZERO, 0),
    ] {
        overwrite(&mon_path, &[0xeeu8; 4096]);
        assert!(dev.signaller(1, Some(m)).unwrap().set_latency(dur).unwrap());
        let page = fs::read(&mon_path).unwrap();
        let slot = 576 + 2 * m as usize;
        assert_eq!(
            u16::from_le_bytes([page[slot], page[slot + 1]]),
            units,
            "monitor {m}"
        );
        // Nothing else changed.
        assert!(
            page.iter()
                .enumerate()
                .all(|(i, b)| i == slot || i == slot + 1 || *b == 0xee)
        );
    }
    let s = dev.signaller(1, Some(5)).unwrap();
    for bad in [Duration::from_nanos(6_553_500), Duration::from_secs(1)] {
        assert!(matches!(
            s.set_latency(bad),
            Err(UioError::LatencyTooLarge { .. })
        ));
    }
    assert!(matches!(
        s.set_latency_100ns(u16::MAX),
        Err(UioError::LatencyTooLarge { .. })
    ));
    overwrite(&mon_path, &[0u8; 4096]);
    assert!(
        !dev.signaller(1, None)
            .unwrap()
            .set_latency(Duration::from_micros(50))
            .unwrap()
    );
    assert!(
        fs::read(&mon_path).unwrap().iter().all(|b| *b == 0),
        "no monitor: no write"
    );
}

#[test]
fn subchannels_appear_as_their_ring_files_do() {
    let (tree, info) = tree_with_nic(Some(3));
    let dev = UioDevice::open(tree.root(), &info).unwrap();
    assert!(
        dev.subchannels().unwrap().is_empty(),
        "the primary is not a subchannel"
    );
    tree.add_channel(U, 16, 2, Some(9), None);
    tree.add_channel(U, 15, 1, None, None);
    assert!(dev.subchannels().unwrap().is_empty(), "no ring file yet");
    tree.add_channel(U, 15, 1, None, Some(0));
    assert!(
        dev.subchannels().unwrap().is_empty(),
        "an empty ring file is not ready"
    );
    tree.add_channel(U, 15, 1, None, Some(16384));
    let subs = dev.subchannels().unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(
        (
            subs[0].relid,
            subs[0].subchannel_id,
            subs[0].monitor_id,
            subs[0].ring_size
        ),
        (15, 1, None, 16384)
    );
    assert!(matches!(
        dev.wait_subchannels(2, Duration::from_millis(1), 3),
        Err(UioError::SubchannelTimeout {
            wanted: 2,
            found: 1,
            tries: 3,
            ..
        })
    ));

    // A ring that appears while we poll.
    let dir = tree.dev_dir(U).join("channels/16");
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        let tmp = dir.join(".ring.tmp");
        let file = crate::memfd::sealed("ring", 8192 * 4).unwrap();
        std::os::unix::fs::symlink(crate::memfd::proc_path(&file), &tmp).unwrap();
        fs::rename(tmp, dir.join("ring")).unwrap();
        file
    });
    let subs = dev
        .wait_subchannels(2, Duration::from_millis(5), 1000)
        .unwrap();
    let _ring_file = writer.join().unwrap();
    let ids: Vec<_> = subs
        .iter()
        .map(|s| (s.relid, s.subchannel_id, s.monitor_id))
        .collect();
    assert_eq!(ids, vec![(15, 1, None), (16, 2, Some(9))]);

    // Mapping: the guest's writes are in the file; the host's file writes are seen by the guest.
    let ring = dev.map_subchannel(16).unwrap();
    assert_eq!(ring.len(), 32768);
    ring.write(8, &1u32.to_le_bytes()).unwrap();
    let ring_path = tree.dev_dir(U).join("channels/16/ring");
    assert_eq!(read_u32(&ring_path, 8), 1);
    let f = fs::OpenOptions::new().write(true).open(&ring_path).unwrap();
    f.write_all_at(&0xfeed_u32.to_le_bytes(), 16384).unwrap();
    assert_eq!(ring.load_u32(16384).unwrap(), 0xfeed);
    let s = dev.signaller(16, Some(9)).unwrap();
    s.signal().unwrap();
    assert_eq!(
        set_bits(&fs::read(backing(&tree, "map1")).unwrap()),
        vec![2048 * 8 + 16]
    );

    // Bad ring files.
    assert!(matches!(
        dev.map_subchannel(99),
        Err(UioError::NoSubchannel { relid: 99, .. })
    ));
    for (size, why) in [
        (0u64, "zero"),
        (5000, "multiple of 4096"),
        (3 * 4096, "two rings"),
    ] {
        tree.add_channel(U, 17, 3, None, Some(size));
        match dev.map_subchannel(17).unwrap_err() {
            UioError::BadSize { why: w, path, .. } => {
                assert!(w.contains(why), "{w}");
                assert!(path.ends_with("channels/17/ring"));
            }
            other => panic!("{other}"),
        }
    }
}

#[test]
fn open_refuses_broken_trees() {
    // Not bound to uio.
    let tree = FakeTree::new();
    let mut spec = DevSpec::nic(U, 14, 2);
    spec.uio = None;
    spec.driver = Some("hv_netvsc");
    tree.add(&spec);
    let info = find_device(tree.root(), U).unwrap();
    assert!(matches!(
        UioDevice::open(tree.root(), &info),
        Err(UioError::NoUio { .. })
    ));

    // Wrong control-page magic.
    let (tree, info) = tree_with_nic(None);
    overwrite(&backing(&tree, "ctl"), &[0u8; 4096]);
    assert!(matches!(
        UioDevice::open(tree.root(), &info),
        Err(UioError::BadControlPage { found: 0, .. })
    ));

    // A backing file that is not sealed against shrinking: a peer could SIGBUS us through it.
    let (tree, info) = tree_with_nic(None);
    let map3 = backing(&tree, "map3");
    fs::remove_file(&map3).unwrap();
    fs::File::create(&map3).unwrap().set_len(65536).unwrap();
    match UioDevice::open(tree.root(), &info).unwrap_err() {
        UioError::NotSealed { path, .. } => assert!(path.ends_with("map3")),
        other => panic!("{other}"),
    }

    // A backing file shorter than sysfs says.
    let (tree, info) = tree_with_nic(None);
    tree.sealed_file(&backing(&tree, "map3"), 4096);
    match UioDevice::open(tree.root(), &info).unwrap_err() {
        UioError::BadSize {
            path, size: 4096, ..
        } => assert!(path.ends_with("map3")),
        other => panic!("{other}"),
    }

    // dev/uioN neither a file nor a char device; then missing.
    let (tree, info) = tree_with_nic(None);
    let node = tree.root().join("dev/uio2");
    fs::remove_file(&node).unwrap();
    fs::create_dir(&node).unwrap();
    assert!(matches!(
        UioDevice::open(tree.root(), &info),
        Err(UioError::NotADevice { .. })
    ));
    fs::remove_dir(&node).unwrap();
    assert!(matches!(
        UioDevice::open(tree.root(), &info),
        Err(UioError::Io { .. })
    ));
}

#[test]
fn char_device_is_mapped_at_page_offsets() {
    // /dev/zero is a character device that accepts shared mappings at any offset and 4-byte
    // writes: it stands in for /dev/uioN to drive the real-device path. (Its shared mappings are
    // only as long as asked for, so maps 1..4 must not be touched: their offsets lie beyond.)
    let (tree, info) = tree_with_nic(None);
    let node = tree.root().join("dev/uio2");
    fs::remove_file(&node).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &node).unwrap();
    let dev = UioDevice::open(tree.root(), &info).unwrap();
    assert!(!dev.is_emulated());
    assert_eq!(dev.rings().len(), 32768);
    assert_eq!(dev.recv_buf().len(), 65536);
    dev.rings().write(100, b"x").unwrap();
    let mut b = [0u8; 1];
    dev.rings().read(100, &mut b).unwrap();
    assert_eq!(&b, b"x");
    // The kernel's view: map K starts at file offset K x page size.
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    let page = crate::page_size() as u64;
    for (k, mem) in [
        dev.rings(),
        dev.int_page(),
        dev.monitor_page(),
        dev.recv_buf(),
        dev.send_buf(),
    ]
    .into_iter()
    .enumerate()
    {
        let start = format!("{:x}-", mem.as_ptr() as usize);
        let line = maps
            .lines()
            .find(|l| l.starts_with(&start))
            .expect("mapping listed");
        let offset = u64::from_str_radix(line.split_whitespace().nth(2).unwrap(), 16).unwrap();
        assert_eq!(offset, k as u64 * page, "map {k}: {line}");
        assert!(line.contains("zero"), "{line}");
    }
    // irq_control is a 4-byte write to the fd (accepted by /dev/zero); the emulated control page
    // is not involved.
    dev.irq_control(1).unwrap();
    assert_eq!(read_u32(&backing(&tree, "ctl"), ctl::OPEN_COUNT as u64), 0);
    assert_eq!(read_u64(&backing(&tree, "ctl"), ctl::IRQ_WRITES as u64), 0);
}

/// Lines of /proc/self/maps and targets of /proc/self/fd that lie under `root` or are the fake tree's memfds.
fn resources_under(root: &Path, memfd: &str) -> (usize, usize) {
    let root = root.to_string_lossy().into_owned();
    let memfd = format!("/memfd:{memfd} ");
    let ours = |s: &str| s.contains(&root) || format!("{s} ").contains(&memfd);
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    let mapped = maps.lines().filter(|l| ours(l)).count();
    let fds = fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|t| ours(&t.to_string_lossy()))
        .count();
    (mapped, fds)
}

#[test]
fn thousand_open_close_cycles_leak_nothing() {
    let (tree, info) = tree_with_nic(Some(3));
    tree.add_channel(U, 15, 1, None, Some(16384));
    let root = tree.root().canonicalize().unwrap();
    // The tree itself holds its memfds open (as the emulator does) and maps nothing.
    let (maps0, fds0) = resources_under(&root, &tree.memfd_name());
    assert_eq!(maps0, 0);
    for i in 0..1000 {
        let dev = UioDevice::open(tree.root(), &info).unwrap();
        let sig = dev.primary_signaller().unwrap();
        let sub = dev.map_subchannel(15).unwrap();
        if i == 0 {
            // Five maps + the control page + the subchannel ring are mapped; no fd of ours stays open.
            assert_eq!(resources_under(&root, &tree.memfd_name()), (7, fds0));
        }
        sig.signal().unwrap();
        drop((dev, sig, sub));
    }
    assert_eq!(resources_under(&root, &tree.memfd_name()), (0, fds0));
    assert_eq!(
        read_u32(&backing(&tree, "ctl"), ctl::OPEN_COUNT as u64),
        1000
    );
}

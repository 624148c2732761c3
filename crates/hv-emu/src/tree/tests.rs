use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::*;

const UUID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

fn small_config() -> TreeConfig {
    TreeConfig {
        uio_number: 3,
        relid: 17,
        monitor_id: Some(5),
        ring_size: 16 * PAGE_SIZE,
        recv_size: 64 * PAGE_SIZE,
        send_size: 32 * PAGE_SIZE,
        recv_gpadl: 0x1234,
        send_gpadl: 99,
        numa_node: -1,
        ..TreeConfig::new(UUID)
    }
}

fn read(p: impl AsRef<Path>) -> String {
    fs::read_to_string(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

#[test]
fn writes_device_attributes_as_the_kernel_prints_them() {
    let dir = tempfile::tempdir().unwrap();
    let tree = DeviceTree::create(dir.path(), &small_config()).unwrap();
    let dev = dir.path().join("sys/bus/vmbus/devices").join(UUID);
    assert_eq!(
        read(dev.join("class_id")),
        "{f8615163-df3e-46c5-913f-f2d2f965ed0e}\n"
    );
    assert_eq!(read(dev.join("device_id")), format!("{{{UUID}}}\n"));
    assert_eq!(read(dev.join("id")), "17\n");
    assert_eq!(read(dev.join("monitor_id")), "5\n");
    assert_eq!(read(dev.join("numa_node")), "-1\n");
    assert_eq!(tree.device_dir(), dev);
    // driver resolves to a directory named uio_hv_generic, through a relative link.
    assert_eq!(
        fs::read_link(dev.join("driver")).unwrap(),
        Path::new("../../drivers/uio_hv_generic")
    );
    let drv = fs::canonicalize(dev.join("driver")).unwrap();
    assert!(drv.is_dir());
    assert_eq!(drv.file_name().unwrap(), "uio_hv_generic");
    assert_eq!(
        drv,
        fs::canonicalize(dir.path().join("sys/bus/vmbus/drivers/uio_hv_generic")).unwrap()
    );
}

#[test]
fn writes_uio_maps_with_names_sizes_and_backing_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config();
    let _tree = DeviceTree::create(dir.path(), &cfg).unwrap();
    let uio = dir
        .path()
        .join("sys/bus/vmbus/devices")
        .join(UUID)
        .join("uio/uio3");
    assert_eq!(read(uio.join("name")), "uio_hv_generic\n");
    assert_eq!(read(uio.join("version")), "0.02.1\n");
    assert_eq!(read(uio.join("event")), "0\n");
    let expect = [
        ("txrx_rings", 32 * 4096u64),
        ("int_page", 4096),
        ("monitor_page", 4096),
        ("recv:4660", 64 * 4096),
        ("send:99", 32 * 4096),
    ];
    for (k, (name, size)) in expect.iter().enumerate() {
        let m = uio.join(format!("maps/map{k}"));
        assert_eq!(read(m.join("name")), format!("{name}\n"));
        assert_eq!(read(m.join("size")), format!("0x{size:016x}\n"));
        assert_eq!(read(m.join("offset")), "0x0000000000000000\n");
        let addr = read(m.join("addr"));
        assert!(addr.starts_with("0x") && addr.len() == 19, "{addr:?}");
        let backing = dir.path().join(format!("dev/uio3.maps/map{k}"));
        let meta = fs::metadata(&backing).unwrap();
        assert_eq!(meta.len(), *size, "map{k}");
        // Sparse: no blocks until touched (at most the rings' first pages, which we do not touch here).
        assert!(
            meta.blocks() * 512 < *size || *size == 4096,
            "map{k} is not sparse"
        );
    }
    assert_eq!(fs::metadata(dir.path().join("dev/uio3")).unwrap().len(), 0);
    assert!(fs::metadata(dir.path().join("dev/uio3")).unwrap().is_file());
    // /sys/class/uio/uio3 resolves to the device's uio directory.
    let class = dir.path().join("sys/class/uio/uio3");
    assert_eq!(
        fs::read_link(&class).unwrap(),
        Path::new(&format!("../../bus/vmbus/devices/{UUID}/uio/uio3"))
    );
    assert_eq!(
        fs::canonicalize(&class).unwrap(),
        fs::canonicalize(&uio).unwrap()
    );
}

#[test]
fn control_page_starts_with_magic_and_counts_events() {
    let dir = tempfile::tempdir().unwrap();
    let tree = DeviceTree::create(dir.path(), &small_config()).unwrap();
    let raw = fs::read(dir.path().join("dev/uio3.maps/ctl")).unwrap();
    assert_eq!(raw.len(), 4096);
    assert_eq!(&raw[0..4], b"UCVH");
    assert!(raw[4..].iter().all(|&b| b == 0));
    assert_eq!(tree.ctl().magic(), CTL_MAGIC);
    assert_eq!(tree.ctl().post_event(), 1);
    assert_eq!(tree.ctl().post_event(), 2);
    let raw = fs::read(dir.path().join("dev/uio3.maps/ctl")).unwrap();
    assert_eq!(u64::from_le_bytes(raw[16..24].try_into().unwrap()), 2);
}

#[test]
fn host_mappings_are_the_backing_files_and_primary_ring_is_map0() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config();
    let tree = DeviceTree::create(dir.path(), &cfg).unwrap();
    assert_eq!(tree.rings().len(), 2 * cfg.ring_size);
    assert_eq!(tree.recv_buf().len(), cfg.recv_size);
    assert_eq!(tree.send_buf().len(), cfg.send_size);
    assert_eq!(tree.int_page().len(), 4096);
    assert_eq!(tree.monitor_page().len(), 4096);
    tree.rx_ring().store_u32(8, 0xdead_beef).unwrap();
    tree.send_buf().write(100, b"send").unwrap();
    let chan = tree.channel_dir(17);
    assert_eq!(read(chan.join("subchannel_id")), "0\n");
    assert_eq!(read(chan.join("monitor_id")), "5\n");
    let ring = fs::read(chan.join("ring")).unwrap();
    assert_eq!(ring.len(), 2 * cfg.ring_size);
    assert_eq!(
        &ring[cfg.ring_size + 8..cfg.ring_size + 12],
        &0xdead_beef_u32.to_le_bytes()
    );
    let send = fs::read(dir.path().join("dev/uio3.maps/map4")).unwrap();
    assert_eq!(&send[100..104], b"send");
    // Writes through the file show up in the host's mapping.
    let map1 = dir.path().join("dev/uio3.maps/map1");
    let mut page = vec![0u8; 4096];
    page[2048] = 0x42;
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(&map1).unwrap();
    f.write_all_at(&page, 0).unwrap();
    assert_eq!(tree.int_page().load_u32(2048).unwrap(), 0x42);
}

/// No guest can shrink (or grow) what the host maps: every map, the control page and every ring is a sealed memfd,
/// so a truncate through the tree (or an O_TRUNC open) fails with EPERM and the host's mappings stay whole.
#[test]
fn backing_memory_cannot_be_truncated_through_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config();
    let tree = DeviceTree::create(dir.path(), &cfg).unwrap();
    tree.add_subchannel(18, 1, None).unwrap();
    let maps = dir.path().join("dev/uio3.maps");
    let mut paths: Vec<_> = (0..5).map(|k| maps.join(format!("map{k}"))).collect();
    paths.push(maps.join("ctl"));
    paths.push(tree.channel_dir(17).join("ring"));
    paths.push(tree.channel_dir(18).join("ring"));
    for p in &paths {
        let target = fs::read_link(p).unwrap();
        assert!(
            target.starts_with(format!("/proc/{}/fd/", std::process::id())),
            "{target:?}"
        );
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .unwrap();
        let len = f.metadata().unwrap().len();
        for size in [0, len / 2, len + 4096] {
            let e = f.set_len(size).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{p:?} to {size}: {e}");
        }
        let e = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(p)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "O_TRUNC {p:?}: {e}");
        assert_eq!(
            vmbus_uio::memfd::seals(&f),
            vmbus_uio::memfd::SEALS,
            "{p:?}"
        );
    }
    // The host's mappings are still whole: touching their last bytes does not fault.
    for mem in [
        tree.rings(),
        tree.recv_buf(),
        tree.send_buf(),
        tree.int_page(),
    ] {
        mem.write(mem.len() - 1, &[1]).unwrap();
    }
    tree.subchannel(18)
        .unwrap()
        .write(2 * cfg.ring_size - 1, &[1])
        .unwrap();
}

#[test]
fn subchannels_appear_with_ring_last_and_reject_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config();
    let tree = DeviceTree::create(dir.path(), &cfg).unwrap();
    let mem = tree.add_subchannel(18, 1, None).unwrap();
    assert_eq!(mem.len(), 2 * cfg.ring_size);
    let chan = tree.channel_dir(18);
    assert_eq!(read(chan.join("subchannel_id")), "1\n");
    assert!(!chan.join("monitor_id").exists());
    assert!(!chan.join(".ring.tmp").exists());
    mem.store_u32(4, 77).unwrap();
    let ring = fs::read(chan.join("ring")).unwrap();
    assert_eq!(ring.len(), 2 * cfg.ring_size);
    assert_eq!(&ring[4..8], &77u32.to_le_bytes());
    assert_eq!(tree.subchannel(18).unwrap().load_u32(4).unwrap(), 77);
    tree.add_subchannel(19, 2, Some(9)).unwrap();
    assert_eq!(read(tree.channel_dir(19).join("monitor_id")), "9\n");
    assert!(matches!(
        tree.add_subchannel(18, 3, None),
        Err(TreeError::DuplicateChannel { relid: 18 })
    ));
    assert!(matches!(
        tree.add_subchannel(17, 3, None),
        Err(TreeError::DuplicateChannel { relid: 17 })
    ));
    assert!(matches!(
        tree.add_subchannel(20, 0, None),
        Err(TreeError::PrimarySubchannelId { relid: 20 })
    ));
}

#[test]
fn unmonitored_device_has_no_monitor_id() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TreeConfig {
        monitor_id: None,
        ..small_config()
    };
    let tree = DeviceTree::create(dir.path(), &cfg).unwrap();
    assert!(!tree.device_dir().join("monitor_id").exists());
    assert!(!tree.channel_dir(17).join("monitor_id").exists());
}

#[test]
fn rejects_bad_configs() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in [
        TreeConfig {
            uuid: "not-a-guid".into(),
            ..small_config()
        },
        TreeConfig {
            uuid: UUID.to_uppercase(),
            ..small_config()
        },
        TreeConfig {
            ring_size: 4096,
            ..small_config()
        },
        TreeConfig {
            ring_size: 3 * 4096 + 1,
            ..small_config()
        },
        TreeConfig {
            recv_size: 0,
            ..small_config()
        },
    ] {
        assert!(
            matches!(
                DeviceTree::create(dir.path(), &cfg),
                Err(TreeError::Config { .. })
            ),
            "{cfg:?}"
        );
    }
    assert!(!dir.path().join("sys").exists());
}

#[test]
fn remove_deletes_everything() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("emu");
    let tree = DeviceTree::create(&root, &small_config()).unwrap();
    let rings = tree.rings().clone();
    tree.add_subchannel(18, 1, None).unwrap();
    tree.remove().unwrap();
    assert!(!root.exists());
    // Mappings handed out stay usable.
    rings.store_u32(0, 1).unwrap();
}

#[test]
fn default_config_uses_kernel_sizes() {
    let cfg = TreeConfig::new(UUID);
    assert_eq!(cfg.map_sizes(), [4 << 20, 4096, 4096, 31 << 20, 16 << 20]);
    assert_eq!(cfg.map_names()[3], format!("recv:{}", cfg.recv_gpadl));
}

/// The independent reader: vmbus-uio (the guest side) discovers and maps exactly what we wrote.
#[test]
fn vmbus_uio_discovers_and_maps_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config();
    let tree = DeviceTree::create(dir.path(), &cfg).unwrap();
    let devices = vmbus_uio::discover(dir.path()).unwrap();
    assert_eq!(devices.len(), 1);
    let info = &devices[0];
    assert_eq!(info.uuid, UUID);
    assert_eq!(info.class_id, NETVSC_CLASS_ID);
    assert_eq!(info.device_id, UUID);
    assert_eq!(info.relid, 17);
    assert_eq!(info.monitor_id, Some(5));
    assert_eq!(info.numa_node, -1);
    assert_eq!(info.driver.as_deref(), Some("uio_hv_generic"));
    assert!(info.is_netvsc);
    let uio = info.uio.as_ref().expect("uio node");
    assert_eq!(uio.number, 3);
    assert_eq!(uio.recv_gpadl, Some(0x1234));
    assert_eq!(uio.send_gpadl, Some(99));
    let sizes: Vec<u64> = uio.maps.iter().map(|m| m.size).collect();
    assert_eq!(sizes, cfg.map_sizes().map(|s| s as u64));

    let dev = vmbus_uio::UioDevice::open(dir.path(), info).unwrap();
    assert!(dev.is_emulated());
    // Guest writes land in the host's mappings and vice versa.
    dev.tx_ring().store_u32(0, 0x88).unwrap();
    assert_eq!(tree.tx_ring().load_u32(0).unwrap(), 0x88);
    tree.recv_buf().write(4096, b"rx!").unwrap();
    let mut b = [0u8; 3];
    dev.recv_buf().read(4096, &mut b).unwrap();
    assert_eq!(&b, b"rx!");
    // Emulated irq control goes to our control page.
    tree.rx_ring().store_u32(8, 1).unwrap();
    dev.irq_control(1).unwrap();
    assert_eq!(tree.ctl().irq_writes(), 1);
    assert_eq!(tree.ctl().irq_enabled(), 1);
    assert_eq!(tree.rx_ring().load_u32(8).unwrap(), 0);
    // A subchannel published later is found and shares memory.
    let host_ring = tree.add_subchannel(18, 1, Some(6)).unwrap();
    let subs = dev.subchannels().unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(
        (subs[0].relid, subs[0].subchannel_id, subs[0].monitor_id),
        (18, 1, Some(6))
    );
    assert_eq!(subs[0].ring_size, 2 * cfg.ring_size as u64);
    let guest_ring = dev.map_subchannel(18).unwrap();
    guest_ring.store_u32(cfg.ring_size, 7).unwrap();
    assert_eq!(host_ring.load_u32(cfg.ring_size).unwrap(), 7);
}

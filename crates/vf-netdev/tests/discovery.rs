//! Discovery and control, seen from sysfs / procfs / a fresh lookup.
#![allow(unsafe_code)]
mod common;

use std::path::Path;
use vf_netdev::*;

#[test]
fn veth_listed_with_mac_index_mtu() {
    if !common::enter_netns() {
        return;
    }
    let p = common::veth("da0", "db0", 3);
    let all = list(Path::new("/")).unwrap();
    let a = all.iter().find(|i| i.name == "da0").expect("da0 listed");
    assert_eq!(a.ifindex, p.a);
    assert_eq!(a.mac, Some(common::mac(1)));
    assert_eq!(a.mtu, 1500);
    assert!(a.up && a.running);
    assert_eq!(a.perm_mac, None);
    assert_eq!(a.driver.as_deref(), Some("veth"));
    assert_eq!(a.channels, 3);
    assert_eq!(a.pci_slot, None);
    let b = by_index(p.b).unwrap();
    assert_eq!(b.name, "db0");
    assert_eq!(b.mac, Some(common::mac(2)));
    assert_eq!(by_name("da0").unwrap(), *a);
    assert!(matches!(by_name("nope0"), Err(NetdevError::NotFound(_))));
    assert!(matches!(by_index(999_999), Err(NetdevError::NotFound(_))));
    // set_mac is visible.
    set_mac("da0", common::mac(9)).unwrap();
    assert_eq!(by_name("da0").unwrap().mac, Some(common::mac(9)));
    if common::sysfs_ok() {
        let s = std::fs::read_to_string("/sys/class/net/da0/address").unwrap();
        assert_eq!(s.trim(), "02:00:00:00:10:09");
    }
}

fn sys_flags(name: &str) -> u32 {
    let s = std::fs::read_to_string(format!("/sys/class/net/{name}/flags")).unwrap();
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).unwrap()
}

fn maddrs(ifindex: u32) -> Vec<String> {
    // Columns: ifindex name refcount global hexaddr
    std::fs::read_to_string("/proc/thread-self/net/dev_mcast")
        .unwrap()
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(&ifindex.to_string()))
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect()
}

#[test]
fn control_is_visible() {
    if !common::enter_netns() {
        return;
    }
    let p = common::veth("ca0", "cb0", 1);
    let n = Netdev::open(p.a).unwrap();
    assert_eq!(n.ifindex(), p.a);
    assert_eq!(n.name().unwrap(), "ca0");
    n.set_up(false).unwrap();
    assert!(!by_name("ca0").unwrap().up);
    n.set_up(true).unwrap();
    assert!(by_name("ca0").unwrap().up);
    n.set_promiscuous(true).unwrap();
    n.set_allmulticast(true).unwrap();
    n.set_mtu(1400).unwrap();
    assert_eq!(by_name("ca0").unwrap().mtu, 1400);
    if common::sysfs_ok() {
        let f = sys_flags("ca0");
        assert_ne!(f & libc::IFF_PROMISC as u32, 0, "flags {f:#x}");
        assert_ne!(f & libc::IFF_ALLMULTI as u32, 0, "flags {f:#x}");
        assert_eq!(
            std::fs::read_to_string("/sys/class/net/ca0/mtu")
                .unwrap()
                .trim(),
            "1400"
        );
    } else {
        common::skip("sysfs not remounted in the test namespace: flag checks via sysfs left out");
    }
    n.set_promiscuous(false).unwrap();
    n.set_allmulticast(false).unwrap();
    if common::sysfs_ok() {
        let f = sys_flags("ca0");
        assert_eq!(
            f & (libc::IFF_PROMISC | libc::IFF_ALLMULTI) as u32,
            0,
            "flags {f:#x}"
        );
    }
    let m1 = [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03];
    let m2 = [0x33, 0x33, 0x00, 0x00, 0x00, 0x42];
    n.set_multicast_list(&[m1, m2]).unwrap();
    let l = maddrs(p.a);
    assert!(l.contains(&"01005e010203".to_string()), "{l:?}");
    assert!(l.contains(&"333300000042".to_string()), "{l:?}");
    n.set_multicast_list(&[m2]).unwrap();
    let l = maddrs(p.a);
    assert!(!l.contains(&"01005e010203".to_string()), "{l:?}");
    assert!(l.contains(&"333300000042".to_string()), "{l:?}");
    n.set_multicast_list(&[]).unwrap();
    assert!(!maddrs(p.a).contains(&"333300000042".to_string()));
    let st = n.kernel_stats().unwrap();
    assert!(st.rx_errors == 0 && st.tx_errors == 0);
    // Rename while down: the handle follows.
    n.set_up(false).unwrap();
    rename_link("ca0", "ca1").unwrap();
    assert_eq!(n.name().unwrap(), "ca1");
    delete_link("ca1").unwrap();
    assert!(matches!(delete_link("ca1"), Err(NetdevError::NotFound(_))));
    assert!(matches!(n.name(), Err(NetdevError::NotFound(_))));
}

#[test]
fn pci_slot_from_fake_tree() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    let dev = r.join("sys/devices/LNXSYSTM:00/VMBUS:00/abcd/pci0000:00/0000:00:02.0");
    std::fs::create_dir_all(dev.join("net/eth1")).unwrap();
    std::fs::create_dir_all(r.join("sys/bus/pci/drivers/mlx5_core")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../bus/pci/drivers/mlx5_core",
        dev.join("driver"),
    )
    .unwrap();
    std::fs::create_dir_all(r.join("sys/class/net/eth1")).unwrap();
    std::os::unix::fs::symlink(
        "../../../devices/LNXSYSTM:00/VMBUS:00/abcd/pci0000:00/0000:00:02.0",
        r.join("sys/class/net/eth1/device"),
    )
    .unwrap();
    let w = |p: &str, s: &str| {
        let p = r.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    };
    w("sys/class/net/eth1/ifindex", "5\n");
    w("sys/class/net/eth1/address", "00:15:5d:01:02:03\n");
    w("sys/class/net/eth1/flags", "0x1003\n");
    w("sys/class/net/eth1/carrier", "1\n");
    w("sys/class/net/eth1/mtu", "1500\n");
    std::fs::create_dir_all(r.join("sys/class/net/eth1/queues/rx-0")).unwrap();
    std::fs::create_dir_all(r.join("sys/class/net/eth1/queues/rx-1")).unwrap();
    w("sys/bus/pci/slots/3/address", "0000:00:05\n");
    w("sys/bus/pci/slots/7/address", "0000:00:02\n");
    assert_eq!(pci_slot_of(r, "eth1"), Some(7));
    assert_eq!(pci_slot_of(r, "eth9"), None);
    let l = list(r).unwrap();
    assert_eq!(l.len(), 1);
    let i = &l[0];
    assert_eq!(
        (i.name.as_str(), i.ifindex, i.mtu, i.channels),
        ("eth1", 5, 1500, 2)
    );
    assert_eq!(i.mac, Some([0x00, 0x15, 0x5d, 1, 2, 3]));
    assert_eq!(i.pci_slot, Some(7));
    assert_eq!(i.driver.as_deref(), Some("mlx5_core"));
    assert!(i.up && i.running);
    assert_eq!(i.perm_mac, None);
    // No slot with that address: None.
    std::fs::remove_file(r.join("sys/bus/pci/slots/7/address")).unwrap();
    assert_eq!(pci_slot_of(r, "eth1"), None);
}

#[test]
fn veth_guest_end_in_another_namespace() {
    if !common::enter_netns() {
        return;
    }
    // A second namespace, held by a helper thread that answers lookups from inside it.
    let (tx, rx) = std::sync::mpsc::channel::<(i32, std::sync::mpsc::Sender<Option<NetdevInfo>>)>();
    let (fd_tx, fd_rx) = std::sync::mpsc::channel();
    let helper = std::thread::spawn(move || {
        // SAFETY: unshare only affects this helper thread.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        let f = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
        fd_tx.send(f).unwrap();
        for (_, reply) in rx {
            reply.send(by_name("ga0").ok()).unwrap();
        }
    });
    let ns = fd_rx.recv().unwrap();
    let (g, h) = create_veth(&VethSpec {
        guest: "ga0",
        host: "gb0",
        guest_mac: Some(common::mac(5)),
        host_mac: Some(common::mac(6)),
        queues: 4,
        guest_netns_fd: Some(std::os::fd::AsRawFd::as_raw_fd(&ns)),
    })
    .unwrap();
    assert!(
        matches!(by_name("ga0"), Err(NetdevError::NotFound(_))),
        "guest end must not be here"
    );
    let host = by_index(h).unwrap();
    assert_eq!(
        (host.name.as_str(), host.mac, host.channels),
        ("gb0", Some(common::mac(6)), 4)
    );
    let (rtx, rrx) = std::sync::mpsc::channel();
    tx.send((0, rtx)).unwrap();
    let guest = rrx
        .recv()
        .unwrap()
        .expect("guest end in the other namespace");
    assert_eq!(guest.ifindex, g);
    assert_eq!(guest.mac, Some(common::mac(5)));
    assert_eq!(guest.channels, 4);
    drop(tx);
    helper.join().unwrap();
    delete_link("gb0").unwrap();
}

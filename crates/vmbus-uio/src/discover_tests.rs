//! Discovery on trees built by [`crate::fake_tree`].

use std::fs;

use crate::discover::{discover, find_device};
use crate::error::UioError;
use crate::fake_tree::{DevSpec, FakeTree};
use crate::mapinfo::{MapKind, validate_nic_maps};

const U1: &str = "0a1b2c3d-0000-4000-8000-000000000001";
const U2: &str = "0a1b2c3d-0000-4000-8000-000000000002";
const U3: &str = "0a1b2c3d-0000-4000-8000-000000000003";

#[test]
fn discovers_every_field_of_a_uio_bound_nic() {
    let tree = FakeTree::new();
    let mut spec = DevSpec::nic(U1, 14, 3);
    spec.device_id = "{ABCDEF01-2345-6789-ABCD-EF0123456789}".into();
    spec.monitor_id = Some(97);
    tree.add(&spec);
    tree.add_channel(U1, 14, 0, Some(97), Some(32768));
    tree.add_channel(U1, 31, 2, None, None);
    tree.add_channel(U1, 30, 1, Some(5), Some(8192));
    fs::create_dir_all(tree.dev_dir(U1).join("channels/notanumber")).unwrap();

    let devs = discover(tree.root()).unwrap();
    assert_eq!(devs.len(), 1);
    let d = &devs[0];
    assert_eq!(d.uuid, U1);
    assert_eq!(d.class_id, "f8615163-df3e-46c5-913f-f2d2f965ed0e");
    assert_eq!(d.device_id, "abcdef01-2345-6789-abcd-ef0123456789");
    assert_eq!(d.relid, 14);
    assert_eq!(d.monitor_id, Some(97));
    assert_eq!(d.numa_node, 0);
    assert_eq!(d.driver.as_deref(), Some("uio_hv_generic"));
    assert!(d.is_netvsc && d.is_uio_bound());
    assert_eq!(d.iface, None);
    let uio = d.uio.as_ref().unwrap();
    assert_eq!(uio.number, 3);
    assert_eq!(uio.recv_gpadl, Some(11));
    assert_eq!(uio.send_gpadl, Some(12));
    let kinds: Vec<_> = uio
        .maps
        .iter()
        .map(|m| (m.index, m.kind.clone(), m.size))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (0, MapKind::TxRxRings, 32768),
            (1, MapKind::IntPage, 4096),
            (2, MapKind::MonitorPage, 4096),
            (3, MapKind::Recv { gpadl: 11 }, 65536),
            (4, MapKind::Send { gpadl: 12 }, 32768),
        ]
    );
    let chans: Vec<_> = d
        .channels
        .iter()
        .map(|c| (c.relid, c.subchannel_id, c.monitor_id, c.ring_size))
        .collect();
    assert_eq!(
        chans,
        vec![
            (14, 0, Some(97), Some(32768)),
            (30, 1, Some(5), Some(8192)),
            (31, 2, None, None)
        ]
    );
    let maps = validate_nic_maps(&uio.path, &uio.maps).unwrap();
    assert_eq!((maps.rings, maps.recv, maps.send), (32768, 65536, 32768));
}

#[test]
fn braces_decimal_sizes_missing_optionals_and_several_devices() {
    let tree = FakeTree::new();
    let mut a = DevSpec::nic(U2, 20, 1);
    a.class_id = "F8615163-DF3E-46C5-913F-F2D2F965ED0E".into(); // no braces, upper case
    a.monitor_id = None;
    a.numa_node = None;
    a.maps[0].1 = "32768".into(); // decimal size
    tree.add(&a);
    let mut b = DevSpec::nic(U1, 10, 0);
    b.driver = Some("hv_netvsc");
    b.uio = None;
    b.iface = Some("eth1");
    tree.add(&b);
    let mut c = DevSpec::nic(U3, 2, 9);
    c.class_id = "{0e0b6031-5213-4934-818b-38d90ced39db}".into(); // a shutdown device
    c.uio = None;
    c.driver = None;
    tree.add(&c);

    let devs = discover(tree.root()).unwrap();
    let ids: Vec<_> = devs.iter().map(|d| d.uuid.as_str()).collect();
    assert_eq!(ids, vec![U1, U2, U3]);
    assert_eq!(devs[0].iface.as_deref(), Some("eth1"));
    assert_eq!(devs[0].driver.as_deref(), Some("hv_netvsc"));
    assert!(devs[0].is_netvsc && !devs[0].is_uio_bound());
    assert!(devs[1].is_netvsc);
    assert_eq!(devs[1].monitor_id, None);
    assert_eq!(devs[1].numa_node, -1);
    assert_eq!(devs[1].uio.as_ref().unwrap().maps[0].size, 32768);
    assert!(!devs[2].is_netvsc);
    assert_eq!(devs[2].driver, None);
    assert_eq!(devs[2].uio, None);

    assert_eq!(find_device(tree.root(), "eth1").unwrap().uuid, U1);
    assert_eq!(
        find_device(tree.root(), &format!("{{{}}}", U2.to_uppercase()))
            .unwrap()
            .uuid,
        U2
    );
    let err = find_device(tree.root(), "eth9").unwrap_err();
    assert!(matches!(err, UioError::NotFound { .. }), "{err}");
}

#[test]
fn empty_root_has_no_devices() {
    let dir = tempfile::tempdir().unwrap();
    assert!(discover(dir.path()).unwrap().is_empty());
}

#[test]
fn missing_or_bad_attributes_name_the_file() {
    let tree = FakeTree::new();
    tree.add(&DevSpec::nic(U1, 14, 0));
    fs::remove_file(tree.dev_dir(U1).join("id")).unwrap();
    let err = discover(tree.root()).unwrap_err();
    assert!(
        matches!(&err, UioError::Missing { path } if path.ends_with(format!("{U1}/id"))),
        "{err}"
    );

    fs::write(tree.dev_dir(U1).join("id"), "fourteen\n").unwrap();
    let err = discover(tree.root()).unwrap_err();
    assert!(
        err.to_string().contains("/id: cannot parse \"fourteen\""),
        "{err}"
    );

    fs::write(tree.dev_dir(U1).join("id"), "14\n").unwrap();
    fs::write(tree.dev_dir(U1).join("monitor_id"), "300\n").unwrap();
    let err = discover(tree.root()).unwrap_err();
    assert!(err.to_string().contains("monitor_id"), "{err}");

    fs::write(tree.dev_dir(U1).join("monitor_id"), "3\n").unwrap();
    fs::write(tree.dev_dir(U1).join("uio/uio0/maps/map2/size"), "4k\n").unwrap();
    let err = discover(tree.root()).unwrap_err();
    assert!(err.to_string().contains("map2/size"), "{err}");
}

/// Discover the single device and validate its maps.
fn validate(tree: &FakeTree) -> Result<crate::mapinfo::NicMaps, UioError> {
    let devs = discover(tree.root())?;
    let uio = devs[0].uio.as_ref().unwrap();
    validate_nic_maps(&uio.path, &uio.maps)
}

#[test]
fn map_validation_errors_are_typed() {
    // Missing map 4.
    let tree = FakeTree::new();
    let mut spec = DevSpec::nic(U1, 14, 0);
    spec.maps.truncate(4);
    tree.add(&spec);
    let err = validate(&tree).unwrap_err();
    assert!(
        matches!(err, UioError::MissingMap { index: 4, .. }),
        "{err}"
    );

    // Wrong name at index 1 (swapped pages).
    let tree = FakeTree::new();
    let mut spec = DevSpec::nic(U1, 14, 0);
    spec.maps.swap(1, 2);
    tree.add(&spec);
    match validate(&tree).unwrap_err() {
        UioError::WrongMapName {
            index, found, path, ..
        } => {
            assert_eq!((index, found.as_str()), (1, "monitor_page"));
            assert!(path.ends_with("maps/map1/name"));
        }
        other => panic!("{other}"),
    }

    // Sizes: zero, not a page multiple, odd page count for the rings.
    for (k, size, why) in [
        (3, "0x0", "zero"),
        (1, "100", "not a multiple"),
        (0, "0x3000", "two rings"),
    ] {
        let tree = FakeTree::new();
        let mut spec = DevSpec::nic(U1, 14, 0);
        spec.maps[k].1 = size.into();
        tree.add(&spec);
        match validate(&tree).unwrap_err() {
            UioError::BadSize { path, why: w, .. } => {
                assert!(path.ends_with(format!("map{k}/size")), "{path:?}");
                assert!(w.contains(why), "{w}");
            }
            other => panic!("{other}"),
        }
    }

    // Bad GPADL text fails discovery itself.
    for name in ["recv:", "recv:x1", "send:-3", "send:99999999999"] {
        let tree = FakeTree::new();
        let mut spec = DevSpec::nic(U1, 14, 0);
        let k = if name.starts_with("recv") { 3 } else { 4 };
        spec.maps[k].0 = name.into();
        tree.add(&spec);
        match discover(tree.root()).unwrap_err() {
            UioError::BadGpadl { path, name: n } => {
                assert!(path.ends_with(format!("map{k}/name")));
                assert_eq!(n, name);
            }
            other => panic!("{name}: {other}"),
        }
    }
}

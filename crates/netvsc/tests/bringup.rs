//! Bring-up against the emulator, checked from the host's side (its stats).

mod common;

use std::time::Duration;

use common::*;
use hv_emu::backend::BackendConfig;
use netvsc::{Device, DeviceConfig, Error, Timeouts};

#[test]
fn default_bringup_negotiates_newest() {
    let rig = rig(BackendConfig::Sink);
    let dev = rig.open(quick()).unwrap();
    let info = dev.info().clone();
    let s = rig.emu.stats();
    assert_eq!(info.nvsp_version, 0x60001);
    assert_eq!(s.nvsp_version, Some(0x60001));
    let ndis = s.ndis_version.as_ref().unwrap();
    assert_eq!((ndis.major, ndis.minor), (6, 30));
    assert_eq!(info.mac, rig.emu.config().mac);
    assert_eq!(info.mtu, 1500);
    assert!(s.rndis_initialized);
    assert_eq!(info.queues, 1);
    assert!(info.agg.max_pkts >= 1 && info.agg.align >= 4);
    assert_eq!(info.send_section_size, 6144);
    eprintln!("{}", rig.emu.stats_json());
    dev.close().unwrap();
}

#[test]
fn each_single_version_host() {
    for v in [0x2u32, 0x30002, 0x40000, 0x50000, 0x60000, 0x60001] {
        let rig = rig_with(|c| c.accept_versions = Some(vec![v]));
        let dev = rig
            .open(DeviceConfig {
                queues: 4,
                ..quick()
            })
            .unwrap();
        let info = dev.info().clone();
        let s = rig.emu.stats();
        assert_eq!(info.nvsp_version, v);
        assert_eq!(s.nvsp_version, Some(v), "host agrees on {v:#x}");
        let ndis = s.ndis_version.as_ref().unwrap();
        let want = if v > 0x40000 { (6, 30) } else { (6, 1) };
        assert_eq!((ndis.major, ndis.minor), want, "NDIS version for {v:#x}");
        match &s.ndis_config {
            Some(c) => {
                assert!(v >= 0x30002, "NDIS_CONFIG only from v2");
                assert_eq!(c.mtu, 1514);
                let want_caps = if v >= 0x50000 { 0xc } else { 0x8 };
                assert_eq!(c.capabilities, want_caps, "caps for {v:#x}");
            }
            None => assert!(v < 0x30002, "NDIS_CONFIG missing at {v:#x}"),
        }
        let rss_queried = s.oids.queried.iter().any(|o| o == "0x00010203");
        assert_eq!(rss_queried, v >= 0x50000, "RSS caps only from v5");
        let want_q = if v >= 0x50000 { 4 } else { 1 };
        assert_eq!(info.queues, want_q);
        assert_eq!(s.subchannels, want_q - 1);
        assert_eq!(s.offload.revision, if v > 0x40000 { 3 } else { 2 });
        dev.close().unwrap();
    }
}

#[test]
fn silent_host_times_out_naming_the_step() {
    let rig = rig_with(|c| c.silent = true);
    let t = std::time::Instant::now();
    let err = rig
        .open(DeviceConfig {
            timeouts: Timeouts::all(Duration::from_millis(300)),
            ..DeviceConfig::default()
        })
        .unwrap_err();
    match err {
        Error::Timeout { step, waited } => {
            assert_eq!(step, "NVSP INIT");
            assert!(waited >= Duration::from_millis(300));
        }
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(err_text(&rig).contains("NVSP INIT"));
}

#[test]
fn cancelled_bring_up_stops_at_its_wait_and_the_device_opens_again() {
    let rig = rig_with(|c| c.silent = true);
    let cancel = netvsc::Cancel::new();
    let t = std::time::Instant::now();
    let c2 = cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        c2.cancel();
    });
    let err = rig
        .open(DeviceConfig {
            timeouts: Timeouts::all(Duration::from_secs(60)),
            cancel: Some(cancel),
            ..DeviceConfig::default()
        })
        .unwrap_err();
    canceller.join().unwrap();
    match err {
        Error::Cancelled { step } => assert_eq!(step, "NVSP INIT"),
        other => panic!("{other:?}"),
    }
    // Far below the 60 s limit: the wait looked at the token.
    assert!(t.elapsed() < Duration::from_secs(30));
    // Torn down: a new bring-up reaches the (still silent) host again instead of finding the device busy.
    assert!(err_text(&rig).contains("timed out"));
}

fn err_text(rig: &Rig) -> String {
    rig.open(DeviceConfig {
        timeouts: Timeouts::all(Duration::from_millis(50)),
        ..DeviceConfig::default()
    })
    .unwrap_err()
    .to_string()
}

#[test]
fn host_accepting_nothing_is_no_version() {
    let rig = rig_with(|c| c.accept_versions = Some(vec![]));
    match rig.open(quick()).unwrap_err() {
        Error::NoVersion { tried } => assert_eq!(tried.len(), 6),
        other => panic!("{other:?}"),
    }
    let s = rig.emu.stats();
    assert_eq!(s.nvsp_version, None);
}

#[test]
fn bad_config_rejected_before_io() {
    let rig = rig(BackendConfig::Sink);
    assert!(matches!(
        rig.open(DeviceConfig {
            mtu: 20000,
            ..quick()
        }),
        Err(Error::MtuOutOfRange {
            mtu: 20000,
            min: 1500,
            max: 9202
        })
    ));
    assert!(matches!(
        rig.open(DeviceConfig {
            mtu: 1499,
            ..quick()
        }),
        Err(Error::MtuOutOfRange { mtu: 1499, .. })
    ));
    assert!(matches!(
        rig.open(DeviceConfig {
            queues: 65,
            ..quick()
        }),
        Err(Error::Config { what: "queues", .. })
    ));
    assert!(matches!(
        rig.open(DeviceConfig {
            queues: 0,
            ..quick()
        }),
        Err(Error::Config { .. })
    ));
    assert!(Device::open(rig.path(), "no-such-device", quick()).is_err());
}

#[test]
fn latency_devarg_lands_in_each_channel_monitor_slot() {
    let rig = rig_with(|c| c.max_queues = 4);
    let args = netvsc::Devargs::parse("latency=0x20").unwrap();
    let dev = rig
        .open(DeviceConfig {
            devargs: args,
            queues: 4,
            ..quick()
        })
        .unwrap();
    assert_eq!(dev.info().queues, 4);
    let page = std::fs::read(rig.path().join("dev/uio0.maps/map2")).unwrap();
    let s = rig.emu.stats();
    let mut checked = 0;
    for c in &s.channels {
        if let Some(m) = c.monitor_id {
            let off = 576 + 2 * m as usize;
            assert_eq!(
                u16::from_le_bytes([page[off], page[off + 1]]),
                320,
                "channel {}",
                c.relid
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 4, "every channel is monitored in this host");
}

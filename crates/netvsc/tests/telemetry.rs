//! The telemetry page and the running-service capture from the Rust crate alone (no addon): `Device::maintain`
//! publishes the page, another reader sees the device's own counters in it, and a capture request written into
//! the page makes the queue handles mirror their bursts into a pcapng file.

mod common;

use common::*;
use hv_emu::backend::BackendConfig;
use netvsc::telemetry;
use netvsc::{DeviceConfig, RxPacket, TxPacket};
use pcap_file::pcapng::{Block, PcapNgReader, blocks::enhanced_packet::EnhancedPacketOption};

fn maintain_until(dev: &mut netvsc::Device, mut f: impl FnMut(&netvsc::Device) -> bool) -> bool {
    wait_for(10, || {
        dev.maintain().unwrap();
        f(dev)
    })
}

#[test]
fn maintain_publishes_the_page_and_serves_a_capture_request() {
    let rig = rig(BackendConfig::Loopback);
    let mut dev = rig.open(quick()).unwrap();
    dev.start().unwrap();
    let page = dev.telemetry_path().expect("a page").to_path_buf();
    assert_eq!(page, telemetry::page_path(rig.path(), &rig.uuid()));
    let mut q = dev.queues().remove(0);
    let f = ip_frame(128, dev.mac(), false, 7);
    let segs: [&[u8]; 1] = [&f];
    let pkts: Vec<TxPacket<'_>> = (0..20)
        .map(|_| TxPacket {
            segs: &segs,
            meta: Default::default(),
        })
        .collect();
    let mut out: Vec<RxPacket> = (0..32).map(|_| RxPacket::with_capacity(256)).collect();
    let mut echo = |q: &mut netvsc::QueuePair, n: usize| {
        send_all(q, &pkts[..n]);
        let mut got = 0;
        assert!(wait_for(10, || {
            got += q.rx_burst(&mut out);
            got >= n
        }));
        drain_tx(q);
    };
    echo(&mut q, 20);
    // The page shows what the device counts (read as another process would: a file read, no device).
    let t = dev.stats();
    assert!(maintain_until(&mut dev, |_| {
        telemetry::read(&page).is_ok_and(|s| s.port[0] == t.ipackets && s.port[1] == t.opackets)
    }));
    let s = telemetry::read(&page).unwrap();
    assert_eq!(s.pid, u64::from(std::process::id()));
    assert_eq!(s.queues.len(), 1);
    assert_eq!(s.queues[0][15], t.ipackets, "rx good packets of queue 0");
    assert!(s.link_up);
    // The device-level xstats (hv_*, vf_*) as dev.xstats() names and counts them.
    let x: std::collections::HashMap<String, u64> = dev.xstats().into_iter().collect();
    assert!(s.device.len() >= 10, "{:?}", s.device);
    for (name, v) in &s.device {
        assert!(name.starts_with("hv_") || name.starts_with("vf_"), "{name}");
        assert_eq!(x.get(name), Some(v), "{name}");
    }
    assert!(s.device.iter().any(|(n, _)| n == "hv_unknown_completions"));
    assert!(s.device.iter().any(|(n, _)| n == "vf_switches"));

    // A capture asked for through the page: the next bursts are mirrored, 10 frames, then it stops.
    let pcap = rig.path().join("rust.pcapng");
    let id = telemetry::request_capture(&page, Some(&pcap), 10, 0).unwrap();
    assert!(maintain_until(&mut dev, |d| d.tap().is_on()));
    assert!(maintain_until(&mut dev, |_| {
        telemetry::read(&page).is_ok_and(|s| s.capture_id == id)
    }));
    echo(&mut q, 8);
    assert!(!dev.tap().is_on(), "stopped at its count");
    assert!(maintain_until(&mut dev, |_| {
        telemetry::read(&page).is_ok_and(|s| s.capture_done == id && s.capture_frames == 10)
    }));
    let data = std::fs::read(&pcap).unwrap();
    let mut r = PcapNgReader::new(&data[..]).unwrap();
    let mut flags = Vec::new();
    while let Some(b) = r.next_block() {
        if let Block::EnhancedPacket(p) = b.unwrap() {
            assert_eq!(&p.data[..], &f[..], "the frame's bytes");
            for o in &p.options {
                if let EnhancedPacketOption::Flags(x) = o {
                    flags.push(*x);
                }
            }
        }
    }
    assert_eq!(flags.len(), 10);
    assert_eq!(&flags[..8], &[2; 8], "the tx burst first (outbound)");
    assert_eq!(
        &flags[8..],
        &[1, 1],
        "then the rx burst (inbound) up to the count"
    );
    dev.close().unwrap();
    assert!(!page.exists(), "close removes the page");
}

#[test]
fn the_page_is_off_when_asked() {
    let rig = rig(BackendConfig::Sink);
    let mut dev = rig
        .open(DeviceConfig {
            telemetry: false,
            ..quick()
        })
        .unwrap();
    dev.maintain().unwrap();
    assert!(dev.telemetry_path().is_none());
    assert!(!telemetry::page_path(rig.path(), &rig.uuid()).exists());
}

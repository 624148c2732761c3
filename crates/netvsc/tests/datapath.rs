//! Tx and rx against the emulator; counts reconciled with the host's own counters.

mod common;

use common::*;
use hv_emu::backend::BackendConfig;
use netvsc::{Csum, Devargs, DeviceConfig, RxPacket, TxMeta, TxOffload, TxPacket};

fn long() -> bool {
    std::env::var("NETVSC_LONG").is_ok_and(|v| v == "1")
}

/// Send `count` frames of `size` bytes in bursts of 32 on a sink host; check both sides agree.
fn tx_class(size: usize, mtu: u32, count: usize, tso: bool) {
    let rig = rig_with(|c| {
        c.backend = BackendConfig::Sink;
        c.mtu = mtu;
    });
    let dev = rig.open(DeviceConfig { mtu, ..quick() }).unwrap();
    let mut q = dev.queues().remove(0);
    let frame = ip_frame(size, PEER_MAC, tso, 7);
    let meta = if tso {
        TxMeta {
            vlan_tci: None,
            offload: TxOffload::Tso {
                ipv6: false,
                mss: 1448,
                l2_len: 14,
                l3_len: 20,
            },
        }
    } else {
        TxMeta::default()
    };
    let segs: [&[u8]; 1] = [&frame];
    let burst: Vec<TxPacket<'_>> = (0..32).map(|_| TxPacket { segs: &segs, meta }).collect();
    let mut left = count;
    while left > 0 {
        let n = left.min(32);
        send_all(&mut q, &burst[..n]);
        left -= n;
    }
    drain_tx(&mut q);
    let t = dev.stats();
    assert_eq!(t.opackets, count as u64, "driver counted on completion");
    assert_eq!(t.obytes, (count * size) as u64);
    let s = rig.emu.stats();
    assert_eq!(
        s.totals.guest_to_host_frames, count as u64,
        "host saw every frame"
    );
    assert_eq!(s.totals.guest_to_host_bytes, (count * size) as u64);
    if tso {
        let segs: u64 = s.channels.iter().map(|c| c.lso_segments).sum();
        assert_eq!(
            segs,
            (count * (size - 54).div_ceil(1448)) as u64,
            "host segmented at the MSS"
        );
    }
    assert_eq!(s.totals.drops.tx_malformed, 0);
    dev.close().unwrap();
}

#[test]
fn tx_64() {
    tx_class(64, 1500, if long() { 1_000_000 } else { 20_000 }, false);
}

#[test]
fn tx_1500() {
    tx_class(1514, 1500, if long() { 1_000_000 } else { 5_000 }, false);
}

#[test]
fn tx_9000_jumbo() {
    tx_class(9014, 9000, if long() { 1_000_000 } else { 1_000 }, false);
}

#[test]
fn tx_65536_tso() {
    tx_class(65536, 1500, if long() { 1_000_000 } else { 200 }, true);
}

#[test]
fn aggregation_limits_seen_by_host() {
    let rig = rig(BackendConfig::Sink);
    let dev = rig.open(quick()).unwrap();
    let agg = dev.info().agg;
    let mut q = dev.queues().remove(0);
    let frame = ip_frame(64, PEER_MAC, false, 1);
    let segs: [&[u8]; 1] = [&frame];
    let burst: Vec<TxPacket<'_>> = (0..64)
        .map(|_| TxPacket {
            segs: &segs,
            meta: TxMeta::default(),
        })
        .collect();
    for _ in 0..20 {
        send_all(&mut q, &burst);
    }
    drain_tx(&mut q);
    let s = rig.emu.stats();
    let per = &s.channels[0].rndis_per_section;
    assert_eq!(s.totals.guest_to_host_frames, 64 * 20);
    // The host also counts the bring-up's RNDIS control messages as one-message sections.
    assert!(per.messages >= 64 * 20, "{per:?}");
    assert_eq!(
        per.max,
        u64::from(agg.max_pkts),
        "sections filled to the host's packets-per-message"
    );
    assert!(
        per.sections <= (64 * 20 / agg.max_pkts as u64) + 20,
        "{per:?}"
    );
    assert_eq!(s.totals.drops.tx_malformed, 0);
}

#[test]
fn loopback_rx_copy_and_metadata() {
    let rig = rig(BackendConfig::Loopback);
    let mut dev = rig.open(quick()).unwrap();
    dev.start().unwrap();
    let mac = dev.mac();
    let mut q = dev.queues().remove(0);
    let sizes = [60usize, 64, 200, 1514];
    let frames: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, s)| ip_frame(*s, mac, false, i as u8))
        .collect();
    let segs: Vec<[&[u8]; 1]> = frames.iter().map(|f| [f.as_slice()]).collect();
    let pkts: Vec<TxPacket<'_>> = segs
        .iter()
        .map(|s| TxPacket {
            segs: s,
            meta: TxMeta::default(),
        })
        .collect();
    send_all(&mut q, &pkts);
    let mut out: Vec<RxPacket> = (0..8).map(|_| RxPacket::with_capacity(2048)).collect();
    let mut got = Vec::new();
    assert!(wait_for(10, || {
        let n = q.rx_burst(&mut out);
        got.extend(out[..n].iter().map(|p| p.data.clone()));
        got.len() >= frames.len()
    }));
    assert_eq!(got, frames, "frames come back intact and in order");
    assert_eq!(dev.stats().ipackets, frames.len() as u64);
    drain_tx(&mut q);
    assert_eq!(
        rig.emu.stats().totals.host_to_guest_frames,
        frames.len() as u64
    );
}

#[test]
fn vlan_and_checksum_ppis() {
    let rig = rig(BackendConfig::Loopback);
    let mut dev = rig.open(quick()).unwrap();
    dev.start().unwrap();
    let mac = dev.mac();
    let mut q = dev.queues().remove(0);
    // 1. VLAN flag + checksum request: the host inserts the tag and fills checksums; the loopback
    //    returns the tagged frame, which the host strips into an rx PPI.
    let plain = ip_frame(300, mac, false, 3);
    let segs: [&[u8]; 1] = [&plain];
    let csum = TxOffload::Checksum {
        ipv6: false,
        ip_hdr: true,
        l4: netvsc::L4Proto::Udp,
        l2_len: 14,
        l3_len: 20,
    };
    send_all(
        &mut q,
        &[TxPacket {
            segs: &segs,
            meta: TxMeta {
                vlan_tci: Some(0x6123),
                offload: csum,
            },
        }],
    );
    // 2. A tagged frame without the flag: the driver moves the tag into the PPI.
    let mut tagged = plain.clone();
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x42]);
    let segs2: [&[u8]; 2] = [&tagged[..14], &tagged[14..]];
    send_all(
        &mut q,
        &[TxPacket {
            segs: &segs2,
            meta: TxMeta::default(),
        }],
    );
    let mut out: Vec<RxPacket> = (0..4).map(|_| RxPacket::with_capacity(2048)).collect();
    let mut got = Vec::new();
    assert!(wait_for(10, || {
        let n = q.rx_burst(&mut out);
        got.extend(out[..n].iter().map(|p| (p.data.clone(), p.meta)));
        got.len() >= 2
    }));
    let (d0, m0) = &got[0];
    assert_eq!(m0.vlan_tci, Some(0x6123));
    assert_eq!(d0.len(), 300, "host strips the tag on rx");
    assert_eq!(&d0[34 + 8..], &plain[34 + 8..]);
    assert_ne!(&d0[24..26], &[0, 0], "host filled the IPv4 header checksum");
    assert_eq!(m0.ip_csum, Csum::Good);
    let (d1, m1) = &got[1];
    assert_eq!(m1.vlan_tci, Some(0x42));
    assert_eq!(d1, &plain);
}

#[test]
fn zero_copy_views_hold_host_buffers() {
    let rig = rig(BackendConfig::Loopback);
    let args = Devargs::parse("rx_copybreak=256,rx_extmbuf_enable=1").unwrap();
    let mut dev = rig
        .open(DeviceConfig {
            devargs: args,
            ..quick()
        })
        .unwrap();
    dev.start().unwrap();
    let mac = dev.mac();
    let mut q = dev.queues().remove(0);
    let big = ip_frame(1000, mac, false, 9);
    let small = ip_frame(100, mac, false, 5);
    let (sb, ss): ([&[u8]; 1], [&[u8]; 1]) = ([&big], [&small]);
    let pkts = [
        TxPacket {
            segs: &sb,
            meta: TxMeta::default(),
        },
        TxPacket {
            segs: &ss,
            meta: TxMeta::default(),
        },
    ];
    send_all(&mut q, &pkts);
    let mut out: Vec<RxPacket> = (0..4).map(|_| RxPacket::with_capacity(2048)).collect();
    let mut views = Vec::new();
    let mut copies = Vec::new();
    assert!(wait_for(10, || {
        let n = q.rx_burst(&mut out);
        for p in &mut out[..n] {
            match p.view.take() {
                Some(v) => views.push(v),
                None => copies.push(p.data.clone()),
            }
        }
        views.len() + copies.len() >= 2
    }));
    assert_eq!(
        (views.len(), copies.len()),
        (1, 1),
        "large frame zero-copy, small one copied"
    );
    assert_eq!(copies[0], small);
    let mut buf = vec![0u8; 1000];
    q.read_view(&views[0], &mut buf).unwrap();
    assert_eq!(buf, big);
    assert_eq!(q.rx_views_outstanding(), 1);
    // The host has not had its buffer back yet.
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(
        rig.emu.stats().recv_outstanding >= 1,
        "completion withheld while the view is out"
    );
    q.release(views.pop().unwrap());
    assert_eq!(q.rx_views_outstanding(), 0);
    assert!(
        wait_for(5, || rig.emu.stats().recv_outstanding == 0),
        "completion sent after release"
    );
}

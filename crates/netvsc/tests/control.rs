//! Controls, link and VF events, MTU re-init, checked against what the emulated host recorded.

mod common;

use common::*;
use hv_emu::backend::BackendConfig;
use netvsc::{DeviceConfig, Error, Event};

#[test]
fn packet_filter_values_follow_dpdk() {
    let rig = rig(BackendConfig::Sink);
    let mut dev = rig.open(quick()).unwrap();
    dev.set_promiscuous(true).unwrap(); // stopped: recorded only
    dev.start().unwrap();
    dev.set_promiscuous(false).unwrap();
    dev.set_allmulticast(false).unwrap();
    dev.set_promiscuous(true).unwrap();
    dev.set_allmulticast(true).unwrap(); // promiscuous: recorded only
    dev.set_promiscuous(false).unwrap();
    dev.stop().unwrap();
    assert_eq!(
        rig.emu.stats().packet_filters,
        vec![0x20, 0xD, 0x9, 0x20, 0xD, 0]
    );
    assert_eq!(dev.packet_filter(), 0);
}

#[test]
fn mac_and_vlan_filters_are_refused_clearly() {
    let rig = rig(BackendConfig::Sink);
    let mut dev = rig.open(quick()).unwrap();
    for err in [
        dev.set_mac([2, 0, 0, 0, 0, 1]).unwrap_err(),
        dev.add_mac([2; 6]).unwrap_err(),
        dev.add_vlan_filter(5).unwrap_err(),
    ] {
        assert!(matches!(err, Error::NotSupported(_)));
        assert!(
            err.to_string().ends_with("not supported by Hyper-V"),
            "{err}"
        );
    }
    assert_eq!(dev.mac(), rig.emu.config().mac);
    let mc = [[0x01, 0, 0x5e, 0, 0, 1], [0x33, 0x33, 0, 0, 0, 1]];
    dev.set_multicast_list(&mc).unwrap();
    assert_eq!(dev.multicast_list(), &mc);
    assert!(dev.set_multicast_list(&[[0x02, 0, 0, 0, 0, 1]]).is_err());
}

#[test]
fn link_events_and_query() {
    let rig = rig(BackendConfig::Sink);
    let mut dev = rig.open(quick()).unwrap();
    dev.start().unwrap();
    assert!(dev.link().unwrap().up);
    assert_eq!(dev.link().unwrap().mbps(), 10_000);
    rig.emu.set_link(false);
    let mut seen = Vec::new();
    assert!(wait_for(10, || {
        dev.poll_control();
        while let Some(e) = dev.next_event() {
            seen.push(e);
        }
        seen.contains(&Event::LinkDown)
    }));
    assert!(!dev.cached_link().up);
    assert!(!dev.link().unwrap().up, "RNDIS query agrees");
    rig.emu.set_link_speed(400_000_000);
    rig.emu.set_link(true);
    assert!(wait_for(10, || {
        dev.poll_control();
        while let Some(e) = dev.next_event() {
            seen.push(e);
        }
        seen.contains(&Event::LinkUp)
    }));
    let l = dev.link().unwrap();
    assert!(l.up);
    assert_eq!(l.speed_100bps, 400_000_000);
}

#[test]
fn vf_association_and_datapath_switch_back_on_close() {
    let rig = rig(BackendConfig::Sink);
    let mut dev = rig.open(quick()).unwrap();
    dev.start().unwrap();
    assert!(rig.emu.send_vf_association(true, 7));
    assert!(wait_for(10, || {
        dev.poll_control();
        dev.vf().is_some()
    }));
    assert_eq!(dev.vf(), Some(7));
    let mut evs = Vec::new();
    while let Some(e) = dev.next_event() {
        evs.push(e);
    }
    assert!(evs.contains(&Event::VfAssociation {
        allocated: true,
        serial: 7
    }));
    dev.switch_datapath(true).unwrap();
    assert!(dev.datapath_is_vf());
    assert!(wait_for(5, || rig.emu.stats().data_path == vec![1]));
    dev.close().unwrap();
    let s = rig.emu.stats();
    assert!(
        wait_for(5, || rig.emu.stats().data_path == vec![1, 0]),
        "{:?}",
        s.data_path
    );
    // Synthetic data path restored before the filter was cleared.
    assert_eq!(rig.emu.stats().packet_filters.last(), Some(&0));
}

#[test]
fn mtu_change_is_full_reinit_and_refused_while_started() {
    let rig = rig_with(|c| c.mtu = 9000);
    let mut dev = rig.open(quick()).unwrap();
    assert_eq!(rig.emu.stats().ndis_config.unwrap().mtu, 1514);
    dev.start().unwrap();
    assert!(matches!(dev.set_mtu(9000), Err(Error::Started(_))));
    dev.stop().unwrap();
    dev.set_mtu(9000).unwrap();
    assert_eq!(dev.config().mtu, 9000);
    assert_eq!(
        rig.emu.stats().ndis_config.unwrap().mtu,
        9014,
        "host saw the new MTU"
    );
    dev.start().unwrap();
    let mut q = dev.queues().remove(0);
    let f = ip_frame(9014, PEER_MAC, false, 1);
    let segs: [&[u8]; 1] = [&f];
    send_all(
        &mut q,
        &[netvsc::TxPacket {
            segs: &segs,
            meta: Default::default(),
        }],
    );
    drain_tx(&mut q);
    assert_eq!(dev.stats().opackets, 1);
}

#[test]
fn multi_queue_rss_spreads_rx_and_tx_uses_each_channel() {
    for n in [1u16, 2, 4, 8] {
        let rig = rig_with(|c| {
            c.max_queues = 8;
            c.backend = BackendConfig::Generator(hv_emu::backend::GeneratorConfig {
                rate_pps: None,
                frame_sizes: vec![128],
                flows: 64,
                limit: Some(4000),
                dst_mac: c.mac,
                ..Default::default()
            });
        });
        let mut dev = rig
            .open(DeviceConfig {
                queues: n,
                ..quick()
            })
            .unwrap();
        assert_eq!(dev.info().queues, n);
        let s = rig.emu.stats();
        assert_eq!(s.subchannels, n - 1);
        if n > 1 {
            assert!(s.rss.enabled);
            assert_eq!(s.rss.table.iter().copied().max(), Some(u32::from(n - 1)));
        }
        dev.start().unwrap();
        let mut qs = dev.queues();
        let mut out: Vec<netvsc::RxPacket> = (0..32)
            .map(|_| netvsc::RxPacket::with_capacity(256))
            .collect();
        let mut per_q = vec![0u64; n as usize];
        let ok = wait_for(20, || {
            for q in qs.iter_mut() {
                let k = q.rx_burst(&mut out);
                for p in &out[..k] {
                    assert_eq!(p.meta.queue, q.id());
                    if n > 1 {
                        assert!(p.meta.rss_hash.is_some());
                    }
                }
                per_q[q.id() as usize] += k as u64;
            }
            per_q.iter().sum::<u64>() >= 4000
        });
        assert!(ok, "received {per_q:?} host {}", rig.emu.stats_json());
        let busy = per_q.iter().filter(|c| **c > 0).count();
        assert_eq!(busy, n as usize, "RSS spread over every queue: {per_q:?}");
        assert_eq!(rig.emu.stats().totals.host_to_guest_frames, 4000);
        // Tx on each queue lands on that queue's channel.
        let f = ip_frame(100, PEER_MAC, false, 0);
        let segs: [&[u8]; 1] = [&f];
        for q in qs.iter_mut() {
            let burst: Vec<netvsc::TxPacket<'_>> = (0..=q.id())
                .map(|_| netvsc::TxPacket {
                    segs: &segs,
                    meta: Default::default(),
                })
                .collect();
            send_all(q, &burst);
            drain_tx(q);
        }
        let s = rig.emu.stats();
        for c in &s.channels {
            assert_eq!(
                c.guest_to_host_frames,
                u64::from(c.subchannel_id) + 1,
                "channel {c:?}"
            );
        }
        dev.stop().unwrap();
    }
}

//! Runtime reconfiguration against the emulated host: `set_queues` under load with frames left in every ring,
//! the backlog and a half-read cursor (every frame handed over exactly once, in flow order; host tx equals
//! driver rx plus counted drops and driver tx equals host rx after each change), and `set_rss` with the host's
//! steering checked per channel from the emulator's counters against the Toeplitz hash of every injected frame.

mod common;

use std::collections::BTreeMap;

use common::*;
use hv_emu::backend::{BackendConfig, CaptureHandle, build_flow_frame};
use hv_emu::host::frame;
use netvsc::ndis::hash_types;
use netvsc::{DeviceConfig, Error, RssUpdate, RxPacket, TxPacket};
use netvsc_proto::toeplitz;

const FLOWS: u32 = 32;
const LEN: usize = 128;

/// Frame `seq` of flow `flow` (TCP for even flows, UDP for odd), the sequence number in its last 4 bytes.
fn frame_of(dst: [u8; 6], flow: u32, seq: u32) -> Vec<u8> {
    let mut f = build_flow_frame(dst, flow, LEN);
    f[LEN - 4..].copy_from_slice(&seq.to_le_bytes());
    f
}

fn seq_of(p: &RxPacket) -> u32 {
    let d = &p.data;
    u32::from_le_bytes(d[d.len() - 4..].try_into().unwrap())
}

/// The queue the host steers `f` to under `key`/`table`/`types`, and its hash.
fn steer(f: &[u8], key: &[u8; 40], table: &[u16; 128], types: u32) -> (u16, u32) {
    let mut input = [0u8; 36];
    let info = hash_types_to_info(types);
    let (len, _) = frame::rss_input(f, info, &mut input).expect("hashable frame");
    let h = toeplitz::hash(key, &input[..len]);
    (table[h as usize % 128], h)
}

fn hash_types_to_info(types: u32) -> u32 {
    netvsc_proto::ndis::hash_info::FUNCTION_TOEPLITZ | types
}

/// Inject `n` frames (round robin over the flows), sequence numbers from `first`; returns them by sequence.
fn inject(cap: &CaptureHandle, dst: [u8; 6], first: u32, n: u32) -> BTreeMap<u32, (u32, Vec<u8>)> {
    let mut sent = BTreeMap::new();
    for seq in first..first + n {
        let flow = seq % FLOWS;
        let f = frame_of(dst, flow, seq);
        cap.inject(&f);
        sent.insert(seq, (flow, f));
    }
    sent
}

/// Poll every queue until `want` frames came; returns (queue, seq, hash) in arrival order per queue.
fn receive(qs: &mut [netvsc::QueuePair], want: usize) -> Vec<(u16, u32, Option<u32>)> {
    let mut out: Vec<RxPacket> = (0..32).map(|_| RxPacket::with_capacity(256)).collect();
    let mut got = Vec::new();
    let ok = wait_for(20, || {
        for q in qs.iter_mut() {
            let k = q.rx_burst(&mut out);
            for p in &out[..k] {
                assert_eq!(
                    p.meta.queue,
                    q.id(),
                    "a frame says the queue that returned it"
                );
                got.push((q.id(), seq_of(p), p.meta.rss_hash));
            }
        }
        got.len() >= want
    });
    assert!(ok, "received {} of {want}", got.len());
    got
}

/// Every sequence number once, and each flow's frames in sequence order.
fn check_exactly_once_in_flow_order(got: &[(u16, u32, Option<u32>)], first: u32, n: u32) {
    let mut seen: Vec<u32> = got.iter().map(|g| g.1).collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (first..first + n).collect::<Vec<_>>(),
        "each frame exactly once"
    );
    let mut last: BTreeMap<u32, u32> = BTreeMap::new();
    for &(_, seq, _) in got {
        let flow = seq % FLOWS;
        if let Some(prev) = last.insert(flow, seq) {
            assert!(prev < seq, "flow {flow}: {seq} after {prev}");
        }
    }
}

fn send_on(q: &mut netvsc::QueuePair, n: usize) {
    let f = ip_frame(100, PEER_MAC, false, q.id() as u8);
    let segs: [&[u8]; 1] = [&f];
    let pkts: Vec<TxPacket<'_>> = (0..n)
        .map(|_| TxPacket {
            segs: &segs,
            meta: Default::default(),
        })
        .collect();
    send_all(q, &pkts);
}

fn per_channel(rig: &Rig) -> Vec<u64> {
    rig.emu
        .stats()
        .channels
        .iter()
        .map(|c| c.host_to_guest_frames)
        .collect()
}

#[test]
fn set_queues_hands_over_every_delivered_frame_and_counts_reconcile() {
    let cap = CaptureHandle::default();
    let rig = rig_with(|c| {
        c.max_queues = 8;
        c.backend = BackendConfig::Capture(cap.clone());
    });
    let mac = rig.emu.config().mac;
    let mut dev = rig
        .open(DeviceConfig {
            queues: 4,
            ..quick()
        })
        .unwrap();
    dev.start().unwrap();
    let mut qs = dev.queues();

    // Frames delivered into all four rings, nobody polling; sends on every queue left uncompleted.
    let n1 = 600;
    inject(&cap, mac, 0, n1);
    assert!(wait_for(10, || rig.emu.stats().totals.host_to_guest_frames
        == u64::from(n1)));
    let before = per_channel(&rig);
    assert!(before.iter().all(|&c| c > 0), "RSS spread: {before:?}");
    for q in qs.iter_mut() {
        send_on(q, 40);
    }
    // Queue 0's frames go to the stall backlog (the control path reads through them); queue 1 is left with a
    // half-read cursor.
    dev.poll_control();
    let mut few: Vec<RxPacket> = (0..3).map(|_| RxPacket::with_capacity(256)).collect();
    let early = qs[1].rx_burst(&mut few);
    assert_eq!(early, 3);
    let mut got: Vec<(u16, u32, Option<u32>)> = few
        .iter()
        .map(|p| (1, seq_of(p), p.meta.rss_hash))
        .collect();

    dev.set_queues(2).unwrap();
    assert_eq!(dev.info().queues, 2);
    let s = rig.emu.stats();
    assert_eq!(s.subchannels, 1, "the host's session has one subchannel");
    assert_eq!(
        s.rss.table.iter().copied().max(),
        Some(1),
        "table over 2 queues"
    );
    assert_eq!(qs[2].retired(), Some(2));
    assert_eq!(qs[3].retired(), Some(2));
    assert_eq!(qs[0].retired(), None);
    let mut out: Vec<RxPacket> = (0..8).map(|_| RxPacket::with_capacity(256)).collect();
    assert_eq!(qs[3].rx_burst(&mut out), 0, "a removed queue takes nothing");
    let f = ip_frame(100, PEER_MAC, false, 9);
    let segs: [&[u8]; 1] = [&f];
    assert_eq!(
        qs[2].tx_burst(&[TxPacket {
            segs: &segs,
            meta: Default::default()
        }]),
        0
    );
    let mut live: Vec<netvsc::QueuePair> = qs.drain(..2).collect();
    got.extend(receive(&mut live, (n1 - 3) as usize));
    check_exactly_once_in_flow_order(&got, 0, n1);
    for q in live.iter_mut() {
        drain_tx(q);
    }
    let t = dev.stats();
    let h = rig.emu.stats().totals;
    assert_eq!(t.ipackets, h.host_to_guest_frames, "host tx = driver rx");
    assert_eq!((t.imissed, t.ierrors, h.drops.total()), (0, 0, 0));
    assert_eq!(t.opackets, 160, "every send before the change completed");
    assert_eq!(t.opackets, h.guest_to_host_frames, "driver tx = host rx");
    let x: BTreeMap<String, u64> = dev.xstats().into_iter().collect();
    assert_eq!(x["hv_tx_unsettled"], 0);
    assert!(
        x.keys().all(|k| !k.starts_with("rx_q2_")),
        "xstats list the live queues"
    );

    // After the change the host steers over queues 0 and 1 only, as the table says.
    let at = per_channel(&rig);
    let n2 = 400;
    let sent = inject(&cap, mac, n1, n2);
    let got2 = receive(&mut live, n2 as usize);
    check_exactly_once_in_flow_order(&got2, n1, n2);
    let rss = dev.rss();
    let mut want = [0u64; 2];
    for &(q, seq, hash) in &got2 {
        let (to, h) = steer(&sent[&seq].1, &rss.key, &rss.table, rss.hash_types);
        assert_eq!((q, hash), (to, Some(h)), "frame {seq}");
        want[usize::from(to)] += 1;
    }
    let after = per_channel(&rig);
    let delta: Vec<u64> = after.iter().zip(&at).map(|(a, b)| a - b).collect();
    assert_eq!(
        &delta[..2],
        &want,
        "host per-channel counts = the new table's"
    );
    assert_eq!(
        &delta[2..],
        &[0, 0],
        "nothing on the old session's channels"
    );

    // Grow back to 4: the live handles stay, two new queues appear, the removed handles stay removed.
    dev.set_queues(4).unwrap();
    assert_eq!(rig.emu.stats().subchannels, 3);
    assert_eq!(
        qs[0].retired(),
        Some(2),
        "an old removed handle stays removed"
    );
    let mut all = dev.queues();
    assert_eq!(all.len(), 4);
    let n3 = 400;
    inject(&cap, mac, n1 + n2, n3);
    drop(live);
    let got3 = receive(&mut all, n3 as usize);
    check_exactly_once_in_flow_order(&got3, n1 + n2, n3);
    let mut by_q = [0u32; 4];
    got3.iter().for_each(|g| by_q[usize::from(g.0)] += 1);
    assert!(by_q.iter().all(|&c| c > 0), "four queues again: {by_q:?}");
    for q in all.iter_mut() {
        send_on(q, 5);
        drain_tx(q);
    }
    let t = dev.stats();
    let h = rig.emu.stats().totals;
    assert_eq!(t.ipackets, u64::from(n1 + n2 + n3));
    assert_eq!(t.ipackets + t.imissed, h.host_to_guest_frames);
    assert_eq!(t.opackets, h.guest_to_host_frames);
    dev.close().unwrap();
}

#[test]
fn set_queues_while_an_application_thread_keeps_polling_loses_nothing() {
    let cap = CaptureHandle::default();
    let rig = rig_with(|c| {
        c.max_queues = 8;
        c.backend = BackendConfig::Capture(cap.clone());
    });
    let mac = rig.emu.config().mac;
    let mut dev = rig
        .open(DeviceConfig {
            queues: 4,
            ..quick()
        })
        .unwrap();
    dev.start().unwrap();
    let qs = dev.queues();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut qs = qs;
            let mut out: Vec<RxPacket> = (0..16).map(|_| RxPacket::with_capacity(256)).collect();
            let mut got = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for q in qs.iter_mut() {
                    let k = q.rx_burst(&mut out);
                    got.extend(out[..k].iter().map(seq_of));
                }
            }
            (got, qs)
        })
    };
    // Traffic before, during and after each change.
    let mut total = 0u32;
    for (round, n) in [(0u32, 3u16), (1, 1), (2, 2)] {
        inject(&cap, mac, round * 500, 250);
        std::thread::sleep(std::time::Duration::from_millis(5));
        dev.set_queues(n).unwrap();
        inject(&cap, mac, round * 500 + 250, 250);
        total += 500;
        assert!(wait_for(10, || rig.emu.stats().totals.host_to_guest_frames
            >= u64::from(total)));
    }
    // The poller holds the original four handles. Queue 0 lives through 4 → 3 → 1 → 2; queue 1 was removed at
    // the change to 1 and is a new cell after the change to 2, so its last frames need a fresh handle.
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut got, old) = poller.join().unwrap();
    assert_eq!(old[1].retired(), Some(1));
    let mut now = dev.queues();
    let mut out: Vec<RxPacket> = (0..32).map(|_| RxPacket::with_capacity(256)).collect();
    assert!(wait_for(10, || {
        for q in now.iter_mut() {
            let k = q.rx_burst(&mut out);
            got.extend(out[..k].iter().map(seq_of));
        }
        got.len() >= total as usize
    }));
    got.sort_unstable();
    let want: Vec<u32> = (0..3).flat_map(|r| r * 500..r * 500 + 500).collect();
    assert_eq!(
        got, want,
        "every delivered frame exactly once across three changes"
    );
    let t = dev.stats();
    let h = rig.emu.stats().totals;
    assert_eq!(
        (t.ipackets + t.imissed, h.host_to_guest_frames),
        (u64::from(total), u64::from(total))
    );
    assert_eq!(h.drops.total(), 0);
}

#[test]
fn set_rss_moves_the_hosts_steering_to_the_new_table_without_reopening() {
    let cap = CaptureHandle::default();
    let rig = rig_with(|c| {
        c.max_queues = 8;
        c.backend = BackendConfig::Capture(cap.clone());
    });
    let mac = rig.emu.config().mac;
    let mut dev = rig
        .open(DeviceConfig {
            queues: 4,
            ..quick()
        })
        .unwrap();
    dev.start().unwrap();
    let mut qs = dev.queues();
    let filters = rig.emu.stats().packet_filter_changes;
    let sets = rig.emu.stats().rss.sets;

    // Frames already in the rings stay where they are through the change.
    let n0 = 200;
    inject(&cap, mac, 0, n0);
    assert!(wait_for(10, || rig.emu.stats().totals.host_to_guest_frames
        == u64::from(n0)));

    let key: [u8; 40] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    let table: [u16; 128] = std::array::from_fn(|b| ((b * 7 + 3) % 4) as u16);
    let types = hash_types::IPV4 | hash_types::TCP_IPV4;
    dev.set_rss(RssUpdate {
        key: Some(key),
        table: Some(table),
        hash_types: Some(types),
    })
    .unwrap();
    let s = rig.emu.stats();
    assert_eq!(
        s.rss.sets,
        sets + 2,
        "RSS disabled, then the new parameters"
    );
    assert_eq!(
        s.packet_filter_changes, filters,
        "no re-initialisation (it would set the filter again)"
    );
    assert_eq!(s.rss.table, table.map(u32::from).to_vec());
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(serde_json::to_value(&s.rss).unwrap()["key"], hex);
    assert_eq!(s.rss.hash_info, hash_types_to_info(types));
    assert_eq!(dev.rss().table, table);

    let old = receive(&mut qs, n0 as usize);
    check_exactly_once_in_flow_order(&old, 0, n0);

    let at = per_channel(&rig);
    let n = 512;
    let sent = inject(&cap, mac, n0, n);
    let got = receive(&mut qs, n as usize);
    check_exactly_once_in_flow_order(&got, n0, n);
    let mut want = [0u64; 4];
    for &(q, seq, hash) in &got {
        let (to, h) = steer(&sent[&seq].1, &key, &table, types);
        assert_eq!(
            (q, hash),
            (to, Some(h)),
            "frame {seq} follows the new key and table"
        );
        want[usize::from(to)] += 1;
    }
    let delta: Vec<u64> = per_channel(&rig)
        .iter()
        .zip(&at)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(delta, want.to_vec(), "the host's per-channel counts");
    assert!(want.iter().filter(|&&c| c > 0).count() >= 3, "{want:?}");

    // Refusals are typed and change nothing.
    let mut bad = table;
    bad[5] = 4;
    assert!(matches!(
        dev.set_rss(RssUpdate {
            table: Some(bad),
            ..RssUpdate::default()
        }),
        Err(Error::Config { value: 4, .. })
    ));
    assert!(matches!(
        dev.set_rss(RssUpdate {
            hash_types: Some(1),
            ..RssUpdate::default()
        }),
        Err(Error::Config { .. })
    ));
    assert_eq!(rig.emu.stats().rss.sets, sets + 2);

    // Hash types 0: RSS off, everything on queue 0.
    dev.set_rss(RssUpdate {
        hash_types: Some(0),
        ..RssUpdate::default()
    })
    .unwrap();
    assert!(!rig.emu.stats().rss.enabled);
    let at = per_channel(&rig);
    inject(&cap, mac, n0 + n, 64);
    let got = receive(&mut qs, 64);
    assert!(got.iter().all(|g| g.0 == 0 && g.2.is_none()));
    let delta: Vec<u64> = per_channel(&rig)
        .iter()
        .zip(&at)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(delta, vec![64, 0, 0, 0]);
    let t = dev.stats();
    assert_eq!(t.ipackets, rig.emu.stats().totals.host_to_guest_frames);
    assert_eq!(t.imissed, 0);
}

#[test]
fn set_queues_refusals_are_typed() {
    let cap = CaptureHandle::default();
    let rig = rig_with(|c| {
        c.max_queues = 4;
        c.backend = BackendConfig::Capture(cap.clone());
    });
    let mac = rig.emu.config().mac;
    let mut dev = rig
        .open(DeviceConfig {
            queues: 2,
            devargs: netvsc::Devargs::parse("rx_extmbuf_enable=1,rx_copybreak=64").unwrap(),
            ..quick()
        })
        .unwrap();
    dev.start().unwrap();
    assert!(matches!(dev.set_queues(0), Err(Error::Config { .. })));
    assert!(matches!(
        dev.set_queues(5),
        Err(Error::Config { value: 5, .. })
    ));
    dev.set_queues(2).unwrap();
    assert_eq!(rig.emu.stats().subchannels, 1, "the same count is a no-op");
    // A zero-copy view held: refused, nothing changed; released: done.
    let mut qs = dev.queues();
    inject(&cap, mac, 0, 8);
    let mut out: Vec<RxPacket> = (0..8).map(|_| RxPacket::with_capacity(256)).collect();
    let mut views = Vec::new();
    assert!(wait_for(10, || {
        for q in qs.iter_mut() {
            let k = q.rx_burst(&mut out);
            for p in &mut out[..k] {
                views.push((q.id(), p.view.take().expect("a 128-byte frame is a view")));
            }
        }
        views.len() == 8
    }));
    let holder = views[0].0;
    match dev.set_queues(1) {
        Err(Error::ViewsOutstanding { queue, count, .. }) => {
            assert_eq!(
                queue,
                qs.iter()
                    .find(|q| q.rx_views_outstanding() > 0)
                    .unwrap()
                    .id()
            );
            assert!(count > 0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dev.info().queues, 2);
    assert_eq!(rig.emu.stats().subchannels, 1);
    let _ = holder;
    for (q, v) in views {
        qs[usize::from(q)].release(v);
    }
    dev.set_queues(1).unwrap();
    assert_eq!(dev.info().queues, 1);
    assert!(!dev.rss().enabled);
    assert_eq!(rig.emu.stats().subchannels, 0);
    assert_eq!(qs[1].retired(), Some(1));
    assert_eq!(qs[0].retired(), None);
}

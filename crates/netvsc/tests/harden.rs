//! Hardening against stalled applications and hostile hosts: nothing the host could buffer is lost while the
//! application stalls, a corrupt ring fails loudly and the device recovers, ignored host input is counted, and
//! one call reads a bounded amount of ring data. Hostile input is written into the host→guest ring of the
//! emulator's tree (the shared memory the driver reads) with `vmbus_ring::RingWriter` while the host is quiet.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use hv_emu::backend::{
    BackendConfig, GeneratorConfig, build_flow_frame, check_sequenced, l4_payload_offset,
};
use netvsc::{DeviceConfig, ErrorCode, Event, RxPacket, TxMeta, TxPacket};
use vmbus_ring::{OutgoingKind, OutgoingPacket, Ring, RingWriter, TransferRange};

fn xstat(dev: &netvsc::Device, name: &str) -> u64 {
    dev.xstats()
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no xstat {name}"))
        .1
}

/// A writer on the host→guest primary ring, continuing from the host's published write index.
fn host_writer(rig: &Rig) -> RingWriter {
    RingWriter::new(Ring::new(rig.emu.tree().rx_ring()).unwrap())
}

/// Let bring-up traffic settle so the host is quiet before we write into its ring.
fn quiet(dev: &netvsc::Device) {
    for _ in 0..50 {
        dev.poll_control();
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The application stalls for `stall` while the generator sends as many 64-byte frames as the receive buffer
/// has sub-allocations and a background thread polls control like the addon's event thread; a link-down fired
/// during the stall is seen during the stall, and afterwards every frame arrives, in order, bytes exact.
fn stall(stall: Duration) {
    let size = 64;
    let rig0 = rig(BackendConfig::Sink);
    let probe = rig0.open(quick()).unwrap();
    // As much as the receive buffer holds, less a margin for the host's own control messages and
    // indications (they take sub-allocations too).
    let sections = u64::from(probe.info().recv_sections) * 9 / 10;
    probe.close().unwrap();
    drop(rig0);
    let rig = rig_with(|c| {
        c.backend = BackendConfig::Generator(GeneratorConfig {
            rate_pps: None,
            frame_sizes: vec![size],
            flows: 1,
            sequenced: true,
            dst_mac: c.mac,
            limit: Some(sections),
            ..GeneratorConfig::default()
        });
    });
    let mut dev = rig.open(quick()).unwrap();
    let mut q = dev.queues().remove(0);
    let template = build_flow_frame(dev.mac(), 0, size);
    let pay = l4_payload_offset(&template).expect("flow 0 is TCP");
    let csum = 14 + 20 + 16;
    dev.start().unwrap();
    let dev = Arc::new(std::sync::Mutex::new(dev));
    let stop = Arc::new(AtomicBool::new(false));
    let link_seen = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let poller = {
        let (dev, stop, link_seen) = (dev.clone(), stop.clone(), link_seen.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                {
                    let d = dev.lock().unwrap();
                    d.poll_control();
                    while let Some(ev) = d.next_event() {
                        if ev == Event::LinkSpeed(42_000) {
                            link_seen.lock().unwrap().get_or_insert(Instant::now());
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let t0 = Instant::now();
    std::thread::sleep(stall / 3);
    rig.emu.set_link_speed(42_000);
    std::thread::sleep(stall - stall / 3);
    let stall_end = Instant::now();
    let seen = *link_seen.lock().unwrap();
    assert!(
        seen.is_some_and(|t| t < stall_end),
        "link event delivered during the {stall:?} stall"
    );
    let mut out: Vec<RxPacket> = (0..32).map(|_| RxPacket::with_capacity(size)).collect();
    let mut next = 0u64;
    let mut idle = Instant::now();
    while next < sections {
        let n = q.rx_burst(&mut out);
        for p in &out[..n] {
            let data = &p.data;
            assert_eq!(data.len(), size);
            assert_eq!(data[..csum], template[..csum], "frame {next}: headers");
            assert_eq!(data[csum + 2..pay], template[csum + 2..pay]);
            assert_eq!(
                check_sequenced(&data[pay..]).ok(),
                Some(next),
                "in order, bytes exact"
            );
            next += 1;
        }
        if n > 0 {
            idle = Instant::now();
        }
        assert!(
            idle.elapsed() < Duration::from_secs(20),
            "stalled at {next} of {sections}: {:?}",
            rig.emu.stats().totals
        );
    }
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    let dev = Arc::into_inner(dev).unwrap().into_inner().unwrap();
    let s = rig.emu.stats();
    let d = dev.stats();
    assert_eq!(s.backend["generated"].as_u64(), Some(sections));
    assert_eq!(
        s.totals.host_to_guest_frames, sections,
        "host drops: {:?}",
        s.totals.drops
    );
    assert_eq!((d.ipackets, d.imissed, d.ierrors), (sections, 0, 0));
    eprintln!(
        "stall {stall:?}: {sections} frames (90 % of the receive buffer's sub-allocations) all delivered in order, \
         bytes exact, after {:?}; link event {:?} into the stall",
        t0.elapsed(),
        seen.unwrap() - t0
    );
    dev.close().unwrap();
}

#[test]
fn stall_300ms_loses_nothing() {
    stall(Duration::from_millis(300));
}

#[test]
fn stall_2s_loses_nothing() {
    stall(Duration::from_secs(2));
}

fn loopback_once(dev: &netvsc::Device, q: &mut netvsc::QueuePair) {
    let frame = ip_frame(200, dev.mac(), false, 7);
    let segs = [frame.as_slice()];
    send_all(
        q,
        &[TxPacket {
            segs: &segs,
            meta: TxMeta::default(),
        }],
    );
    let mut out: Vec<RxPacket> = (0..4).map(|_| RxPacket::with_capacity(2048)).collect();
    let mut got = None;
    assert!(wait_for(10, || {
        let n = q.rx_burst(&mut out);
        if n > 0 {
            got = Some(out[0].data.clone());
        }
        got.is_some()
    }));
    assert_eq!(got.unwrap(), frame, "traffic passes");
}

/// Break the host→guest ring's write index (past the data area) from the tree's shared memory.
fn corrupt_write_index(rig: &Rig) -> u32 {
    let ring = rig.emu.tree().rx_ring();
    let bad = (ring.len() - 4096) as u32 + 64;
    ring.store_u32(vmbus_ring::ring::WRITE_INDEX_OFFSET, bad)
        .unwrap();
    bad
}

#[test]
fn corrupt_ring_fails_loudly_then_recovers() {
    let rig = rig(BackendConfig::Loopback);
    let mut dev = rig.open(quick()).unwrap();
    dev.start().unwrap();
    let mut q = dev.queues().remove(0);
    loopback_once(&dev, &mut q);
    quiet(&dev);
    while dev.next_event().is_some() {}
    corrupt_write_index(&rig);
    let mut out: Vec<RxPacket> = (0..4).map(|_| RxPacket::with_capacity(2048)).collect();
    assert_eq!(q.rx_burst(&mut out), 0);
    let fault = q.error().expect("the queue reports its fault");
    assert_eq!(fault.what, "write index");
    assert!(!fault.tx);
    let ev = std::iter::from_fn(|| dev.next_event())
        .find(|e| matches!(e, Event::Error { .. }))
        .expect("an error event");
    assert_eq!(
        ev,
        Event::Error {
            code: ErrorCode::Ring,
            queue: 0,
            what: "write index",
            offset: fault.offset,
        }
    );
    let frame = ip_frame(200, dev.mac(), false, 1);
    let segs = [frame.as_slice()];
    let pkt = [TxPacket {
        segs: &segs,
        meta: TxMeta::default(),
    }];
    assert_eq!(q.tx_burst(&pkt), 0, "no frame goes into the dead channel");
    assert_eq!(q.rx_burst(&mut out), 0);
    assert_eq!(xstat(&dev, "hv_ring_errors"), 1);
    assert!(dev.maintain().unwrap(), "maintain recovers");
    let ev = std::iter::from_fn(|| dev.next_event()).find(|e| matches!(e, Event::Recovered { .. }));
    assert_eq!(ev, Some(Event::Recovered { count: 1 }));
    assert_eq!(q.error(), None, "the old handle works again");
    assert!(dev.is_started());
    assert_eq!(xstat(&dev, "hv_recoveries"), 1);
    assert_eq!(
        xstat(&dev, "hv_ring_errors"),
        1,
        "counters survive recovery"
    );
    loopback_once(&dev, &mut q);
    dev.close().unwrap();
}

#[test]
fn corrupt_ring_without_recovery_stays_failed_and_closes() {
    let rig = rig(BackendConfig::Loopback);
    let mut dev = rig
        .open(DeviceConfig {
            recover: false,
            ..quick()
        })
        .unwrap();
    dev.start().unwrap();
    let mut q = dev.queues().remove(0);
    quiet(&dev);
    corrupt_write_index(&rig);
    let mut out: Vec<RxPacket> = (0..4).map(|_| RxPacket::with_capacity(2048)).collect();
    assert_eq!(q.rx_burst(&mut out), 0);
    assert!(q.error().is_some());
    assert!(!dev.maintain().unwrap(), "no recovery");
    assert!(q.error().is_some(), "still failed");
    assert_eq!(xstat(&dev, "hv_recoveries"), 0);
    let frame = ip_frame(200, dev.mac(), false, 1);
    let segs = [frame.as_slice()];
    let pkt = [TxPacket {
        segs: &segs,
        meta: TxMeta::default(),
    }];
    assert_eq!(q.tx_burst(&pkt), 0);
    dev.close().expect("close is clean");
}

fn write(w: &mut RingWriter, kind: OutgoingKind<'_>, trans_id: u64, payload: &[u8]) {
    w.try_write(&OutgoingPacket {
        kind,
        trans_id,
        completion_requested: false,
        payload: &[payload],
    })
    .unwrap();
}

#[test]
fn ignored_host_input_is_counted() {
    let rig = rig(BackendConfig::Sink);
    let dev = rig.open(quick()).unwrap();
    quiet(&dev);
    let names = [
        "hv_unknown_completions",
        "hv_unknown_inband",
        "hv_short_messages",
        "hv_oversize_messages",
    ];
    let before: Vec<u64> = names.iter().map(|n| xstat(&dev, n)).collect();
    let mut w = host_writer(&rig);
    let nvsp = |ty: u32| {
        let mut m = [0u8; 40];
        m[..4].copy_from_slice(&ty.to_le_bytes());
        m
    };
    // Completions: an untagged id, a send section never in flight, a control id nobody waits for.
    write(&mut w, OutgoingKind::Completion, 0xdead, &nvsp(108));
    write(&mut w, OutgoingKind::Completion, (1 << 63) | 5, &nvsp(108));
    write(&mut w, OutgoingKind::Completion, (1 << 61) | 77, &nvsp(108));
    // In-band: an unknown NVSP type, and one of 2 bytes.
    write(&mut w, OutgoingKind::InBand, 0, &nvsp(999));
    write(&mut w, OutgoingKind::InBand, 0, &[1, 0]);
    // Transfers: a range outside the receive buffer, and more ranges than any host sends.
    let mut announce = nvsp(107);
    announce[4..8].copy_from_slice(&1u32.to_le_bytes());
    let outside = [TransferRange {
        byte_count: 64,
        byte_offset: u32::MAX - 16,
    }];
    write(
        &mut w,
        OutgoingKind::TransferPages {
            set_id: 0xcafe,
            ranges: &outside,
        },
        1,
        &announce[..16],
    );
    let many = vec![
        TransferRange {
            byte_count: 64,
            byte_offset: 0,
        };
        netvsc_max_ranges() + 1
    ];
    write(
        &mut w,
        OutgoingKind::TransferPages {
            set_id: 0xcafe,
            ranges: &many,
        },
        2,
        &announce[..16],
    );
    w.commit();
    dev.poll_control();
    let after: Vec<u64> = names.iter().map(|n| xstat(&dev, n)).collect();
    let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(delta[0], 3, "unknown completions");
    assert_eq!(delta[1], 1, "unknown in-band");
    assert_eq!(delta[2], 1, "short");
    assert!(
        delta[3] >= 2,
        "oversize: range outside the buffer, too many ranges ({delta:?})"
    );
    drop(dev);
}

fn netvsc_max_ranges() -> usize {
    562
}

/// A flooding host: one call handles its budget, no more (counted from the driver's own counters).
#[test]
fn flooding_host_meets_a_per_call_budget() {
    let rig = rig(BackendConfig::Sink);
    // No VF manager: its idle drain of queue 0 (every 5 ms) would take from the flood between the calls counted.
    let mut cfg = quick();
    cfg.vf.enabled = false;
    let dev = rig.open(cfg).unwrap();
    let mut q = dev.queues().remove(0);
    quiet(&dev);
    let mut w = host_writer(&rig);
    let flood = 3000;
    for i in 0..flood {
        write(
            &mut w,
            OutgoingKind::Completion,
            0x1000 + i,
            &[108, 0, 0, 0, 1, 0, 0, 0],
        );
    }
    w.commit();
    let unknown = |d: &netvsc::Device| xstat(d, "hv_unknown_completions");
    let mut out: Vec<RxPacket> = (0..32).map(|_| RxPacket::with_capacity(2048)).collect();
    let u0 = unknown(&dev);
    assert_eq!(q.rx_burst(&mut out), 0);
    let per_burst = unknown(&dev) - u0;
    assert_eq!(
        per_burst,
        32 * netvsc::BURST_BUDGET_FACTOR as u64,
        "one rx burst: 2× its 32 slots"
    );
    let u1 = unknown(&dev);
    dev.poll_control();
    assert_eq!(
        unknown(&dev) - u1,
        netvsc::POLL_BUDGET_PACKETS as u64,
        "one poll_control"
    );
    let u2 = unknown(&dev);
    q.poll_completions();
    assert_eq!(
        unknown(&dev) - u2,
        netvsc::POLL_BUDGET_PACKETS as u64,
        "one poll_completions"
    );
    let mut calls = 3;
    while dev.poll_control() > 0 {
        calls += 1;
    }
    assert_eq!(
        unknown(&dev) - u0,
        flood,
        "the whole flood, over {calls} calls"
    );
    assert!(xstat(&dev, "hv_budget_stops") >= 3);
    // Big messages: the byte budget binds first.
    let big = vec![0xeeu8; 4000];
    let mut w = host_writer(&rig);
    for _ in 0..100 {
        write(&mut w, OutgoingKind::InBand, 0, &big);
    }
    w.commit();
    let i0 = xstat(&dev, "hv_unknown_inband");
    let n = dev.poll_control();
    assert_eq!(xstat(&dev, "hv_unknown_inband") - i0, n as u64);
    assert!(
        n * 4000 <= netvsc::POLL_BUDGET_BYTES + 4100 && n < 100,
        "{n} messages of 4000 bytes in one call"
    );
    drop(dev);
}

/// Malformed status indications, fed through the ring reading path: the host's receive buffer holds bytes we
/// control (a looped-back frame, kept as a zero-copy view so the host cannot reuse its sub-allocation), and a
/// transfer-page packet written into the host→guest ring points at them as an RNDIS message.
#[test]
fn malformed_status_indications_are_counted() {
    use netvsc_proto::rndis::{RndisMessage, status};
    let rig = rig(BackendConfig::Loopback);
    let mut dev = rig
        .open(DeviceConfig {
            devargs: netvsc::Devargs {
                rx_extmbuf_enable: true,
                rx_copybreak: 0,
                ..netvsc::Devargs::default()
            },
            ..quick()
        })
        .unwrap();
    dev.start().unwrap();
    let mut q = dev.queues().remove(0);
    // A speed change without its speed; as a frame its first byte (7) makes it multicast, which the filter passes.
    let mut ind = [0u8; 64];
    let len = RndisMessage::indicate_status(status::LINK_SPEED_CHANGE, &[])
        .emit(&mut ind)
        .unwrap();
    let mut frame = vec![0u8; 200];
    frame[..len].copy_from_slice(&ind[..len]);
    let segs = [frame.as_slice()];
    send_all(
        &mut q,
        &[TxPacket {
            segs: &segs,
            meta: TxMeta::default(),
        }],
    );
    let mut out: Vec<RxPacket> = (0..4).map(|_| RxPacket::with_capacity(2048)).collect();
    let mut view = None;
    assert!(wait_for(10, || {
        if q.rx_burst(&mut out) > 0 {
            view = out[0].view.take();
        }
        view.is_some()
    }));
    let view = view.expect("a zero-copy view");
    drain_tx(&mut q);
    quiet(&dev);
    let before = xstat(&dev, "hv_bad_indications");
    let mut announce = [0u8; 16];
    announce[..4].copy_from_slice(&107u32.to_le_bytes());
    announce[4..8].copy_from_slice(&1u32.to_le_bytes()); // control channel
    let mut w = host_writer(&rig);
    for bytes in [len as u32, 16] {
        // Whole (no speed), then cut short (does not parse).
        let r = [TransferRange {
            byte_count: bytes,
            byte_offset: view.offset,
        }];
        write(
            &mut w,
            OutgoingKind::TransferPages {
                set_id: 0xcafe,
                ranges: &r,
            },
            9,
            &announce,
        );
    }
    w.commit();
    dev.poll_control();
    assert_eq!(xstat(&dev, "hv_bad_indications") - before, 2);
    q.release(view);
    drop(dev);
}

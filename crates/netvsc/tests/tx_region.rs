//! Zero-copy transmit from a queue's tx region against the emulator: what the host hands its backend is checked
//! byte for byte (capture backend) or by the sink's running digest, and every buffer index the driver hands back
//! through `tx_reclaim` is checked against what was submitted (each exactly once). Refusals (in flight, not yet
//! reclaimed, repeated, bad index or length) are checked to send nothing at the host.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use hv_emu::backend::{BackendConfig, CaptureHandle, Digest, frame_hash};
use hv_emu::host::FaultKind;
use netvsc::{
    BusyReason, Devargs, DeviceConfig, Error, QueuePair, TxDesc, TxMeta, TxPacket, TxRegion,
    TxRegionConfig, TxRegionError,
};

/// Write `frame` at the start of buffer `buf`.
fn put(region: &TxRegion, buf: u32, frame: &[u8]) {
    region.buffer(buf).unwrap().write(0, frame).unwrap();
}

fn desc(buf: u32, len: usize) -> TxDesc {
    TxDesc {
        buf,
        len: len as u32,
        meta: TxMeta::default(),
    }
}

/// Submit until every descriptor is taken, reclaiming as it goes; returns every index reclaimed meanwhile.
fn send_zc(q: &mut QueuePair, descs: &[TxDesc], reclaimed: &mut Vec<u32>) {
    let mut sent = 0;
    let mut out = [0u32; 64];
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while sent < descs.len() {
        let n = q.tx_burst_zero_copy(&descs[sent..]).unwrap();
        sent += n;
        let k = q.tx_reclaim(&mut out);
        reclaimed.extend_from_slice(&out[..k]);
        if n == 0 {
            assert!(
                std::time::Instant::now() < until,
                "zero-copy tx stuck at {sent}"
            );
            std::thread::yield_now();
        }
    }
}

/// Reclaim until nothing is in flight.
fn reclaim_all(q: &mut QueuePair, reclaimed: &mut Vec<u32>) {
    let mut out = [0u32; 64];
    assert!(
        wait_for(20, || {
            loop {
                let k = q.tx_reclaim(&mut out);
                reclaimed.extend_from_slice(&out[..k]);
                if k == 0 {
                    break;
                }
            }
            q.tx_in_flight() == 0
        }),
        "{} zero-copy sends never completed",
        q.tx_in_flight()
    );
}

/// Each index reclaimed exactly as often as it was submitted.
fn assert_each_once(submitted: &[u32], reclaimed: &[u32]) {
    let mut want: HashMap<u32, i64> = HashMap::new();
    for b in submitted {
        *want.entry(*b).or_default() += 1;
    }
    for b in reclaimed {
        *want.entry(*b).or_default() -= 1;
    }
    let off: Vec<_> = want.iter().filter(|(_, v)| **v != 0).collect();
    assert!(
        off.is_empty(),
        "buffers reclaimed a wrong number of times (index, submitted - reclaimed): {off:?}"
    );
}

/// Mixed sizes around `tx_copybreak` (512) and across pages, a frame with an in-frame 802.1Q tag (sent as the PPI,
/// its 4 bytes left out of the GPA ranges) and one with a VLAN request in its metadata: the host's backend gets the
/// same bytes the copying `tx_burst` gives it, and the untagged frames exactly as written. Buffers are reused over
/// several rounds, so each round's frames are rewritten into reclaimed buffers.
#[test]
fn zero_copy_frames_arrive_byte_exact_and_every_buffer_returns_once() {
    let cap = CaptureHandle::default();
    let rig = rig_with(|c| {
        c.backend = BackendConfig::Capture(cap.clone());
        c.mtu = 9000;
    });
    let dev = rig
        .open(DeviceConfig {
            mtu: 9000,
            ..quick()
        })
        .unwrap();
    assert_eq!(dev.config().devargs.tx_copybreak, 512);
    let mut q = dev.queues().remove(0);
    let region = q
        .create_tx_region(TxRegionConfig {
            buf_size: 16384,
            bufs: 16,
        })
        .unwrap();
    assert_eq!(
        (region.bufs(), region.buf_size(), region.len()),
        (16, 16384, 16 * 16384)
    );
    let sizes = [60usize, 64, 300, 512, 513, 1500, 4096, 4097, 9014, 1514];
    let mut frames: Vec<(Vec<u8>, TxMeta)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            (
                ip_frame(n, PEER_MAC, i % 2 == 0, i as u8),
                TxMeta::default(),
            )
        })
        .collect();
    // A tagged frame (TCI 0x2007 in the frame) and a VLAN request for an untagged one.
    let mut tagged = ip_frame(1504, PEER_MAC, false, 77);
    tagged.splice(12..12, [0x81, 0x00, 0x20, 0x07]);
    frames.push((tagged, TxMeta::default()));
    frames.push((
        ip_frame(1400, PEER_MAC, true, 78),
        TxMeta {
            vlan_tci: Some(0x0123),
            ..TxMeta::default()
        },
    ));

    // The copying path first: what the host makes of each frame.
    for (f, meta) in &frames {
        let segs = [f.as_slice()];
        send_all(
            &mut q,
            &[TxPacket {
                segs: &segs,
                meta: *meta,
            }],
        );
    }
    drain_tx(&mut q);
    assert!(wait_for(5, || cap.sent().len() == frames.len()));
    let expected = cap.sent();
    for (i, (f, meta)) in frames.iter().enumerate() {
        if meta.vlan_tci.is_none() && f[12] != 0x81 {
            assert_eq!(&expected[i], f, "copying path: frame {i} as written");
        }
    }

    // Then three rounds zero-copy, each into the buffers the last round gave back (or fresh ones).
    let mut submitted = Vec::new();
    let mut reclaimed = Vec::new();
    let mut free: Vec<u32> = (0..16).rev().collect();
    for round in 0..3 {
        let mut descs = Vec::new();
        for (f, meta) in &frames {
            let b = free.pop().expect("a free buffer");
            put(&region, b, f);
            descs.push(TxDesc {
                buf: b,
                len: f.len() as u32,
                meta: *meta,
            });
            submitted.push(b);
        }
        let before = reclaimed.len();
        send_zc(&mut q, &descs, &mut reclaimed);
        reclaim_all(&mut q, &mut reclaimed);
        free.extend_from_slice(&reclaimed[before..]);
        let want = (round + 2) * frames.len();
        assert!(
            wait_for(5, || cap.sent().len() == want),
            "host got {} of {want}",
            cap.sent().len()
        );
    }
    let sent = cap.sent();
    for round in 0..3 {
        for (i, want) in expected.iter().enumerate() {
            let got = &sent[(round + 1) * frames.len() + i];
            assert_eq!(
                got,
                want,
                "round {round}, frame {i} ({} B): zero-copy output differs from the copying path",
                frames[i].0.len()
            );
        }
    }
    assert_each_once(&submitted, &reclaimed);
    let t = dev.stats();
    assert_eq!(
        t.opackets,
        4 * frames.len() as u64,
        "every frame counted once on completion"
    );
    assert_eq!(t.oerrors, 0);
    let s = rig.emu.stats();
    assert_eq!(s.totals.drops.tx_malformed, 0);
    assert_eq!(s.totals.guest_to_host_frames, t.opackets);
    eprintln!(
        "zero-copy: {} frames in 3 rounds, {} buffers reclaimed, output = copying path",
        submitted.len(),
        reclaimed.len()
    );
    dev.close().unwrap();
}

/// At volume into the sink: 1500 and 9000 B frames (GPA-direct) mixed with 64 B (copied), each with its sequence
/// number, through a 64 × 16 KiB region in bursts of 32; the sink's digest equals the digest of what was written.
#[test]
fn zero_copy_volume_matches_the_sink_digest() {
    let rig = rig_with(|c| {
        c.backend = BackendConfig::Sink;
        c.mtu = 9000;
    });
    let dev = rig
        .open(DeviceConfig {
            mtu: 9000,
            ..quick()
        })
        .unwrap();
    let mut q = dev.queues().remove(0);
    let region = q
        .create_tx_region(TxRegionConfig {
            buf_size: 16384,
            bufs: 64,
        })
        .unwrap();
    let count = 6000usize;
    let mut want = Digest::default();
    let mut bytes = 0u64;
    let mut free: Vec<u32> = (0..64).rev().collect();
    let mut submitted = Vec::new();
    let mut reclaimed = Vec::new();
    let mut out = [0u32; 64];
    let mut seq = 0usize;
    let mut batch = Vec::with_capacity(32);
    while seq < count || !batch.is_empty() {
        while batch.len() < 32 && seq < count {
            let Some(b) = free.pop() else { break };
            let size = [1500usize, 64, 9014][seq % 3];
            let mut f = ip_frame(size, PEER_MAC, false, seq as u8);
            f[42..50].copy_from_slice(&(seq as u64).to_le_bytes());
            want.push(frame_hash(&f));
            bytes += size as u64;
            put(&region, b, &f);
            batch.push(desc(b, size));
            submitted.push(b);
            seq += 1;
        }
        let n = q.tx_burst_zero_copy(&batch).unwrap();
        batch.drain(..n);
        let k = q.tx_reclaim(&mut out);
        reclaimed.extend_from_slice(&out[..k]);
        free.extend_from_slice(&out[..k]);
        if n == 0 && k == 0 {
            std::thread::yield_now();
        }
    }
    reclaim_all(&mut q, &mut reclaimed);
    assert_each_once(&submitted, &reclaimed);
    let t = dev.stats();
    assert_eq!((t.opackets, t.obytes, t.oerrors), (count as u64, bytes, 0));
    let s = rig.emu.stats();
    assert_eq!(s.backend["frames"], count as u64);
    assert_eq!(s.backend["bytes"], bytes);
    let digest = s.backend["digest"].as_str().unwrap().to_string();
    assert_eq!(
        digest,
        format!("0x{:016x}", want.value()),
        "sink digest of the zero-copy frames"
    );
    eprintln!("zero-copy volume: {count} frames, {bytes} bytes, sink digest {digest} matches");
    dev.close().unwrap();
}

/// With the host withholding completions, a GPA-direct buffer stays in flight: resubmitting it, a copied buffer
/// before it is reclaimed, a buffer twice in one burst, an index past the region and lengths outside 14..=buf_size
/// are each refused with their typed error, and the host sees no frame from a refused burst.
#[test]
fn buffers_the_driver_holds_and_bad_descriptors_are_refused() {
    let rig = rig(BackendConfig::Sink);
    let dev = rig.open(quick()).unwrap();
    let mut q = dev.queues().remove(0);
    assert!(matches!(
        q.tx_burst_zero_copy(&[desc(0, 60)]),
        Err(Error::TxRegion(TxRegionError::NoRegion { queue: 0 }))
    ));
    assert!(matches!(
        q.create_tx_region(TxRegionConfig {
            buf_size: 3000,
            bufs: 8
        }),
        Err(Error::TxRegion(TxRegionError::BufSize { buf_size: 3000 }))
    ));
    let region = q
        .create_tx_region(TxRegionConfig {
            buf_size: 2048,
            bufs: 8,
        })
        .unwrap();
    // The same geometry gives the same region; another is refused.
    let again = q
        .create_tx_region(TxRegionConfig {
            buf_size: 2048,
            bufs: 8,
        })
        .unwrap();
    assert_eq!(again.mem().as_ptr(), region.mem().as_ptr());
    assert!(matches!(
        q.create_tx_region(TxRegionConfig {
            buf_size: 4096,
            bufs: 8
        }),
        Err(Error::TxRegion(TxRegionError::Exists {
            bufs: 8,
            buf_size: 2048,
            ..
        }))
    ));
    rig.emu
        .inject_fault(FaultKind::WithholdCompletions, 1)
        .unwrap();
    for b in 0..8 {
        put(&region, b, &ip_frame(1500, PEER_MAC, false, b as u8));
    }
    put(&region, 1, &ip_frame(100, PEER_MAC, false, 1));
    assert_eq!(
        q.tx_burst_zero_copy(&[desc(0, 1500), desc(1, 100)])
            .unwrap(),
        2
    );
    assert!(wait_for(5, || rig.emu.stats().totals.guest_to_host_frames == 2));
    let busy = |r: netvsc::Result<usize>| match r {
        Err(Error::TxRegion(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        busy(q.tx_burst_zero_copy(&[desc(2, 1500), desc(0, 1500)])),
        TxRegionError::Busy {
            at: 1,
            buf: 0,
            why: BusyReason::InFlight
        }
    );
    assert_eq!(
        busy(q.tx_burst_zero_copy(&[desc(1, 100)])),
        TxRegionError::Busy {
            at: 0,
            buf: 1,
            why: BusyReason::Unreclaimed
        },
        "a copied buffer is done at once but the application has not reclaimed it"
    );
    assert_eq!(
        busy(q.tx_burst_zero_copy(&[desc(3, 1500), desc(4, 1500), desc(3, 1500)])),
        TxRegionError::Busy {
            at: 2,
            buf: 3,
            why: BusyReason::Repeated
        }
    );
    assert_eq!(
        busy(q.tx_burst_zero_copy(&[desc(8, 1500)])),
        TxRegionError::BadIndex {
            at: 0,
            buf: 8,
            bufs: 8
        }
    );
    assert_eq!(
        busy(q.tx_burst_zero_copy(&[desc(5, 2049)])),
        TxRegionError::BadLength {
            at: 0,
            buf: 5,
            len: 2049,
            max: 2048
        }
    );
    assert_eq!(
        busy(q.tx_burst_zero_copy(&[desc(5, 13)])),
        TxRegionError::BadLength {
            at: 0,
            buf: 5,
            len: 13,
            max: 2048
        }
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        rig.emu.stats().totals.guest_to_host_frames,
        2,
        "refused bursts sent nothing"
    );
    let mut out = [u32::MAX; 8];
    assert_eq!(q.tx_reclaim(&mut out), 1, "only the copied buffer is back");
    assert_eq!(out[0], 1);
    assert_eq!(q.tx_reclaim(&mut out), 0);
    // Buffers named by refused bursts stayed the application's: they go now.
    assert_eq!(
        q.tx_burst_zero_copy(&[desc(3, 1500), desc(4, 1500), desc(1, 100)])
            .unwrap(),
        3
    );
    assert!(wait_for(5, || rig.emu.stats().totals.guest_to_host_frames == 5));
    assert_eq!(
        q.tx_in_flight(),
        5,
        "three GPA-direct sends (buffers 0, 3, 4) and two sections (the copied frames) wait for the host"
    );
    eprintln!(
        "withheld: {} completions, {} region sends in flight",
        rig.emu.completions_withheld(),
        q.tx_in_flight()
    );
}

/// A completion the host repeats for a region buffer (its transaction id once more) is not a second return: the
/// buffer comes back once and the repeat is counted as an unknown completion.
#[test]
fn a_repeated_completion_does_not_return_a_buffer_twice() {
    let rig = rig(BackendConfig::Sink);
    let dev = rig
        .open(DeviceConfig {
            devargs: Devargs {
                tx_copybreak: 0,
                ..Devargs::default()
            },
            ..quick()
        })
        .unwrap();
    let mut q = dev.queues().remove(0);
    let region = q.create_tx_region(TxRegionConfig::default()).unwrap();
    put(&region, 5, &ip_frame(64, PEER_MAC, false, 5));
    assert_eq!(
        q.tx_burst_zero_copy(&[desc(5, 64)]).unwrap(),
        1,
        "64 B goes direct with tx_copybreak 0"
    );
    let mut reclaimed = Vec::new();
    reclaim_all(&mut q, &mut reclaimed);
    assert_eq!(reclaimed, vec![5]);
    let unknown = |d: &netvsc::Device| -> u64 {
        d.xstats()
            .iter()
            .find(|(k, _)| k == "hv_unknown_completions")
            .map_or(0, |(_, v)| *v)
    };
    let before = unknown(&dev);
    let report = rig.emu.inject_fault(FaultKind::DuplicateTid, 3).unwrap();
    eprintln!("duplicate-tid: {}", report.detail);
    let mut out = [0u32; 4];
    assert!(wait_for(5, || {
        q.poll_completions();
        unknown(&dev) > before
    }));
    assert_eq!(q.tx_reclaim(&mut out), 0, "no second return of buffer 5");
    assert_eq!(dev.stats().opackets, 1);
    dev.close().unwrap();
}

/// A ring fault and the recovery that follows tear the channels down with region sends in flight: their
/// completions will never come, so the buffers go back through `tx_reclaim` (counted as `hv_tx_unsettled`, not as
/// sent), and the same queue handle keeps its region: a reclaimed buffer is sent again after the recovery.
#[test]
fn a_recovery_returns_the_buffers_it_abandons_and_keeps_the_region() {
    let rig = rig(BackendConfig::Sink);
    let mut dev = rig.open(quick()).unwrap();
    dev.start().unwrap();
    let mut q = dev.queues().remove(0);
    let region = q
        .create_tx_region(TxRegionConfig {
            buf_size: 2048,
            bufs: 8,
        })
        .unwrap();
    for b in 0..3 {
        put(&region, b, &ip_frame(1500, PEER_MAC, false, b as u8));
    }
    rig.emu
        .inject_fault(FaultKind::WithholdCompletions, 1)
        .unwrap();
    assert_eq!(
        q.tx_burst_zero_copy(&[desc(0, 1500), desc(1, 1500), desc(2, 1500)])
            .unwrap(),
        3
    );
    assert!(wait_for(5, || rig.emu.stats().totals.guest_to_host_frames == 3));
    let mut out = [0u32; 8];
    assert_eq!(q.tx_reclaim(&mut out), 0, "all three in flight");
    rig.emu.inject_fault(FaultKind::OversizedIndex, 7).unwrap();
    let mut recovered = false;
    assert!(
        wait_for(15, || {
            let _ = dev.maintain();
            while let Some(ev) = dev.next_event() {
                recovered |= matches!(ev, netvsc::Event::Recovered { .. });
            }
            recovered
        }),
        "no recovery"
    );
    let mut back = Vec::new();
    reclaim_all(&mut q, &mut back);
    back.sort_unstable();
    assert_eq!(back, vec![0, 1, 2], "the abandoned buffers come back once");
    let unsettled = dev
        .xstats()
        .iter()
        .find(|(k, _)| k == "hv_tx_unsettled")
        .map_or(0, |(_, v)| *v);
    assert!(unsettled >= 3, "hv_tx_unsettled {unsettled}");
    assert_eq!(dev.stats().opackets, 0, "never counted as sent");
    rig.emu.inject_fault(FaultKind::Clear, 1).unwrap();
    assert_eq!(q.tx_region().unwrap().mem().as_ptr(), region.mem().as_ptr());
    assert_eq!(q.tx_burst_zero_copy(&[desc(1, 1500)]).unwrap(), 1);
    let mut again = Vec::new();
    reclaim_all(&mut q, &mut again);
    assert_eq!(again, vec![1]);
    assert_eq!(dev.stats().opackets, 1);
    dev.close().unwrap();
}

//! The emulator's generator seen from the driver: it waits for the packet filter, its measured rate against the
//! setting (printed, bounded only from above), no catch-up burst after the port was stopped for 500 ms, the 802.1Q
//! tag arriving as the driver's VLAN metadata, count and duration ending a run, and the sequence checker finding a
//! frame the driver's loop dropped and two it swapped when the frames come back.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hv_emu::backend::pace::burst_for;
use hv_emu::backend::{BackendConfig, GeneratorConfig};
use netvsc::{RxPacket, TxMeta, TxPacket};
use serde_json::Value;

fn gen_rig(g: GeneratorConfig) -> Rig {
    rig_with(|c| {
        c.backend = BackendConfig::Generator(GeneratorConfig {
            dst_mac: c.mac,
            ..g
        });
    })
}

fn gen_stats(rig: &Rig) -> Value {
    rig.emu.generator_stats().expect("generator backend")
}

fn generated(rig: &Rig) -> u64 {
    gen_stats(rig)["generated"].as_u64().unwrap()
}

/// Receive on `q` for `d` (or until `stop` holds), calling `each` per frame; returns the frames received.
fn receive(
    q: &mut netvsc::QueuePair,
    d: Duration,
    mut stop: impl FnMut(u64) -> bool,
    mut each: impl FnMut(&RxPacket),
) -> u64 {
    let mut out: Vec<RxPacket> = (0..32).map(|_| RxPacket::with_capacity(1600)).collect();
    let end = Instant::now() + d;
    let mut got = 0;
    while Instant::now() < end && !stop(got) {
        let n = q.rx_burst(&mut out);
        for p in &mut out[..n] {
            if let Some(v) = p.view.take() {
                q.release(v);
            }
            each(p);
        }
        got += n as u64;
        if n == 0 {
            std::thread::yield_now();
        }
    }
    got
}

#[test]
fn waits_for_the_filter_then_paces_at_its_rate() {
    for rate in [Some(1_000u64), Some(100_000), None] {
        let rig = gen_rig(GeneratorConfig {
            rate_pps: rate,
            flows: 4,
            ..GeneratorConfig::default()
        });
        let mut dev = rig.open(quick()).unwrap();
        let mut q = dev.queues().remove(0);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            generated(&rig),
            0,
            "open leaves the filter at 0: nothing generated"
        );
        assert_eq!(gen_stats(&rig)["state"], "waiting");
        let t0 = Instant::now();
        dev.start().unwrap();
        let got = receive(&mut q, Duration::from_millis(1500), |_| false, |_| {});
        let secs = t0.elapsed().as_secs_f64();
        let g = gen_stats(&rig);
        let made = g["generated"].as_u64().unwrap();
        let s = rig.emu.stats();
        let label = rate.map_or("unlimited".to_string(), |r| format!("{r} pps"));
        eprintln!(
            "generator at {label}: host measured {:.0} pps, driver received {got} in {secs:.2} s ({:.0} pps), \
             {} generated, host drops {:?}",
            g["run"]["measuredPps"].as_f64().unwrap_or(0.0),
            got as f64 / secs,
            made,
            s.totals.drops.no_rx_buffer + s.totals.drops.ring_full
        );
        assert!(made > 0 && got > 0);
        if let Some(r) = rate {
            assert!(
                made as f64 <= r as f64 * secs + burst_for(r) as f64,
                "never more than the rate allows: {made} in {secs:.2} s at {r}"
            );
        }
        dev.close().unwrap();
    }
}

/// The port stopped (filter 0) for 500 ms: in the 50 ms after `start`, no more than the rate over that window
/// plus the bucket's burst.
#[test]
fn no_catch_up_burst_after_the_port_was_stopped() {
    const RATE: u64 = 20_000;
    let rig = gen_rig(GeneratorConfig {
        rate_pps: Some(RATE),
        flows: 4,
        ..GeneratorConfig::default()
    });
    let mut dev = rig.open(quick()).unwrap();
    let mut q = dev.queues().remove(0);
    dev.start().unwrap();
    receive(&mut q, Duration::from_millis(300), |_| false, |_| {});
    dev.stop().unwrap();
    receive(&mut q, Duration::from_millis(500), |_| false, |_| {});
    let before = generated(&rig);
    let t = Instant::now();
    dev.start().unwrap();
    let mut burst = 0;
    receive(&mut q, Duration::from_millis(50), |_| false, |_| burst += 1);
    let after = generated(&rig);
    let window = t.elapsed().as_secs_f64();
    let bound = RATE as f64 * window + burst_for(RATE) as f64;
    eprintln!(
        "after a 500 ms stop at {RATE} pps: {} frames generated in the first {:.1} ms after start \
         (bound rate x window + burst = {bound:.0}; the driver took {burst})",
        after - before,
        window * 1000.0
    );
    assert!((after - before) as f64 <= bound, "catch-up burst");
    dev.close().unwrap();
}

#[test]
fn vlan_tag_reaches_the_driver_as_metadata() {
    const TCI: u16 = 0x2064; // priority 1, VLAN 100
    let rig = gen_rig(GeneratorConfig {
        rate_pps: Some(20_000),
        frame_sizes: vec![64, 300],
        flows: 3,
        vlan: Some(TCI),
        limit: Some(600),
        ..GeneratorConfig::default()
    });
    let mut dev = rig.open(quick()).unwrap();
    let mut q = dev.queues().remove(0);
    dev.start().unwrap();
    let mut tags = std::collections::BTreeSet::new();
    let mut lens = std::collections::BTreeSet::new();
    let got = receive(
        &mut q,
        Duration::from_secs(10),
        |n| n >= 600,
        |p| {
            tags.insert(p.meta.vlan_tci);
            lens.insert(p.data.len());
            assert_eq!(
                &p.data[12..14],
                &[0x08, 0x00],
                "the tag was stripped from the frame"
            );
        },
    );
    assert_eq!(got, 600);
    assert_eq!(tags.into_iter().collect::<Vec<_>>(), [Some(TCI)]);
    assert_eq!(lens.into_iter().collect::<Vec<_>>(), [64, 300]);
    dev.close().unwrap();
}

#[test]
fn count_and_duration_end_a_run_and_every_frame_is_accounted_for() {
    // Count: exactly this many generated; delivered + host drops == generated; driver counts == delivered.
    let rig = gen_rig(GeneratorConfig {
        rate_pps: Some(20_000),
        flows: 2,
        limit: Some(2000),
        ..GeneratorConfig::default()
    });
    let mut dev = rig.open(quick()).unwrap();
    let mut q = dev.queues().remove(0);
    dev.start().unwrap();
    let got = receive(&mut q, Duration::from_secs(10), |n| n >= 2000, |_| {});
    receive(&mut q, Duration::from_millis(100), |_| false, |_| {});
    let g = gen_stats(&rig);
    assert_eq!(g["state"], "done");
    assert_eq!(g["generated"], 2000);
    let s = rig.emu.stats();
    let d = dev.stats();
    assert_eq!(s.totals.host_to_guest_frames + s.totals.drops.total(), 2000);
    assert_eq!(
        d.ipackets + d.imissed + d.ierrors,
        s.totals.host_to_guest_frames
    );
    eprintln!(
        "count 2000 at 20000 pps: driver received {got}, host drops {:?}",
        s.totals.drops
    );
    dev.close().unwrap();

    // Duration: the run ends 300 ms after its first frame and stays ended.
    let rig = gen_rig(GeneratorConfig {
        rate_pps: Some(10_000),
        duration: Some(Duration::from_millis(300)),
        ..GeneratorConfig::default()
    });
    let mut dev = rig.open(quick()).unwrap();
    let mut q = dev.queues().remove(0);
    dev.start().unwrap();
    receive(
        &mut q,
        Duration::from_secs(10),
        |_| gen_stats(&rig)["state"] == "done",
        |_| {},
    );
    let at_end = generated(&rig);
    receive(&mut q, Duration::from_millis(300), |_| false, |_| {});
    assert_eq!(generated(&rig), at_end, "nothing after the duration");
    let g = gen_stats(&rig);
    eprintln!(
        "duration 300 ms at 10000 pps: {at_end} frames, run {:.1} ms, measured {:.0} pps",
        g["run"]["elapsedMs"].as_f64().unwrap_or(0.0),
        g["run"]["measuredPps"].as_f64().unwrap_or(0.0)
    );
    assert!(at_end > 0 && at_end <= 10_000 * 3 / 10 + burst_for(10_000));
    dev.close().unwrap();
}

/// The driver sends every received frame back (a loop), but drops one and swaps two of the same flow: the
/// emulator's checker reports exactly that.
#[test]
fn sequence_checker_finds_an_injected_drop_and_reorder() {
    const N: usize = 1000;
    let rig = gen_rig(GeneratorConfig {
        rate_pps: Some(10_000),
        frame_sizes: vec![64, 200],
        flows: 4,
        limit: Some(N as u64),
        ..GeneratorConfig::default()
    });
    let mut dev = rig.open(quick()).unwrap();
    let mut q = dev.queues().remove(0);
    dev.start().unwrap();
    let mut frames: Vec<Vec<u8>> = Vec::with_capacity(N);
    receive(
        &mut q,
        Duration::from_secs(10),
        |n| n >= N as u64,
        |p| frames.push(p.data.clone()),
    );
    assert_eq!(frames.len(), N);
    let s = rig.emu.stats();
    assert_eq!(
        s.totals.drops.total(),
        0,
        "no host drop at this rate: {:?}",
        s.totals.drops
    );
    // Frame 100 is not sent back; frames 200 and 204 (both flow 0) go back swapped.
    let mut order: Vec<usize> = (0..N).filter(|&i| i != 100).collect();
    let a = order.iter().position(|&i| i == 200).unwrap();
    order.swap(a, a + 4);
    assert_eq!(order[a], 204);
    for chunk in order.chunks(32) {
        let segs: Vec<[&[u8]; 1]> = chunk.iter().map(|&i| [&frames[i][..]]).collect();
        let pkts: Vec<TxPacket<'_>> = segs
            .iter()
            .map(|s| TxPacket {
                segs: s,
                meta: TxMeta::default(),
            })
            .collect();
        send_all(&mut q, &pkts);
    }
    drain_tx(&mut q);
    assert!(wait_for(10, || gen_stats(&rig)["returned"] == (N - 1) as u64));
    let c = &gen_stats(&rig)["checker"];
    eprintln!("checker after the loop: {c}");
    assert_eq!(c["received"], (N - 1) as u64);
    assert_eq!(c["lost"], 1);
    assert_eq!(c["reordered"], 1);
    assert_eq!(c["duplicates"], 0);
    assert_eq!(c["foreign"], 0);
    assert!(c["latencyMinNs"].as_u64().unwrap() <= c["latencyMaxNs"].as_u64().unwrap());
    dev.close().unwrap();
}

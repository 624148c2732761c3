//! Hyper-V host behaviours the emulator reproduces (issue 12, item 3), each observed from the driver's side:
//! what reaches `rx_burst`, which events fire and when, which sends complete, what bring-up survives.

mod common;

use std::time::Duration;

use common::*;
use hv_emu::backend::{BackendConfig, GeneratorConfig};
use netvsc::{RxPacket, TxMeta, TxPacket};

/// Ring headroom: while an unread flow keeps the host→guest ring full, the host still completes the guest's sends.
/// It writes rx data only while the ring keeps `ring_headroom` bytes free, so the completions of the sends it takes
/// (and control messages) always find room at once. Each cycle here sends a burst, lets the host take all of it while
/// nobody polls (the flow refills the ring meanwhile), then reads the ring once: every completion must be in it.
/// Without the headroom the data fills the ring and the completions wait at the host for the guest to free space,
/// racing the next data for it.
#[test]
fn tx_completions_are_not_held_behind_an_unread_flow() {
    let rig = rig_with(|c| {
        // A small ring (16 KiB of data) fills long before the receive buffer runs out: the flow keeps it full.
        c.ring_size = 4096 + 16384;
        c.recv_size = 64 << 20;
        c.backend = BackendConfig::Generator(GeneratorConfig {
            rate_pps: None,
            frame_sizes: vec![64],
            flows: 1,
            dst_mac: c.mac,
            ..GeneratorConfig::default()
        });
    });
    // No VF manager: its background drains would read the ring.
    let mut cfg = quick();
    cfg.vf.enabled = false;
    let mut dev = rig.open(cfg).unwrap();
    dev.start().unwrap();
    let mut q = dev.queues().remove(0);
    assert!(
        wait_for(10, || rig.emu.stats().totals.drops.ring_full > 0),
        "the flow fills the ring: {:?}",
        rig.emu.stats().totals
    );
    let small = ip_frame(64, PEER_MAC, false, 1);
    let large = ip_frame(1514, PEER_MAC, false, 2);
    let (s, l): ([&[u8]; 1], [&[u8]; 1]) = ([&small], [&large]);
    let burst: Vec<TxPacket<'_>> = (0..32)
        .map(|i| TxPacket {
            segs: if i % 2 == 0 { &s } else { &l },
            meta: TxMeta::default(),
        })
        .collect();
    let cycles = 40;
    let mut late = Vec::new();
    let handled = |s: &hv_emu::EmuStats| {
        let c = &s.channels[0];
        (
            c.guest_to_host_frames,
            c.completions_sent + c.completions_deferred,
        )
    };
    let mut rx: Vec<RxPacket> = (0..32).map(|_| RxPacket::default()).collect();
    for cycle in 0..cycles {
        // Take frames until the host holds few buffers (the queue returns them as it reads), then stop reading until
        // the flow has filled the ring again.
        assert!(
            wait_for(20, || {
                for _ in 0..1024 {
                    if q.rx_burst(&mut rx) == 0 {
                        break;
                    }
                }
                rig.emu.stats().recv_outstanding < 4000
            }),
            "the queue catches up with the flow: {} buffers outstanding",
            rig.emu.stats().recv_outstanding
        );
        let full = rig.emu.stats().totals.drops.ring_full;
        assert!(
            wait_for(20, || rig.emu.stats().totals.drops.ring_full > full),
            "the flow fills the ring"
        );
        send_all(&mut q, &burst);
        let want = ((cycle + 1) * burst.len()) as u64;
        // Nobody polls until the host has taken the whole burst and answered (or queued) every send.
        assert!(
            wait_for(20, || rig.emu.stats().totals.guest_to_host_frames == want),
            "the host takes the burst"
        );
        let mut last = handled(&rig.emu.stats());
        while {
            std::thread::sleep(Duration::from_millis(20));
            let now = handled(&rig.emu.stats());
            std::mem::replace(&mut last, now) != now
        } {}
        q.poll_completions();
        let left = q.tx_in_flight();
        if left > 0 {
            late.push((cycle, left));
            drain_tx(&mut q);
        }
    }
    let h = rig.emu.stats();
    let deferred: u64 = h.channels.iter().map(|c| c.completions_deferred).sum();
    eprintln!(
        "{cycles} cycles: sends still in flight after one read of the ring (cycle, count): {late:?}; host \
         completions deferred {deferred}, rx ring-full drops {}, frames delivered {}",
        h.totals.drops.ring_full, h.totals.host_to_guest_frames
    );
    assert!(
        late.is_empty(),
        "completions held back behind rx data (cycle, sends in flight): {late:?}"
    );
    let sent = (cycles * burst.len()) as u64;
    assert_eq!(dev.stats().opackets, sent, "every send completed");
    assert_eq!(
        h.totals.guest_to_host_frames, sent,
        "host received every frame"
    );
    dev.close().unwrap();
}

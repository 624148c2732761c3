mod common;
use std::time::Duration;
use vf_netdev::*;

#[test]
fn skeleton_passes_traffic() {
    if !common::enter_netns() {
        return;
    }
    let p = common::veth("sa0", "sb0", 1);
    let info = by_name("sa0").unwrap();
    assert_eq!(info.mac, Some(common::mac(1)));
    let mut port = Port::open(
        p.a,
        &PortConfig {
            prefer: Prefer::AfPacket,
            ..Default::default()
        },
    )
    .unwrap();
    let mut q = port.take_queues().pop().unwrap();
    let raw = common::Raw::open(p.b);
    let f = common::test_frame(1, 100, common::mac(1), common::mac(2));
    raw.send(&f);
    std::thread::sleep(Duration::from_millis(20));
    let mut got = Vec::new();
    q.rx_burst(16, |d, _| got.push(d.to_vec())).unwrap();
    assert_eq!(got, vec![f.clone()]);
    let segs: [&[u8]; 2] = [&f[..20], &f[20..]];
    assert_eq!(
        q.tx_burst(&[VfTx {
            segs: &segs,
            csum: None,
            gso: None
        }])
        .unwrap(),
        1
    );
    let mut buf = vec![0u8; 2048];
    let n = raw.recv(&mut buf, Duration::from_secs(1)).unwrap();
    assert_eq!(&buf[..n], &f[..]);
}

/// With `fail_when_stopped`, a queue whose netdev stops running (here: its veth peer set down, carrier lost) fails
/// within a few milliseconds of bursts, with the reason; without it the queue keeps going.
#[test]
fn fail_when_stopped_fails_the_queue_once_the_netdev_stops_running() {
    if !common::enter_netns() {
        return;
    }
    for (prefer, tag) in [(Prefer::AfPacket, "p"), (Prefer::AfXdp, "x")] {
        let p = common::veth(&format!("fs{tag}a"), &format!("fs{tag}b"), 1);
        common::wait_running(&format!("fs{tag}a"));
        let open = |fail_when_stopped| {
            let mut port = Port::open(
                p.a,
                &PortConfig {
                    prefer,
                    fail_when_stopped,
                    ..Default::default()
                },
            )
            .unwrap();
            port.take_queues().pop().unwrap()
        };
        // One AF_XDP socket per netdev queue: the lax twin only where two ports can share a queue.
        let mut strict = open(true);
        let mut lax = matches!(prefer, Prefer::AfPacket).then(|| open(false));
        for _ in 0..3 {
            strict.poll_tx().unwrap();
            if let Some(l) = lax.as_mut() {
                l.poll_tx().unwrap();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Netdev::open(p.b).unwrap().set_up(false).unwrap();
        let t0 = std::time::Instant::now();
        let err = loop {
            match strict.poll_tx() {
                Err(e) => break e,
                Ok(_) if t0.elapsed() < Duration::from_secs(2) => {
                    std::thread::sleep(Duration::from_micros(200))
                }
                Ok(_) => {
                    panic!("{prefer:?}: the queue kept going 2 s after its netdev stopped running")
                }
            }
        };
        println!(
            "{prefer:?}: failed {:?} after the peer went down: {err}",
            t0.elapsed()
        );
        assert!(err.to_string().contains("stopped running"), "{err}");
        if let Some(l) = lax.as_mut() {
            assert!(
                l.poll_tx().is_ok(),
                "without the option a stopped netdev is not fatal"
            );
        }
    }
}

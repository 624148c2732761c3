//! Port lifecycle: no fd or XDP attachment left behind by open/close cycles; a netdev deleted under an open
//! Port turns rx/tx into prompt errors.
mod common;

use std::time::{Duration, Instant};
use vf_netdev::*;

/// The tests here count the process's fds: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn ip_link(name: &str) -> String {
    let o = std::process::Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .expect("run ip");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn cycles(prefer: Prefer, tag: &str, queues: u32) {
    let _g = serial();
    if !common::enter_netns() {
        return;
    }
    let p = common::veth(&format!("l{tag}a"), &format!("l{tag}b"), queues);
    let cfg = PortConfig {
        queues,
        prefer,
        ring_frames: 256,
        frame_size: 4096,
        ..PortConfig::default()
    };
    // A first cycle so lazily created process-wide state (if any) is not counted.
    match Port::open(p.a, &cfg) {
        Ok(port) => {
            let s = ip_link(&p.a_name);
            eprintln!(
                "mode {:?} queues {}; while open: {}",
                port.mode(),
                port.queue_count(),
                s.lines().next().unwrap_or("")
            );
            if matches!(prefer, Prefer::AfXdp) {
                assert!(s.contains("xdp"), "{s}");
            }
        }
        Err(e) if matches!(prefer, Prefer::AfXdp) => {
            return common::skip(&format!("AF_XDP unavailable: {e}"));
        }
        Err(e) => panic!("{e}"),
    }
    let fds = fd_count();
    assert!(
        !ip_link(&p.a_name).contains("xdp"),
        "{}",
        ip_link(&p.a_name)
    );
    for i in 0..200 {
        let mut port = Port::open(p.a, &cfg).unwrap_or_else(|e| panic!("cycle {i}: {e}"));
        if i % 2 == 1 {
            // Half the cycles drop the queues apart from the Port.
            let qs = port.take_queues();
            drop(port);
            drop(qs);
        }
    }
    assert_eq!(fd_count(), fds);
    let s = ip_link(&p.a_name);
    assert!(!s.contains("xdp"), "{s}");
}

#[test]
fn af_packet_open_close_cycles() {
    cycles(Prefer::AfPacket, "p", 2);
}

#[test]
fn af_xdp_open_close_cycles() {
    cycles(Prefer::AfXdp, "x", 2);
}

#[test]
fn auto_prefers_xdp_and_falls_back() {
    let _g = serial();
    if !common::enter_netns() {
        return;
    }
    let p = common::veth("fa0", "fb0", 1);
    let port = Port::open(p.a, &PortConfig::default()).unwrap();
    eprintln!("auto on veth: {:?}", port.mode());
    drop(port);
    // UMEM chunks larger than a page are refused by the kernel (aligned mode): Auto falls back to AF_PACKET,
    // AfXdp fails, and neither leaves a program attached.
    let big = PortConfig {
        frame_size: 8192,
        ..Default::default()
    };
    let port = Port::open(p.a, &big).unwrap();
    assert_eq!(port.mode(), Mode::AfPacket);
    assert!(!ip_link("fa0").contains("xdp"));
    drop(port);
    let e = Port::open(
        p.a,
        &PortConfig {
            prefer: Prefer::AfXdp,
            ..big.clone()
        },
    )
    .err()
    .expect("AfXdp with 8 KiB chunks");
    eprintln!("AfXdp with 8 KiB frames: {e}");
    assert!(!ip_link("fa0").contains("xdp"));
    assert!(matches!(
        Port::open(
            p.a,
            &PortConfig {
                queues: 0,
                ..Default::default()
            }
        ),
        Err(NetdevError::Invalid(_))
    ));
    assert!(matches!(
        Port::open(999_999, &PortConfig::default()),
        Err(NetdevError::NotFound(_))
    ));
}

fn delete_under_port(prefer: Prefer, tag: &str) {
    let _g = serial();
    if !common::enter_netns() {
        return;
    }
    let p = common::veth(&format!("d{tag}a"), &format!("d{tag}b"), 1);
    let mut port = match Port::open(
        p.a,
        &PortConfig {
            prefer,
            ..Default::default()
        },
    ) {
        Ok(p) => p,
        Err(e) => return common::skip(&format!("{prefer:?} unavailable: {e}")),
    };
    let mut q = port.take_queues().pop().unwrap();
    let f = common::test_frame(1, 100, common::mac(2), common::mac(1));
    let segs: [&[u8]; 1] = [&f];
    assert_eq!(
        q.tx_burst(&[VfTx {
            segs: &segs,
            csum: None,
            gso: None
        }])
        .unwrap(),
        1
    );
    q.rx_burst(16, |_, _| {}).unwrap();
    delete_link(&p.a_name).unwrap();
    let t0 = Instant::now();
    let (mut rx_err, mut tx_err) = (false, false);
    while t0.elapsed() < Duration::from_secs(2) && !(rx_err && tx_err) {
        rx_err |= q.rx_burst(16, |_, _| {}).is_err();
        tx_err |= q
            .tx_burst(&[VfTx {
                segs: &segs,
                csum: None,
                gso: None,
            }])
            .is_err();
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!("{prefer:?}: errors after {:?}", t0.elapsed());
    assert!(rx_err && tx_err, "rx_err {rx_err} tx_err {tx_err}");
    assert!(t0.elapsed() < Duration::from_millis(500));
    // And they stay errors.
    assert!(q.rx_burst(16, |_, _| {}).is_err());
    assert!(q.poll_tx().is_err());
    drop(port);
}

#[test]
fn af_packet_netdev_deleted_under_port() {
    delete_under_port(Prefer::AfPacket, "p");
}

#[test]
fn af_xdp_netdev_deleted_under_port() {
    delete_under_port(Prefer::AfXdp, "x");
}

//! DPDK oracle for the emulator's VF: unmodified Debian DPDK 22.11 testpmd is the guest — its netvsc PMD on the
//! emulated synthetic NIC, its af_packet PMD (`--vdev net_af_packet0,iface=<VF>`) on the guest end of the
//! emulator's veth pair. The PMD must find the VF by MAC when it is offered and switch the data path to it; rx and
//! tx then cross the veth with testpmd's counts equal to the veth's kernel counters and the emulator's VF counters;
//! a revoke through the control socket mid-run makes it switch back to synthetic.
//! Root, dpdk-testpmd and stdbuf; otherwise `SKIP:`. The test runs in its own network namespace.
//!
//! Harness shims (interposer, see support/testpmd.rs): the 22.11 queue-state workaround (defect 1; on by default
//! for 22.x, from `rte_version()`) and HV_EMU_DPDK_VF_RMV_FIX — 22.11's hn_vf_configure asks the VF for removal interrupts (rmv = 1), which af_packet
//! does not have, so ethdev would refuse the VF's configuration; the shim passes rmv = 0 for such a port only.

mod support;

use hv_emu::backend::{CaptureHandle, build_flow_frame};
use hv_emu::vf::VfConfig;
use hv_emu::{BackendConfig, Emulator, EmulatorConfig};
use std::time::Duration;
use support::testpmd::{Testpmd, skip_reason, tail};
use support::wait_for;

const UUID: &str = "5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const MAC: [u8; 6] = [0x00, 0x15, 0x5d, 0x2a, 0x3b, 0x4d];
const VF: &str = "dpvf0";
const VF_HOST: &str = "dpvf0h";

#[allow(unsafe_code)]
fn netns() -> Result<(), String> {
    if let Some(why) = skip_reason() {
        return Err(why);
    }
    // SAFETY: unshare only changes this thread's namespaces (the emulator's threads and testpmd inherit them).
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn kernel(name: &str) -> vf_netdev::KernelStats {
    let info = vf_netdev::by_name(name).unwrap();
    vf_netdev::Netdev::open(info.ifindex)
        .unwrap()
        .kernel_stats()
        .unwrap()
}

fn vf_of(e: &Emulator) -> hv_emu::VfStats {
    e.vf_state().expect("VF configured")
}

/// Wait until `f(emulator)` has not changed for 300 ms.
fn settle<T: PartialEq + Copy>(e: &Emulator, f: impl Fn(&Emulator) -> T) -> T {
    let mut last = f(e);
    let mut stable = 0;
    wait_for(Duration::from_secs(20), || {
        std::thread::sleep(Duration::from_millis(50));
        let now = f(e);
        if now == last {
            stable += 1;
        } else {
            stable = 0;
            last = now;
        }
        (stable >= 6).then_some(())
    })
    .expect("counters settle");
    last
}

fn xstat(x: &[(String, u64)], name: &str) -> u64 {
    x.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no xstat {name} in {x:?}"))
}

#[test]
fn testpmd_finds_the_vf_by_mac_forwards_over_the_veth_and_switches_back_on_revoke() {
    if let Err(why) = netns() {
        eprintln!("SKIP: {why}");
        return;
    }
    let cap = CaptureHandle::default();
    let cfg = EmulatorConfig {
        uuid: UUID.into(),
        mac: MAC,
        max_queues: 1,
        backend: BackendConfig::Capture(cap.clone()),
        vf: Some(VfConfig {
            delay_ms: 1000,
            serial: 3,
            ..VfConfig::new(VF)
        }),
        ..EmulatorConfig::new("/nonexistent")
    };
    let vdev = format!("net_af_packet0,iface={VF},framecnt=4096");
    let ctl = std::sync::Mutex::new(None);
    let mut t = Testpmd::start_eal(
        "vf",
        cfg,
        &["--vdev", &vdev, "--log-level=pmd.net.netvsc.*:debug"],
        // 22.11 cannot take over a VF port the application already started ("VF already started on hot add"):
        // testpmd must not start the af_packet port itself, so no port is started until the VF is attached.
        &["--disable-device-start"],
        |emu| {
            // The guest OS's part: its VF netdev up (af_packet does not bring it up itself).
            let info = vf_netdev::by_name(VF).unwrap();
            vf_netdev::Netdev::open(info.ifindex)
                .unwrap()
                .set_up(true)
                .unwrap();
            let path = emu.tree().root().join("ctl.sock");
            *ctl.lock().unwrap() = Some((emu.serve_control(&path).unwrap(), path));
        },
    );
    let (_server, ctl_path) = ctl.into_inner().unwrap().unwrap();
    // Offered 1 s after RNDIS came up. The PMD reads channel 0 only in bursts and control exchanges: a device-info
    // query (an RNDIS exchange) makes it see the association, attach the af_packet port with our MAC and switch.
    let offered = wait_for(Duration::from_secs(15), || {
        (vf_of(&t.emu).offers == 1).then_some(())
    });
    assert!(offered.is_some(), "not offered: {}", t.emu.stats_json());
    let switched = wait_for(Duration::from_secs(15), || {
        t.cmd("show port info 0");
        vf_of(&t.emu).datapath_vf.then_some(())
    });
    let boot = t.transcript();
    assert!(
        switched.is_some(),
        "no switch to VF: {}\n{}",
        t.emu.stats_json(),
        tail(&boot, 80)
    );
    for needle in [
        "hn_nvs_handle_vfassoc(): VF serial 3 add to port 0",
        "hn_vf_attach(): found matching VF port 1",
        "hn_nvs_set_datapath(): set datapath VF",
    ] {
        assert!(
            boot.contains(needle),
            "{needle:?} missing:\n{}",
            tail(&boot, 80)
        );
    }
    let s = t.emu.stats();
    assert_eq!(s.data_path, vec![1], "the guest's SWITCH_DATA_PATH to VF");
    let v = s.vf.unwrap();
    assert_eq!((v.offers, v.switches.to_vf, v.switches.ignored), (1, 1, 0));
    let start = t.cmd("port start 0");
    assert!(start.contains("Port 0: 00:15:5D:2A:3B:4D"), "{start}");
    let info = t.cmd("show port info 0");
    assert!(info.contains("Driver name: net_netvsc"), "{info}");
    t.cmd("set portlist 0");

    // Rx: unicast for the VF's MAC crosses the veth; broadcast stays on the synthetic ring.
    t.cmd("set fwd rxonly");
    t.cmd("start");
    const UNI: u64 = 4000;
    const BCAST: u64 = 20;
    let mut bcast = build_flow_frame(MAC, 9, 64);
    bcast[..6].copy_from_slice(&[0xff; 6]);
    for i in 0..UNI {
        cap.inject(&build_flow_frame(MAC, (i % 8) as u32, 64));
        if i % 16 == 15 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for _ in 0..BCAST {
        cap.inject(&bcast);
    }
    let (vf_rx, syn_rx) = settle(&t.emu, |e| {
        (
            vf_of(e).vf_host_to_guest_frames,
            e.stats().totals.host_to_guest_frames,
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    t.cmd("stop");
    let ps = t.port_stats();
    let x = t.xstats();
    let guest_end = kernel(VF);
    let host_end = kernel(VF_HOST);
    eprintln!(
        "rx: emulator vf {vf_rx} synthetic {syn_rx}; veth host end tx {} guest end rx {}; testpmd RX-packets {} \
         vf_rx_good_packets {} vf_rx_missed_errors {} rx_q0_good_packets {}",
        host_end.tx_packets,
        guest_end.rx_packets,
        ps.rx_packets,
        xstat(&x, "vf_rx_good_packets"),
        xstat(&x, "vf_rx_missed_errors"),
        xstat(&x, "rx_q0_good_packets")
    );
    assert_eq!(vf_rx, UNI, "every unicast frame left through the veth");
    assert_eq!(syn_rx, BCAST, "broadcast on the synthetic ring");
    assert_eq!(host_end.tx_packets, UNI);
    assert_eq!(guest_end.rx_packets, UNI);
    // What the guest's af_packet socket lost (its ring full while testpmd was descheduled) is the guest's drop.
    let missed = xstat(&x, "vf_rx_missed_errors");
    assert_eq!(
        xstat(&x, "vf_rx_good_packets") + missed,
        UNI,
        "the af_packet VF received (or itself dropped) them all"
    );
    assert_eq!(xstat(&x, "rx_q0_good_packets"), BCAST);
    assert_eq!(ps.rx_packets + missed, UNI + BCAST);

    // Tx: testpmd's frames go out through the VF into the backend.
    t.cmd("set fwd txonly");
    t.cmd("start");
    std::thread::sleep(Duration::from_millis(500));
    t.cmd("stop");
    t.cmd("port cleanup 0 txq 0 0");
    let vf_tx = settle(&t.emu, |e| vf_of(e).vf_guest_to_host_frames);
    let ps = t.port_stats();
    let x = t.xstats();
    let sent = cap.sent().len() as u64;
    let (guest_end, host_end) = (kernel(VF), kernel(VF_HOST));
    let syn_tx = t.emu.stats().totals.guest_to_host_frames;
    // The host end's socket may overflow while the (debug-built) host is descheduled: counted as the host's
    // kernelRxDropped, never silently.
    let kdrops = vf_of(&t.emu).drops.kernel_rx_dropped;
    eprintln!(
        "tx: testpmd TX-packets {} vf_tx_good_packets {}; veth guest end tx {} host end rx {}; emulator vf {vf_tx} \
         + host-end kernel drops {kdrops}; synthetic {syn_tx}; backend {sent}",
        ps.tx_packets,
        xstat(&x, "vf_tx_good_packets"),
        guest_end.tx_packets,
        host_end.rx_packets
    );
    assert!(vf_tx > 1000, "traffic went over the VF: {vf_tx}");
    assert_eq!(syn_tx, 0, "nothing on the synthetic path while switched");
    assert_eq!(xstat(&x, "vf_tx_good_packets"), ps.tx_packets);
    assert_eq!(guest_end.tx_packets, ps.tx_packets);
    assert_eq!(host_end.rx_packets, ps.tx_packets);
    assert_eq!(
        vf_tx + kdrops,
        ps.tx_packets,
        "received by the host or counted as its drop"
    );
    assert_eq!(
        sent, vf_tx,
        "the backend got every VF frame the host received"
    );

    // Revoke through the control socket mid-run: the PMD switches back to synthetic and keeps sending there.
    t.cmd("start");
    std::thread::sleep(Duration::from_millis(300));
    let r = hv_emu::ctl::request(&ctl_path, "vf", &["revoke"]).unwrap();
    assert_eq!(r["ok"], true, "{r}");
    let back = wait_for(Duration::from_secs(10), || {
        (t.emu.stats().data_path == vec![1, 0]).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    t.cmd("stop");
    t.cmd("port cleanup 0 txq 0 0");
    let text = t.transcript();
    assert!(
        back.is_some(),
        "no SWITCH_DATA_PATH 0 after the revoke: {}\n{}",
        t.emu.stats_json(),
        tail(&text, 60)
    );
    for needle in [
        "hn_nvs_handle_vfassoc(): VF serial 3 remove from port 0",
        "hn_nvs_set_datapath(): set datapath Synthetic",
    ] {
        assert!(
            text.contains(needle),
            "{needle:?} missing:\n{}",
            tail(&text, 60)
        );
    }
    let (vf_tx2, syn_tx2) = settle(&t.emu, |e| {
        (
            vf_of(e).vf_guest_to_host_frames,
            e.stats().totals.guest_to_host_frames,
        )
    });
    let v = vf_of(&t.emu);
    // 22.11 counts synthetic tx on completion: reap until TX-packets stops moving.
    let mut ps = t.port_stats();
    for _ in 0..10 {
        t.cmd("port cleanup 0 txq 0 0");
        let again = t.port_stats();
        if again.tx_packets == ps.tx_packets {
            break;
        }
        ps = again;
    }
    let sent = cap.sent().len() as u64;
    eprintln!(
        "revoke: emulator vf {vf_tx2} synthetic {syn_tx2}; backend {sent}; testpmd TX-packets {}; vf {:?}",
        ps.tx_packets, v
    );
    // The host withdrew the VF and routed synthetic at the revoke; the guest's SWITCH_DATA_PATH {0} that follows is
    // recorded and completed with no action (OpenVMM honours it only while a VF is offered).
    assert_eq!(
        (
            v.offered,
            v.datapath_vf,
            v.revokes,
            v.switches.to_synthetic,
            v.switches.ignored
        ),
        (false, false, 1, 0, 1)
    );
    assert!(syn_tx2 > 0, "tx continued on the synthetic path");
    assert_eq!(sent, vf_tx2 + syn_tx2);
    let kdrops = v.drops.kernel_rx_dropped;
    assert_eq!(
        ps.tx_packets,
        vf_tx2 + kdrops + syn_tx2,
        "testpmd's TX-packets = VF + synthetic at the host"
    );
    assert!(
        t.emu.stats().protocol_errors.is_empty(),
        "{:?}",
        t.emu.stats().protocol_errors
    );
    t.quit();
}

//! The emulator's VF (accelerated networking) host side, driven by the scripted fake guest: the delayed offer and
//! when it is withheld, SWITCH_DATA_PATH, unicast diversion to the veth (read with a plain AF_PACKET socket on the
//! guest end) while broadcast stays on the ring, the guest's VF frames reaching the backend, revoke / switch-back
//! bytes, hot-remove / hot-add, and the control socket. Root only (veth pairs): each test runs in its own network
//! namespace (`unshare(CLONE_NEWNET)` on the test thread; the emulator's threads inherit it); otherwise `SKIP:`.

#![allow(unsafe_code)]

mod rig;

use hv_emu::backend::{CaptureHandle, build_flow_frame};
use hv_emu::testing::FakeGuest;
use hv_emu::vf::{VfConfig, VfError};
use hv_emu::{BackendConfig, Emulator, EmulatorConfig};
use netvsc_proto::nvsp::{self, msg_type as nt, ndis_config_caps as caps};
use netvsc_proto::oid;
use std::time::{Duration, Instant};

const MAC: [u8; 6] = [0x00, 0x15, 0x5d, 0x00, 0x00, 0x01];
const VF: &str = "vfemu0";
const SRIOV: u64 = caps::IEEE8021Q | caps::SRIOV;

/// Root and a fresh network namespace for this thread, or why not.
fn netns() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root (veth pairs need CAP_NET_ADMIN)".into());
    }
    // SAFETY: unshare only changes this thread's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

macro_rules! need_netns {
    () => {
        if let Err(why) = netns() {
            std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("SKIP: {why}\n")).ok();
            return;
        }
    };
}

fn vf_emu(
    delay_ms: u64,
    backend: BackendConfig,
    f: impl FnOnce(&mut EmulatorConfig),
) -> (tempfile::TempDir, Emulator) {
    rig::emu(|c| {
        c.backend = backend;
        c.vf = Some(VfConfig {
            delay_ms,
            serial: 7,
            ..VfConfig::new(VF)
        });
        f(c);
    })
}

/// Handshake at `version` declaring `caps`, RNDIS up, packet filter directed|multicast|broadcast.
fn ready(e: &Emulator, version: u32, caps: u64) -> FakeGuest {
    let mut g = FakeGuest::attach(e.tree());
    g.handshake_with_caps(version, caps);
    g.rndis_init();
    assert_eq!(
        g.set(oid::GEN_CURRENT_PACKET_FILTER, &0xDu32.to_le_bytes()),
        0
    );
    g
}

fn is_assoc(p: &hv_emu::testing::HostPacket) -> bool {
    p.kind == 6 && p.nvsp_type() == nt::SEND_VF_ASSOCIATION
}

fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not reached in 5 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether netdev `name` exists in this thread's namespace (`/sys/class/net` shows the mounter's namespace).
fn exists(name: &str) -> bool {
    vf_netdev::by_name(name).is_ok()
}

fn kernel(name: &str) -> vf_netdev::KernelStats {
    let info = vf_netdev::by_name(name).unwrap();
    vf_netdev::Netdev::open(info.ifindex)
        .unwrap()
        .kernel_stats()
        .unwrap()
}

/// A plain AF_PACKET socket on the guest end (brought up, as a guest's VF driver would).
struct Raw(i32);

impl Raw {
    fn open(name: &str) -> Raw {
        let info = vf_netdev::by_name(name).expect("guest end exists");
        vf_netdev::Netdev::open(info.ifindex)
            .unwrap()
            .set_up(true)
            .unwrap();
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket calls on a fresh fd with properly sized arguments.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
            assert!(fd >= 0, "AF_PACKET socket");
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = info.ifindex as i32;
            let rc = libc::bind(
                fd,
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind to {name}");
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 20_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as u32,
            );
            Raw(fd)
        }
    }

    /// Frames received within `timeout` (incoming only).
    /// Frames until `want` have arrived (up to `limit`, for a loaded machine), then 100 ms more to catch extras.
    fn recv_want(&self, want: usize, limit: Duration) -> Vec<Vec<u8>> {
        let end = Instant::now() + limit;
        let mut out = Vec::new();
        while out.len() < want && Instant::now() < end {
            out.extend(self.recv_all(Duration::from_millis(20)));
        }
        out.extend(self.recv_all(Duration::from_millis(100)));
        out
    }

    fn recv_all(&self, timeout: Duration) -> Vec<Vec<u8>> {
        let end = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16384];
        while Instant::now() < end {
            // SAFETY: buf is valid for its length; from/len describe a sockaddr_ll.
            let (n, pkttype) = unsafe {
                let mut from: libc::sockaddr_ll = std::mem::zeroed();
                let mut len = size_of::<libc::sockaddr_ll>() as u32;
                let n = libc::recvfrom(
                    self.0,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut from).cast(),
                    &mut len,
                );
                (n, from.sll_pkttype)
            };
            if n > 0 && pkttype != libc::PACKET_OUTGOING {
                out.push(buf[..n as usize].to_vec());
            }
        }
        out
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: the frame is valid for its length; the socket is bound.
        let n = unsafe { libc::send(self.0, frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(n, frame.len() as isize, "send on the guest end");
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: closing our own fd.
        unsafe { libc::close(self.0) };
    }
}

#[test]
fn offered_after_the_delay_at_v4_with_the_sriov_bit() {
    need_netns!();
    for version in [nvsp::VERSION_4, nvsp::VERSION_61] {
        let (_d, e) = vf_emu(300, BackendConfig::Sink, |_| {});
        assert!(exists(VF) && exists("vfemu0h"), "pair created");
        let s = e.vf_state().unwrap();
        assert_eq!(
            (s.present, s.offered, s.datapath),
            (true, false, "synthetic")
        );
        assert_eq!(s.host_iface, "vfemu0h");
        assert_eq!(s.mac, "00:15:5d:00:00:01", "the synthetic MAC by default");
        assert!(
            !vf_netdev::by_name(VF).unwrap().up,
            "guest end created down"
        );
        assert!(vf_netdev::by_name("vfemu0h").unwrap().up, "host end up");
        let t0 = Instant::now();
        let mut g = ready(&e, version, SRIOV);
        let ready_at = Instant::now();
        assert!(
            g.wait_for(Duration::from_millis(150), &mut is_assoc)
                .is_none(),
            "no offer before the delay"
        );
        let p = g.expect("VF association", is_assoc);
        let waited = ready_at.elapsed();
        assert!(
            waited >= Duration::from_millis(250),
            "offered {waited:?} after ready (t0 {:?})",
            t0.elapsed()
        );
        assert_eq!(p.trans_id, nvsp::TRANS_ID_VF_ASSOCIATION);
        assert!(p.completion_requested);
        assert_eq!((p.u32(4), p.u32(8)), (1, 7), "allocated, serial");
        assert_eq!(rig::u32_at(&p.payload, 0), Some(128));
        let len: usize = if version == nvsp::VERSION_61 { 40 } else { 28 };
        assert_eq!(p.payload.len(), len.div_ceil(8) * 8);
        let s = e.vf_state().unwrap();
        assert_eq!((s.offered, s.offers, s.state), (true, 1, None));
        assert_eq!(e.stats().vf.unwrap().offers, 1, "also in stats()");
    }
}

#[test]
fn never_offered_below_v4_or_without_the_sriov_bit() {
    need_netns!();
    let (_d, e) = vf_emu(0, BackendConfig::Sink, |_| {});
    let mut g = ready(&e, nvsp::VERSION_2, SRIOV);
    assert!(
        g.wait_for(Duration::from_millis(300), &mut is_assoc)
            .is_none()
    );
    let s = e.vf_state().unwrap();
    assert_eq!(
        (s.offered, s.state, s.not_offered_below_v4),
        (false, Some("nvspBelow4"), 1)
    );
    assert_eq!(e.vf_offer(), Err(VfError::ProtocolTooOld(nvsp::VERSION_2)));
    drop((g, e));

    let (_d, e) = vf_emu(0, BackendConfig::Sink, |_| {});
    assert_eq!(
        e.vf_offer(),
        Err(VfError::GuestNotReady),
        "before the guest is ready"
    );
    let mut g = ready(&e, nvsp::VERSION_61, caps::IEEE8021Q);
    assert!(
        g.wait_for(Duration::from_millis(300), &mut is_assoc)
            .is_none()
    );
    let s = e.vf_state().unwrap();
    assert_eq!(
        (s.offered, s.state, s.not_offered_no_sriov),
        (false, Some("noSriovCapability"), 1)
    );
    assert_eq!(e.vf_offer(), Err(VfError::NoSriov));
    assert_eq!(e.vf_revoke(), Err(VfError::NotOffered));
    assert_eq!(e.vf_switch_back(), Err(VfError::NotOffered));
}

#[test]
fn switch_data_path_is_completed_counted_and_honoured_only_while_offered() {
    need_netns!();
    let (_d, e) = vf_emu(60_000, BackendConfig::Sink, |_| {});
    let mut g = ready(&e, nvsp::VERSION_61, SRIOV);
    // Not offered yet (delay 60 s): completed, no action.
    let t = g.send_nvsp(&[nt::SWITCH_DATA_PATH, 1], true);
    assert!(g.expect_completion(t).payload.is_empty());
    let s = e.vf_state().unwrap();
    assert_eq!((s.switches.ignored, s.datapath_vf), (1, false));
    e.vf_offer().unwrap();
    g.expect("VF association", is_assoc);
    let t = g.send_nvsp(&[nt::SWITCH_DATA_PATH, 1], true);
    assert!(g.expect_completion(t).payload.is_empty());
    assert!(e.vf_state().unwrap().datapath_vf);
    // Without the completion flag: honoured, nothing sent back.
    g.send_nvsp(&[nt::SWITCH_DATA_PATH, 0], false);
    wait("switch to synthetic", || {
        e.vf_state().unwrap().switches.to_synthetic == 1
    });
    assert!(
        g.wait_for(Duration::from_millis(50), &mut |p| p.kind == 11)
            .is_none()
    );
    // A value that is neither 0 nor 1: completed, counted, no change.
    let t = g.send_nvsp(&[nt::SWITCH_DATA_PATH, 7], true);
    g.expect_completion(t);
    // A SWITCH_DATA_PATH shorter than its 8 bytes cannot be carried (ring packets are 8-byte granular): a type-only
    // message arrives zero-padded, i.e. as {0}; an empty one is an NVSP error, never a panic.
    g.send_raw(&[], true);
    wait("empty message counted", || {
        e.stats().protocol_errors.get("nvspTooShort") == Some(&1)
    });
    let s = e.vf_state().unwrap();
    assert_eq!(
        (
            s.switches.to_vf,
            s.switches.to_synthetic,
            s.switches.bad_value,
            s.switches.ignored
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(
        e.stats().data_path,
        vec![1, 1, 0, 7],
        "every request in the history"
    );
}

/// Offered, guest switched to VF, guest end up with a raw socket.
fn on_vf(cap: &CaptureHandle) -> (tempfile::TempDir, Emulator, FakeGuest, Raw) {
    let (d, e) = vf_emu(0, BackendConfig::Capture(cap.clone()), |_| {});
    let mut g = ready(&e, nvsp::VERSION_61, SRIOV);
    g.expect("VF association", is_assoc);
    let raw = Raw::open(VF);
    let t = g.send_nvsp(&[nt::SWITCH_DATA_PATH, 1], true);
    g.expect_completion(t);
    assert!(e.vf_state().unwrap().datapath_vf);
    (d, e, g, raw)
}

#[test]
fn datapath_vf_sends_unicast_over_the_veth_and_broadcast_over_the_ring() {
    need_netns!();
    let cap = CaptureHandle::default();
    let (_d, e, mut g, raw) = on_vf(&cap);
    let uni = build_flow_frame(MAC, 3, 200);
    let mut bcast = build_flow_frame([0xff; 6], 4, 90);
    bcast[..6].copy_from_slice(&[0xff; 6]);
    let mut mcast = build_flow_frame(MAC, 5, 90);
    mcast[..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
    for _ in 0..5 {
        cap.inject(&uni);
    }
    cap.inject(&bcast);
    cap.inject(&mcast);
    let on_ring = g.receive_frames(2, Duration::from_secs(2), true);
    let got: Vec<&[u8]> = on_ring.iter().map(|f| &f.frame[..]).collect();
    assert_eq!(
        got,
        vec![&bcast[..], &mcast[..]],
        "broadcast and multicast stay synthetic"
    );
    let on_vf = raw.recv_want(5, Duration::from_secs(5));
    assert_eq!(on_vf.len(), 5, "unicast on the VF netdev");
    assert!(on_vf.iter().all(|f| *f == uni));
    assert!(
        g.receive_frames(1, Duration::from_millis(100), true)
            .is_empty()
    );
    let s = e.vf_state().unwrap();
    assert_eq!(
        (s.vf_host_to_guest_frames, s.vf_host_to_guest_bytes),
        (5, 5 * 200)
    );
    assert_eq!(e.stats().totals.host_to_guest_frames, 2);
    // The guest's VF → host end → backend, counted apart from the synthetic path.
    let out = build_flow_frame([0x02, 0, 0, 0, 0, 9], 6, 300);
    raw.send(&out);
    raw.send(&out);
    wait("VF frames at the backend", || cap.sent().len() == 2);
    assert!(cap.sent().iter().all(|f| *f == out));
    let s = e.vf_state().unwrap();
    assert_eq!(
        (s.vf_guest_to_host_frames, s.vf_guest_to_host_bytes),
        (2, 600)
    );
    assert_eq!(
        e.stats().totals.guest_to_host_frames,
        0,
        "not on the synthetic path"
    );
    // The kernel's own counters on the host end agree.
    let k = kernel("vfemu0h");
    assert_eq!((k.tx_packets, k.rx_packets), (5, 2));
    let k = kernel(VF);
    assert_eq!((k.rx_packets, k.tx_packets), (5, 2));
}

#[test]
fn a_vf_mac_other_than_the_synthetic_one_gets_its_own_unicast() {
    need_netns!();
    let cap = CaptureHandle::default();
    let vfmac = [0x02, 0x15, 0x5d, 0x00, 0x00, 0x42];
    let (_d, e) = vf_emu(0, BackendConfig::Capture(cap.clone()), |c| {
        c.vf.as_mut().unwrap().mac = Some(vfmac);
    });
    assert_eq!(vf_netdev::by_name(VF).unwrap().mac, Some(vfmac));
    let mut g = ready(&e, nvsp::VERSION_61, SRIOV | caps::IEEE8021Q);
    g.expect("VF association", is_assoc);
    let raw = Raw::open(VF);
    let t = g.send_nvsp(&[nt::SWITCH_DATA_PATH, 1], true);
    g.expect_completion(t);
    cap.inject(&build_flow_frame(vfmac, 1, 100));
    cap.inject(&build_flow_frame(MAC, 2, 100));
    assert_eq!(raw.recv_want(1, Duration::from_secs(5)).len(), 1);
    assert_eq!(
        g.receive_frames(1, Duration::from_secs(1), true).len(),
        1,
        "synthetic MAC: ring"
    );
    // Change it at run time: now the synthetic MAC's frames are the VF's.
    e.vf_set_mac(MAC).unwrap();
    assert!(matches!(
        e.vf_set_mac([0x01, 0, 0, 0, 0, 1]),
        Err(VfError::Invalid(_))
    ));
    cap.inject(&build_flow_frame(MAC, 3, 100));
    assert_eq!(raw.recv_want(1, Duration::from_secs(5)).len(), 1);
    assert_eq!(e.vf_state().unwrap().mac, "00:15:5d:00:00:01");
}

#[test]
fn revoke_and_switch_back_send_the_right_bytes_and_transaction_ids() {
    need_netns!();
    let cap = CaptureHandle::default();
    let (_d, e, mut g, raw) = on_vf(&cap);
    e.vf_switch_back().unwrap();
    let p = g.expect("host SWITCH_DATA_PATH", |p| {
        p.kind == 6 && p.nvsp_type() == nt::SWITCH_DATA_PATH
    });
    assert_eq!(p.trans_id, nvsp::TRANS_ID_SWITCH_DATA_PATH);
    assert!(p.completion_requested);
    assert_eq!(p.u32(4), nvsp::DATAPATH_SYNTHETIC);
    assert_eq!(&p.payload[..8], &[129, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(p.payload.len(), 40);
    let s = e.vf_state().unwrap();
    assert_eq!((s.datapath_vf, s.switches.host_switch_back), (false, 1));
    cap.inject(&build_flow_frame(MAC, 1, 100));
    assert_eq!(
        g.receive_frames(1, Duration::from_secs(1), true).len(),
        1,
        "synthetic again"
    );
    // The guest switches back to VF, then the host revokes.
    let t = g.send_nvsp(&[nt::SWITCH_DATA_PATH, 1], true);
    g.expect_completion(t);
    e.vf_revoke().unwrap();
    let p = g.expect("VF association", is_assoc);
    assert_eq!(p.trans_id, nvsp::TRANS_ID_VF_ASSOCIATION);
    assert!(p.completion_requested);
    assert_eq!(
        &p.payload[..12],
        &[128, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0],
        "allocated 0, serial 7"
    );
    let s = e.vf_state().unwrap();
    assert_eq!(
        (s.offered, s.datapath_vf, s.revokes, s.state),
        (false, false, 1, Some("revoked"))
    );
    cap.inject(&build_flow_frame(MAC, 2, 100));
    assert_eq!(g.receive_frames(1, Duration::from_secs(1), true).len(), 1);
    assert!(raw.recv_all(Duration::from_millis(100)).is_empty());
    // A guest switch after the revoke is completed and ignored.
    let t = g.send_nvsp(&[nt::SWITCH_DATA_PATH, 1], true);
    g.expect_completion(t);
    assert_eq!(e.vf_state().unwrap().switches.ignored, 1);
    // The guest completing the host's messages (ids ≥ 2^63) is fine.
    assert!(
        e.stats().protocol_errors.is_empty(),
        "{:?}",
        e.stats().protocol_errors
    );
}

#[test]
fn remove_deletes_the_netdev_under_traffic_and_add_re_offers() {
    need_netns!();
    let cap = CaptureHandle::default();
    let (_d, e, mut g, raw) = on_vf(&cap);
    let uni = build_flow_frame(MAC, 1, 100);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (c2, s2) = (cap.clone(), stop.clone());
    let feeder = std::thread::spawn(move || {
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            c2.inject(&uni);
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    wait("traffic on the VF", || {
        e.vf_state().unwrap().vf_host_to_guest_frames > 20
    });
    e.vf_remove().unwrap();
    assert!(!exists(VF) && !exists("vfemu0h"), "pair deleted");
    drop(raw);
    let p = g.expect("VF association", is_assoc);
    assert_eq!(p.u32(4), 0, "withdrawn after the removal");
    let s = e.vf_state().unwrap();
    assert_eq!(
        (s.present, s.offered, s.datapath_vf, s.removes),
        (false, false, false, 1)
    );
    assert_eq!(s.port_mode, None);
    let frames = g.receive_frames(10, Duration::from_secs(2), true);
    assert_eq!(frames.len(), 10, "rx fell back to the ring");
    assert_eq!(e.vf_remove(), Err(VfError::NotPresent));
    assert_eq!(e.vf_offer(), Err(VfError::NotPresent));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    feeder.join().unwrap();
    // Hot-add: the pair again, offered again after the (0 ms) delay.
    e.vf_add().unwrap();
    assert!(exists(VF) && exists("vfemu0h"));
    assert_eq!(e.vf_add(), Err(VfError::AlreadyPresent));
    let p = g.expect("VF association again", |p| is_assoc(p) && p.u32(4) == 1);
    assert_eq!(p.u32(8), 7);
    let s = e.vf_state().unwrap();
    assert_eq!((s.present, s.offered, s.adds, s.offers), (true, true, 1, 2));
    drop(e);
    assert!(!exists(VF) && !exists("vfemu0h"), "deleted on drop");
}

#[test]
fn control_socket_round_trips() {
    need_netns!();
    let (d, e) = vf_emu(60_000, BackendConfig::Sink, |_| {});
    let path = d.path().join("ctl.sock");
    let server = e.serve_control(&path).unwrap();
    let req = |cmd: &str, args: &[&str]| hv_emu::ctl::request(&path, cmd, args).unwrap();
    let r = req("vf", &["state"]);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["vf"]["iface"], VF);
    assert_eq!(r["vf"]["hostIface"], "vfemu0h");
    assert_eq!(r["vf"]["serial"], 7);
    let r = req("vf", &["offer"]);
    assert_eq!(r["ok"], false);
    assert!(r["error"].as_str().unwrap().contains("not ready"), "{r}");
    let mut g = ready(&e, nvsp::VERSION_61, SRIOV);
    let r = req("vf", &["offer"]);
    assert_eq!(
        (r["ok"].clone(), r["vf"]["offered"].clone()),
        (true.into(), true.into()),
        "{r}"
    );
    g.expect("VF association", is_assoc);
    let r = req("vf", &["mac", "02:00:00:00:00:05"]);
    assert_eq!(r["vf"]["mac"], "02:00:00:00:00:05", "{r}");
    assert_eq!(req("vf", &["mac", "zz"])["ok"], false);
    assert_eq!(req("vf", &["bogus"])["ok"], false);
    let r = req("link", &["down"]);
    assert_eq!(
        (r["ok"].clone(), r["linkUp"].clone()),
        (true.into(), false.into())
    );
    let r = req("stats", &[]);
    assert_eq!(r["stats"]["linkUp"], false);
    assert_eq!(r["stats"]["vf"]["offers"], 1);
    let r = req("nope", &[]);
    assert!(
        r["error"].as_str().unwrap().contains("unknown command"),
        "{r}"
    );
    // Several requests on one connection, and a malformed line.
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    s.write_all(b"{\"cmd\":\"link\",\"args\":[\"up\"]}\nnot json\n{\"cmd\":\"vf\"}\n")
        .unwrap();
    let mut lines = std::io::BufReader::new(s.try_clone().unwrap()).lines();
    let a: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let b: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let c: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (a["ok"].clone(), b["ok"].clone(), c["ok"].clone()),
        (true.into(), false.into(), false.into())
    );
    assert!(c["error"].as_str().unwrap().starts_with("usage: vf"), "{c}");
    drop(server);
    assert!(!path.exists(), "socket removed");
}

/// A fresh network namespace held by an fd (created on a helper thread, which leaves this thread's alone).
fn other_netns() -> std::fs::File {
    std::thread::spawn(|| {
        // SAFETY: unshare only changes this helper thread's namespaces.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0);
        std::fs::File::open("/proc/thread-self/ns/net").unwrap()
    })
    .join()
    .unwrap()
}

/// Run `f` on a thread inside the namespace `ns`.
fn in_netns<T: Send>(ns: &std::fs::File, f: impl FnOnce() -> T + Send) -> T {
    use std::os::fd::AsRawFd;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on an open namespace fd; only this scoped thread moves.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0);
            f()
        })
        .join()
        .unwrap()
    })
}

#[test]
fn the_guest_end_can_live_in_another_namespace() {
    need_netns!();
    use std::os::fd::AsRawFd;
    let ns = other_netns();
    let cap = CaptureHandle::default();
    let (_d, e) = vf_emu(0, BackendConfig::Capture(cap.clone()), |c| {
        c.vf.as_mut().unwrap().netns = Some(hv_emu::VfNetns::Fd(ns.as_raw_fd()));
    });
    assert!(
        !exists(VF) && exists("vfemu0h"),
        "guest end moved out, host end here"
    );
    let (mac, ipv6_off) = in_netns(&ns, || {
        let info = vf_netdev::by_name(VF).expect("guest end in the other namespace");
        let off = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{VF}/disable_ipv6"))
            .map(|v| v.trim() == "1")
            .unwrap_or(true);
        (info.mac, off)
    });
    assert_eq!(mac, Some(MAC));
    assert!(ipv6_off, "IPv6 off on the guest end in its namespace too");
    let mut g = ready(&e, nvsp::VERSION_61, SRIOV);
    g.expect("VF association", is_assoc);
    let t = g.send_nvsp(&[nt::SWITCH_DATA_PATH, 1], true);
    g.expect_completion(t);
    let got = in_netns(&ns, || {
        let raw = Raw::open(VF);
        cap.inject(&build_flow_frame(MAC, 1, 128));
        raw.recv_want(1, Duration::from_secs(5))
    });
    assert_eq!(got.len(), 1, "unicast reached the VF in its namespace");
    drop(e);
    assert!(!exists("vfemu0h"));
    assert!(in_netns(&ns, || !exists(VF)), "pair deleted on drop");
}

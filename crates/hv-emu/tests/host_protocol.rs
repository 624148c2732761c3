//! NVSP/RNDIS control plane of the host, driven by the scripted fake guest over a real tree.

mod rig;

use rig::{emu, u32_at};

use hv_emu::testing::FakeGuest;
use netvsc_proto::nvsp::{self, msg_type as nt, status as ns};
use netvsc_proto::{oid, rndis as r};
use std::time::Duration;

#[test]
fn each_of_the_six_versions_is_accepted_and_others_are_not() {
    for v in nvsp::VERSIONS {
        let (_d, e) = emu(|_| {});
        let mut g = FakeGuest::attach(e.tree());
        let t = g.send_nvsp(&[nt::INIT, v, v], true);
        let c = g.expect_completion(t);
        assert_eq!(c.nvsp_type(), nt::INIT_COMPLETE);
        assert_eq!(c.u32(12), ns::SUCCESS, "version {v:#x}");
        assert_eq!(c.u32(8), 34, "max_mdl_chain_len");
        let len: usize = if v == nvsp::VERSION_61 { 40 } else { 28 };
        assert_eq!(
            c.payload.len(),
            len.div_ceil(8) * 8,
            "message size at {v:#x}"
        );
        assert_eq!(e.stats().nvsp_version, Some(v));
    }
    let (_d, e) = emu(|_| {});
    let mut g = FakeGuest::attach(e.tree());
    assert_eq!(g.init(0x50001), ns::NONE);
    assert_eq!(e.stats().nvsp_version, None);
    // Restricted host: 6.1 refused, 5 accepted (a guest falls back).
    let (_d, e) = emu(|c| c.accept_versions = Some(vec![nvsp::VERSION_5]));
    let mut g = FakeGuest::attach(e.tree());
    assert_ne!(g.init(nvsp::VERSION_61), ns::SUCCESS);
    assert_eq!(g.init(nvsp::VERSION_5), ns::SUCCESS);
}

#[test]
fn handshake_sizes_and_no_unrequested_completions() {
    let (_d, e) = emu(|_| {});
    let mut g = FakeGuest::attach(e.tree());
    g.handshake(nvsp::VERSION_61);
    assert_eq!(g.sub_alloc_size, 256 + 1514 + 36);
    assert_eq!(g.section_size, 6144);
    // NDIS_CONFIG and NDIS_VER went without the flag: nothing else may be in the ring.
    assert!(
        g.wait_for(Duration::from_millis(50), &mut |_| true)
            .is_none(),
        "unexpected completion"
    );
    let s = e.stats();
    assert_eq!(s.ndis_config.unwrap().mtu, 1514);
    assert_eq!(
        (s.ndis_version.unwrap().major, s.ndis_version.unwrap().minor),
        (6, 30)
    );
    // Wrong GPADL → FAIL.
    let t = g.send_nvsp(&[nt::SEND_RECV_BUF, 12345, 0xCAFE], true);
    assert_eq!(g.expect_completion(t).u32(4), ns::FAILURE);
    let t = g.send_nvsp(&[nt::SEND_SEND_BUF, 12345, 0xFACE], true);
    assert_eq!(g.expect_completion(t).u32(4), ns::FAILURE);
    assert_eq!(e.stats().protocol_errors["wrongRecvGpadl"], 1);
    // Switch data path: recorded, completed only when asked.
    let t = g.send_nvsp(&[nt::SWITCH_DATA_PATH, 1], true);
    assert!(g.expect_completion(t).payload.is_empty());
    g.send_nvsp(&[nt::SWITCH_DATA_PATH, 0], false);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(e.stats().data_path, vec![1, 0]);
    // VF association goes to the guest with the fixed transaction id.
    assert!(e.send_vf_association(true, 7));
    let p = g.expect("VF association", |p| {
        p.nvsp_type() == nt::SEND_VF_ASSOCIATION
    });
    assert_eq!(
        (p.trans_id, p.u32(4), p.u32(8)),
        (nvsp::TRANS_ID_VF_ASSOCIATION, 1, 7)
    );
}

#[test]
fn rndis_init_queries_sets_and_errors() {
    let (_d, e) = emu(|_| {});
    let mut g = FakeGuest::attach(e.tree());
    g.handshake(nvsp::VERSION_61);
    let init = g.rndis_init();
    assert_eq!(init.len(), 52);
    let f = |o| u32_at(&init, o).unwrap();
    assert_eq!(
        (f(12), f(16), f(24), f(28), f(32), f(36), f(40)),
        (0, 1, 1, 0, 8, 0xEFFF_FFFF, 3)
    );
    let (st, mac) = g.query(oid::E802_3_PERMANENT_ADDRESS, &[]);
    assert_eq!((st, mac), (r::status::SUCCESS, e.config().mac.to_vec()));
    assert_eq!(
        g.query(oid::GEN_MAXIMUM_FRAME_SIZE, &[]).1,
        1500u32.to_le_bytes()
    );
    assert_eq!(
        g.query(oid::GEN_MEDIA_CONNECT_STATUS, &[]).1,
        0u32.to_le_bytes()
    );
    assert_eq!(
        g.query(oid::GEN_LINK_SPEED, &[]).1,
        100_000_000u32.to_le_bytes()
    );
    let (st, caps) = g.query(oid::TCP_OFFLOAD_HARDWARE_CAPABILITIES, &[0xA7, 3, 156, 0]);
    assert_eq!((st, caps.len(), caps[0], caps[1]), (0, 156, 0xA7, 3));
    let (st, rss) = g.query(oid::GEN_RECEIVE_SCALE_CAPABILITIES, &[0x88, 2, 18, 0]);
    assert_eq!((st, rss.len()), (0, 18), "the 18-byte revision-2 object");
    assert_eq!(u32_at(&rss, 12), Some(8));
    assert_eq!(u16::from_le_bytes([rss[16], rss[17]]), 128);
    assert_eq!(g.query(0x0BAD_0BAD, &[]).0, r::status::NOT_SUPPORTED);
    // SETs: filter, short filter, offload params, unknown.
    assert_eq!(
        g.set(oid::GEN_CURRENT_PACKET_FILTER, &0xDu32.to_le_bytes()),
        0
    );
    assert_eq!(
        g.set(oid::GEN_CURRENT_PACKET_FILTER, &[1, 0]),
        r::status::INVALID_LENGTH
    );
    let mut off = vec![0u8; 28];
    off[..4].copy_from_slice(&[0x80, 3, 28, 0]);
    off[4] = 1;
    off[5] = 4;
    off[11] = 2;
    assert_eq!(g.set(oid::TCP_OFFLOAD_PARAMETERS, &off), 0);
    assert_eq!(
        g.set(oid::TCP_OFFLOAD_PARAMETERS, &off[..10]),
        r::status::INVALID_LENGTH
    );
    assert_eq!(g.set(0x0BAD_0BAD, &[0; 4]), r::status::NOT_SUPPORTED);
    assert_eq!(
        g.set(oid::GEN_CURRENT_PACKET_FILTER, &0x20u32.to_le_bytes()),
        0
    );
    // KEEPALIVE answered; HALT not.
    let mut ka = vec![0u8; 12];
    ka[..4].copy_from_slice(&r::msg_type::KEEPALIVE.to_le_bytes());
    ka[4] = 12;
    ka[8] = 9;
    let reply = g.rndis_request(&ka);
    assert_eq!((u32_at(&reply, 8), u32_at(&reply, 12)), (Some(9), Some(0)));
    let s = e.stats();
    assert_eq!(s.packet_filters, vec![0xD, 0x20]);
    assert_eq!(s.offload.tcp_ipv4_checksum, 4);
    assert_eq!(s.offload.lso_v2_ipv4, 2);
    assert!(s.oids.queried.contains(&"0x01010101".to_string()));
    assert!(s.rndis_initialized);
    let json: serde_json::Value = serde_json::from_str(&e.stats_json()).unwrap();
    assert_eq!(json["packetFilters"], serde_json::json!([13, 32]));
    assert_eq!(json["nvspVersion"], 0x60001);
}

#[test]
fn malformed_messages_are_counted_not_fatal() {
    let (_d, e) = emu(|_| {});
    let mut g = FakeGuest::attach(e.tree());
    g.send_raw(&[1, 0], false); // INIT cut short (padded to 8 bytes by the ring)
    g.send_nvsp(&[nt::SEND_RECV_BUF, 1], false); // before INIT
    g.handshake(nvsp::VERSION_5);
    g.send_nvsp(&[999], false);
    // RNDIS: length beyond the section, zero length, bad packet offsets, bad PPI.
    let t = g.send_section(1, &[1, 0, 0, 0, 0xFF, 0, 0, 0], 0);
    assert_eq!(g.expect_completion(t).u32(4), ns::FAILURE);
    let mut bad = hv_emu::testing::build_tx_packet(&[0u8; 60], &[(6, 5)]);
    bad[8..12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let t = g.send_section(2, &bad, 0);
    assert_eq!(g.expect_completion(t).u32(4), ns::FAILURE);
    let mut bad = hv_emu::testing::build_tx_packet(&[0u8; 60], &[(6, 5)]);
    bad[44..48].copy_from_slice(&3u32.to_le_bytes());
    let t = g.send_section(3, &bad, 0);
    assert_eq!(g.expect_completion(t).u32(4), ns::FAILURE);
    // Section out of range; subchannel request beyond max_queues; unknown completion.
    let t = g.send_nvsp(&[nt::SEND_RNDIS_PKT, 0, 1 << 30, 64], true);
    assert_eq!(g.expect_completion(t).u32(4), ns::FAILURE);
    let t = g.send_nvsp(&[nt::SUBCHANNEL, 1, 8], true);
    assert_eq!(g.expect_completion(t).u32(4), ns::FAILURE);
    g.complete(4242);
    // Still alive: a normal request works.
    g.rndis_init();
    std::thread::sleep(Duration::from_millis(20));
    let errs = e.stats().protocol_errors;
    for kind in [
        "initTooShort",
        "beforeInit",
        "unknownNvspType",
        "rndisBadLength",
        "packetBadDataOffset",
        "ppiBadLength",
        "badSendSection",
        "subchannelRejected",
        "unknownCompletion",
    ] {
        assert!(
            errs.get(kind).copied().unwrap_or(0) >= 1,
            "{kind} not counted: {errs:?}"
        );
    }
}

#[test]
fn silent_host_never_answers() {
    let (_d, e) = emu(|c| c.silent = true);
    let mut g = FakeGuest::attach(e.tree());
    g.send_nvsp(&[nt::INIT, nvsp::VERSION_61, nvsp::VERSION_61], true);
    assert!(
        g.wait_for(Duration::from_millis(100), &mut |_| true)
            .is_none()
    );
    assert!(e.stats().channels[0].triggers >= 1);
}

#[test]
fn vf_commands_without_a_vf_are_typed_errors_and_the_control_socket_says_so() {
    let (d, e) = emu(|_| {});
    assert_eq!(e.vf_offer(), Err(hv_emu::VfError::NotConfigured));
    assert_eq!(e.vf_remove(), Err(hv_emu::VfError::NotConfigured));
    assert!(e.vf_state().is_none());
    assert!(e.stats().vf.is_none());
    let path = d.path().join("ctl.sock");
    let _server = e.serve_control(&path).unwrap();
    let r = hv_emu::ctl::request(&path, "vf", &["remove"]).unwrap();
    assert_eq!(r["ok"], false);
    assert!(
        r["error"].as_str().unwrap().contains("no VF configured"),
        "{r}"
    );
    let r = hv_emu::ctl::request(&path, "help", &[]).unwrap();
    assert_eq!(r["ok"], true);
    // A guest SWITCH_DATA_PATH with no VF at all: completed, recorded, nothing else.
    let mut g = FakeGuest::attach(e.tree());
    g.handshake(nvsp::VERSION_61);
    let t = g.send_nvsp(&[nt::SWITCH_DATA_PATH, 1], true);
    assert!(g.expect_completion(t).payload.is_empty());
}

/// An unmonitored channel (no monitor id offered) is served only when the guest signals through the uio fd, as the
/// kernel's uio_hv_generic then calls vmbus_setevent: the int-page relid bit alone wakes nobody. A monitored one is
/// served on its monitor-page bit alone (DPDK sets only that).
#[test]
fn unmonitored_channels_wait_for_the_uio_signal() {
    let (_d, e) = emu(|c| c.monitored = false);
    assert!(
        !e.tree().device_dir().join("monitor_id").exists(),
        "no monitor_id, as the kernel hides it"
    );
    let mut g = FakeGuest::attach(e.tree());
    // A first exchange, signalled: the worker is then past its start-up look at the ring; then time for it to
    // finish that drain (a message written while the host still drains is rightly served: it re-checks the ring
    // after unmasking).
    assert_eq!(g.init(nvsp::VERSION_61), ns::SUCCESS);
    std::thread::sleep(Duration::from_millis(50));
    g.signals = false;
    let t = g.send_nvsp(&[nt::INIT, nvsp::VERSION_61, nvsp::VERSION_61], true);
    let relid = e.tree().config().relid;
    e.tree()
        .int_page()
        .fetch_or_u32(2048 + 4 * (relid as usize / 32), 1 << (relid % 32))
        .unwrap();
    assert!(
        g.wait_for(Duration::from_millis(300), &mut |_| true)
            .is_none(),
        "served without a signal"
    );
    let writes = e.tree().ctl().irq_writes();
    g.signal();
    assert_eq!(e.tree().ctl().irq_writes(), writes + 1);
    assert_eq!(g.expect_completion(t).u32(12), ns::SUCCESS);

    let (_d, e) = emu(|_| {});
    let mut g = FakeGuest::attach(e.tree());
    assert_eq!(g.init(nvsp::VERSION_61), ns::SUCCESS);
    g.signals = false;
    let t = g.send_nvsp(&[nt::INIT, nvsp::VERSION_61, nvsp::VERSION_61], true);
    let m = e.tree().config().monitor_id.unwrap();
    e.tree()
        .monitor_page()
        .fetch_or_u32(8 + 8 * usize::from(m / 32), 1 << (m % 32))
        .unwrap();
    assert_eq!(g.expect_completion(t).u32(12), ns::SUCCESS);
    assert_eq!(e.tree().ctl().irq_writes(), 0);
}

//! Data paths of the host: tx offloads, rx delivery with PPIs and completion-based reclaim,
//! packet filter, subchannels + RSS, link indications, GPA-direct sends and the pcap mirror.

mod rig;

use rig::{emu, u32_at};

use hv_emu::backend::{CaptureHandle, build_flow_frame};
use hv_emu::host::frame;
use hv_emu::testing::{FakeGuest, build_tx_packet};
use hv_emu::{BackendConfig, Emulator, GeneratorConfig};
use netvsc_proto::nvsp::{self, msg_type as nt, status as ns};
use netvsc_proto::ppi::{self, RxChecksumInfo, TxChecksumInfo, VlanInfo};
use netvsc_proto::{oid, rndis as r};
use std::time::Duration;

const MAC: [u8; 6] = [0x00, 0x15, 0x5d, 0x00, 0x00, 0x01];

fn ready_guest(e: &Emulator, filter: u32) -> FakeGuest {
    let mut g = FakeGuest::attach(e.tree());
    g.handshake(nvsp::VERSION_61);
    g.rndis_init();
    assert_eq!(
        g.set(oid::GEN_CURRENT_PACKET_FILTER, &filter.to_le_bytes()),
        0
    );
    g
}

fn wait(mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not reached in 5 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn tx_applies_vlan_checksum_and_lso() {
    let cap = CaptureHandle::default();
    let (_d, e) = emu(|c| c.backend = BackendConfig::Capture(cap.clone()));
    let mut g = ready_guest(&e, 0xD);
    // Checksum offload: zeroed checksums, PPI asks for IPv4 header + TCP.
    let mut f1 = build_flow_frame([2; 6], 0, 200);
    f1[24] = 0;
    f1[25] = 0;
    f1[50] = 0;
    f1[51] = 0;
    let csum = TxChecksumInfo::IS_IPV4
        | TxChecksumInfo::TCP_CSUM
        | TxChecksumInfo::IP_HDR_CSUM
        | (34 << 16);
    // VLAN: untagged frame + PPI → tagged on the wire.
    let f2 = build_flow_frame([2; 6], 1, 100);
    // LSO: 4000-byte payload, MSS 1448, IPv4 total length zeroed as guests do.
    let mut f3 = build_flow_frame([2; 6], 2, 14 + 40 + 4000);
    f3[16] = 0;
    f3[17] = 0;
    let lso = 1448 | (34 << 20) | (1 << 30);
    // Aggregate three messages in one section (each padded to 8 like DPDK).
    let mut section = Vec::new();
    for m in [
        build_tx_packet(&f1, &[(ppi::TCPIP_CHKSUM, csum)]),
        build_tx_packet(&f2, &[(ppi::IEEE_8021Q, VlanInfo::from_tci(0x2064).0)]),
        build_tx_packet(&f3, &[(ppi::TCP_LARGESEND, lso)]),
    ] {
        let mut m = m;
        let padded = m.len().div_ceil(8) * 8;
        m.resize(padded, 0);
        let len = m.len() as u32;
        m[4..8].copy_from_slice(&len.to_le_bytes());
        section.extend_from_slice(&m);
    }
    assert!(section.len() <= 6144);
    let t = g.send_section(5, &section, 0);
    assert_eq!(g.expect_completion(t).u32(4), ns::SUCCESS);
    let sent = cap.sent();
    assert_eq!(
        sent.len(),
        1 + 1 + 3,
        "csum frame, vlan frame, 3 LSO segments"
    );
    assert_eq!(
        frame::verify(&sent[0]),
        Some((Some(true), Some((true, true))))
    );
    let mut untagged = Vec::new();
    assert_eq!(frame::strip_vlan(&sent[1], &mut untagged), Some(0x2064));
    assert_eq!(untagged, f2);
    let mut payload = Vec::new();
    for (i, s) in sent[2..].iter().enumerate() {
        assert!(s.len() <= 14 + 40 + 1448);
        assert_eq!(
            frame::verify(s),
            Some((Some(true), Some((true, true)))),
            "segment {i}"
        );
        payload.extend_from_slice(&s[54..]);
    }
    assert_eq!(payload, f3[54..]);
    let s = e.stats();
    assert_eq!(s.totals.guest_to_host_frames, 3);
    assert_eq!(s.channels[0].lso_segments, 3);
    assert_eq!(s.channels[0].rndis_per_section.max, 3);
}

#[test]
fn gpa_direct_send_reads_guest_memory() {
    let cap = CaptureHandle::default();
    let (_d, e) = emu(|c| c.backend = BackendConfig::Capture(cap.clone()));
    let mut g = ready_guest(&e, 0xD);
    let f = build_flow_frame([2; 6], 3, 300);
    let msg = build_tx_packet(&f, &[]);
    // Guest "DMA" memory in this process: IOVA = virtual address.
    let buf = vmbus_ring::SharedMem::alloc(8192);
    buf.write(100, &msg).unwrap();
    let addr = buf.as_ptr() as u64 + 100;
    let range = vmbus_ring::GpaRange {
        len: msg.len() as u32,
        offset: (addr % 4096) as u32,
        pfn: addr / 4096,
    };
    let t = g.send_gpa(&[range], 0);
    assert_eq!(g.expect_completion(t).u32(4), ns::SUCCESS);
    assert_eq!(cap.sent(), vec![f]);
    // A bad address is a counted error and a FAIL status, not a crash.
    let t = g.send_gpa(
        &[vmbus_ring::GpaRange {
            len: 64,
            offset: 0,
            pfn: 1,
        }],
        0,
    );
    assert_eq!(g.expect_completion(t).u32(4), ns::FAILURE);
    assert_eq!(e.stats().protocol_errors["gpaReadFailed"], 1);
}

#[test]
fn rx_delivers_with_ppis_and_reclaims_only_on_completion() {
    let cap = CaptureHandle::default();
    let (_d, e) = emu(|c| {
        c.backend = BackendConfig::Capture(cap.clone());
        c.recv_size = 36 * 4096; // 81 sub-allocations of 1806 bytes: 16 reserved + 65 data
    });
    let data = 36 * 4096 / 1806 - 16;
    let mut g = ready_guest(&e, 0xD);
    let plain = build_flow_frame(MAC, 0, 128);
    let mut tagged = Vec::new();
    frame::push_tagged(&build_flow_frame(MAC, 1, 128), 0x0005, &mut tagged);
    cap.inject(&plain);
    cap.inject(&tagged);
    let rx = g.receive_frames(2, Duration::from_secs(5), true);
    assert_eq!(rx.len(), 2);
    assert_eq!(rx[0].frame, plain);
    assert_eq!(
        rx[0].ppi(ppi::TCPIP_CHKSUM),
        Some(RxChecksumInfo::IP_OK | RxChecksumInfo::TCP_OK)
    );
    assert_eq!(rx[1].frame, build_flow_frame(MAC, 1, 128), "tag stripped");
    assert_eq!(
        rx[1].ppi(ppi::IEEE_8021Q).map(|v| VlanInfo(v).tci()),
        Some(5)
    );
    assert_eq!(
        rx[1].ppi(ppi::TCPIP_CHKSUM),
        Some(RxChecksumInfo::IP_OK | RxChecksumInfo::UDP_OK)
    );
    wait(|| e.stats().recv_outstanding == 0);
    // A guest that stops completing: `data` frames fit, the rest are dropped as noRxBuffer.
    for i in 0..100u32 {
        let mut f = build_flow_frame(MAC, 0, 128);
        f[60] = i as u8;
        cap.inject(&f);
    }
    let held = g.receive_frames(data, Duration::from_secs(5), false);
    assert_eq!(held.len(), data);
    wait(|| e.stats().totals.drops.no_rx_buffer == 100 - data as u64);
    assert!(
        g.receive_frames(1, Duration::from_millis(100), false)
            .is_empty()
    );
    // Nothing was overwritten: every held frame is still the one delivered (distinct marker).
    let markers: std::collections::BTreeSet<u8> = held.iter().map(|f| f.frame[60]).collect();
    assert_eq!(markers.len(), data);
    assert_eq!(e.stats().recv_outstanding, data);
}

#[test]
fn packet_filter_decides_what_is_delivered() {
    let cap = CaptureHandle::default();
    let (_d, e) = emu(|c| c.backend = BackendConfig::Capture(cap.clone()));
    let mut g = ready_guest(&e, 0);
    let directed = build_flow_frame(MAC, 0, 64);
    let other = build_flow_frame([0x00, 0x15, 0x5d, 9, 9, 9], 0, 64);
    let bcast = build_flow_frame([0xFF; 6], 0, 64);
    let mcast = build_flow_frame([0x01, 0x00, 0x5e, 0, 0, 1], 0, 64);
    let mut expect = |filter: u32, want: &[&Vec<u8>]| {
        assert_eq!(
            g.set(oid::GEN_CURRENT_PACKET_FILTER, &filter.to_le_bytes()),
            0
        );
        for f in [&directed, &other, &bcast, &mcast] {
            cap.inject(f);
        }
        let got = g.receive_frames(want.len(), Duration::from_millis(300), true);
        let got: Vec<Vec<u8>> = got.into_iter().map(|f| f.frame).collect();
        let want: Vec<Vec<u8>> = want.iter().map(|f| (*f).clone()).collect();
        assert_eq!(got, want, "filter {filter:#x}");
    };
    expect(0x1, &[&directed]);
    expect(0x9, &[&directed, &bcast]);
    expect(0xD, &[&directed, &bcast, &mcast]);
    expect(0x20, &[&directed, &other, &bcast, &mcast]);
    expect(0, &[]);
    let s = e.stats();
    assert_eq!(s.totals.drops.filtered, 3 + 2 + 1);
    assert_eq!(s.totals.host_to_guest_frames, 1 + 2 + 3 + 4);
    assert_eq!(s.packet_filters, vec![0, 1, 9, 0xD, 0x20, 0]);
}

#[test]
fn subchannels_open_and_rss_spreads_generated_flows() {
    let (_d, e) = emu(|c| {
        c.max_queues = 4;
        c.backend = BackendConfig::Generator(GeneratorConfig {
            rate_pps: None,
            flows: 64,
            limit: Some(256),
            dst_mac: MAC,
            ..Default::default()
        });
    });
    let mut g = FakeGuest::attach(e.tree());
    g.handshake(nvsp::VERSION_61);
    g.rndis_init();
    let t = g.send_nvsp(&[nt::SUBCHANNEL, 1, 3], true);
    let c = g.expect_completion(t);
    assert_eq!(
        (c.nvsp_type(), c.u32(4), c.u32(8)),
        (nt::SUBCHANNEL, ns::SUCCESS, 3)
    );
    let table = g.expect("indirection table", |p| {
        p.nvsp_type() == nt::SEND_INDIRECTION_TABLE
    });
    assert_eq!((table.u32(4), table.u32(8)), (16, 12));
    assert_eq!(
        (0..16).map(|i| table.u32(12 + 4 * i)).collect::<Vec<_>>(),
        (0..16).map(|i| i % 4).collect::<Vec<_>>()
    );
    // The tree now has the three subchannel rings.
    let mut subs: Vec<FakeGuest> = (1..=3)
        .map(|i| {
            let relid = e.config().relid + i;
            let rings = e.tree().subchannel(relid).expect("subchannel ring");
            FakeGuest::channel(
                e.tree(),
                rings,
                relid,
                Some(e.config().monitor_id + i as u8),
            )
        })
        .collect();
    assert!(
        e.tree()
            .channel_dir(e.config().relid + 3)
            .join("ring")
            .exists()
    );
    // RSS: Toeplitz over TCP/UDP IPv4 tuples, table i % 4.
    let mut params = vec![0u8; 40 + 512 + 40];
    params[..4].copy_from_slice(&[0x89, 2, 40, 0]);
    let info = 1u32 | 0x100 | 0x200 | 0x4000;
    params[8..12].copy_from_slice(&info.to_le_bytes());
    params[12..14].copy_from_slice(&512u16.to_le_bytes());
    params[16..20].copy_from_slice(&40u32.to_le_bytes());
    params[20..22].copy_from_slice(&40u16.to_le_bytes());
    params[24..28].copy_from_slice(&552u32.to_le_bytes());
    for i in 0..128u32 {
        params[40 + 4 * i as usize..44 + 4 * i as usize].copy_from_slice(&(i % 4).to_le_bytes());
    }
    params[552..592].copy_from_slice(&netvsc_proto::toeplitz::STANDARD_KEY);
    assert_eq!(g.set(oid::GEN_RECEIVE_SCALE_PARAMETERS, &params), 0);
    assert_eq!(
        g.set(oid::GEN_CURRENT_PACKET_FILTER, &0xDu32.to_le_bytes()),
        0
    );
    let mut total = g.receive_frames(1, Duration::from_secs(5), true).len();
    let mut per_channel = vec![total];
    for s in &mut subs {
        let n = s.receive_frames(40, Duration::from_millis(500), true).len();
        per_channel.push(n);
        total += n;
    }
    total += g
        .receive_frames(256, Duration::from_millis(500), true)
        .len();
    per_channel[0] = total - per_channel[1..].iter().sum::<usize>();
    assert_eq!(total, 256, "{per_channel:?}");
    assert!(
        per_channel.iter().all(|&n| n > 0),
        "every channel got frames: {per_channel:?}"
    );
    let s = e.stats();
    assert_eq!(s.channels.len(), 4);
    assert_eq!(s.subchannels, 3);
    assert_eq!(s.rss.hash_info, info);
    for (i, c) in s.channels.iter().enumerate() {
        assert_eq!(c.host_to_guest_frames as usize, per_channel[i]);
    }
    // Each frame's hash PPI matches our own Toeplitz.
    let f = build_flow_frame(MAC, 0, 64);
    let mut input = [0u8; 36];
    let (len, _) = frame::rss_input(&f, info, &mut input).unwrap();
    assert_ne!(
        netvsc_proto::toeplitz::hash(&netvsc_proto::toeplitz::STANDARD_KEY, &input[..len]),
        0
    );
}

/// An RSS parameter block (table then key) with hash info `info`.
fn rss_block(table: &[u32], key: &[u8], info: u32) -> Vec<u8> {
    let tsize = 4 * table.len();
    let mut p = vec![0u8; 40 + tsize + key.len()];
    p[..4].copy_from_slice(&[0x89, 2, 40, 0]);
    p[8..12].copy_from_slice(&info.to_le_bytes());
    p[12..14].copy_from_slice(&(tsize as u16).to_le_bytes());
    p[16..20].copy_from_slice(&40u32.to_le_bytes());
    p[20..22].copy_from_slice(&(key.len() as u16).to_le_bytes());
    p[24..28].copy_from_slice(&((40 + tsize) as u32).to_le_bytes());
    for (i, e) in table.iter().enumerate() {
        p[40 + 4 * i..44 + 4 * i].copy_from_slice(&e.to_le_bytes());
    }
    p[40 + tsize..].copy_from_slice(key);
    p
}

fn ask_subchannels(g: &mut FakeGuest, n: u32) -> u32 {
    let t = g.send_nvsp(&[nt::SUBCHANNEL, 1, n], true);
    let c = g.expect_completion(t);
    assert_eq!((c.nvsp_type(), c.u32(4)), (nt::SUBCHANNEL, ns::SUCCESS));
    c.u32(8)
}

#[test]
fn a_new_session_starts_with_the_primary_and_steers_over_its_own_subchannels() {
    // Hyper-V closes a session's subchannels with it: after a new INIT the guest has the primary only, and a
    // smaller SUBCHANNEL request gets a receive buffer split and RSS steering over just those queues.
    let cap = CaptureHandle::default();
    let (_d, e) = emu(|c| {
        c.max_queues = 4;
        c.backend = BackendConfig::Capture(cap.clone());
    });
    let mut g = FakeGuest::attach(e.tree());
    g.handshake(nvsp::VERSION_61);
    g.rndis_init();
    assert_eq!(ask_subchannels(&mut g, 3), 3);
    assert_eq!(e.stats().subchannels, 3);
    g.handshake(nvsp::VERSION_61);
    g.rndis_init();
    assert_eq!(e.stats().subchannels, 0, "a new session has no subchannels");
    assert_eq!(ask_subchannels(&mut g, 1), 1);
    assert_eq!(e.stats().subchannels, 1);
    assert_eq!(e.stats().channels.len(), 4, "channel objects are kept");
    // A table naming queues 0..3 (valid: below the host's 4) in this 2-queue session.
    let table: Vec<u32> = (0..128).map(|i| i % 4).collect();
    let info = 1u32 | 0x100 | 0x200;
    let key = netvsc_proto::toeplitz::STANDARD_KEY;
    assert_eq!(
        g.set(
            oid::GEN_RECEIVE_SCALE_PARAMETERS,
            &rss_block(&table, &key, info)
        ),
        0
    );
    assert_eq!(
        g.set(oid::GEN_CURRENT_PACKET_FILTER, &0xDu32.to_le_bytes()),
        0
    );
    for flow in 0..64 {
        cap.inject(&build_flow_frame(MAC, flow * 2, 128));
    }
    wait(|| e.stats().totals.host_to_guest_frames == 64);
    let s = e.stats();
    let per: Vec<u64> = s.channels.iter().map(|c| c.host_to_guest_frames).collect();
    assert_eq!(
        per[2] + per[3],
        0,
        "no frame on the old session's channels: {per:?}"
    );
    assert!(per[0] > 0 && per[1] > 0, "both live channels: {per:?}");
    assert_eq!(s.totals.drops.total(), 0);
}

#[test]
fn rss_parameters_are_checked_as_openvmm_does_and_a_refused_block_changes_nothing() {
    let (_d, e) = emu(|c| c.max_queues = 4);
    let mut g = ready_guest(&e, 0xD);
    let key = netvsc_proto::toeplitz::STANDARD_KEY;
    let good: Vec<u32> = (0..128).map(|i| i % 2).collect();
    let info = 1u32 | 0x100 | 0x200;
    assert_eq!(
        g.set(
            oid::GEN_RECEIVE_SCALE_PARAMETERS,
            &rss_block(&good, &key, info)
        ),
        0
    );
    let before = e.stats().rss;
    let mut bad = good.clone();
    bad[7] = 4;
    let invalid = r::status::INVALID_DATA;
    for (what, block) in [
        (
            "entry at the host's queue count",
            rss_block(&bad, &key, info),
        ),
        ("39-byte key", rss_block(&good, &key[..39], info)),
        ("empty table", rss_block(&[], &key, info)),
    ] {
        assert_eq!(
            g.set(oid::GEN_RECEIVE_SCALE_PARAMETERS, &block),
            invalid,
            "{what}"
        );
        let now = e.stats().rss;
        assert_eq!(
            (now.enabled, &now.table, &now.key, now.hash_info),
            (before.enabled, &before.table, &before.key, before.hash_info),
            "{what}: nothing applied"
        );
    }
    // A short table is repeated to 128 entries.
    assert_eq!(
        g.set(
            oid::GEN_RECEIVE_SCALE_PARAMETERS,
            &rss_block(&[3, 1], &key, info)
        ),
        0
    );
    let t = e.stats().rss.table;
    assert_eq!((t.len(), t[0], t[1], t[126], t[127]), (128, 3, 1, 3, 1));
    // No hash function: RSS off.
    assert_eq!(
        g.set(
            oid::GEN_RECEIVE_SCALE_PARAMETERS,
            &rss_block(&good, &key, 0x300)
        ),
        0
    );
    assert!(!e.stats().rss.enabled);
}

#[test]
fn nothing_is_delivered_after_the_guest_has_the_filter_0_reply() {
    // A busy host (unlimited generator over four channels): once the SET of filter 0 is answered, the frames the
    // host delivered are all in the rings — none of the round in progress lands later.
    let (_d, e) = emu(|c| {
        c.max_queues = 4;
        c.backend = BackendConfig::Generator(GeneratorConfig {
            rate_pps: None,
            flows: 64,
            dst_mac: MAC,
            ..Default::default()
        });
    });
    let mut g = ready_guest(&e, 0);
    let mut late = 0;
    for round in 0..20 {
        assert_eq!(
            g.set(oid::GEN_CURRENT_PACKET_FILTER, &0xDu32.to_le_bytes()),
            0
        );
        // Let frames flow (the guest completes them so buffers keep coming back).
        let _ = g.receive_frames(64, Duration::from_millis(5), true);
        assert_eq!(
            g.set(oid::GEN_CURRENT_PACKET_FILTER, &0u32.to_le_bytes()),
            0
        );
        let at = e.stats().totals.host_to_guest_frames;
        std::thread::sleep(Duration::from_millis(3));
        let after = e.stats().totals.host_to_guest_frames;
        late += after - at;
        let _ = g.receive_frames(100_000, Duration::from_millis(5), true);
        assert_eq!(
            late, 0,
            "round {round}: {late} frames delivered after the reply"
        );
    }
}

#[test]
fn link_indications_reach_the_guest() {
    let (_d, e) = emu(|_| {});
    let mut g = ready_guest(&e, 0xD);
    e.set_link(false);
    let p = g.expect("status", |p| {
        p.kind == 7 && p.u32(4) == nvsp::CHANNEL_TYPE_CONTROL
    });
    let m = g.messages(&p).remove(0);
    g.complete(p.trans_id);
    assert_eq!(
        (u32_at(&m, 0), u32_at(&m, 8)),
        (
            Some(r::msg_type::INDICATE_STATUS),
            Some(r::status::MEDIA_DISCONNECT)
        )
    );
    assert_eq!(
        g.query(oid::GEN_MEDIA_CONNECT_STATUS, &[]).1,
        1u32.to_le_bytes()
    );
    e.set_link_speed(400_000_000);
    let p = g.expect("speed", |p| {
        p.kind == 7 && p.u32(4) == nvsp::CHANNEL_TYPE_CONTROL
    });
    let m = g.messages(&p).remove(0);
    g.complete(p.trans_id);
    assert_eq!(u32_at(&m, 8), Some(r::status::LINK_SPEED_CHANGE));
    assert_eq!(
        u32_at(&m, 8 + u32_at(&m, 16).unwrap() as usize),
        Some(400_000_000)
    );
    e.set_link(true);
    let p = g.expect("status", |p| {
        p.kind == 7 && p.u32(4) == nvsp::CHANNEL_TYPE_CONTROL
    });
    assert_eq!(
        u32_at(&g.messages(&p)[0], 8),
        Some(r::status::MEDIA_CONNECT)
    );
}

#[test]
fn loopback_and_pcap_mirror_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("cap.pcap");
    let (_d, e) = emu(|c| {
        c.backend = BackendConfig::Loopback;
        c.pcap = Some(pcap.clone());
    });
    let mut g = ready_guest(&e, 0xD);
    let f = build_flow_frame(MAC, 4, 90);
    let t = g.send_section(0, &build_tx_packet(&f, &[]), 0);
    g.expect_completion(t);
    let rx = g.receive_frames(1, Duration::from_secs(5), true);
    assert_eq!(rx[0].frame, f);
    e.stop();
    let bytes = std::fs::read(&pcap).unwrap();
    assert_eq!(
        &bytes[..4],
        &0x0a0d_0d0au32.to_le_bytes(),
        "a pcapng section header"
    );
    let mut reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).unwrap();
    let mut packets = Vec::new();
    while let Some(block) = reader.next_block() {
        if let pcap_file::pcapng::Block::EnhancedPacket(p) = block.unwrap() {
            let flags = p.options.iter().find_map(|o| match o {
                pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption::Flags(f) => {
                    Some(*f)
                }
                _ => None,
            });
            packets.push((flags, p.original_len, p.data.into_owned()));
        }
    }
    assert_eq!(
        packets,
        vec![(Some(2), 90, f.clone()), (Some(1), 90, f.clone())],
        "the frame out (outbound), then back in (inbound)"
    );
    if std::path::Path::new("/usr/bin/tshark").exists() {
        let out = std::process::Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .arg("-T")
            .arg("fields")
            .arg("-e")
            .arg("ip.src")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            vec!["10.1.0.4", "10.1.0.4"],
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!("SKIP tshark check: tshark not installed\n"),
        )
        .ok();
    }
}

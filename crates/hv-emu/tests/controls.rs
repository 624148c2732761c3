//! Runtime control through the control socket, seen from the scripted fake guest: `link flap` and `speed` reach
//! the guest as RNDIS indications and OID answers, `gen` drives the generator (which waits for the guest's packet
//! filter and does not catch up after a pause), `stats` carries rates, and the stats file is rewritten while the
//! emulator runs and once more when it stops.

mod rig;

use rig::{emu, u32_at};

use hv_emu::backend::{BackendConfig, GeneratorConfig};
use hv_emu::ctl;
use hv_emu::testing::FakeGuest;
use hv_emu::{EmuStats, Emulator};
use netvsc_proto::nvsp;
use netvsc_proto::{oid, rndis as r};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

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

fn req(path: &Path, cmd: &str, args: &[&str]) -> Value {
    ctl::request(path, cmd, args).expect("the control socket answers")
}

/// The next RNDIS status indication the guest receives: (status, first u32 of its buffer).
fn next_status(g: &mut FakeGuest) -> (u32, Option<u32>) {
    let p = g.expect("status indication", |p| {
        p.kind == 7 && p.u32(4) == nvsp::CHANNEL_TYPE_CONTROL
    });
    let m = g.messages(&p).remove(0);
    g.complete(p.trans_id);
    assert_eq!(u32_at(&m, 0), Some(r::msg_type::INDICATE_STATUS));
    let buf_len = u32_at(&m, 12).unwrap_or(0);
    let value = (buf_len >= 4)
        .then(|| u32_at(&m, 8 + u32_at(&m, 16).unwrap() as usize))
        .flatten();
    (u32_at(&m, 8).unwrap(), value)
}

fn generated(e: &Emulator) -> u64 {
    e.stats().backend["generated"].as_u64().unwrap()
}

#[test]
fn link_flap_and_speed_reach_the_guest() {
    let (d, e) = emu(|_| {});
    let sock = d.path().join("ctl.sock");
    let _server = e.serve_control(&sock).unwrap();
    let mut g = ready_guest(&e, 0xD);

    let t0 = Instant::now();
    let reply = req(&sock, "link", &["flap", "150"]);
    assert_eq!(
        reply,
        serde_json::json!({ "ok": true, "linkUp": false, "upAfterMs": 150 })
    );
    assert_eq!(next_status(&mut g).0, r::status::MEDIA_DISCONNECT);
    assert_eq!(next_status(&mut g).0, r::status::MEDIA_CONNECT);
    eprintln!("link flap 150: up again after {:?}", t0.elapsed());
    assert!(e.stats().link_up);

    // A link command during a flap wins: the pending "up" is dropped.
    req(&sock, "link", &["flap", "100"]);
    assert_eq!(next_status(&mut g).0, r::status::MEDIA_DISCONNECT);
    // Already down: nothing new to tell the guest (as OpenVMM, a state equal to the last one told is not sent).
    assert_eq!(req(&sock, "link", &["down"])["linkUp"], false);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!e.stats().link_up, "the flap's return was cancelled");
    assert_eq!(
        g.query(oid::GEN_MEDIA_CONNECT_STATUS, &[]).1,
        1u32.to_le_bytes(),
        "media disconnected"
    );
    req(&sock, "link", &["up"]);
    assert_eq!(next_status(&mut g).0, r::status::MEDIA_CONNECT);

    // speed: the indication carries 100 bps units, and the OID answers the same from then on.
    let reply = req(&sock, "speed", &["40000"]);
    assert_eq!(
        reply,
        serde_json::json!({ "ok": true, "linkSpeedMbps": 40000 })
    );
    assert_eq!(
        next_status(&mut g),
        (r::status::LINK_SPEED_CHANGE, Some(400_000_000))
    );
    assert_eq!(
        g.query(oid::GEN_LINK_SPEED, &[]).1,
        400_000_000u32.to_le_bytes()
    );
    assert_eq!(e.stats().link_speed, 400_000_000);
    for (cmd, args, why) in [
        ("speed", &["0"][..], "outside"),
        ("speed", &["400001"][..], "outside"),
        ("speed", &["fast"][..], "bad speed"),
        ("speed", &[][..], "usage"),
        ("link", &["flap", "0"][..], "outside"),
        ("link", &["flap", "x"][..], "bad flap time"),
        ("link", &["sideways"][..], "usage"),
        ("gen", &["start"][..], "not the generator"),
        ("stats", &["everything"][..], "usage"),
    ] {
        let r = req(&sock, cmd, args);
        assert_eq!(r["ok"], false, "{cmd} {args:?}");
        assert!(
            r["error"].as_str().unwrap().contains(why),
            "{cmd} {args:?}: {r}"
        );
    }
    let help = req(&sock, "help", &[]);
    let usage: Vec<&str> = help["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for c in [
        "gen start",
        "link up|down|flap",
        "speed MBPS",
        "stats [rates]",
        "vf offer",
        "fault KIND",
    ] {
        assert!(
            usage.iter().any(|u| u.contains(c)),
            "help lists {c}: {usage:?}"
        );
    }
}

#[test]
fn gen_commands_drive_the_generator_once_the_filter_admits_traffic() {
    let (d, e) = emu(|c| {
        c.backend = BackendConfig::Generator(GeneratorConfig {
            rate_pps: Some(2000),
            flows: 2,
            dst_mac: MAC,
            ..GeneratorConfig::default()
        });
    });
    let sock = d.path().join("ctl.sock");
    let _server = e.serve_control(&sock).unwrap();
    // Buffers and RNDIS up, filter 0: the generator waits.
    let mut g = ready_guest(&e, 0);
    std::thread::sleep(Duration::from_millis(300));
    let st = req(&sock, "gen", &["status"]);
    assert_eq!(st["generator"]["state"], "waiting", "{st}");
    assert_eq!(
        generated(&e),
        0,
        "nothing generated before the filter admits traffic"
    );
    assert_eq!(
        g.set(oid::GEN_CURRENT_PACKET_FILTER, &0xDu32.to_le_bytes()),
        0
    );
    let first = g.receive_frames(20, Duration::from_secs(5), true);
    assert!(first.len() >= 20, "{}", first.len());
    assert!(first.iter().all(|f| f.frame.len() == 64));
    assert_eq!(
        req(&sock, "gen", &["status"])["generator"]["state"],
        "running"
    );

    // New sizes: the frames after the change are 100 and 200 bytes, in turn per pair of flows.
    let r = req(&sock, "gen", &["size", "100,200"]);
    assert_eq!(r["generator"]["frameSizes"], serde_json::json!([100, 200]));
    let after: Vec<usize> = g
        .receive_frames(200, Duration::from_secs(5), true)
        .into_iter()
        .map(|f| f.frame.len())
        .skip_while(|&l| l == 64)
        .collect();
    assert!(
        after.len() > 8 && after.iter().all(|&l| l == 100 || l == 200),
        "{after:?}"
    );
    assert_eq!(
        req(&sock, "gen", &["imix"])["generator"]["frameSizes"]
            .as_array()
            .unwrap()
            .len(),
        12
    );
    assert_eq!(
        req(&sock, "gen", &["rate", "5000"])["generator"]["ratePps"],
        5000
    );
    assert_eq!(
        req(&sock, "gen", &["rate", "0"])["generator"]["ratePps"],
        Value::Null,
        "0 = unlimited"
    );
    assert_eq!(
        req(&sock, "gen", &["rate", "2000"])["generator"]["burst"],
        16
    );
    assert_eq!(req(&sock, "gen", &["size", "20"])["ok"], false);

    // Stop: the count stands still; start: a new run.
    assert_eq!(
        req(&sock, "gen", &["stop"])["generator"]["state"],
        "stopped"
    );
    let stopped_at = generated(&e);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        generated(&e),
        stopped_at,
        "a stopped generator generates nothing"
    );
    let r = req(&sock, "gen", &["start"]);
    assert!(["waiting", "running"].contains(&r["generator"]["state"].as_str().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while generated(&e) <= stopped_at {
        assert!(Instant::now() < deadline, "a started generator generates");
        g.receive_frames(64, Duration::from_millis(20), true);
    }
    let r = req(&sock, "gen", &["reset"]);
    assert_eq!(r["generator"]["checker"]["received"], 0);
}

/// The guest stops taking frames (filter 0) for 500 ms: on resume, the generator sends at its rate plus at most its
/// burst, not the 500 ms it missed.
#[test]
fn no_catch_up_burst_after_a_pause() {
    const RATE: u64 = 4000;
    let (_d, e) = emu(|c| {
        c.backend = BackendConfig::Generator(GeneratorConfig {
            rate_pps: Some(RATE),
            dst_mac: MAC,
            ..GeneratorConfig::default()
        });
    });
    let mut g = ready_guest(&e, 0xD);
    let got = g.receive_frames(200, Duration::from_secs(5), true);
    assert!(got.len() >= 200, "{}", got.len());
    assert_eq!(
        g.set(oid::GEN_CURRENT_PACKET_FILTER, &0u32.to_le_bytes()),
        0
    );
    std::thread::sleep(Duration::from_millis(500));
    let before = generated(&e);
    let t = Instant::now();
    assert_eq!(
        g.set(oid::GEN_CURRENT_PACKET_FILTER, &0xDu32.to_le_bytes()),
        0
    );
    std::thread::sleep(Duration::from_millis(50));
    let after = generated(&e);
    let window = t.elapsed().as_secs_f64();
    let cap = hv_emu::backend::pace::burst_for(RATE) as f64;
    let frames = (after - before) as f64;
    eprintln!(
        "after a 500 ms pause at {RATE} pps: {frames} frames in the first {:.1} ms (rate x window + burst = {:.0})",
        window * 1000.0,
        RATE as f64 * window + cap
    );
    assert!(
        frames <= RATE as f64 * window + cap,
        "catch-up burst: {frames} frames"
    );
}

#[test]
fn stats_rates_and_the_stats_file_while_running_and_at_stop() {
    let (d, e) = emu(|c| {
        c.backend = BackendConfig::Generator(GeneratorConfig {
            rate_pps: Some(3000),
            flows: 4,
            dst_mac: MAC,
            ..GeneratorConfig::default()
        });
        c.stats_json = Some(c.dir.parent().unwrap().join("stats.json"));
    });
    let file = d.path().join("stats.json");
    let sock = d.path().join("ctl.sock");
    let _server = e.serve_control(&sock).unwrap();
    let mut g = ready_guest(&e, 0xD);
    let deadline = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < deadline {
        g.receive_frames(64, Duration::from_millis(50), true);
    }
    let r = req(&sock, "stats", &["rates"]);
    let rates = &r["rates"];
    eprintln!("stats rates at 3000 pps: {rates}");
    assert!(rates["windowMs"].as_f64().unwrap() >= 900.0, "{rates}");
    let offered = rates["offeredPps"].as_f64().unwrap();
    assert!(offered > 0.0, "the generator offered frames: {rates}");
    let h2g = rates["hostToGuest"]["pps"].as_f64().unwrap();
    assert!(h2g > 0.0 && rates["hostToGuest"]["bps"].as_f64().unwrap() > 0.0);
    assert_eq!(
        rates["channels"][0]["hostToGuest"]["pps"].as_f64(),
        Some(h2g),
        "one channel carries all"
    );
    assert_eq!(rates["guestToHost"]["pps"], 0.0);
    // The file was rewritten while running: two reads a second apart differ, no temporary file is left behind.
    let read =
        || -> Value { serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap() };
    let a = read();
    std::thread::sleep(Duration::from_millis(1300));
    let b = read();
    let frames = |v: &Value| v["totals"]["hostToGuestFrames"].as_u64().unwrap();
    assert!(
        frames(&b) > frames(&a),
        "the file moved on: {} -> {}",
        frames(&a),
        frames(&b)
    );
    assert!(b["statsFile"]["writes"].as_u64().unwrap() >= 2);
    assert!(b["rates"].is_object());
    let stray: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    // At stop the file holds the final counts.
    e.stop();
    let fin: EmuStats = e.stats();
    let c = read();
    assert_eq!(frames(&c), fin.totals.host_to_guest_frames);
    assert_eq!(
        c["backend"]["generated"].as_u64(),
        fin.backend["generated"].as_u64()
    );
}

//! One owner per device across processes: a child process (this test binary re-run as `hold_device_child`) holds
//! the device; a second open here fails with `DeviceBusy` naming the child's pid; after `kill -9` of the child the
//! device opens again (the lock died with its process) and carries traffic.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use hv_emu::backend::BackendConfig;
use netvsc::{Device, Error};

const ROOT_ENV: &str = "NETVSC_OWNER_TEST_ROOT";
const UUID_ENV: &str = "NETVSC_OWNER_TEST_UUID";

/// Child side: open the device named by the environment, report readiness, then hold it until killed.
#[test]
#[ignore = "run by owner_is_exclusive_across_processes as its child"]
fn hold_device_child() {
    let (Ok(root), Ok(uuid)) = (std::env::var(ROOT_ENV), std::env::var(UUID_ENV)) else {
        return;
    };
    let dev = Device::open(std::path::Path::new(&root), &uuid, quick()).expect("child opens");
    println!("HOLDING {}", std::process::id());
    std::thread::sleep(std::time::Duration::from_secs(120));
    drop(dev);
}

#[test]
fn owner_is_exclusive_across_processes() {
    let rig = rig(BackendConfig::Loopback);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hold_device_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROOT_ENV, rig.path())
        .env(UUID_ENV, rig.uuid())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        // libtest may have printed "test hold_device_child ... " on the same line first.
        .find_map(|l| {
            l.split_once("HOLDING ")
                .map(|(_, pid)| pid.trim().to_string())
        });
    let Some(ready) = ready else {
        let _ = child.kill();
        panic!("child never held the device: {:?}", child.wait());
    };
    assert_eq!(ready, child.id().to_string());

    match rig.open(quick()) {
        Err(Error::DeviceBusy { pid, device }) => {
            assert_eq!(pid, child.id(), "the error names the owner");
            assert_eq!(device, rig.uuid());
            let msg = Error::DeviceBusy { pid, device }.to_string();
            assert!(msg.contains(&child.id().to_string()), "{msg}");
        }
        other => {
            let _ = child.kill();
            panic!("second open while held: {other:?}");
        }
    }

    // kill -9: no destructor runs in the child, yet the lock dies with it.
    child.kill().unwrap();
    child.wait().unwrap();
    let mut dev = rig.open(quick()).expect("opens after the owner died");
    dev.start().unwrap();
    let mac = dev.mac();
    let mut q = dev.queues().remove(0);
    let f = ip_frame(200, mac, false, 7);
    let segs: [&[u8]; 1] = [&f];
    let pkt = netvsc::TxPacket {
        segs: &segs,
        meta: Default::default(),
    };
    assert!(wait_for(5, || q.tx_burst(std::slice::from_ref(&pkt)) == 1));
    let mut out = vec![netvsc::RxPacket::with_capacity(2048)];
    assert!(
        wait_for(5, || q.rx_burst(&mut out) == 1),
        "loopback frame after reopen"
    );
    assert_eq!(out[0].data, f);
    drop(q);
    dev.close().unwrap();
    // And a closed device is free again at once.
    rig.open(quick()).unwrap().close().unwrap();
}

//! Bring-up against the emulator, checked from the host's side (its stats).

mod common;

use std::time::Duration;

use common::*;
use hv_emu::backend::BackendConfig;
use netvsc::{DeviceConfig, Error, Timeouts};

#[test]
fn default_bringup_negotiates_newest() {
    let rig = rig(BackendConfig::Sink);
    let dev = rig.open(quick()).unwrap();
    let info = dev.info().clone();
    let s = rig.emu.stats();
    assert_eq!(info.nvsp_version, 0x60001);
    assert_eq!(s.nvsp_version, Some(0x60001));
    let ndis = s.ndis_version.as_ref().unwrap();
    assert_eq!((ndis.major, ndis.minor), (6, 30));
    assert_eq!(info.mac, rig.emu.config().mac);
    assert_eq!(info.mtu, 1500);
    assert!(s.rndis_initialized);
    assert_eq!(info.queues, 1);
    assert!(info.agg.max_pkts >= 1 && info.agg.align >= 4);
    assert_eq!(info.send_section_size, 6144);
    eprintln!("{}", rig.emu.stats_json());
    dev.close().unwrap();
}

//! LinkWatcher: Added / Changed / Removed for a veth created, toggled, renamed and deleted.
mod common;

use std::time::{Duration, Instant};
use vf_netdev::*;

/// Collects changes until `pred` holds for one of them (or 5 s pass).
fn wait_for(
    w: &mut LinkWatcher,
    seen: &mut Vec<LinkChange>,
    pred: impl Fn(&LinkChange) -> bool,
) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        if seen.iter().any(&pred) {
            return true;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        w.wait(seen, left).unwrap();
    }
}

#[test]
fn watcher_reports_added_changed_renamed_removed() {
    if !common::enter_netns() {
        return;
    }
    let mut w = LinkWatcher::new().unwrap();
    assert!(w.fd() >= 0);
    let mut seen = Vec::with_capacity(64);
    assert_eq!(w.poll(&mut seen).unwrap(), 0, "{seen:?}");
    let (a, _b) = create_veth(&VethSpec {
        guest: "wa0",
        host: "wb0",
        guest_mac: None,
        host_mac: None,
        queues: 1,
        guest_netns_fd: None,
    })
    .unwrap();
    assert!(
        wait_for(
            &mut w,
            &mut seen,
            |c| matches!(c, LinkChange::Added { ifindex, name } if *ifindex == a && name == "wa0")
        ),
        "{seen:?}"
    );
    let n = Netdev::open(a).unwrap();
    seen.clear();
    n.set_up(true).unwrap();
    assert!(
        wait_for(
            &mut w,
            &mut seen,
            |c| matches!(c, LinkChange::Changed { ifindex, up: true, .. } if *ifindex == a)
        ),
        "{seen:?}"
    );
    seen.clear();
    n.set_up(false).unwrap();
    assert!(
        wait_for(
            &mut w,
            &mut seen,
            |c| matches!(c, LinkChange::Changed { ifindex, up: false, running: false, .. } if *ifindex == a)
        ),
        "{seen:?}"
    );
    seen.clear();
    rename_link("wa0", "wa9").unwrap();
    assert!(
        wait_for(
            &mut w,
            &mut seen,
            |c| matches!(c, LinkChange::Changed { ifindex, name, .. } if *ifindex == a && name == "wa9")
        ),
        "{seen:?}"
    );
    seen.clear();
    delete_link("wa9").unwrap();
    assert!(
        wait_for(
            &mut w,
            &mut seen,
            |c| matches!(c, LinkChange::Removed { ifindex, name } if *ifindex == a && name == "wa9")
        ),
        "{seen:?}"
    );
    assert!(
        wait_for(
            &mut w,
            &mut seen,
            |c| matches!(c, LinkChange::Removed { name, .. } if name == "wb0")
        ),
        "{seen:?}"
    );
    // Nothing more pending; a full `out` with spare room 1 takes one at a time.
    seen.clear();
    let (_, _) = create_veth(&VethSpec {
        guest: "wc0",
        host: "wd0",
        guest_mac: None,
        host_mac: None,
        queues: 1,
        guest_netns_fd: None,
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut one = Vec::with_capacity(1);
    assert_eq!(w.poll(&mut one).unwrap(), 1);
    let mut rest = Vec::with_capacity(16);
    w.poll(&mut rest).unwrap();
    assert!(
        one.iter()
            .chain(rest.iter())
            .any(|c| matches!(c, LinkChange::Added { name, .. } if name == "wc0"))
    );
    assert!(
        one.iter()
            .chain(rest.iter())
            .any(|c| matches!(c, LinkChange::Added { name, .. } if name == "wd0"))
    );
}

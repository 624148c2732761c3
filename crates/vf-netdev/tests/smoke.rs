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

//! RNDIS from a hostile host: one message, a section of back-to-back messages, PACKET layouts (as the driver's rx
//! path validates them from the header alone) and their PPI chains, and the NDIS objects carried in QUERY_CMPLT.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netvsc_proto::ndis::{NdisOffload, NdisRssCaps};
use netvsc_proto::rndis::{
    ConfigParameter, PACKET_HEADER_LEN, PpiIter, RndisMessage, RndisMessages, RndisPacket,
};

fuzz_target!(|data: &[u8]| {
    match RndisMessage::parse(data) {
        Ok(RndisMessage::Packet(p)) => {
            for e in p.ppis() {
                let Ok(e) = e else { break };
                let _ = (e.ppi_type, e.data.len());
            }
        }
        Ok(RndisMessage::QueryComplete { info, .. }) => {
            let _ = NdisOffload::parse(info);
            let _ = NdisRssCaps::parse(info);
        }
        Ok(m) => {
            let _ = (m.msg_type(), m.req_id());
        }
        Err(_) => {}
    }
    // A walk over a section is bounded by its length: each step consumes at least 8 bytes.
    assert!(RndisMessages::new(data).count() <= data.len() / 8 + 1);
    if data.len() >= PACKET_HEADER_LEN
        && let Ok(l) = RndisPacket::layout(&data[..PACKET_HEADER_LEN], data.len())
    {
        // The layout's regions must lie inside the message and agree with a full parse.
        let p = RndisPacket::parse(data).expect("layout accepted, parse must too");
        assert_eq!(&data[l.data.clone()], p.data);
        assert_eq!(&data[l.ppi.clone()], p.ppi);
    }
    // PPI chains on their own (loops, overruns, zero sizes): at most one entry per 12 bytes, then done.
    let n = PpiIter::new(data).count();
    assert!(n <= data.len() / 12 + 1);
    let _ = ConfigParameter::parse(data);
});

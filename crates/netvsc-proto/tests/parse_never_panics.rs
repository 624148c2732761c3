//! Property tests: random bytes thrown at every parse function never panic, anything that parses re-emits to
//! bytes that parse to the same value, and random well-formed PACKETs survive build → parse unchanged.

use netvsc_proto::ndis::{NdisOffload, NdisOffloadParams, NdisRssCaps, RssParams};
use netvsc_proto::nvsp::{self, IndirectionTable, NvspMessage};
use netvsc_proto::rndis::{self, PacketWriter, PpiIter, RndisMessage, RndisMessages};
use proptest::prelude::*;

/// Random bytes, biased so the first word is often a known message type and the second a plausible length.
fn message_bytes(types: &'static [u32]) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(types),
        0usize..=200,
        prop::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
    )
        .prop_map(|(ty, len, mut body, fix_len)| {
            let mut b = ty.to_le_bytes().to_vec();
            let total = (body.len() + 8) as u32;
            b.extend_from_slice(&(if fix_len { total } else { len as u32 }).to_le_bytes());
            b.append(&mut body);
            b
        })
}

const NVSP_TYPES: &[u32] = &[
    0, 1, 2, 100, 101, 102, 103, 104, 105, 106, 107, 108, 125, 128, 129, 131, 132, 133, 134, 136,
    999,
];
const RNDIS_TYPES: &[u32] = &[
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    0x8000_0002,
    0x8000_0004,
    0x8000_0005,
    0x8000_0006,
    0x8000_0008,
    0x8000_0009,
    0x1234,
];

proptest! {
    #[test]
    fn nvsp_parse_total(bytes in message_bytes(NVSP_TYPES)) {
        for cut in [bytes.len(), bytes.len().min(28), bytes.len().min(11)] {
            if let Ok(m) = NvspMessage::parse(&bytes[..cut]) {
                let mut out = [0u8; 40];
                let n = m.emit_request(&mut out).unwrap();
                prop_assert_eq!(NvspMessage::parse(&out[..n]).unwrap(), m);
            }
        }
        for v in [nvsp::VERSION_5, nvsp::VERSION_61] {
            let _ = IndirectionTable::parse(&bytes, v);
        }
    }

    #[test]
    fn rndis_parse_total(bytes in message_bytes(RNDIS_TYPES)) {
        if let Ok(m) = RndisMessage::parse(&bytes) {
            let mut out = vec![0u8; m.encoded_len()];
            let n = m.emit(&mut out).unwrap();
            let again = RndisMessage::parse(&out[..n]).unwrap();
            // Offsets are canonicalised by emit, so compare the meaning: type, req id and the variable bytes.
            prop_assert_eq!(again.msg_type(), m.msg_type());
            prop_assert_eq!(again.req_id(), m.req_id());
            if let (RndisMessage::Packet(a), RndisMessage::Packet(b)) = (again, m) {
                prop_assert_eq!((a.data, a.ppi), (b.data, b.ppi));
                let pa: Vec<_> = a.ppis().collect();
                let pb: Vec<_> = b.ppis().collect();
                prop_assert_eq!(pa, pb);
            }
        }
        let walked = RndisMessages::new(&bytes).take(1000).count();
        prop_assert!(walked <= bytes.len() / 8 + 1);
        if let Ok(c) = rndis::ConfigParameter::parse(&bytes) {
            let _ = (c.mac_address(), c.name_is(rndis::NETWORK_ADDRESS));
        }
        let n = PpiIter::new(&bytes).count();
        prop_assert!(n <= bytes.len() / 12 + 1);
    }

    #[test]
    fn ndis_parse_total(bytes in prop::collection::vec(any::<u8>(), 0..700), ty in prop::sample::select(&[0x80u8, 0x88, 0x89, 0xA7][..]), size in 0u16..700) {
        let mut b = bytes;
        if b.len() >= 4 {
            b[0] = ty;
            b[2..4].copy_from_slice(&size.to_le_bytes());
        }
        let _ = NdisOffload::parse(&b);
        let _ = NdisOffloadParams::parse(&b);
        let _ = NdisRssCaps::parse(&b);
        if let Ok(p) = RssParams::parse(&b) {
            prop_assert!(p.table.len() <= 512 && p.table_entries().count() == p.table_len());
        }
    }

    #[test]
    fn packet_build_parse(ppis in prop::collection::vec((any::<u32>(), prop::collection::vec(any::<u8>(), 0..20)), 0..6),
                          frame in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = [0u8; 1024];
        let mut w = PacketWriter::new(&mut buf).unwrap();
        for (t, d) in &ppis {
            w.add_ppi(*t, d).unwrap();
        }
        w.data_mut(frame.len()).unwrap().copy_from_slice(&frame);
        let n = w.finish(frame.len()).unwrap();
        let RndisMessage::Packet(p) = RndisMessage::parse(&buf[..n]).unwrap() else { panic!("not a packet") };
        prop_assert_eq!(p.data, &frame[..]);
        let got: Vec<_> = p.ppis().map(|x| x.unwrap()).collect();
        prop_assert_eq!(got.len(), ppis.len());
        for (g, (t, d)) in got.iter().zip(&ppis) {
            prop_assert_eq!(g.ppi_type, *t);
            prop_assert_eq!(&g.data[..d.len()], &d[..]);
            prop_assert!(g.data.len() - d.len() < 4 && g.data[d.len()..].iter().all(|&x| x == 0));
        }
        prop_assert_eq!(rndis::PACKET_HEADER_LEN + p.ppi.len() + p.data.len(), n);
    }
}

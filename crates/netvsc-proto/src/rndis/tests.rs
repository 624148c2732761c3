//! RNDIS tests: protocol.md §9 vectors, every message round trip, PACKET/PPI layout checked by hand-reading the
//! bytes, and every bounded offset rejected when it points outside.

use super::*;
use crate::error::ProtoError;
use crate::{filter, oid, ppi};

fn le(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn emit(m: &RndisMessage<'_>) -> Vec<u8> {
    let mut out = vec![0xa5u8; m.encoded_len() + 8];
    let n = m.emit(&mut out).unwrap();
    assert_eq!(n, m.encoded_len());
    out.truncate(n);
    out
}

#[test]
fn query_permanent_address_vector() {
    let v = [
        4, 0, 0, 0, 0x1c, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0x14, 0, 0, 0, 0, 0, 0, 0,
    ];
    let m = RndisMessage::parse(&v).unwrap();
    let RndisMessage::Query { req, info } = m else {
        panic!("{m:?}")
    };
    assert_eq!(
        (req.req_id, req.oid, req.info_buflen, req.info_buf_offset),
        (1, oid::E802_3_PERMANENT_ADDRESS, 0, 20)
    );
    assert!(info.is_empty());
    assert_eq!(
        emit(&RndisMessage::query(1, oid::E802_3_PERMANENT_ADDRESS, &[])),
        v
    );
}

#[test]
fn initialize_complete_vector() {
    let mut v = vec![
        2, 0, 0, 0x80, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
        0, 0, 0, 0, 8, 0, 0, 0, 0xff, 0xff, 0xff, 0xef, 3, 0, 0, 0,
    ];
    v.resize(52, 0);
    let RndisMessage::InitializeComplete(c) = RndisMessage::parse(&v).unwrap() else {
        panic!()
    };
    assert_eq!(
        (c.req_id, c.status, c.major_version, c.minor_version),
        (1, status::SUCCESS, 1, 0)
    );
    assert_eq!(
        (
            c.dev_flags,
            c.medium,
            c.max_pkt_per_msg,
            c.max_xfer_size,
            c.pkt_alignment_factor
        ),
        (1, 0, 8, 0xEFFF_FFFF, 3)
    );
    assert_eq!(emit(&RndisMessage::InitializeComplete(c)), v);
    // A 44-byte form (no af_list fields) is accepted too; the missing fields read as 0.
    let mut short = v[..44].to_vec();
    short[4] = 44;
    assert_eq!(
        RndisMessage::parse(&short).unwrap(),
        RndisMessage::InitializeComplete(c)
    );
}

#[test]
fn packet_header_vector_60_byte_frame() {
    let frame: Vec<u8> = (0..60u8).collect();
    let mut v = vec![1, 0, 0, 0, 0x68, 0, 0, 0, 0x24, 0, 0, 0, 0x3c, 0, 0, 0];
    v.resize(44, 0);
    v.extend_from_slice(&frame);
    let RndisMessage::Packet(p) = RndisMessage::parse(&v).unwrap() else {
        panic!()
    };
    assert_eq!(p.data, &frame[..]);
    assert_eq!(p.ppis().count(), 0);
    let mut out = [0xa5u8; 128];
    assert_eq!(emit_packet(&mut out, &[], &frame).unwrap(), 104);
    assert_eq!(&out[..104], &v[..]);
}

#[test]
fn set_packet_filter_vector() {
    let v = [
        5, 0, 0, 0, 0x20, 0, 0, 0, 2, 0, 0, 0, 0x0e, 1, 1, 0, 4, 0, 0, 0, 0x14, 0, 0, 0, 0, 0, 0,
        0, 0x0d, 0, 0, 0,
    ];
    let RndisMessage::Set { req, info } = RndisMessage::parse(&v).unwrap() else {
        panic!()
    };
    assert_eq!((req.req_id, req.oid), (2, oid::GEN_CURRENT_PACKET_FILTER));
    assert_eq!(le(info, 0), filter::LINUX_OPEN);
    assert_eq!(
        emit(&RndisMessage::set(
            2,
            oid::GEN_CURRENT_PACKET_FILTER,
            &filter::LINUX_OPEN.to_le_bytes()
        )),
        v
    );
}

#[test]
fn every_message_round_trips() {
    let mac = [0, 0x15, 0x5d, 1, 2, 3];
    let speed = 100_000_000u32.to_le_bytes();
    let ppi_bytes = {
        let mut b = [0u8; 16];
        b[0] = 16;
        b[4] = ppi::IEEE_8021Q as u8;
        b[8] = 12;
        b[12] = 0x40;
        b
    };
    let frame = [0xEEu8; 61];
    let msgs = [
        RndisMessage::Initialize(InitializeRequest {
            req_id: 1,
            major_version: 1,
            minor_version: 0,
            max_xfer_size: 0x4000,
        }),
        RndisMessage::Halt(Halt { req_id: 9 }),
        RndisMessage::query(3, oid::GEN_RECEIVE_SCALE_CAPABILITIES, &[0x88, 2, 18, 0]),
        RndisMessage::query_complete(3, status::SUCCESS, &mac),
        RndisMessage::query_complete(4, status::NOT_SUPPORTED, &[]),
        RndisMessage::set(5, oid::GEN_CURRENT_PACKET_FILTER, &[0x20, 0, 0, 0]),
        RndisMessage::SetComplete(SetComplete {
            req_id: 5,
            status: status::SUCCESS,
        }),
        RndisMessage::Reset(Reset { reserved: 0 }),
        RndisMessage::ResetComplete(ResetComplete {
            status: 0,
            addressing_reset: 1,
        }),
        RndisMessage::indicate_status(status::MEDIA_CONNECT, &[]),
        RndisMessage::indicate_status(status::LINK_SPEED_CHANGE, &speed),
        RndisMessage::Keepalive(Keepalive { req_id: 77 }),
        RndisMessage::KeepaliveComplete(KeepaliveComplete {
            req_id: 77,
            status: 0,
        }),
        RndisMessage::Other {
            msg_type: msg_type::SET_EX,
            body: &[1, 2, 3, 4],
        },
    ];
    for m in msgs {
        let b = emit(&m);
        assert_eq!(le(&b, 0), m.msg_type());
        assert_eq!(le(&b, 4) as usize, b.len());
        assert_eq!(RndisMessage::parse(&b).unwrap(), m, "{m:?}");
    }
    // PACKET: the parsed header carries the computed offsets, the views carry the same bytes.
    let b = emit(&RndisMessage::Packet(RndisPacket::new(&ppi_bytes, &frame)));
    let RndisMessage::Packet(p) = RndisMessage::parse(&b).unwrap() else {
        panic!()
    };
    assert_eq!((p.ppi, p.data), (&ppi_bytes[..], &frame[..]));
    assert_eq!((p.header.ppi_offset, p.header.data_offset), (36, 52));
}

#[test]
fn indicate_status_payload_offset() {
    // LINK_SPEED_CHANGE: payload u32 at 8 + status_buf_offset.
    let b = emit(&RndisMessage::indicate_status(
        status::LINK_SPEED_CHANGE,
        &100_000_000u32.to_le_bytes(),
    ));
    assert_eq!(
        (b.len(), le(&b, 8), le(&b, 12), le(&b, 16)),
        (24, status::LINK_SPEED_CHANGE, 4, 12)
    );
    assert_eq!(le(&b, 8 + 12), 100_000_000);
    let b = emit(&RndisMessage::indicate_status(
        status::MEDIA_DISCONNECT,
        &[],
    ));
    assert_eq!((b.len(), le(&b, 12), le(&b, 16)), (20, 0, 0));
}

#[test]
fn packet_writer_layout_read_by_hand() {
    let frame = [0x11u8; 54];
    let mut buf = [0xa5u8; 256];
    let mut w = PacketWriter::new(&mut buf).unwrap();
    let csum = ppi::TxChecksumInfo::new(
        ppi::TxChecksumInfo::IS_IPV4 | ppi::TxChecksumInfo::TCP_CSUM,
        34,
    );
    w.add_ppi_u32(ppi::TCPIP_CHKSUM, csum.0).unwrap();
    w.add_ppi_u32(ppi::IEEE_8021Q, ppi::VlanInfo::new(3, false, 42).0)
        .unwrap();
    w.add_ppi(
        ppi::RNDIS_PKTINFO_ID,
        &ppi::PktInfoId {
            version: 1,
            flags: 6,
            pkt_id: 5,
        }
        .to_bytes(),
    )
    .unwrap();
    assert_eq!(w.data_start(), 44 + 48);
    w.data_mut(54).unwrap().copy_from_slice(&frame);
    let n = w.finish(54).unwrap();
    assert_eq!(n, 44 + 48 + 54);
    // Read the header and PPIs by absolute offsets (protocol.md §4.2, §5).
    assert_eq!((le(&buf, 0), le(&buf, 4)), (1, n as u32));
    assert_eq!(
        (le(&buf, 8), le(&buf, 12), le(&buf, 28), le(&buf, 32)),
        (36 + 48, 54, 36, 48)
    );
    assert_eq!(
        (le(&buf, 44), le(&buf, 48), le(&buf, 52), le(&buf, 56)),
        (16, 0, 12, 0x0022_0005)
    );
    assert_eq!(
        (le(&buf, 60), le(&buf, 64), le(&buf, 72)),
        (16, 6, 3 | (42 << 4))
    );
    assert_eq!(
        (le(&buf, 76), le(&buf, 80), le(&buf, 88)),
        (16, 0x8000_0001, u32::from_le_bytes([1, 6, 5, 0]))
    );
    assert_eq!(&buf[92..n], &frame[..]);
    // And the parser sees the same.
    let RndisMessage::Packet(p) = RndisMessage::parse(&buf[..n]).unwrap() else {
        panic!()
    };
    let kinds: Vec<(u32, bool)> = p
        .ppis()
        .map(|x| x.unwrap())
        .map(|x| (x.kind(), x.is_internal()))
        .collect();
    assert_eq!(kinds, [(0, false), (6, false), (1, true)]);
    assert_eq!(p.ppi_u32(ppi::IEEE_8021Q).unwrap(), Some(3 | (42 << 4)));
    assert_eq!(p.ppi_u32(ppi::NBL_HASH_VALUE).unwrap(), None);
    assert_eq!(
        p.find_ppi(ppi::RNDIS_PKTINFO_ID).unwrap(),
        Some(&[1u8, 6, 5, 0][..])
    );
    assert_eq!(p.data, &frame[..]);
    // Too small a buffer is refused, not overrun.
    assert!(matches!(
        emit_packet(&mut [0u8; 100], &[(ppi::IEEE_8021Q, &[1, 0, 0, 0])], &frame),
        Err(ProtoError::BufferTooSmall { .. })
    ));
    assert!(PacketWriter::new(&mut [0u8; 43]).is_err());
}

/// A PACKET message with the raw PPI region `ppi` and a `data_len`-byte frame.
fn packet(ppi: &[u8], data_len: usize) -> Vec<u8> {
    let data = vec![0x77u8; data_len];
    emit(&RndisMessage::Packet(RndisPacket::new(ppi, &data)))
}

fn set_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn packet_offsets_are_bounded() {
    let good = packet(&[], 20);
    // data runs past msg_len
    let mut b = good.clone();
    set_u32(&mut b, 12, 21);
    assert!(matches!(
        RndisMessage::parse(&b),
        Err(ProtoError::OutOfRange {
            field: "data_offset",
            offset: 8,
            ..
        })
    ));
    // data offset inside the header
    let mut b = good.clone();
    set_u32(&mut b, 8, 4);
    assert!(matches!(
        RndisMessage::parse(&b),
        Err(ProtoError::OutOfRange {
            field: "data_offset",
            value: 4,
            ..
        })
    ));
    // huge offset: no overflow
    let mut b = good.clone();
    set_u32(&mut b, 8, u32::MAX);
    assert!(matches!(
        RndisMessage::parse(&b),
        Err(ProtoError::OutOfRange { .. })
    ));
    // ppi region past the end
    let mut b = good.clone();
    set_u32(&mut b, 28, 36);
    set_u32(&mut b, 32, 100);
    assert!(matches!(
        RndisMessage::parse(&b),
        Err(ProtoError::OutOfRange {
            field: "ppi_offset",
            ..
        })
    ));
    // oob region past the end
    let mut b = good.clone();
    set_u32(&mut b, 16, 36);
    set_u32(&mut b, 20, 1000);
    assert!(matches!(
        RndisMessage::parse(&b),
        Err(ProtoError::OutOfRange {
            field: "oob_offset",
            ..
        })
    ));
    // msg_len beyond the input / below 8 / shorter than the PACKET header
    let mut b = good.clone();
    set_u32(&mut b, 4, 1000);
    assert!(matches!(
        RndisMessage::parse(&b),
        Err(ProtoError::Truncated { needed: 1000, .. })
    ));
    set_u32(&mut b, 4, 7);
    assert!(matches!(
        RndisMessage::parse(&b),
        Err(ProtoError::Invalid {
            field: "msg_len",
            ..
        })
    ));
    set_u32(&mut b, 4, 40);
    assert!(matches!(
        RndisMessage::parse(&b),
        Err(ProtoError::Truncated { needed: 44, .. })
    ));
}

#[test]
fn ppi_walk_rejects_bad_entries() {
    let entry = |size: u32, ty: u32, off: u32| {
        let mut e = vec![0u8; 16];
        set_u32(&mut e, 0, size);
        set_u32(&mut e, 4, ty);
        set_u32(&mut e, 8, off);
        e
    };
    let cases: [(Vec<u8>, &str); 5] = [
        (entry(8, 0, 12), "size"), // smaller than the header (also: would not advance the walk)
        (entry(0, 0, 12), "size"), // zero size: an unbounded walk would loop forever
        (entry(14, 0, 12), "size"), // not 4-aligned
        (entry(20, 0, 12), "size"), // past the region
        (entry(16, 0, 17), "ppi_offset"), // payload offset past the entry
    ];
    for (region, field) in cases {
        let b = packet(&region, 4);
        let RndisMessage::Packet(p) = RndisMessage::parse(&b).unwrap() else {
            panic!()
        };
        let items: Vec<_> = p.ppis().collect();
        assert_eq!(items.len(), 1, "the walk stops after the first error");
        assert!(
            matches!(items[0], Err(ProtoError::Invalid { field: f, .. }) if f == field),
            "{items:?}"
        );
        assert!(p.find_ppi(ppi::NBL_HASH_VALUE).is_err());
    }
    // A trailing fragment shorter than a header.
    let mut region = entry(16, 8, 12);
    region.extend_from_slice(&[0; 4]);
    let b = packet(&region, 4);
    let RndisMessage::Packet(p) = RndisMessage::parse(&b).unwrap() else {
        panic!()
    };
    let items: Vec<_> = p.ppis().collect();
    assert!(
        items[0].is_ok()
            && matches!(items[1], Err(ProtoError::Truncated { .. }))
            && items.len() == 2
    );
    // A PPI with a 2-byte payload asked for as u32.
    let mut region = entry(16, 8, 14);
    region.truncate(16);
    let b = packet(&region, 4);
    let RndisMessage::Packet(p) = RndisMessage::parse(&b).unwrap() else {
        panic!()
    };
    assert!(matches!(
        p.ppi_u32(8),
        Err(ProtoError::Truncated {
            needed: 4,
            have: 2,
            ..
        })
    ));
}

#[test]
fn info_offsets_are_bounded() {
    let mut b = emit(&RndisMessage::query_complete(1, 0, &[1, 2, 3, 4, 5, 6]));
    set_u32(&mut b, 20, 17); // 8 + 17 + 6 > 30
    assert!(matches!(
        RndisMessage::parse(&b),
        Err(ProtoError::OutOfRange {
            field: "offset",
            offset: 20,
            value: 17,
            ..
        })
    ));
    set_u32(&mut b, 20, 8); // points into the fixed part
    assert!(matches!(
        RndisMessage::parse(&b),
        Err(ProtoError::OutOfRange { .. })
    ));
    let mut b = emit(&RndisMessage::set(
        1,
        oid::GEN_CURRENT_PACKET_FILTER,
        &[0; 4],
    ));
    set_u32(&mut b, 16, 0xFFFF_FFFF);
    assert!(matches!(
        RndisMessage::parse(&b),
        Err(ProtoError::OutOfRange { .. })
    ));
    let mut b = emit(&RndisMessage::indicate_status(
        status::LINK_SPEED_CHANGE,
        &[0; 4],
    ));
    set_u32(&mut b, 16, 13);
    assert!(matches!(
        RndisMessage::parse(&b),
        Err(ProtoError::OutOfRange { .. })
    ));
    // A zero-length info with offset 0 is fine (INDICATE_STATUS without payload).
    assert!(
        RndisMessage::parse(&emit(&RndisMessage::indicate_status(
            status::MEDIA_CONNECT,
            &[]
        )))
        .is_ok()
    );
    // Fixed parts missing.
    assert!(matches!(
        RndisMessage::parse(&[4, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0]),
        Err(ProtoError::Truncated { .. })
    ));
}

#[test]
fn aggregated_messages_walk() {
    // Two PACKETs back to back, the first padded to 8 (msg_len includes the padding, as Linux aggregates).
    let mut sec = vec![0u8; 512];
    let n1 = emit_packet(
        &mut sec,
        &[(ppi::NBL_HASH_VALUE, &[1, 0, 0, 0])],
        &[0xAB; 61],
    )
    .unwrap();
    let padded = n1.next_multiple_of(8);
    set_u32(&mut sec, 4, padded as u32);
    let n2 = emit_packet(&mut sec[padded..], &[], &[0xCD; 60]).unwrap();
    let msgs: Vec<_> = RndisMessages::new(&sec).collect::<Result<_, _>>().unwrap();
    assert_eq!(msgs.len(), 2);
    let RndisMessage::Packet(a) = msgs[0] else {
        panic!()
    };
    let RndisMessage::Packet(b) = msgs[1] else {
        panic!()
    };
    assert_eq!(
        (a.data.len(), a.ppi_u32(ppi::NBL_HASH_VALUE).unwrap()),
        (61, Some(1))
    );
    assert_eq!(b.data, &[0xCD; 60][..]);
    // A corrupt second header ends the walk with one error.
    set_u32(&mut sec, padded + 4, 4);
    let r: Vec<_> = RndisMessages::new(&sec[..padded + n2]).collect();
    assert!(r.len() == 2 && r[0].is_ok() && r[1].is_err());
}

#[test]
fn initialize_and_set_complete_helpers() {
    // INITIALIZE 24 bytes: 8 req_id, 12 major 1, 16 minor 0, 20 max_xfer 0x4000 (Linux).
    let v = [
        2, 0, 0, 0, 24, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0,
    ];
    assert_eq!(emit(&RndisMessage::initialize(7, 0x4000)), v);
    let v = [5, 0, 0, 0x80, 16, 0, 0, 0, 7, 0, 0, 0, 0xBB, 0, 0, 0xC0];
    assert_eq!(
        emit(&RndisMessage::set_complete(7, status::NOT_SUPPORTED)),
        v
    );
    assert_eq!(RndisMessage::parse(&v).unwrap().req_id(), Some(7));
}

#[test]
fn layout_from_header_only_matches_full_parse() {
    let mut ppis = vec![0u8; 16];
    set_u32(&mut ppis, 0, 16);
    set_u32(&mut ppis, 4, ppi::IEEE_8021Q);
    set_u32(&mut ppis, 8, 12);
    set_u32(&mut ppis, 12, 0x123);
    let msg = packet(&ppis, 60);
    let full = RndisPacket::parse(&msg).unwrap();
    // Only the 44-byte header is handed over; the rest stays "elsewhere".
    let l = RndisPacket::layout(&msg[..PACKET_HEADER_LEN], msg.len()).unwrap();
    assert_eq!(l.header, full.header);
    assert_eq!((l.ppi.clone(), l.data.clone()), (44..60, 60..120));
    assert_eq!(&msg[l.data], full.data);
    assert_eq!(&msg[l.ppi], full.ppi);
    // The same bounds as parse: a frame past msg_len, a header shorter than 44, msg_len below 44.
    let mut b = msg.clone();
    set_u32(&mut b, 12, 61);
    assert!(matches!(
        RndisPacket::layout(&b[..44], b.len()),
        Err(ProtoError::OutOfRange {
            field: "data_offset",
            ..
        })
    ));
    assert!(matches!(
        RndisPacket::layout(&msg[..43], msg.len()),
        Err(ProtoError::Truncated { needed: 44, .. })
    ));
    assert!(RndisPacket::layout(&msg[..44], 43).is_err());
    assert!(RndisPacket::layout(&msg[..44], msg.len() - 1).is_err());
}

#[test]
fn finish_header_needs_no_room_for_the_frame() {
    let mut buf = [0xa5u8; 60];
    let mut w = PacketWriter::new(&mut buf).unwrap();
    w.add_ppi_u32(ppi::NBL_HASH_VALUE, 7).unwrap();
    assert_eq!(w.data_start(), 60);
    assert_eq!(w.finish_header(1000).unwrap(), 1060);
    assert_eq!(
        (le(&buf, 0), le(&buf, 4), le(&buf, 8), le(&buf, 12)),
        (1, 1060, 36 + 16, 1000)
    );
    assert_eq!((le(&buf, 28), le(&buf, 32)), (36, 16));
    assert_eq!((le(&buf, 44), le(&buf, 48), le(&buf, 56)), (16, 8, 7));
    // The frame appended by hand makes a message the independent parser accepts.
    let mut msg = buf.to_vec();
    msg.extend(std::iter::repeat_n(0x42u8, 1000));
    let p = RndisPacket::parse(&msg).unwrap();
    assert_eq!(
        (p.data.len(), p.ppi_u32(ppi::NBL_HASH_VALUE).unwrap()),
        (1000, Some(7))
    );
    assert!(matches!(
        PacketWriter::new(&mut [0u8; 44])
            .unwrap()
            .finish_header(usize::MAX),
        Err(ProtoError::Invalid {
            field: "msg_len",
            ..
        })
    ));
}

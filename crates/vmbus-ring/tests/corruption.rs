//! Every peer-controlled field set to a bad value in memory must give the matching typed error,
//! never a panic; random bytes over the whole ring give only Ok / Empty / Corrupt.

use vmbus_ring::{
    CorruptField, Corruption, GpaRange, OutgoingKind, OutgoingPacket, PacketKind, ReadError, Ring,
    RingReader, RingWriter, SharedMem, TransferRange, WriteError,
};

const DATA: u32 = 8192;
const H: usize = 4096; // data area offset in the window

fn mem() -> SharedMem {
    SharedMem::alloc(H + DATA as usize)
}

fn reader(mem: &SharedMem) -> RingReader {
    RingReader::new(Ring::new(mem.clone()).unwrap())
}

fn writer(mem: &SharedMem) -> RingWriter {
    RingWriter::new(Ring::new(mem.clone()).unwrap())
}

/// Write one committed packet of each kind at data offset 0 and return the memory.
fn with_packet(kind: OutgoingKind<'_>) -> SharedMem {
    let m = mem();
    let mut w = writer(&m);
    w.try_write(&OutgoingPacket {
        kind,
        trans_id: 0x1234,
        completion_requested: true,
        payload: &[b"payload bytes"],
    })
    .unwrap();
    w.commit();
    m
}

const TR: [TransferRange; 2] = [
    TransferRange {
        byte_count: 100,
        byte_offset: 0,
    },
    TransferRange {
        byte_count: 200,
        byte_offset: 4096,
    },
];
const GR: [GpaRange; 1] = [GpaRange {
    len: 64,
    offset: 8,
    pfn: 0x1_0000_0001,
}];

fn poke16(m: &SharedMem, data_off: usize, v: u16) {
    m.write(H + data_off, &v.to_le_bytes()).unwrap();
}
fn poke32(m: &SharedMem, data_off: usize, v: u32) {
    m.write(H + data_off, &v.to_le_bytes()).unwrap();
}

fn expect(m: &SharedMem, what: CorruptField, offset: u32, value: u64) {
    let mut r = reader(m);
    let mut scratch = Vec::new();
    for _ in 0..2 {
        // The same error every time: a corrupt packet is never consumed.
        match r.read(&mut scratch) {
            Err(ReadError::Corrupt(c)) => assert_eq!(
                c,
                Corruption {
                    what,
                    offset,
                    value
                },
                "{c}"
            ),
            other => panic!("expected {what:?}, got {other:?}"),
        }
    }
    assert!(!r.commit());
    assert_eq!(m.load_u32(4).unwrap(), 0, "read index untouched");
}

#[test]
fn valid_packets_read_back() {
    let mut scratch = Vec::new();
    let m = with_packet(OutgoingKind::TransferPages {
        set_id: 0xcafe,
        ranges: &TR,
    });
    let p = reader(&m).read(&mut scratch).unwrap();
    assert_eq!(p.trans_id, 0x1234);
    assert!(p.completion_requested);
    match p.kind {
        PacketKind::TransferPages {
            set_id,
            ranges,
            payload,
        } => {
            assert_eq!(set_id, 0xcafe);
            assert_eq!(ranges.collect::<Vec<_>>(), TR);
            assert_eq!(&payload[..13], b"payload bytes");
            assert_eq!(&payload[13..], &[0, 0, 0], "zero padding");
        }
        k => panic!("{k:?}"),
    }
    // Trailer: upper half = start offset 0; the packet is 24 + 16 + 16 = 56 bytes.
    assert_eq!(m.load_u64(H + 56).unwrap(), 0);
    let m = with_packet(OutgoingKind::GpaDirect { ranges: &GR });
    match reader(&m).read(&mut scratch).unwrap().kind {
        PacketKind::GpaDirect { ranges, .. } => assert_eq!(ranges.collect::<Vec<_>>(), GR),
        k => panic!("{k:?}"),
    }
}

#[test]
fn index_corruption_is_typed() {
    // Reader: the producer's write index.
    for bad in [DATA, DATA + 8, u32::MAX, 4, 13] {
        let m = with_packet(OutgoingKind::InBand);
        m.store_u32(0, bad).unwrap();
        expect(&m, CorruptField::WriteIndex, 0, bad as u64);
    }
    // Reader: its own stored read index, taken over at construction.
    for bad in [DATA, 12, u32::MAX] {
        let m = with_packet(OutgoingKind::InBand);
        m.store_u32(4, bad).unwrap();
        let mut r = reader(&m);
        let e = r.read(&mut Vec::new()).unwrap_err();
        assert_eq!(
            e,
            ReadError::Corrupt(Corruption {
                what: CorruptField::ReadIndex,
                offset: bad,
                value: bad as u64
            })
        );
        assert_eq!(r.bytes_available(), 0);
        assert!(!r.commit());
    }
    // Fewer bytes than descriptor + trailer.
    let m = with_packet(OutgoingKind::InBand);
    m.store_u32(0, 16).unwrap();
    expect(&m, CorruptField::Truncated, 0, 16);
}

#[test]
fn writer_rejects_a_bad_read_index() {
    let pkt = OutgoingPacket {
        kind: OutgoingKind::InBand,
        trans_id: 1,
        completion_requested: false,
        payload: &[&[0; 100]],
    };
    for bad in [DATA, DATA * 2, 4, 0xffff_fff8] {
        // Seen at construction.
        let m = mem();
        m.store_u32(4, bad).unwrap();
        let mut w = writer(&m);
        let want = WriteError::Corrupt(Corruption {
            what: CorruptField::ReadIndex,
            offset: 0,
            value: bad as u64,
        });
        assert_eq!(w.try_write(&pkt), Err(want));
        assert_eq!(w.available(), 0);
        assert_eq!(w.request_space(64), Err(want));

        // Seen when the writer runs out of cached room and reloads it.
        let m = mem();
        let mut w = writer(&m);
        let mut n = 0;
        while w.try_write(&pkt).is_ok() {
            n += 1;
        }
        assert_eq!(pkt.ring_size(), 128);
        assert_eq!(n, DATA as usize / 128 - 1, "never completely full");
        m.store_u32(4, bad).unwrap();
        match w.try_write(&pkt) {
            Err(WriteError::Corrupt(c)) => {
                assert_eq!((c.what, c.value), (CorruptField::ReadIndex, bad as u64))
            }
            other => panic!("{other:?}"),
        }
    }
    // Its own stored write index.
    let m = mem();
    m.store_u32(0, 20).unwrap();
    let mut w = writer(&m);
    assert_eq!(
        w.try_write(&pkt),
        Err(WriteError::Corrupt(Corruption {
            what: CorruptField::WriteIndex,
            offset: 20,
            value: 20
        }))
    );
    assert!(!w.commit());
}

#[test]
fn descriptor_corruption_is_typed() {
    // InBand packet: 16 + 13 payload -> len8 4, offset8 2.
    for ty in [0u16, 1, 5, 8, 10, 12, 0xffff] {
        let m = with_packet(OutgoingKind::InBand);
        poke16(&m, 0, ty);
        expect(&m, CorruptField::PacketType, 0, ty as u64);
    }
    for off8 in [0u16, 1] {
        let m = with_packet(OutgoingKind::InBand);
        poke16(&m, 2, off8);
        expect(&m, CorruptField::HeaderTooShort, 0, off8 as u64);
    }
    for off8 in [5u16, 0xffff] {
        let m = with_packet(OutgoingKind::InBand);
        poke16(&m, 2, off8);
        expect(&m, CorruptField::HeaderBeyondPacket, 0, off8 as u64);
    }
    for len8 in [5u16, 1000, 0xffff] {
        let m = with_packet(OutgoingKind::InBand);
        poke16(&m, 4, len8);
        expect(&m, CorruptField::PacketBeyondData, 0, len8 as u64);
    }
    for flags in [2u16, 3, 0x8000, 0xffff] {
        let m = with_packet(OutgoingKind::InBand);
        poke16(&m, 6, flags);
        expect(&m, CorruptField::Flags, 0, flags as u64);
    }
}

#[test]
fn kind_header_corruption_is_typed() {
    // Transfer pages: header 24 + 2*8 = 40 bytes (offset8 5); count lives at +20.
    let tp = || {
        with_packet(OutgoingKind::TransferPages {
            set_id: 1,
            ranges: &TR,
        })
    };
    for count in [3u32, 1000, u32::MAX] {
        let m = tp();
        poke32(&m, 20, count);
        expect(&m, CorruptField::RangeCount, 0, count as u64);
    }
    let m = tp();
    poke16(&m, 2, 2); // offset8 2: no room for the sub-header
    expect(&m, CorruptField::KindHeaderTooShort, 0, 2);
    // Fewer ranges than the header has room for is accepted (the rest is ignored).
    let m = tp();
    poke32(&m, 20, 1);
    match reader(&m).read(&mut Vec::new()).unwrap().kind {
        PacketKind::TransferPages { ranges, .. } => assert_eq!(ranges.len(), 1),
        k => panic!("{k:?}"),
    }

    // GPA direct: header 24 + 16 = 40 bytes.
    let gpa = || with_packet(OutgoingKind::GpaDirect { ranges: &GR });
    let m = gpa();
    poke32(&m, 20, 0);
    expect(&m, CorruptField::GpaRangeCountZero, 0, 0);
    for count in [2u32, 0x1000_0000, u32::MAX] {
        let m = gpa();
        poke32(&m, 20, count);
        expect(&m, CorruptField::RangeCount, 0, count as u64);
    }
    let m = gpa();
    poke16(&m, 2, 2);
    expect(&m, CorruptField::KindHeaderTooShort, 0, 2);
}

#[test]
fn corruption_reports_the_packet_offset() {
    // Second packet starts after the first (16 + 13 -> 32, + 8 trailer = 40).
    let m = with_packet(OutgoingKind::InBand);
    let mut w = writer(&m);
    w.try_write(&OutgoingPacket {
        kind: OutgoingKind::InBand,
        trans_id: 2,
        completion_requested: false,
        payload: &[],
    })
    .unwrap();
    w.commit();
    poke16(&m, 40, 99);
    let mut r = reader(&m);
    let mut s = Vec::new();
    assert_eq!(r.read(&mut s).unwrap().trans_id, 0x1234);
    assert_eq!(
        r.read(&mut s).unwrap_err(),
        ReadError::Corrupt(Corruption {
            what: CorruptField::PacketType,
            offset: 40,
            value: 99
        })
    );
}

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn random_ring_contents_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut empty, mut corrupt) = (0u32, 0u32, 0u32);
    let mut scratch = Vec::new();
    let mut bytes = vec![0u8; H + DATA as usize];
    for round in 0..3000 {
        let m = mem();
        match round % 3 {
            // Pure noise everywhere, header included.
            0 => {
                for b in bytes.iter_mut() {
                    *b = rng.next() as u8;
                }
                m.write(0, &bytes).unwrap();
            }
            // Valid packets, then noise in a few descriptor-ish places.
            _ => {
                let mut w = writer(&m);
                let ranges = [GpaRange::default(); 3];
                let tr = [TransferRange::default(); 5];
                for i in 0..(rng.next() % 40) {
                    let kind = match i % 4 {
                        0 => OutgoingKind::InBand,
                        1 => OutgoingKind::Completion,
                        2 => OutgoingKind::GpaDirect { ranges: &ranges },
                        _ => OutgoingKind::TransferPages {
                            set_id: 3,
                            ranges: &tr,
                        },
                    };
                    let len = (rng.next() % 600) as usize;
                    let _ = w.try_write(&OutgoingPacket {
                        kind,
                        trans_id: i,
                        completion_requested: i % 2 == 0,
                        payload: &[&bytes[..len]],
                    });
                }
                w.commit();
                for _ in 0..(1 + rng.next() % 4) {
                    let at = (rng.next() % (DATA as u64 + 16)) as usize;
                    let at = if at >= DATA as usize {
                        at - DATA as usize
                    } else {
                        H + at
                    };
                    m.write(
                        at,
                        &rng.next().to_le_bytes()[..(1 + rng.next() % 8) as usize],
                    )
                    .unwrap();
                }
            }
        }
        let mut r = reader(&m);
        for _ in 0..50 {
            match r.read(&mut scratch) {
                Ok(p) => {
                    ok += 1;
                    assert!(p.kind.payload().len() < DATA as usize);
                    let n = match p.kind {
                        PacketKind::TransferPages { ranges, .. } => ranges.count(),
                        PacketKind::GpaDirect { ranges, .. } => ranges.count(),
                        _ => 0,
                    };
                    assert!(n * 8 < DATA as usize);
                }
                Err(ReadError::Empty) => {
                    empty += 1;
                    break;
                }
                Err(ReadError::Corrupt(_)) => {
                    corrupt += 1;
                    break;
                }
            }
            if rng.next().is_multiple_of(8) {
                r.commit();
            }
        }
        r.commit();
        let _ = r.bytes_available();
        // A writer facing the same memory only ever reports typed errors too.
        let mut w = writer(&m);
        let _ = w.available();
        let res = w.try_write(&OutgoingPacket {
            kind: OutgoingKind::InBand,
            trans_id: 0,
            completion_requested: false,
            payload: &[&bytes[..64]],
        });
        assert!(matches!(
            res,
            Ok(()) | Err(WriteError::Full { .. }) | Err(WriteError::Corrupt(_))
        ));
        w.commit();
    }
    assert!(
        ok > 1000 && empty > 100 && corrupt > 1000,
        "{ok} {empty} {corrupt}"
    );
}

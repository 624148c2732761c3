//! Model-based test: random sequences of write / commit / revert / read on both sides of one ring
//! are checked, step by step, against a plain `VecDeque` model of what is published, staged and
//! read, including every signal decision, `available()` and `bytes_available()`.

use std::collections::VecDeque;

use proptest::prelude::*;
use vmbus_ring::{
    GpaRange, OutgoingKind, OutgoingPacket, PacketKind, ReadError, Ring, RingReader, RingWriter,
    SharedMem, TransferRange, WriteError, ring_size,
};

const DATA: u32 = 4096;

#[derive(Debug, Clone)]
enum Op {
    Write {
        kind: u8,
        nranges: usize,
        len: usize,
        pieces: usize,
        seed: u64,
        compl: bool,
    },
    WriterCommit,
    WriterRevert,
    Read,
    ReaderCommit,
    ReaderRevert,
    Mask(bool),
    Pending(u32),
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![8 => 0usize..600, 1 => 0usize..4200];
    prop_oneof![
        6 => (0u8..4, 0usize..6, len, 1usize..4, any::<u64>(), any::<bool>()).prop_map(
            |(kind, nranges, len, pieces, seed, compl)| Op::Write { kind, nranges, len, pieces, seed, compl }
        ),
        3 => Just(Op::WriterCommit),
        1 => Just(Op::WriterRevert),
        6 => Just(Op::Read),
        3 => Just(Op::ReaderCommit),
        1 => Just(Op::ReaderRevert),
        1 => any::<bool>().prop_map(Op::Mask),
        1 => prop_oneof![Just(0u32), 0u32..DATA].prop_map(Op::Pending),
    ]
}

/// What a packet should look like when read back.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    ty: u16,
    trans_id: u64,
    compl: bool,
    transfer: Vec<TransferRange>,
    gpa: Vec<GpaRange>,
    payload: Vec<u8>,
    ring_size: u32,
}

fn build(kind: u8, nranges: usize, len: usize, seed: u64, compl: bool) -> Expected {
    let payload: Vec<u8> = (0..len).map(|i| (seed as usize + i * 31) as u8).collect();
    let mut e = Expected {
        ty: [6, 11, 7, 9][kind as usize],
        trans_id: seed,
        compl,
        transfer: vec![],
        gpa: vec![],
        payload,
        ring_size: 0,
    };
    let header = match kind {
        2 => {
            e.transfer = (0..nranges as u32)
                .map(|i| TransferRange {
                    byte_count: i + seed as u32,
                    byte_offset: i * 7,
                })
                .collect();
            24 + 8 * nranges
        }
        3 => {
            e.gpa = (0..nranges.max(1) as u32)
                .map(|i| GpaRange {
                    len: i,
                    offset: seed as u32 ^ i,
                    pfn: seed.rotate_left(i),
                })
                .collect();
            24 + 16 * e.gpa.len()
        }
        _ => 16,
    };
    e.ring_size = ring_size(header as u64, len as u64) as u32;
    e
}

fn total(q: impl IntoIterator<Item = u32>) -> u32 {
    q.into_iter().sum()
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mem = SharedMem::alloc(4096 + DATA as usize);
    let mut w = RingWriter::new(Ring::new(mem.clone()).unwrap());
    let mut r = RingReader::new(Ring::new(mem.clone()).unwrap());
    r.ring().set_feature_bits(1);
    let mut published: VecDeque<Expected> = VecDeque::new();
    let mut staged: Vec<Expected> = Vec::new();
    let mut reading = 0usize;
    let (mut mask, mut pending) = (false, 0u32);
    let mut scratch = Vec::new();

    for op in ops {
        match op {
            Op::Write {
                kind,
                nranges,
                len,
                pieces,
                seed,
                compl,
            } => {
                let e = build(kind, nranges, len, seed, compl);
                // Split the payload into `pieces` slices to exercise gathering.
                let cut1 = len / pieces.max(1);
                let cut2 = (cut1 * 2).min(len);
                let parts: [&[u8]; 3] = [
                    &e.payload[..cut1],
                    &e.payload[cut1..cut2],
                    &e.payload[cut2..],
                ];
                let okind = match e.ty {
                    6 => OutgoingKind::InBand,
                    11 => OutgoingKind::Completion,
                    7 => OutgoingKind::TransferPages {
                        set_id: seed as u16,
                        ranges: &e.transfer,
                    },
                    _ => OutgoingKind::GpaDirect { ranges: &e.gpa },
                };
                let pkt = OutgoingPacket {
                    kind: okind,
                    trans_id: seed,
                    completion_requested: compl,
                    payload: &parts,
                };
                prop_assert_eq!(pkt.ring_size(), e.ring_size as u64);
                let free = DATA - total(published.iter().chain(&staged).map(|p| p.ring_size));
                let want = if e.ring_size - 8 > DATA - 16 {
                    Err(WriteError::TooLarge {
                        len: pkt.len() as u32,
                        max: DATA - 16,
                    })
                } else if free <= e.ring_size {
                    Err(WriteError::Full {
                        needed: e.ring_size,
                    })
                } else {
                    Ok(())
                };
                prop_assert_eq!(w.try_write(&pkt), want);
                if want.is_ok() {
                    staged.push(e);
                }
            }
            Op::WriterCommit => {
                let want = !staged.is_empty() && !mask && published.is_empty();
                prop_assert_eq!(w.commit(), want);
                published.extend(staged.drain(..));
            }
            Op::WriterRevert => {
                w.revert();
                staged.clear();
            }
            Op::Read => match r.read(&mut scratch) {
                Ok(p) => {
                    prop_assert!(
                        reading < published.len(),
                        "read a packet the model does not have"
                    );
                    let e = &published[reading];
                    reading += 1;
                    prop_assert_eq!(p.kind.packet_type(), e.ty);
                    prop_assert_eq!(p.trans_id, e.trans_id);
                    prop_assert_eq!(p.completion_requested, e.compl);
                    let payload = p.kind.payload();
                    prop_assert_eq!(&payload[..e.payload.len()], &e.payload[..]);
                    prop_assert!(payload[e.payload.len()..].iter().all(|&b| b == 0));
                    prop_assert!(payload.len() - e.payload.len() < 8);
                    match p.kind {
                        PacketKind::TransferPages { set_id, ranges, .. } => {
                            prop_assert_eq!(set_id, e.trans_id as u16);
                            prop_assert_eq!(ranges.collect::<Vec<_>>(), e.transfer.clone());
                        }
                        PacketKind::GpaDirect { ranges, .. } => {
                            prop_assert_eq!(ranges.collect::<Vec<_>>(), e.gpa.clone());
                        }
                        _ => {}
                    }
                }
                Err(ReadError::Empty) => prop_assert_eq!(reading, published.len()),
                Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
            },
            Op::ReaderCommit => {
                let consumed = total(published.iter().take(reading).map(|p| p.ring_size));
                let after = DATA - total(published.iter().skip(reading).map(|p| p.ring_size));
                let before = after - consumed;
                let p = pending & !7;
                let want = reading > 0 && p != 0 && before <= p && p < after;
                prop_assert_eq!(r.commit(), want);
                published.drain(..reading);
                reading = 0;
            }
            Op::ReaderRevert => {
                r.revert();
                reading = 0;
            }
            Op::Mask(m) => {
                mask = m;
                r.ring().set_interrupt_mask(m);
            }
            Op::Pending(p) => {
                pending = p;
                w.ring().set_pending_send_size(p);
            }
        }
        let used_all = total(published.iter().chain(&staged).map(|p| p.ring_size));
        prop_assert_eq!(w.available(), DATA - used_all - 8);
        let unread = total(published.iter().skip(reading).map(|p| p.ring_size));
        prop_assert_eq!(r.bytes_available(), unread);
        prop_assert_eq!(w.uncommitted(), total(staged.iter().map(|p| p.ring_size)));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn ring_matches_queue_model(ops in proptest::collection::vec(op(), 1..300)) {
        run(ops)?;
    }
}

//! Signal decisions observed from both sides of a ring: the writer's "signal the reader" and the
//! reader's "signal the blocked writer" (protocol.md §1.2).

use vmbus_ring::{
    OutgoingKind, OutgoingPacket, ReadError, Ring, RingReader, RingWriter, SharedMem, WriteError,
};

const DATA: usize = 8192;

fn pair() -> (SharedMem, RingWriter, RingReader) {
    let mem = SharedMem::alloc(4096 + DATA);
    let w = RingWriter::new(Ring::new(mem.clone()).unwrap());
    let r = RingReader::new(Ring::new(mem.clone()).unwrap());
    (mem, w, r)
}

fn inband(payload: &'static [&'static [u8]]) -> OutgoingPacket<'static> {
    OutgoingPacket {
        kind: OutgoingKind::InBand,
        trans_id: 7,
        completion_requested: false,
        payload,
    }
}

fn drain(r: &mut RingReader) -> usize {
    let mut scratch = Vec::new();
    let mut n = 0;
    loop {
        match r.read(&mut scratch) {
            Ok(_) => n += 1,
            Err(ReadError::Empty) => return n,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn writer_signals_only_when_ring_was_empty_and_unmasked() {
    let (_mem, mut w, mut r) = pair();
    let p = inband(&[&[1; 40]]);
    assert!(!w.commit(), "empty batch never signals");
    w.try_write(&p).unwrap();
    w.try_write(&p).unwrap();
    assert!(w.commit(), "ring was empty before the batch");
    w.try_write(&p).unwrap();
    assert!(!w.commit(), "ring was not empty before the batch");

    // Reader consumed only part of it: still not empty, no signal.
    let mut scratch = Vec::new();
    r.read(&mut scratch).unwrap();
    assert!(!r.commit(), "no pending-send request");
    w.try_write(&p).unwrap();
    assert!(!w.commit());

    // Reader drains everything: the next batch starts on an empty ring.
    assert_eq!(drain(&mut r), 3);
    r.commit();
    w.try_write(&p).unwrap();
    assert!(w.commit());
}

#[test]
fn masked_reader_is_never_signalled() {
    let (_mem, mut w, mut r) = pair();
    r.ring().set_interrupt_mask(true);
    let p = inband(&[&[2; 8]]);
    w.try_write(&p).unwrap();
    assert!(!w.commit(), "mask set: no signal even on an empty ring");
    assert_eq!(drain(&mut r), 1);
    r.commit();
    r.ring().set_interrupt_mask(false);
    w.try_write(&p).unwrap();
    assert!(w.commit(), "unmasked and empty: signal");
}

#[test]
fn uncommitted_reads_do_not_count_as_empty() {
    let (_mem, mut w, mut r) = pair();
    let p = inband(&[&[3; 16]]);
    w.try_write(&p).unwrap();
    assert!(w.commit());
    assert_eq!(drain(&mut r), 1);
    // Read but not committed: the writer still sees data in the ring.
    w.try_write(&p).unwrap();
    assert!(!w.commit());
    r.revert();
    assert_eq!(drain(&mut r), 2, "revert makes both packets readable again");
}

/// Free space as the writer sees it, from the header words alone.
fn free(mem: &SharedMem) -> u32 {
    let w = mem.load_u32(0).unwrap();
    let r = mem.load_u32(4).unwrap();
    DATA as u32 - if w >= r { w - r } else { DATA as u32 - r + w }
}

/// Fill the ring with 256-byte-ring-size packets until full; returns how many.
fn fill(w: &mut RingWriter) -> (usize, u32) {
    let p = inband(&[&[9; 256 - 24]]);
    assert_eq!(p.ring_size(), 256);
    let mut n = 0;
    loop {
        match w.try_write(&p) {
            Ok(()) => n += 1,
            Err(WriteError::Full { needed }) => {
                w.commit();
                return (n, needed);
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn reader_signals_once_on_the_pending_send_transition() {
    let (mem, mut w, mut r) = pair();
    r.ring().set_feature_bits(1);
    let (n, needed) = fill(&mut w);
    assert_eq!(needed, 256);
    assert_eq!(
        n,
        DATA / 256 - 1,
        "one slot stays free: never completely full"
    );
    // Ask for three packets' worth, with the low bits a peer may set (must be masked off).
    let pending = 3 * 256;
    assert!(!w.request_space(pending | 7).unwrap(), "no room yet");
    assert_eq!(mem.load_u32(12).unwrap(), pending | 7);

    let mut scratch = Vec::new();
    let mut signalled_at = Vec::new();
    for i in 0..n {
        let before = free(&mem);
        r.read(&mut scratch).unwrap();
        let sig = r.commit();
        let after = free(&mem);
        assert_eq!(
            sig,
            before <= pending && pending < after,
            "packet {i}: free {before} -> {after}"
        );
        if sig {
            signalled_at.push(i);
        }
    }
    assert_eq!(
        signalled_at,
        [2],
        "exactly one wake-up, when free first exceeds 768"
    );
    // The writer can now get its room.
    assert!(w.request_space(pending).unwrap());
    assert_eq!(
        mem.load_u32(12).unwrap(),
        0,
        "request withdrawn when room exists"
    );
}

#[test]
fn batched_commit_signals_on_crossing_inside_the_batch() {
    let (_mem, mut w, mut r) = pair();
    r.ring().set_feature_bits(1);
    let (n, _) = fill(&mut w);
    w.request_space(1024).unwrap();
    let mut scratch = Vec::new();
    for _ in 0..n {
        r.read(&mut scratch).unwrap();
    }
    assert!(
        r.commit(),
        "one commit for the whole batch crosses the threshold"
    );
}

#[test]
fn no_reader_signal_without_feature_bit_or_request() {
    let (_mem, mut w, mut r) = pair();
    let (n, _) = fill(&mut w);
    w.request_space(512).unwrap();
    let mut scratch = Vec::new();
    r.read(&mut scratch).unwrap();
    r.read(&mut scratch).unwrap();
    r.read(&mut scratch).unwrap();
    assert!(!r.commit(), "feature bit clear: never signal");

    r.ring().set_feature_bits(1);
    w.clear_space_request();
    for _ in 3..n {
        r.read(&mut scratch).unwrap();
    }
    assert!(!r.commit(), "pending_send_size 0: never signal");
}

#[test]
fn no_reader_signal_when_free_already_exceeded_pending() {
    let (_mem, mut w, mut r) = pair();
    r.ring().set_feature_bits(1);
    let (_, _) = fill(&mut w);
    let mut scratch = Vec::new();
    for _ in 0..4 {
        r.read(&mut scratch).unwrap();
    }
    r.commit();
    // 5 * 256 bytes free now; a request for 512 is already satisfied.
    w.ring().set_pending_send_size(512);
    r.read(&mut scratch).unwrap();
    assert!(!r.commit(), "free was already > pending before this batch");
}

//! The ring reader over a hostile peer: the first 16 bytes are the header words (write index, read index,
//! interrupt mask, pending-send size), the rest the data area; a trailing part rewrites the write index between
//! reads (a peer moving it under the reader). Every packet read is walked completely; nothing may panic or read out
//! of bounds, and a reader that reported corruption keeps reporting it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmbus_ring::ring::HEADER_SIZE;
use vmbus_ring::{PacketKind, ReadError, Ring, RingReader, SharedMem};

const DATA: usize = 8192;

fuzz_target!(|input: &[u8]| {
    let (head, rest) = input.split_at(input.len().min(16));
    let (data, moves) = rest.split_at(rest.len().min(DATA));
    let mem = SharedMem::alloc(HEADER_SIZE + DATA);
    mem.write(0, head).unwrap();
    mem.write(HEADER_SIZE, data).unwrap();
    let mut reader = RingReader::new(Ring::new(mem.clone()).unwrap());
    let mut scratch = Vec::new();
    let mut moves = moves.chunks_exact(4);
    let mut corrupt = false;
    for _ in 0..64 {
        let _ = reader.bytes_available();
        match reader.read(&mut scratch) {
            Ok(p) => {
                assert!(!corrupt, "a packet after corruption");
                let _ = (p.trans_id, p.completion_requested);
                match p.kind {
                    PacketKind::InBand { payload } | PacketKind::Completion { payload } => {
                        let _ = payload.len();
                    }
                    PacketKind::TransferPages { set_id, ranges, payload } => {
                        let _ = (set_id, payload.len());
                        for r in ranges {
                            let _ = (r.byte_offset, r.byte_count);
                        }
                    }
                    PacketKind::GpaDirect { ranges, payload } => {
                        let _ = payload.len();
                        for r in ranges {
                            let _ = (r.pfn, r.offset, r.len);
                        }
                    }
                }
            }
            Err(ReadError::Empty) => {
                if moves.len() == 0 {
                    break;
                }
            }
            Err(ReadError::Corrupt(_)) => corrupt = true,
        }
        if let Some(m) = moves.next() {
            let v = u32::from_le_bytes([m[0], m[1], m[2], m[3]]);
            if v & 1 == 1 {
                reader.commit();
            } else {
                mem.store_u32(0, v).unwrap();
            }
        }
    }
    reader.commit();
    reader.revert();
});

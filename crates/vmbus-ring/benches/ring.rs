//! Throughput of the ring: a writer thread and a reader thread move in-band packets of 64 B,
//! 1500 B and 64 KiB through a 2 MiB ring (the uio_hv_generic size), compared with a plain
//! single-thread memcpy of the same payloads measured in the same run. `BENCH_SECS` (default 2)
//! sets the time per ring measurement.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use vmbus_ring::{
    OutgoingKind, OutgoingPacket, ReadError, Ring, RingReader, RingWriter, SharedMem, WriteError,
};

const RING_BYTES: usize = 2 * 1024 * 1024;
const DONE: u64 = u64::MAX;

fn ring_run(size: usize, secs: f64) -> (f64, f64) {
    let mem = SharedMem::alloc(RING_BYTES);
    let wmem = mem.clone();
    let writer = thread::spawn(move || {
        let mut w = RingWriter::new(Ring::new(wmem).unwrap());
        let payload = vec![0x5au8; size];
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let mut sent = 0u64;
        let mut trans_id = 0;
        loop {
            let done = sent.is_multiple_of(64) && Instant::now() >= deadline;
            if done {
                trans_id = DONE;
            }
            let pieces: [&[u8]; 1] = [&payload];
            let pkt = OutgoingPacket {
                kind: OutgoingKind::InBand,
                trans_id,
                completion_requested: false,
                payload: &pieces,
            };
            loop {
                match w.try_write(&pkt) {
                    Ok(()) => break,
                    Err(WriteError::Full { .. }) => {
                        w.commit();
                        thread::yield_now();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            sent += 1;
            if sent.is_multiple_of(32) || done {
                w.commit();
            }
            if done {
                return;
            }
        }
    });
    let mut r = RingReader::new(Ring::new(mem).unwrap());
    let mut scratch = Vec::new();
    let (mut msgs, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    'outer: loop {
        let mut got = 0;
        loop {
            match r.read(&mut scratch) {
                Ok(p) => {
                    msgs += 1;
                    bytes += p.kind.payload().len() as u64;
                    got += 1;
                    if p.trans_id == DONE {
                        r.commit();
                        break 'outer;
                    }
                    if got == 64 {
                        break;
                    }
                }
                Err(ReadError::Empty) => break,
                Err(e) => panic!("{e}"),
            }
        }
        if got > 0 {
            r.commit();
        } else {
            thread::yield_now();
        }
    }
    let t = start.elapsed().as_secs_f64();
    writer.join().unwrap();
    (msgs as f64 / t, bytes as f64 / t / 1e9)
}

fn memcpy_run(size: usize, secs: f64) -> f64 {
    let src = vec![0xa5u8; size];
    let mut dst = vec![0u8; RING_BYTES.max(size * 2)];
    let slots = dst.len() / size;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..256 {
            let at = (n as usize % slots) * size;
            dst[at..at + size].copy_from_slice(black_box(&src));
            n += 1;
        }
        black_box(&mut dst);
    }
    (n * size as u64) as f64 / start.elapsed().as_secs_f64() / 1e9
}

fn main() {
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    println!(
        "ring: {} KiB per direction, writer and reader on two threads; memcpy: one thread",
        RING_BYTES / 1024
    );
    println!(
        "{:>8} {:>14} {:>10} {:>12} {:>8}",
        "payload", "ring msg/s", "ring GB/s", "memcpy GB/s", "ratio"
    );
    for size in [64usize, 1500, 65536] {
        let (mps, gbs) = ring_run(size, secs);
        let mgbs = memcpy_run(size, secs / 2.0);
        println!(
            "{size:>8} {mps:>14.0} {gbs:>10.2} {mgbs:>12.2} {:>8.3}",
            gbs / mgbs
        );
    }
}

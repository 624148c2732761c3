//! Ten million packets of mixed kinds and sizes (8 B .. ¼ ring, mostly small) through a 64 KiB
//! ring that wraps constantly, writer and reader on separate threads, batching, spinning, then
//! sleeping on the signals the ring asks for. Each packet is checked for sequence number, kind,
//! ranges, padding and checksum; any lost wake-up (a sleep that ends by timeout although the
//! peer had made room or data) is counted and must be zero.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use vmbus_ring::{
    GpaRange, IncomingPacket, OutgoingKind, OutgoingPacket, PacketKind, ReadError, Ring,
    RingReader, RingWriter, SharedMem, TransferRange, WriteError,
};

const PACKETS: u64 = 10_000_000;
const DATA: usize = 64 * 1024;
const MAX_PAYLOAD: usize = DATA / 4;
const SLEEP: Duration = Duration::from_secs(2);
const SPINS: u32 = 64;

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Everything about packet `seq` except its bytes, derived from `seq` alone.
struct Spec {
    kind: u8, // 0 in-band, 1 GPA, 2 transfer pages, 3 completion
    len: usize,
    nranges: u32,
    compl: bool,
}

fn spec(seq: u64) -> Spec {
    let h = mix(seq);
    let kind = match h % 10 {
        0..=4 => 0,
        5 | 6 => 1,
        7 | 8 => 2,
        _ => 3,
    };
    let r = (h >> 8) % 1000;
    let v = (h >> 20) as usize;
    let len = if r < 900 {
        8 + v % 121
    } else if r < 990 {
        128 + v % 1921
    } else {
        2048 + v % (MAX_PAYLOAD - 2048 + 1)
    };
    let nranges = match kind {
        1 => 1 + (h >> 40) as u32 % 4,
        2 => 1 + (h >> 40) as u32 % 8,
        _ => 0,
    };
    Spec {
        kind,
        len,
        nranges,
        compl: (h >> 50) & 1 == 1,
    }
}

fn transfer_range(seq: u64, i: u32) -> TransferRange {
    TransferRange {
        byte_count: seq as u32 ^ i,
        byte_offset: i * 4096,
    }
}

fn gpa_range(seq: u64, i: u32) -> GpaRange {
    GpaRange {
        len: 100 + i,
        offset: (seq >> 3) as u32 & 0xfff,
        pfn: seq ^ (i as u64) << 40,
    }
}

fn checksum(bytes: &[u8]) -> u64 {
    let mut acc = 0xcbf2_9ce4_8422_2325u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        acc = (acc ^ u64::from_le_bytes(c.try_into().unwrap())).wrapping_mul(0x100_0000_01b3);
        acc = acc.rotate_left(17);
    }
    for &b in chunks.remainder() {
        acc = (acc ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    acc
}

/// Payload of packet `seq`: seq, pseudo-random fill, and (from 16 bytes on) a trailing checksum.
fn fill_payload(seq: u64, buf: &mut [u8]) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    let mut x = mix(seq ^ 0x5555);
    for chunk in buf[8..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let n = buf.len();
    if n >= 16 {
        let sum = checksum(&buf[..n - 8]);
        buf[n - 8..].copy_from_slice(&sum.to_le_bytes());
    }
}

/// Checks one received packet; returns a description of the first mismatch.
fn verify(p: &IncomingPacket<'_>, seq: u64, regen: &mut [u8]) -> Result<(), String> {
    if p.trans_id != seq {
        return Err(format!(
            "expected packet {seq}, got trans_id {}",
            p.trans_id
        ));
    }
    let s = spec(seq);
    if p.completion_requested != s.compl {
        return Err(format!("{seq}: completion flag"));
    }
    let header = match (s.kind, &p.kind) {
        (0, PacketKind::InBand { .. }) | (3, PacketKind::Completion { .. }) => 16,
        (1, PacketKind::GpaDirect { ranges, .. }) => {
            if ranges.len() != s.nranges as usize
                || !(*ranges)
                    .enumerate()
                    .all(|(i, r)| r == gpa_range(seq, i as u32))
            {
                return Err(format!("{seq}: GPA ranges"));
            }
            24 + 16 * s.nranges as usize
        }
        (2, PacketKind::TransferPages { set_id, ranges, .. }) => {
            if *set_id != seq as u16
                || ranges.len() != s.nranges as usize
                || !(*ranges)
                    .enumerate()
                    .all(|(i, r)| r == transfer_range(seq, i as u32))
            {
                return Err(format!("{seq}: transfer ranges"));
            }
            24 + 8 * s.nranges as usize
        }
        (k, other) => return Err(format!("{seq}: kind {k} but got {other:?}")),
    };
    let payload = p.kind.payload();
    if payload.len() != (header + s.len).div_ceil(8) * 8 - header {
        return Err(format!(
            "{seq}: payload length {} for {}",
            payload.len(),
            s.len
        ));
    }
    let (data, pad) = payload.split_at(s.len);
    if pad.iter().any(|&b| b != 0) {
        return Err(format!("{seq}: non-zero padding"));
    }
    if data[..8] != seq.to_le_bytes() {
        return Err(format!("{seq}: sequence number in payload"));
    }
    let ok = if s.len >= 16 {
        checksum(&data[..s.len - 8]).to_le_bytes() == data[s.len - 8..]
    } else {
        fill_payload(seq, &mut regen[..s.len]);
        regen[..s.len] == *data
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{seq}: checksum mismatch"))
    }
}

#[derive(Default)]
struct Stats {
    writer_signals: AtomicU64,
    reader_signals: AtomicU64,
    writer_sleeps: AtomicU64,
    reader_sleeps: AtomicU64,
    lost_wakeups: AtomicU64,
    commits: AtomicU64,
    full: AtomicU64,
}

/// Sets `stop` if the owning thread unwinds, so the other side does not wait forever.
struct StopOnPanic(Arc<AtomicBool>);
impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// `ready` gets the writer's handle when the ring is first full: the reader starts only then, so the first batch
/// always lands in an empty, unmasked ring (it must signal) and the ring fills at least once, however the two
/// threads are scheduled (a loaded machine once let the reader mask the ring before the first commit).
fn writer_thread(
    mem: SharedMem,
    reader: Thread,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<Thread>,
) -> u64 {
    let _guard = StopOnPanic(stop.clone());
    let mut ready = Some(ready);
    let mut w = RingWriter::new(Ring::new(mem).unwrap());
    let mut buf = vec![0u8; MAX_PAYLOAD];
    let mut tr = [TransferRange::default(); 8];
    let mut gr = [GpaRange::default(); 4];
    let signal = |sig: bool| {
        if sig {
            stats.writer_signals.fetch_add(1, Ordering::Relaxed);
            reader.unpark();
        }
    };
    let mut seq = 0u64;
    let mut in_batch = 0;
    let mut batch = 1;
    let mut built = u64::MAX;
    while seq < PACKETS {
        let s = spec(seq);
        if built != seq {
            fill_payload(seq, &mut buf[..s.len]);
            for i in 0..s.nranges {
                tr[i as usize % 8] = transfer_range(seq, i);
                gr[i as usize % 4] = gpa_range(seq, i);
            }
            built = seq;
        }
        let n = s.nranges as usize;
        let kind = match s.kind {
            0 => OutgoingKind::InBand,
            1 => OutgoingKind::GpaDirect { ranges: &gr[..n] },
            2 => OutgoingKind::TransferPages {
                set_id: seq as u16,
                ranges: &tr[..n],
            },
            _ => OutgoingKind::Completion,
        };
        // Gather from two pieces to exercise the payload list.
        let cut = s.len / 3;
        let pieces: [&[u8]; 2] = [&buf[..cut], &buf[cut..s.len]];
        let pkt = OutgoingPacket {
            kind,
            trans_id: seq,
            completion_requested: s.compl,
            payload: &pieces,
        };
        match w.try_write(&pkt) {
            Ok(()) => {
                seq += 1;
                in_batch += 1;
                if in_batch >= batch {
                    stats.commits.fetch_add(1, Ordering::Relaxed);
                    signal(w.commit());
                    in_batch = 0;
                    batch = 1 + mix(seq) % 32;
                }
            }
            Err(WriteError::Full { needed }) => {
                stats.full.fetch_add(1, Ordering::Relaxed);
                stats.commits.fetch_add(1, Ordering::Relaxed);
                signal(w.commit());
                in_batch = 0;
                if let Some(ready) = ready.take() {
                    ready.send(thread::current()).unwrap();
                }
                let mut spins = 0;
                while w.available() < needed {
                    if stop.load(Ordering::Relaxed) {
                        return seq;
                    }
                    spins += 1;
                    if spins < SPINS {
                        thread::yield_now();
                        continue;
                    }
                    if w.request_space(needed).unwrap() {
                        break;
                    }
                    stats.writer_sleeps.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    thread::park_timeout(SLEEP);
                    if t.elapsed() >= SLEEP && w.available() >= needed {
                        stats.lost_wakeups.fetch_add(1, Ordering::Relaxed);
                    }
                }
                w.clear_space_request();
            }
            Err(e) => panic!("writer: {e}"),
        }
    }
    signal(w.commit());
    seq
}

fn reader_thread(mem: SharedMem, writer: Thread, stats: Arc<Stats>, stop: Arc<AtomicBool>) -> u64 {
    let _guard = StopOnPanic(stop.clone());
    let mut r = RingReader::new(Ring::new(mem).unwrap());
    let mut scratch = Vec::new();
    let mut regen = vec![0u8; 16];
    let mut seq = 0u64;
    let mut spins = 0;
    while seq < PACKETS {
        if stop.load(Ordering::Relaxed) {
            return seq;
        }
        r.ring().set_interrupt_mask(true);
        let mut got = 0;
        while got < 64 {
            match r.read(&mut scratch) {
                Ok(p) => {
                    if let Err(e) = verify(&p, seq, &mut regen) {
                        panic!("reader: {e}");
                    }
                    seq += 1;
                    got += 1;
                }
                Err(ReadError::Empty) => break,
                Err(e) => panic!("reader at packet {seq}: {e}"),
            }
        }
        if got > 0 {
            spins = 0;
            if r.commit() {
                stats.reader_signals.fetch_add(1, Ordering::Relaxed);
                writer.unpark();
            }
            continue;
        }
        spins += 1;
        if spins < SPINS {
            thread::yield_now();
            continue;
        }
        r.ring().set_interrupt_mask(false);
        if r.bytes_available() > 0 {
            continue;
        }
        stats.reader_sleeps.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        thread::park_timeout(SLEEP);
        if t.elapsed() >= SLEEP && r.bytes_available() > 0 {
            stats.lost_wakeups.fetch_add(1, Ordering::Relaxed);
        }
    }
    seq
}

#[test]
fn ten_million_packets_across_two_threads() {
    let mem = SharedMem::alloc(4096 + DATA);
    Ring::new(mem.clone()).unwrap().set_feature_bits(1);
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();

    let (tx, rx) = std::sync::mpsc::channel::<Thread>();
    let reader = {
        let (mem, stats, stop) = (mem.clone(), stats.clone(), stop.clone());
        thread::spawn(move || {
            let writer = rx.recv().unwrap();
            reader_thread(mem, writer, stats, stop)
        })
    };
    let writer = {
        let (mem, stats, stop) = (mem.clone(), stats.clone(), stop.clone());
        let reader = reader.thread().clone();
        thread::spawn(move || writer_thread(mem, reader, stats, stop, tx))
    };
    let written = writer.join().expect("writer thread panicked");
    let read = reader.join().expect("reader thread panicked");

    let s = &*stats;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "{PACKETS} packets in {:?}: {} commits, {} full, signals w→r {} r→w {}, sleeps w {} r {}",
        start.elapsed(),
        get(&s.commits),
        get(&s.full),
        get(&s.writer_signals),
        get(&s.reader_signals),
        get(&s.writer_sleeps),
        get(&s.reader_sleeps),
    );
    assert_eq!(written, PACKETS);
    assert_eq!(read, PACKETS, "every packet received, in order, intact");
    assert_eq!(
        get(&s.lost_wakeups),
        0,
        "a sleeper timed out although the peer had made progress"
    );
    assert!(get(&s.full) > 0, "the ring filled up at least once");
    assert!(
        get(&s.writer_signals) > 0,
        "the first batch into an empty ring signals"
    );
    let tail = Ring::new(mem).unwrap();
    assert_eq!(tail.read_index(), tail.write_index(), "ring drained");
}

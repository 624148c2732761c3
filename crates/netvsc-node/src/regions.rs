//! Address ranges of this process's live `recvRegion()` and `txRegion()` mappings, which no burst argument may view
//! (queue.rs, "Slices"). Every burst reads the table: a scan of the used slots with acquire loads — no lock and no
//! read-modify-write, so threads bursting on different queues share only read-mostly cache lines. Making a region's
//! ArrayBuffer and its finalizer write the table, under a mutex.
//!
//! Why reads need no lock: a typed array can view a region only once its ArrayBuffer exists, which is made after
//! `add` returned; a view reaches a thread either there or through a message port (which synchronizes), so every
//! thread that can hold a view sees the range in its scan. A scan racing with `remove` (the buffer is already collected, so nothing views
//! it) can only refuse an argument too many, never accept one too few.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Live region mappings at most (one per `recvRegion()`/`txRegion()` call kept alive).
pub const SLOTS: usize = 256;

/// Which call made a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `recvRegion()`: the receive buffer, written by the host and the driver.
    Recv,
    /// `txRegion()`: the transmit region, read by the host while sends are in flight.
    Tx,
}

struct Slot {
    /// 0 = free (no mapping starts at address 0).
    start: AtomicUsize,
    end: AtomicUsize,
    kind: AtomicU8,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        kind: AtomicU8::new(0),
    }
}; SLOTS];
/// Slots `0..USED` may be in use (a high-water mark: slots are reused, never compacted).
static USED: AtomicUsize = AtomicUsize::new(0);
static WRITER: Mutex<()> = Mutex::new(());

/// List `start..end`; false when [`SLOTS`] mappings are already live.
pub fn add(start: usize, end: usize, kind: Kind) -> bool {
    let _w = WRITER.lock().unwrap_or_else(|p| p.into_inner());
    let Some(i) = TABLE
        .iter()
        .position(|s| s.start.load(Ordering::Relaxed) == 0)
    else {
        return false;
    };
    let slot = &TABLE[i];
    slot.end.store(end, Ordering::Relaxed);
    slot.kind.store(kind as u8, Ordering::Relaxed);
    // Release: a scan that sees `start` sees the `end` and `kind` stored before it.
    slot.start.store(start, Ordering::Release);
    if i >= USED.load(Ordering::Relaxed) {
        USED.store(i + 1, Ordering::Release);
    }
    true
}

/// Drop `start..end` from the table (its mapping is going away).
pub fn remove(start: usize, end: usize) {
    let _w = WRITER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = TABLE
        .iter()
        .find(|s| s.start.load(Ordering::Relaxed) == start && s.end.load(Ordering::Relaxed) == end)
    {
        s.start.store(0, Ordering::Release);
    }
}

/// The kind of a live mapping that `range` (start, end; non-empty) overlaps, if any.
pub fn overlapping(range: (usize, usize)) -> Option<Kind> {
    let used = USED.load(Ordering::Acquire);
    TABLE[..used].iter().find_map(|s| {
        let start = s.start.load(Ordering::Acquire);
        if start == 0 {
            return None;
        }
        let end = s.end.load(Ordering::Relaxed);
        (range.0 < end && start < range.1).then(|| {
            if s.kind.load(Ordering::Relaxed) == Kind::Tx as u8 {
                Kind::Tx
            } else {
                Kind::Recv
            }
        })
    })
}

//! The emulated control page (`dev/uioN.maps/ctl`): where the interposer (or vmbus-uio in emulated mode) records what
//! a real `/dev/uioN` would have been told — interrupt enables, who opened it — and where the host posts the event
//! count a blocking `read()` returns. Layout (little-endian) is fixed by docs/contracts.md.

use vmbus_ring::{MemError, SharedMem};

/// Size of the control page.
pub const CTL_SIZE: usize = 4096;
/// `"UCVH"` read as a little-endian u32.
pub const CTL_MAGIC: u32 = 0x4856_4355;
/// Offset of the magic.
pub const CTL_MAGIC_OFF: usize = 0;
/// Offset of the last int32 written to the uio fd.
pub const CTL_IRQ_ENABLED_OFF: usize = 4;
/// Offset of the count of int32 writes (u64).
pub const CTL_IRQ_WRITES_OFF: usize = 8;
/// Offset of the event count a `read()` returns (u64).
pub const CTL_EVENT_COUNT_OFF: usize = 16;
/// Offset of the pid of the last opener.
pub const CTL_GUEST_PID_OFF: usize = 24;
/// Offset of the number of opens.
pub const CTL_OPEN_COUNT_OFF: usize = 28;

/// Typed access to a control page.
#[derive(Debug, Clone)]
pub struct ControlPage {
    mem: SharedMem,
}

impl ControlPage {
    /// Wrap a mapping of the control page (at least [`CTL_SIZE`] bytes).
    pub fn new(mem: SharedMem) -> Result<Self, MemError> {
        if mem.len() < CTL_SIZE {
            return Err(MemError::OutOfBounds {
                offset: 0,
                len: CTL_SIZE,
                size: mem.len(),
            });
        }
        Ok(Self { mem })
    }

    /// Zero the page and write the magic.
    pub fn init(&self) -> Result<(), MemError> {
        self.mem.fill(0, CTL_SIZE, 0)?;
        self.mem.store_u32(CTL_MAGIC_OFF, CTL_MAGIC)
    }

    /// The underlying memory.
    pub fn mem(&self) -> &SharedMem {
        &self.mem
    }

    /// The magic word (should be [`CTL_MAGIC`]).
    pub fn magic(&self) -> u32 {
        self.load32(CTL_MAGIC_OFF)
    }

    /// Last int32 the guest wrote to the uio fd (1 = interrupts enabled).
    pub fn irq_enabled(&self) -> i32 {
        self.load32(CTL_IRQ_ENABLED_OFF) as i32
    }

    /// How many int32 writes the guest made to the uio fd.
    pub fn irq_writes(&self) -> u64 {
        self.load64(CTL_IRQ_WRITES_OFF)
    }

    /// The current event count.
    pub fn event_count(&self) -> u64 {
        self.load64(CTL_EVENT_COUNT_OFF)
    }

    /// Raise one "interrupt": bump the event count, waking a guest blocked in `read()`. Returns the new count.
    pub fn post_event(&self) -> u64 {
        self.mem
            .fetch_add_u64(CTL_EVENT_COUNT_OFF, 1)
            .map(|v| v.wrapping_add(1))
            .unwrap_or(0)
    }

    /// Pid of the process that last opened `/dev/uioN` (0 = never opened).
    pub fn guest_pid(&self) -> u32 {
        self.load32(CTL_GUEST_PID_OFF)
    }

    /// Number of opens of `/dev/uioN` so far.
    pub fn open_count(&self) -> u32 {
        self.load32(CTL_OPEN_COUNT_OFF)
    }

    fn load32(&self, off: usize) -> u32 {
        // In bounds and aligned: checked against CTL_SIZE in `new`.
        self.mem.load_u32(off).unwrap_or(0)
    }

    fn load64(&self, off: usize) -> u64 {
        self.mem.load_u64(off).unwrap_or(0)
    }
}

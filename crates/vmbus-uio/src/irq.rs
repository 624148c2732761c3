//! Interrupt control of the primary channel: a 4-byte write of an int32 to the uio fd (the
//! kernel's `hv_uio_irqcontrol`), or, for the emulator's tree, the same effect on its control page.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use vmbus_ring::SharedMem;

use crate::error::UioError;

/// Byte offsets in the emulator's control page (`dev/uioN.maps/ctl`).
pub mod ctl {
    /// u32 magic "UCVH".
    pub const MAGIC: usize = 0;
    /// The magic value.
    pub const MAGIC_VALUE: u32 = 0x4856_4355;
    /// u32 last value written.
    pub const IRQ_ENABLED: usize = 4;
    /// u64 number of int32 writes.
    pub const IRQ_WRITES: usize = 8;
    /// u64 event count (what read() returns).
    pub const EVENT_COUNT: usize = 16;
    /// u32 pid of the last opener.
    pub const GUEST_PID: usize = 24;
    /// u32 number of opens.
    pub const OPEN_COUNT: usize = 28;
    /// Size of the page.
    pub const SIZE: usize = 4096;
}

/// Offset of `interrupt_mask` in a ring header.
const INTERRUPT_MASK: usize = 8;

/// Where `irq_control` writes go.
#[derive(Debug)]
pub(crate) enum IrqControl {
    /// The kernel's uio fd.
    Real { fd: OwnedFd, path: PathBuf },
    /// The emulator's control page plus the primary rings (map 0).
    Emulated {
        ctl: SharedMem,
        rings: SharedMem,
        ring_half: usize,
    },
}

impl IrqControl {
    /// Write `value` as the kernel's uio write(int32) would be seen.
    pub(crate) fn write(&self, value: i32) -> Result<(), UioError> {
        match self {
            Self::Real { fd, path } => {
                let bytes = value.to_ne_bytes();
                // SAFETY: writes 4 bytes from a live local buffer to an fd we own.
                let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
                if n != 4 {
                    return Err(UioError::sys("write(irq control)", path));
                }
                Ok(())
            }
            Self::Emulated {
                ctl: page,
                rings,
                ring_half,
            } => {
                let err = UioError::mem("emulated control page");
                page.store_u32(ctl::IRQ_ENABLED, value as u32)
                    .map_err(err)?;
                page.fetch_add_u64(ctl::IRQ_WRITES, 1)
                    .map_err(UioError::mem("emulated control page"))?;
                if value != 0 {
                    // Like the kernel: enabling clears the mask of the primary host→guest ring.
                    rings
                        .store_u32(ring_half + INTERRUPT_MASK, 0)
                        .map_err(UioError::mem("primary rings"))?;
                }
                Ok(())
            }
        }
    }
}

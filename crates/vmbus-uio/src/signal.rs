//! Guest→host notification from user space, which cannot make the signal-event hypercall.
//!
//! A monitored channel sets its bit in the monitor page's trigger group (the host scans it every
//! "latency" interval) and the relid bit in the guest→host half of the interrupt page; an
//! unmonitored channel sets the relid bit and asks the kernel to signal, via `irq_control(1)`.

use std::sync::Arc;
use std::time::Duration;

use vmbus_ring::SharedMem;

use crate::error::UioError;
use crate::irq::IrqControl;

/// Offset of the guest→host event flags in the interrupt page.
pub const INT_PAGE_SEND_OFFSET: usize = 2048;
/// Offset of `trigger_group[0].pending` in the monitor page (each group is {pending, armed}).
pub const MONITOR_TRIGGER_OFFSET: usize = 8;
/// Offset of `latency[0][0]` (u16, units of 100 ns) in the monitor page.
pub const MONITOR_LATENCY_OFFSET: usize = 576;
/// Monitor ids 0..128 exist (4 trigger groups of 32).
pub const MONITOR_IDS: u8 = 128;
/// DPDK's "no monitor" value.
pub const NO_MONITOR: u8 = 0xff;
/// Largest number of relids the 2048-byte event half can flag.
pub const MAX_RELID: u32 = 2048 * 8 - 1;

/// Signals the host for one channel (primary or subchannel).
#[derive(Debug, Clone)]
pub struct Signaller {
    relid: u32,
    monitor_id: Option<u8>,
    int_page: SharedMem,
    monitor_page: SharedMem,
    irq: Arc<IrqControl>,
}

impl Signaller {
    /// `monitor_id` `None` or 255 means unmonitored; 128..=254 is rejected.
    pub(crate) fn new(
        relid: u32,
        monitor_id: Option<u8>,
        int_page: SharedMem,
        monitor_page: SharedMem,
        irq: Arc<IrqControl>,
    ) -> Result<Self, UioError> {
        let monitor_id = match monitor_id {
            None | Some(NO_MONITOR) => None,
            Some(m) if m >= MONITOR_IDS => return Err(UioError::MonitorIdOutOfRange(m)),
            Some(m) => Some(m),
        };
        if relid > MAX_RELID || int_page.len() < INT_PAGE_SEND_OFFSET * 2 {
            return Err(UioError::Invalid(format!(
                "relid {relid} does not fit the interrupt page (max {MAX_RELID})"
            )));
        }
        if monitor_page.len() < 4096 {
            return Err(UioError::Invalid(
                "monitor page shorter than 4096 bytes".into(),
            ));
        }
        Ok(Self {
            relid,
            monitor_id,
            int_page,
            monitor_page,
            irq,
        })
    }

    /// A signaller whose interrupt page, monitor page and control page are private memory nobody reads: for
    /// harnesses that drive a channel without a device (the driver's fuzzing entry points, unit tests).
    #[doc(hidden)]
    pub fn in_memory(relid: u32, monitor_id: Option<u8>) -> Result<Self, UioError> {
        let irq = IrqControl::Emulated {
            ctl: SharedMem::alloc(4096),
            rings: SharedMem::alloc(2 * 8192),
            ring_half: 8192,
        };
        Self::new(
            relid,
            monitor_id,
            SharedMem::alloc(4096),
            SharedMem::alloc(4096),
            Arc::new(irq),
        )
    }

    /// The channel's relid.
    pub fn relid(&self) -> u32 {
        self.relid
    }

    /// The monitor id, `None` for an unmonitored channel.
    pub fn monitor_id(&self) -> Option<u8> {
        self.monitor_id
    }

    /// Tell the host there is something in the guest→host ring.
    ///
    /// Sets bit `relid % 32` of the u32 at `2048 + 4 * (relid / 32)` in the interrupt page. Then,
    /// monitored: ORs bit `m % 32` into `trigger_group[m / 32].pending` (monitor page
    /// `8 + 8 * (m / 32)`). DPDK sets only the monitor bit; Linux sets both, and so do we, since a
    /// host may look at either. Unmonitored: `irq_control(1)`, on which the kernel signals the host.
    pub fn signal(&self) -> Result<(), UioError> {
        let word = INT_PAGE_SEND_OFFSET + 4 * (self.relid / 32) as usize;
        self.int_page
            .fetch_or_u32(word, 1 << (self.relid % 32))
            .map_err(UioError::mem("interrupt page"))?;
        match self.monitor_id {
            Some(m) => {
                let pending = MONITOR_TRIGGER_OFFSET + 8 * (m / 32) as usize;
                self.monitor_page
                    .fetch_or_u32(pending, 1 << (m % 32))
                    .map_err(UioError::mem("monitor page"))?;
                Ok(())
            }
            None => self.irq.write(1),
        }
    }

    /// Write an int32 to the uio fd (real) or the control page (emulated): non-zero enables host
    /// interrupts for the primary channel (and clears its inbound `interrupt_mask`), 0 disables.
    pub fn irq_control(&self, value: i32) -> Result<(), UioError> {
        self.irq.write(value)
    }

    /// Set the host's monitor scan latency for this channel: `latency / 100 ns` as the u16 at
    /// monitor page `576 + 2 * m`. Latencies of 6553.5 µs or more do not fit and are rejected (DPDK
    /// ignores them). Returns `Ok(false)` without writing when the channel is unmonitored.
    pub fn set_latency(&self, latency: Duration) -> Result<bool, UioError> {
        let nanos = latency.as_nanos();
        if nanos >= u128::from(u16::MAX) * 100 {
            return Err(UioError::LatencyTooLarge { nanos });
        }
        self.set_latency_100ns((nanos / 100) as u16)
    }

    /// [`Self::set_latency`] in units of 100 ns (65535 is rejected like DPDK does).
    pub fn set_latency_100ns(&self, units: u16) -> Result<bool, UioError> {
        if units == u16::MAX {
            return Err(UioError::LatencyTooLarge {
                nanos: u128::from(units) * 100,
            });
        }
        let Some(m) = self.monitor_id else {
            return Ok(false);
        };
        self.monitor_page
            .write(
                MONITOR_LATENCY_OFFSET + 2 * m as usize,
                &units.to_le_bytes(),
            )
            .map_err(UioError::mem("monitor page"))?;
        Ok(true)
    }
}

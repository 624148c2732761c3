//! One VMBus channel as the driver uses it: the guest→host ring writer, the host→guest ring reader
//! with its scratch buffer, and the signaller. Writes are batched: `send` only copies, `flush`
//! publishes the batch with one index store and signals the host only when the ring rules say so.

use vmbus_ring::{Corruption, OutgoingPacket, Ring, RingReader, RingWriter, SharedMem, WriteError};
use vmbus_uio::Signaller;

use crate::error::{Error, Result, Step};

/// Why a write did not go in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendError {
    /// Not enough free space now; try again after the host drains.
    Full,
    /// The packet can never fit, or the ring is corrupt.
    Fatal,
}

pub(crate) struct Channel {
    writer: RingWriter,
    pub reader: RingReader,
    pub scratch: Vec<u8>,
    signaller: Signaller,
    unflushed: bool,
    idle: u32,
    /// A write found the guest→host ring corrupt (taken by the queue, which faults).
    pub write_fault: Option<Corruption>,
}

impl Channel {
    /// Build over a ring pair mapping: the first half guest→host, the second host→guest.
    pub fn new(rings: &SharedMem, signaller: Signaller, step: Step) -> Result<Channel> {
        let half = rings.len() / 2;
        let ring_err = |e: vmbus_ring::RingError| Error::Ring {
            step,
            detail: e.to_string(),
        };
        let tx = rings.subrange(0, half).map_err(Error::mem(step))?;
        let rx = rings.subrange(half, half).map_err(Error::mem(step))?;
        let writer = RingWriter::new(Ring::new(tx).map_err(ring_err)?);
        let idle = writer.ring().data_size().saturating_sub(8);
        let reader = RingReader::new(Ring::new(rx).map_err(ring_err)?);
        Ok(Channel {
            writer,
            reader,
            scratch: Vec::with_capacity(16 * 1024),
            signaller,
            unflushed: false,
            idle,
            write_fault: None,
        })
    }

    /// Copy one packet into the ring (not yet visible to the host).
    pub fn send(&mut self, pkt: &OutgoingPacket<'_>) -> std::result::Result<(), SendError> {
        match self.writer.try_write(pkt) {
            Ok(()) => {
                self.unflushed = true;
                Ok(())
            }
            Err(WriteError::Full { .. }) => Err(SendError::Full),
            Err(WriteError::Corrupt(c)) => {
                self.write_fault.get_or_insert(c);
                Err(SendError::Fatal)
            }
            Err(_) => Err(SendError::Fatal),
        }
    }

    /// Publish everything sent since the last flush; signal the host if it needs it.
    pub fn flush(&mut self) {
        if self.unflushed {
            self.unflushed = false;
            if self.writer.commit() {
                self.signal();
            }
        }
    }

    /// Ring the host's doorbell for this channel.
    pub fn signal(&self) {
        // A failed signal only delays the host until its next scan; nothing to recover.
        if let Err(e) = self.signaller.signal() {
            let _ = e;
        }
    }

    /// Publish the read index after a batch of reads; signal if the host was waiting for room.
    pub fn commit_read(&mut self) {
        if self.reader.commit() {
            self.signal();
        }
    }

    /// Free bytes in the outgoing ring.
    pub fn available(&mut self) -> u32 {
        self.writer.available()
    }

    /// Free space when the host has consumed everything (lower bound; the writer keeps a gap).
    pub fn idle_available(&self) -> u32 {
        self.idle
    }
}

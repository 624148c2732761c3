//! RNDIS PACKET: a 44-byte header, then PPI entries, then the frame. Parse bounds the data, PPI and OOB regions
//! to `msg_len` and to after the header; the PPI walk checks every entry (size ≥ 12, 4-aligned, inside the
//! region, payload offset inside the entry) and ends after at most `ppi_len / 12` steps. Building writes into a
//! caller buffer without allocating.

use super::msgs::{PacketHeader, RndisHeader};
use super::{PACKET_HEADER_LEN, msg_type};
use crate::error::{ProtoError, Result, need, room};
use crate::ppi::{INTERNAL, PPI_HEADER_LEN, PpiHeader};
use crate::wire::{Region, copy_at, read_prefix, u32_at, write_at};

const WHAT: &str = "RNDIS PACKET";

/// Where the frame and the PPI region of a PACKET sit, in message coordinates (byte 0 = `msg_type`), as checked
/// by [`RndisPacket::layout`]: both lie after the 44-byte header and within `msg_len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketLayout {
    pub header: PacketHeader,
    /// The frame: `8 + data_offset .. + data_len`.
    pub data: core::ops::Range<usize>,
    /// The PPI region: `8 + ppi_offset .. + ppi_len` (empty when `ppi_len` is 0).
    pub ppi: core::ops::Range<usize>,
}

/// A parsed PACKET message: its header and bounded views of the frame and the PPI region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RndisPacket<'a> {
    pub header: PacketHeader,
    /// The frame (`data_len` bytes at 8 + `data_offset`).
    pub data: &'a [u8],
    /// The raw PPI region (`ppi_len` bytes at 8 + `ppi_offset`).
    pub ppi: &'a [u8],
}

impl<'a> RndisPacket<'a> {
    /// Parse a PACKET message; `msg` is exactly the message (`msg_len` bytes), header included.
    pub fn parse(msg: &'a [u8]) -> Result<Self> {
        let l = Self::layout(msg, msg.len())?;
        Ok(Self {
            header: l.header,
            data: &msg[l.data],
            ppi: &msg[l.ppi],
        })
    }

    /// Validate a PACKET from its first [`PACKET_HEADER_LEN`] bytes (`head`; more may follow) for a message of
    /// `msg_len` bytes that the caller keeps elsewhere (e.g. in a shared receive buffer, so the frame need not be
    /// copied to be checked). Applies the same bounds as [`Self::parse`] and returns where the regions sit.
    pub fn layout(head: &[u8], msg_len: usize) -> Result<PacketLayout> {
        need(WHAT, msg_len, PACKET_HEADER_LEN)?;
        need(WHAT, head.len(), PACKET_HEADER_LEN)?;
        let header: PacketHeader = read_prefix(WHAT, &head[8..], 36)?;
        let region = |field, field_at, offset, len| Region {
            what: WHAT,
            field,
            field_at,
            base: 8,
            offset,
            len,
            lo: PACKET_HEADER_LEN,
            hi: msg_len,
        };
        let data = region("data_offset", 8, header.data_offset, header.data_len).check()?;
        region("oob_offset", 16, header.oob_offset, header.oob_len).check()?;
        let ppi = region("ppi_offset", 28, header.ppi_offset, header.ppi_len).check()?;
        Ok(PacketLayout { header, data, ppi })
    }

    /// A packet to emit: the header fields are recomputed by `emit`.
    pub fn new(ppi: &'a [u8], data: &'a [u8]) -> Self {
        Self {
            header: PacketHeader::default(),
            data,
            ppi,
        }
    }

    /// Iterate the PPI entries.
    pub fn ppis(&self) -> PpiIter<'a> {
        PpiIter::new(self.ppi)
    }

    /// The payload of the first PPI of `ppi_type` (type including the internal bit), if present.
    pub fn find_ppi(&self, ppi_type: u32) -> Result<Option<&'a [u8]>> {
        for p in self.ppis() {
            let p = p?;
            if p.ppi_type == ppi_type {
                return Ok(Some(p.data));
            }
        }
        Ok(None)
    }

    /// The first `u32` of the PPI of `ppi_type`, if present (error if its payload is shorter than 4 bytes).
    pub fn ppi_u32(&self, ppi_type: u32) -> Result<Option<u32>> {
        match self.find_ppi(ppi_type)? {
            None => Ok(None),
            Some(d) if d.len() >= 4 => Ok(Some(u32_at(d, 0))),
            Some(d) => Err(ProtoError::Truncated {
                what: "PPI payload",
                needed: 4,
                have: d.len(),
            }),
        }
    }

    /// Write header (PPI at 36 if any, data after them) + PPI bytes + data; returns msg_len.
    pub(crate) fn emit_into(&self, out: &mut [u8]) -> Result<usize> {
        emit_raw(out, self.ppi, self.data)
    }
}

fn emit_raw(out: &mut [u8], ppi: &[u8], data: &[u8]) -> Result<usize> {
    let len = PACKET_HEADER_LEN + ppi.len() + data.len();
    room(WHAT, out.len(), len)?;
    write_header(out, ppi.len(), data.len())?;
    copy_at(WHAT, out, PACKET_HEADER_LEN, ppi)?;
    copy_at(WHAT, out, PACKET_HEADER_LEN + ppi.len(), data)?;
    Ok(len)
}

fn write_header(out: &mut [u8], ppi_len: usize, data_len: usize) -> Result<()> {
    let len = PACKET_HEADER_LEN + ppi_len + data_len;
    let too_big = |v: usize| ProtoError::Invalid {
        what: WHAT,
        field: "msg_len",
        offset: 4,
        value: v as u64,
        reason: "exceeds u32",
    };
    let len32 = u32::try_from(len).map_err(|_| too_big(len))?;
    write_at(
        WHAT,
        out,
        0,
        &RndisHeader {
            msg_type: msg_type::PACKET,
            msg_len: len32,
        },
    )?;
    let h = PacketHeader {
        data_offset: (36 + ppi_len) as u32,
        data_len: data_len as u32,
        ppi_offset: if ppi_len == 0 { 0 } else { 36 },
        ppi_len: ppi_len as u32,
        ..Default::default()
    };
    write_at(WHAT, out, 8, &h)
}

/// Emit a complete PACKET with the given PPIs (`(type, payload)`, payload padded to 4) and frame; returns msg_len.
pub fn emit_packet(out: &mut [u8], ppis: &[(u32, &[u8])], frame: &[u8]) -> Result<usize> {
    let mut w = PacketWriter::new(out)?;
    for (ty, data) in ppis {
        w.add_ppi(*ty, data)?;
    }
    let off = w.data_start();
    let len = w.finish(frame.len())?;
    out[off..off + frame.len()].copy_from_slice(frame);
    Ok(len)
}

/// Incremental PACKET builder over a caller buffer: add PPIs, then write the frame at [`Self::data_start`] and
/// call [`Self::finish`] with its length (or call `finish` first; it only writes the header).
#[derive(Debug)]
pub struct PacketWriter<'b> {
    buf: &'b mut [u8],
    ppi_len: usize,
}

impl<'b> PacketWriter<'b> {
    pub fn new(buf: &'b mut [u8]) -> Result<Self> {
        room(WHAT, buf.len(), PACKET_HEADER_LEN)?;
        Ok(Self { buf, ppi_len: 0 })
    }

    /// Append a PPI entry (type including the internal bit); the payload is zero-padded to 4 bytes.
    pub fn add_ppi(&mut self, ppi_type: u32, data: &[u8]) -> Result<()> {
        let size = PPI_HEADER_LEN + data.len().next_multiple_of(4);
        let at = PACKET_HEADER_LEN + self.ppi_len;
        room("PPI", self.buf.len(), at + size)?;
        write_at(
            "PPI",
            self.buf,
            at,
            &PpiHeader {
                size: size as u32,
                ppi_type,
                ppi_offset: PPI_HEADER_LEN as u32,
            },
        )?;
        let d = at + PPI_HEADER_LEN;
        self.buf[d..at + size].fill(0);
        self.buf[d..d + data.len()].copy_from_slice(data);
        self.ppi_len += size;
        Ok(())
    }

    /// Append a PPI carrying one `u32` (16 bytes).
    pub fn add_ppi_u32(&mut self, ppi_type: u32, value: u32) -> Result<()> {
        self.add_ppi(ppi_type, &value.to_le_bytes())
    }

    /// Absolute offset where the frame goes (44 + PPI bytes).
    pub fn data_start(&self) -> usize {
        PACKET_HEADER_LEN + self.ppi_len
    }

    /// Mutable view of the frame area of `data_len` bytes.
    pub fn data_mut(&mut self, data_len: usize) -> Result<&mut [u8]> {
        let s = self.data_start();
        room(WHAT, self.buf.len(), s + data_len)?;
        Ok(&mut self.buf[s..s + data_len])
    }

    /// Write the header for a frame of `data_len` bytes; returns msg_len.
    pub fn finish(self, data_len: usize) -> Result<usize> {
        let len = self.data_start() + data_len;
        room(WHAT, self.buf.len(), len)?;
        write_header(self.buf, self.ppi_len, data_len)?;
        Ok(len)
    }

    /// Write the header for a `data_len`-byte frame that the caller places right after the PPIs somewhere else
    /// (e.g. gathered straight into a send section), so the buffer only needs room for header + PPIs; returns
    /// msg_len.
    pub fn finish_header(self, data_len: usize) -> Result<usize> {
        let len = self
            .data_start()
            .checked_add(data_len)
            .filter(|l| u32::try_from(*l).is_ok())
            .ok_or(ProtoError::Invalid {
                what: WHAT,
                field: "msg_len",
                offset: 4,
                value: data_len as u64,
                reason: "exceeds u32",
            })?;
        write_header(self.buf, self.ppi_len, data_len)?;
        Ok(len)
    }
}

/// One PPI entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ppi<'a> {
    /// Full type (bit 31 = internal).
    pub ppi_type: u32,
    /// Payload (from `ppi_offset` to the end of the entry).
    pub data: &'a [u8],
}

impl Ppi<'_> {
    pub fn is_internal(&self) -> bool {
        self.ppi_type & INTERNAL != 0
    }
    /// Type without the internal bit.
    pub fn kind(&self) -> u32 {
        self.ppi_type & !INTERNAL
    }
}

/// Bounded walk over a PPI region; yields an error once and then stops.
#[derive(Debug, Clone)]
pub struct PpiIter<'a> {
    region: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> PpiIter<'a> {
    pub fn new(region: &'a [u8]) -> Self {
        Self {
            region,
            pos: 0,
            done: false,
        }
    }

    fn fail(
        &mut self,
        field: &'static str,
        at: usize,
        value: u32,
        reason: &'static str,
    ) -> Option<Result<Ppi<'a>>> {
        self.done = true;
        Some(Err(ProtoError::Invalid {
            what: "PPI",
            field,
            offset: at,
            value: value.into(),
            reason,
        }))
    }
}

impl<'a> Iterator for PpiIter<'a> {
    type Item = Result<Ppi<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.region.len() {
            return None;
        }
        let rest = &self.region[self.pos..];
        let at = self.pos;
        if rest.len() < PPI_HEADER_LEN {
            self.done = true;
            return Some(Err(ProtoError::Truncated {
                what: "PPI",
                needed: PPI_HEADER_LEN,
                have: rest.len(),
            }));
        }
        let size = u32_at(rest, 0);
        let ty = u32_at(rest, 4);
        let off = u32_at(rest, 8);
        if (size as usize) < PPI_HEADER_LEN || !size.is_multiple_of(4) {
            return self.fail("size", at, size, "must be >= 12 and 4-aligned");
        }
        if size as usize > rest.len() {
            return self.fail("size", at, size, "entry runs past the PPI region");
        }
        if (off as usize) < PPI_HEADER_LEN || off > size {
            return self.fail(
                "ppi_offset",
                at + 8,
                off,
                "payload offset outside the entry",
            );
        }
        self.pos += size as usize;
        Some(Ok(Ppi {
            ppi_type: ty,
            data: &rest[off as usize..size as usize],
        }))
    }
}

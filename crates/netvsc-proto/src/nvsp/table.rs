//! SEND_INDIRECTION_TABLE (134): the host's send indirection table (hash bucket → channel index). The table sits
//! at `offset` from the start of the message; Windows hosts up to v6 may report a wrong offset, in which case
//! Linux uses 40 (4-byte header + 36-byte v6 union) when the message is long enough. Everything is bounded.

use super::{SEND_TABLE_SIZE, SendIndirectionTable, VERSION_6, msg_type};
use crate::error::{ProtoError, Result, need, room};
use crate::wire::{read_prefix, u32_at, write_at};

/// The parsed send indirection table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndirectionTable {
    /// Channel index per hash bucket.
    pub entries: [u32; SEND_TABLE_SIZE],
    /// The offset the table was read from (after the version fix-up).
    pub offset: u32,
}

impl IndirectionTable {
    /// Parse the table from a whole SEND_INDIRECTION_TABLE message. `nvsp_version` is the negotiated version
    /// (≤ v6 enables the offset fix-up). `count` must equal 16 (like Linux).
    pub fn parse(msg: &[u8], nvsp_version: u32) -> Result<Self> {
        const WHAT: &str = "SEND_INDIRECTION_TABLE";
        need(WHAT, msg.len(), 12)?;
        let ty = u32_at(msg, 0);
        if ty != msg_type::SEND_INDIRECTION_TABLE {
            return Err(ProtoError::Invalid {
                what: WHAT,
                field: "msg_type",
                offset: 0,
                value: ty.into(),
                reason: "not 134",
            });
        }
        let hdr: SendIndirectionTable = read_prefix(WHAT, &msg[4..], 8)?;
        if hdr.count as usize != SEND_TABLE_SIZE {
            return Err(ProtoError::Invalid {
                what: WHAT,
                field: "count",
                offset: 4,
                value: hdr.count.into(),
                reason: "must be 16",
            });
        }
        let table_bytes = SEND_TABLE_SIZE * 4;
        let mut offset = hdr.offset as usize;
        if nvsp_version <= VERSION_6 && msg.len() >= 40 + table_bytes {
            offset = 40;
        }
        if offset < 12 || offset > msg.len().saturating_sub(table_bytes) {
            return Err(ProtoError::OutOfRange {
                what: WHAT,
                field: "offset",
                offset: 8,
                value: hdr.offset.into(),
                limit: msg.len() as u64,
            });
        }
        let mut entries = [0u32; SEND_TABLE_SIZE];
        for (i, e) in entries.iter_mut().enumerate() {
            *e = u32_at(msg, offset + 4 * i);
        }
        Ok(Self {
            entries,
            offset: offset as u32,
        })
    }
}

/// Build a SEND_INDIRECTION_TABLE message with the table at `offset` (12 = right after the fields, as OpenVMM
/// sends; 40 = after the 36-byte v6 union, as Windows). Returns the message length (offset + 64).
pub fn build_indirection_table(
    out: &mut [u8],
    entries: &[u32; SEND_TABLE_SIZE],
    offset: u32,
) -> Result<usize> {
    const WHAT: &str = "SEND_INDIRECTION_TABLE";
    if offset < 12 || !offset.is_multiple_of(4) {
        return Err(ProtoError::Invalid {
            what: WHAT,
            field: "offset",
            offset: 8,
            value: offset.into(),
            reason: "must be >= 12 and 4-aligned",
        });
    }
    let len = offset as usize + SEND_TABLE_SIZE * 4;
    room(WHAT, out.len(), len)?;
    out[..len].fill(0);
    write_at(WHAT, out, 0, &msg_type::SEND_INDIRECTION_TABLE)?;
    write_at(
        WHAT,
        out,
        4,
        &SendIndirectionTable {
            count: SEND_TABLE_SIZE as u32,
            offset,
        },
    )?;
    write_at(WHAT, out, offset as usize, entries)?;
    Ok(len)
}

//! Kernel-shared ring memory and the validation of every value read from it.
//!
//! [`Mem`] is a bounds-checked view of a mapping the kernel also writes (a TPACKET_V3 rx ring, an AF_XDP ring or
//! UMEM). Status words and ring indexes are read with acquire loads and written with release stores; every
//! index, length, offset and address read from the kernel goes through a `check_*`/`parse_*` function here
//! before it is used, and a bad value is an error ([`RingError`]), never a panic or an out-of-bounds access.
//! The functions are public so tests can run them on synthetic memory.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A value read from a ring was out of bounds.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("bad ring value: {what} = {value} (limit {limit})")]
pub struct RingError {
    /// Which field.
    pub what: &'static str,
    /// The value read.
    pub value: u64,
    /// The bound it broke.
    pub limit: u64,
}

fn bad(what: &'static str, value: u64, limit: u64) -> RingError {
    RingError { what, value, limit }
}

/// A bounds-checked window over memory shared with the kernel.
#[derive(Clone, Copy, Debug)]
pub struct Mem {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: Mem is an address range; all access goes through atomics or through slices handed out only while the
// ring protocol gives us ownership of that range.
unsafe impl Send for Mem {}

impl Mem {
    /// # Safety
    /// `ptr..ptr+len` must stay mapped and valid for reads and writes while this Mem (or a copy) is used, and
    /// aligned to 8 bytes.
    pub unsafe fn new(ptr: *mut u8, len: usize) -> Mem {
        Mem { ptr, len }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Base address (address arithmetic only).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    fn check(
        &self,
        off: usize,
        n: usize,
        align: usize,
        what: &'static str,
    ) -> Result<(), RingError> {
        if !off.is_multiple_of(align) || off.checked_add(n).is_none_or(|e| e > self.len) {
            return Err(bad(what, off as u64, self.len as u64));
        }
        Ok(())
    }

    fn atomic_u32(&self, off: usize) -> Result<&AtomicU32, RingError> {
        self.check(off, 4, 4, "u32 offset")?;
        // SAFETY: in bounds and 4-aligned (checked; base is 8-aligned); AtomicU32 has u32's layout and the
        // kernel accesses the word atomically too.
        Ok(unsafe { AtomicU32::from_ptr(self.ptr.add(off).cast()) })
    }

    /// Acquire load of a u32 the kernel publishes (status word, ring index).
    pub fn load_u32_acquire(&self, off: usize) -> Result<u32, RingError> {
        Ok(self.atomic_u32(off)?.load(Ordering::Acquire))
    }

    /// Relaxed load of a u32 inside a region we own (a descriptor field after the acquire above).
    pub fn load_u32(&self, off: usize) -> Result<u32, RingError> {
        Ok(self.atomic_u32(off)?.load(Ordering::Relaxed))
    }

    /// Release store of a u32 (handing a block back, publishing a ring index).
    pub fn store_u32_release(&self, off: usize, v: u32) -> Result<(), RingError> {
        self.atomic_u32(off)?.store(v, Ordering::Release);
        Ok(())
    }

    /// Relaxed u16 load (two bytes of an owned descriptor).
    pub fn load_u16(&self, off: usize) -> Result<u16, RingError> {
        self.check(off, 2, 2, "u16 offset")?;
        // SAFETY: in bounds and aligned; a volatile read of memory we own at this point of the protocol.
        Ok(unsafe { std::ptr::read_volatile(self.ptr.add(off).cast::<u16>()) })
    }

    /// Relaxed u64 load (an owned descriptor field).
    pub fn load_u64(&self, off: usize) -> Result<u64, RingError> {
        self.check(off, 8, 8, "u64 offset")?;
        // SAFETY: in bounds, 8-aligned; AtomicU64 has u64's layout.
        Ok(unsafe { AtomicU64::from_ptr(self.ptr.add(off).cast()) }.load(Ordering::Relaxed))
    }

    /// Relaxed u64 store into an owned descriptor.
    pub fn store_u64(&self, off: usize, v: u64) -> Result<(), RingError> {
        self.check(off, 8, 8, "u64 offset")?;
        // SAFETY: as load_u64.
        unsafe { AtomicU64::from_ptr(self.ptr.add(off).cast()) }.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// Relaxed u32 store into an owned descriptor.
    pub fn store_u32(&self, off: usize, v: u32) -> Result<(), RingError> {
        self.atomic_u32(off)?.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// The bytes `off..off+n` as a slice.
    ///
    /// # Safety
    /// The caller must own that range under the ring protocol (the kernel does not write it) for the slice's
    /// lifetime.
    pub unsafe fn slice<'a>(&self, off: usize, n: usize) -> Result<&'a [u8], RingError> {
        self.check(off, n, 1, "slice offset")?;
        // SAFETY: in bounds (checked); ownership per the caller's contract.
        Ok(unsafe { std::slice::from_raw_parts(self.ptr.add(off), n) })
    }

    /// The bytes `off..off+n` as a mutable slice.
    ///
    /// # Safety
    /// As [`Mem::slice`], and no other slice of the range may be alive.
    pub unsafe fn slice_mut<'a>(&self, off: usize, n: usize) -> Result<&'a mut [u8], RingError> {
        self.check(off, n, 1, "slice offset")?;
        // SAFETY: in bounds (checked); exclusivity per the caller's contract.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr.add(off), n) })
    }
}

// ---- TPACKET_V3 -------------------------------------------------------------------------------------------------

/// `tpacket_block_desc` field offsets.
pub const TP_BLK_STATUS: usize = 8;
const TP_BLK_NUM_PKTS: usize = 12;
const TP_BLK_FIRST: usize = 16;
const TP_BLK_LEN: usize = 20;
/// Size of `tpacket3_hdr`.
pub const TP3_HDR_LEN: usize = 48;
/// Block owned by user space.
pub const TP_STATUS_USER: u32 = 1;

/// A block header, validated against the block size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHdr {
    /// Packets in the block.
    pub num_pkts: u32,
    /// Offset of the first packet from the block start.
    pub first: u32,
}

/// Reads and validates a retired block's header (call after an acquire load saw TP_STATUS_USER).
pub fn parse_block(mem: &Mem, block_off: usize, block_size: usize) -> Result<BlockHdr, RingError> {
    let num_pkts = mem.load_u32(block_off + TP_BLK_NUM_PKTS)?;
    let first = mem.load_u32(block_off + TP_BLK_FIRST)?;
    let blk_len = mem.load_u32(block_off + TP_BLK_LEN)?;
    if blk_len as usize > block_size {
        return Err(bad("block length", blk_len as u64, block_size as u64));
    }
    if num_pkts > 0
        && (first as usize)
            .checked_add(TP3_HDR_LEN)
            .is_none_or(|e| e > block_size)
    {
        return Err(bad("first packet offset", first as u64, block_size as u64));
    }
    // Each packet takes at least a header.
    if num_pkts as usize > block_size / TP3_HDR_LEN {
        return Err(bad(
            "packets in block",
            num_pkts as u64,
            (block_size / TP3_HDR_LEN) as u64,
        ));
    }
    Ok(BlockHdr { num_pkts, first })
}

/// One packet of a TPACKET_V3 block, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tp3Pkt {
    /// Offset of the frame (MAC header) from the block start.
    pub data: u32,
    /// Bytes captured.
    pub snaplen: u32,
    /// Bytes on the wire.
    pub len: u32,
    /// tp_status.
    pub status: u32,
    /// tp_vlan_tci.
    pub vlan_tci: u32,
    /// Offset of the next packet from the block start (0 for none).
    pub next: u32,
}

/// Reads and validates the packet header at `pkt_off` (from the block start).
pub fn parse_tp3(
    mem: &Mem,
    block_off: usize,
    block_size: usize,
    pkt_off: usize,
) -> Result<Tp3Pkt, RingError> {
    if pkt_off
        .checked_add(TP3_HDR_LEN)
        .is_none_or(|e| e > block_size)
        || !pkt_off.is_multiple_of(4)
    {
        return Err(bad("packet offset", pkt_off as u64, block_size as u64));
    }
    let h = block_off + pkt_off;
    let next_off = mem.load_u32(h)?;
    let snaplen = mem.load_u32(h + 12)?;
    let len = mem.load_u32(h + 16)?;
    let status = mem.load_u32(h + 20)?;
    let mac = mem.load_u16(h + 24)? as usize;
    let vlan_tci = mem.load_u32(h + 32)?;
    let data = pkt_off + mac;
    if mac < TP3_HDR_LEN
        || data
            .checked_add(snaplen as usize)
            .is_none_or(|e| e > block_size)
    {
        return Err(bad(
            "packet data end",
            (data + snaplen as usize) as u64,
            block_size as u64,
        ));
    }
    let next = if next_off == 0 {
        0
    } else {
        let n = pkt_off + next_off as usize;
        if n <= pkt_off || n + TP3_HDR_LEN > block_size {
            return Err(bad("next packet offset", n as u64, block_size as u64));
        }
        n as u32
    };
    Ok(Tp3Pkt {
        data: data as u32,
        snaplen,
        len,
        status,
        vlan_tci,
        next,
    })
}

// ---- AF_XDP -----------------------------------------------------------------------------------------------------

/// Entries available between a producer and a consumer index of a ring of `size` entries; more than `size` is a
/// corrupt index.
pub fn ring_avail(prod: u32, cons: u32, size: u32) -> Result<u32, RingError> {
    let n = prod.wrapping_sub(cons);
    if n > size {
        return Err(bad("ring entries", n as u64, size as u64));
    }
    Ok(n)
}

/// Validates an rx/tx descriptor (or a completion address) against the UMEM: the frame must lie inside one
/// chunk of `frame_size` bytes. Returns the byte offset into the UMEM.
pub fn check_umem_desc(
    addr: u64,
    len: u32,
    umem_len: usize,
    frame_size: u32,
) -> Result<usize, RingError> {
    let fs = frame_size as u64;
    if addr >= umem_len as u64 {
        return Err(bad("descriptor address", addr, umem_len as u64));
    }
    let chunk_end = (addr / fs + 1) * fs;
    if addr + len as u64 > chunk_end || chunk_end > umem_len as u64 {
        return Err(bad(
            "descriptor end",
            addr + len as u64,
            chunk_end.min(umem_len as u64),
        ));
    }
    Ok(addr as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(buf: &mut [u64]) -> Mem {
        // SAFETY: the Vec outlives every use in the test and is 8-aligned.
        unsafe { Mem::new(buf.as_mut_ptr().cast(), buf.len() * 8) }
    }

    fn put32(m: &Mem, off: usize, v: u32) {
        m.store_u32(off, v).unwrap();
    }

    #[test]
    fn mem_accessors_refuse_out_of_bounds() {
        let mut b = vec![0u64; 4];
        let m = mem(&mut b);
        assert!(m.load_u32_acquire(28).is_ok());
        assert!(m.load_u32_acquire(32).is_err());
        assert!(m.load_u32(30).is_err(), "misaligned");
        assert!(m.load_u64(32).is_err());
        assert!(m.load_u16(31).is_err());
        // SAFETY: synthetic memory, no other user.
        unsafe {
            assert!(m.slice(0, 32).is_ok());
            assert!(m.slice(1, 32).is_err());
            assert!(m.slice(usize::MAX, 2).is_err());
        }
    }

    #[test]
    fn tpacket_block_validation() {
        let bs = 4096;
        let mut b = vec![0u64; 2 * bs / 8];
        let m = mem(&mut b);
        let blk = bs; // second block
        put32(&m, blk + TP_BLK_NUM_PKTS, 1);
        put32(&m, blk + TP_BLK_FIRST, 48);
        put32(&m, blk + TP_BLK_LEN, 200);
        assert_eq!(
            parse_block(&m, blk, bs).unwrap(),
            BlockHdr {
                num_pkts: 1,
                first: 48
            }
        );
        put32(&m, blk + TP_BLK_LEN, bs as u32 + 1);
        assert_eq!(parse_block(&m, blk, bs).unwrap_err().what, "block length");
        put32(&m, blk + TP_BLK_LEN, 200);
        put32(&m, blk + TP_BLK_FIRST, bs as u32 - 8);
        assert_eq!(
            parse_block(&m, blk, bs).unwrap_err().what,
            "first packet offset"
        );
        put32(&m, blk + TP_BLK_FIRST, 48);
        put32(&m, blk + TP_BLK_NUM_PKTS, 1_000_000);
        assert_eq!(
            parse_block(&m, blk, bs).unwrap_err().what,
            "packets in block"
        );
        // A block at the end of the mapping whose size claims more than is mapped: the accessors refuse.
        assert!(parse_block(&m, 2 * bs, bs).is_err());
    }

    #[test]
    fn tpacket_packet_validation() {
        let bs = 4096;
        let mut b = vec![0u64; bs / 8];
        let m = mem(&mut b);
        let p = 48;
        // next 0, snaplen 100, len 100, status 0, mac 66
        put32(&m, p + 12, 100);
        put32(&m, p + 16, 100);
        m.store_u32(p + 24, 66).unwrap();
        let k = parse_tp3(&m, 0, bs, p).unwrap();
        assert_eq!((k.data, k.snaplen, k.next), (48 + 66, 100, 0));
        put32(&m, p + 12, bs as u32);
        assert_eq!(parse_tp3(&m, 0, bs, p).unwrap_err().what, "packet data end");
        put32(&m, p + 12, 100);
        put32(&m, p, bs as u32);
        assert_eq!(
            parse_tp3(&m, 0, bs, p).unwrap_err().what,
            "next packet offset"
        );
        put32(&m, p, 0);
        m.store_u32(p + 24, 4).unwrap(); // mac inside the header
        assert!(parse_tp3(&m, 0, bs, p).is_err());
        assert!(parse_tp3(&m, 0, bs, bs - 16).is_err());
        assert!(parse_tp3(&m, 0, bs, 50).is_err(), "misaligned");
    }

    #[test]
    fn xdp_descriptor_validation() {
        let umem = 16 * 4096;
        assert_eq!(
            check_umem_desc(4096 + 256, 1514, umem, 4096).unwrap(),
            4096 + 256
        );
        assert_eq!(
            check_umem_desc(umem as u64, 60, umem, 4096)
                .unwrap_err()
                .what,
            "descriptor address"
        );
        assert_eq!(
            check_umem_desc(u64::MAX - 10, 60, umem, 4096)
                .unwrap_err()
                .what,
            "descriptor address"
        );
        assert_eq!(
            check_umem_desc(4096 + 4000, 200, umem, 4096)
                .unwrap_err()
                .what,
            "descriptor end"
        );
        assert_eq!(
            check_umem_desc(0, u32::MAX, umem, 4096).unwrap_err().what,
            "descriptor end"
        );
        assert_eq!(ring_avail(5, 3, 8).unwrap(), 2);
        assert_eq!(ring_avail(2, u32::MAX - 1, 8).unwrap(), 4, "wraps");
        assert_eq!(ring_avail(3, 5, 8).unwrap_err().what, "ring entries");
        assert_eq!(ring_avail(100, 0, 64).unwrap_err().what, "ring entries");
    }
}

//! The bpf(2) calls the AF_XDP path needs: an XSKMAP, a five-instruction XDP program that redirects every frame
//! to the socket of its rx queue, and a bpf_link attaching it (so the kernel detaches it when the link fd closes,
//! including when the process dies).
//!
//! The program is hand-assembled rather than built with aya/libxdp: it is
//! `return bpf_redirect_map(&xskmap, ctx->rx_queue_index, XDP_PASS);` and nothing else, so it needs no BPF
//! toolchain, no object file and no C library, and loads on any kernel with bpf_link XDP support (>= 5.9).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const XDP_PASS: i32 = 2;
/// `link_create.flags` for the XDP attach mode.
pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `union bpf_attr` is at most this large for the commands used here; unused tail bytes stay zero.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<i64> {
    // SAFETY: attr is a zero-padded bpf_attr of the size we pass; pointers inside it refer to memory the caller
    // keeps alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr,
            size_of::<Attr>() as u32,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn bpf_fd(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)? as RawFd;
    // SAFETY: the bpf command returned a new fd that we alone own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An XSKMAP with `entries` slots (key = rx queue index, value = AF_XDP socket fd).
pub(crate) fn xskmap_create(entries: u32) -> std::io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, BPF_MAP_TYPE_XSKMAP)
        .u32(4, 4)
        .u32(8, 4)
        .u32(12, entries);
    a.0[28..36].copy_from_slice(b"vf_xsks\0");
    bpf_fd(BPF_MAP_CREATE, &mut a)
}

/// xskmap[queue] = socket.
pub(crate) fn xskmap_set(map: &OwnedFd, queue: u32, sock: RawFd) -> std::io::Result<()> {
    let key = queue;
    let val = sock as u32;
    let mut a = Attr::new();
    a.u32(0, map.as_raw_fd() as u32)
        .u64(8, &key as *const u32 as u64)
        .u64(16, &val as *const u32 as u64)
        .u64(24, 0);
    bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (src << 4) | (dst & 0xf);
    b[2..4].copy_from_slice(&off.to_ne_bytes());
    b[4..8].copy_from_slice(&imm.to_ne_bytes());
    u64::from_ne_bytes(b)
}

/// The program's instructions, with `map_fd` in the ld_imm64.
pub(crate) fn program(map_fd: RawFd) -> [u64; 6] {
    [
        // r2 = *(u32 *)(r1 + offsetof(struct xdp_md, rx_queue_index))
        insn(0x61, 2, 1, 16, 0),
        // r1 = map (ld_imm64, BPF_PSEUDO_MAP_FD), two slots
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        // r3 = XDP_PASS (the action when the slot is empty)
        insn(0xb7, 3, 0, 0, XDP_PASS),
        // r0 = bpf_redirect_map(r1, r2, r3)
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        // return r0
        insn(0x95, 0, 0, 0, 0),
    ]
}

/// Loads the redirect program bound to `map`.
pub(crate) fn prog_load(map: &OwnedFd) -> std::io::Result<OwnedFd> {
    let insns = program(map.as_raw_fd());
    let license = b"Dual MIT/GPL\0";
    let mut a = Attr::new();
    a.u32(0, BPF_PROG_TYPE_XDP)
        .u32(4, insns.len() as u32)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .u32(68, BPF_XDP); // expected_attach_type (after prog_name[16] at 48 and prog_ifindex at 64)
    a.0[48..55].copy_from_slice(b"vf_xsk\0");
    bpf_fd(BPF_PROG_LOAD, &mut a)
}

/// Attaches `prog` to `ifindex` with a bpf_link (`flags` = XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE).
pub(crate) fn link_create(prog: &OwnedFd, ifindex: u32, flags: u32) -> std::io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, prog.as_raw_fd() as u32)
        .u32(4, ifindex)
        .u32(8, BPF_XDP)
        .u32(12, flags);
    bpf_fd(BPF_LINK_CREATE, &mut a)
}

#[cfg(test)]
mod tests {
    #[test]
    fn program_encoding() {
        let p = super::program(7);
        assert_eq!(p[0].to_ne_bytes(), [0x61, 0x12, 16, 0, 0, 0, 0, 0]);
        assert_eq!(p[1].to_ne_bytes(), [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(p[3].to_ne_bytes(), [0xb7, 0x03, 0, 0, 2, 0, 0, 0]);
        assert_eq!(p[4].to_ne_bytes(), [0x85, 0, 0, 0, 51, 0, 0, 0]);
        assert_eq!(p[5].to_ne_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }
}

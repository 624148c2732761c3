//! NDIS packet-filter bits (OID_GEN_CURRENT_PACKET_FILTER payload, a `u32`).

pub const DIRECTED: u32 = 0x0000_0001;
pub const MULTICAST: u32 = 0x0000_0002;
pub const ALL_MULTICAST: u32 = 0x0000_0004;
pub const BROADCAST: u32 = 0x0000_0008;
pub const SOURCE_ROUTING: u32 = 0x0000_0010;
pub const PROMISCUOUS: u32 = 0x0000_0020;
pub const SMT: u32 = 0x0000_0040;
pub const ALL_LOCAL: u32 = 0x0000_0080;
pub const GROUP: u32 = 0x0000_0100;
pub const ALL_FUNCTIONAL: u32 = 0x0000_0200;
pub const FUNCTIONAL: u32 = 0x0000_0400;
pub const MAC_FRAME: u32 = 0x0000_0800;

/// What Linux sets when the interface opens: directed | all-multicast | broadcast (0x0D).
pub const LINUX_OPEN: u32 = DIRECTED | ALL_MULTICAST | BROADCAST;
/// OpenVMM's default saved filter.
pub const HOST_DEFAULT: u32 = DIRECTED | MULTICAST | BROADCAST;

/// Whether a frame with destination `dst` passes `filter` (host-side decision; no multicast list, so any
/// multicast passes with MULTICAST or ALL_MULTICAST, as on Hyper-V).
pub fn accepts(filter: u32, dst: &[u8; 6], own_mac: &[u8; 6]) -> bool {
    if filter & PROMISCUOUS != 0 {
        return true;
    }
    if dst == &[0xFF; 6] {
        return filter & BROADCAST != 0;
    }
    if dst[0] & 1 != 0 {
        return filter & (MULTICAST | ALL_MULTICAST) != 0;
    }
    filter & DIRECTED != 0 && dst == own_mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_open_value() {
        assert_eq!(LINUX_OPEN, 0x0D);
    }

    #[test]
    fn accepts_by_class() {
        let me = [0, 0x15, 0x5d, 1, 2, 3];
        let other = [0, 0x15, 0x5d, 9, 9, 9];
        let mc = [0x01, 0, 0x5e, 0, 0, 1];
        assert!(accepts(DIRECTED, &me, &me));
        assert!(!accepts(DIRECTED, &other, &me));
        assert!(!accepts(DIRECTED, &[0xFF; 6], &me));
        assert!(accepts(BROADCAST, &[0xFF; 6], &me));
        assert!(accepts(ALL_MULTICAST, &mc, &me));
        assert!(!accepts(DIRECTED | BROADCAST, &mc, &me));
        assert!(accepts(PROMISCUOUS, &other, &me));
        assert!(!accepts(0, &me, &me));
    }
}

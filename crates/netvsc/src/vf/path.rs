//! The burst side of VF failover. A queue pair's [`Lane`] sits in its `QueueCore`, behind the mutex the
//! burst already takes with `try_lock`: the manager installs or removes it under that lock, so a burst pays
//! one branch (`core.vf.is_some()`) and no extra atomic when nothing changes.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use vf_netdev::{Gso, GsoKind, VfQueueStats, VfRx, VfTx};

use super::VfReason;
use super::backend::{BackendError, QueueOps};
use super::manager::Cmd;
use crate::queue::QueueCore;
use crate::rx::{Csum, RxMeta, RxPacket};
use crate::tx::{L4Proto, TxOffload, TxPacket};

/// Frames mapped per VF tx call.
const TX_CHUNK: usize = 32;

/// A queue pair's VF queue.
pub(crate) struct Lane {
    q: Box<dyn QueueOps>,
    stats: Arc<VfQueueStats>,
    /// The host uses the VF data path: transmit through it.
    pub tx: bool,
    /// The queue failed; the manager has been told and will remove it.
    dead: bool,
    /// Frames handed to the VF.
    submitted: u64,
    gso: bool,
}

impl Lane {
    pub fn new(q: Box<dyn QueueOps>) -> Lane {
        Lane {
            stats: q.stats(),
            gso: q.tx_supports_gso(),
            q,
            tx: false,
            dead: false,
            submitted: 0,
        }
    }

    /// Frames handed to the VF that it never reported as sent (lost with its rings).
    pub fn unaccounted(&self) -> u64 {
        let done = self.stats.tx_packets.load(Relaxed) + self.stats.tx_errors.load(Relaxed);
        self.submitted.saturating_sub(done)
    }
}

/// The lane failed in a burst: stop using it now, tell the manager (it switches the host to synthetic) why:
/// the netdev vanished, stopped running (its liveness probe sees that before netlink tells), or the queue broke.
fn fail(core: &mut QueueCore, lane: &mut Lane, e: &BackendError) {
    if lane.dead {
        return;
    }
    lane.dead = true;
    lane.tx = false;
    let why = if e.gone {
        VfReason::NetdevRemoved
    } else if e.stopped {
        VfReason::LinkDown
    } else {
        VfReason::QueueError
    };
    if let Some(tx) = core.shared.vf_cmd.get() {
        let _ = tx.send(Cmd::QueueDead(why));
    }
}

/// Fill `out` (the slots the synthetic burst left) from the VF; returns how many were filled.
pub(crate) fn rx_fill(core: &mut QueueCore, out: &mut [RxPacket]) -> usize {
    let Some(mut lane) = core.vf.take() else {
        return 0;
    };
    let mut n = 0;
    if !lane.dead && !out.is_empty() {
        let queue = core.id;
        let r = lane.q.rx_burst(out.len(), &mut |frame: &[u8], info: VfRx| {
            let Some(pkt) = out.get_mut(n) else { return };
            pkt.data.resize(frame.len(), 0);
            pkt.data.copy_from_slice(frame);
            pkt.view = None;
            pkt.meta = RxMeta {
                len: frame.len() as u32,
                vlan_tci: info.vlan_tci,
                l4_csum: if info.csum_ok {
                    Csum::Good
                } else {
                    Csum::Unknown
                },
                queue,
                ..RxMeta::default()
            };
            n += 1;
        });
        if let Err(e) = r {
            fail(core, &mut lane, &e);
        }
    }
    core.vf = Some(lane);
    n
}

/// Ones'-complement checksum of an IPv4 header is already right (then the VF path may skip it).
fn ipv4_header_ok(segs: &[&[u8]], at: usize, len: usize) -> bool {
    let mut head = [0u8; 60];
    if !(20..=60).contains(&len) || !gather(segs, at, &mut head[..len]) {
        return false;
    }
    let mut sum: u32 = 0;
    for c in head[..len].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// Copy `dst.len()` bytes at `at` of the frame made of `segs`.
fn gather(segs: &[&[u8]], mut at: usize, dst: &mut [u8]) -> bool {
    let mut done = 0;
    for s in segs {
        if at >= s.len() {
            at -= s.len();
            continue;
        }
        let k = (s.len() - at).min(dst.len() - done);
        dst[done..done + k].copy_from_slice(&s[at..at + k]);
        done += k;
        at = 0;
        if done == dst.len() {
            return true;
        }
    }
    done == dst.len()
}

/// The VF form of a frame, or `None` when it must go synthetic (VLAN insertion requested, TSO on a VF
/// without GSO, an IPv4 header checksum that is not already right).
pub(crate) fn map<'a>(p: &TxPacket<'a>, gso_ok: bool) -> Option<VfTx<'a>> {
    if p.meta.vlan_tci.is_some() {
        return None;
    }
    let (csum, gso) = match p.meta.offload {
        TxOffload::None => (None, None),
        TxOffload::Checksum {
            ipv6,
            ip_hdr,
            l4,
            l2_len,
            l3_len,
        } => {
            if ip_hdr && !ipv6 && !ipv4_header_ok(p.segs, usize::from(l2_len), usize::from(l3_len))
            {
                return None;
            }
            let start = l2_len + l3_len;
            let csum = match l4 {
                L4Proto::None => None,
                L4Proto::Tcp => Some((start, 16)),
                L4Proto::Udp => Some((start, 6)),
            };
            (csum, None)
        }
        TxOffload::Tso {
            ipv6,
            mss,
            l2_len,
            l3_len,
        } => {
            if !gso_ok || mss == 0 || mss > u32::from(u16::MAX) {
                return None;
            }
            let start = l2_len + l3_len;
            let mut off = [0u8; 1];
            if !gather(p.segs, usize::from(start) + 12, &mut off) {
                return None;
            }
            let thl = u16::from(off[0] >> 4) * 4;
            if thl < 20 {
                return None;
            }
            let kind = if ipv6 { GsoKind::Tcp6 } else { GsoKind::Tcp4 };
            (
                Some((start, 16)),
                Some(Gso {
                    kind,
                    mss: mss as u16,
                    hdr_len: start + thl,
                }),
            )
        }
    };
    Some(VfTx {
        segs: p.segs,
        csum,
        gso,
    })
}

/// Transmit while switched: runs of frames the VF can take go to the VF queue, the others to the synthetic
/// channel, in order. Stops at the first backpressure; returns how many were taken. A VF error fails over
/// at once (the frames it did not take go synthetic).
pub(crate) fn tx_burst(core: &mut QueueCore, pkts: &[TxPacket<'_>]) -> usize {
    let Some(mut lane) = core.vf.take() else {
        return crate::tx::tx_burst(core, pkts);
    };
    let mut taken = 0;
    let mut batch: [VfTx<'_>; TX_CHUNK] = std::array::from_fn(|_| VfTx {
        segs: &[],
        csum: None,
        gso: None,
    });
    'outer: while taken < pkts.len() {
        // A run for the VF.
        if lane.tx && !lane.dead {
            let mut k = 0;
            while k < TX_CHUNK
                && let Some(p) = pkts.get(taken + k)
                && let Some(t) = map(p, lane.gso)
            {
                batch[k] = t;
                k += 1;
            }
            if k > 0 {
                match lane.q.tx_burst(&batch[..k]) {
                    Ok(m) => {
                        taken += m;
                        lane.submitted += m as u64;
                        if m < k {
                            break 'outer;
                        }
                        continue;
                    }
                    Err(e) => fail(core, &mut lane, &e),
                }
            }
        }
        // A run for the synthetic channel: frames the VF cannot take (or all, once it failed).
        let end = if lane.tx && !lane.dead {
            let mut e = taken + 1;
            while e < pkts.len() && map(&pkts[e], lane.gso).is_none() {
                e += 1;
            }
            e
        } else {
            pkts.len()
        };
        let want = end - taken;
        let m = crate::tx::tx_burst(core, &pkts[taken..end]);
        taken += m;
        if m < want {
            break;
        }
    }
    if !lane.dead
        && let Err(e) = lane.q.poll_tx()
    {
        fail(core, &mut lane, &e);
    }
    core.vf = Some(lane);
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::TxMeta;

    fn frame(tcp: bool) -> Vec<u8> {
        let mut f = vec![0u8; 100];
        f[12] = 0x08;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&86u16.to_be_bytes());
        f[22] = 64;
        f[23] = if tcp { 6 } else { 17 };
        f[46] = 0x50;
        // IPv4 header checksum.
        let mut sum: u32 = 0;
        for c in f[14..34].chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        f
    }

    #[test]
    fn offloads_map_to_vf_requests() {
        let f = frame(true);
        let segs: [&[u8]; 2] = [&f[..20], &f[20..]];
        let mut p = TxPacket {
            segs: &segs,
            meta: TxMeta::default(),
        };
        let t = map(&p, false).unwrap();
        assert!(t.csum.is_none() && t.gso.is_none());
        p.meta.offload = TxOffload::Checksum {
            ipv6: false,
            ip_hdr: true,
            l4: L4Proto::Tcp,
            l2_len: 14,
            l3_len: 20,
        };
        assert_eq!(map(&p, false).unwrap().csum, Some((34, 16)));
        p.meta.offload = TxOffload::Checksum {
            ipv6: false,
            ip_hdr: false,
            l4: L4Proto::Udp,
            l2_len: 14,
            l3_len: 20,
        };
        assert_eq!(map(&p, false).unwrap().csum, Some((34, 6)));
        p.meta.offload = TxOffload::Tso {
            ipv6: false,
            mss: 1448,
            l2_len: 14,
            l3_len: 20,
        };
        assert!(map(&p, false).is_none(), "no gso on this VF: synthetic");
        let g = map(&p, true).unwrap().gso.unwrap();
        assert_eq!((g.mss, g.hdr_len), (1448, 54));
        assert!(matches!(g.kind, GsoKind::Tcp4));
        p.meta.vlan_tci = Some(5);
        assert!(map(&p, true).is_none(), "VLAN insertion: synthetic");
    }

    #[test]
    fn wrong_ipv4_header_checksum_goes_synthetic() {
        let mut f = frame(false);
        f[24] ^= 0xff;
        let segs: [&[u8]; 1] = [&f];
        let p = TxPacket {
            segs: &segs,
            meta: TxMeta {
                vlan_tci: None,
                offload: TxOffload::Checksum {
                    ipv6: false,
                    ip_hdr: true,
                    l4: L4Proto::Udp,
                    l2_len: 14,
                    l3_len: 20,
                },
            },
        };
        assert!(map(&p, true).is_none());
    }
}

//! Fault injection: a hostile or broken host on demand. Each [`FaultKind`] is one misbehaviour, injected on the
//! primary channel (queue 0) by [`Device::inject_fault`]; the values it uses (indices, offsets, transaction ids)
//! come from a seed, so a run reproduces. Some faults are one-shot writes into the host→guest ring or the receive
//! buffer; others are switches (`withhold-completions`, `withhold-subchannels`) that stay on until `clear`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use netvsc_proto::nvsp;
use serde::Serialize;
use vmbus_ring::{OutgoingKind, OutgoingPacket, TransferRange};

use super::rndis::{indicate_status, rndis_pkt_header};
use super::{Device, lock};
use crate::stats::add;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The host→guest write index with its upper half from another value (a torn 32-bit store).
    TornIndex,
    /// The host→guest write index past the end of the ring's data area.
    OversizedIndex,
    /// The host→guest write index not a multiple of 8.
    MisalignedIndex,
    /// A packet whose descriptor says len8 < offset8.
    Len8BelowOffset8,
    /// A transfer-page packet whose range lies outside the receive buffer.
    RangeOutsideRecvBuf,
    /// A completion repeating the transaction id the host completed last.
    DuplicateTid,
    /// A completion with a transaction id the guest never used.
    UnknownTid,
    /// Stop completing the guest's sends (a switch, until `clear`).
    WithholdCompletions,
    /// An RNDIS data message whose lengths claim more than its range holds.
    RndisLengthLie,
    /// An RNDIS data message whose PPI chain has a zero-size entry (a loop for a reader that trusts it).
    PpiLoop,
    /// An RNDIS data message whose PPI claims more bytes than the PPI area holds.
    PpiOverrun,
    /// Thousands of status indications, some malformed.
    StatusStorm,
    /// As many frames as the receive buffer and ring hold, at once.
    Flood,
    /// Withdraw the VF mid-traffic (SEND_VF_ASSOCIATION {0}; refused without a VF).
    RevokeVf,
    /// Answer subchannel requests with success but never offer the channels (a switch, until `clear`).
    WithholdSubchannels,
    /// A VF association note (allocated = 1, the VF's serial or 1) sent whatever the NVSP version, even below
    /// 4 where no host sends one.
    VfAssocEarly,
    /// Complete the guest's SWITCH_DATA_PATH requests with an error status and keep the data path where it is
    /// (a switch, until `clear`).
    RefuseSwitch,
    /// Turn the switches off again.
    Clear,
}

impl FaultKind {
    /// Every kind with its name (as `netvsc emulate --fault` and `netvsc ctl DIR fault` spell it).
    pub const ALL: [FaultKind; 18] = [
        FaultKind::TornIndex,
        FaultKind::OversizedIndex,
        FaultKind::MisalignedIndex,
        FaultKind::Len8BelowOffset8,
        FaultKind::RangeOutsideRecvBuf,
        FaultKind::DuplicateTid,
        FaultKind::UnknownTid,
        FaultKind::WithholdCompletions,
        FaultKind::RndisLengthLie,
        FaultKind::PpiLoop,
        FaultKind::PpiOverrun,
        FaultKind::StatusStorm,
        FaultKind::Flood,
        FaultKind::RevokeVf,
        FaultKind::WithholdSubchannels,
        FaultKind::VfAssocEarly,
        FaultKind::RefuseSwitch,
        FaultKind::Clear,
    ];

    /// The kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::TornIndex => "torn-index",
            FaultKind::OversizedIndex => "oversized-index",
            FaultKind::MisalignedIndex => "misaligned-index",
            FaultKind::Len8BelowOffset8 => "len8-below-offset8",
            FaultKind::RangeOutsideRecvBuf => "range-outside-recv-buf",
            FaultKind::DuplicateTid => "duplicate-tid",
            FaultKind::UnknownTid => "unknown-tid",
            FaultKind::WithholdCompletions => "withhold-completions",
            FaultKind::RndisLengthLie => "rndis-length-lie",
            FaultKind::PpiLoop => "ppi-loop",
            FaultKind::PpiOverrun => "ppi-overrun",
            FaultKind::StatusStorm => "status-storm",
            FaultKind::Flood => "flood",
            FaultKind::RevokeVf => "revoke-vf",
            FaultKind::WithholdSubchannels => "withhold-subchannels",
            FaultKind::VfAssocEarly => "vf-assoc-early",
            FaultKind::RefuseSwitch => "refuse-switch",
            FaultKind::Clear => "clear",
        }
    }

    /// Parse a name (see [`FaultKind::name`]).
    pub fn parse(s: &str) -> Result<FaultKind, String> {
        let s = s.trim();
        FaultKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                let shown: String = s.chars().take(64).collect();
                format!("unknown fault '{shown}' (one of: {})", names.join(", "))
            })
    }
}

/// What one injection did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultReport {
    pub kind: FaultKind,
    pub seed: u64,
    /// Packets or messages written to the guest (or frames for `flood`).
    pub written: u64,
    /// What the fault did, in words (the index written, the id used...).
    pub detail: String,
}

/// The switches and records faults need on the host's paths.
#[derive(Debug, Default)]
pub struct FaultState {
    /// Completions for the guest's sends are dropped (counted in `withheld`).
    pub(crate) withhold_completions: AtomicBool,
    pub withheld: AtomicU64,
    /// Subchannel requests are answered but no channel is offered.
    pub(crate) withhold_subchannels: AtomicBool,
    /// SWITCH_DATA_PATH is completed with FAILURE and not applied (counted in `switches_refused`).
    pub(crate) refuse_switch: AtomicBool,
    pub switches_refused: AtomicU64,
    /// The transaction id of the last completion the host sent on the primary channel.
    pub(crate) last_completion_tid: AtomicU64,
    /// Faults injected so far.
    pub(crate) injected: AtomicU64,
}

/// A small deterministic generator (splitmix64) for the values a fault uses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// How long an index fault holds the host→guest ring before the host may write (and so heal the index) again.
const INDEX_FAULT_HOLD_MS: u64 = 20;

const RNDIS_PACKET: u32 = 1;
/// RNDIS_PACKET_MSG header: type, length, then nine u32 (data offset/len, oob offset/len/count, ppi offset/len,
/// vc handle, reserved); offsets count from byte 8.
const RNDIS_HEADER: usize = 44;

/// An RNDIS_PACKET_MSG carrying a 64-byte frame to `mac`, with `ppi` as its per-packet-info area, lengths as
/// given (the fault decides whether they tell the truth).
fn rndis_packet(frame: &[u8], ppi: &[u8], msg_len: u32, data_len: u32, ppi_len: u32) -> Vec<u8> {
    let mut m = vec![0u8; RNDIS_HEADER + ppi.len() + frame.len()];
    let put = |m: &mut [u8], at: usize, v: u32| m[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put(&mut m, 0, RNDIS_PACKET);
    put(&mut m, 4, msg_len);
    put(&mut m, 8, (RNDIS_HEADER - 8 + ppi.len()) as u32); // data offset
    put(&mut m, 12, data_len);
    put(
        &mut m,
        28,
        if ppi.is_empty() {
            0
        } else {
            (RNDIS_HEADER - 8) as u32
        },
    ); // ppi offset
    put(&mut m, 32, ppi_len);
    m[RNDIS_HEADER..RNDIS_HEADER + ppi.len()].copy_from_slice(ppi);
    m[RNDIS_HEADER + ppi.len()..].copy_from_slice(frame);
    m
}

fn frame(mac: [u8; 6], n: u64) -> [u8; 64] {
    let mut f = [0u8; 64];
    f[..6].copy_from_slice(&mac);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xfa]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f[14..22].copy_from_slice(&n.to_le_bytes());
    f
}

impl Device {
    /// The fault switches and records.
    pub fn faults(&self) -> &FaultState {
        &self.faults
    }

    /// Inject `kind` on the primary channel, its values drawn from `seed`.
    pub fn inject_fault(&self, kind: FaultKind, seed: u64) -> Result<FaultReport, String> {
        let mut rng = Rng(seed);
        let report = |written: u64, detail: String| FaultReport {
            kind,
            seed,
            written,
            detail,
        };
        let ch = self.channel(0).ok_or("the primary channel is not open")?;
        let r = match kind {
            FaultKind::TornIndex | FaultKind::OversizedIndex | FaultKind::MisalignedIndex => {
                let out = lock(&ch.out);
                let ring = out.writer.ring();
                let (old, size) = (ring.write_index(), ring.data_size());
                let bad = match kind {
                    FaultKind::TornIndex => {
                        // The old low half with the upper half of an unrelated value: out of range (or at
                        // least misaligned) for any ring under 4 GiB.
                        let hi = ((rng.next() as u32) | 0x8000) << 16;
                        (old & 0xffff) | hi
                    }
                    FaultKind::OversizedIndex => size + 8 * (1 + (rng.next() % 64) as u32),
                    _ => ((old + 4 + 8 * (rng.next() % 8) as u32) % size) | 4,
                };
                ring.set_write_index(bad);
                self.signal.signal(ch.relid);
                // The host's next commit would store its own index again: keep the ring (its lock) for a while,
                // as a host whose index stays wrong would, so that a guest polling at any usual pace sees it.
                std::thread::sleep(std::time::Duration::from_millis(INDEX_FAULT_HOLD_MS));
                drop(out);
                report(
                    0,
                    format!("host→guest write index {old} → {bad} (data size {size})"),
                )
            }
            FaultKind::Len8BelowOffset8 => {
                let mut out = lock(&ch.out);
                let start = out.writer.ring().write_index();
                let msg = [0u8; 40];
                let pkt = OutgoingPacket {
                    kind: OutgoingKind::InBand,
                    trans_id: rng.next(),
                    completion_requested: false,
                    payload: &[&msg],
                };
                out.writer.try_write(&pkt).map_err(|e| e.to_string())?;
                // Descriptor: type u16, offset8 u16, len8 u16, flags u16. offset8 = 4 (32 bytes), len8 = 2.
                let data = out.writer.ring().data().clone();
                let size = out.writer.ring().data_size() as usize;
                let patch = [4u16.to_le_bytes(), 2u16.to_le_bytes()].concat();
                for (i, b) in patch.iter().enumerate() {
                    data.write((start as usize + 2 + i) % size, &[*b])
                        .map_err(|e| e.to_string())?;
                }
                if out.writer.commit() {
                    self.signal.signal(ch.relid);
                }
                report(
                    1,
                    format!("in-band packet at {start} with offset8 4, len8 2"),
                )
            }
            FaultKind::RangeOutsideRecvBuf => {
                let info = lock(&self.state).recv.ok_or("no receive buffer yet")?;
                let len = self.mem.recv_buf.len() as u64;
                let off = len + (rng.next() % 4096);
                let ranges = [TransferRange {
                    byte_count: 1514,
                    byte_offset: off.min(u64::from(u32::MAX)) as u32,
                }];
                let version = lock(&self.state).version;
                let nv = rndis_pkt_header(nvsp::CHANNEL_TYPE_DATA);
                let pkt = OutgoingPacket {
                    kind: OutgoingKind::TransferPages {
                        set_id: info.id,
                        ranges: &ranges,
                    },
                    // No sub-allocation backs this id: the guest's completion of it is "unknown" to the host.
                    trans_id: u64::from(info.count) + (rng.next() % 1024),
                    completion_requested: true,
                    payload: &[&nv[..nvsp::host_reply_len(version)]],
                };
                let mut out = lock(&ch.out);
                ch.write_now(self, &mut out, &pkt)
                    .map_err(|e| e.to_string())?;
                report(1, format!("range at {off} (buffer is {len} bytes)"))
            }
            FaultKind::DuplicateTid | FaultKind::UnknownTid => {
                let tid = if kind == FaultKind::DuplicateTid {
                    self.faults.last_completion_tid.load(Ordering::Relaxed)
                } else {
                    // Far above anything the driver allocates.
                    (1 << 62) | (rng.next() >> 3)
                };
                let msg = [0u8; 16];
                ch.send_completion(self, tid, &msg);
                report(1, format!("completion with transaction id {tid:#x}"))
            }
            FaultKind::WithholdCompletions => {
                self.faults
                    .withhold_completions
                    .store(true, Ordering::Release);
                report(
                    0,
                    "completions of guest sends withheld until 'clear'".into(),
                )
            }
            FaultKind::WithholdSubchannels => {
                self.faults
                    .withhold_subchannels
                    .store(true, Ordering::Release);
                report(0, "subchannel offers withheld until 'clear'".into())
            }
            FaultKind::RefuseSwitch => {
                self.faults.refuse_switch.store(true, Ordering::Release);
                report(
                    0,
                    "SWITCH_DATA_PATH completed with FAILURE until 'clear'".into(),
                )
            }
            FaultKind::VfAssocEarly => {
                let serial = self.vf.as_ref().map_or(1, |v| v.serial);
                let version = lock(&self.state).version;
                let msg = nvsp::NvspMessage::VfAssociation(nvsp::VfAssociation {
                    allocated: 1,
                    serial,
                })
                .to_bytes();
                if !ch.send_inband(self, nvsp::TRANS_ID_VF_ASSOCIATION, true, &msg) {
                    return Err("the host→guest ring is full".into());
                }
                report(
                    1,
                    format!("VF association (serial {serial}) at NVSP {version:#x}"),
                )
            }
            FaultKind::Clear => {
                self.faults.refuse_switch.store(false, Ordering::Release);
                self.faults
                    .withhold_completions
                    .store(false, Ordering::Release);
                self.faults
                    .withhold_subchannels
                    .store(false, Ordering::Release);
                report(0, "switches off".into())
            }
            FaultKind::RndisLengthLie | FaultKind::PpiLoop | FaultKind::PpiOverrun => {
                let mac = lock(&self.state).current_mac;
                let f = frame(mac, rng.next());
                let flen = f.len() as u32;
                let msg = match kind {
                    FaultKind::RndisLengthLie => {
                        let real = (RNDIS_HEADER + f.len()) as u32;
                        // msg_len and data_len both claim more than was sent.
                        let lie = real + 8 * (1 + (rng.next() % 4096) as u32);
                        rndis_packet(&f, &[], lie, flen + lie, 0)
                    }
                    FaultKind::PpiLoop => {
                        // One PPI of size 0: a chain walker that advances by `size` never moves.
                        let mut ppi = [0u8; 12];
                        ppi[4..8].copy_from_slice(&(rng.next() as u32 & 0xff).to_le_bytes());
                        ppi[8..12].copy_from_slice(&12u32.to_le_bytes());
                        let len = (RNDIS_HEADER + ppi.len() + f.len()) as u32;
                        rndis_packet(&f, &ppi, len, flen, 12)
                    }
                    _ => {
                        // One PPI claiming far more than the 16-byte PPI area.
                        let mut ppi = [0u8; 16];
                        let claim = 16 + 8 * (1 + (rng.next() % 512) as u32);
                        ppi[0..4].copy_from_slice(&claim.to_le_bytes());
                        ppi[8..12].copy_from_slice(&12u32.to_le_bytes());
                        let len = (RNDIS_HEADER + ppi.len() + f.len()) as u32;
                        rndis_packet(&f, &ppi, len, flen, 16)
                    }
                };
                let sent = self.send_data_rndis(&msg)?;
                report(u64::from(sent), format!("{}-byte RNDIS packet", msg.len()))
            }
            FaultKind::StatusStorm => {
                let n = 2000 + rng.next() % 2000;
                for i in 0..n {
                    let m = match rng.next() % 4 {
                        // Media connect / disconnect, alternating.
                        0 | 1 => indicate_status(
                            if i % 2 == 0 { 0x4001_000b } else { 0x4001_000c },
                            None,
                        ),
                        // Link speed change with a random value.
                        2 => indicate_status(0x4001_0013, Some(rng.next() as u32)),
                        // Truncated: the status buffer length claims more than follows.
                        _ => {
                            let mut m = indicate_status(0x4001_0013, Some(0));
                            let at = 16.min(m.len() - 4);
                            m[at..at + 4].copy_from_slice(&4096u32.to_le_bytes());
                            m
                        }
                    };
                    self.queue_control(m);
                    if i % 64 == 63 {
                        super::rndis::flush_control(self);
                    }
                }
                report(n, format!("{n} status indications"))
            }
            FaultKind::Flood => {
                let mac = lock(&self.state).current_mac;
                let mut sent = 0u64;
                loop {
                    let f = frame(mac, rng.next());
                    let len = (RNDIS_HEADER + f.len()) as u32;
                    let msg = rndis_packet(&f, &[], len, f.len() as u32, 0);
                    if self.send_data_rndis(&msg)? == 0 {
                        break;
                    }
                    sent += 1;
                }
                report(
                    sent,
                    format!("{sent} frames until the pool or ring was full"),
                )
            }
            FaultKind::RevokeVf => {
                self.vf_revoke().map_err(|e| e.to_string())?;
                report(1, "VF withdrawn".into())
            }
        };
        add(&self.faults.injected, 1);
        Ok(r)
    }

    /// Put `msg` in a free data sub-allocation of queue 0 and send it as one transfer-page packet (data channel
    /// type); 1 if sent, 0 if the pool or the ring is full.
    fn send_data_rndis(&self, msg: &[u8]) -> Result<u32, String> {
        let ch = self.channel(0).ok_or("the primary channel is not open")?;
        let (info, version) = {
            let st = lock(&self.state);
            (st.recv.ok_or("no receive buffer yet")?, st.version)
        };
        if msg.len() > info.sub_alloc_size as usize {
            return Err(format!(
                "{}-byte message exceeds the {}-byte sub-allocation",
                msg.len(),
                info.sub_alloc_size
            ));
        }
        let Some(idx) = lock(&self.pool).alloc(1) else {
            return Ok(0);
        };
        let offset = idx * info.sub_alloc_size;
        if self.mem.recv_buf.write(offset as usize, msg).is_err() {
            lock(&self.pool).release(idx);
            return Err(format!("cannot write the receive buffer at {offset}"));
        }
        lock(&self.pool).link(&[idx]);
        let nv = rndis_pkt_header(nvsp::CHANNEL_TYPE_DATA);
        let ranges = [TransferRange {
            byte_count: msg.len() as u32,
            byte_offset: offset,
        }];
        let pkt = OutgoingPacket {
            kind: OutgoingKind::TransferPages {
                set_id: info.id,
                ranges: &ranges,
            },
            trans_id: u64::from(idx),
            completion_requested: true,
            payload: &[&nv[..nvsp::host_reply_len(version)]],
        };
        let mut out = lock(&ch.out);
        if ch.write_now(self, &mut out, &pkt).is_err() {
            drop(out);
            lock(&self.pool).release(idx);
            return Ok(0);
        }
        add(&ch.counters.h2g_frames, 1);
        add(&ch.counters.h2g_packets, 1);
        Ok(1)
    }
}

//! The control path on queue 0: NVSP requests (in-band, completion requested, matched by
//! transaction id) and RNDIS requests (written to a DMA page that never crosses 4 KiB, sent
//! GPA-direct with one range; the answer arrives in the receive buffer, matched by request id).
//! Waiting polls queue 0 while holding its lock, acknowledging rx data met on the way (DPDK does
//! the same); every wait has a deadline and a host that never answers gives `Error::Timeout`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use vmbus_ring::{GpaRange, OutgoingKind, OutgoingPacket, SharedMem};

use crate::channel::SendError;
use crate::error::{Error, Result, Step};
use crate::queue::{CTL_REPLY_MAX, Mode, QueueCore, TAG_CTL};
use netvsc_proto::nvsp::{self, NvspMessage, SendRndisPkt};
use netvsc_proto::rndis::{Halt, RndisMessage};
use netvsc_proto::{ProtoError, rndis};

/// Max transfer size we announce in RNDIS INITIALIZE (DPDK's value).
const RNDIS_MAX_XFER: u32 = 0x4000;

/// How often a waiter looks at the ring.
const POLL: Duration = Duration::from_micros(100);

/// A DMA page for RNDIS control requests.
pub(crate) struct CtlPage {
    pub mem: SharedMem,
    pub pfn: u64,
    pub _owner: Box<dyn std::any::Any + Send>,
}

/// Request/transaction id sources (never 0).
#[derive(Default)]
pub(crate) struct Ids {
    rid: AtomicU32,
    seq: AtomicU64,
}

impl Ids {
    pub fn next_rid(&self) -> u32 {
        loop {
            let r = self.rid.fetch_add(1, Relaxed).wrapping_add(1);
            if r != 0 {
                return r;
            }
        }
    }

    pub fn next_ctl(&self) -> u64 {
        TAG_CTL | (self.seq.fetch_add(1, Relaxed) & 0xffff_ffff)
    }
}

/// An RNDIS reply copied out of the receive buffer.
pub(crate) struct RndisReply {
    pub buf: [u8; CTL_REPLY_MAX],
    pub len: usize,
}

impl RndisReply {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The reply parsed (every offset bounded by the copied bytes).
    pub fn parse(&self) -> std::result::Result<RndisMessage<'_>, ProtoError> {
        RndisMessage::parse(self.bytes())
    }

    /// Status of a completion with a request id; `u32::MAX` when the reply is not one.
    pub fn status(&self) -> u32 {
        match self.parse() {
            Ok(RndisMessage::InitializeComplete(c)) => c.status,
            Ok(RndisMessage::QueryComplete { cmplt, .. }) => cmplt.status,
            Ok(RndisMessage::SetComplete(c)) => c.status,
            Ok(RndisMessage::KeepaliveComplete(c)) => c.status,
            _ => u32::MAX,
        }
    }

    /// QUERY_CMPLT information buffer, bounded by the copied bytes.
    pub fn info(&self, step: Step) -> Result<&[u8]> {
        match self.parse() {
            Ok(RndisMessage::QueryComplete { info, .. }) => Ok(info),
            Ok(m) => Err(Error::protocol(step, "query reply type", m.msg_type())),
            Err(_) => Err(Error::protocol(step, "query info buffer", self.len as u64)),
        }
    }
}

/// The 16-byte NVSP SEND_RNDIS_PKT that announces a control message sent GPA-direct.
fn rndis_ctl_announce() -> [u8; nvsp::MESSAGE_LEN] {
    NvspMessage::SendRndisPkt(SendRndisPkt {
        channel_type: nvsp::CHANNEL_TYPE_CONTROL,
        send_buf_section_index: nvsp::SECTION_INDEX_NONE,
        send_buf_section_size: 0,
    })
    .to_bytes()
}

impl QueueCore {
    /// Send `pkt`, retrying while the ring is full until `deadline`.
    fn send_ctl(
        &mut self,
        pkt: &OutgoingPacket<'_>,
        step: Step,
        deadline: Instant,
        start: Instant,
    ) -> Result<()> {
        loop {
            match self.chan.send(pkt) {
                Ok(()) => {
                    self.chan.flush();
                    return Ok(());
                }
                Err(SendError::Fatal) => {
                    self.check_write_fault();
                    return Err(Error::Ring {
                        step,
                        detail: "request does not fit the ring".into(),
                    });
                }
                Err(SendError::Full) => {
                    self.check_cancel(step)?;
                    if Instant::now() >= deadline {
                        return Err(Error::Timeout {
                            step,
                            waited: start.elapsed(),
                        });
                    }
                    self.poll(Mode::Control, 256);
                    std::thread::sleep(POLL);
                }
            }
        }
    }

    /// Send an NVSP message that gets no reply (NDIS_CONFIG, NDIS_VER, revokes: DPDK sends them
    /// without the completion flag because hosts only answer flagged packets).
    pub fn nvsp_send(&mut self, msg: &[u8], step: Step, timeout: Duration) -> Result<()> {
        let pkt = OutgoingPacket {
            kind: OutgoingKind::InBand,
            trans_id: 0,
            completion_requested: false,
            payload: &[msg],
        };
        let start = Instant::now();
        self.send_ctl(&pkt, step, start + timeout, start)
    }

    /// Send an NVSP request with completion requested and wait for its completion's payload.
    pub fn nvsp_request(
        &mut self,
        ids: &Ids,
        msg: &[u8],
        step: Step,
        timeout: Duration,
    ) -> Result<([u8; 64], usize)> {
        let trans_id = ids.next_ctl();
        self.ctl.nvsp_want = trans_id;
        self.ctl.nvsp_reply = None;
        let pkt = OutgoingPacket {
            kind: OutgoingKind::InBand,
            trans_id,
            completion_requested: true,
            payload: &[msg],
        };
        let start = Instant::now();
        let deadline = start + timeout;
        let r = self
            .send_ctl(&pkt, step, deadline, start)
            .and_then(|()| self.wait(step, deadline, start, |c| c.ctl.nvsp_reply.is_some()));
        self.ctl.nvsp_want = 0;
        r?;
        self.ctl.nvsp_reply.take().ok_or(Error::Timeout {
            step,
            waited: start.elapsed(),
        })
    }

    /// Send an RNDIS request from the control page and wait for the completion with its rid.
    pub fn rndis_exec(
        &mut self,
        page: &CtlPage,
        req: &[u8],
        rid: u32,
        step: Step,
        timeout: Duration,
    ) -> Result<RndisReply> {
        self.ctl.rndis_want = rid;
        self.ctl.rndis_reply = None;
        let start = Instant::now();
        let deadline = start + timeout;
        let r = self
            .send_rndis_page(page, req, step, deadline, start)
            .and_then(|()| self.wait(step, deadline, start, |c| c.ctl.rndis_reply.is_some()));
        self.ctl.rndis_want = 0;
        r?;
        let (buf, len) = self.ctl.rndis_reply.take().ok_or(Error::Timeout {
            step,
            waited: start.elapsed(),
        })?;
        Ok(RndisReply { buf, len })
    }

    /// Send an RNDIS message that has no reply (HALT).
    pub fn rndis_send(
        &mut self,
        page: &CtlPage,
        req: &[u8],
        step: Step,
        timeout: Duration,
    ) -> Result<()> {
        let start = Instant::now();
        self.send_rndis_page(page, req, step, start + timeout, start)
    }

    /// Put `req` on the control page and announce it to the host as a one-range GPA-direct packet (NVSP 107,
    /// control channel, no send section), as DPDK's `hn_rndis_exec1` does; the page never crosses 4 KiB.
    fn send_rndis_page(
        &mut self,
        page: &CtlPage,
        req: &[u8],
        step: Step,
        deadline: Instant,
        start: Instant,
    ) -> Result<()> {
        if req.len() > 4096 {
            return Err(Error::Invalid {
                what: "rndis request length",
                value: req.len() as u64,
            });
        }
        page.mem.write(0, req).map_err(Error::mem(step))?;
        let range = [GpaRange {
            len: req.len() as u32,
            offset: 0,
            pfn: page.pfn,
        }];
        let msg = rndis_ctl_announce();
        let pkt = OutgoingPacket {
            kind: OutgoingKind::GpaDirect { ranges: &range },
            trans_id: 0,
            completion_requested: true,
            payload: &[&msg[..16]],
        };
        self.send_ctl(&pkt, step, deadline, start)
    }

    fn check_cancel(&self, step: Step) -> Result<()> {
        match &self.cancel {
            Some(c) if c.is_cancelled() => Err(Error::Cancelled { step }),
            _ => Ok(()),
        }
    }

    fn wait(
        &mut self,
        step: Step,
        deadline: Instant,
        start: Instant,
        done: impl Fn(&QueueCore) -> bool,
    ) -> Result<()> {
        loop {
            let n = self.poll(Mode::Control, 256);
            if done(self) {
                return Ok(());
            }
            if self.fault.is_some() {
                return Err(Error::Ring {
                    step,
                    detail: "host→guest ring is corrupt".into(),
                });
            }
            self.check_cancel(step)?;
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    step,
                    waited: start.elapsed(),
                });
            }
            if n == 0 {
                std::thread::sleep(POLL);
            }
        }
    }
}

/// RNDIS QUERY/SET request (`msg_type` = QUERY or SET): 28-byte header then `data`; info offset
/// 20 (from the rid). Returns the length, 0 if `data` does not fit.
pub(crate) fn rndis_oid_req(
    buf: &mut [u8; 1024],
    msg_type: u32,
    rid: u32,
    oid: u32,
    data: &[u8],
) -> usize {
    let m = if msg_type == rndis::msg_type::SET {
        RndisMessage::set(rid, oid, data)
    } else {
        RndisMessage::query(rid, oid, data)
    };
    m.emit(buf).unwrap_or(0)
}

/// RNDIS INITIALIZE (24 bytes): version 1.0, max transfer 16 KiB.
pub(crate) fn rndis_init_req(rid: u32) -> [u8; 24] {
    let mut b = [0u8; 24];
    // The message is exactly 24 bytes, so this cannot fail.
    let _ = RndisMessage::initialize(rid, RNDIS_MAX_XFER).emit(&mut b);
    b
}

/// RNDIS HALT (12 bytes).
pub(crate) fn rndis_halt_req(rid: u32) -> [u8; 12] {
    let mut b = [0u8; 12];
    // The message is exactly 12 bytes, so this cannot fail.
    let _ = RndisMessage::Halt(Halt { req_id: rid }).emit(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use netvsc_proto::oid;

    #[test]
    fn query_request_matches_protocol_vector() {
        // protocol.md §9: QUERY PERMANENT_ADDRESS, req_id 1.
        let mut b = [0u8; 1024];
        let n = rndis_oid_req(
            &mut b,
            rndis::msg_type::QUERY,
            1,
            oid::E802_3_PERMANENT_ADDRESS,
            &[],
        );
        let want = [
            4u8, 0, 0, 0, 0x1c, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0x14, 0, 0, 0, 0, 0,
            0, 0,
        ];
        assert_eq!(&b[..n], &want);
        // Packet filter SET 0x0D, req_id 2.
        let n = rndis_oid_req(
            &mut b,
            rndis::msg_type::SET,
            2,
            oid::GEN_CURRENT_PACKET_FILTER,
            &13u32.to_le_bytes(),
        );
        let want = [
            5u8, 0, 0, 0, 0x20, 0, 0, 0, 2, 0, 0, 0, 0x0e, 1, 1, 0, 4, 0, 0, 0, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0x0d, 0, 0, 0,
        ];
        assert_eq!(&b[..n], &want);
    }

    #[test]
    fn ids_never_zero() {
        let ids = Ids::default();
        ids.rid.store(u32::MAX - 1, Relaxed);
        assert_eq!(ids.next_rid(), u32::MAX);
        assert_eq!(ids.next_rid(), 1);
        assert_ne!(ids.next_ctl() & TAG_CTL, 0);
    }

    #[test]
    fn query_info_bounded() {
        let mut r = RndisReply {
            buf: [0; CTL_REPLY_MAX],
            len: 30,
        };
        let put = |b: &mut [u8], o: usize, v: u32| b[o..o + 4].copy_from_slice(&v.to_le_bytes());
        put(&mut r.buf, 0, rndis::msg_type::QUERY_CMPLT);
        put(&mut r.buf, 4, 30);
        put(&mut r.buf, 16, 6);
        put(&mut r.buf, 20, 16);
        assert_eq!(r.info("t").unwrap().len(), 6);
        put(&mut r.buf, 16, 600);
        assert!(r.info("t").is_err());
        put(&mut r.buf, 20, u32::MAX);
        assert!(r.info("t").is_err());
        // A completion of another kind carries no query info.
        put(&mut r.buf, 0, rndis::msg_type::SET_CMPLT);
        assert!(r.info("t").is_err());
    }
}

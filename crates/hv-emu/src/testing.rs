//! A scripted fake guest for tests: speaks NVSP and RNDIS byte by byte over an emulated tree's
//! rings, signalling like uio_hv_generic users do (monitor-page bit + int-page bit). Built for
//! this crate's tests and, behind the `testing` feature, for other crates' tests.

use crate::tree::DeviceTree;
use crate::wire::{nvsp, put_u32, rndis as r, u32_at};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use vmbus_ring::{
    GpaRange, OutgoingKind, OutgoingPacket, PacketKind, Ring, RingReader, RingWriter, SharedMem,
};

/// A packet the host sent, copied out of the ring.
#[derive(Debug, Clone)]
pub struct HostPacket {
    /// Descriptor type (6, 7, 11).
    pub kind: u16,
    pub trans_id: u64,
    pub completion_requested: bool,
    /// Transfer-page set id (type 7).
    pub set_id: u16,
    /// Transfer-page ranges (byte_count, byte_offset).
    pub ranges: Vec<(u32, u32)>,
    pub payload: Vec<u8>,
}

impl HostPacket {
    /// NVSP message type at payload offset 0.
    pub fn nvsp_type(&self) -> u32 {
        u32_at(&self.payload, 0).unwrap_or(0)
    }
    /// u32 at payload offset `off`.
    pub fn u32(&self, off: usize) -> u32 {
        u32_at(&self.payload, off).unwrap_or(0)
    }
}

/// A received frame with its PPIs (type, first u32 of the value).
#[derive(Debug, Clone)]
pub struct RxFrame {
    pub frame: Vec<u8>,
    pub ppis: Vec<(u32, u32)>,
}

impl RxFrame {
    /// Value of the PPI of `ty`.
    pub fn ppi(&self, ty: u32) -> Option<u32> {
        self.ppis.iter().find(|p| p.0 == ty).map(|p| p.1)
    }
}

/// The guest side of one channel.
pub struct FakeGuest {
    writer: RingWriter,
    reader: RingReader,
    int_page: SharedMem,
    monitor_page: SharedMem,
    relid: u32,
    monitor_id: Option<u8>,
    pub recv_buf: SharedMem,
    pub send_buf: SharedMem,
    pub recv_gpadl: u32,
    pub send_gpadl: u32,
    scratch: Vec<u8>,
    backlog: VecDeque<HostPacket>,
    next_trans: u64,
    next_req: u32,
    /// How long `expect*` waits.
    pub timeout: Duration,
    /// Negotiated version (after `init`).
    pub version: u32,
    /// Sub-allocation size from SEND_RECV_BUF_COMPLETE.
    pub sub_alloc_size: u32,
    pub section_size: u32,
}

impl FakeGuest {
    /// Attach to the primary channel of `tree`.
    pub fn attach(tree: &DeviceTree) -> FakeGuest {
        let cfg = tree.config();
        Self::channel(tree, tree.rings().clone(), cfg.relid, cfg.monitor_id)
    }

    /// Attach to any channel's rings (guest→host first half).
    pub fn channel(
        tree: &DeviceTree,
        rings: SharedMem,
        relid: u32,
        monitor_id: Option<u8>,
    ) -> FakeGuest {
        let half = rings.len() / 2;
        let g2h = Ring::new(rings.subrange(0, half).expect("rings")).expect("g2h ring");
        let h2g = Ring::new(rings.subrange(half, half).expect("rings")).expect("h2g ring");
        FakeGuest {
            writer: RingWriter::new(g2h),
            reader: RingReader::new(h2g),
            int_page: tree.int_page().clone(),
            monitor_page: tree.monitor_page().clone(),
            relid,
            monitor_id,
            recv_buf: tree.recv_buf().clone(),
            send_buf: tree.send_buf().clone(),
            recv_gpadl: tree.config().recv_gpadl,
            send_gpadl: tree.config().send_gpadl,
            scratch: Vec::new(),
            backlog: VecDeque::new(),
            next_trans: 1,
            next_req: 1,
            timeout: Duration::from_secs(5),
            version: 0,
            sub_alloc_size: 0,
            section_size: 0,
        }
    }

    /// Set the host's scan latency for this channel (monitor page, 100 ns units).
    pub fn set_latency(&self, units: u16) {
        if let Some(m) = self.monitor_id {
            let _ = self
                .monitor_page
                .write(576 + 2 * usize::from(m), &units.to_le_bytes());
        }
    }

    /// Signal the host: monitor trigger bit (if monitored) and the int-page relid bit.
    pub fn signal(&self) {
        if let Some(m) = self.monitor_id {
            let _ = self
                .monitor_page
                .fetch_or_u32(8 + 8 * usize::from(m / 32), 1 << (m % 32));
        }
        let _ = self.int_page.fetch_or_u32(
            2048 + 4 * (self.relid as usize / 32),
            1 << (self.relid % 32),
        );
    }

    fn write(&mut self, pkt: &OutgoingPacket<'_>) {
        let deadline = Instant::now() + self.timeout;
        while let Err(e) = self.writer.try_write(pkt) {
            assert!(Instant::now() < deadline, "guest→host ring stays full: {e}");
            self.signal();
            std::thread::sleep(Duration::from_micros(100));
        }
        if self.writer.commit() {
            self.signal();
        }
    }

    /// Send raw bytes as an in-band packet (no padding to 40 added).
    pub fn send_raw(&mut self, msg: &[u8], completion_requested: bool) -> u64 {
        let trans_id = self.next_trans;
        self.next_trans += 1;
        self.write(&OutgoingPacket {
            kind: OutgoingKind::InBand,
            trans_id,
            completion_requested,
            payload: &[msg],
        });
        trans_id
    }

    /// Send an NVSP message of `fields` (u32 each), padded to 40 bytes.
    pub fn send_nvsp(&mut self, fields: &[u32], completion_requested: bool) -> u64 {
        let mut m = [0u8; 40];
        for (i, f) in fields.iter().enumerate() {
            put_u32(&mut m, 4 * i, *f);
        }
        self.send_raw(&m, completion_requested)
    }

    /// Send a GPA-direct packet carrying NVSP 107 over `ranges`.
    pub fn send_gpa(&mut self, ranges: &[GpaRange], channel_type: u32) -> u64 {
        let mut m = [0u8; 40];
        put_u32(&mut m, 0, nvsp::SEND_RNDIS_PKT);
        put_u32(&mut m, 4, channel_type);
        put_u32(&mut m, 8, nvsp::NO_SECTION);
        let trans_id = self.next_trans;
        self.next_trans += 1;
        self.write(&OutgoingPacket {
            kind: OutgoingKind::GpaDirect { ranges },
            trans_id,
            completion_requested: true,
            payload: &[&m],
        });
        trans_id
    }

    /// Complete a transfer-page packet with NVSP 108 SUCCESS.
    pub fn complete(&mut self, trans_id: u64) {
        let mut m = [0u8; 40];
        put_u32(&mut m, 0, nvsp::SEND_RNDIS_PKT_COMPLETE);
        put_u32(&mut m, 4, nvsp::STATUS_SUCCESS);
        self.write(&OutgoingPacket {
            kind: OutgoingKind::Completion,
            trans_id,
            completion_requested: false,
            payload: &[&m],
        });
    }

    /// Read one packet from the host, if any (backlog first).
    pub fn try_recv(&mut self) -> Option<HostPacket> {
        if let Some(p) = self.backlog.pop_front() {
            return Some(p);
        }
        let pkt = self.reader.read(&mut self.scratch).ok()?;
        let mut hp = HostPacket {
            kind: pkt.kind.packet_type(),
            trans_id: pkt.trans_id,
            completion_requested: pkt.completion_requested,
            set_id: 0,
            ranges: Vec::new(),
            payload: pkt.kind.payload().to_vec(),
        };
        if let PacketKind::TransferPages { set_id, ranges, .. } = pkt.kind {
            hp.set_id = set_id;
            hp.ranges = ranges.map(|r| (r.byte_count, r.byte_offset)).collect();
        }
        if self.reader.commit() {
            self.signal();
        }
        Some(hp)
    }

    /// Wait up to `timeout` for a packet matching `pred`; others are kept for later.
    pub fn expect(&mut self, what: &str, mut pred: impl FnMut(&HostPacket) -> bool) -> HostPacket {
        self.wait_for(self.timeout, &mut pred)
            .unwrap_or_else(|| panic!("no {what} from the host within {:?}", self.timeout))
    }

    /// Like `expect` but returns None on timeout.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        pred: &mut dyn FnMut(&HostPacket) -> bool,
    ) -> Option<HostPacket> {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        let found = loop {
            if let Some(p) = self.try_recv() {
                if pred(&p) {
                    break Some(p);
                }
                skipped.push(p);
                continue;
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        for p in skipped.into_iter().rev() {
            self.backlog.push_front(p);
        }
        found
    }

    /// Wait for the completion of `trans_id`.
    pub fn expect_completion(&mut self, trans_id: u64) -> HostPacket {
        self.expect("completion", |p| p.kind == 11 && p.trans_id == trans_id)
    }

    /// NVSP INIT with `version`; returns the INIT_COMPLETE status.
    pub fn init(&mut self, version: u32) -> u32 {
        let t = self.send_nvsp(&[nvsp::INIT, version, version], true);
        let c = self.expect_completion(t);
        assert_eq!(c.nvsp_type(), nvsp::INIT_COMPLETE);
        if c.u32(12) == nvsp::STATUS_SUCCESS {
            self.version = version;
        }
        c.u32(12)
    }

    /// INIT, NDIS_CONFIG, NDIS_VER, receive and send buffers, as DPDK does (no completion asked
    /// for NDIS_CONFIG/NDIS_VER).
    pub fn handshake(&mut self, version: u32) {
        assert_eq!(
            self.init(version),
            nvsp::STATUS_SUCCESS,
            "INIT {version:#x}"
        );
        if version >= nvsp::V2 {
            self.send_nvsp(&[nvsp::SEND_NDIS_CONFIG, 1514, 0, 0x8, 0], false);
        }
        let (major, minor) = if version > nvsp::V4 { (6, 30) } else { (6, 1) };
        self.send_nvsp(&[nvsp::SEND_NDIS_VER, major, minor], false);
        let t = self.send_nvsp(&[nvsp::SEND_RECV_BUF, self.recv_gpadl, 0xCAFE], true);
        let c = self.expect_completion(t);
        assert_eq!(
            (c.nvsp_type(), c.u32(4), c.u32(8)),
            (nvsp::SEND_RECV_BUF_COMPLETE, nvsp::STATUS_SUCCESS, 1)
        );
        self.sub_alloc_size = c.u32(16);
        let t = self.send_nvsp(&[nvsp::SEND_SEND_BUF, self.send_gpadl, 0xFACE], true);
        let c = self.expect_completion(t);
        assert_eq!(
            (c.nvsp_type(), c.u32(4)),
            (nvsp::SEND_SEND_BUF_COMPLETE, nvsp::STATUS_SUCCESS)
        );
        self.section_size = c.u32(8);
    }

    /// Put `data` in send section `index` and send NVSP 107 for it; returns the trans id.
    pub fn send_section(&mut self, index: u32, data: &[u8], channel_type: u32) -> u64 {
        let off = index as usize * self.section_size.max(1) as usize;
        self.send_buf
            .write(off, data)
            .expect("section in send buffer");
        self.send_nvsp(
            &[nvsp::SEND_RNDIS_PKT, channel_type, index, data.len() as u32],
            true,
        )
    }

    /// Read the RNDIS messages of a transfer-page packet out of the receive buffer.
    pub fn messages(&self, p: &HostPacket) -> Vec<Vec<u8>> {
        p.ranges
            .iter()
            .map(|&(len, off)| {
                let mut b = vec![0u8; len as usize];
                self.recv_buf
                    .read(off as usize, &mut b)
                    .expect("range inside receive buffer");
                b
            })
            .collect()
    }

    /// Send an RNDIS control message and return the host's reply (the control packet is completed).
    pub fn rndis_request(&mut self, msg: &[u8]) -> Vec<u8> {
        let ty = u32_at(msg, 0).unwrap_or(0);
        let t = self.send_section(0, msg, nvsp::CHANNEL_CONTROL);
        let c = self.expect_completion(t);
        assert_eq!(c.u32(4), nvsp::STATUS_SUCCESS, "RNDIS send status");
        let want = ty | r::COMPLETION;
        let p = self.expect("RNDIS reply", |p| {
            p.kind == 7 && p.u32(4) == nvsp::CHANNEL_CONTROL
        });
        let msgs = self.messages(&p);
        self.complete(p.trans_id);
        let reply = msgs.into_iter().next().expect("one RNDIS message");
        assert_eq!(u32_at(&reply, 0), Some(want), "reply type");
        reply
    }

    fn req_id(&mut self) -> u32 {
        self.next_req += 1;
        self.next_req
    }

    /// RNDIS INITIALIZE; returns the INITIALIZE_CMPLT.
    pub fn rndis_init(&mut self) -> Vec<u8> {
        let mut m = vec![0u8; 24];
        let id = self.req_id();
        for (i, v) in [r::INITIALIZE, 24, id, 1, 0, 0x4000]
            .into_iter()
            .enumerate()
        {
            put_u32(&mut m, 4 * i, v);
        }
        self.rndis_request(&m)
    }

    /// QUERY `oid` with input `info`: (status, data).
    pub fn query(&mut self, oid: u32, info: &[u8]) -> (u32, Vec<u8>) {
        let m = self.oid_msg(r::QUERY, oid, info);
        let reply = self.rndis_request(&m);
        let status = u32_at(&reply, 12).unwrap_or(u32::MAX);
        let len = u32_at(&reply, 16).unwrap_or(0) as usize;
        let off = 8 + u32_at(&reply, 20).unwrap_or(0) as usize;
        (
            status,
            reply
                .get(off..off + len)
                .map(<[u8]>::to_vec)
                .unwrap_or_default(),
        )
    }

    /// SET `oid` to `data`: status.
    pub fn set(&mut self, oid: u32, data: &[u8]) -> u32 {
        let m = self.oid_msg(r::SET, oid, data);
        let reply = self.rndis_request(&m);
        u32_at(&reply, 12).unwrap_or(u32::MAX)
    }

    fn oid_msg(&mut self, ty: u32, oid: u32, info: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; 28 + info.len()];
        let id = self.req_id();
        for (i, v) in [ty, m.len() as u32, id, oid, info.len() as u32, 20, 0]
            .into_iter()
            .enumerate()
        {
            put_u32(&mut m, 4 * i, v);
        }
        m[28..].copy_from_slice(info);
        m
    }

    /// Collect data frames from transfer-page packets for up to `timeout` until `n` arrived;
    /// completes each packet when `complete` is set.
    pub fn receive_frames(&mut self, n: usize, timeout: Duration, complete: bool) -> Vec<RxFrame> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n && Instant::now() < deadline {
            let Some(p) = self.wait_for(Duration::from_millis(20), &mut |p| {
                p.kind == 7 && p.u32(4) == nvsp::CHANNEL_DATA
            }) else {
                continue;
            };
            for m in self.messages(&p) {
                out.push(parse_rx_packet(&m).expect("well-formed RNDIS PACKET from the host"));
            }
            if complete {
                self.complete(p.trans_id);
            }
        }
        out
    }
}

/// Parse a host RNDIS PACKET message into frame + PPIs.
pub fn parse_rx_packet(m: &[u8]) -> Option<RxFrame> {
    if u32_at(m, 0)? != r::PACKET || u32_at(m, 4)? as usize > m.len() {
        return None;
    }
    let doff = 8 + u32_at(m, 8)? as usize;
    let dlen = u32_at(m, 12)? as usize;
    let poff = 8 + u32_at(m, 28)? as usize;
    let plen = u32_at(m, 32)? as usize;
    let mut ppis = Vec::new();
    let mut o = poff;
    while plen > 0 && o + 12 <= poff + plen {
        let size = u32_at(m, o)? as usize;
        ppis.push((
            u32_at(m, o + 4)?,
            u32_at(m, o + u32_at(m, o + 8)? as usize)?,
        ));
        if size == 0 {
            return None;
        }
        o += size;
    }
    Some(RxFrame {
        frame: m.get(doff..doff + dlen)?.to_vec(),
        ppis,
    })
}

/// Build a guest RNDIS PACKET message with `ppis` (type, u32 value) and `frame`.
pub fn build_tx_packet(frame: &[u8], ppis: &[(u32, u32)]) -> Vec<u8> {
    let plen = 16 * ppis.len();
    let len = 44 + plen + frame.len();
    let mut m = vec![0u8; len];
    put_u32(&mut m, 0, r::PACKET);
    put_u32(&mut m, 4, len as u32);
    put_u32(&mut m, 8, (36 + plen) as u32);
    put_u32(&mut m, 12, frame.len() as u32);
    put_u32(&mut m, 28, 36);
    put_u32(&mut m, 32, plen as u32);
    for (i, (ty, v)) in ppis.iter().enumerate() {
        let o = 44 + 16 * i;
        put_u32(&mut m, o, 16);
        put_u32(&mut m, o + 4, *ty);
        put_u32(&mut m, o + 8, 12);
        put_u32(&mut m, o + 12, *v);
    }
    m[44 + plen..].copy_from_slice(frame);
    m
}

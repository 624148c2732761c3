//! A scripted fake guest for tests: speaks NVSP and RNDIS byte by byte over an emulated tree's
//! rings, signalling like uio_hv_generic users do (monitor-page bit + int-page bit). Built for
//! this crate's tests and, behind the `testing` feature, for other crates' tests.

use crate::tree::DeviceTree;
use netvsc_proto::nvsp::{
    self, NvspMessage, SendRndisPkt, SendRndisPktComplete, msg_type as nt, status,
};
use netvsc_proto::rndis::{self as r, RndisMessage};
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

/// Little-endian u32 at `off` (the fake guest reads replies field by field, as a test wants to).
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let v = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
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
    ctl: crate::tree::ControlPage,
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
    /// Signal the host after each write (default); off, the test signals with [`FakeGuest::signal`] itself.
    pub signals: bool,
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
            ctl: tree.ctl().clone(),
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
            signals: true,
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

    /// Signal the host: the int-page relid bit, then the monitor trigger bit (monitored) or a write of 1 to the
    /// uio fd (unmonitored: the kernel signals the host), as recorded on the emulated control page.
    pub fn signal(&self) {
        let _ = self.int_page.fetch_or_u32(
            2048 + 4 * (self.relid as usize / 32),
            1 << (self.relid % 32),
        );
        match self.monitor_id {
            Some(m) => {
                let _ = self
                    .monitor_page
                    .fetch_or_u32(8 + 8 * usize::from(m / 32), 1 << (m % 32));
            }
            None => {
                let mem = self.ctl.mem();
                let _ = mem.store_u32(crate::tree::CTL_IRQ_ENABLED_OFF, 1);
                let _ = mem.fetch_add_u64(crate::tree::CTL_IRQ_WRITES_OFF, 1);
            }
        }
    }

    fn write(&mut self, pkt: &OutgoingPacket<'_>) {
        let deadline = Instant::now() + self.timeout;
        while let Err(e) = self.writer.try_write(pkt) {
            assert!(Instant::now() < deadline, "guest→host ring stays full: {e}");
            self.signal();
            std::thread::sleep(Duration::from_micros(100));
        }
        if self.writer.commit() && self.signals {
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
        let mut m = [0u8; nvsp::MESSAGE_LEN];
        for (chunk, f) in m.chunks_exact_mut(4).zip(fields) {
            chunk.copy_from_slice(&f.to_le_bytes());
        }
        self.send_raw(&m, completion_requested)
    }

    /// Send a GPA-direct packet carrying NVSP 107 over `ranges`.
    pub fn send_gpa(&mut self, ranges: &[GpaRange], channel_type: u32) -> u64 {
        let m = NvspMessage::SendRndisPkt(SendRndisPkt {
            channel_type,
            send_buf_section_index: nvsp::SECTION_INDEX_NONE,
            send_buf_section_size: 0,
        })
        .to_bytes();
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
        let m = NvspMessage::SendRndisPktComplete(SendRndisPktComplete {
            status: status::SUCCESS,
        })
        .to_bytes();
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
        let t = self.send_nvsp(&[nt::INIT, version, version], true);
        let c = self.expect_completion(t);
        assert_eq!(c.nvsp_type(), nt::INIT_COMPLETE);
        if c.u32(12) == status::SUCCESS {
            self.version = version;
        }
        c.u32(12)
    }

    /// INIT, NDIS_CONFIG, NDIS_VER, receive and send buffers, as DPDK does (no completion asked
    /// for NDIS_CONFIG/NDIS_VER).
    pub fn handshake(&mut self, version: u32) {
        self.handshake_with_caps(version, nvsp::ndis_config_caps::IEEE8021Q);
    }

    /// [`FakeGuest::handshake`] declaring `caps` in NDIS_CONFIG (e.g. `IEEE8021Q | SRIOV`).
    pub fn handshake_with_caps(&mut self, version: u32, caps: u64) {
        assert_eq!(self.init(version), status::SUCCESS, "INIT {version:#x}");
        if version >= nvsp::VERSION_2 {
            let (lo, hi) = (caps as u32, (caps >> 32) as u32);
            self.send_nvsp(&[nt::SEND_NDIS_CONFIG, 1514, 0, lo, hi], false);
        }
        let (major, minor) = nvsp::ndis_version_for(version);
        self.send_nvsp(&[nt::SEND_NDIS_VER, major, minor], false);
        let id = u32::from(nvsp::RECV_BUF_ID);
        let t = self.send_nvsp(&[nt::SEND_RECV_BUF, self.recv_gpadl, id], true);
        let c = self.expect_completion(t);
        assert_eq!(
            (c.nvsp_type(), c.u32(4), c.u32(8)),
            (nt::SEND_RECV_BUF_COMPLETE, status::SUCCESS, 1)
        );
        self.sub_alloc_size = c.u32(16);
        let id = u32::from(nvsp::SEND_BUF_ID);
        let t = self.send_nvsp(&[nt::SEND_SEND_BUF, self.send_gpadl, id], true);
        let c = self.expect_completion(t);
        assert_eq!(
            (c.nvsp_type(), c.u32(4)),
            (nt::SEND_SEND_BUF_COMPLETE, status::SUCCESS)
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
            &[nt::SEND_RNDIS_PKT, channel_type, index, data.len() as u32],
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
        let t = self.send_section(0, msg, nvsp::CHANNEL_TYPE_CONTROL);
        let c = self.expect_completion(t);
        assert_eq!(c.u32(4), status::SUCCESS, "RNDIS send status");
        // Completions have the request type with the completion bit set.
        let want = ty | (r::msg_type::INITIALIZE_CMPLT ^ r::msg_type::INITIALIZE);
        let p = self.expect("RNDIS reply", |p| {
            p.kind == 7 && p.u32(4) == nvsp::CHANNEL_TYPE_CONTROL
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
        let id = self.req_id();
        self.rndis_request(&emit(&RndisMessage::initialize(id, 0x4000)))
    }

    /// QUERY `oid` with input `info`: (status, data).
    pub fn query(&mut self, oid: u32, info: &[u8]) -> (u32, Vec<u8>) {
        let id = self.req_id();
        let m = emit(&RndisMessage::query(id, oid, info));
        let reply = self.rndis_request(&m);
        match RndisMessage::parse(&reply) {
            Ok(RndisMessage::QueryComplete { cmplt, info }) => {
                assert_eq!(cmplt.req_id, id, "QUERY_CMPLT request id");
                (cmplt.status, info.to_vec())
            }
            other => panic!("QUERY {oid:#x}: not a valid QUERY_CMPLT: {other:?}"),
        }
    }

    /// SET `oid` to `data`: status.
    pub fn set(&mut self, oid: u32, data: &[u8]) -> u32 {
        let id = self.req_id();
        let m = emit(&RndisMessage::set(id, oid, data));
        let reply = self.rndis_request(&m);
        match RndisMessage::parse(&reply) {
            Ok(RndisMessage::SetComplete(c)) => {
                assert_eq!(c.req_id, id, "SET_CMPLT request id");
                c.status
            }
            other => panic!("SET {oid:#x}: not a valid SET_CMPLT: {other:?}"),
        }
    }

    /// Collect data frames from transfer-page packets for up to `timeout` until `n` arrived;
    /// completes each packet when `complete` is set.
    pub fn receive_frames(&mut self, n: usize, timeout: Duration, complete: bool) -> Vec<RxFrame> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n && Instant::now() < deadline {
            let Some(p) = self.wait_for(Duration::from_millis(20), &mut |p| {
                p.kind == 7 && p.u32(4) == nvsp::CHANNEL_TYPE_DATA
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

/// Encode a guest RNDIS message.
fn emit(msg: &RndisMessage<'_>) -> Vec<u8> {
    let mut m = vec![0u8; msg.encoded_len()];
    msg.emit(&mut m).expect("buffer sized by encoded_len");
    m
}

/// Parse a host RNDIS PACKET message into frame + PPIs (type, first u32 of the value).
pub fn parse_rx_packet(m: &[u8]) -> Option<RxFrame> {
    let RndisMessage::Packet(p) = RndisMessage::parse(m).ok()? else {
        return None;
    };
    let mut ppis = Vec::new();
    for e in p.ppis() {
        let e = e.ok()?;
        ppis.push((e.ppi_type, u32_at(e.data, 0)?));
    }
    Some(RxFrame {
        frame: p.data.to_vec(),
        ppis,
    })
}

/// Build a guest RNDIS PACKET message with `ppis` (type, u32 value) and `frame`.
pub fn build_tx_packet(frame: &[u8], ppis: &[(u32, u32)]) -> Vec<u8> {
    let values: Vec<[u8; 4]> = ppis.iter().map(|(_, v)| v.to_le_bytes()).collect();
    let list: Vec<(u32, &[u8])> = ppis
        .iter()
        .zip(&values)
        .map(|((ty, _), v)| (*ty, &v[..]))
        .collect();
    let mut m = vec![0u8; r::PACKET_HEADER_LEN + 16 * ppis.len() + frame.len()];
    let len = r::emit_packet(&mut m, &list, frame).expect("buffer sized for the packet");
    debug_assert_eq!(len, m.len());
    m
}

//! Writes the seed corpora, `fuzz/corpus/<target>/seed-NNN`, from the vectors the unit tests use: ring images
//! holding one packet of every kind, NVSP messages of every type the driver meets, RNDIS messages and PACKETs with
//! the PPIs a host sends, transfer-page scripts over a receive buffer of such PACKETs, and every input of the shared
//! devargs table. Run by `fuzz/seeds.sh` (and `.ci/run`) before fuzzing: `cargo run --bin seeds -- <corpus dir>`.

use std::fs;
use std::path::{Path, PathBuf};

use netvsc_proto::nvsp::{self, NvspMessage, SendRndisPkt, SendRndisPktComplete};
use netvsc_proto::ppi;
use netvsc_proto::rndis::{RndisMessage, emit_packet};
use vmbus_ring::ring::HEADER_SIZE;
use vmbus_ring::{
    GpaRange, OutgoingKind, OutgoingPacket, Ring, RingWriter, SharedMem, TransferRange,
};

fn write(dir: &Path, target: &str, seeds: &[Vec<u8>]) {
    let d = dir.join(target);
    fs::create_dir_all(&d).expect("create corpus dir");
    for (i, s) in seeds.iter().enumerate() {
        fs::write(d.join(format!("seed-{i:03}")), s).expect("write seed");
    }
    println!("{target}: {} seeds", seeds.len());
}

/// A ring image as the ring_reader target reads it: 16 header bytes, then the data area.
fn ring_image(kinds: &[OutgoingKind<'_>], payload: &[u8]) -> Vec<u8> {
    const DATA: usize = 8192;
    let mem = SharedMem::alloc(HEADER_SIZE + DATA);
    let mut w = RingWriter::new(Ring::new(mem.clone()).unwrap());
    for (i, kind) in kinds.iter().enumerate() {
        let pkt = OutgoingPacket {
            kind: *kind,
            trans_id: i as u64 + 1,
            completion_requested: i % 2 == 0,
            payload: &[payload],
        };
        w.try_write(&pkt).unwrap();
    }
    w.commit();
    let mut out = vec![0u8; 16 + DATA];
    mem.read(0, &mut out[..16]).unwrap();
    mem.read(HEADER_SIZE, &mut out[16..]).unwrap();
    // Trim trailing zeros: the target zero-fills what is missing.
    while out.len() > 16 && out.last() == Some(&0) {
        out.pop();
    }
    out
}

fn rndis_packets() -> Vec<Vec<u8>> {
    let frame: Vec<u8> = (0..60u8).collect();
    let vlan = ppi::VlanInfo::new(3, false, 100).0.to_le_bytes();
    let csum = (ppi::RxChecksumInfo::TCP_OK | ppi::RxChecksumInfo::IP_OK)
        .to_le_bytes();
    let hash = 0x1234_5678u32.to_le_bytes();
    let info = 0x0000_0101u32.to_le_bytes();
    let sets: [&[(u32, &[u8])]; 4] = [
        &[],
        &[(ppi::IEEE_8021Q, &vlan)],
        &[(ppi::TCPIP_CHKSUM, &csum), (ppi::NBL_HASH_VALUE, &hash)],
        &[
            (ppi::IEEE_8021Q, &vlan),
            (ppi::TCPIP_CHKSUM, &csum),
            (ppi::NBL_HASH_VALUE, &hash),
            (ppi::NBL_HASH_INFO, &info),
        ],
    ];
    sets.iter()
        .map(|ppis| {
            let mut out = vec![0u8; 512];
            let n = emit_packet(&mut out, ppis, &frame).unwrap();
            out.truncate(n);
            out
        })
        .collect()
}

fn rndis_messages() -> Vec<Vec<u8>> {
    let status_buf = [0u8; 8];
    let msgs = [
        RndisMessage::initialize(1, 0x4000),
        RndisMessage::set_complete(2, 0),
        RndisMessage::query(3, 0x0101_0103, &[]),
        RndisMessage::set(4, 0x0001_010e, &[0, 0, 0, 0]),
        RndisMessage::query_complete(5, 0, &[1, 2, 3, 4, 5, 6]),
        RndisMessage::indicate_status(0x4001_000b, &[]),
        RndisMessage::indicate_status(0x4001_0018, &status_buf),
    ];
    msgs.iter()
        .map(|m| {
            let mut out = vec![0u8; m.encoded_len()];
            let n = m.emit(&mut out).unwrap();
            out.truncate(n);
            out
        })
        .collect()
}

fn nvsp_messages() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = [
        NvspMessage::SendRndisPkt(SendRndisPkt {
            channel_type: nvsp::CHANNEL_TYPE_DATA,
            send_buf_section_index: u32::MAX,
            send_buf_section_size: 0,
        }),
        NvspMessage::SendRndisPktComplete(SendRndisPktComplete {
            status: nvsp::status::SUCCESS,
        }),
    ]
    .iter()
    .map(|m| m.to_bytes().to_vec())
    .collect();
    // Every message type the protocol defines, with a zero body (the parser picks the layout by type).
    for ty in (1u32..=12).chain(100..=136) {
        let mut b = vec![0u8; nvsp::MESSAGE_LEN];
        b[..4].copy_from_slice(&ty.to_le_bytes());
        out.push(b);
    }
    // A send indirection table: type 134, count 16, offset 12.
    let mut t = vec![0u8; 12 + 64];
    t[..4].copy_from_slice(&134u32.to_le_bytes());
    t[4..8].copy_from_slice(&16u32.to_le_bytes());
    t[8..12].copy_from_slice(&12u32.to_le_bytes());
    out.push(t);
    out
}

/// An rx_transfer script: flags, a receive buffer of `packets` back to back, one transfer of all of them, a burst.
fn rx_script(flags: u8, packets: &[Vec<u8>], extra: &[(u32, u32)]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut ranges = Vec::new();
    for p in packets {
        ranges.push((buf.len() as u32, p.len() as u32));
        buf.extend_from_slice(p);
        buf.resize(buf.len().next_multiple_of(8), 0);
    }
    ranges.extend_from_slice(extra);
    let mut s = vec![flags];
    s.extend_from_slice(&((buf.len() - 1) as u16).to_le_bytes());
    s.extend_from_slice(&buf);
    s.push(0); // op 0: a data transfer on the receive buffer's set id
    s.extend_from_slice(&(ranges.len() as u16).to_le_bytes());
    for (off, len) in ranges {
        s.extend_from_slice(&(off as u16).to_le_bytes());
        s.extend_from_slice(&(len as u16).to_le_bytes());
    }
    s.push(2); // op 2: rx burst
    s
}

fn devargs_inputs() -> Vec<Vec<u8>> {
    let text = include_str!("../../crates/netvsc/tests/devargs_cases.json");
    let cases: Vec<serde_json::Value> = serde_json::from_str(text).expect("devargs table");
    cases
        .iter()
        .map(|c| match c["input"].as_str() {
            Some(s) => s.as_bytes().to_vec(),
            None => c["parts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[0].as_str().unwrap().repeat(p[1].as_u64().unwrap() as usize))
                .collect::<String>()
                .into_bytes(),
        })
        .collect()
}

fn main() {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("corpus"), PathBuf::from);
    let tp = [TransferRange {
        byte_count: 100,
        byte_offset: 0,
    }; 3];
    let gpa = [GpaRange {
        len: 60,
        offset: 0,
        pfn: 0x1234,
    }];
    let announce = NvspMessage::SendRndisPkt(SendRndisPkt {
        channel_type: 0,
        send_buf_section_index: u32::MAX,
        send_buf_section_size: 0,
    })
    .to_bytes();
    let ring = vec![
        ring_image(&[OutgoingKind::InBand], &[1, 2, 3, 4, 5, 6, 7, 8]),
        ring_image(&[OutgoingKind::Completion], &announce),
        ring_image(
            &[OutgoingKind::TransferPages {
                set_id: nvsp::RECV_BUF_ID,
                ranges: &tp,
            }],
            &announce,
        ),
        ring_image(&[OutgoingKind::GpaDirect { ranges: &gpa }], &announce),
        ring_image(
            &[
                OutgoingKind::InBand,
                OutgoingKind::TransferPages {
                    set_id: nvsp::RECV_BUF_ID,
                    ranges: &tp,
                },
                OutgoingKind::Completion,
                OutgoingKind::GpaDirect { ranges: &gpa },
            ],
            &announce,
        ),
    ];
    write(&dir, "ring_reader", &ring);
    write(&dir, "nvsp", &nvsp_messages());
    let mut rndis = rndis_packets();
    rndis.extend(rndis_messages());
    write(&dir, "rndis", &rndis);
    let pk = rndis_packets();
    let mut control = rndis_messages();
    control.truncate(7);
    let rx = vec![
        rx_script(0, &pk, &[]),
        rx_script(1, &pk, &[]),
        rx_script(0x31, &pk, &[(4000, 9000), (0, 0)]),
        rx_script(0, &control, &[]),
        rx_script(3 | 0x10, &[pk[3].clone(), control[6].clone(), pk[0].clone()], &[]),
    ];
    write(&dir, "rx_transfer", &rx);
    write(&dir, "devargs", &devargs_inputs());
}

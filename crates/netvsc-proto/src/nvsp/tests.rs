//! NVSP tests: protocol.md §9 vectors, deconstruct/construct, round trips, truncation and table bounds.

use super::*;
use crate::error::ProtoError;
use crate::ndis::NdisObjectHeader;

fn le(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap())
}

/// One value of every variant, with distinct field values.
fn samples() -> Vec<NvspMessage> {
    vec![
        NvspMessage::Init(Init {
            min_version: VERSION_5,
            max_version: VERSION_61,
        }),
        NvspMessage::InitComplete(InitComplete {
            negotiated_version: 0xFFFF_FFFF,
            max_mdl_chain_len: 34,
            status: status::SUCCESS,
        }),
        NvspMessage::SendNdisVersion(SendNdisVersion {
            ndis_major: 6,
            ndis_minor: 30,
        }),
        NvspMessage::SendRecvBuf(SendRecvBuf {
            gpadl: 0x1234,
            id: RECV_BUF_ID,
            reserved: 0,
        }),
        NvspMessage::SendRecvBufComplete(SendRecvBufComplete {
            status: 1,
            num_sections: 1,
            section: RecvBufSection {
                offset: 0,
                sub_alloc_size: 1806,
                num_sub_allocs: 100,
                end_offset: 180_600,
            },
        }),
        NvspMessage::RevokeRecvBuf(RevokeRecvBuf {
            id: RECV_BUF_ID,
            reserved: 0,
        }),
        NvspMessage::SendSendBuf(SendSendBuf {
            gpadl: 0x5678,
            id: SEND_BUF_ID,
            reserved: 0,
        }),
        NvspMessage::SendSendBufComplete(SendSendBufComplete {
            status: 1,
            section_size: 6144,
        }),
        NvspMessage::RevokeSendBuf(RevokeSendBuf {
            id: SEND_BUF_ID,
            reserved: 0,
        }),
        NvspMessage::SendRndisPkt(SendRndisPkt {
            channel_type: CHANNEL_TYPE_CONTROL,
            send_buf_section_index: SECTION_INDEX_NONE,
            send_buf_section_size: 0,
        }),
        NvspMessage::SendRndisPktComplete(SendRndisPktComplete {
            status: status::SUCCESS,
        }),
        NvspMessage::SendNdisConfig(SendNdisConfig::new(
            1514,
            ndis_config_caps::IEEE8021Q | ndis_config_caps::SRIOV | (1 << 40),
        )),
        NvspMessage::VfAssociation(VfAssociation {
            allocated: 1,
            serial: 7,
        }),
        NvspMessage::SwitchDataPath(SwitchDataPath {
            active_datapath: DATAPATH_VF,
        }),
        NvspMessage::OidQueryEx(OidQueryEx {
            header: NdisObjectHeader::new(0x80, 1, 8),
            oid: 0x0001_0203,
        }),
        NvspMessage::OidQueryExComplete(OidQueryExComplete {
            status: 1,
            bytes: 18,
        }),
        NvspMessage::Subchannel(Subchannel::allocate(7)),
        NvspMessage::SendIndirectionTable(SendIndirectionTable {
            count: 16,
            offset: 12,
        }),
        NvspMessage::Other {
            msg_type: msg_type::ALLOC_RXBUF,
        },
    ]
}

#[test]
fn init_v61_vector() {
    // protocol.md §9: VMBus in-band packet 06 00 02 00 07 00 01 00 <trans_id> | NVSP | trailer. The descriptor says
    // offset8 = 2 (16-byte descriptor) and len8 = 7 (56 bytes) = 16 + the 40-byte NVSP payload, consistent.
    let mut expected = vec![0x01, 0, 0, 0, 0x01, 0, 0x06, 0, 0x01, 0, 0x06, 0];
    expected.resize(40, 0);
    assert_eq!(16 + expected.len(), 7 * 8);
    let msg = NvspMessage::parse(&expected).unwrap();
    assert_eq!(
        msg,
        NvspMessage::Init(Init {
            min_version: VERSION_61,
            max_version: VERSION_61
        })
    );
    let mut out = [0xa5u8; 40];
    assert_eq!(msg.emit_request(&mut out).unwrap(), 40);
    assert_eq!(&out[..], &expected[..]);
}

#[test]
fn init_complete_vector_28_bytes() {
    // protocol.md §9: OpenVMM's 28-byte INIT_COMPLETE.
    let mut v = vec![
        0x02, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x22, 0, 0, 0, 0x01, 0, 0, 0,
    ];
    v.resize(28, 0);
    let NvspMessage::InitComplete(c) = NvspMessage::parse(&v).unwrap() else {
        panic!("wrong variant")
    };
    assert_eq!(
        (c.negotiated_version, c.max_mdl_chain_len, c.status),
        (0xFFFF_FFFF, 34, status::SUCCESS)
    );
    let mut out = [0xa5u8; 64];
    let n = NvspMessage::InitComplete(c)
        .emit(&mut out, host_reply_len(VERSION_5))
        .unwrap();
    assert_eq!(&out[..n], &v[..]);
    assert_eq!(host_reply_len(VERSION_61), 40);
}

#[test]
fn field_offsets_match_protocol_table() {
    // Construct every sample and read the fields back at the offsets of protocol.md §3.2.
    let b = NvspMessage::SendRecvBufComplete(SendRecvBufComplete {
        status: 1,
        num_sections: 1,
        section: RecvBufSection {
            offset: 0,
            sub_alloc_size: 1806,
            num_sub_allocs: 100,
            end_offset: 180_600,
        },
    })
    .to_bytes();
    assert_eq!(
        (
            le(&b, 0),
            le(&b, 4),
            le(&b, 8),
            le(&b, 16),
            le(&b, 20),
            le(&b, 24)
        ),
        (102, 1, 1, 1806, 100, 180_600)
    );
    let b = NvspMessage::SendRecvBuf(SendRecvBuf {
        gpadl: 0xAABB,
        id: 0xCAFE,
        reserved: 0,
    })
    .to_bytes();
    assert_eq!(
        (le(&b, 4), u16::from_le_bytes([b[8], b[9]])),
        (0xAABB, 0xCAFE)
    );
    let b = NvspMessage::SendRndisPkt(SendRndisPkt {
        channel_type: 0,
        send_buf_section_index: 5,
        send_buf_section_size: 1514,
    })
    .to_bytes();
    assert_eq!(
        (le(&b, 0), le(&b, 4), le(&b, 8), le(&b, 12)),
        (107, 0, 5, 1514)
    );
    // NDIS_CONFIG: caps u64 at the unaligned offset 12.
    let caps = ndis_config_caps::IEEE8021Q
        | ndis_config_caps::SRIOV
        | ndis_config_caps::TEAMING
        | (1 << 35);
    let b = NvspMessage::SendNdisConfig(SendNdisConfig::new(1514, caps)).to_bytes();
    assert_eq!((le(&b, 0), le(&b, 4), le(&b, 8)), (125, 1514, 0));
    assert_eq!(u64::from_le_bytes(b[12..20].try_into().unwrap()), caps);
    assert_eq!(caps & 0xFF, 0x2C);
    let b = NvspMessage::VfAssociation(VfAssociation {
        allocated: 1,
        serial: 0x99,
    })
    .to_bytes();
    assert_eq!((le(&b, 0), le(&b, 4), le(&b, 8)), (128, 1, 0x99));
    let b = NvspMessage::Subchannel(Subchannel::complete(status::SUCCESS, 3)).to_bytes();
    assert_eq!((le(&b, 0), le(&b, 4), le(&b, 8)), (133, 1, 3));
    let b = NvspMessage::OidQueryEx(OidQueryEx {
        header: NdisObjectHeader::new(0x88, 2, 18),
        oid: 0x0001_0203,
    })
    .to_bytes();
    assert_eq!((&b[4..8], le(&b, 8)), (&[0x88, 2, 18, 0][..], 0x0001_0203));
}

#[test]
fn every_variant_round_trips_in_all_forms() {
    for m in samples() {
        for len in [m.encoded_len().max(HOST_REPLY_LEN_V1), MESSAGE_LEN] {
            let mut out = [0xa5u8; 48];
            let n = m.emit(&mut out, len).unwrap();
            assert_eq!(n, len);
            assert!(
                out[m.encoded_len()..n].iter().all(|&x| x == 0),
                "{m:?} not zero-padded"
            );
            assert_eq!(NvspMessage::parse(&out[..n]).unwrap(), m, "len {len}");
        }
        assert_eq!(le(&m.to_bytes(), 0), m.msg_type());
    }
}

#[test]
fn short_forms_and_truncation() {
    // REVOKE_RECV_BUF needs only the u16 id (6 bytes).
    let m = NvspMessage::parse(&[103, 0, 0, 0, 0xFE, 0xCA]).unwrap();
    assert_eq!(
        m,
        NvspMessage::RevokeRecvBuf(RevokeRecvBuf {
            id: 0xCAFE,
            reserved: 0
        })
    );
    // A 12-byte INIT_COMPLETE misses the status.
    let e = NvspMessage::parse(&[2, 0, 0, 0, 0, 0, 6, 0, 34, 0, 0, 0]).unwrap_err();
    assert_eq!(
        e,
        ProtoError::Truncated {
            what: "INIT_COMPLETE",
            needed: 16,
            have: 12
        }
    );
    assert!(matches!(
        NvspMessage::parse(&[1, 0, 0]),
        Err(ProtoError::Truncated {
            needed: 4,
            have: 3,
            ..
        })
    ));
    // Encoding into a too-short length or buffer is refused.
    let m = samples()[4];
    assert!(matches!(
        m.emit(&mut [0u8; 40], 20),
        Err(ProtoError::BufferTooSmall { needed: 28, .. })
    ));
    assert!(matches!(
        m.emit(&mut [0u8; 30], 40),
        Err(ProtoError::BufferTooSmall {
            needed: 40,
            have: 30,
            ..
        })
    ));
}

#[test]
fn unknown_and_obsolete_types_are_preserved() {
    for t in [
        0u32,
        3,
        99,
        109,
        124,
        126,
        127,
        130,
        135,
        136,
        137,
        0xFFFF_FFFF,
    ] {
        let mut b = [0u8; 40];
        b[..4].copy_from_slice(&t.to_le_bytes());
        assert_eq!(
            NvspMessage::parse(&b).unwrap(),
            NvspMessage::Other { msg_type: t }
        );
    }
    assert_eq!(
        msg_type::name(msg_type::PD_POST_BATCH),
        Some("PD_POST_BATCH")
    );
    assert_eq!(
        msg_type::name(msg_type::SEND_NDIS_CONFIG),
        Some("SEND_NDIS_CONFIG")
    );
    assert_eq!(msg_type::name(msg_type::ALLOC_RXBUF), Some("ALLOC_RXBUF"));
    assert_eq!(msg_type::name(137), None);
}

#[test]
fn versions_and_ndis_version() {
    assert_eq!(VERSIONS, [0x60001, 0x60000, 0x50000, 0x40000, 0x30002, 0x2]);
    assert!(VERSIONS.windows(2).all(|w| w[0] > w[1]));
    assert_eq!(ndis_version_for(VERSION_4), (6, 1));
    assert_eq!(ndis_version_for(VERSION_5), (6, 30));
}

fn table_msg(len: usize, offset: u32, table_at: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    b[..4].copy_from_slice(&134u32.to_le_bytes());
    b[4..8].copy_from_slice(&16u32.to_le_bytes());
    b[8..12].copy_from_slice(&offset.to_le_bytes());
    for i in 0..16 {
        b[table_at + 4 * i..table_at + 4 * i + 4].copy_from_slice(&(i as u32 % 3).to_le_bytes());
    }
    b
}

#[test]
fn indirection_table_openvmm_form() {
    // OpenVMM: offset 12, 76-byte message; no fix-up since the message is < 104 bytes.
    let b = table_msg(76, 12, 12);
    for v in [VERSION_5, VERSION_61] {
        let t = IndirectionTable::parse(&b, v).unwrap();
        assert_eq!(t.offset, 12);
        assert!(
            t.entries
                .iter()
                .enumerate()
                .all(|(i, &e)| e == i as u32 % 3)
        );
    }
    let mut out = [0xa5u8; 76];
    let entries: [u32; 16] = core::array::from_fn(|i| i as u32 % 3);
    assert_eq!(build_indirection_table(&mut out, &entries, 12).unwrap(), 76);
    assert_eq!(&out[..], &b[..]);
    assert_eq!(
        NvspMessage::parse(&out).unwrap(),
        NvspMessage::SendIndirectionTable(SendIndirectionTable {
            count: 16,
            offset: 12
        })
    );
}

#[test]
fn indirection_table_offset_fixup() {
    // Old Windows host: table at 40 but a bogus offset; ≤ v6 and ≥ 104 bytes → use 40. At v6.1 the offset is trusted.
    let b = table_msg(104, 0x1000, 40);
    let t = IndirectionTable::parse(&b, VERSION_6).unwrap();
    assert_eq!(t.offset, 40);
    assert_eq!(t.entries[4], 1);
    assert!(matches!(
        IndirectionTable::parse(&b, VERSION_61),
        Err(ProtoError::OutOfRange {
            field: "offset",
            value: 0x1000,
            ..
        })
    ));
}

#[test]
fn indirection_table_bounds() {
    let mut b = table_msg(76, 12, 12);
    b[8..12].copy_from_slice(&13u32.to_le_bytes()); // 13 + 64 > 76
    assert!(matches!(
        IndirectionTable::parse(&b, VERSION_61),
        Err(ProtoError::OutOfRange { .. })
    ));
    b[8..12].copy_from_slice(&4u32.to_le_bytes()); // overlaps the header
    assert!(matches!(
        IndirectionTable::parse(&b, VERSION_61),
        Err(ProtoError::OutOfRange { .. })
    ));
    b[4..8].copy_from_slice(&17u32.to_le_bytes());
    assert!(matches!(
        IndirectionTable::parse(&b, VERSION_61),
        Err(ProtoError::Invalid {
            field: "count",
            value: 17,
            ..
        })
    ));
    assert!(matches!(
        IndirectionTable::parse(&b[..10], VERSION_61),
        Err(ProtoError::Truncated { .. })
    ));
    assert!(build_indirection_table(&mut [0u8; 75], &[0; 16], 12).is_err());
    assert!(build_indirection_table(&mut [0u8; 200], &[0; 16], 6).is_err());
}

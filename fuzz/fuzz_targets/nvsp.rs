//! NVSP messages from a hostile host: every message parser and the send indirection table. A message that parses
//! re-encodes and parses again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netvsc_proto::nvsp::{IndirectionTable, NvspMessage, VERSIONS};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = NvspMessage::parse(data) {
        let bytes = m.to_bytes();
        let again = NvspMessage::parse(&bytes).expect("an emitted message parses");
        assert_eq!(again.msg_type(), m.msg_type());
    }
    let version = VERSIONS[data.first().map_or(0, |b| *b as usize) % VERSIONS.len()];
    let _ = IndirectionTable::parse(data, version);
});

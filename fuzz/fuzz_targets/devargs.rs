//! Devargs strings: any input parses or fails with a typed error that quotes at most 64 characters of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netvsc::{Devargs, Error};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Devargs::parse(text) {
        Ok(d) => {
            assert!(u64::from(d.latency_us) < netvsc::devargs::LATENCY_LIMIT_US);
            assert!(u64::from(d.rx_copybreak) <= netvsc::devargs::COPYBREAK_MAX);
            assert!(u64::from(d.tx_copybreak) <= netvsc::devargs::COPYBREAK_MAX);
            let _ = d.latency_100ns();
        }
        Err(e @ Error::Devarg { .. }) => {
            let Error::Devarg { key, value, .. } = &e else { unreachable!() };
            let quoted = key.chars().count() + value.chars().count();
            assert!(quoted <= netvsc::devargs::QUOTE_MAX, "{quoted} characters quoted");
            let _ = e.to_string();
        }
        Err(e) => panic!("devargs failed with a non-devargs error: {e}"),
    }
});

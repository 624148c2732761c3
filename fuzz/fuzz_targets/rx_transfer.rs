//! Transfer-page packets through the driver's real receive path (`netvsc::fuzzing::RxHarness`: poll →
//! on_transfer → handle_message → take_frame over in-memory rings). The input is a receive buffer and a script of
//! host packets (set id, NVSP announcement, ranges) and guest actions (rx burst, drain poll, control poll); see
//! `Input` for the layout. Frames, views and counters are checked by the harness; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netvsc::Devargs;
use netvsc::fuzzing::{RxHarness, data_announce};
use netvsc_proto::nvsp::{self, NvspMessage, SendRndisPkt};

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }
    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    // Header: flags, receive-buffer length, then the buffer.
    let flags = input.u8();
    let args = Devargs {
        rx_extmbuf_enable: flags & 1 != 0,
        rx_copybreak: if flags & 2 != 0 { 0 } else { 64 },
        ..Devargs::default()
    };
    let max_views = u32::from(flags >> 4);
    let recv_len = usize::from(input.u16() % 16384) + 1;
    let recv = input.bytes(recv_len).to_vec();
    let mut h = RxHarness::new(&recv, args, max_views);
    let mut sent = 0u64;
    // Script: one op byte, then its operands.
    for step in 0..64u64 {
        if input.0.is_empty() {
            break;
        }
        let op = input.u8();
        match op % 4 {
            0 | 1 => {
                let set_id = if op & 0x10 != 0 { input.u16() } else { nvsp::RECV_BUF_ID };
                let announce = match (op >> 5) & 3 {
                    0 | 1 => data_announce(),
                    2 => NvspMessage::SendRndisPkt(SendRndisPkt {
                        channel_type: nvsp::CHANNEL_TYPE_CONTROL,
                        send_buf_section_index: u32::MAX,
                        send_buf_section_size: 0,
                    })
                    .to_bytes(),
                    _ => {
                        let mut raw = [0u8; nvsp::MESSAGE_LEN];
                        let b = input.bytes(nvsp::MESSAGE_LEN);
                        raw[..b.len()].copy_from_slice(b);
                        raw
                    }
                };
                // Up to 600 ranges (past the driver's 562 limit); small offsets/lengths unless `wide`.
                let count = usize::from(input.u16() % 601);
                let wide = op & 0x80 != 0 && op & 1 != 0;
                let mut ranges = Vec::with_capacity(count);
                for _ in 0..count {
                    if input.0.is_empty() {
                        break;
                    }
                    let r = if wide {
                        (input.u32(), input.u32())
                    } else {
                        (u32::from(input.u16()), u32::from(input.u16()))
                    };
                    ranges.push(r);
                }
                if h.host_send(step, set_id, &ranges, &announce) {
                    sent += 1;
                }
            }
            2 => {
                h.rx_burst();
            }
            _ => {
                if op & 0x80 != 0 {
                    h.control();
                } else {
                    h.drain();
                }
            }
        }
    }
    // The guest drains everything; every transfer the host sent must then be completed exactly once.
    for _ in 0..1024 {
        if h.rx_burst() == 0 && h.drain() == 0 {
            break;
        }
    }
    assert!(h.completions <= sent, "{} completions for {sent} transfers", h.completions);
});

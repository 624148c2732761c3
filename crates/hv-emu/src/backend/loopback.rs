//! The loopback backend: every frame the guest sends comes back to it as a received frame.
//! Frames wait in a bounded queue of reused buffers; overflow is counted and dropped.

use super::Backend;
use std::collections::VecDeque;
use std::time::Instant;

/// Reflects transmitted frames back to the guest.
#[derive(Debug)]
pub struct Loopback {
    queue: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    capacity: usize,
    reflected: u64,
    overflow: u64,
}

impl Loopback {
    /// A loopback holding at most `capacity` frames in flight.
    pub fn new(capacity: usize) -> Self {
        Loopback {
            queue: VecDeque::with_capacity(capacity),
            spare: Vec::new(),
            capacity,
            reflected: 0,
            overflow: 0,
        }
    }
}

impl Backend for Loopback {
    fn name(&self) -> &'static str {
        "loopback"
    }
    fn transmit(&mut self, frame: &[u8]) {
        if self.queue.len() >= self.capacity {
            self.overflow += 1;
            return;
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        self.queue.push_back(buf);
    }
    fn receive(&mut self, _now: Instant, budget: usize, deliver: &mut dyn FnMut(&[u8])) -> usize {
        let mut n = 0;
        while n < budget {
            let Some(buf) = self.queue.pop_front() else {
                break;
            };
            deliver(&buf);
            self.spare.push(buf);
            n += 1;
        }
        self.reflected += n as u64;
        n
    }
    fn dropped(&self) -> u64 {
        self.overflow
    }
    fn produced(&self) -> u64 {
        self.reflected
    }
    fn stats(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "loopback", "reflected": self.reflected, "overflow": self.overflow, "queued": self.queue.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Totals;

    #[test]
    fn overflow_is_a_drop_reason() {
        let mut l = Loopback::new(2);
        for _ in 0..5 {
            l.transmit(&[0u8; 60]);
        }
        assert_eq!(l.dropped(), 3);
        let mut got = 0;
        l.receive(Instant::now(), 8, &mut |_| got += 1);
        assert_eq!(got, 2);
        let t = Totals::sum_with_backend(&[], l.dropped(), 0);
        assert_eq!(t.drops.backend_overflow, 3);
        assert_eq!(t.drops.total(), 3);
        assert_eq!(l.stats()["overflow"], 3);
    }
}

//! The capture backend for tests: records every transmitted frame and delivers frames injected
//! through its handle.

use super::Backend;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Shared view of a capture backend.
#[derive(Debug, Clone, Default)]
pub struct CaptureHandle {
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    inject: Arc<Mutex<VecDeque<Vec<u8>>>>,
}

impl CaptureHandle {
    /// Frames the guest sent so far.
    pub fn sent(&self) -> Vec<Vec<u8>> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Queue a frame for delivery to the guest.
    pub fn inject(&self, frame: &[u8]) {
        self.inject
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(frame.to_vec());
    }
}

/// Records tx, delivers injected rx.
#[derive(Debug)]
pub struct Capture(pub CaptureHandle);

impl Backend for Capture {
    fn name(&self) -> &'static str {
        "capture"
    }
    fn transmit(&mut self, frame: &[u8]) {
        self.0
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(frame.to_vec());
    }
    fn receive(&mut self, _now: Instant, budget: usize, deliver: &mut dyn FnMut(&[u8])) -> usize {
        let mut q = self.0.inject.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        while n < budget {
            let Some(f) = q.pop_front() else { break };
            deliver(&f);
            n += 1;
        }
        n
    }
}

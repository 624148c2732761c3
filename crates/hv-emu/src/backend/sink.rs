//! The sink backend: counts what the guest sends and drops it; delivers nothing.

use super::Backend;
use std::time::Instant;

/// Count-and-drop backend.
#[derive(Debug, Default)]
pub struct Sink {
    frames: u64,
    bytes: u64,
}

impl Backend for Sink {
    fn name(&self) -> &'static str {
        "sink"
    }
    fn transmit(&mut self, frame: &[u8]) {
        self.frames += 1;
        self.bytes += frame.len() as u64;
    }
    fn receive(&mut self, _now: Instant, _budget: usize, _deliver: &mut dyn FnMut(&[u8])) -> usize {
        0
    }
    fn stats(&self) -> serde_json::Value {
        serde_json::json!({ "kind": "sink", "frames": self.frames, "bytes": self.bytes })
    }
}

//! The generator backend: receive traffic at a set rate (or as fast as the guest takes it).
//!
//! Frames are pre-built per (flow, size) with valid IPv4 and TCP/UDP checksums, so generating is a
//! copy; flows alternate TCP and UDP with distinct addresses and ports so RSS spreads them.
//! Every `multicast_every`-th / `broadcast_every`-th frame goes to a group / broadcast address.

use super::Backend;
use crate::host::frame;
use std::time::Instant;

/// What the generator produces.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Frames per second; `None` = as many as the host asks for.
    pub rate_pps: Option<u64>,
    /// Frame sizes (Ethernet header included, no FCS; at least 60), used round robin.
    pub frame_sizes: Vec<usize>,
    /// Tag every frame with this 802.1Q TCI.
    pub vlan: Option<u16>,
    /// Every n-th frame is multicast (0 = never).
    pub multicast_every: u32,
    /// Every n-th frame is broadcast (0 = never).
    pub broadcast_every: u32,
    /// Number of distinct flows (even: TCP, odd: UDP).
    pub flows: u32,
    /// Destination MAC of directed frames (the NIC's address).
    pub dst_mac: [u8; 6],
    /// Stop after this many frames.
    pub limit: Option<u64>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            rate_pps: Some(1000),
            frame_sizes: vec![64],
            vlan: None,
            multicast_every: 0,
            broadcast_every: 0,
            flows: 1,
            dst_mac: [0x00, 0x15, 0x5d, 0x00, 0x00, 0x01],
            limit: None,
        }
    }
}

/// Generates receive traffic.
#[derive(Debug)]
pub struct Generator {
    cfg: GeneratorConfig,
    templates: Vec<Vec<u8>>,
    scratch: Vec<u8>,
    start: Option<Instant>,
    generated: u64,
    bytes: u64,
    multicast: u64,
    broadcast: u64,
}

/// Source MAC of generated frames.
pub const GENERATOR_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// Build one directed frame of `len` bytes for flow `i`.
pub fn build_flow_frame(dst: [u8; 6], flow: u32, len: usize) -> Vec<u8> {
    let tcp = flow.is_multiple_of(2);
    let l4_hdr = if tcp { 20 } else { 8 };
    let len = len.max(14 + 20 + l4_hdr);
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&GENERATOR_MAC);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    f[18..20].copy_from_slice(&(flow as u16).to_be_bytes());
    f[22] = 64;
    f[23] = if tcp { 6 } else { 17 };
    f[26..30].copy_from_slice(&[10, 1, (flow >> 8) as u8, flow as u8]);
    f[30..34].copy_from_slice(&[10, 0, 0, 1]);
    f[34..36].copy_from_slice(&(10000u16.wrapping_add(flow as u16)).to_be_bytes());
    f[36..38].copy_from_slice(&(if tcp { 80u16 } else { 5000 }).to_be_bytes());
    if tcp {
        f[38..42].copy_from_slice(&(flow.wrapping_mul(7919)).to_be_bytes());
        f[46] = 0x50;
        f[47] = 0x18;
        f[48..50].copy_from_slice(&0xFFFFu16.to_be_bytes());
    } else {
        f[38..40].copy_from_slice(&((len - 34) as u16).to_be_bytes());
    }
    for (i, b) in f[34 + l4_hdr..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(flow as u8);
    }
    frame::fill_ipv4_checksum(&mut f);
    frame::fill_l4_checksum(&mut f);
    f
}

impl Generator {
    /// A generator for `cfg`.
    pub fn new(cfg: GeneratorConfig) -> Self {
        let sizes = if cfg.frame_sizes.is_empty() {
            vec![64]
        } else {
            cfg.frame_sizes.clone()
        };
        let mut templates = Vec::new();
        for flow in 0..cfg.flows.max(1) {
            for &len in &sizes {
                let f = build_flow_frame(cfg.dst_mac, flow, len);
                templates.push(match cfg.vlan {
                    Some(tci) => {
                        let mut t = Vec::with_capacity(f.len() + 4);
                        frame::push_tagged(&f, tci, &mut t);
                        t
                    }
                    None => f,
                });
            }
        }
        Generator {
            cfg,
            templates,
            scratch: Vec::new(),
            start: None,
            generated: 0,
            bytes: 0,
            multicast: 0,
            broadcast: 0,
        }
    }

    /// Frames generated so far.
    pub fn generated(&self) -> u64 {
        self.generated
    }
}

impl Backend for Generator {
    fn name(&self) -> &'static str {
        "generator"
    }
    fn transmit(&mut self, _frame: &[u8]) {}
    fn receive(&mut self, now: Instant, budget: usize, deliver: &mut dyn FnMut(&[u8])) -> usize {
        let start = *self.start.get_or_insert(now);
        let mut allowed = budget as u64;
        if let Some(pps) = self.cfg.rate_pps {
            let due =
                (now.duration_since(start).as_nanos() * u128::from(pps) / 1_000_000_000) as u64;
            allowed = allowed.min(due.saturating_sub(self.generated));
        }
        if let Some(limit) = self.cfg.limit {
            allowed = allowed.min(limit.saturating_sub(self.generated));
        }
        for _ in 0..allowed {
            let n = self.generated + 1;
            let t = &self.templates[(self.generated % self.templates.len() as u64) as usize];
            let bcast = self.cfg.broadcast_every != 0
                && n.is_multiple_of(u64::from(self.cfg.broadcast_every));
            let mcast = !bcast
                && self.cfg.multicast_every != 0
                && n.is_multiple_of(u64::from(self.cfg.multicast_every));
            if bcast || mcast {
                self.scratch.clear();
                self.scratch.extend_from_slice(t);
                let dst: [u8; 6] = if bcast {
                    [0xFF; 6]
                } else {
                    [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]
                };
                self.scratch[..6].copy_from_slice(&dst);
                if bcast {
                    self.broadcast += 1;
                } else {
                    self.multicast += 1;
                }
                deliver(&self.scratch);
            } else {
                deliver(t);
            }
            self.bytes += t.len() as u64;
            self.generated = n;
        }
        allowed as usize
    }
    fn stats(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "generator", "generated": self.generated, "bytes": self.bytes,
            "multicast": self.multicast, "broadcast": self.broadcast,
        })
    }
}

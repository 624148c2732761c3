//! Runtime reconfiguration, as DPDK 26.03 and ethtool allow: RSS by one OID set (disable, then the new block) with
//! channels open; the queue count by a re-initialisation that first stops the host and copies every delivered
//! frame out of the old rings, so the next bursts return it (nothing the host delivered is lost).

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bringup::set_oid;
use crate::device::{Device, Reuse};
use crate::error::{Error, Result};
use crate::ndis::{self, RSS_TABLE, hash_types};
use crate::queue::{Mode, POLL_BUDGET_PACKETS, QueueCore, control_lock, lock};
use crate::rx::RxPacket;
use netvsc_proto::{nvsp, oid};

/// RSS as the device has it configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssConfig {
    /// Toeplitz key.
    pub key: [u8; 40],
    /// Queue of each of the 128 hash buckets (bucket = hash % 128).
    pub table: [u16; RSS_TABLE],
    /// Hash types ([`ndis::hash_types`] bits).
    pub hash_types: u32,
    /// Whether the host hashes: more than one queue at bring-up, or a [`Device::set_rss`] with hash types. Off,
    /// every frame arrives on queue 0.
    pub enabled: bool,
}

/// An RSS change for [`Device::set_rss`]: `None` keeps that part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RssUpdate {
    /// A new Toeplitz key.
    pub key: Option<[u8; 40]>,
    /// A new indirection table; every entry must be a live queue.
    pub table: Option<[u16; RSS_TABLE]>,
    /// New hash types ([`ndis::hash_types`] bits); 0 turns RSS off (everything on queue 0).
    pub hash_types: Option<u32>,
}

/// Longest wait for the host to complete sends before a queue-count change (DPDK drains up to 1 s on stop).
const TX_SETTLE: Duration = Duration::from_secs(1);
/// Longest wait for the host to read what we wrote before the rings close (DPDK's 200 ms).
const RING_SETTLE: Duration = Duration::from_millis(200);

/// Undoes the burst pause of a reconfiguration on every way out.
struct Paused(Arc<crate::shared::Shared>);

impl Drop for Paused {
    fn drop(&mut self) {
        self.0.control_waiting.fetch_sub(1, Relaxed);
    }
}

impl Device {
    /// The RSS configuration in force.
    pub fn rss(&self) -> RssConfig {
        self.rss
    }

    /// Change the RSS key, indirection table and/or hash types on the open device: an RNDIS set of
    /// OID_GEN_RECEIVE_SCALE_PARAMETERS with RSS disabled, then one with the new parameters (as Linux and DPDK
    /// do). No channel is reopened and nothing in the rings moves; frames the host steers after the second reply
    /// follow the new table. Needs NVSP ≥ 5.
    pub fn set_rss(&mut self, update: RssUpdate) -> Result<()> {
        if self.shared.closed() {
            return Err(Error::Closed);
        }
        if self.info.nvsp_version < nvsp::VERSION_5 {
            return Err(Error::NotSupported("RSS below NVSP v5"));
        }
        let mut next = self.rss;
        if let Some(k) = update.key {
            next.key = k;
        }
        if let Some(t) = update.table {
            if let Some(bad) = t.iter().find(|q| **q >= self.info.queues) {
                return Err(Error::Config {
                    what: "rss table entry (not a queue of the device)",
                    value: u64::from(*bad),
                });
            }
            next.table = t;
        }
        if let Some(h) = update.hash_types {
            if h & !hash_types::ALL != 0 {
                return Err(Error::Config {
                    what: "rss hash types",
                    value: u64::from(h),
                });
            }
            next.hash_types = h;
        }
        next.enabled = next.hash_types != 0;
        let t = self.cfg.timeouts.rndis;
        let was = self.rss;
        let mut core = self.ctl()?;
        // Linux goes on whatever the host answers to the DISABLE; so do we (unless turning RSS off is the change).
        let mut r = Ok(());
        if was.enabled {
            r = set_oid(
                &mut core,
                &self.ctl_page,
                &self.ids,
                oid::GEN_RECEIVE_SCALE_PARAMETERS,
                &ndis::rss_params(&was.key, &was.table, was.hash_types, true),
                "disable RSS",
                t,
            );
        }
        let disabled = was.enabled && r.is_ok();
        if next.enabled {
            r = set_oid(
                &mut core,
                &self.ctl_page,
                &self.ids,
                oid::GEN_RECEIVE_SCALE_PARAMETERS,
                &ndis::rss_params(&next.key, &next.table, next.hash_types, false),
                "set RSS params",
                t,
            );
        }
        drop(core);
        match r {
            Ok(()) => {
                self.rss = next;
                // A recovery re-applies what was set last.
                self.cfg.rss_key = Some(next.key);
                self.cfg.rss_table = Some(next.table);
                self.cfg.rss_hash_types = Some(next.hash_types);
                Ok(())
            }
            Err(e) => {
                if disabled {
                    self.rss.enabled = false;
                }
                Err(e)
            }
        }
    }

    /// Change the number of queue pairs on the open device (started or not), as `ethtool -L` and DPDK 26.03's
    /// stop/configure/start do: a full NVSP/RNDIS re-initialisation with the new subchannel count, the RSS table
    /// reset to round robin over the new queues (key and hash types kept). Lossless for what the host delivered:
    /// bursts on every queue step aside; the host is stopped (packet filter 0, sends completed, RNDIS HALT,
    /// buffers revoked); every frame still in a ring, the backlog or a cursor is copied out; then the device
    /// reopens and each queue's next bursts return its frames first (those of a removed queue go to the queue
    /// the new table gives their hash, else queue 0). Handles of queues below the new count stay valid and keep
    /// their counters; a removed queue's handle reports [`crate::QueuePair::retired`] and takes nothing, and its
    /// counters stay in the port totals. Refused while zero-copy views are held ([`Error::ViewsOutstanding`]).
    /// A VF is closed and paired again, as on recovery.
    pub fn set_queues(&mut self, n: u16) -> Result<()> {
        if self.shared.closed() {
            return Err(Error::Closed);
        }
        if n == 0 || n > 64 {
            return Err(Error::Config {
                what: "queues",
                value: u64::from(n),
            });
        }
        if n > 1 && self.info.nvsp_version < nvsp::VERSION_5 {
            return Err(Error::NotSupported("more than one queue below NVSP v5"));
        }
        if u32::from(n) > self.info.host_queues {
            return Err(Error::Config {
                what: "queues (more than the host offers)",
                value: u64::from(n),
            });
        }
        if n == self.info.queues {
            return Ok(());
        }
        // Bursts on every queue return 0 from here on (they step aside for a waiting control operation).
        self.shared.control_waiting.fetch_add(1, Relaxed);
        let pause = Paused(self.shared.clone());
        for c in &self.cores {
            let g = lock(c);
            if g.rx.outstanding() > 0 {
                return Err(Error::ViewsOutstanding {
                    queue: g.id,
                    count: g.rx.outstanding(),
                    what: "changing the queue count",
                });
            }
        }
        let was_started = self.is_started();
        let (promisc, allmulti, mc_list) = (self.promisc, self.allmulti, self.mc_list.clone());
        // 1. The VF first (data path back to synthetic, VF closed), then the host stops delivering: filter 0,
        // with `started` still set so frames met while waiting for replies are set aside, not dropped.
        self.stop_vf_manager();
        if self.vf_datapath {
            self.switch_datapath(false)?;
        }
        if self.filter != 0 {
            self.set_filter(0)?;
        }
        // 2. Sends settle: the host completes what it has (frames met go to the backlog or a cursor).
        let until = Instant::now() + TX_SETTLE;
        let unsettled = loop {
            let mut left = 0u64;
            for c in &self.cores {
                let mut g = lock(c);
                g.poll(Mode::Drain, POLL_BUDGET_PACKETS);
                left += u64::from(g.tx.in_flight());
            }
            if left == 0 || Instant::now() >= until {
                break left;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        // 3. The host lets go of the buffers; nothing more arrives.
        {
            let mut core = control_lock(&self.cores[0], &self.shared);
            self.halt_and_revoke(&mut core)?;
        }
        // 4. Hand-over: copy out what is left, until a pass finds nothing (twice, 1 ms apart).
        let mut carried: Vec<VecDeque<RxPacket>> =
            self.cores.iter().map(|_| VecDeque::new()).collect();
        let mut quiet = 0;
        while quiet < 2 {
            let mut got = 0;
            for (c, out) in self.cores.iter().zip(&mut carried) {
                let mut more = crate::rx::drain_for_handover(&mut lock(c), true);
                got += more.len();
                out.append(&mut more);
            }
            quiet = if got == 0 { quiet + 1 } else { 0 };
            std::thread::sleep(Duration::from_millis(1));
        }
        settle_rings(&self.cores);
        // 5. Reopen with `n` queues; the first cells take the new state, the rest retire.
        let cfg = crate::config::DeviceConfig {
            queues: n,
            rss_table: None,
            rss_key: Some(self.rss.key),
            rss_hash_types: Some(self.rss.hash_types),
            ..self.cfg.clone()
        };
        self.teardown();
        let old = self.shared.clone();
        let old_cells = self.cores.clone();
        let mut kept = Some(self.take_kept());
        let until = Instant::now() + self.cfg.timeouts.nvsp;
        let reopened = loop {
            let r = Device::open_into(
                &self.root.clone(),
                &self.name.clone(),
                cfg.clone(),
                Some(Reuse {
                    cells: &old_cells,
                    exact: false,
                }),
                &mut kept,
            );
            match r {
                Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
                r => break r,
            }
        };
        if let Some(k) = kept {
            self.kept = k;
        }
        let mut dev = reopened?;
        if dev.info.queues != n {
            // The host granted fewer subchannels than it advertised; what it granted is what we have.
            dev.cfg.queues = dev.info.queues;
        }
        while let Some(ev) = old.pop_event() {
            dev.shared.push_event(ev);
        }
        dev.recoveries = self.recoveries;
        dev.tx_unsettled = self.tx_unsettled + unsettled;
        let live = dev.cores.len();
        for cell in old_cells.iter().skip(live) {
            let mut g = lock(cell);
            g.retired = Some(live as u16);
            dev.kept.retired.push(g.stats.clone());
        }
        hand_over(&dev, carried);
        drop(pause);
        // The old session's buffers go here; what the allocator would keep of them is returned shortly.
        *self = dev;
        vmbus_uio::heap::release_free_heap_soon();
        self.promisc = promisc;
        self.allmulti = allmulti;
        if !mc_list.is_empty() {
            self.set_multicast_list(&mc_list)?;
        }
        if was_started {
            self.start()?;
        }
        Ok(())
    }
}

/// Wait (bounded) until the host has read everything we wrote on every queue's guest→host ring, so nothing of
/// the old session is read after the new one begins.
pub(crate) fn settle_rings(cores: &[Arc<Mutex<QueueCore>>]) {
    let until = Instant::now() + RING_SETTLE;
    for c in cores {
        let mut g = lock(c);
        let idle = g.chan.idle_available();
        while g.chan.available() < idle && Instant::now() < until {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Give each live queue the frames copied out of its old rings, and the frames of removed queues to the queue the
/// new table gives their hash (queue 0 without a hash), in their order.
pub(crate) fn hand_over(dev: &Device, carried: Vec<VecDeque<RxPacket>>) {
    let live = dev.cores.len();
    let mut moved: Vec<VecDeque<RxPacket>> = (0..live).map(|_| VecDeque::new()).collect();
    for (q, frames) in carried.into_iter().enumerate() {
        if q < live {
            moved[q].extend(frames);
            continue;
        }
        for f in frames {
            let to = match (dev.rss.enabled, f.meta.rss_hash) {
                (true, Some(h)) => usize::from(dev.rss.table[h as usize % RSS_TABLE]).min(live - 1),
                _ => 0,
            };
            moved[to].push_back(f);
        }
    }
    for (c, frames) in dev.cores.iter().zip(moved) {
        if !frames.is_empty() {
            lock(c).carry.extend(frames);
        }
    }
}

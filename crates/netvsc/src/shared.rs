//! State every queue of one device reads: the receive and send buffers, limits negotiated at
//! bring-up, the started/closed flags, and the event queue status indications feed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, OnceLock};

use vmbus_ring::SharedMem;

use crate::devargs::Devargs;
use crate::link::Event;
use crate::vf::VfShared;
use crate::vf::manager::Cmd;

/// Events kept before the oldest is dropped.
const EVENT_CAP: usize = 1024;

/// Tx aggregation limits from RNDIS INITIALIZE_CMPLT and the send section size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggLimits {
    /// RNDIS messages per send section.
    pub max_pkts: u32,
    /// Bytes per send section (min of section size and the host's max transfer size).
    pub max_bytes: u32,
    /// Each message but the last is padded to this (power of two, ≥ 4 as DPDK forces).
    pub align: u32,
}

pub(crate) struct Shared {
    pub recv_buf: SharedMem,
    pub agg: AggLimits,
    pub args: Devargs,
    pub started: AtomicBool,
    pub closed: AtomicBool,
    pub link_up: AtomicBool,
    pub link_speed: AtomicU32,
    pub vf_allocated: AtomicBool,
    pub vf_serial: AtomicU32,
    pub host_switched_datapath: AtomicU64,
    /// Negotiated NVSP version (0 until known).
    pub nvsp_version: AtomicU32,
    /// VF info and counters (their own allocation, so counter handles like `VfStats` do not keep the receive
    /// buffer mapping and the rest of this state alive after close).
    pub vf: Arc<VfShared>,
    /// The VF manager's command channel, once it runs.
    pub vf_cmd: OnceLock<Sender<Cmd>>,
    /// Control operations waiting for a queue's lock: bursts step aside while this is non-zero (see
    /// `queue::control_lock`).
    pub control_waiting: AtomicU32,
    /// Some queue saw a corrupt ring since bring-up.
    pub faulted: AtomicBool,
    /// Queue pairs in use (0 until bring-up knows): send tables naming others are refused.
    pub queues: AtomicU16,
    /// The host's send indirection table (NVSP SEND_INDIRECTION_TABLE, validated), when it sent one.
    pub send_table: Mutex<Option<[u16; SEND_TABLE_SIZE]>>,
    events: Mutex<VecDeque<Event>>,
}

/// Entries of the host's send indirection table (VRSS_SEND_TAB_SIZE).
pub const SEND_TABLE_SIZE: usize = netvsc_proto::nvsp::SEND_TABLE_SIZE;

impl Shared {
    pub fn new(recv_buf: SharedMem, agg: AggLimits, args: Devargs) -> Shared {
        Shared {
            recv_buf,
            agg,
            args,
            started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            link_up: AtomicBool::new(false),
            link_speed: AtomicU32::new(0),
            vf_allocated: AtomicBool::new(false),
            vf_serial: AtomicU32::new(0),
            host_switched_datapath: AtomicU64::new(0),
            nvsp_version: AtomicU32::new(0),
            vf: Arc::new(VfShared::default()),
            vf_cmd: OnceLock::new(),
            control_waiting: AtomicU32::new(0),
            faulted: AtomicBool::new(false),
            queues: AtomicU16::new(0),
            send_table: Mutex::new(None),
            events: Mutex::new(VecDeque::with_capacity(64)),
        }
    }

    pub fn push_event(&self, ev: Event) {
        let mut q = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == EVENT_CAP {
            q.pop_front();
        }
        q.push_back(ev);
    }

    pub fn pop_event(&self) -> Option<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    /// The send indirection table, when the host sent a valid one.
    pub fn send_table(&self) -> Option<[u16; SEND_TABLE_SIZE]> {
        *self.send_table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `table` if every entry names a queue in use (any of the 64 a host may offer while that is unknown).
    /// False (nothing kept) otherwise.
    pub fn accept_send_table(&self, table: &[u32; SEND_TABLE_SIZE]) -> bool {
        let limit = match self.queues.load(Relaxed) {
            0 => 64,
            n => u32::from(n),
        };
        if table.iter().any(|&e| e >= limit) {
            return false;
        }
        let t = table.map(|e| e as u16);
        *self.send_table.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
        true
    }

    pub fn started(&self) -> bool {
        self.started.load(Relaxed)
    }

    pub fn closed(&self) -> bool {
        self.closed.load(Relaxed)
    }
}

//! Process-wide tables shared by every `napi_env` (the main thread and each worker load the same library once):
//! the devices open in this process, by `root` + uuid, so a worker can find a device the main thread opened, and
//! the queues claimed on them, so no queue is ever polled by two owners. A claim is released when its `Queue` is
//! closed or collected, or by an env cleanup hook when the worker that holds it terminates.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::errors::{Code, Result, error};
use crate::nic::DeviceCore;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

static DEVICES: Mutex<Option<HashMap<String, Weak<DeviceCore>>>> = Mutex::new(None);
static CLAIMS: Mutex<Option<HashSet<(String, u16)>>> = Mutex::new(None);

/// Key of a device: canonical root + uuid.
pub fn device_key(root: &std::path::Path, uuid: &str) -> String {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    format!("{}|{}", root.display(), uuid)
}

/// Record an open device; fails when the same device is already open in this process.
pub fn add_device(key: &str, core: &Arc<DeviceCore>) -> Result<()> {
    let mut g = lock(&DEVICES);
    let map = g.get_or_insert_with(HashMap::new);
    if let Some(old) = map.get(key).and_then(Weak::upgrade)
        && !old.is_closed()
    {
        return Err(error(
            Code::QueueBusy,
            format!("device {key} is already open in this process (close it first)"),
        ));
    }
    map.insert(key.to_owned(), Arc::downgrade(core));
    Ok(())
}

/// Forget a device (on close).
pub fn remove_device(key: &str, core: &DeviceCore) {
    let mut g = lock(&DEVICES);
    if let Some(map) = g.as_mut()
        && let Some(w) = map.get(key)
        && std::ptr::eq(w.as_ptr(), core)
    {
        map.remove(key);
    }
}

/// The open device with this key.
pub fn find_device(key: &str) -> Option<Arc<DeviceCore>> {
    lock(&DEVICES)
        .as_ref()
        .and_then(|m| m.get(key))
        .and_then(Weak::upgrade)
        .filter(|d| !d.is_closed())
}

/// A claim on one queue of one device; released once (explicitly, on drop, or by a cleanup hook).
#[derive(Debug)]
pub struct Claim {
    key: String,
    index: u16,
    released: AtomicBool,
}

impl Claim {
    /// Claim queue `index` of device `key`, or fail with `ERR_NETVSC_QUEUE_BUSY`.
    pub fn take(key: &str, index: u16) -> Result<Arc<Claim>> {
        let mut g = lock(&CLAIMS);
        let set = g.get_or_insert_with(HashSet::new);
        if !set.insert((key.to_owned(), index)) {
            return Err(error(
                Code::QueueBusy,
                format!(
                    "queue {index} of {key} is already open (one owner per queue: one worker, one Queue object)"
                ),
            ));
        }
        Ok(Arc::new(Claim {
            key: key.to_owned(),
            index,
            released: AtomicBool::new(false),
        }))
    }

    /// Give the queue back (idempotent).
    pub fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel)
            && let Some(set) = lock(&CLAIMS).as_mut()
        {
            set.remove(&(self.key.clone(), self.index));
        }
    }

    /// Whether the claim was given back.
    pub fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.release();
    }
}

/// Number of queues currently claimed in the process (tests and `netvsc info`).
pub fn claimed_count() -> usize {
    lock(&CLAIMS).as_ref().map_or(0, HashSet::len)
}

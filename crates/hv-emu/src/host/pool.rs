//! Receive-buffer sub-allocation accounting.
//!
//! The receive buffer is cut into `count` sub-allocations. The first 16 are reserved for control
//! replies and indications (like OpenVMM); the rest are split evenly between the open channels.
//! A transfer-page packet carries a chain of sub-allocations and its transaction id is the first
//! index; the chain returns to its owners only when the guest completes that transaction id.

/// Sub-allocations reserved for RNDIS control replies and status indications.
pub const RESERVED: u32 = 16;
const END: u32 = u32::MAX;

/// Why a completion could not be matched to an outstanding chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompleteError {
    /// The transaction id is not the head of an outstanding chain.
    Unknown,
}

/// Free lists per owner (index 0 = control, 1 + n = channel n) and the outstanding chains.
#[derive(Debug, Default)]
pub struct RecvPool {
    count: u32,
    queues: u32,
    free: Vec<Vec<u32>>,
    /// Next index in the chain, or END; valid while the index is outstanding.
    next: Vec<u32>,
    /// True while an index is outstanding (given to the guest, not yet completed).
    busy: Vec<bool>,
    /// True for the head index of an outstanding chain.
    head: Vec<bool>,
}

impl RecvPool {
    /// A pool of `count` sub-allocations split for `queues` channels.
    pub fn new(count: u32, queues: u32) -> Self {
        let n = count as usize;
        let mut pool = RecvPool {
            count,
            queues: 0,
            free: Vec::new(),
            next: vec![END; n],
            busy: vec![false; n],
            head: vec![false; n],
        };
        pool.repartition(queues.max(1));
        pool
    }

    /// Number of sub-allocations in the buffer.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The owner of an index under the current split: 0 = control, 1 + q = channel q.
    pub fn owner(&self, index: u32) -> usize {
        if index < RESERVED.min(self.count) {
            return 0;
        }
        let data = self.count.saturating_sub(RESERVED);
        let per = (data / self.queues).max(1);
        1 + ((index - RESERVED) / per).min(self.queues - 1) as usize
    }

    /// Re-split the data sub-allocations between `queues` channels; outstanding indices join
    /// their new owner's list when they are completed.
    pub fn repartition(&mut self, queues: u32) {
        self.queues = queues.max(1);
        self.free = (0..=self.queues as usize).map(|_| Vec::new()).collect();
        for i in (0..self.count).rev() {
            if !self.busy[i as usize] {
                let o = self.owner(i);
                self.free[o].push(i);
            }
        }
    }

    /// Take one free index of `owner` (0 = control, 1 + q = channel q).
    pub fn alloc(&mut self, owner: usize) -> Option<u32> {
        let i = self.free.get_mut(owner)?.pop()?;
        self.busy[i as usize] = true;
        self.next[i as usize] = END;
        Some(i)
    }

    /// Give back an index that was never handed to the guest.
    pub fn release(&mut self, index: u32) {
        if let Some(b) = self.busy.get_mut(index as usize).filter(|b| **b) {
            *b = false;
            self.head[index as usize] = false;
            let o = self.owner(index);
            self.free[o].push(index);
        }
    }

    /// Record that `indices` travel together in one transfer-page packet (head = first).
    pub fn link(&mut self, indices: &[u32]) {
        for w in indices.windows(2) {
            self.next[w[0] as usize] = w[1];
        }
        if let Some(&first) = indices.first() {
            self.head[first as usize] = true;
        }
    }

    /// The guest completed the packet whose transaction id is `head`: free its whole chain.
    pub fn complete(&mut self, head: u64) -> Result<u32, CompleteError> {
        let h = usize::try_from(head).map_err(|_| CompleteError::Unknown)?;
        if !self.head.get(h).copied().unwrap_or(false) {
            return Err(CompleteError::Unknown);
        }
        self.head[h] = false;
        let mut freed = 0;
        let mut cur = h as u32;
        // Bounded walk: a chain can never be longer than the pool.
        for _ in 0..self.count {
            let next = self.next[cur as usize];
            self.next[cur as usize] = END;
            self.busy[cur as usize] = false;
            let o = self.owner(cur);
            self.free[o].push(cur);
            freed += 1;
            if next == END {
                break;
            }
            cur = next;
        }
        Ok(freed)
    }

    /// Free indices of `owner`.
    pub fn free_count(&self, owner: usize) -> usize {
        self.free.get(owner).map_or(0, Vec::len)
    }

    /// Indices currently held by the guest.
    pub fn outstanding(&self) -> usize {
        self.busy.iter().filter(|b| **b).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_reserves_control_and_divides_data() {
        let mut p = RecvPool::new(116, 1);
        assert_eq!(p.free_count(0), 16);
        assert_eq!(p.free_count(1), 100);
        p.repartition(4);
        assert_eq!((1..=4).map(|o| p.free_count(o)).sum::<usize>(), 100);
        assert_eq!(p.free_count(2), 25);
    }

    #[test]
    fn chains_return_only_on_completion_of_their_head() {
        let mut p = RecvPool::new(20, 1);
        let chain: Vec<u32> = (0..4).map(|_| p.alloc(1).unwrap()).collect();
        assert_eq!(p.alloc(1), None);
        p.link(&chain);
        assert_eq!(p.complete(u64::from(chain[1])), Err(CompleteError::Unknown));
        assert_eq!(p.complete(u64::from(chain[0])), Ok(4));
        assert_eq!(p.complete(u64::from(chain[0])), Err(CompleteError::Unknown));
        assert_eq!(p.free_count(1), 4);
        assert_eq!(p.complete(u64::MAX), Err(CompleteError::Unknown));
    }
}

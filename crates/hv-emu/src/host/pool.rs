//! Receive-buffer sub-allocation accounting.
//!
//! The receive buffer is cut into `count` sub-allocations. The first 16 are reserved for control
//! replies and indications (like OpenVMM); the rest are split evenly between the open channels.
//! A transfer-page packet carries a chain of sub-allocations and its transaction id is the first
//! index; the chain returns to its owners only when the guest completes that transaction id.
//! Frames still held by the guest when its session ends (revoke, re-init, new buffer) are lost with
//! its rings: [`RecvPool::abandon`] counts them so the host can report them as a drop reason.

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
    /// True while an index holds a frame handed to the guest (linked by [`RecvPool::link_frames`]).
    frame: Vec<bool>,
    /// (head, frames) of chains the guest held when its session ended, until a new buffer ends the wait.
    limbo: Vec<(u32, u32)>,
    /// Frames of chains that were still in the limbo when a new buffer came.
    lost: u64,
    /// Sessions ended so far: indices reserved under an older generation belong to no pool any more.
    generation: u64,
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
            frame: vec![false; n],
            limbo: Vec::new(),
            lost: 0,
            generation: 0,
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
            self.frame[index as usize] = false;
            let o = self.owner(index);
            self.free[o].push(index);
        }
    }

    /// Record that `indices` travel together in one transfer-page packet (head = first).
    /// Indices from before a session ended (the rx pump's round in progress) are not in the pool any more and are
    /// ignored.
    pub fn link(&mut self, indices: &[u32]) {
        if indices
            .iter()
            .any(|&i| !self.busy.get(i as usize).copied().unwrap_or(false))
        {
            return;
        }
        for w in indices.windows(2) {
            self.next[w[0] as usize] = w[1];
        }
        if let Some(&first) = indices.first() {
            self.head[first as usize] = true;
        }
    }

    /// As [`RecvPool::link`], for a transfer whose sub-allocations (reserved under `generation`) each hold one
    /// frame for the guest. False when that session has ended since: the transfer must not be sent.
    pub fn link_frames(&mut self, generation: u64, indices: &[u32]) -> bool {
        if generation != self.generation {
            return false;
        }
        self.link(indices);
        if indices
            .first()
            .is_none_or(|&i| self.head.get(i as usize) != Some(&true))
        {
            return false;
        }
        for &i in indices {
            if let Some(f) = self.frame.get_mut(i as usize) {
                *f = true;
            }
        }
        true
    }

    /// The guest's session ended (its buffer revoked, or a new INIT): every frame chain it still held moves to
    /// the limbo, where a completion already on its way (another channel's ring, read later) can still claim
    /// it; everything is free again.
    pub fn end_session(&mut self) {
        for h in 0..self.count as usize {
            if self.head[h] && self.busy[h] {
                let frames = self
                    .chain(h as u32)
                    .filter(|&i| self.frame[i as usize])
                    .count() as u32;
                if frames > 0 {
                    self.limbo.push((h as u32, frames));
                }
            }
        }
        let (limbo, lost, generation) =
            (std::mem::take(&mut self.limbo), self.lost, self.generation);
        // No buffer until the next one is established (`renew`).
        *self = RecvPool::default();
        (self.limbo, self.lost, self.generation) = (limbo, lost, generation + 1);
    }

    /// A new receive buffer of `count` sub-allocations for `queues` channels: the old session is over for
    /// good, so what is still in the limbo is lost (see [`RecvPool::abandoned`]).
    pub fn renew(&mut self, count: u32, queues: u32) {
        self.end_session();
        let lost = self.lost + self.limbo.iter().map(|&(_, n)| u64::from(n)).sum::<u64>();
        let generation = self.generation;
        *self = RecvPool::new(count, queues);
        (self.lost, self.generation) = (lost, generation);
    }

    /// The current session's generation (see [`RecvPool::link_frames`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// [`RecvPool::release`] of an index reserved under `generation`; ignored if that session has ended.
    pub fn release_from(&mut self, generation: u64, index: u32) {
        if generation == self.generation {
            self.release(index);
        }
    }

    /// Frames handed to the guest that it never completed before its session ended: those a new buffer
    /// made final, plus those still in the limbo.
    pub fn abandoned(&self) -> u64 {
        self.lost + self.limbo.iter().map(|&(_, n)| u64::from(n)).sum::<u64>()
    }

    /// The indices of the chain starting at `head` (bounded: a chain is never longer than the pool).
    fn chain(&self, head: u32) -> impl Iterator<Item = u32> + '_ {
        let mut cur = Some(head);
        (0..self.count).map_while(move |_| {
            let i = cur?;
            let next = self.next[i as usize];
            cur = (next != END).then_some(next);
            Some(i)
        })
    }

    /// The guest completed the packet whose transaction id is `head`: free its whole chain.
    pub fn complete(&mut self, head: u64) -> Result<u32, CompleteError> {
        let h = usize::try_from(head).map_err(|_| CompleteError::Unknown)?;
        if !self.head.get(h).copied().unwrap_or(false) {
            // A completion of the ended session that was still on its way: the guest did take those frames.
            if let Some(k) = self.limbo.iter().position(|&(l, _)| u64::from(l) == head) {
                self.limbo.swap_remove(k);
                return Ok(0);
            }
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
            self.frame[cur as usize] = false;
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

    #[test]
    fn a_session_end_counts_only_frames_the_guest_kept() {
        let mut p = RecvPool::new(40, 2);
        // Two frames handed over and completed, three kept (one chain of two, one of one), one more whose
        // completion arrives after the session ended, one control reply kept, two reserved by the pump but never
        // handed over, and one refused by a full ring: only the three kept frames are lost.
        let done: Vec<u32> = (0..2).map(|_| p.alloc(1).unwrap()).collect();
        assert!(p.link_frames(0, &done));
        assert_eq!(p.complete(u64::from(done[0])), Ok(2));
        let kept = (
            p.alloc(2).unwrap(),
            p.alloc(2).unwrap(),
            p.alloc(1).unwrap(),
        );
        p.link_frames(0, &[kept.0, kept.1]);
        p.link_frames(0, &[kept.2]);
        let late = p.alloc(1).unwrap();
        p.link_frames(0, &[late]);
        let ctl = p.alloc(0).unwrap();
        p.link(&[ctl]);
        let _spare = (p.alloc(1).unwrap(), p.alloc(1).unwrap());
        let refused = p.alloc(1).unwrap();
        p.link_frames(0, &[refused]);
        p.release(refused);
        p.end_session();
        assert_eq!((p.abandoned(), p.outstanding(), p.count()), (4, 0, 0));
        assert_eq!(p.generation(), 1);
        assert!(
            !p.link_frames(0, &[kept.0]),
            "the pump's round in progress: not in the pool any more"
        );
        p.release_from(0, kept.1);
        assert_eq!(p.abandoned(), 4);
        assert_eq!(
            p.complete(u64::from(late)),
            Ok(0),
            "a late completion claims its frame"
        );
        assert_eq!(p.complete(u64::from(late)), Err(CompleteError::Unknown));
        assert_eq!(p.abandoned(), 3);
        p.renew(60, 1);
        assert_eq!((p.abandoned(), p.count(), p.free_count(1)), (3, 60, 44));
        // An index of the old session that the new one has handed out again is not linked or freed by the old.
        let again = p.alloc(1).unwrap();
        assert!(!p.link_frames(0, &[again]));
        p.release_from(0, again);
        assert_eq!(p.outstanding(), 1);
        p.release_from(p.generation(), again);
        assert_eq!(
            p.complete(u64::from(kept.0)),
            Err(CompleteError::Unknown),
            "too late once renewed"
        );
        p.end_session();
        assert_eq!(p.abandoned(), 3);
    }
}

//! The generator's pacing: a token bucket filled at the set rate (integer arithmetic, no drift) and capped at a
//! small burst, so a generator that was not asked for frames for a while (the guest's filter was 0, the host was
//! descheduled, the generator was stopped) resumes at its rate instead of sending the backlog at once.

use std::time::Instant;

/// Frames a bucket may hold for `pps`: 2 ms of traffic, at least 16 and at most 4096 frames.
pub fn burst_for(pps: u64) -> u64 {
    (pps / 500).clamp(16, 4096)
}

/// A token bucket of frames.
#[derive(Debug, Clone)]
pub struct Bucket {
    pps: u64,
    cap: u64,
    tokens: u64,
    /// Fractions of a token, in units of 1 / 10^9 token.
    frac: u64,
    last: Option<Instant>,
}

impl Bucket {
    /// An empty bucket for `pps` frames per second (≥ 1), holding at most [`burst_for`]`(pps)`.
    pub fn new(pps: u64) -> Self {
        let pps = pps.max(1);
        Bucket {
            pps,
            cap: burst_for(pps),
            tokens: 0,
            frac: 0,
            last: None,
        }
    }

    /// The rate.
    pub fn pps(&self) -> u64 {
        self.pps
    }

    /// The burst cap.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Empty the bucket; it starts filling at the next [`Bucket::refill`].
    pub fn reset(&mut self) {
        self.tokens = 0;
        self.frac = 0;
        self.last = None;
    }

    /// Add what accrued since the last refill (capped) and return the frames available.
    pub fn refill(&mut self, now: Instant) -> u64 {
        let Some(last) = self.last else {
            self.last = Some(now);
            return self.tokens;
        };
        let dt = now.saturating_duration_since(last).as_nanos();
        let acc = dt * u128::from(self.pps) + u128::from(self.frac);
        let whole = acc / 1_000_000_000;
        self.frac = (acc % 1_000_000_000) as u64;
        let tokens = u128::from(self.tokens) + whole;
        if tokens >= u128::from(self.cap) {
            self.tokens = self.cap;
            self.frac = 0;
        } else {
            self.tokens = tokens as u64;
        }
        self.last = Some(now);
        self.tokens
    }

    /// Take `n` frames (at most what the bucket holds).
    pub fn take(&mut self, n: u64) {
        self.tokens = self.tokens.saturating_sub(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fills_at_the_rate_without_drift_and_caps_the_backlog() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000);
        assert_eq!(b.refill(t0), 0);
        let mut got = 0;
        // 10,000 steps of 333 µs: 3.33 s at 1000 pps = 3330 frames, fractions carried.
        for i in 1..=10_000u32 {
            let n = b.refill(t0 + Duration::from_micros(333) * i);
            b.take(n);
            got += n;
        }
        assert_eq!(got, 3330);
        // A 500 ms gap gives the cap (16 frames), not 500.
        let later = t0 + Duration::from_micros(333) * 10_000 + Duration::from_millis(500);
        assert_eq!(b.refill(later), 16);
        assert_eq!(burst_for(100_000), 200);
        assert_eq!(burst_for(100_000_000), 4096);
    }
}

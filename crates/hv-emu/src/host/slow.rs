//! A slow host: NVSP and RNDIS replies held back for a while, as busy Azure hosts have taken up to 15 s to answer
//! (DPDK commit d564751748 raised its RNDIS timeout from 5 to 60 s for them; Linux waits without a bound). The
//! request takes effect at once; only its reply waits in a queue the rx pump empties when each falls due, in order
//! (a reply never overtakes an earlier one). Data-path completions are never delayed.

use super::{Device, lock};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A request whose reply a slow host delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowRequest {
    /// NVSP INIT.
    Init,
    /// NVSP SEND_RECV_BUF.
    RecvBuf,
    /// NVSP SEND_SEND_BUF.
    SendBuf,
    /// NVSP SUBCHANNEL (and the send indirection table after it).
    Subchannel,
    /// NVSP SWITCH_DATA_PATH.
    SwitchDataPath,
    /// RNDIS INITIALIZE.
    RndisInit,
    /// RNDIS QUERY (any OID).
    Query,
    /// RNDIS SET (any OID).
    Set,
    /// RNDIS KEEPALIVE.
    Keepalive,
}

impl SlowRequest {
    /// Every kind, in the order of their names.
    pub const ALL: [SlowRequest; 9] = [
        SlowRequest::Init,
        SlowRequest::RecvBuf,
        SlowRequest::SendBuf,
        SlowRequest::Subchannel,
        SlowRequest::SwitchDataPath,
        SlowRequest::RndisInit,
        SlowRequest::Query,
        SlowRequest::Set,
        SlowRequest::Keepalive,
    ];

    /// The name in `--slow-host` lists.
    pub fn name(self) -> &'static str {
        match self {
            SlowRequest::Init => "init",
            SlowRequest::RecvBuf => "recv-buf",
            SlowRequest::SendBuf => "send-buf",
            SlowRequest::Subchannel => "subchannel",
            SlowRequest::SwitchDataPath => "switch-data-path",
            SlowRequest::RndisInit => "rndis-init",
            SlowRequest::Query => "query",
            SlowRequest::Set => "set",
            SlowRequest::Keepalive => "keepalive",
        }
    }

    fn parse(name: &str) -> Option<SlowRequest> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Longest delay accepted (ms).
pub const MAX_SLOW_MS: u64 = 600_000;

/// How long a slow host takes to answer: `all` for every request, or the per-kind delay in `each`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlowHost {
    /// Delay of every reply not named in `each` (zero: answer at once).
    pub all: Duration,
    /// Delays of particular requests.
    pub each: Vec<(SlowRequest, Duration)>,
}

impl SlowHost {
    /// The delay of `kind`'s reply.
    pub fn delay(&self, kind: SlowRequest) -> Duration {
        self.each
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(self.all, |(_, d)| *d)
    }

    /// Whether any reply is delayed.
    pub fn is_slow(&self) -> bool {
        !self.all.is_zero() || self.each.iter().any(|(_, d)| !d.is_zero())
    }

    /// Parse `MS` or `MS,KIND=MS,…` or `KIND=MS,…` (KIND: init, recv-buf, send-buf, subchannel,
    /// switch-data-path, rndis-init, query, set, keepalive); each MS in 0..=600000.
    pub fn parse(text: &str) -> Result<SlowHost, String> {
        let ms = |v: &str| -> Result<Duration, String> {
            let clip: String = v.chars().take(32).collect();
            let n: u64 = v
                .trim()
                .parse()
                .map_err(|_| format!("bad delay '{clip}' (whole milliseconds)"))?;
            if n > MAX_SLOW_MS {
                return Err(format!("delay {n} ms over {MAX_SLOW_MS}"));
            }
            Ok(Duration::from_millis(n))
        };
        let mut out = SlowHost::default();
        for item in text.split(',') {
            match item.split_once('=') {
                None => out.all = ms(item)?,
                Some((k, v)) => {
                    let kind = SlowRequest::parse(k.trim()).ok_or_else(|| {
                        let names: Vec<&str> = SlowRequest::ALL.iter().map(|k| k.name()).collect();
                        let clip: String = k.chars().take(32).collect();
                        format!("unknown request '{clip}' (one of {})", names.join(", "))
                    })?;
                    let d = ms(v)?;
                    out.each.retain(|(e, _)| *e != kind);
                    out.each.push((kind, d));
                }
            }
        }
        Ok(out)
    }
}

/// A reply waiting for its time.
pub(crate) enum Reply {
    /// An NVSP message on channel `channel` (completion or in-band without completion).
    Nvsp {
        channel: u16,
        completion: bool,
        trans_id: u64,
        msg: [u8; super::nvsp::MAX_HOST_MESSAGE],
        len: usize,
    },
    /// An RNDIS control message for the control queue.
    Rndis(Vec<u8>),
}

/// Replies held back by a slow host, oldest first.
#[derive(Default)]
pub(crate) struct Delayed {
    queue: VecDeque<(Instant, Reply)>,
    /// The latest due time handed out (keeps replies in order).
    last: Option<Instant>,
}

impl Device {
    /// The delay of `kind`'s reply on this host.
    pub(crate) fn reply_delay(&self, kind: SlowRequest) -> Duration {
        self.cfg.slow.delay(kind)
    }

    /// Hold `reply` back for `delay` (after every reply already held).
    pub(crate) fn reply_later(&self, delay: Duration, reply: Reply) {
        let mut d = lock(&self.delayed);
        let mut due = Instant::now() + delay;
        if let Some(last) = d.last {
            due = due.max(last);
        }
        d.last = Some(due);
        d.queue.push_back((due, reply));
        crate::stats::add(&self.counters.delayed_replies, 1);
    }

    /// An NVSP reply now, or later on a slow host.
    pub(crate) fn nvsp_reply(
        &self,
        kind: SlowRequest,
        channel: &super::Channel,
        completion: bool,
        trans_id: u64,
        msg: &[u8],
    ) {
        let delay = self.reply_delay(kind);
        if delay.is_zero() && lock(&self.delayed).queue.is_empty() {
            if completion {
                channel.send_completion(self, trans_id, msg);
            } else {
                channel.send_inband(self, trans_id, false, msg);
            }
            return;
        }
        let mut m = [0u8; super::nvsp::MAX_HOST_MESSAGE];
        let len = msg.len().min(m.len());
        m[..len].copy_from_slice(&msg[..len]);
        self.reply_later(
            delay,
            Reply::Nvsp {
                channel: channel.index,
                completion,
                trans_id,
                msg: m,
                len,
            },
        );
    }

    /// An RNDIS reply now, or later on a slow host.
    pub(crate) fn rndis_reply(&self, kind: SlowRequest, msg: Vec<u8>) {
        let delay = self.reply_delay(kind);
        if delay.is_zero() && lock(&self.delayed).queue.is_empty() {
            self.queue_control(msg);
        } else {
            self.reply_later(delay, Reply::Rndis(msg));
        }
    }

    /// Send every held reply that has fallen due (the rx pump calls this each round).
    pub(crate) fn send_due(&self, now: Instant) {
        loop {
            let reply = {
                let mut d = lock(&self.delayed);
                match d.queue.front() {
                    Some((due, _)) if *due <= now => d.queue.pop_front().map(|(_, r)| r),
                    _ => None,
                }
            };
            let Some(reply) = reply else { return };
            match reply {
                Reply::Nvsp {
                    channel,
                    completion,
                    trans_id,
                    msg,
                    len,
                } => {
                    if let Some(ch) = self.channel(usize::from(channel)) {
                        if completion {
                            ch.send_completion(self, trans_id, &msg[..len]);
                        } else {
                            ch.send_inband(self, trans_id, false, &msg[..len]);
                        }
                    }
                }
                Reply::Rndis(msg) => self.queue_control(msg),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_all_and_each() {
        let s = SlowHost::parse("200,rndis-init=15000, query = 5").unwrap();
        assert_eq!(s.delay(SlowRequest::Init), Duration::from_millis(200));
        assert_eq!(s.delay(SlowRequest::RndisInit), Duration::from_secs(15));
        assert_eq!(s.delay(SlowRequest::Query), Duration::from_millis(5));
        assert!(s.is_slow());
        let only = SlowHost::parse("subchannel=100").unwrap();
        assert_eq!(only.delay(SlowRequest::Init), Duration::ZERO);
        assert_eq!(
            only.delay(SlowRequest::Subchannel),
            Duration::from_millis(100)
        );
        assert!(!SlowHost::parse("0").unwrap().is_slow());
    }

    #[test]
    fn parse_refuses_bad_items() {
        assert!(SlowHost::parse("").unwrap_err().contains("bad delay"));
        assert!(
            SlowHost::parse("nope=5")
                .unwrap_err()
                .contains("unknown request 'nope'")
        );
        assert!(
            SlowHost::parse("init=x")
                .unwrap_err()
                .contains("bad delay 'x'")
        );
        assert!(
            SlowHost::parse("600001")
                .unwrap_err()
                .contains("over 600000")
        );
    }
}

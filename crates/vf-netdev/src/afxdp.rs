//! AF_XDP queues (filled in below the skeleton).

use crate::port::{PortConfig, VfQueueStats, VfRx, VfTx};
use crate::{Mode, NetdevError, Result};

pub(crate) struct XdpQueue {}

pub(crate) fn open(
    _ifindex: u32,
    _name: &str,
    _n: u32,
    _cfg: &PortConfig,
) -> Result<(Mode, Vec<XdpQueue>)> {
    Err(NetdevError::Unsupported {
        what: "af_xdp",
        detail: "not yet implemented".into(),
    })
}

impl XdpQueue {
    pub fn rx_burst(
        &mut self,
        _max: usize,
        _f: impl FnMut(&[u8], VfRx),
        _s: &VfQueueStats,
    ) -> Result<usize> {
        Ok(0)
    }
    pub fn tx_burst(&mut self, _frames: &[VfTx<'_>], _s: &VfQueueStats) -> Result<usize> {
        Ok(0)
    }
    pub fn poll_tx(&mut self, _s: &VfQueueStats) -> Result<usize> {
        Ok(0)
    }
}

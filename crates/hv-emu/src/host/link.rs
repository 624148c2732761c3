//! Link indications as OpenVMM's NetVSP sends them (netvsp `PendingLinkAction`): a link change is a notification
//! the host acts on at its next turn; notifications that arrive together coalesce. If the coalesced state differs
//! from what the guest was last told, it is sent at once; if it is the same (a quick flap, down then up), the host
//! sends the opposite now and the state again `link_delay` later, because Linux guests ignore link changes in quick
//! succession. A new notification cancels a pending delay. `link_delay` zero sends both halves of a flap at once.

use super::{Device, lock, rndis};
use netvsc_proto::rndis::status;
use std::time::Instant;

/// What the host still has to tell the guest about its link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LinkPending {
    /// Nothing.
    #[default]
    None,
    /// A notification to act on at the next turn: the link is now `up`.
    Active(bool),
    /// Tell the guest `up` at `at` (the second half of a flap).
    Delay { up: bool, at: Instant },
}

impl Device {
    /// Set the host's link state: a notification when it changes (GEN_MEDIA_CONNECT_STATUS answers the new
    /// state at once; the guest hears of it per the rules in the module doc). Setting the current state does
    /// nothing.
    pub fn set_link(&self, up: bool) {
        {
            let mut st = lock(&self.state);
            if st.link_up == up {
                return;
            }
            st.link_up = up;
            st.link_pending = LinkPending::Active(up);
        }
        self.link_turn(Instant::now());
    }

    /// Several link notifications in one host turn (a backend reporting a quick flap: `[false, true]`); they
    /// coalesce into the last one. The host's link ends in the last state.
    pub fn notify_link(&self, states: &[bool]) {
        let Some(&last) = states.last() else { return };
        {
            let mut st = lock(&self.state);
            st.link_up = last;
            st.link_pending = LinkPending::Active(last);
        }
        self.link_turn(Instant::now());
    }

    /// The host's link turn: act on a pending notification, or on a delay that has run out. Called after every
    /// notification and from the rx pump's loop.
    pub(crate) fn link_turn(&self, now: Instant) {
        let mut send = [None; 2];
        {
            let mut st = lock(&self.state);
            if !st.rndis_initialized {
                return;
            }
            if let LinkPending::Delay { up, at } = st.link_pending {
                if now < at {
                    return;
                }
                st.link_pending = LinkPending::Active(up);
            }
            let LinkPending::Active(up) = st.link_pending else {
                return;
            };
            if st.link_told != up {
                send[0] = Some(up);
                st.link_told = up;
                st.link_pending = LinkPending::None;
            } else {
                // Told `up` already, so the link went the other way and back: say so now, and `up` later.
                let other = !up;
                send[0] = Some(other);
                if self.cfg.link_delay.is_zero() {
                    send[1] = Some(up);
                    st.link_told = up;
                    st.link_pending = LinkPending::None;
                } else {
                    st.link_told = other;
                    st.link_pending = LinkPending::Delay {
                        up,
                        at: now + self.cfg.link_delay,
                    };
                }
            }
        }
        for up in send.into_iter().flatten() {
            let code = if up {
                status::MEDIA_CONNECT
            } else {
                status::MEDIA_DISCONNECT
            };
            self.queue_control(rndis::indicate_status(code, None));
        }
    }
}

//! A minimal synchronous rtnetlink request/response helper over `netlink-sys`.

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::{NetdevError, Result};

fn nl_err(what: &str, e: impl std::fmt::Display) -> NetdevError {
    NetdevError::Netlink(format!("{what}: {e}"))
}

/// Splits a received datagram into netlink messages and parses each.
pub(crate) fn parse_all(
    buf: &[u8],
    mut f: impl FnMut(NetlinkMessage<RouteNetlinkMessage>),
) -> Result<()> {
    let mut off = 0usize;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 16 || off + len > buf.len() {
            return Err(NetdevError::Netlink(format!(
                "bad message length {len} at {off}"
            )));
        }
        // A message type or attribute this crate version cannot parse is skipped.
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..off + len]) {
            f(m);
        }
        off += (len + 3) & !3;
    }
    Ok(())
}

/// Sends one request and collects the replies: the dump's messages, or nothing (an ACK) for a plain request.
pub(crate) fn request(msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>> {
    let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| nl_err("socket", e))?;
    sock.bind_auto().map_err(|e| nl_err("bind", e))?;
    let _ = sock.set_ext_ack(true);
    sock.connect(&SocketAddr::new(0, 0))
        .map_err(|e| nl_err("connect", e))?;
    let mut hdr = NetlinkHeader::default();
    hdr.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    hdr.sequence_number = 1;
    let mut m = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(msg));
    m.finalize();
    let mut out = vec![0u8; m.buffer_len()];
    m.serialize(&mut out);
    sock.send(&out, 0).map_err(|e| nl_err("send", e))?;
    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = {
            let mut slice = &mut buf[..];
            sock.recv(&mut slice, 0).map_err(|e| nl_err("recv", e))?
        };
        let mut done = false;
        let mut err: Option<i32> = None;
        parse_all(&buf[..n.min(buf.len())], |m| match m.payload {
            NetlinkPayload::InnerMessage(r) => replies.push(r),
            NetlinkPayload::Done(_) => done = true,
            NetlinkPayload::Error(e) => {
                done = true;
                if let Some(c) = e.code {
                    err = Some(c.get());
                }
            }
            _ => {}
        })?;
        if let Some(c) = err {
            return Err(NetdevError::Netlink(
                std::io::Error::from_raw_os_error(-c).to_string(),
            ));
        }
        if done || (!dump && n == 0) {
            return Ok(replies);
        }
    }
}

//! veth pairs and link edits over rtnetlink (used by the emulator and by tests).

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};

use crate::sys::name_to_index;
use crate::{Mac, NetdevError, Result, nl};

/// What [`create_veth`] creates.
#[derive(Clone, Debug)]
pub struct VethSpec<'a> {
    /// Name of the guest end (the one moved to `guest_netns_fd`, if given).
    pub guest: &'a str,
    /// Name of the host end (stays in the caller's network namespace).
    pub host: &'a str,
    /// MAC of the guest end (random if None).
    pub guest_mac: Option<Mac>,
    /// MAC of the host end (random if None).
    pub host_mac: Option<Mac>,
    /// numrxqueues = numtxqueues of both ends (0 = kernel default, 1).
    pub queues: u32,
    /// A network-namespace fd to create the guest end in.
    pub guest_netns_fd: Option<i32>,
}

fn check_name(n: &str) -> Result<()> {
    if n.is_empty() || n.len() >= 16 || n.contains(['/', ' ', '\0']) {
        return Err(NetdevError::Invalid(format!("bad interface name {n:?}")));
    }
    Ok(())
}

fn end_attrs(name: &str, mac: Option<Mac>, queues: u32) -> Vec<LinkAttribute> {
    let mut a = vec![LinkAttribute::IfName(name.to_string())];
    if let Some(m) = mac {
        a.push(LinkAttribute::Address(m.to_vec()));
    }
    if queues > 0 {
        a.push(LinkAttribute::NumTxQueues(queues));
        a.push(LinkAttribute::NumRxQueues(queues));
    }
    a
}

fn index_of(name: &str) -> Result<u32> {
    name_to_index(name).ok_or_else(|| NetdevError::NotFound(name.to_string()))
}

/// Creates a veth pair; returns (guest ifindex, host ifindex). The guest ifindex is the one in the guest's network
/// namespace when `guest_netns_fd` is given (read from the host end's IFLA_LINK).
pub fn create_veth(spec: &VethSpec) -> Result<(u32, u32)> {
    check_name(spec.guest)?;
    check_name(spec.host)?;
    let mut peer = LinkMessage::default();
    peer.attributes = end_attrs(spec.host, spec.host_mac, spec.queues);
    let mut msg = LinkMessage::default();
    msg.attributes = end_attrs(spec.guest, spec.guest_mac, spec.queues);
    if let Some(fd) = spec.guest_netns_fd {
        msg.attributes.push(LinkAttribute::NetNsFd(fd));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    nl::request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL).map_err(|e| {
        NetdevError::Netlink(format!("create veth {}/{}: {e}", spec.guest, spec.host))
    })?;
    let host = index_of(spec.host)?;
    let guest = if spec.guest_netns_fd.is_none() {
        index_of(spec.guest)?
    } else {
        peer_index(host)?
    };
    Ok((guest, host))
}

/// IFLA_LINK of a link (a veth's peer ifindex, possibly in another namespace).
fn peer_index(ifindex: u32) -> Result<u32> {
    let mut m = LinkMessage::default();
    m.header.index = ifindex;
    let r = nl::request(RouteNetlinkMessage::GetLink(m), 0)?;
    for msg in r {
        if let RouteNetlinkMessage::NewLink(l) = msg {
            for a in l.attributes {
                if let LinkAttribute::Link(i) = a {
                    return Ok(i);
                }
            }
        }
    }
    Err(NetdevError::Netlink(format!(
        "link #{ifindex} has no IFLA_LINK"
    )))
}

/// Deletes a link (both ends for a veth). NotFound if absent.
pub fn delete_link(name: &str) -> Result<()> {
    let mut m = LinkMessage::default();
    m.header.index = index_of(name)?;
    nl::request(RouteNetlinkMessage::DelLink(m), 0)
        .map_err(|e| NetdevError::Netlink(format!("delete {name}: {e}")))?;
    Ok(())
}

fn set_link(name: &str, what: &str, attr: LinkAttribute) -> Result<()> {
    let mut m = LinkMessage::default();
    m.header.index = index_of(name)?;
    m.attributes.push(attr);
    nl::request(RouteNetlinkMessage::SetLink(m), 0)
        .map_err(|e| NetdevError::Netlink(format!("{what} {name}: {e}")))?;
    Ok(())
}

/// Renames a link; it must be down.
pub fn rename_link(old: &str, new: &str) -> Result<()> {
    check_name(new)?;
    set_link(old, "rename", LinkAttribute::IfName(new.to_string()))
}

/// Sets a link's MAC address.
pub fn set_mac(name: &str, mac: Mac) -> Result<()> {
    set_link(name, "set mac", LinkAttribute::Address(mac.to_vec()))
}

/// Writes 1 to `/proc/sys/net/ipv6/conf/<name>/disable_ipv6` so the link stays quiet (no DAD/RS traffic).
/// A kernel without IPv6 is not an error.
pub fn disable_ipv6(name: &str) -> Result<()> {
    check_name(name)?;
    if !std::path::Path::new("/proc/sys/net/ipv6").exists() {
        return Ok(());
    }
    let p = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
    std::fs::write(&p, b"1").map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            NetdevError::NotFound(name.to_string())
        } else {
            crate::io_err(name, "disable_ipv6", e)
        }
    })
}

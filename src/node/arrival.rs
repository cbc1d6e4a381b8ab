//! Rooms handed to this node by another (the receiving half of live
//! rebalancing; `rebalance` is the sending half): checked against the
//! membership, installed with their connections re-keyed on this node's
//! links, and answered.

use std::sync::Arc;

use super::Node;
use crate::archive::archiver::Archiver;
use crate::coordinator::Role;
use crate::ids::{ConnId, Epoch, NodeId, Rid, RoomId, UserId};
use crate::link::{HandoffState, Peer};
use crate::protocol::server::VersionedWidget;
use crate::protocol::{ErrorCode, Failure, Status};
use crate::rooms::state::Sub;
use crate::rooms::store::{Entry, Loaded, Snapshot};
use crate::rooms::{Arrival, Reply, Sink};

/// A hand-off as it arrived.
pub(super) struct Incoming<'a> {
    pub(super) rid: Rid,
    pub(super) epoch: Epoch,
    pub(super) room: &'a str,
    /// The room's state and what its parts carried; `None` to load it.
    pub(super) state: Option<(HandoffState<'a>, Vec<Entry>, Vec<VersionedWidget>)>,
    pub(super) conns: Vec<(&'a str, ConnId, &'a str)>,
}

/// Installs a room handed off by another node. Connections are re-keyed on
/// this node's links from their gateways; those whose gateway is not linked
/// here yet are left for the gateway's re-subscription.
pub(super) fn arrive(node: &Node, from: &Peer, sink: &Arc<dyn Sink>, incoming: Incoming<'_>) {
    let rid = incoming.rid;
    let refuse = |code, message: String| {
        let status = Status::Failed(Failure::new(code, message));
        sink.reply(rid, Reply::failed(&status));
    };
    let Ok(room) = RoomId::parse(incoming.room) else {
        return refuse(ErrorCode::BadRequest, "bad room id".into());
    };
    let view = node.ring.borrow().clone();
    let sender = view.view.member(&from.id);
    if sender.is_none_or(|m| m.role != Role::Node) {
        // Only a node this node knows as a member may hand rooms over.
        return refuse(
            ErrorCode::Forbidden,
            format!("{} is not a node of this cluster", from.id),
        );
    }
    if view.ring.owner(&room) != Some(&node.config.id) {
        // Our ring does not (yet, or any more) give us the room: the sender
        // asks its ring again and retries.
        tracing::trace!(room.id = %room, epoch = %incoming.epoch, "hand-off for a room not ours");
        return sink.reply(rid, Reply::moved());
    }
    let gateways = linked_gateways(node);
    let conns = rekeyed(&gateways, incoming.conns);
    let state = incoming.state.map(loaded);
    if let (Some(archiver), Some(state)) = (node.store.as_ref().and_then(|s| s.archiver()), &state)
    {
        ensure_archived(&archiver, &room, state);
    }
    let arrival = Arrival {
        state,
        conns,
        links: gateways.into_iter().map(|(_, sink)| sink).collect(),
    };
    if node.registry.install(&room, arrival) {
        tracing::debug!(room.id = %room, "room arrived");
        sink.reply(
            rid,
            Reply {
                status: &Status::Ok,
                seq: None,
                frame: None,
                missed: &[],
            },
        );
    } else {
        refuse(
            ErrorCode::Conflict,
            format!("{room} is already served here"),
        );
    }
}

/// A handed-off room's state as storage would load it.
fn loaded((s, entries, widgets): (HandoffState<'_>, Vec<Entry>, Vec<VersionedWidget>)) -> Loaded {
    Loaded {
        epoch: s.epoch.map(str::to_string),
        entries,
        snapshot: Some(Snapshot {
            seq: s.seq,
            widgets,
            reads: s.reads.iter().map(|(u, n)| (u.to_string(), *n)).collect(),
            roles: s.roles.iter().map(|(u, r)| (u.to_string(), *r)).collect(),
        }),
    }
}

/// The gateways linked to this node, by id.
fn linked_gateways(node: &Node) -> Vec<(NodeId, Arc<dyn Sink>)> {
    (node.lock_links().values())
        .filter(|l| l.peer.role == Role::Gateway)
        .map(|l| (l.peer.id.clone(), l.sink.clone() as Arc<dyn Sink>))
        .collect()
}

/// Connections named by their gateway's id, re-keyed on this node's links
/// (those of a gateway not linked here are left out).
fn rekeyed(
    gateways: &[(NodeId, Arc<dyn Sink>)],
    conns: Vec<(&str, ConnId, &str)>,
) -> Vec<(Sub, UserId)> {
    (conns.into_iter())
        .filter_map(|(gw, conn, user)| {
            let (_, link) = gateways.iter().find(|(id, _)| id.as_str() == gw)?;
            let sub = Sub {
                link: link.link(),
                conn,
            };
            Some((sub, UserId::parse(user).ok()?))
        })
        .collect()
}

/// What the sender had not archived yet may die with it (it drains and
/// exits): what arrives is archived here unless it is already.
fn ensure_archived(archiver: &Archiver, room: &RoomId, state: &Loaded) {
    if let Some(epoch) = &state.epoch {
        let events = state
            .entries
            .iter()
            .map(|e| (e.seq, e.frame.clone()))
            .collect();
        archiver.ensure(room.as_str(), epoch, events);
    }
}

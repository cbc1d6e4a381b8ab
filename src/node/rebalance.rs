//! Live rebalancing: when the ring gives rooms this node holds to another
//! node (a node joined, or this one drains), each such room is frozen, made
//! durable, exported and installed at its new owner, with its connections;
//! then this node tells every ring node it is done for the epoch. A draining
//! node that has nothing left stops (and so leaves the cluster). The algorithm
//! and its failure cases are written up in `docs/rebalancing.md`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use serde_bytes::Bytes as Raw;

use super::peers::PeerError;
use super::Node;
use crate::coordinator::{MemberState, RingView, Role};
use crate::ids::{ConnId, Epoch, NodeId, Rid, RoomId, UserId};
use crate::link::calls;
use crate::link::codec::{self, CodecError};
use crate::link::{HandoffEntry, HandoffState, ToNode};
use crate::protocol::server::VersionedWidget;
use crate::protocol::{ErrorCode, Status};
use crate::rooms::state::Sub;
use crate::rooms::{Frozen, Room};
use crate::shutdown::Shutdown;

/// Rooms moved at once; more would add latency for everyone else.
const MOVES_IN_FLIGHT: usize = 64;
/// How long one room's move may take before the round goes on without it.
const MOVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often failed moves are tried again.
const RETRY: Duration = Duration::from_millis(500);

/// Moves rooms away as the ring says, until shutdown.
pub(super) async fn run(node: Arc<Node>, mut shutdown: Shutdown) {
    let mut rings = node.ring.clone();
    let mut seen: Option<Arc<RingView>> = None;
    let mut retry = tokio::time::interval(RETRY);
    // Set once a move left a room frozen here (timed out, or unanswered):
    // from then on each round thaws the frozen rooms the ring gives back.
    let mut left_frozen = false;
    loop {
        tokio::select! {
            changed = rings.changed() => if changed.is_err() { return },
            _ = retry.tick() => {}
            _ = shutdown.wait() => return,
        }
        let view = rings.borrow_and_update().clone();
        seen_view(&node, &view, seen.as_deref());
        let draining = view
            .view
            .member(&node.config.id)
            .is_some_and(|m| m.state == MemberState::Draining);
        if draining && view.ring.nodes().is_empty() {
            // The last node: no one to hand rooms to, and no one comes by
            // waiting. Their events are in storage (a node without one
            // loses them, as it would in any stop).
            tracing::info!(
                rooms = node.registry.len(),
                "no other node to hand rooms off to; stopping"
            );
            node.stop.fire();
            return;
        }
        left_frozen |= move_away(&node, &view).await;
        // No move is under way between rounds: a room still frozen that the
        // ring now gives to this node (its would-be owner died before taking
        // it) serves again. With a store, an append of a room the other node
        // did take and write to is refused by the fence, and the room
        // reloads what that node stored.
        if left_frozen {
            let thawed = node.registry.thaw_owned(&view.ring);
            if thawed > 0 {
                tracing::info!(
                    rooms = thawed,
                    "rooms given back after a failed move serve again"
                );
            }
        }
        // Said on every round, not only after moves, so that a lost notice
        // or a peer that saw the ring late still learns it.
        if node.registry.not_owned(&view.ring).is_empty() {
            tell_done(&node, &view).await;
        }
        seen = Some(view.clone());
        if draining && node.registry.len() == 0 {
            return drained(&node).await;
        }
    }
}

/// A draining node that has handed every room off stops: every gateway
/// sees it draining before its links close (views are re-read every `POLL`
/// at worst), so none takes the planned stop for a crash.
async fn drained(node: &Node) {
    tracing::info!("drained");
    tokio::time::sleep(crate::coordinator::redis::POLL).await;
    node.stop.fire();
}

/// What follows a new view: who writes, which gateways lapsed, and (a new
/// ring) which nodes' hand-offs to expect. `seen` is the view before, if any.
fn seen_view(node: &Arc<Node>, view: &RingView, seen: Option<&RingView>) {
    if seen.is_none_or(|seen| view.view.epoch != seen.view.epoch) {
        node.fence();
        super::serve::drop_lapsed_gateways_soon(node, &view.view);
    }
    if seen.is_none_or(|seen| view.ring_epoch != seen.ring_epoch) {
        let live = view.view.with_role(Role::Node).map(|m| m.id.clone());
        node.registry.expect_from(view.ring_epoch, live);
    }
}

/// Moves every room the ring gives another node there, a few at a time;
/// true when a move left a room frozen here.
async fn move_away(node: &Node, view: &RingView) -> bool {
    let moving = node.registry.not_owned(&view.ring);
    tracing::trace!(epoch = %view.view.epoch, moving = moving.len(), "rebalance round");
    if moving.is_empty() {
        return false;
    }
    let started = tokio::time::Instant::now();
    let count = moving.len();
    let stuck = AtomicBool::new(false);
    let stuck = &stuck;
    futures_util::stream::iter(moving)
        .for_each_concurrent(MOVES_IN_FLIGHT, |room| async move {
            // A move that cannot finish is tried again next round.
            let id = room.id().clone();
            let frozen = match tokio::time::timeout(MOVE_TIMEOUT, hand_off(node, room, view)).await
            {
                Ok(frozen) => frozen,
                Err(_) => {
                    tracing::warn!(room.id = %id, "hand-off timed out; retrying");
                    true
                }
            };
            if frozen {
                stuck.store(true, Ordering::Relaxed);
            }
        })
        .await;
    tracing::info!(rooms = count, elapsed_ms = started.elapsed().as_millis() as u64, epoch = %view.view.epoch, "rooms handed off");
    stuck.load(Ordering::Relaxed)
}

/// Moves one room to its owner on the current ring; true when the room
/// may be left frozen here (the next round tries again, and thaws it if
/// the ring gives it back).
async fn hand_off(node: &Node, room: Arc<Room>, view: &RingView) -> bool {
    let id = room.id().clone();
    tracing::trace!(room.id = %id, "freezing");
    let Ok(frozen) = room.freeze().await else {
        node.registry.remove(&id);
        return false;
    };
    let ring = node.ring.borrow().ring.clone();
    let Some(to) = ring.owner(&id).cloned().filter(|to| *to != node.config.id) else {
        room.thaw();
        return false;
    };
    let Some(addr) = node.ring.borrow().view.member(&to).map(|m| m.addr.clone()) else {
        return true;
    };
    let conns = frozen
        .as_ref()
        .map(|f| gateway_conns(node, &f.conns))
        .unwrap_or_default();
    let epoch = view.view.epoch;
    let write = |rid: Rid, buf: &mut BytesMut| {
        encode_handoff(buf, rid, epoch, &id, frozen.as_ref(), &conns)
    };
    match node.peers.request(&to, &addr, write).await {
        Ok(Status::Ok) => {
            node.registry.remove_copy(&room);
            false
        }
        Ok(Status::Failed(f)) if f.code == ErrorCode::Conflict => {
            // The new owner already serves it (it started it from storage).
            node.registry.remove_copy(&room);
            false
        }
        other => not_taken(node, &room, &to, other),
    }
}

/// A hand-off the new owner did not take (yet); true when the room is
/// left frozen here.
fn not_taken(node: &Node, room: &Room, to: &NodeId, other: Result<Status, PeerError>) -> bool {
    let id = room.id();
    if matches!(other, Ok(Status::Moved)) {
        // The new owner has not seen this ring yet: it will soon.
        tracing::debug!(room.id = %id, node.id = %to, "hand-off early; retrying");
    } else {
        tracing::warn!(room.id = %id, node.id = %to, result = ?other, "hand-off failed; retrying");
    }
    // A room the peer surely does not have is thawed: the next round
    // freezes it again if it still belongs elsewhere, and the ring may
    // meanwhile have given it back (its new owner died before taking it).
    // Routing serves only rooms this node owns, so a thawed room that is
    // not ours takes no operation. After an unanswered request the peer
    // may have installed it: it stays frozen unless the ring has given it
    // back.
    let not_there = matches!(other, Ok(Status::Moved) | Err(PeerError::Unreachable(_)));
    if not_there {
        room.thaw();
        false
    } else if node.ring.borrow().ring.owner(id) == Some(&node.config.id) {
        // The peer may have installed it and written to it: with a store,
        // the room reloads what storage holds.
        room.thaw_if_frozen();
        false
    } else {
        true
    }
}

/// A hand-off as records: its kept events and widgets in parts of about a
/// chunk each, then the `Handoff` itself.
fn encode_handoff(
    buf: &mut BytesMut,
    rid: Rid,
    epoch: Epoch,
    room: &RoomId,
    frozen: Option<&Frozen>,
    conns: &[(NodeId, ConnId, UserId)],
) -> Result<(), CodecError> {
    let state = match frozen {
        Some(f) => Some(encode_parts(buf, rid, f)?),
        None => None,
    };
    let reads: Vec<(&str, u64)> = state
        .as_ref()
        .map(|s| s.reads.iter().map(|(u, n)| (u.as_str(), *n)).collect())
        .unwrap_or_default();
    let record = ToNode::Handoff {
        rid,
        epoch: epoch.0,
        room: room.as_str(),
        state: state.as_ref().map(|s| HandoffState {
            seq: s.seq,
            reads: reads.clone(),
            roles: s.roles.iter().map(|(u, r)| (u.as_str(), *r)).collect(),
            epoch: frozen.and_then(|f| f.state.epoch.as_deref()),
        }),
        conns: conns
            .iter()
            .map(|(gw, conn, user)| (gw.as_str(), *conn, user.as_str()))
            .collect(),
    };
    codec::encode_into(buf, &record)
}

/// A frozen room's kept events and widgets as hand-off parts; its
/// snapshot, for the `Handoff` that follows.
fn encode_parts(
    buf: &mut BytesMut,
    rid: Rid,
    frozen: &Frozen,
) -> Result<crate::rooms::store::Snapshot, CodecError> {
    let entries: Vec<HandoffEntry<'_>> = (frozen.state.entries.iter())
        .map(|e| HandoffEntry {
            seq: e.seq,
            frame: Raw::new(&e.frame),
            author: e.author.as_deref(),
            cid: e.cid.as_deref(),
        })
        .collect();
    for head in calls::slices(&entries, |e| e.frame.len() + 64) {
        let part = ToNode::HandoffPart {
            rid,
            entries: head.to_vec(),
            widgets: Vec::new(),
        };
        codec::encode_into(buf, &part)?;
    }
    let snapshot = frozen.state.snapshot.clone().unwrap_or_default();
    for widgets in calls::slices(&snapshot.widgets, widget_size) {
        let part = ToNode::HandoffPart {
            rid,
            entries: Vec::new(),
            widgets: widgets.to_vec(),
        };
        codec::encode_into(buf, &part)?;
    }
    Ok(snapshot)
}

/// What a widget counts for in a hand-off part.
fn widget_size(w: &VersionedWidget) -> usize {
    96 + w.widget.id.len()
        + w.widget.kind.len()
        + w.widget.text.as_ref().map_or(0, String::len)
        + w.widget.color.as_ref().map_or(0, String::len)
}

/// Re-keys connections from this node's link ids to their gateways' ids.
fn gateway_conns(node: &Node, conns: &[(Sub, UserId)]) -> Vec<(NodeId, ConnId, UserId)> {
    let links = node.lock_links();
    conns
        .iter()
        .filter_map(|(sub, user)| {
            let link = links.get(&sub.link)?;
            (link.peer.role == Role::Gateway)
                .then(|| (link.peer.id.clone(), sub.conn, user.clone()))
        })
        .collect()
}

/// Tells every other ring node that this one has nothing more for it.
async fn tell_done(node: &Node, view: &RingView) {
    tracing::trace!(epoch = %view.view.epoch, "telling done");
    let msg = ToNode::HandoffDone {
        epoch: view.view.epoch.0,
    };
    for peer in view.ring.nodes().iter().filter(|n| **n != node.config.id) {
        if let Some(m) = view.view.member(peer) {
            if let Err(e) = node.peers.tell(peer, &m.addr, &msg).await {
                tracing::debug!(node.id = %peer, error = %e, "cannot tell hand-off done");
            }
        }
    }
}

//! Live rebalancing: when the ring gives rooms this node holds to another
//! node (a node joined, or this one drains), each such room is frozen, made
//! durable, exported and installed at its new owner, with its connections;
//! then this node tells every ring node it is done for the epoch. A draining
//! node that has nothing left stops (and so leaves the cluster). The algorithm
//! and its failure cases are written up in `docs/rebalancing.md`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::peers::PeerError;
use super::Node;
use crate::coordinator::{MemberState, RingView, Role};
use crate::ids::{NodeId, RoomId};
use crate::protocol::link::{ConnId, Status, ToNode};
use crate::protocol::ErrorCode;
use crate::rooms::{RoomCmd, RoomHandle};
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
    let mut seen = Arc::new(RingView::default());
    let mut first = true;
    let mut retry = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            changed = rings.changed() => if changed.is_err() { return },
            _ = retry.tick() => {}
            _ = shutdown.wait() => return,
        }
        let view = rings.borrow_and_update().clone();
        if first || view.ring_epoch != seen.ring_epoch {
            first = false;
            let live = view.view.with_role(Role::Node).map(|m| m.id.clone());
            node.registry.expect_from(view.ring_epoch, live);
        }
        let moving = node.registry.not_owned(&view.ring);
        tracing::trace!(epoch = %view.view.epoch, moving = moving.len(), "rebalance round");
        if !moving.is_empty() {
            let started = tokio::time::Instant::now();
            let count = moving.len();
            let (node, view) = (&node, &view);
            futures_util::stream::iter(moving)
                .for_each_concurrent(MOVES_IN_FLIGHT, |(room, handle)| async move {
                    // A move that cannot finish is tried again next round.
                    let moving = hand_off(node, room.clone(), handle, view);
                    if tokio::time::timeout(MOVE_TIMEOUT, moving).await.is_err() {
                        tracing::warn!(room.id = %room, "hand-off timed out; retrying");
                    }
                })
                .await;
            tracing::info!(rooms = count, elapsed_ms = started.elapsed().as_millis() as u64, epoch = %view.view.epoch, "rooms handed off");
        }
        // Said on every round, not only after moves, so that a lost notice
        // or a peer that saw the ring late still learns it.
        if node.registry.not_owned(&view.ring).is_empty() {
            tell_done(&node, &view).await;
        }
        seen = view.clone();
        let draining = view
            .view
            .member(&node.config.id)
            .is_some_and(|m| m.state == MemberState::Draining);
        if draining && node.registry.len() == 0 {
            tracing::info!("drained");
            node.stop.fire();
            return;
        }
    }
}

/// Moves one room to its owner on the current ring.
async fn hand_off(node: &Node, room: RoomId, handle: RoomHandle, view: &RingView) {
    tracing::trace!(room.id = %room, "freezing");
    let (tx, rx) = oneshot::channel();
    if handle.send(RoomCmd::Freeze(tx)).await.is_err() {
        return node.registry.remove(&room);
    }
    let Ok(frozen) = rx.await else {
        return node.registry.remove(&room);
    };
    let ring = node.ring.borrow().ring.clone();
    let Some(to) = ring
        .owner(&room)
        .cloned()
        .filter(|to| *to != node.config.id)
    else {
        let _ = handle.send(RoomCmd::Thaw).await;
        return;
    };
    let Some(addr) = node.ring.borrow().view.member(&to).map(|m| m.addr.clone()) else {
        return;
    };
    let (state, conns) = match frozen {
        Some(f) => (Some(f.state), gateway_conns(node, f.conns)),
        None => (None, Vec::new()),
    };
    let epoch = view.view.epoch;
    let make = |rid| ToNode::Handoff {
        rid,
        epoch,
        room: room.clone(),
        state,
        conns,
    };
    match node.peers.request(&to, &addr, make).await {
        Ok(Status::Ok) => node.registry.remove(&room),
        Ok(Status::Failed(f)) if f.code == ErrorCode::Conflict => {
            // The new owner already serves it (it started it from storage).
            node.registry.remove(&room)
        }
        other => {
            tracing::warn!(room.id = %room, node.id = %to, result = ?other, "hand-off failed; retrying");
            // A room the peer surely does not have is thawed: the next round
            // freezes it again if it still belongs elsewhere, and the ring
            // may meanwhile have given it back (its new owner died before
            // taking it). Routing serves only rooms this node owns, so a
            // thawed room that is not ours takes no operation. After an
            // unanswered request the peer may have installed it: it stays
            // frozen unless the ring has given it back.
            let not_there = matches!(other, Ok(Status::Moved) | Err(PeerError::Unreachable(_)));
            if not_there || node.ring.borrow().ring.owner(&room) == Some(&node.config.id) {
                let _ = handle.send(RoomCmd::Thaw).await;
            }
        }
    }
}

/// Re-keys connections from this node's link ids to their gateways' ids.
fn gateway_conns(
    node: &Node,
    conns: Vec<(crate::rooms::state::Sub, crate::ids::UserId)>,
) -> Vec<(NodeId, ConnId, crate::ids::UserId)> {
    let links = node.lock_links();
    conns
        .into_iter()
        .filter_map(|(sub, user)| Some((links.get(&sub.link)?.id.clone()?, sub.conn, user)))
        .collect()
}

/// Tells every other ring node that this one has nothing more for it.
async fn tell_done(node: &Node, view: &RingView) {
    tracing::trace!(epoch = %view.view.epoch, "telling done");
    let msg = ToNode::HandoffDone {
        from: node.config.id.clone(),
        epoch: view.view.epoch,
    };
    for peer in view.ring.nodes().iter().filter(|n| **n != node.config.id) {
        if let Some(m) = view.view.member(peer) {
            if let Err(e) = node.peers.tell(peer, &m.addr, &msg).await {
                tracing::debug!(node.id = %peer, error = %e, "cannot tell hand-off done");
            }
        }
    }
}

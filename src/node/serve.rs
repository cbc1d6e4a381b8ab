//! Links into a node, from gateways (room operations, queries,
//! notifications) and from other nodes (hand-offs), once authenticated
//! (`accept`): one task per link reads records and applies each in place. A link may only send the records of its role; after every
//! batch read, what the rooms emitted goes out in one write per link.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tracing::Instrument;

use super::routes::Routes;
use super::sink::LinkSink;
use super::{arrival, history, LinkEntry, Node};
use crate::coordinator::Role;
use crate::ids::{Epoch, Map, UserId};
use crate::link::{self, codec, HandoffEntry, Peer, ToNode};
use crate::protocol::client::RoomOp;
use crate::protocol::server::ServerFrame;
use crate::rooms::state::Sub;
use crate::rooms::store::Entry;
use crate::rooms::{Op, Reply, Sink};
use crate::shutdown::Shutdown;

/// Link ids are unique per process, so rooms never confuse two links.
static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

/// What one link's task keeps between records.
struct LinkState {
    parts: Parts,
    routes: Routes,
}

/// Entries and widgets of hand-offs in progress on one link, by request id.
#[derive(Default)]
pub(super) struct Parts {
    by_rid: HashMap<u64, (Vec<Entry>, Vec<crate::protocol::server::VersionedWidget>)>,
}

impl Parts {
    /// Takes what arrived for `rid`.
    pub(super) fn take(
        &mut self,
        rid: u64,
    ) -> (Vec<Entry>, Vec<crate::protocol::server::VersionedWidget>) {
        self.by_rid.remove(&rid).unwrap_or_default()
    }
}

/// Serves one authenticated link until it closes or the node shuts down.
pub(super) async fn serve(node: Arc<Node>, link: link::Link, mut shutdown: Shutdown) {
    let id = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
    let sink = Arc::new(LinkSink::new(id, link.writer.clone(), link.version));
    node.lock_links().insert(
        id,
        LinkEntry {
            peer: link.peer.clone(),
            sink: sink.clone(),
            // Listed already, or marked by the view that lists it.
            listed: std::sync::atomic::AtomicBool::new(
                node.ring.borrow().view.member(&link.peer.id).is_some(),
            ),
        },
    );
    tracing::debug!(link.id = id, peer = %link.peer.id, role = ?link.peer.role, "link up");
    let as_sink: Arc<dyn Sink> = sink;
    let mut reader = link.reader;
    let mut state = LinkState {
        parts: Parts::default(),
        routes: Routes::new(&node),
    };
    let mut refused = false;
    while !refused {
        let ready = tokio::select! {
            ready = reader.ready() => ready,
            _ = shutdown.wait() => break,
        };
        // What the batch makes rooms emit on this link goes out in one
        // write once the batch is applied.
        let hold = link.writer.hold();
        let applied = ready.and_then(|()| {
            reader.drain(|record| {
                if !refused {
                    refused = !handle(&node, &link.peer, &as_sink, &mut state, &record);
                }
            })
        });
        drop(hold);
        if let Err(e) = applied {
            tracing::debug!(link.id = id, error = %e, "link down");
            break;
        }
    }
    link.writer.close();
    node.lock_links().remove(&id);
    node.registry.drop_link(id);
    tracing::debug!(link.id = id, "link closed");
}

/// Applies one record; false when the link must be dropped (a record it may
/// not send, or one that is not a record).
fn handle(
    node: &Arc<Node>,
    peer: &Peer,
    sink: &Arc<dyn Sink>,
    link: &mut LinkState,
    record: &Bytes,
) -> bool {
    let LinkState { parts, routes } = link;
    let request: ToNode<'_> = match codec::decode(record) {
        Ok(request) => request,
        Err(e) => {
            tracing::warn!(peer = %peer.id, error = %e, "bad link record; dropping the link");
            return false;
        }
    };
    if request.from_gateway() != (peer.role == Role::Gateway) {
        tracing::warn!(peer = %peer.id, role = ?peer.role, "a record this link's role may not send; dropping the link");
        return false;
    }
    if let Some((room, page)) = history::page_of(&request) {
        if history::paged(node, routes, sink, room, page) {
            return true;
        }
    }
    match request {
        ToNode::Notify { user, body } => notify(node, Some(user), body),
        ToNode::Broadcast { body } => notify(node, None, body),
        ToNode::HandoffPart { .. } | ToNode::Handoff { .. } | ToNode::HandoffDone { .. } => {
            handoff(node, peer, sink, parts, request)
        }
        request @ (ToNode::Op { .. }
        | ToNode::Query { .. }
        | ToNode::Resume { .. }
        | ToNode::Join { .. }) => to_room(node, routes, sink, record, request),
    }
    true
}

/// A request for one room, served by the room where it lives here, or
/// answered `moved`.
fn to_room(
    node: &Arc<Node>,
    routes: &mut Routes,
    sink: &Arc<dyn Sink>,
    record: &Bytes,
    request: ToNode<'_>,
) {
    let Some((rid, room)) = request.room() else {
        return;
    };
    counted_resume_op(&request);
    let Some(live) = routes.get(node, room) else {
        return sink.reply(rid, Reply::moved());
    };
    match request {
        ToNode::Op {
            conn, user, id, op, ..
        } => {
            let op = op.map_body(|body| record.slice_ref(body));
            let sub = Sub {
                link: sink.link(),
                conn,
            };
            live.op(
                sink,
                Op {
                    rid,
                    sub,
                    user,
                    id,
                    op,
                },
            )
        }
        ToNode::Query { query, .. } => match query.map_body(|body| record.slice_ref(body)) {
            crate::protocol::Query::Erase => {
                super::erase::erase(live, node.store.clone(), sink.clone(), rid)
            }
            query => live.query(sink, rid, query),
        },
        ToNode::Resume {
            since,
            conns,
            epoch,
            ..
        } => {
            counted_resume(conns.len());
            live.resume(sink, rid, (since, epoch), &conns)
        }
        ToNode::Join { joins, .. } => live.join_all(sink, rid, &joins),
        _ => {}
    }
}

/// A hand-off from another node: its parts gathered, then the room's
/// arrival; or the end of a round of them.
fn handoff(
    node: &Arc<Node>,
    peer: &Peer,
    sink: &Arc<dyn Sink>,
    parts: &mut Parts,
    request: ToNode<'_>,
) {
    match request {
        ToNode::HandoffPart {
            rid,
            entries,
            widgets,
        } => {
            let (kept, board) = parts.by_rid.entry(rid).or_default();
            kept.extend(entries.into_iter().map(entry));
            board.extend(widgets);
        }
        ToNode::Handoff {
            rid,
            epoch,
            room,
            state,
            conns,
        } => {
            let (entries, widgets) = parts.take(rid);
            let incoming = arrival::Incoming {
                rid,
                epoch: Epoch(epoch),
                room,
                state: state.map(|s| (s, entries, widgets)),
                conns,
            };
            arrival::arrive(node, peer, sink, incoming);
        }
        ToNode::HandoffDone { epoch } => {
            tracing::debug!(node.id = %peer.id, epoch, "hand-off done");
            node.registry.done_from(&peer.id, Epoch(epoch));
        }
        _ => {}
    }
}

/// Counts a client's resume where it arrives, whether served or moved.
fn counted_resume_op(request: &ToNode<'_>) {
    if matches!(
        request,
        ToNode::Op {
            op: RoomOp::Resume { .. },
            ..
        }
    ) {
        counted_resume(1);
    }
}

/// Counts a resume request of `conns` connections.
fn counted_resume(conns: usize) {
    let metrics = crate::telemetry::metrics();
    metrics.resumes.increment(1);
    metrics.resumed_connections.increment(conns as u64);
}

/// A kept event of a hand-off, copied out of the link's buffer (it is kept
/// for long, and must not hold the buffer).
fn entry(e: HandoffEntry<'_>) -> Entry {
    Entry {
        seq: e.seq,
        frame: Bytes::copy_from_slice(e.frame),
        author: e.author.map(str::to_string),
        cid: e.cid.map(str::to_string),
    }
}

/// How long a gateway's links may outlive its membership before it is taken
/// for lapsed: one that leaves (a stop, a rolling update) closes them as it
/// goes, and is not worth a warning.
const LEFT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// After a new view: when a gateway this node links with is no longer in
/// it, checks again `LEFT_GRACE` later, against the view of then, and drops
/// the links still open (`drop_lapsed_gateways`).
pub(super) fn drop_lapsed_gateways_soon(node: &Arc<Node>, view: &crate::coordinator::View) {
    if missing_gateways(&node.lock_links(), view).is_empty() {
        return;
    }
    let mut stopped = node.stop.subscribe();
    let later = node.clone();
    stopped.clone().spawn(
        async move {
            let node = later;
            tokio::select! {
                _ = tokio::time::sleep(LEFT_GRACE) => {}
                _ = stopped.wait() => return,
            }
            let view = node.ring.borrow().view.clone();
            drop_lapsed_gateways(&node, &view);
        }
        .in_current_span(),
    );
}

/// The gateway links whose gateway was in a view and is not in this one;
/// marks those whose gateway is in it.
fn missing_gateways(links: &Map<u64, LinkEntry>, view: &crate::coordinator::View) -> Vec<u64> {
    let mut missing = Vec::new();
    for (id, entry) in links {
        if entry.peer.role != Role::Gateway {
            continue;
        }
        if view.member(&entry.peer.id).is_some() {
            entry.listed.store(true, Ordering::Relaxed);
        } else if entry.listed.load(Ordering::Relaxed) {
            missing.push(*id);
        }
    }
    missing
}

/// Drops the links of gateways whose lease lapsed (a host gone without a
/// FIN, a process paused past its lease): their connections leave every
/// room, so presence counts only live connections. A gateway that is alive
/// after all links again and resumes its subscriptions.
fn drop_lapsed_gateways(node: &Node, view: &crate::coordinator::View) {
    let mut lapsed = Vec::new();
    {
        let mut links = node.lock_links();
        for id in missing_gateways(&links, view) {
            if let Some(entry) = links.remove(&id) {
                tracing::warn!(peer = %entry.peer.id, "the gateway's lease lapsed; dropping its connections");
                entry.sink.close();
                lapsed.push(id);
            }
        }
    }
    for id in lapsed {
        node.registry.drop_link(id);
    }
}

/// Closes every link to this node. After its rooms were dropped (a lapsed
/// lease), nothing a peer holds of them is true any more: gateways resume
/// their subscriptions (`join` with `since`) when they link again, which
/// reloads each room and fills what was missed.
pub(super) fn close_links(node: &Node) {
    let sinks: Vec<Arc<LinkSink>> = node.lock_links().values().map(|l| l.sink.clone()).collect();
    for sink in sinks {
        sink.close();
    }
}

/// Relays a notification for `user` (or, without one, an announcement for
/// everyone) to every gateway linked to this node.
fn notify(node: &Node, user: Option<&str>, body: &[u8]) {
    let user = match user.map(UserId::parse) {
        Some(Ok(user)) => Some(user),
        Some(Err(_)) => return,
        None => None,
    };
    let Ok(body) = serde_json::from_slice::<&serde_json::value::RawValue>(body) else {
        return;
    };
    let frame = ServerFrame::Notify { body }.encode();
    let targets: Vec<Arc<LinkSink>> = node
        .lock_links()
        .values()
        .filter(|l| l.peer.role == Role::Gateway)
        .map(|l| l.sink.clone())
        .collect();
    for target in targets {
        match &user {
            Some(user) => target.notify(user.as_str(), frame.as_bytes()),
            None => target.broadcast(frame.as_bytes()),
        }
    }
}

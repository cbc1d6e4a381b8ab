//! Routing to the application nodes: by the ring, over one link per node,
//! replies matched by request id, operations routed again when a node
//! answers that it does not own a room (or its link drops), rooms resumed at
//! their new owner when the ring moves them, and every request answered
//! within a bounded time.
//!
//! Task tree: `Upstream::spawn` starts a supervisor that follows the ring
//! view and keeps one link task per node member (connect with backoff, then
//! read records and fan them out), and a sweeper that expires requests
//! nobody answered. Retries wait in short-lived timer tasks.
//!
//! Locks: a request is taken out of `pending` (and the lock released)
//! before it is answered, retried or failed, since each of those may send
//! another request.
//!
//! Here: the router's state and sending operations. `routing`: where a
//! room's operations go; `supervise`: one link task per node, reporting
//! its link up and down; `links`: a link task and the answers it reads;
//! `pending`: requests in flight, routed again, failed or expired;
//! `retry`: when a request goes again; `gathered`: joins gathered per room;
//! `resumes`: rooms subscribed again after a move; `queries`: the HTTP
//! API's questions, notifications and announcements. The table of requests
//! in flight is the link's (`link::calls`).

mod gathered;
mod links;
mod pending;
mod queries;
mod resumes;
mod retry;
mod routing;
mod supervise;
#[cfg(test)]
mod tests;

use gathered::counted_joins;
use retry::Patience;
pub(in crate::gateway) use routing::Route;
use supervise::{Report, Reporter};

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_bytes::Bytes as Raw;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::joins::{Gates, Joiner, Next, Shared};
use super::outbox::{Dirty, Outbox};
use super::sessions::Sessions;
use super::subs::Subscriptions;
use super::websocket;
use crate::coordinator::{Coordinator, MemberState, RingView, Role};
use crate::ids::{ConnId, Map, NodeId, Rid, RoomId, UserId};
use crate::link::calls::{Call, Calls, Ids, Parts};
use crate::link::{self, codec, FromNode, LinkError, LinkReader, LinkWriter, Secret, ToNode};
use crate::protocol::client::RoomOp;
use crate::protocol::server::error_frame;
use crate::protocol::{ErrorCode, Failure, Query, Status};
use crate::shutdown::Shutdown;

/// How long a request may wait for its answer; then it is `unavailable`.
pub(super) const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// How often unanswered requests are looked for.
const SWEEP: Duration = Duration::from_millis(250);
/// How long a node whose link just dropped has to accept a new one before
/// it counts as gone.
const SUSPECT_WITHIN: Duration = Duration::from_millis(300);
/// Quick tries at a new link before a dropped node is left to its lease.
const SUSPECT_TRIES: usize = 4;

/// What kind of client operation a request carries, for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpKind {
    Join,
    Resume,
    /// An operation that must not be applied twice and is not idempotent by
    /// an id (board changes, a `send` without an id): when its link drops
    /// before the answer it may or may not have been applied, so it is
    /// answered `unavailable` instead of being sent again.
    Once,
    Other,
}

/// A client operation on its way to a room's owner: the encoded record
/// (sent again as it is when the room must be routed again) and where its
/// answer goes.
struct OpPending {
    conn: ConnId,
    out: Arc<Outbox>,
    kind: OpKind,
    record: Bytes,
    attempt: usize,
    /// The sweep round it was first sent in (see `Upstream::round`).
    born: u64,
    /// The least link version that can carry it.
    version: u16,
    /// For joins gathered at their room's gate, sent as one request: the
    /// joiners (`conn` and `out` are the first's).
    joiners: Vec<Joiner>,
}

impl OpPending {
    /// A request not yet sent, made in sweep round `born`.
    fn new(
        conn: ConnId,
        out: Arc<Outbox>,
        kind: OpKind,
        record: Bytes,
        version: u16,
        born: u64,
    ) -> Self {
        Self {
            conn,
            out,
            kind,
            record,
            attempt: 0,
            born,
            version,
            joiners: Vec::new(),
        }
    }
}

/// A whole room subscribed again at its owner (link version 2 on); its
/// answer's parts are the missed events, or the start of a `joined` that
/// replaces them (more were missed than a replay holds).
struct ResumePending {
    room: RoomId,
    attempt: usize,
}

/// What the gateway keeps with a request in flight (`link::calls`, whose
/// deadlines count sweep rounds).
enum Pending {
    Op(OpPending),
    Query(oneshot::Sender<(Status, Bytes)>),
    Resume(ResumePending),
}

/// One node's link as the router sees it.
struct NodeLink {
    /// The writer while the link is up.
    writer: Mutex<Option<LinkWriter>>,
    /// The link protocol version of the link that is up (of the last one
    /// while none is): a record of a later version is never sent on it.
    version: std::sync::atomic::AtomicU16,
}

/// Routes room operations to their owners.
pub(super) struct Upstream {
    me: NodeId,
    /// Told when a node is gone (its link dropped and it refuses another).
    coordinator: Coordinator,
    secret: Secret,
    ring: watch::Receiver<Arc<RingView>>,
    subs: Arc<Subscriptions>,
    sessions: Arc<Sessions>,
    /// Links by node; short critical sections only.
    links: Mutex<Map<NodeId, Arc<NodeLink>>>,
    /// Requests sent and not yet answered, by request id (unique on this
    /// gateway, so that a request keeps its id when routed again).
    pending: Mutex<Calls<Pending>>,
    ids: Ids,
    /// Bumped whenever the ring or a link changes, so that a cached route
    /// that is still good costs one load to check.
    routes: AtomicU64,
    /// Counts sweeps (one per `SWEEP`): a request's age is measured in
    /// rounds, so that sending one reads no clock.
    round: AtomicU64,
    /// Joins waiting for one of their room on its way, with the operations
    /// of their connections behind them.
    gates: Gates<(Rid, OpPending)>,
    /// Spawns the link tasks and the timers of retries, which a stopping
    /// gateway waits for.
    tasks: Shutdown,
}

/// A client operation as a connection hands it over.
pub(super) struct OpRequest<'a> {
    pub(super) room: &'a str,
    pub(super) conn: ConnId,
    pub(super) out: &'a Arc<Outbox>,
    pub(super) user: &'a str,
    pub(super) id: Option<&'a str>,
    pub(super) op: RoomOp<&'a [u8]>,
    /// The connection's cached route to the room's owner, checked and
    /// refreshed here.
    pub(super) route: Option<&'a mut Option<Route>>,
}

impl Upstream {
    /// Starts the router, its link supervisor and its sweeper.
    pub(super) fn spawn(
        me: NodeId,
        coordinator: Coordinator,
        secret: Secret,
        ring: watch::Receiver<Arc<RingView>>,
        subs: Arc<Subscriptions>,
        sessions: Arc<Sessions>,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        let up = Arc::new(Self {
            me,
            coordinator,
            secret,
            ring,
            subs,
            sessions,
            links: Mutex::default(),
            pending: Mutex::default(),
            ids: Ids::default(),
            routes: AtomicU64::new(1),
            round: AtomicU64::new(0),
            gates: Gates::default(),
            tasks: shutdown.clone(),
        });
        shutdown.spawn(up.clone().supervise(shutdown.clone()).in_current_span());
        shutdown.spawn(up.clone().sweep(shutdown.clone()).in_current_span());
        up
    }

    /// Runs `then` at `at`, unless the gateway stops first.
    pub(super) fn at<F>(&self, at: Instant, then: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut shutdown = self.tasks.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => then.await,
                _ = shutdown.wait() => {}
            }
        });
    }

    fn lock_pending(&self) -> MutexGuard<'_, Calls<Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current ring view.
    pub(super) fn view(&self) -> Arc<RingView> {
        self.ring.borrow().clone()
    }

    /// Sends a client operation to its room's owner; the answer goes
    /// straight to the connection. Returns the link's writer when it is
    /// overloaded, for the connection to wait on before reading more.
    pub(super) fn op(self: &Arc<Self>, req: OpRequest<'_>) -> Option<LinkWriter> {
        let rid = self.ids.next();
        let (kind, version) = kind_and_version(&req.op, req.id.is_some());
        if let RoomOp::Join { since, epoch } = &req.op {
            let parsed = (RoomId::parse(req.room), UserId::parse(req.user));
            if let (true, Ok(room), Ok(user)) = (self.gathers_joins(req.room), parsed.0, parsed.1) {
                // Joins go to their room's gate, and on with the others
                // that came while one was on its way.
                let joiner = Joiner {
                    conn: req.conn,
                    out: req.out.clone(),
                    user,
                    id: req.id.map(Box::from),
                    since: *since,
                    epoch: epoch.as_deref().map(Box::from),
                };
                let next = self.gates.enter(&room, joiner);
                self.joins_next(req.room, next);
                return None;
            }
        }
        let record = ToNode::Op {
            rid,
            room: req.room,
            conn: req.conn,
            user: req.user,
            id: req.id,
            op: req.op.map_body(Raw::new),
        };
        let record = match codec::encode(&record) {
            Ok(record) => record,
            Err(e) => {
                let failure = Failure::new(ErrorCode::TooLarge, e.to_string());
                req.out.send(websocket::text(
                    error_frame(&failure, req.id, Some(req.room)).as_bytes(),
                ));
                return None;
            }
        };
        let pending = OpPending::new(
            req.conn,
            req.out.clone(),
            kind,
            record,
            version,
            self.round(),
        );
        let (rid, pending) = self.gates.behind(req.room, req.conn, (rid, pending))?;
        if kind == OpKind::Join {
            counted_joins(1);
        }
        self.send_op(rid, pending, req.room, req.route)
    }

    /// Sends (or sends again) an operation to the owner of `room`.
    fn send_op(
        self: &Arc<Self>,
        rid: Rid,
        op: OpPending,
        room: &str,
        cached: Option<&mut Option<Route>>,
    ) -> Option<LinkWriter> {
        let Some((owner, writer)) = self.route(room, cached) else {
            self.retry(rid, op);
            return None;
        };
        if self.version_of(&owner) < op.version {
            // Only during a rolling update: the owner's build is older.
            self.unavailable(&op);
            return None;
        }
        let record = op.record.clone();
        let due = self.due(op.born);
        self.lock_pending().insert(rid, owner, due, Pending::Op(op));
        if writer
            .send_with(|buf| {
                buf.extend_from_slice(&record);
                Ok(())
            })
            .is_err()
        {
            // Taken out first: a retry may send (and lock) again.
            let call = self.lock_pending().take(rid);
            if let Some(Pending::Op(op)) = call.map(|c| c.call) {
                self.retry(rid, op);
            }
            return None;
        }
        writer.is_overloaded().then_some(writer)
    }
}

/// What kind of operation `op` is for its answer, and the least link
/// version that carries it.
fn kind_and_version<B>(op: &RoomOp<B>, has_id: bool) -> (OpKind, u16) {
    let kind = match op {
        RoomOp::Join { .. } => OpKind::Join,
        RoomOp::Resume { .. } => OpKind::Resume,
        RoomOp::BoardPut { .. }
        | RoomOp::BoardMove { .. }
        | RoomOp::BoardShift { .. }
        | RoomOp::BoardDelete { .. }
        | RoomOp::BoardRole { .. } => OpKind::Once,
        RoomOp::Send { .. } if !has_id => OpKind::Once,
        _ => OpKind::Other,
    };
    let version = match op {
        RoomOp::PresenceList { .. } => 2,
        RoomOp::History { .. } => 4,
        _ => 1,
    };
    (kind, version)
}

/// The room of an operation record this gateway encoded.
fn record_room(record: &Bytes) -> String {
    record_room_and_id(record).0
}

/// The room and client id of an operation record this gateway encoded.
fn record_room_and_id(record: &Bytes) -> (String, Option<String>) {
    let mut buf = BytesMut::from(&record[..]);
    match codec::split_record(&mut buf) {
        Ok(Some(body)) => match codec::decode::<ToNode<'_>>(&body) {
            Ok(ToNode::Op { room, id, .. }) => (room.to_string(), id.map(str::to_string)),
            Ok(ToNode::Join { room, .. }) => (room.to_string(), None),
            _ => (String::new(), None),
        },
        _ => (String::new(), None),
    }
}

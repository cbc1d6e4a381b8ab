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

use std::collections::HashMap;
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
use crate::link::{self, codec, FromNode, LinkError, LinkReader, LinkWriter, Secret, ToNode};
use crate::protocol::client::RoomOp;
use crate::protocol::server::error_frame;
use crate::protocol::{ErrorCode, Failure, Query, Status};
use crate::shutdown::Shutdown;

/// How long a request may wait for its answer; then it is `unavailable`.
pub(super) const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// Pauses between routing attempts while a room has no reachable owner.
const RETRY_BACKOFF_MS: [u64; 12] = [2, 5, 10, 20, 40, 80, 120, 200, 300, 300, 300, 300];
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
    /// The node it was sent to.
    node: Option<NodeId>,
    /// The sweep round it was sent in (see `Upstream::round`).
    born: u64,
    /// Parts of the answer so far.
    parts: Vec<(Option<u64>, Bytes)>,
    /// The least link version that can carry it.
    version: u16,
    /// For joins gathered at their room's gate, sent as one request: the
    /// joiners (`conn` and `out` are the first's).
    joiners: Vec<Joiner>,
}

/// A whole room subscribed again at its owner (link version 2 on).
struct ResumePending {
    room: RoomId,
    node: NodeId,
    born: u64,
    attempt: usize,
    /// The missed events so far.
    parts: Vec<(u64, Bytes)>,
    /// The start of a `joined` that replaces them (more were missed than
    /// a replay holds).
    joined: BytesMut,
}

enum Pending {
    Op(OpPending),
    Query {
        tx: oneshot::Sender<(Status, Bytes)>,
        node: NodeId,
        parts: BytesMut,
        born: u64,
    },
    Resume(ResumePending),
}

impl Pending {
    /// The node it was sent to.
    fn node(&self) -> Option<&NodeId> {
        match self {
            Self::Op(op) => op.node.as_ref(),
            Self::Query { node, .. } | Self::Resume(ResumePending { node, .. }) => Some(node),
        }
    }

    /// The sweep round it was sent in.
    fn born(&self) -> u64 {
        match self {
            Self::Op(OpPending { born, .. })
            | Self::Query { born, .. }
            | Self::Resume(ResumePending { born, .. }) => *born,
        }
    }
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
    pending: Mutex<Map<Rid, Pending>>,
    next_rid: AtomicU64,
    /// Bumped whenever the ring or a link changes, so that a cached route
    /// that is still good costs one load to check.
    routes: AtomicU64,
    /// Counts sweeps (one per `SWEEP`): a request's age is measured in
    /// rounds, so that sending one reads no clock.
    round: AtomicU64,
    /// Joins waiting for one of their room on its way, with the operations
    /// of their connections behind them.
    gates: Gates<(Rid, OpPending)>,
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

/// Where a room's operations go, as of one version of the routes.
#[derive(Clone)]
pub(super) struct Route {
    version: u64,
    node: NodeId,
    writer: LinkWriter,
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
            next_rid: AtomicU64::new(1),
            routes: AtomicU64::new(1),
            round: AtomicU64::new(0),
            gates: Gates::default(),
        });
        tokio::spawn(up.clone().supervise(shutdown.clone()).in_current_span());
        tokio::spawn(up.clone().sweep(shutdown).in_current_span());
        up
    }

    fn lock_pending(&self) -> MutexGuard<'_, Map<Rid, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current ring view.
    pub(super) fn view(&self) -> Arc<RingView> {
        self.ring.borrow().clone()
    }

    /// The route to a room's owner: the cached one while nothing changed.
    fn route(
        &self,
        room: &str,
        cached: Option<&mut Option<Route>>,
    ) -> Option<(NodeId, LinkWriter)> {
        let version = self.routes.load(Ordering::Acquire);
        let Some(cache) = cached else {
            return self.writer_to_owner(room);
        };
        if let Some(route) = cache {
            if route.version == version && !route.writer.is_closed() {
                return Some((route.node.clone(), route.writer.clone()));
            }
        }
        let (node, writer) = self.writer_to_owner(room)?;
        *cache = Some(Route {
            version,
            node: node.clone(),
            writer: writer.clone(),
        });
        Some((node, writer))
    }

    /// Routes changed: every cached route is checked again.
    fn routes_changed(&self) {
        self.routes.fetch_add(1, Ordering::AcqRel);
    }

    /// The link protocol version spoken with `node`.
    fn version_of(&self, node: &NodeId) -> u16 {
        let links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links
            .get(node)
            .map_or(1, |l| l.version.load(Ordering::Acquire))
    }

    /// The owner of `key` and its link's writer, if the link is up.
    fn writer_to_owner(&self, key: &str) -> Option<(NodeId, LinkWriter)> {
        let owner = self.ring.borrow().ring.owner_of(key)?.clone();
        let link = self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&owner)?
            .clone();
        let writer = link
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        (!writer.is_closed()).then_some((owner, writer))
    }

    /// Sends a client operation to its room's owner; the answer goes
    /// straight to the connection. Returns the link's writer when it is
    /// overloaded, for the connection to wait on before reading more.
    pub(super) fn op(self: &Arc<Self>, req: OpRequest<'_>) -> Option<LinkWriter> {
        let rid = self.next_rid.fetch_add(1, Ordering::Relaxed);
        let kind = match req.op {
            RoomOp::Join { .. } => OpKind::Join,
            RoomOp::Resume { .. } => OpKind::Resume,
            RoomOp::BoardPut { .. }
            | RoomOp::BoardMove { .. }
            | RoomOp::BoardShift { .. }
            | RoomOp::BoardDelete { .. }
            | RoomOp::BoardRole { .. } => OpKind::Once,
            RoomOp::Send { .. } if req.id.is_none() => OpKind::Once,
            _ => OpKind::Other,
        };
        let version = match req.op {
            RoomOp::PresenceList { .. } => 2,
            _ => 1,
        };
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
        let pending = OpPending {
            conn: req.conn,
            out: req.out.clone(),
            kind,
            record,
            attempt: 0,
            node: None,
            born: self.round(),
            parts: Vec::new(),
            version,
            joiners: Vec::new(),
        };
        let (rid, pending) = self.gates.behind(req.room, req.conn, (rid, pending))?;
        if kind == OpKind::Join {
            counted_joins(1);
        }
        self.send_op(rid, pending, req.room, req.route)
    }

    /// Whether joins of `room` are gathered: its owner's link speaks
    /// version 3.
    fn gathers_joins(&self, room: &str) -> bool {
        let owner = self.ring.borrow().ring.owner_of(room).cloned();
        owner.is_some_and(|owner| self.version_of(&owner) >= 3)
    }

    /// A join request of `room` ended (answered, or given up): the joins
    /// that waited at its gate go, as one request, and then the operations
    /// behind them.
    fn join_ended(self: &Arc<Self>, room: &str) {
        let next = self.gates.answered(room);
        self.joins_next(room, next);
    }

    /// Sends what goes next at a room's gate, or arms its timer.
    fn joins_next(self: &Arc<Self>, room: &str, next: Next<(Rid, OpPending)>) {
        match next {
            Next::Wait => {}
            Next::At(at, timer) => {
                let up = self.clone();
                let room = room.to_string();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    let next = up.gates.fire(&room, timer);
                    up.joins_next(&room, next);
                });
            }
            Next::Go(joiners, later) => {
                self.send_joins(room, joiners);
                for (rid, op) in later {
                    self.send_op(rid, op, room, None);
                }
            }
        }
    }

    /// Sends joins of `room` gathered at its gate: in one request, or one
    /// each to an owner of link version 2 or less.
    fn send_joins(self: &Arc<Self>, room: &str, joiners: Vec<Joiner>) {
        let rid = self.next_rid.fetch_add(1, Ordering::Relaxed);
        let record = ToNode::Join {
            rid,
            room,
            joins: joiners.iter().map(Joiner::joining).collect(),
        };
        let record = match codec::encode(&record) {
            Ok(record) if self.gathers_joins(room) => record,
            _ => {
                for joiner in joiners {
                    self.send_alone(room, joiner);
                }
                return;
            }
        };
        let Some(first) = joiners.first() else { return };
        counted_joins(joiners.len());
        let pending = OpPending {
            conn: first.conn,
            out: first.out.clone(),
            kind: OpKind::Join,
            record,
            attempt: 0,
            node: None,
            born: self.round(),
            parts: Vec::new(),
            version: 3,
            joiners,
        };
        self.send_op(rid, pending, room, None);
    }

    /// Sends a join that waited at its room's gate on its own.
    fn send_alone(self: &Arc<Self>, room: &str, joiner: Joiner) {
        let rid = self.next_rid.fetch_add(1, Ordering::Relaxed);
        let record = ToNode::Op {
            rid,
            room,
            conn: joiner.conn,
            user: joiner.user.as_str(),
            id: joiner.id.as_deref(),
            op: RoomOp::Join {
                since: joiner.since,
                epoch: joiner.epoch.as_deref().map(str::to_string),
            },
        };
        let Ok(record) = codec::encode(&record) else {
            return;
        };
        let pending = OpPending {
            conn: joiner.conn,
            out: joiner.out,
            kind: OpKind::Join,
            record,
            attempt: 0,
            node: None,
            born: self.round(),
            parts: Vec::new(),
            version: 1,
            joiners: Vec::new(),
        };
        self.send_op(rid, pending, room, None);
    }

    /// Sends (or sends again) an operation to the owner of `room`.
    fn send_op(
        self: &Arc<Self>,
        rid: Rid,
        mut op: OpPending,
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
        op.node = Some(owner);
        let record = op.record.clone();
        self.lock_pending().insert(rid, Pending::Op(op));
        if writer
            .send_with(|buf| {
                buf.extend_from_slice(&record);
                Ok(())
            })
            .is_err()
        {
            // Taken out first: a retry may send (and lock) again.
            let pending = self.lock_pending().remove(&rid);
            if let Some(Pending::Op(op)) = pending {
                self.retry(rid, op);
            }
            return None;
        }
        writer.is_overloaded().then_some(writer)
    }

    /// Tries again a little later, or gives up with `unavailable`; a resume
    /// keeps trying as long as its connection is subscribed.
    fn retry(self: &Arc<Self>, rid: Rid, mut op: OpPending) {
        let room = record_room(&op.record);
        if op.kind == OpKind::Resume && !self.subs.is_subscribed(room.as_str(), op.conn) {
            // Its connection left. The room's events are held until a resume
            // ends; if a connection that joined meanwhile is all that is
            // left, the resume goes on for it.
            if let Some((conn, since)) = self.subs.held_for(room.as_str()) {
                self.resume(room.as_str(), conn, since);
            }
            return;
        }
        let last = RETRY_BACKOFF_MS.len() - 1;
        let pause = match RETRY_BACKOFF_MS.get(op.attempt) {
            Some(&pause) => Some(pause),
            None if op.kind == OpKind::Resume => Some(RETRY_BACKOFF_MS[last]),
            None => None,
        };
        let Some(pause) = pause.filter(|_| op.kind == OpKind::Resume || !self.expired(op.born))
        else {
            return self.unavailable(&op);
        };
        op.attempt = (op.attempt + 1).min(RETRY_BACKOFF_MS.len());
        tracing::trace!(room.id = %room, conn = op.conn, attempt = op.attempt, "routing again");
        let up = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let room = record_room(&op.record);
            if let Some(writer) = up.send_op(rid, op, room.as_str(), None) {
                writer.wait_room().await;
            }
        });
    }

    /// Answers an operation `unavailable`.
    fn unavailable(self: &Arc<Self>, op: &OpPending) {
        let (room, _) = record_room_and_id(&op.record);
        let failure = Failure::new(
            ErrorCode::Unavailable,
            format!("{room} cannot be served right now; retry"),
        );
        self.failed(op, &failure, None);
    }

    /// Answers an operation (each of its joiners) with an `error` frame.
    fn failed(self: &Arc<Self>, op: &OpPending, failure: &Failure, dirty: Option<&mut Dirty>) {
        let (room, id) = record_room_and_id(&op.record);
        let mut frames = Vec::with_capacity(op.joiners.len().max(1));
        if op.joiners.is_empty() {
            frames.push((&op.out, error_frame(failure, id.as_deref(), Some(&room))));
        }
        for joiner in &op.joiners {
            let frame = error_frame(failure, joiner.id.as_deref(), Some(&room));
            frames.push((&joiner.out, frame));
        }
        match dirty {
            Some(dirty) => {
                for (out, frame) in frames {
                    dirty.push(out, websocket::text(frame.as_bytes()));
                }
            }
            None => {
                for (out, frame) in frames {
                    out.send(websocket::text(frame.as_bytes()));
                }
            }
        }
        if op.kind == OpKind::Join {
            self.join_ended(&room);
        }
    }

    /// Asks a room's owner an HTTP API question, within `ANSWER_WITHIN`.
    pub(super) async fn query(&self, room: &RoomId, query: Query<&[u8]>) -> Result<Bytes, Failure> {
        let give_up = Instant::now() + ANSWER_WITHIN;
        let unavailable = || {
            Failure::new(
                ErrorCode::Unavailable,
                format!("{room} cannot be served right now; retry"),
            )
        };
        for pause in RETRY_BACKOFF_MS.iter().chain(std::iter::repeat(&300)) {
            if Instant::now() >= give_up {
                break;
            }
            if let Some((owner, writer)) = self.writer_to_owner(room.as_str()) {
                let rid = self.next_rid.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = oneshot::channel();
                self.lock_pending().insert(
                    rid,
                    Pending::Query {
                        tx,
                        node: owner,
                        parts: BytesMut::new(),
                        born: self.round(),
                    },
                );
                let record = ToNode::Query {
                    rid,
                    room: room.as_str(),
                    query: query.clone().map_body(Raw::new),
                };
                if writer.send(&record).is_ok() {
                    match rx.await {
                        Ok((Status::Ok, answer)) => return Ok(answer),
                        Ok((Status::Moved, _)) => {}
                        Ok((Status::Failed(f), _)) => return Err(f),
                        // The link dropped with the request in flight: a read
                        // is asked again; a post may have been applied, so it
                        // is not sent twice.
                        Err(_) if !matches!(query, Query::Post { .. }) => {}
                        Err(_) => {
                            return Err(Failure::new(
                                ErrorCode::Unavailable,
                                "the room's node went away; retry",
                            ))
                        }
                    }
                } else {
                    self.lock_pending().remove(&rid);
                }
            }
            tokio::time::sleep(Duration::from_millis(*pause)).await;
        }
        Err(unavailable())
    }

    /// Sends a notification through the node that owns the user's key; that
    /// node relays it to every gateway.
    pub(super) fn notify(&self, user: &str, body: &[u8]) -> Result<(), Failure> {
        let unreachable = || Failure::new(ErrorCode::Unavailable, "no node is reachable; retry");
        let (_, writer) = self
            .writer_to_owner(&format!("user:{user}"))
            .ok_or_else(unreachable)?;
        writer
            .send(&ToNode::Notify {
                user,
                body: Raw::new(body),
            })
            .map_err(|_| unreachable())
    }

    /// Sends an announcement for every connection of every gateway through
    /// one node (each node relays to every gateway linked to it).
    pub(super) fn broadcast(&self, body: &[u8]) -> Result<(), Failure> {
        let unreachable = || Failure::new(ErrorCode::Unavailable, "no node is reachable; retry");
        let (_, writer) = self.writer_to_owner("broadcast").ok_or_else(unreachable)?;
        writer
            .send(&ToNode::Broadcast {
                body: Raw::new(body),
            })
            .map_err(|_| unreachable())
    }

    /// Keeps one link per node member until shutdown.
    async fn supervise(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut ring = self.ring.clone();
        let mut tasks: HashMap<NodeId, (String, watch::Sender<bool>)> = HashMap::new();
        loop {
            let view = ring.borrow_and_update().clone();
            let members: HashMap<NodeId, String> = view
                .view
                .with_role(Role::Node)
                .map(|m| (m.id.clone(), m.addr.clone()))
                .collect();
            tasks.retain(|id, (addr, _stop)| members.get(id) == Some(addr));
            self.links
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|id, _| tasks.contains_key(id));
            for (id, addr) in members {
                if tasks.contains_key(&id) {
                    continue;
                }
                let (stop_tx, stop_rx) = watch::channel(false);
                let link = Arc::new(NodeLink {
                    writer: Mutex::new(None),
                    version: std::sync::atomic::AtomicU16::new(1),
                });
                self.links
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.clone(), link.clone());
                let span = tracing::debug_span!("upstream", node.id = %id);
                let task = self.clone().keep_link(
                    id.clone(),
                    addr.clone(),
                    link,
                    stop_rx,
                    shutdown.clone(),
                );
                tokio::spawn(task.instrument(span));
                tasks.insert(id, (addr, stop_tx));
            }
            self.routes_changed();
            self.resume_moved(None);
            tokio::select! {
                changed = ring.changed() => if changed.is_err() { return },
                _ = shutdown.wait() => return,
            }
        }
    }

    /// Connects to one node (with backoff) and serves the link until its
    /// node leaves the view or the gateway stops.
    async fn keep_link(
        self: Arc<Self>,
        node: NodeId,
        addr: String,
        link: Arc<NodeLink>,
        mut stop: watch::Receiver<bool>,
        mut shutdown: Shutdown,
    ) {
        let mut backoff = Duration::from_millis(50);
        // Set when the link just dropped, with the node's generation as of
        // the link's start: the next connect, at once, decides whether that
        // process is gone.
        let mut dropped: Option<u64> = None;
        loop {
            let connected = match dropped.take() {
                Some(generation) => {
                    self.reconnect_or_suspect(&addr, &node, generation, &stop, &shutdown)
                        .await
                }
                None => link::client::connect(&addr, Role::Gateway, &self.me, &self.secret).await,
            };
            match connected {
                Ok(up) if up.peer.id == node => {
                    backoff = Duration::from_millis(50);
                    let generation = self.view().view.member(&node).map(|m| m.generation);
                    tracing::debug!(addr = %addr, version = up.version, "link up");
                    link.version.store(up.version, Ordering::Release);
                    *link.writer.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(up.writer.clone());
                    self.routes_changed();
                    tokio::select! {
                        _ = self.read_link(&node, up.reader) => {}
                        _ = shutdown.wait() => {}
                        _ = stop.changed() => {}
                    }
                    link.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
                    up.writer.close();
                    self.routes_changed();
                    tracing::debug!("link down");
                    self.fail_pending(&node);
                    self.resume_moved(Some(&node));
                    if generation.is_some() {
                        dropped = generation;
                        continue;
                    }
                }
                Ok(other) => {
                    tracing::warn!(addr = %addr, peer = %other.peer.id, "the node at this address is another member");
                    other.writer.close();
                }
                Err(e) => tracing::debug!(addr = %addr, error = %e, "link connect failed"),
            }
            if shutdown.is_fired() || *stop.borrow() || stop.has_changed().is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait() => return,
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Right after a node's link dropped: a few quick tries at a new link.
    /// A refused connection says the process is gone (its port is closed;
    /// a dying process may still complete a handshake's first step, which
    /// then resets, so a reset is tried again); a slow or partitioned node
    /// is left to its lease.
    async fn reconnect_or_suspect(
        &self,
        addr: &str,
        node: &NodeId,
        generation: u64,
        stop: &watch::Receiver<bool>,
        shutdown: &Shutdown,
    ) -> Result<link::Link, LinkError> {
        let mut last = Err(LinkError::Timeout);
        for _ in 0..SUSPECT_TRIES {
            let connect = link::client::connect(addr, Role::Gateway, &self.me, &self.secret);
            last = tokio::time::timeout(SUSPECT_WITHIN, connect)
                .await
                .unwrap_or(Err(LinkError::Timeout));
            match &last {
                Ok(_) => return last,
                Err(LinkError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    if !shutdown.is_fired() && !*stop.borrow() {
                        self.suspect(node, generation).await;
                    }
                    return last;
                }
                Err(LinkError::Io(_) | LinkError::Closed) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(_) => return last,
            }
        }
        last
    }

    /// The node's link dropped and its port refuses a new one: the process
    /// of that generation is gone. Its lease is revoked at once, so
    /// that its rooms move now rather than when the lease would lapse; its
    /// appends are fenced if it was merely cut off.
    ///
    /// A node that drained (or already left) stopped as planned: that is not
    /// worth a warning, though its lease goes the same way.
    async fn suspect(&self, node: &NodeId, generation: u64) {
        let planned = self
            .view()
            .view
            .member(node)
            .is_none_or(|m| m.generation != generation || m.state == MemberState::Draining);
        if planned {
            tracing::debug!(node.id = %node, generation, "a drained or departed node stopped: revoking its lease");
        } else {
            tracing::warn!(node.id = %node, generation, "link lost and the node refuses another: revoking its lease");
        }
        if let Err(e) = self.coordinator.revoke(node, generation).await {
            tracing::warn!(node.id = %node, error = %e, "revoking failed; the lease lapses instead");
        }
    }

    /// Reads the node's records until the link fails; what a batch queued
    /// on client sockets is flushed once, after the batch.
    async fn read_link(self: &Arc<Self>, node: &NodeId, mut reader: LinkReader) {
        let mut dirty = Dirty::default();
        loop {
            let read = reader
                .read_batch(|record| self.on_record(node, &record, &mut dirty))
                .await;
            dirty.flush();
            if let Err(e) = read {
                tracing::debug!(error = %e, "link read ended");
                return;
            }
        }
    }

    /// Handles one record from a node.
    fn on_record(self: &Arc<Self>, node: &NodeId, record: &Bytes, dirty: &mut Dirty) {
        let record: FromNode<'_> = match codec::decode(record) {
            Ok(record) => record,
            Err(e) => return tracing::warn!(error = %e, "dropping a bad link record"),
        };
        match record {
            FromNode::Event {
                room,
                seq,
                skip,
                payload,
            } => self.subs.dispatch(room, seq, skip, payload, dirty),
            FromNode::Notify { user, payload } => {
                let sent = self
                    .sessions
                    .send_to_user(user, &websocket::text(payload), dirty);
                dirty.delivered(sent as u64);
            }
            FromNode::Broadcast { payload } => {
                let sent = self.sessions.send_to_all(&websocket::text(payload), dirty);
                dirty.delivered(sent as u64);
            }
            FromNode::Part { rid, seq, payload } => match self.lock_pending().get_mut(&rid) {
                Some(Pending::Op(op)) => op.parts.push((seq, Bytes::copy_from_slice(payload))),
                Some(Pending::Query { parts, .. }) => parts.extend_from_slice(payload),
                Some(Pending::Resume(resume)) => match seq {
                    Some(seq) => resume.parts.push((seq, Bytes::copy_from_slice(payload))),
                    None => resume.joined.extend_from_slice(payload),
                },
                None => {}
            },
            FromNode::Reply {
                rid,
                status,
                seq,
                payload,
            } => {
                // Taken out first: answering may send (and lock) again.
                let pending = self.lock_pending().remove(&rid);
                self.on_reply(node, rid, pending, (status, seq, payload), dirty)
            }
        }
    }

    /// Handles the answer to a request.
    fn on_reply(
        self: &Arc<Self>,
        node: &NodeId,
        rid: Rid,
        pending: Option<Pending>,
        (status, seq, payload): (Status, Option<u64>, &[u8]),
        dirty: &mut Dirty,
    ) {
        match pending {
            Some(Pending::Query { tx, mut parts, .. }) => {
                parts.extend_from_slice(payload);
                let _ = tx.send((status, parts.freeze()));
            }
            Some(Pending::Op(op)) => self.on_op_reply(node, rid, op, status, seq, payload, dirty),
            Some(Pending::Resume(mut resume)) => match status {
                Status::Ok => {
                    let room = resume.room.as_str();
                    resume.joined.extend_from_slice(payload);
                    let joined = match (seq, resume.joined.is_empty()) {
                        (Some(seq), false) => {
                            let frame = resume.joined.freeze();
                            Some((seq, joined_epoch(&frame), frame))
                        }
                        _ => None,
                    };
                    self.subs.resumed(room, node, &resume.parts, joined, dirty);
                }
                Status::Moved | Status::Failed(_) => {
                    self.retry_resume(resume.room, resume.attempt + 1)
                }
            },
            None => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_op_reply(
        self: &Arc<Self>,
        owner: &NodeId,
        rid: Rid,
        mut op: OpPending,
        status: Status,
        seq: Option<u64>,
        payload: &[u8],
        dirty: &mut Dirty,
    ) {
        match (status, op.kind) {
            (Status::Moved, _) => {
                op.parts.clear();
                self.retry(rid, op)
            }
            (Status::Failed(_), OpKind::Resume) => {
                op.attempt += 1;
                op.parts.clear();
                self.retry(rid, op)
            }
            (Status::Ok, OpKind::Resume) => {
                let room = record_room(&op.record);
                let mut missed = Vec::new();
                let mut joined = Vec::new();
                for (seq, frame) in op.parts {
                    match seq {
                        Some(seq) => missed.push((seq, frame)),
                        None => joined.extend_from_slice(&frame),
                    }
                }
                joined.extend_from_slice(payload);
                match seq.filter(|_| !joined.is_empty()) {
                    // Past the replay budget, or another history: this
                    // connection gets the room's `joined` in their place.
                    Some(seq) => {
                        let epoch = joined_epoch(&joined);
                        let frame = websocket::text(&joined);
                        let at = (seq, epoch);
                        self.subs
                            .resynced(room.as_str(), owner, op.conn, at, frame, dirty);
                    }
                    None => self
                        .subs
                        .resumed(room.as_str(), owner, &missed, None, dirty),
                }
            }
            (Status::Failed(f), _) => self.failed(&op, &f, Some(dirty)),
            (Status::Ok, _) if !op.joiners.is_empty() => {
                self.joins_answered(owner, op, seq, payload, dirty)
            }
            (Status::Ok, kind) => {
                let whole;
                let frame = if op.parts.is_empty() {
                    payload
                } else {
                    let mut all = Vec::with_capacity(
                        op.parts.iter().map(|(_, p)| p.len()).sum::<usize>() + payload.len(),
                    );
                    for (_, part) in &op.parts {
                        all.extend_from_slice(part);
                    }
                    all.extend_from_slice(payload);
                    whole = all;
                    &whole[..]
                };
                if !frame.is_empty() {
                    dirty.push(&op.out, websocket::text(frame));
                }
                if let (OpKind::Join, Some(seq)) = (kind, seq) {
                    // After the `joined` frame is queued, so that the
                    // connection sees exactly the events after its seq.
                    if let Ok(room) = RoomId::parse(record_room(&op.record).as_str()) {
                        let epoch = || joined_epoch(frame);
                        self.subs
                            .subscribe(&room, op.conn, &op.out, seq, owner, epoch);
                    }
                }
                if kind == OpKind::Join {
                    self.join_ended(&record_room(&op.record));
                }
            }
        }
    }

    /// The owner answered gathered joins: each joiner gets its `joined`,
    /// written from the one answer, and is subscribed from its seq.
    fn joins_answered(
        self: &Arc<Self>,
        owner: &NodeId,
        op: OpPending,
        seq: Option<u64>,
        payload: &[u8],
        dirty: &mut Dirty,
    ) {
        let room = record_room(&op.record);
        let mut events = Vec::new();
        let mut shared = Vec::new();
        for (seq, part) in &op.parts {
            match seq {
                Some(seq) => events.push((*seq, part.clone())),
                None => shared.extend_from_slice(part),
            }
        }
        shared.extend_from_slice(payload);
        let (Ok(room_id), Some(seq), Ok(shared)) =
            (RoomId::parse(&room), seq, Shared::parse(&shared))
        else {
            tracing::warn!(room.id = %room, "a bad answer to gathered joins");
            return self.unavailable(&op);
        };
        let epoch: Arc<str> = Arc::from(shared.epoch());
        for joiner in &op.joiners {
            let frame = shared.joined(&room, seq, joiner, &events);
            dirty.push(&joiner.out, websocket::text(&frame));
            self.subs
                .subscribe(&room_id, joiner.conn, &joiner.out, seq, owner, || {
                    Some(epoch.clone())
                });
        }
        self.join_ended(&room);
    }

    /// Requests in flight on a link that dropped: operations are routed
    /// again (a retried `send` is idempotent by its id), except those that
    /// may have been applied and must not be applied twice (`OpKind::Once`:
    /// answered `unavailable`); queries fail.
    fn fail_pending(self: &Arc<Self>, node: &NodeId) {
        let mut gone = Vec::new();
        {
            let mut pending = self.lock_pending();
            let rids: Vec<Rid> = pending
                .iter()
                .filter(|(_, p)| p.node() == Some(node))
                .map(|(rid, _)| *rid)
                .collect();
            for rid in rids {
                if let Some(p) = pending.remove(&rid) {
                    gone.push((rid, p));
                }
            }
        }
        for (rid, p) in gone {
            match p {
                Pending::Op(op) if op.kind == OpKind::Once => self.unavailable(&op),
                Pending::Op(mut op) => {
                    op.parts.clear();
                    self.retry(rid, op)
                }
                Pending::Query { tx, .. } => drop(tx),
                Pending::Resume(resume) => self.retry_resume(resume.room, resume.attempt + 1),
            }
        }
    }

    /// The current sweep round.
    fn round(&self) -> u64 {
        self.round.load(Ordering::Relaxed)
    }

    /// Whether a request sent in round `born` has waited `ANSWER_WITHIN`.
    fn expired(&self, born: u64) -> bool {
        let rounds = (ANSWER_WITHIN.as_millis() / SWEEP.as_millis()) as u64;
        self.round().saturating_sub(born) >= rounds
    }

    /// Answers requests nobody answered in time, until shutdown.
    async fn sweep(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval(SWEEP);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            self.round.fetch_add(1, Ordering::Relaxed);
            let expired: Vec<(Rid, Pending)> = {
                let mut pending = self.lock_pending();
                let rids: Vec<Rid> = pending
                    .iter()
                    .filter(|(_, p)| self.expired(p.born()))
                    .map(|(rid, _)| *rid)
                    .collect();
                rids.into_iter()
                    .filter_map(|rid| Some((rid, pending.remove(&rid)?)))
                    .collect()
            };
            for (rid, p) in expired {
                match p {
                    Pending::Op(mut op) if op.kind == OpKind::Resume => {
                        op.born = self.round();
                        op.parts.clear();
                        self.retry(rid, op);
                    }
                    Pending::Op(op) => {
                        tracing::debug!(rid, "no answer in time");
                        self.unavailable(&op);
                    }
                    Pending::Query { tx, .. } => {
                        let failure = Failure::new(
                            ErrorCode::Unavailable,
                            "the room's node did not answer in time; retry",
                        );
                        let _ = tx.send((Status::Failed(failure), Bytes::new()));
                    }
                    Pending::Resume(resume) => self.retry_resume(resume.room, resume.attempt + 1),
                }
            }
        }
    }

    /// Subscribes again, at their owner on the current ring, the rooms that
    /// moved or whose node's link went `down`, so that presence stays right
    /// and the gap is filled: one resume per room.
    pub(super) fn resume_moved(self: &Arc<Self>, down: Option<&NodeId>) {
        let ring = self.ring.borrow().ring.clone();
        for resume in self.subs.to_resume(&ring, down) {
            tracing::debug!(room.id = %resume.room, since = resume.since, "resuming room");
            self.resume_room(resume.room, 0);
        }
    }

    /// Subscribes a held room's connections again at its owner: in one
    /// record for them all, or, with a node of link version 1, one resume
    /// per connection. Nothing once the room is not held any more.
    fn resume_room(self: &Arc<Self>, room: RoomId, attempt: usize) {
        let Some((since, epoch, mut conns)) = self.subs.held(room.as_str()) else {
            return;
        };
        // A join the old owner applied but has not answered yet came with
        // the room too: named here, it is not taken for one that closed.
        for conn in self.joining(room.as_str()) {
            if !conns.contains(&conn) {
                conns.push(conn);
            }
        }
        let Some((owner, writer)) = self.writer_to_owner(room.as_str()) else {
            return self.retry_resume(room, attempt);
        };
        if self.version_of(&owner) < 2 {
            if conns.is_empty() {
                return self.subs.forget_if_empty(room.as_str());
            }
            for conn in conns {
                self.resume(room.as_str(), conn, since);
            }
            return;
        }
        let users: Vec<(ConnId, crate::ids::UserId)> = conns
            .into_iter()
            .filter_map(|conn| Some((conn, self.sessions.get(conn)?.0)))
            .collect();
        let rid = self.next_rid.fetch_add(1, Ordering::Relaxed);
        let record = ToNode::Resume {
            rid,
            room: room.as_str(),
            since,
            conns: users.iter().map(|(c, u)| (*c, u.as_str())).collect(),
            epoch: epoch.as_deref(),
        };
        let record = match codec::encode(&record) {
            Ok(record) => record,
            Err(e) => {
                // More connections than one record holds: one each.
                tracing::debug!(room.id = %room, error = %e, "resuming connection by connection");
                for (conn, _) in users {
                    self.resume(room.as_str(), conn, since);
                }
                return;
            }
        };
        let resume = ResumePending {
            room: room.clone(),
            node: owner,
            born: self.round(),
            attempt,
            parts: Vec::new(),
            joined: BytesMut::new(),
        };
        self.lock_pending().insert(rid, Pending::Resume(resume));
        let sent = writer.send_with(|buf| {
            buf.extend_from_slice(&record);
            Ok(())
        });
        if sent.is_err() && self.lock_pending().remove(&rid).is_some() {
            self.retry_resume(room, attempt);
        }
    }

    /// Connections whose join of `room` waits for its answer.
    fn joining(&self, room: &str) -> Vec<ConnId> {
        self.lock_pending()
            .values()
            .filter_map(|p| match p {
                Pending::Op(op) if op.kind == OpKind::Join && record_room(&op.record) == room => {
                    Some(op.joiners.iter().map(|j| j.conn).chain([op.conn]))
                }
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Tries a room's resume again a little later.
    fn retry_resume(self: &Arc<Self>, room: RoomId, attempt: usize) {
        let last = RETRY_BACKOFF_MS.len() - 1;
        let pause = RETRY_BACKOFF_MS[attempt.min(last)];
        let up = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            up.resume_room(room, attempt + 1);
        });
    }

    /// Subscribes one local connection again at the room's owner, from
    /// `since`; nothing if the connection is gone.
    fn resume(self: &Arc<Self>, room: &str, conn: ConnId, since: u64) {
        let Some((user, out)) = self.sessions.get(conn) else {
            return;
        };
        self.op(OpRequest {
            room,
            conn,
            out: &out,
            user: user.as_str(),
            id: None,
            op: RoomOp::Resume { since },
            route: None,
        });
    }
}

/// Counts a join request carrying `joins` joins.
fn counted_joins(joins: usize) {
    let metrics = crate::telemetry::metrics();
    metrics.join_requests.increment(1);
    metrics.joins.increment(joins as u64);
}

/// The `epoch` a `joined` frame names (its other fields skipped unread).
fn joined_epoch(frame: &[u8]) -> Option<Arc<str>> {
    #[derive(serde::Deserialize)]
    struct Joined<'a> {
        #[serde(borrow)]
        epoch: Option<&'a str>,
    }
    let joined: Joined<'_> = serde_json::from_slice(frame).ok()?;
    joined.epoch.map(Arc::from)
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

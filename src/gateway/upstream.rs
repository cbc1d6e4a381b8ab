//! Routing to the application nodes: by the ring, over one multiplexed link
//! per node (`link`), replies matched by request id, operations routed again
//! when a node answers that it does not own a room, and rooms resumed at
//! their new owner when the ring moves them.
//!
//! Task tree: `Upstream::spawn` starts a supervisor that follows the ring
//! view and keeps one `LinkTask` per node member; each link task connects
//! (with backoff), runs a writer beside its reader, and ends when its node
//! leaves the view or the gateway shuts down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use super::link::{Link, LinkTask, Pending};
use super::sessions::Sessions;
use crate::coordinator::{RingView, Role};
use crate::ids::{NodeId, RoomId, UserId};
use crate::protocol::client::RoomOp;
use crate::protocol::link::{self, ConnId, LinkMsg, Query, Status, ToGateway, ToNode};
use crate::protocol::server::error_frame;
use crate::protocol::{ErrorCode, Failure};
use crate::shutdown::Shutdown;

/// Requests a link may queue while its node is slow or reconnecting.
pub(super) const LINK_QUEUE: usize = 16 * 1024;
/// Pauses between routing attempts while a room has no reachable owner.
const RETRY_BACKOFF_MS: [u64; 12] = [2, 5, 10, 20, 40, 80, 120, 200, 300, 300, 300, 300];

/// A client operation on its way to a room's owner.
#[derive(Debug, Clone)]
pub(super) struct OpRequest {
    /// The room.
    pub room: RoomId,
    /// The client connection.
    pub conn: ConnId,
    /// Its user.
    pub user: UserId,
    /// The client frame's id.
    pub id: Option<String>,
    /// The operation.
    pub op: RoomOp,
    /// A `join` that re-subscribes a connection at a room's new owner: its
    /// reply fills the gap instead of going to the client.
    pub resume: bool,
}

/// Routes room operations to their owners.
pub(super) struct Upstream {
    pub(super) gateway: NodeId,
    pub(super) secret: String,
    ring: watch::Receiver<Arc<RingView>>,
    sessions: Arc<Sessions>,
    /// Links by node; short critical sections only.
    links: Mutex<HashMap<NodeId, Arc<Link>>>,
}

impl Upstream {
    /// Starts the router and its link supervisor.
    pub(super) fn spawn(
        gateway: NodeId,
        secret: String,
        ring: watch::Receiver<Arc<RingView>>,
        sessions: Arc<Sessions>,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        let up = Arc::new(Self {
            gateway,
            secret,
            ring,
            sessions,
            links: Mutex::default(),
        });
        tokio::spawn(up.clone().supervise(shutdown).in_current_span());
        up
    }

    /// The current ring view.
    pub(super) fn view(&self) -> Arc<RingView> {
        self.ring.borrow().clone()
    }

    fn link_to_owner(&self, key: &str) -> Option<(NodeId, Arc<Link>)> {
        let owner = self.ring.borrow().ring.owner_of(key)?.clone();
        let link = self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&owner)?
            .clone();
        link.up.load(Ordering::Acquire).then_some((owner, link))
    }

    /// Sends a client operation to its room's owner; the reply goes straight
    /// to the connection.
    pub(super) async fn op(self: &Arc<Self>, req: OpRequest) {
        self.op_attempt(req, 0).await;
    }

    async fn op_attempt(self: &Arc<Self>, req: OpRequest, attempt: usize) {
        let Some((_, link)) = self.link_to_owner(req.room.as_str()) else {
            return self.retry(req, attempt);
        };
        let rid = link.next_rid.fetch_add(1, Ordering::Relaxed);
        let msg = ToNode::Op {
            rid,
            room: req.room.clone(),
            conn: req.conn,
            user: req.user.clone(),
            id: req.id.clone(),
            op: req.op.clone(),
        };
        let text = link::encode(&msg, None);
        link.lock_pending()
            .insert(rid, Pending::Op { req, attempt });
        if link.tx.send(text.into()).await.is_err() {
            if let Some(Pending::Op { req, attempt }) = link.lock_pending().remove(&rid) {
                self.retry(req, attempt);
            }
        }
    }

    /// Tries again a little later, or gives up with `unavailable`; a resume
    /// keeps trying as long as its connection is subscribed.
    pub(super) fn retry(self: &Arc<Self>, req: OpRequest, attempt: usize) {
        if req.resume && !self.sessions.is_subscribed(&req.room, req.conn) {
            return;
        }
        let last = RETRY_BACKOFF_MS.len() - 1;
        let (attempt, pause) = match RETRY_BACKOFF_MS.get(attempt) {
            Some(&pause) => (attempt, Some(pause)),
            None if req.resume => (last, Some(RETRY_BACKOFF_MS[last])),
            None => (attempt, None),
        };
        let Some(pause) = pause else {
            let failure = Failure::new(
                ErrorCode::Unavailable,
                format!("{} cannot be served right now; retry", req.room),
            );
            let frame = error_frame(&failure, req.id.as_deref(), Some(req.room.as_str()));
            self.sessions.send_to(req.conn, frame.into());
            return;
        };
        tracing::trace!(room.id = %req.room, conn = req.conn, attempt, "routing again");
        let up = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            Box::pin(up.op_attempt(req, attempt + 1)).await;
        });
    }

    /// Asks a room's owner an HTTP API question.
    pub(super) async fn query(&self, room: &RoomId, query: Query) -> Result<String, Failure> {
        for pause in RETRY_BACKOFF_MS {
            if let Some((_, link)) = self.link_to_owner(room.as_str()) {
                let rid = link.next_rid.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = oneshot::channel();
                link.lock_pending().insert(rid, Pending::Query(tx));
                let msg = ToNode::Query {
                    rid,
                    room: room.clone(),
                    query: query.clone(),
                };
                if link.tx.send(link::encode(&msg, None).into()).await.is_ok() {
                    match rx.await {
                        Ok((Status::Ok, payload)) => return Ok(payload),
                        Ok((Status::Failed(f), _)) => return Err(f),
                        Ok((Status::Moved, _)) => {}
                        // The link dropped with the request in flight: it may
                        // have been applied, so a post is not sent twice.
                        Err(_) => {
                            return Err(Failure::new(
                                ErrorCode::Unavailable,
                                "the room's node went away; retry",
                            ))
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        Err(Failure::new(
            ErrorCode::Unavailable,
            format!("{room} cannot be served right now; retry"),
        ))
    }

    /// Sends a notification through the node that owns the user's key; that
    /// node relays it to every gateway.
    pub(super) async fn notify(&self, user: &UserId, body: Box<RawValue>) -> Result<(), Failure> {
        let key = format!("user:{user}");
        let (_, link) = self
            .link_to_owner(&key)
            .ok_or_else(|| Failure::new(ErrorCode::Unavailable, "no node is reachable; retry"))?;
        let msg = ToNode::Notify {
            user: user.clone(),
            body,
        };
        link.tx
            .send(link::encode(&msg, None).into())
            .await
            .map_err(|_| Failure::new(ErrorCode::Unavailable, "no node is reachable; retry"))
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
                let (tx, rx) = mpsc::channel(LINK_QUEUE);
                let link = Arc::new(Link {
                    node: id.clone(),
                    up: AtomicBool::new(false),
                    tx,
                    next_rid: AtomicU64::new(1),
                    pending: Mutex::default(),
                });
                self.links
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.clone(), link.clone());
                let task = LinkTask {
                    up: self.clone(),
                    node: id.clone(),
                    addr: addr.clone(),
                    link,
                    rx,
                    stop: stop_rx,
                };
                let span = tracing::debug_span!("upstream", node.id = %id);
                tokio::spawn(task.run(shutdown.clone()).instrument(span));
                tasks.insert(id, (addr, stop_tx));
            }
            self.resume_moved(None);
            tokio::select! {
                changed = ring.changed() => if changed.is_err() { return },
                _ = shutdown.wait() => return,
            }
        }
    }

    /// Subscribes again, at their owner on the current ring, the rooms that
    /// moved or whose node's link went `down`: one `join` with `since` per
    /// local connection, so that presence stays right and the gap is filled.
    pub(super) fn resume_moved(self: &Arc<Self>, down: Option<&NodeId>) {
        let ring = self.ring.borrow().ring.clone();
        for resume in self.sessions.to_resume(&ring, down) {
            tracing::debug!(room.id = %resume.room, since = resume.since, "resuming room");
            for (conn, user) in resume.conns {
                let op = RoomOp::Join {
                    since: Some(resume.since),
                };
                let req = OpRequest {
                    room: resume.room.clone(),
                    conn,
                    user,
                    id: None,
                    op,
                    resume: true,
                };
                let up = self.clone();
                tokio::spawn(async move { up.op(req).await });
            }
        }
    }

    /// Handles one message from a node.
    pub(super) fn on_message(self: &Arc<Self>, link: &Link, msg: LinkMsg) {
        let text = msg.as_str();
        let (header, at) = match link::decode::<ToGateway>(text) {
            Ok(decoded) => decoded,
            Err(e) => return tracing::warn!(error = %e, "dropping a bad link message"),
        };
        let payload = || -> Utf8Bytes {
            let bytes: bytes::Bytes = msg.clone().into();
            Utf8Bytes::try_from(bytes.slice(at..)).unwrap_or_default()
        };
        match header {
            ToGateway::Event { room, seq, skip } => {
                self.sessions.dispatch(&room, seq, skip, payload())
            }
            ToGateway::Notify { user } => {
                self.sessions.send_to_user(&user, payload());
            }
            ToGateway::Reply { rid, status, seq } => match link.lock_pending().remove(&rid) {
                Some(Pending::Query(tx)) => {
                    let _ = tx.send((status, text[at..].to_string()));
                }
                Some(Pending::Op { req, attempt }) => {
                    self.on_op_reply(&link.node, req, attempt, status, seq, payload())
                }
                None => {}
            },
        }
    }

    fn on_op_reply(
        self: &Arc<Self>,
        owner: &NodeId,
        req: OpRequest,
        attempt: usize,
        status: Status,
        seq: Option<u64>,
        payload: Utf8Bytes,
    ) {
        match status {
            Status::Moved => self.retry(req, attempt),
            Status::Failed(_) if req.resume => self.retry(req, attempt + 1),
            Status::Ok if req.resume => match seq {
                Some(_) => self.sessions.resumed(&req.room, owner, missed(&payload)),
                None => self.retry(req, attempt + 1),
            },
            Status::Failed(f) => {
                let frame = error_frame(&f, req.id.as_deref(), Some(req.room.as_str()));
                self.sessions.send_to(req.conn, frame.into());
            }
            Status::Ok => {
                if !payload.is_empty() {
                    self.sessions.send_to(req.conn, payload);
                }
                match (&req.op, seq) {
                    // After the `joined` frame is queued, so that the
                    // connection sees exactly the events after its seq.
                    (RoomOp::Join { .. }, Some(seq)) => {
                        self.sessions.subscribe(&req.room, req.conn, seq, owner)
                    }
                    (RoomOp::Leave, _) => self.sessions.unsubscribe(&req.room, req.conn),
                    _ => {}
                }
            }
        }
    }
}

/// The messages a resuming `joined` reply carries: (seq, frame) each.
fn missed(joined: &str) -> Vec<(u64, Utf8Bytes)> {
    #[derive(serde::Deserialize)]
    struct Joined<'a> {
        #[serde(borrow)]
        history: Vec<&'a RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    let Ok(joined) = serde_json::from_str::<Joined<'_>>(joined) else {
        return Vec::new();
    };
    joined
        .history
        .into_iter()
        .filter_map(|m| {
            Some((
                serde_json::from_str::<Seq>(m.get()).ok()?.seq,
                Utf8Bytes::from(m.get()),
            ))
        })
        .collect()
}

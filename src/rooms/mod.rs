//! Rooms: the pure state of a chat or board room (`state`, `board`) and the
//! room task that is its single writer.
//!
//! Task tree: one `Room` task per room held by a node, fed by a bounded
//! `RoomHandle` queue; it applies each command in order, sends the events to
//! every subscribed gateway link and the reply to the requester's link, and
//! ends when the node drops the last handle.

pub mod board;
pub mod state;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tracing::Instrument;

use crate::ids::{NodeId, RoomId};
use crate::protocol::client::RoomOp;
use crate::protocol::link::{encode, LinkMsg, Query, Rid, Status, ToGateway};
use crate::protocol::now_ms;
use state::{Event, LinkId, Origin, Outcome, RoomState};

/// Commands a room task may queue before senders wait.
pub const ROOM_QUEUE: usize = 1024;

/// The outbound queue of one gateway link, as rooms see it.
#[derive(Clone)]
pub struct LinkTx {
    /// The link's id on this node.
    pub id: LinkId,
    /// Bounded; when full the link is too slow and is closed (`overflow`),
    /// so that one slow gateway never stalls a room.
    tx: mpsc::Sender<LinkMsg>,
    /// Wakes the link's task to close it after an overflow.
    overflow: Arc<Notify>,
}

impl LinkTx {
    /// A link queue of `capacity` messages; the link task owns the receiver
    /// and waits on the overflow notice.
    pub fn new(id: LinkId, capacity: usize) -> (Self, mpsc::Receiver<LinkMsg>, Arc<Notify>) {
        let (tx, rx) = mpsc::channel(capacity);
        let overflow = Arc::new(Notify::new());
        (
            Self {
                id,
                tx,
                overflow: overflow.clone(),
            },
            rx,
            overflow,
        )
    }

    /// Queues a message without waiting.
    pub fn send(&self, msg: LinkMsg) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(msg) {
            self.overflow.notify_one();
        }
    }

    /// Queues a reply to `rid`.
    pub fn reply(&self, rid: Rid, status: Status, seq: Option<u64>, payload: Option<&str>) {
        self.send(encode(&ToGateway::Reply { rid, status, seq }, payload).into());
    }
}

/// What a room task is asked to do.
pub enum RoomCmd {
    /// A client's operation.
    Op {
        /// Where to reply.
        link: LinkTx,
        /// The request id.
        rid: Rid,
        /// Who.
        origin: Origin,
        /// The client frame's id.
        id: Option<String>,
        /// What.
        op: RoomOp,
    },
    /// An HTTP API query.
    Query {
        /// Where to reply.
        link: LinkTx,
        /// The request id.
        rid: Rid,
        /// What.
        query: Query,
    },
    /// A gateway link went away: drop its connections.
    LinkClosed(LinkId),
}

/// A handle to a room task.
#[derive(Clone)]
pub struct RoomHandle {
    /// Bounded; senders wait when the room is busy, which slows the link
    /// reader feeding it rather than growing memory.
    tx: mpsc::Sender<RoomCmd>,
}

impl RoomHandle {
    /// Queues a command; fails only when the room task is gone.
    pub async fn send(&self, cmd: RoomCmd) -> Result<(), RoomCmd> {
        self.tx.send(cmd).await.map_err(|e| e.0)
    }
}

/// Starts the task of a room owned by `owner`.
pub fn spawn_room(room: RoomId, owner: NodeId, keep: usize) -> RoomHandle {
    let (tx, rx) = mpsc::channel(ROOM_QUEUE);
    let span = tracing::debug_span!("room", room.id = %room);
    let task = Room {
        state: RoomState::new(room.clone(), keep),
        room,
        owner,
        links: HashMap::new(),
        rx,
    };
    tokio::spawn(task.run().instrument(span));
    RoomHandle { tx }
}

/// The room task: the single writer of one room.
struct Room {
    room: RoomId,
    owner: NodeId,
    state: RoomState,
    /// Links with at least one subscribed connection.
    links: HashMap<LinkId, LinkTx>,
    rx: mpsc::Receiver<RoomCmd>,
}

impl Room {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(64);
        while self.rx.recv_many(&mut batch, 64).await > 0 {
            for cmd in batch.drain(..) {
                self.handle(cmd);
            }
        }
    }

    fn handle(&mut self, cmd: RoomCmd) {
        match cmd {
            RoomCmd::Op {
                link,
                rid,
                origin,
                id,
                op,
            } => {
                let out = self.state.apply(&origin, id.as_deref(), &op, now_ms());
                if self.state.has_link(link.id) {
                    self.links.entry(link.id).or_insert_with(|| link.clone());
                } else {
                    self.links.remove(&link.id);
                }
                if matches!(op, RoomOp::Send { .. }) && !out.events.is_empty() {
                    metrics::counter!("roomring_messages_in_total").increment(1);
                }
                self.publish(&out.events);
                link.reply(rid, Status::Ok, out.seq, out.reply.as_deref());
            }
            RoomCmd::Query { link, rid, query } => {
                let payload = match query {
                    Query::Info => self.state.info_json(self.owner.as_str()),
                    Query::Messages { since, limit } => self.state.messages_json(since, limit),
                    Query::Post { from, body } => {
                        let Outcome { events, .. } = self.state.send(&from, None, &body, now_ms());
                        metrics::counter!("roomring_messages_in_total").increment(1);
                        self.publish(&events);
                        serde_json::json!({ "seq": self.state.seq() }).to_string()
                    }
                };
                link.reply(rid, Status::Ok, None, Some(&payload));
            }
            RoomCmd::LinkClosed(id) => {
                self.links.remove(&id);
                let out = self.state.drop_link(id);
                self.publish(&out.events);
            }
        }
    }

    /// Sends each event once to every subscribed link; the link of the
    /// connection to skip gets its own header.
    fn publish(&self, events: &[Event]) {
        for event in events {
            let header = |skip| ToGateway::Event {
                room: self.room.clone(),
                seq: event.seq,
                skip,
            };
            let shared: LinkMsg = encode(&header(None), Some(&event.frame)).into();
            for link in self.links.values() {
                match event.skip {
                    Some(sub) if sub.link == link.id => {
                        link.send(encode(&header(Some(sub.conn)), Some(&event.frame)).into());
                    }
                    _ => link.send(shared.clone()),
                }
            }
        }
    }
}

//! Rooms: the pure state of a chat or board room (`state`, `board`) and the
//! room task that is its single writer.
//!
//! Task tree: one `Room` task per room held by a node, fed by a bounded
//! `RoomHandle` queue; it applies each command in order, sends the events to
//! every subscribed gateway link and the reply to the requester's link, and
//! ends when the node drops the last handle.

pub mod board;
pub mod state;
pub mod store;
mod task;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Notify};
use tracing::Instrument;

use crate::ids::{NodeId, RoomId, UserId};
use crate::protocol::client::RoomOp;
use crate::protocol::link::{encode, LinkMsg, Query, Rid, Status, ToGateway};
use state::{LinkId, Origin, Sub};
use store::{Loaded, RoomStore};

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
    /// Stop applying operations (they are answered `Moved`), wait until
    /// every stored event is durable, and export the room for a hand-off.
    Freeze(oneshot::Sender<Option<Frozen>>),
    /// Serve again (the hand-off did not happen).
    Thaw,
}

/// A frozen room's state, ready to move.
#[derive(Debug)]
pub struct Frozen {
    /// The durable part (seq, kept log, snapshot).
    pub state: Loaded,
    /// Subscribed connections with their users.
    pub conns: Vec<(Sub, UserId)>,
}

/// A room arriving by hand-off, to be installed instead of loaded.
pub struct Arrival {
    /// Its durable part; `None` to load it from storage.
    pub state: Option<Loaded>,
    /// Connections subscribed at the previous owner, on this node's links.
    pub conns: Vec<(Sub, UserId)>,
    /// The links of those connections.
    pub links: Vec<LinkTx>,
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

/// Starts the task of a room owned by `owner`; with a store, the room is
/// rebuilt from it and every stored event is durable before anyone sees it.
/// An `arrival` installs a room handed off by its previous owner.
pub fn spawn_room(
    room: RoomId,
    owner: NodeId,
    keep: usize,
    store: Option<Arc<dyn RoomStore>>,
    arrival: Option<Arrival>,
) -> RoomHandle {
    let (tx, rx) = mpsc::channel(ROOM_QUEUE);
    let span = tracing::debug_span!("room", room.id = %room);
    let mut task = task::Room::new(room, owner, keep, store, rx);
    if let Some(arrival) = arrival {
        task.install(arrival);
    }
    tokio::spawn(task.run().instrument(span));
    RoomHandle { tx }
}

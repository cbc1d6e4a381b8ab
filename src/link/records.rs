//! The records a link carries. Requests go to a node (`ToNode`): from a
//! gateway, room operations, queries and notifications; from another node,
//! hand-offs. Everything a node sends back is a `FromNode`. Strings and raw
//! JSON are borrowed from the record they were read from; a receiver that
//! keeps a payload slices it out of that record's `Bytes` without a copy.

use serde::{Deserialize, Serialize};
use serde_bytes::Bytes as Raw;

use crate::protocol::client::RoomOp;
use crate::protocol::server::VersionedWidget;
use crate::protocol::{Joining, Query, Status};

pub use crate::ids::{ConnId, Rid};

/// A request to a node.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToNode<'a> {
    /// A client's operation on a room (gateways only).
    Op {
        /// Request id.
        rid: Rid,
        /// The room.
        room: &'a str,
        /// The client connection on the gateway.
        conn: ConnId,
        /// The connection's user.
        user: &'a str,
        /// The client frame's `id`.
        id: Option<&'a str>,
        /// The operation.
        #[serde(borrow)]
        op: RoomOp<&'a Raw>,
    },
    /// An HTTP API question about a room (gateways only).
    Query {
        /// Request id.
        rid: Rid,
        /// The room.
        room: &'a str,
        /// What is asked.
        #[serde(borrow)]
        query: Query<&'a Raw>,
    },
    /// A notification for a user, relayed by the node to every gateway
    /// (gateways only).
    Notify {
        /// The addressee.
        user: &'a str,
        /// The `notify` frame's body.
        body: &'a Raw,
    },
    /// An announcement for every connection of every gateway, relayed by
    /// the node to each gateway linked to it (gateways only).
    Broadcast {
        /// The `notify` frame's body.
        #[serde(borrow)]
        body: &'a Raw,
    },
    /// Part of a room moving to the receiver: kept events and widgets,
    /// before the `Handoff` that completes request `rid` (nodes only).
    HandoffPart {
        /// Request id of the hand-off.
        rid: Rid,
        /// Kept events.
        #[serde(borrow)]
        entries: Vec<HandoffEntry<'a>>,
        /// Board widgets.
        widgets: Vec<VersionedWidget>,
    },
    /// A room moving to the receiver with its live state (nodes only).
    Handoff {
        /// Request id.
        rid: Rid,
        /// The sender's membership epoch.
        epoch: u64,
        /// The room.
        room: &'a str,
        /// Whether the parts carry the room's state; when not, the receiver
        /// loads it from storage.
        state: Option<HandoffState<'a>>,
        /// Subscribed connections: (gateway, connection, user).
        #[serde(borrow)]
        conns: Vec<(&'a str, ConnId, &'a str)>,
    },
    /// The sender has handed off everything it had for the receiver as of
    /// its membership `epoch` (nodes only).
    HandoffDone {
        /// As of this epoch.
        epoch: u64,
    },
    /// Subscribes a gateway's connections to a room again, all at once,
    /// after the room moved or the link dropped: the answer carries the
    /// events after `since` once, as parts (gateways only; version 2 on).
    Resume {
        /// Request id.
        rid: Rid,
        /// The room.
        room: &'a str,
        /// The last seq the gateway passed on.
        since: u64,
        /// The gateway's subscribed connections and their users.
        #[serde(borrow)]
        conns: Vec<(ConnId, &'a str)>,
        /// The history (`epoch`) that `since` counts in, when the gateway
        /// knows it: another one means the room lost or rewound it.
        epoch: Option<&'a str>,
    },
    /// Joins of one room by a gateway's connections, gathered while
    /// another join of it was on its way: the answer is what their
    /// `joined` frames share, the kept events any of them replays coming
    /// first as parts with seqs, once for all (gateways only; version 3
    /// on).
    Join {
        /// Request id.
        rid: Rid,
        /// The room.
        room: &'a str,
        /// The joins, in the order they came.
        #[serde(borrow)]
        joins: Vec<Joining<&'a str>>,
    },
}

impl ToNode<'_> {
    /// Whether a gateway may send this record (the rest come from nodes).
    pub fn from_gateway(&self) -> bool {
        matches!(
            self,
            Self::Op { .. }
                | Self::Query { .. }
                | Self::Notify { .. }
                | Self::Broadcast { .. }
                | Self::Resume { .. }
                | Self::Join { .. }
        )
    }

    /// The request id and room of a request for one room (an operation, a
    /// question, a resume, joins); `None` for the rest.
    pub fn room(&self) -> Option<(Rid, &str)> {
        match self {
            Self::Op { rid, room, .. }
            | Self::Query { rid, room, .. }
            | Self::Resume { rid, room, .. }
            | Self::Join { rid, room, .. } => Some((*rid, *room)),
            Self::Notify { .. }
            | Self::Broadcast { .. }
            | Self::HandoffPart { .. }
            | Self::Handoff { .. }
            | Self::HandoffDone { .. } => None,
        }
    }
}

/// The durable scalars of a handed-off room; its entries and widgets come in
/// the parts before.
#[derive(Debug, Serialize, Deserialize)]
pub struct HandoffState<'a> {
    /// The room's seq, which its read receipts and widgets reflect.
    pub seq: u64,
    /// Latest read receipt per user.
    #[serde(borrow)]
    pub reads: Vec<(&'a str, u64)>,
    /// Board roles of named users and `*`.
    #[serde(borrow)]
    pub roles: Vec<(&'a str, crate::protocol::client::BoardRole)>,
    /// The history's epoch.
    pub epoch: Option<&'a str>,
}

/// One kept event of a handed-off room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandoffEntry<'a> {
    /// Its seq.
    pub seq: u64,
    /// The client frame.
    #[serde(borrow)]
    pub frame: &'a Raw,
    /// The author of a chat message.
    pub author: Option<&'a str>,
    /// Its client id.
    pub cid: Option<&'a str>,
}

/// What a node sends on a link.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromNode<'a> {
    /// One piece of the answer to `rid`, ahead of its `Reply`: a slice of a
    /// long client frame (`seq` none), or, for a resuming join, one missed
    /// event with its seq.
    Part {
        /// Request id.
        rid: Rid,
        /// The missed event's seq.
        seq: Option<u64>,
        /// Bytes of the answer.
        #[serde(borrow)]
        payload: &'a Raw,
    },
    /// The answer to `rid`; its payload (a client frame, possibly empty)
    /// follows any parts.
    Reply {
        /// Request id.
        rid: Rid,
        /// How it went.
        status: Status,
        /// For a `join`: the room's seq at the time of the reply.
        seq: Option<u64>,
        /// The last bytes of the answer.
        #[serde(borrow)]
        payload: &'a Raw,
    },
    /// A room event, for every subscribed connection of the gateway.
    Event {
        /// The room.
        room: &'a str,
        /// The event's seq, for stored events.
        seq: Option<u64>,
        /// A connection that must not get the event (the one that caused it).
        skip: Option<ConnId>,
        /// The client frame.
        #[serde(borrow)]
        payload: &'a Raw,
    },
    /// A notification, for every connection of a user.
    Notify {
        /// The addressee.
        user: &'a str,
        /// The `notify` frame.
        #[serde(borrow)]
        payload: &'a Raw,
    },
    /// An announcement, for every connection.
    Broadcast {
        /// The `notify` frame.
        #[serde(borrow)]
        payload: &'a Raw,
    },
    /// The room's history was lost or rewound where it is (it reloaded and
    /// storage holds another): resume it, and its readers get `joined`
    /// with the new history, marked truncated (link version 4 on).
    Rewound {
        /// The room.
        room: &'a str,
    },
}

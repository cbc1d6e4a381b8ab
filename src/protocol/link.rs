//! The gateway↔node link: one WebSocket per (gateway, node) pair, multiplexing
//! every room. Each message is a compact JSON header, and for those that carry
//! a client frame, a newline and the frame's bytes, so that a gateway passes
//! the frame on without parsing it.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::client::RoomOp;
use super::Failure;
use std::collections::BTreeMap;

use super::server::VersionedWidget;
use crate::ids::{Epoch, NodeId, RoomId, UserId};

/// Header naming the connecting peer's role (`gateway` or `node`).
pub const ROLE_HEADER: &str = "x-roomring-role";
/// Path of the link endpoint on a node.
pub const LINK_PATH: &str = "/link";
/// Header carrying the cluster secret on the link upgrade.
pub const SECRET_HEADER: &str = "x-roomring-secret";
/// Header naming the connecting gateway.
pub const PEER_HEADER: &str = "x-roomring-peer";

/// A request id, unique per link, matching a `Reply` to its request.
pub type Rid = u64;
/// A connection id, unique per gateway.
pub type ConnId = u64;
/// One link message, shared without copying among the links it goes to.
pub type LinkMsg = tokio_tungstenite::tungstenite::Utf8Bytes;

/// Gateway to node.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToNode {
    /// A client's operation on a room.
    Op {
        /// Request id.
        rid: Rid,
        /// The room.
        room: RoomId,
        /// The client connection on the gateway.
        conn: ConnId,
        /// The connection's user.
        user: UserId,
        /// The client frame's `id`.
        id: Option<String>,
        /// The operation.
        op: RoomOp,
    },
    /// An HTTP API request about a room.
    Query {
        /// Request id.
        rid: Rid,
        /// The room.
        room: RoomId,
        /// What is asked.
        query: Query,
    },
    /// A room moving to the receiving node with its live state (node to node).
    Handoff {
        /// Request id.
        rid: Rid,
        /// The membership epoch the move belongs to.
        epoch: Epoch,
        /// The room.
        room: RoomId,
        /// Its durable part; `None` when the receiver must load it from storage.
        state: Option<Loaded>,
        /// Its subscribed connections: (gateway, connection, user).
        conns: Vec<(NodeId, ConnId, UserId)>,
    },
    /// The sender has handed off every room it had for the receiver.
    HandoffDone {
        /// The sending node.
        from: NodeId,
        /// As of this epoch.
        epoch: Epoch,
    },
    /// A notification for a user, relayed by the node to every gateway.
    Notify {
        /// The addressee.
        user: UserId,
        /// The notification body.
        body: Box<RawValue>,
    },
}

/// An HTTP API request about a room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Query {
    /// Owner, seq, online users (and widgets).
    Info,
    /// Kept messages after `since`.
    Messages {
        /// Exclusive lower bound.
        since: u64,
        /// How many at most.
        limit: usize,
    },
    /// Post a message on behalf of a user.
    Post {
        /// The author.
        from: UserId,
        /// The body.
        body: Box<RawValue>,
    },
}

/// Node to gateway.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToGateway {
    /// The answer to a request; the payload, if any, goes to the requester.
    Reply {
        /// Request id.
        rid: Rid,
        /// How it went.
        status: Status,
        /// For a `join`: the room's seq at the time of the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
    /// A room event; the payload is the client frame.
    Event {
        /// The room.
        room: RoomId,
        /// The event's seq, for stored events.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// A connection of this gateway that must not get the event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skip: Option<ConnId>,
    },
    /// A notification; the payload is the `notify` frame.
    Notify {
        /// The addressee.
        user: UserId,
    },
}

/// How a request went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Done; the payload is the answer.
    Ok,
    /// This node does not own the room (any more): ask the ring again.
    Moved,
    /// Refused.
    Failed(Failure),
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Its seq.
    pub seq: u64,
    /// The client frame (`msg` or `board.changed`).
    pub frame: String,
    /// The author of a chat message, for the idempotency window.
    pub author: Option<String>,
    /// The client id of a chat message.
    pub cid: Option<String>,
}

/// Board widgets and read receipts as of one seq.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The seq the snapshot reflects.
    pub seq: u64,
    /// Board widgets.
    pub widgets: Vec<VersionedWidget>,
    /// Latest read receipt per user.
    pub reads: BTreeMap<String, u64>,
}

/// What a room is rebuilt from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Loaded {
    /// The kept log, any order.
    pub entries: Vec<Entry>,
    /// The latest snapshot.
    pub snapshot: Option<Snapshot>,
}

/// A link message that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("bad link message: {0}")]
pub struct LinkError(#[from] serde_json::Error);

/// Encodes a header and an optional payload into one link message.
pub fn encode<H: Serialize>(header: &H, payload: Option<&str>) -> String {
    // Serializing link headers cannot fail: every map key is a string.
    let mut out = serde_json::to_string(header).unwrap_or_default();
    if let Some(p) = payload {
        out.reserve(p.len() + 1);
        out.push('\n');
        out.push_str(p);
    }
    out
}

/// Decodes a link message into its header and the byte offset of its payload
/// (the message's length when there is none).
pub fn decode<'a, H: Deserialize<'a>>(text: &'a str) -> Result<(H, usize), LinkError> {
    let (head, start) = match text.find('\n') {
        Some(i) => (&text[..i], i + 1),
        None => (text, text.len()),
    };
    Ok((serde_json::from_str(head)?, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_payload_round_trip() {
        let room = RoomId::parse("chat:a").unwrap();
        let text = encode(
            &ToGateway::Event {
                room,
                seq: Some(4),
                skip: None,
            },
            Some("{\"t\":\"msg\"}"),
        );
        let (head, at): (ToGateway, usize) = decode(&text).unwrap();
        assert!(matches!(
            head,
            ToGateway::Event {
                seq: Some(4),
                skip: None,
                ..
            }
        ));
        assert_eq!(&text[at..], "{\"t\":\"msg\"}");
        let bare = encode(
            &ToGateway::Reply {
                rid: 1,
                status: Status::Moved,
                seq: None,
            },
            None,
        );
        let (head, at): (ToGateway, usize) = decode(&bare).unwrap();
        assert!(matches!(
            head,
            ToGateway::Reply {
                rid: 1,
                status: Status::Moved,
                ..
            }
        ));
        assert_eq!(at, bare.len());
    }
}
